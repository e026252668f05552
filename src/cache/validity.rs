//! When a node's in-process cache may answer: only while this node has recently read the
//! cluster's state and that state says nothing can delete blobs. Another node's collector
//! cannot reach this process's memory, so instead of being told, the cache stops answering on
//! its own: a reading older than `max_age` (the watcher stalled, storage unreadable) or one that
//! says a collection is running makes it answer "unknown", and every change of epoch empties
//! it. A collector that waits `max_age` (plus a margin) after announcing itself before deleting
//! anything then knows that no node answers from an entry made before the announcement.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The latest reading of the cluster's state, shared by a watcher and a cache.
pub struct CacheValidity {
    max_age: Duration,
    state: Mutex<State>,
}

#[derive(Clone, Copy)]
struct State {
    /// When the last reading was started; `None` before the first.
    read_at: Option<Instant>,
    /// Changes whenever what may have been deleted changes.
    epoch: u64,
    /// False while something may be deleting blobs.
    usable: bool,
}

impl CacheValidity {
    /// Readings are trusted for `max_age` after they were started.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            state: Mutex::new(State {
                read_at: None,
                epoch: 0,
                usable: false,
            }),
        }
    }

    /// Records a reading started at `started` (before the read was sent, so that its age is
    /// never underestimated). An older reading than the latest one is ignored.
    pub fn observe(&self, started: Instant, epoch: u64, usable: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.read_at.is_some_and(|t| t > started) {
            return;
        }
        *state = State {
            read_at: Some(started),
            epoch,
            usable,
        };
    }

    /// The epoch entries may be used in now, or `None` when the cache must not answer.
    pub fn current(&self) -> Option<u64> {
        let state = *self.state.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = state.read_at.is_some_and(|t| t.elapsed() < self.max_age);
        (fresh && state.usable).then_some(state.epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_on_a_fresh_usable_reading() {
        let v = CacheValidity::new(Duration::from_secs(60));
        assert_eq!(v.current(), None, "nothing read yet");
        let t0 = Instant::now();
        v.observe(t0, 4, true);
        assert_eq!(v.current(), Some(4));
        v.observe(Instant::now(), 5, false);
        assert_eq!(v.current(), None, "a collection is running");
        v.observe(t0, 4, true);
        assert_eq!(v.current(), None, "an older reading does not win");
        v.observe(Instant::now(), 6, true);
        assert_eq!(v.current(), Some(6));
    }

    #[test]
    fn a_stale_reading_is_not_trusted() {
        let v = CacheValidity::new(Duration::from_millis(10));
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("the monotonic clock runs for more than a second");
        v.observe(long_ago, 1, true);
        assert_eq!(v.current(), None);
    }
}
