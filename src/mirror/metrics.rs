//! Pull-through cache metrics, per upstream (`wharf_mirror_*`).

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};

/// The mirror's metrics, registered once in the default registry.
pub struct MirrorMetrics {
    /// Requests answered from the cache, by upstream and kind (`manifest`, `blob`).
    pub hits: IntCounterVec,
    /// Requests that fetched from the upstream, by upstream and kind.
    pub misses: IntCounterVec,
    /// Requests that waited for another request's (or node's) fetch, by upstream and kind.
    pub coalesced: IntCounterVec,
    /// Cached tags served because the upstream could not be asked, by upstream.
    pub stale: IntCounterVec,
    /// Requests sent upstream, by upstream and method.
    pub upstream_requests: IntCounterVec,
    /// Body bytes received from upstream, by upstream.
    pub upstream_bytes: IntCounterVec,
    /// Upstream failures, by upstream and status (`none` when nothing answered).
    pub upstream_errors: IntCounterVec,
    /// Fetched content refused for not matching its digest, by upstream.
    pub digest_mismatches: IntCounterVec,
    /// Cached content removed when its time to live ran out, by kind.
    pub expired: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    let _ = prometheus::register(Box::new(v.clone()));
    v
}

/// The process-wide mirror metrics.
pub static METRICS: LazyLock<MirrorMetrics> = LazyLock::new(|| MirrorMetrics {
    hits: counter(
        "wharf_mirror_hits_total",
        "Pull-through requests answered from the cache",
        &["upstream", "kind"],
    ),
    misses: counter(
        "wharf_mirror_misses_total",
        "Pull-through requests that fetched from the upstream",
        &["upstream", "kind"],
    ),
    coalesced: counter(
        "wharf_mirror_coalesced_waits_total",
        "Pull-through requests that waited for a fetch already under way",
        &["upstream", "kind"],
    ),
    stale: counter(
        "wharf_mirror_stale_serves_total",
        "Cached tags served without the upstream's confirmation",
        &["upstream"],
    ),
    upstream_requests: counter(
        "wharf_mirror_upstream_requests_total",
        "Requests sent to an upstream (token requests and redirects included)",
        &["upstream", "method"],
    ),
    upstream_bytes: counter(
        "wharf_mirror_upstream_bytes_total",
        "Body bytes received from an upstream",
        &["upstream"],
    ),
    upstream_errors: counter(
        "wharf_mirror_upstream_errors_total",
        "Upstream failures by status (none: no answer)",
        &["upstream", "status"],
    ),
    digest_mismatches: counter(
        "wharf_mirror_digest_mismatches_total",
        "Upstream content refused for not matching its digest",
        &["upstream"],
    ),
    expired: counter(
        "wharf_mirror_expired_total",
        "Cached content removed at the end of its time to live",
        &["kind"],
    ),
});
