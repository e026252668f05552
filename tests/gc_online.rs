//! Online garbage collection on a live cluster: three nodes behind haproxy over one storage
//! folder or one S3 bucket, collecting every second with a short grace period, while
//! clients push images that reuse the layers of images deleted moments before, delete tags and
//! manifests, push referrers and pull what they pushed. At the end every acknowledged and
//! undeleted manifest pulls completely with verified digests, no request failed, and once the
//! load stops every blob nothing references is collected (and distribution 2.8.2's
//! `garbage-collect --dry-run` finds nothing more to delete). A node SIGKILLed while it holds
//! the collector's lease is taken over once the lease expires.

mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

/// Client load, per run (the whole test stays within a minute on an idle machine).
fn load_time(s3: bool) -> Duration {
    // Requests to moto are several times slower: a longer load gives the collector as many
    // blobs to race with.
    Duration::from_secs(if s3 { 30 } else { 10 })
}
/// On a loaded machine the clients go on past `load_time` until the load has deleted, reused
/// and referred at least once, up to this bound.
const LOAD_TIME_MAX: Duration = Duration::from_secs(60);
const WORKERS: usize = 3;
/// The grace period: on a folder, two seconds; on moto, whose requests are many times slower
/// on a loaded machine, long enough that a client's blob uploads are never older than it when
/// their manifest arrives (the grace period is what protects an upload waiting for its
/// manifest, so a shorter one would legitimately collect them).
fn grace(s3: bool) -> Duration {
    // Eight seconds were seen to expire under a blob whose image took over ten seconds to push
    // on a machine at a load average of 20.
    Duration::from_secs(if s3 { 15 } else { 2 })
}

fn gc_section(grace: Duration) -> String {
    format!(
        "gc:\n  enabled: true\n  interval: 1s\n  graceperiod: {}s\n  leasettl: 3s\n",
        grace.as_secs()
    )
}

/// Three nodes and haproxy, without Redis (leases in the storage) or with it (blob-descriptor
/// cache and leases in Redis).
struct GcCluster {
    haproxy: Haproxy,
    nodes: Vec<Registry>,
    _redis: Option<RedisServer>,
    storage: Option<tempfile::TempDir>,
    s3: Option<S3Target>,
}

impl GcCluster {
    fn start(s3: bool, with_redis: bool) -> GcCluster {
        let storage = (!s3).then(|| {
            tempfile::Builder::new()
                .prefix("wharf-gc-storage-")
                .tempdir()
                .expect("temp dir")
        });
        let target = s3.then(S3Target::fresh);
        let redis = with_redis.then(RedisServer::start);
        let nodes: Vec<Registry> = (0..3)
            .map(|i| {
                Self::node_builder(i, storage.as_ref(), target.as_ref(), redis.as_ref()).start()
            })
            .collect();
        let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
        let haproxy = Haproxy::start(&repo_path("haproxy/haproxy.cfg"), &ports);
        GcCluster {
            haproxy,
            nodes,
            _redis: redis,
            storage,
            s3: target,
        }
    }

    fn node_builder(
        i: usize,
        storage: Option<&tempfile::TempDir>,
        s3: Option<&S3Target>,
        redis: Option<&RedisServer>,
    ) -> RegistryBuilder {
        let mut b = match (storage, s3) {
            (Some(dir), _) => Registry::builder(Driver::Filesystem).storage_dir(dir.path()),
            (None, Some(target)) => Registry::builder(Driver::S3).s3_target(target),
            (None, None) => unreachable!("a storage is chosen"),
        };
        if let Some(r) = redis {
            b = b.redis(&r.addr(), Duration::from_millis(500));
        }
        b.node(&format!("node{}", i + 1))
            .delete_enabled(true)
            .section(&gc_section(grace(s3.is_some())))
    }

