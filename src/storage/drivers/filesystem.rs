//! Local or shared POSIX directory (also NFS, MooseFS, CephFS mounts).
//!
//! Atomicity comes from `rename(2)` within one filesystem; durability from
//! fsync of the file and of every directory whose entries changed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir};
use rustix::io::Errno;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::storage::drivers::cached_read::{self, Cached};
use crate::storage::drivers::group_commit::{GroupCommit, Publication};
use crate::storage::drivers::listing_cache::{Entries, ListingCache, Seen};
use crate::storage::drivers::read_budget::ReadBudget;
use crate::storage::{
    relative_path, ByteStream, FileInfo, FileRegion, FileWriter, StorageDriver, StorageError,
    WalkAfter,
};

/// Chunks a download reads ahead of the one being sent (sized by [`ReadBudget`]): one keeps
/// the socket busy (more only held memory, measured).
const READ_AHEAD: usize = 1;
/// Start writeback of uploaded data every this many bytes, so the fsync
/// before the answer has little left to flush.
const WRITEBACK_EVERY: u64 = 8 << 20;
/// Writes are batched to this size before a blocking write call.
const WRITE_BATCH: usize = 1 << 20;
/// A batch older than this is written whatever its size, so a slow client's
/// upload does not hold its trickle in memory.
const WRITE_BATCH_AGE: std::time::Duration = std::time::Duration::from_millis(50);
/// A chunk arriving this long after the previous one comes from a client sending slower
/// than the disk writes: it and the chunks right behind it (up to [`TRICKLE_BURST`] bytes)
/// go to the disk as they are, without a copy into a batch that would wait for more.
const TRICKLE_GAP: std::time::Duration = std::time::Duration::from_millis(5);
/// Bytes written through after a [`TRICKLE_GAP`]; past them the writer batches again.
const TRICKLE_BURST: u64 = 256 << 10;

/// Driver over a directory.
pub struct FilesystemDriver {
    root: PathBuf,
    /// Renames and directory fsyncs of durable writes, shared between concurrent writers.
    commits: Arc<GroupCommit>,
    /// Whether small reads may run on the calling thread (see [`cached_read`]).
    inline: cached_read::InlineReads,
    /// Listings of directories that have not changed since they were read.
    listings: Arc<ListingCache>,
    /// Chunk sizes of the downloads read into memory, shared so their total stays bounded.
    downloads: Arc<ReadBudget>,
}

impl FilesystemDriver {
    /// A driver rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            commits: Arc::default(),
            inline: cached_read::InlineReads::default(),
            listings: Arc::default(),
            downloads: Arc::default(),
        }
    }

    /// `put_content`, durable or not.
    async fn put(&self, path: &str, content: Bytes, durable: bool) -> Result<(), StorageError> {
        let full = self.full(path)?;
        let p = path.to_string();
        if !durable {
            return blocking(move || {
                replace_file(&full, &content).map_err(|e| StorageError::io("put", &p, e))
            })
            .await;
        }
        let io = |e| StorageError::io("put", path, e);
        let target = full.clone();
        let (tmp, publication) = blocking(move || {
            write_synced_temp(&target, &content).map_err(|e| StorageError::io("put", &p, e))
        })
        .await?;
        if let Err(e) = self.commits.publish(publication).await {
            let _ = blocking(move || Ok(fs::remove_file(tmp))).await;
            return Err(io(e));
        }
        Ok(())
    }

    /// `delete`, durable or not.
    async fn remove(&self, path: &str, durable: bool) -> Result<(), StorageError> {
        let full = self.full(path)?;
        let p = path.to_string();
        let parent = full.parent().map(Path::to_path_buf);
        blocking(move || remove(&full).map_err(|e| StorageError::io("delete", &p, e))).await?;
        match parent {
            Some(parent) if durable => self
                .commits
                .publish(Publication {
                    renames: Vec::new(),
                    syncs: vec![parent],
                })
                .await
                .map_err(|e| StorageError::io("delete", path, e)),
            _ => Ok(()),
        }
    }

    /// The entries of a directory, each made into a `T` by `entry(name, is_dir)`. On a local
    /// filesystem, a directory unchanged since it was last read is answered from memory on the
    /// calling thread (see [`listing_cache`]).
    async fn listing<T: Send + 'static>(
        &self,
        path: &str,
        entry: fn(&str, bool) -> T,
    ) -> Result<Vec<T>, StorageError> {
        let full = self.full(path)?;
        let remember = self.inline.enabled(&self.root);
        if remember {
            if let Cached::Found(stat) = cached_read::stat(&full, &self.inline) {
                if let Some(known) = self.listings.get(path, &Seen::of(&stat)) {
                    return Ok(known
                        .iter()
                        .map(|(name, is_dir)| entry(name, *is_dir))
                        .collect());
                }
            }
        }
        let p = path.to_string();
        let listings = remember.then(|| self.listings.clone());
        blocking(move || {
            let known = read_listing(
                DirAt::Path(&full),
                &p,
                listings.as_deref(),
                &mut entry_buffer(),
            )
            .map_err(|e| StorageError::io("list", &p, e))?;
            Ok(known
                .iter()
                .map(|(name, is_dir)| entry(name, *is_dir))
                .collect())
        })
        .await
    }

    fn full(&self, path: &str) -> Result<PathBuf, StorageError> {
        resolve(&self.root, path)
    }
}

/// The file under `root` that a driver path names.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, StorageError> {
    let rest = relative_path(path)?;
    // Sized once: this runs on every request.
    let mut full = PathBuf::with_capacity(root.as_os_str().len() + 1 + rest.len());
    full.push(root);
    if !rest.is_empty() {
        full.push(rest);
    }
    Ok(full)
}

/// Says once per process that the storage cannot lock files.
fn warn_no_locks(full: &Path) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            path = %full.display(),
            "the storage does not support file locks (an NFS mount with nolock?): concurrent requests on one upload are not serialised"
        )
    });
}

