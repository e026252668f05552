//! The object-store drivers' contract, through the library, against real servers on loopback:
//! one body of checks (appends resumed by another driver instance from storage alone, cuts
//! inside the tail and the parts, cancel and drop, stale offsets, racing writers, atomic
//! writes, server-side moves, ranged reads, paginated listing and deletes, exclusive creation
//! across nodes, redirect URLs) run on every backend by [`contract!`], plus each backend's own
//! checks (what is left in the bucket, names, purging, URL forms, outages).
//!
//! A new object-store driver gets the whole contract with a module that builds a [`Store`]
//! and says `contract!(store);`.

mod support;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use support::Prng;
use wharf::storage::{StorageDriver, StorageError};

const MIB: usize = 1 << 20;

/// Two driver instances over one fresh bucket or container (two nodes), and what the
/// backend's writers are allowed to leave behind.
struct Store {
    a: Box<dyn StorageDriver>,
    b: Box<dyn StorageDriver>,
    /// Backends that store an append in parts as it arrives (S3, as distribution does): a
    /// failed writer may leave whole parts of this size appended, and a restart at offset 0
    /// of a file in progress may be refused only when its writer commits.
    kept_parts: Option<u64>,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn data(len: usize) -> Vec<u8> {
    Prng::new(len as u64).bytes(len)
}

async fn append(d: &dyn StorageDriver, path: &str, offset: usize, bytes: &[u8]) {
    let mut w = d.writer(path, offset as u64).await.expect("open writer");
    assert_eq!(w.size(), offset as u64);
    for piece in bytes.chunks(MIB / 2 + 17) {
        w.write(Bytes::copy_from_slice(piece)).await.expect("write");
    }
    assert_eq!(w.size(), (offset + bytes.len()) as u64);
    w.commit().await.expect("commit");
}

async fn read(d: &dyn StorageDriver, path: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = d
        .reader(path, 0, None)
        .await
        .expect("reader")
        .try_collect()
        .await
        .expect("read");
    chunks.concat()
}

async fn read_range(d: &dyn StorageDriver, path: &str, offset: usize, len: Option<u64>) -> Vec<u8> {
    let chunks: Vec<Bytes> = d
        .reader(path, offset as u64, len)
        .await
        .expect("ranged reader")
        .try_collect()
        .await
        .expect("ranged read");
    chunks.concat()
}

fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    assert!(actual == expected, "{what}: content differs");
}

/// How an upload file becomes a blob.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Publish {
    /// The last writer commits it to the blob's path ([`wharf::storage::FileWriter::commit_to`]).
    CommitTo,
    /// The last writer commits, then the file is moved ([`StorageDriver::move_to`]).
    Move,
}

/// Where the appends check publishes its blob.
const BLOB_PATH: &str = "/docker/registry/v2/blobs/sha256/ab/abcd/data";

/// Chunks of several parts and of a few bytes, alternating nodes, a cancelled and a dropped
/// writer, a read of the file in progress, stale offsets (inside the last part, inside the
/// others, 0, past the end), then publication server-side and ranged reads of the blob: the
/// file is always what was acknowledged (plus, where the backend keeps parts, at most whole
/// parts of what a failed writer was sent next). Returns the blob now at [`BLOB_PATH`].
fn appends_resume_on_another_node(store: &Store, blob_len: usize, publish: Publish) -> Vec<u8> {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    let path = "/docker/registry/v2/repositories/r/_uploads/u1/data";
    let blob = data(blob_len);
    let mut expected: Vec<u8> = Vec::new();
    runtime().block_on(async {
        let cuts = [0, 3 * MIB, 5 * MIB + 3, 5 * MIB + 10, 9 * MIB, 9 * MIB + 1];
        for (i, window) in cuts.windows(2).enumerate() {
            let node = if i % 2 == 0 { a } else { b };
            append(node, path, expected.len(), &blob[window[0]..window[1]]).await;
            expected.extend_from_slice(&blob[window[0]..window[1]]);
            assert_eq!(
                b.stat(path).await.unwrap().size,
                expected.len() as u64,
                "size after chunk {i}"
            );
        }
        // A cancelled chunk, or a writer dropped mid-way (client gone), leaves the file as it
        // was, or with whole parts of the bytes sent through it appended: never other bytes.
        for cancel in [true, false] {
            let (writer_node, other) = if cancel { (a, b) } else { (b, a) };
            let at = expected.len();
            let mut w = writer_node.writer(path, at as u64).await.unwrap();
            w.write(Bytes::copy_from_slice(&blob[at..at + 6 * MIB]))
                .await
                .unwrap();
            if cancel {
                w.cancel().await.unwrap();
            } else {
                drop(w);
            }
            let size = other.stat(path).await.unwrap().size as usize;
            let allowed = match store.kept_parts {
                Some(part) => {
                    size == at || (size - at).is_multiple_of(part as usize) && size <= at + 6 * MIB
                }
                None => size == at,
            };
            assert!(allowed, "{size} bytes after a failed write at {at}");
            expected.extend_from_slice(&blob[at..size]);
        }
        // The file in progress reads back, and stays open for appends.
        assert_same(&read(b, path).await, &expected, "file in progress");

        // A stale offset is refused: stored bytes are never rewritten.
        let len = expected.len();
        for stale in [len - 1, len - MIB, 4 * MIB, 4 * MIB + 7, 0, len + 1] {
            match b.writer(path, stale as u64).await {
                Err(StorageError::OffsetMismatch { actual, .. }) => {
                    assert_eq!(actual, len as u64, "offset {stale}")
                }
                Err(StorageError::Busy(_)) if stale == 0 && store.kept_parts.is_some() => {}
                Err(e) => panic!("offset {stale}: expected OffsetMismatch, got {e}"),
                Ok(w) if stale == 0 && store.kept_parts.is_some() => {
                    // Offset 0 is checked when the writer commits.
                    assert!(matches!(w.commit().await, Err(StorageError::Busy(_))));
                }
                Ok(_) => panic!("offset {stale}: expected OffsetMismatch, got a writer"),
            }
        }
        assert_eq!(a.stat(path).await.unwrap().size, len as u64);

        // The last chunk on the other node, then publication server-side.
        let at = expected.len();
        let mut w = a.writer(path, at as u64).await.unwrap();
        for piece in blob[at..].chunks(MIB / 2 + 17) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        match publish {
            Publish::CommitTo => w.commit_to(BLOB_PATH).await.expect("commit_to"),
            Publish::Move => {
                w.commit().await.expect("commit");
                assert_eq!(a.stat(path).await.unwrap().size, blob.len() as u64);
                b.move_to(path, BLOB_PATH).await.expect("move");
            }
        }
        expected.extend_from_slice(&blob[at..]);
        assert!(a.stat(path).await.unwrap_err().is_not_found());
        assert_same(&read(b, BLOB_PATH).await, &blob, "published blob");
        assert_eq!(a.stat(BLOB_PATH).await.unwrap().size, blob.len() as u64);

        assert_same(
            &read_range(a, BLOB_PATH, 5 * MIB - 3, Some(10)).await,
            &blob[5 * MIB - 3..5 * MIB + 7],
            "range",
        );
        assert_same(
            &read_range(a, BLOB_PATH, blob.len() - 5, None).await,
            &blob[blob.len() - 5..],
            "tail",
        );
        assert!(read_range(a, BLOB_PATH, blob.len(), None).await.is_empty());
        assert!(matches!(
            a.reader(BLOB_PATH, blob.len() as u64 + 1, None).await,
            Err(StorageError::InvalidOffset { .. })
        ));
        a.delete("/docker/registry/v2/repositories/r/_uploads/u1")
            .await
            .ok();
    });
    blob
}

