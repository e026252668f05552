//! What one configuration builds for a running node, and the reload that replaces it.
//!
//! A node holds two kinds of state. What the process keeps for its whole life ([`Fixed`]: the
//! storage driver, the upload secret, the listen socket, URLs, TLS) is built once. Everything a
//! reload may change is one [`Generation`]: the API state (auth, token issuer, registry options
//! and cache, notifier), the response headers, and the background work that follows the
//! configuration (health checks, notification delivery, upload purging, online GC). A reload
//! builds the next generation completely before it touches the running one; a failure leaves
//! the node as it was. Then the new [`Site`] is swapped in for new requests (requests in flight
//! keep the one they started with), and the old generation's tasks are stopped and the new
//! ones started.
//!
//! A section that becomes reloadable adds its key prefix to `config::change::LIVE` and builds its
//! state in [`Generation::build`] (into [`App`] or the [`Site`]) or, for background work, starts
//! it in [`Generation::start`]; nothing else is needed.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;
use tokio::signal::unix::Signal;

use crate::api::urls::UrlBuilder;
use crate::api::App;
use crate::config::{self, Applies, Config};
use crate::http::server::{Site, Sites};
use crate::ops::health::Health;
use crate::ops::reload_status;
use crate::ops::tasks::{Shutdown, Tasks};
use crate::storage::drivers::s3::S3Driver;
use crate::storage::StorageDriver;
use crate::{auth, coord, notify, ops, StartError};

/// How long a retired generation's background tasks get to stop.
const RETIRE_DEADLINE: Duration = Duration::from_secs(5);

/// How often `reload.watch` looks at the configuration file.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// What the process keeps for its whole life, whatever the reloads say.
pub(crate) struct Fixed {
    /// The storage driver (`storage.<driver>` needs a restart).
    pub driver: Arc<dyn StorageDriver>,
    /// The same driver when it is S3 (upload purging aborts its multipart uploads).
    pub object_storage: Option<S3Driver>,
    /// The upload-state key (`http.secret`).
    pub secret: Vec<u8>,
    /// `http.host`, `http.prefix`, `http.relativeurls`, the scheme.
    pub urls: UrlBuilder,
    /// The failing checks, read by the API, the probes and `/debug/health`.
    pub health: Health,
    /// The cluster-wide run-time read-only switch (`wharf maintenance readonly`).
    pub read_only_switch: Arc<AtomicBool>,
    /// Whether the listener speaks TLS (token challenges name the scheme).
    pub https: bool,
}

/// What one configuration builds.
pub(crate) struct Generation {
    /// Served to new requests once this generation is current.
    pub site: Arc<Site>,
    config: Config,
    leases: Arc<dyn coord::LeaseBackend>,
    /// Whether this generation's in-memory blob-descriptor cache may answer.
    cache_validity: Arc<crate::cache::validity::CacheValidity>,
}

