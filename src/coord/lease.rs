//! A lease: at most one holder cluster-wide, for a bounded time.
//!
//! The holder renews every third of the time to live; a renewal that fails (lost to another
//! node, or the backend unreachable) is retried until the lease would run out, and the holder's
//! own deadline is taken from *before* each renewal request, less a quarter of the time to
//! live for clock skew between nodes (storage leases compare wall clocks). Work done under a
//! lease checks [`HeldLease::is_held`] before each destructive step and stops when it is false,
//! so it never acts after another node may have taken over.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What can go wrong talking to the lease backend.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Storage failed.
    #[error("lease storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// Redis failed or timed out.
    #[error("lease redis: {0}")]
    Redis(String),
}

/// What a lease's backend stores: who holds it until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Human-readable holder (host and process), for operators.
    pub holder: String,
    /// Unique per acquisition: renewals and releases compare it.
    pub token: String,
    /// Wall-clock expiry, milliseconds since the Unix epoch (0: released).
    pub expires_ms: u64,
}

impl LeaseRecord {
    /// True once the record no longer excludes others.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms <= now_ms
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where leases live. Every operation is atomic with respect to the others on the same name.
#[async_trait::async_trait]
pub trait LeaseBackend: Send + Sync + 'static {
    /// Takes `name` for `record` if it is free or expired; the returned version identifies
    /// this holding for [`Self::renew`] and [`Self::release`].
    async fn acquire(&self, name: &str, record: &LeaseRecord) -> Result<Option<u64>, LeaseError>;
    /// Extends a holding to `record.expires_ms`; `None` when it was lost.
    async fn renew(
        &self,
        name: &str,
        version: u64,
        record: &LeaseRecord,
    ) -> Result<Option<u64>, LeaseError>;
    /// Gives a holding up, if it is still ours.
    async fn release(
        &self,
        name: &str,
        version: u64,
        record: &LeaseRecord,
    ) -> Result<(), LeaseError>;
    /// The current unexpired holder, if any.
    async fn holder(&self, name: &str) -> Result<Option<LeaseRecord>, LeaseError>;
    /// Which backend, for logs and `/debug/vars`.
    fn kind(&self) -> &'static str;
    /// Deletes up to `limit` leases named `prefix*` whose last holding ended more than `idle`
    /// ago, for backends that keep such records (Redis expires its keys by itself). Used for
    /// short-lived per-object leases, which would otherwise pile up.
    async fn forget_idle(
        &self,
        _prefix: &str,
        _idle: Duration,
        _limit: usize,
    ) -> Result<usize, LeaseError> {
        Ok(0)
    }
}

/// A named lease that this process may try to take.
#[derive(Clone)]
pub struct Lease {
    backend: Arc<dyn LeaseBackend>,
    name: String,
    holder: String,
    ttl: Duration,
}

impl Lease {
    /// The lease `name` on `backend`, held for `ttl` at a time (at least 3 s, so a renewal
    /// every third of it is not a busy loop).
    pub fn new(backend: Arc<dyn LeaseBackend>, name: &str, ttl: Duration) -> Self {
        Self {
            backend,
            name: name.to_string(),
            holder: holder_name(),
            ttl: ttl.max(Duration::from_secs(3)),
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who this process is when it holds the lease (`host:pid`).
    pub fn holder_id(&self) -> &str {
        &self.holder
    }

    /// The backend's kind (`redis` or `storage`).
    pub fn backend_kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Who holds it now, if anyone.
    pub async fn holder(&self) -> Result<Option<LeaseRecord>, LeaseError> {
        self.backend.holder(&self.name).await
    }

    /// Takes the lease if nobody holds it; the holding renews itself in the background until
    /// released or dropped.
    pub async fn try_acquire(&self) -> Result<Option<HeldLease>, LeaseError> {
        let token = uuid::Uuid::new_v4().to_string();
        let started = Instant::now();
        let record = LeaseRecord {
            holder: self.holder.clone(),
            token,
            expires_ms: now_ms() + self.ttl.as_millis() as u64,
        };
        let Some(version) = self.backend.acquire(&self.name, &record).await? else {
            return Ok(None);
        };
        let deadline = Arc::new(Mutex::new(started + self.valid_for()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let state = Arc::new(Mutex::new((version, record.clone())));
        let renewer = tokio::spawn(renew_loop(
            self.clone(),
            state.clone(),
            deadline.clone(),
            stop_rx,
        ));
        crate::ops::cluster_status::lease_taken(&self.name, &record.holder);
        Ok(Some(HeldLease {
            lease: self.clone(),
            deadline,
            state,
            stop: stop_tx,
            renewer: Some(renewer),
        }))
    }

    /// How long after a renewal request starts the holder may still act.
    fn valid_for(&self) -> Duration {
        self.ttl - self.ttl / 4
    }
}

/// Renews every third of the time to live until stopped or lost.
async fn renew_loop(
    lease: Lease,
    state: Arc<Mutex<(u64, LeaseRecord)>>,
    deadline: Arc<Mutex<Instant>>,
    mut stop: watch::Receiver<bool>,
) {
    let period = lease.ttl / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        let started = Instant::now();
        let (version, mut record) = state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        record.expires_ms = now_ms() + lease.ttl.as_millis() as u64;
        match lease.backend.renew(&lease.name, version, &record).await {
            Ok(Some(v)) => {
                *state.lock().unwrap_or_else(|e| e.into_inner()) = (v, record);
                *deadline.lock().unwrap_or_else(|e| e.into_inner()) = started + lease.valid_for();
            }
            Ok(None) => {
                tracing::warn!(lease = %lease.name, "lease lost to another holder; stopping its work");
                *deadline.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                return;
            }
            Err(e) => {
                // Retried at the next period; the deadline stays where the last success put it.
                tracing::warn!(lease = %lease.name, error = %e, "lease renewal failed");
                if Instant::now() >= *deadline.lock().unwrap_or_else(|e| e.into_inner()) {
                    tracing::warn!(lease = %lease.name, "lease expired without renewal; stopping its work");
                    return;
                }
            }
        }
    }
}

/// A lease this process holds.
pub struct HeldLease {
    lease: Lease,
    deadline: Arc<Mutex<Instant>>,
    state: Arc<Mutex<(u64, LeaseRecord)>>,
    stop: watch::Sender<bool>,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl HeldLease {
    /// True while no other node can have taken the lease over: work must stop when false.
    pub fn is_held(&self) -> bool {
        Instant::now() < *self.deadline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wall-clock expiry that other nodes see, milliseconds since the Unix epoch.
    pub fn expires_ms(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .expires_ms
    }

    /// This holding's token, which [`Lease::holder`] shows other nodes while it lasts.
    pub fn token(&self) -> String {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .token
            .clone()
    }

    /// Stops renewing and frees the lease for others at once.
    pub async fn release(mut self) {
        let _ = self.stop.send(true);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.await;
        }
        let (version, record) = self.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = self
            .lease
            .backend
            .release(&self.lease.name, version, &record)
            .await
        {
            tracing::warn!(lease = %self.lease.name, error = %e, "could not release the lease; it expires on its own");
        }
        crate::ops::cluster_status::lease_released(&self.lease.name);
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// `host:pid`, so an operator can tell nodes apart.
fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{host}:{}", std::process::id())
}