/// Takes the append lock of an open file, or says another writer has it. The lock (`flock`,
/// which NFS clients map to byte-range locks) belongs to this open file and goes with it. A
/// file renamed away (an upload finished) between the caller's `open` and the lock is gone
/// as far as appends are concerned.
fn lock_for_append(file: &File, full: &Path, path: &str) -> Result<bool, StorageError> {
    use std::os::unix::fs::MetadataExt;
    match rustix::fs::flock(file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(Errno::WOULDBLOCK) => return Err(StorageError::Busy(path.to_string())),
        // A mount that cannot lock (NFS without a lock manager): the writer says it is not
        // exclusive, and the registry rehashes what is stored instead of trusting a token.
        Err(Errno::NOLCK | Errno::OPNOTSUPP) => {
            warn_no_locks(full);
            return Ok(false);
        }
        Err(e) => return Err(StorageError::io("lock", path, e.into())),
    }
    let io = |e| StorageError::io("open", path, e);
    let (held, named) = (
        file.metadata().map_err(io)?,
        fs::metadata(full).map_err(io)?,
    );
    if (held.dev(), held.ino()) != (named.dev(), named.ino()) {
        return Err(StorageError::NotFound(path.to_string()));
    }
    Ok(true)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            op: "join",
            path: String::new(),
            source: std::io::Error::other(e),
        })?
}

/// fsync a directory so that entries created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and missing ancestors. Returns the directories whose entries
/// changed: the caller fsyncs them with [`sync_dirs`] after its own data fsync,
/// which on journaling filesystems commits the new entries too, so durability
/// costs one journal commit instead of one per level.
fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    make_dir(dir, &mut changed)?;
    Ok(changed)
}

/// `mkdir` first (one call when the parent exists, or when `dir` does), its parent only when
/// that is what is missing; records the parents that gained an entry.
fn make_dir(dir: &Path, changed: &mut Vec<PathBuf>) -> std::io::Result<()> {
    use std::io::ErrorKind;
    let created = match fs::create_dir(dir) {
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let Some(parent) = dir.parent() else {
                return Err(e);
            };
            make_dir(parent, changed)?;
            fs::create_dir(dir)
        }
        other => other,
    };
    match created {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                changed.push(parent.to_path_buf());
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// fsyncs directories returned by [`create_dirs`].
fn sync_dirs(dirs: &[PathBuf]) -> std::io::Result<()> {
    dirs.iter().try_for_each(|d| sync_dir(d))
}

/// Opens a directory for reading its entries.
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, DIR_FLAGS, Mode::empty())?)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC);

/// A directory held open only to look up names in it.
const PARENT_FLAGS: OFlags = OFlags::PATH.union(OFlags::DIRECTORY).union(OFlags::CLOEXEC);

/// A directory to list: by its full path, or by name in an open parent directory (a lookup
/// of one step instead of one per component of the path).
#[derive(Clone, Copy)]
enum DirAt<'a> {
    Path(&'a Path),
    In(&'a OwnedFd, &'a str),
}

impl DirAt<'_> {
    /// What `stat` says of the directory (links followed, as `open` does).
    fn stat(self) -> rustix::io::Result<rustix::fs::Stat> {
        match self {
            DirAt::Path(full) => rustix::fs::stat(full),
            DirAt::In(parent, name) => rustix::fs::statat(parent, name, AtFlags::empty()),
        }
    }

    /// Opens the directory for reading its entries.
    fn open(self) -> std::io::Result<OwnedFd> {
        match self {
            DirAt::Path(full) => open_dir(full),
            DirAt::In(parent, name) => {
                Ok(rustix::fs::openat(parent, name, DIR_FLAGS, Mode::empty())?)
            }
        }
    }
}

/// The directory the last one a walk listed was in, held open: a walk lists siblings in a row
/// (every repository of a namespace), each then found in one lookup step.
#[derive(Default)]
struct OpenParent(Option<(String, OwnedFd)>);

impl OpenParent {
    /// Where the directory `dir` (the driver's path of `full`) is: in its parent, opened now
    /// unless it already is; by its full path when the parent cannot be opened.
    fn at<'a>(&'a mut self, dir: &'a str, full: &'a Path) -> DirAt<'a> {
        let Some((up, name)) = dir.rsplit_once('/').filter(|(_, name)| !name.is_empty()) else {
            return DirAt::Path(full);
        };
        if self.0.as_ref().is_none_or(|(open, _)| open != up) {
            self.0 = full
                .parent()
                .and_then(|p| rustix::fs::open(p, PARENT_FLAGS, Mode::empty()).ok())
                .map(|fd| (up.to_string(), fd));
        }
        match &self.0 {
            Some((_, fd)) => DirAt::In(fd, name),
            None => DirAt::Path(full),
        }
    }
}

/// The entries of the directory `at` (the driver's `path`): from `listings` when it is
/// unchanged since it was last read, else read from the disk. `listings` is `None` where
/// listings are not kept.
fn listing_of(
    at: DirAt<'_>,
    path: &str,
    listings: Option<&ListingCache>,
    buf: &mut [MaybeUninit<u8>],
) -> std::io::Result<Entries> {
    if let Some(listings) = listings {
        if let Ok(stat) = at.stat() {
            if let Some(known) = listings.get(path, &Seen::of(&stat)) {
                return Ok(known);
            }
        }
    }
    read_listing(at, path, listings, buf)
}

/// Reads the entries of the directory `at` (the driver's `path`) and keeps them in
/// `listings`, if given.
fn read_listing(
    at: DirAt<'_>,
    path: &str,
    listings: Option<&ListingCache>,
    buf: &mut [MaybeUninit<u8>],
) -> std::io::Result<Entries> {
    let dir = at.open().inspect_err(|_| {
        if let Some(listings) = listings {
            listings.forget(path);
        }
    })?;
    // The time is taken before the directory is looked at: the listing is kept only if the
    // directory had settled by then.
    let read_at = SystemTime::now();
    let seen = match listings {
        Some(_) => rustix::fs::fstat(&dir).ok().map(|stat| Seen::of(&stat)),
        None => None,
    };
    let mut all = Vec::new();
    read_entries(&dir, buf, |name, is_dir| {
        all.push((name.to_owned(), is_dir))
    })?;
    let all = Arc::new(all);
    if let (Some(listings), Some(seen)) = (listings, seen) {
        listings.put(path, seen, read_at, &all);
    }
    Ok(all)
}

/// A getdents buffer: one per listing, reused for every directory of a walk.
fn entry_buffer() -> Vec<MaybeUninit<u8>> {
    vec![MaybeUninit::uninit(); 32 << 10]
}

/// Calls `each(name, is_dir)` for the entries of `dir` that are content: names
/// starting with `.` (`.`, `..`, temp files of in-flight atomic writes) are not.
/// Symbolic links are not directories.
fn read_entries(
    dir: &OwnedFd,
    buf: &mut [MaybeUninit<u8>],
    mut each: impl FnMut(&str, bool),
) -> std::io::Result<()> {
    let mut entries = RawDir::new(dir, buf);
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name.first() == Some(&b'.') {
            continue;
        }
        let is_dir = match entry.file_type() {
            FileType::Directory => true,
            // Filesystems that do not fill d_type.
            FileType::Unknown => {
                rustix::fs::statat(dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
            }
            _ => false,
        };
        each(&String::from_utf8_lossy(name), is_dir);
    }
    Ok(())
}

