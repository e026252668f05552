//! Byte storage behind one trait; drivers know nothing about registries.

pub mod drivers;
pub mod instrumented;

use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;

/// A stream of file contents.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// Bytes of a file open on the local machine, which a sender may copy to a socket in the
/// kernel (`sendfile`) instead of reading them into memory first.
pub struct FileRegion {
    /// The open file.
    pub file: std::sync::Arc<std::fs::File>,
    /// First byte.
    pub offset: u64,
    /// Bytes from `offset`, all within the file when it was opened.
    pub len: u64,
}

/// What can go wrong below the registry.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// Nothing stored at that path.
    #[error("path not found: {0}")]
    NotFound(String),
    /// A path that no driver may touch (relative, `..`, empty component).
    #[error("invalid path: {0:?}")]
    InvalidPath(String),
    /// An append did not line up with what is stored: the caller's idea of the file's size
    /// is stale (or another writer got there first).
    #[error("{path}: stored size is {actual}, not the expected offset {expected}")]
    OffsetMismatch {
        /// Path being appended to.
        path: String,
        /// Offset the caller expected.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// Another writer holds the file open for appending.
    #[error("{0}: another writer is appending to it")]
    Busy(String),
    /// The file no longer holds what its writers recorded (a concurrent writer replaced part
    /// of it): it must not be published.
    #[error("{0}: changed by a concurrent writer")]
    Changed(String),
    /// A read beyond the end of a file.
    #[error("{path}: offset {offset} is past the end ({size} bytes)")]
    InvalidOffset {
        /// Path being read.
        path: String,
        /// Requested offset.
        offset: u64,
        /// File size.
        size: u64,
    },
    /// The backend did not answer, or kept refusing for load (throttling, 503), through
    /// every retry the driver allows: the request may succeed later.
    #[error("{op} {path}: storage backend unavailable: {reason}")]
    Unavailable {
        /// The operation that failed.
        op: &'static str,
        /// The path involved.
        path: String,
        /// What the backend (or the connection to it) said last.
        reason: String,
    },
    /// Disk or backend failure.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The path involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error, turning `NotFound` into [`StorageError::NotFound`].
    pub fn io(op: &'static str, path: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            Self::NotFound(path.to_string())
        } else {
            Self::Io {
                op,
                path: path.to_string(),
                source,
            }
        }
    }

    /// True for [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound(_))
    }
}

/// Result of [`StorageDriver::stat`].
#[derive(Debug, Clone)]
pub struct FileInfo {
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// True for a directory (a prefix, on object stores).
    pub is_dir: bool,
    /// Last modification, when the backend knows it.
    pub modified: Option<SystemTime>,
}

/// A storage backend addressed by absolute `/`-separated paths.
///
/// Writes through `put_content`, `move_to` and a committed [`FileWriter`] are
/// atomic (readers see the old or the new content, never a torn file) and
/// durable when they return; the `_lazy` variants are atomic only.
/// One level of a breadth-first walk below `path`: each folder of `level` (relative to
/// `path`) with its entries, up to 16 listings at once; a folder gone meanwhile holds none.
async fn list_level<D: StorageDriver + ?Sized>(
    driver: &D,
    path: &str,
    level: Vec<String>,
) -> Vec<(String, Result<Vec<(String, bool)>, StorageError>)> {
    use futures_util::StreamExt;
    futures_util::stream::iter(level.into_iter().map(|prefix| {
        let dir = if prefix.is_empty() {
            path.to_string()
        } else {
            format!("{path}/{prefix}")
        };
        async move {
            let entries = match driver.list_entries(&dir).await {
                Err(e) if e.is_not_found() => Ok(Vec::new()),
                other => other,
            };
            (prefix, entries)
        }
    }))
    .buffer_unordered(16)
    .collect()
    .await
}

