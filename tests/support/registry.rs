//! A registry process: `wharf` (or distribution 2.8.2 as the reference) started with a generated
//! `config.yml` on free 127.0.0.1 ports, ready when it answers, killed and reaped when dropped.
//! The same guard runs a single registry and a cluster's node (named, with a debug server,
//! restarted on the same ports with its logs kept).
//!
//! A `Registry` is also the [`Endpoint`] a client talks to (`reg.get(..)`, `push_blob(&reg, ..)`).

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::Duration;

use reqwest::blocking::Client;

use super::azure::{self, AzureTarget};
use super::client::{http_client, Endpoint, Resp};
use super::gcs::{self, GcsTarget};
use super::metrics::Scrape;
use super::process::{clean_command, free_port, log_file, log_lines, read_text, Process, Server};
use super::raw::{raw_request, RawEnd};
use super::s3::{self, S3Target};
use super::swift::{self, SwiftTarget};
use super::wait::{retry_until, wait_until, WAIT_LIMIT};

/// The `http.secret` of every registry unless a test gives another (nodes sharing it accept each
/// other's upload sessions).
pub const SECRET: &str = "wharf-integration-test-secret";

/// Where a registry keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Filesystem,
    Inmemory,
    /// The S3 driver against the shared `moto_server` of this test process, a bucket per
    /// registry, redirects off (tests of redirects turn them on).
    S3,
    /// The Azure driver against the shared Azurite of this test process, a container per
    /// registry, redirects off (tests of redirects turn them on).
    Azure,
    /// The GCS driver against the shared fake-gcs-server of this test process, a bucket per
    /// registry, redirects off (tests of redirects turn them on).
    Gcs,
    /// The Swift driver against the shared single-node Swift of this test process, a container
    /// per registry, redirects off (tests of redirects turn them on).
    Swift,
}

/// When a started registry counts as ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// `GET /v2/` answers 200.
    V2Ok,
    /// `GET /v2/` answers 200 or 401 (a config with authentication).
    V2Answers,
    /// `GET /readyz` on the debug server answers 200 (what a load balancer asks).
    Readyz,
}

/// What to run: the configuration and how to start the server. `{addr}` and `{root}` are
/// substituted in a template, `{addr}`, `{root}`, `{config}` and `{tmp}` in the environment and
/// `{config}` in the arguments.
#[derive(Clone)]
pub struct RegistryBuilder {
    server: Server,
    driver: Driver,
    delete_enabled: bool,
    storage_dir: Option<PathBuf>,
    log_section: Option<String>,
    http_extra: Vec<String>,
    headers: Vec<(String, String)>,
    sections: Vec<String>,
    template: Option<String>,
    env: Vec<(String, String)>,
    args: Option<Vec<String>>,
    ready: Ready,
    s3: Option<S3Target>,
    s3_lines: Vec<String>,
    azure: Option<AzureTarget>,
    gcs: Option<GcsTarget>,
    swift: Option<SwiftTarget>,
    redirect: bool,
    name: Option<String>,
    secret: String,
    debug: Option<bool>,
    redis: Option<(String, Duration)>,
    redis_section: Option<String>,
}

impl RegistryBuilder {
    /// For `Driver::S3`: use this endpoint and bucket (several registries may share one).
    pub fn s3_target(mut self, target: &S3Target) -> Self {
        self.s3 = Some(target.clone());
        self
    }

    /// For `Driver::Azure`: use this service and container (several registries may share one).
    pub fn azure_target(mut self, target: &AzureTarget) -> Self {
        self.azure = Some(target.clone());
        self
    }

    /// For `Driver::Gcs`: use this server and bucket (several registries may share one).
    pub fn gcs_target(mut self, target: &GcsTarget) -> Self {
        self.gcs = Some(target.clone());
        self
    }

    /// For `Driver::Swift`: use this cluster and container (several registries may share one).
    pub fn swift_target(mut self, target: &SwiftTarget) -> Self {
        self.swift = Some(target.clone());
        self
    }

