//! Shared harness for Wharf's integration tests.
//!
//! A test reads like a user's session: start a registry (`Registry::builder(driver).start()`),
//! push blobs and manifests over HTTP, read them back, and compare. Every process the harness
//! starts is killed and reaped when its guard is dropped; every wait is bounded in time and in
//! count; nothing binds anything but 127.0.0.1.
//!
//! The suite targets the `wharf` binary. As a development aid, `WHARF_TEST_SERVER=/usr/bin/docker-registry`
//! points the same tests at CNCF distribution 2.8.2 (both take `serve <config.yml>`).

#![allow(dead_code)]

pub mod layout;
pub mod proxy;
pub mod s3;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------------------------------------
// Media types and well-known values
// ---------------------------------------------------------------------------------------------

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
pub const API_VERSION: &str = "registry/2.0";

/// Every manifest type a registry:2 drop-in accepts in `Accept`.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Upper bound for any single wait loop (start-up, exit, log line, external command).
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------------------------------------
// Storage drivers and the per-driver test macro
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Filesystem,
    Inmemory,
    /// The S3 driver against the shared `moto_server` of this test process, a bucket per
    /// registry, redirects off (tests of redirects turn them on).
    S3,
}

/// `for_each_driver!(a, b)` turns `fn a(driver: Driver)` into the tests `a::filesystem`,
/// `a::inmemory` and `a::s3`; `for_each_driver!(local: a, b)` into the first two only.
#[macro_export]
macro_rules! for_each_driver {
    (local: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn filesystem() {
                    super::$name($crate::support::Driver::Filesystem)
                }
                #[test]
                fn inmemory() {
                    super::$name($crate::support::Driver::Inmemory)
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn filesystem() {
                    super::$name($crate::support::Driver::Filesystem)
                }
                #[test]
                fn inmemory() {
                    super::$name($crate::support::Driver::Inmemory)
                }
                #[test]
                fn s3() {
                    super::$name($crate::support::Driver::S3)
                }
            }
        )*
    };
}

