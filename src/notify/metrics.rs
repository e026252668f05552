//! Notification metrics, per endpoint: distribution 3.x's names where it has them
//! (`registry_notifications_*`), `wharf_notifications_*` for what the durable queue adds.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// The notification metrics, registered once in the default registry.
pub struct NotifyMetrics {
    /// Events recorded for delivery, by endpoint and action.
    pub events: IntCounterVec,
    /// Failed delivery attempts (transport errors, timeouts, non-2xx), by endpoint.
    pub errors: IntCounterVec,
    /// Receiver answers by status code and endpoint.
    pub status: IntCounterVec,
    /// Events waiting in the queue, as the deliverer last saw them.
    pub pending: IntGaugeVec,
    /// Time from POST to the receiver's answer, by endpoint.
    pub latency: HistogramVec,
    /// Events delivered (2xx) by this node.
    pub delivered: IntCounterVec,
    /// Events dropped, by endpoint and reason (`backlog`).
    pub dropped: IntCounterVec,
    /// Events that could not be recorded (storage failed); the request was answered anyway.
    pub record_failures: IntCounterVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let v = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    let _ = prometheus::register(Box::new(v.clone()));
    v
}

/// The process-wide notification metrics.
pub static METRICS: LazyLock<NotifyMetrics> = LazyLock::new(|| {
    let pending = IntGaugeVec::new(
        Opts::new(
            "registry_notifications_pending",
            "Events waiting to be delivered, per endpoint",
        ),
        &["endpoint"],
    )
    .expect("valid gauge");
    let _ = prometheus::register(Box::new(pending.clone()));
    let latency = HistogramVec::new(
        HistogramOpts::new(
            "registry_notifications_delivery_duration_seconds",
            "Time from sending an event to the receiver's answer",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["endpoint"],
    )
    .expect("valid histogram");
    let _ = prometheus::register(Box::new(latency.clone()));
    NotifyMetrics {
        events: counter(
            "registry_notifications_events_total",
            "Events recorded for delivery",
            &["endpoint", "action"],
        ),
        errors: counter(
            "registry_notifications_errors_total",
            "Failed delivery attempts",
            &["endpoint"],
        ),
        status: counter(
            "registry_notifications_status_total",
            "Receiver answers by status code",
            &["code", "endpoint"],
        ),
        pending,
        latency,
        delivered: counter(
            "wharf_notifications_delivered_total",
            "Events a receiver accepted from this node",
            &["endpoint"],
        ),
        dropped: counter(
            "wharf_notifications_dropped_total",
            "Events dropped without delivery",
            &["endpoint", "reason"],
        ),
        record_failures: counter(
            "wharf_notifications_record_failures_total",
            "Events that could not be recorded; the request was still answered",
            &["endpoint"],
        ),
    }
});
