//! Uploads across a three-node cluster behind haproxy (round-robin, no sticky sessions): each
//! request of a chunked upload may land on another node; a node with another secret refuses
//! foreign sessions cleanly; two clients racing on one blob and one tag leave one consistent
//! result; and a registry:2 node sharing the storage and the secret continues wharf's uploads
//! and the other way round.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use support::*;

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
        let digest = sha256_digest(&data);
        let chunks = 2 + (prng.next_u64() as usize) % (max_chunks - 1);
        let cuts = random_cuts(&mut prng, size, chunks);
        let trace = cluster.push_over_nodes(&repo, &data, &cuts, seed);
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
    let digest = sha256_digest(&data);
    let upload_data = |location: &str| {
        let path = location_path(location);
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
        .patch_chunk(
            &n1.here(post.must_header("location")),
            0,
            Payload::Bytes(data[..100_000].to_vec()),
        )
        .unwrap();
    let token_location = first.must_header("location").to_string();
    let data_file = upload_data(&token_location);
    assert_eq!(fs::metadata(&data_file).unwrap().len(), 100_000);
    for (what, request) in [
        (
            "PATCH",
            Payload::Bytes(data[100_000..200_000].to_vec()).attach(
                n3.patch(&n3.here(&token_location))
                    .header("content-range", "100000-199999"),
            ),
        ),
        (
            "PUT",
            Payload::Bytes(data[100_000..].to_vec())
                .attach(n3.put(&n3.here(&with_digest(&token_location, &digest)))),
        ),
        ("DELETE", n3.delete(&n3.here(&token_location))),
    ] {
        let answer = send(request);
        assert_eq!(
            (answer.status, answer.error_code().as_deref(), answer.node()),
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
            send(n1.head(&format!("/v2/secrets/direct/blobs/{digest}"))).status,
            404
        );
    }
    // The session is intact: node2 (same secret) finishes it.
    let a = n2
        .patch_chunk(
            &n2.here(&token_location),
            100_000,
            Payload::Bytes(data[100_000..].to_vec()),
        )
        .unwrap();
    n2.finish(&n2.here(a.must_header("location")), &digest)
        .unwrap();
    let (got, _, _) = n1.pull_digest("secrets/direct", &digest).unwrap();
    assert_eq!(got, digest);

    // The odd node says so in its metrics.
    let rejected = cluster.nodes[2]
        .scrape()
        .sum("wharf_upload_token_rejected_total", &[]);
    assert!(
        rejected >= 3.0,
        "wharf_upload_token_rejected_total {rejected}"
    );

    // The other way round: a session node3 signed is foreign to node1.
    let post = n3.start_upload("secrets/direct").unwrap();
    let answer = send(
        Payload::Bytes(vec![7u8; 10]).attach(
            n1.patch(&n1.here(post.must_header("location")))
                .header("content-range", "0-9"),
        ),
    );
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
        let digest = sha256_digest(&data);
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

#[test]
fn two_clients_racing_on_one_blob_and_one_tag_leave_one_consistent_result() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let clients = [cluster.nodes[0].endpoint(), cluster.nodes[1].endpoint()];
    let rounds = 12;
    let mut prng = Prng::new(4242);
    for round in 0..rounds {
        let repo = format!("race/r{}", round % 3);
        let layer = Arc::new(Blob::new(prng.bytes(200_000 + round * 4096)));
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
                thread::spawn(move || {
                    let config =
                        Blob::new(format!("{{\"client\":{c},\"round\":{round}}}").into_bytes());
                    barrier.wait();
                    // Same blob: chunked from one client, monolithic from the other, at once.
                    if c == 0 {
                        endpoint.push_chunked(&repo, &layer.data, &[50_000, 120_000])
                    } else {
                        endpoint.push_monolithic(&repo, &layer.data)
                    }
                    .unwrap_or_else(|f| panic!("client {c}: {f}"));
                    endpoint.push_monolithic(&repo, &config.data).unwrap();
                    let mine = image_manifest(
                        OCI_MANIFEST,
                        (OCI_CONFIG, &config),
                        &[(OCI_LAYER, &layer)],
                        None,
                    );
                    let shared = image_manifest(
                        OCI_MANIFEST,
                        (OCI_CONFIG, &Blob::new(b"{}".to_vec())),
                        &[(OCI_LAYER, &layer)],
                        None,
                    );
                    if c == 0 {
                        endpoint.push_monolithic(&repo, b"{}").unwrap();
                    }
                    barrier.wait();
                    // Same tag, different manifests; and the same manifest under one tag.
                    let a = endpoint
                        .push_manifest(&repo, "race", &mine)
                        .unwrap_or_else(|f| panic!("client {c}: {f}"));
                    let b = endpoint
                        .push_manifest(&repo, "same", &shared)
                        .unwrap_or_else(|f| panic!("client {c}: {f}"));
                    let digest = |r: &Resp| r.header("docker-content-digest").map(str::to_string);
                    (mine.digest, digest(&a), digest(&b), shared.digest)
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
            let m = node.pull_manifest(&repo, "race").unwrap();
            assert_eq!(sha256_digest(&m.body), on_disk);
            answers.insert(
                node.name().to_string(),
                m.must_header("docker-content-digest").to_string(),
            );
        }
        assert!(answers.values().all(|d| *d == on_disk), "{answers:?}");
        let (got, len, _) = clients[0].pull_digest(&repo, &layer.digest).unwrap();
        assert_eq!((got, len), (layer.digest.clone(), layer.size()));
    }
    let problems = storage_problems(&cluster.v2_root());
    assert_eq!(problems, Vec::<String>::new());
    // No temporary file of an interrupted write is left beside a link.
    let leftovers: Vec<_> = list_files(&cluster.v2_root().join("repositories"))
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
    let go_api = go.endpoint();
    let wharf = cluster.nodes[0].endpoint();
    let mut prng = Prng::new(2_8_2);

    for (label, first, second) in [
        ("registry:2 -> wharf", &go_api, &wharf),
        ("wharf -> registry:2", &wharf, &go_api),
    ] {
        let repo = format!(
            "mixed/{}",
            if first.url() == go_api.url() {
                "from-go"
            } else {
                "from-wharf"
            }
        );
        let data = prng.bytes(3 * 1024 * 1024 + 17);
        let digest = sha256_digest(&data);
        let (a, b) = (1024 * 1024, 2 * 1024 * 1024 + 5);
        // Started on one kind: POST and the first chunk.
        let post = first
            .start_upload(&repo)
            .unwrap_or_else(|f| panic!("{label}: {f}"));
        let p1 = first
            .patch_chunk(
                &first.here(post.must_header("location")),
                0,
                Payload::Bytes(data[..a].to_vec()),
            )
            .unwrap_or_else(|f| panic!("{label}: {f}"));
        // Continued on the other: the next chunk, then the last chunk with the PUT.
        let p2 = second
            .patch_chunk(
                &second.here(p1.must_header("location")),
                a as u64,
                Payload::Bytes(data[a..b].to_vec()),
            )
            .unwrap_or_else(|f| panic!("{label}: second chunk: {f}\n{}", go.stderr_text()));
        assert_eq!(
            p2.header("range"),
            Some(format!("0-{}", b - 1).as_str()),
            "{label}"
        );
        let put_url = second.here(&with_digest(p2.must_header("location"), &digest));
        let put = second
            .expect(
                "PUT with the last chunk",
                Payload::Bytes(data[b..].to_vec()).attach(second.put(&put_url)),
                201,
            )
            .unwrap_or_else(|f| panic!("{label}: {f}\n{}", go.stderr_text()));
        assert_eq!(
            put.header("docker-content-digest"),
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
    let digest = sha256_digest(&data);
    let post = wharf.start_upload(repo).unwrap();
    let p = wharf
        .patch_chunk(
            &wharf.here(post.must_header("location")),
            0,
            Payload::Bytes(data.clone()),
        )
        .unwrap();
    go_api
        .finish(&go_api.here(p.must_header("location")), &digest)
        .unwrap_or_else(|f| panic!("{f}\n{}", go.stderr_text()));
    let (got, _, _) = wharf.pull_digest(repo, &digest).unwrap();
    assert_eq!(got, digest);
    assert_eq!(storage_problems(&cluster.v2_root()), Vec::<String>::new());
}
