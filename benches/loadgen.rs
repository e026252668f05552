//! Load generator for the Docker Registry V2 HTTP API, used by `benches/compare.sh` to compare
//! Wharf with CNCF distribution. One run = one workload against one registry, and one JSON
//! result line on stdout. See `benches/README.md`.
//!
//! ```text
//! cargo bench --bench loadgen -- --url http://127.0.0.1:5000 --workload push-mono \
//!     --size 64MiB --streams 8 --duration 10s
//! ```
//!
//! With no arguments (as a plain `cargo bench` runs it) it prints its usage and exits 0.

#[path = "loadgen/client.rs"]
mod client;
#[path = "loadgen/content.rs"]
mod content;
#[path = "loadgen/null_server.rs"]
mod null_server;
#[path = "loadgen/report.rs"]
mod report;
#[path = "loadgen/stats.rs"]
mod stats;
#[path = "loadgen/targets.rs"]
mod targets;
#[path = "loadgen/workloads.rs"]
mod workloads;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser};

use client::{Conn, OutBody, Result, Target, TlsOptions};
use workloads::{Phase, Settings, Workload};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Docker Registry V2 load generator: one workload, one loopback registry, one JSON result line",
    after_help = "Sizes take B, KiB, MiB, GiB (or k, M, G); durations take ms, s, m.\n\
                  Only loopback targets (127.0.0.0/8, localhost, [::1]) are accepted."
)]
struct Cli {
    /// Registry base URL, e.g. http://127.0.0.1:5000 or https://127.0.0.1:5443
    #[arg(long)]
    url: Option<String>,
    /// PEM file of the CA to trust for an https:// --url
    #[arg(long)]
    cacert: Option<String>,
    /// With TLS, resume sessions (tickets from earlier connections); by default every new
    /// connection makes a full handshake
    #[arg(long)]
    tls_resume: bool,
    #[arg(long, value_enum)]
    workload: Option<Workload>,
    /// Concurrent streams (connections) [default: per workload: push-mono 1, push-chunked 4,
    /// pull 1, range 8, manifest-get/blob-head 64, small-push 32, catalog/tags 4,
    /// slow-uploads 200, handshake 16]
    #[arg(long)]
    streams: Option<usize>,
    /// Blob size [default: 64MiB; small-push 4KiB]
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// PATCH size for push-chunked
    #[arg(long, value_parser = parse_size, default_value = "8MiB")]
    chunk: u64,
    /// Time bound of the measurement; for slow-uploads, how long each upload trickles
    /// [default: 10s; small-push 120s]
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Count bound on operations [default: small-push 2000, others unbounded but for time]
    #[arg(long)]
    count: Option<u64>,
    /// Seeded blobs that pull and range read
    #[arg(long, default_value_t = 4)]
    blobs: u64,
    /// Bytes per ranged GET
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    range_size: u64,
    /// Repositories seeded for catalog
    #[arg(long, default_value_t = 1000)]
    repos: u64,
    /// Tags seeded for tags
    #[arg(long, default_value_t = 1000)]
    tags: u64,
    /// Bytes each slow upload sends per --interval
    #[arg(long, value_parser = parse_size, default_value = "1KiB")]
    trickle: u64,
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    interval: Duration,
    /// Timeout of one operation (for slow-uploads, added to --duration)
    #[arg(long, value_parser = parse_duration, default_value = "120s")]
    timeout: Duration,
    /// Only seed what the workload reads (deterministic), print a seed line, exit
    #[arg(long, conflicts_with = "no_seed")]
    seed_only: bool,
    /// Measure without seeding, reading what a --seed-only run left
    #[arg(long)]
    no_seed: bool,
    /// Wait until GET /v2/ answers 200 or 401 (up to --duration), then exit 0, else 1
    #[arg(long, requires = "url")]
    wait_ready: bool,
    /// Serve as the do-nothing server (the read workloads' ceiling) on 127.0.0.1:PORT: GETs
    /// answer --size bytes from memory; runs until stopped
    #[arg(long, value_name = "PORT")]
    null_server: Option<u16>,
    /// Print a free 127.0.0.1 TCP port and exit
    #[arg(long)]
    free_port: bool,
    /// Render compare.sh records (JSON lines) into the comparison table; see --title, --out-md,
    /// --out-json
    #[arg(long, value_name = "RECORDS")]
    report: Option<String>,
    /// With --report: the S3 workloads' records (`s3_compare --json`) to add to the table
    #[arg(long, value_name = "S3_RECORDS", requires = "report")]
    s3: Option<String>,
    #[arg(long, default_value = "Wharf vs distribution")]
    title: String,
    #[arg(long)]
    out_md: Option<String>,
    #[arg(long)]
    out_json: Option<String>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// `64MiB` -> 67108864. Binary units; a bare number is bytes.
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| format!("bad size {text:?}"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "k" | "K" | "KB" | "KiB" => 10,
        "m" | "M" | "MB" | "MiB" => 20,
        "g" | "G" | "GB" | "GiB" => 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} (use B, KiB, MiB, GiB)"
            ))
        }
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("size {text:?} too large"))
}

