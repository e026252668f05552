//! Wharf: a container registry, drop-in for CNCF distribution (registry:2).
//!
//! A push travels: `http::server` (connection, headers, access log) ->
//! `api` (route, access check, handler) -> `registry` (validation, upload
//! state, links) -> `storage` (a `StorageDriver`).

pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod coord;
pub mod digest;
pub mod error_chain;
pub mod generation;
pub mod http;
pub mod mirror;
pub mod notify;
pub mod ops;
pub mod referenced_files;
pub mod registry;
pub mod storage;
pub(crate) mod tls_client;
pub mod ui;

use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderName, HeaderValue};

use api::urls::UrlBuilder;
use api::App;
use config::{AuthConfig, BlobDescriptorCache, Config, IndexPlatforms, StorageDriverConfig};
use registry::{Registry, RegistryOptions};
use storage::drivers::azure::{AzureDriver, AzureSettings};
use storage::drivers::gcs::{GcsDriver, GcsSettings};
use storage::drivers::s3::{S3Driver, S3Settings};
use storage::drivers::swift::{SwiftDriver, SwiftSettings};
use storage::drivers::StaleWrites;
use storage::drivers::{filesystem::FilesystemDriver, inmemory::InMemoryDriver};
use storage::StorageDriver;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Configured features this release does not provide.
    #[error("unsupported configuration:\n  {}", .0.join("\n  "))]
    Unsupported(Vec<String>),
    /// A header in `http.headers` that HTTP does not allow.
    #[error("http.headers.{name}: {reason}")]
    Header {
        /// Header name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The listen address could not be bound.
    #[error("http.addr: cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The object storage client could not be set up.
    #[error(transparent)]
    ObjectStorage(#[from] storage::drivers::s3::S3SetupError),
    /// The Azure Blob client could not be set up.
    #[error(transparent)]
    AzureStorage(#[from] storage::drivers::azure::AzureSetupError),
    /// The Google Cloud Storage client could not be set up.
    #[error(transparent)]
    GcsStorage(#[from] storage::drivers::gcs::GcsSetupError),
    /// The Swift client could not be set up.
    #[error(transparent)]
    SwiftStorage(#[from] storage::drivers::swift::SwiftSetupError),
    /// A configuration value that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The debug server could not listen on `http.debug.addr`.
    #[error("http.debug.addr: cannot listen on {addr}: {source}")]
    DebugBind {
        /// The address.
        addr: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The htpasswd file could not be opened or created.
    #[error("auth.htpasswd.path: {0}")]
    Htpasswd(std::io::Error),
    /// `http.tls` could not be set up.
    #[error(transparent)]
    Tls(#[from] http::tls::TlsSetupError),
    /// `tokenissuer` could not be set up.
    #[error(transparent)]
    Issuer(#[from] auth::issuer::IssuerSetupError),
    /// `auth.token` could not be set up (key files, algorithms).
    #[error(transparent)]
    Token(#[from] auth::token::TokenSetupError),
}

/// The storage driver named by the configuration, every call timed and traced.
pub fn storage_driver(config: &Config) -> Result<Arc<dyn StorageDriver>, StartError> {
    Ok(serving_storage_driver(config)?.0)
}

/// The configured driver, every call timed and traced, and the same driver as S3 or GCS when
/// it is one (upload purging also cleans their stale multipart uploads or scratch objects).
fn serving_storage_driver(
    config: &Config,
) -> Result<(Arc<dyn StorageDriver>, Option<StaleWrites>), StartError> {
    let mut object_storage = None;
    let driver: Arc<dyn StorageDriver> = match &config.storage.driver {
        StorageDriverConfig::Filesystem { rootdirectory, .. } => {
            Arc::new(FilesystemDriver::new(rootdirectory))
        }
        StorageDriverConfig::Inmemory => Arc::new(InMemoryDriver::new()),
        StorageDriverConfig::S3(s3) => {
            if !s3.v4auth {
                tracing::warn!(
                    "storage.s3.v4auth: false is ignored; requests are signed with SigV4"
                );
            }
            let driver = S3Driver::new(&S3Settings::from_s3(s3))?;
            object_storage = Some(StaleWrites::S3(driver.clone()));
            Arc::new(driver)
        }
        StorageDriverConfig::Oss(oss) => {
            let driver = S3Driver::new(&S3Settings::from_oss(oss))?;
            object_storage = Some(StaleWrites::S3(driver.clone()));
            Arc::new(driver)
        }
        StorageDriverConfig::Azure(azure) => {
            if AzureSettings::ignores_rootdirectory(azure) {
                tracing::warn!(
                    "storage.azure.rootdirectory is ignored without storage.azure.credentials, \
                     as distribution 2.8 does; add `credentials: {{type: shared_key}}` for \
                     distribution 3's names under the root directory"
                );
            }
            Arc::new(AzureDriver::new(&AzureSettings::from_config(azure))?)
        }
        StorageDriverConfig::Gcs(gcs) => {
            let emulator = std::env::var("STORAGE_EMULATOR_HOST").ok();
            let settings = GcsSettings::from_config(gcs, emulator.as_deref());
            let driver = GcsDriver::new(&settings)?;
            object_storage = Some(StaleWrites::Gcs(driver.clone()));
            Arc::new(driver)
        }
        StorageDriverConfig::Swift(swift) => {
            Arc::new(SwiftDriver::new(&SwiftSettings::from_config(swift))?)
        }
    };
    Ok((
        Arc::new(storage::instrumented::InstrumentedDriver::new(driver)),
        object_storage,
    ))
}

/// The registry over the configured storage and blob-descriptor cache.
pub fn build_registry(config: &Config, secret: Vec<u8>) -> Result<Registry, StartError> {
    registry_on(storage_driver(config)?, config, secret, None)
}

/// The registry over `driver` and the configured blob-descriptor cache; an in-memory cache
/// answers only while `validity` (when given) allows.
pub(crate) fn registry_on(
    driver: Arc<dyn StorageDriver>,
    config: &Config,
    secret: Vec<u8>,
    validity: Option<Arc<cache::validity::CacheValidity>>,
) -> Result<Registry, StartError> {
    let registry = Registry::new(driver, registry_options(config)?, secret);
    Ok(match config.storage.cache.blobdescriptor {
        None => registry,
        Some(BlobDescriptorCache::Inmemory) => {
            let mut cache =
                cache::memory::MemoryCache::new(config.storage.cache.blobdescriptorsize);
            if let Some(validity) = validity {
                cache = cache.with_validity(validity);
            }
            registry.with_cache(Arc::new(cache::instrumented::InstrumentedCache::new(
                "inmemory",
                Arc::new(cache),
            )))
        }
        Some(BlobDescriptorCache::Redis) => {
            let redis = config.redis.as_ref().ok_or_else(|| {
                StartError::Unsupported(vec![
                    "storage.cache.blobdescriptor: redis needs a redis section".into(),
                ])
            })?;
            let cache = cache::redis::RedisCache::new(redis)
                .map_err(|e| StartError::Unsupported(vec![e]))?;
            registry.with_cache(Arc::new(cache::instrumented::InstrumentedCache::new(
                "redis",
                Arc::new(cache),
            )))
        }
    })
}

/// Compiles `validation.manifests.urls.<which>`.
fn url_patterns(patterns: &[String], which: &str) -> Result<Vec<regex::Regex>, StartError> {
    patterns
        .iter()
        .map(|p| {
            regex::Regex::new(p).map_err(|e| {
                StartError::Invalid(format!("validation.manifests.urls.{which}: {p:?}: {e}"))
            })
        })
        .collect()
}

/// Registry behaviour from the configuration.
pub fn registry_options(config: &Config) -> Result<RegistryOptions, StartError> {
    let v = &config.validation;
    Ok(RegistryOptions {
        delete_enabled: config.storage.delete.enabled,
        read_only: config.storage.maintenance.readonly.enabled,
        catalog_max_entries: config.catalog.maxentries,
        max_tags: config.tags.maxtags,
        urls_allow: url_patterns(&v.manifests.urls.allow, "allow")?,
        urls_deny: url_patterns(&v.manifests.urls.deny, "deny")?,
        index_children: match v.manifests.indexes.platforms {
            IndexPlatforms::All => registry::IndexChildren::All,
            IndexPlatforms::None => registry::IndexChildren::None,
            IndexPlatforms::List => registry::IndexChildren::Platforms(
                v.manifests
                    .indexes
                    .platformlist
                    .iter()
                    .map(|p| (p.architecture.clone(), p.os.clone()))
                    .collect(),
            ),
        },
        tag_concurrency: config.storage.tag.concurrencylimit,
        validation_disabled: v.disabled,
        redirect_disabled: config.storage.redirect.disable,
    })
}

/// The key upload-state tokens are signed with: `http.secret`, or a random
/// one that only this process knows.
fn upload_secret(config: &Config) -> Vec<u8> {
    match config.http.secret.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => s.as_bytes().to_vec(),
        None => {
            tracing::warn!(
                "No HTTP secret provided (http.secret): generated a random one. Upload sessions \
                 cannot be continued on other nodes; set the same http.secret on every node behind a load balancer"
            );
            rand::random::<[u8; 32]>().to_vec()
        }
    }
}

fn response_headers(config: &Config) -> Result<Vec<(HeaderName, HeaderValue)>, StartError> {
    let mut headers = vec![(
        HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static("registry/2.0"),
    )];
    for (name, values) in &config.http.headers {
        let bad = |reason: String| StartError::Header {
            name: name.clone(),
            reason,
        };
        let header = HeaderName::try_from(name.as_str()).map_err(|e| bad(e.to_string()))?;
        for v in values {
            headers.push((
                header.clone(),
                HeaderValue::from_str(v).map_err(|e| bad(e.to_string()))?,
            ));
        }
    }
    Ok(headers)
}

fn authenticator(
    config: &Config,
    trusted_extra: &[rustls::pki_types::CertificateDer<'static>],
    https: bool,
) -> Result<Option<auth::Authenticator>, StartError> {
    Ok(match &config.auth {
        None => None,
        Some(AuthConfig::Silly { realm, service }) => Some(auth::Authenticator::Silly {
            realm: realm.clone(),
            service: service.clone(),
        }),
        Some(AuthConfig::Htpasswd { realm, path }) => Some(auth::Authenticator::Htpasswd(
            auth::htpasswd::Htpasswd::open(realm, path).map_err(StartError::Htpasswd)?,
        )),
        Some(AuthConfig::Token {
            realm,
            service,
            issuer,
            rootcertbundle,
            jwks,
            autoredirect,
            autoredirectpath,
            signingalgorithms,
        }) => {
            let settings = auth::token::TokenSettings {
                realm,
                service,
                issuer,
                rootcertbundle: rootcertbundle.as_deref(),
                jwks: jwks.as_deref(),
                autoredirect: autoredirect.then_some(autoredirectpath.as_str()),
                signingalgorithms,
                scheme: if https { "https" } else { "http" },
            };
            Some(auth::Authenticator::Token(auth::token::TokenVerifier::new(
                &settings,
                trusted_extra,
            )?))
        }
    })
}

impl AsRef<Registry> for App {
    fn as_ref(&self) -> &Registry {
        &self.registry
    }
}

/// Purges stale upload sessions in the background: after a random delay (so replicas spread
/// out), then every `interval`, on whichever node takes the `purge` lease (distribution runs
/// it on every replica). On S3 the pass also aborts multipart uploads older than `age`, on GCS
/// it deletes scratch objects (upload sessions, parts, claims) older than `age`.
/// Shutdown interrupts a pass: what it has not deleted yet, the next pass will.
fn start_upload_purging(
    config: &Config,
    app: Arc<App>,
    object_storage: Option<StaleWrites>,
    leases: Arc<dyn coord::LeaseBackend>,
    tasks: &ops::tasks::Tasks,
) {
    let p = config.storage.maintenance.uploadpurging.clone();
    if !p.enabled {
        return;
    }
    // registry:2 takes any interval; the floor only keeps a zero one from spinning.
    let interval = p.interval.max(Duration::from_secs(1));
    let jitter = Duration::from_secs(rand::random::<u64>() % interval.as_secs().clamp(1, 3600));
    let lease = coord::Lease::new(leases, "purge", Duration::from_secs(300));
    tasks.spawn("upload purging", move |mut stop| async move {
        let mut wait = jitter;
        loop {
            tokio::select! {
                _ = stop.requested() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = interval;
            let held = match lease.try_acquire().await {
                Ok(Some(held)) => held,
                Ok(None) => {
                    tracing::debug!("upload purge: another node holds the purge lease");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "upload purge: cannot take the purge lease");
                    continue;
                }
            };
            tokio::select! {
                _ = stop.requested() => {
                    tracing::info!("upload purge interrupted by shutdown");
                    held.release().await;
                    return;
                }
                _ = purge_pass(&app, object_storage.as_ref(), &p, lease.holder_id()) => {}
            }
            held.release().await;
        }
    });
}

/// Removes expired pull-through content every minute (more often for a shorter `ttl`), on
/// whichever node takes the
/// `mirror-expiry` lease (registry:2 keeps its expiry schedule in one process's memory).
fn start_cache_expiry(
    app: Arc<App>,
    mirror: Arc<mirror::Mirror>,
    leases: Arc<dyn coord::LeaseBackend>,
    tasks: &ops::tasks::Tasks,
) {
    let lease = coord::Lease::new(leases, "mirror-expiry", Duration::from_secs(60));
    tasks.spawn("cache expiry", move |mut stop| async move {
        let every = mirror.sweep_interval();
        // Nodes started together do not all try at once.
        let mut wait = every / 2 + every.mul_f64(rand::random::<f64>() / 2.0);
        loop {
            tokio::select! {
                _ = stop.requested() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = every;
            let held = match lease.try_acquire().await {
                Ok(Some(held)) => held,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cache expiry: cannot take its lease");
                    continue;
                }
            };
            let still_held = || held.is_held();
            tokio::select! {
                _ = stop.requested() => {
                    held.release().await;
                    return;
                }
                _ = mirror.sweep_expired(&app.registry, &still_held) => {}
            }
            held.release().await;
        }
    });
}

/// One upload-purging pass over the registry and, on S3 and GCS, the stale write state
/// (multipart uploads; scratch objects).
async fn purge_pass(
    app: &App,
    object_storage: Option<&StaleWrites>,
    p: &config::UploadPurgingConfig,
    holder: &str,
) {
    tracing::info!(dry_run = p.dryrun, "upload purge started");
    let started_ms = coord::lease::now_ms();
    let summary = match app.registry.purge_uploads(p.age, p.dryrun).await {
        Ok(r) => {
            tracing::info!(
                examined = r.examined,
                purged = r.purged.len(),
                dry_run = p.dryrun,
                "upload purge done"
            );
            serde_json::json!({"examined": r.examined, "purged": r.purged.len()})
        }
        Err(e) => {
            tracing::warn!(error = %e, "upload purge failed");
            serde_json::json!({"error": e.to_string()})
        }
    };
    let mut summary = summary;
    summary["holder"] = holder.into();
    summary["dry_run"] = p.dryrun.into();
    summary["started_ms"] = started_ms.into();
    summary["ended_ms"] = coord::lease::now_ms().into();
    ops::cluster_status::purge_pass(summary);
    if let Some(store) = object_storage {
        match store.purge(p.age, p.dryrun).await {
            Ok(n) => tracing::info!(
                removed = n,
                dry_run = p.dryrun,
                "upload purge: stale write state on the object store done"
            ),
            Err(e) => tracing::warn!(error = %e, "upload purge: stale write state failed"),
        }
    }
}

/// `health.storagedriver`'s check: the storage root answers a stat (a missing root is
/// healthy: an empty registry has none).
fn storage_probe(driver: Arc<dyn StorageDriver>) -> ops::health::StorageProbe {
    ops::health::StorageProbe {
        name: format!("storagedriver_{}", driver.name()),
        run: Box::new(move || {
            let driver = driver.clone();
            Box::pin(async move {
                match driver.stat("/").await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_not_found() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })
        }),
    }
}

/// Runs `garbage-collect` against the configured storage.
pub async fn garbage_collect(
    config: &Config,
    options: &registry::gc::GcOptions,
) -> Result<registry::gc::GcReport, Box<dyn std::error::Error>> {
    let registry = build_registry(config, Vec::new())?;
    Ok(registry.garbage_collect(options).await?)
}

/// How long background tasks get to stop once requests have drained: they stop at their
/// next await, so this is only reached by one stuck in a call without a timeout.
const TASK_STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Runs one online garbage-collection pass against a live cluster, under the cluster's `gc`
/// lease (`garbage-collect --online`).
pub async fn garbage_collect_online(
    config: &Config,
    options: &registry::gc_online::OnlineOptions,
) -> Result<registry::gc_online::OnlineReport, Box<dyn std::error::Error>> {
    let registry = build_registry(config, Vec::new())?;
    let leases = coord::collector::lease_backend(config, registry.driver().clone())?;
    let lease = coord::Lease::new(leases, coord::collector::GC_LEASE, config.gc.leasettl);
    Ok(coord::collector::run_pass(&registry, &lease, options).await?)
}

/// Turns the cluster's run-time read-only mode on or off (`maintenance readonly on|off`).
pub async fn set_read_only(config: &Config, on: bool) -> Result<(), Box<dyn std::error::Error>> {
    let driver = storage_driver(config)?;
    Ok(coord::maintenance::set_read_only(driver.as_ref(), on).await?)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received, shutting down"),
    }
}

/// The checks `serve` makes before it touches storage, files or the network: features this
/// release lacks, response headers, validation patterns (`config check`).
pub fn check(config: &Config) -> Result<(), StartError> {
    let unsupported = config.unsupported();
    if !unsupported.is_empty() {
        return Err(StartError::Unsupported(unsupported));
    }
    response_headers(config)?;
    registry_options(config)?;
    Ok(())
}

/// Starts online garbage collection when `gc.enabled`, under the cluster's `gc` lease.
fn start_online_gc(
    config: &Config,
    app: Arc<App>,
    leases: Arc<dyn coord::LeaseBackend>,
    tasks: &ops::tasks::Tasks,
) {
    if !config.gc.enabled {
        return;
    }
    ops::gc_metrics::init();
    let lease = coord::Lease::new(leases, coord::collector::GC_LEASE, config.gc.leasettl);
    tracing::info!(
        backend = lease.backend_kind(),
        interval = ?config.gc.interval,
        graceperiod = ?config.gc.graceperiod,
        "online garbage collection enabled"
    );
    let (opts, interval) = (coord::collector::options(config), config.gc.interval);
    tasks.spawn("garbage collection", move |mut stop| async move {
        tokio::select! {
            _ = stop.requested() => {}
            _ = coord::collector::run(app, lease, opts, interval) => {}
        }
    });
}

/// Runs the registry until SIGTERM/SIGINT; SIGHUP (and, with `reload.watch`, a change of the
/// file) reloads the configuration from `source`.
pub async fn serve(
    loaded: config::Loaded,
    source: generation::ReloadSource,
) -> Result<(), StartError> {
    let config = loaded.config.clone();
    check(&config)?;
    ops::metrics::init();
    let tls = config
        .http
        .tls
        .as_ref()
        .filter(|t| t.certificate.is_some() || t.letsencrypt.is_some())
        .map(|t| http::tls::acceptor(t, !config.http.http2.disabled))
        .transpose()?;
    let (driver, object_storage) = serving_storage_driver(&config)?;
    if let StorageDriverConfig::Azure(azure) = &config.storage.driver {
        storage::drivers::azure::check_credentials(&AzureSettings::from_config(azure)).await?;
    }
    if let StorageDriverConfig::Swift(swift) = &config.storage.driver {
        storage::drivers::swift::check_start(&SwiftSettings::from_config(swift)).await?;
    }
    let tasks = ops::tasks::Tasks::new();
    let health = ops::health::Health::default();
    let lifecycle = ops::lifecycle::Lifecycle::new(health.clone());
    lifecycle.start_watchdog(&tasks);
    let mut urls = UrlBuilder::new(
        config.http.host.clone(),
        config.http.relativeurls,
        &config.http.prefix,
    );
    if tls.is_some() {
        urls.default_scheme = "https";
    }
    let fixed = generation::Fixed {
        driver: driver.clone(),
        object_storage,
        secret: upload_secret(&config),
        urls,
        health: health.clone(),
        read_only_switch: Arc::default(),
        https: tls.is_some(),
    };
    let first = generation::Generation::build(&config, &fixed)?;
    {
        let switch = fixed.read_only_switch.clone();
        let driver = driver.clone();
        tasks.spawn("read-only flag watch", move |mut stop| async move {
            tokio::select! {
                _ = stop.requested() => {}
                _ = coord::maintenance::watch(driver, switch) => {}
            }
        });
    }
    if let Some(addr) = &config.http.debug.addr {
        let prometheus = &config.http.debug.prometheus;
        let state = ops::debug::DebugState {
            health: health.clone(),
            lifecycle: lifecycle.clone(),
            metrics_path: prometheus.enabled.then(|| prometheus.path.clone()),
        };
        let debug_bind_error = |source| StartError::DebugBind {
            addr: addr.clone(),
            source,
        };
        let listener =
            http::server::bind_tcp_std(addr, config.http.reuseport).map_err(debug_bind_error)?;
        let bound = listener.local_addr().map_err(debug_bind_error)?;
        let stopped =
            ops::debug::spawn(listener, state, tasks.signal()).map_err(debug_bind_error)?;
        // The debug server runs on a runtime of its own: this task waits for its thread.
        tasks.spawn("debug server", |_| async move {
            let _ = stopped.await;
        });
        tracing::info!(addr = %bound, "debug server listening");
    }
    let bind_error = |source| StartError::Bind {
        addr: config.http.addr.clone(),
        source,
    };
    // A socket passed by a service manager (LISTEN_FDS) outlives this process: see the README.
    let listener = match http::socket_activation::inherited_listener().map_err(bind_error)? {
        Some(socket) => http::server::Listener::Tcp(
            tokio::net::TcpListener::from_std(socket).map_err(bind_error)?,
        ),
        None => {
            http::server::Listener::bind(&config.http.net, &config.http.addr, config.http.reuseport)
                .await
                .map_err(bind_error)?
        }
    };
    let hangup = generation::Reloader::hangup_signal()
        .map_err(|e| StartError::Invalid(format!("cannot handle SIGHUP: {e}")))?;
    let reloader = generation::Reloader::start(source, fixed, &loaded, first);
    {
        let reloader = reloader.clone();
        tasks.spawn("configuration reload", move |stop| {
            reloader.run(hangup, stop)
        });
    }
    tracing::info!(
        addr = %listener.local_addr(),
        storage = config.storage.driver.name(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    // The whole shutdown fits in http.draintimeout: its first third keeps
    // accepting while load balancers see readiness turn false (haproxy.cfg
    // needs 2 s; Kubernetes a few seconds to drop the endpoint), the rest is
    // for in-flight requests. 0 keeps distribution's meaning: stop at once.
    let drain_grace = config.http.draintimeout / 3;
    let settings = http::server::ServerSettings {
        drain_grace,
        drain_timeout: config.http.draintimeout - drain_grace,
        limits: http::limits::Limits::from(&config.http.limits),
        http2: !config.http.http2.disabled,
        tls,
    };
    let shutdown = async move {
        shutdown_signal().await;
        lifecycle.set_draining();
    };
    http::server::serve(reloader.sites(), listener, settings, shutdown).await;
    // Requests have drained; now every background task is told to stop.
    reloader.shutdown().await;
    tasks.shutdown(TASK_STOP_DEADLINE).await;
    let _ = tokio::task::spawn_blocking(ops::telemetry::shutdown).await;
    Ok(())
}
