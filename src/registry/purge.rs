//! Upload purging (`storage.maintenance.uploadpurging`): sessions whose
//! `startedat` is older than the configured age are deleted.

use std::time::Duration;

use crate::registry::error::Result;
use crate::registry::layout;
use crate::registry::Registry;

/// What one purge pass found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PurgeReport {
    /// Sessions examined.
    pub examined: usize,
    /// Sessions deleted (or that would be, on a dry run), as `repo/uuid`.
    pub purged: Vec<String>,
}

impl Registry {
    /// Deletes upload sessions started more than `age` ago. Sessions without a
    /// readable `startedat` are left alone, as distribution does.
    pub async fn purge_uploads(&self, age: Duration, dry_run: bool) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        for repo in self.directories_holding("_uploads").await? {
            let dir = format!("{}/_uploads", layout::repository_dir(&repo));
            for uuid in self.list_or_empty(&dir).await? {
                report.examined += 1;
                let started = match self
                    .driver
                    .get_content(&layout::upload_started_at(&repo, &uuid))
                    .await
                {
                    Ok(b) => b,
                    Err(_) => continue,
                };
                let Ok(started) =
                    chrono::DateTime::parse_from_rfc3339(String::from_utf8_lossy(&started).trim())
                else {
                    continue;
                };
                if started >= cutoff {
                    continue;
                }
                report.purged.push(format!("{repo}/{uuid}"));
                if !dry_run {
                    if let Err(e) = self.driver.delete(&layout::upload_dir(&repo, &uuid)).await {
                        if !e.is_not_found() {
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use crate::registry::layout;
    use crate::registry::reference::RepositoryName;
    use crate::registry::{Registry, RegistryOptions};
    use crate::storage::drivers::inmemory::InMemoryDriver;
    use crate::storage::StorageDriver;

    #[tokio::test]
    async fn purges_only_old_sessions() {
        let driver = Arc::new(InMemoryDriver::new());
        let reg = Registry::new(driver.clone(), RegistryOptions::default(), b"k".to_vec());
        let repo = RepositoryName::parse("a/b").unwrap();
        let fresh = reg
            .start_upload(&repo, crate::digest::Algorithm::Sha256)
            .await
            .unwrap();
        driver
            .put_content(
                &layout::upload_started_at("a/b", "old"),
                Bytes::from_static(b"2020-01-01T00:00:00Z"),
            )
            .await
            .unwrap();
        driver
            .put_content(
                &layout::upload_data("a/b", "nostart"),
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap();
        let dry = reg
            .purge_uploads(std::time::Duration::from_secs(3600), true)
            .await
            .unwrap();
        assert_eq!(dry.purged, vec!["a/b/old".to_string()]);
        assert!(driver.stat(&layout::upload_dir("a/b", "old")).await.is_ok());
        let done = reg
            .purge_uploads(std::time::Duration::from_secs(3600), false)
            .await
            .unwrap();
        assert_eq!(done.examined, 3);
        assert!(driver
            .stat(&layout::upload_dir("a/b", "old"))
            .await
            .unwrap_err()
            .is_not_found());
        assert!(driver
            .stat(&layout::upload_dir("a/b", &fresh.uuid))
            .await
            .is_ok());
        assert!(driver
            .stat(&layout::upload_dir("a/b", "nostart"))
            .await
            .is_ok());
    }
}
