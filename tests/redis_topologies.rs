//! Redis as it is run: a master with a replica behind three `redis-sentinel`s (failed over by
//! `SENTINEL FAILOVER` and by SIGKILL under push/pull load), a six-node Redis Cluster that loses
//! a master, TLS with a generated CA (with and without client certificates) and an ACL user.
//! Each time the registry answers every request, and the cache is used again soon after Redis
//! can serve it (measured and printed).

mod support;

use std::time::{Duration, Instant};

use support::auth::{ec_key, Ca};
use support::*;

/// Waits until a request on `node` reaches Redis: a blob pushed and HEADed there is recorded
/// under its repository key, as `linked(repo, digest)` reads it. Returns how long that took.
fn cache_used_by(node: &Endpoint, label: &str, linked: impl Fn(&str, &str) -> bool) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    let ok = wait_until(Duration::from_secs(30), || {
        n += 1;
        let repo = format!("redis/{label}/{n}");
        let data = format!("{label} {n} {:?}", Instant::now()).into_bytes();
        node.push_monolithic(&repo, &data)
            .unwrap_or_else(|f| panic!("{label}: {f}"));
        let digest = sha256_digest(&data);
        node.head_blob(&repo, &digest)
            .unwrap_or_else(|f| panic!("{label}: {f}"));
        linked(&repo, &digest)
    });
    assert!(ok, "{label}: the cache is not used again");
    started.elapsed()
}

/// `SISMEMBER repository::<repo>::blobs <digest>` on one server.
fn linked_on(addr: &str, repo: &str, digest: &str) -> bool {
    redis_command(
        addr,
        &["SISMEMBER", &format!("repository::{repo}::blobs"), digest],
    )
    .map(|r| r.text() == "1")
    .unwrap_or(false)
}

fn load_options() -> LoadOptions {
    LoadOptions {
        pushers: 2,
        pullers: 2,
        slow_uploaders: 0,
        layer_size: 64 * 1024,
        retry: false,
        limit: Duration::from_secs(180),
        max_ops: 100_000,
    }
}

/// Two nodes over one folder, each with this `redis` section.
fn two_nodes(storage: &std::path::Path, redis: &str) -> Vec<Registry> {
    (1..=2)
        .map(|i| {
            Registry::builder(Driver::Filesystem)
                .storage_dir(storage)
                .node(&format!("node{i}"))
                .redis_section(redis)
                .start()
        })
        .collect()
}

