//! The Azure driver's contract against a real Blob service (Azurite on loopback), through the
//! library: appends resumed by another driver instance from storage alone, stale offsets,
//! cancel, racing writers, atomic writes, server-side moves, paginated listing and deletes,
//! distribution 2.8's and 3's blob names, SAS redirect URLs, and an outage.

mod support;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use support::azure::{self, AzureTarget, Azurite};
use support::Prng;
use wharf::storage::drivers::azure::AzureDriver;
use wharf::storage::{StorageDriver, StorageError};

const MIB: usize = 1 << 20;

/// A driver on a fresh container (distribution 3 names under `wharf-root`), and a second
/// instance on the same container (another node).
fn two_nodes() -> (AzureTarget, AzureDriver, AzureDriver) {
    let target = AzureTarget::fresh();
    let a = azure::driver(&target, Some("wharf-root"));
    let b = azure::driver(&target, Some("wharf-root"));
    (target, a, b)
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

async fn append(d: &AzureDriver, path: &str, offset: usize, bytes: &[u8]) {
    let mut w = d.writer(path, offset as u64).await.expect("open writer");
    assert_eq!(w.size(), offset as u64);
    for piece in bytes.chunks(MIB / 2 + 17) {
        w.write(Bytes::copy_from_slice(piece)).await.expect("write");
    }
    assert_eq!(w.size(), (offset + bytes.len()) as u64);
    w.commit().await.expect("commit");
}

async fn read(d: &AzureDriver, path: &str) -> Vec<u8> {
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

/// Chunks of several blocks and of less than one, alternating nodes, a cancelled and a
/// dropped writer, stale offsets, then a server-side move: the file is always exactly what
/// was acknowledged, and lands where distribution 3 names it.
#[test]
fn appends_resume_on_another_node() {
    let (target, a, b) = two_nodes();
    let path = "/docker/registry/v2/repositories/r/_uploads/u1/data";
    let blob = data(11 * MIB + 123);
    let mut expected: Vec<u8> = Vec::new();
    runtime().block_on(async {
        let cuts = [0, 5 * MIB + 3, 5 * MIB + 10, 9 * MIB, 9 * MIB + 1];
        for (i, window) in cuts.windows(2).enumerate() {
            let node = if i % 2 == 0 { &a } else { &b };
            append(node, path, expected.len(), &blob[window[0]..window[1]]).await;
            expected.extend_from_slice(&blob[window[0]..window[1]]);
            assert_eq!(
                b.stat(path).await.unwrap().size,
                expected.len() as u64,
                "size after chunk {i}"
            );
        }
        // A cancelled chunk leaves the file as it was.
        let mut w = a.writer(path, expected.len() as u64).await.unwrap();
        w.write(Bytes::from(vec![0u8; 6 * MIB])).await.unwrap();
        w.cancel().await.unwrap();
        assert_eq!(b.stat(path).await.unwrap().size, expected.len() as u64);
        // A writer dropped mid-way (client gone) changes nothing either.
        let mut w = b.writer(path, expected.len() as u64).await.unwrap();
        w.write(Bytes::from(vec![1u8; 6 * MIB])).await.unwrap();
        drop(w);
        assert_same(&read(&a, path).await, &expected, "after cancel and drop");

        // A stale offset, or one past the end, is refused: stored bytes are never rewritten.
        for stale in [expected.len() - 1, 4 * MIB, 0, expected.len() + 1] {
            match b.writer(path, stale as u64).await {
                Err(StorageError::OffsetMismatch { actual, .. }) => {
                    assert_eq!(actual, expected.len() as u64, "offset {stale}")
                }
                Err(e) => panic!("offset {stale}: expected OffsetMismatch, got {e}"),
                Ok(_) => panic!("offset {stale}: expected OffsetMismatch, got a writer"),
            }
        }
        // The last chunk on the other node, then publication by a server-side copy.
        let at = expected.len();
        let mut w = a.writer(path, at as u64).await.unwrap();
        w.write(Bytes::copy_from_slice(&blob[at..])).await.unwrap();
        let blob_path = "/docker/registry/v2/blobs/sha256/ab/abcd/data";
        w.commit_to(blob_path).await.expect("commit_to");
        expected.extend_from_slice(&blob[at..]);
        assert!(a.stat(path).await.unwrap_err().is_not_found());
        assert_same(&read(&b, blob_path).await, &blob, "published blob");
        assert_eq!(b.stat(blob_path).await.unwrap().size, blob.len() as u64);

        let ranged: Vec<Bytes> = a
            .reader(blob_path, 4 * MIB as u64 - 3, Some(10))
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_same(&ranged.concat(), &blob[4 * MIB - 3..4 * MIB + 7], "range");
        let tail: Vec<Bytes> = a
            .reader(blob_path, blob.len() as u64 - 5, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_same(&tail.concat(), &blob[blob.len() - 5..], "tail");
        let empty: Vec<Bytes> = a
            .reader(blob_path, blob.len() as u64, None)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(empty.is_empty());
        assert!(matches!(
            a.reader(blob_path, blob.len() as u64 + 1, None).await,
            Err(StorageError::InvalidOffset { .. })
        ));

        // Names are distribution 3's: the root directory, no leading `/`.
        let plain = azure::driver(&target, Some(""));
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

/// Two writers opened at the same point (a retried request racing the original), on two
/// nodes: the second to commit loses, and the file holds the winner's bytes only.
#[test]
fn racing_writers_never_publish_mixed_bytes() {
    let (_, a, b) = two_nodes();
    let path = "/docker/registry/v2/repositories/r/_uploads/race/data";
    let blob = data(10 * MIB + 5);
    runtime().block_on(async {
        append(&a, path, 0, &blob[..5 * MIB]).await;
        let at = 5 * MIB;
        let mut first = a.writer(path, at as u64).await.unwrap();
        let mut second = b.writer(path, at as u64).await.unwrap();
        // Both stage whole blocks on the same blob.
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
        assert_same(&read(&b, path).await, &blob, "the winner's bytes");
        // A writer opened before a commit by another cannot publish either.
        let stale = a.writer(path, blob.len() as u64).await.unwrap();
        append(&b, path, blob.len(), b"more").await;
        assert!(matches!(
            stale
                .commit_to("/docker/registry/v2/blobs/sha256/ra/race/data")
                .await,
            Err(StorageError::Busy(_))
        ));
        assert!(b
            .stat("/docker/registry/v2/blobs/sha256/ra/race/data")
            .await
            .unwrap_err()
            .is_not_found());
    });
}

#[test]
fn atomic_writes_appear_on_commit_only() {
    let (_, a, b) = two_nodes();
    let blob = data(9 * MIB + 5);
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

        // Replacing a file is atomic too: the old content until commit.
        let mut w = a.atomic_writer(path).await.unwrap();
        w.write(Bytes::from_static(b"tiny")).await.unwrap();
        assert_eq!(b.stat(path).await.unwrap().size, blob.len() as u64);
        w.commit().await.unwrap();
        assert_eq!(b.get_content(path).await.unwrap(), "tiny");

        // Small files: put, replace, move.
        let link = "/docker/registry/v2/repositories/r/_layers/sha256/11aa/link";
        a.put_content(link, Bytes::from_static(b"one"))
            .await
            .unwrap();
        a.put_content(link, Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(b.get_content(link).await.unwrap(), "two");
        let moved = "/docker/registry/v2/repositories/r/_layers/sha256/11aa/moved";
        b.move_to(link, moved).await.unwrap();
        assert!(a.stat(link).await.unwrap_err().is_not_found());
        assert_eq!(a.get_content(moved).await.unwrap(), "two");
        assert!(a.move_to(link, moved).await.unwrap_err().is_not_found());
        // An empty file is a file.
        a.put_content("/empty", Bytes::new()).await.unwrap();
        let info = b.stat("/empty").await.unwrap();
        assert!(!info.is_dir && info.size == 0);
        assert!(read(&b, "/empty").await.is_empty());
    });
}

#[test]
fn listing_stat_and_deletes_are_paginated() {
    let (_, a, _) = two_nodes();
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

/// A distribution 2.8 config names blobs by the whole path, leading `/` included: the same
/// path through distribution 3's names is another blob.
#[test]
fn distribution_2_8_names_keep_the_leading_slash() {
    let target = AzureTarget::fresh();
    let v2 = azure::driver(&target, None);
    let v3 = azure::driver(&target, Some(""));
    runtime().block_on(async {
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
        append(&v2, "/docker/up/data", 0, &data(5 * MIB)).await;
        append(&v2, "/docker/up/data", 5 * MIB, b"x").await;
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
    let (_, a, _) = two_nodes();
    let path = "/docker/registry/v2/blobs/sha256/55/55ee/data";
    let url = runtime().block_on(async {
        a.put_content(path, Bytes::from_static(b"signed bytes"))
            .await
            .unwrap();
        a.redirect_url(path).await.unwrap().expect("a URL")
    });
    assert!(url.contains("sp=r") && url.contains("sig="), "{url}");
    let resp = reqwest::blocking::get(&url).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), b"signed bytes");
    // The signature covers the blob: another name with it is refused.
    let other = url.replace("55ee/data", "55ee/other");
    assert_eq!(reqwest::blocking::get(&other).unwrap().status(), 403);
}

/// With the service down, calls fail as "unreachable" (answered 503 by the registry) after
/// bounded retries, and work again once it is back.
#[test]
fn an_outage_is_unreachable_then_recovers() {
    let server = Azurite::start();
    let port = server.port();
    let data_dir = server.data_dir();
    let target = AzureTarget {
        service_url: server.service_url(),
        container: azure::fresh_container(),
    };
    let d = azure::driver(&target, Some(""));
    let rt = runtime();
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

/// Exclusive creation holds across nodes: of many concurrent creators on two driver
/// instances, exactly one creates the blob and its content is what every reader sees.
#[test]
fn exclusive_creation_has_one_winner_across_nodes() {
    let (_target, a, b) = two_nodes();
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
