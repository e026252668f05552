//! Uploads across a three-node cluster behind haproxy (round-robin, no sticky sessions): each
//! request of a chunked upload may land on another node; a node with another secret refuses
//! foreign sessions cleanly; two clients racing on one blob and one tag leave one consistent
//! result; and a registry:2 node sharing the storage and the secret continues wharf's uploads
//! and the other way round.

#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use cluster::*;
use reqwest::Method;
use support::{Driver, Prng, Registry, Server};

#[test]
fn chunked_uploads_hop_between_nodes_and_verify() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let api = cluster.endpoint();
    let seed = 0x5eed_c1a5;
    let mut prng = Prng::new(seed);
    let sizes: [(usize, usize); 7] = [
        (1024, 3),
        (64 * 1024 + 3, 4),
        (1024 * 1024, 6),
        (5 * 1024 * 1024 + 7, 8),
        (16 * 1024 * 1024 - 1, 8),
        (64 * 1024 * 1024 + 11, 6),
        (256 * 1024 * 1024, 5),
    ];
    // (method, node) pairs seen over all uploads.
    let mut seen: BTreeSet<(&str, String)> = BTreeSet::new();
    for (i, (size, max_chunks)) in sizes.into_iter().enumerate() {
        let repo = format!("hops/blob{i}");
        let data = prng.bytes(size);
        let digest = sha256_hex_digest(&data);
        let chunks = 2 + (prng.next_u64() as usize) % (max_chunks - 1);
        let cuts = random_cuts(&mut prng, size, chunks);
        let trace = push_over_nodes(&cluster, &repo, &data, &cuts, seed);
        for h in &trace {
            seen.insert((h.method, h.node.clone()));
            // The node that answered logged the request: method, path and status.
            let node = cluster.nodes.iter().find(|n| n.name() == h.node).unwrap();
            let logged = wait_until(Duration::from_secs(5), || {
                node.access_lines().iter().any(|l| {
                    l.contains(&format!("method={}", h.method))
                        && l.contains(&format!("path={}", h.path))
                        && l.contains(&format!("status={}", h.status))
                })
            });
            assert!(logged, "{} has no access log line for {h:?}", h.node);
        }
        drop(data);
        // Read back through haproxy: three pulls, each from the next node.
        let pulls = if size > 32 * 1024 * 1024 { 1 } else { 3 };
        for _ in 0..pulls {
            let (got, len, node) = api
                .pull_digest(&repo, &digest)
                .unwrap_or_else(|f| panic!("{f}"));
            assert_eq!(
                (got.as_str(), len),
                (digest.as_str(), size as u64),
                "pulled from {node}"
            );
        }
        eprintln!(
            "{size} bytes in {} chunks: {}",
            cuts.len() + 1,
            trace
                .iter()
                .map(|h| format!("{}@{}", h.method, h.node))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    // Small uploads with 1, 2, 3 chunks shift the round-robin phase until every node has
    // answered every kind of request (haproxy's health checks do not move it).
    let all: Vec<(&str, String)> = ["POST", "PATCH", "PUT"]
        .into_iter()
        .flat_map(|m| ["node1", "node2", "node3"].map(|n| (m, n.to_string())))
        .collect();
    for extra in 0..12usize {
        if all.iter().all(|c| seen.contains(c)) {
            break;
        }
        let data = prng.bytes(4096 + extra);
        let cuts: Vec<usize> = (1..=extra % 3).map(|k| k * 1000).collect();
        let trace = api
            .push_chunked(&format!("hops/extra{extra}"), &data, &cuts)
            .unwrap_or_else(|f| panic!("{f}"));
        for h in trace {
            seen.insert((h.method, h.node));
        }
    }
    for method in ["POST", "PATCH", "PUT"] {
        for node in ["node1", "node2", "node3"] {
            assert!(
                seen.contains(&(method, node.to_string())),
                "no {method} answered by {node}: {seen:?}"
            );
        }
    }
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
}

fn group(node: &str) -> &'static str {
    if node == "node3" {
        "other"
    } else {
        "shared"
    }
}