fn role(addr: &str) -> String {
    redis_command(addr, &["ROLE"])
        .map(|r| r.items().first().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn wait_replicating(replica: &RedisServer) {
    let ok = wait_until(Duration::from_secs(20), || {
        replica
            .command(&["INFO", "replication"])
            .map(|r| r.text().contains("master_link_status:up"))
            .unwrap_or(false)
    });
    assert!(ok, "replica never synced:\n{}", replica.log());
}

#[test]
fn sentinel_failover_and_master_killed_under_load_fail_no_request() {
    let a = RedisServer::start();
    let mut b = RedisServer::start_with(&["--replicaof", "127.0.0.1", &a.port.to_string()]);
    wait_replicating(&b);
    let sentinels: Vec<RedisSentinel> = (0..3)
        .map(|_| RedisSentinel::start("wharfmaster", &a.addr(), Duration::from_millis(1000)))
        .collect();
    let addrs: Vec<String> = sentinels.iter().map(RedisSentinel::addr).collect();
    let storage = tempfile::tempdir().unwrap();
    let section = format!(
        "  addrs: [{}]\n  mastername: wharfmaster\n  dialtimeout: 200ms\n  readtimeout: 200ms\n  writetimeout: 200ms\n",
        addrs.join(", ")
    );
    let nodes = two_nodes(storage.path(), &section);
    let endpoints: Vec<Endpoint> = nodes.iter().map(|n| n.endpoint()).collect();
    let master_now = |sentinels: &[RedisSentinel]| sentinels[0].master("wharfmaster");

    for (i, node) in endpoints.iter().enumerate() {
        cache_used_by(node, &format!("sentinel/start/{i}"), |r, d| {
            linked_on(&a.addr(), r, d)
        });
    }
    let load = Load::start(endpoints[0].clone(), load_options());
    assert!(load.wait_ops(10, Duration::from_secs(60)));

    // 1. SENTINEL FAILOVER: b becomes the master, a its replica.
    let before = load.ops();
    redis_command(&addrs[0], &["SENTINEL", "FAILOVER", "wharfmaster"]).unwrap();
    let promoted = wait_until(Duration::from_secs(30), || role(&b.addr()) == "master");
    assert!(promoted, "no failover:\n{}", sentinels[0].log());
    let at = Instant::now();
    let mut after_failover = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        cache_used_by(node, &format!("sentinel/failover/{i}"), |r, d| {
            linked_on(&b.addr(), r, d)
        });
        after_failover.push(at.elapsed());
    }
    wait_until(Duration::from_secs(20), || {
        master_now(&sentinels).as_deref() == Some(b.addr().as_str())
    });
    wait_replicating(&a);
    let during_failover = load.ops() - before;

    // 2. SIGKILL of the master (b): the sentinels promote a after down-after-milliseconds.
    let before = load.ops();
    b.kill();
    let promoted = wait_until(Duration::from_secs(40), || role(&a.addr()) == "master");
    assert!(
        promoted,
        "no failover after the kill:\n{}",
        sentinels[0].log()
    );
    let at = Instant::now();
    let mut after_kill = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        cache_used_by(node, &format!("sentinel/kill/{i}"), |r, d| {
            linked_on(&a.addr(), r, d)
        });
        after_kill.push(at.elapsed());
    }
    assert!(load.wait_ops(10, Duration::from_secs(60)));
    let during_kill = load.ops() - before;
    let calls = command_calls(&a.addr());

    let r1 = load.stop();
    let failures = &r1.failures;
    eprintln!(
        "sentinel: {} requests, {} failed; {during_failover} operations across SENTINEL FAILOVER, \
         {during_kill} across the SIGKILL; cache used by each node after the new master: \
         failover {after_failover:?}, kill {after_kill:?}; new master's calls: {calls:?}",
        r1.requests,
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{failures:#?}\n{}\n{}",
        nodes[0].log(),
        nodes[1].log()
    );
    // The new master serves the cache's reads and writes, not only the probe's ROLE.
    assert!(calls.get("hset").copied().unwrap_or(0) > 0, "{calls:?}");
    for image in &r1.pushed {
        pull_and_verify(&endpoints[0], image).unwrap_or_else(|(f, _)| panic!("{f}"));
    }
}

/// A command on a Redis Cluster through any live node, following one MOVED redirect.
fn cluster_command(nodes: &[String], args: &[&str]) -> Option<RedisReply> {
    for node in nodes {
        let Ok(reply) = redis_command(node, args) else {
            continue;
        };
        if let RedisReply::Error(e) = &reply {
            if let Some(target) = e.strip_prefix("MOVED ") {
                let addr = target.split_whitespace().nth(1)?;
                return redis_command(addr, args).ok();
            }
        }
        return Some(reply);
    }
    None
}

#[test]
fn cluster_losing_a_master_under_load_fails_no_request() {
    // Bus ports chosen like the others (the default, port + 10000, may be taken or too high).
    let mut servers: Vec<RedisServer> = (0..6)
        .map(|_| {
            let bus = free_port().to_string();
            RedisServer::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-node-timeout",
                "1000",
                "--cluster-port",
                &bus,
                "--repl-diskless-sync-delay",
                "0",
            ])
        })
        .collect();
    let addrs: Vec<String> = servers.iter().map(RedisServer::addr).collect();
    let mut create = std::process::Command::new("redis-cli");
    create.arg("--cluster").arg("create").args(&addrs).args([
        "--cluster-replicas",
        "1",
        "--cluster-yes",
    ]);
    run_bounded(create, Duration::from_secs(60)).assert_success("redis-cli --cluster create");
    let ok = wait_until(Duration::from_secs(30), || {
        addrs.iter().all(|a| {
            redis_command(a, &["CLUSTER", "INFO"])
                .map(|r| r.text().contains("cluster_state:ok"))
                .unwrap_or(false)
        })
    });
    assert!(ok, "cluster not ok");
    let masters: Vec<usize> = (0..6).filter(|&i| role(&addrs[i]) == "master").collect();
    assert_eq!(masters.len(), 3);
    // A replica can take over only once it has its master's data.
    for i in (0..6).filter(|i| !masters.contains(i)) {
        wait_replicating(&servers[i]);
    }
    let storage = tempfile::tempdir().unwrap();
    // The seeds are the three masters, as an operator would list them.
    let seeds: Vec<String> = masters.iter().map(|&i| addrs[i].clone()).collect();
    let section = format!(
        "  addrs: [{}]\n  dialtimeout: 200ms\n  readtimeout: 200ms\n  writetimeout: 200ms\n",
        seeds.join(", ")
    );
    let nodes = two_nodes(storage.path(), &section);
    let endpoints: Vec<Endpoint> = nodes.iter().map(|n| n.endpoint()).collect();
    let linked = |repo: &str, digest: &str| {
        cluster_command(
            &addrs,
            &["SISMEMBER", &format!("repository::{repo}::blobs"), digest],
        )
        .map(|r| r.text() == "1")
        .unwrap_or(false)
    };
    for (i, node) in endpoints.iter().enumerate() {
        cache_used_by(node, &format!("cluster/start/{i}"), linked);
    }
    // Keys spread over the masters: the client follows the slot map.
    let spread = masters
        .iter()
        .filter(|&&i| {
            redis_command(&addrs[i], &["DBSIZE"])
                .map(|r| r.text() != "0")
                .unwrap_or(false)
        })
        .count();
    assert!(spread >= 2, "keys on {spread} masters only");

    let load = Load::start(endpoints[0].clone(), load_options());
    assert!(load.wait_ops(10, Duration::from_secs(60)));
    let victim = masters[0];
    let before = load.ops();
    servers[victim].kill();
    let live: Vec<String> = (0..6)
        .filter(|&i| i != victim)
        .map(|i| addrs[i].clone())
        .collect();
    let recovered = wait_until(Duration::from_secs(40), || {
        live.iter().all(|a| {
            redis_command(a, &["CLUSTER", "INFO"])
                .map(|r| r.text().contains("cluster_state:ok"))
                .unwrap_or(false)
        }) && live.iter().filter(|a| role(a) == "master").count() == 3
    });
    let states: Vec<(String, String, String)> = live
        .iter()
        .map(|a| {
            let info = redis_command(a, &["CLUSTER", "INFO"])
                .map(|r| r.text())
                .unwrap_or_default();
            let state = info
                .lines()
                .find(|l| l.starts_with("cluster_state"))
                .unwrap_or("")
                .to_string();
            (a.clone(), role(a), state)
        })
        .collect();
    let logs: String = (0..6)
        .filter(|&i| i != victim)
        .map(|i| format!("--- {} ---\n{}\n", addrs[i], tail(&servers[i].log(), 15)))
        .collect();
    assert!(
        recovered,
        "the cluster did not fail over: {states:?}\n{logs}"
    );
    let at = Instant::now();
    let mut after = Vec::new();
    for (i, node) in endpoints.iter().enumerate() {
        // Enough keys that some hash to the slots that moved to the promoted replica.
        for k in 0..4 {
            cache_used_by(node, &format!("cluster/after/{i}/{k}"), |r, d| {
                cluster_command(&live, &["SISMEMBER", &format!("repository::{r}::blobs"), d])
                    .map(|r| r.text() == "1")
                    .unwrap_or(false)
            });
        }
        after.push(at.elapsed());
    }
    assert!(load.wait_ops(10, Duration::from_secs(60)));
    let during = load.ops() - before;
    let r1 = load.stop();
    let failures = &r1.failures;
    eprintln!(
        "cluster: {} requests, {} failed, {during} operations across the lost master; cache used by each node after the cluster was ok again: {after:?}",
        r1.requests,
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}\n{}", nodes[0].log());
}

