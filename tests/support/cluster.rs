//! A registry cluster: three `wharf` nodes sharing one storage folder (or one bucket or container) and one
//! `http.secret`, a real `redis-server` as their blob-descriptor cache (optionally behind a
//! chaos proxy), and a real haproxy running the repository's config in front of them.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::chaos::ChaosProxy;
use super::client::Endpoint;
use super::haproxy::Haproxy;
use super::object_store::StoreTarget;
use super::process::{repo_path, tail};
use super::redis::RedisServer;
use super::registry::{Driver, Registry, SECRET};
use super::session::Trace;

/// Clusters take most of the machine: tests of one file run them one at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Options for [`Cluster::start`].
pub struct ClusterOptions {
    /// `haproxy/haproxy.cfg` or `haproxy/haproxy-sticky.cfg`.
    pub haproxy_config: &'static str,
    /// Put a chaos proxy between the nodes and Redis.
    pub chaos: bool,
    /// Per-node secret overrides (`None`: the shared [`SECRET`]).
    pub secrets: [Option<&'static str>; 3],
    pub draintimeout: Duration,
    /// Redis dial/read/write timeouts.
    pub redis_timeout: Duration,
    /// Store in this bucket or container of a shared emulator (S3, Azure or GCS) instead of
    /// a shared folder, blob reads redirected to it or not.
    pub store: Option<(StoreTarget, bool)>,
    /// A configuration section every node gets (e.g. `proxy`).
    pub section: Option<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            haproxy_config: "haproxy/haproxy.cfg",
            chaos: false,
            secrets: [None, None, None],
            draintimeout: Duration::from_secs(12),
            redis_timeout: Duration::from_millis(100),
            store: None,
            section: None,
        }
    }
}

/// Three nodes (`node1`..`node3`) over one storage and one Redis, behind haproxy.
pub struct Cluster {
    // Field order is drop order: the balancer first, then nodes, then what they use.
    pub haproxy: Haproxy,
    pub nodes: Vec<Registry>,
    pub chaos: Option<ChaosProxy>,
    pub redis: RedisServer,
    pub storage: tempfile::TempDir,
}

impl Cluster {
    /// Starts Redis (and the chaos proxy), the three nodes, then haproxy, and waits until haproxy
    /// sends to every node.
    pub fn start(options: ClusterOptions) -> Cluster {
        let storage = tempfile::Builder::new()
            .prefix("wharf-cluster-storage-")
            .tempdir()
            .expect("temp dir");
        let redis = RedisServer::start();
        let chaos = options.chaos.then(|| ChaosProxy::start(redis.addr()));
        let redis_addr = chaos
            .as_ref()
            .map(ChaosProxy::addr)
            .unwrap_or_else(|| redis.addr());
        let nodes: Vec<Registry> = (0..3)
            .map(|i| {
                let node = match &options.store {
                    Some((target, redirect)) => target.builder().redirect(*redirect),
                    None => Registry::builder(Driver::Filesystem).storage_dir(storage.path()),
                };
                let node = match &options.section {
                    Some(section) => node.section(section),
                    None => node,
                };
                node.node(&format!("node{}", i + 1))
                    .secret(options.secrets[i].unwrap_or(SECRET))
                    .draintimeout(options.draintimeout)
                    .redis(&redis_addr, options.redis_timeout)
                    .start()
            })
            .collect();
        let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
        let haproxy = Haproxy::start(&repo_path(options.haproxy_config), &ports);
        Cluster {
            haproxy,
            nodes,
            chaos,
            redis,
            storage,
        }
    }

    /// The client's view: everything through haproxy.
    pub fn endpoint(&self) -> Endpoint {
        self.haproxy.endpoint()
    }

    /// The node named `name`.
    pub fn node(&mut self, name: &str) -> &mut Registry {
        self.nodes
            .iter_mut()
            .find(|n| n.name() == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// `<storage>/docker/registry/v2`.
    pub fn v2_root(&self) -> PathBuf {
        self.storage.path().join("docker/registry/v2")
    }

    /// The end of every node's log and of haproxy's, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("--- {} ---\n{}\n", n.name(), tail(&n.log(), 60)));
        }
        out.push_str(&format!(
            "--- haproxy ---\n{}\n",
            tail(&self.haproxy.log(), 60)
        ));
        out
    }

    /// A chunked push through haproxy whose requests must be answered by at least two nodes;
    /// panics with the seed, the cuts and the nodes' logs when the push fails.
    pub fn push_over_nodes(&self, repo: &str, data: &[u8], cuts: &[usize], seed: u64) -> Trace {
        let trace = self
            .endpoint()
            .push_chunked(repo, data, cuts)
            .unwrap_or_else(|f| {
                panic!(
                    "push of {} bytes (seed {seed:#x}, cuts {cuts:?}): {f}\n{}",
                    data.len(),
                    self.logs()
                )
            });
        let nodes: BTreeSet<&str> = trace.iter().map(|h| h.node.as_str()).collect();
        assert!(
            nodes.len() >= 2,
            "one upload's requests should be spread over nodes: {trace:?}"
        );
        trace
    }
}