    /// For `Driver::S3`: an extra line (indented by four spaces) under `storage.s3`.
    pub fn s3_line(mut self, line: &str) -> Self {
        self.s3_lines.push(line.to_string());
        self
    }

    /// Redirect blob reads to the storage (`storage.redirect.disable: false`); off by default.
    pub fn redirect(mut self, enabled: bool) -> Self {
        self.redirect = enabled;
        self
    }

    /// Which binary (default: the one under test).
    pub fn server(mut self, server: Server) -> Self {
        self.server = server;
        self
    }

    /// `storage.delete.enabled` (default true).
    pub fn delete_enabled(mut self, enabled: bool) -> Self {
        self.delete_enabled = enabled;
        self
    }

    /// Use this folder as `storage.filesystem.rootdirectory` (it outlives the registry).
    pub fn storage_dir(mut self, dir: &Path) -> Self {
        self.storage_dir = Some(dir.to_path_buf());
        self
    }

    /// Replace the `log:` section (give the whole YAML block, starting with `log:`).
    pub fn log_section(mut self, yaml: &str) -> Self {
        self.log_section = Some(yaml.to_string());
        self
    }

    /// Add a line (already indented by two spaces) under `http:`.
    pub fn http_line(mut self, line: &str) -> Self {
        self.http_extra.push(line.to_string());
        self
    }

    /// Add a response header under `http.headers` (besides `X-Content-Type-Options: nosniff`).
    pub fn response_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Add a top-level YAML section, e.g. `"catalog:\n  maxentries: 5\n"`.
    pub fn section(mut self, yaml: &str) -> Self {
        self.sections.push(yaml.to_string());
        self
    }

    /// Use a whole config text instead; `{addr}` and `{root}` are substituted.
    pub fn template(mut self, yaml: &str) -> Self {
        self.template = Some(yaml.to_string());
        self
    }