#[async_trait::async_trait]
pub trait StorageDriver: Send + Sync + 'static {
    /// Driver name, as in the config (`filesystem`, `inmemory`, ...).
    fn name(&self) -> &'static str;
    /// Reads a whole (small) file.
    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError>;
    /// Atomically replaces a file.
    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError>;
    /// Atomically replaces a file without waiting for it to be durable: for
    /// bookkeeping that a crash may lose harmlessly, or that [`Self::sync`]
    /// makes durable later. Default: [`Self::put_content`].
    async fn put_content_lazy(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.put_content(path, content).await
    }
    /// Makes files and directories written lazily durable, with the entries
    /// of the directories named. Default: nothing, for backends whose writes
    /// are durable when acknowledged.
    async fn sync(&self, _paths: &[String]) -> Result<(), StorageError> {
        Ok(())
    }
    /// Creates a file only if nothing is stored at `path`, atomically: of writers racing
    /// for one path exactly one gets `true`, the others `false` and the winner's
    /// content stays. Durable when it returns. The primitive of cluster leases.
    async fn put_content_if_absent(&self, path: &str, content: Bytes)
        -> Result<bool, StorageError>;
    /// Streams `len` bytes (to the end when `None`) from `offset`.
    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError>;
    /// Size and kind of a path.
    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError>;
    /// Size and modification time of a sealed file: one written whole and never appended to
    /// (blob data, links, manifests, markers). Backends that keep appends apart from the file
    /// (S3) answer from the stored file alone: uploads open on its key are other writers'
    /// copies of the same content, still under way. `NotFound` for a directory. Default:
    /// [`Self::stat`].
    async fn stat_sealed(&self, path: &str) -> Result<FileInfo, StorageError> {
        match self.stat(path).await {
            Ok(info) if info.is_dir => Err(StorageError::NotFound(path.to_string())),
            other => other,
        }
    }
    /// Size of the sealed file at `path` ([`Self::stat_sealed`]), `None` when there is none.
    async fn size_of(&self, path: &str) -> Result<Option<u64>, StorageError> {
        match self.stat_sealed(path).await {
            Ok(info) => Ok(Some(info.size)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }
    /// Streams `len` bytes (to the end when `None`) from `offset` of a sealed file
    /// ([`Self::stat_sealed`]). Default: [`Self::reader`].
    async fn sealed_reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.reader(path, offset, len).await
    }
    /// Names of the direct children of a directory.
    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError>;
    /// Direct children with whether each is a directory; drivers that learn
    /// this from the listing itself override the one-stat-per-child default.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        let mut out = Vec::new();
        for name in self.list(path).await? {
            let child = if path == "/" {
                format!("/{name}")
            } else {
                format!("{path}/{name}")
            };
            let is_dir = self.stat(&child).await.is_ok_and(|i| i.is_dir);
            out.push((name, is_dir));
        }
        Ok(out)
    }
    /// Atomically moves a file, replacing the destination.
    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Deletes a file or a whole directory tree.
    async fn delete(&self, path: &str) -> Result<(), StorageError>;
    /// Deletes like [`Self::delete`] without waiting for the removal to be
    /// durable: for clean-up that may harmlessly come back after a crash.
    /// Default: [`Self::delete`].
    async fn delete_lazy(&self, path: &str) -> Result<(), StorageError> {
        self.delete(path).await
    }
    /// Deletes the tree at `dir` like [`Self::delete_lazy`], given that its files are `files`
    /// (and what the backend itself keeps beside them): backends without directories delete
    /// just those, without listing the tree. Missing files are skipped. Default:
    /// [`Self::delete_lazy`] of `dir`.
    async fn delete_known_tree(&self, dir: &str, files: &[String]) -> Result<(), StorageError> {
        let _ = files;
        match self.delete_lazy(dir).await {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        }
    }
    /// Deletes every file or directory tree in `paths`; missing ones are skipped. For bulk
    /// clean-up (offline garbage collection). Default: [`Self::delete`] on each, several at once.
    async fn delete_many(&self, paths: &[String]) -> Result<(), StorageError> {
        use futures_util::StreamExt as _;
        let deletes: Vec<_> = paths.iter().map(|p| self.delete(p)).collect();
        let mut results = futures_util::stream::iter(deletes).buffer_unordered(16);
        while let Some(result) = results.next().await {
            match result {
                Ok(()) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    /// Opens `path` for appending at `offset`, which must be exactly the stored size
    /// ([`StorageError::OffsetMismatch`] otherwise; offset 0 creates the file). Stored bytes
    /// are never rewritten: an append only adds after them, and a writer that is cancelled or
    /// dropped leaves the file as it found it, except on backends that store an append in
    /// parts as it arrives (S3, as distribution does), where whole parts it already stored
    /// stay appended, in order: the first bytes written through it, never other ones. Writers of one path exclude each other: while
    /// one is open another fails to open or to commit ([`StorageError::Busy`] or
    /// [`StorageError::OffsetMismatch`]), so what a committed writer reports as the file's
    /// first `size()` bytes is what is stored.
    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError>;
    /// [`Self::writer`], given the note the file's last writer returned
    /// ([`FileWriter::commit_noted`]): a backend may open the file with fewer reads, checking
    /// the note against storage and ignoring it when it no longer holds. Default: ignored.
    async fn writer_noted(
        &self,
        path: &str,
        offset: u64,
        note: Option<&str>,
    ) -> Result<Box<dyn FileWriter>, StorageError> {
        let _ = note;
        self.writer(path, offset).await
    }
    /// Creates `path` as an empty file open for appends, before any bytes arrive, where the
    /// backend's other writers expect one (S3: distribution's open multipart upload, which a
    /// registry:2 node looks for when it continues an upload). Default: nothing, the first
    /// [`Self::writer`] at offset 0 creates the file.
    async fn prepare_append(&self, _path: &str) -> Result<(), StorageError> {
        Ok(())
    }
    /// [`Self::prepare_append`], returning a note for the first
    /// [`Self::writer_noted`] of the file when the backend keeps one. Default: none.
    async fn prepare_append_noted(&self, path: &str) -> Result<Option<String>, StorageError> {
        self.prepare_append(path).await.map(|()| None)
    }
    /// Whether a file being appended through [`Self::writer`] can be read, up to its current
    /// size, while it is written (a filesystem); false where appended bytes become readable
    /// only once the file is complete (S3's multipart uploads, Azure's staged blocks).
    fn reads_growing_files(&self) -> bool {
        false
    }
    /// Opens a new file whose content appears at `path` only on commit, all
    /// at once; cancel (or a crash) leaves nothing visible there. Used when
    /// the final location is known before the bytes arrive.
    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError>;
    /// A URL that serves the file directly (e.g. a presigned object URL), when
    /// the backend has one; clients are redirected there instead of streaming
    /// through the registry.
    async fn redirect_url(&self, _path: &str) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
    /// `len` bytes of `path` from `offset` as a region of a local file, for backends that
    /// keep files on a local file system; `None` for the others. Default: `None`.
    async fn file_region(
        &self,
        _path: &str,
        _offset: u64,
        _len: u64,
    ) -> Result<Option<FileRegion>, StorageError> {
        Ok(None)
    }
    /// Every file below `path`, as paths relative to it (`/`-separated), in no particular
    /// order; a missing `path` holds none. Object stores answer with one flat listing (pages
    /// of keys) instead of a listing per folder. Default: breadth-first over
    /// [`Self::list_entries`], up to 16 listings at once.
    async fn list_files(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let mut files = Vec::new();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let listings = list_level(self, path, level).await;
            let mut next = Vec::new();
            for (prefix, entries) in listings {
                for (child, is_dir) in entries? {
                    let child = if prefix.is_empty() {
                        child
                    } else {
                        format!("{prefix}/{child}")
                    };
                    if is_dir {
                        next.push(child);
                    } else {
                        files.push(child);
                    }
                }
            }
            level = next;
        }
        Ok(files)
    }
    /// The directories below `path` (relative, `/`-separated) holding an entry named
    /// `marker`; directories named `marker` or starting with `skip` are not descended. A
    /// missing `path` holds none. Default: breadth-first, up to 16 listings at once.
    async fn dirs_holding(
        &self,
        path: &str,
        marker: &str,
        skip: &str,
    ) -> Result<Vec<String>, StorageError> {
        let mut found = Vec::new();
        let mut level = vec![String::new()];
        while !level.is_empty() {
            let listings = list_level(self, path, level).await;
            let mut next = Vec::new();
            for (prefix, entries) in listings {
                for (child, is_dir) in entries? {
                    if child == marker {
                        if !prefix.is_empty() {
                            found.push(prefix.clone());
                        }
                    } else if is_dir && (skip.is_empty() || !child.starts_with(skip)) {
                        next.push(if prefix.is_empty() {
                            child
                        } else {
                            format!("{prefix}/{child}")
                        });
                    }
                }
            }
            level = next;
        }
        Ok(found)
    }
    /// The directories [`Self::dirs_holding`] finds, in [`component_order`], only those after
    /// `after`, at most `limit`. Depth-first with sorted listings (see [`WalkAfter`]), one
    /// listing at a time. Default: [`Self::list_entries`] for each.
    async fn dirs_holding_after(
        &self,
        path: &str,
        marker: &str,
        skip: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let mut walk = WalkAfter::new(path, marker, skip, after, limit);
        while let Some(dir) = walk.next_dir() {
            let entries = match self.list_entries(&dir).await {
                Err(e) if e.is_not_found() => Vec::new(),
                other => other?,
            };
            walk.visit(&entries);
        }
        Ok(walk.found())
    }
}

/// The steps of [`StorageDriver::dirs_holding_after`] apart from the listings, so a driver that
/// lists without waiting can run the whole walk in one blocking task. Depth-first with sorted
/// listings: subtrees sorting wholly before `after` are not listed and the walk stops at
/// `limit`, so a page of a long listing costs the listings along its way rather than the whole
/// tree.
pub struct WalkAfter {
    path: String,
    marker: String,
    skip: String,
    after: Option<String>,
    limit: usize,
    found: Vec<String>,
    /// Prefixes still to visit, the next one last.
    stack: Vec<String>,
    /// The prefix whose directory [`Self::next_dir`] gave last.
    listing: String,
}

impl WalkAfter {
    /// A walk of the tree at `path`.
    pub fn new(path: &str, marker: &str, skip: &str, after: Option<&str>, limit: usize) -> Self {
        Self {
            path: path.to_string(),
            marker: marker.to_string(),
            skip: skip.to_string(),
            after: after.map(str::to_string),
            limit,
            found: Vec::new(),
            stack: vec![String::new()],
            listing: String::new(),
        }
    }

    /// The next directory to list, `None` once the walk is done.
    pub fn next_dir(&mut self) -> Option<String> {
        if self.found.len() >= self.limit {
            return None;
        }
        self.listing = self.stack.pop()?;
        Some(if self.listing.is_empty() {
            self.path.clone()
        } else {
            format!("{}/{}", self.path, self.listing)
        })
    }

    /// Takes the entries (name, is a directory) of the directory [`Self::next_dir`] gave; a
    /// missing directory has none.
    pub fn visit(&mut self, entries: &[(String, bool)]) {
        let prefix = std::mem::take(&mut self.listing);
        let after = self.after.as_deref();
        let after_ok = |p: &str| after.is_none_or(|a| component_order(p, a).is_gt());
        if !prefix.is_empty() && entries.iter().any(|(c, _)| *c == self.marker) && after_ok(&prefix)
        {
            self.found.push(prefix.clone());
        }
        let (marker, skip) = (&self.marker, &self.skip);
        let mut children: Vec<String> = entries
            .iter()
            .filter(|(c, is_dir)| {
                *is_dir && c != marker && (skip.is_empty() || !c.starts_with(skip.as_str()))
            })
            .map(|(c, _)| {
                if prefix.is_empty() {
                    c.clone()
                } else {
                    format!("{prefix}/{c}")
                }
            })
            .filter(|c| after.is_none_or(|a| may_hold_after(c, a)))
            .collect();
        children.sort_unstable_by(|a, b| component_order(b, a));
        self.stack.extend(children);
    }

    /// What the walk found, in order.
    pub fn found(self) -> Vec<String> {
        self.found
    }
}

/// Orders `/`-separated paths component by component (byte order with `/` below every other
/// byte), so a directory's whole subtree sorts before its next sibling: `a`, `a/b`, `a-c`.
pub fn component_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.bytes().map(key).cmp(b.bytes().map(key))
}

