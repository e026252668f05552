//! Prometheus metrics: distribution's names and labels where it has them (so
//! existing dashboards keep working), `wharf_*` for what a cluster operator
//! needs beyond them. Everything lives in the process-wide default registry,
//! which also carries the `process_*` collector (CPU, RSS, open fds).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    exponential_buckets, CounterVec, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts,
    HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, TextEncoder,
};

/// Request duration buckets, in seconds: 5 ms up to a 10-minute layer push.
const DURATION_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0,
];
/// Storage and external call buckets, in seconds.
const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Every metric Wharf exports, registered once.
struct Metrics {
    requests: IntCounterVec,
    request_duration: HistogramVec,
    in_flight: IntGaugeVec,
    request_size: HistogramVec,
    response_size: HistogramVec,
    storage_action: HistogramVec,
    storage_errors: IntCounterVec,
    cache_requests: IntCounter,
    cache_hits: IntCounter,
    cache_errors: IntCounter,
    cache_redis: HistogramVec,
    bytes_pushed: IntCounter,
    bytes_pulled: IntCounter,
    uploads_in_progress: IntGauge,
    uploads: IntCounterVec,
    upload_token_rejected: IntCounter,
    external_call: HistogramVec,
    external_errors: IntCounterVec,
    health_check: IntGaugeVec,
    ready: IntGauge,
    draining: IntGauge,
    build_info: GaugeVec,
    start_time: Gauge,
    traces_exported: CounterVec,
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let vec = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram");
    prometheus::register(Box::new(vec.clone())).expect("histogram registered once");
    vec
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    prometheus::register(Box::new(vec.clone())).expect("counter registered once");
    vec
}

fn counter(name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid counter");
    prometheus::register(Box::new(c.clone())).expect("counter registered once");
    c
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    prometheus::register(Box::new(vec.clone())).expect("gauge registered once");
    vec
}

fn gauge(name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    prometheus::register(Box::new(g.clone())).expect("gauge registered once");
    g
}

impl Metrics {
    fn register() -> Self {
        let sizes = exponential_buckets(256.0, 4.0, 12).expect("valid buckets");
        let build_info = GaugeVec::new(
            Opts::new(
                "wharf_build_info",
                "Always 1; the labels name the running build.",
            ),
            &["version", "revision"],
        )
        .expect("valid gauge");
        prometheus::register(Box::new(build_info.clone())).expect("registered once");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("WHARF_GIT_REVISION").unwrap_or("unknown"),
            ])
            .set(1.0);
        let start_time = Gauge::new(
            "wharf_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds.",
        )
        .expect("valid gauge");
        prometheus::register(Box::new(start_time.clone())).expect("registered once");
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        let traces_exported = CounterVec::new(
            Opts::new(
                "wharf_trace_export_batches_total",
                "Batches of spans sent to the OTLP endpoint, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid counter");
        prometheus::register(Box::new(traces_exported.clone())).expect("registered once");
        Metrics {
            requests: counter_vec(
                "registry_http_requests_total",
                "Total number of HTTP requests made.",
                &["code", "method", "handler"],
            ),
            request_duration: histogram(
                "registry_http_request_duration_seconds",
                "The HTTP request latencies in seconds.",
                &["method", "handler"],
                DURATION_BUCKETS.to_vec(),
            ),
            in_flight: gauge_vec(
                "registry_http_in_flight_requests",
                "The in-flight HTTP requests.",
                &["handler"],
            ),
            request_size: histogram(
                "registry_http_request_size_bytes",
                "The HTTP request sizes in bytes.",
                &["handler"],
                sizes.clone(),
            ),
            response_size: histogram(
                "registry_http_response_size_bytes",
                "The HTTP response sizes in bytes.",
                &["handler"],
                sizes,
            ),
            storage_action: histogram(
                "registry_storage_action_seconds",
                "The number of seconds that the storage action takes.",
                &["driver", "action"],
                CALL_BUCKETS.to_vec(),
            ),
            storage_errors: counter_vec(
                "wharf_storage_errors_total",
                "Storage driver calls that failed (a missing path is not a failure).",
                &["driver", "action"],
            ),
            cache_requests: counter(
                "registry_storage_cache_requests_total",
                "The number of cache request received.",
            ),
            cache_hits: counter(
                "registry_storage_cache_hits_total",
                "The number of cache request received.",
            ),
            cache_errors: counter(
                "registry_storage_cache_errors_total",
                "The number of cache request received.",
            ),
            cache_redis: histogram(
                "registry_storage_cache_redis_seconds",
                "The number of seconds that the redis cache operation takes.",
                &["operation"],
                CALL_BUCKETS.to_vec(),
            ),
            bytes_pushed: counter(
                "wharf_blob_bytes_pushed_total",
                "Blob bytes received from clients and committed to upload sessions.",
            ),
            bytes_pulled: counter(
                "wharf_blob_bytes_pulled_total",
                "Blob bytes sent to clients by blob GET requests.",
            ),
            uploads_in_progress: gauge(
                "wharf_uploads_in_progress",
                "Upload requests (POST, PATCH, PUT) this node is handling right now.",
            ),
            uploads: counter_vec(
                "wharf_uploads_total",
                "Upload sessions by event: started, completed, cancelled.",
                &["event"],
            ),
            upload_token_rejected: counter(
                "wharf_upload_token_rejected_total",
                "Upload requests refused because their _state token did not verify \
                 (missing, tampered, or signed with another http.secret).",
            ),
            external_call: histogram(
                "wharf_external_call_seconds",
                "Latency of calls to external systems (redis, s3), by operation.",
                &["system", "operation"],
                CALL_BUCKETS.to_vec(),
            ),
            external_errors: counter_vec(
                "wharf_external_call_errors_total",
                "Failed calls to external systems (redis, s3), by operation.",
                &["system", "operation"],
            ),
            health_check: gauge_vec(
                "wharf_health_check_healthy",
                "1 while the health check passes, 0 while it fails.",
                &["check"],
            ),
            ready: gauge(
                "wharf_ready",
                "1 while the node reports ready (healthy and not draining).",
            ),
            draining: gauge(
                "wharf_draining",
                "1 once the node has started draining for shutdown.",
            ),
            build_info,
            start_time,
            traces_exported,
        }
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::register);