    /// An environment variable for the server; `{addr}`, `{root}`, `{config}` and `{tmp}` are
    /// substituted.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Command-line arguments; `{config}` is substituted. Default: `serve {config}`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = Some(args.iter().map(|a| a.to_string()).collect());
        self
    }

    /// When a start counts as ready (default: `GET /v2/` answers 200).
    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    /// `http.secret` (default [`SECRET`]).
    pub fn secret(mut self, secret: &str) -> Self {
        self.secret = secret.to_string();
        self
    }

    /// `http.debug` on a free port of its own, Prometheus at `/metrics` when `metrics`.
    pub fn debug_server(mut self, metrics: bool) -> Self {
        self.debug = Some(metrics);
        self
    }

    /// No upload purging in the background (for tests that count storage requests).
    pub fn without_upload_purging(self) -> Self {
        self.env(
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED",
            "false",
        )
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "168h")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "24h")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN", "false")
    }

    /// `http.draintimeout`.
    pub fn draintimeout(self, timeout: Duration) -> Self {
        let line = format!("  draintimeout: {}ms", timeout.as_millis());
        self.http_line(&line)
    }

    /// The Redis blob-descriptor cache at `addr`, with this dial/read/write timeout.
    pub fn redis(mut self, addr: &str, timeout: Duration) -> Self {
        self.redis = Some((addr.to_string(), timeout));
        self
    }

    /// The Redis blob-descriptor cache with this `redis` section body (indented key lines:
    /// Sentinel, Cluster, TLS, ACL users).
    pub fn redis_section(mut self, body: &str) -> Self {
        self.redis_section = Some(body.to_string());
        self
    }

    /// A node of a cluster: its name in the `X-Wharf-Node` response header and in every log
    /// line (text logs), a debug server with metrics, ready when `/readyz` says so.
    pub fn node(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self.headers
            .push(("X-Wharf-Node".to_string(), name.to_string()));
        self.debug_server(true).ready(Ready::Readyz)
    }

    fn render(&self, addr: &str, debug_port: Option<u16>, root: &Path) -> String {
        if let Some(template) = &self.template {
            return template
                .replace("{addr}", addr)
                .replace("{root}", &root.display().to_string());
        }
        let mut text = String::from("version: 0.1\n");
        match (&self.log_section, &self.name) {
            (Some(section), _) => text.push_str(section),
            (None, Some(name)) => text.push_str(&format!(
                "log:\n  level: info\n  formatter: text\n  fields:\n    service: registry\n    node: {name}\n"
            )),
            (None, None) => {
                text.push_str("log:\n  level: info\n  fields:\n    service: registry\n")
            }
        }
        text.push_str("storage:\n");
        match self.driver {
            Driver::Filesystem => {
                text.push_str(&format!(
                    "  filesystem:\n    rootdirectory: {}\n",
                    root.display()
                ));
            }
            Driver::Inmemory => text.push_str("  inmemory: {}\n"),
            Driver::S3 => {
                let target = self.s3.as_ref().expect("an S3 target is chosen at spawn");
                text.push_str(&s3::storage_section(
                    &target.endpoint,
                    &target.bucket,
                    &self.s3_lines,
                ));
                text.push_str(&format!("  redirect:\n    disable: {}\n", !self.redirect));
            }
            Driver::Azure => {
                let target = self.azure.as_ref().expect("a container is chosen at spawn");
                text.push_str(&azure::storage_section(target, &[]));
                text.push_str(&format!("  redirect:\n    disable: {}\n", !self.redirect));
            }
            Driver::Gcs => {
                let target = self.gcs.as_ref().expect("a bucket is chosen at spawn");
                text.push_str(&gcs::storage_section(target, &[]));
                text.push_str(&format!("  redirect:\n    disable: {}\n", !self.redirect));
            }
            Driver::Swift => {
                let target = self.swift.as_ref().expect("a container is chosen at spawn");
                text.push_str(&swift::storage_section(target, &[]));
                text.push_str(&format!("  redirect:\n    disable: {}\n", !self.redirect));
            }
        }
        text.push_str(&format!(
            "  delete:\n    enabled: {}\n",
            self.delete_enabled
        ));
        if let Some((addr, timeout)) = &self.redis {
            let t = format!("{}ms", timeout.as_millis());
            text.push_str(&format!(
                "  cache:\n    blobdescriptor: redis\nredis:\n  addr: {addr}\n  dialtimeout: {t}\n  readtimeout: {t}\n  writetimeout: {t}\n  pool:\n    maxidle: 16\n    maxactive: 64\n    idletimeout: 300s\n"
            ));
        }
        if let Some(body) = &self.redis_section {
            text.push_str("  cache:\n    blobdescriptor: redis\nredis:\n");
            text.push_str(body);
            if !body.ends_with('\n') {
                text.push('\n');
            }
        }
        text.push_str(&format!(
            "http:\n  addr: {addr}\n  secret: {}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
            self.secret
        ));
        for (name, value) in &self.headers {
            text.push_str(&format!("    {name}: [{value:?}]\n"));
        }
        if let (Some(port), Some(metrics)) = (debug_port, self.debug) {
            text.push_str(&format!(
                "  debug:\n    addr: 127.0.0.1:{port}\n    prometheus:\n      enabled: {metrics}\n      path: /metrics\n"
            ));
        }
        for line in &self.http_extra {
            text.push_str(line);
            text.push('\n');
        }
        for section in &self.sections {
            text.push_str(section);
            if !section.ends_with('\n') {
                text.push('\n');
            }
        }
        text
    }

    /// Start the server and wait until it is ready; panics (with its config and logs) if it is
    /// not.
    pub fn start(self) -> Registry {
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let mut registry = self.spawn();
            match registry.wait_ready() {
                Ok(()) => return registry,
                Err(error) => {
                    let stderr = registry.stderr_text();
                    // Another test may have taken a port between our probe and the bind.
                    if stderr.contains("address already in use")
                        || stderr.contains("Address already in use")
                        || stderr.contains("AddrInUse")
                    {
                        last_error = format!("{error}\n--- stderr ---\n{stderr}");
                        continue;
                    }
                    panic!(
                        "registry did not become ready: {error}\n--- config ---\n{}\n--- stderr ---\n{stderr}\n--- stdout ---\n{}",
                        registry.config_text(),
                        registry.stdout_text()
                    );
                }
            }
        }
        panic!("registry did not start after 5 attempts: {last_error}");
    }

    /// Start the server without waiting (for start-up failure tests).
    pub fn spawn(&self) -> Registry {
        if self.driver == Driver::S3 && self.s3.is_none() {
            let mut with_bucket = self.clone();
            with_bucket.s3 = Some(S3Target::fresh());
            return with_bucket.spawn();
        }
        if self.driver == Driver::Azure && self.azure.is_none() {
            let mut with_container = self.clone();
            with_container.azure = Some(AzureTarget::fresh());
            return with_container.spawn();
        }
        if self.driver == Driver::Gcs && self.gcs.is_none() {
            let mut with_bucket = self.clone();
            with_bucket.gcs = Some(GcsTarget::fresh());
            return with_bucket.spawn();
        }
        if self.driver == Driver::Swift && self.swift.is_none() {
            let mut with_container = self.clone();
            with_container.swift = Some(SwiftTarget::fresh());
            return with_container.spawn();
        }
        let prefix = match &self.name {
            Some(name) => format!("wharf-{name}-"),
            None => "wharf-test-".to_string(),
        };
        let tmp = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir()
            .expect("temp dir");
        let root = match &self.storage_dir {
            Some(dir) => dir.clone(),
            None => tmp.path().join("storage"),
        };
        fs::create_dir_all(&root).expect("create storage dir");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let debug_port = self.debug.map(|_| free_port());
        let config_path = tmp.path().join("config.yml");
        let config = self.render(&addr.to_string(), debug_port, &root);
        fs::write(&config_path, &config).expect("write config");

        let config_arg = config_path.display().to_string();
        let args = match &self.args {
            Some(args) => args
                .iter()
                .map(|a| a.replace("{config}", &config_arg))
                .collect(),
            None => vec!["serve".to_string(), config_arg.clone()],
        };
        // Google's client libraries (and so registry:2) reach an emulator this way.
        let emulator = self
            .gcs
            .as_ref()
            .filter(|_| self.driver == Driver::Gcs)
            .map(|t| ("STORAGE_EMULATOR_HOST".to_string(), t.host.clone()));
        let env = self
            .env
            .iter()
            .chain(emulator.iter())
            .map(|(key, value)| {
                let value = value
                    .replace("{addr}", &addr.to_string())
                    .replace("{root}", &root.display().to_string())
                    .replace("{config}", &config_arg)
                    .replace("{tmp}", &tmp.path().display().to_string());
                (key.clone(), value)
            })
            .collect();
        let mut registry = Registry {
            process: None,
            launch: Launch {
                binary: self.server.binary(),
                args,
                env,
            },
            name: self.name.clone(),
            ready: self.ready,
            addr,
            debug_port,
            root,
            stdout_path: tmp.path().join("stdout.log"),
            stderr_path: tmp.path().join("stderr.log"),
            config_path,
            tmp,
            endpoint: Endpoint::new(&format!("http://{addr}")),
            s3: self.s3.clone().filter(|_| self.driver == Driver::S3),
            azure: self.azure.clone().filter(|_| self.driver == Driver::Azure),
            gcs: self.gcs.clone().filter(|_| self.driver == Driver::Gcs),
        };
        registry.process = Some(registry.launch.spawn(
            registry.label(),
            &registry.stdout_path,
            &registry.stderr_path,
        ));
        registry
    }
}

