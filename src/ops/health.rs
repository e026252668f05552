//! Health checks (`health.*`); while one fails the main port answers 503.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::config::{HealthConfig, HttpHealthCheck};
use crate::ops::metrics;
use crate::ops::tasks::Tasks;

/// `Retry-After` of a 429 or 503 that does not set its own: long enough for
/// a health check or a storage connection to recover, short enough that
/// clients do not give up.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// One run of a check: `Ok`, or why it failed.
pub type CheckRun = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// The storage check (`health.storagedriver`), built by the caller so that health checks
/// know nothing of storage.
pub struct StorageProbe {
    /// The check's name, as distribution reports it (`storagedriver_<driver>`).
    pub name: String,
    /// One run of the check.
    pub run: Box<dyn Fn() -> CheckRun + Send>,
}

/// Shared view of the failing checks.
#[derive(Clone, Default)]
pub struct Health {
    failing: Arc<RwLock<BTreeMap<String, String>>>,
}

impl Health {
    /// The first failing check, `"<name>: <error>"`, if any.
    pub fn failure(&self) -> Option<String> {
        let failing = self.failing.read().unwrap_or_else(|e| e.into_inner());
        failing.iter().next().map(|(k, v)| format!("{k}: {v}"))
    }

    /// All failing checks by name, as `/debug/health` reports them.
    pub fn failures(&self) -> BTreeMap<String, String> {
        self.failing
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets every check's outcome (its checks were replaced by a configuration reload).
    pub fn clear(&self) {
        self.failing
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Records the outcome of one run of the check `name`.
    pub(crate) fn set(&self, name: &str, error: Option<String>) {
        metrics::health_check(name, error.is_none());
        let mut failing = self.failing.write().unwrap_or_else(|e| e.into_inner());
        match error {
            Some(e) => {
                if !failing.contains_key(name) {
                    tracing::error!(check = name, error = %e, "health check failing");
                }
                failing.insert(name.to_string(), e);
            }
            None => {
                if failing.remove(name).is_some() {
                    tracing::info!(check = name, "health check recovered");
                }
            }
        }
    }
}

/// Trips after `threshold` consecutive failures (`<= 1` means the first).
struct Counter {
    threshold: u32,
    failures: u32,
}

impl Counter {
    fn record(&mut self, result: Result<(), String>) -> Option<String> {
        match result {
            Ok(()) => {
                self.failures = 0;
                None
            }
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                (self.failures >= self.threshold.max(1)).then_some(e)
            }
        }
    }
}

fn spawn_check<F, Fut>(
    tasks: &Tasks,
    health: &Health,
    name: String,
    interval: Duration,
    threshold: u32,
    check: F,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let health = health.clone();
    let interval = if interval.is_zero() {
        Duration::from_secs(10)
    } else {
        interval
    };
    metrics::health_check(&name, true);
    tasks.spawn(format!("health check {name}"), move |mut stop| async move {
        let mut counter = Counter {
            threshold,
            failures: 0,
        };
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = stop.requested() => return,
                _ = ticker.tick() => {}
            }
            let run = tokio::time::timeout(interval.max(Duration::from_secs(1)), check());
            let result = tokio::select! {
                _ = stop.requested() => return,
                result = run => result.unwrap_or_else(|_| Err("timed out".to_string())),
            };
            health.set(&name, counter.record(result));
        }
    });
}

/// The client HTTP checks share: plain HTTP/1.1, no pooling between runs.
type CheckClient = Client<HttpConnector, Empty<Bytes>>;

/// One run of a `health.http` check: a HEAD request that must answer the
/// expected status within the timeout (distribution's `HTTPChecker`).
async fn http_check(
    client: &CheckClient,
    check: &HttpHealthCheck,
    timeout: Duration,
) -> Result<(), String> {
    let mut request = http::Request::head(check.uri.as_str());
    for (name, values) in &check.headers {
        for value in values {
            request = request.header(name.as_str(), value.as_str());
        }
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    let started = std::time::Instant::now();
    let result = match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => {
            let status = response.status().as_u16();
            if i64::from(status) == check.statuscode {
                Ok(())
            } else {
                Err(format!(
                    "downstream service returned unexpected status: {status}"
                ))
            }
        }
        Ok(Err(e)) => Err(format!("error while checking: {e}")),
        Err(_) => Err("error while checking: timed out".to_string()),
    };
    metrics::external_call("http_health", "HEAD", started.elapsed(), result.is_ok());
    result
}

