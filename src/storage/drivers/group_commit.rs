//! Group commit for the filesystem driver: publications that finish close together share
//! their directory fsyncs.
//!
//! A durable publication is: the file's data fsynced (by its writer, before it comes here),
//! then renames, then an fsync of every directory whose entries changed. Publications are
//! queued; one flush at a time takes every publication queued so far, does their renames,
//! then fsyncs each distinct directory once, all at the same time so the filesystem commits
//! them together, and only then answers each caller. Requests that arrive while a flush runs
//! form the next batch, so the batching window is the length of one flush and an idle driver
//! flushes at once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What one caller needs made durable. Its files' data must already be durable.
#[derive(Default)]
pub(crate) struct Publication {
    /// Renames, in order; the first failure stops the rest and fails the publication.
    pub renames: Vec<(PathBuf, PathBuf)>,
    /// Paths fsynced once the renames are done: the directories whose entries changed, and
    /// files written without an fsync that must now be durable.
    pub syncs: Vec<PathBuf>,
}

struct Queued {
    publication: Publication,
    done: oneshot::Sender<io::Result<()>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<Queued>,
    /// A flush task is running; it takes `waiting` when it finishes the batch it has.
    flushing: bool,
}

/// The queue of publications waiting for a shared flush.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Queue>,
}

impl GroupCommit {
    /// Renames and syncs `publication`, returning once what it names is durable.
    pub async fn publish(self: &Arc<Self>, publication: Publication) -> io::Result<()> {
        let (done, result) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push(Queued { publication, done });
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).flush_all());
        }
        result
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the flush was abandoned")))
    }

    /// Flushes batches until nothing is waiting.
    async fn flush_all(self: Arc<Self>) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.flushing = false;
                    return;
                }
                std::mem::take(&mut queue.waiting)
            };
            flush(batch).await;
        }
    }
}

/// Renames of a whole batch, then each distinct path's fsync once, in parallel.
async fn flush(batch: Vec<Queued>) {
    let (publications, senders): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|q| (q.publication, q.done)).unzip();
    // Renames are quick: one blocking call does them all.
    let renamed = tokio::task::spawn_blocking(move || {
        publications
            .into_iter()
            .map(|p| {
                p.renames
                    .iter()
                    .try_for_each(|(from, to)| fs::rename(from, to))
                    .map(|()| p.syncs)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let renamed = match renamed {
        Ok(renamed) => renamed,
        Err(e) => {
            for done in senders {
                let _ = done.send(Err(io::Error::other(e.to_string())));
            }
            return;
        }
    };
    let mut results: Vec<io::Result<()>> = Vec::with_capacity(renamed.len());
    let mut wanted: BTreeMap<PathBuf, Vec<usize>> = BTreeMap::new();
    for (i, r) in renamed.into_iter().enumerate() {
        match r {
            Ok(syncs) => {
                for path in syncs {
                    wanted.entry(path).or_default().push(i);
                }
                results.push(Ok(()));
            }
            Err(e) => results.push(Err(e)),
        }
    }
    // Concurrent fsyncs join one journal commit on journaling filesystems.
    let syncs = wanted.into_iter().map(|(path, owners)| async move {
        let synced = tokio::task::spawn_blocking(move || File::open(&path)?.sync_all())
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())));
        (synced, owners)
    });
    for (synced, owners) in futures_util::future::join_all(syncs).await {
        if let Err(e) = synced {
            for i in owners {
                if results[i].is_ok() {
                    results[i] = Err(io::Error::new(e.kind(), e.to_string()));
                }
            }
        }
    }
    for (done, result) in senders.into_iter().zip(results) {
        let _ = done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_publications_are_renamed_and_a_failure_stays_with_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupCommit::default());
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (group, root) = (Arc::clone(&group), dir.path().to_path_buf());
            tasks.push(tokio::spawn(async move {
                let tmp = root.join(format!(".{i}.tmp"));
                // Every fifth publication names a file that does not exist.
                if i % 5 != 0 {
                    fs::write(&tmp, i.to_string()).unwrap();
                }
                let publication = Publication {
                    renames: vec![(tmp, root.join(i.to_string()))],
                    syncs: vec![root.clone()],
                };
                group.publish(publication).await
            }));
        }
        for (i, task) in tasks.into_iter().enumerate() {
            let result = task.await.unwrap();
            assert_eq!(result.is_ok(), i % 5 != 0, "publication {i}: {result:?}");
            let published = fs::read_to_string(dir.path().join(i.to_string())).ok();
            assert_eq!(published, (i % 5 != 0).then(|| i.to_string()));
        }
        // A path that cannot be synced fails only the publications that named it.
        let missing = Publication {
            renames: Vec::new(),
            syncs: vec![dir.path().join("missing")],
        };
        assert!(group.publish(missing).await.is_err());
        assert!(group.publish(Publication::default()).await.is_ok());
    }
}