/// How a registry's process is started, again on a restart.
struct Launch {
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Launch {
    fn spawn(&self, name: &str, stdout: &Path, stderr: &Path) -> Process {
        let mut cmd = clean_command(&self.binary);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log_file(stdout))
            .stderr(log_file(stderr));
        Process::spawn(name, cmd)
    }
}

/// A running registry process. Dropping it kills and reaps the process.
pub struct Registry {
    process: Option<Process>,
    launch: Launch,
    name: Option<String>,
    ready: Ready,
    addr: SocketAddr,
    debug_port: Option<u16>,
    root: PathBuf,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    config_path: PathBuf,
    tmp: tempfile::TempDir,
    endpoint: Endpoint,
    s3: Option<S3Target>,
    azure: Option<AzureTarget>,
    gcs: Option<GcsTarget>,
}

impl Deref for Registry {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Registry {
    /// A registry of `driver`, deletes enabled, to configure further.
    pub fn builder(driver: Driver) -> RegistryBuilder {
        RegistryBuilder {
            server: Server::Wharf,
            driver,
            delete_enabled: true,
            storage_dir: None,
            log_section: None,
            http_extra: Vec::new(),
            headers: Vec::new(),
            sections: Vec::new(),
            template: None,
            env: Vec::new(),
            args: None,
            ready: Ready::V2Ok,
            s3: None,
            s3_lines: Vec::new(),
            azure: None,
            gcs: None,
            swift: None,
            redirect: false,
            name: None,
            secret: SECRET.to_string(),
            debug: None,
            redis: None,
            redis_section: None,
        }
    }