/// A depth-first walk collecting the directories that hold `marker`; each
/// directory is opened relative to its parent, so no path is looked up twice.
/// Siblings are visited in byte order, so the paths come out in component
/// order (`a`, `a/b`, `a-c`) and the caller's sort has nothing to move.
struct DirWalk<'a> {
    marker: &'a str,
    skip: &'a str,
    buf: &'a mut [MaybeUninit<u8>],
    found: &'a mut Vec<String>,
}

impl DirWalk<'_> {
    fn visit(&mut self, dir: OwnedFd, prefix: String) -> std::io::Result<()> {
        let mut children = Vec::new();
        let mut holds_marker = false;
        read_entries(&dir, self.buf, |name, is_dir| {
            if name == self.marker {
                holds_marker = true;
            } else if is_dir && (self.skip.is_empty() || !name.starts_with(self.skip)) {
                children.push(name.to_owned());
            }
        })?;
        children.sort_unstable();
        if holds_marker && !prefix.is_empty() {
            self.found.push(prefix.clone());
        }
        for name in children {
            // Not followed: a walk does not leave the tree through a link swapped in.
            let flags = DIR_FLAGS | OFlags::NOFOLLOW;
            let child = match rustix::fs::openat(&dir, name.as_str(), flags, Mode::empty()) {
                Ok(child) => child,
                // Deleted (or replaced by a file) since it was listed.
                Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => continue,
                Err(e) => return Err(e.into()),
            };
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            self.visit(child, path)?;
        }
        Ok(())
    }
}