#[test]
fn a_node_with_another_secret_refuses_foreign_sessions_cleanly() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions {
        secrets: [None, None, Some("a-different-secret")],
        ..ClusterOptions::default()
    });
    let (n1, n2, n3) = (
        cluster.nodes[0].endpoint(),
        cluster.nodes[1].endpoint(),
        cluster.nodes[2].endpoint(),
    );
    let mut prng = Prng::new(77);
    let data = prng.bytes(300_000);
    let digest = sha256_hex_digest(&data);
    let upload_data = |location: &str| {
        let path = support::location_path(location);
        let uuid = path
            .split('?')
            .next()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        cluster
            .v2_root()
            .join("repositories/secrets/direct/_uploads")
            .join(uuid)
            .join("data")
    };

    // Started and partly sent on node1; node3 (another secret) must refuse the token.
    let post = n1.start_upload("secrets/direct").unwrap();
    let first = n1
        .patch(
            &n1.here(post.location.as_deref().unwrap()),
            0,
            Payload::Bytes(data[..100_000].to_vec()),
        )
        .unwrap();
    let token_location = first.location.clone().unwrap();
    let data_file = upload_data(&token_location);
    assert_eq!(fs::metadata(&data_file).unwrap().len(), 100_000);
    for (what, answer) in [
        (
            "PATCH",
            n3.send(
                Method::PATCH,
                &n3.here(&token_location),
                &[("content-range", "100000-199999".into())],
                Some(Payload::Bytes(data[100_000..200_000].to_vec())),
            ),
        ),
        (
            "PUT",
            n3.send(
                Method::PUT,
                &n3.here(&support::with_digest(&token_location, &digest)),
                &[],
                Some(Payload::Bytes(data[100_000..].to_vec())),
            ),
        ),
        (
            "DELETE",
            n3.send(Method::DELETE, &n3.here(&token_location), &[], None),
        ),
    ] {
        let answer = answer.unwrap();
        assert_eq!(
            (
                answer.status,
                answer.error_code().as_deref(),
                answer.node.as_str()
            ),
            (404, Some("BLOB_UPLOAD_INVALID"), "node3"),
            "{what} with a foreign token: {}",
            answer.text()
        );
        // Nothing was written, nothing was published.
        assert_eq!(
            fs::metadata(&data_file).unwrap().len(),
            100_000,
            "after {what}"
        );
        assert_eq!(
            api_status(
                &n1,
                Method::HEAD,
                &format!("/v2/secrets/direct/blobs/{digest}")
            ),
            404
        );
    }
    // The session is intact: node2 (same secret) finishes it.
    let a = n2
        .patch(
            &n2.here(&token_location),
            100_000,
            Payload::Bytes(data[100_000..].to_vec()),
        )
        .unwrap();
    n2.finish(&n2.here(a.location.as_deref().unwrap()), &digest)
        .unwrap();
    let (got, _, _) = n1.pull_digest("secrets/direct", &digest).unwrap();
    assert_eq!(got, digest);

    // The odd node says so in its metrics.
    let metrics = reqwest::blocking::get(format!(
        "http://127.0.0.1:{}/metrics",
        cluster.nodes[2].spec.debug_port
    ))
    .unwrap()
    .text()
    .unwrap();
    let rejected: f64 = metrics
        .lines()
        .find(|l| l.starts_with("wharf_upload_token_rejected_total"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        rejected >= 3.0,
        "wharf_upload_token_rejected_total {rejected}"
    );

    // The other way round: a session node3 signed is foreign to node1.
    let post = n3.start_upload("secrets/direct").unwrap();
    let answer = n1
        .send(
            Method::PATCH,
            &n1.here(post.location.as_deref().unwrap()),
            &[("content-range", "0-9".into())],
            Some(Payload::Bytes(vec![7u8; 10])),
        )
        .unwrap();
    assert_eq!(
        (answer.status, answer.error_code().as_deref()),
        (404, Some("BLOB_UPLOAD_INVALID")),
        "{}",
        answer.text()
    );

    // Through haproxy: an upload fails exactly when a request reaches a node whose secret
    // differs from the one that signed its token, always with that clear error.
    let api = cluster.endpoint();
    let (mut ok, mut refused) = (0, 0);
    for i in 0..12 {
        let data = prng.bytes(40_000 + i * 1000);
        let digest = sha256_hex_digest(&data);
        let repo = format!("secrets/lb{i}");
        match api.push_chunked(&repo, &data, &[10_000, 20_000, 30_000]) {
            Ok(trace) => {
                ok += 1;
                let groups: BTreeSet<&str> = trace.iter().map(|h| group(&h.node)).collect();
                assert_eq!(
                    groups.len(),
                    1,
                    "a push mixing secrets succeeded: {trace:?}"
                );
                let (got, _, _) = api.pull_digest(&repo, &digest).unwrap();
                assert_eq!(got, digest);
            }
            Err(f) => {
                refused += 1;
                let answer = f.answer.as_ref().unwrap_or_else(|| panic!("{f}"));
                assert_eq!(
                    (answer.status, answer.error_code().as_deref()),
                    (404, Some("BLOB_UPLOAD_INVALID")),
                    "{f}"
                );
                // Never published.
                let blob = cluster
                    .v2_root()
                    .join("blobs/sha256")
                    .join(&digest[7..9])
                    .join(&digest[7..]);
                assert!(!blob.exists(), "refused upload left {}", blob.display());
            }
        }
    }
    eprintln!("through haproxy with one odd node: {ok} pushes went through, {refused} refused");
    assert!(refused > 0, "round-robin never mixed secrets");
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
}

