//! Three pull-through nodes behind haproxy, claims in Redis: 20 clients pulling the same
//! uncached image at once cause one upstream download per blob; every client gets the
//! upstream's bytes. Two nodes over one folder, claims in the folder: a request for a blob that
//! the other node is fetching streams the bytes as they are written, before the upstream is done.

mod support;

use std::io::Read;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

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

/// Reads from `body` until `want` bytes came or it ends; the bytes read.
fn read_some(body: &mut reqwest::blocking::Response, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    // Bounded: each read returns something or ends the body (the client has a timeout).
    while out.len() < want {
        let n = body.read(&mut buf).expect("read the blob");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn a_waiting_request_streams_the_blob_while_it_is_fetched() {
    let _serial = exclusive();
    let upstream = Registry::builder(Driver::Filesystem)
        .log_section("log:\n  level: info\n  formatter: text\n  fields:\n    service: upstream\n")
        .start();
    let blob = Blob::random(8 << 20);
    push(&upstream, "hub/big", &blob);
    // The upstream's answer stops after 3 MiB until the test lets it go on.
    let proxy = ChaosProxy::start(upstream.addr().to_string());
    proxy.set(Chaos::Hold(3 << 20));
    let storage = tempfile::tempdir().unwrap();
    let nodes: Vec<Registry> = (1..=2)
        .map(|i| {
            Registry::builder(Driver::Filesystem)
                .storage_dir(storage.path())
                .node(&format!("node{i}"))
                .section(&format!("proxy:\n  remoteurl: {}\n", proxy.endpoint()))
                .start()
        })
        .collect();
    let url = |n: &Registry| format!("{}/v2/hub/big/blobs/{}", n.endpoint().url(), blob.digest);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();

    // node1 fetches; its client gets the first bytes, then the upstream's transfer is held.
    let mut fetching = client.get(url(&nodes[0])).send().unwrap();
    assert_eq!(fetching.status(), 200);
    let fetched_head = read_some(&mut fetching, 1);
    assert!(!fetched_head.is_empty());
    assert!(
        wait_until(Duration::from_secs(60), || proxy.holding() > 0),
        "the upstream's transfer never reached the hold"
    );

    // node2 loses the claim and streams what node1 has written so far.
    let mut waiting = client.get(url(&nodes[1])).send().unwrap();
    assert_eq!(waiting.status(), 200);
    assert_eq!(
        waiting.content_length(),
        Some(blob.data.len() as u64),
        "the size the upstream announced"
    );
    let waited_head = read_some(&mut waiting, 1 << 20);
    assert!(
        waited_head.len() >= 1 << 20,
        "only {} bytes before the upstream finished",
        waited_head.len()
    );
    // The events' order: those bytes came while the upstream's answer was still held open.
    assert!(proxy.holding() > 0, "the upstream's transfer was let go");
    assert_eq!(proxy.mode(), Chaos::Hold(3 << 20));
    assert_eq!(&waited_head[..], &blob.data[..waited_head.len()]);

    proxy.set(Chaos::Pass);
    let readers: Vec<_> = [(fetching, fetched_head), (waiting, waited_head)]
        .into_iter()
        .map(|(mut body, mut head)| {
            thread::spawn(move || {
                body.read_to_end(&mut head).expect("read the rest");
                sha256_digest(&head)
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.join().unwrap(), blob.digest);
    }
    let gets = upstream
        .access_lines()
        .iter()
        .filter(|l| {
            l.contains("method=GET") && l.contains(&format!("/v2/hub/big/blobs/{} ", blob.digest))
        })
        .count();
    assert_eq!(gets, 1, "upstream GETs of the blob");
    // Stored once, and the fetch's own file is gone.
    for node in &nodes {
        let again = send(
            node.endpoint()
                .get(&format!("/v2/hub/big/blobs/{}", blob.digest)),
        );
        assert_eq!(again.status, 200);
        assert_eq!(sha256_digest(&again.body), blob.digest);
    }
    let fetching_dir = storage.path().join("wharf/mirror/fetching");
    let left = || -> Vec<_> {
        std::fs::read_dir(&fetching_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || left().is_empty()),
        "{:?}",
        left()
    );
}
