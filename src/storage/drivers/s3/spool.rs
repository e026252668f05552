//! Bytes waiting to become a part: in memory up to [`IN_MEMORY`], then in a temporary file, so
//! that a node holds little memory per open upload whatever `chunksize` is (a push storm of
//! many uploads would otherwise hold a whole part each).

use std::path::PathBuf;

use aws_sdk_s3::primitives::{ByteStream as SdkStream, Length};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use crate::storage::StorageError;

/// Bytes kept in memory before they go to a file.
pub(super) const IN_MEMORY: usize = 256 << 10;

/// A temporary file, removed when dropped.
struct SpoolFile {
    path: PathBuf,
    file: tokio::fs::File,
    /// Bytes at the start of the file already taken.
    start: u64,
    /// Bytes written to the file.
    end: u64,
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bytes not yet stored, in order.
#[derive(Default)]
pub(super) struct Spool {
    memory: BytesMut,
    file: Option<SpoolFile>,
}

/// What a part is uploaded from: bytes in memory, or a range of the spool's file (valid until
/// the spool changes).
pub(super) enum PartBody {
    /// In memory.
    Memory(Bytes),
    /// `len` bytes of the file at `path` from `offset`.
    File {
        /// The spool's file.
        path: PathBuf,
        /// Where the part starts.
        offset: u64,
        /// Its length.
        len: u64,
    },
}

impl PartBody {
    /// Bytes in the part.
    pub fn len(&self) -> u64 {
        match self {
            PartBody::Memory(b) => b.len() as u64,
            PartBody::File { len, .. } => *len,
        }
    }

    /// The part as a request body, which the SDK can send again on a retry.
    pub async fn stream(&self, path: &str) -> Result<SdkStream, StorageError> {
        match self {
            PartBody::Memory(b) => Ok(SdkStream::from(b.clone())),
            PartBody::File {
                path: file,
                offset,
                len,
            } => SdkStream::read_from()
                .path(file)
                .offset(*offset)
                .length(Length::Exact(*len))
                .build()
                .await
                .map_err(|e| spool_error(path, std::io::Error::other(e.to_string()))),
        }
    }
}

/// A failure of the spool's file.
fn spool_error(path: &str, source: std::io::Error) -> StorageError {
    StorageError::Io {
        op: "spool",
        path: path.to_string(),
        source,
    }
}

impl Spool {
    /// Bytes held.
    pub fn len(&self) -> u64 {
        match &self.file {
            Some(f) => f.end - f.start,
            None => self.memory.len() as u64,
        }
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `data` after what is held (`path`: the driver path, for errors).
    pub async fn push(&mut self, data: &[u8], path: &str) -> Result<(), StorageError> {
        if self.file.is_none() && self.memory.len() + data.len() <= IN_MEMORY {
            self.memory.extend_from_slice(data);
            return Ok(());
        }
        if self.file.is_none() {
            let name = format!("wharf-s3-part-{}", uuid::Uuid::new_v4());
            let file_path = std::env::temp_dir().join(name);
            let file = tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&file_path)
                .await
                .map_err(|e| spool_error(path, e))?;
            self.file = Some(SpoolFile {
                path: file_path,
                file,
                start: 0,
                end: 0,
            });
            let held = std::mem::take(&mut self.memory);
            self.write_file(&held, path).await?;
        }
        self.write_file(data, path).await
    }

    async fn write_file(&mut self, data: &[u8], path: &str) -> Result<(), StorageError> {
        let f = self.file.as_mut().expect("a file");
        f.file
            .write_all(data)
            .await
            .map_err(|e| spool_error(path, e))?;
        f.end += data.len() as u64;
        Ok(())
    }

    /// Puts `start` before what is held.
    pub async fn prepend(&mut self, start: BytesMut, path: &str) -> Result<(), StorageError> {
        let mut old = std::mem::take(self);
        self.push(&start, path).await?;
        drop(start);
        // Copied over in pieces: the bytes held may be a whole part.
        while !old.is_empty() {
            let piece = old.read_front(IN_MEMORY as u64, path).await?;
            self.push(&piece, path).await?;
            old.consume(piece.len() as u64, path).await?;
        }
        Ok(())
    }