/// Registers every metric, so a scrape lists them before first use.
pub fn init() {
    let m = &*METRICS;
    let _ = (&m.build_info, &m.start_time);
}

/// The name of every metric family this process exports, including the
/// `process_*` ones; families appear in a scrape once they have a sample.
pub fn names() -> Vec<String> {
    use prometheus::core::Collector;
    let m = &*METRICS;
    let collectors: Vec<&dyn Collector> = vec![
        &m.requests,
        &m.request_duration,
        &m.in_flight,
        &m.request_size,
        &m.response_size,
        &m.storage_action,
        &m.storage_errors,
        &m.cache_requests,
        &m.cache_hits,
        &m.cache_errors,
        &m.cache_redis,
        &m.bytes_pushed,
        &m.bytes_pulled,
        &m.uploads_in_progress,
        &m.uploads,
        &m.upload_token_rejected,
        &m.external_call,
        &m.external_errors,
        &m.health_check,
        &m.ready,
        &m.draining,
        &m.build_info,
        &m.start_time,
        &m.traces_exported,
    ];
    let process = prometheus::process_collector::ProcessCollector::for_self();
    collectors
        .into_iter()
        .chain(std::iter::once(&process as &dyn Collector))
        .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
        .collect()
}

/// The text exposition of every registered metric.
pub fn render() -> Vec<u8> {
    init();
    let mut out = Vec::new();
    let families = prometheus::gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
        tracing::warn!(error = %e, "could not encode metrics");
    }
    out
}

/// Content type of [`render`]'s output.
pub fn content_type() -> &'static str {
    prometheus::TEXT_FORMAT
}

/// A label value that is a string literal, known by its address: literals are the
/// handler, driver and action names, so a thread's cache of series needs no hashing of text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Literal(usize, usize);

impl Literal {
    fn of(s: &'static str) -> Self {
        Self(s.as_ptr() as usize, s.len())
    }
}

/// The series of one handler.
struct HandlerSeries {
    in_flight: IntGauge,
    request_size: Histogram,
    response_size: Histogram,
}

/// The series of one handler, method and status.
struct OutcomeSeries {
    requests: IntCounter,
    duration: Histogram,
}

/// Series already resolved by this thread. A vector's own lookup hashes every label value
/// and takes a lock that all threads share, several times per request.
#[derive(Default)]
struct ThreadSeries {
    handlers: HashMap<Literal, HandlerSeries>,
    outcomes: HashMap<(Literal, Literal, u16), OutcomeSeries>,
    storage: HashMap<(Literal, Literal), Histogram>,
}

thread_local! {
    static SERIES: RefCell<ThreadSeries> = RefCell::default();
}

/// Runs `f` on this thread's resolved series; on a thread whose cache is gone (it is
/// exiting) or in use, on series resolved afresh.
fn with_series(f: impl FnOnce(&mut ThreadSeries)) {
    let mut f = Some(f);
    let _ = SERIES.try_with(|cell| {
        if let (Ok(mut series), Some(f)) = (cell.try_borrow_mut(), f.take()) {
            f(&mut series);
        }
    });
    if let Some(f) = f {
        f(&mut ThreadSeries::default());
    }
}

