//! A registry:2 fleet on S3 migrating to Wharf node by node: distribution 2.8.2 (Debian's
//! `docker-registry`) and Wharf over one bucket with one `http.secret`. A chunked upload started
//! on one binary continues on the other, in both directions, with chunks from 1 KiB to 64 MiB on
//! both sides of S3's 5 MiB part minimum; then skopeo copies a multi-layer image through haproxy
//! in round-robin over a registry:2 node and two Wharf nodes. No answer is a 5xx, every blob
//! reads back whole from both binaries, and the bucket is left with whole, verified blobs only.

mod support;

use std::collections::BTreeSet;

use support::mixed_fleet::{Fleet, Side};
use support::s3::shared;
use support::*;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const V2: &str = "docker/registry/v2/";

/// A registry:2 node and a Wharf node over `target`.
fn fleet(target: &S3Target) -> Fleet {
    let node = |server| {
        Registry::builder(Driver::S3)
            .server(server)
            .s3_target(target)
            .secret(SECRET)
            .start()
    };
    Fleet {
        registry2: node(Server::DockerRegistry),
        wharf: node(Server::Wharf),
    }
}

/// Problems in the bucket: blobs not hashing to their key, upload data or multipart uploads
/// left behind.
fn bucket_problems(target: &S3Target) -> Vec<String> {
    let mut problems = bucket_blob_problems(target);
    for key in shared().keys(&target.bucket, &format!("{V2}repositories/")) {
        if key.contains("/_uploads/") {
            problems.push(format!("upload object left: {key}"));
        }
    }
    for key in shared().open_uploads(&target.bucket) {
        problems.push(format!("multipart upload left open: {key}"));
    }
    problems
}

/// Chunk sizes of each case, on both sides of the 5 MiB part minimum: small parts that must be
/// joined, parts just over and under the minimum, and one 64 MiB chunk.
fn cases() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("three 1 KiB chunks", vec![KIB, KIB, KIB]),
        (
            "small then over the minimum",
            vec![KIB, 5 * MIB + 3, 2 * MIB],
        ),
        ("under the minimum twice", vec![3 * MIB, 4 * MIB + 1, 100]),
        (
            "over the minimum then small",
            vec![6 * MIB, KIB, 7 * MIB + 11, KIB],
        ),
        ("exactly the minimum", vec![5 * MIB, 5 * MIB, 1]),
        (
            "64 MiB between small ones",
            vec![KIB, 64 * MIB, 3 * MIB + 1],
        ),
    ]
}

fn run_direction(first: Side) {
    let target = S3Target::fresh();
    let fleet = fleet(&target);
    let failed = fleet.uploads_both_ways(first, 0x12_5e_ed, cases());
    assert!(
        failed.is_empty(),
        "uploads started on {first:?} failed:\n{}\n{}",
        failed.join("\n"),
        fleet.logs()
    );
    assert_eq!(bucket_problems(&target), Vec::<String>::new());
}

#[test]
fn uploads_started_on_registry2_continue_on_wharf() {
    run_direction(Side::Registry2);
}

#[test]
fn uploads_started_on_wharf_continue_on_registry2() {
    run_direction(Side::Wharf);
}

#[test]
fn skopeo_through_round_robin_over_registry2_and_wharf() {
    let _one = exclusive();
    let target = S3Target::fresh();
    let nodes: Vec<Registry> = [
        (Server::DockerRegistry, "node1"),
        (Server::Wharf, "node2"),
        (Server::Wharf, "node3"),
    ]
    .into_iter()
    .map(|(server, name)| {
        Registry::builder(Driver::S3)
            .server(server)
            .s3_target(&target)
            .node(name)
            .ready(Ready::V2Ok)
            .secret(SECRET)
            .start()
    })
    .collect();
    let work = tempfile::tempdir().unwrap();
    let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
    // The shipped config's readiness check is Wharf's `/readyz`; registry:2 answers only
    // distribution's `/debug/health`, which both serve.
    let config = work.path().join("haproxy.cfg");
    let shipped = std::fs::read_to_string(process::repo_path("haproxy/haproxy.cfg")).unwrap();
    assert!(shipped.contains("option httpchk GET /readyz"));
    std::fs::write(
        &config,
        shipped.replace(
            "option httpchk GET /readyz",
            "option httpchk GET /debug/health",
        ),
    )
    .unwrap();
    let haproxy = Haproxy::start(&config, &ports);
    let api = haproxy.endpoint();
    let mut layout = OciLayout::create(&work.path().join("in"));
    // Layers large enough to be sent in several parts.
    let image = layout.image_with_layers("amd64", &[KIB, 6 * MIB + 5, 12 * MIB + 1, 3 * MIB]);
    layout.tag("image", &image);
    copy_in(&api, &layout.dir, "image", "mixed/skopeo:v1", false);
    let out = work.path().join("out");
    copy_out(&api, "mixed/skopeo:v1", &oci_ref(&out, "image"), false);
    let pulled = OciLayout::create_existing(&out);
    assert_eq!(pulled.digest_of("image"), layout.digest_of("image"));
    let mut layers = BTreeSet::new();
    for entry in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let digest = format!("sha256:{name}");
        let bytes = pulled.blob(&digest).expect("every blob pulled");
        assert_eq!(sha256_digest(&bytes), digest);
        layers.insert(digest);
    }
    assert!(layers.len() >= 5, "{layers:?}");
    let statuses: Vec<String> = haproxy
        .request_lines()
        .into_iter()
        .filter(|l| l.contains(" 50"))
        .collect();
    assert!(statuses.is_empty(), "5xx answers: {statuses:?}");
    assert_eq!(bucket_problems(&target), Vec::<String>::new());
    drop(haproxy);
    drop(nodes);
}