/// Whether the subtree at `dir` (itself or below) may hold a path after `after` in
/// [`component_order`]: not when `dir` sorts before `after` and `after` is not below it.
fn may_hold_after(dir: &str, after: &str) -> bool {
    component_order(dir, after).is_ge()
        || after
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// An open append handle; nothing is guaranteed durable before `commit`.
#[async_trait::async_trait]
pub trait FileWriter: Send {
    /// Appends `data`.
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError>;
    /// Bytes in the file so far, including what was there when opened.
    fn size(&self) -> u64;
    /// Whether other writers of the path are excluded while this one is open (see
    /// [`StorageDriver::writer`]); false where the storage cannot lock (an NFS mount without
    /// lock support), and then callers must not trust what they learned of the file's bytes
    /// before opening it.
    fn exclusive(&self) -> bool {
        true
    }
    /// Flushes everything to stable storage.
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;
    /// [`Self::commit`], returning a note for the next [`StorageDriver::writer_noted`] of the
    /// file when the backend keeps one. Default: none.
    async fn commit_noted(self: Box<Self>) -> Result<Option<String>, StorageError> {
        self.commit().await.map(|()| None)
    }
    /// Commits, then atomically moves the whole file to `to` (replacing it) before any other
    /// writer of the same path can append to it: `to` holds exactly the bytes this writer
    /// saw. Only for writers opened with [`StorageDriver::writer`].
    async fn commit_to(self: Box<Self>, to: &str) -> Result<(), StorageError>;
    /// [`Self::commit_to`] for a caller that deletes the file's folder right after: backends
    /// that move by copying may leave the source to that delete. Default: [`Self::commit_to`].
    async fn commit_to_leaving_source(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        self.commit_to(to).await
    }
    /// Gives up: bytes written through this handle are dropped.
    async fn cancel(self: Box<Self>) -> Result<(), StorageError>;
}

/// The moment `age` ago (the epoch for an age longer than that): what is older than this is
/// stale for upload purging.
pub fn stale_before(age: std::time::Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// What an object store is asked for a read of `len` bytes (to the end when `None`) from
/// `offset`: `Ok(None)` when nothing is to be read (an empty range, or one starting at the
/// end, which object stores cannot be asked for), else the HTTP range to request, if any.
/// Reads from an offset stat the object first (as a sealed file when `sealed`), so a read past
/// the end is `InvalidOffset`.
pub async fn object_range<D: StorageDriver + ?Sized>(
    driver: &D,
    path: &str,
    (offset, len): (u64, Option<u64>),
    sealed: bool,
) -> Result<Option<Option<(u64, Option<u64>)>>, StorageError> {
    if len == Some(0) || offset > 0 {
        let info = if sealed {
            driver.stat_sealed(path).await?
        } else {
            driver.stat(path).await?
        };
        if info.is_dir {
            return Err(StorageError::NotFound(path.to_string()));
        }
        if offset > info.size {
            return Err(StorageError::InvalidOffset {
                path: path.to_string(),
                offset,
                size: info.size,
            });
        }
        if offset == info.size || len == Some(0) {
            return Ok(None);
        }
    }
    Ok(Some((offset > 0 || len.is_some()).then_some((offset, len))))
}

/// A driver path without its leading `/`, once no component of it could escape the root
/// (empty, `.`, `..`, a NUL or a backslash); allocates nothing.
pub fn relative_path(path: &str) -> Result<&str, StorageError> {
    let rest = path
        .strip_prefix('/')
        .ok_or_else(|| StorageError::InvalidPath(path.to_string()))?;
    if !rest.is_empty()
        && rest
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == ".." || p.contains(['\0', '\\']))
    {
        return Err(StorageError::InvalidPath(path.to_string()));
    }
    Ok(rest)
}

#[cfg(test)]
mod tests {
    #[test]
    fn subtrees_before_the_cursor_are_skipped() {
        use super::may_hold_after;
        assert!(!may_hold_after("a", "b"));
        assert!(may_hold_after("a", "a/x"));
        assert!(may_hold_after("a", "a"));
        assert!(may_hold_after("c", "b/z"));
        // `a-b` sorts after all of `a/…`.
        assert!(!may_hold_after("a", "a-b"));
        assert!(may_hold_after("a-b", "a/z"));
        assert!(!may_hold_after("team0", "team1/x"));
    }

    use super::*;

    #[test]
    fn paths_that_could_escape_the_root_are_refused() {
        assert_eq!(relative_path("/").unwrap(), "");
        assert_eq!(relative_path("/a/b").unwrap(), "a/b");
        for bad in [
            "", "a", "/a/../b", "/..", "/a//b", "/a/", "/./a", "/a\\b", "/a\0",
        ] {
            assert!(relative_path(bad).is_err(), "{bad:?}");
        }
    }
}
