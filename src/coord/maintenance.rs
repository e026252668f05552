//! Read-only mode switched without a restart, cluster-wide: a flag object in the shared
//! storage, set by `wharf maintenance readonly on|off`, that every node reads once a second.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::storage::{StorageDriver, StorageError};

/// The flag: present means read-only.
pub const READONLY_PATH: &str = "/wharf/maintenance/readonly";

/// How often nodes read the flag.
pub const REFRESH: Duration = Duration::from_secs(1);

/// Turns the cluster's read-only mode on or off.
pub async fn set_read_only(driver: &dyn StorageDriver, on: bool) -> Result<(), StorageError> {
    if on {
        let since = chrono::Utc::now().to_rfc3339();
        driver.put_content(READONLY_PATH, Bytes::from(since)).await
    } else {
        match driver.delete(READONLY_PATH).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
}

/// Whether the flag is set now.
pub async fn read_only(driver: &dyn StorageDriver) -> Result<bool, StorageError> {
    Ok(driver.size_of(READONLY_PATH).await?.is_some())
}

/// Keeps `switch` equal to the flag, reading it every [`REFRESH`]; when storage cannot be
/// read, the last known state stands. Runs until dropped.
pub async fn watch(driver: Arc<dyn StorageDriver>, switch: Arc<AtomicBool>) {
    {
        loop {
            match read_only(driver.as_ref()).await {
                Ok(on) => {
                    if switch.swap(on, Ordering::Relaxed) != on {
                        tracing::info!(read_only = on, "cluster read-only mode switched");
                    }
                    crate::ops::cluster_status::read_only(on);
                }
                Err(e) => tracing::debug!(error = %e, "cannot read the read-only flag"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}
