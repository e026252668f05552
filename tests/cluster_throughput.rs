//! Push and pull throughput of three nodes behind haproxy, against one node alone and one node
//! behind the same haproxy config. The figures are printed (run with `--nocapture`); the test
//! only asserts that every request succeeded. Clients, haproxy, Redis and the nodes share the
//! machine, so on a small machine more nodes mean more processes per core, not more cores.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::*;

const CLIENTS: usize = 8;
const BLOB: usize = 1024 * 1024;
const PHASE: Duration = Duration::from_secs(5);

struct Figures {
    push_mb_s: f64,
    push_per_s: f64,
    pull_mb_s: f64,
    pull_per_s: f64,
}

/// `CLIENTS` threads doing `op(thread, i)` until `PHASE` has passed; (ops, bytes, seconds).
fn run_phase(
    op: impl Fn(usize, u64) -> Result<u64, String> + Send + Sync + 'static,
) -> (u64, u64, f64) {
    let op = Arc::new(op);
    let (ops, bytes) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let (op, ops, bytes) = (op.clone(), ops.clone(), bytes.clone());
            thread::spawn(move || {
                for i in 0..100_000u64 {
                    if started.elapsed() > PHASE {
                        break;
                    }
                    let n = op(t, i).unwrap_or_else(|e| panic!("{e}"));
                    ops.fetch_add(1, Ordering::SeqCst);
                    bytes.fetch_add(n, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    (
        ops.load(Ordering::SeqCst),
        bytes.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64(),
    )
}

fn measure(label: &str, api: Endpoint) -> Figures {
    // Pushes: POST + PUT of a fresh 1 MiB blob.
    let push_api = api.clone();
    let (pushes, pushed, secs) = run_phase(move |t, i| {
        let data = Prng::new(((t as u64) << 40) ^ i ^ 0xb10b).bytes(BLOB);
        push_api
            .push_monolithic(&format!("bench/{t}"), &data)
            .map_err(|f| f.to_string())?;
        Ok(data.len() as u64)
    });
    let push = (pushed as f64 / secs / 1e6, pushes as f64 / secs);
    // Pulls: 16 blobs pushed beforehand, read back whole with their digest checked.
    let blobs: Arc<Vec<(String, String)>> = Arc::new(
        (0..16)
            .map(|k| {
                let data = Prng::new(0xfeed + k).bytes(BLOB);
                let repo = format!("bench/pull{}", k % 4);
                api.push_monolithic(&repo, &data).unwrap();
                (repo, sha256_digest(&data))
            })
            .collect(),
    );
    let pull_api = api.clone();
    let (pulls, pulled, secs) = run_phase(move |t, i| {
        let (repo, digest) = &blobs[(t * 5 + i as usize) % blobs.len()];
        let (got, len, _) = pull_api
            .pull_digest(repo, digest)
            .map_err(|f| f.to_string())?;
        if &got != digest {
            return Err(format!("pulled {got}, expected {digest}"));
        }
        Ok(len)
    });
    let pull = (pulled as f64 / secs / 1e6, pulls as f64 / secs);
    eprintln!(
        "{label:<32} push {:7.1} MB/s ({:6.1} blobs/s)   pull {:7.1} MB/s ({:6.1} blobs/s)",
        push.0, push.1, pull.0, pull.1
    );
    Figures {
        push_mb_s: push.0,
        push_per_s: push.1,
        pull_mb_s: pull.0,
        pull_per_s: pull.1,
    }
}

#[test]
fn three_nodes_behind_haproxy_against_one_node() {
    let _one = exclusive();
    eprintln!("{CLIENTS} clients, 1 MiB blobs, {PHASE:?} per phase, Redis cache on");
    let three = {
        let cluster = Cluster::start(ClusterOptions::default());
        measure("3 nodes behind haproxy", cluster.endpoint())
    };
    let redis = RedisServer::start();
    let node = Registry::builder(Driver::Filesystem)
        .node("solo")
        .draintimeout(Duration::from_secs(3))
        .redis(&redis.addr(), Duration::from_millis(100))
        .start();
    let one = measure("1 node, direct", node.endpoint());
    let same = (node.port(), node.debug_port());
    let haproxy = Haproxy::start(&repo_path("haproxy/haproxy.cfg"), &[same, same, same]);
    let one_lb = measure("1 node behind haproxy", haproxy.endpoint());
    eprintln!(
        "3 nodes / 1 node direct: push x{:.2}, pull x{:.2}; 1 node behind haproxy / direct: push x{:.2}, pull x{:.2}",
        three.push_mb_s / one.push_mb_s,
        three.pull_mb_s / one.pull_mb_s,
        one_lb.push_mb_s / one.push_mb_s,
        one_lb.pull_mb_s / one.pull_mb_s
    );
    for f in [&three, &one, &one_lb] {
        assert!(f.push_per_s > 0.0 && f.pull_per_s > 0.0);
    }
}
