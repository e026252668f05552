//! Three pull-through nodes behind haproxy, claims in Redis: 20 clients pulling the same
//! uncached image at once cause one upstream download per blob; every client gets the
//! upstream's bytes.

mod support;

use std::sync::Arc;
use std::thread;

use support::*;

#[test]
fn twenty_clients_on_three_nodes_fetch_each_blob_once() {
    let _serial = exclusive();
    let upstream = Registry::builder(Driver::Filesystem)
        .log_section("log:\n  level: info\n  formatter: text\n  fields:\n    service: upstream\n")
        .start();
    let config = image_config("amd64", unique_seed(), 3);
    let layers = [
        Blob::random(6 << 20),
        Blob::random(2 << 20),
        Blob::random(300_000),
    ];
    push(&upstream, "hub/app", &config);
    for layer in &layers {
        push(&upstream, "hub/app", layer);
    }
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[
            (OCI_LAYER, &layers[0]),
            (OCI_LAYER, &layers[1]),
            (OCI_LAYER, &layers[2]),
        ],
        None,
    );
    push_manifest(&upstream, "hub/app", "v1", &manifest);

    let cluster = Cluster::start(ClusterOptions {
        section: Some(format!(
            "proxy:\n  remoteurl: {}\n  tagrecheck: 1h\n",
            upstream.endpoint().url()
        )),
        ..ClusterOptions::default()
    });
    let api = cluster.endpoint();
    let expected: Arc<Vec<(String, usize)>> = Arc::new(
        std::iter::once(&config)
            .chain(layers.iter())
            .map(|b| (b.digest.clone(), b.data.len()))
            .collect(),
    );
    let manifest_digest = manifest.digest.clone();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let (api, expected, manifest_digest) =
                (api.clone(), expected.clone(), manifest_digest.clone());
            thread::spawn(move || -> Result<(), String> {
                let m = try_send(
                    api.get("/v2/hub/app/manifests/v1")
                        .header("Accept", OCI_MANIFEST),
                )?;
                if m.status != 200
                    || m.header("docker-content-digest") != Some(manifest_digest.as_str())
                {
                    return Err(format!("client {i}: manifest {}", m.describe()));
                }
                // Clients walk the layers in different orders, as parallel pulls do.
                let mut order: Vec<usize> = (0..expected.len()).collect();
                order.rotate_left(i % expected.len());
                for k in order {
                    let (digest, len) = &expected[k];
                    let b = try_send(api.get(&format!("/v2/hub/app/blobs/{digest}")))?;
                    if b.status != 200 || b.body.len() != *len || &sha256_digest(&b.body) != digest
                    {
                        return Err(format!(
                            "client {i}: blob {digest}: status {} len {}",
                            b.status,
                            b.body.len()
                        ));
                    }
                }
                Ok(())
            })
        })
        .collect();
    let failures: Vec<String> = clients
        .into_iter()
        .filter_map(|c| c.join().unwrap().err())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");

    let lines = upstream.access_lines();
    let gets = |tail: &str| {
        lines
            .iter()
            .filter(|l| l.contains("method=GET") && l.contains(&format!("{tail} ")))
            .count()
    };
    for (digest, _) in expected.iter() {
        assert_eq!(
            gets(&format!("/v2/hub/app/blobs/{digest}")),
            1,
            "upstream GETs of {digest}"
        );
    }
    let manifest_gets = gets("/v2/hub/app/manifests/v1");
    assert_eq!(manifest_gets, 1, "upstream GETs of the tag");
    // Everything the mirrors asked the upstream (the pushes above are the test's own).
    let upstream_requests = lines
        .iter()
        .filter(|l| l.contains("user_agent=wharf/"))
        .count();
    let mut coalesced = 0.0;
    let mut hits = 0.0;
    for node in &cluster.nodes {
        let s = node.scrape();
        coalesced += s.sum("wharf_mirror_coalesced_waits_total", &[]);
        hits += s.sum("wharf_mirror_hits_total", &[]);
    }
    println!(
        "figures: 20 clients x 3 nodes: upstream requests from the mirrors: {upstream_requests} \
         (blob GETs {}, manifest GETs {manifest_gets}); coalesced waits {coalesced}; cache hits {hits}",
        expected.len()
    );
    assert_eq!(upstream_requests, expected.len() + 1, "{lines:#?}");
}