/// Replaces `path` with `content` through a temporary sibling and a rename, without fsync.
fn replace_file(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("driver paths have a parent");
    create_dirs(dir)?;
    let tmp = temp_sibling(path);
    let result = (|| {
        File::create(&tmp)?.write_all(content)?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `content` to a temporary sibling of `path` and fsyncs it; returns the temporary
/// file and the publication that renames it into place durably.
fn write_synced_temp(path: &Path, content: &[u8]) -> std::io::Result<(PathBuf, Publication)> {
    let dir = path.parent().expect("driver paths have a parent");
    let mut syncs = create_dirs(dir)?;
    let tmp = temp_sibling(path);
    let written = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    syncs.push(dir.to_path_buf());
    let renames = vec![(tmp.clone(), path.to_path_buf())];
    Ok((tmp, Publication { renames, syncs }))
}

/// Publishes `content` at `path` unless something is there: written and fsynced under a
/// temporary name, then hard-linked into place (`link` fails when the name exists, also on
/// NFS), so the file appears whole or not at all and only one racing creator wins.
fn create_file_if_absent(path: &Path, content: &[u8]) -> std::io::Result<bool> {
    let dir = path.parent().expect("driver paths have a parent");
    let new_dirs = create_dirs(dir)?;
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        sync_dirs(&new_dirs)?;
        match fs::hard_link(&tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(e),
        }
        sync_dir(dir)?;
        Ok(true)
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Removes a file or a directory tree (the caller fsyncs the parent when it must be durable).
fn remove(path: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        // Rename first so readers never see a half-deleted tree.
        let doomed = temp_sibling(path);
        fs::rename(path, &doomed)?;
        fs::remove_dir_all(&doomed)?;
    } else {
        fs::remove_file(path)?;
    }
    Ok(())
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{:016x}", rand::random::<u64>()))
}

#[async_trait::async_trait]
impl StorageDriver for FilesystemDriver {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn reads_growing_files(&self) -> bool {
        // Appends go straight into the file (a cancel cuts it back), so its first `stat` bytes
        // are readable while it grows.
        true
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let full = self.full(path)?;
        if self.inline.enabled(&self.root) {
            match cached_read::read(&full, &self.inline) {
                Cached::Found(body) => return Ok(Bytes::from(body)),
                Cached::Missing => return Err(StorageError::NotFound(path.to_string())),
                Cached::Ask => {}
            }
        }
        let p = path.to_string();
        // One path lookup: the open; the size and kind come from the descriptor.
        blocking(move || {
            let mut file = File::open(&full).map_err(|e| StorageError::io("read", &p, e))?;
            let meta = file
                .metadata()
                .map_err(|e| StorageError::io("stat", &p, e))?;
            if meta.is_dir() {
                return Err(StorageError::NotFound(p));
            }
            let mut body = Vec::with_capacity(meta.len() as usize);
            file.read_to_end(&mut body)
                .map_err(|e| StorageError::io("read", &p, e))?;
            Ok(Bytes::from(body))
        })
        .await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.put(path, content, true).await
    }

    async fn put_content_lazy(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.put(path, content, false).await
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let full = self.full(path)?;
        let p = path.to_string();
        blocking(move || {
            create_file_if_absent(&full, &content).map_err(|e| StorageError::io("put", &p, e))
        })
        .await
    }

    async fn sync(&self, paths: &[String]) -> Result<(), StorageError> {
        let syncs = paths
            .iter()
            .map(|p| self.full(p))
            .collect::<Result<Vec<_>, StorageError>>()?;
        self.commits
            .publish(Publication {
                renames: Vec::new(),
                syncs,
            })
            .await
            .map_err(|e| StorageError::io("sync", &paths.join(" "), e))
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let full = self.full(path)?;
        let p = path.to_string();
        let (file, size) = blocking(move || {
            let mut f = File::open(&full).map_err(|e| StorageError::io("open", &p, e))?;
            let size = f
                .metadata()
                .map_err(|e| StorageError::io("stat", &p, e))?
                .len();
            if offset > size {
                return Err(StorageError::InvalidOffset {
                    path: p,
                    offset,
                    size,
                });
            }
            f.seek(SeekFrom::Start(offset))
                .map_err(|e| StorageError::io("seek", &p, e))?;
            Ok((f, size))
        })
        .await?;
        let mut remaining = len.unwrap_or(size - offset).min(size - offset);
        let (tx, rx) = mpsc::channel::<Result<Bytes, StorageError>>(READ_AHEAD);
        let p = path.to_string();
        // One blocking reader per download keeps the async workers free; the
        // bounded channel applies back-pressure from the client socket.
        let share = self.downloads.join();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            while remaining > 0 {
                // A chunk is read once the one before it is taken: a download then holds two,
                // the one being sent and the next.
                let Ok(slot) = runtime.block_on(tx.reserve()) else {
                    return;
                };
                let n = remaining.min(share.chunk_len() as u64) as usize;
                // Read into spare capacity: zeroing each chunk first cost a pass over every
                // byte served (about 5 % of a TLS download's CPU).
                let mut buf = Vec::with_capacity(n);
                let item = match (&mut file).take(n as u64).read_to_end(&mut buf) {
                    Ok(got) if got == n => Ok(Bytes::from(buf)),
                    Ok(_) => Err(StorageError::io(
                        "read",
                        &p,
                        std::io::ErrorKind::UnexpectedEof.into(),
                    )),
                    Err(e) => Err(StorageError::io("read", &p, e)),
                };
                let failed = item.is_err();
                slot.send(item);
                if failed {
                    return;
                }
                remaining -= n as u64;
            }
        });
        Ok(Box::pin(futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
        )))
    }

    async fn file_region(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<FileRegion>, StorageError> {
        let full = self.full(path)?;
        let p = path.to_string();
        blocking(move || {
            let f = File::open(&full).map_err(|e| StorageError::io("open", &p, e))?;
            let size = f
                .metadata()
                .map_err(|e| StorageError::io("stat", &p, e))?
                .len();
            if offset > size {
                return Err(StorageError::InvalidOffset {
                    path: p,
                    offset,
                    size,
                });
            }
            // The socket takes pages as the kernel reads them: ask for read-ahead early.
            let _ = rustix::fs::fadvise(
                &f,
                offset,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::Sequential,
            );
            Ok(Some(FileRegion {
                file: Arc::new(f),
                offset,
                len: len.min(size - offset),
            }))
        })
        .await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let full = self.full(path)?;
        if self.inline.enabled(&self.root) {
            match cached_read::stat(&full, &self.inline) {
                Cached::Found(st) => {
                    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                    return Ok(FileInfo {
                        size: if is_dir { 0 } else { st.st_size as u64 },
                        is_dir,
                        modified: cached_read::modified(&st),
                    });
                }
                Cached::Missing => return Err(StorageError::NotFound(path.to_string())),
                Cached::Ask => {}
            }
        }
        let p = path.to_string();
        blocking(move || {
            let m = fs::metadata(&full).map_err(|e| StorageError::io("stat", &p, e))?;
            Ok(FileInfo {
                size: if m.is_dir() { 0 } else { m.len() },
                is_dir: m.is_dir(),
                modified: m.modified().ok(),
            })
        })
        .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        self.listing(path, |name, _| name.to_owned()).await
    }

    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        self.listing(path, |name, is_dir| (name.to_owned(), is_dir))
            .await
    }

    // One blocking task walks the whole tree: a catalog of thousands of repositories would
    // otherwise cost a thread hand-off per directory.
    async fn dirs_holding(
        &self,
        path: &str,
        marker: &str,
        skip: &str,
    ) -> Result<Vec<String>, StorageError> {
        let root = self.full(path)?;
        let (p, marker, skip) = (path.to_string(), marker.to_string(), skip.to_string());
        blocking(move || {
            let mut found = Vec::new();
            let dir = match open_dir(&root) {
                Ok(dir) => dir,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
                Err(e) => return Err(StorageError::io("walk", &p, e)),
            };
            DirWalk {
                marker: &marker,
                skip: &skip,
                buf: &mut entry_buffer(),
                found: &mut found,
            }
            .visit(dir, String::new())
            .map_err(|e| StorageError::io("walk", &p, e))?;
            Ok(found)
        })
        .await
    }

    // Likewise one blocking task for a page of the catalog.
    async fn dirs_holding_after(
        &self,
        path: &str,
        marker: &str,
        skip: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.full(path)?;
        let root = self.root.clone();
        let path_len = path.len();
        let mut walk = WalkAfter::new(path, marker, skip, after, limit);
        let listings = self
            .inline
            .enabled(&self.root)
            .then(|| self.listings.clone());
        blocking(move || {
            let mut buf = entry_buffer();
            let mut parent = OpenParent::default();
            while let Some(dir) = walk.next_dir() {
                let full = resolve(&root, &dir)?;
                let at = if dir.len() > path_len {
                    parent.at(&dir, &full)
                } else {
                    DirAt::Path(&full)
                };
                match listing_of(at, &dir, listings.as_deref(), &mut buf) {
                    Ok(entries) => walk.visit(&entries),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => walk.visit(&[]),
                    Err(e) => return Err(StorageError::io("list", &dir, e)),
                }
            }
            Ok(walk.found())
        })
        .await
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let src = self.full(from)?;
        let dst = self.full(to)?;
        let p = from.to_string();
        let publication = blocking(move || {
            let io = |e| StorageError::io("move", &p, e);
            fs::metadata(&src).map_err(io)?;
            let dir = dst.parent().expect("driver paths have a parent");
            let mut syncs = create_dirs(dir).map_err(io)?;
            syncs.push(dir.to_path_buf());
            Ok(Publication {
                renames: vec![(src, dst)],
                syncs,
            })
        })
        .await?;
        self.commits
            .publish(publication)
            .await
            .map_err(|e| StorageError::io("move", from, e))
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.remove(path, true).await
    }

    async fn delete_lazy(&self, path: &str) -> Result<(), StorageError> {
        self.remove(path, false).await
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        let full = self.full(path)?;
        let p = path.to_string();
        let target = full.clone();
        let (file, new_dirs, exclusive) = blocking(move || {
            let io = |e| StorageError::io("open", &p, e);
            let new_dirs = if offset == 0 {
                create_dirs(full.parent().expect("driver paths have a parent")).map_err(io)?
            } else {
                Vec::new()
            };
            let mut f = OpenOptions::new()
                .write(true)
                .create(offset == 0)
                .truncate(false)
                .open(&full)
                .map_err(io)?;
            let exclusive = lock_for_append(&f, &full, &p)?;
            let size = f.metadata().map_err(io)?.len();
            if size != offset {
                return Err(StorageError::OffsetMismatch {
                    path: p,
                    expected: offset,
                    actual: size,
                });
            }
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            Ok((f, new_dirs, exclusive))
        })
        .await?;
        Ok(Box::new(FsWriter {
            exclusive,
            path: path.to_string(),
            file: Some(file),
            new_dirs,
            start: offset,
            size: offset,
            batch: BytesMut::new(),
            batch_started: None,
            last_chunk: None,
            since_gap: u64::MAX,
            pending: None,
            target: Target::Append(target),
            root: self.root.clone(),
            flushed: offset,
            writeback_from: offset,
            commits: Arc::clone(&self.commits),
            settled: false,
        }))
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        let target = self.full(path)?;
        // The temporary file is created with the first write to disk, so a
        // small blob is created, written and committed in one blocking call.
        Ok(Box::new(FsWriter {
            path: path.to_string(),
            file: None,
            new_dirs: Vec::new(),
            start: 0,
            size: 0,
            batch: BytesMut::new(),
            batch_started: None,
            last_chunk: None,
            since_gap: u64::MAX,
            pending: None,
            exclusive: true,
            target: Target::Atomic {
                tmp: temp_sibling(&target),
                target,
            },
            root: self.root.clone(),
            flushed: 0,
            writeback_from: 0,
            commits: Arc::clone(&self.commits),
            settled: false,
        }))
    }
}

