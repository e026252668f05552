//! Health checks (`health.*`); while one fails the main port answers 503.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::HealthConfig;
use crate::storage::StorageDriver;

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

    fn set(&self, name: &str, error: Option<String>) {
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

fn spawn_check<F, Fut>(health: &Health, name: String, interval: Duration, threshold: u32, check: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let health = health.clone();
    let interval = if interval.is_zero() {
        Duration::from_secs(10)
    } else {
        interval
    };
    tokio::spawn(async move {
        let mut counter = Counter {
            threshold,
            failures: 0,
        };
        let mut ticker = tokio::time::interval(interval);
        loop {
            ticker.tick().await;
            let result =
                match tokio::time::timeout(interval.max(Duration::from_secs(1)), check()).await {
                    Ok(r) => r,
                    Err(_) => Err("timed out".to_string()),
                };
            health.set(&name, counter.record(result));
        }
    });
}

/// Starts the configured checks in the background.
pub fn start(config: &HealthConfig, driver: Arc<dyn StorageDriver>, health: &Health) {
    let sd = &config.storagedriver;
    if sd.enabled {
        let name = format!("storagedriver_{}", driver.name());
        spawn_check(health, name, sd.interval, sd.threshold, move || {
            let driver = driver.clone();
            async move {
                match driver.stat("/").await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            }
        });
    }
    for f in &config.file {
        let path = f.file.clone();
        spawn_check(
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
    for t in &config.tcp {
        let addr = t.addr.clone();
        let timeout = if t.timeout.is_zero() {
            Duration::from_secs(5)
        } else {
            t.timeout
        };
        spawn_check(health, addr.clone(), t.interval, t.threshold, move || {
            let addr = addr.clone();
            async move {
                match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("connection timeout".to_string()),
                }
            }
        });
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

    #[test]
    fn reports_failures_until_recovery() {
        let h = Health::default();
        h.set("tcp", Some("refused".into()));
        assert_eq!(h.failure().as_deref(), Some("tcp: refused"));
        h.set("tcp", None);
        assert_eq!(h.failure(), None);
    }
}
