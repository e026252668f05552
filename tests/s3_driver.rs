//! The S3 driver's contract against a real S3 server (moto on loopback), through the library:
//! appends resumed by another driver instance from storage alone, cuts past an offset, cancel,
//! atomic writes, server-side moves, paginated listing and deletes, upload purging, presigning.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use support::s3::{self, ACCESS_KEY, REGION, SECRET_KEY};
use support::Prng;
use wharf::storage::drivers::s3::{S3Driver, S3Settings};
use wharf::storage::{StorageDriver, StorageError};

const MIB: usize = 1 << 20;

fn settings(bucket: &str, chunk: u64) -> S3Settings {
    S3Settings {
        driver_name: "s3",
        bucket: bucket.to_string(),
        region: REGION.to_string(),
        endpoint: Some(s3::shared().endpoint()),
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

/// A driver on a fresh bucket, and a second instance on the same bucket (another node).
fn two_nodes(chunk: u64) -> (String, S3Driver, S3Driver) {
    let bucket = s3::shared().create_bucket();
    let a = S3Driver::new(&settings(&bucket, chunk)).expect("driver");
    let b = S3Driver::new(&settings(&bucket, chunk)).expect("driver");
    (bucket, a, b)
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

async fn append(d: &S3Driver, path: &str, offset: usize, bytes: &[u8]) {
    let mut w = d.writer(path, offset as u64).await.expect("open writer");
    assert_eq!(w.size(), offset as u64);
    for piece in bytes.chunks(MIB / 2) {
        w.write(Bytes::copy_from_slice(piece)).await.expect("write");
    }
    assert_eq!(w.size(), (offset + bytes.len()) as u64);
    w.commit().await.expect("commit");
}

async fn read(d: &S3Driver, path: &str) -> Vec<u8> {
    let chunks: Vec<Bytes> = d
        .reader(path, 0, None)
        .await
        .expect("reader")
        .try_collect()
        .await
        .expect("read");
    chunks.concat()
}

fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    assert!(actual == expected, "{what}: content differs");
}

/// Small chunks, alternating nodes, a cancelled write, cuts inside the last part and inside
/// the parts, a read of the file in progress, then a server-side move: the file is always
/// what was acknowledged, plus at most whole parts of what a failed writer was sent next.
fn appends_resume_on_another_node(chunk: u64) {
    let (bucket, a, b) = two_nodes(chunk);
    let server = s3::shared();
    let path = "/docker/registry/v2/repositories/r/_uploads/u1/data";
    let blob = data(32 * MIB + 123);
    let mut expected: Vec<u8> = Vec::new();
    runtime().block_on(async {
        // 3 MiB chunks alternate between the two nodes.
        for (i, piece) in blob[..12 * MIB].chunks(3 * MIB).enumerate() {
            let node = if i % 2 == 0 { &a } else { &b };
            append(node, path, expected.len(), piece).await;
            expected.extend_from_slice(piece);
            assert_eq!(
                b.stat(path).await.unwrap().size,
                expected.len() as u64,
                "size after chunk {i}"
            );
        }
        // A cancelled chunk, or a writer dropped mid-way (client gone), leaves the file as it
        // was, or with whole parts of the bytes sent through it appended (as distribution's
        // writer leaves them): never other bytes.
        for cancel in [true, false] {
            let (writer_node, other) = if cancel { (&a, &b) } else { (&b, &a) };
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
            assert!(
                size == at || (size - at).is_multiple_of(chunk as usize) && size <= at + 6 * MIB,
                "{size} bytes after a failed write at {at}"
            );
            expected.extend_from_slice(&blob[at..size]);
        }
        // The file in progress reads back (made whole at its key), and stays open for appends.
        assert_same(&read(&b, path).await, &expected, "file in progress");

        // A stale offset, inside the last part or inside the others, or past the end, is refused:
        // stored bytes are never rewritten.
        for stale in [expected.len() - MIB, 4 * MIB + 7, 0, expected.len() + 1] {
            match b.writer(path, stale as u64).await {
                Err(StorageError::OffsetMismatch { actual, .. }) => {
                    assert_eq!(actual, expected.len() as u64, "offset {stale}")
                }
                Err(StorageError::Busy(_)) if stale == 0 => {}
                Err(e) => panic!("offset {stale}: expected OffsetMismatch, got {e}"),
                Ok(w) if stale == 0 => {
                    // Offset 0 is checked when the writer commits.
                    assert!(matches!(w.commit().await, Err(StorageError::Busy(_))));
                }
                Ok(_) => panic!("offset {stale}: expected OffsetMismatch, got a writer"),
            }
        }
        assert_eq!(a.stat(path).await.unwrap().size, expected.len() as u64);
        let at = expected.len();
        append(&a, path, at, &blob[at..]).await;
        expected.extend_from_slice(&blob[at..]);
        assert_eq!(a.stat(path).await.unwrap().size, blob.len() as u64);

        let target = "/docker/registry/v2/blobs/sha256/ab/abcd/data";
        b.move_to(path, target).await.expect("move");
        assert!(a.stat(path).await.unwrap_err().is_not_found());
        assert_same(&read(&a, target).await, &blob, "moved blob");
        assert_eq!(a.stat(target).await.unwrap().size, blob.len() as u64);
        let ranged: Vec<Bytes> = a
            .reader(target, 5 * MIB as u64 - 3, Some(10))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_same(&ranged.concat(), &blob[5 * MIB - 3..5 * MIB + 7], "range");
        let empty: Vec<Bytes> = a
            .reader(target, blob.len() as u64, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(empty.is_empty());
        assert!(matches!(
            a.reader(target, blob.len() as u64 + 1, None).await,
            Err(StorageError::InvalidOffset { .. })
        ));
        a.delete("/docker/registry/v2/repositories/r/_uploads/u1")
            .await
            .ok();
    });
    // Dropped writers abort their uploads in the background.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !server.open_uploads(&bucket).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.open_uploads(&bucket), Vec::<String>::new());
    let keys = server.keys(&bucket, "");
    assert_eq!(
        keys,
        vec!["wharf-root/docker/registry/v2/blobs/sha256/ab/abcd/data".to_string()],
        "only the blob is left"
    );
    assert_same(
        &server.object(&bucket, &keys[0]).unwrap(),
        &blob,
        "object read by plain S3",
    );
}

/// Two writers opened at the same point (a retried request racing the original), on two
/// nodes: the second to commit loses, and the file is never published with bytes of both.
#[test]
fn racing_writers_never_publish_mixed_bytes() {
    let (_bucket, a, b) = two_nodes(5 * MIB as u64);
    let path = "/docker/registry/v2/repositories/r/_uploads/race/data";
    let blob = data(12 * MIB + 5);
    runtime().block_on(async {
        // One whole part: the writers below append to the same multipart upload.
        append(&a, path, 0, &blob[..5 * MIB]).await;
        let at = 5 * MIB;
        let mut first = a.writer(path, at as u64).await.unwrap();
        let mut second = b.writer(path, at as u64).await.unwrap();
        // Both cross the part size: both upload parts 2 and 3 of the same multipart upload.
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
        let target = "/docker/registry/v2/blobs/sha256/ra/race/data";
        // The loser's parts replaced the winner's (the writes above ran one after the other):
        // publishing is refused, and nothing appears at the target.
        match a.move_to(path, target).await {
            Err(StorageError::Changed(_)) => {}
            Ok(()) => panic!("a file holding the loser's part was published"),
            Err(e) => panic!("move: {e}"),
        }
        assert!(b.stat(target).await.unwrap_err().is_not_found());
    });
}
#[test]
fn appends_resume_on_another_node_5mib_parts() {
    appends_resume_on_another_node(5 * MIB as u64);
}

/// With parts larger than the 5 MiB minimum, a short file of 5 MiB or more becomes a part by
/// a server-side copy instead of being read back.
#[test]
fn appends_resume_on_another_node_7mib_parts() {
    appends_resume_on_another_node(7 * MIB as u64);
}

#[test]
fn atomic_writes_appear_on_commit_only() {
    let (bucket, a, _) = two_nodes(5 * MIB as u64);
    let server = s3::shared();
    let blob = data(11 * MIB + 5);
    runtime().block_on(async {
        let path = "/docker/registry/v2/blobs/sha256/11/11aa/data";
        let mut w = a.atomic_writer(path).await.unwrap();
        w.write(Bytes::copy_from_slice(&blob)).await.unwrap();
        assert!(
            a.stat(path).await.unwrap_err().is_not_found(),
            "not before commit"
        );
        w.commit().await.unwrap();
        assert_same(&a.get_content(path).await.unwrap(), &blob, "committed");

        let other = "/docker/registry/v2/blobs/sha256/22/22bb/data";
        let mut w = a.atomic_writer(other).await.unwrap();
        w.write(Bytes::copy_from_slice(&blob)).await.unwrap();
        w.cancel().await.unwrap();
        assert!(a.stat(other).await.unwrap_err().is_not_found());

        let small = "/docker/registry/v2/blobs/sha256/33/33cc/data";
        let mut w = a.atomic_writer(small).await.unwrap();
        w.write(Bytes::from_static(b"tiny")).await.unwrap();
        assert!(a.stat(small).await.unwrap_err().is_not_found());
        w.commit().await.unwrap();
        assert_eq!(a.get_content(small).await.unwrap(), "tiny");

        // A large plain object is moved with a multipart copy (above the 6 MiB threshold).
        let moved = "/docker/registry/v2/blobs/sha256/44/44dd/data";
        a.move_to(path, moved).await.unwrap();
        assert_same(
            &a.get_content(moved).await.unwrap(),
            &blob,
            "multipart copy",
        );
        assert!(a.stat(path).await.unwrap_err().is_not_found());
    });
    assert_eq!(server.open_uploads(&bucket), Vec::<String>::new());
}

#[test]
fn listing_stat_and_deletes_are_paginated() {
    let (_, a, _) = two_nodes(5 * MIB as u64);
    runtime().block_on(async {
        let dir = "/docker/registry/v2/repositories";
        let names: Vec<String> = (0..1010).map(|i| format!("repo{i:04}")).collect();
        futures_util::stream::iter(names.iter())
            .map(|n| {
                let a = &a;
                async move {
                    a.put_content(&format!("{dir}/{n}/_layers/link"), Bytes::from_static(b"x"))
                        .await
                }
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

#[test]
fn purging_aborts_stale_multipart_uploads() {
    let (bucket, a, _) = two_nodes(5 * MIB as u64);
    let server = s3::shared();
    runtime().block_on(async {
        // An upload session holding a whole part and a short one, then abandoned.
        let path = "/docker/registry/v2/repositories/r/_uploads/old/data";
        append(&a, path, 0, &data(6 * MIB)).await;
        assert_eq!(server.open_uploads(&bucket).len(), 1);
        // moto reports a fixed initiation date in 2010 for every upload, so only "older than
        // zero" can be told apart here; the age comparison itself is the SDK's timestamp.
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

#[test]
fn presigned_urls_serve_the_object() {
    let (_, a, _) = two_nodes(5 * MIB as u64);
    let path = "/docker/registry/v2/blobs/sha256/55/55ee/data";
    let url = runtime().block_on(async {
        a.put_content(path, Bytes::from_static(b"presigned bytes"))
            .await
            .unwrap();
        a.redirect_url(path).await.unwrap().expect("a URL")
    });
    assert!(url.contains("X-Amz-Expires=1200"), "{url}");
    let resp = reqwest::blocking::get(&url).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), b"presigned bytes");
}

/// Exclusive creation holds across nodes: of many concurrent creators on two driver
/// instances, exactly one creates the object and its content is what every reader sees.
#[test]
fn exclusive_creation_has_one_winner_across_nodes() {
    let (_bucket, a, b) = two_nodes(5 * MIB as u64);
    runtime().block_on(async {
        for round in 0..3 {
            let path = format!("/claims/round-{round}");
            let attempts = (0..8u8).map(|i| {
                let driver = if i % 2 == 0 { &a } else { &b };
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
            assert_eq!(read(&a, &path).await, vec![winners[0]; 16]);
            assert!(!b
                .put_content_if_absent(&path, Bytes::from_static(b"late"))
                .await
                .unwrap());
            assert_eq!(read(&b, &path).await, vec![winners[0]; 16]);
        }
    });
}
