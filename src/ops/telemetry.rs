//! Traces: one span per request (route, repository, status), child spans for
//! storage calls, exported over OTLP/HTTP when the standard `OTEL_*`
//! variables ask for it, and off otherwise. W3C `traceparent` headers are
//! honoured either way, so the access log names the caller's trace id.
//!
//! Export runs on the SDK's batch thread; its HTTP requests go through a
//! hyper client on a one-thread runtime of its own, so exporting never
//! competes with requests and needs no runtime at start-up.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use crate::ops::metrics;

/// The provider while export is on, for [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether and how to export, from the `OTEL_*` environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportChoice {
    /// No export (the default).
    Off,
    /// OTLP over HTTP with this payload encoding.
    Otlp {
        /// `http/json` instead of `http/protobuf`.
        json: bool,
    },
}

/// Reads the OpenTelemetry environment: export when `OTEL_TRACES_EXPORTER`
/// names `otlp`, or when it is unset and an OTLP endpoint is configured;
/// never when `OTEL_SDK_DISABLED=true` or the exporter is `none`.
pub fn export_choice(env: impl Fn(&str) -> Option<String>) -> ExportChoice {
    let set = |key: &str| env(key).filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return ExportChoice::Off;
    }
    let wanted = match set("OTEL_TRACES_EXPORTER") {
        Some(list) => list
            .split(',')
            .any(|e| e.trim().eq_ignore_ascii_case("otlp")),
        None => {
            set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    };
    if !wanted {
        return ExportChoice::Off;
    }
    let protocol =
        set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"));
    ExportChoice::Otlp {
        json: protocol.is_some_and(|p| p.trim() == "http/json"),
    }
}

/// Sends OTLP requests with hyper on a dedicated one-thread runtime.
#[derive(Debug)]
struct ExportClient {
    runtime: Arc<tokio::runtime::Runtime>,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let (client, timeout) = (self.client.clone(), self.timeout);
        let send = async move {
            let response = tokio::time::timeout(timeout, client.request(request))
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))??;
            let (parts, body) = response.into_parts();
            let body = tokio::time::timeout(timeout, Limited::new(body, 4 << 20).collect())
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))??
                .to_bytes();
            Ok::<_, HttpError>(http::Response::from_parts(parts, body))
        };
        let result = self.runtime.spawn(send).await?;
        metrics::trace_export(matches!(&result, Ok(r) if r.status().is_success()));
        result
    }
}

fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|key| std::env::var(key).ok()?.trim().parse::<u64>().ok())
    .map(Duration::from_millis)
    .unwrap_or(Duration::from_secs(10))
}

fn resource() -> Resource {
    let mut builder = Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        builder = builder.with_service_name("wharf");
    }
    builder
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build()
}

fn provider(json: bool) -> Result<SdkTracerProvider, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("wharf-otlp")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = ExportClient {
        runtime: Arc::new(runtime),
        client: Client::builder(TokioExecutor::new()).build(connector),
        timeout: export_timeout(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(if json {
            Protocol::HttpJson
        } else {
            Protocol::HttpBinary
        })
        .with_http_client(client)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource())
        .build())
}

/// The layer that turns our spans into OpenTelemetry spans, when the
/// environment asks for export; `None` otherwise. Only Wharf's own spans
/// (and its warnings, as span events) are exported.
pub fn layer<S>() -> Option<impl Layer<S>>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let ExportChoice::Otlp { json } = export_choice(|k| std::env::var(k).ok()) else {
        return None;
    };
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_else(|_| "http://localhost:4318".into());
    if endpoint.trim_start().starts_with("https:") {
        eprintln!(
            "wharf: trace export disabled: {endpoint} is https, which this exporter does not speak; \
             send to a local collector over http"
        );
        return None;
    }
    let provider = match provider(json) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("wharf: trace export disabled: {e}");
            return None;
        }
    };
    let tracer = provider.tracer("wharf");
    let _ = PROVIDER.set(provider);
    let filter = tracing_subscriber::filter::filter_fn(|meta| {
        meta.target().starts_with("wharf")
            && (meta.is_span() || *meta.level() <= tracing::Level::WARN)
    });
    Some(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_location(false)
            .with_filter(filter),
    )
}

/// True while spans are exported.
pub fn exporting() -> bool {
    PROVIDER.get().is_some()
}

/// Flushes and stops the exporter (blocking: call it off the request runtime).
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown() {
            tracing::warn!(error = %e, "trace exporter shutdown");
        }
    }
}

/// The remote parent named by a `traceparent` header, if any.
pub fn extract_parent(headers: &http::HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// The span of one request, child of the caller's trace when it sent one.
/// Returns the trace id for the access log: this span's when exporting,
/// else the caller's.
pub fn request_span(
    method: &http::Method,
    path: &str,
    handler: &'static str,
    request_id: &str,
    headers: &http::HeaderMap,
) -> (Span, Option<String>) {
    let parent = extract_parent(headers);
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {handler}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = handler,
        url.path = path,
        registry.handler = handler,
        registry.repository = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = request_id,
    );
    let remote = parent.span().span_context().clone();
    if remote.is_valid() {
        let _ = span.set_parent(parent);
    }
    let local = exporting()
        .then(|| span.context().span().span_context().trace_id())
        .filter(|id| *id != opentelemetry::trace::TraceId::INVALID);
    let trace_id = if let Some(local) = local {
        Some(local.to_string())
    } else if remote.is_valid() {
        Some(remote.trace_id().to_string())
    } else {
        None
    };
    (span, trace_id)
}

/// A child span for one call to an external system (`redis`, `s3`, `auth`),
/// named `"<system> <operation>"`; enter it (or `instrument` the call's
/// future with it) around the call. Free when nothing exports.
pub fn client_span(system: &'static str, operation: &'static str) -> Span {
    tracing::info_span!(
        "client",
        otel.name = %format_args!("{system} {operation}"),
        otel.kind = "client",
        peer.service = system,
        operation = operation,
    )
}

/// Records what the request turned out to be.
pub fn record_response(span: &Span, repository: Option<&str>, status: u16) {
    if let Some(repository) = repository {
        span.record("registry.repository", repository);
    }
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn export_is_off_unless_asked_for() {
        assert_eq!(export_choice(env(&[])), ExportChoice::Off);
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert_eq!(
            export_choice(env(&[endpoint])),
            ExportChoice::Otlp { json: false }
        );
        assert_eq!(
            export_choice(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "none")])),
            ExportChoice::Off
        );
        assert_eq!(
            export_choice(env(&[endpoint, ("OTEL_SDK_DISABLED", "true")])),
            ExportChoice::Off
        );
        assert_eq!(
            export_choice(env(&[
                ("OTEL_TRACES_EXPORTER", "console,otlp"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            ])),
            ExportChoice::Otlp { json: true }
        );
        assert_eq!(
            export_choice(env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c/v1/traces"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ])),
            ExportChoice::Otlp { json: false }
        );
    }

    #[test]
    fn traceparent_names_the_remote_parent() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = extract_parent(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote() && sc.is_valid());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let (_span, trace_id) = request_span(&http::Method::GET, "/v2/", "base", "id", &headers);
        assert_eq!(
            trace_id.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        headers.insert("traceparent", http::HeaderValue::from_static("garbage"));
        assert!(!extract_parent(&headers).span().span_context().is_valid());
    }
}