/// `for_kinds_and_drivers!([OciManifest, OciIndex] a, b)` turns `fn a(driver: Driver, kind: Kind)`
/// into the tests `a::OciManifest::filesystem`, `a::OciManifest::inmemory`, `a::OciManifest::s3`,
/// `a::OciIndex::…`.
#[macro_export]
macro_rules! for_kinds_and_drivers {
    ($kinds:tt $($name:ident),* $(,)?) => {
        $( $crate::for_kinds_and_drivers!(@name $name $kinds); )*
    };
    (@name $name:ident [$($kind:ident),* $(,)?]) => {
        mod $name {
            $( $crate::for_kinds_and_drivers!(@one $name $kind); )*
        }
    };
    (@one $name:ident $kind:ident) => {
        #[allow(non_snake_case)]
        mod $kind {
            #[test]
            fn filesystem() {
                super::super::$name(
                    $crate::support::Driver::Filesystem,
                    $crate::support::Kind::$kind,
                )
            }
            #[test]
            fn inmemory() {
                super::super::$name(
                    $crate::support::Driver::Inmemory,
                    $crate::support::Kind::$kind,
                )
            }
            #[test]
            fn s3() {
                super::super::$name(
                    $crate::support::Driver::S3,
                    $crate::support::Kind::$kind,
                )
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Which server binary
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The binary under test: `wharf`, or `$WHARF_TEST_SERVER` when set (a development aid).
    Wharf,
    /// CNCF distribution 2.8.2 as packaged by Debian.
    DockerRegistry,
}

pub const DOCKER_REGISTRY_BIN: &str = "/usr/bin/docker-registry";

impl Server {
    pub fn binary(self) -> PathBuf {
        match self {
            Server::Wharf => match std::env::var_os("WHARF_TEST_SERVER") {
                Some(path) if !path.is_empty() => PathBuf::from(path),
                _ => PathBuf::from(env!("CARGO_BIN_EXE_wharf")),
            },
            Server::DockerRegistry => PathBuf::from(DOCKER_REGISTRY_BIN),
        }
    }
}

/// A `Command` for a server binary with every `REGISTRY_*` and `AWS_*` variable removed.
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("REGISTRY_") || key_text.starts_with("AWS_") {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A 127.0.0.1 port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------------------------
// The registry process guard
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ready {
    /// `GET /v2/` answers 200.
    V2Ok,
    /// `GET /v2/` answers 200 or 401 (a config with authentication).
    V2Answers,
}

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
    redirect: bool,
}

/// Where an `s3` registry keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Target {
    /// `http://127.0.0.1:<port>` of the S3 server (or of a proxy in front of it).
    pub endpoint: String,
    pub bucket: String,
}

impl S3Target {
    /// A fresh bucket on the shared server.
    pub fn fresh() -> S3Target {
        let server = s3::shared();
        S3Target {
            endpoint: server.endpoint(),
            bucket: server.create_bucket(),
        }
    }
}

impl RegistryBuilder {
    /// For `Driver::S3`: use this endpoint and bucket (several registries may share one).
    pub fn s3_target(mut self, target: &S3Target) -> Self {
        self.s3 = Some(target.clone());
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

    pub fn server(mut self, server: Server) -> Self {
        self.server = server;
        self
    }

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

    pub fn ready(mut self, ready: Ready) -> Self {
        self.ready = ready;
        self
    }

    fn render(&self, addr: &str, root: &Path) -> String {
        if let Some(template) = &self.template {
            return template
                .replace("{addr}", addr)
                .replace("{root}", &root.display().to_string());
        }
        let mut text = String::from("version: 0.1\n");
        text.push_str(
            self.log_section
                .as_deref()
                .unwrap_or("log:\n  level: info\n  fields:\n    service: registry\n"),
        );
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
        }
        text.push_str(&format!(
            "  delete:\n    enabled: {}\n",
            self.delete_enabled
        ));
        text.push_str(&format!(
            "http:\n  addr: {addr}\n  secret: wharf-integration-test-secret\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
        ));
        for (name, value) in &self.headers {
            text.push_str(&format!("    {name}: [{value:?}]\n"));
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

    /// Start the server and wait until it is ready; panics (with its stderr) if it is not.
    pub fn start(self) -> Registry {
        let mut last_error = String::new();
        for _attempt in 0..5 {
            let mut registry = self.spawn();
            match registry.wait_ready(self.ready) {
                Ok(()) => return registry,
                Err(error) => {
                    let stderr = registry.stderr_text();
                    // Another test may have taken the port between our probe and the bind.
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
            let mut with_bucket = self.clone_settings();
            with_bucket.s3 = Some(S3Target::fresh());
            return with_bucket.spawn();
        }
        let tmp = tempfile::Builder::new()
            .prefix("wharf-test-")
            .tempdir()
            .expect("temp dir");
        let root = match &self.storage_dir {
            Some(dir) => dir.clone(),
            None => tmp.path().join("storage"),
        };
        fs::create_dir_all(&root).expect("create storage dir");
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let config_path = tmp.path().join("config.yml");
        let config = self.render(&addr.to_string(), &root);
        fs::write(&config_path, &config).expect("write config");
        let stdout_path = tmp.path().join("stdout.log");
        let stderr_path = tmp.path().join("stderr.log");

        let binary = self.server.binary();
        let mut cmd = clean_command(&binary);
        let config_arg = config_path.display().to_string();
        match &self.args {
            Some(args) => {
                for arg in args {
                    cmd.arg(arg.replace("{config}", &config_arg));
                }
            }
            None => {
                cmd.arg("serve").arg(&config_arg);
            }
        }
        for (key, value) in &self.env {
            let value = value
                .replace("{addr}", &addr.to_string())
                .replace("{root}", &root.display().to_string())
                .replace("{config}", &config_arg)
                .replace("{tmp}", &tmp.path().display().to_string());
            cmd.env(key, value);
        }
        cmd.stdout(fs::File::create(&stdout_path).expect("stdout file"));
        cmd.stderr(fs::File::create(&stderr_path).expect("stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        Registry {
            child: Some(child),
            addr,
            root,
            tmp,
            stdout_path,
            stderr_path,
            config_path,
            client: http_client(),
            s3: self.s3.clone().filter(|_| self.driver == Driver::S3),
        }
    }

    fn clone_settings(&self) -> RegistryBuilder {
        RegistryBuilder {
            server: self.server,
            driver: self.driver,
            delete_enabled: self.delete_enabled,
            storage_dir: self.storage_dir.clone(),
            log_section: self.log_section.clone(),
            http_extra: self.http_extra.clone(),
            headers: self.headers.clone(),
            sections: self.sections.clone(),
            template: self.template.clone(),
            env: self.env.clone(),
            args: self.args.clone(),
            ready: self.ready,
            s3: self.s3.clone(),
            s3_lines: self.s3_lines.clone(),
            redirect: self.redirect,
        }
    }
}

pub fn http_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A running registry process. Dropping it kills and reaps the process.
pub struct Registry {
    child: Option<Child>,
    addr: SocketAddr,
    root: PathBuf,
    tmp: tempfile::TempDir,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    config_path: PathBuf,
    client: Client,
    s3: Option<S3Target>,
}

impl Registry {
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
            redirect: false,
        }
    }

    /// The endpoint and bucket of an `s3` registry.
    pub fn s3(&self) -> Option<&S3Target> {
        self.s3.as_ref()
    }

    /// The usual registry for a test: the given driver, deletes enabled.
    pub fn start(driver: Driver) -> Registry {
        Registry::builder(driver).start()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, as skopeo wants it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
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

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn config_text(&self) -> String {
        fs::read_to_string(&self.config_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("process").id()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stderr_path).unwrap_or_default()).into_owned()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.stdout_path).unwrap_or_default()).into_owned()
    }

    /// Poll stderr until `predicate` holds (bounded); returns the last text read.
    pub fn wait_stderr(&self, predicate: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        for _ in 0..400 {
            let text = self.stderr_text();
            if predicate(&text) {
                return Some(text);
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(POLL);
        }
        None
    }

    /// The exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Wait (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        for _ in 0..(limit.as_millis() / POLL.as_millis() + 1) {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(POLL);
        }
        self.try_exit()
    }

    pub fn wait_ready(&mut self, ready: Ready) -> Result<(), String> {
        let probe = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(2))
            .build()
            .expect("probe client");
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut last = String::from("no answer");
        for _ in 0..1200 {
            if let Some(status) = self.try_exit() {
                return Err(format!("process exited early with {status}"));
            }
            match probe.get(format!("{}/v2/", self.url())).send() {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    if code == 200 || (ready == Ready::V2Answers && code == 401) {
                        return Ok(());
                    }
                    last = format!("GET /v2/ answered {code}");
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(POLL);
        }
        Err(format!("not ready within {WAIT_LIMIT:?}: {last}"))
    }

    /// Kill the process and reap it (also done on drop).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    // ----- HTTP ---------------------------------------------------------------------------

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// An absolute URL for a path (`/v2/...`) or a `Location` value (absolute or relative).
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{}", self.url(), location)
        } else {
            format!("{}/{}", self.url(), location)
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.resolve(path))
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Send a raw HTTP/1.1 request with `Connection: close` and read the answer
    /// (see [`raw_request`]).
    pub fn raw(&self, head: &str, body: &[u8]) -> io::Result<Resp> {
        raw_request(self.addr, head, body, RawEnd::KeepOpen)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

/// A fully read response; header names are lower-case.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header, or a panic naming it and the response.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("response has no {name} header: {}", self.describe()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.describe()))
    }

    pub fn describe(&self) -> String {
        let mut body = self.text();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        format!("{} {:?} {}", self.status, self.headers, body)
    }

    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status: {}",
            self.describe()
        );
        self
    }
}

