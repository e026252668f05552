//! Three nodes over one Swift container (a single-node Swift on loopback), one Redis and
//! haproxy in round-robin: chunked uploads whose requests land on different nodes continue the
//! same segments from storage alone; skopeo copies images in and out with blob reads
//! redirected to temp URLs of the container; the container holds only whole, verified blobs
//! afterwards. Then one node through an outage of Swift: 503, and back.

mod support;

use std::collections::BTreeSet;

use support::swift::{Swift, SwiftTarget};
use support::*;

const MIB: usize = 1 << 20;

/// Blobs under `blobs/` whose bytes do not hash to their name, entries there that are not a
/// blob's `data`, and upload data left under `repositories/`.
fn container_problems(target: &SwiftTarget) -> Vec<String> {
    use wharf::storage::StorageDriver;
    let driver = support::swift::driver(target, 5 * MIB);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut problems = Vec::new();
        let blobs = "/docker/registry/v2/blobs/sha256";
        for prefix in driver.list(blobs).await.unwrap_or_default() {
            let dir = format!("{blobs}/{prefix}");
            for hex_name in driver.list(&dir).await.unwrap_or_default() {
                let entries = driver.list(&format!("{dir}/{hex_name}")).await;
                if entries.as_deref().ok() != Some(&["data".to_string()][..]) {
                    problems.push(format!("{dir}/{hex_name} holds {entries:?}"));
                    continue;
                }
                match driver.get_content(&format!("{dir}/{hex_name}/data")).await {
                    Ok(bytes) => {
                        let actual = sha256_digest(&bytes);
                        if actual != format!("sha256:{hex_name}") {
                            problems.push(format!("blob {hex_name} hashes to {actual}"));
                        }
                    }
                    Err(e) => problems.push(format!("blob {hex_name}: {e}")),
                }
            }
        }
        let uploads = driver
            .dirs_holding("/docker/registry/v2/repositories", "data", "")
            .await
            .unwrap_or_default();
        for dir in uploads.into_iter().filter(|d| d.contains("_uploads/")) {
            problems.push(format!("upload data left: {dir}"));
        }
        problems
    })
}

#[test]
fn chunked_uploads_hop_between_nodes_over_one_container() {
    let _one = exclusive();
    let target = SwiftTarget::fresh();
    let cluster = Cluster::start(ClusterOptions {
        swift: Some((target.clone(), false)),
        ..ClusterOptions::default()
    });
    let api = cluster.endpoint();
    let seed = 0x5_1f7;
    let mut prng = Prng::new(seed);
    // Sizes around the 5 MiB segment, with chunks both smaller and larger than a segment.
    let sizes: [(usize, usize); 5] = [
        (1024, 3),
        (3 * MIB + 5, 6),
        (5 * MIB + 7, 4),
        (12 * MIB - 1, 7),
        (24 * MIB + 1, 5),
    ];
    let mut seen: BTreeSet<(&str, String)> = BTreeSet::new();
    for (i, (size, chunks)) in sizes.into_iter().enumerate() {
        let repo = format!("swhops/blob{i}");
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
    assert_eq!(container_problems(&target), Vec::<String>::new());
}

#[test]
fn skopeo_copies_through_haproxy_with_reads_redirected_to_the_container() {
    let _one = exclusive();
    let target = SwiftTarget::fresh();
    let cluster = Cluster::start(ClusterOptions {
        swift: Some((target.clone(), true)),
        ..ClusterOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 3);
    layout.tag("image", &image);
    let api = cluster.endpoint();

    copy_in(&api, &layout.dir, "image", "swsk/image:v1", false);
    let expected = layout.digest_of("image").unwrap();
    let out = work.path().join("out");
    copy_out(&api, "swsk/image:v1", &oci_ref(&out, "image"), false);
    let pulled = OciLayout::create_existing(&out);
    assert_eq!(pulled.digest_of("image"), Some(expected));

    // Blob reads through haproxy are 307s to temp URLs of the container, from every node.
    let config_digest = {
        let v: serde_json::Value = serde_json::from_slice(&image.body).unwrap();
        v["config"]["digest"].as_str().unwrap().to_string()
    };
    let origin = target.auth_url.trim_end_matches("/auth/v1.0").to_string();
    let mut nodes = BTreeSet::new();
    for _ in 0..3 {
        let a = send(api.get(&format!("/v2/swsk/image/blobs/{config_digest}")));
        assert_eq!(a.status, 307, "{}", a.text());
        let location = a.header("location").unwrap_or_default();
        assert!(
            location.starts_with(&origin) && location.contains("temp_url_sig="),
            "a temp URL of the container: {location}"
        );
        let body = reqwest::blocking::get(location).unwrap().bytes().unwrap();
        assert_eq!(sha256_digest(&body), config_digest);
        nodes.insert(a.node().to_string());
    }
    assert_eq!(nodes.len(), 3, "every node redirects: {nodes:?}");
    assert_eq!(container_problems(&target), Vec::<String>::new());
}

/// Swift goes away under a node: reads and writes answer 503 UNAVAILABLE (never a 500, never
/// a lost blob), and everything works again once it is back on the same data.
#[test]
fn an_outage_answers_503_then_recovers() {
    let swift = Swift::start();
    let target = SwiftTarget {
        auth_url: swift.auth_url(),
        container: support::swift::fresh_container(),
    };
    let reg = Registry::builder(Driver::Swift)
        .swift_target(&target)
        .start();
    let blob = Blob::random(64 << 10);
    push(&reg, "outage/app", &blob);
    let path = format!("/v2/outage/app/blobs/{}", blob.digest);
    send(reg.get(&path)).assert_status(200);

    swift.stop();
    let get = send(reg.get(&path));
    get.assert_status(503);
    assert_eq!(
        get.error_code().as_deref(),
        Some("UNAVAILABLE"),
        "{}",
        get.text()
    );
    let post = send(reg.post("/v2/outage/app/blobs/uploads/"));
    assert_eq!(post.status, 503, "{}", post.text());

    swift.run();
    let get = send(reg.get(&path));
    get.assert_status(200);
    assert_eq!(sha256_digest(&get.body), blob.digest);
    push(&reg, "outage/app", &Blob::random(1000));
    assert_eq!(container_problems(&target), Vec::<String>::new());
}