    fn endpoint(&self) -> Endpoint {
        self.haproxy.endpoint()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!("--- {} ---\n{}\n", n.name(), tail(&n.log(), 40)));
        }
        out
    }

    /// Reads a file of the shared storage, by its driver path.
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        match (&self.storage, &self.s3) {
            (Some(dir), _) => std::fs::read(dir.path().join(path.trim_start_matches('/'))).ok(),
            (None, Some(t)) => s3::shared().object(&t.bucket, path.trim_start_matches('/')),
            _ => None,
        }
    }

    /// The pass marker: (generation, running).
    fn pass(&self) -> (u64, bool) {
        self.read("/wharf/gc/pass")
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .map_or((0, false), |v| {
                (
                    v["generation"].as_u64().unwrap_or(0),
                    v["running"].as_bool().unwrap_or(false),
                )
            })
    }

    /// Waits until `passes` more passes have completed (bounded).
    fn wait_passes(&self, passes: u64) {
        let (start, _) = self.pass();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (generation, running) = self.pass();
            if generation >= start + passes && !running {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no collection pass completed\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every blob digest in `blobs/`.
    fn stored_blobs(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        match (&self.storage, &self.s3) {
            (Some(dir), _) => {
                let root = dir.path().join("docker/registry/v2/blobs/sha256");
                for prefix in std::fs::read_dir(&root).into_iter().flatten() {
                    for blob in std::fs::read_dir(prefix.unwrap().path())
                        .into_iter()
                        .flatten()
                    {
                        let blob = blob.unwrap();
                        if blob.path().join("data").exists() {
                            out.insert(format!("sha256:{}", blob.file_name().to_string_lossy()));
                        }
                    }
                }
            }
            (None, Some(t)) => {
                for key in s3::shared().keys(&t.bucket, "docker/registry/v2/blobs/") {
                    if let Some(hex) = key.strip_suffix("/data").and_then(|k| k.rsplit('/').next())
                    {
                        out.insert(format!("sha256:{hex}"));
                    }
                }
            }
            _ => {}
        }
        out
    }
}

/// A manifest a client pushed and was told was stored.
#[derive(Clone)]
struct Pushed {
    repo: String,
    manifest: Manifest,
    /// Digest and size of each blob it references.
    blobs: Vec<(String, u64)>,
    /// The bytes of its layers, to push them again once it is deleted.
    layer_data: Vec<Vec<u8>>,
}

/// What the clients did, shared.
#[derive(Default)]
struct Ledger {
    live: Vec<Pushed>,
    failures: Vec<String>,
    deleted: usize,
    /// (repository, digest) of each manifest deleted.
    gone: Vec<(String, String)>,
    pushed: usize,
    referrers: usize,
    reused: usize,
}

/// Layers a client keeps from the images it deletes, to push again moments later.
type Pool = Vec<Blob>;

fn push_blob_always(ep: &Endpoint, repo: &str, blob: &Blob) -> Result<(), Failure> {
    // Every blob is uploaded, even one the repository has: a push that only asks (HEAD) whether
    // a layer exists relies on the grace period alone between the answer and its manifest.
    ep.push_monolithic(repo, &blob.data).map(|_| ())
}

fn push_image_of(
    ep: &Endpoint,
    repo: &str,
    tag: &str,
    layers: &[Blob],
    seed: u64,
) -> Result<Pushed, Failure> {
    let config = image_config("amd64", seed, layers.len());
    push_blob_always(ep, repo, &config)?;
    let mut uploaded = vec![(config.digest.clone(), Instant::now())];
    for l in layers {
        push_blob_always(ep, repo, l)?;
        uploaded.push((l.digest.clone(), Instant::now()));
    }
    let refs: Vec<(&str, &Blob)> = layers.iter().map(|l| (OCI_LAYER, l)).collect();
    let manifest = image_manifest(OCI_MANIFEST, (OCI_CONFIG, &config), &refs, None);
    let sent = Instant::now();
    ep.push_manifest(repo, tag, &manifest).map_err(|mut f| {
        let ages: Vec<String> = uploaded
            .iter()
            .map(|(d, at)| format!("{d} uploaded {} ms before", (sent - *at).as_millis()))
            .collect();
        f.error = format!("{}; repo {repo}; {}", f.error, ages.join(", "));
        f
    })?;
    let mut blobs = vec![(config.digest.clone(), config.size())];
    blobs.extend(layers.iter().map(|l| (l.digest.clone(), l.size())));
    Ok(Pushed {
        repo: repo.to_string(),
        manifest,
        blobs,
        layer_data: layers.iter().map(|l| l.data.clone()).collect(),
    })
}

fn push_referrer(ep: &Endpoint, subject: &Pushed, seed: u64) -> Result<Pushed, Failure> {
    let empty = Blob::new(b"{}".to_vec());
    push_blob_always(ep, &subject.repo, &empty)?;
    let payload = Blob::new(format!("sbom {seed}").into_bytes());
    push_blob_always(ep, &subject.repo, &payload)?;
    let manifest = artifact_manifest(
        "application/vnd.example.sbom",
        &payload,
        Some(&subject.manifest),
        None,
    );
    ep.push_manifest(&subject.repo, &manifest.digest, &manifest)?;
    Ok(Pushed {
        repo: subject.repo.clone(),
        manifest,
        blobs: vec![
            (empty.digest.clone(), 2),
            (payload.digest.clone(), payload.size()),
        ],
        layer_data: Vec::new(),
    })
}

/// Pulls a manifest and every blob it references, verifying each digest.
fn pull_verified(ep: &Endpoint, p: &Pushed) -> Result<(), Failure> {
    let resp = ep.pull_manifest(&p.repo, &p.manifest.digest)?;
    let body_digest = sha256_digest(&resp.body);
    if body_digest != p.manifest.digest {
        return Err(Failure::answer("GET manifest", "wrong digest", resp));
    }
    for (digest, size) in &p.blobs {
        let (got, len, node) = ep.pull_digest(&p.repo, digest)?;
        if &got != digest || len != *size {
            return Err(Failure {
                what: format!("GET blob {digest} from {node}"),
                answer: None,
                error: format!("got {got}, {len} bytes"),
            });
        }
    }
    Ok(())
}

fn delete_manifest(ep: &Endpoint, p: &Pushed) -> Result<(), Failure> {
    ep.expect(
        "DELETE manifest",
        ep.delete(&format!("/v2/{}/manifests/{}", p.repo, p.manifest.digest)),
        202,
    )
    .map(|_| ())
}

/// One client: push, reuse deleted layers, delete, refer, pull, for `load`.
fn client(ep: Endpoint, worker: usize, load: Duration, ledger: Arc<Mutex<Ledger>>) {
    let mut prng = Prng::new(0x6763 + worker as u64);
    let mut pool: Pool = Vec::new();
    let mut mine: Vec<Pushed> = Vec::new();
    let started = Instant::now();
    let mut i = 0u64;
    let record = |what: &str, f: Failure| {
        ledger
            .lock()
            .unwrap()
            .failures
            .push(format!("worker {worker} {what}: {f}"));
    };
    let exercised = |l: &Ledger| l.deleted > 0 && l.reused > 0 && l.referrers > 0;
    while (started.elapsed() < load
        || (started.elapsed() < LOAD_TIME_MAX && !exercised(&ledger.lock().unwrap())))
        && i < 10_000
    {
        i += 1;
        let repo = format!("gc/w{worker}/r{}", i % 3);
        // Layers: some from images deleted moments ago, the rest new.
        let mut layers = Vec::new();
        let mut reused = 0;
        while layers.len() < 3 {
            if !pool.is_empty() && prng.next_u64().is_multiple_of(2) {
                layers.push(pool.remove((prng.next_u64() % pool.len() as u64) as usize));
                reused += 1;
            } else {
                let len = 512 + (prng.next_u64() % 8192) as usize;
                layers.push(Blob::new(prng.bytes(len)));
            }
        }
        let seed = unique_seed();
        match push_image_of(&ep, &repo, &format!("t{}", i % 4), &layers, seed) {
            Ok(p) => {
                let mut l = ledger.lock().unwrap();
                l.pushed += 1;
                l.reused += reused;
                drop(l);
                // A tag moved to this image leaves the previous one untagged but live.
                mine.push(p);
            }
            Err(f) => record("push", f),
        }
        if i.is_multiple_of(3) {
            if let Some(subject) = mine.last().cloned() {
                match push_referrer(&ep, &subject, seed) {
                    Ok(r) => {
                        ledger.lock().unwrap().referrers += 1;
                        mine.push(r);
                    }
                    Err(f) => record("referrer", f),
                }
            }
        }
        // Delete an older image (its layers go to the pool, to come back in a later image).
        if mine.len() > 4 && i.is_multiple_of(2) {
            let victim = mine.remove((prng.next_u64() % (mine.len() as u64 - 2)) as usize);
            match delete_manifest(&ep, &victim) {
                Ok(()) => {
                    let mut l = ledger.lock().unwrap();
                    l.deleted += 1;
                    l.gone
                        .push((victim.repo.clone(), victim.manifest.digest.clone()));
                    drop(l);
                    // Its layers' bytes, to be pushed again soon.
                    for l in &victim.layer_data {
                        if pool.len() < 8 {
                            pool.push(Blob::new(l.clone()));
                        }
                    }
                }
                Err(f) => {
                    record("delete", f);
                    mine.push(victim);
                }
            }
        }
        // Pull something of ours.
        if let Some(p) = mine.get((prng.next_u64() % mine.len().max(1) as u64) as usize) {
            if let Err(f) = pull_verified(&ep, p) {
                record("pull", f);
            }
        }
    }
    ledger.lock().unwrap().live.extend(mine);
}

fn stress(s3: bool, with_redis: bool) {
    let _guard = exclusive();
    let cluster = GcCluster::start(s3, with_redis);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let ep = cluster.endpoint();
            let ledger = ledger.clone();
            thread::spawn(move || client(ep, w, load_time(s3), ledger))
        })
        .collect();
    for w in workers {
        w.join().expect("client thread");
    }
    let (generation, _) = cluster.pass();
    let ledger = ledger.lock().unwrap();
    assert!(
        ledger.failures.is_empty(),
        "{} requests failed under collection:\n{}\n{}",
        ledger.failures.len(),
        explain_failures(&cluster, &ledger.failures),
        cluster.logs()
    );
    assert!(
        generation >= 3,
        "the collector ran {generation} passes during the load\n{}",
        cluster.logs()
    );
    assert!(
        ledger.deleted > 0 && ledger.reused > 0 && ledger.referrers > 0,
        "too little load: {} pushed, {} deleted, {} reused, {} referrers in {generation} passes",
        ledger.pushed,
        ledger.deleted,
        ledger.reused,
        ledger.referrers
    );

    // Once nothing is younger than the grace period, two more passes (the first may have
    // started before the load ended).
    thread::sleep(grace(s3) + Duration::from_secs(1));
    cluster.wait_passes(2);

    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for p in &ledger.live {
        referenced.insert(p.manifest.digest.clone());
        referenced.extend(p.blobs.iter().map(|(d, _)| d.clone()));
    }
    let dangling: Vec<String> = thread::scope(|scope| {
        let pullers: Vec<_> = ledger
            .live
            .chunks(ledger.live.len().div_ceil(WORKERS).max(1))
            .map(|part| {
                let ep = cluster.endpoint();
                scope.spawn(move || {
                    part.iter()
                        .filter_map(|p| pull_verified(&ep, p).err().map(|f| f.to_string()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        pullers
            .into_iter()
            .flat_map(|h| h.join().expect("puller"))
            .collect()
    });
    assert!(
        dangling.is_empty(),
        "{} acknowledged, undeleted manifests do not pull completely: {:?}\n{}",
        dangling.len(),
        dangling.iter().take(3).collect::<Vec<_>>(),
        cluster.logs()
    );
    // Manifests the clients deleted are gone (the same digest may live on elsewhere, pushed
    // again, so only the repository they were deleted from is asked).
    let ep = cluster.endpoint();
    for (repo, digest) in ledger.gone.iter().take(50) {
        let status = send(
            ep.get(&format!("/v2/{repo}/manifests/{digest}"))
                .header("accept", ACCEPT_ALL_MANIFESTS),
        )
        .status;
        assert_eq!(status, 404, "deleted manifest {repo}@{digest} still served");
    }
    // Every stored blob is referenced by a live manifest.
    let stored = cluster.stored_blobs();
    let unreferenced: Vec<&String> = stored.difference(&referenced).collect();
    assert!(
        unreferenced.is_empty(),
        "{} unreferenced blobs older than the grace period survived: {:?}",
        unreferenced.len(),
        unreferenced.iter().take(5).collect::<Vec<_>>()
    );
    let missing: Vec<&String> = referenced.difference(&stored).collect();
    assert!(missing.is_empty(), "referenced blobs missing: {missing:?}");

    // Every node counted its passes and what they deleted, and shows who holds the lease.
    let collected: usize = cluster
        .nodes
        .iter()
        .map(|n| n.log().matches("blob collected").count())
        .sum();
    let mut runs = 0.0;
    let mut deleted = 0.0;
    let mut last_success: f64 = 0.0;
    for n in &cluster.nodes {
        let scrape = n.scrape();
        runs += scrape.sum("wharf_gc_runs_total", &[("result", "success")]);
        deleted += scrape.sum("wharf_gc_blobs_deleted_total", &[]);
        last_success = last_success.max(scrape.sum("wharf_gc_last_success_timestamp_seconds", &[]));
        for family in [
            "wharf_gc_blobs_deleted_total",
            "wharf_gc_bytes_deleted_total",
            "wharf_gc_manifests_deleted_total",
            "wharf_gc_duration_seconds",
            "wharf_gc_last_success_timestamp_seconds",
        ] {
            assert!(
                scrape.types.contains_key(family),
                "{} exposes no {family}",
                n.name()
            );
        }
        let (status, vars) = n.debug_get("/debug/vars");
        assert_eq!(status, 200);
        let vars: Value = serde_json::from_str(&vars).unwrap();
        assert!(vars["cluster"].get("gc_lease_holder").is_some(), "{vars}");
    }
    assert!(
        runs >= generation as f64,
        "{runs} passes counted, {generation} run"
    );
    assert!(
        // Only passes that end well are counted: one that lost its lease (slow storage under
        // load) may have deleted blobs it does not count.
        deleted <= collected as f64,
        "{deleted} blobs counted as deleted, {collected} logged"
    );
    assert!(last_success > 0.0, "no last success time");
    eprintln!(
        "gc stress ({}): {} images pushed, {} referrers, {} deleted, {} layers reused, {} passes, {collected} blobs collected ({deleted} counted), {} blobs stored",
        if s3 { "s3" } else { "filesystem" },
        ledger.pushed,
        ledger.referrers,
        ledger.deleted,
        ledger.reused,
        cluster.pass().0,
        stored.len()
    );

    if !s3 {
        compatible_with_distribution(&cluster);
    }
}

/// distribution 2.8.2's own `garbage-collect --dry-run` on the collected storage finds nothing
/// to delete.
fn compatible_with_distribution(cluster: &GcCluster) {
    let dir = cluster.storage.as_ref().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:0\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut cmd = clean_command(&Server::DockerRegistry.binary());
    cmd.arg("garbage-collect").arg("--dry-run").arg(&config);
    let out = run_bounded(cmd, Duration::from_secs(60));
    out.assert_success("docker-registry garbage-collect --dry-run");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("0 blobs and 0 manifests eligible for deletion"),
        "distribution would delete more:\n{}",
        tail(&text, 20)
    );
}

#[test]
fn online_gc_under_load_on_filesystem_without_redis() {
    stress(false, false);
}

#[test]
fn online_gc_under_load_on_s3_with_redis() {
    stress(true, true);
}

/// The node holding the lease in the middle of a pass is SIGKILLed: another takes over once the
/// lease expires, finishes the collection, and everything kept still pulls.
#[test]
fn lease_holder_killed_mid_pass_is_taken_over() {
    let _guard = exclusive();
    let mut cluster = GcCluster::start(false, false);
    let ep = cluster.endpoint();
    // Enough unreferenced blobs that a pass takes a while, and images that must survive.
    let mut kept = Vec::new();
    for i in 0..4 {
        let layers: Vec<Blob> = (0..3).map(|_| Blob::random(1024)).collect();
        kept.push(
            push_image_of(&ep, &format!("gc/keep{i}"), "v1", &layers, unique_seed()).expect("push"),
        );
    }
    let garbage: Vec<String> = (0..600)
        .map(|i| {
            let b = Blob::random(64 + i);
            push_blob_always(&ep, &format!("gc/junk{}", i % 20), &b).expect("push junk");
            b.digest
        })
        .collect();
    // Wait for a node to hold the lease (it holds it only while it collects), then kill it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let holder = cluster.nodes.iter().position(|n| {
            let (status, vars) = n.debug_get("/debug/vars");
            status == 200
                && serde_json::from_str::<Value>(&vars)
                    .is_ok_and(|v| v["cluster"]["leases_held"].get("gc").is_some())
        });
        if let Some(i) = holder {
            break i;
        }
        assert!(
            Instant::now() < deadline,
            "no node was seen holding the lease mid-pass\n{}",
            cluster.logs()
        );
        thread::sleep(Duration::from_millis(5));
    };
    let (killed_generation, mid_pass) = cluster.pass();
    cluster.nodes[victim].kill();
    eprintln!(
        "killed {} holding the lease (pass {killed_generation} running: {mid_pass})",
        cluster.nodes[victim].name()
    );
    let expected: BTreeSet<String> = kept
        .iter()
        .flat_map(|p| {
            std::iter::once(p.manifest.digest.clone()).chain(p.blobs.iter().map(|(d, _)| d.clone()))
        })
        .collect();
    // Another node completes a later pass and collects all the junk.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (generation, running) = cluster.pass();
        if generation > killed_generation && !running && cluster.stored_blobs() == expected {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no takeover after the lease holder died\n{}",
            cluster.logs()
        );
        thread::sleep(Duration::from_millis(100));
    }
    let survivors: Vec<&Registry> = cluster
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n)
        .collect();
    for n in survivors {
        let ep = n.endpoint();
        for p in &kept {
            pull_verified(&ep, p).unwrap_or_else(|f| panic!("{f}"));
        }
        for d in garbage.iter().take(5) {
            let status = send(ep.head(&format!("/v2/gc/junk0/blobs/{d}"))).status;
            assert_eq!(status, 404, "a collected blob is still served");
        }
    }
}

