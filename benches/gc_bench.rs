//! Garbage collection at scale: one full pass over 1,000 repositories / 10,000 blobs on the
//! filesystem and on S3 (moto on loopback), by `wharf garbage-collect --online`, by offline
//! `wharf garbage-collect` and by distribution 2.8.2's `docker-registry garbage-collect`, each on
//! the same data in the same run (a copy of the folder each; on S3 a bucket each, all loaded by
//! moto itself before it serves, `benches/moto_preload.py`);
//! wall time, blobs left and (S3) requests counted at the server. Then the latency of pushes
//! into a serving node (on the folder, then on S3) while an online pass runs over that data,
//! against the same pushes without one.
//!
//! ```sh
//! cargo bench --bench gc_bench -- --run                  # 1000 repositories, 10 blobs each
//! cargo bench --bench gc_bench -- --run --repos 200      # smaller
//! cargo bench --bench gc_bench -- --run --skip-s3
//! ```
//! Without `--run` it prints this usage and exits. Results: stdout and
//! `target/bench-results/gc-<unix time>.md`.
//!
//! Data per repository `bench/rNNNN`: one tagged OCI manifest referencing a config and six
//! layers, plus two more layers linked in the repository that nothing references (collected):
//! ten blobs each, all distinct, of a few hundred bytes (a pass is bound by listings and small
//! reads, not by bytes).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::s3::S3Server;
use support::*;

/// Layers a manifest references, and unreferenced layers, per repository.
const LAYERS: usize = 6;
const ORPHANS: usize = 2;
/// Longest any one collection may take.
const GC_LIMIT: Duration = Duration::from_secs(1800);

struct Options {
    repos: usize,
    skip_s3: bool,
}

fn parse() -> Option<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--run") {
        return None;
    }
    let repos = args
        .iter()
        .position(|a| a == "--repos")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000usize)
        .max(1);
    Some(Options {
        repos,
        skip_s3: args.iter().any(|a| a == "--skip-s3"),
    })
}

/// The storage tree, as (key under the root, content).
fn tree(repos: usize) -> Vec<(String, Vec<u8>)> {
    let mut prng = Prng::new(0x6c_0b);
    let mut files = Vec::new();
    let v2 = "docker/registry/v2";
    let blob = |files: &mut Vec<(String, Vec<u8>)>, data: Vec<u8>| -> String {
        let digest = sha256_digest(&data);
        let hex = digest.trim_start_matches("sha256:").to_string();
        files.push((format!("{v2}/blobs/sha256/{}/{hex}/data", &hex[..2]), data));
        digest
    };
    let link = |repo: &str, kind: &str, digest: &str| {
        let hex = digest.trim_start_matches("sha256:");
        (
            format!("{v2}/repositories/{repo}/{kind}/sha256/{hex}/link"),
            digest.as_bytes().to_vec(),
        )
    };
    for r in 0..repos {
        let repo = format!("bench/r{r:04}");
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux", "n": r,
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap();
        let config_digest = blob(&mut files, config.clone());
        files.push(link(&repo, "_layers", &config_digest));
        let mut layers = Vec::new();
        for _ in 0..LAYERS + ORPHANS {
            let data = prng.bytes(300);
            let d = blob(&mut files, data.clone());
            files.push(link(&repo, "_layers", &d));
            layers.push((d, data.len()));
        }
        let manifest = Manifest::from_value(
            OCI_MANIFEST,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
                "layers": layers[..LAYERS]
                    .iter()
                    .map(|(d, n)| descriptor(OCI_LAYER, d, *n as u64))
                    .collect::<Vec<_>>(),
            }),
        );
        let m = blob(&mut files, manifest.body.clone());
        files.push(link(&repo, "_manifests/revisions", &m));
        let hex = m.trim_start_matches("sha256:");
        files.push((
            format!("{v2}/repositories/{repo}/_manifests/tags/latest/current/link"),
            m.as_bytes().to_vec(),
        ));
        files.push((
            format!("{v2}/repositories/{repo}/_manifests/tags/latest/index/sha256/{hex}/link"),
            m.as_bytes().to_vec(),
        ));
    }
    files
}