/// Send a request, read the whole answer, and check the header every response must carry.
pub fn send(request: RequestBuilder) -> Resp {
    let resp = request.send().expect("HTTP request failed");
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp.bytes().expect("read response body").to_vec();
    let resp = Resp {
        status,
        headers,
        body,
    };
    assert_api_version(&resp);
    resp
}

pub fn assert_api_version(resp: &Resp) {
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        Some(API_VERSION),
        "every response carries Docker-Distribution-API-Version: {}",
        resp.describe()
    );
}

/// The error body `{"errors":[{"code","message","detail"?}]}` with one of `statuses` and the first
/// error's code one of `codes`.
pub fn assert_error_in(resp: &Resp, statuses: &[u16], codes: &[&str]) {
    assert!(
        statuses.contains(&resp.status),
        "expected status in {statuses:?} with code in {codes:?}, got {}",
        resp.describe()
    );
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "error responses are JSON, got Content-Type {content_type:?}: {}",
        resp.describe()
    );
    let body: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", resp.describe()));
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("error body has no errors array: {}", resp.describe()));
    assert!(
        !errors.is_empty(),
        "empty errors array: {}",
        resp.describe()
    );
    for error in errors {
        assert!(error["code"].is_string(), "error without code: {error}");
        assert!(
            error["message"].is_string(),
            "error without message: {error}"
        );
    }
    let first = errors[0]["code"].as_str().unwrap();
    assert!(
        codes.contains(&first),
        "expected code in {codes:?}, got {first}: {}",
        resp.describe()
    );
}

