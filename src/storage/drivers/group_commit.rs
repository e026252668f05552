//! Group commit for the filesystem driver: publications that finish close together share
//! their directory fsyncs.
//!
//! A durable publication is: the file's data fsynced, then renames, then an fsync of every
//! directory whose entries changed. Publications are queued; one flush at a time takes every
//! publication queued so far, fsyncs their files all at the same time, does their renames,
//! then fsyncs each distinct directory once, again all at the same time so the device
//! flushes (and on journaling filesystems the commits) are shared, and only then answers
//! each caller. Requests that arrive while a flush runs
//! form the next batch, so the batching window is the length of one flush and an idle driver
//! flushes at once.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// What one caller needs made durable.
#[derive(Default)]
pub(crate) struct Publication {
    /// Files written without an fsync whose data must be durable before any rename of the
    /// batch: fsynced all at the same time, so concurrent publications share the flushes.
    pub files: Vec<Arc<File>>,
    /// Renames, in order; the first failure stops the rest and fails the publication.
    pub renames: Vec<(PathBuf, PathBuf)>,
    /// Paths fsynced once the renames are done: the directories whose entries changed, and
    /// files written without an fsync that must now be durable.
    pub syncs: Vec<PathBuf>,
    /// Published only when the publication queued just before it (with it, by
    /// [`GroupCommit::publish_all`]) was: a file that names another appears only after it.
    pub needs_previous: bool,
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
        let mut results = self.publish_all(vec![publication]).await;
        results.pop().unwrap_or(Ok(()))
    }

    /// Publishes several publications in one batch, in order; one result each.
    pub async fn publish_all(
        self: &Arc<Self>,
        publications: Vec<Publication>,
    ) -> Vec<io::Result<()>> {
        let mut results = Vec::with_capacity(publications.len());
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            for publication in publications {
                let (done, result) = oneshot::channel();
                queue.waiting.push(Queued { publication, done });
                results.push(result);
            }
            !std::mem::replace(&mut queue.flushing, true)
        };
        if start {
            tokio::spawn(Arc::clone(self).flush_all());
        }
        let mut out = Vec::with_capacity(results.len());
        for result in results {
            out.push(
                result
                    .await
                    .unwrap_or_else(|_| Err(io::Error::other("the flush was abandoned"))),
            );
        }
        out
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

/// Runs `sync` for each item on the blocking pool, all at the same time (concurrent fsyncs
/// share device flushes, and on journaling filesystems one journal commit); one result each.
async fn sync_all<T: Send + 'static>(
    items: Vec<T>,
    sync: fn(&T) -> io::Result<()>,
) -> Vec<io::Result<()>> {
    let syncs = items.into_iter().map(|item| async move {
        tokio::task::spawn_blocking(move || sync(&item))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
    });
    futures_util::future::join_all(syncs).await
}

/// Each publication's files fsynced, then the renames of the whole batch, then each
/// distinct path's fsync once, in parallel. A publication whose renames failed part-way
/// still has its paths synced (as far as they exist), so what it did rename is durable.
async fn flush(batch: Vec<Queued>) {
    let (publications, senders): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|q| (q.publication, q.done)).unzip();
    let mut results: Vec<io::Result<()>> = publications.iter().map(|_| Ok(())).collect();
    let files: Vec<(usize, Arc<File>)> = publications
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.files.iter().map(move |f| (i, Arc::clone(f))))
        .collect();
    let owners: Vec<usize> = files.iter().map(|(i, _)| *i).collect();
    let synced = sync_all(files, |(_, f)| f.sync_all()).await;
    for (i, synced) in owners.into_iter().zip(synced) {
        if let (Err(e), Ok(())) = (synced, &results[i]) {
            results[i] = Err(e);
        }
    }
    // Renames are quick: one blocking call does them all, in queue order.
    let steps: Vec<_> = publications
        .into_iter()
        .zip(results)
        .map(|(p, r)| (p.renames, p.syncs, p.needs_previous, r))
        .collect();
    let renamed = tokio::task::spawn_blocking(move || {
        let mut previous_ok = true;
        steps
            .into_iter()
            .map(|(renames, syncs, needs_previous, ready)| {
                let result = match ready {
                    Err(e) => Err(e),
                    Ok(()) if needs_previous && !previous_ok => Err(io::Error::other(
                        "not published: the file it names was not published",
                    )),
                    Ok(()) => renames
                        .iter()
                        .try_for_each(|(from, to)| fs::rename(from, to)),
                };
                previous_ok = result.is_ok();
                (result, syncs)
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
    for (i, (result, syncs)) in renamed.into_iter().enumerate() {
        for path in syncs {
            wanted.entry(path).or_default().push(i);
        }
        results.push(result);
    }
    let (paths, owners): (Vec<_>, Vec<_>) = wanted.into_iter().unzip();
    let synced = sync_all(paths, |path| File::open(path)?.sync_all()).await;
    for (synced, owners) in synced.into_iter().zip(owners) {
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
                    ..Publication::default()
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
            syncs: vec![dir.path().join("missing")],
            ..Publication::default()
        };
        assert!(group.publish(missing).await.is_err());
        assert!(group.publish(Publication::default()).await.is_ok());
    }

    #[tokio::test]
    async fn a_publication_that_needs_the_previous_one_waits_for_its_success() {
        let dir = tempfile::tempdir().unwrap();
        let group = Arc::new(GroupCommit::default());
        let root = dir.path().to_path_buf();
        let pair = |first: &str, second: &str| {
            let file = Arc::new(File::create(root.join(format!(".{second}"))).unwrap());
            vec![
                Publication {
                    renames: vec![(root.join(format!(".{first}")), root.join(first))],
                    syncs: vec![root.clone()],
                    ..Publication::default()
                },
                Publication {
                    files: vec![file],
                    renames: vec![(root.join(format!(".{second}")), root.join(second))],
                    syncs: vec![root.clone()],
                    needs_previous: true,
                },
            ]
        };
        fs::write(root.join(".data"), "x").unwrap();
        let results = group.publish_all(pair("data", "link")).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(root.join("data").exists() && root.join("link").exists());
        // The first has nothing to rename: the second is not published either.
        let results = group.publish_all(pair("gone", "dangling")).await;
        assert!(results[0].is_err() && results[1].is_err(), "{results:?}");
        assert!(!root.join("dangling").exists());
    }
}