    /// The usual registry for a test: the given driver, deletes enabled.
    pub fn start(driver: Driver) -> Registry {
        Registry::builder(driver).start()
    }

    /// The endpoint and bucket of an `s3` registry.
    pub fn s3(&self) -> Option<&S3Target> {
        self.s3.as_ref()
    }

    /// The service and container of an `azure` registry.
    pub fn azure(&self) -> Option<&AzureTarget> {
        self.azure.as_ref()
    }

    /// The server and bucket of a `gcs` registry.
    pub fn gcs(&self) -> Option<&GcsTarget> {
        self.gcs.as_ref()
    }

    /// A client of this registry (to hand to another thread).
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint.clone()
    }

    /// The node name given to [`RegistryBuilder::node`], or "".
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("registry")
    }

    /// `127.0.0.1:<API port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The debug server's port (see [`RegistryBuilder::debug_server`]).
    pub fn debug_port(&self) -> u16 {
        self.debug_port
            .expect("a registry started with a debug server")
    }

    /// The storage folder (`rootdirectory`); empty for the inmemory and s3 drivers.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/docker/registry/v2`.
    pub fn v2_root(&self) -> PathBuf {
        self.root.join("docker/registry/v2")
    }

    /// The test's private temp folder (config, logs and, by default, the storage folder).
    pub fn tmp(&self) -> &Path {
        self.tmp.path()
    }

    /// The generated `config.yml`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Its text.
    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    /// The PID of the running process.
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .and_then(Process::pid)
            .expect("a running process")
    }

    /// What every process of this registry wrote to stderr.
    pub fn stderr_text(&self) -> String {
        read_text(&self.stderr_path)
    }

    /// What every process of this registry wrote to stdout.
    pub fn stdout_text(&self) -> String {
        read_text(&self.stdout_path)
    }

    /// Both, for failure messages and log searches.
    pub fn log(&self) -> String {
        self.stderr_text() + &self.stdout_text()
    }

    /// Access log lines (text logs: `msg="request"` with method, path and status) of every
    /// process this registry ran.
    pub fn access_lines(&self) -> Vec<String> {
        log_lines(&self.log(), |l| {
            l.contains("msg=\"request\"") && l.contains(" method=")
        })
    }

    /// Polls stderr until `predicate` holds (bounded); returns the last text read.
    pub fn wait_stderr(&self, predicate: impl Fn(&str) -> bool) -> Option<String> {
        let mut text = String::new();
        let found = wait_until(Duration::from_secs(15), || {
            text = self.stderr_text();
            predicate(&text)
        });
        found.then_some(text)
    }

    /// The exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.process.as_mut().and_then(Process::try_exit)
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.process.as_mut().and_then(|p| p.wait_exit(limit))
    }

    /// Started, not killed, not exited.
    pub fn running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::running)
    }

    /// SIGTERM: the server drains and exits by itself.
    pub fn terminate(&mut self) {
        self.process.as_mut().expect("running").signal("TERM");
    }

    /// SIGHUP: the server reloads its configuration file.
    pub fn hangup(&mut self) {
        self.process.as_mut().expect("running").signal("HUP");
    }

    /// SIGKILL, at once, and reap (also done on drop).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Starts a fresh process with the same configuration and ports (the last one must have
    /// exited or been killed), its output appended to the same logs, and waits until it is
    /// ready.
    pub fn restart(&mut self) {
        assert!(!self.running(), "{} is still running", self.label());
        let mut last = String::new();
        // The ports were this registry's a moment ago; a replacement binds them again at once.
        for _attempt in 0..5 {
            self.process = Some(self.launch.spawn(
                self.label(),
                &self.stdout_path,
                &self.stderr_path,
            ));
            match self.wait_ready() {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    self.kill();
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "{} did not become ready again: {last}\n--- config ---\n{}\n--- log ---\n{}",
            self.label(),
            self.config_text(),
            self.log()
        );
    }

    /// Waits (bounded) until the registry is ready as its builder said, or has exited.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let url = match self.ready {
            Ready::V2Ok | Ready::V2Answers => format!("{}/v2/", self.url()),
            Ready::Readyz => format!("http://127.0.0.1:{}/readyz", self.debug_port()),
        };
        let accepted: &[u16] = match self.ready {
            Ready::V2Answers => &[200, 401],
            Ready::V2Ok | Ready::Readyz => &[200],
        };
        let client = probe_client();
        let mut last = String::from("no answer");
        let mut exited = None;
        let ready = wait_until(WAIT_LIMIT, || {
            exited = self.try_exit();
            if exited.is_some() {
                return true;
            }
            match probe(&client, &url) {
                Ok(status) if accepted.contains(&status) => return true,
                Ok(status) => last = format!("GET {url} answered {status}"),
                Err(e) => last = e,
            }
            false
        });
        match exited {
            Some(status) => Err(format!("process exited early with {status}")),
            None if ready => Ok(()),
            None => Err(format!("not ready within {WAIT_LIMIT:?}: {last}")),
        }
    }

    /// `GET /readyz` on the debug port: the status, or None if nothing answers.
    pub fn readyz(&self) -> Option<u16> {
        let url = format!("http://127.0.0.1:{}/readyz", self.debug_port());
        probe(&probe_client(), &url).ok()
    }

    /// `GET http://127.0.0.1:<debug port><path>`: status and body.
    pub fn debug_get(&self, path: &str) -> (u16, String) {
        let resp = http_client()
            .get(format!("http://127.0.0.1:{}{path}", self.debug_port()))
            .send()
            .unwrap_or_else(|e| panic!("GET {path} on the debug port: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().unwrap_or_default())
    }

    /// Polls a debug path until it answers `status` (bounded); returns the last answer.
    pub fn wait_debug(&self, path: &str, status: u16) -> (u16, String) {
        retry_until(|| {
            let answer = self.debug_get(path);
            if answer.0 == status {
                Ok(answer)
            } else {
                Err(answer)
            }
        })
    }

    /// A parsed scrape of the debug server's `/metrics`.
    pub fn scrape(&self) -> Scrape {
        let (status, text) = self.debug_get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {text}");
        Scrape::parse(&text)
    }

    /// Scrapes until `done` holds (bounded); returns the last scrape either way, for the
    /// caller's assertions to explain.
    pub fn scrape_until(&self, done: impl Fn(&Scrape) -> bool) -> Scrape {
        retry_until(|| {
            let s = self.scrape();
            if done(&s) {
                Ok(s)
            } else {
                Err(s)
            }
        })
    }

    /// Sends a raw HTTP/1.1 request with `Connection: close` and reads the answer (see
    /// [`raw_request`]).
    pub fn raw(&self, head: &str, body: &[u8]) -> io::Result<Resp> {
        raw_request(self.addr, head, body, RawEnd::KeepOpen)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client for readiness probes: each answer within 2 s or not at all.
fn probe_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(2))
        .build()
        .expect("probe client")
}

/// A GET: the status, or why nothing answered.
fn probe(client: &Client, url: &str) -> Result<u16, String> {
    client
        .get(url)
        .send()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}
