//! Small reads answered on the calling thread when the kernel can answer them from its caches.
//!
//! A link or a manifest is read on every pull request; handing each read to the blocking pool
//! costs a thread wake-up and two task switches, more than the read itself when the file is
//! in the page cache. `openat2(RESOLVE_CACHED)` resolves a path only from the dentry cache and
//! `preadv2(RWF_NOWAIT)` reads only pages already in memory; either says `EAGAIN` where it
//! would wait for the disk (or for a network filesystem's server), and the caller then reads on
//! the blocking pool as before.

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat, CWD};
use rustix::io::{Errno, ReadWriteFlags};

/// Files larger than this are read on the blocking pool: the worker thread stays free.
pub(super) const MAX_INLINE: u64 = 64 << 10;

/// The first read of a small file: one page, so a short read means the end of the file.
const FIRST_READ: usize = 4096;

/// What a cached lookup found.
#[derive(Debug)]
pub(super) enum Cached<T> {
    /// The kernel answered without waiting.
    Found(T),
    /// No such file (or a directory where a file was asked for).
    Missing,
    /// The answer needs I/O or is unusual: ask the blocking pool.
    Ask,
}

/// Whether inline reads are used under a root: decided once, from the root's filesystem.
#[derive(Debug, Default)]
pub(super) struct InlineReads(AtomicU8);

// 0: undecided.
const ENABLED: u8 = 1;
const DISABLED: u8 = 2;

impl InlineReads {
    /// True when `root` is on a local filesystem that honours `RWF_NOWAIT`. Network
    /// filesystems (NFS, CephFS...) may go to their server for attributes even after a cached
    /// path lookup, so they keep every read off the async threads. Undecided while `root`
    /// does not exist yet.
    pub(super) fn enabled(&self, root: &Path) -> bool {
        match self.0.load(Ordering::Relaxed) {
            ENABLED => true,
            DISABLED => false,
            _ => {
                let Ok(fs) = rustix::fs::statfs(root) else {
                    return false;
                };
                // `f_type`'s integer type differs between architectures.
                #[allow(clippy::unnecessary_cast)]
                let local = LOCAL_FILESYSTEMS.contains(&(fs.f_type as i64));
                self.0
                    .store(if local { ENABLED } else { DISABLED }, Ordering::Relaxed);
                local
            }
        }
    }

    /// Stops inline reads for good (the kernel lacks `openat2` or `RWF_NOWAIT`).
    fn disable(&self) {
        self.0.store(DISABLED, Ordering::Relaxed);
    }

