//! Deleting many objects of an object store at once: each name's delete run several at a time
//! (one already gone counts as deleted), and the object names of a folder's known files,
//! checked to lie in the folder.

use std::future::Future;

use futures_util::StreamExt;

use crate::storage::StorageError;

/// Deletes in flight at once.
pub(crate) const DELETE_CONCURRENCY: usize = 16;

/// Runs `delete` for every item, several at once; one already gone (deleted meanwhile by
/// someone else) counts as deleted. Every delete runs; the first failure is returned.
pub(crate) async fn delete_each<T, F, Fut>(
    items: impl IntoIterator<Item = T>,
    delete: F,
) -> Result<(), StorageError>
where
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), StorageError>>,
{
    let results: Vec<Result<(), StorageError>> = futures_util::stream::iter(items)
        .map(|item| {
            let deleted = delete(item);
            async move {
                match deleted.await {
                    Err(StorageError::NotFound(_)) => Ok(()),
                    other => other,
                }
            }
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect()
}

/// The object names (`name_of`) of `files`, each of which must lie in the folder whose names
/// start with `prefix`: a caller's mistake must not reach elsewhere.
pub(crate) fn names_in_folder(
    prefix: &str,
    files: &[String],
    name_of: impl Fn(&str) -> Result<String, StorageError>,
) -> Result<Vec<String>, StorageError> {
    files
        .iter()
        .map(|file| {
            let name = name_of(file)?;
            if name.starts_with(prefix) {
                Ok(name)
            } else {
                Err(StorageError::InvalidPath(file.clone()))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_delete_runs_and_a_missing_object_is_deleted() {
        let ran = std::sync::Mutex::new(Vec::new());
        let result = delete_each(0..40, |i| {
            ran.lock().unwrap().push(i);
            async move {
                match i {
                    7 => Err(StorageError::NotFound(i.to_string())),
                    30 => Err(StorageError::InvalidPath(i.to_string())),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert!(matches!(result, Err(StorageError::InvalidPath(p)) if p == "30"));
        assert_eq!(ran.lock().unwrap().len(), 40);
        assert!(delete_each(0..3, |_| async {
            Err(StorageError::NotFound(String::new()))
        })
        .await
        .is_ok());
    }

    #[test]
    fn names_outside_the_folder_are_refused() {
        let name_of = |p: &str| Ok(format!("root{p}"));
        let files = ["/a/u/data".to_string(), "/a/u/startedat".to_string()];
        assert_eq!(
            names_in_folder("root/a/u/", &files, name_of).unwrap(),
            vec!["root/a/u/data", "root/a/u/startedat"]
        );
        let stray = ["/a/u/data".to_string(), "/a/u2/data".to_string()];
        assert!(matches!(
            names_in_folder("root/a/u/", &stray, name_of),
            Err(StorageError::InvalidPath(p)) if p == "/a/u2/data"
        ));
    }
}