/// Where [`finished_upload_folder_is_deleted_by_its_known_files`] publishes its blob.
const KNOWN_TREE_BLOB: &str = "/docker/registry/v2/blobs/sha256/kn/known/data";

/// An upload finished the way the registry finishes one: the last writer places the file at
/// the blob's path leaving its source to the folder's delete, then the folder is deleted
/// given its files. The blob reads back, nothing is left under the folder, and a sibling
/// folder whose name starts with the same characters is untouched.
fn finished_upload_folder_is_deleted_by_its_known_files(store: &Store) {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    let dir = "/docker/registry/v2/repositories/r/_uploads/known";
    let sibling = "/docker/registry/v2/repositories/r/_uploads/known2/startedat";
    let (started, file) = (format!("{dir}/startedat"), format!("{dir}/data"));
    let hashstate = format!("{dir}/hashstates/sha256/{}", 5 * MIB);
    let blob = data(7 * MIB + 3);
    runtime().block_on(async {
        a.put_content(&started, Bytes::from_static(b"2026-12-07T00:00:00Z"))
            .await
            .unwrap();
        a.put_content(sibling, Bytes::from_static(b"other"))
            .await
            .unwrap();
        append(a, &file, 0, &blob[..5 * MIB]).await;
        a.put_content(&hashstate, Bytes::from_static(b"state"))
            .await
            .unwrap();
        let mut w = b.writer(&file, 5 * MIB as u64).await.unwrap();
        w.write(Bytes::copy_from_slice(&blob[5 * MIB..]))
            .await
            .unwrap();
        w.commit_to_leaving_source(KNOWN_TREE_BLOB)
            .await
            .expect("commit_to_leaving_source");
        assert_same(&read(a, KNOWN_TREE_BLOB).await, &blob, "placed blob");

        b.delete_known_tree(dir, &[started, file, hashstate])
            .await
            .expect("delete_known_tree");
        assert!(a.stat(dir).await.unwrap_err().is_not_found(), "folder left");
        assert!(
            a.list(dir).await.unwrap_err().is_not_found(),
            "folder listed"
        );
        assert_eq!(a.get_content(sibling).await.unwrap(), "other");
        assert_same(
            &read(b, KNOWN_TREE_BLOB).await,
            &blob,
            "blob after the delete",
        );
        // Deleting it again finds nothing to do.
        b.delete_known_tree(dir, &[format!("{dir}/startedat")])
            .await
            .expect("delete_known_tree again");
    });
}

/// A file readied for appends on one node (as a POST readies an upload) is continued at offset
/// 0 by another, and reads back as those bytes; readying it again on either node never loses
/// them.
fn a_prepared_file_is_continued_by_another_node(store: &Store) {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    let path = "/docker/registry/v2/repositories/r/_uploads/prepared/data";
    let bytes = data(MIB + 5);
    runtime().block_on(async {
        a.prepare_append(path).await.expect("prepare");
        if let Ok(info) = b.stat(path).await {
            assert_eq!(info.size, 0, "a prepared file is empty");
        }
        append(b, path, 0, &bytes).await;
        for node in [a, b] {
            // Refused or done, never a reset.
            let _ = node.prepare_append(path).await;
            assert_same(&read(a, path).await, &bytes, "after readying it again");
        }
    });
}

/// Reading from an offset, or a range, of a missing file or of a folder is `NotFound`, and of a
/// file, its bytes.
fn ranged_reads_of_a_missing_file_or_a_folder_are_not_found(store: &Store) {
    let a = store.a.as_ref();
    let folder = "/docker/registry/v2/blobs/sha256/ab/abranged";
    let path = format!("{folder}/data");
    let bytes = data(1000);
    runtime().block_on(async {
        a.put_content(&path, bytes.clone().into())
            .await
            .expect("put");
        for missing in [folder.to_string(), format!("{folder}/missing")] {
            for (offset, len) in [(5, None), (5, Some(3)), (0, Some(3))] {
                for sealed in [false, true] {
                    let read = if sealed {
                        a.sealed_reader(&missing, offset, len).await
                    } else {
                        a.reader(&missing, offset, len).await
                    };
                    assert!(
                        matches!(read, Err(StorageError::NotFound(_))),
                        "{missing} from {offset} ({len:?}, sealed {sealed}): {:?}",
                        read.map(|_| "a stream")
                    );
                }
            }
        }
        assert_same(
            &read_range(a, &path, 5, Some(3)).await,
            &bytes[5..8],
            "a range",
        );
        assert_same(
            &read_range(a, &path, 990, None).await,
            &bytes[990..],
            "a tail",
        );
    });
}

/// Two writers opened at the same point (a retried request racing the original), on two
/// nodes: the second to commit loses, and the file is never published with bytes of both.
fn racing_writers_never_publish_mixed_bytes(store: &Store) {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    let path = "/docker/registry/v2/repositories/r/_uploads/race/data";
    let target = "/docker/registry/v2/blobs/sha256/ra/race/data";
    let blob = data(12 * MIB + 5);
    runtime().block_on(async {
        // One whole part (or several blocks): the writers below append to the same file.
        append(a, path, 0, &blob[..5 * MIB]).await;
        let at = 5 * MIB;
        let mut first = a.writer(path, at as u64).await.unwrap();
        let mut second = b.writer(path, at as u64).await.unwrap();
        // Both cross the part size: both store parts (or blocks) of the same file.
        first
            .write(Bytes::copy_from_slice(&blob[at..]))
            .await
            .unwrap();
        second
            .write(Bytes::from(vec![9u8; blob.len() - at]))
            .await
            .unwrap();
        first.commit().await.unwrap();
        assert!(matches!(second.commit().await, Err(StorageError::Busy(_))));
        assert_eq!(b.stat(path).await.unwrap().size, blob.len() as u64);
        if store.kept_parts.is_some() {
            // The loser's parts replaced the winner's (the writes above ran one after the
            // other): publishing is refused, and nothing appears at the target.
            match a.move_to(path, target).await {
                Err(StorageError::Changed(_)) => {}
                Ok(()) => panic!("a file holding the loser's part was published"),
                Err(e) => panic!("move: {e}"),
            }
        } else {
            assert_same(&read(b, path).await, &blob, "the winner's bytes");
            // A writer opened before a commit by another cannot publish either.
            let stale = a.writer(path, blob.len() as u64).await.unwrap();
            append(b, path, blob.len(), b"more").await;
            assert!(matches!(
                stale.commit_to(target).await,
                Err(StorageError::Busy(_))
            ));
        }
        assert!(b.stat(target).await.unwrap_err().is_not_found());
    });
}

