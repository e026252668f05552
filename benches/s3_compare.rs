//! Push and pull through Wharf and through distribution 2.8.2 (`docker-registry`) against the same
//! S3 server (moto on loopback) in one run, and the S3 requests each makes, counted at the server
//! from its request log.
//!
//! ```sh
//! cargo bench --bench s3_compare -- --run                      # 3 rounds, 3 layers of 4 MiB
//! cargo bench --bench s3_compare -- --run --rounds 5 --layer-mib 8
//! cargo bench --bench s3_compare -- --run --requests           # also list Wharf's push requests
//! cargo bench --bench s3_compare -- --storm 32 --storm-mib 100  # Wharf's RSS under a push storm
//! cargo bench --bench s3_compare -- --catalog 2000             # requests per catalog page
//! ```
//! The catalog case: that many repositories (nested two and three deep, each with a tag,
//! written straight into the bucket) plus one repository with 300 tags; the S3 requests of
//! `_catalog` pages (`n=100`: the first, one from the middle) and of `tags/list` are counted.
//! The storm: that many concurrent chunked uploads (POST, one streamed PATCH, PUT) of that many
//! MiB each to Wharf on moto, with the default `chunksize`; the server's resident set is
//! sampled every 50 ms and its peak growth over the idle server reported.
//! Without `--run` it prints this usage and exits (so `cargo test --all-targets` starts nothing).
//! Results: stdout and `target/bench-results/s3-compare-<unix time>.md`; with `--json FILE`, one
//! JSON line per mode is also appended to FILE (what `benches/compare.sh --s3` collects and
//! `loadgen --report --s3` renders).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

#[path = "support/push_pull.rs"]
#[allow(dead_code)]
mod push_pull;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use push_pull::{median, timed, value, Calls};
use support::s3::S3Server;
use support::*;

struct Options {
    /// Concurrent uploads of the push storm; 0: the comparison instead.
    storm: usize,
    /// Repositories of the catalog case; 0: not run.
    catalog: usize,
    storm_mib: usize,
    rounds: usize,
    layer_mib: usize,
    /// Print every S3 request of Wharf's first push (method and target).
    requests: bool,
    /// Append the results as one JSON line to this file.
    json: Option<String>,
}

/// Appends `record` as one line to the `--json` file, if there is one.
fn append_json(options: &Options, record: &serde_json::Value) {
    let Some(path) = &options.json else { return };
    use std::io::Write as _;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{record}"));
    if let Err(e) = written {
        eprintln!("s3_compare: {path}: {e}");
    }
}

/// `VmRSS` of a process, in bytes (0 once it is gone).
fn vm_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// A shared buffer read as a request body, so that every client streams the same bytes
/// without a copy each.
struct SharedBody {
    data: std::sync::Arc<Vec<u8>>,
    at: usize,
}

impl std::io::Read for SharedBody {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let rest = &self.data[self.at..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.at += n;
        Ok(n)
    }
}

