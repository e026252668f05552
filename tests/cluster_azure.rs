//! Three nodes over one Azure Blob container (Azurite on loopback), one Redis and haproxy in
//! round-robin: chunked uploads whose requests land on different nodes continue the same block
//! list from the signed state alone; skopeo copies images in and out with blob reads
//! redirected to SAS URLs of the container; the container holds only whole, verified blobs
//! afterwards. Then one node through an outage of the service: 503, and back.

mod support;

use std::collections::BTreeSet;

use support::*;

const MIB: usize = 1 << 20;

#[test]
fn chunked_uploads_hop_between_nodes_over_one_container() {
    let _one = exclusive();
    let target = AzureTarget::fresh();
    let cluster = Cluster::start(ClusterOptions {
        azure: Some((target.clone(), false)),
        ..ClusterOptions::default()
    });
    let api = cluster.endpoint();
    let seed = 0xa2_c1a5;
    let mut prng = Prng::new(seed);
    // Sizes around the 4 MiB block, with chunks both smaller and larger than a block.
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
        let repo = format!("azhops/blob{i}");
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
    assert_eq!(container_problems(&target), Vec::<String>::new());
}

#[test]
fn skopeo_copies_through_haproxy_with_reads_redirected_to_the_container() {
    let _one = exclusive();
    let target = AzureTarget::fresh();
    let cluster = Cluster::start(ClusterOptions {
        azure: Some((target.clone(), true)),
        ..ClusterOptions::default()
    });
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 3);
    layout.tag("image", &image);
    let (index, _) = layout.multi_arch(2);
    layout.tag("multi", &index);
    let api = cluster.endpoint();

    for (tag, repo, all) in [
        ("image", "azsk/image", false),
        ("multi", "azsk/multi", true),
    ] {
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

    // Blob reads through haproxy are 307s to the container, from every node.
    let config_digest = {
        let v: serde_json::Value = serde_json::from_slice(&image.body).unwrap();
        v["config"]["digest"].as_str().unwrap().to_string()
    };
    let mut nodes = BTreeSet::new();
    for _ in 0..3 {
        let a = send(api.get(&format!("/v2/azsk/image/blobs/{config_digest}")));
        assert_eq!(a.status, 307, "{}", a.text());
        let location = a.header("location").unwrap_or_default();
        assert!(
            location.starts_with(&target.service_url) && location.contains("&sig="),
            "a SAS URL of the container: {location}"
        );
        nodes.insert(a.node().to_string());
    }
    assert_eq!(nodes.len(), 3, "every node redirects: {nodes:?}");
    assert_eq!(container_problems(&target), Vec::<String>::new());
}

/// The service goes away under a node: reads and writes answer 503 UNAVAILABLE (never a 500,
/// never a lost blob), and everything works again once it is back on the same data.
#[test]
fn an_outage_answers_503_then_recovers() {
    let server = support::azure::Azurite::start();
    let port = server.port();
    let data_dir = server.data_dir();
    let target = AzureTarget {
        service_url: server.service_url(),
        container: support::azure::fresh_container(),
    };
    let reg = Registry::builder(Driver::Azure)
        .azure_target(&target)
        .start();
    let blob = Blob::random(64 << 10);
    push(&reg, "outage/app", &blob);
    let path = format!("/v2/outage/app/blobs/{}", blob.digest);
    send(reg.get(&path)).assert_status(200);

    server.stop();
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

    let back = support::azure::Azurite::start_on(port, Some(&data_dir));
    let get = send(reg.get(&path));
    get.assert_status(200);
    assert_eq!(sha256_digest(&get.body), blob.digest);
    push(&reg, "outage/app", &Blob::random(1000));
    assert_eq!(container_problems(&target), Vec::<String>::new());
    drop(reg);
    drop(back);
    drop(server);
}