pub fn assert_error(resp: &Resp, status: u16, code: &str) {
    assert_error_in(resp, &[status], &[code]);
}

/// Either an error JSON with one of `codes`, or (for routes distribution does not match at all)
/// a plain 404; never a 5xx.
pub fn assert_error_or_plain_404(resp: &Resp, statuses: &[u16], codes: &[&str]) {
    assert!(resp.status < 500, "server error: {}", resp.describe());
    if resp.status == 404 && !resp.header("content-type").unwrap_or("").contains("json") {
        return;
    }
    assert_error_in(resp, statuses, codes);
}

/// The answer to a request a server may refuse before reading its whole body: either an error
/// JSON as given, or a connection reset/closed by the server before the client finished sending
/// (TCP may then lose the answer). Callers must still check that nothing was stored.
pub fn assert_refused(result: io::Result<Resp>, statuses: &[u16], codes: &[&str]) {
    match result {
        Ok(resp) => {
            assert_api_version(&resp);
            assert_error_in(&resp, statuses, codes);
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "no answer, and not a reset either: {e}"
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over a TcpStream (for what an HTTP library refuses or normalizes)
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RawEnd {
    /// Write the request, shut down our sending side, read the answer. Servers need not answer a
    /// half-closed connection (hyper drops it by default): only for requests whose body is
    /// deliberately short.
    ShutdownWrite,
    /// Write the request and keep the connection open while reading the answer.
    KeepOpen,
}

/// Send `head` (request line and headers, without the blank line; `Connection: close` is added)
/// and `body` on a fresh connection; read the answer until the server closes (bounded: 60 s of
/// silence). The body is written from a second thread so an early answer is still read.
pub fn raw_request(addr: SocketAddr, head: &str, body: &[u8], end: RawEnd) -> io::Result<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut request = head.trim_end_matches("\r\n").to_string();
    request.push_str("\r\nConnection: close\r\n\r\n");
    let mut payload = request.into_bytes();
    payload.extend_from_slice(body);
    let mut writer = stream.try_clone()?;
    let writer_thread = thread::spawn(move || {
        let result = writer.write_all(&payload).and_then(|_| writer.flush());
        if end == RawEnd::ShutdownWrite {
            let _ = writer.shutdown(Shutdown::Write);
        }
        result
    });
    // Read until the server closes, bounded in time (120 s) and in number of reads.
    let mut answer = Vec::new();
    let mut read_result = Ok(());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..100_000 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) => {
                read_result = Err(e);
                break;
            }
        }
        if Instant::now() > deadline {
            read_result = Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "answer not finished within 120 s",
            ));
            break;
        }
    }
    let _ = stream.shutdown(Shutdown::Both);
    let _ = writer_thread.join();
    if answer.is_empty()
        || read_result
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::TimedOut)
    {
        read_result?;
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without an answer",
        ));
    }
    parse_raw_response(&answer)
}

/// Write `head` and the first bytes of a body, then close the connection: a truncated upload.
pub fn raw_truncated(addr: SocketAddr, head: &str, partial_body: &[u8]) -> io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut payload = head.trim_end_matches("\r\n").as_bytes().to_vec();
    payload.extend_from_slice(b"\r\n\r\n");
    payload.extend_from_slice(partial_body);
    stream.write_all(&payload)?;
    stream.flush()?;
    // Give the server a moment to read what was sent before the connection goes away.
    thread::sleep(Duration::from_millis(200));
    drop(stream);
    Ok(())
}

pub fn parse_raw_response(raw: &[u8]) -> io::Result<Resp> {
    let invalid = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut rest = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| invalid("no status line"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| {
            let (k, v) = line.split_once(':')?;
            Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        rest = decode_chunked(&rest).ok_or_else(|| invalid("bad chunked body"))?;
    } else if let Some(len) = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.truncate(len);
    }
    Ok(Resp {
        status,
        headers,
        body: rest,
    })
}

