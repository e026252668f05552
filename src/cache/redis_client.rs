//! Connections to Redis as it is deployed: one server, a master found through Sentinel, or a
//! Cluster; in clear or over TLS (rustls), with an ACL user or a password.
//!
//! Redis is optional for correctness, so a request must never wait for it to come back: a
//! background probe (one task per process, every [`PROBE_INTERVAL`]) connects, checks the
//! connection (`PING`; `ROLE` on a Sentinel master; `PING` to every Cluster master) and publishes
//! it. Requests take the published connection or, when there is none, skip the cache at once.
//! A request that sees the connection fail withdraws it and wakes the probe, so the cache is used
//! again at most one interval after Redis answers, whatever the length of the outage.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo,
    IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisConnectionInfo, RedisError,
    TlsCertificates, TlsMode, Value,
};
use tokio::sync::Notify;

use crate::config::RedisConfig;

/// How often the probe checks Redis: the longest a recovered Redis goes unused.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis.addr`, or a single `redis.addrs` entry).
    Server(String),
    /// The master that these sentinels name `master` (`redis.mastername`).
    Sentinel {
        /// Sentinel addresses, asked in order.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master: String,
    },
    /// A Redis Cluster reached through these seed nodes (several `redis.addrs`).
    Cluster(Vec<String>),
}

/// Credentials for one kind of server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Credentials {
    username: Option<String>,
    password: Option<String>,
}

/// Everything needed to connect, read and checked once at start-up.
#[derive(Clone)]
pub struct RedisSettings {
    /// Where the data lives.
    pub topology: Topology,
    data: Credentials,
    sentinel: Credentials,
    db: i64,
    tls: Option<TlsCertificates>,
    /// Connect (and handshake) timeout.
    pub dial: Duration,
    /// Reply timeout of one command or pipeline.
    pub read: Duration,
    /// Name given to each data connection (`CLIENT SETNAME`), so `CLIENT LIST` tells nodes apart.
    client_name: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

fn read_file(key: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))
}

impl RedisSettings {
    /// Reads the `redis` section as registry:2 does: `mastername` selects Sentinel, several
    /// addresses a Cluster, one address a single server; TLS files are loaded now, so a missing
    /// one stops start-up naming its key.
    pub fn from_config(cfg: &RedisConfig) -> Result<Self, String> {
        let addrs = cfg.addresses();
        if addrs.is_empty() {
            return Err("redis: no address configured (redis.addr or redis.addrs)".into());
        }
        let topology = match non_empty(&cfg.mastername) {
            Some(master) => Topology::Sentinel {
                sentinels: addrs,
                master,
            },
            None if addrs.len() > 1 => Topology::Cluster(addrs),
            None => Topology::Server(addrs[0].clone()),
        };
        for addr in match &topology {
            Topology::Server(a) => std::slice::from_ref(a),
            Topology::Sentinel { sentinels, .. } => sentinels.as_slice(),
            Topology::Cluster(seeds) => seeds.as_slice(),
        } {
            host_port(addr).map_err(|e| format!("redis.addr: {e}"))?;
        }
        let dial = cfg
            .dialtimeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500));
        let read = cfg
            .readtimeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500))
            .max(cfg.writetimeout.unwrap_or_default());
        Ok(Self {
            topology,
            data: Credentials {
                username: non_empty(&cfg.username),
                password: non_empty(&cfg.password),
            },
            sentinel: Credentials {
                username: non_empty(&cfg.sentinelusername),
                password: non_empty(&cfg.sentinelpassword),
            },
            db: cfg.db,
            tls: tls_certificates(cfg)?,
            dial,
            read,
            client_name: non_empty(&cfg.clientname),
        })
    }
}

