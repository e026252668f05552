//! Aborting multipart uploads nothing will finish: those of crashed or abandoned writers, and
//! the open parts of upload sessions old enough to be purged.

use std::time::SystemTime;

use super::client::Inner;
use crate::storage::StorageError;

/// Aborts the multipart uploads under the root started before `cutoff`; returns how many were
/// (or, with `dry_run`, would be) aborted.
pub(super) async fn purge_multipart_uploads(
    s3: &Inner,
    cutoff: SystemTime,
    dry_run: bool,
) -> Result<usize, StorageError> {
    let mut stale = Vec::new();
    // Only the registry's tree: with no `rootdirectory` the bucket may hold other
    // applications' multipart uploads.
    let prefix = format!("{}docker/registry/", s3.root);
    let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
    loop {
        let page = s3
            .list_uploads(&prefix, &prefix, key_marker.clone(), id_marker.clone())
            .await?;
        for upload in page.uploads() {
            let started = upload
                .initiated()
                .and_then(|t| SystemTime::try_from(*t).ok());
            if let (Some(key), Some(id), Some(started)) =
                (upload.key(), upload.upload_id(), started)
            {
                if started < cutoff {
                    stale.push((key.to_string(), id.to_string()));
                }
            }
        }
        if !page.is_truncated().unwrap_or(false) {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        id_marker = page.next_upload_id_marker().map(str::to_string);
        if key_marker.is_none() && id_marker.is_none() {
            break;
        }
    }
    for (key, id) in &stale {
        if dry_run {
            tracing::info!(key, upload_id = id, "upload purge (dry run): would abort");
        } else {
            s3.abort(key, id).await?;
            tracing::info!(
                key,
                upload_id = id,
                "upload purge: aborted a stale multipart upload"
            );
        }
    }
    Ok(stale.len())
}
