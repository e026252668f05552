//! The shared Redis blob-descriptor cache is never needed for correctness: stopped in the middle
//! of a run and restarted empty, flushed, slowed down, hung or cut by a chaos TCP proxy, the
//! cluster answers every request, with a bounded extra latency, and the cache fills again by
//! itself once Redis is back. Links a node holds in memory go as soon as Redis says they changed.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// How long each phase is measured: long enough for the cache's back-off to let a few probes
/// through to a failing Redis.
const PHASE: Duration = Duration::from_secs(3);

/// Sequential HEADs of known blobs on one node (they are answered from the cache when it
/// works) for `PHASE`; returns the latency of each, failing on any error.
fn probe_latency(node: &Endpoint, images: &[Pushed]) -> Result<Vec<Duration>, Failure> {
    let mut samples = Vec::new();
    let started = Instant::now();
    for i in 0..20_000 {
        if started.elapsed() > PHASE {
            break;
        }
        let image = &images[i % images.len()];
        let started = Instant::now();
        node.head_blob(&image.repo, &image.layer.0)?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

/// Waits until every node uses Redis again by itself (its back-off over): a blob HEADed on a
/// node is recorded under that node's own repository key. Returns how long it took.
fn cache_recovers(cluster: &Cluster, label: &str) -> Duration {
    let started = Instant::now();
    for node in &cluster.nodes {
        let api = node.endpoint();
        let mut n = 0;
        let ok = wait_until(Duration::from_secs(45), || {
            n += 1;
            let repo = format!("redis/recovery/{label}/{}/{n}", node.name());
            let data = format!("{label} {} {n}", node.name()).into_bytes();
            api.push_monolithic(&repo, &data)
                .unwrap_or_else(|f| panic!("{label}: {f}"));
            let digest = sha256_digest(&data);
            api.head_blob(&repo, &digest)
                .unwrap_or_else(|f| panic!("{label}: {f}"));
            cluster
                .redis
                .command(&["SISMEMBER", &format!("repository::{repo}::blobs"), &digest])
                .map(|r| r.text() == "1")
                .unwrap_or(false)
        });
        assert!(
            ok,
            "{label}: {} does not use the cache again\n{}",
            node.name(),
            cluster.logs()
        );
    }
    started.elapsed()
}

#[test]
fn redis_down_slow_hung_or_cut_fails_no_request() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions {
        chaos: true,
        redis_timeout: Duration::from_millis(100),
        ..ClusterOptions::default()
    });
    let api = cluster.endpoint();
    let node1 = cluster.nodes[0].endpoint();

    // Warm up: images pushed, descriptors in Redis with distribution's keys.
    let mut images = Vec::new();
    for i in 0..8 {
        images.push(
            push_one_layer_image(&api, "redis/warm", &format!("w{i}"), 64 * 1024)
                .unwrap_or_else(|(f, _)| panic!("{f}")),
        );
    }
    for image in &images {
        pull_and_verify(&api, image).unwrap_or_else(|(f, _)| panic!("{f}"));
    }
    let key = format!("blobs::{}", images[0].layer.0);
    assert_eq!(
        cluster
            .redis
            .command(&["HGET", &key, "size"])
            .unwrap()
            .text(),
        (64 * 1024).to_string(),
        "the nodes use Redis: {:?}",
        cluster.redis.keys("*")
    );
    assert!(!cluster
        .redis
        .keys("repository::redis/warm::blobs")
        .is_empty());

    let load = Load::start(
        api.clone(),
        LoadOptions {
            pushers: 2,
            pullers: 2,
            slow_uploaders: 0,
            layer_size: 128 * 1024,
            retry: false,
            limit: Duration::from_secs(150),
            max_ops: 100_000,
        },
    );
    let mut phases: Vec<(&str, Latency, usize)> = Vec::new();
    let measure =
        |label: &'static str, phases: &mut Vec<(&str, Latency, usize)>, cluster: &Cluster| {
            let s = probe_latency(&node1, &images)
                .unwrap_or_else(|f| panic!("{label}: {f}\n{}", cluster.logs()));
            let l = Latency::of(&s);
            // Requests that waited for Redis's deadline (100 ms dial + 100 ms read).
            let slow = s.iter().filter(|d| **d > Duration::from_millis(50)).count();
            eprintln!("{label:<30} {l} over 50ms: {slow}");
            phases.push((label, l, slow));
        };
    let mut cluster = cluster;
    measure("redis up", &mut phases, &cluster);

    // Stopped in the middle of the run, then restarted empty.
    cluster.redis.stop();
    measure("redis stopped", &mut phases, &cluster);
    assert!(load.wait_ops(10, Duration::from_secs(30)));
    cluster.redis.restart();
    let mut recovery = vec![("restart", cache_recovers(&cluster, "restart"))];

    // Flushed: nothing to find, everything rebuilt from storage.
    cluster.redis.command(&["FLUSHALL"]).unwrap();
    measure("redis flushed", &mut phases, &cluster);

    // Slower than the timeouts, hung, cut; the cache comes back after each.
    let chaos = cluster.chaos.as_ref().unwrap();
    chaos.set(Chaos::Delay(Duration::from_millis(300)));
    measure("redis +300ms (timeout 100ms)", &mut phases, &cluster);
    chaos.set(Chaos::Pass);
    recovery.push(("slow", cache_recovers(&cluster, "slow")));
    chaos.set(Chaos::Blackhole);
    measure("redis hung (blackhole)", &mut phases, &cluster);
    assert!(load.wait_ops(10, Duration::from_secs(30)));
    chaos.set(Chaos::Pass);
    chaos.cut_all();
    recovery.push(("hung", cache_recovers(&cluster, "hung")));
    chaos.set(Chaos::Cut);
    measure("redis connections cut", &mut phases, &cluster);
    chaos.set(Chaos::Pass);
    recovery.push(("cut", cache_recovers(&cluster, "cut")));
    chaos.set(Chaos::Delay(Duration::from_millis(20)));
    measure("redis +20ms (under timeout)", &mut phases, &cluster);
    chaos.set(Chaos::Pass);
    recovery.push(("delay", cache_recovers(&cluster, "delay")));
    measure("redis back", &mut phases, &cluster);

    let report = load.stop();
    assert!(
        report.failures.is_empty(),
        "{} failed requests:\n{}\n{}",
        report.failures.len(),
        report.failures.join("\n"),
        cluster.logs()
    );
    let base = phases[0].1;
    for (label, l, slow) in &phases {
        eprintln!(
            "{label:<30} extra mean {:+.2}ms, p50 {:+.2}ms, p99 {:+.2}ms; max {:.1}ms; {slow} of {} requests over 50ms",
            (l.mean.as_secs_f64() - base.mean.as_secs_f64()) * 1000.0,
            (l.p50.as_secs_f64() - base.p50.as_secs_f64()) * 1000.0,
            (l.p99.as_secs_f64() - base.p99.as_secs_f64()) * 1000.0,
            l.max.as_secs_f64() * 1000.0,
            l.count
        );
        // Generous: only a storm of per-request timeouts would come near it.
        assert!(l.max < Duration::from_secs(2), "{label}: {l}");
    }
    eprintln!(
        "cache refilled by itself after: {recovery:?}; {} requests under load, 0 failed",
        report.requests
    );
    for image in &report.pushed {
        pull_and_verify(&api, image).unwrap_or_else(|(f, _)| panic!("{f}"));
    }
}

