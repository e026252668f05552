//! Webhook notifications as registry:2 sends them, delivered at least once by whichever node
//! of the cluster is alive.
//!
//! A request that changes or reads content records its events in the shared storage
//! ([`queue`]) before it is answered; per endpoint one node at a time, holding a lease,
//! delivers them in recorded order and deletes each once the receiver accepted it
//! ([`delivery`]). Nothing here knows about HTTP requests: the API layer builds the events.

pub mod delivery;
pub mod event;
pub mod metrics;
pub mod queue;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::config::{Config, EndpointConfig, Headers};
use crate::storage::StorageDriver;
use event::{Action, ActorRecord, Event, RequestRecord, SourceRecord, Target};
use queue::Queue;

/// One enabled endpoint, as configured.
pub struct Endpoint {
    /// Configured name (logs, metrics).
    pub name: String,
    /// Directory of its queue: the name made path-safe and unique.
    pub key: String,
    /// Receiver URL.
    pub url: String,
    /// Extra headers of each POST.
    pub headers: Headers,
    /// Time allowed for one POST, answer included.
    pub timeout: Duration,
    /// Consecutive failures before the endpoint backs off.
    pub threshold: usize,
    /// Wait between attempts once backing off.
    pub backoff: Duration,
    /// Target media types not sent (`ignoredmediatypes` and `ignore.mediatypes`).
    pub ignored_media_types: HashSet<String>,
    /// Actions not sent.
    pub ignored_actions: HashSet<String>,
    /// Most queued events.
    pub max_events: usize,
    /// Most queued bytes.
    pub max_bytes: u64,
    /// Woken when this node records an event, so its deliverer need not wait for a poll.
    pub recorded: Notify,
}

impl Endpoint {
    fn from_config(c: &EndpointConfig, key: String) -> Self {
        Endpoint {
            name: c.name.clone(),
            key,
            url: c.url.clone(),
            headers: c.headers.clone(),
            timeout: c.timeout,
            threshold: c.threshold.max(1),
            backoff: c.backoff,
            ignored_media_types: c
                .ignoredmediatypes
                .iter()
                .chain(&c.ignore.mediatypes)
                .cloned()
                .collect(),
            ignored_actions: c.ignore.actions.iter().cloned().collect(),
            max_events: c.backlog.maxevents.max(1),
            max_bytes: c.backlog.maxbytes.max(1),
            recorded: Notify::new(),
        }
    }

    /// Whether this endpoint wants `event` (registry:2's ignore rules).
    pub fn wants(&self, event: &Event) -> bool {
        !self
            .ignored_media_types
            .contains(&event.target.descriptor.media_type)
            && !self.ignored_actions.contains(event.action.as_str())
    }
}

/// A path-safe directory name for each enabled endpoint, unique even when names repeat.
pub fn endpoint_keys(names: &[&str]) -> Vec<String> {
    let mut seen = HashSet::new();
    names
        .iter()
        .map(|name| {
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let safe = match safe.trim_matches('.') {
                "" => "endpoint".to_string(),
                s => s.to_string(),
            };
            let mut key = safe.clone();
            let mut n = 1;
            while !seen.insert(key.clone()) {
                n += 1;
                key = format!("{safe}~{n}");
            }
            key
        })
        .collect()
}

/// Records events for every enabled endpoint; runs their deliverers.
pub struct Notifier {
    endpoints: Vec<Arc<Endpoint>>,
    queue: Queue,
    include_references: bool,
    source: SourceRecord,
}

