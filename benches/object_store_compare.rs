//! Push and pull through Wharf on each object store's emulator in one run (S3 on moto, Azure
//! Blob on Azurite, GCS on fake-gcs-server, Swift on a single-node Swift, all on loopback), and
//! the storage calls each push and pull makes, counted by Wharf itself
//! (`wharf_external_call_seconds_count{system=...}`).
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

#[path = "support/push_pull.rs"]
mod push_pull;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use push_pull::{delta, median, timed, Calls};
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
    let (rounds, layer_mib) = push_pull::rounds_and_layer_mib(&args);
    Some(Options { rounds, layer_mib })
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

struct Measure {
    push: Vec<Duration>,
    pull: Vec<Duration>,
    push_calls: Calls,
    pull_calls: Calls,
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

fn main() -> ExitCode {
    let Some(options) = parse() else {
        println!(
            "object_store_compare: push/pull through wharf on moto (S3), Azurite (Azure Blob),\n\
             fake-gcs-server (GCS) and a single-node Swift, and the storage calls of one\n\
             `skopeo copy` of a 3-layer image.\n\
             usage: cargo bench --bench object_store_compare -- --run [--rounds N] [--layer-mib M]"
        );
        return ExitCode::SUCCESS;
    };
    let work = tempfile::tempdir().expect("temp dir");
    let layout = push_pull::three_layer_image(&work.path().join("layout"), options.layer_mib);

    let stores = [
        (Driver::S3, "s3", "S3 on moto_server"),
        (Driver::Azure, "azure", "Azure Blob on Azurite"),
        (Driver::Gcs, "gcs", "GCS on fake-gcs-server"),
        (Driver::Swift, "swift", "Swift (single node, tempauth)"),
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
        push_pull::write_by_operation(
            &mut report,
            &format!("\n{name}: calls of one push, by operation"),
            &m.push_calls,
        );
        push_pull::write_by_operation(
            &mut report,
            &format!("{name}: calls of one pull, by operation"),
            &m.pull_calls,
        );
    }
    push_pull::save_report("object-store-compare", &report);
    ExitCode::SUCCESS
}
