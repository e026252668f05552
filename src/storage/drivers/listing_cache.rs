//! Directory listings remembered while the directory is unchanged.
//!
//! A repository's tags are listed on every `tags/list`. With a thousand tags, reading the
//! directory costs far more than the answer: ext4 hashes and orders every name each time a
//! directory is opened, and the names are copied out one by one. Adding, removing or renaming
//! an entry changes the directory's change and modification times, so a listing is still right
//! while the directory shows the same inode, link count, size and times it showed before it
//! was read.
//!
//! Timestamps move in clock ticks, so two changes close together can leave the same times. A
//! listing is therefore only kept when the directory last changed well before it was read: a
//! change made after the read gets a later time. This holds where every change is stamped by
//! this machine's clock, so the driver keeps listings only on local filesystems.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustix::fs::Stat;

/// The entries of one directory: each name and whether it is a directory.
pub(super) type Entries = Arc<Vec<(String, bool)>>;

/// How long before its read a directory must have last changed for its listing to be kept.
const SETTLED: Duration = Duration::from_secs(1);

/// Names kept in all, across directories: bounds the memory the cache holds.
const MAX_NAMES: usize = 1 << 18;

/// Directories kept: bounds the memory of the keys.
const MAX_DIRS: usize = 4096;

/// What a directory showed before it was read; the listing is right while it shows the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    dev: u64,
    ino: u64,
    nlink: u64,
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

// `Stat`'s field types differ between architectures.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
impl Seen {
    /// What `stat` shows of a directory.
    pub(super) fn of(stat: &Stat) -> Self {
        Seen {
            dev: stat.st_dev as u64,
            ino: stat.st_ino as u64,
            nlink: stat.st_nlink as u64,
            size: stat.st_size as i64,
            mtime: (stat.st_mtime as i64, stat.st_mtime_nsec as i64),
            ctime: (stat.st_ctime as i64, stat.st_ctime_nsec as i64),
        }
    }

    /// True when the directory last changed at least `SETTLED` before `now`: a later change
    /// cannot leave the same times.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let Some(limit) = now.checked_sub(SETTLED) else {
            return false;
        };
        let before = |(secs, nanos): (i64, i64)| match (u64::try_from(secs), u32::try_from(nanos)) {
            (Ok(secs), Ok(nanos)) if nanos < 1_000_000_000 => Duration::new(secs, nanos) <= limit,
            _ => false,
        };
        before(self.mtime) && before(self.ctime)
    }
}

/// Listings of unchanged directories, bounded in names and directories.
#[derive(Debug, Default)]
pub(super) struct ListingCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Keyed by the driver's path of the directory.
    dirs: HashMap<String, (Seen, Entries)>,
    names: usize,
}

impl ListingCache {
    /// The listing of `dir` if it was read when the directory showed `now`.
    pub(super) fn get(&self, dir: &str, now: &Seen) -> Option<Entries> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match inner.dirs.get(dir) {
            Some((seen, entries)) if seen == now => Some(entries.clone()),
            Some(_) => {
                inner.remove(dir);
                None
            }
            None => None,
        }
    }

    /// Keeps the listing of `dir`, read after `stat` showed `seen`, if `dir` had settled by
    /// then (`read_at`) and the listing fits.
    pub(super) fn put(&self, dir: &str, seen: Seen, read_at: SystemTime, entries: &Entries) {
        if !seen.settled(read_at) || entries.len() > MAX_NAMES / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.remove(dir);
        // Which listings make room does not matter for correctness; any will do.
        while inner.names + entries.len() > MAX_NAMES || inner.dirs.len() >= MAX_DIRS {
            let Some(victim) = inner.dirs.keys().next().cloned() else {
                break;
            };
            inner.remove(&victim);
        }
        inner.names += entries.len();
        inner.dirs.insert(dir.to_string(), (seen, entries.clone()));
    }

    /// Forgets the listing of `dir` (it is gone or could not be read).
    pub(super) fn forget(&self, dir: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(dir);
    }
}

impl Inner {
    fn remove(&mut self, dir: &str) {
        if let Some((_, entries)) = self.dirs.remove(dir) {
            self.names -= entries.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn stat(dir: &Path) -> Seen {
        Seen::of(&rustix::fs::stat(dir).unwrap())
    }

    fn entries(names: &[&str]) -> Entries {
        Arc::new(names.iter().map(|n| (n.to_string(), false)).collect())
    }

    #[test]
    fn a_listing_is_kept_only_once_settled_and_only_while_the_directory_is_unchanged() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tags");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join("a")).unwrap();
        let cache = ListingCache::default();
        let seen = stat(&dir);
        // Read just after a change: not kept, a change in the same tick could follow unseen.
        cache.put("/tags", seen, SystemTime::now(), &entries(&["a"]));
        assert!(cache.get("/tags", &seen).is_none());
        // Read well after the last change: kept while nothing changes.
        let later = SystemTime::now() + SETTLED * 2;
        cache.put("/tags", seen, later, &entries(&["a"]));
        assert_eq!(cache.get("/tags", &stat(&dir)).unwrap().len(), 1);
        // Every kind of change shows: an entry added, one removed, one renamed.
        type Change = fn(&Path);
        let changes: [Change; 3] = [
            |d| std::fs::create_dir(d.join("b")).unwrap(),
            |d| std::fs::rename(d.join("b"), d.join("c")).unwrap(),
            |d| std::fs::remove_dir(d.join("c")).unwrap(),
        ];
        for change in changes {
            let seen = stat(&dir);
            cache.put("/tags", seen, later, &entries(&["whatever"]));
            assert!(cache.get("/tags", &seen).is_some());
            // A change in a later clock tick, as the settling delay ensures in use.
            std::thread::sleep(Duration::from_millis(20));
            change(&dir);
            assert!(
                cache.get("/tags", &stat(&dir)).is_none(),
                "a change went unseen"
            );
        }
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let cache = ListingCache::default();
        let root = tempfile::tempdir().unwrap();
        let seen = stat(root.path());
        let later = SystemTime::now() + SETTLED * 2;
        let big: Entries = Arc::new(vec![(String::from("t"), false); MAX_NAMES / 4]);
        for i in 0..MAX_DIRS + 10 {
            let listing = if i % 100 == 0 { &big } else { &entries(&["x"]) };
            cache.put(&i.to_string(), seen, later, listing);
            let inner = cache.inner.lock().unwrap();
            assert!(inner.names <= MAX_NAMES && inner.dirs.len() <= MAX_DIRS);
            assert_eq!(
                inner.names,
                inner.dirs.values().map(|(_, e)| e.len()).sum::<usize>()
            );
        }
        let too_big: Entries = Arc::new(vec![(String::from("t"), false); MAX_NAMES / 4 + 1]);
        cache.put("huge", seen, later, &too_big);
        assert!(cache.get("huge", &seen).is_none());
    }
}
