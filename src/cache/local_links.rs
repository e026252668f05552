//! A node's own copy of repository links it read from Redis, so concurrent blob HEADs that Redis
//! would answer need one shared `PING` instead of a read each. It holds only what was read on a
//! connection Redis tracks (`CLIENT TRACKING`): when any client, on any node, Wharf or
//! registry:2, changes a key read there, Redis pushes the key's name on that connection and the
//! entries read from it are dropped here. Entries belong to one tracked connection (its generation): when that connection
//! ends, nothing read on it is served again.
//!
//! A fill races with invalidations (the reply and the push travel apart to different tasks), so
//! every change here advances an epoch, and a read whose epoch moved before it is stored is not
//! stored.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::cache::Descriptor;
use crate::digest::Digest;

/// Bound on links held; reaching it empties the copy (it fills again from Redis).
pub const MAX_LINKS: usize = 65_536;

/// Links read from Redis on one tracked connection, kept until Redis says they changed.
#[derive(Default)]
pub struct LocalLinks {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The tracked connection the entries were read on (0: none yet).
    generation: u64,
    /// Every connection up to this one has ended.
    lost_up_to: u64,
    /// Advanced by every change; a fill that started at another epoch is not stored.
    epoch: u64,
    by_repo: HashMap<String, HashMap<Digest, Descriptor>>,
    /// The repositories holding each digest here, for invalidations by digest.
    repos_of: HashMap<Digest, Vec<String>>,
    len: usize,
}

impl State {
    fn usable(&self, generation: u64) -> bool {
        generation != 0 && generation > self.lost_up_to
    }

    fn clear(&mut self) {
        self.epoch += 1;
        self.by_repo.clear();
        self.repos_of.clear();
        self.len = 0;
    }

    fn remove(&mut self, repo: &str, digest: &Digest) {
        if let Some(links) = self.by_repo.get_mut(repo) {
            if links.remove(digest).is_some() {
                self.len -= 1;
            }
            if links.is_empty() {
                self.by_repo.remove(repo);
            }
        }
        self.unindex(repo, digest);
    }

    /// Takes `repo` out of the repositories indexed under `digest`.
    fn unindex(&mut self, repo: &str, digest: &Digest) {
        if let Some(repos) = self.repos_of.get_mut(digest) {
            repos.retain(|r| r != repo);
            if repos.is_empty() {
                self.repos_of.remove(digest);
            }
        }
    }
}

impl LocalLinks {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link of `digest` in `repo`, when held from tracked connection `generation`.
    pub fn get(&self, generation: u64, repo: &str, digest: &Digest) -> Option<Descriptor> {
        let state = self.state();
        if state.generation != generation || !state.usable(generation) {
            return None;
        }
        state.by_repo.get(repo)?.get(digest).cloned()
    }

    /// The epoch to pass to [`Self::insert`]: taken before the read it stores.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// Stores a link read on tracked connection `generation`, unless anything changed since
    /// `epoch` was taken (the read may predate an invalidation already applied).
    pub fn insert(
        &self,
        generation: u64,
        epoch: u64,
        repo: &str,
        digest: &Digest,
        desc: Descriptor,
    ) -> bool {
        let mut state = self.state();
        if state.epoch != epoch || !state.usable(generation) || generation < state.generation {
            return false;
        }
        if generation > state.generation {
            // Nothing read on an earlier connection is tracked any more.
            state.clear();
            state.generation = generation;
        }
        if state.len >= MAX_LINKS {
            state.clear();
        }
        let links = state.by_repo.entry(repo.to_string()).or_default();
        if links.insert(digest.clone(), desc).is_none() {
            state.len += 1;
            state
                .repos_of
                .entry(digest.clone())
                .or_default()
                .push(repo.to_string());
        }
        true
    }

    /// Drops the link of `digest` in `repo`.
    pub fn forget_link(&self, repo: &str, digest: &Digest) {
        let mut state = self.state();
        state.epoch += 1;
        state.remove(repo, digest);
    }