/// Atomic writers (large and small) appear on commit only, replace atomically, and vanish on
/// cancel; small files put, replace and move; large plain objects move server-side; an empty
/// file is a file.
fn atomic_writes_appear_on_commit_only(store: &Store) {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    let blob = data(11 * MIB + 5);
    runtime().block_on(async {
        let path = "/docker/registry/v2/blobs/sha256/11/11aa/data";
        let mut w = a.atomic_writer(path).await.unwrap();
        w.write(Bytes::copy_from_slice(&blob)).await.unwrap();
        assert!(
            b.stat(path).await.unwrap_err().is_not_found(),
            "not before commit"
        );
        w.commit().await.unwrap();
        assert_same(&b.get_content(path).await.unwrap(), &blob, "committed");

        let other = "/docker/registry/v2/blobs/sha256/22/22bb/data";
        let mut w = a.atomic_writer(other).await.unwrap();
        w.write(Bytes::copy_from_slice(&blob)).await.unwrap();
        w.cancel().await.unwrap();
        assert!(b.stat(other).await.unwrap_err().is_not_found());

        let small = "/docker/registry/v2/blobs/sha256/33/33cc/data";
        let mut w = a.atomic_writer(small).await.unwrap();
        w.write(Bytes::from_static(b"tiny")).await.unwrap();
        assert!(b.stat(small).await.unwrap_err().is_not_found());
        w.commit().await.unwrap();
        assert_eq!(b.get_content(small).await.unwrap(), "tiny");

        // A large plain object moves server-side (S3: a multipart copy above its threshold).
        let moved = "/docker/registry/v2/blobs/sha256/44/44dd/data";
        a.move_to(path, moved).await.unwrap();
        assert_same(&b.get_content(moved).await.unwrap(), &blob, "large move");
        assert!(b.stat(path).await.unwrap_err().is_not_found());
        // Read as a sealed file: its size, a range of it; a folder or nothing is no file.
        assert_eq!(b.stat_sealed(moved).await.unwrap().size, blob.len() as u64);
        assert_eq!(b.size_of(moved).await.unwrap(), Some(blob.len() as u64));
        let chunks: Vec<Bytes> = b
            .sealed_reader(moved, 3 * MIB as u64, Some(MIB as u64 + 1))
            .await
            .expect("sealed reader")
            .try_collect()
            .await
            .expect("sealed read");
        assert_same(
            &chunks.concat(),
            &blob[3 * MIB..4 * MIB + 1],
            "sealed range",
        );
        assert!(b
            .stat_sealed("/docker/registry/v2/blobs/sha256/44")
            .await
            .unwrap_err()
            .is_not_found());
        assert_eq!(b.size_of(path).await.unwrap(), None);

        // Replacing a file is atomic too: the old content until commit.
        let mut w = a.atomic_writer(moved).await.unwrap();
        w.write(Bytes::from_static(b"short")).await.unwrap();
        assert_eq!(b.stat(moved).await.unwrap().size, blob.len() as u64);
        w.commit().await.unwrap();
        assert_eq!(b.get_content(moved).await.unwrap(), "short");

        // Small files: put, replace, move.
        let link = "/docker/registry/v2/repositories/r/_layers/sha256/11aa/link";
        a.put_content(link, Bytes::from_static(b"one"))
            .await
            .unwrap();
        a.put_content(link, Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(b.get_content(link).await.unwrap(), "two");
        let moved_link = "/docker/registry/v2/repositories/r/_layers/sha256/11aa/moved";
        b.move_to(link, moved_link).await.unwrap();
        assert!(a.stat(link).await.unwrap_err().is_not_found());
        assert_eq!(a.get_content(moved_link).await.unwrap(), "two");
        assert!(a
            .move_to(link, moved_link)
            .await
            .unwrap_err()
            .is_not_found());
        // An empty file is a file.
        a.put_content("/empty", Bytes::new()).await.unwrap();
        let info = b.stat("/empty").await.unwrap();
        assert!(!info.is_dir && info.size == 0);
        assert!(read(b, "/empty").await.is_empty());
    });
}

/// More children than one listing page; stat of files, prefixes and nothing; deletes of a
/// prefix that leave its longer siblings; paths that escape the root refused.
fn listing_stat_and_deletes_are_paginated(store: &Store) {
    let a = store.a.as_ref();
    runtime().block_on(async {
        let dir = "/docker/registry/v2/repositories";
        let names: Vec<String> = (0..1010).map(|i| format!("repo{i:04}")).collect();
        futures_util::stream::iter(names.iter())
            .map(|n| async move {
                a.put_content(&format!("{dir}/{n}/_layers/link"), Bytes::from_static(b"x"))
                    .await
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await
            .unwrap();
        a.put_content(&format!("{dir}/file"), Bytes::from_static(b"y"))
            .await
            .unwrap();
        let mut listed = a.list(dir).await.unwrap();
        listed.sort();
        let mut want = names.clone();
        want.push("file".into());
        want.sort();
        assert_eq!(listed, want, "every child, past the first page");
        let entries = a.list_entries(dir).await.unwrap();
        assert!(entries.contains(&("repo0005".to_string(), true)));
        assert!(entries.contains(&("file".to_string(), false)));

        let info = a.stat(&format!("{dir}/repo0001")).await.unwrap();
        assert!(info.is_dir);
        let info = a.stat(&format!("{dir}/file")).await.unwrap();
        assert!(!info.is_dir && info.size == 1 && info.modified.is_some());
        assert!(a
            .stat(&format!("{dir}/nope"))
            .await
            .unwrap_err()
            .is_not_found());
        assert!(a
            .list(&format!("{dir}/nope"))
            .await
            .unwrap_err()
            .is_not_found());

        // `repo0001` goes, `repo0001x` (same prefix) stays.
        a.put_content(&format!("{dir}/repo0001x/link"), Bytes::from_static(b"z"))
            .await
            .unwrap();
        a.delete(&format!("{dir}/repo0001")).await.unwrap();
        assert!(a
            .stat(&format!("{dir}/repo0001"))
            .await
            .unwrap_err()
            .is_not_found());
        assert!(a.stat(&format!("{dir}/repo0001x")).await.unwrap().is_dir);
        a.delete(dir).await.unwrap();
        assert!(a.list(dir).await.unwrap_err().is_not_found());
        assert!(a.delete(dir).await.unwrap_err().is_not_found());
        assert!(matches!(
            a.get_content("/../etc/passwd").await,
            Err(StorageError::InvalidPath(_))
        ));
    });
}

/// Exclusive creation holds across nodes: of many concurrent creators on two driver
/// instances, exactly one creates the object and its content is what every reader sees.
fn exclusive_creation_has_one_winner_across_nodes(store: &Store) {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    runtime().block_on(async {
        for round in 0..3 {
            let path = format!("/claims/round-{round}");
            let attempts = (0..8u8).map(|i| {
                let driver = if i % 2 == 0 { a } else { b };
                let path = path.clone();
                async move {
                    let created = driver
                        .put_content_if_absent(&path, Bytes::from(vec![i; 16]))
                        .await
                        .expect("exclusive put");
                    (i, created)
                }
            });
            let results = futures_util::future::join_all(attempts).await;
            let winners: Vec<u8> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
            assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
            assert_eq!(read(a, &path).await, vec![winners[0]; 16]);
            assert!(!b
                .put_content_if_absent(&path, Bytes::from_static(b"late"))
                .await
                .unwrap());
            assert_eq!(read(b, &path).await, vec![winners[0]; 16]);
        }
    });
}

/// Concurrent atomic writers of one path with the same content (clients pushing the same blob
/// at once, monolithically) all succeed, and the file is whole: the content is identical, so
/// whichever lands last is right.
fn concurrent_atomic_writers_of_one_path_all_succeed(store: &Store) {
    let (a, b) = (store.a.as_ref(), store.b.as_ref());
    runtime().block_on(async {
        for (round, len) in [MIB + 3, 9 * MIB + 7].into_iter().enumerate() {
            let path = format!("/docker/registry/v2/blobs/sha256/cc/cc{round}/data");
            let blob = data(len);
            let mut writers = Vec::new();
            for i in 0..4 {
                let node = if i % 2 == 0 { a } else { b };
                writers.push(node.atomic_writer(&path).await.expect("atomic writer"));
            }
            // Interleaved: every writer has stored part of its bytes before any commits.
            let pieces: Vec<&[u8]> = blob.chunks(MIB / 2 + 17).collect();
            for piece in &pieces {
                for w in writers.iter_mut() {
                    w.write(Bytes::copy_from_slice(piece)).await.expect("write");
                }
            }
            let commits = writers.into_iter().map(|w| w.commit());
            for (i, result) in futures_util::future::join_all(commits)
                .await
                .into_iter()
                .enumerate()
            {
                result.unwrap_or_else(|e| panic!("round {round}: writer {i}: {e}"));
            }
            assert_same(&read(a, &path).await, &blob, "after concurrent writers");
        }
    });
}

/// Where [`redirect_urls_serve_the_object`] stores its object.
const REDIRECTED: &str = "/docker/registry/v2/blobs/sha256/55/55ee/data";

/// The redirect URL of an object serves it to a plain HTTP client; returns the URL, for the
/// backend's own checks of its form.
fn redirect_urls_serve_the_object(store: &Store) -> String {
    let a = store.a.as_ref();
    let url = runtime().block_on(async {
        a.put_content(REDIRECTED, Bytes::from_static(b"signed bytes"))
            .await
            .unwrap();
        a.redirect_url(REDIRECTED).await.unwrap().expect("a URL")
    });
    let resp = reqwest::blocking::get(&url).unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    assert_eq!(resp.bytes().unwrap().as_ref(), b"signed bytes");
    url
}

/// The shared checks as tests of the enclosing backend module, on stores made by `$store()`.
macro_rules! contract {
    ($store:ident) => {
        #[test]
        fn a_prepared_file_is_continued_by_another_node() {
            super::a_prepared_file_is_continued_by_another_node(&$store());
        }
        #[test]
        fn ranged_reads_of_a_missing_file_or_a_folder_are_not_found() {
            super::ranged_reads_of_a_missing_file_or_a_folder_are_not_found(&$store());
        }
        #[test]
        fn racing_writers_never_publish_mixed_bytes() {
            super::racing_writers_never_publish_mixed_bytes(&$store());
        }
        #[test]
        fn atomic_writes_appear_on_commit_only() {
            super::atomic_writes_appear_on_commit_only(&$store());
        }
        #[test]
        fn concurrent_atomic_writers_of_one_path_all_succeed() {
            super::concurrent_atomic_writers_of_one_path_all_succeed(&$store());
        }
        #[test]
        fn listing_stat_and_deletes_are_paginated() {
            super::listing_stat_and_deletes_are_paginated(&$store());
        }
        #[test]
        fn exclusive_creation_has_one_winner_across_nodes() {
            super::exclusive_creation_has_one_winner_across_nodes(&$store());
        }
        #[test]
        fn finished_upload_folder_is_deleted_by_its_known_files() {
            super::finished_upload_folder_is_deleted_by_its_known_files(&$store());
        }
        #[test]
        fn appends_resume_on_another_node_then_commit_to() {
            let store = $store();
            super::appends_resume_on_another_node(
                &store,
                22 * super::MIB + 123,
                super::Publish::CommitTo,
            );
        }
    };
}

mod s3 {
    //! S3 on moto: multipart uploads continued by any node, closed when dropped or purged.

    use std::time::Duration;

    use super::support::s3::{self as server, ACCESS_KEY, REGION, SECRET_KEY};
    use super::{Publish, Store, BLOB_PATH, MIB};
    use wharf::storage::drivers::s3::{S3Driver, S3Settings};

    fn settings(bucket: &str, chunk: u64) -> S3Settings {
        S3Settings {
            driver_name: "s3",
            bucket: bucket.to_string(),
            region: REGION.to_string(),
            endpoint: Some(server::shared().endpoint()),
            redirect_endpoint: None,
            force_path_style: true,
            credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into(), None)),
            root: "wharf-root".into(),
            chunk_size: chunk,
            copy_chunk_size: 5 * MIB as u64,
            copy_max_concurrency: 4,
            copy_threshold: 6 * MIB as u64,
            encrypt: false,
            key_id: None,
            storage_class: "STANDARD".into(),
            object_acl: Some("private".into()),
            skip_verify: false,
            user_agent: Some("wharf tests".into()),
            dual_stack: false,
            accelerate: false,
            fips: false,
            log_calls: false,
        }
    }

    /// Two nodes over a fresh bucket with parts of `chunk` bytes, and the bucket.
    fn store_with(chunk: u64) -> (Store, String) {
        let bucket = server::shared().create_bucket();
        let store = Store {
            a: Box::new(S3Driver::new(&settings(&bucket, chunk)).expect("driver")),
            b: Box::new(S3Driver::new(&settings(&bucket, chunk)).expect("driver")),
            kept_parts: Some(chunk),
        };
        (store, bucket)
    }

    fn store() -> Store {
        store_with(5 * MIB as u64).0
    }

    contract!(store);

    /// After the appends check: dropped writers have aborted their multipart uploads in the
    /// background, and the bucket holds only the blob, readable by plain S3.
    fn appends_leave_only_the_blob(chunk: u64, publish: Publish) {
        let (store, bucket) = store_with(chunk);
        let blob = super::appends_resume_on_another_node(&store, 32 * MIB + 123, publish);
        let server = server::shared();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !server.open_uploads(&bucket).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(server.open_uploads(&bucket), Vec::<String>::new());
        let keys = server.keys(&bucket, "");
        let key = format!("wharf-root{BLOB_PATH}");
        assert_eq!(keys, vec![key.clone()], "only the blob is left");
        super::assert_same(
            &server.object(&bucket, &key).unwrap(),
            &blob,
            "object read by plain S3",
        );
    }

    #[test]
    fn appends_resume_on_another_node_5mib_parts() {
        appends_leave_only_the_blob(5 * MIB as u64, Publish::Move);
    }

    /// With parts larger than the 5 MiB minimum, a short file of 5 MiB or more becomes a part
    /// by a server-side copy instead of being read back.
    #[test]
    fn appends_resume_on_another_node_7mib_parts() {
        appends_leave_only_the_blob(7 * MIB as u64, Publish::Move);
    }

    #[test]
    fn atomic_writes_leave_no_open_upload() {
        let (store, bucket) = store_with(5 * MIB as u64);
        super::atomic_writes_appear_on_commit_only(&store);
        assert_eq!(server::shared().open_uploads(&bucket), Vec::<String>::new());
    }

    #[test]
    fn purging_aborts_stale_multipart_uploads() {
        let bucket = server::shared().create_bucket();
        let a = S3Driver::new(&settings(&bucket, 5 * MIB as u64)).expect("driver");
        let server = server::shared();
        super::runtime().block_on(async {
            // An upload session holding a whole part and a short one, then abandoned.
            let path = "/docker/registry/v2/repositories/r/_uploads/old/data";
            super::append(&a, path, 0, &super::data(6 * MIB)).await;
            assert_eq!(server.open_uploads(&bucket).len(), 1);
            // moto reports a fixed initiation date in 2010 for every upload, so only "older
            // than zero" can be told apart here; the age comparison itself is the SDK's.
            assert_eq!(
                a.purge_multipart_uploads(Duration::ZERO, true)
                    .await
                    .unwrap(),
                1
            );
            assert_eq!(server.open_uploads(&bucket).len(), 1, "dry run");
            assert_eq!(
                a.purge_multipart_uploads(Duration::ZERO, false)
                    .await
                    .unwrap(),
                1
            );
        });
        assert!(server.open_uploads(&bucket).is_empty());
    }

    /// A file caught half-way through a reopening (its upload completed onto the key, the new
    /// upload not yet filled with the object's bytes, as a writer appending after a short part
    /// or a reader leaves it for a moment, or for good if its node dies): readers and moves
    /// take the object, and never complete the empty upload over it.
    #[test]
    fn a_file_amid_a_reopening_is_the_object() {
        let (store, bucket) = store_with(5 * MIB as u64);
        let server = server::shared();
        let path = "/docker/registry/v2/repositories/r/_uploads/u/data";
        let key = format!("wharf-root{path}");
        let data = super::data(3 * 1024 + 7);
        super::runtime().block_on(super::append(&*store.a, path, 0, &data));
        let first = server.upload_ids(&bucket, &key);
        assert_eq!(first.len(), 1, "one open upload holds the short part");
        server.complete_upload(&bucket, &key, &first[0]);
        server.create_upload(&bucket, &key);
        super::runtime().block_on(async {
            let read = store.b.get_content(path).await.unwrap();
            super::assert_same(&read, &data, "read amid the reopening");
        });
        let object = server.object(&bucket, &key).expect("the object stays");
        super::assert_same(&object, &data, "the object after the read");
        super::runtime().block_on(async {
            store.a.move_to(path, BLOB_PATH).await.unwrap();
        });
        let moved = server
            .object(&bucket, &format!("wharf-root{BLOB_PATH}"))
            .expect("the moved file");
        super::assert_same(&moved, &data, "the moved file");
    }

    #[test]
    fn presigned_urls_serve_the_object() {
        let url = super::redirect_urls_serve_the_object(&store());
        assert!(url.contains("X-Amz-Expires=1200"), "{url}");
    }
}

mod azure {
    //! Azure Blob on Azurite: block lists continued by any node; distribution 2.8's and 3's
    //! blob names; SAS URLs; an outage.

    use bytes::Bytes;
    use wharf::storage::drivers::azure::AzureDriver;
    use wharf::storage::{StorageDriver, StorageError};

    use super::support::azure::{self as server, AzureTarget, Azurite};
    use super::{Publish, Store, MIB};

    /// Two nodes over a fresh container (distribution 3 names under `wharf-root`).
    fn store_on(target: &AzureTarget) -> Store {
        Store {
            a: Box::new(server::driver(target, Some("wharf-root"))),
            b: Box::new(server::driver(target, Some("wharf-root"))),
            kept_parts: None,
        }
    }

    fn store() -> Store {
        store_on(&AzureTarget::fresh())
    }

    contract!(store);

    /// Moved rather than committed to, the blob lands where distribution 3 names it: the
    /// root directory, no leading `/`.
    #[test]
    fn appends_resume_on_another_node_then_move() {
        let target = AzureTarget::fresh();
        super::appends_resume_on_another_node(&store_on(&target), 16 * MIB + 123, Publish::Move);
        super::runtime().block_on(async {
            let plain = server::driver(&target, Some(""));
            let listed = plain
                .list("/wharf-root/docker/registry/v2/blobs/sha256/ab/abcd")
                .await
                .unwrap();
            assert_eq!(listed, vec!["data".to_string()]);
            assert_eq!(
                plain.list("/").await.unwrap(),
                vec!["wharf-root".to_string()]
            );
        });
    }

    /// A distribution 2.8 config names blobs by the whole path, leading `/` included: the
    /// same path through distribution 3's names is another blob.
    #[test]
    fn distribution_2_8_names_keep_the_leading_slash() {
        let target = AzureTarget::fresh();
        let v2 = server::driver(&target, None);
        let v3 = server::driver(&target, Some(""));
        super::runtime().block_on(async {
            let path = "/docker/registry/v2/repositories/r/_layers/sha256/aa/link";
            v2.put_content(path, Bytes::from_static(b"v2"))
                .await
                .unwrap();
            assert_eq!(v2.get_content(path).await.unwrap(), "v2");
            assert!(v3.stat(path).await.unwrap_err().is_not_found());
            assert_eq!(v2.list("/").await.unwrap(), vec!["docker".to_string()]);
            // The SAS signs the name with its leading `/`.
            let url = v2.redirect_url(path).await.unwrap().expect("a URL");
            let body = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
            assert_eq!(body.as_ref(), b"v2", "{url}");
            super::append(&v2, "/docker/up/data", 0, &super::data(5 * MIB)).await;
            super::append(&v2, "/docker/up/data", 5 * MIB, b"x").await;
            assert_eq!(
                v2.stat("/docker/up/data").await.unwrap().size,
                5 * MIB as u64 + 1
            );
            v2.delete("/docker").await.unwrap();
            assert!(v2.list("/").await.unwrap_err().is_not_found());
        });
    }

    #[test]
    fn sas_urls_serve_the_blob() {
        let url = super::redirect_urls_serve_the_object(&store());
        assert!(url.contains("sp=r") && url.contains("sig="), "{url}");
        // The signature covers the blob: another name with it is refused.
        let other = url.replace("55ee/data", "55ee/other");
        assert_eq!(reqwest::blocking::get(&other).unwrap().status(), 403);
    }

    /// With the service down, calls fail as "unreachable" (answered 503 by the registry)
    /// after bounded retries, and work again once it is back.
    #[test]
    fn an_outage_is_unreachable_then_recovers() {
        let server = Azurite::start();
        let port = server.port();
        let data_dir = server.data_dir();
        let target = AzureTarget {
            service_url: server.service_url(),
            container: server::fresh_container(),
        };
        let d: AzureDriver = server::driver(&target, Some(""));
        let rt = super::runtime();
        rt.block_on(async {
            d.put_content("/a", Bytes::from_static(b"kept"))
                .await
                .unwrap();
        });
        server.stop();
        let err = rt.block_on(d.get_content("/a")).unwrap_err();
        match &err {
            StorageError::Io { source, .. } => assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{err}"
            ),
            other => panic!("expected an I/O error, got {other}"),
        }
        let back = Azurite::start_on(port, Some(&data_dir));
        assert_eq!(rt.block_on(d.get_content("/a")).unwrap(), "kept");
        drop(back);
        drop(server);
    }
}