/// Runs `f` on `handler`'s series.
fn with_handler(handler: &'static str, f: impl FnOnce(&HandlerSeries)) {
    with_series(|s| {
        let series = s.handlers.entry(Literal::of(handler)).or_insert_with(|| {
            let m = &*METRICS;
            HandlerSeries {
                in_flight: m.in_flight.with_label_values(&[handler]),
                request_size: m.request_size.with_label_values(&[handler]),
                response_size: m.response_size.with_label_values(&[handler]),
            }
        });
        f(series);
    });
}

/// Counts and times one finished request.
fn record_outcome(handler: &'static str, method: &http::Method, status: u16, seconds: f64) {
    let m = &*METRICS;
    let Some(label) = known_method_label(method) else {
        // An extension method: rare enough to look up each time.
        let method = method.as_str().to_ascii_lowercase();
        m.requests
            .with_label_values(&[&status.to_string(), &method, handler])
            .inc();
        m.request_duration
            .with_label_values(&[&method, handler])
            .observe(seconds);
        return;
    };
    with_series(|s| {
        let key = (Literal::of(handler), Literal::of(label), status);
        let series = s.outcomes.entry(key).or_insert_with(|| OutcomeSeries {
            requests: m
                .requests
                .with_label_values(&[&status.to_string(), label, handler]),
            duration: m.request_duration.with_label_values(&[label, handler]),
        });
        series.requests.inc();
        series.duration.observe(seconds);
    });
}

/// The method label of a standard method: distribution's promhttp lower-cases it.
fn known_method_label(method: &http::Method) -> Option<&'static str> {
    Some(match *method {
        http::Method::GET => "get",
        http::Method::HEAD => "head",
        http::Method::PUT => "put",
        http::Method::POST => "post",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        http::Method::OPTIONS => "options",
        http::Method::CONNECT => "connect",
        http::Method::TRACE => "trace",
        _ => return None,
    })
}

/// Tracks one HTTP request from its headers to the end of its response body:
/// like distribution's promhttp handlers, the request is counted, timed and
/// sized once its response has been sent.
pub struct RequestTimer {
    handler: &'static str,
    method: http::Method,
    started: std::time::Instant,
    upload: bool,
}

impl RequestTimer {
    /// Counts the request in flight under its handler label, from now.
    pub fn start(handler: &'static str, method: &http::Method, request_size: u64) -> Self {
        with_handler(handler, |series| {
            series.in_flight.inc();
            series.request_size.observe(request_size as f64);
        });
        let upload = matches!(handler, "blob_upload" | "blob_upload_chunk")
            && matches!(
                *method,
                http::Method::POST | http::Method::PATCH | http::Method::PUT
            );
        if upload {
            METRICS.uploads_in_progress.inc();
        }
        Self {
            handler,
            method: method.clone(),
            started: std::time::Instant::now(),
            upload,
        }
    }

    /// Records the finished request: status, duration, response bytes, and
    /// what it means for uploads and pulled bytes.
    pub fn complete(&self, status: u16, body_bytes: u64) {
        let m = &*METRICS;
        let seconds = self.started.elapsed().as_secs_f64();
        record_outcome(self.handler, &self.method, status, seconds);
        with_handler(self.handler, |series| {
            series.response_size.observe(body_bytes as f64)
        });
        let event = match (self.handler, &self.method, status) {
            ("blob_upload", &http::Method::POST, 202) => Some("started"),
            ("blob_upload" | "blob_upload_chunk", &http::Method::PUT, 201)
            | ("blob_upload", &http::Method::POST, 201) => Some("completed"),
            ("blob_upload_chunk", &http::Method::DELETE, 204) => Some("cancelled"),
            _ => None,
        };
        if let Some(event) = event {
            m.uploads.with_label_values(&[event]).inc();
        }
        if self.handler == "blob" && self.method == http::Method::GET && matches!(status, 200 | 206)
        {
            m.bytes_pulled.inc_by(body_bytes);
        }
    }
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        with_handler(self.handler, |series| series.in_flight.dec());
        if self.upload {
            METRICS.uploads_in_progress.dec();
        }
    }
}

/// Times one storage driver call (`GetContent`, `Stat`, ...).
pub fn storage_action(driver: &'static str, action: &'static str, elapsed: Duration, failed: bool) {
    with_series(|s| {
        s.storage
            .entry((Literal::of(driver), Literal::of(action)))
            .or_insert_with(|| METRICS.storage_action.with_label_values(&[driver, action]))
            .observe(elapsed.as_secs_f64());
    });
    if failed {
        METRICS
            .storage_errors
            .with_label_values(&[driver, action])
            .inc();
    }
}