/// `wharf maintenance readonly on|off` switches every node sharing the storage, without a
/// restart: writes answer 405 `UNSUPPORTED` while it is on, reads go on, `/debug/vars` shows it.
#[test]
fn read_only_switched_cluster_wide_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Registry> = (0..2)
        .map(|i| {
            Registry::builder(Driver::Filesystem)
                .storage_dir(dir.path())
                .node(&format!("node{}", i + 1))
                .start()
        })
        .collect();
    let image = push_image(&nodes[0].endpoint(), "ro/app", "v1", Kind::OciManifest);
    let switch = |state: &str| {
        let mut cmd = clean_command(&Server::Wharf.binary());
        cmd.args(["maintenance", "readonly", state])
            .arg(nodes[0].config_path());
        run_bounded(cmd, Duration::from_secs(30)).assert_success("maintenance readonly");
    };
    let post_status = |n: &Registry| send(n.post("/v2/ro/app/blobs/uploads/")).status;

    switch("on");
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let resp = send(n.post("/v2/ro/app/blobs/uploads/"));
            if resp.status == 405 {
                assert_error(&resp, 405, "UNSUPPORTED");
                break;
            }
            assert!(Instant::now() < deadline, "{} still writable", n.name());
            thread::sleep(Duration::from_millis(100));
        }
        let (_, vars) = n.debug_get("/debug/vars");
        let vars: Value = serde_json::from_str(&vars).unwrap();
        assert_eq!(vars["cluster"]["read_only"], true, "{vars}");
        // Reads are served.
        assert_eq!(
            get_manifest(&n.endpoint(), "ro/app", "v1", ACCEPT_ALL_MANIFESTS).status,
            200
        );
        let put = send(
            n.put("/v2/ro/app/manifests/v2")
                .header("content-type", &image.media_type)
                .body(image.body.clone()),
        );
        assert_error(&put, 405, "UNSUPPORTED");
    }

    switch("off");
    for n in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        while post_status(n) != 202 {
            assert!(Instant::now() < deadline, "{} still read-only", n.name());
            thread::sleep(Duration::from_millis(100));
        }
    }
    push_manifest(&nodes[1].endpoint(), "ro/app", "v2", &image);
}

/// The first failures, each followed by the nodes' log lines about the blobs it names.
fn explain_failures(cluster: &GcCluster, failures: &[String]) -> String {
    let logs: Vec<String> = cluster.nodes.iter().map(|n| n.log()).collect();
    let mut out = String::new();
    for f in failures.iter().take(10) {
        out.push_str(&format!("FAILED: {f}\n"));
        for log in &logs {
            for line in log.lines() {
                if line.contains("blob=") && f.contains(line_blob(line)) {
                    out.push_str(&format!("   {line}\n"));
                }
            }
        }
    }
    out
}

fn line_blob(line: &str) -> &str {
    line.split("blob=")
        .nth(1)
        .and_then(|r| r.split([' ', ',', '"']).next())
        .unwrap_or("no-blob-in-line")
}
