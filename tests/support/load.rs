//! Continuous push and pull load through one endpoint (haproxy or a node), the way a fleet of
//! clients keeps a registry busy while a test restarts, kills or starves its nodes; what it saw,
//! and latency figures.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::client::{Endpoint, Failure, Trickle};
use super::fixtures::{sha256_digest, Blob, Prng};
use super::manifest::{image_manifest, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use super::wait::wait_until;

/// An image pushed by the load and acknowledged (every PUT answered 201).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub manifest: String,
    pub config: (String, u64),
    pub layer: (String, u64),
    pub acked_at: Instant,
    /// The node that acknowledged the manifest.
    pub node: String,
}

/// A push that failed and then succeeded when the client tried again.
#[derive(Debug, Clone)]
pub struct Retried {
    pub first_failure: String,
    pub attempts: u32,
    /// The nodes that answered the successful attempt.
    pub nodes: Vec<String>,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub pushes: u64,
    pub pulls: u64,
    /// Requests that failed (for pushes with retries: attempts that failed, also in `retried`).
    pub failures: Vec<String>,
    pub retried: Vec<Retried>,
    /// With retries: pulls cut mid-answer (their node died) that a second attempt completed;
    /// the first failure of each.
    pub recovered_pulls: Vec<String>,
    pub pushed: Vec<Pushed>,
    pub bytes_pushed: u64,
    pub bytes_pulled: u64,
}

/// Options for [`Load::start`].
#[derive(Clone)]
pub struct LoadOptions {
    pub pushers: usize,
    pub pullers: usize,
    /// Slow clients: each uploads 2 MiB in four PATCHes that take about a second each, so
    /// requests are always in flight.
    pub slow_uploaders: usize,
    /// Layer size; the layer goes up in three PATCHes.
    pub layer_size: usize,
    /// Retry a failed push from the start (up to 5 attempts), and a pull whose connection was
    /// cut (up to 3), instead of only recording it.
    pub retry: bool,
    /// Stop by itself after this long, whatever happens.
    pub limit: Duration,
    /// And after this many operations per worker.
    pub max_ops: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pushers: 2,
            pullers: 2,
            slow_uploaders: 0,
            layer_size: 256 * 1024,
            retry: false,
            limit: Duration::from_secs(120),
            max_ops: 10_000,
        }
    }
}

/// Operations of a load by kind (a retried push counts each attempt).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub push_ok: u64,
    pub push_failed: u64,
    pub pull_ok: u64,
    pub pull_failed: u64,
}

impl std::ops::Sub for Tally {
    type Output = Tally;
    fn sub(self, before: Tally) -> Tally {
        Tally {
            push_ok: self.push_ok - before.push_ok,
            push_failed: self.push_failed - before.push_failed,
            pull_ok: self.pull_ok - before.pull_ok,
            pull_failed: self.pull_failed - before.pull_failed,
        }
    }
}

/// Pushers and pullers working through one endpoint until stopped.
pub struct Load {
    fleet: Arc<Fleet>,
    workers: Vec<JoinHandle<()>>,
}

/// What the workers of a load share.
struct Fleet {
    endpoint: Endpoint,
    options: LoadOptions,
    report: Mutex<LoadReport>,
    stop: AtomicBool,
    deadline: Instant,
}

/// One operation of worker `w`, its `i`th, recorded in the report.
type Step = fn(&Fleet, usize, u64);

static LOAD_SEED: AtomicU64 = AtomicU64::new(1);

impl Load {
    /// Pushes one image (so pullers have something from the start), then starts the workers.
    pub fn start(endpoint: Endpoint, options: LoadOptions) -> Load {
        // Pullers need something to pull from the first moment.
        let seed_push = push_one_layer_image(&endpoint, "load/seed", "seed", options.layer_size)
            .unwrap_or_else(|(f, _)| panic!("seed push failed: {f}"));
        let report = LoadReport {
            pushed: vec![seed_push],
            requests: 8,
            ..LoadReport::default()
        };
        let fleet = Arc::new(Fleet {
            endpoint,
            deadline: Instant::now() + options.limit,
            options,
            report: Mutex::new(report),
            stop: AtomicBool::new(false),
        });
        let mut workers = Vec::new();
        let steps: [(usize, Step); 3] = [
            (fleet.options.pushers, push_step),
            (fleet.options.pullers, pull_step),
            (fleet.options.slow_uploaders, slow_upload_step),
        ];
        for (count, step) in steps {
            for w in 0..count {
                let fleet = fleet.clone();
                workers.push(thread::spawn(move || {
                    for i in 0..fleet.options.max_ops {
                        if fleet.stop.load(Ordering::SeqCst) || Instant::now() > fleet.deadline {
                            break;
                        }
                        step(&fleet, w, i);
                    }
                }));
            }
        }
        Load { fleet, workers }
    }