fn write_tree(root: &Path, files: &[(String, Vec<u8>)]) {
    for (key, data) in files {
        let path = root.join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, data).unwrap();
    }
}

/// Blob data objects under a folder.
fn blobs_on_disk(root: &Path) -> usize {
    let dir = root.join("docker/registry/v2/blobs/sha256");
    let mut n = 0;
    for prefix in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for b in std::fs::read_dir(prefix.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if b.path().join("data").exists() {
                n += 1;
            }
        }
    }
    n
}

fn blobs_in_bucket(s3: &S3Server, bucket: &str) -> usize {
    s3.keys(bucket, "docker/registry/v2/blobs/")
        .iter()
        .filter(|k| k.ends_with("/data"))
        .count()
}

/// The S3 operation a moto request-log line stands for (as in `s3_compare`).
fn operation(line: &str) -> Option<String> {
    let request = line.split('"').nth(1)?;
    let mut parts = request.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path.trim_matches('/').is_empty() {
        return None;
    }
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let bucket_only = !path.trim_matches('/').contains('/');
    Some(
        match (method, bucket_only) {
            ("GET", true) if has("list-type") => "ListObjectsV2",
            ("GET", true) => "ListObjects",
            ("POST", true) if has("delete") => "DeleteObjects",
            ("PUT", true) => "CreateBucket",
            ("HEAD", true) => "HeadBucket",
            ("GET", false) => "GetObject",
            ("HEAD", false) => "HeadObject",
            ("PUT", false) if has("partNumber") => "UploadPart",
            ("PUT", false) => "PutObject",
            ("DELETE", false) => "DeleteObject",
            ("POST", false) => "Multipart",
            _ => "other",
        }
        .to_string(),
    )
}

fn count_requests(s3: &S3Server, from: usize) -> (usize, BTreeMap<String, usize>) {
    let mut by_op = BTreeMap::new();
    let mut total = 0;
    for line in s3.request_lines().iter().skip(from) {
        if let Some(op) = operation(line) {
            *by_op.entry(op).or_insert(0) += 1;
            total += 1;
        }
    }
    (total, by_op)
}

/// What one collector did.
struct Run {
    who: &'static str,
    wall: Duration,
    blobs_left: usize,
    requests: Option<(usize, BTreeMap<String, usize>)>,
}

fn config_text(storage: &str, gc: bool) -> String {
    let mut text = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n{storage}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{}\n  secret: gc-bench-secret\n",
        free_port()
    );
    if gc {
        text.push_str("gc:\n  graceperiod: 1s\n  leasettl: 30s\n");
    }
    text
}

/// Runs one collector over the storage `storage` (a config section) and times it.
fn collect(who: &'static str, storage: &str, work: &Path) -> Duration {
    let (server, args): (Server, &[&str]) = match who {
        "wharf --online" => (Server::Wharf, &["garbage-collect", "--online"]),
        "wharf offline" => (Server::Wharf, &["garbage-collect"]),
        _ => (Server::DockerRegistry, &["garbage-collect"]),
    };
    let config = work.join(format!("{}.yml", who.replace([' ', '-'], "_")));
    std::fs::write(&config, config_text(storage, server == Server::Wharf)).unwrap();
    let mut cmd = clean_command(&server.binary());
    cmd.args(args).arg(&config);
    let started = Instant::now();
    let out = run_bounded(cmd, GC_LIMIT);
    let wall = started.elapsed();
    out.assert_success(who);
    wall
}

const WHO: [&str; 3] = ["wharf --online", "wharf offline", "docker-registry 2.8.2"];

fn filesystem_runs(files: &[(String, Vec<u8>)], work: &Path) -> Vec<Run> {
    let mut runs = Vec::new();
    for who in WHO {
        let root = work.join(format!("fs-{}", runs.len()));
        write_tree(&root, files);
        // Everything older than the online collector's grace period.
        std::thread::sleep(Duration::from_millis(1100));
        let storage = format!("  filesystem:\n    rootdirectory: {}\n", root.display());
        let wall = collect(who, &storage, work);
        runs.push(Run {
            who,
            wall,
            blobs_left: blobs_on_disk(&root),
            requests: None,
        });
    }
    runs
}