fn api_status(endpoint: &Endpoint, method: Method, path: &str) -> u16 {
    endpoint.send(method, path, &[], None).unwrap().status
}

#[test]
fn two_clients_racing_on_one_blob_and_one_tag_leave_one_consistent_result() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = [cluster.nodes[0].endpoint(), cluster.nodes[1].endpoint()];
    let rounds = 12;
    let mut prng = Prng::new(4242);
    for round in 0..rounds {
        let repo = format!("race/r{}", round % 3);
        let layer = Arc::new(prng.bytes(200_000 + round * 4096));
        let layer_digest = sha256_hex_digest(&layer);
        // Each client has its own config, so the two manifests differ: both race for "race".
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(c, endpoint)| {
                let (endpoint, layer, barrier, repo) = (
                    endpoint.clone(),
                    layer.clone(),
                    barrier.clone(),
                    repo.clone(),
                );
                let layer_digest = layer_digest.clone();
                thread::spawn(move || {
                    let config = format!("{{\"client\":{c},\"round\":{round}}}").into_bytes();
                    let config_digest = sha256_hex_digest(&config);
                    barrier.wait();
                    // Same blob: chunked from one client, monolithic from the other, at once.
                    if c == 0 {
                        endpoint.push_chunked(&repo, &layer, &[50_000, 120_000])
                    } else {
                        endpoint.push_monolithic(&repo, &layer)
                    }
                    .unwrap_or_else(|f| panic!("client {c}: {f}"));
                    endpoint.push_monolithic(&repo, &config).unwrap();
                    let mine = image_manifest(
                        (&config_digest, config.len() as u64),
                        &[(layer_digest.clone(), layer.len() as u64)],
                    );
                    let shared = image_manifest(
                        (support::EMPTY_DIGEST, 2),
                        &[(layer_digest, layer.len() as u64)],
                    );
                    if c == 0 {
                        endpoint.push_monolithic(&repo, b"{}").unwrap();
                    }
                    barrier.wait();
                    // Same tag, different manifests; and the same manifest under one tag.
                    let a = endpoint
                        .put_manifest(&repo, "race", support::OCI_MANIFEST, &mine)
                        .unwrap_or_else(|f| panic!("client {c}: {f}"));
                    let b = endpoint
                        .put_manifest(&repo, "same", support::OCI_MANIFEST, &shared)
                        .unwrap_or_else(|f| panic!("client {c}: {f}"));
                    (
                        sha256_hex_digest(&mine),
                        a.digest_header,
                        b.digest_header,
                        sha256_hex_digest(&shared),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let candidates: BTreeSet<String> = results.iter().map(|r| r.0.clone()).collect();
        for (_, header, same, shared) in &results {
            assert!(candidates.contains(header.as_deref().unwrap_or("")));
            assert_eq!(same.as_deref(), Some(shared.as_str()));
        }
        let same_link = cluster
            .v2_root()
            .join("repositories")
            .join(&repo)
            .join("_manifests/tags/same/current/link");
        assert_eq!(fs::read_to_string(&same_link).unwrap(), results[0].3);
        // The tag names exactly one of the two manifests, on every node, and on disk.
        let link = cluster
            .v2_root()
            .join("repositories")
            .join(&repo)
            .join("_manifests/tags/race/current/link");
        let on_disk = fs::read_to_string(&link).unwrap();
        assert!(
            candidates.contains(&on_disk),
            "tag link {on_disk:?} is neither of {candidates:?}"
        );
        let mut answers = BTreeMap::new();
        for node in &cluster.nodes {
            let m = node.endpoint().get_manifest(&repo, "race").unwrap();
            assert_eq!(sha256_hex_digest(&m.body), on_disk);
            answers.insert(node.name().to_string(), m.digest_header.unwrap());
        }
        assert!(answers.values().all(|d| *d == on_disk), "{answers:?}");
        let (got, len, _) = clients[0].pull_digest(&repo, &layer_digest).unwrap();
        assert_eq!((got, len), (layer_digest.clone(), layer.len() as u64));
    }
    let problems = storage_problems(&cluster.v2_root());
    assert_eq!(problems, Vec::<String>::new());
    // No temporary file of an interrupted write is left beside a link.
    let leftovers: Vec<_> = support::list_files(&cluster.v2_root().join("repositories"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A distribution 2.8.2 node over the cluster's storage, secret and Redis.
fn docker_registry(cluster: &Cluster) -> Registry {
    let template = format!(
        "version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {{root}}
  delete:
    enabled: true
  cache:
    blobdescriptor: redis
redis:
  addr: {redis}
  dialtimeout: 200ms
  readtimeout: 200ms
  writetimeout: 200ms
http:
  addr: {{addr}}
  secret: {SECRET}
",
        redis = cluster.redis.addr()
    );
    Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .storage_dir(cluster.storage.path())
        .template(&template)
        .start()
}

#[test]
fn registry2_and_wharf_continue_each_others_uploads() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let go = docker_registry(&cluster);
    let go_api = Endpoint::new(&go.url());
    let wharf = cluster.nodes[0].endpoint();
    let mut prng = Prng::new(2_8_2);

    for (label, first, second) in [
        ("registry:2 -> wharf", &go_api, &wharf),
        ("wharf -> registry:2", &wharf, &go_api),
    ] {
        let repo = format!(
            "mixed/{}",
            if first.base == go_api.base {
                "from-go"
            } else {
                "from-wharf"
            }
        );
        let data = prng.bytes(3 * 1024 * 1024 + 17);
        let digest = sha256_hex_digest(&data);
        let (a, b) = (1024 * 1024, 2 * 1024 * 1024 + 5);
        // Started on one kind: POST and the first chunk.
        let post = first
            .start_upload(&repo)
            .unwrap_or_else(|f| panic!("{label}: {f}"));
        let p1 = first
            .patch(
                &first.here(post.location.as_deref().unwrap()),
                0,
                Payload::Bytes(data[..a].to_vec()),
            )
            .unwrap_or_else(|f| panic!("{label}: {f}"));
        // Continued on the other: the next chunk, then the last chunk with the PUT.
        let p2 = second
            .patch(
                &second.here(p1.location.as_deref().unwrap()),
                a as u64,
                Payload::Bytes(data[a..b].to_vec()),
            )
            .unwrap_or_else(|f| panic!("{label}: second chunk: {f}\n{}", go.stderr_text()));
        assert_eq!(
            p2.range.as_deref(),
            Some(format!("0-{}", b - 1).as_str()),
            "{label}"
        );
        let put_url = second.here(&support::with_digest(
            p2.location.as_deref().unwrap(),
            &digest,
        ));
        let put = second
            .expect(
                "PUT with the last chunk",
                Method::PUT,
                &put_url,
                &[],
                Some(Payload::Bytes(data[b..].to_vec())),
                201,
            )
            .unwrap_or_else(|f| panic!("{label}: {f}\n{}", go.stderr_text()));
        assert_eq!(
            put.digest_header.as_deref(),
            Some(digest.as_str()),
            "{label}"
        );
        // Both kinds serve it, and the shared Redis holds distribution's descriptor.
        for reader in [&go_api, &wharf] {
            let (got, len, _) = reader
                .pull_digest(&repo, &digest)
                .unwrap_or_else(|f| panic!("{label}: {f}"));
            assert_eq!(
                (got.as_str(), len),
                (digest.as_str(), data.len() as u64),
                "{label}"
            );
        }
        let key = format!("blobs::{digest}");
        let ok = wait_until(Duration::from_secs(5), || {
            cluster
                .redis
                .command(&["HGET", &key, "size"])
                .map(|r| r.text())
                .ok()
                == Some(data.len().to_string())
        });
        assert!(
            ok,
            "{label}: Redis has no descriptor {key}: {:?}",
            cluster.redis.keys("*")
        );
        assert!(
            !cluster
                .redis
                .keys(&format!("repository::{repo}::blobs"))
                .is_empty(),
            "{label}: {:?}",
            cluster.redis.keys("*")
        );
    }

    // A wharf session resumed by registry:2 from wharf's hashstate files, without a wharf
    // token field it understands, and finished by a single PUT: the bytes are verified.
    let repo = "mixed/put-only";
    let data = prng.bytes(700_000);
    let digest = sha256_hex_digest(&data);
    let post = wharf.start_upload(repo).unwrap();
    let p = wharf
        .patch(
            &wharf.here(post.location.as_deref().unwrap()),
            0,
            Payload::Bytes(data.clone()),
        )
        .unwrap();
    go_api
        .finish(&go_api.here(p.location.as_deref().unwrap()), &digest)
        .unwrap_or_else(|f| panic!("{f}\n{}", go.stderr_text()));
    let (got, _, _) = wharf.pull_digest(repo, &digest).unwrap();
    assert_eq!(got, digest);
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
}
