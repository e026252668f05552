//! What one configuration builds for a running node, and the reload that replaces it.
//!
//! A node holds two kinds of state. What the process keeps for its whole life ([`Fixed`]: the
//! storage driver, the upload secret, the listen socket, URLs, TLS) is built once. Everything a
//! reload may change is one [`Generation`]: the API state (auth, token issuer, registry options
//! and cache, notifier), the response headers, and the background work that follows the
//! configuration (health checks, notification delivery, upload purging, online GC). A reload
//! builds the next generation completely before it touches the running one; a failure leaves
//! the node as it was. Then the new [`Site`] is swapped in for new requests (requests in flight
//! keep the one they started with).
//!
//! A reload rebuilds only what its changes reach: the registry, the leases, the notifier and the
//! pull-through cache are carried over from the previous generation when none of their keys
//! changed, and so is each piece of background [`Work`]; only work whose keys changed is
//! stopped and started again (a pass in progress, a lease held, a timer keep running).
//!
//! A section that becomes reloadable adds its key prefix to `config::change::LIVE` and builds its
//! state in [`Generation::build`] (into [`App`] or the [`Site`]) or, for background work, adds a
//! [`Work`] with the keys it is built from and starts it in [`Generation::start`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml::Value;
use tokio::signal::unix::Signal;

use crate::api::urls::UrlBuilder;
use crate::api::App;
use crate::config::{self, Applies, Change, Config};
use crate::http::server::{Site, Sites};
use crate::ops::health::Health;
use crate::ops::reload_status;
use crate::ops::tasks::{Shutdown, Tasks};
use crate::storage::drivers::StaleWrites;
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
    /// The same driver when it is S3 or GCS (upload purging cleans its stale write state).
    pub object_storage: Option<StaleWrites>,
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

/// Keys the registry (its options and blob-descriptor cache) is built from.
const REGISTRY_KEYS: &[&str] = &[
    "storage.delete",
    "storage.maintenance.readonly",
    "storage.redirect",
    "storage.cache",
    "storage.tag",
    "redis",
    "validation",
    "catalog",
    "tags",
];
/// Keys the cluster leases are built from.
const LEASE_KEYS: &[&str] = &["redis"];
/// Keys the pull-through cache is built from (its claims use the leases).
const MIRROR_KEYS: &[&str] = &["proxy", "redis"];
/// Keys the notifier is built from.
const NOTIFIER_KEYS: &[&str] = &["notifications"];

/// A piece of background work that follows the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    Health,
    CacheWatch,
    Notifications,
    UploadPurging,
    Gc,
    CacheExpiry,
}

impl Work {
    const ALL: [Work; 6] = [
        Work::Health,
        Work::CacheWatch,
        Work::Notifications,
        Work::UploadPurging,
        Work::Gc,
        Work::CacheExpiry,
    ];

    /// The name `/debug/vars` and the log give it.
    fn name(self) -> &'static str {
        match self {
            Work::Health => "health checks",
            Work::CacheWatch => "cache validity watch",
            Work::Notifications => "notification delivery",
            Work::UploadPurging => "upload purging",
            Work::Gc => "garbage collection",
            Work::CacheExpiry => "cache expiry",
        }
    }

    /// Whether `changes` reach what this work is built from: its own section and the shared
    /// parts (registry, leases, notifier, mirror) it runs on.
    fn affected_by(self, changes: &[Change]) -> bool {
        let keys: &[&[&str]] = match self {
            Work::Health => &[&["health"]],
            Work::CacheWatch => &[REGISTRY_KEYS],
            Work::UploadPurging => &[
                REGISTRY_KEYS,
                LEASE_KEYS,
                &["storage.maintenance.uploadpurging"],
            ],
            Work::Notifications => &[NOTIFIER_KEYS],
            Work::Gc => &[REGISTRY_KEYS, LEASE_KEYS, &["gc"]],
            Work::CacheExpiry => &[REGISTRY_KEYS, LEASE_KEYS, MIRROR_KEYS],
        };
        keys.iter().any(|keys| touches(changes, keys))
    }
}