#[test]
fn a_blob_deleted_while_redis_is_unreachable_is_forgotten_by_the_cache_once_it_is_back() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions {
        chaos: true,
        ..ClusterOptions::default()
    });
    let chaos = cluster.chaos.as_ref().unwrap();
    let api = cluster.endpoint();
    let image = push_one_layer_image(&api, "redis/delete", "v1", 10_000)
        .unwrap_or_else(|(f, _)| panic!("{f}"));
    let path = format!("/v2/{}/blobs/{}", image.repo, image.layer.0);
    // Every node has looked it up: Redis says the repository links it.
    for node in &cluster.nodes {
        node.head_blob(&image.repo, &image.layer.0).unwrap();
    }
    let link_key = format!("repository::{}::blobs", image.repo);
    let linked = |cluster: &Cluster| {
        cluster
            .redis
            .command(&["SISMEMBER", &link_key, &image.layer.0])
            .map(|r| r.text() == "1")
            .unwrap()
    };
    assert!(linked(&cluster));

    // Deleted while the deleting node cannot reach Redis: the request still succeeds.
    chaos.set(Chaos::Cut);
    let deleter = &cluster.nodes[0];
    let deleted = send(deleter.delete(&path));
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    let gone = send(deleter.head(&path));
    assert_eq!(gone.status, 404, "the deleting node still serves it");
    chaos.set(Chaos::Pass);
    // Once Redis answers again, the deleting node replays the removal by itself, without a
    // request needing the cache (a registry:2 node sharing the cache would otherwise serve
    // the link from it), and then no node sees the link in the cache.
    let replayed = wait_until(std::time::Duration::from_secs(40), || !linked(&cluster));
    assert!(replayed, "the removal was not replayed\n{}", cluster.logs());
    for node in &cluster.nodes {
        let a = send(node.head(&path));
        assert_eq!(a.status, 404, "{} still serves a deleted blob", node.name());
    }
}