/// Starts the configured checks as background tasks.
pub fn start(config: &HealthConfig, storage: StorageProbe, health: &Health, tasks: &Tasks) {
    let sd = &config.storagedriver;
    if sd.enabled {
        let (name, run) = (storage.name, storage.run);
        spawn_check(tasks, health, name, sd.interval, sd.threshold, run);
    }
    for f in &config.file {
        let path = f.file.clone();
        spawn_check(
            tasks,
            health,
            path.display().to_string(),
            f.interval,
            f.threshold,
            move || {
                let path = path.clone();
                async move {
                    match tokio::fs::metadata(&path).await {
                        Ok(_) => Err("file exists".to_string()),
                        Err(_) => Ok(()),
                    }
                }
            },
        );
    }
    if !config.http.is_empty() {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client: CheckClient = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector);
        for check in &config.http {
            let timeout = if check.timeout.is_zero() {
                Duration::from_secs(5)
            } else {
                check.timeout
            };
            let (client, check) = (client.clone(), check.clone());
            spawn_check(
                tasks,
                health,
                check.uri.clone(),
                check.interval,
                check.threshold,
                move || {
                    let (client, check) = (client.clone(), check.clone());
                    async move { http_check(&client, &check, timeout).await }
                },
            );
        }
    }
    for t in &config.tcp {
        let addr = t.addr.clone();
        let timeout = if t.timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            t.timeout
        };
        spawn_check(
            tasks,
            health,
            addr.clone(),
            t.interval,
            t.threshold,
            move || {
                let addr = addr.clone();
                async move {
                    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await
                    {
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("connection timeout".to_string()),
                    }
                }
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_the_threshold_and_resets() {
        let mut c = Counter {
            threshold: 3,
            failures: 0,
        };
        assert_eq!(c.record(Err("x".into())), None);
        assert_eq!(c.record(Err("x".into())), None);
        assert_eq!(c.record(Err("x".into())), Some("x".into()));
        assert_eq!(c.record(Ok(())), None);
        let mut once = Counter {
            threshold: 0,
            failures: 0,
        };
        assert_eq!(once.record(Err("y".into())), Some("y".into()));
    }

    /// A one-shot HTTP server answering every request with `status`; returns
    /// its URI and the request head it received.
    async fn answer_once(status: u16) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("http://{}/ping", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&head).into_owned()
        });
        (uri, server)
    }

    #[tokio::test]
    async fn http_check_sends_head_with_headers_and_compares_the_status() {
        let client: CheckClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let (uri, server) = answer_once(200).await;
        let mut check = HttpHealthCheck {
            uri,
            ..Default::default()
        };
        check.headers.insert("X-Probe".into(), vec!["yes".into()]);
        assert_eq!(
            http_check(&client, &check, Duration::from_secs(5)).await,
            Ok(())
        );
        let head = server.await.unwrap();
        assert!(head.starts_with("HEAD /ping HTTP/1.1"), "{head}");
        assert!(head.to_ascii_lowercase().contains("x-probe: yes"), "{head}");

        let (uri, _server) = answer_once(503).await;
        let check = HttpHealthCheck {
            uri,
            ..Default::default()
        };
        assert_eq!(
            http_check(&client, &check, Duration::from_secs(5)).await,
            Err("downstream service returned unexpected status: 503".into())
        );
    }

    #[test]
    fn reports_failures_until_recovery() {
        let h = Health::default();
        h.set("tcp", Some("refused".into()));
        assert_eq!(h.failure().as_deref(), Some("tcp: refused"));
        h.set("tcp", None);
        assert_eq!(h.failure(), None);
    }
}
