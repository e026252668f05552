//! Three nodes over one bucket or container, one Redis and haproxy in round-robin, on each
//! object store (`s3::` on moto, `azure::` on Azurite, `gcs::` on fake-gcs-server, `swift::` on
//! a single-node Swift): chunked
//! uploads whose requests land on different nodes continue the same upload from storage and
//! the signed state alone; skopeo copies images in and out with blob reads redirected to
//! signed URLs of the store; the store holds only whole, verified blobs afterwards. Where the
//! service can be restarted on its data (Azurite, fake-gcs-server, Swift), one node through an
//! outage of the service: 503, and back. An upload cancelled through one node is unknown to
//! the others.

mod support;

use std::collections::BTreeSet;

use support::*;

const MIB: usize = 1 << 20;

/// A fresh bucket or container of `driver`'s store, and a cluster over it (blob reads
/// redirected to the store when `redirect`).
fn cluster_on(driver: Driver, redirect: bool) -> (StoreTarget, Cluster) {
    let target = StoreTarget::fresh(driver);
    let cluster = Cluster::start(ClusterOptions {
        store: Some((target.clone(), redirect)),
        ..ClusterOptions::default()
    });
    (target, cluster)
}

/// Chunked uploads of sizes around the 5 MiB part or chunk size (Azure: the 4 MiB block),
/// with chunks both smaller and larger than a part, each request sent to the next node.
fn chunked_uploads_hop_between_nodes(driver: Driver, seed: u64) {
    let _one = exclusive();
    let (target, cluster) = cluster_on(driver, false);
    let api = cluster.endpoint();
    let mut prng = Prng::new(seed);
    let sizes: [(usize, usize); 6] = [
        (1024, 3),
        (3 * MIB + 5, 6),
        (5 * MIB + 7, 4),
        (12 * MIB - 1, 7),
        (24 * MIB + 1, 5),
        (72 * MIB + 13, 6),
    ];
    let mut seen: BTreeSet<(&str, String)> = BTreeSet::new();
    for (i, (size, chunks)) in sizes.into_iter().enumerate() {
        let repo = format!("hops/blob{i}");
        let data = prng.bytes(size);
        let digest = sha256_digest(&data);
        let cuts = random_cuts(&mut prng, size, chunks);
        let trace = cluster.push_over_nodes(&repo, &data, &cuts, seed);
        for h in &trace {
            seen.insert((h.method, h.node.clone()));
        }
        drop(data);
        // Streamed back through haproxy (redirects off), from two different nodes.
        let mut pulled_from = BTreeSet::new();
        for _ in 0..2 {
            let (got, len, node) = api
                .pull_digest(&repo, &digest)
                .unwrap_or_else(|f| panic!("{f}\n{}", cluster.logs()));
            assert_eq!(
                (got.as_str(), len),
                (digest.as_str(), size as u64),
                "pulled from {node}"
            );
            pulled_from.insert(node);
        }
        eprintln!(
            "{size} bytes in {} chunks: {} (pulled from {pulled_from:?})",
            cuts.len() + 1,
            trace
                .iter()
                .map(|h| format!("{}@{}", h.method, h.node))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    for method in ["POST", "PATCH", "PUT"] {
        let nodes: BTreeSet<&str> = seen
            .iter()
            .filter(|(m, _)| *m == method)
            .map(|(_, n)| n.as_str())
            .collect();
        assert!(nodes.len() >= 2, "{method} answered by {nodes:?} only");
    }
    // The nodes shared the Redis blob-descriptor cache, under distribution's keys.
    assert!(
        !cluster.redis.keys("blobs::sha256:*").is_empty(),
        "no blob descriptors in Redis"
    );
    assert_eq!(target.problems(), Vec::<String>::new());
}

/// An upload cancelled through one node is unknown to the next, whatever its token says: a
/// PATCH (whose token carries what the POST stored) and a closing PUT answer 404
/// `BLOB_UPLOAD_UNKNOWN`, and nothing is left in the store.
fn a_cancelled_upload_is_unknown_to_every_node(driver: Driver) {
    let _one = exclusive();
    let (target, cluster) = cluster_on(driver, false);
    let api = cluster.endpoint();
    let started = send(api.post("/v2/cancelled/blob/blobs/uploads/"));
    started.assert_status(202);
    let location = started.must_header("location").to_string();
    send(api.delete(&api.here(&location))).assert_status(204);
    let data = b"bytes for an upload that is gone".to_vec();
    let patched = send(
        api.patch(&api.here(&location))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    assert_error(&patched, 404, "BLOB_UPLOAD_UNKNOWN");
    let closed = send(
        api.put(&with_digest(&api.here(&location), &sha256_digest(&data)))
            .header("content-type", "application/octet-stream")
            .body(data),
    );
    assert_error(&closed, 404, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(target.problems(), Vec::<String>::new());
}

/// skopeo copies an image and a multi-arch index in and out through haproxy; blob reads are
/// 307s to signed URLs of the store, from every node.
fn skopeo_copies_through_haproxy_with_reads_redirected(driver: Driver) {
    let _one = exclusive();
    let (target, cluster) = cluster_on(driver, true);
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 3);
    layout.tag("image", &image);
    let (index, _) = layout.multi_arch(2);
    layout.tag("multi", &index);
    let api = cluster.endpoint();

    for (tag, repo, all) in [("image", "sk/image", false), ("multi", "sk/multi", true)] {
        copy_in(&api, &layout.dir, tag, &format!("{repo}:v1"), all);
        let expected = layout.digest_of(tag).unwrap();
        let out = work.path().join(format!("out-{tag}"));
        copy_out(&api, &format!("{repo}:v1"), &oci_ref(&out, tag), all);
        let pulled = OciLayout::create_existing(&out);
        assert_eq!(pulled.digest_of(tag), Some(expected.clone()), "{repo}");
        let mut layers = 0;
        for entry in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if let Some(bytes) = pulled.blob(&digest) {
                assert_eq!(sha256_digest(&bytes), digest);
                layers += 1;
            }
        }
        assert!(layers >= 3, "{layers} blobs came back for {repo}");
    }

    let config_digest = {
        let v: serde_json::Value = serde_json::from_slice(&image.body).unwrap();
        v["config"]["digest"].as_str().unwrap().to_string()
    };
    let mut nodes = BTreeSet::new();
    for _ in 0..3 {
        let a = send(api.get(&format!("/v2/sk/image/blobs/{config_digest}")));
        assert_eq!(a.status, 307, "{}", a.text());
        let location = a.header("location").unwrap_or_default();
        assert!(
            target.is_signed_url(location),
            "a signed URL of {target:?}: {location}"
        );
        nodes.insert(a.node().to_string());
    }
    assert_eq!(nodes.len(), 3, "every node redirects: {nodes:?}");
    assert_eq!(target.problems(), Vec::<String>::new());
}

/// A store service of the test's own, to stop and bring back on the same port and data.
enum OwnServer {
    /// Azurite, and the one brought back on its port and data.
    Azure(support::azure::Azurite, Option<support::azure::Azurite>),
    /// fake-gcs-server, and the one brought back on its port and data.
    Gcs(support::gcs::FakeGcs, Option<support::gcs::FakeGcs>),
    /// A single-node Swift, restarted in place.
    Swift(support::swift::Swift),
}

impl OwnServer {
    fn start(driver: Driver) -> (OwnServer, StoreTarget) {
        match driver {
            Driver::Azure => {
                let server = support::azure::Azurite::start();
                let target = AzureTarget {
                    service_url: server.service_url(),
                    container: support::azure::fresh_container(),
                };
                (OwnServer::Azure(server, None), StoreTarget::Azure(target))
            }
            Driver::Gcs => {
                let server = support::gcs::FakeGcs::start();
                let target = GcsTarget {
                    host: server.host(),
                    bucket: server.create_bucket(),
                };
                (OwnServer::Gcs(server, None), StoreTarget::Gcs(target))
            }
            Driver::Swift => {
                let server = support::swift::Swift::start();
                let target = support::swift::SwiftTarget {
                    auth_url: server.auth_url(),
                    container: support::swift::fresh_container(),
                };
                (OwnServer::Swift(server), StoreTarget::Swift(target))
            }
            other => panic!("no restartable service for {other:?}"),
        }
    }

    fn stop(&self) {
        match self {
            OwnServer::Azure(s, _) => s.stop(),
            OwnServer::Gcs(s, _) => s.stop(),
            OwnServer::Swift(s) => s.stop(),
        }
    }

    /// The service again, on the stopped one's port and data.
    fn bring_back(&mut self) {
        match self {
            OwnServer::Azure(s, back) => {
                *back = Some(support::azure::Azurite::start_on(
                    s.port(),
                    Some(&s.data_dir()),
                ))
            }
            OwnServer::Gcs(s, back) => {
                *back = Some(support::gcs::FakeGcs::start_on(
                    s.port(),
                    Some(&s.data_dir()),
                ))
            }
            OwnServer::Swift(s) => s.run(),
        }
    }
}

/// The service goes away under a node: reads and writes answer 503 UNAVAILABLE (never a 500,
/// never a lost blob), and everything works again once it is back on the same data.
fn an_outage_answers_503_then_recovers(driver: Driver) {
    let (mut server, target) = OwnServer::start(driver);
    let reg = target.builder().start();
    let blob = Blob::random(64 << 10);
    push(&reg, "outage/app", &blob);
    let path = format!("/v2/outage/app/blobs/{}", blob.digest);
    send(reg.get(&path)).assert_status(200);

    server.stop();
    // The registry's log says which backend failure became the answer.
    let get = send(reg.get(&path));
    assert_eq!(
        (get.status, get.error_code().as_deref()),
        (503, Some("UNAVAILABLE")),
        "{}\n{}",
        get.text(),
        reg.log()
    );
    let post = send(reg.post("/v2/outage/app/blobs/uploads/"));
    assert_eq!(post.status, 503, "{}\n{}", post.text(), reg.log());

    server.bring_back();
    let get = send(reg.get(&path));
    get.assert_status(200);
    assert_eq!(sha256_digest(&get.body), blob.digest);
    push(&reg, "outage/app", &Blob::random(1000));
    assert_eq!(target.problems(), Vec::<String>::new());
    drop(reg);
    drop(server);
}

/// The suite's tests for one store, as `<store>::<test>`.
macro_rules! cluster_suite {
    ($store:ident, $driver:ident, seed: $seed:expr $(, $extra:ident)* $(,)?) => {
        mod $store {
            use super::support::Driver;

            #[test]
            fn chunked_uploads_hop_between_nodes() {
                super::chunked_uploads_hop_between_nodes(Driver::$driver, $seed);
            }

            #[test]
            fn a_cancelled_upload_is_unknown_to_every_node() {
                super::a_cancelled_upload_is_unknown_to_every_node(Driver::$driver);
            }

            #[test]
            fn skopeo_copies_through_haproxy_with_reads_redirected() {
                super::skopeo_copies_through_haproxy_with_reads_redirected(Driver::$driver);
            }

            $(
                #[test]
                fn $extra() {
                    super::$extra(Driver::$driver);
                }
            )*
        }
    };
}

cluster_suite!(s3, S3, seed: 0x53_c1a5);
cluster_suite!(azure, Azure, seed: 0xa2_c1a5, an_outage_answers_503_then_recovers);
cluster_suite!(gcs, Gcs, seed: 0x6c_c1a5, an_outage_answers_503_then_recovers);
cluster_suite!(swift, Swift, seed: 0x5f_c1a5, an_outage_answers_503_then_recovers);
