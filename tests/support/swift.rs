//! A real single-node OpenStack Swift on loopback for the `swift` driver variant: Debian's
//! `swift-proxy`, `swift-account`, `swift-container` and `swift-object` servers (installed by
//! `.ci/test`), tempauth with its tokens in a private memcached, rings of one device built with
//! `swift-ring-builder` in a temporary folder, and that folder as the device (its filesystem
//! keeps user xattrs; `mount_check` is off).
//!
//! One shared cluster per test process ([`shared`]), started on first use; each registry gets
//! a container of its own unless told to share one. As with moto, the servers run in a
//! [`ShellGroup`], stopped by their PIDs. Tests that stop Swift start their own.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use super::process::free_port;
use super::shell_group::{Programs, ShellGroup};
use super::wait::WAIT_LIMIT;

/// Tempauth's account, user and key (`user_test_tester = testing .admin`).
pub const USER: &str = "test:tester";
pub const KEY: &str = "testing";

/// Where a `swift` registry keeps its data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SwiftTarget {
    /// `http://127.0.0.1:<port>/auth/v1.0`.
    pub auth_url: String,
    pub container: String,
}

impl SwiftTarget {
    /// A fresh container on the shared cluster (the driver creates it on first use).
    pub fn fresh() -> SwiftTarget {
        SwiftTarget::fresh_on(shared())
    }

    /// A fresh container on `swift`.
    pub fn fresh_on(swift: &Swift) -> SwiftTarget {
        SwiftTarget {
            auth_url: swift.auth_url(),
            container: fresh_container(),
        }
    }
}

static SHARED: OnceLock<Swift> = OnceLock::new();
static SMALL: OnceLock<Swift> = OnceLock::new();

/// The largest object of [`small_objects`]' cluster.
pub const SMALL_MAX_FILE_SIZE: u64 = 8 << 20;

/// A cluster of this process whose largest object (`max_file_size`) is 8 MiB, started on
/// first use.
pub fn small_objects() -> &'static Swift {
    SMALL.get_or_init(|| Swift::start_with(Some(SMALL_MAX_FILE_SIZE)))
}
static CONTAINERS: AtomicU64 = AtomicU64::new(1);

/// The cluster shared by the tests of this process.
pub fn shared() -> &'static Swift {
    SHARED.get_or_init(Swift::start)
}

/// A container name no other test of any process uses.
pub fn fresh_container() -> String {
    format!(
        "wharf-{}-{}",
        std::process::id(),
        CONTAINERS.fetch_add(1, Ordering::Relaxed)
    )
}

/// The loopback ports of one cluster.
#[derive(Clone, Copy)]
struct Ports {
    proxy: u16,
    account: u16,
    container: u16,
    object: u16,
    memcached: u16,
}

/// `swift-proxy-server` with the constraints of the `swift.conf` given first.
const PROXY_WITH_CONSTRAINTS: &str = "import sys; \
    from swift.common import utils, constraints; \
    default = utils.SWIFT_CONF_FILE; utils.SWIFT_CONF_FILE = sys.argv.pop(1); \
    constraints.reload_constraints(); utils.SWIFT_CONF_FILE = default; \
    from swift.common.wsgi import run_wsgi; \
    sys.exit(run_wsgi(sys.argv[1], 'proxy-server', verbose=True))";