/// Buckets moto is started with, each holding the whole tree: one per collector, and one
/// for the push latency.
fn bucket(i: usize) -> String {
    format!("wharf-gc-bench-{i}")
}

/// moto, with `WHO.len() + 1` buckets each holding `files` loaded by moto itself before it
/// serves (`benches/moto_preload.py`): loading 22,000 objects by PUTs takes minutes.
fn preloaded_moto(files: &[(String, Vec<u8>)], work: &Path) -> S3Server {
    let source = work.join("s3-source");
    write_tree(&source, files);
    let buckets: Vec<String> = (0..=WHO.len()).map(bucket).collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/moto_preload.py");
    std::env::set_var("WHARF_TEST_MOTO", format!("python3 {}", script.display()));
    std::env::set_var(
        "WHARF_MOTO_PRELOAD",
        format!("{}={}", source.display(), buckets.join(",")),
    );
    let loading = Instant::now();
    let s3 = S3Server::start();
    eprintln!(
        "gc_bench: moto started with {} buckets of {} objects in {:.1} s",
        buckets.len(),
        files.len(),
        loading.elapsed().as_secs_f64()
    );
    s3
}

/// The collectors one after the other, each on its own bucket holding the same objects.
fn s3_runs(s3: &S3Server, work: &Path) -> Vec<Run> {
    let mut runs = Vec::new();
    for (i, who) in WHO.into_iter().enumerate() {
        let bucket = bucket(i);
        let storage = s3::storage_section(&s3.endpoint(), &bucket, &[]);
        let before = s3.request_lines().len();
        let wall = collect(who, &storage, work);
        let requests = count_requests(s3, before);
        runs.push(Run {
            who,
            wall,
            blobs_left: blobs_in_bucket(s3, &bucket),
            requests: Some(requests),
        });
        eprintln!("gc_bench: {who} on moto: {:.1} s", wall.as_secs_f64());
    }
    runs
}

/// Manifest-push latencies (blob upload and manifest PUT, ms) while `busy` says so.
fn push_while(reg: &Endpoint, repo: &str, keep_going: &AtomicBool, min: usize) -> Vec<f64> {
    let mut times = Vec::new();
    let config = Blob::random(200);
    push(reg, repo, &config);
    let mut i = 0;
    while (keep_going.load(Ordering::Relaxed) || times.len() < min) && times.len() < 100_000 {
        let layer = Blob::random(1000);
        let started = Instant::now();
        push(reg, repo, &layer);
        let m = image_manifest(
            OCI_MANIFEST,
            (OCI_CONFIG, &config),
            &[(OCI_LAYER, &layer)],
            None,
        );
        put_manifest(reg, repo, &format!("t{i}"), &m).assert_status(201);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        i += 1;
    }
    times
}

fn percentile(values: &mut [f64], p: usize) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[(values.len() * p / 100).min(values.len() - 1)]
}

/// (p50, p99, count) of pushes.
type Latency = (f64, f64, usize);

/// (p50, p99, count) of pushes into a node started from `node` without a pass, then during
/// one over `storage` (a config section, the node's storage); and the pass's wall time. The
/// node keeps an in-memory blob-descriptor cache, so the pass waits for nodes' caches as a
/// cluster's would.
fn push_latency(
    node: RegistryBuilder,
    storage: &str,
    work: &Path,
    quiet_pushes: usize,
) -> (Latency, Latency, Duration) {
    let reg = node
        .log_section("log:\n  level: error\n  accesslog:\n    disabled: true\n")
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")
        .start();
    let ep = reg.endpoint();
    let never = AtomicBool::new(false);
    let mut quiet = push_while(&ep, "bench/pusher", &never, quiet_pushes);
    let running = Arc::new(AtomicBool::new(true));
    let storage = format!("{storage}  cache:\n    blobdescriptor: inmemory\n");
    let pass_wall = Arc::new(Mutex::new(Duration::ZERO));
    let mut during = std::thread::scope(|scope| {
        let (running2, wall2, storage2) = (running.clone(), pass_wall.clone(), storage.clone());
        scope.spawn(move || {
            *wall2.lock().unwrap() = collect("wharf --online", &storage2, work);
            running2.store(false, Ordering::Relaxed);
        });
        push_while(&ep, "bench/pusher", &running, 1)
    });
    let wall = *pass_wall.lock().unwrap();
    let summary = |v: &mut Vec<f64>| (percentile(v, 50), percentile(v, 99), v.len());
    (summary(&mut quiet), summary(&mut during), wall)
}

