//! Process-local storage for development and tests; lost on exit.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;

use crate::storage::{
    relative_path, ByteStream, FileInfo, FileWriter, StorageDriver, StorageError,
};

const READ_CHUNK: usize = 1 << 20;

#[derive(Clone)]
struct Entry {
    data: Arc<Vec<u8>>,
    modified: SystemTime,
}

type Files = Arc<Mutex<BTreeMap<String, Entry>>>;

/// Files in a map keyed by path; directories are implied by prefixes.
#[derive(Default)]
pub struct InMemoryDriver {
    files: Files,
}

impl InMemoryDriver {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check(path: &str) -> Result<String, StorageError> {
    relative_path(path)?;
    Ok(path.to_string())
}

fn dir_prefix(path: &str) -> String {
    if path == "/" {
        "/".to_string()
    } else {
        format!("{path}/")
    }
}

#[async_trait::async_trait]
impl StorageDriver for InMemoryDriver {
    fn name(&self) -> &'static str {
        "inmemory"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let path = check(path)?;
        let files = self.lock();
        let entry = files
            .get(&path)
            .ok_or(StorageError::NotFound(path.clone()))?;
        Ok(Bytes::copy_from_slice(&entry.data))
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        let path = check(path)?;
        let entry = Entry {
            data: Arc::new(content.to_vec()),
            modified: SystemTime::now(),
        };
        self.lock().insert(path, entry);
        Ok(())
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let path = check(path)?;
        let mut files = self.lock();
        if files.contains_key(&path) {
            return Ok(false);
        }
        let entry = Entry {
            data: Arc::new(content.to_vec()),
            modified: SystemTime::now(),
        };
        files.insert(path, entry);
        Ok(true)
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let path = check(path)?;
        let data = self
            .lock()
            .get(&path)
            .map(|e| e.data.clone())
            .ok_or(StorageError::NotFound(path.clone()))?;
        let size = data.len() as u64;
        if offset > size {
            return Err(StorageError::InvalidOffset { path, offset, size });
        }
        let end = len.map_or(size, |l| (offset + l).min(size));
        let (start, end) = (offset as usize, end as usize);
        let chunks = (start..end).step_by(READ_CHUNK).map(move |at| {
            let to = (at + READ_CHUNK).min(end);
            Ok(Bytes::copy_from_slice(&data[at..to]))
        });
        Ok(Box::pin(futures_util::stream::iter(
            chunks.collect::<Vec<_>>(),
        )))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let path = check(path)?;
        let files = self.lock();
        if let Some(e) = files.get(&path) {
            return Ok(FileInfo {
                size: e.data.len() as u64,
                is_dir: false,
                modified: Some(e.modified),
            });
        }
        let prefix = dir_prefix(&path);
        match files.range(prefix.clone()..).next() {
            Some((k, _)) if k.starts_with(&prefix) => Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            }),
            _ => Err(StorageError::NotFound(path)),
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let path = check(path)?;
        let prefix = dir_prefix(&path);
        let files = self.lock();
        let mut names: Vec<String> = Vec::new();
        for (k, _) in files.range(prefix.clone()..) {
            let Some(rest) = k.strip_prefix(&prefix) else {
                break;
            };
            let child = rest.split('/').next().unwrap_or(rest);
            if names.last().map(String::as_str) != Some(child) {
                names.push(child.to_string());
            }
        }
        if names.is_empty() {
            return Err(StorageError::NotFound(path));
        }
        Ok(names)
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (from, to) = (check(from)?, check(to)?);
        let mut files = self.lock();
        let entry = files.remove(&from).ok_or(StorageError::NotFound(from))?;
        files.insert(to, entry);
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let path = check(path)?;
        let prefix = dir_prefix(&path);
        let mut files = self.lock();
        let mut doomed: Vec<String> = files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        if files.contains_key(&path) {
            doomed.push(path.clone());
        }
        if doomed.is_empty() {
            return Err(StorageError::NotFound(path));
        }
        for k in doomed {
            files.remove(&k);
        }
        Ok(())
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        let path = check(path)?;
        let (data, base) = {
            let files = self.lock();
            let existing = files.get(&path);
            let size = existing.map_or(0, |e| e.data.len() as u64);
            if existing.is_none() && offset > 0 {
                return Err(StorageError::NotFound(path));
            }
            if size != offset {
                return Err(StorageError::OffsetMismatch {
                    path,
                    expected: offset,
                    actual: size,
                });
            }
            (
                existing.map_or_else(Vec::new, |e| e.data.to_vec()),
                existing.map(|e| e.data.clone()),
            )
        };
        Ok(Box::new(MemWriter {
            files: self.files.clone(),
            path,
            data,
            base: Some(base),
        }))
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(MemWriter {
            files: self.files.clone(),
            path: check(path)?,
            data: Vec::new(),
            base: None,
        }))
    }
}