/// A running single-node Swift; dropping it stops every process.
pub struct Swift {
    ports: Ports,
    /// The proxy takes its constraints from this cluster's `swift.conf`.
    own_constraints: bool,
    /// The running servers (none while stopped).
    servers: Mutex<Option<ShellGroup>>,
    dir: tempfile::TempDir,
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The configuration files and rings of a cluster in `dir`.
fn configure(dir: &Path, p: Ports, max_file_size: Option<u64>) {
    let etc = dir.join("etc");
    let device = dir.join("srv/d1");
    fs::create_dir_all(&etc).expect("etc dir");
    fs::create_dir_all(&device).expect("device dir");
    write(
        &etc.join("swift.conf"),
        &format!(
            "[swift-hash]\nswift_hash_path_suffix = wharftest\nswift_hash_path_prefix = wharftest\n\
         [storage-policy:0]\nname = Policy-0\ndefault = yes\n{}",
            max_file_size
                .map(|m| format!("[swift-constraints]\nmax_file_size = {m}\n"))
                .unwrap_or_default()
        ),
    );
    let common = format!(
        "[DEFAULT]\nbind_ip = 127.0.0.1\nworkers = 0\nswift_dir = {}\nlog_level = WARNING\n",
        etc.display()
    );
    for (kind, port) in [
        ("account", p.account),
        ("container", p.container),
        ("object", p.object),
    ] {
        write(
            &etc.join(format!("{kind}-server.conf")),
            &format!(
                "{common}bind_port = {port}\ndevices = {}\nmount_check = false\n\
                 [pipeline:main]\npipeline = {kind}-server\n\
                 [app:{kind}-server]\nuse = egg:swift#{kind}\n",
                dir.join("srv").display()
            ),
        );
        let builder = format!("{kind}.builder");
        let device = format!("r1z1-127.0.0.1:{port}/d1");
        for args in [
            vec!["create", "0", "1", "1"],
            vec!["add", device.as_str(), "1"],
            vec!["rebalance"],
        ] {
            let out = Command::new("swift-ring-builder")
                .arg(&builder)
                .args(&args)
                .current_dir(&etc)
                .output()
                .expect("run swift-ring-builder (install swift-proxy: see .ci/test)");
            // `rebalance` exits 1 with a warning on a one-device ring; the ring is written.
            assert!(
                out.status.code().is_some_and(|c| c <= 1),
                "swift-ring-builder {builder} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    write(
        &etc.join("proxy-server.conf"),
        &format!(
            "{common}bind_port = {}\n\
             [pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache \
             tempurl tempauth copy dlo slo proxy-logging proxy-server\n\
             [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\
             allow_account_management = true\n\
             [filter:tempauth]\nuse = egg:swift#tempauth\nuser_test_tester = {KEY} .admin\n\
             [filter:tempurl]\nuse = egg:swift#tempurl\n\
             [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:{}\n\
             [filter:catch_errors]\nuse = egg:swift#catch_errors\n\
             [filter:gatekeeper]\nuse = egg:swift#gatekeeper\n\
             [filter:healthcheck]\nuse = egg:swift#healthcheck\n\
             [filter:proxy-logging]\nuse = egg:swift#proxy_logging\n\
             [filter:copy]\nuse = egg:swift#copy\n\
             [filter:dlo]\nuse = egg:swift#dlo\n\
             [filter:slo]\nuse = egg:swift#slo\n",
            p.proxy, p.memcached
        ),
    );
}

impl Swift {
    /// A private cluster on free ports.
    pub fn start() -> Swift {
        Swift::start_with(None)
    }

    /// A private cluster on free ports whose largest object is `max_file_size` (Swift's
    /// default, 5 GiB, when `None`).
    pub fn start_with(max_file_size: Option<u64>) -> Swift {
        // A free port can be taken by another test's process before a server binds it: a
        // cluster that does not come up is started again on other ports.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("wharf-swift-")
                .tempdir()
                .expect("temp dir");
            let ports = Ports {
                proxy: free_port(),
                account: free_port(),
                container: free_port(),
                object: free_port(),
                memcached: free_port(),
            };
            configure(dir.path(), ports, max_file_size);
            let swift = Swift {
                ports,
                own_constraints: max_file_size.is_some(),
                servers: Mutex::new(None),
                dir,
            };
            match swift.try_run() {
                Ok(()) => return swift,
                Err(why) if attempt < ATTEMPTS => {
                    eprintln!("swift start attempt {attempt} failed, trying other ports:\n{why}");
                }
                Err(why) => panic!("{why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts the processes (again, on the same ports and data, after [`Self::stop`]).
    pub fn run(&self) {
        if let Err(why) = self.try_run() {
            panic!("{why}");
        }
    }

    /// [`Self::run`], saying why the cluster did not come up.
    fn try_run(&self) -> Result<(), String> {
        let etc = self.dir.path().join("etc");
        let mut commands = vec![format!(
            "memcached -l 127.0.0.1 -p {} -U 0 -m 64 -u root",
            self.ports.memcached
        )];
        for kind in ["account", "container", "object"] {
            commands.push(format!(
                "swift-{kind}-server '{}' -v",
                etc.join(format!("{kind}-server.conf")).display()
            ));
        }
        // Swift reads its constraints from /etc/swift/swift.conf only: the proxy of a cluster
        // with its own reads this cluster's `swift.conf` for them first.
        let proxy = if self.own_constraints {
            format!(
                "/usr/bin/python3 -c \"{PROXY_WITH_CONSTRAINTS}\" '{}'",
                etc.join("swift.conf").display()
            )
        } else {
            "swift-proxy-server".to_string()
        };
        commands.push(format!(
            "{proxy} '{}' -v",
            etc.join("proxy-server.conf").display()
        ));
        let servers = ShellGroup::start(&Programs {
            name: "swift",
            commands: &commands,
            log: &self.log_path(),
            dir: self.dir.path(),
            scrub_env: &[],
        });
        *self.servers.lock().unwrap() = Some(servers);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        let client = reqwest::blocking::Client::new();
        let p = self.ports;
        for _ in 0..1200 {
            // Every server listens (the proxy answers tempauth without the others), each on
            // its own port (not another cluster's server that took the port first), and the
            // account answers through the proxy.
            let ports = [p.proxy, p.account, p.container, p.object, p.memcached];
            let listening = {
                let servers = self.servers.lock().unwrap();
                let servers = servers.as_ref().expect("started");
                if !servers.running() {
                    break;
                }
                ports.iter().all(|port| {
                    TcpStream::connect(("127.0.0.1", *port)).is_ok() && servers.listens_on(*port)
                })
            };
            if listening && self.account_answers(&client) {
                return Ok(());
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "swift did not start on port {} (install swift-proxy, swift-account, \
             swift-container, swift-object and memcached: see .ci/test):\n{}",
            self.ports.proxy,
            self.log_text()
        ))
    }

    /// A token, then `HEAD` of the account with it succeeds.
    fn account_answers(&self, client: &reqwest::blocking::Client) -> bool {
        let auth = client
            .get(self.auth_url())
            .header("x-auth-user", USER)
            .header("x-auth-key", KEY)
            .timeout(Duration::from_secs(5))
            .send();
        let Ok(auth) = auth else { return false };
        let header = |name: &str| {
            auth.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (Some(token), Some(storage)) = (header("x-auth-token"), header("x-storage-url")) else {
            return false;
        };
        client
            .head(storage)
            .header("x-auth-token", token)
            .timeout(Duration::from_secs(5))
            .send()
            .is_ok_and(|r| r.status().is_success())
    }

    /// A tempauth token and the account's storage URL.
    fn token(&self, client: &reqwest::blocking::Client) -> (String, String) {
        let auth = client
            .get(self.auth_url())
            .header("x-auth-user", USER)
            .header("x-auth-key", KEY)
            .timeout(Duration::from_secs(30))
            .send()
            .expect("tempauth answers");
        let header = |name: &str| auth.headers()[name].to_str().unwrap().to_string();
        (header("x-auth-token"), header("x-storage-url"))
    }

    /// One request to object `name` of `container` with a token.
    fn object_request(
        &self,
        method: reqwest::Method,
        container: &str,
        name: &str,
        body: &[u8],
    ) -> reqwest::blocking::Response {
        let client = reqwest::blocking::Client::new();
        let (token, storage) = self.token(&client);
        client
            .request(method.clone(), format!("{storage}/{container}/{name}"))
            .header("x-auth-token", &token)
            .body(body.to_vec())
            .timeout(Duration::from_secs(30))
            .send()
            .unwrap_or_else(|e| panic!("{method} {name}: {e}"))
    }

    /// The headers of object `name` of `container` (`None` when it does not exist).
    pub fn head_object(&self, container: &str, name: &str) -> Option<reqwest::header::HeaderMap> {
        let resp = self.object_request(reqwest::Method::HEAD, container, name, b"");
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(resp.status().is_success(), "HEAD {name}: {}", resp.status());
        Some(resp.headers().clone())
    }

    /// Writes object `name` of `container`.
    pub fn put_object(&self, container: &str, name: &str, body: &[u8]) {
        let resp = self.object_request(reqwest::Method::PUT, container, name, body);
        assert!(resp.status().is_success(), "PUT {name}: {}", resp.status());
    }

    /// The names of the objects of `container` under `prefix` (an empty list when the
    /// container does not exist).
    pub fn objects(&self, container: &str, prefix: &str) -> Vec<String> {
        let client = reqwest::blocking::Client::new();
        let (token, storage) = self.token(&client);
        let mut names = Vec::new();
        // Pages of 10,000 (Swift's default limit), bounded.
        for _ in 0..100 {
            let mut query = vec![
                ("format", "json".to_string()),
                ("prefix", prefix.to_string()),
            ];
            if let Some(last) = names.last() {
                query.push(("marker", String::clone(last)));
            }
            let resp = client
                .get(format!("{storage}/{container}"))
                .query(&query)
                .header("x-auth-token", &token)
                .timeout(Duration::from_secs(30))
                .send()
                .expect("container listing");
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return names;
            }
            assert!(resp.status().is_success(), "listing: {}", resp.status());
            let page: Vec<serde_json::Value> = resp.json().expect("a JSON listing");
            if page.is_empty() {
                return names;
            }
            names.extend(page.iter().map(|o| o["name"].as_str().unwrap().to_string()));
        }
        panic!("container {container} lists more than 100 pages");
    }

    /// `http://127.0.0.1:<port>/auth/v1.0`.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/auth/v1.0", self.ports.proxy)
    }

    /// The folder of `swift.conf` and the rings (for another proxy over the same servers).
    pub fn swift_dir(&self) -> PathBuf {
        self.dir.path().join("etc")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("swift.log")
    }

    /// What the servers printed.
    pub fn log_text(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Stops every process (and waits for them to exit); [`Self::run`] brings them back.
    pub fn stop(&self) {
        let servers = self.servers.lock().unwrap().take();
        if let Some(servers) = servers {
            servers.stop();
        }
    }
}

impl Drop for Swift {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `storage.swift` section for a container (keys indented by four spaces), followed by
/// `extra` lines.
pub fn storage_section(target: &SwiftTarget, extra: &[String]) -> String {
    let mut text = format!(
        "  swift:\n    authurl: {}\n    username: {USER}\n    password: {KEY}\n    container: {}\n    chunksize: 5242880\n",
        target.auth_url, target.container
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// A driver on a container through the library, with segments of `chunk` bytes.
pub fn driver(target: &SwiftTarget, chunk: usize) -> wharf::storage::drivers::swift::SwiftDriver {
    let settings = settings(target, USER, KEY, chunk);
    wharf::storage::drivers::swift::SwiftDriver::new(&settings).expect("swift driver")
}

/// Driver settings for a container as `user` with `password` (tempauth, unless `keystone` is
/// set afterwards), with segments of `chunk` bytes and quick retries.
pub fn settings(
    target: &SwiftTarget,
    user: &str,
    password: &str,
    chunk: usize,
) -> wharf::storage::drivers::swift::SwiftSettings {
    wharf::storage::drivers::swift::SwiftSettings {
        auth_url: target.auth_url.clone(),
        username: user.to_string(),
        password: password.to_string(),
        container: target.container.clone(),
        prefix: String::new(),
        chunk_size: chunk,
        secret_key: None,
        access_key: None,
        tenant_id: String::new(),
        temp_url_container_key: false,
        temp_url_methods: Vec::new(),
        max_attempts: 3,
        retry_delay: Duration::from_millis(100),
        skip_verify: false,
        keystone: None,
    }
}

/// Spawns a registry that must exit unsuccessfully by itself; returns its log.
pub fn refused_start(builder: super::registry::RegistryBuilder) -> String {
    let mut reg = builder.spawn();
    let status = reg.wait_exit(Duration::from_secs(60));
    let log = reg.log();
    assert!(status.is_some_and(|s| !s.success()), "it started:\n{log}");
    log
}