mod azure_oauth {
    //! Azure Blob on an HTTPS Azurite that checks Entra ID bearer tokens, the driver
    //! authorized by a client secret (`credentials.type: client_secret`) whose tokens come
    //! from the loopback Entra ID stand-in; redirects signed with a user delegation key.

    use bytes::Bytes;
    use wharf::storage::{StorageDriver, StorageError};

    use super::support::azure as server;
    use super::support::process::{clean_command, run_bounded};
    use super::{Store, MIB};

    fn store() -> Store {
        let target = server::oauth_target();
        Store {
            a: Box::new(server::oauth_driver(&target, "wharf-root")),
            b: Box::new(server::oauth_driver(&target, "wharf-root")),
            kept_parts: None,
        }
    }

    contract!(store);

    /// `curl -k` (Azurite's certificate is self-signed): status and body.
    fn fetch(url: &str) -> (String, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let body = dir.path().join("body");
        let mut cmd = clean_command(std::path::Path::new("curl"));
        cmd.args(["-sk", "--max-time", "30", "-o"])
            .arg(&body)
            .args(["-w", "%{http_code}", url]);
        let out = run_bounded(cmd, std::time::Duration::from_secs(60));
        (
            out.stdout.trim().to_string(),
            std::fs::read(&body).unwrap_or_default(),
        )
    }