/// `redis-cli` over TLS to a TLS-only server.
fn tls_cli(
    port: u16,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
    args: &[&str],
) -> String {
    let mut cmd = std::process::Command::new("redis-cli");
    cmd.args([
        "--tls",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--cacert",
    ])
    .arg(ca);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    cmd.args(args);
    let out = run_bounded(cmd, Duration::from_secs(20));
    out.assert_success("redis-cli --tls");
    out.stdout.trim().to_string()
}

#[test]
fn tls_with_and_without_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wharf-test-redis-ca");
    let ca_path = dir.path().join("ca.crt");
    std::fs::write(&ca_path, &ca.identity.cert_pem).unwrap();
    let (server_key, server_cert) = ca
        .sign(ec_key(), &["127.0.0.1"])
        .write(dir.path(), "server");
    let (client_key, client_cert) = ca
        .sign(ec_key(), &["wharf-client"])
        .write(dir.path(), "client");
    let s = |p: &std::path::Path| p.display().to_string();

    for auth_clients in ["no", "yes"] {
        let port = free_port();
        let _redis = RedisServer::start_tls(
            port,
            &[
                "--tls-cert-file",
                &s(&server_cert),
                "--tls-key-file",
                &s(&server_key),
                "--tls-ca-cert-file",
                &s(&ca_path),
                "--tls-auth-clients",
                auth_clients,
            ],
        );
        let client =
            (auth_clients == "yes").then_some((client_cert.as_path(), client_key.as_path()));
        let keys = |pattern: &str| tls_cli(port, &ca_path, client, &["--raw", "KEYS", pattern]);
        let with_cert = format!(
            "  addrs: [127.0.0.1:{port}]\n  tls:\n    certificate: {}\n    key: {}\n    rootcas: [{}]\n",
            s(&client_cert),
            s(&client_key),
            s(&ca_path)
        );
        // registry:2 3.0 spelled the CA list `clientcas`.
        let without_cert = format!(
            "  addrs: [127.0.0.1:{port}]\n  tls:\n    clientcas: [{}]\n",
            s(&ca_path)
        );
        for (label, section, works) in [
            ("client certificate", &with_cert, true),
            (
                "server verification only",
                &without_cert,
                auth_clients == "no",
            ),
        ] {
            let node = Registry::builder(Driver::Inmemory)
                .node("node1")
                .redis_section(section)
                .start();
            let repo = format!("tls/{auth_clients}/{}", label.replace(' ', "-"));
            let image = push_one_layer_image(&node.endpoint(), &repo, "v1", 4096)
                .unwrap_or_else(|(f, _)| panic!("{f}"));
            pull_and_verify(&node.endpoint(), &image).unwrap_or_else(|(f, _)| panic!("{f}"));
            let key = format!("repository::{repo}::blobs");
            if works {
                let found = wait_until(Duration::from_secs(15), || {
                    node.head_blob(&repo, &image.layer.0).unwrap();
                    keys(&key) == key
                });
                assert!(
                    found,
                    "{label}, tls-auth-clients {auth_clients}: nothing cached\n{}",
                    node.log()
                );
            } else {
                // Refused by the server: requests still succeed, from storage.
                for _ in 0..5 {
                    node.head_blob(&repo, &image.layer.0).unwrap();
                }
                assert_eq!(keys(&key), "", "{label}: a refused client wrote to Redis");
            }
        }
    }
}