/// The TLS material of `redis.tls` (or `None` without TLS). A certificate without its key (or
/// the reverse) is used as registry:2 3.1 does: TLS without a client certificate, with a warning.
/// `clientcas` (3.0's name) and `rootcas` (3.1's) both name the CAs that verify the server;
/// without them the system's roots do.
fn tls_certificates(cfg: &RedisConfig) -> Result<Option<TlsCertificates>, String> {
    if !cfg.wants_tls() {
        return Ok(None);
    }
    let Some(tls) = &cfg.tls else {
        return Ok(Some(TlsCertificates {
            client_tls: None,
            root_cert: None,
        }));
    };
    let client_tls = match (&tls.certificate, &tls.key) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_file("redis.tls.certificate", cert)?,
            client_key: read_file("redis.tls.key", key)?,
        }),
        (None, None) => None,
        _ => {
            tracing::warn!("redis.tls: a client certificate needs both certificate and key; connecting without one");
            None
        }
    };
    let mut roots = Vec::new();
    for (key, files) in [
        ("redis.tls.rootcas", &tls.rootcas),
        ("redis.tls.clientcas", &tls.clientcas),
    ] {
        for file in files {
            let pem = read_file(key, file)?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(format!(
                    "{key}: {} holds no PEM certificate",
                    file.display()
                ));
            }
            roots.extend_from_slice(&pem);
            roots.push(b'\n');
        }
    }
    let certs = TlsCertificates {
        client_tls,
        root_cert: (!roots.is_empty()).then_some(roots),
    };
    // Parsed now so that a bad file stops start-up instead of every connection.
    Client::build_with_tls(
        tls_info("localhost", 6379, &RedisConnectionInfo::default()),
        certs.clone(),
    )
    .map_err(|e| format!("redis.tls: {e}"))?;
    Ok(Some(certs))
}

/// `host:port` (`[v6]:port` too) split; the port is required.
fn host_port(addr: &str) -> Result<(String, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("{addr:?}: bad port {port:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{addr:?}: no host"));
    }
    Ok((host.to_string(), port))
}

fn tls_info(host: &str, port: u16, redis: &RedisConnectionInfo) -> ConnectionInfo {
    let info = (host, port)
        .into_connection_info()
        .expect("a host and port always make connection info");
    info.set_addr(ConnectionAddr::TcpTls {
        host: host.to_string(),
        port,
        insecure: false,
        tls_params: None,
    })
    .set_redis_settings(redis.clone())
}

impl RedisSettings {
    fn handshake(&self, who: &Credentials, db: i64) -> RedisConnectionInfo {
        let mut info = RedisConnectionInfo::default()
            .set_db(db)
            .set_skip_set_lib_name();
        if let Some(user) = &who.username {
            info = info.set_username(user);
        }
        if let Some(password) = &who.password {
            info = info.set_password(password);
        }
        info
    }

    /// A client for one server, with these credentials and database.
    fn client(&self, addr: &str, who: &Credentials, db: i64) -> Result<Client, RedisError> {
        self.client_with(addr, self.handshake(who, db))
    }

    fn client_with(&self, addr: &str, redis: RedisConnectionInfo) -> Result<Client, RedisError> {
        let (host, port) = host_port(addr)
            .map_err(|e| RedisError::from((redis::ErrorKind::InvalidClientConfig, "address", e)))?;
        match &self.tls {
            Some(certs) => Client::build_with_tls(tls_info(&host, port, &redis), certs.clone()),
            None => Client::open(
                (host.as_str(), port)
                    .into_connection_info()?
                    .set_redis_settings(redis),
            ),
        }
    }