    /// The redirect URL is a user delegation SAS (no account key is configured): it reads
    /// the blob it names, and only that one.
    #[test]
    fn user_delegation_sas_urls_serve_the_blob() {
        let target = server::oauth_target();
        let d = server::oauth_driver(&target, "");
        let path = "/docker/registry/v2/blobs/sha256/55/55ee/data";
        let (url, again) = super::runtime().block_on(async {
            d.put_content(path, Bytes::from_static(b"signed bytes"))
                .await
                .unwrap();
            let url = d.redirect_url(path).await.unwrap().expect("a URL");
            // The delegation key is kept: a second URL needs no second key.
            let again = d.redirect_url(path).await.unwrap().expect("a URL");
            (url, again)
        });
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        for field in [
            "skoid=", "sktid=", "skt=", "ske=", "sks=b", "skv=", "sp=r", "sig=",
        ] {
            assert!(url.contains(field), "{field} in {url}");
        }
        assert_eq!(
            fetch(&url),
            ("200".to_string(), b"signed bytes".to_vec()),
            "{url}"
        );
        assert_eq!(fetch(&again).0, "200", "{again}");
        let other = url.replace("55ee/data", "55ee/other");
        assert_eq!(fetch(&other).0, "403", "{other}");
    }

    /// Azurite checks bearer tokens: one that is not a token of the right issuer, audience
    /// and lifetime is refused (so the tests above pass on the driver's real tokens).
    #[test]
    fn the_service_refuses_tokens_it_cannot_accept() {
        let target = server::oauth_target();
        for token in ["not-a-jwt", EXPIRED_FOREIGN_JWT] {
            let mut cmd = clean_command(std::path::Path::new("curl"));
            cmd.args([
                "-sk",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args(["-H", "x-ms-version: 2021-08-06"])
            .arg(format!("{}?comp=list", target.service_url));
            let out = run_bounded(cmd, std::time::Duration::from_secs(60));
            // AuthenticationFailed.
            assert_eq!(out.stdout.trim(), "403", "{token}");
        }
    }

    /// `{"aud":"https://storage.azure.com","iss":"https://example.com/","iat":1,"nbf":1,"exp":2}`.
    const EXPIRED_FOREIGN_JWT: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJhdWQiOiJodHRwczovL3N0b3JhZ2UuYXp1cmUuY29tIiwiaXNzIjoiaHR0cHM6Ly9leGFtcGxlLmNvbS8iLCJpYXQiOjEsIm5iZiI6MSwiZXhwIjoyfQ.";

    /// Uploads of several blocks and the server-side copy that publishes them work on tokens.
    #[test]
    fn block_uploads_and_moves_work_on_tokens() {
        let target = server::oauth_target();
        super::appends_resume_on_another_node(
            &Store {
                a: Box::new(server::oauth_driver(&target, "r")),
                b: Box::new(server::oauth_driver(&target, "r")),
                kept_parts: None,
            },
            16 * MIB + 123,
            super::Publish::Move,
        );
    }

    /// A secret the identity provider refuses: every call fails as "unavailable" (503 from
    /// the registry) naming the refusal; nothing panics.
    #[test]
    fn a_refused_secret_makes_calls_unavailable() {
        use wharf::storage::drivers::azure::{AzureAuth, AzureDriver, AzureSettings};
        server::oauth_shared();
        let target = server::oauth_target();
        let d = AzureDriver::new(&AzureSettings {
            account: server::ACCOUNT.to_string(),
            auth: AzureAuth::ClientSecret {
                tenant: super::support::entra::TENANT.to_string(),
                client_id: super::support::entra::CLIENT_ID.to_string(),
                secret: "not the secret".to_string(),
            },
            container: target.container.clone(),
            service_url: target.service_url.clone(),
            name_prefix: String::new(),
            max_attempts: 3,
            retry_delay: std::time::Duration::from_millis(10),
            skip_verify: true,
        })
        .unwrap();
        let err = super::runtime()
            .block_on(d.put_content("/a", Bytes::from_static(b"x")))
            .unwrap_err();
        match &err {
            StorageError::Unavailable { reason, .. } => {
                assert!(reason.contains("invalid_client"), "{reason}")
            }
            other => panic!("expected unavailable, got {other}"),
        }
    }
}

mod gcs {
    //! Google Cloud Storage on fake-gcs-server: a part per append composed on commit by any
    //! node, append claims, distribution's object names, signed URLs, an outage.

    use bytes::Bytes;
    use wharf::storage::drivers::gcs::GcsDriver;
    use wharf::storage::{StorageDriver, StorageError};

    use super::support::gcs::{self as server, FakeGcs, GcsTarget};
    use super::{Publish, Store, MIB};

    /// Two nodes over a fresh bucket (names under `wharf-root`), 5 MiB chunks.
    fn store_on(target: &GcsTarget) -> Store {
        Store {
            a: Box::new(server::driver(target, "wharf-root", 5 * MIB)),
            b: Box::new(server::driver(target, "wharf-root", 5 * MIB)),
            kept_parts: None,
        }
    }

    fn store() -> Store {
        store_on(&GcsTarget::fresh())
    }

    contract!(store);

    /// Moved rather than committed to, the blob lands where distribution names it
    /// (`<rootdirectory>/docker/...`), and no part or claim is left beside the root.
    #[test]
    fn appends_resume_on_another_node_then_move() {
        let target = GcsTarget::fresh();
        super::appends_resume_on_another_node(&store_on(&target), 16 * MIB + 123, Publish::Move);
        super::runtime().block_on(async {
            let plain = server::driver(&target, "", MIB);
            let listed = plain
                .list("/wharf-root/docker/registry/v2/blobs/sha256/ab/abcd")
                .await
                .unwrap();
            assert_eq!(listed, vec!["data".to_string()]);
            assert_eq!(
                plain.list("/").await.unwrap(),
                vec!["wharf-root".to_string()]
            );
        });
    }

    /// A finished upload's folder deleted by its known files takes the upload object's claims
    /// with it: nothing is left beside the root.
    #[test]
    fn a_known_tree_delete_leaves_no_claim() {
        let target = GcsTarget::fresh();
        super::finished_upload_folder_is_deleted_by_its_known_files(&store_on(&target));
        super::runtime().block_on(async {
            let plain = server::driver(&target, "", MIB);
            assert_eq!(
                plain.list("/").await.unwrap(),
                vec!["wharf-root".to_string()]
            );
        });
    }

    /// Appends and an atomic write of many chunks (more than one compose takes, 32) stream
    /// through resumable upload sessions: the bytes come back in order and nothing is left.
    #[test]
    fn writes_of_many_chunks_stream_through_sessions() {
        let target = GcsTarget::fresh();
        let d = server::driver(&target, "", 256 << 10);
        let blob = super::data(70 * (256 << 10) + 5);
        super::runtime().block_on(async {
            let path = "/docker/up/data";
            super::append(&d, path, 0, &blob[..40 * (256 << 10)]).await;
            super::append(&d, path, 40 * (256 << 10), &blob[40 * (256 << 10)..]).await;
            super::assert_same(&super::read(&d, path).await, &blob, "composed file");
            let mut w = d.atomic_writer("/docker/atomic").await.unwrap();
            w.write(Bytes::copy_from_slice(&blob)).await.unwrap();
            w.commit().await.unwrap();
            super::assert_same(&super::read(&d, "/docker/atomic").await, &blob, "atomic");
            d.delete("/docker").await.unwrap();
            assert!(d.list("/").await.unwrap_err().is_not_found());
        });
    }

    /// Signed URLs carry a V4 signature for the object's path-style URL. The emulator does
    /// not check signatures: this shows the URL's form and that it names the object.
    #[test]
    fn signed_urls_serve_the_object() {
        let url = super::redirect_urls_serve_the_object(&store());
        assert!(
            url.contains("X-Goog-Algorithm=GOOG4-RSA-SHA256")
                && url.contains("X-Goog-Expires=1200")
                && url.contains("&X-Goog-Signature="),
            "{url}"
        );
        let signature = url.rsplit("X-Goog-Signature=").next().unwrap();
        assert_eq!(signature.len(), 512, "an RSA-2048 signature in hex: {url}");
        assert!(
            url.contains("/wharf-root/docker/registry/v2/blobs/"),
            "{url}"
        );
    }

    /// With the service down, calls fail as "unreachable" (answered 503 by the registry)
    /// after bounded retries, and work again once it is back.
    #[test]
    fn an_outage_is_unreachable_then_recovers() {
        let server = FakeGcs::start();
        let port = server.port();
        let data_dir = server.data_dir();
        let target = GcsTarget {
            host: server.host(),
            bucket: server.create_bucket(),
        };
        let d: GcsDriver = server::driver(&target, "", MIB);
        let rt = super::runtime();
        rt.block_on(async {
            d.put_content("/a", Bytes::from_static(b"kept"))
                .await
                .unwrap();
        });
        server.stop();
        let err = rt.block_on(d.get_content("/a")).unwrap_err();
        match &err {
            StorageError::Io { source, .. } => assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{err}"
            ),
            other => panic!("expected an I/O error, got {other}"),
        }
        let back = FakeGcs::start_on(port, Some(&data_dir));
        assert_eq!(rt.block_on(d.get_content("/a")).unwrap(), "kept");
        drop(back);
        drop(server);
    }

    /// A server that answers on the port is not taken for the emulator: one started on a port
    /// another server holds does not start, so an outage test never stops a process other
    /// than the one it talks to.
    #[test]
    fn a_port_held_by_another_server_is_not_the_emulator() {
        let first = FakeGcs::start();
        let second = FakeGcs::try_start_on(first.port(), None);
        assert!(second.is_err(), "started on a port another server holds");
        first.stop();
        let err = reqwest::blocking::Client::new()
            .get(format!("http://{}/storage/v1/b", first.host()))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .expect_err("nothing serves once the emulator is stopped");
        assert!(err.is_connect(), "{err}");
    }
}

mod swift {
    //! OpenStack Swift (tempauth): DLO segments continued by any node, distribution 2.8's
    //! object names, temp URLs, an outage.

