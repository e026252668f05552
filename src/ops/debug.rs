//! The debug server on `http.debug.addr`: distribution's `/debug/health` and
//! `/debug/vars`, Prometheus metrics at `http.debug.prometheus.path`, and the
//! Kubernetes probes `/readyz` and `/livez`.
//!
//! It runs on a thread and runtime of its own, so a scrape or a probe is
//! answered even when the request runtime is saturated or stuck (which is
//! exactly what liveness must be able to report).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::ops::health::Health;
use crate::ops::lifecycle::Lifecycle;
use crate::ops::metrics;
use crate::ops::tasks::Shutdown;

/// Readiness probe path.
pub const READY_PATH: &str = "/readyz";
/// Liveness probe path.
pub const LIVE_PATH: &str = "/livez";

/// What the debug server serves.
#[derive(Clone)]
pub struct DebugState {
    /// Health checks, for `/debug/health`.
    pub health: Health,
    /// Draining and watchdog state, for the probes.
    pub lifecycle: Lifecycle,
    /// Metrics path, when Prometheus is enabled.
    pub metrics_path: Option<String>,
}

/// Serves on `listener` in the background, on a thread and runtime of its own, until
/// `stop` is raised. The returned receiver resolves once the thread has finished.
pub fn spawn(
    listener: std::net::TcpListener,
    state: DebugState,
    mut stop: Shutdown,
) -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (finished, stopped) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("wharf-debug".into())
        .spawn(move || {
            runtime.block_on(async move {
                // The listener must be registered with the runtime that polls it.
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => tokio::select! {
                        _ = stop.requested() => {}
                        _ = serve(listener, Arc::new(state)) => {}
                    },
                    Err(e) => tracing::error!(error = %e, "debug server: cannot use its listener"),
                }
            });
            // Dropping the runtime ends the connections still open.
            drop(runtime);
            let _ = finished.send(());
        })?;
    Ok(stopped)
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<DebugState>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "debug server: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req.method(), req.uri().path())) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "debug connection closed with an error");
            }
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::ops::health::RETRY_AFTER_SECONDS),
        );
    }
    resp
}

/// Answers one debug request; a pure function of the shared state.
pub fn route(state: &DebugState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            b"method not allowed\n".to_vec(),
        );
    }
    if state.metrics_path.as_deref() == Some(path) {
        return respond(StatusCode::OK, metrics::content_type(), metrics::render());
    }
    match path {
        "/debug/health" => {
            let failures = state.health.failures();
            let status = if failures.is_empty() {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_vec(&failures).unwrap_or_default();
            respond(status, "application/json; charset=utf-8", body)
        }
        "/debug/vars" => {
            let vars = serde_json::json!({
                "cmdline": std::env::args().collect::<Vec<_>>(),
                "registry": {
                    "version": env!("CARGO_PKG_VERSION"),
                    "draining": state.lifecycle.is_draining(),
                    "health": state.health.failures(),
                    "notifications": crate::ops::notification_status::snapshot(),
                    "reload": crate::ops::reload_status::snapshot(),
                },
                "cluster": crate::ops::cluster_status::snapshot(),
            });
            respond(
                StatusCode::OK,
                "application/json; charset=utf-8",
                serde_json::to_vec_pretty(&vars).unwrap_or_default(),
            )
        }
        READY_PATH => match state.lifecycle.readiness() {
            Ok(()) => respond(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                b"ok\n".to_vec(),
            ),
            Err(why) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("not ready: {why}\n").into_bytes(),
            ),
        },
        LIVE_PATH => match state.lifecycle.liveness() {
            Ok(()) => respond(
                StatusCode::OK,
                "text/plain; charset=utf-8",
                b"ok\n".to_vec(),
            ),
            Err(age) => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!(
                    "not live: the request runtime has not run for {}s\n",
                    age.as_secs()
                )
                .into_bytes(),
            ),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            b"404 page not found\n".to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn state(metrics_path: Option<&str>) -> DebugState {
        let health = Health::default();
        let lifecycle = Lifecycle::new(health.clone());
        lifecycle.beat();
        DebugState {
            health,
            lifecycle,
            metrics_path: metrics_path.map(str::to_string),
        }
    }

    async fn body(resp: Response<Full<Bytes>>) -> String {
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn health_and_probes_follow_the_state() {
        let s = state(None);
        let resp = route(&s, &Method::GET, "/debug/health");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, "{}");
        s.health.set("/tmp/down", Some("file exists".into()));
        let resp = route(&s, &Method::GET, "/debug/health");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "5");
        assert_eq!(body(resp).await, r#"{"/tmp/down":"file exists"}"#);
        assert_eq!(route(&s, &Method::GET, READY_PATH).status(), 503);
        assert_eq!(route(&s, &Method::GET, LIVE_PATH).status(), 200);
        s.health.set("/tmp/down", None);
        assert_eq!(route(&s, &Method::GET, READY_PATH).status(), 200);
        s.lifecycle.set_draining();
        let resp = route(&s, &Method::GET, READY_PATH);
        assert_eq!(resp.status(), 503);
        assert_eq!(body(resp).await, "not ready: draining\n");
        assert_eq!(route(&s, &Method::GET, LIVE_PATH).status(), 200);
    }

    #[tokio::test]
    async fn metrics_only_where_configured() {
        assert_eq!(route(&state(None), &Method::GET, "/metrics").status(), 404);
        let s = state(Some("/prom"));
        let resp = route(&s, &Method::GET, "/prom");
        assert_eq!(resp.status(), 200);
        assert!(body(resp).await.contains("wharf_build_info"));
        assert_eq!(route(&s, &Method::POST, "/prom").status(), 405);
    }
}