    /// A multiplexed connection to one server, bounded by the dial timeout.
    async fn connect(
        &self,
        addr: &str,
        who: &Credentials,
        db: i64,
    ) -> Result<MultiplexedConnection, RedisError> {
        let client = self.client(addr, who, db)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.dial))
            .set_response_timeout(Some(self.read));
        bounded(
            self.dial + self.read,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
    }

    /// A RESP3 connection to the data server at `addr` on which Redis remembers the keys read
    /// (`CLIENT TRACKING ON`) and pushes the names of those another client changes; every push,
    /// and the connection's end, goes to `on_push`. Needs Redis 6 or later.
    async fn connect_tracked(
        &self,
        addr: &str,
        on_push: impl Fn(PushInfo) + Send + Sync + 'static,
    ) -> Result<MultiplexedConnection, RedisError> {
        let handshake = self
            .handshake(&self.data, self.db)
            .set_protocol(ProtocolVersion::RESP3);
        let client = self.client_with(addr, handshake)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.dial))
            .set_response_timeout(Some(self.read))
            .set_push_sender(move |info: PushInfo| {
                on_push(info);
                Ok::<(), std::convert::Infallible>(())
            });
        let mut conn = bounded(
            self.dial + self.read,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await?;
        let mut tracking = redis::cmd("CLIENT");
        tracking.arg("TRACKING").arg("ON");
        bounded(self.read, tracking.query_async::<Value>(&mut conn)).await?;
        Ok(conn)
    }

    /// Asks the sentinels, in order, where the master is.
    async fn find_master(&self, sentinels: &mut Sentinels) -> Result<String, RedisError> {
        let mut last = None;
        for _ in 0..sentinels.addrs.len() {
            match sentinels.ask(self).await {
                Ok(addr) => return Ok(addr),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| failure("no sentinel configured")))
    }

    /// Connects to the master the sentinels name, if it says it is one (a sentinel may still
    /// name a demoted master for a moment).
    async fn connect_master(
        &self,
        sentinels: &mut Sentinels,
    ) -> Result<(MultiplexedConnection, String), RedisError> {
        let addr = self.find_master(sentinels).await?;
        let mut conn = self.connect(&addr, &self.data, self.db).await?;
        check_master(&mut conn, self.read).await?;
        Ok((conn, addr))
    }

    /// A Cluster connection from the seeds; it follows MOVED and ASK and refreshes its slot map.
    async fn connect_cluster(&self, seeds: &[String]) -> Result<ClusterConnection, RedisError> {
        let infos = seeds
            .iter()
            .map(|addr| {
                Ok(self
                    .client(addr, &self.data, 0)?
                    .get_connection_info()
                    .clone())
            })
            .collect::<Result<Vec<ConnectionInfo>, RedisError>>()?;
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(self.dial)
            .response_timeout(self.read)
            .retries(2)
            .min_retry_wait(10)
            .max_retry_wait(self.read.as_millis().try_into().unwrap_or(u64::MAX));
        if let Some(user) = &self.data.username {
            builder = builder.username(user);
        }
        if let Some(password) = &self.data.password {
            builder = builder.password(password);
        }
        if let Some(certs) = &self.tls {
            builder = builder.tls(TlsMode::Secure).certs(certs.clone());
        }
        let client = builder.build()?;
        let mut conn = bounded(self.dial + self.read, client.get_async_connection()).await?;
        check_cluster(&mut conn, self.read).await?;
        Ok(conn)
    }
}

/// The sentinels and a kept connection to the one that answered last.
struct Sentinels {
    addrs: Vec<String>,
    master: String,
    /// Which sentinel `conn` is to (or is tried next).
    at: usize,
    conn: Option<MultiplexedConnection>,
}

impl Sentinels {
    fn new(addrs: &[String], master: &str) -> Self {
        Self {
            addrs: addrs.to_vec(),
            master: master.to_string(),
            at: 0,
            conn: None,
        }
    }

    /// `SENTINEL get-master-addr-by-name` on the current sentinel, as `host:port`; on failure
    /// the next call asks the next sentinel.
    async fn ask(&mut self, settings: &RedisSettings) -> Result<String, RedisError> {
        let result = self.ask_current(settings).await;
        if result.is_err() {
            self.conn = None;
            self.at = (self.at + 1) % self.addrs.len().max(1);
        }
        result
    }

    async fn ask_current(&mut self, settings: &RedisSettings) -> Result<String, RedisError> {
        let sentinel = self
            .addrs
            .get(self.at)
            .ok_or_else(|| failure("no sentinel configured"))?
            .clone();
        if self.conn.is_none() {
            self.conn = Some(settings.connect(&sentinel, &settings.sentinel, 0).await?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(&self.master);
        let reply: Option<(String, String)> = bounded(settings.read, cmd.query_async(conn)).await?;
        let (host, port) = reply.ok_or_else(|| {
            failure(&format!(
                "sentinel {sentinel} does not know master {:?}",
                self.master
            ))
        })?;
        Ok(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }
}

fn failure(message: &str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Client,
        "redis unavailable",
        message.to_string(),
    ))
}

/// Runs `fut` within `limit`; running out is a timeout error.
async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {limit:?}"),
        )))
    })
}