    fn report(&self) -> MutexGuard<'_, LoadReport> {
        self.fleet.report.lock().unwrap()
    }

    /// Operations so far (pushes + pulls).
    pub fn ops(&self) -> u64 {
        let r = self.report();
        r.pushes + r.pulls
    }

    /// Failures so far.
    pub fn failures(&self) -> usize {
        self.report().failures.len()
    }

    /// Operations so far by kind, succeeded and failed.
    pub fn tally(&self) -> Tally {
        let r = self.report();
        let failed = |kind: &str| r.failures.iter().filter(|f| f.starts_with(kind)).count() as u64;
        let (push_failed, pull_failed) =
            (failed("push ") + failed("slow upload "), failed("pull "));
        Tally {
            push_ok: r.pushes.saturating_sub(push_failed),
            push_failed,
            pull_ok: r.pulls.saturating_sub(pull_failed),
            pull_failed,
        }
    }

    /// Waits (bounded) until `n` more operations have completed.
    pub fn wait_ops(&self, n: u64, limit: Duration) -> bool {
        let target = self.ops() + n;
        wait_until(limit, || self.ops() >= target)
    }

    /// Stops every worker (each finishes its operation) and returns what they saw.
    pub fn stop(self) -> LoadReport {
        self.fleet.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
        std::mem::take(&mut *self.fleet.report.lock().unwrap())
    }
}

/// A pusher's: an image tagged `t<i>` in its own repository.
fn push_step(fleet: &Fleet, w: usize, i: u64) {
    push_with_retries(fleet, &format!("load/pusher{w}"), &format!("t{i}"));
}

/// A puller's: one of the images pushed so far, every digest checked.
fn pull_step(fleet: &Fleet, w: usize, i: u64) {
    let target = {
        let r = fleet.report.lock().unwrap();
        let n = r.pushed.len();
        r.pushed[(i as usize * 7 + w * 13) % n].clone()
    };
    let mut result = pull_and_verify(&fleet.endpoint, &target);
    // A client pulls again when the connection was cut (no answer): the node that served it
    // may have died mid-answer. An answered error is never retried.
    let mut cut = None;
    for _ in 1..if fleet.options.retry { 3 } else { 1 } {
        match &result {
            Err((f, requests)) if f.answer.is_none() && !f.error.starts_with("status ") => {
                cut.get_or_insert(format!("pull {}:{}: {f}", target.repo, target.tag));
                fleet.report.lock().unwrap().requests += requests;
                thread::sleep(Duration::from_millis(100));
                result = pull_and_verify(&fleet.endpoint, &target);
            }
            _ => break,
        }
    }
    let mut r = fleet.report.lock().unwrap();
    if let (Some(cut), Ok(_)) = (cut, &result) {
        r.recovered_pulls.push(cut);
    }
    r.pulls += 1;
    match result {
        Ok((requests, bytes)) => {
            r.requests += requests;
            r.bytes_pulled += bytes;
        }
        Err((f, requests)) => {
            r.requests += requests;
            r.failures
                .push(format!("pull {}:{}: {f}", target.repo, target.tag));
        }
    }
}

/// A slow uploader's: 2 MiB trickling in four PATCHes.
fn slow_upload_step(fleet: &Fleet, w: usize, i: u64) {
    let repo = format!("load/slow{w}");
    let result = slow_upload(&fleet.endpoint, &repo, i);
    let mut r = fleet.report.lock().unwrap();
    r.pushes += 1;
    match result {
        Ok(bytes) => {
            r.requests += 7;
            r.bytes_pushed += bytes;
        }
        Err(f) => r.failures.push(format!("slow upload {repo} #{i}: {f}")),
    }
}

/// POST, four trickling PATCHes, PUT, then a pull that checks the digest.
fn slow_upload(endpoint: &Endpoint, repo: &str, i: u64) -> Result<u64, Failure> {
    let seed = LOAD_SEED.fetch_add(1, Ordering::SeqCst) ^ (std::process::id() as u64) << 32;
    let data = Prng::new(seed ^ i).bytes(2 * 1024 * 1024);
    let digest = sha256_digest(&data);
    let mut location = endpoint
        .start_upload(repo)?
        .must_header("location")
        .to_string();
    let quarter = data.len() / 4;
    for k in 0..4 {
        let part = data[k * quarter..(k + 1) * quarter].to_vec();
        let a = endpoint.patch_chunk(
            &location,
            (k * quarter) as u64,
            Trickle::new(part, 8, Duration::from_millis(900)).payload(),
        )?;
        location = a.must_header("location").to_string();
    }
    endpoint.finish(&location, &digest)?;
    let (got, len, node) = endpoint.pull_digest(repo, &digest)?;
    if got != digest {
        return Err(Failure {
            what: "GET slow upload".into(),
            answer: None,
            error: format!("got {got} ({len} bytes) from {node}, pushed {digest}"),
        });
    }
    Ok(data.len() as u64)
}