fn decode_chunked(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size {
            out.extend_from_slice(data);
            return Some(out);
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

// ---------------------------------------------------------------------------------------------
// Digests and deterministic data
// ---------------------------------------------------------------------------------------------

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// The hex part of `sha256:<hex>`.
pub fn digest_hex(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// A `Write` sink that hashes what goes through it.
#[derive(Default)]
pub struct HashingSink {
    hasher: Sha256,
    pub written: u64,
}

impl HashingSink {
    pub fn digest(self) -> String {
        format!("sha256:{}", hex(&self.hasher.finalize()))
    }
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// xoshiro256** seeded through splitmix64: fast, deterministic test data.
#[derive(Clone)]
pub struct Prng {
    s: [u64; 4],
}

impl Prng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Prng {
            s: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            let n = tail.len();
            tail.copy_from_slice(&bytes[..n]);
        }
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.fill(&mut buf);
        buf
    }
}

/// `len` bytes of a seeded PRNG stream, produced on demand (never held in memory).
/// Reads are whole multiples of 8 bytes except the last, so the stream does not depend on the
/// reader's buffer sizes.
pub struct PrngReader {
    prng: Prng,
    remaining: u64,
    pending: Vec<u8>,
}

impl PrngReader {
    pub fn new(seed: u64, len: u64) -> Self {
        PrngReader {
            prng: Prng::new(seed),
            remaining: len,
            pending: Vec::new(),
        }
    }
}

impl Read for PrngReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            let n = self.remaining.min(64 * 1024) as usize;
            let words = n.div_ceil(8);
            let mut block = vec![0u8; words * 8];
            self.prng.fill(&mut block);
            block.truncate(n);
            self.pending = block;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The sha256 digest of a PRNG stream.
pub fn prng_digest(seed: u64, len: u64) -> String {
    let mut sink = HashingSink::default();
    io::copy(&mut PrngReader::new(seed, len), &mut sink).expect("hash stream");
    sink.digest()
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A seed unique within this test process.
pub fn unique_seed() -> u64 {
    let pid = std::process::id() as u64;
    (pid << 32) ^ UNIQUE.fetch_add(1, Ordering::Relaxed)
}

// ---------------------------------------------------------------------------------------------
// Blobs
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Blob {
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(data: Vec<u8>) -> Self {
        let digest = sha256_digest(&data);
        Blob { data, digest }
    }

    pub fn random(len: usize) -> Self {
        Blob::new(Prng::new(unique_seed()).bytes(len))
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// The path (and query) of a `Location` value, whether absolute or relative.
pub fn location_path(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        },
        None => location.to_string(),
    }
}

/// Append `digest=<d>` to an upload URL that may already have a query.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// POST a new upload session, check the 202 answer, return its `Location`.
pub fn start_upload(reg: &Registry, repo: &str) -> String {
    let resp = send(reg.post(&format!("/v2/{repo}/blobs/uploads/")));
    resp.assert_status(202);
    resp.must_header("docker-upload-uuid");
    resp.must_header("location").to_string()
}

/// Monolithic upload: POST, then PUT `?digest=` with the whole body. Returns the digest.
pub fn push_blob(reg: &Registry, repo: &str, data: &[u8]) -> String {
    let digest = sha256_digest(data);
    let location = start_upload(reg, repo);
    let resp = send(
        reg.put(&with_digest(&location, &digest))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec()),
    );
    resp.assert_status(201);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    digest
}

/// Chunked upload: POST, PATCH each chunk with `Content-Range`, PUT `?digest=` with no body.
pub fn push_blob_chunked(reg: &Registry, repo: &str, data: &[u8], chunk: usize) -> String {
    let digest = sha256_digest(data);
    let mut location = start_upload(reg, repo);
    let mut offset = 0usize;
    for part in data.chunks(chunk.max(1)) {
        let end = offset + part.len() - 1;
        let resp = send(
            reg.patch(&location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{end}"))
                .body(part.to_vec()),
        );
        resp.assert_status(202);
        assert_eq!(resp.header("range"), Some(format!("0-{end}").as_str()));
        location = resp.must_header("location").to_string();
        offset = end + 1;
    }
    let resp = send(reg.put(&with_digest(&location, &digest)));
    resp.assert_status(201);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    digest
}

pub fn push(reg: &Registry, repo: &str, blob: &Blob) {
    push_blob(reg, repo, &blob.data);
}

// ---------------------------------------------------------------------------------------------
// Manifests
// ---------------------------------------------------------------------------------------------

/// Manifest bytes as pushed, with their media type and digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub body: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    /// Serialize with an indentation a server would not produce by itself, so a server that
    /// re-serializes is caught.
    pub fn from_value(media_type: &str, value: &Value) -> Self {
        let mut body = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut ser = serde_json::Serializer::with_formatter(&mut body, formatter);
        serde::Serialize::serialize(value, &mut ser).expect("serialize manifest");
        body.push(b'\n');
        let digest = sha256_digest(&body);
        Manifest {
            media_type: media_type.to_string(),
            body,
            digest,
        }
    }

    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    pub fn descriptor(&self) -> Value {
        descriptor(&self.media_type, &self.digest, self.size())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("manifest JSON")
    }
}

pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

pub fn platform(os: &str, arch: &str) -> Value {
    json!({"os": os, "architecture": arch})
}

/// An image config whose content depends on `seed` and lists `layers` diff ids.
pub fn image_config(arch: &str, seed: u64, layer_count: usize) -> Blob {
    let diff_ids: Vec<String> = (0..layer_count)
        .map(|i| sha256_digest(format!("{seed}-{i}").as_bytes()))
        .collect();
    let value = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [format!("WHARF_TEST_SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    Blob::new(serde_json::to_vec(&value).unwrap())
}

pub fn image_manifest(
    media_type: &str,
    config: (&str, &Blob),
    layers: &[(&str, &Blob)],
    extra: Option<Value>,
) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config.0, &config.1.digest, config.1.size()),
        "layers": layers
            .iter()
            .map(|(mt, b)| descriptor(mt, &b.digest, b.size()))
            .collect::<Vec<_>>(),
    });
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            value[k] = v;
        }
    }
    Manifest::from_value(media_type, &value)
}