/// `100ms`, `10s`, `1.5s`, `2m`; a bare number is seconds.
fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("bad duration {text:?}: {e}"))
}

fn settings(cli: &Cli, workload: Workload) -> Result<Settings> {
    let size = cli.size.unwrap_or(workload.default_size());
    if size < content::SUFFIX {
        return Err(format!("--size must be at least {} bytes", content::SUFFIX).into());
    }
    let streams = cli.streams.unwrap_or(workload.default_streams());
    if streams == 0 || cli.chunk == 0 || cli.range_size == 0 || cli.blobs == 0 || cli.trickle == 0 {
        return Err(
            "--streams, --chunk, --range-size, --blobs and --trickle must be positive".into(),
        );
    }
    let default_count = match workload {
        Workload::SmallPush => 2000,
        _ => u64::MAX,
    };
    Ok(Settings {
        workload,
        streams,
        size,
        chunk: cli.chunk,
        duration: cli.duration.unwrap_or(workload.default_duration()),
        count: cli.count.unwrap_or(default_count),
        blobs: cli.blobs,
        range_size: cli.range_size,
        repos: cli.repos,
        tags: cli.tags,
        trickle: cli.trickle,
        interval: cli.interval,
        timeout: cli.timeout,
        phase: match (cli.seed_only, cli.no_seed) {
            (true, _) => Phase::SeedOnly,
            (_, true) => Phase::RunOnly,
            _ => Phase::All,
        },
    })
}

/// Polls `GET /v2/` until the registry answers 200 or 401, or `limit` passes.
async fn wait_ready(target: Arc<Target>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut conn = Conn::new(target);
    while Instant::now() < deadline {
        let attempt = tokio::time::timeout(Duration::from_secs(2), async {
            let response = conn
                .send(http::Method::GET, "/v2/", &[], OutBody::empty())
                .await?;
            let status = response.status();
            client::drain(response).await?;
            Result::Ok(status)
        })
        .await;
        match attempt {
            Ok(Ok(status)) if status == 200 || status == 401 => return true,
            _ => conn.reset(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn tls_options(cli: &Cli) -> TlsOptions {
    TlsOptions {
        ca: cli.cacert.clone(),
        resume: cli.tls_resume,
    }
}

fn report(cli: &Cli, records: &str) -> Result<()> {
    let text = std::fs::read_to_string(records).map_err(|e| format!("{records}: {e}"))?;
    let s3 = match &cli.s3 {
        Some(path) => Some(std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?),
        None => None,
    };
    let (markdown, summary) = report::render(&text, &cli.title, s3.as_deref())?;
    print!("{markdown}");
    if let Some(path) = &cli.out_md {
        std::fs::write(path, &markdown)?;
    }
    if let Some(path) = &cli.out_json {
        std::fs::write(path, serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<ExitCode> {
    if cli.free_port {
        println!("{}", TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(port) = cli.null_server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        runtime.block_on(null_server::serve(port, cli.size.unwrap_or(64 << 20)))?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(records) = &cli.report {
        report(&cli, records)?;
        return Ok(ExitCode::SUCCESS);
    }
    if let (true, Some(url)) = (cli.wait_ready, &cli.url) {
        let target = Arc::new(Target::parse(url, &tls_options(&cli))?);
        let limit = cli.duration.unwrap_or(Duration::from_secs(10));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let ready = runtime.block_on(wait_ready(target, limit));
        return Ok(if ready {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let (Some(url), Some(workload)) = (&cli.url, cli.workload) else {
        // No workload: what `cargo bench` does. Start nothing, explain, succeed.
        Cli::command().print_help()?;
        println!();
        return Ok(ExitCode::SUCCESS);
    };
    let target = Arc::new(Target::parse(url, &tls_options(&cli))?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let settings = settings(&cli, workload)?;
    let mut line = runtime.block_on(workloads::run(target, &settings))?;
    line["url"] = url.as_str().into();
    if url.starts_with("https://") {
        line["tls_resume"] = cli.tls_resume.into();
    }
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("loadgen: {error}");
            ExitCode::FAILURE
        }
    }
}
