//! Leases as objects in the shared storage, for clusters without Redis.
//!
//! A lease is a directory of numbered records, `<root>/<name>/<epoch>`, each created with
//! [`StorageDriver::put_content_if_absent`] (exclusive create on a filesystem, a conditional
//! `PutObject` on S3) and never rewritten. The highest epoch is the current record. Taking an
//! expired lease, renewing and releasing all create the next epoch: of nodes racing for it
//! exactly one succeeds, so renewal is compare-and-extend and takeover compare-and-swap
//! without any conditional delete. Epochs two behind the current one are deleted.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::coord::lease::{now_ms, LeaseBackend, LeaseError, LeaseRecord};
use crate::storage::StorageDriver;

/// Where Wharf keeps leases: beside distribution's tree, which it never walks.
pub const LEASES_ROOT: &str = "/wharf/leases";

/// Width of an epoch's name, so names sort like numbers.
const EPOCH_WIDTH: usize = 20;

/// Leases in the storage driver.
pub struct StorageLeases {
    driver: Arc<dyn StorageDriver>,
}

impl StorageLeases {
    /// Leases kept in `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>) -> Self {
        Self { driver }
    }

    fn dir(name: &str) -> String {
        format!("{LEASES_ROOT}/{name}")
    }

    fn epoch_path(name: &str, epoch: u64) -> String {
        format!("{}/{epoch:0EPOCH_WIDTH$}", Self::dir(name))
    }

    /// The highest epoch and its record; a record that vanished (deleted as old while we
    /// looked) means a newer one exists, so the listing is read again, a bounded number of times.
    async fn current(&self, name: &str) -> Result<Option<(u64, LeaseRecord)>, LeaseError> {
        for _ in 0..8 {
            let entries = match self.driver.list(&Self::dir(name)).await {
                Ok(v) => v,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let Some(epoch) = entries
                .iter()
                .filter(|n| n.len() == EPOCH_WIDTH)
                .filter_map(|n| n.parse::<u64>().ok())
                .max()
            else {
                return Ok(None);
            };
            match self
                .driver
                .get_content(&Self::epoch_path(name, epoch))
                .await
            {
                Ok(body) => {
                    // An unreadable record excludes nobody: it is treated as released.
                    let record = serde_json::from_slice(&body).unwrap_or(LeaseRecord {
                        holder: String::new(),
                        token: String::new(),
                        expires_ms: 0,
                    });
                    return Ok(Some((epoch, record)));
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(LeaseError::Storage(crate::storage::StorageError::Busy(
            Self::dir(name),
        )))
    }

    /// Creates epoch `epoch` holding `record`; false when another node created it first. A
    /// retried request that created it may report a conflict: the record read back decides.
    async fn create(
        &self,
        name: &str,
        epoch: u64,
        record: &LeaseRecord,
    ) -> Result<bool, LeaseError> {
        let path = Self::epoch_path(name, epoch);
        let body = Bytes::from(serde_json::to_vec(record).expect("lease record serializes"));
        if self.driver.put_content_if_absent(&path, body).await? {
            return Ok(true);
        }
        Ok(match self.driver.get_content(&path).await {
            Ok(stored) => serde_json::from_slice::<LeaseRecord>(&stored)
                .is_ok_and(|r| r.token == record.token && r.expires_ms == record.expires_ms),
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        })
    }

    /// Deletes epochs older than `epoch - 1` (best effort: leftovers are deleted next time).
    async fn prune(&self, name: &str, epoch: u64) {
        let Ok(entries) = self.driver.list(&Self::dir(name)).await else {
            return;
        };
        for old in entries
            .iter()
            .filter(|n| n.len() == EPOCH_WIDTH)
            .filter_map(|n| n.parse::<u64>().ok())
            .filter(|&e| e + 1 < epoch)
        {
            let _ = self.driver.delete(&Self::epoch_path(name, old)).await;
        }
    }

    /// Creates the epoch after `epoch` if the record at `epoch` is still `token`'s.
    async fn advance(
        &self,
        name: &str,
        epoch: u64,
        record: &LeaseRecord,
    ) -> Result<Option<u64>, LeaseError> {
        match self.current(name).await? {
            Some((current, stored)) if current == epoch && stored.token == record.token => {}
            _ => return Ok(None),
        }
        if self.create(name, epoch + 1, record).await? {
            self.prune(name, epoch + 1).await;
            Ok(Some(epoch + 1))
        } else {
            Ok(None)
        }
    }
}

#[async_trait::async_trait]
impl LeaseBackend for StorageLeases {
    async fn acquire(&self, name: &str, record: &LeaseRecord) -> Result<Option<u64>, LeaseError> {
        let next = match self.current(name).await? {
            None => 1,
            Some((epoch, stored)) if stored.expired(now_ms()) => epoch + 1,
            Some(_) => return Ok(None),
        };
        if self.create(name, next, record).await? {
            self.prune(name, next).await;
            Ok(Some(next))
        } else {
            Ok(None)
        }
    }

    async fn renew(
        &self,
        name: &str,
        version: u64,
        record: &LeaseRecord,
    ) -> Result<Option<u64>, LeaseError> {
        self.advance(name, version, record).await
    }

    async fn release(
        &self,
        name: &str,
        version: u64,
        record: &LeaseRecord,
    ) -> Result<(), LeaseError> {
        let released = LeaseRecord {
            expires_ms: 0,
            ..record.clone()
        };
        self.advance(name, version, &released).await.map(|_| ())
    }

    async fn holder(&self, name: &str) -> Result<Option<LeaseRecord>, LeaseError> {
        Ok(self
            .current(name)
            .await?
            .map(|(_, r)| r)
            .filter(|r| !r.expired(now_ms())))
    }

    fn kind(&self) -> &'static str {
        "storage"
    }

    async fn forget_idle(
        &self,
        prefix: &str,
        idle: Duration,
        limit: usize,
    ) -> Result<usize, LeaseError> {
        let names = match self.driver.list(LEASES_ROOT).await {
            Ok(v) => v,
            Err(e) if e.is_not_found() => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let idle_before = now_ms().saturating_sub(idle.as_millis() as u64);
        let mut forgotten = 0;
        for name in names.iter().filter(|n| n.starts_with(prefix)).take(limit) {
            // A holder renews long before its record expires, so a record that ended `idle`
            // ago has no holder; a node taking it while it is deleted costs one extra claim.
            let ended_long_ago = match self.current(name).await? {
                // A release writes no end time: the record's own write time is when it ended.
                Some((epoch, record)) if record.expires_ms == 0 => self
                    .driver
                    .stat(&Self::epoch_path(name, epoch))
                    .await
                    .ok()
                    .and_then(|info| info.modified)
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .is_some_and(|m| (m.as_millis() as u64) < idle_before),
                Some((_, record)) => record.expires_ms < idle_before,
                None => true,
            };
            if ended_long_ago && self.driver.delete(&Self::dir(name)).await.is_ok() {
                forgotten += 1;
            }
        }
        Ok(forgotten)
    }
}