/// Creates an atomic writer's temporary file and the directories it needs;
/// returns the file and the directories whose entries changed.
fn create_temp(tmp: &Path) -> std::io::Result<(File, Vec<PathBuf>)> {
    let new_dirs = create_dirs(tmp.parent().expect("driver paths have a parent"))?;
    Ok((File::create(tmp)?, new_dirs))
}

/// A write in flight: gives the file back, with the directories it created
/// when it created the file.
type PendingWrite = JoinHandle<(Option<File>, std::io::Result<Vec<PathBuf>>)>;

/// What a writer writes to.
enum Target {
    /// An existing file (`writer`), locked for appending while the writer is open.
    Append(PathBuf),
    /// A temporary file renamed to `target` on commit (`atomic_writer`).
    Atomic {
        /// The temporary sibling, created with the first write.
        tmp: PathBuf,
        /// The final path.
        target: PathBuf,
    },
}

impl Target {
    /// An atomic writer's temporary file.
    fn temp(&self) -> Option<&Path> {
        match self {
            Target::Atomic { tmp, .. } => Some(tmp),
            Target::Append(_) => None,
        }
    }
}

/// Appends with at most one blocking write in flight, so hashing and reading
/// the next body chunk overlap with the disk write.
struct FsWriter {
    path: String,
    /// The open file; `None` while a write is pending, and for an atomic
    /// writer until its temporary file is created.
    file: Option<File>,
    /// Directories created for this file, made durable at commit.
    new_dirs: Vec<PathBuf>,
    start: u64,
    size: u64,
    batch: BytesMut,
    /// When the first byte of the current batch arrived.
    batch_started: Option<std::time::Instant>,
    /// When the previous chunk arrived.
    last_chunk: Option<std::time::Instant>,
    /// Bytes received since the last [`TRICKLE_GAP`] (`u64::MAX` before any).
    since_gap: u64,
    pending: Option<PendingWrite>,
    /// Where the bytes go.
    target: Target,
    /// Holds the append lock (always, but on storage that cannot lock).
    exclusive: bool,
    /// The driver's root, for `commit_to`.
    root: PathBuf,
    /// File offset up to which batches have been handed to the disk writer.
    flushed: u64,
    /// File offset from which writeback has not been started yet.
    writeback_from: u64,
    /// The driver's group commit, which publishes the file.
    commits: Arc<GroupCommit>,
    /// Committed, or its failed commit already undone: nothing is left for `Drop` to undo.
    settled: bool,
}

impl FsWriter {
    async fn wait_pending(&mut self) -> Result<(), StorageError> {
        if let Some(handle) = self.pending.take() {
            let (file, result) = handle.await.map_err(|e| StorageError::Io {
                op: "join",
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })?;
            self.file = file;
            let new_dirs = result.map_err(|e| StorageError::io("write", &self.path, e))?;
            self.new_dirs.extend(new_dirs);
        }
        Ok(())
    }

    /// The open file, or what creates it: an atomic writer's temporary path.
    fn take_file(&mut self) -> Result<File, PathBuf> {
        match (self.file.take(), &self.target) {
            (Some(file), _) => Ok(file),
            (None, Target::Atomic { tmp, .. }) => Err(tmp.clone()),
            (None, Target::Append(_)) => unreachable!("append writers open their file first"),
        }
    }

    /// Writes the last batch and fsyncs; then publishes an atomic writer's file, or moves
    /// an appended file to `move_to` while it is still locked (the open file is held until
    /// the publication is durable).
    async fn finish(mut self: Box<Self>, move_to: Option<PathBuf>) -> Result<(), StorageError> {
        self.wait_pending().await?;
        // The last batch is written by the same blocking call that fsyncs.
        let data = self.batch.split().freeze();
        let file = self.take_file();
        let p = self.path.clone();
        let publish = match &self.target {
            Target::Atomic { tmp, target } => Some((tmp.clone(), target.clone())),
            Target::Append(full) => move_to.map(|to| (full.clone(), to)),
        };
        let atomic = matches!(self.target, Target::Atomic { .. });
        let mut syncs = std::mem::take(&mut self.new_dirs);
        let renames: Vec<_> = publish.iter().cloned().collect();
        let (file, written) = blocking(move || {
            let mut file = match file {
                Ok(file) => file,
                Err(tmp) => {
                    let (file, created) =
                        create_temp(&tmp).map_err(|e| StorageError::io("commit", &p, e))?;
                    syncs.extend(created);
                    file
                }
            };
            let written = (|| {
                file.write_all(&data)?;
                file.sync_all()?;
                if let Some((_, to)) = &publish {
                    let dir = to.parent().expect("driver paths have a parent");
                    if !atomic {
                        syncs.extend(create_dirs(dir)?);
                    }
                    syncs.push(dir.to_path_buf());
                }
                Ok(syncs)
            })();
            Ok((file, written))
        })
        .await?;
        let result = match written {
            Ok(syncs) => self.commits.publish(Publication { renames, syncs }).await,
            Err(e) => Err(e),
        };
        self.settled = true;
        let Err(e) = result else {
            return Ok(());
        };
        let (tmp, start) = (self.target.temp().map(Path::to_path_buf), self.start);
        // Nothing of a failed commit is left: no temporary file, no bytes appended for the
        // next writer to trip on.
        let _ = blocking(move || {
            match tmp {
                Some(tmp) => {
                    let _ = fs::remove_file(tmp);
                }
                None => {
                    let _ = file.set_len(start);
                }
            }
            Ok(())
        })
        .await;
        Err(StorageError::io("commit", &self.path, e))
    }