    use bytes::Bytes;
    use wharf::storage::{StorageDriver, StorageError};

    use super::support::swift::{self as server, Swift, SwiftTarget};
    use super::{Publish, Store, MIB};

    /// Segments of 5 MiB, as the S3 variant's parts.
    const CHUNK: usize = 5 * MIB;

    fn store_on(target: &SwiftTarget) -> Store {
        Store {
            a: Box::new(server::driver(target, CHUNK)),
            b: Box::new(server::driver(target, CHUNK)),
            kept_parts: Some(CHUNK as u64),
        }
    }

    fn store() -> Store {
        store_on(&SwiftTarget::fresh())
    }

    contract!(store);

    /// Moved rather than committed to; then the container holds only the blob, under
    /// distribution 2.8's name (`files/...`): the upload's manifest and segments are gone.
    #[test]
    fn appends_resume_on_another_node_then_move() {
        let target = SwiftTarget::fresh();
        let blob = super::appends_resume_on_another_node(
            &store_on(&target),
            16 * MIB + 123,
            Publish::Move,
        );
        let names = object_names(&target);
        assert_eq!(
            names,
            vec![format!("files{}", super::BLOB_PATH)],
            "only the blob is left"
        );
        let plain = plain_get(&target, &names[0]);
        super::assert_same(&plain, &blob, "object read by plain Swift");
    }