/// `ROLE` says `master` (after a failover the old master says `slave` and refuses writes).
async fn check_master(conn: &mut MultiplexedConnection, limit: Duration) -> Result<(), RedisError> {
    let role: Value = bounded(limit, redis::cmd("ROLE").query_async(conn)).await?;
    let first = match &role {
        Value::Array(items) => items.first(),
        _ => None,
    };
    match first {
        Some(Value::BulkString(b)) if b == b"master" => Ok(()),
        _ => Err(failure("the server named by the sentinels is not a master")),
    }
}

/// Every Cluster master answers `PING`.
async fn check_cluster(conn: &mut ClusterConnection, limit: Duration) -> Result<(), RedisError> {
    bounded(
        limit,
        conn.route_command(
            redis::cmd("PING"),
            RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllMasters,
                Some(ResponsePolicy::AllSucceeded),
            )),
        ),
    )
    .await
    .map(drop)
}

/// `CLIENT SETNAME` on a new connection (every master of a Cluster). A name the server refuses
/// (Redis forbids spaces) is logged and the connection used unnamed: the name is for operators,
/// the cache works without it.
async fn name_connection(
    conn: &mut Connection,
    name: &str,
    limit: Duration,
) -> Result<(), RedisError> {
    let mut setname = redis::cmd("CLIENT");
    setname.arg("SETNAME").arg(name);
    let named = match conn {
        Connection::Server(c) => bounded(limit, setname.query_async::<Value>(c))
            .await
            .map(drop),
        Connection::Cluster(c) => bounded(
            limit,
            c.route_command(
                setname,
                RoutingInfo::MultiNode((
                    MultipleNodeRoutingInfo::AllMasters,
                    Some(ResponsePolicy::AllSucceeded),
                )),
            ),
        )
        .await
        .map(drop),
    };
    match named {
        Err(e) if !breaks_connection(&e) => {
            tracing::warn!(error = %e, name, "redis.clientname refused by Redis; connection left unnamed");
            Ok(())
        }
        other => other,
    }
}

/// A usable connection.
#[derive(Clone)]
pub enum Connection {
    /// To one server (or the Sentinel master).
    Server(MultiplexedConnection),
    /// To a Cluster.
    Cluster(ClusterConnection),
}

impl Connection {
    /// Runs `cmds`: one pipeline on a server; on a Cluster each command on its own (their keys
    /// hash to different slots), concurrently. Replies come in order.
    pub async fn run(&mut self, cmds: Vec<Cmd>, limit: Duration) -> Result<Vec<Value>, RedisError> {
        match self {
            Connection::Server(conn) => {
                let mut pipe = redis::Pipeline::with_capacity(cmds.len());
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                bounded(limit, pipe.query_async(conn)).await
            }
            Connection::Cluster(conn) => {
                let calls = cmds.into_iter().map(|cmd| {
                    let mut conn = conn.clone();
                    async move { cmd.query_async::<Value>(&mut conn).await }
                });
                bounded(limit, futures_util::future::try_join_all(calls)).await
            }
        }
    }
}

/// Told what Redis pushes on a tracked connection (see [`RedisClient::start_tracking`]).
pub trait Invalidations: Send + Sync + 'static {
    /// Keys read on a tracked connection that a client changed since; `None` when every key
    /// may have changed (a flush, or a message this node cannot read).
    fn changed(&self, keys: Option<Vec<Vec<u8>>>);
    /// Tracked connection `generation` ended: Redis no longer reports changes of what it read.
    fn lost(&self, generation: u64);
}

/// The published connections, one generation.
#[derive(Clone)]
struct Published {
    generation: u64,
    conn: Connection,
    /// The tracked connection, when asked for and the server offers tracking.
    tracked: Option<MultiplexedConnection>,
}

/// The published connections and their generation (so a stale failure report cannot withdraw
/// newer ones).
struct Shared {
    current: RwLock<Option<Published>>,
    generation: AtomicU64,
    wake: Notify,
    invalidations: Option<Arc<dyn Invalidations>>,
}

impl Shared {
    /// Withdraws generation `generation`, if still published; true when it was.
    fn withdraw(&self, generation: u64) -> bool {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if matches!(&*current, Some(p) if p.generation == generation) {
            *current = None;
            return true;
        }
        false
    }

    fn published(&self) -> Option<Published> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Redis as the cache sees it: a connection when Redis answers, none when it does not.
pub struct RedisClient {
    shared: Arc<Shared>,
}

impl RedisClient {
    /// Starts the background probe (on the current Tokio runtime); the first connection is made
    /// there too, so start-up never waits for Redis.
    pub fn start(settings: RedisSettings) -> Self {
        Self::start_with(settings, None)
    }