    /// Up to `n` bytes from the front, read into memory.
    async fn read_front(&mut self, n: u64, path: &str) -> Result<Bytes, StorageError> {
        use tokio::io::AsyncReadExt as _;
        let n = n.min(self.len()) as usize;
        match &mut self.file {
            None => Ok(Bytes::copy_from_slice(&self.memory[..n])),
            Some(f) => {
                f.file.flush().await.map_err(|e| spool_error(path, e))?;
                let mut reader = tokio::fs::File::open(&f.path)
                    .await
                    .map_err(|e| spool_error(path, e))?;
                reader
                    .seek(std::io::SeekFrom::Start(f.start))
                    .await
                    .map_err(|e| spool_error(path, e))?;
                let mut buf = vec![0; n];
                reader
                    .read_exact(&mut buf)
                    .await
                    .map_err(|e| spool_error(path, e))?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// The first `n` bytes held, as a part body; they stay held until [`Self::consume`].
    pub async fn front(&mut self, n: u64, path: &str) -> Result<PartBody, StorageError> {
        let n = n.min(self.len());
        match &mut self.file {
            None => Ok(PartBody::Memory(Bytes::copy_from_slice(
                &self.memory[..n as usize],
            ))),
            Some(f) => {
                // The SDK reads the file by its path: what was written must be there.
                f.file.flush().await.map_err(|e| spool_error(path, e))?;
                Ok(PartBody::File {
                    path: f.path.clone(),
                    offset: f.start,
                    len: n,
                })
            }
        }
    }

    /// Drops the first `n` bytes held (stored now).
    pub async fn consume(&mut self, n: u64, path: &str) -> Result<(), StorageError> {
        match &mut self.file {
            None => self.memory.advance((n as usize).min(self.memory.len())),
            Some(f) => {
                f.start = (f.start + n).min(f.end);
                if f.start == f.end {
                    // Emptied: the file is used again from its start.
                    f.file.set_len(0).await.map_err(|e| spool_error(path, e))?;
                    f.file
                        .seek(std::io::SeekFrom::Start(0))
                        .await
                        .map_err(|e| spool_error(path, e))?;
                    f.start = 0;
                    f.end = 0;
                }
            }
        }
        Ok(())
    }

    /// Drops everything held, and the file.
    pub fn clear(&mut self) {
        self.memory = BytesMut::new();
        self.file = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(spool: &mut Spool) -> Vec<u8> {
        let n = spool.len();
        spool.read_front(n, "/t").await.unwrap().to_vec()
    }

    #[tokio::test]
    async fn spills_to_a_file_and_keeps_the_order() {
        let mut spool = Spool::default();
        let a: Vec<u8> = (0..IN_MEMORY as u32 + 10).map(|i| i as u8).collect();
        spool.push(&a[..100], "/t").await.unwrap();
        assert!(spool.file.is_none());
        spool.push(&a[100..], "/t").await.unwrap();
        assert!(spool.file.is_some());
        assert_eq!(spool.len(), a.len() as u64);
        assert_eq!(spool.front(10, "/t").await.unwrap().len(), 10);
        spool.consume(10, "/t").await.unwrap();
        assert_eq!(all(&mut spool).await, a[10..].to_vec());
        spool
            .prepend(BytesMut::from(&b"head"[..]), "/t")
            .await
            .unwrap();
        let mut want = b"head".to_vec();
        want.extend_from_slice(&a[10..]);
        assert_eq!(all(&mut spool).await, want);
        let n = spool.len();
        spool.consume(n, "/t").await.unwrap();
        assert!(spool.is_empty());
        spool.push(b"again", "/t").await.unwrap();
        assert_eq!(all(&mut spool).await, b"again".to_vec());
        let file = spool.file.as_ref().unwrap().path.clone();
        spool.clear();
        assert!(!file.exists());
    }
}
