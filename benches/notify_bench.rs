//! Notification costs, measured against real processes: how many events per second one node
//! delivers to a fast receiver, and what recording an event adds to a manifest PUT (two
//! registries on the same machine in the same run, one with an endpoint, one without).
//!
//! ```text
//! cargo bench --bench notify_bench
//! ```

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::receiver::Receiver;
use support::*;

const PUTS: usize = 300;

fn manifest(config: &Blob, layer: &Blob, n: usize) -> Manifest {
    image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, config),
        &[(OCI_LAYER, layer)],
        Some(serde_json::json!({"annotations": {"n": n.to_string()}})),
    )
}

/// Median and 99th percentile of PUT latencies, in milliseconds.
fn put_latencies(reg: &Registry, repo: &str) -> (f64, f64) {
    let config = Blob::random(200);
    let layer = Blob::random(2000);
    push(reg, repo, &config);
    push(reg, repo, &layer);
    let mut times = Vec::with_capacity(PUTS);
    for i in 0..PUTS {
        let m = manifest(&config, &layer, i);
        let started = Instant::now();
        put_manifest(reg, repo, &format!("t{i}"), &m).assert_status(201);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    (times[PUTS / 2], times[PUTS * 99 / 100])
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mut receiver = Receiver::start();
    let section = format!(
        "notifications:\n  endpoints:\n    - name: bench\n      url: {}\n      ignore:\n        mediatypes: [application/octet-stream]\n",
        receiver.url("/bench")
    );
    let with = Registry::builder(Driver::Filesystem)
        .debug_server(true)
        .section(&section)
        .start();
    let without = Registry::builder(Driver::Filesystem).start();
    // Interleaved so both see the same machine load.
    let (off_p50, off_p99) = put_latencies(&without, "bench/off");
    let (on_p50, on_p99) = put_latencies(&with, "bench/on");
    let (off2_p50, off2_p99) = put_latencies(&without, "bench/off2");
    println!(
        "manifest PUT latency, ms: notifications off p50 {:.2} p99 {:.2}; on p50 {on_p50:.2} p99 {on_p99:.2}",
        (off_p50 + off2_p50) / 2.0,
        off_p99.max(off2_p99)
    );
    // Delivery rate: a backlog recorded while the receiver is away, then drained.
    receiver.wait_events("/bench", PUTS, Duration::from_secs(60));
    receiver.stop();
    let config = Blob::random(200);
    let layer = Blob::random(2000);
    push(&with, "bench/rate", &config);
    push(&with, "bench/rate", &layer);
    const BACKLOG: usize = 2000;
    for i in 0..BACKLOG {
        put_manifest(
            &with,
            "bench/rate",
            &format!("r{i}"),
            &manifest(&config, &layer, i),
        )
        .assert_status(201);
    }
    let before = receiver.accepted_events("/bench").len();
    receiver.restart();
    let started = Instant::now();
    let done = wait_until(Duration::from_secs(300), || {
        receiver.accepted_events("/bench").len() >= before + BACKLOG
    });
    let elapsed = started.elapsed().as_secs_f64();
    let delivered = receiver.accepted_events("/bench").len() - before;
    println!(
        "delivery: {delivered} events in {elapsed:.2} s = {:.0} events/s (all delivered: {done})",
        delivered as f64 / elapsed
    );
}