    #[cfg(test)]
    fn state(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `statfs` magic numbers of local filesystems whose reads honour `RWF_NOWAIT`: ext2/3/4,
/// XFS, Btrfs, tmpfs, F2FS, overlayfs.
const LOCAL_FILESYSTEMS: [i64; 6] = [
    0xEF53,
    0x5846_5342,
    0x9123_683E,
    0x0102_1994,
    0xF2F5_2010,
    0x794C_7630,
];

/// Opens `path` if every step of its lookup is in the dentry cache.
fn open_cached(path: &Path, flags: OFlags, inline: &InlineReads) -> Cached<OwnedFd> {
    match rustix::fs::openat2(
        CWD,
        path,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::CACHED,
    ) {
        Ok(fd) => Cached::Found(fd),
        Err(Errno::NOENT) => Cached::Missing,
        // Before Linux 5.12 (`EINVAL` for the flag) or 5.6 (no `openat2`).
        Err(Errno::NOSYS | Errno::INVAL) => {
            inline.disable();
            Cached::Ask
        }
        Err(_) => Cached::Ask,
    }
}

/// The content of the small file at `path`, or what stops it from being read without waiting.
pub(super) fn read(path: &Path, inline: &InlineReads) -> Cached<Vec<u8>> {
    // `NONBLOCK`: a FIFO in the tree must not hold the thread (regular files ignore it).
    let fd = match open_cached(path, OFlags::RDONLY | OFlags::NONBLOCK, inline) {
        Cached::Found(fd) => fd,
        Cached::Missing => return Cached::Missing,
        Cached::Ask => return Cached::Ask,
    };
    // Most files read here (links, small manifests) fit in one page: one read that comes back
    // short has seen the end of the file, since a page is either cached whole or not at all.
    // This saves the `fstat` the general path below needs for the size.
    let mut page = [0u8; FIRST_READ];
    match rustix::io::preadv2(
        &fd,
        &mut [io::IoSliceMut::new(&mut page)],
        0,
        ReadWriteFlags::NOWAIT,
    ) {
        Ok(n) if n < FIRST_READ => return Cached::Found(page[..n].to_vec()),
        Err(Errno::AGAIN) => return Cached::Ask,
        // A larger file, a directory (which refuses `RWF_NOWAIT`): the general path sorts
        // them out from the file's kind and size.
        _ => {}
    }
    let Ok(stat) = rustix::fs::fstat(&fd) else {
        return Cached::Ask;
    };
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind == FileType::Directory {
        return Cached::Missing;
    }
    let size = u64::try_from(stat.st_size).unwrap_or(u64::MAX);
    if kind != FileType::RegularFile || size > MAX_INLINE {
        return Cached::Ask;
    }
    // The size fstat gave: files read this way are replaced whole (rename), never appended to.
    let mut body = vec![0u8; size as usize];
    let mut filled = 0;
    // A short read may mean only some pages are cached: read on until the size is reached.
    while filled < body.len() {
        let read = rustix::io::preadv2(
            &fd,
            &mut [io::IoSliceMut::new(&mut body[filled..])],
            filled as u64,
            ReadWriteFlags::NOWAIT,
        );
        match read {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP) => {
                inline.disable();
                return Cached::Ask;
            }
            Err(_) => return Cached::Ask,
        }
    }
    body.truncate(filled);
    Cached::Found(body)
}

/// What `fstat` says of `path`, if its lookup is cached.
pub(super) fn stat(path: &Path, inline: &InlineReads) -> Cached<Stat> {
    let fd = match open_cached(path, OFlags::PATH, inline) {
        Cached::Found(fd) => fd,
        Cached::Missing => return Cached::Missing,
        Cached::Ask => return Cached::Ask,
    };
    match rustix::fs::fstat(&fd) {
        Ok(stat) => Cached::Found(stat),
        Err(_) => Cached::Ask,
    }
}

/// The modification time `fstat` gave.
pub(super) fn modified(stat: &Stat) -> Option<SystemTime> {
    let nanos = u32::try_from(stat.st_mtime_nsec).ok()?;
    let since = Duration::new(u64::try_from(stat.st_mtime).ok()?, nanos);
    SystemTime::UNIX_EPOCH.checked_add(since)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled_in(dir: &Path) -> InlineReads {
        let inline = InlineReads::default();
        inline.enabled(dir);
        inline
    }

    #[test]
    fn reads_what_the_file_holds_and_says_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let inline = enabled_in(dir.path());
        let file = dir.path().join("link");
        std::fs::write(&file, b"sha256:abc").unwrap();
        // The first lookup may have to fill the dentry cache; the second is cached.
        let _ = read(&file, &inline);
        match read(&file, &inline) {
            Cached::Found(body) => assert_eq!(body, b"sha256:abc"),
            Cached::Ask => assert_eq!(inline.state(), DISABLED, "only an old kernel asks"),
            other => panic!("unexpected {other:?}"),
        }
        let missing = dir.path().join("nothing");
        assert!(!matches!(read(&missing, &inline), Cached::Found(_)));
        // A cached lookup that bails out leaves nothing in the dentry cache; the blocking
        // lookup made after it remembers the name as missing.
        assert!(std::fs::metadata(&missing).is_err());
        if inline.state() == ENABLED {
            // tmpfs drops negative dentries as soon as they are unused.
            #[allow(clippy::unnecessary_cast)]
            let tmpfs = rustix::fs::statfs(dir.path()).unwrap().f_type as i64 == 0x0102_1994;
            match read(&missing, &inline) {
                Cached::Missing => {}
                Cached::Ask if tmpfs => {}
                other => panic!("a missing file read as {other:?}"),
            }
            assert!(matches!(read(dir.path(), &inline), Cached::Missing));
            match stat(&file, &inline) {
                Cached::Found(s) => {
                    assert_eq!(s.st_size, 10);
                    assert!(modified(&s).is_some());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn reads_every_size_around_a_page_whole_and_never_waits_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let inline = enabled_in(dir.path());
        for size in [
            1,
            71,
            FIRST_READ - 1,
            FIRST_READ,
            FIRST_READ + 1,
            3 * FIRST_READ + 5,
        ] {
            let file = dir.path().join(format!("f{size}"));
            let content: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            std::fs::write(&file, &content).unwrap();
            let _ = read(&file, &inline);
            match read(&file, &inline) {
                Cached::Found(body) => assert!(body == content, "size {size} read wrong"),
                Cached::Ask => assert_eq!(inline.state(), DISABLED, "only an old kernel asks"),
                other => panic!("size {size}: unexpected {other:?}"),
            }
        }
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(CWD, &fifo, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        let _ = read(&fifo, &inline);
        assert!(matches!(
            read(&fifo, &inline),
            Cached::Ask | Cached::Missing
        ));
    }

    #[test]
    fn leaves_large_and_empty_files_right() {
        let dir = tempfile::tempdir().unwrap();
        let inline = enabled_in(dir.path());
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; MAX_INLINE as usize + 1]).unwrap();
        let _ = read(&big, &inline);
        assert!(matches!(read(&big, &inline), Cached::Ask));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        let _ = read(&empty, &inline);
        if inline.state() == ENABLED {
            match read(&empty, &inline) {
                Cached::Found(body) => assert!(body.is_empty()),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