/// Runs the push storm; returns the report and its JSON record.
fn storm(uploads: usize, mib: usize) -> (String, serde_json::Value) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let s3 = S3Server::start();
    let target = S3Target {
        endpoint: s3.endpoint(),
        bucket: s3.create_bucket(),
    };
    let reg = Registry::builder(Driver::S3)
        .s3_target(&target)
        .log_section("log:\n  level: warn\n  accesslog:\n    disabled: true\n")
        .start();
    let pid = reg.pid();
    let base = format!("http://{}", reg.addr());
    let data = Arc::new(Prng::new(0x5707).bytes(mib << 20));
    let digest = sha256_digest(&data);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1800))
        .build()
        .expect("client");
    // Settled after start-up: the growth counts only what the uploads cost.
    std::thread::sleep(Duration::from_secs(1));
    let idle = vm_rss(pid);
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            // Bounded by the uploads' own timeout.
            let deadline = Instant::now() + Duration::from_secs(3600);
            while !done.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak = peak.max(vm_rss(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            peak
        })
    };
    let started = Instant::now();
    let workers: Vec<_> = (0..uploads)
        .map(|i| {
            let (client, base, data, digest) =
                (client.clone(), base.clone(), data.clone(), digest.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let repo = format!("storm/r{i}");
                let post = client
                    .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                    .send()
                    .map_err(|e| e.to_string())?;
                let location = post
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(location_path)
                    .ok_or_else(|| format!("POST: {}", post.status()))?;
                let body = reqwest::blocking::Body::new(SharedBody { data, at: 0 });
                let patch = client
                    .patch(format!("{base}{location}"))
                    .header("content-type", "application/octet-stream")
                    .body(body)
                    .send()
                    .map_err(|e| e.to_string())?;
                let location = patch
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(location_path)
                    .ok_or_else(|| format!("PATCH: {}", patch.status()))?;
                let put = client
                    .put(format!("{base}{}", with_digest(&location, &digest)))
                    .header("content-length", "0")
                    .send()
                    .map_err(|e| e.to_string())?;
                if put.status().as_u16() != 201 {
                    // The registry's error JSON says which check refused it.
                    let status = put.status();
                    let body = put.text().unwrap_or_default();
                    return Err(format!(
                        "PUT: {status} {}",
                        body.chars().take(300).collect::<String>()
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let failed: Vec<String> = workers
        .into_iter()
        .filter_map(|w| w.join().expect("worker").err())
        .collect();
    let elapsed = started.elapsed();
    if !failed.is_empty() {
        // What the server said about them (its warnings and errors).
        let log = reg.stderr_text() + &reg.stdout_text();
        let lines: Vec<&str> = log.lines().collect();
        // The first warnings name the call that failed first; the last, how requests ended.
        eprintln!(
            "s3_compare: {} uploads failed; the server's log begins:",
            failed.len()
        );
        for line in &lines[..lines.len().min(12)] {
            eprintln!("  | {line}");
        }
        eprintln!("and ends:");
        for line in &lines[lines.len().saturating_sub(6)..] {
            eprintln!("  | {line}");
        }
    }
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    let mib_of = |b: u64| b as f64 / (1u64 << 20) as f64;
    let record = serde_json::json!({
        "kind": "storm",
        "uploads": uploads,
        "mib": mib,
        "elapsed_s": elapsed.as_secs_f64(),
        "failed": failed.len(),
        "first_failure": failed.first(),
        "idle_rss_kib": idle / 1024,
        "peak_rss_kib": peak / 1024,
    });
    let text = format!(
        "# Push storm: {uploads} concurrent uploads of {mib} MiB to Wharf on moto\n\n\
         default chunksize, one streamed PATCH each; {:.1} s; {} failed{}\n\n\
         | idle RSS | peak RSS | growth | per upload |\n|---|---|---|---|\n\
         | {:.1} MiB | {:.1} MiB | {:.1} MiB | {:.2} MiB |\n",
        elapsed.as_secs_f64(),
        failed.len(),
        failed
            .first()
            .map(|f| format!(" (first: {f})"))
            .unwrap_or_default(),
        mib_of(idle),
        mib_of(peak),
        mib_of(peak.saturating_sub(idle)),
        mib_of(peak.saturating_sub(idle)) / uploads as f64,
    );
    (text, record)
}

/// Runs the catalog case; returns the report and its JSON record.
fn catalog(repositories: usize) -> (String, serde_json::Value) {
    let s3 = S3Server::start();
    let target = S3Target {
        endpoint: s3.endpoint(),
        bucket: s3.create_bucket(),
    };
    let v2 = "docker/registry/v2/repositories";
    let link = b"sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let mut names: Vec<String> = (0..repositories)
        .map(|i| match i % 3 {
            0 => format!("org{}/app{i}", i % 7),
            1 => format!("org{}/team{}/svc{i}", i % 7, i % 5),
            _ => format!("solo{i}"),
        })
        .collect();
    for name in &names {
        let key = format!("{v2}/{name}/_manifests/tags/latest/current/link");
        s3.put_object(&target.bucket, &key, link);
        // Layer links beside it: a listing of the whole tree would pay for these too.
        for l in 0..3 {
            let key = format!("{v2}/{name}/_layers/sha256/{l:064}/link");
            s3.put_object(&target.bucket, &key, link);
        }
    }
    let tagged = "many/tags";
    for t in 0..300 {
        let key = format!("{v2}/{tagged}/_manifests/tags/t{t:03}/current/link");
        s3.put_object(&target.bucket, &key, link);
    }
    names.push(tagged.to_string());
    let reg = Registry::builder(Driver::S3)
        .s3_target(&target)
        .log_section("log:\n  level: warn\n  accesslog:\n    disabled: true\n")
        .start();
    let base = format!("http://{}", reg.addr());
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1200))
        .build()
        .expect("client");
    let mut report = format!(
        "# Catalog on S3: {} repositories (nested), one with 300 tags\n\n\
         | request | entries returned | S3 requests | by operation |\n|---|---|---|---|\n",
        names.len()
    );
    names.sort_by(|a, b| a.split('/').cmp(b.split('/')));
    let middle = names[names.len() / 2].clone();
    let cases = [
        ("_catalog?n=100".to_string(), "first page"),
        (format!("_catalog?n=100&last={middle}"), "middle page"),
        ("_catalog?n=1000".to_string(), "first 1000"),
        (format!("{tagged}/tags/list"), "300 tags"),
        (format!("{tagged}/tags/list?n=50"), "50 tags"),
    ];
    let mut rows = Vec::new();
    for (path, what) in cases {
        let before = s3.request_lines().len();
        let resp = client
            .get(format!("{base}/v2/{path}"))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json::<serde_json::Value>())
            .expect("catalog answer");
        let entries = resp
            .get("repositories")
            .or_else(|| resp.get("tags"))
            .and_then(|v| v.as_array())
            .map_or(0, |a| a.len());
        let (total, by_op) = count(&s3, before);
        let ops: Vec<String> = by_op.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let row = format!(
            "| `{path}` ({what}) | {entries} | {total} | {} |",
            ops.join(", ")
        );
        // Shown as it comes: a large page on moto takes a while.
        eprintln!("{row}");
        let _ = writeln!(report, "{row}");
        rows.push(serde_json::json!({
            "request": path, "what": what, "entries": entries,
            "requests": total, "by_operation": by_op,
        }));
    }
    let record = serde_json::json!({
        "kind": "catalog",
        "repositories": names.len(),
        "rows": rows,
    });
    (report, record)
}

fn parse() -> Option<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args
        .iter()
        .any(|a| a == "--run" || a == "--storm" || a == "--catalog")
    {
        return None;
    }
    let (rounds, layer_mib) = push_pull::rounds_and_layer_mib(&args);
    Some(Options {
        storm: value(&args, "--storm", 0),
        catalog: value(&args, "--catalog", 0),
        storm_mib: value(&args, "--storm-mib", 100).max(1),
        rounds,
        layer_mib,
        requests: args.iter().any(|a| a == "--requests"),
        json: args
            .iter()
            .position(|a| a == "--json")
            .and_then(|i| args.get(i + 1))
            .cloned(),
    })
}

/// The S3 operation a logged request line stands for.
fn operation(line: &str) -> Option<String> {
    let request = line.split('"').nth(1)?;
    let mut parts = request.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // Not per push: the read-only flag is polled in the background.
    if path.trim_matches('/').is_empty() || path.contains("/wharf/maintenance/") {
        return None;
    }
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let op = match method {
        "GET" if has("list-type") => "ListObjectsV2",
        "GET" if has("uploads") => "ListMultipartUploads",
        "GET" if has("uploadId") => "ListParts",
        "GET" if has("X-Amz-Signature") => "GetObject (presigned, from the client)",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "PUT" if has("partNumber") => "UploadPart / UploadPartCopy",
        "PUT" if !path.trim_matches('/').contains('/') => "CreateBucket",
        "PUT" => "PutObject / CopyObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        other => other,
    };
    Some(op.to_string())
}

/// Requests logged since `from` lines, by operation.
fn count(server: &S3Server, from: usize) -> (usize, Calls) {
    let lines = server.request_lines();
    let mut by_op = BTreeMap::new();
    let mut total = 0;
    for line in lines.iter().skip(from) {
        if let Some(op) = operation(line) {
            if op == "CreateBucket" {
                continue;
            }
            *by_op.entry(op).or_insert(0) += 1;
            total += 1;
        }
    }
    (total, by_op)
}

struct Measure {
    push: Vec<Duration>,
    pull: Vec<Duration>,
    push_requests: (usize, Calls),
    pull_requests: (usize, Calls),
}

fn run_server(
    server: Server,
    s3: &S3Server,
    layout: &Path,
    options: &Options,
    work: &Path,
) -> Measure {
    let mut m = Measure {
        push: Vec::new(),
        pull: Vec::new(),
        push_requests: (0, BTreeMap::new()),
        pull_requests: (0, BTreeMap::new()),
    };
    for round in 0..options.rounds {
        // A fresh bucket each round: every push writes every blob.
        let target = S3Target {
            endpoint: s3.endpoint(),
            bucket: s3.create_bucket(),
        };
        let reg = Registry::builder(Driver::S3)
            .server(server)
            .s3_target(&target)
            .redirect(true)
            .log_section("log:\n  level: warn\n  accesslog:\n    disabled: true\n")
            .start();
        let before = s3.request_lines().len();
        m.push.push(timed(|| {
            copy_in(&reg, layout, "image", "bench/image:v1", false)
        }));
        let pushed = count(s3, before);
        if round == 0 && options.requests && server == Server::Wharf {
            println!("S3 requests of Wharf's push:");
            for line in s3.request_lines().iter().skip(before) {
                if let Some(request) = line.split('"').nth(1) {
                    println!("  {request}");
                }
            }
        }
        let out = work.join(format!("{server:?}-{round}"));
        let before = s3.request_lines().len();
        m.pull.push(timed(|| {
            copy_out(&reg, "bench/image:v1", &oci_ref(&out, "image"), false)
        }));
        let pulled = count(s3, before);
        if round == 0 {
            m.push_requests = pushed;
            m.pull_requests = pulled;
        }
    }
    m
}

fn main() -> ExitCode {
    let Some(options) = parse() else {
        println!(
            "s3_compare: push/pull through wharf and docker-registry 2.8.2 on one moto S3 server,\n\
             and the S3 requests of one `skopeo copy` of a 3-layer image.\n\
             usage: cargo bench --bench s3_compare -- --run [--rounds N] [--layer-mib M] [--requests]\n\
                    cargo bench --bench s3_compare -- --storm N [--storm-mib M]\n\
                    cargo bench --bench s3_compare -- --catalog N\n\
             each takes --json FILE: append the results as one JSON line to FILE"
        );
        return ExitCode::SUCCESS;
    };
    if options.storm > 0 {
        let (report, record) = storm(options.storm, options.storm_mib);
        println!("{report}");
        append_json(&options, &record);
        return ExitCode::SUCCESS;
    }
    if options.catalog > 0 {
        let (report, record) = catalog(options.catalog);
        println!("{report}");
        append_json(&options, &record);
        return ExitCode::SUCCESS;
    }
    let work = tempfile::tempdir().expect("temp dir");
    let layout = push_pull::three_layer_image(&work.path().join("layout"), options.layer_mib);

    let s3 = S3Server::start();
    let mut results = Vec::new();
    for server in [Server::Wharf, Server::DockerRegistry] {
        let m = run_server(server, &s3, &layout.dir, &options, work.path());
        results.push((server, m));
    }

    let total_mib = 3 * options.layer_mib;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# S3: wharf vs docker-registry 2.8.2 on moto_server (loopback)\n\n\
         Image: 3 layers of {} MiB (random, uncompressed tar) + config, OCI manifest; \
         `skopeo copy` in and out, redirects on (pull GETs go to S3 directly); \
         median of {} rounds, fresh bucket each round.\n",
        options.layer_mib, options.rounds
    );
    let _ = writeln!(
        report,
        "| server | push s (median) | pull s (median) | push MiB/s | S3 requests, push | S3 requests, pull |\n|---|---|---|---|---|---|"
    );
    for (server, m) in &results {
        let push = median(&m.push);
        let _ = writeln!(
            report,
            "| {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            match server {
                Server::Wharf => "wharf",
                Server::DockerRegistry => "docker-registry 2.8.2",
            },
            push,
            median(&m.pull),
            total_mib as f64 / push,
            m.push_requests.0,
            m.pull_requests.0
        );
    }
    for (server, m) in &results {
        push_pull::write_by_operation(
            &mut report,
            &format!("\n{server:?}: S3 requests of one push, by operation"),
            &m.push_requests.1,
        );
        push_pull::write_by_operation(
            &mut report,
            &format!("{server:?}: S3 requests of one pull, by operation"),
            &m.pull_requests.1,
        );
    }
    push_pull::save_report("s3-compare", &report);
    let servers: Vec<serde_json::Value> = results
        .iter()
        .map(|(server, m)| {
            serde_json::json!({
                "server": match server {
                    Server::Wharf => "wharf",
                    Server::DockerRegistry => "distribution",
                },
                "push_s": median(&m.push),
                "pull_s": median(&m.pull),
                "push_requests": m.push_requests.0,
                "push_by_operation": m.push_requests.1,
                "pull_requests": m.pull_requests.0,
                "pull_by_operation": m.pull_requests.1,
            })
        })
        .collect();
    append_json(
        &options,
        &serde_json::json!({
            "kind": "push-pull",
            "layer_mib": options.layer_mib,
            "rounds": options.rounds,
            "servers": servers,
        }),
    );
    ExitCode::SUCCESS
}
