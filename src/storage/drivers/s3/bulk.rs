//! Deleting many trees at once (offline garbage collection): the trees are grouped by the
//! folder that holds them, each folder is listed once (several listings in flight), and the
//! keys found are removed by `DeleteObjects`, up to 1000 per request. Deleting 10,000 blobs
//! one by one costs three requests each; this costs a listing per folder and one request per
//! thousand keys.
//!
//! Multipart uploads still open under a deleted tree are not looked for here (an offline
//! collection runs with no writer); upload purging aborts them once they are old enough.

use std::collections::{BTreeMap, HashSet};

use futures_util::StreamExt as _;

use super::client::Inner;
use crate::storage::StorageError;

/// Folder listings in flight at once.
const LISTINGS: usize = 16;

/// The folder key (ending in `/`) holding `key`, or `""` at the bucket's top.
fn folder_of(key: &str) -> &str {
    key.rfind('/').map_or("", |i| &key[..=i])
}

/// Whether `key` is the tree `root` itself (a file) or under it, for some root in `roots`.
fn in_some_tree(key: &str, roots: &HashSet<&str>) -> bool {
    if roots.contains(key) {
        return true;
    }
    key.match_indices('/')
        .any(|(i, _)| roots.contains(&key[..i]))
}

/// Deletes every file or tree in `paths` (missing ones are skipped).
pub(super) async fn delete_trees(s3: &Inner, paths: &[String]) -> Result<(), StorageError> {
    let keys: Vec<String> = paths.iter().map(|p| s3.key(p)).collect::<Result<_, _>>()?;
    let mut folders: BTreeMap<&str, HashSet<&str>> = BTreeMap::new();
    for key in &keys {
        folders
            .entry(folder_of(key))
            .or_default()
            .insert(key.as_str());
    }
    let listings: Vec<_> = folders
        .iter()
        .map(|(folder, roots)| async move {
            let (listed, _) = s3.list_objects(folder, folder, None).await?;
            Ok::<Vec<String>, StorageError>(
                listed
                    .into_iter()
                    .filter(|k| in_some_tree(k, roots))
                    .collect(),
            )
        })
        .collect();
    let mut listings = futures_util::stream::iter(listings).buffer_unordered(LISTINGS);
    let mut doomed = Vec::new();
    while let Some(found) = listings.next().await {
        doomed.extend(found?);
    }
    if doomed.is_empty() {
        return Ok(());
    }
    s3.delete_objects(&doomed, paths.first().map_or("", String::as_str))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_matched_by_whole_components() {
        let roots: HashSet<&str> = ["v2/blobs/sha256/ab/ab12", "v2/x/file"].into();
        assert!(in_some_tree("v2/blobs/sha256/ab/ab12/data", &roots));
        assert!(in_some_tree("v2/x/file", &roots));
        // A sibling whose name merely starts with a root's stays.
        assert!(!in_some_tree("v2/blobs/sha256/ab/ab123/data", &roots));
        assert!(!in_some_tree("v2/x/file2", &roots));
        assert_eq!(folder_of("v2/blobs/sha256/ab/ab12"), "v2/blobs/sha256/ab/");
        assert_eq!(folder_of("top"), "");
    }
}
