//! Where a node is in its life: serving, draining for shutdown, or wedged.
//!
//! Readiness (may a load balancer send traffic here?) is false while a health
//! check fails or once draining has begun. Liveness (should the orchestrator
//! restart the process?) is false only when the request runtime has stopped
//! making progress: a watchdog task on that runtime beats every second, and
//! a beat older than [`STALE_AFTER`] means the runtime is stuck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ops::health::Health;
use crate::ops::metrics;
use crate::ops::tasks::Tasks;

/// How often the watchdog beats.
pub const BEAT_INTERVAL: Duration = Duration::from_secs(1);
/// A heartbeat older than this means the runtime is wedged.
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// Shared lifecycle state; cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    draining: AtomicBool,
    /// Milliseconds since `epoch` at the last heartbeat.
    last_beat_ms: AtomicU64,
    health: Health,
}

/// Why the node is not ready, as the readiness endpoint reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// Shutting down: finishing in-flight requests.
    Draining,
    /// A health check fails: `"<check>: <error>"`.
    Unhealthy(String),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Draining => f.write_str("draining"),
            NotReady::Unhealthy(why) => write!(f, "health check failed: {why}"),
        }
    }
}

impl Lifecycle {
    /// A serving node whose readiness follows `health`.
    pub fn new(health: Health) -> Self {
        let lifecycle = Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                draining: AtomicBool::new(false),
                last_beat_ms: AtomicU64::new(0),
                health,
            }),
        };
        lifecycle.publish();
        lifecycle
    }

    /// Marks the node as draining: readiness turns false for good.
    pub fn set_draining(&self) {
        if !self.inner.draining.swap(true, Ordering::SeqCst) {
            tracing::info!("draining: readiness is now false");
        }
        self.publish();
    }

    /// True once [`Lifecycle::set_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }

    /// Ready for traffic, or why not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        let result = if self.is_draining() {
            Err(NotReady::Draining)
        } else if let Some(failure) = self.inner.health.failure() {
            Err(NotReady::Unhealthy(failure))
        } else {
            Ok(())
        };
        metrics::lifecycle(result.is_ok(), self.is_draining());
        result
    }

    /// Alive, or how long the runtime has not beaten.
    pub fn liveness(&self) -> Result<(), Duration> {
        let now_ms = self.millis_since_epoch(Instant::now());
        check_beat(now_ms, self.inner.last_beat_ms.load(Ordering::SeqCst))
    }

    /// Records a heartbeat now.
    pub fn beat(&self) {
        let now = self.millis_since_epoch(Instant::now());
        self.inner.last_beat_ms.store(now, Ordering::SeqCst);
    }

    /// Starts the watchdog as a task on the current (request) runtime.
    pub fn start_watchdog(&self, tasks: &Tasks) {
        let lifecycle = self.clone();
        lifecycle.beat();
        tasks.spawn("watchdog", move |mut stop| async move {
            let mut ticker = tokio::time::interval(BEAT_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.requested() => return,
                    _ = ticker.tick() => {}
                }
                lifecycle.beat();
                lifecycle.publish();
            }
        });
    }

    fn publish(&self) {
        let _ = self.readiness();
    }

    fn millis_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.epoch).as_millis())
            .unwrap_or(u64::MAX)
    }
}

/// Liveness from two readings of the same clock, in milliseconds.
fn check_beat(now_ms: u64, last_beat_ms: u64) -> Result<(), Duration> {
    let age = Duration::from_millis(now_ms.saturating_sub(last_beat_ms));
    if age > STALE_AFTER {
        Err(age)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_health_and_draining() {
        let health = Health::default();
        let lifecycle = Lifecycle::new(health.clone());
        assert_eq!(lifecycle.readiness(), Ok(()));
        health.set("file", Some("file exists".into()));
        assert_eq!(
            lifecycle.readiness(),
            Err(NotReady::Unhealthy("file: file exists".into()))
        );
        health.set("file", None);
        assert_eq!(lifecycle.readiness(), Ok(()));
        lifecycle.set_draining();
        assert!(lifecycle.is_draining());
        assert_eq!(lifecycle.readiness(), Err(NotReady::Draining));
    }

    #[test]
    fn a_stale_heartbeat_means_wedged() {
        assert_eq!(check_beat(10_000, 9_000), Ok(()));
        let stale = STALE_AFTER.as_millis() as u64 + 1;
        assert_eq!(check_beat(stale + 5, 5), Err(Duration::from_millis(stale)));
        // Readings taken out of order never count as stale.
        assert_eq!(check_beat(5, 10), Ok(()));
        let lifecycle = Lifecycle::new(Health::default());
        lifecycle.beat();
        assert_eq!(lifecycle.liveness(), Ok(()));
    }
}