    /// Like [`Self::start`], and beside each connection to a single server (or Sentinel master)
    /// a tracked one, whose changed keys and end are told to `invalidations`. A server without
    /// tracking (before Redis 6), or a Cluster, gets none.
    pub fn start_tracking(settings: RedisSettings, invalidations: Arc<dyn Invalidations>) -> Self {
        Self::start_with(settings, Some(invalidations))
    }

    fn start_with(settings: RedisSettings, invalidations: Option<Arc<dyn Invalidations>>) -> Self {
        let shared = Arc::new(Shared {
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            wake: Notify::new(),
            invalidations,
        });
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(probe(Arc::downgrade(&shared), settings));
            }
            Err(_) => tracing::warn!("no runtime for the redis probe; the cache stays unused"),
        }
        Self { shared }
    }

    /// The connection to use now, if Redis answers; never waits.
    pub fn connection(&self) -> Option<(u64, Connection)> {
        self.shared.published().map(|p| (p.generation, p.conn))
    }

    /// The tracked connection to read on now, if there is one; never waits.
    pub fn tracked(&self) -> Option<(u64, MultiplexedConnection)> {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let published = current.as_ref()?;
        Some((published.generation, published.tracked.clone()?))
    }

    /// The generation of the tracked connection published now, if any.
    pub fn tracked_generation(&self) -> Option<u64> {
        let current = self
            .shared
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|p| p.tracked.is_some())
            .map(|p| p.generation)
    }

    /// Reports that a command on connection `generation` failed with `error`: when the error
    /// means the connection (or the server behind it) is no longer good, the connection is
    /// withdrawn and the probe looks for a good one at once.
    pub fn failed(&self, generation: u64, error: &RedisError) {
        if !breaks_connection(error) {
            return;
        }
        if self.shared.withdraw(generation) {
            tracing::warn!(%error, "redis cache failing; using storage only until it answers");
            self.shared.wake.notify_one();
        }
    }
}

/// Whether `error` says the connection or its server is unusable (as opposed to one command
/// being refused, which reconnecting would not change).
fn breaks_connection(error: &RedisError) -> bool {
    match error.code() {
        Some(code) => matches!(
            code,
            "READONLY" | "LOADING" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" | "MOVED" | "ASK"
        ),
        None => true,
    }
}

/// The probe's view of Redis: what to connect to and, with Sentinel, where the master is.
struct Prober {
    settings: RedisSettings,
    sentinels: Option<Sentinels>,
    /// The master the published connection goes to (Sentinel).
    master: Option<String>,
    /// The server refused a tracked connection (logged once until it accepts one).
    tracking_refused: bool,
    /// The last tracked connection failed for a reason that may pass (not a refusal): the probe
    /// tries again beside the published connection.
    tracking_retry: bool,
}

impl Prober {
    fn new(settings: RedisSettings) -> Self {
        let sentinels = match &settings.topology {
            Topology::Sentinel { sentinels, master } => Some(Sentinels::new(sentinels, master)),
            _ => None,
        };
        Self {
            settings,
            sentinels,
            master: None,
            tracking_refused: false,
            tracking_retry: false,
        }
    }

    /// Connects to what the settings describe, and names the connection.
    async fn connect(&mut self) -> Result<Connection, RedisError> {
        let mut conn = self.connect_unnamed().await?;
        if let Some(name) = &self.settings.client_name {
            name_connection(&mut conn, name, self.settings.read).await?;
        }
        Ok(conn)
    }

    async fn connect_unnamed(&mut self) -> Result<Connection, RedisError> {
        let settings = &self.settings;
        if let Some(sentinels) = &mut self.sentinels {
            let (conn, addr) = settings.connect_master(sentinels).await?;
            self.master = Some(addr);
            return Ok(Connection::Server(conn));
        }
        match &settings.topology {
            Topology::Cluster(seeds) => settings
                .connect_cluster(seeds)
                .await
                .map(Connection::Cluster),
            Topology::Server(addr) | Topology::Sentinel { master: addr, .. } => {
                let mut conn = settings.connect(addr, &settings.data, settings.db).await?;
                bounded(
                    settings.read,
                    redis::cmd("PING").query_async::<String>(&mut conn),
                )
                .await?;
                Ok(Connection::Server(conn))
            }
        }
    }