/// Redis slowed beyond the read timeout for 5 s, then cut for 5 s, then restored: every node
/// sends Redis its cache traffic again within about a second (the background probe reconnects
/// every 250 ms; requests never wait for it). Measured per node and printed.
#[test]
fn the_cache_is_used_again_within_a_second_of_redis_coming_back() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions {
        chaos: true,
        redis_timeout: Duration::from_millis(100),
        ..ClusterOptions::default()
    });
    let chaos = cluster.chaos.as_ref().unwrap();
    // One repository per node, each holding one blob that node keeps HEADing.
    let mut watched = Vec::new();
    for node in &cluster.nodes {
        let repo = format!("restore/{}", node.name());
        let data = format!("restore {}", node.name()).into_bytes();
        node.push_monolithic(&repo, &data).unwrap();
        watched.push((node.endpoint(), repo, sha256_digest(&data)));
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let heads: Vec<_> = watched
        .iter()
        .cloned()
        .map(|(node, repo, digest)| {
            let (stop, failures) = (stop.clone(), failures.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::SeqCst)
                    && started.elapsed() < Duration::from_secs(120)
                {
                    if let Err(f) = node.head_blob(&repo, &digest) {
                        failures.lock().unwrap().push(f.to_string());
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    let key = |repo: &str| format!("repository::{repo}::blobs");
    let linked = |repo: &str, digest: &str| {
        cluster
            .redis
            .command(&["SISMEMBER", &key(repo), digest])
            .map(|r| r.text() == "1")
            .unwrap_or(false)
    };
    for (_, repo, digest) in &watched {
        assert!(
            wait_until(Duration::from_secs(20), || linked(repo, digest)),
            "{repo} not cached before the outage\n{}",
            cluster.logs()
        );
    }

    chaos.set(Chaos::Delay(Duration::from_millis(300)));
    std::thread::sleep(Duration::from_secs(5));
    chaos.set(Chaos::Cut);
    std::thread::sleep(Duration::from_secs(5));
    // Forgotten while cut off (straight on Redis, not through the proxy): only a node's own
    // request after the restore can write its key again.
    for (_, repo, _) in &watched {
        cluster.redis.command(&["DEL", &key(repo)]).unwrap();
    }
    let restored = Instant::now();
    chaos.set(Chaos::Pass);
    let mut back: Vec<Option<Duration>> = vec![None; watched.len()];
    for _ in 0..3000 {
        for (i, (_, repo, digest)) in watched.iter().enumerate() {
            if back[i].is_none() && linked(repo, digest) {
                back[i] = Some(restored.elapsed());
            }
        }
        if back.iter().all(Option::is_some) || restored.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for h in heads {
        h.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    eprintln!(
        "after 5 s slowed + 5 s cut, each node's cache traffic reached Redis after: {back:?}; {} failed HEADs",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    for (i, t) in back.iter().enumerate() {
        // Generous bound (a loaded machine); the printed figures are the measurement.
        assert!(
            t.is_some_and(|t| t < Duration::from_secs(5)),
            "node{} did not use Redis again: {back:?}\n{}",
            i + 1,
            cluster.logs()
        );
    }
}

/// `redis.clientname` names the node's connection (`CLIENT SETNAME`), so an operator's
/// `CLIENT LIST` tells the nodes apart; a name Redis refuses leaves the cache working.
#[test]
fn connections_carry_the_configured_client_name() {
    let redis = RedisServer::start();
    let named = Registry::builder(Driver::Inmemory)
        .redis_section(&format!(
            "  addr: {}\n  clientname: wharf-node-a\n",
            redis.addr()
        ))
        .start();
    let refused = Registry::builder(Driver::Inmemory)
        .redis_section(&format!(
            "  addr: {}\n  clientname: \"has a space\"\n",
            redis.addr()
        ))
        .start();
    let listed = || {
        redis
            .command(&["CLIENT", "LIST"])
            .map(|r| r.text())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(10), || listed()
            .contains("name=wharf-node-a ")),
        "CLIENT LIST: {}",
        listed()
    );
    // The node whose name was refused still uses the cache: a pushed blob's descriptor reaches
    // Redis.
    let data = b"named or not".to_vec();
    refused.push_monolithic("named/app", &data).unwrap();
    let digest = sha256_digest(&data);
    // A HEAD fills the cache on a miss.
    assert_eq!(
        send(refused.head(&format!("/v2/named/app/blobs/{digest}"))).status,
        200
    );
    assert!(
        wait_until(Duration::from_secs(10), || !redis
            .keys(&format!("*{digest}*"))
            .is_empty()),
        "no key of {digest} in Redis ({:?}); log:\n{}",
        redis.keys("*"),
        refused.log()
    );
    assert!(refused.log().contains("redis.clientname refused"));
    drop(named);
}

/// The HEADs each node answers from links it holds in memory (read from Redis on a connection
/// Redis tracks) cost Redis nothing; a delete on any node reaches every node's copy through
/// Redis's invalidation messages: no node serves a deleted link to the next request.
#[test]
fn links_held_in_memory_are_dropped_when_any_node_deletes_them() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let repo = "held/links";
    let blobs: Vec<String> = (0..12)
        .map(|i| {
            let data = format!("held link {i}").into_bytes();
            cluster.nodes[i % 3].push_monolithic(repo, &data).unwrap();
            sha256_digest(&data)
        })
        .collect();
    let path = |digest: &str| format!("/v2/{repo}/blobs/{digest}");
    // Each node reads each link once from Redis (and holds it); tracking connects in the
    // background, so warm until a round of HEADs reaches Redis no more.
    let link_reads = || {
        command_calls(&cluster.redis.addr())
            .get("sismember")
            .copied()
    };
    let warm = wait_until(Duration::from_secs(20), || {
        let before = link_reads();
        for node in &cluster.nodes {
            for digest in &blobs {
                node.head_blob(repo, digest).unwrap();
            }
        }
        before.is_some() && link_reads() == before
    });
    assert!(warm, "HEADs still read Redis\n{}", cluster.logs());
    for (i, digest) in blobs.iter().enumerate() {
        let deleter = &cluster.nodes[i % 3];
        let deleted = send(deleter.delete(&path(digest)));
        assert_eq!(deleted.status, 202, "{}", deleted.text());
        for node in &cluster.nodes {
            let head = send(node.head(&path(digest)));
            assert_eq!(
                head.status,
                404,
                "{} serves {digest} deleted on {}\n{}",
                node.name(),
                deleter.name(),
                cluster.logs()
            );
        }
        // The others are still held and served.
        for other in &blobs[i + 1..] {
            for node in &cluster.nodes {
                node.head_blob(repo, other).unwrap();
            }
        }
    }
}

/// A registry:2 node sharing the Redis cache deletes a blob a Wharf node holds in memory: it
/// writes only Redis's keys, and Redis's invalidation drops the Wharf node's copy, even when it
/// reaches the Wharf node after the client's next request. The copy goes too when Redis is
/// flushed or restarts empty.
#[test]
fn a_link_held_by_wharf_goes_when_registry2_deletes_it_or_redis_forgets_it() {
    let mut redis = RedisServer::start();
    // The Wharf node reaches Redis through a proxy that can slow what Redis pushes to it.
    let far = ChaosProxy::start(redis.addr());
    let wharf = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .redis(&far.addr(), Duration::from_millis(1500))
        .start();
    let registry2 = Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .storage_dir(wharf.root())
        .delete_enabled(true)
        .redis(&redis.addr(), Duration::from_millis(500))
        .start();
    let repo = "held/mixed";
    let push = |label: &str| {
        let data = format!("held by wharf: {label}").into_bytes();
        wharf.push_monolithic(repo, &data).unwrap();
        sha256_digest(&data)
    };
    let path = |digest: &str| format!("/v2/{repo}/blobs/{digest}");
    let redis_addr = redis.addr();
    let link_reads = || command_calls(&redis_addr).get("sismember").copied();
    let held = |digest: &str| {
        wait_until(Duration::from_secs(20), || {
            let before = link_reads();
            wharf.head_blob(repo, digest).unwrap();
            before.is_some() && link_reads() == before
        })
    };

    let digest = push("registry2 deletes");
    assert!(held(&digest), "never held\n{}", wharf.log());
    // The invalidation is still on its way when the client asks the Wharf node.
    far.set(Chaos::Delay(Duration::from_millis(200)));
    let deleted = send(registry2.delete(&path(&digest)));
    assert_eq!(deleted.status, 202, "{}", deleted.text());
    assert_eq!(send(wharf.head(&path(&digest))).status, 404);
    far.set(Chaos::Pass);

    // Flushed, or restarted empty: the copy is dropped with Redis's, so a link removed from
    // storage meanwhile by hand (as an operator's cleanup would) is not served from memory.
    let unlink = |digest: &str| {
        let link = wharf
            .root()
            .join(format!(
                "docker/registry/v2/repositories/{repo}/_layers/sha256"
            ))
            .join(digest.trim_start_matches("sha256:"));
        std::fs::remove_dir_all(&link).unwrap();
    };
    let digest = push("flushed");
    assert!(held(&digest), "never held\n{}", wharf.log());
    redis.command(&["FLUSHALL"]).unwrap();
    unlink(&digest);
    assert_eq!(send(wharf.head(&path(&digest))).status, 404);

    let digest = push("restarted");
    assert!(held(&digest), "never held\n{}", wharf.log());
    redis.restart();
    unlink(&digest);
    assert_eq!(send(wharf.head(&path(&digest))).status, 404);
}

/// A random sequence of pushes, deletes and HEADs of a few blobs in a few repositories, each
/// sent to a random node of a cluster whose nodes hold Redis links in memory: every HEAD
/// answers what the sequence so far says (linked: 200, else 404), whichever node made the
/// change and whichever answers. The seed is printed with any failure (`WHARF_TEST_SEED` replays
/// one).
#[test]
fn every_node_answers_heads_as_the_pushes_and_deletes_so_far_say() {
    let _one = exclusive();
    let cluster = Cluster::start(ClusterOptions::default());
    let seed = std::env::var("WHARF_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(unique_seed);
    let mut prng = Prng::new(seed);
    let repos = ["held/prop/a", "held/prop/b", "held/prop/c"];
    let blobs: Vec<Vec<u8>> = (0..6)
        .map(|i| format!("held property blob {i} {seed}").into_bytes())
        .collect();
    let digests: Vec<String> = blobs.iter().map(|b| sha256_digest(b)).collect();
    let mut linked = std::collections::BTreeSet::new();
    let started = Instant::now();
    let (mut heads, mut deletes) = (0, 0);
    for step in 0..400 {
        if started.elapsed() > Duration::from_secs(90) {
            break;
        }
        let node = &cluster.nodes[(prng.next_u64() % 3) as usize];
        let r = (prng.next_u64() % repos.len() as u64) as usize;
        let b = (prng.next_u64() % blobs.len() as u64) as usize;
        let path = format!("/v2/{}/blobs/{}", repos[r], digests[b]);
        let context = || format!("seed {seed}, step {step}, {} on {}", path, node.name());
        match prng.next_u64() % 20 {
            0..=3 => {
                node.push_monolithic(repos[r], &blobs[b])
                    .unwrap_or_else(|f| panic!("{}: push: {f}", context()));
                linked.insert((r, b));
            }
            4..=7 => {
                let deleted = send(node.delete(&path));
                let expected = if linked.remove(&(r, b)) { 202 } else { 404 };
                assert_eq!(deleted.status, expected, "{}: DELETE", context());
                deletes += 1;
            }
            _ => {
                let head = send(node.head(&path));
                let expected = if linked.contains(&(r, b)) { 200 } else { 404 };
                assert_eq!(
                    head.status,
                    expected,
                    "{}: HEAD\n{}",
                    context(),
                    cluster.logs()
                );
                heads += 1;
            }
        }
    }
    assert!(
        heads > 50 && deletes > 10,
        "seed {seed}: {heads} HEADs, {deletes} deletes"
    );
    eprintln!("seed {seed}: {heads} HEADs, {deletes} deletes");
}
