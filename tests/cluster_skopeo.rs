//! A user's session against the cluster: skopeo copies multi-layer and multi-arch images in
//! through haproxy (round-robin) and back out, and the digests match; the sticky haproxy config
//! works too; both configs pass `haproxy -c`.

mod support;

use std::collections::BTreeMap;

use support::*;

/// Requests per server in haproxy's log.
fn requests_per_server(haproxy: &Haproxy) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in haproxy.request_lines() {
        if let Some(server) = line.split_whitespace().nth(3) {
            *counts.entry(server.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn skopeo_copies_multi_layer_and_multi_arch_images_in_and_out_through_haproxy() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 5);
    layout.tag("image", &image);
    let (index, _) = layout.multi_arch(3);
    layout.tag("multi", &index);
    let api = cluster.endpoint();

    for (tag, repo, all) in [("image", "sk/image", false), ("multi", "sk/multi", true)] {
        copy_in(&api, &layout.dir, tag, &format!("{repo}:v1"), all);
        let expected = layout.digest_of(tag).unwrap();
        // Every node serves the same manifest (round-robin: three inspections, three nodes).
        for _ in 0..3 {
            assert_eq!(raw_digest(&api, &format!("{repo}:v1")), expected, "{repo}");
        }
        // And out again, into a fresh layout.
        let out = work.path().join(format!("out-{tag}"));
        copy_out(&api, &format!("{repo}:v1"), &oci_ref(&out, tag), all);
        let pulled = OciLayout::create_existing(&out);
        assert_eq!(pulled.digest_of(tag), Some(expected.clone()), "{repo}");
        // Every blob the source has came back byte for byte.
        for entry in std::fs::read_dir(layout.dir.join("blobs/sha256")).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let digest = format!("sha256:{name}");
            if let Some(bytes) = pulled.blob(&digest) {
                assert_eq!(sha256_digest(&bytes), digest);
            }
        }
        let manifest = pulled.blob(&expected).expect("manifest pulled");
        assert_eq!(sha256_digest(&manifest), expected);
    }
    let per_server = requests_per_server(&cluster.haproxy);
    eprintln!("requests per node: {per_server:?}");
    for node in ["wharf/node1", "wharf/node2", "wharf/node3"] {
        assert!(
            per_server.get(node).copied().unwrap_or(0) > 5,
            "{per_server:?}"
        );
    }
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
}

#[test]
fn the_sticky_config_keeps_a_client_on_one_node() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions {
        haproxy_config: "haproxy/haproxy-sticky.cfg",
        ..ClusterOptions::default()
    });
    let api = cluster.endpoint();
    let mut prng = Prng::new(9);
    let mut nodes = std::collections::BTreeSet::new();
    for i in 0..6 {
        let data = prng.bytes(100_000 + i * 333);
        let digest = sha256_digest(&data);
        let repo = format!("sticky/b{i}");
        let trace = api
            .push_chunked(&repo, &data, &[1000, 50_000])
            .unwrap_or_else(|f| panic!("{f}\n{}", cluster.logs()));
        nodes.extend(trace.into_iter().map(|h| h.node));
        let (got, _, node) = api.pull_digest(&repo, &digest).unwrap();
        assert_eq!(got, digest);
        nodes.insert(node);
    }
    let image = push_one_layer_image(&api, "sticky/image", "v1", 50_000)
        .unwrap_or_else(|(f, _)| panic!("{f}"));
    pull_and_verify(&api, &image).unwrap_or_else(|(f, _)| panic!("{f}"));
    nodes.insert(image.node);
    assert_eq!(nodes.len(), 1, "one source address, one node: {nodes:?}");
    // skopeo works through it as well.
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let img = layout.image("arm64", 2);
    layout.tag("img", &img);
    copy_in(&api, &layout.dir, "img", "sticky/skopeo:v1", false);
    assert_eq!(
        raw_digest(&api, "sticky/skopeo:v1"),
        layout.digest_of("img").unwrap()
    );
}

#[test]
fn both_haproxy_configs_pass_haproxy_check() {
    let env = haproxy_env(5000, &[(15000, 15001), (25000, 25001), (35000, 35001)]);
    for config in ["haproxy/haproxy.cfg", "haproxy/haproxy-sticky.cfg"] {
        let path = repo_path(config);
        let out = haproxy_check(&path, &env);
        out.assert_success(&format!("haproxy -c -f {config}"));
        assert!(
            out.stdout.contains("Configuration file is valid")
                || out.stderr.contains("Configuration file is valid"),
            "{}{}",
            out.stdout,
            out.stderr
        );
        let text = std::fs::read_to_string(&path).unwrap();
        // Readiness is what takes a draining node out.
        assert!(text.contains("option httpchk GET /readyz"), "{config}");
        for i in 1..=3 {
            assert!(
                text.contains(&format!("WHARF_NODE{i}_DEBUG_PORT")),
                "{config}"
            );
        }
    }
}