pub fn index_manifest(media_type: &str, children: &[(&Manifest, Value)]) -> Manifest {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(m, platform)| {
            let mut d = m.descriptor();
            d["platform"] = platform.clone();
            d
        })
        .collect();
    let value = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    Manifest::from_value(media_type, &value)
}

/// The five kinds of manifest a registry:2 drop-in stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    DockerManifest,
    DockerList,
    OciManifest,
    OciIndex,
    OciArtifact,
}

pub const ALL_KINDS: [Kind; 5] = [
    Kind::DockerManifest,
    Kind::DockerList,
    Kind::OciManifest,
    Kind::OciIndex,
    Kind::OciArtifact,
];

impl Kind {
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::DockerManifest => DOCKER_MANIFEST,
            Kind::DockerList => DOCKER_LIST,
            Kind::OciManifest | Kind::OciArtifact => OCI_MANIFEST,
            Kind::OciIndex => OCI_INDEX,
        }
    }

    pub fn is_oci(self) -> bool {
        matches!(self, Kind::OciManifest | Kind::OciIndex | Kind::OciArtifact)
    }
}

/// Push an image's config and layers to `repo` and return its (not yet pushed) manifest.
pub fn prepare_image(reg: &Registry, repo: &str, media_type: &str, arch: &str) -> Manifest {
    let seed = unique_seed();
    let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
        (DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_CONFIG, OCI_LAYER)
    };
    let config = image_config(arch, seed, 2);
    let layers = [Blob::random(1500), Blob::random(3000)];
    push(reg, repo, &config);
    for layer in &layers {
        push(reg, repo, layer);
    }
    image_manifest(
        media_type,
        (config_type, &config),
        &[(layer_type, &layers[0]), (layer_type, &layers[1])],
        None,
    )
}