    async fn flush_batch(&mut self) -> Result<(), StorageError> {
        self.wait_pending().await?;
        if self.batch.is_empty() {
            return Ok(());
        }
        // A full batch is split off, so a fast upload's next batch may reuse its allocation;
        // a short one (sent on age, or before a trickle) is taken whole: left empty, the batch
        // would keep the allocation alive for as long as a slow upload stays open.
        let data = if self.batch.len() >= WRITE_BATCH {
            self.batch.split()
        } else {
            std::mem::take(&mut self.batch)
        }
        .freeze();
        self.batch_started = None;
        self.write_out(data)
    }

    /// Hands `data` to a blocking write; the caller has waited for the previous one.
    fn write_out(&mut self, data: Bytes) -> Result<(), StorageError> {
        let file = self.take_file();
        let end = self.flushed + data.len() as u64;
        let kick =
            (end - self.writeback_from >= WRITEBACK_EVERY).then_some((self.writeback_from, end));
        if kick.is_some() {
            self.writeback_from = end;
        }
        self.flushed = end;
        self.pending = Some(tokio::task::spawn_blocking(move || {
            let (mut file, new_dirs) = match file {
                Ok(file) => (file, Vec::new()),
                Err(tmp) => match create_temp(&tmp) {
                    Ok(created) => created,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = file.write_all(&data);
            if let (Ok(()), Some((from, to))) = (&r, kick) {
                start_writeback(&file, from, to);
            }
            (Some(file), r.map(|()| new_dirs))
        }));
        Ok(())
    }
}

/// Asks the kernel to start writing `from..to` to disk without waiting, so
/// that the durability fsync at commit finds most of the data already written.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, from: u64, to: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid open descriptor and a plain range; the call only
    // schedules I/O and reports failure through its return value, which is
    // advisory here (the fsync at commit is what guarantees durability).
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            from as libc::off64_t,
            (to - from) as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _from: u64, _to: u64) {}

impl Drop for FsWriter {
    /// A writer dropped without commit (the request was abandoned mid-body) leaves nothing
    /// behind: no temporary file, no bytes appended to a file.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let pending = self.pending.take();
        let file = self.file.take();
        let undo: Box<dyn FnOnce(Option<File>) + Send> = match &self.target {
            Target::Atomic { tmp, .. } => {
                let tmp = tmp.clone();
                Box::new(move |_| {
                    let _ = fs::remove_file(tmp);
                })
            }
            Target::Append(_) if pending.is_none() && file.is_none() => return,
            Target::Append(_) => {
                let start = self.start;
                Box::new(move |file: Option<File>| {
                    if let Some(file) = file {
                        let _ = file.set_len(start);
                    }
                })
            }
        };
        // A write in flight may still hold the file (or be creating it): undo after it.
        match (pending, tokio::runtime::Handle::try_current()) {
            (Some(pending), Ok(runtime)) => {
                runtime.spawn(async move {
                    let file = pending.await.ok().and_then(|(f, _)| f);
                    let _ = tokio::task::spawn_blocking(move || undo(file)).await;
                });
            }
            (None, Ok(runtime)) => {
                runtime.spawn_blocking(move || undo(file));
            }
            (_, Err(_)) => undo(file),
        }
    }
}

