//! Delivery: per endpoint, the node holding the endpoint's lease POSTs queued events in
//! recorded order, one envelope per event, and deletes each after a 2xx answer.
//!
//! Failures follow registry:2's retrying sink: an event is retried at once until `threshold`
//! consecutive failures, then once per `backoff` until the receiver accepts it. Every attempt
//! is bounded by `timeout` (answer included); the answer's body is read up to a cap. The
//! deliverer also bounds the backlog, dropping the oldest events past either limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use crate::coord::{HeldLease, Lease, LeaseBackend};
use crate::error_chain::error_chain;
use crate::notify::event::{envelope_body, Event, EVENTS_MEDIA_TYPE};
use crate::notify::metrics::METRICS;
use crate::notify::queue::{over_limit, Queue};
use crate::notify::{Endpoint, Notifier};
use crate::ops::notification_status as status;
use crate::ops::tasks::Tasks;

/// Most bytes of a receiver's answer read; the rest is discarded with the connection.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often an idle deliverer looks for events recorded by other nodes.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// How often a node that does not deliver checks whether the deliverer is gone.
const STANDBY_POLL: Duration = Duration::from_secs(1);
/// Shortest delivery lease; longer when the endpoint's timeout is long.
const MIN_LEASE_TTL: Duration = Duration::from_secs(6);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The URL or a header could not make a request.
    #[error("invalid request: {0}")]
    Request(String),
    /// Connecting or sending failed.
    #[error("sending: {0}")]
    Transport(String),
    /// No complete answer within `timeout`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The receiver answered, but not 2xx.
    #[error("receiver answered {0}")]
    Status(u16),
}

/// An HTTP(S) client trusting the system's roots.
fn client() -> HttpsClient {
    crate::tls_client::https_client("notification endpoints", None)
}

/// The configured headers; ones HTTP does not allow are skipped with a warning.
fn headers(endpoint: &Endpoint) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, values) in &endpoint.headers {
        let Ok(name) = HeaderName::try_from(name.as_str()) else {
            tracing::warn!(endpoint = %endpoint.name, header = %name, "invalid notification header name skipped");
            continue;
        };
        for v in values {
            match HeaderValue::from_str(v) {
                Ok(v) => {
                    out.append(name.clone(), v);
                }
                Err(_) => {
                    tracing::warn!(endpoint = %endpoint.name, header = %name, "invalid notification header value skipped")
                }
            }
        }
    }
    out
}

/// Starts one deliverer per endpoint; each takes the endpoint's lease in `leases` when free.
pub fn start(notifier: Arc<Notifier>, leases: Arc<dyn LeaseBackend>, tasks: &Tasks) {
    let client = client();
    for endpoint in notifier.endpoints() {
        let ttl = MIN_LEASE_TTL.max(endpoint.timeout * 3);
        let lease = Lease::new(
            leases.clone(),
            &format!("notifications-{}", endpoint.key),
            ttl,
        );
        status::update(&endpoint.name, |s| {
            s.url = endpoint.url.clone();
            s.state = "standby";
        });
        tracing::info!(
            endpoint = %endpoint.name,
            url = %endpoint.url,
            timeout = ?endpoint.timeout,
            threshold = endpoint.threshold,
            backoff = ?endpoint.backoff,
            lease = lease.backend_kind(),
            "notification endpoint configured"
        );
        let deliverer = Deliverer {
            queue: notifier.queue().clone(),
            endpoint: endpoint.clone(),
            client: client.clone(),
            headers: headers(endpoint),
            failures: 0,
        };
        tasks.spawn(
            format!("notifications to {}", endpoint.name),
            move |mut stop| async move {
                tokio::select! {
                    _ = stop.requested() => {}
                    _ = deliverer.run(lease) => {}
                }
            },
        );
    }
}

/// Delivers one endpoint's events.
struct Deliverer {
    queue: Queue,
    endpoint: Arc<Endpoint>,
    client: HttpsClient,
    headers: HeaderMap,
    failures: usize,
}

impl Deliverer {
    fn name(&self) -> &str {
        &self.endpoint.name
    }

    /// Forever: wait for the lease, deliver while holding it.
    async fn run(mut self, lease: Lease) {
        loop {
            match lease.try_acquire().await {
                Ok(Some(held)) => {
                    tracing::info!(endpoint = %self.name(), "delivering notifications from this node");
                    status::update(self.name(), |s| s.deliverer = true);
                    self.deliver_while_held(&held).await;
                    status::update(self.name(), |s| {
                        s.deliverer = false;
                        s.state = "standby";
                    });
                    tracing::info!(endpoint = %self.name(), "notification delivery lease lost");
                    held.release().await;
                }
                Ok(None) => {
                    status::update(self.name(), |s| s.state = "standby");
                }
                Err(e) => {
                    tracing::warn!(endpoint = %self.name(), error = %e, "cannot take the notification delivery lease");
                }
            }
            tokio::time::sleep(STANDBY_POLL).await;
        }
    }

