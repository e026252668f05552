//! Three nodes over one S3 bucket (moto on loopback), one Redis and haproxy in round-robin:
//! chunked uploads whose requests land on different nodes continue the same multipart upload
//! from the signed state alone; skopeo copies images in and out with blob reads redirected to
//! presigned URLs of the bucket; the bucket holds only whole, verified blobs afterwards.

mod support;

use std::collections::BTreeSet;

use support::s3::shared;
use support::*;

const MIB: usize = 1 << 20;
const V2: &str = "docker/registry/v2/";

/// Problems in the bucket: blob objects whose bytes do not hash to their key, upload objects
/// or multipart uploads left behind.
fn bucket_problems(target: &S3Target) -> Vec<String> {
    let server = shared();
    let mut problems = bucket_blob_problems(target);
    for key in server.keys(&target.bucket, &format!("{V2}repositories/")) {
        if key.contains("/_uploads/") {
            problems.push(format!("upload object left: {key}"));
        }
    }
    for key in server.open_uploads(&target.bucket) {
        problems.push(format!("multipart upload left open: {key}"));
    }
    problems
}

#[test]
fn chunked_uploads_hop_between_nodes_over_one_bucket() {
    let _one = exclusive();
    let target = S3Target::fresh();
    let cluster = Cluster::start(ClusterOptions {
        s3: Some((target.clone(), false)),
        ..ClusterOptions::default()
    });
    let api = cluster.endpoint();
    let seed = 0x53_c1a5;
    let mut prng = Prng::new(seed);
    // Sizes around S3's 5 MiB part minimum and the nodes' 5 MiB chunksize, with chunks both
    // smaller and larger than a part.
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
        let repo = format!("s3hops/blob{i}");
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
    assert_eq!(bucket_problems(&target), Vec::<String>::new());
}

#[test]
fn skopeo_copies_through_haproxy_with_reads_redirected_to_the_bucket() {
    let _one = exclusive();
    let target = S3Target::fresh();
    let cluster = Cluster::start(ClusterOptions {
        s3: Some((target.clone(), true)),
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
        ("image", "s3sk/image", false),
        ("multi", "s3sk/multi", true),
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

    // Blob reads through haproxy are 307s to the bucket, from every node.
    let config_digest = {
        let v: serde_json::Value = serde_json::from_slice(&image.body).unwrap();
        v["config"]["digest"].as_str().unwrap().to_string()
    };
    let mut nodes = BTreeSet::new();
    for _ in 0..3 {
        let a = send(api.get(&format!("/v2/s3sk/image/blobs/{config_digest}")));
        assert_eq!(a.status, 307, "{}", a.text());
        let location = a.header("location").unwrap_or_default();
        assert!(
            location.starts_with(&target.endpoint) && location.contains("X-Amz-Signature="),
            "a presigned URL of the bucket: {location}"
        );
        nodes.insert(a.node().to_string());
    }
    assert_eq!(nodes.len(), 3, "every node redirects: {nodes:?}");
    assert_eq!(bucket_problems(&target), Vec::<String>::new());
}
