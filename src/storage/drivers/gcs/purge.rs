//! Purging the scratch area: what nodes that died mid-request left behind (open upload
//! sessions, finished parts, claims), as S3 aborts old multipart uploads.

use std::time::SystemTime;

use super::client::Client;
use super::writer::sessions_prefix;
use crate::storage::StorageError;

/// Deletes the scratch objects last written before `cutoff`, cancelling the upload sessions
/// their markers name; returns how many were (or, with `dry_run`, would be) deleted.
pub(super) async fn purge_scratch(
    client: &Client,
    cutoff: SystemTime,
    dry_run: bool,
) -> Result<usize, StorageError> {
    let prefix = client.scratch_prefix();
    let (objects, _) = client.list(&prefix, false, "/").await?;
    let sessions = sessions_prefix(client);
    let mut purged = 0;
    for object in objects {
        if object.modified().is_none_or(|m| m >= cutoff) {
            continue;
        }
        let name = object.name.as_str();
        purged += 1;
        if dry_run {
            tracing::info!(
                name,
                "upload purge (dry run): would delete a stale scratch object"
            );
            continue;
        }
        if name.starts_with(&sessions) {
            // The marker's content is the session's id.
            match client.get_all(name, name).await {
                Ok(id) => {
                    let id = String::from_utf8_lossy(&id);
                    if let Err(e) = client.cancel_session(id.trim(), name).await {
                        tracing::warn!(name, error = %e, "upload purge: session not cancelled");
                    }
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        // Only the generation seen as stale: one written since is left alone.
        match client.delete(name, name, Some(object.generation())).await {
            Ok(()) => tracing::info!(name, "upload purge: deleted a stale scratch object"),
            Err(StorageError::NotFound(_)) | Err(StorageError::Busy(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(purged)
}
