//! Push and pull through Wharf on each object store's emulator in one run (S3 on moto, Azure
//! Blob on Azurite, GCS on fake-gcs-server, all on loopback), and the storage calls each push
//! and pull makes, counted by Wharf itself (`wharf_external_call_seconds_count{system=...}`).
//!
//! ```sh
//! cargo bench --bench object_store_compare -- --run                  # 3 rounds, 3 layers of 4 MiB
//! cargo bench --bench object_store_compare -- --run --rounds 5 --layer-mib 8
//! ```
//! Without `--run` it prints this usage and exits (so `cargo test --all-targets` starts nothing).
//! Results: stdout and `target/bench-results/object-store-compare-<unix time>.md`. The emulators
//! are not the services: the figures compare request counts and the driver's overhead on one
//! machine, not cloud throughput.

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::metrics::Scrape;
use support::*;

struct Options {
    rounds: usize,
    layer_mib: usize,
}

fn parse() -> Option<Options> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--run") {
        return None;
    }
    let value = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Some(Options {
        rounds: value("--rounds", 3).max(1),
        layer_mib: value("--layer-mib", 4).max(1),
    })
}

/// Storage calls by operation, of the driver's system, from a scrape.
fn calls(scrape: &Scrape, system: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (labels, value) in
        scrape.matching("wharf_external_call_seconds_count", &[("system", system)])
    {
        let op = labels.get("operation").cloned().unwrap_or_default();
        *out.entry(op).or_insert(0.0) += value;
    }
    out
}

/// `after - before`, operations that did not change left out.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, usize> {
    after
        .iter()
        .map(|(op, n)| {
            (
                op.clone(),
                (n - before.get(op).unwrap_or(&0.0)).round() as usize,
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

struct Measure {
    push: Vec<Duration>,
    pull: Vec<Duration>,
    push_calls: BTreeMap<String, usize>,
    pull_calls: BTreeMap<String, usize>,
}

fn timed(copy: impl FnOnce()) -> Duration {
    let started = Instant::now();
    copy();
    started.elapsed()
}

fn run_store(driver: Driver, system: &str, layout: &Path, rounds: usize, work: &Path) -> Measure {
    let mut m = Measure {
        push: Vec::new(),
        pull: Vec::new(),
        push_calls: BTreeMap::new(),
        pull_calls: BTreeMap::new(),
    };
    for round in 0..rounds {
        // A fresh bucket or container each round: every push writes every blob.
        let target = StoreTarget::fresh(driver);
        let reg = target
            .builder()
            .redirect(true)
            .debug_server(true)
            .log_section("log:\n  level: error\n  accesslog:\n    disabled: true\n")
            .start();
        let before = calls(&reg.scrape(), system);
        m.push.push(timed(|| {
            copy_in(&reg, layout, "image", "bench/image:v1", false)
        }));
        let pushed = calls(&reg.scrape(), system);
        let out = work.join(format!("{driver:?}-{round}"));
        m.pull.push(timed(|| {
            copy_out(&reg, "bench/image:v1", &oci_ref(&out, "image"), false)
        }));
        let pulled = calls(&reg.scrape(), system);
        if round == 0 {
            m.push_calls = delta(&before, &pushed);
            m.pull_calls = delta(&pushed, &pulled);
        }
    }
    m
}

fn median(values: &[Duration]) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|d| d.as_secs_f64()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let Some(options) = parse() else {
        println!(
            "object_store_compare: push/pull through wharf on moto (S3), Azurite (Azure Blob) and\n\
             fake-gcs-server (GCS), and the storage calls of one `skopeo copy` of a 3-layer image.\n\
             usage: cargo bench --bench object_store_compare -- --run [--rounds N] [--layer-mib M]"
        );
        return ExitCode::SUCCESS;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let mut layout = OciLayout::create(&work.path().join("layout"));
    let mut prng = Prng::new(0x5eed);
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..3 {
        let content = prng.bytes(options.layer_mib << 20);
        let tar = layout::tar_with_file(&format!("layer{i}.bin"), &content);
        let digest = layout.add_blob(&tar);
        diff_ids.push(digest.clone());
        layers.push(descriptor(
            "application/vnd.oci.image.layer.v1.tar",
            &digest,
            tar.len() as u64,
        ));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = layout.add_blob(&config);
    let manifest = Manifest::from_value(
        OCI_MANIFEST,
        &serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
            "layers": layers,
        }),
    );
    layout.add_blob(&manifest.body);
    layout.tag("image", &manifest);

    let stores = [
        (Driver::S3, "s3", "S3 on moto_server"),
        (Driver::Azure, "azure", "Azure Blob on Azurite"),
        (Driver::Gcs, "gcs", "GCS on fake-gcs-server"),
    ];
    let mut results = Vec::new();
    for (driver, system, name) in stores {
        let m = run_store(driver, system, &layout.dir, options.rounds, work.path());
        results.push((name, m));
    }

    let total_mib = 3 * options.layer_mib;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "# Wharf on each object store's emulator (loopback)\n\n\
         Image: 3 layers of {} MiB (random, uncompressed tar) + config, OCI manifest; \
         `skopeo copy` in and out, redirects on (pull GETs go to the store directly); \
         median of {} rounds, fresh bucket or container each round; storage calls counted \
         by Wharf.\n",
        options.layer_mib, options.rounds
    );
    let _ = writeln!(
        report,
        "| store | push s (median) | pull s (median) | push MiB/s | pull MiB/s | calls, push | calls, pull |\n|---|---|---|---|---|---|---|"
    );
    for (name, m) in &results {
        let (push, pull) = (median(&m.push), median(&m.pull));
        let _ = writeln!(
            report,
            "| {name} | {push:.2} | {pull:.2} | {:.1} | {:.1} | {} | {} |",
            total_mib as f64 / push,
            total_mib as f64 / pull,
            m.push_calls.values().sum::<usize>(),
            m.pull_calls.values().sum::<usize>()
        );
    }
    for (name, m) in &results {
        let _ = writeln!(report, "\n{name}: calls of one push, by operation");
        for (op, n) in &m.push_calls {
            let _ = writeln!(report, "- {op}: {n}");
        }
        let _ = writeln!(report, "{name}: calls of one pull, by operation");
        for (op, n) in &m.pull_calls {
            let _ = writeln!(report, "- {op}: {n}");
        }
    }
    println!("{report}");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    let _ = std::fs::create_dir_all(&dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let file = dir.join(format!("object-store-compare-{stamp}.md"));
    if std::fs::write(&file, &report).is_ok() {
        println!("written to {}", file.display());
    }
    ExitCode::SUCCESS
}