#[async_trait::async_trait]
impl FileWriter for FsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        let now = std::time::Instant::now();
        if self
            .last_chunk
            .replace(now)
            .is_some_and(|last| now.duration_since(last) >= TRICKLE_GAP)
        {
            self.since_gap = 0;
        }
        self.since_gap = self.since_gap.saturating_add(data.len() as u64);
        if self.since_gap <= TRICKLE_BURST {
            // A trickle: the previous write is long done, and holding this chunk (or a
            // copy of it) until more arrive would only keep it in memory.
            self.flush_batch().await?;
            self.wait_pending().await?;
            return self.write_out(data);
        }
        self.batch.extend_from_slice(&data);
        let started = *self
            .batch_started
            .get_or_insert_with(std::time::Instant::now);
        if self.batch.len() >= WRITE_BATCH || started.elapsed() >= WRITE_BATCH_AGE {
            self.flush_batch().await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    fn exclusive(&self) -> bool {
        self.exclusive
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.finish(None).await
    }

    async fn commit_to(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        if matches!(self.target, Target::Atomic { .. }) {
            return Err(StorageError::InvalidPath(to.to_string()));
        }
        let to = resolve(&self.root, to)?;
        self.finish(Some(to)).await
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.batch.clear();
        // A failed write is irrelevant here: the file is cut back anyway.
        let _ = self.wait_pending().await;
        // An atomic writer's temporary file goes with the writer (Drop).
        let Some(file) = self
            .file
            .take()
            .filter(|_| matches!(self.target, Target::Append(_)))
        else {
            return Ok(());
        };
        let (p, start) = (self.path.clone(), self.start);
        blocking(move || {
            file.set_len(start)
                .map_err(|e| StorageError::io("truncate", &p, e))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt;

    async fn read_all(d: &FilesystemDriver, p: &str, off: u64, len: Option<u64>) -> Vec<u8> {
        let s = d.reader(p, off, len).await.unwrap();
        let chunks: Vec<Bytes> = s.try_collect().await.unwrap();
        chunks.concat()
    }

    #[tokio::test]
    async fn sorted_walks_seek_and_stop_like_a_page_of_the_whole_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let fs_driver = FilesystemDriver::new(tmp.path());
        for file in [
            "/r/a/_manifests/x",
            "/r/a/b/_manifests/x",
            "/r/a/_layers/c/_manifests/x",
            "/r/d/e/f/_manifests/x",
            "/r/g/_uploads/u/data",
            "/r/a-c/_manifests/x",
            "/r/a.b/c/_manifests/x",
            "/r/a.b/c/z/_manifests/x",
            "/r/b0/_manifests/x",
        ] {
            fs_driver.put_content(file, Bytes::new()).await.unwrap();
        }
        let all = fs_driver
            .dirs_holding("/r", "_manifests", "_")
            .await
            .unwrap();
        assert_eq!(all.len(), 7);
        let cursors = [
            "", "a", "a/b", "a/a", "a-c", "a.a", "a.b/c", "a.b/c/z", "b", "zz",
        ];
        for after in cursors {
            for limit in 0..=all.len() + 1 {
                let after = (!after.is_empty()).then_some(after);
                let want: Vec<String> = all
                    .iter()
                    .filter(|p| after.is_none_or(|a| crate::storage::component_order(p, a).is_gt()))
                    .take(limit)
                    .cloned()
                    .collect();
                let got = fs_driver
                    .dirs_holding_after("/r", "_manifests", "_", after, limit)
                    .await
                    .unwrap();
                assert_eq!(got, want, "after {after:?}, limit {limit}");
            }
        }
        assert!(fs_driver
            .dirs_holding_after("/missing", "_manifests", "_", None, 5)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn dirs_holding_walks_like_the_generic_listing() {
        let tmp = tempfile::tempdir().unwrap();
        let fs_driver = FilesystemDriver::new(tmp.path());
        let mem = crate::storage::drivers::inmemory::InMemoryDriver::new();
        for file in [
            "/r/a/_manifests/x",
            "/r/a/b/_manifests/x",
            "/r/a/_layers/c/_manifests/x",
            "/r/d/e/f/_manifests/x",
            "/r/g/_uploads/u/data",
            "/r/h/file",
            "/r/a-c/_manifests/x",
            "/r/a.b/c/_manifests/x",
        ] {
            fs_driver.put_content(file, Bytes::new()).await.unwrap();
            mem.put_content(file, Bytes::new()).await.unwrap();
        }
        let walked = fs_driver
            .dirs_holding("/r", "_manifests", "_")
            .await
            .unwrap();
        // Already in component order, whatever order the directory reads give.
        assert_eq!(walked, vec!["a", "a/b", "a-c", "a.b/c", "d/e/f"]);
        let mut listed = mem.dirs_holding("/r", "_manifests", "_").await.unwrap();
        listed.sort();
        let mut sorted = walked.clone();
        sorted.sort();
        assert_eq!(sorted, listed);
        assert_eq!(
            fs_driver.dirs_holding("/r", "_uploads", "_").await.unwrap(),
            vec!["g"]
        );
        assert!(fs_driver
            .dirs_holding("/missing", "_manifests", "_")
            .await
            .unwrap()
            .is_empty());
        assert!(mem
            .dirs_holding("/missing", "_manifests", "_")
            .await
            .unwrap()
            .is_empty());

        // Pages: the one-task walk answers as the generic one, page by page.
        for after in [
            None,
            Some("a"),
            Some("a/b"),
            Some("a-c"),
            Some("b"),
            Some("z"),
        ] {
            for limit in [1, 2, 10] {
                let walked = fs_driver
                    .dirs_holding_after("/r", "_manifests", "_", after, limit)
                    .await
                    .unwrap();
                let listed = mem
                    .dirs_holding_after("/r", "_manifests", "_", after, limit)
                    .await
                    .unwrap();
                assert_eq!(walked, listed, "after {after:?}, limit {limit}");
            }
        }
        assert_eq!(
            fs_driver
                .dirs_holding_after("/r", "_manifests", "_", Some("a/b"), 10)
                .await
                .unwrap(),
            vec!["a-c", "a.b/c", "d/e/f"]
        );
        assert!(fs_driver
            .dirs_holding_after("/missing", "_manifests", "_", None, 10)
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn a_listing_kept_in_memory_shows_every_change_any_node_makes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(tmp.path());
        for tag in ["a", "b"] {
            d.put_content(&format!("/r/tags/{tag}/current/link"), Bytes::new())
                .await
                .unwrap();
        }
        let sorted = |mut v: Vec<String>| {
            v.sort();
            v
        };
        if !d.inline.enabled(&d.root) {
            return; // Listings are kept on local filesystems only.
        }
        // Listings are kept once the directory has settled.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(sorted(d.list("/r/tags").await.unwrap()), ["a", "b"]);
        let tags = tmp.path().join("r/tags");
        let seen = Seen::of(&rustix::fs::stat(&tags).unwrap());
        assert!(d.listings.get("/r/tags", &seen).is_some());
        // Changes made beside this driver (another node on the same mount) and through it.
        fs::create_dir_all(tags.join("c/current")).unwrap();
        assert_eq!(sorted(d.list("/r/tags").await.unwrap()), ["a", "b", "c"]);
        fs::rename(tags.join("a"), tags.join("z")).unwrap();
        assert_eq!(sorted(d.list("/r/tags").await.unwrap()), ["b", "c", "z"]);
        d.delete("/r/tags/b").await.unwrap();
        assert_eq!(sorted(d.list("/r/tags").await.unwrap()), ["c", "z"]);
        let entries = d.list_entries("/r/tags").await.unwrap();
        assert!(entries.iter().all(|(_, is_dir)| *is_dir));
        // A page of the catalog walks the same kept listings.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let page = d
            .dirs_holding_after("/r", "current", "_", None, 10)
            .await
            .unwrap();
        assert_eq!(page, ["tags/c", "tags/z"]);
        fs::remove_dir_all(tags.join("c")).unwrap();
        let page = d
            .dirs_holding_after("/r", "current", "_", None, 10)
            .await
            .unwrap();
        assert_eq!(page, ["tags/z"]);
        fs::remove_dir_all(&tags).unwrap();
        assert!(d.list("/r/tags").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn listings_hide_temp_files_and_do_not_follow_links_inside_the_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(tmp.path());
        d.put_content("/r/a/_manifests/x", Bytes::new())
            .await
            .unwrap();
        d.put_content("/r/a/file", Bytes::new()).await.unwrap();
        fs::write(tmp.path().join("r/a/.file.tmp-0123"), b"partial").unwrap();
        fs::create_dir_all(tmp.path().join("r/.hidden/_manifests")).unwrap();
        // A link to a repository elsewhere is not a repository of this tree.
        fs::create_dir_all(tmp.path().join("outside/o/_manifests")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside/o"), tmp.path().join("r/link"))
            .unwrap();
        let mut names = d.list("/r/a").await.unwrap();
        names.sort();
        assert_eq!(names, vec!["_manifests", "file"]);
        let mut entries = d.list_entries("/r/a").await.unwrap();
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("_manifests".to_string(), true),
                ("file".to_string(), false)
            ]
        );
        let mut top = d.list_entries("/r").await.unwrap();
        top.sort();
        assert_eq!(
            top,
            vec![("a".to_string(), true), ("link".to_string(), false)]
        );
        assert_eq!(
            d.dirs_holding("/r", "_manifests", "_").await.unwrap(),
            vec!["a"]
        );
        // The listed directory itself may be a link (a root moved elsewhere).
        std::os::unix::fs::symlink(tmp.path().join("r"), tmp.path().join("r2")).unwrap();
        assert_eq!(
            d.dirs_holding("/r2", "_manifests", "_").await.unwrap(),
            vec!["a"]
        );
        assert!(d.list("/missing").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn writes_reads_moves_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(dir.path());
        d.put_content("/a/b/link", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(d.get_content("/a/b/link").await.unwrap(), "x");
        let mut w = d.writer("/up/data", 0).await.unwrap();
        w.write(Bytes::from(vec![1u8; 3 * WRITE_BATCH + 5]))
            .await
            .unwrap();
        w.commit().await.unwrap();
        assert_eq!(
            d.stat("/up/data").await.unwrap().size,
            3 * WRITE_BATCH as u64 + 5
        );
        let size = 3 * WRITE_BATCH as u64 + 5;
        // Stored bytes are never rewritten: a stale offset is refused, short or long.
        for stale in [5, size + 1, 0] {
            match d.writer("/up/data", stale).await {
                Err(StorageError::OffsetMismatch { actual, .. }) => assert_eq!(actual, size),
                Err(e) => panic!("offset {stale}: {e}"),
                Ok(_) => panic!("offset {stale}: opened"),
            }
        }
        let mut w = d.writer("/up/data", size).await.unwrap();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        // One writer at a time.
        assert!(matches!(
            d.writer("/up/data", size).await,
            Err(StorageError::Busy(_))
        ));
        w.commit().await.unwrap();
        assert_eq!(
            read_all(&d, "/up/data", size - 2, None).await,
            [1, 1, b'a', b'b', b'c']
        );
        let w = d.writer("/up/data", size + 3).await.unwrap();
        w.cancel().await.unwrap();
        d.move_to("/up/data", "/blobs/x/data").await.unwrap();
        assert!(d.stat("/up/data").await.unwrap_err().is_not_found());
        assert_eq!(d.list("/blobs").await.unwrap(), vec!["x".to_string()]);
        d.delete("/blobs").await.unwrap();
        assert!(d.list("/blobs").await.unwrap_err().is_not_found());
        assert!(matches!(
            d.get_content("/../etc/passwd").await,
            Err(StorageError::InvalidPath(_))
        ));
    }

    #[tokio::test]
    async fn atomic_writer_publishes_on_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(dir.path());
        let mut w = d.atomic_writer("/b/data").await.unwrap();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        assert!(d.stat("/b/data").await.unwrap_err().is_not_found());
        w.commit().await.unwrap();
        assert_eq!(d.get_content("/b/data").await.unwrap(), "abc");
        let mut w = d.atomic_writer("/c/data").await.unwrap();
        w.write(Bytes::from(vec![7u8; 3 * WRITE_BATCH]))
            .await
            .unwrap();
        w.cancel().await.unwrap();
        assert!(d.stat("/c/data").await.unwrap_err().is_not_found());
        assert!(d.list("/c").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn atomic_writer_touches_the_disk_only_when_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(dir.path());
        // A small file is created, written and published by the commit.
        let mut w = d.atomic_writer("/new/dirs/data").await.unwrap();
        w.write(Bytes::from_static(b"small")).await.unwrap();
        assert!(!dir.path().join("new").exists());
        w.commit().await.unwrap();
        assert_eq!(d.get_content("/new/dirs/data").await.unwrap(), "small");
        assert_eq!(d.list("/new/dirs").await.unwrap(), vec!["data"]);
        // Cancelled before anything reached the disk: nothing was created.
        let mut w = d.atomic_writer("/other/data").await.unwrap();
        w.write(Bytes::from_static(b"abc")).await.unwrap();
        w.cancel().await.unwrap();
        assert!(!dir.path().join("other").exists());
        // Dropped (an abandoned request) after a write reached the disk: the
        // temporary file goes with it.
        let mut w = d.atomic_writer("/third/data").await.unwrap();
        w.write(Bytes::from(vec![1u8; 2 * WRITE_BATCH]))
            .await
            .unwrap();
        w.write(Bytes::from_static(b"more")).await.unwrap();
        drop(w);
        let third = dir.path().join("third");
        let left = || fs::read_dir(&third).map_or(0, |d| d.count());
        for _ in 0..200 {
            if left() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(left(), 0);
    }

    #[tokio::test]
    async fn lazy_writes_and_deletes_then_sync() {
        let dir = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(dir.path());
        d.put_content_lazy("/u/s/startedat", Bytes::from_static(b"t"))
            .await
            .unwrap();
        assert_eq!(d.get_content("/u/s/startedat").await.unwrap(), "t");
        d.sync(&["/u/s/startedat".into(), "/u/s".into(), "/u".into()])
            .await
            .unwrap();
        assert!(d
            .sync(&["/u/missing".into()])
            .await
            .unwrap_err()
            .is_not_found());
        d.delete_lazy("/u/s").await.unwrap();
        assert!(d.stat("/u/s").await.unwrap_err().is_not_found());
        assert!(d.list("/u").await.unwrap().is_empty());
        assert!(d.delete_lazy("/u/s").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn cancel_truncates_to_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(dir.path());
        let mut w = d.writer("/f", 0).await.unwrap();
        w.write(Bytes::from_static(b"keep")).await.unwrap();
        w.commit().await.unwrap();
        let mut w = d.writer("/f", 4).await.unwrap();
        w.write(Bytes::from(vec![0u8; 2 * WRITE_BATCH]))
            .await
            .unwrap();
        w.cancel().await.unwrap();
        assert_eq!(d.get_content("/f").await.unwrap(), "keep");
        // Dropped mid-request: the same, once the background clean-up has run.
        let mut w = d.writer("/f", 4).await.unwrap();
        w.write(Bytes::from(vec![0u8; 2 * WRITE_BATCH]))
            .await
            .unwrap();
        drop(w);
        let mut reopened = None;
        for _ in 0..200 {
            if let Ok(w) = d.writer("/f", 4).await {
                reopened = Some(w);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        reopened
            .expect("the dropped writer's bytes are cut")
            .cancel()
            .await
            .unwrap();
        assert_eq!(d.get_content("/f").await.unwrap(), "keep");
    }

    #[tokio::test]
    async fn commit_to_moves_what_the_writer_saw() {
        let dir = tempfile::tempdir().unwrap();
        let d = FilesystemDriver::new(dir.path());
        let mut w = d.writer("/up/data", 0).await.unwrap();
        w.write(Bytes::from_static(b"hello")).await.unwrap();
        w.commit().await.unwrap();
        let mut w = d.writer("/up/data", 5).await.unwrap();
        w.write(Bytes::from_static(b" world")).await.unwrap();
        w.commit_to("/blobs/ab/data").await.unwrap();
        assert_eq!(
            d.get_content("/blobs/ab/data").await.unwrap(),
            "hello world"
        );
        assert!(d.stat("/up/data").await.unwrap_err().is_not_found());
        // A writer cannot append to a file that was moved away.
        assert!(d
            .writer("/up/data", 11)
            .await
            .err()
            .is_some_and(|e| e.is_not_found()));
    }
}