/// Push everything a manifest of `kind` refers to (blobs, child manifests by digest) and return
/// the manifest itself, not yet pushed.
pub fn prepare(reg: &Registry, repo: &str, kind: Kind) -> Manifest {
    match kind {
        Kind::DockerManifest => prepare_image(reg, repo, DOCKER_MANIFEST, "amd64"),
        Kind::OciManifest => prepare_image(reg, repo, OCI_MANIFEST, "amd64"),
        Kind::DockerList | Kind::OciIndex => {
            let child_type = if kind == Kind::DockerList {
                DOCKER_MANIFEST
            } else {
                OCI_MANIFEST
            };
            let amd64 = prepare_image(reg, repo, child_type, "amd64");
            let arm64 = prepare_image(reg, repo, child_type, "arm64");
            put_manifest(reg, repo, &amd64.digest, &amd64).assert_status(201);
            put_manifest(reg, repo, &arm64.digest, &arm64).assert_status(201);
            index_manifest(
                kind.media_type(),
                &[
                    (&amd64, platform("linux", "amd64")),
                    (&arm64, platform("linux", "arm64")),
                ],
            )
        }
        Kind::OciArtifact => {
            let payload = Blob::random(700);
            push(reg, repo, &payload);
            push_blob(reg, repo, b"{}");
            artifact_manifest(
                "application/vnd.example.wharf.test+json",
                &payload,
                None,
                None,
            )
        }
    }
}

/// An OCI artifact: `artifactType`, the empty config, one layer, an optional `subject`.
pub fn artifact_manifest(
    artifact_type: &str,
    payload: &Blob,
    subject: Option<&Manifest>,
    annotations: Option<Value>,
) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_DIGEST, 2),
        "layers": [descriptor("application/vnd.example.payload", &payload.digest, payload.size())],
    });
    if let Some(subject) = subject {
        value["subject"] = subject.descriptor();
    }
    if let Some(annotations) = annotations {
        value["annotations"] = annotations;
    }
    Manifest::from_value(OCI_MANIFEST, &value)
}

pub fn put_manifest(reg: &Registry, repo: &str, reference: &str, manifest: &Manifest) -> Resp {
    send(
        reg.put(&format!("/v2/{repo}/manifests/{reference}"))
            .header("content-type", &manifest.media_type)
            .body(manifest.body.clone()),
    )
}

/// PUT a manifest and check the 201 answer (`Location`, `Docker-Content-Digest`).
pub fn push_manifest(reg: &Registry, repo: &str, reference: &str, manifest: &Manifest) {
    let resp = put_manifest(reg, repo, reference, manifest);
    resp.assert_status(201);
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(manifest.digest.as_str()),
        "{}",
        resp.describe()
    );
}

pub fn get_manifest(reg: &Registry, repo: &str, reference: &str, accept: &str) -> Resp {
    send(
        reg.get(&format!("/v2/{repo}/manifests/{reference}"))
            .header("accept", accept),
    )
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(resp: &Resp) -> Option<String> {
    for value in resp.header_all("link") {
        for part in value.split(',') {
            let part = part.trim();
            if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
                continue;
            }
            let start = part.find('<')? + 1;
            let end = part[start..].find('>')? + start;
            return Some(part[start..end].to_string());
        }
    }
    None
}

/// `GET /v2/<repo>/tags/list` answered 200: the tags, in the order given.
pub fn list_tags(reg: &Registry, repo: &str) -> Vec<String> {
    let resp = send(reg.get(&format!("/v2/{repo}/tags/list")));
    resp.assert_status(200);
    let body = resp.json();
    assert_eq!(body["name"], repo, "{}", resp.describe());
    body["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().expect("tag is a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A whole image (blobs and manifest) pushed under `tag`.
pub fn push_image(reg: &Registry, repo: &str, tag: &str, kind: Kind) -> Manifest {
    let manifest = prepare(reg, repo, kind);
    push_manifest(reg, repo, tag, &manifest);
    manifest
}

// ---------------------------------------------------------------------------------------------
// Files and external commands
// ---------------------------------------------------------------------------------------------

/// Every file (not folder) under `dir`, as paths relative to it.
pub fn list_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let Ok(entries) = fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Run a command to completion, killing it if it runs past `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> CommandOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let deadline = Instant::now() + limit;
    let mut status = None;
    for _ in 0..(limit.as_millis() / POLL.as_millis() + 1) {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        thread::sleep(POLL);
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    };
    CommandOutput {
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned(),
    }
}

/// Run skopeo (`--insecure-policy`, no `REGISTRY_*`/`AWS_*` in its environment), bounded.
pub fn skopeo(args: &[&str]) -> CommandOutput {
    let mut cmd = clean_command(Path::new("skopeo"));
    cmd.arg("--insecure-policy").args(args);
    run_bounded(cmd, Duration::from_secs(300))
}

/// `VmHWM` (peak resident set) of a process, in bytes.
pub fn vm_hwm(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}
