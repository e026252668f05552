//! Object stores whose writers keep state on the service between requests (S3 multipart
//! uploads, GCS upload sessions and parts): what a node that died mid-request left there is
//! cleaned by upload purging.

use std::time::Duration;

use super::gcs::GcsDriver;
use super::s3::S3Driver;
use crate::storage::StorageError;

/// A driver with service-side write state to purge.
#[derive(Clone)]
pub enum StaleWrites {
    /// Multipart uploads.
    S3(S3Driver),
    /// Upload sessions, parts and claims in the scratch area.
    Gcs(GcsDriver),
}

impl StaleWrites {
    /// Removes the write state older than `age`; returns how many items were (or, with
    /// `dry_run`, would be) removed.
    pub async fn purge(&self, age: Duration, dry_run: bool) -> Result<usize, StorageError> {
        match self {
            StaleWrites::S3(s3) => s3.purge_multipart_uploads(age, dry_run).await,
            StaleWrites::Gcs(gcs) => gcs.purge_scratch(age, dry_run).await,
        }
    }
}
