//! Upload purging on a cluster: three nodes over one folder purge stale upload sessions every
//! second (`uploadpurging.interval: 1s`, which registry:2 accepts) under the `purge` lease, on
//! the shared storage and then in Redis. Every stale session is purged exactly once (the
//! nodes' purge counts add up to the stale sessions, which a second node purging the same
//! listing would exceed), fresh sessions are untouched and still accept data, and each
//! node's `/debug/vars` names it as the holder of the passes it ran.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::redis::RedisServer;
use support::*;

/// Stale sessions written straight into storage, and sessions started through the API
/// (some then backdated, some left fresh).
const WRITTEN: usize = 30;
const BACKDATED: usize = 4;
const FRESH: usize = 4;

const PURGE_LIMIT: Duration = Duration::from_secs(90);

fn uploads_dir(root: &Path, repo: &str) -> std::path::PathBuf {
    root.join(format!("docker/registry/v2/repositories/{repo}/_uploads"))
}

/// The session id in an upload `Location`.
fn session_id(location: &str) -> String {
    let path = location.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_string()
}

fn purged_by(node: &Registry) -> usize {
    log_lines(&node.log(), |l| l.contains("upload purge done"))
        .iter()
        .map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("purged="))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no purged count in {l}"))
        })
        .sum()
}

fn purge_in_a_cluster(redis: Option<&RedisServer>) {
    let storage = tempfile::tempdir().unwrap();
    let root = storage.path();
    for i in 0..WRITTEN {
        let session =
            uploads_dir(root, "stale/pile").join(format!("00000000-0000-4000-8000-{i:012}"));
        fs::create_dir_all(&session).unwrap();
        fs::write(session.join("startedat"), "2020-01-01T00:00:00Z").unwrap();
    }
    let nodes: Vec<Registry> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut b = Registry::builder(Driver::Filesystem)
                .storage_dir(root)
                .node(name)
                .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "true")
                .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "1h")
                .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "1s")
                .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN", "false");
            if let Some(r) = redis {
                b = b.redis(&r.addr(), Duration::from_millis(500));
            }
            b.start()
        })
        .collect();
    // Sessions through the API, spread over the nodes; the first ones are then backdated.
    let mut fresh = Vec::new();
    for i in 0..BACKDATED + FRESH {
        let node = &nodes[i % nodes.len()];
        let location = start_upload(&node.endpoint(), "live/app");
        let id = session_id(&location);
        let started = uploads_dir(root, "live/app").join(&id).join("startedat");
        assert!(started.exists(), "{location}: no {}", started.display());
        if i < BACKDATED {
            fs::write(&started, "2020-01-01T00:00:00Z").unwrap();
        } else {
            fresh.push((node.endpoint(), location, id));
        }
    }
    let stale = WRITTEN + BACKDATED;
    let gone = wait_until(PURGE_LIMIT, || {
        nodes.iter().map(purged_by).sum::<usize>() >= stale
    });
    let counts: Vec<usize> = nodes.iter().map(purged_by).collect();
    let logs = || {
        nodes
            .iter()
            .map(|n| tail(&n.log(), 40))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    assert!(
        gone,
        "stale sessions not all purged: {counts:?}\n{}",
        logs()
    );
    // A few more passes, so a double purge or a purged fresh session would show.
    let passes = |n: &Registry| log_lines(&n.log(), |l| l.contains("upload purge done")).len();
    let before: usize = nodes.iter().map(passes).sum();
    assert!(
        wait_until(PURGE_LIMIT, || nodes.iter().map(passes).sum::<usize>()
            >= before + 3),
        "purging stopped\n{}",
        logs()
    );
    let counts: Vec<usize> = nodes.iter().map(purged_by).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        stale,
        "each stale session purged once: {counts:?}\n{}",
        logs()
    );
    let left: Vec<_> = fs::read_dir(uploads_dir(root, "stale/pile"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "stale sessions left: {left:?}");
    let live: Vec<String> = fs::read_dir(uploads_dir(root, "live/app"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert_eq!(live.len(), FRESH, "{live:?}");
    for (ep, location, id) in &fresh {
        assert!(live.contains(id), "fresh session {id} purged: {live:?}");
        // Still usable: its data goes through to a blob.
        let data = format!("fresh {id}").into_bytes();
        let patched = ep
            .patch_chunk(location, 0, Payload::Bytes(data.clone()))
            .unwrap_or_else(|f| panic!("fresh session {id}: {f}"));
        ep.finish(patched.must_header("location"), &sha256_digest(&data))
            .unwrap_or_else(|f| panic!("fresh session {id}: {f}"));
    }
    // Every node tried; each one's `/debug/vars` names it as the holder of its passes.
    let mut ran = 0;
    for node in &nodes {
        let (status, body) = node.debug_get("/debug/vars");
        assert_eq!(status, 200, "{body}");
        let vars: serde_json::Value = serde_json::from_str(&body).unwrap();
        let last = &vars["cluster"]["purge_last_pass"];
        if last.is_null() {
            continue;
        }
        ran += 1;
        let holder = last["holder"].as_str().unwrap_or_default();
        assert!(holder.ends_with(&format!(":{}", node.pid())), "{vars}");
        assert!(last["error"].is_null(), "{vars}");
    }
    assert!(ran >= 1, "no node reports a purge pass\n{}", logs());
}

#[test]
fn upload_purging_on_shared_storage_runs_on_one_node_at_a_time() {
    purge_in_a_cluster(None);
}

#[test]
fn upload_purging_under_a_redis_lease_runs_on_one_node_at_a_time() {
    let redis = RedisServer::start();
    purge_in_a_cluster(Some(&redis));
}
