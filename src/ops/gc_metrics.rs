//! Metrics of online garbage collection, registered on first use in the process-wide registry
//! beside the others.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};

struct GcMetrics {
    runs: IntCounterVec,
    blobs_deleted: IntCounter,
    bytes_deleted: IntCounter,
    manifests_deleted: IntCounter,
    duration: Histogram,
    last_success: Gauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(c: T) -> T {
    prometheus::register(Box::new(c.clone())).expect("gc metric registered once");
    c
}

static METRICS: LazyLock<GcMetrics> = LazyLock::new(|| {
    GcMetrics {
    runs: register(
        IntCounterVec::new(
            Opts::new(
                "wharf_gc_runs_total",
                "Garbage-collection passes run by this node, by result (success, failure, lost_lease).",
            ),
            &["result"],
        )
        .expect("valid counter"),
    ),
    blobs_deleted: register(
        IntCounter::new("wharf_gc_blobs_deleted_total", "Blobs deleted by garbage collection.")
            .expect("valid counter"),
    ),
    bytes_deleted: register(
        IntCounter::new(
            "wharf_gc_bytes_deleted_total",
            "Bytes of blob data deleted by garbage collection.",
        )
        .expect("valid counter"),
    ),
    manifests_deleted: register(
        IntCounter::new(
            "wharf_gc_manifests_deleted_total",
            "Untagged manifests deleted by garbage collection.",
        )
        .expect("valid counter"),
    ),
    duration: register(
        Histogram::with_opts(
            HistogramOpts::new(
                "wharf_gc_duration_seconds",
                "Wall time of garbage-collection passes run by this node.",
            )
            .buckets(vec![0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0]),
        )
        .expect("valid histogram"),
    ),
    last_success: register(
        Gauge::new(
            "wharf_gc_last_success_timestamp_seconds",
            "End of this node's last successful pass, seconds since the Unix epoch.",
        )
        .expect("valid gauge"),
    ),
}
});

/// Registers the metrics so a scrape lists them before the first pass.
pub fn init() {
    LazyLock::force(&METRICS);
}

/// Records one pass, finished or stopped, with what it deleted.
pub fn pass(
    result: &str,
    elapsed: Duration,
    blobs: usize,
    bytes: u64,
    manifests: usize,
    dry_run: bool,
) {
    let m = &*METRICS;
    m.runs.with_label_values(&[result]).inc();
    m.duration.observe(elapsed.as_secs_f64());
    // A pass that stopped part-way still deleted what it deleted.
    if !dry_run {
        m.blobs_deleted.inc_by(blobs as u64);
        m.bytes_deleted.inc_by(bytes);
        m.manifests_deleted.inc_by(manifests as u64);
    }
    if result == "success" {
        m.last_success.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
    }
}