    /// Lists, trims and delivers until the lease is lost.
    async fn deliver_while_held(&mut self, held: &HeldLease) {
        while held.is_held() {
            let entries = match self.queue.list(&self.endpoint.key).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(endpoint = %self.name(), error = %e, "cannot list queued notification events");
                    tokio::time::sleep(self.endpoint.backoff).await;
                    continue;
                }
            };
            let drop = over_limit(&entries, self.endpoint.max_events, self.endpoint.max_bytes);
            let mut dropped = 0u64;
            for entry in &entries[..drop] {
                if !held.is_held() {
                    return;
                }
                if self.queue.remove(&self.endpoint.key, entry).await.is_ok() {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                METRICS
                    .dropped
                    .with_label_values(&[self.name(), "backlog"])
                    .inc_by(dropped);
                status::update(self.name(), |s| s.dropped += dropped);
                tracing::warn!(
                    endpoint = %self.name(),
                    dropped,
                    max_events = self.endpoint.max_events,
                    max_bytes = self.endpoint.max_bytes,
                    "notification backlog full: oldest events dropped"
                );
            }
            let entries = &entries[drop..];
            let pending = entries.len();
            METRICS
                .pending
                .with_label_values(&[self.name()])
                .set(pending as i64);
            status::update(self.name(), |s| s.pending = pending);
            if entries.is_empty() {
                status::update(self.name(), |s| s.state = "idle");
                tokio::select! {
                    _ = self.endpoint.recorded.notified() => {}
                    _ = tokio::time::sleep(IDLE_POLL) => {}
                }
                continue;
            }
            status::update(self.name(), |s| s.state = "delivering");
            for (i, entry) in entries.iter().enumerate() {
                if !held.is_held() {
                    return;
                }
                let event = match self.queue.read(&self.endpoint.key, entry).await {
                    Ok(Some(event)) => event,
                    Ok(None) => continue,
                    Err(e) => {
                        tracing::warn!(endpoint = %self.name(), error = %e, "cannot read a queued notification event");
                        tokio::time::sleep(self.endpoint.backoff).await;
                        break;
                    }
                };
                if !self.attempt(&event).await {
                    // Retried from a fresh listing, so the backlog bound still applies.
                    break;
                }
                if let Err(e) = self.queue.remove(&self.endpoint.key, entry).await {
                    tracing::warn!(endpoint = %self.name(), error = %e, "delivered notification event not removed; it may be sent again");
                }
                let left = (pending - i - 1) as i64;
                METRICS.pending.with_label_values(&[self.name()]).set(left);
                status::update(self.name(), |s| s.pending = left as usize);
            }
        }
    }

    /// One POST; true when accepted. After `threshold` consecutive failures, waits `backoff`.
    async fn attempt(&mut self, event: &Event) -> bool {
        let started = Instant::now();
        let result = self.post(event).await;
        METRICS
            .latency
            .with_label_values(&[self.name()])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(code) => {
                self.failures = 0;
                METRICS.delivered.with_label_values(&[self.name()]).inc();
                status::update(self.name(), |s| {
                    s.delivered += 1;
                    s.failures = 0;
                    s.last_error = None;
                    *s.statuses.entry(code.to_string()).or_default() += 1;
                });
                true
            }
            Err(e) => {
                self.failures += 1;
                METRICS.errors.with_label_values(&[self.name()]).inc();
                let failures = self.failures;
                status::update(self.name(), |s| {
                    s.failures = failures;
                    s.last_error = Some(e.to_string());
                    if let DeliveryError::Status(code) = e {
                        *s.statuses.entry(code.to_string()).or_default() += 1;
                    }
                });
                tracing::warn!(endpoint = %self.name(), event = %event.id, failures, error = %e, "notification delivery failed; retrying");
                if failures >= self.endpoint.threshold {
                    status::update(self.name(), |s| s.state = "backing-off");
                    tracing::warn!(endpoint = %self.name(), backoff = ?self.endpoint.backoff, "notification endpoint encountered too many errors, backing off");
                    tokio::time::sleep(self.endpoint.backoff).await;
                }
                false
            }
        }
    }

    /// POSTs one event's envelope and reads the answer, all within `timeout`.
    async fn post(&self, event: &Event) -> Result<u16, DeliveryError> {
        let mut builder = Request::post(self.endpoint.url.as_str())
            .header(http::header::CONTENT_TYPE, EVENTS_MEDIA_TYPE)
            .header(
                http::header::USER_AGENT,
                concat!("wharf/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(h) = builder.headers_mut() {
            for (name, value) in &self.headers {
                h.append(name.clone(), value.clone());
            }
        }
        let request = builder
            .body(Full::new(Bytes::from(envelope_body(std::slice::from_ref(
                event,
            )))))
            .map_err(|e| DeliveryError::Request(e.to_string()))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| DeliveryError::Transport(error_chain(&e)))?;
            let code = response.status().as_u16();
            METRICS
                .status
                .with_label_values(&[&code.to_string(), self.name()])
                .inc();
            // The answer is read (capped) so the connection can be reused; its content is unused.
            let _ = http_body_util::Limited::new(response.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await;
            Ok(code)
        };
        let code = tokio::time::timeout(self.endpoint.timeout, exchange)
            .await
            .map_err(|_| DeliveryError::Timeout(self.endpoint.timeout))??;
        if (200..300).contains(&code) {
            Ok(code)
        } else {
            Err(DeliveryError::Status(code))
        }
    }
}