struct MemWriter {
    files: Files,
    path: String,
    data: Vec<u8>,
    /// For appends: the content the writer started from (`None`: no file). Commit succeeds
    /// only if it is still the stored one, so concurrent writers exclude each other.
    base: Option<Option<Arc<Vec<u8>>>>,
}

impl MemWriter {
    /// Publishes at `path`, after checking an append's starting point is still what is stored.
    fn publish(self, to: Option<String>) -> Result<(), StorageError> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = &self.base {
            let current = files.get(&self.path).map(|e| &e.data);
            let unchanged = match (base, current) {
                (None, None) => true,
                (Some(b), Some(c)) => Arc::ptr_eq(b, c),
                _ => false,
            };
            if !unchanged {
                return Err(StorageError::Busy(self.path));
            }
        }
        let entry = Entry {
            data: Arc::new(self.data),
            modified: SystemTime::now(),
        };
        if let Some(to) = to {
            files.remove(&self.path);
            files.insert(to, entry);
        } else {
            files.insert(self.path, entry);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl FileWriter for MemWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.data.extend_from_slice(&data);
        Ok(())
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        (*self).publish(None)
    }

    async fn commit_to(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let to = check(to)?;
        if self.base.is_none() {
            return Err(StorageError::InvalidPath(to));
        }
        (*self).publish(Some(to))
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn behaves_like_a_tree() {
        let d = InMemoryDriver::new();
        d.put_content("/r/a/x", Bytes::from_static(b"1"))
            .await
            .unwrap();
        d.put_content("/r/b", Bytes::from_static(b"2"))
            .await
            .unwrap();
        assert_eq!(d.list("/r").await.unwrap(), vec!["a", "b"]);
        assert!(d.stat("/r/a").await.unwrap().is_dir);
        let mut w = d.writer("/u", 0).await.unwrap();
        w.write(Bytes::from_static(b"hello")).await.unwrap();
        w.commit().await.unwrap();
        assert!(matches!(
            d.writer("/u", 2).await,
            Err(StorageError::OffsetMismatch { actual: 5, .. })
        ));
        // Two writers from the same point: the second to commit loses.
        let mut a = d.writer("/u", 5).await.unwrap();
        let mut b = d.writer("/u", 5).await.unwrap();
        a.write(Bytes::from_static(b"!")).await.unwrap();
        b.write(Bytes::from_static(b"?")).await.unwrap();
        a.commit().await.unwrap();
        assert!(matches!(b.commit().await, Err(StorageError::Busy(_))));
        assert_eq!(d.get_content("/u").await.unwrap(), "hello!");
        let w = d.writer("/u", 6).await.unwrap();
        w.commit_to("/r/c").await.unwrap();
        assert_eq!(d.get_content("/r/c").await.unwrap(), "hello!");
        assert!(d.stat("/u").await.unwrap_err().is_not_found());
        d.delete("/r").await.unwrap();
        assert!(d.stat("/r").await.unwrap_err().is_not_found());
    }
}