    /// Every object name in a container, through Swift's own listing.
    fn object_names(target: &SwiftTarget) -> Vec<String> {
        let (token, storage) = auth(target);
        let body = reqwest::blocking::Client::new()
            .get(format!("{storage}/{}?format=json", target.container))
            .header("x-auth-token", token)
            .send()
            .unwrap()
            .text()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn plain_get(target: &SwiftTarget, name: &str) -> Vec<u8> {
        let (token, storage) = auth(target);
        reqwest::blocking::Client::new()
            .get(format!("{storage}/{}/{name}", target.container))
            .header("x-auth-token", token)
            .send()
            .unwrap()
            .bytes()
            .unwrap()
            .to_vec()
    }

    /// A tempauth token and the storage URL.
    fn auth(target: &SwiftTarget) -> (String, String) {
        let resp = reqwest::blocking::Client::new()
            .get(&target.auth_url)
            .header("x-auth-user", server::USER)
            .header("x-auth-key", server::KEY)
            .send()
            .unwrap();
        let h = resp.headers();
        (
            h["x-auth-token"].to_str().unwrap().to_string(),
            h["x-storage-url"].to_str().unwrap().to_string(),
        )
    }

    /// A file appended to is what distribution 2.8 writes: a DLO manifest at `files/<path>`
    /// naming `<container>/segments/<3 hex>/<hex>` (the hex of the path, 32 random bytes and
    /// an empty SHA-1, as its Go code spells it), with segments numbered `%016d`.
    #[test]
    fn appends_are_distribution_2_8_dlos() {
        let target = SwiftTarget::fresh();
        let d = server::driver(&target, CHUNK);
        let path = "/docker/registry/v2/repositories/r/_uploads/u/data";
        super::runtime().block_on(async {
            super::append(&d, path, 0, &super::data(CHUNK + 7)).await;
        });
        let mut names = object_names(&target);
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(names[0], format!("files{path}"));
        let segment = names[1].split('/').collect::<Vec<_>>();
        assert_eq!(segment[0], "segments");
        let hex = format!("{}{}", segment[1], segment[2]);
        let path_hex: String = path.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(segment[1].len(), 3);
        assert_eq!(hex.len(), 2 * (path.len() + 32 + 20));
        assert!(hex.starts_with(&path_hex), "{hex}");
        assert!(
            hex.ends_with("da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            "{hex}"
        );
        assert_eq!(segment[3], "0000000000000001");
        assert!(names[2].ends_with("/0000000000000002"));
        let (token, storage) = auth(&target);
        let resp = reqwest::blocking::Client::new()
            .head(format!("{storage}/{}/{}", target.container, names[0]))
            .header("x-auth-token", token)
            .send()
            .unwrap();
        let manifest = resp.headers()["x-object-manifest"].to_str().unwrap();
        let prefix = names[1].rsplit_once('/').unwrap().0;
        assert_eq!(manifest, format!("{}/{prefix}", target.container));
    }

    #[test]
    fn temp_urls_serve_the_object() {
        let url = super::redirect_urls_serve_the_object(&store());
        assert!(
            url.contains("temp_url_sig=") && url.contains("temp_url_expires="),
            "{url}"
        );
        // The signature covers the object: another name with it is refused.
        let other = url.replace("55ee/data", "55ee/other");
        assert_eq!(reqwest::blocking::get(&other).unwrap().status(), 401);
    }

    /// With Swift down, calls fail as "unreachable" (answered 503 by the registry) after
    /// bounded retries, and work again once it is back (with a new token: memcached restarted).
    #[test]
    fn an_outage_is_unreachable_then_recovers() {
        let swift = Swift::start();
        let target = SwiftTarget {
            auth_url: swift.auth_url(),
            container: server::fresh_container(),
        };
        let d = server::driver(&target, CHUNK);
        let rt = super::runtime();
        rt.block_on(async {
            d.put_content("/a", Bytes::from_static(b"kept"))
                .await
                .unwrap();
        });
        swift.stop();
        let err = rt.block_on(d.get_content("/a")).unwrap_err();
        match &err {
            StorageError::Io { source, .. } => assert_eq!(
                source.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{err}"
            ),
            other => panic!("expected an I/O error, got {other}"),
        }
        swift.run();
        assert_eq!(rt.block_on(d.get_content("/a")).unwrap(), "kept");
    }
}

mod swift_keystone {
    //! OpenStack Swift behind Keystone v3 (keystonemiddleware's `authtoken` and Swift's
    //! `keystoneauth`): the whole contract as a project member of a non-default domain, then
    //! the other ways in (project by id, trust), and refusals.

    use wharf::storage::{StorageDriver, StorageError};

    use super::support::keystone::{self as server, PASSWORD, TRUSTEE, TRUSTEE_PASSWORD, USER};
    use super::support::swift::SwiftTarget;
    use super::{Store, MIB};

    const CHUNK: usize = 5 * MIB;

    fn store() -> Store {
        let target = server::fresh_target();
        let driver = || {
            Box::new(server::driver(
                &target,
                USER,
                PASSWORD,
                server::v3_settings(),
                CHUNK,
            ))
        };
        Store {
            a: driver(),
            b: driver(),
            kept_parts: Some(CHUNK as u64),
        }
    }

    contract!(store);

    /// Writes through one way in and reads back through another: the same account.
    fn round_trip(target: &SwiftTarget, d: &dyn StorageDriver) {
        let rt = super::runtime();
        let logs = || server::shared().log_tail();
        rt.block_on(d.put_content("/k", bytes::Bytes::from_static(b"kept")))
            .unwrap_or_else(|e| panic!("{e}\n{}", logs()));
        let member = server::driver(target, USER, PASSWORD, server::v3_settings(), CHUNK);
        let read = rt.block_on(member.get_content("/k"));
        assert_eq!(read.unwrap_or_else(|e| panic!("{e}\n{}", logs())), "kept");
    }

    /// The project by id (with the user's domain by id), the internal endpoint.
    #[test]
    fn project_by_id_and_internal_endpoint() {
        let target = server::fresh_target();
        let k = server::shared();
        let mut settings = server::v3_settings();
        settings.tenant = String::new();
        settings.tenant_id = k.project_id().to_string();
        settings.endpoint_type = "internal".into();
        round_trip(
            &target,
            &server::driver(&target, USER, PASSWORD, settings, CHUNK),
        );
    }

    /// A user with no role of its own, scoped by a trust from a member.
    #[test]
    fn trust_scoped_token() {
        let target = server::fresh_target();
        let mut settings = server::v3_settings();
        settings.trust_id = server::shared().trust_id().to_string();
        round_trip(
            &target,
            &server::driver(&target, TRUSTEE, TRUSTEE_PASSWORD, settings, CHUNK),
        );
    }

    /// The kind of error a refused or impossible authentication gives.
    fn auth_error(
        user: &str,
        password: &str,
        settings: wharf::storage::drivers::swift::KeystoneSettings,
    ) -> String {
        let target = server::fresh_target();
        let d = server::driver(&target, user, password, settings, CHUNK);
        match super::runtime().block_on(d.get_content("/k")) {
            Err(StorageError::Io { source, .. }) => {
                // Answered 503 by the registry, never "not found".
                assert_eq!(source.kind(), std::io::ErrorKind::ResourceBusy, "{source}");
                source.to_string()
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
    }

    #[test]
    fn a_wrong_password_is_refused() {
        let err = auth_error(USER, "wrong", server::v3_settings());
        assert!(err.contains("401") && err.contains("Keystone"), "{err}");
    }

    /// The trustee alone has no role on the project: Keystone grants a token, Swift refuses it.
    #[test]
    fn a_user_without_a_role_is_refused_by_swift() {
        let err = auth_error(TRUSTEE, TRUSTEE_PASSWORD, server::v3_settings());
        assert!(err.contains("401") || err.contains("403"), "{err}");
    }

    #[test]
    fn a_region_without_swift_is_refused() {
        let mut settings = server::v3_settings();
        settings.region = "RegionTwo".into();
        let err = auth_error(USER, PASSWORD, settings);
        assert!(
            err.contains("no object-store endpoint") && err.contains("RegionTwo"),
            "{err}"
        );
    }

    /// Keystone 13 and later have no v2.0 API: `authversion: 2` is refused clearly.
    #[test]
    fn v2_against_a_v3_only_keystone_is_refused() {
        let mut settings = server::v3_settings();
        settings.version = 2;
        let err = auth_error(USER, PASSWORD, settings);
        assert!(err.contains("404"), "{err}");
    }
}