fn latency_table(
    report: &mut String,
    title: &str,
    (quiet, during, wall): (Latency, Latency, Duration),
) {
    let _ = writeln!(
        report,
        "\n### Push latency into a serving node ({title}), blob + manifest PUT\n\n\
         | | pushes | p50 ms | p99 ms |\n|---|---|---|---|\n\
         | no pass | {} | {:.1} | {:.1} |\n| during `garbage-collect --online` ({:.1} s) | {} | {:.1} | {:.1} |",
        quiet.2, quiet.0, quiet.1, wall.as_secs_f64(), during.2, during.0, during.1
    );
}

fn table(report: &mut String, title: &str, runs: &[Run], total: usize) {
    let _ = writeln!(
        report,
        "\n### {title}\n\n| collector | wall s | blobs left of {total} | S3 requests |\n|---|---|---|---|"
    );
    for r in runs {
        let _ = writeln!(
            report,
            "| {} | {:.2} | {} | {} |",
            r.who,
            r.wall.as_secs_f64(),
            r.blobs_left,
            r.requests
                .as_ref()
                .map_or("-".to_string(), |(n, by)| format!("{n} ({by:?})"))
        );
    }
}

fn main() -> ExitCode {
    let Some(options) = parse() else {
        println!(
            "gc_bench: one garbage-collection pass over N repositories x 10 blobs, wharf (online, offline)\n\
             and docker-registry 2.8.2, on a folder and on moto S3; push latency during a pass.\n\
             usage: cargo bench --bench gc_bench -- --run [--repos N] [--skip-s3]"
        );
        return ExitCode::SUCCESS;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let files = tree(options.repos);
    let total = options.repos * (LAYERS + ORPHANS + 2);
    let expected_left = options.repos * (LAYERS + 2);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## Garbage collection: {} repositories, {total} blobs ({} unreferenced), {} objects\n\n\
         Each collector on the same data, one after the other in one run (a copy of the folder \
         each; a bucket each on S3); no cache is \
         configured, so `wharf --online` does not wait for nodes' in-memory caches. \
         A correct pass leaves {expected_left} blobs.",
        options.repos,
        options.repos * ORPHANS,
        files.len()
    );
    let fs = filesystem_runs(&files, work.path());
    table(&mut report, "Filesystem", &fs, total);
    // Printed as it goes: the S3 part is long.
    println!("{report}");
    let mut printed = report.len();
    let root = work.path().join("fs-serving");
    write_tree(&root, &files);
    std::thread::sleep(Duration::from_millis(1100));
    let latency = push_latency(
        Registry::builder(Driver::Filesystem).storage_dir(&root),
        &format!("  filesystem:\n    rootdirectory: {}\n", root.display()),
        work.path(),
        300,
    );
    latency_table(&mut report, "filesystem", latency);
    println!("{}", &report[printed..]);
    printed = report.len();
    if !options.skip_s3 {
        let s3 = preloaded_moto(&files, work.path());
        // Everything older than the online collector's grace period.
        std::thread::sleep(Duration::from_millis(1100));
        let runs = s3_runs(&s3, work.path());
        table(&mut report, "S3 (moto_server on loopback)", &runs, total);
        println!("{}", &report[printed..]);
        printed = report.len();
        let target = s3::S3Target {
            endpoint: s3.endpoint(),
            bucket: bucket(WHO.len()),
        };
        let latency = push_latency(
            Registry::builder(Driver::S3).s3_target(&target),
            &s3::storage_section(&s3.endpoint(), &target.bucket, &[]),
            work.path(),
            100,
        );
        latency_table(&mut report, "moto S3", latency);
        println!("{}", &report[printed..]);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let _ = std::fs::write(dir.join(format!("gc-{stamp}.md")), &report);
    ExitCode::SUCCESS
}