/// A current generation's running parts, stopped when it is replaced.
struct Running {
    tasks: Tasks,
    policy_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Generation {
    /// Builds everything `config` asks for that can change while the process runs; nothing
    /// starts running yet.
    pub fn build(config: &Config, fixed: &Fixed) -> Result<Self, StartError> {
        crate::check(config)?;
        let headers = crate::response_headers(config)?;
        let issuer = config
            .tokenissuer
            .as_ref()
            .map(auth::issuer::TokenIssuer::new)
            .transpose()?;
        let own_certificates = issuer
            .as_ref()
            .map(|i| i.certificates()[..1].to_vec())
            .unwrap_or_default();
        let auth = crate::authenticator(config, &own_certificates, fixed.https)?;
        // The in-memory cache follows the cluster's collections (see `coord::cache_watch`).
        let cache_validity = Arc::new(crate::cache::validity::CacheValidity::new(
            crate::registry::gc_guard::CACHE_VIEW_MAX_AGE,
        ));
        let registry = crate::registry_on(
            fixed.driver.clone(),
            config,
            fixed.secret.clone(),
            Some(cache_validity.clone()),
        )?
        .with_read_only_switch(fixed.read_only_switch.clone());
        let leases = coord::collector::lease_backend(config, fixed.driver.clone())
            .map_err(|e| StartError::Unsupported(vec![e]))?;
        let notifier = notify::Notifier::from_config(config, fixed.driver.clone());
        let mirror = config.proxy.as_ref().and_then(|proxy| {
            crate::mirror::Mirror::from_config(proxy, Some(leases.clone()), fixed.driver.clone())
                .map(Arc::new)
        });
        let app = Arc::new(App {
            registry: Arc::new(registry),
            urls: fixed.urls.clone(),
            auth,
            issuer,
            health: fixed.health.clone(),
            notifier,
            mirror,
        });
        Ok(Self {
            site: Arc::new(Site {
                app,
                headers,
                access_log: !config.log.accesslog.disabled,
            }),
            config: config.clone(),
            leases,
            cache_validity,
        })
    }

    /// Starts this generation's background work.
    fn start(&self, fixed: &Fixed) -> Running {
        let tasks = Tasks::new();
        let config = &self.config;
        let app = self.site.app.clone();
        let probe = crate::storage_probe(fixed.driver.clone());
        ops::health::start(&config.health, probe, &fixed.health, &tasks);
        if matches!(
            config.storage.cache.blobdescriptor,
            Some(config::BlobDescriptorCache::Inmemory)
        ) {
            let (app, validity) = (app.clone(), self.cache_validity.clone());
            tasks.spawn("cache validity watch", move |mut stop| async move {
                tokio::select! {
                    _ = stop.requested() => {}
                    _ = coord::cache_watch::watch(app, validity) => {}
                }
            });
        }
        if let Some(notifier) = &app.notifier {
            // Beside the queue, in the storage, whatever Redis does: delivery needs nothing the
            // events themselves do not (see the README's notifications section).
            let beside_queue: Arc<dyn coord::LeaseBackend> = Arc::new(
                coord::storage_lease::StorageLeases::new(fixed.driver.clone()),
            );
            notify::delivery::start(notifier.clone(), beside_queue, &tasks);
        }
        crate::start_upload_purging(
            config,
            app.clone(),
            fixed.object_storage.clone(),
            self.leases.clone(),
            &tasks,
        );
        crate::start_online_gc(config, app.clone(), self.leases.clone(), &tasks);
        if let Some(mirror) = &app.mirror {
            crate::start_cache_expiry(app.clone(), mirror.clone(), self.leases.clone(), &tasks);
        }
        let policy_watch = app
            .issuer
            .as_ref()
            .and_then(|issuer| issuer.watch_docker_auth_file());
        Running {
            tasks,
            policy_watch,
        }
    }
}

impl Running {
    async fn stop(self) {
        if let Some(watch) = self.policy_watch {
            watch.abort();
        }
        self.tasks.shutdown(RETIRE_DEADLINE).await;
    }
}

/// Where the configuration is read again from: the file `serve` was given (or none: the
/// embedded default) and the process environment (the `REGISTRY_*` overlay).
pub struct ReloadSource {
    /// The configuration file.
    pub path: Option<PathBuf>,
    /// The environment at start-up.
    pub env: Vec<(String, String)>,
}

/// The current configuration and generation, and how to replace them.
pub(crate) struct Reloader {
    source: ReloadSource,
    fixed: Fixed,
    sites: Sites,
    /// The tree the process started with: restart-only keys are compared against it.
    started: Value,
    current: tokio::sync::Mutex<Current>,
}

struct Current {
    config: Config,
    tree: Value,
    running: Option<Running>,
}

impl Reloader {
    /// Makes `first` current and starts its background work.
    pub fn start(
        source: ReloadSource,
        fixed: Fixed,
        loaded: &config::Loaded,
        first: Generation,
    ) -> Arc<Self> {
        reload_status::init();
        let running = first.start(&fixed);
        let sites: Sites = Arc::new(arc_swap::ArcSwap::new(first.site.clone()));
        Arc::new(Self {
            source,
            fixed,
            sites,
            started: loaded.effective.clone(),
            current: tokio::sync::Mutex::new(Current {
                config: first.config,
                tree: loaded.effective.clone(),
                running: Some(running),
            }),
        })
    }