#[test]
fn an_acl_user_is_used_and_a_wrong_password_only_skips_the_cache() {
    let redis = RedisServer::start();
    redis
        .command(&["ACL", "SETUSER", "wharf", "on", ">s3cret", "~*", "+@all"])
        .unwrap();
    redis
        .command(&["ACL", "SETUSER", "default", "off"])
        .unwrap();
    for (password, works) in [("s3cret", true), ("wrong", false)] {
        let node = Registry::builder(Driver::Inmemory)
            .node("node1")
            .redis_section(&format!(
                "  addrs: [{}]\n  username: wharf\n  password: {password}\n  db: 3\n",
                redis.addr()
            ))
            .start();
        let repo = format!("acl/{password}");
        let image = push_one_layer_image(&node.endpoint(), &repo, "v1", 4096)
            .unwrap_or_else(|(f, _)| panic!("{f}"));
        pull_and_verify(&node.endpoint(), &image).unwrap_or_else(|(f, _)| panic!("{f}"));
        let key = format!("repository::{repo}::blobs");
        let exists = || {
            let mut cmd = std::process::Command::new("redis-cli");
            cmd.args([
                "-p",
                &redis.port.to_string(),
                "--user",
                "wharf",
                "--pass",
                "s3cret",
                "--no-auth-warning",
                "-n",
                "3",
                "EXISTS",
                &key,
            ]);
            run_bounded(cmd, Duration::from_secs(20)).stdout.trim() == "1"
        };
        if works {
            let found = wait_until(Duration::from_secs(15), || {
                node.head_blob(&repo, &image.layer.0).unwrap();
                exists()
            });
            assert!(
                found,
                "nothing cached in db 3 as user wharf\n{}",
                node.log()
            );
        } else {
            for _ in 0..5 {
                node.head_blob(&repo, &image.layer.0).unwrap();
            }
            assert!(!exists(), "a refused client wrote to Redis");
        }
    }
}