    /// Drops every link of `repo`.
    pub fn forget_repo(&self, repo: &str) {
        let mut state = self.state();
        state.epoch += 1;
        if let Some(links) = state.by_repo.remove(repo) {
            state.len -= links.len();
            for digest in links.keys() {
                state.unindex(repo, digest);
            }
        }
    }

    /// Drops every link of `digest`.
    pub fn forget_blob(&self, digest: &Digest) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.epoch += 1;
        for repo in state.repos_of.remove(digest).unwrap_or_default() {
            if let Some(links) = state.by_repo.get_mut(&repo) {
                if links.remove(digest).is_some() {
                    state.len -= 1;
                }
                if links.is_empty() {
                    state.by_repo.remove(&repo);
                }
            }
        }
    }

    /// Drops everything (Redis flushed, or said something this copy cannot place).
    pub fn forget_all(&self) {
        self.state().clear();
    }

    /// Tracked connection `generation` ended: nothing read on it, or before it, is served.
    pub fn lost(&self, generation: u64) {
        let mut state = self.state();
        state.lost_up_to = state.lost_up_to.max(generation);
        if state.generation <= generation {
            state.clear();
        }
    }

    /// How many links are held.
    pub fn len(&self) -> usize {
        self.state().len
    }

    /// Whether no link is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    fn desc(size: u64) -> Descriptor {
        Descriptor {
            size,
            media_type: "application/octet-stream".into(),
        }
    }

    #[test]
    fn serves_what_its_connection_read_until_told_otherwise() {
        let links = LocalLinks::default();
        let (a, b) = (digest('a'), digest('b'));
        assert!(links.insert(1, links.epoch(), "r", &a, desc(1)));
        assert!(links.insert(1, links.epoch(), "r", &b, desc(2)));
        assert!(links.insert(1, links.epoch(), "s", &a, desc(1)));
        assert_eq!(links.get(1, "r", &a), Some(desc(1)));
        // Another connection's view is not this one's.
        assert_eq!(links.get(2, "r", &a), None);
        links.forget_blob(&a);
        assert_eq!((links.get(1, "r", &a), links.get(1, "s", &a)), (None, None));
        assert_eq!(links.get(1, "r", &b), Some(desc(2)));
        links.forget_repo("r");
        assert!(links.is_empty());
        assert!(links.insert(1, links.epoch(), "r", &b, desc(2)));
        links.forget_link("r", &b);
        assert!(links.is_empty());
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_stored() {
        let links = LocalLinks::default();
        let a = digest('a');
        let before = links.epoch();
        links.forget_blob(&digest('f'));
        assert!(!links.insert(1, before, "r", &a, desc(1)));
        assert_eq!(links.get(1, "r", &a), None);
    }

    #[test]
    fn a_lost_connection_serves_nothing_it_read() {
        let links = LocalLinks::default();
        let a = digest('a');
        assert!(links.insert(3, links.epoch(), "r", &a, desc(1)));
        links.lost(3);
        assert_eq!(links.get(3, "r", &a), None);
        assert!(!links.insert(3, links.epoch(), "r", &a, desc(1)));
        // A read on an older connection that completes late is not stored either.
        assert!(!links.insert(2, links.epoch(), "r", &a, desc(1)));
        assert!(links.insert(4, links.epoch(), "r", &a, desc(1)));
        assert_eq!(links.get(4, "r", &a), Some(desc(1)));
        // The next connection starts empty.
        assert!(links.insert(5, links.epoch(), "s", &a, desc(1)));
        assert_eq!(links.get(5, "r", &a), None);
    }

    #[test]
    fn stays_bounded() {
        let links = LocalLinks::default();
        let a = digest('a');
        for i in 0..MAX_LINKS + 10 {
            assert!(links.insert(1, links.epoch(), &format!("r{i}"), &a, desc(1)));
        }
        assert!(links.len() <= MAX_LINKS);
    }
}