/// Pushes an image, and again from the start after a failure if the load retries.
fn push_with_retries(fleet: &Fleet, repo: &str, tag: &str) {
    let attempts = if fleet.options.retry { 5 } else { 1 };
    let mut first_failure = None;
    for attempt in 1..=attempts {
        let result = push_one_layer_image(&fleet.endpoint, repo, tag, fleet.options.layer_size);
        let mut r = fleet.report.lock().unwrap();
        r.pushes += 1;
        match result {
            Ok(pushed) => {
                r.requests += 8;
                r.bytes_pushed += pushed.layer.1 + pushed.config.1;
                if let Some(first_failure) = first_failure.take() {
                    r.retried.push(Retried {
                        first_failure,
                        attempts: attempt,
                        nodes: vec![pushed.node.clone()],
                    });
                }
                r.pushed.push(pushed);
                return;
            }
            Err((f, requests)) => {
                r.requests += requests;
                let text = format!("push {repo}:{tag} attempt {attempt}: {f}");
                r.failures.push(text.clone());
                first_failure.get_or_insert(text);
            }
        }
        drop(r);
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pushes a config blob (monolithic), a layer of `layer_size` bytes (three PATCHes) and an OCI
/// manifest tagged `tag`. On failure: the failure and how many requests were sent.
pub fn push_one_layer_image(
    endpoint: &Endpoint,
    repo: &str,
    tag: &str,
    layer_size: usize,
) -> Result<Pushed, (Failure, u64)> {
    let seed = LOAD_SEED.fetch_add(1, Ordering::SeqCst) ^ (std::process::id() as u64) << 32;
    let config = Blob::new(
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes(),
    );
    let layer = Blob::new(Prng::new(seed).bytes(layer_size));
    endpoint
        .push_monolithic(repo, &config.data)
        .map_err(|f| (f, 2))?;
    let cuts = [layer_size / 3, 2 * layer_size / 3];
    endpoint
        .push_chunked(repo, &layer.data, &cuts)
        .map_err(|f| (f, 7))?;
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &layer)],
        None,
    );
    let put = endpoint
        .push_manifest(repo, tag, &manifest)
        .map_err(|f| (f, 8))?;
    Ok(Pushed {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest: manifest.digest,
        config: (config.digest.clone(), config.size()),
        layer: (layer.digest.clone(), layer.size()),
        acked_at: Instant::now(),
        node: put.node().to_string(),
    })
}

/// Pulls an image back and checks every digest: the manifest by tag, the layer, a HEAD of the
/// config. On success: requests sent and bytes pulled.
pub fn pull_and_verify(endpoint: &Endpoint, image: &Pushed) -> Result<(u64, u64), (Failure, u64)> {
    let m = endpoint
        .pull_manifest(&image.repo, &image.tag)
        .map_err(|f| (f, 1))?;
    let got = sha256_digest(&m.body);
    let header = m.header("docker-content-digest").map(str::to_string);
    if got != image.manifest || header.as_deref() != Some(image.manifest.as_str()) {
        let error = format!(
            "digest {got} (header {header:?}), pushed {}",
            image.manifest
        );
        return Err((Failure::answer("GET manifest", &error, m), 1));
    }
    let (digest, size, node) = endpoint
        .pull_digest(&image.repo, &image.layer.0)
        .map_err(|f| (f, 2))?;
    if digest != image.layer.0 || size != image.layer.1 {
        return Err((
            Failure {
                what: "GET layer".into(),
                error: format!(
                    "got {digest} ({size} bytes) from {node}, pushed {:?}",
                    image.layer
                ),
                answer: None,
            },
            2,
        ));
    }
    endpoint
        .head_blob(&image.repo, &image.config.0)
        .map_err(|f| (f, 3))?;
    Ok((3, size + m.body.len() as u64))
}

/// Latency figures of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latency {
    /// The figures of `samples` (zero when there are none).
    pub fn of(samples: &[Duration]) -> Latency {
        let mut s = samples.to_vec();
        s.sort();
        let at = |q: f64| {
            s.get(((s.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        let total: Duration = s.iter().sum();
        Latency {
            count: s.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: s.last().copied().unwrap_or_default(),
            mean: total / (s.len().max(1) as u32),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "n={} mean={:.2}ms p50={:.2}ms p99={:.2}ms max={:.2}ms",
            self.count,
            ms(self.mean),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}