    /// Checks that a published connection still serves: `PING`; with Sentinel, `ROLE` says
    /// master and the sentinels still name it (after a failover the old master may answer as
    /// one for a while).
    async fn check(&mut self, conn: &mut Connection) -> Result<(), RedisError> {
        let read = self.settings.read;
        match conn {
            Connection::Server(c) => match &mut self.sentinels {
                Some(sentinels) => {
                    check_master(c, read).await?;
                    let named = self.settings.find_master(sentinels).await?;
                    if self.master.as_deref() != Some(named.as_str()) {
                        return Err(failure(&format!("the sentinels now name {named}")));
                    }
                    Ok(())
                }
                None => bounded(read, redis::cmd("PING").query_async::<String>(c))
                    .await
                    .map(drop),
            },
            Connection::Cluster(c) => check_cluster(c, read).await,
        }
    }
}

/// The keys an `invalidate` push names; `None` for a flush (or a shape this node cannot read).
fn invalidated_keys(data: Vec<Value>) -> Option<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    for value in data {
        match value {
            Value::Array(items) | Value::Set(items) => {
                for item in items {
                    match item {
                        Value::BulkString(key) => keys.push(key),
                        _ => return None,
                    }
                }
            }
            Value::BulkString(key) => keys.push(key),
            _ => return None,
        }
    }
    Some(keys)
}

/// Connects the tracked connection of `generation`, when asked for and possible.
async fn track(
    prober: &mut Prober,
    shared: &Arc<Shared>,
    generation: u64,
) -> Option<MultiplexedConnection> {
    let sink = shared.invalidations.clone()?;
    let addr = match &prober.settings.topology {
        Topology::Cluster(_) => return None,
        Topology::Server(addr) => addr.clone(),
        Topology::Sentinel { .. } => prober.master.clone()?,
    };
    let owner = Arc::downgrade(shared);
    let on_push = move |info: PushInfo| match info.kind {
        PushKind::Invalidate => sink.changed(invalidated_keys(info.data)),
        PushKind::Disconnection => {
            sink.lost(generation);
            if let Some(shared) = owner.upgrade() {
                if shared.withdraw(generation) {
                    shared.wake.notify_one();
                }
            }
        }
        _ => {}
    };
    let mut connected = prober.settings.connect_tracked(&addr, on_push).await;
    if let (Ok(conn), Some(name)) = (&connected, &prober.settings.client_name) {
        let mut named = Connection::Server(conn.clone());
        if let Err(e) = name_connection(&mut named, name, prober.settings.read).await {
            connected = Err(e);
        }
    }
    prober.tracking_retry = matches!(&connected, Err(e) if breaks_connection(e));
    match connected {
        Ok(conn) => {
            prober.tracking_refused = false;
            Some(conn)
        }
        Err(error) => {
            if !prober.tracking_refused {
                tracing::info!(%error, retried = prober.tracking_retry, "no tracked connection to redis; every cached link is read from redis");
                prober.tracking_refused = true;
            }
            None
        }
    }
}