/// Counts blob bytes committed into an upload session.
pub fn bytes_pushed(bytes: u64) {
    METRICS.bytes_pushed.inc_by(bytes);
}

/// Counts one blob-descriptor cache lookup, hit or miss.
pub fn cache_request(hit: bool) {
    let m = &*METRICS;
    m.cache_requests.inc();
    if hit {
        m.cache_hits.inc();
    }
}

/// Counts one blob-descriptor cache failure (the request then goes to storage).
pub fn cache_error() {
    METRICS.cache_errors.inc();
}

/// Counts one upload request whose `_state` token was refused.
pub fn upload_token_rejected() {
    METRICS.upload_token_rejected.inc();
}

/// Records one call to an external system (`redis`, `s3`): its latency and
/// whether it failed. Redis calls also feed distribution's
/// `registry_storage_cache_redis_seconds`.
pub fn external_call(system: &str, operation: &str, elapsed: Duration, ok: bool) {
    let m = &*METRICS;
    m.external_call
        .with_label_values(&[system, operation])
        .observe(elapsed.as_secs_f64());
    if !ok {
        m.external_errors
            .with_label_values(&[system, operation])
            .inc();
    }
    if system == "redis" {
        m.cache_redis
            .with_label_values(&[operation])
            .observe(elapsed.as_secs_f64());
    }
}

/// Publishes a health check's state.
pub fn health_check(check: &str, healthy: bool) {
    METRICS
        .health_check
        .with_label_values(&[check])
        .set(i64::from(healthy));
}

/// Publishes readiness and draining.
pub fn lifecycle(ready: bool, draining: bool) {
    let m = &*METRICS;
    m.ready.set(i64::from(ready));
    m.draining.set(i64::from(draining));
}

/// Counts one batch of spans sent to the trace collector.
pub fn trace_export(ok: bool) {
    METRICS
        .traces_exported
        .with_label_values(&[if ok { "ok" } else { "error" }])
        .inc();
}

/// A response body that completes the request's metrics when it ends or is
/// dropped (a client that disconnects mid-blob is counted for what it
/// received), and keeps the request counted in flight until then.
pub struct MeteredBody<B> {
    inner: B,
    sent: u64,
    status: u16,
    timer: Option<RequestTimer>,
}

impl<B> MeteredBody<B> {
    /// Wraps the body of a response with `status`.
    pub fn new(inner: B, timer: RequestTimer, status: u16) -> Self {
        Self {
            inner,
            sent: 0,
            status,
            timer: Some(timer),
        }
    }

    fn done(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.complete(self.status, self.sent);
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.done();
    }
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            std::task::Poll::Ready(None) => this.done(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> String {
        String::from_utf8(render()).unwrap()
    }

    #[test]
    fn exposes_distribution_names_and_labels() {
        let timer = RequestTimer::start("manifest", &http::Method::PUT, 10);
        timer.complete(201, 0);
        drop(timer);
        storage_action("inmemory", "PutContent", Duration::from_millis(1), false);
        cache_request(true);
        external_call("redis", "get", Duration::from_millis(1), false);
        let t = text();
        for needle in [
            r#"registry_http_requests_total{code="201",handler="manifest",method="put"} "#,
            r#"registry_http_request_duration_seconds_count{handler="manifest",method="put"} "#,
            r#"registry_http_in_flight_requests{handler="manifest"} 0"#,
            r#"registry_http_request_size_bytes_sum{handler="manifest"} "#,
            r#"registry_http_response_size_bytes_count{handler="manifest"} "#,
            r#"registry_storage_action_seconds_count{action="PutContent",driver="inmemory"} "#,
            "registry_storage_cache_requests_total ",
            "registry_storage_cache_hits_total ",
            r#"registry_storage_cache_redis_seconds_count{operation="get"} "#,
            r#"wharf_external_call_errors_total{operation="get",system="redis"} 1"#,
            "wharf_build_info{",
            "process_resident_memory_bytes ",
            "process_open_fds ",
        ] {
            assert!(t.contains(needle), "missing {needle} in\n{t}");
        }
    }

    #[test]
    fn counts_upload_events_and_in_progress() {
        let timer = RequestTimer::start("blob_upload", &http::Method::POST, 0);
        timer.complete(202, 0);
        drop(timer);
        assert!(text().contains(r#"wharf_uploads_total{event="started"} "#));
    }
}