/// Whether any of `changes` is one of `prefixes` or lies under one.
fn touches(changes: &[Change], prefixes: &[&str]) -> bool {
    changes
        .iter()
        .any(|c| prefixes.iter().any(|p| config::within(&c.key, p)))
}

/// A current generation's running parts, stopped when it is replaced.
#[derive(Default)]
struct Running {
    work: BTreeMap<Work, Tasks>,
    policy_watch: Option<tokio::task::JoinHandle<()>>,
}

impl Generation {
    /// Builds everything `config` asks for that can change while the process runs; nothing
    /// starts running yet.
    pub fn build(config: &Config, fixed: &Fixed) -> Result<Self, StartError> {
        Self::build_after(config, fixed, None)
    }

    /// As [`Generation::build`], carrying over from `previous` the parts that none of the
    /// (live) `changes` reach.
    fn build_after(
        config: &Config,
        fixed: &Fixed,
        previous: Option<(&Generation, &[Change])>,
    ) -> Result<Self, StartError> {
        let unchanged = |keys: &[&str]| {
            previous
                .filter(|(_, changes)| !touches(changes, keys))
                .map(|(g, _)| g)
        };
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
        let (registry, cache_validity) = match unchanged(REGISTRY_KEYS) {
            Some(prev) => (prev.site.app.registry.clone(), prev.cache_validity.clone()),
            None => {
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
                (Arc::new(registry), cache_validity)
            }
        };
        let leases = match unchanged(LEASE_KEYS) {
            Some(prev) => prev.leases.clone(),
            None => coord::collector::lease_backend(config, fixed.driver.clone())
                .map_err(|e| StartError::Unsupported(vec![e]))?,
        };
        let notifier = match unchanged(NOTIFIER_KEYS) {
            Some(prev) => prev.site.app.notifier.clone(),
            None => notify::Notifier::from_config(config, fixed.driver.clone()),
        };
        let mirror = match unchanged(MIRROR_KEYS) {
            Some(prev) => prev.site.app.mirror.clone(),
            None => config.proxy.as_ref().and_then(|proxy| {
                crate::mirror::Mirror::from_config(
                    proxy,
                    Some(leases.clone()),
                    fixed.driver.clone(),
                )
                .map(Arc::new)
            }),
        };
        let app = Arc::new(App {
            registry,
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
                cors: crate::http::cors::Cors::from_config(&config.http.cors),
                console: crate::ui::Console::from_config(config, &fixed.secret).map(Arc::new),
            }),
            config: config.clone(),
            leases,
            cache_validity,
        })
    }

    /// Starts this generation's background work, except the work in `kept`, which goes on
    /// running as it is (a reload did not change what it is built from).
    fn start(&self, fixed: &Fixed, mut kept: BTreeMap<Work, Tasks>) -> Running {
        let mut running = Running::default();
        for work in Work::ALL {
            if let Some(tasks) = kept.remove(&work) {
                running.work.insert(work, tasks);
                continue;
            }
            let tasks = Tasks::new();
            if self.start_work(work, fixed, &tasks) {
                reload_status::work_started(work.name());
                running.work.insert(work, tasks);
            }
        }
        // The docker_auth policy file's watch belongs to the token issuer, which every
        // generation builds anew; it is stateless and follows it.
        running.policy_watch = self
            .site
            .app
            .issuer
            .as_ref()
            .and_then(|issuer| issuer.watch_docker_auth_file());
        reload_status::work_running(running.names());
        running
    }

    /// Spawns `work` on `tasks` when the configuration asks for it; whether it did.
    fn start_work(&self, work: Work, fixed: &Fixed, tasks: &Tasks) -> bool {
        let config = &self.config;
        let app = self.site.app.clone();
        let leases = self.leases.clone();
        match work {
            Work::Health => {
                let h = &config.health;
                if !h.storagedriver.enabled
                    && h.file.is_empty()
                    && h.http.is_empty()
                    && h.tcp.is_empty()
                {
                    return false;
                }
                let probe = crate::storage_probe(fixed.driver.clone());
                ops::health::start(&config.health, probe, &fixed.health, tasks);
            }
            Work::CacheWatch => {
                if !matches!(
                    config.storage.cache.blobdescriptor,
                    Some(config::BlobDescriptorCache::Inmemory)
                ) {
                    return false;
                }
                let validity = self.cache_validity.clone();
                tasks.spawn("cache validity watch", move |mut stop| async move {
                    tokio::select! {
                        _ = stop.requested() => {}
                        _ = coord::cache_watch::watch(app, validity) => {}
                    }
                });
            }
            Work::Notifications => {
                let Some(notifier) = &app.notifier else {
                    return false;
                };
                // Beside the queue, in the storage, whatever Redis does: delivery needs nothing
                // the events themselves do not (see the README's notifications section).
                let beside_queue: Arc<dyn coord::LeaseBackend> = Arc::new(
                    coord::storage_lease::StorageLeases::new(fixed.driver.clone()),
                );
                notify::delivery::start(notifier.clone(), beside_queue, tasks);
            }
            Work::UploadPurging => {
                if !config.storage.maintenance.uploadpurging.enabled {
                    return false;
                }
                let object_storage = fixed.object_storage.clone();
                crate::start_upload_purging(config, app, object_storage, leases, tasks);
            }
            Work::Gc => {
                if !config.gc.enabled {
                    return false;
                }
                crate::start_online_gc(config, app, leases, tasks);
            }
            Work::CacheExpiry => {
                let Some(mirror) = app.mirror.clone() else {
                    return false;
                };
                crate::start_cache_expiry(app, mirror, leases, tasks);
            }
        }
        true
    }
}

