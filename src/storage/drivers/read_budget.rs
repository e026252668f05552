//! How large a streamed download's read chunks are: one budget shared by every download
//! open at once, so the memory they hold stays bounded as their number grows.
//!
//! A download read into memory (TLS, HTTP/2) holds two chunks: the one being sent and the
//! next. Fixed 512 KiB chunks cost 1 MiB per download: 16 MiB for 16 TLS pulls, 200 MiB for
//! 200. Large chunks matter to a lone download (fewer wake-ups per byte), not to many at
//! once, which share the cores anyway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Largest chunk: what one download reads at a time when it has the budget to itself.
const MAX_CHUNK: usize = 512 << 10;
/// Smallest chunk, however many downloads share the budget.
const MIN_CHUNK: usize = 64 << 10;
/// Bytes of chunks the open downloads share: up to this many at [`MAX_CHUNK`] each.
const BUDGET: usize = 8 * MAX_CHUNK;
/// Chunk lengths are multiples of this (whole pages, aligned reads).
const CHUNK_UNIT: usize = 64 << 10;

/// The downloads a driver has open, and the chunk length each gets.
#[derive(Debug, Default)]
pub struct ReadBudget {
    open: AtomicUsize,
}

impl ReadBudget {
    /// Counts one more open download until the returned share is dropped.
    pub fn join(self: &Arc<Self>) -> ReadShare {
        self.open.fetch_add(1, Ordering::Relaxed);
        ReadShare {
            budget: self.clone(),
        }
    }
}

/// One open download's part of a [`ReadBudget`].
#[derive(Debug)]
pub struct ReadShare {
    budget: Arc<ReadBudget>,
}

impl ReadShare {
    /// The length of this download's next chunk, from the number of downloads open now.
    pub fn chunk_len(&self) -> usize {
        let open = self.budget.open.load(Ordering::Relaxed).max(1);
        let fair = BUDGET / open / CHUNK_UNIT * CHUNK_UNIT;
        fair.clamp(MIN_CHUNK, MAX_CHUNK)
    }
}

impl Drop for ReadShare {
    fn drop(&mut self) {
        self.budget.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_shrink_as_downloads_open_and_grow_back_as_they_close() {
        let budget = Arc::new(ReadBudget::default());
        let first = budget.join();
        assert_eq!(first.chunk_len(), MAX_CHUNK);
        let mut more: Vec<ReadShare> = (1..8).map(|_| budget.join()).collect();
        assert_eq!(first.chunk_len(), MAX_CHUNK, "8 downloads fit the budget");
        more.extend((8..16).map(|_| budget.join()));
        assert_eq!(first.chunk_len(), 256 << 10);
        more.extend((16..1000).map(|_| budget.join()));
        assert_eq!(first.chunk_len(), MIN_CHUNK, "never below the floor");
        more.truncate(2);
        assert_eq!(first.chunk_len(), MAX_CHUNK);
        drop(more);
        drop(first);
        assert_eq!(budget.open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn chunks_are_whole_units() {
        let budget = Arc::new(ReadBudget::default());
        let shares: Vec<ReadShare> = (0..11).map(|_| budget.join()).collect();
        let len = shares[0].chunk_len();
        assert_eq!(len % CHUNK_UNIT, 0);
        assert!(len * 11 <= BUDGET && len >= MIN_CHUNK, "{len}");
    }
}