    /// The site new requests are served with.
    pub fn sites(&self) -> Sites {
        self.sites.clone()
    }

    /// Reads the configuration again and applies it, or keeps the current one and says why.
    pub async fn reload(&self, trigger: &str) {
        let mut current = self.current.lock().await;
        let started = std::time::Instant::now();
        let next = config::load(self.source.path.as_deref(), &self.source.env)
            .map_err(|e| e.to_string())
            .and_then(|loaded| {
                Generation::build(&loaded.config, &self.fixed)
                    .map(|generation| (loaded, generation))
                    .map_err(|e| e.to_string())
            });
        let (loaded, generation) = match next {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(
                    trigger,
                    error = %error,
                    "configuration reload refused; still serving the previous configuration"
                );
                reload_status::refused(error);
                return;
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("configuration: {w}");
        }
        let changes = config::diff(&current.tree, &loaded.effective);
        for change in changes
            .iter()
            .filter(|c| c.applies == Applies::NeedsRestart)
        {
            tracing::warn!(
                key = %change.key,
                "configuration reload: this change needs a restart; the running value is kept"
            );
        }
        ops::logging::apply(&loaded.config.log);
        self.sites.store(generation.site.clone());
        if let Some(old) = current.running.take() {
            old.stop().await;
        }
        // Checks that were removed or changed must not leave their last failure behind; an
        // unchanged check keeps its state until its next run reports.
        if changes
            .iter()
            .any(|c| c.key.split('.').next() == Some("health"))
        {
            self.fixed.health.clear();
        }
        current.running = Some(generation.start(&self.fixed));
        let live: Vec<&str> = changes
            .iter()
            .filter(|c| c.applies == Applies::Live)
            .map(|c| c.key.as_str())
            .collect();
        tracing::info!(
            trigger,
            changed = %live.join(","),
            took_ms = started.elapsed().as_millis() as u64,
            "configuration reloaded"
        );
        let pending = config::diff(&self.started, &loaded.effective)
            .into_iter()
            .filter(|c| c.applies == Applies::NeedsRestart)
            .map(|c| c.key)
            .collect();
        reload_status::applied(pending);
        current.config = generation.config;
        current.tree = loaded.effective;
    }

    /// Takes over SIGHUP (whose default action ends the process), before the node serves.
    pub fn hangup_signal() -> std::io::Result<Signal> {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    }

    /// Reloads on SIGHUP (`hangup`, from [`Reloader::hangup_signal`]) and, while `reload.watch` is on, when the file's content changes;
    /// until `stop`.
    pub async fn run(self: Arc<Self>, mut hangup: Signal, mut stop: Shutdown) {
        let mut seen = self.read_file().await;
        let mut ticker = tokio::time::interval(WATCH_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.requested() => return,
                _ = hangup.recv() => {
                    seen = self.read_file().await;
                    self.reload("SIGHUP").await;
                }
                _ = ticker.tick() => {
                    if !self.current.lock().await.config.reload.watch {
                        continue;
                    }
                    let now = self.read_file().await;
                    if now.is_some() && now != seen {
                        seen = now;
                        self.reload("file changed").await;
                    }
                }
            }
        }
    }

    /// Stops the current generation's background work (the process is shutting down).
    pub async fn shutdown(&self) {
        if let Some(running) = self.current.lock().await.running.take() {
            running.stop().await;
        }
    }

    async fn read_file(&self) -> Option<Vec<u8>> {
        tokio::fs::read(self.source.path.as_ref()?).await.ok()
    }
}