impl Running {
    /// Takes out the work that `changes` do not reach, to go on running under the next
    /// generation.
    fn keep_unaffected(&mut self, changes: &[Change]) -> BTreeMap<Work, Tasks> {
        let kept: Vec<Work> = self
            .work
            .keys()
            .copied()
            .filter(|w| !w.affected_by(changes))
            .collect();
        kept.into_iter()
            .filter_map(|w| self.work.remove(&w).map(|t| (w, t)))
            .collect()
    }

    /// The names of the work still here.
    fn names(&self) -> Vec<&'static str> {
        self.work.keys().map(|w| w.name()).collect()
    }

    async fn stop(self) {
        if let Some(watch) = self.policy_watch {
            watch.abort();
        }
        let stopping = self
            .work
            .values()
            .map(|tasks| tasks.shutdown(RETIRE_DEADLINE));
        futures_util::future::join_all(stopping).await;
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
    generation: Generation,
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
        let running = first.start(&fixed, BTreeMap::new());
        let sites: Sites = Arc::new(arc_swap::ArcSwap::new(first.site.clone()));
        Arc::new(Self {
            source,
            fixed,
            sites,
            started: loaded.effective.clone(),
            current: tokio::sync::Mutex::new(Current {
                generation: first,
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
                let changes = config::diff(&current.tree, &loaded.effective);
                let live: Vec<Change> = changes
                    .iter()
                    .filter(|c| c.applies == Applies::Live)
                    .cloned()
                    .collect();
                Generation::build_after(
                    &loaded.config,
                    &self.fixed,
                    Some((&current.generation, &live)),
                )
                .map(|generation| (loaded, generation, changes, live))
                .map_err(|e| e.to_string())
            });
        let (loaded, generation, changes, live) = match next {
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
        let mut old = current.running.take().unwrap_or_default();
        let kept = old.keep_unaffected(&live);
        let restarted = old.names();
        old.stop().await;
        // Checks that were removed or changed must not leave their last failure behind; an
        // unchanged check keeps its state until its next run reports.
        if touches(&live, &["health"]) {
            self.fixed.health.clear();
        }
        current.running = Some(generation.start(&self.fixed, kept));
        let live: Vec<&str> = live.iter().map(|c| c.key.as_str()).collect();
        tracing::info!(
            trigger,
            changed = %live.join(","),
            restarted = %restarted.join(","),
            took_ms = started.elapsed().as_millis() as u64,
            "configuration reloaded"
        );
        let pending = config::diff(&self.started, &loaded.effective)
            .into_iter()
            .filter(|c| c.applies == Applies::NeedsRestart)
            .map(|c| c.key)
            .collect();
        reload_status::applied(pending);
        current.generation = generation;
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
                    if !self.current.lock().await.generation.config.reload.watch {
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