/// The probe: while the client lives, every [`PROBE_INTERVAL`] (or at once when a request saw a
/// failure) checks the published connections, withdraws them when one fails, and connects anew
/// when there are none.
async fn probe(shared: Weak<Shared>, settings: RedisSettings) {
    let mut prober = Prober::new(settings);
    let mut reported_down = false;
    loop {
        let Some(state) = shared.upgrade() else {
            return;
        };
        match state.published() {
            Some(mut published) => {
                let mut checked = prober.check(&mut published.conn).await;
                if let (Ok(()), Some(tracked)) = (&checked, published.tracked.as_mut()) {
                    checked = bounded(
                        prober.settings.read,
                        redis::cmd("PING").query_async::<String>(tracked),
                    )
                    .await
                    .map(drop);
                }
                if let Err(error) = checked {
                    state.withdraw(published.generation);
                    tracing::warn!(%error, "redis cache failing; using storage only until it answers");
                    reported_down = true;
                    continue;
                }
                if published.tracked.is_none() && prober.tracking_retry {
                    let generation = published.generation;
                    if let Some(tracked) = track(&mut prober, &state, generation).await {
                        let mut slot = state.current.write().unwrap_or_else(|e| e.into_inner());
                        if let Some(p) = slot.as_mut().filter(|p| p.generation == generation) {
                            p.tracked = Some(tracked);
                        }
                    }
                }
            }
            None => match prober.connect().await {
                Ok(conn) => {
                    let generation = state.generation.fetch_add(1, Ordering::Relaxed) + 1;
                    let tracked = track(&mut prober, &state, generation).await;
                    let tracking = tracked.is_some();
                    *state.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Published {
                        generation,
                        conn,
                        tracked,
                    });
                    tracing::info!(topology = ?prober.settings.topology, master = ?prober.master, tracking, "redis cache connected");
                    reported_down = false;
                }
                Err(error) => {
                    if !reported_down {
                        tracing::warn!(%error, "redis cache unreachable; using storage only until it answers");
                        reported_down = true;
                    }
                }
            },
        }
        // A failure reported meanwhile wakes the probe early; the pause still bounds reconnects.
        let _ = tokio::time::timeout(PROBE_INTERVAL, state.wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(yaml: &str) -> Result<RedisSettings, String> {
        RedisSettings::from_config(&serde_yaml::from_str(yaml).unwrap())
    }

    #[test]
    fn picks_the_topology_as_registry_does() {
        assert_eq!(
            settings("addr: r:6379").unwrap().topology,
            Topology::Server("r:6379".into())
        );
        assert_eq!(
            settings("addrs: [r:6379]").unwrap().topology,
            Topology::Server("r:6379".into())
        );
        assert_eq!(
            settings("addrs: [a:1, b:2]").unwrap().topology,
            Topology::Cluster(vec!["a:1".into(), "b:2".into()])
        );
        assert_eq!(
            settings("addr: 's1:1,s2:2'\nsentinelMasterSet: m")
                .unwrap()
                .topology,
            Topology::Sentinel {
                sentinels: vec!["s1:1".into(), "s2:2".into()],
                master: "m".into()
            }
        );
        assert_eq!(
            settings("addrs: ['[::1]:26379']\nmastername: m")
                .unwrap()
                .topology,
            Topology::Sentinel {
                sentinels: vec!["[::1]:26379".into()],
                master: "m".into()
            }
        );
    }

    #[test]
    fn refuses_what_cannot_be_dialled_or_read() {
        assert!(settings("addr: ''").err().unwrap().contains("no address"));
        assert!(settings("addr: nohost")
            .err()
            .unwrap()
            .contains("host:port"));
        assert!(settings("addr: 'h:x'").err().unwrap().contains("bad port"));
        let err = settings("addr: h:1\ntls: {rootcas: [/nonexistent/ca.pem]}")
            .err()
            .unwrap();
        assert!(err.starts_with("redis.tls.rootcas: cannot read"), "{err}");
        let err = settings("addr: h:1\ntls: {certificate: /nonexistent/c, key: /nonexistent/k}")
            .err()
            .unwrap();
        assert!(err.starts_with("redis.tls.certificate"), "{err}");
    }

    #[test]
    fn reads_the_keys_of_an_invalidation() {
        let key = |k: &str| Value::BulkString(k.as_bytes().to_vec());
        assert_eq!(
            invalidated_keys(vec![Value::Array(vec![key("a"), key("b")])]),
            Some(vec![b"a".to_vec(), b"b".to_vec()])
        );
        // FLUSHALL / FLUSHDB: every key.
        assert_eq!(invalidated_keys(vec![Value::Nil]), None);
        assert_eq!(
            invalidated_keys(vec![Value::Array(vec![Value::Int(1)])]),
            None
        );
    }

    #[test]
    fn splits_addresses() {
        assert_eq!(host_port("h:1").unwrap(), ("h".into(), 1));
        assert_eq!(host_port("[::1]:6379").unwrap(), ("::1".into(), 6379));
        assert!(host_port(":1").is_err());
    }

    #[test]
    fn only_connection_level_errors_withdraw_a_connection() {
        let io = RedisError::from(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "x"));
        assert!(breaks_connection(&io));
        assert!(breaks_connection(&failure("no sentinel")));
    }
}
