//! The durable, cluster-wide event queue: one small object per event and endpoint in the shared
//! storage, `/wharf/notifications/<endpoint>/<name>.json`, written with the driver's durable
//! put before the request is answered and deleted once a receiver accepted it.
//!
//! Names sort in recording order: wall-clock nanoseconds (made strictly increasing within a
//! process), a per-process sequence and node id, and the object's size, so the deliverer
//! bounds the backlog in bytes from one listing, without a stat per event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::notify::event::Event;
use crate::storage::{StorageDriver, StorageError};

/// Where queued events live: beside distribution's tree, which it never walks.
pub const QUEUE_ROOT: &str = "/wharf/notifications";

/// One queued event, as its name describes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    /// Object name (without the directory).
    pub name: String,
    /// Size of the object in bytes.
    pub bytes: u64,
}

impl Entry {
    /// Reads an entry back from its object name; `None` for names this queue did not write.
    pub fn parse(name: &str) -> Option<Entry> {
        let stem = name.strip_suffix(".json")?;
        let mut parts = stem.split('-');
        let (nanos, seq, node, bytes) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some()
            || nanos.len() != 20
            || seq.len() != 12
            || node.is_empty()
            || !nanos.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit())
            || !node.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        Some(Entry {
            name: name.to_string(),
            bytes: bytes.parse().ok()?,
        })
    }
}

/// Undelivered events of every endpoint, in the shared storage.
#[derive(Clone)]
pub struct Queue {
    driver: Arc<dyn StorageDriver>,
    node: String,
    clock: Arc<AtomicU64>,
    seq: Arc<AtomicU64>,
}

impl Queue {
    /// The queue in `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>) -> Self {
        Queue {
            driver,
            node: format!("{:08x}", rand::random::<u32>()),
            clock: Arc::new(AtomicU64::new(0)),
            seq: Arc::new(AtomicU64::new(0)),
        }
    }

    fn dir(endpoint: &str) -> String {
        format!("{QUEUE_ROOT}/{endpoint}")
    }

    /// A name later than every name this process made before.
    fn next_name(&self, bytes: usize) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let prev = self
            .clock
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or(now);
        let nanos = now.max(prev + 1);
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) % 1_000_000_000_000;
        format!("{nanos:020}-{seq:012}-{}-{bytes}.json", self.node)
    }

    /// Records `events` for `endpoint`, durably, in order; returns the bytes written.
    pub async fn record(&self, endpoint: &str, events: &[Event]) -> Result<u64, StorageError> {
        // Names are taken in order first, so concurrent writes keep the events' order.
        let objects: Vec<(String, Bytes)> = events
            .iter()
            .map(|e| {
                let body = Bytes::from(serde_json::to_vec(e).unwrap_or_default());
                (
                    format!("{}/{}", Self::dir(endpoint), self.next_name(body.len())),
                    body,
                )
            })
            .collect();
        let written = objects.iter().map(|(_, b)| b.len() as u64).sum();
        let writes = objects
            .into_iter()
            .map(|(path, body)| async move { self.driver.put_content(&path, body).await });
        for result in futures_util::future::join_all(writes).await {
            result?;
        }
        Ok(written)
    }

    /// Queued events of `endpoint`, oldest first.
    pub async fn list(&self, endpoint: &str) -> Result<Vec<Entry>, StorageError> {
        let names = match self.driver.list(&Self::dir(endpoint)).await {
            Ok(names) => names,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut entries: Vec<Entry> = names
            .iter()
            .filter_map(|n| Entry::parse(n.rsplit('/').next().unwrap_or(n)))
            .collect();
        entries.sort();
        Ok(entries)
    }

    /// Reads one event; `None` when it is gone (delivered or dropped by another node) or unreadable.
    pub async fn read(&self, endpoint: &str, entry: &Entry) -> Result<Option<Event>, StorageError> {
        let path = format!("{}/{}", Self::dir(endpoint), entry.name);
        match self.driver.get_content(&path).await {
            Ok(body) => match serde_json::from_slice(&body) {
                Ok(event) => Ok(Some(event)),
                Err(e) => {
                    // A torn or foreign object would block the endpoint forever: drop it.
                    tracing::warn!(path, error = %e, "unreadable queued notification event dropped");
                    self.remove(endpoint, entry).await?;
                    Ok(None)
                }
            },
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes one event (delivered or dropped); gone already is fine.
    pub async fn remove(&self, endpoint: &str, entry: &Entry) -> Result<(), StorageError> {
        let path = format!("{}/{}", Self::dir(endpoint), entry.name);
        match self.driver.delete(&path).await {
            Err(e) if !e.is_not_found() => Err(e),
            _ => Ok(()),
        }
    }
}

/// The entries to drop, oldest first, so at most `max_events` and `max_bytes` remain.
pub fn over_limit(entries: &[Entry], max_events: usize, max_bytes: u64) -> usize {
    let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
    let mut drop = entries.len().saturating_sub(max_events);
    total -= entries[..drop].iter().map(|e| e.bytes).sum::<u64>();
    while total > max_bytes && drop < entries.len() {
        total -= entries[drop].bytes;
        drop += 1;
    }
    drop
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64, bytes: u64) -> Entry {
        Entry::parse(&format!("{n:020}-{:012}-ab-{bytes}.json", n)).unwrap()
    }

    #[test]
    fn names_parse_and_foreign_names_do_not() {
        assert_eq!(entry(5, 100).bytes, 100);
        for bad in [
            "x.json",
            "1-2-ab-3.json",
            "00000000000000000001-000000000001-zz-3.json",
        ] {
            assert!(Entry::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn oldest_dropped_past_either_limit() {
        let entries: Vec<Entry> = (0..10).map(|i| entry(i, 10)).collect();
        assert_eq!(over_limit(&entries, 100, 1000), 0);
        assert_eq!(over_limit(&entries, 4, 1000), 6);
        assert_eq!(over_limit(&entries, 100, 35), 7);
        assert_eq!(over_limit(&entries, 100, 0), 10);
    }

    #[tokio::test]
    async fn recorded_events_list_in_order() {
        let driver: Arc<dyn StorageDriver> =
            Arc::new(crate::storage::drivers::inmemory::InMemoryDriver::new());
        let q = Queue::new(driver);
        let mut events = Vec::new();
        for i in 0..5 {
            let mut e = crate::notify::event::Event::new(
                crate::notify::event::Action::Push,
                Default::default(),
                &Default::default(),
                &Default::default(),
                &Default::default(),
            );
            e.id = format!("e{i}");
            events.push(e);
        }
        q.record("hook", &events).await.unwrap();
        let listed = q.list("hook").await.unwrap();
        let mut ids = Vec::new();
        for entry in &listed {
            ids.push(q.read("hook", entry).await.unwrap().unwrap().id);
        }
        assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"]);
        q.remove("hook", &listed[0]).await.unwrap();
        assert_eq!(q.list("hook").await.unwrap().len(), 4);
    }
}
