//! One fetch per object across the cluster: a fetch is claimed with a lease that expires
//! (Redis when configured, else the shared storage), so a node dying mid-fetch blocks others
//! only until its claim runs out. Without a reachable lease backend every node fetches on
//! its own: slower, never stuck.

use std::sync::Arc;
use std::time::Duration;

use crate::coord::{HeldLease, Lease, LeaseBackend};

/// How long a claim lasts without renewal; its holder renews it while fetching.
const CLAIM_TTL: Duration = Duration::from_secs(30);

/// Every claim's name starts with this.
pub const CLAIM_PREFIX: &str = "mirror-";

/// Claims that ended this long ago are deleted by the expiry sweep.
pub const CLAIM_IDLE: Duration = Duration::from_secs(600);

/// Most claims deleted per sweep.
const CLAIM_FORGET_BATCH: usize = 1000;

/// The outcome of claiming a fetch.
pub enum Claim {
    /// This request fetches; the lease (if the backend answered) is released when done.
    Mine(Option<HeldLease>),
    /// Someone else is fetching.
    Taken,
}

/// Claims of fetches, by object.
#[derive(Clone)]
pub struct Claims {
    backend: Option<Arc<dyn LeaseBackend>>,
}

impl Claims {
    /// Claims kept in `backend`; `None` claims every fetch for this request.
    pub fn new(backend: Option<Arc<dyn LeaseBackend>>) -> Self {
        Self { backend }
    }

    /// Tries to claim the fetch called `name`.
    pub async fn claim(&self, name: &str) -> Claim {
        let Some(backend) = &self.backend else {
            return Claim::Mine(None);
        };
        match Lease::new(backend.clone(), name, CLAIM_TTL)
            .try_acquire()
            .await
        {
            Ok(Some(held)) => Claim::Mine(Some(held)),
            Ok(None) => Claim::Taken,
            Err(e) => {
                tracing::warn!(claim = name, error = %e, "cannot claim a fetch; fetching without coordination");
                Claim::Mine(None)
            }
        }
    }
}

impl Claims {
    /// The token of the holding of the claim `name`, while someone holds it.
    pub async fn holder_token(&self, name: &str) -> Option<String> {
        let backend = self.backend.as_ref()?;
        match backend.holder(name).await {
            Ok(record) => record.map(|r| r.token),
            Err(e) => {
                tracing::debug!(claim = name, error = %e, "cannot see who holds a fetch claim");
                None
            }
        }
    }

    /// Deletes a bounded number of claims that ended long ago (in the shared storage each
    /// fetched object leaves one behind).
    pub async fn forget_idle(&self) -> usize {
        let Some(backend) = &self.backend else {
            return 0;
        };
        match backend
            .forget_idle(CLAIM_PREFIX, CLAIM_IDLE, CLAIM_FORGET_BATCH)
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot delete ended fetch claims");
                0
            }
        }
    }
}

/// Gives a claim up, if one was taken.
pub async fn release(held: Option<HeldLease>) {
    if let Some(held) = held {
        held.release().await;
    }
}