impl Notifier {
    /// The notifier of `config`, over the shared storage; `None` without an enabled endpoint.
    pub fn from_config(config: &Config, driver: Arc<dyn StorageDriver>) -> Option<Arc<Self>> {
        let enabled: Vec<&EndpointConfig> = config
            .notifications
            .endpoints
            .iter()
            .filter(|e| {
                if e.disabled {
                    tracing::info!(endpoint = %e.name, "notification endpoint disabled, skipping");
                }
                !e.disabled
            })
            .collect();
        if enabled.is_empty() {
            return None;
        }
        let names: Vec<&str> = enabled.iter().map(|e| e.name.as_str()).collect();
        let endpoints = enabled
            .iter()
            .zip(endpoint_keys(&names))
            .map(|(c, key)| Arc::new(Endpoint::from_config(c, key)))
            .collect();
        Some(Arc::new(Notifier {
            endpoints,
            queue: Queue::new(driver),
            include_references: config.notifications.events.includereferences,
            source: SourceRecord {
                addr: source_addr(&config.http.addr),
                instance_id: uuid::Uuid::new_v4().to_string(),
            },
        }))
    }

    /// Whether manifest events carry `target.references`.
    pub fn include_references(&self) -> bool {
        self.include_references
    }

    /// The endpoints events go to.
    pub fn endpoints(&self) -> &[Arc<Endpoint>] {
        &self.endpoints
    }

    /// The queue events are recorded in.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Events of one request, stamped with this node's source.
    pub fn events(
        &self,
        items: Vec<(Action, Target)>,
        request: &RequestRecord,
        actor: &ActorRecord,
    ) -> Vec<Event> {
        items
            .into_iter()
            .map(|(action, target)| Event::new(action, target, request, actor, &self.source))
            .collect()
    }

    /// Records `events` durably for every endpoint that wants them. Never fails: a request is
    /// answered whatever happens here; a failed write is counted and logged.
    pub async fn record(&self, events: &[Event]) {
        let writes = self.endpoints.iter().map(|endpoint| async move {
            let wanted: Vec<Event> = events
                .iter()
                .filter(|e| endpoint.wants(e))
                .cloned()
                .collect();
            if wanted.is_empty() {
                return;
            }
            match self.queue.record(&endpoint.key, &wanted).await {
                Ok(_) => {
                    for e in &wanted {
                        metrics::METRICS
                            .events
                            .with_label_values(&[endpoint.name.as_str(), e.action.as_str()])
                            .inc();
                    }
                    endpoint.recorded.notify_one();
                }
                Err(e) => {
                    metrics::METRICS
                        .record_failures
                        .with_label_values(&[endpoint.name.as_str()])
                        .inc_by(wanted.len() as u64);
                    tracing::error!(
                        endpoint = %endpoint.name,
                        events = wanted.len(),
                        error = %e,
                        "notification events could not be recorded and will not be sent"
                    );
                }
            }
        });
        futures_util::future::join_all(writes).await;
    }
}

/// registry:2's `source.addr`: the host name with the port of `http.addr`.
fn source_addr(http_addr: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        return http_addr.to_string();
    }
    match http_addr.rsplit_once(':') {
        Some((_, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{host}:{port}")
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_path_safe_and_unique() {
        assert_eq!(
            endpoint_keys(&["a", "a", "x/../y", "", ".."]),
            ["a", "a~2", "x_.._y", "endpoint", "endpoint~2"]
        );
    }

    #[test]
    fn ignore_rules_filter_media_types_and_actions() {
        let c = EndpointConfig {
            ignoredmediatypes: vec!["a/b".into()],
            ignore: crate::config::IgnoreConfig {
                mediatypes: vec!["c/d".into()],
                actions: vec!["pull".into()],
            },
            ..Default::default()
        };
        let e = Endpoint::from_config(&c, "k".into());
        let event = |action, mt: &str| {
            let mut t = Target::default();
            t.descriptor.media_type = mt.into();
            Event::new(
                action,
                t,
                &Default::default(),
                &Default::default(),
                &Default::default(),
            )
        };
        assert!(e.wants(&event(Action::Push, "x/y")));
        assert!(!e.wants(&event(Action::Push, "a/b")));
        assert!(!e.wants(&event(Action::Push, "c/d")));
        assert!(!e.wants(&event(Action::Pull, "x/y")));
    }
}
