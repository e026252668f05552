//! A real OpenStack Keystone on loopback, and a Swift proxy that authenticates with it, for the
//! Swift driver's Keystone variant.
//!
//! Keystone is Debian's `keystone` package (installed by `.ci/test`) run from a temporary
//! folder: an sqlite database, fernet keys, `keystone-manage bootstrap` for the admin, served by
//! `keystone-wsgi-public` on a free port. The proxy is a second `swift-proxy-server` over the
//! shared single-node Swift's account, container and object servers (its rings), with
//! keystonemiddleware's `authtoken` and Swift's `keystoneauth` in place of tempauth; its
//! accounts are `AUTH_<project id>`. Keystone's catalog lists the proxy as the `object-store`
//! service (public and internal interfaces, region `RegionOne`).
//!
//! Provisioned through Keystone's API: a domain [`DOMAIN`] with a project [`PROJECT`], a user
//! [`USER`] holding `member` on it, and a user [`TRUSTEE`] holding nothing but a trust
//! ([`Keystone::trust_id`]) from [`USER`] on the project. Modern Keystone has no v2.0 API.
//!
//! One per test process ([`shared`]); as with Swift, both servers run under a small shell that
//! stops them (by their PIDs) and removes the folder when this process's end of a pipe closes.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::process::{free_port, run_bounded};
use super::shell_group::{Programs, ShellGroup};
use super::swift::{self, SwiftTarget};
use super::wait::WAIT_LIMIT;

/// The domain of the registry's user and project.
pub const DOMAIN: &str = "wharf";
/// The project whose Swift account the registry uses.
pub const PROJECT: &str = "registry";
/// A user with the `member` role on [`PROJECT`] (a Swift operator role).
pub const USER: &str = "pusher";
pub const PASSWORD: &str = "pusher-password";
/// A user with no role of its own, acting through a trust from [`USER`].
pub const TRUSTEE: &str = "trustee";
pub const TRUSTEE_PASSWORD: &str = "trustee-password";
/// Keystone's admin (in the `Default` domain and the `admin` project), also the proxy's
/// service user for validating tokens.
const ADMIN_PASSWORD: &str = "admin-password";
/// The region of every endpoint.
pub const REGION: &str = "RegionOne";

/// `keystone-manage` steps take seconds each on a busy machine.
const MANAGE_LIMIT: Duration = Duration::from_secs(180);

/// A running Keystone and Keystone-authenticated Swift proxy.
pub struct Keystone {
    port: u16,
    proxy_port: u16,
    /// Keystone and the proxy, once started.
    servers: Option<ShellGroup>,
    dir: tempfile::TempDir,
    project_id: String,
    trust_id: String,
}

static SHARED: OnceLock<Keystone> = OnceLock::new();

/// The Keystone shared by the tests of this process (over the process's shared Swift).
pub fn shared() -> &'static Keystone {
    SHARED.get_or_init(Keystone::start)
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `keystone.conf` for a folder: sqlite, fernet tokens, files only in the folder.
fn keystone_conf(dir: &Path) -> String {
    format!(
        "[DEFAULT]\nlog_file = {d}/keystone.log\nuse_stderr = false\n\
         [database]\nconnection = sqlite:///{d}/keystone.db\n\
         [token]\nprovider = fernet\nexpiration = 3600\n\
         [fernet_tokens]\nkey_repository = {d}/fernet-keys\n\
         [fernet_receipts]\nkey_repository = {d}/fernet-keys\n\
         [credential]\nkey_repository = {d}/credential-keys\n\
         [cache]\nenabled = false\n",
        d = dir.display()
    )
}

/// The Swift proxy's configuration: tempurl, then `authtoken` (validating tokens with the
/// admin's) and `keystoneauth` (`member` and `admin` own their project's account).
fn proxy_conf(swift_dir: &Path, proxy_port: u16, keystone_port: u16) -> String {
    // The shared cluster's memcached, as its own proxy names it.
    let tempauth_proxy =
        fs::read_to_string(swift_dir.join("proxy-server.conf")).unwrap_or_default();
    let memcache = tempauth_proxy
        .lines()
        .find_map(|l| l.strip_prefix("memcache_servers = "))
        .expect("the shared proxy names its memcached")
        .to_string();
    format!(
        "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {proxy_port}\nworkers = 0\n\
         swift_dir = {swift}\nlog_level = WARNING\n\
         [pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache \
         tempurl authtoken keystoneauth copy dlo slo proxy-logging proxy-server\n\
         [app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\
         [filter:authtoken]\npaste.filter_factory = keystonemiddleware.auth_token:filter_factory\n\
         www_authenticate_uri = http://127.0.0.1:{keystone_port}/v3\n\
         auth_url = http://127.0.0.1:{keystone_port}/v3\nauth_type = password\n\
         project_domain_id = default\nuser_domain_id = default\nproject_name = admin\n\
         username = admin\npassword = {ADMIN_PASSWORD}\ndelay_auth_decision = true\n\
         include_service_catalog = false\ninterface = public\n\
         [filter:keystoneauth]\nuse = egg:swift#keystoneauth\noperator_roles = admin, member\n\
         [filter:tempurl]\nuse = egg:swift#tempurl\n\
         [filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = {memcache}\n\
         [filter:catch_errors]\nuse = egg:swift#catch_errors\n\
         [filter:gatekeeper]\nuse = egg:swift#gatekeeper\n\
         [filter:healthcheck]\nuse = egg:swift#healthcheck\n\
         [filter:proxy-logging]\nuse = egg:swift#proxy_logging\n\
         [filter:copy]\nuse = egg:swift#copy\n\
         [filter:dlo]\nuse = egg:swift#dlo\n\
         [filter:slo]\nuse = egg:swift#slo\n",
        swift = swift_dir.display()
    )
}

/// Runs `keystone-manage <args>` on a configuration, panicking with its output on failure.
fn manage(conf: &Path, args: &[&str]) {
    let mut cmd = Command::new("keystone-manage");
    cmd.arg("--config-file").arg(conf).args(args);
    run_bounded(cmd, MANAGE_LIMIT).assert_success(&format!(
        "keystone-manage {} (install keystone: see .ci/test)",
        args.first().unwrap_or(&"")
    ));
}

impl Keystone {
    /// Sets up and starts Keystone and the proxy, then provisions the users.
    pub fn start() -> Keystone {
        let swift_dir = swift::shared().swift_dir();
        let dir = tempfile::Builder::new()
            .prefix("wharf-keystone-")
            .tempdir()
            .expect("temp dir");
        let (port, proxy_port) = (free_port(), free_port());
        let conf = dir.path().join("keystone.conf");
        write(&conf, &keystone_conf(dir.path()));
        write(
            &dir.path().join("proxy-server.conf"),
            &proxy_conf(&swift_dir, proxy_port, port),
        );
        manage(&conf, &["db_sync"]);
        // Keystone leaves a reader open after creating an endpoint; in sqlite's default
        // journal mode that blocks every later write ("database is locked"), in WAL it does not.
        let mut wal = Command::new("/usr/bin/python3");
        wal.args([
            "-c",
            "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('PRAGMA journal_mode=WAL')",
        ])
        .arg(dir.path().join("keystone.db"));
        run_bounded(wal, MANAGE_LIMIT).assert_success("set keystone.db to WAL");
        for setup in ["fernet_setup", "credential_setup"] {
            manage(
                &conf,
                &[setup, "--keystone-user", "root", "--keystone-group", "root"],
            );
        }
        let identity = format!("http://127.0.0.1:{port}/v3");
        manage(
            &conf,
            &[
                "bootstrap",
                "--bootstrap-password",
                ADMIN_PASSWORD,
                "--bootstrap-region-id",
                REGION,
                "--bootstrap-public-url",
                &identity,
            ],
        );
        let mut keystone = Keystone {
            port,
            proxy_port,
            servers: None,
            dir,
            project_id: String::new(),
            trust_id: String::new(),
        };
        keystone.run();
        keystone.provision();
        keystone
    }

    /// Starts Keystone and the proxy under one shell, and waits for both.
    fn run(&mut self) {
        let d = self.dir.path();
        let commands = [
            format!(
                "keystone-wsgi-public --host 127.0.0.1 --port {} -- --config-file '{}'",
                self.port,
                d.join("keystone.conf").display()
            ),
            format!(
                "swift-proxy-server '{}' -v",
                d.join("proxy-server.conf").display()
            ),
        ];
        let servers = ShellGroup::start(&Programs {
            name: "keystone",
            commands: &commands,
            log: &self.log_path(),
            dir: d,
            scrub_env: &["OS_"],
        });
        let deadline = Instant::now() + WAIT_LIMIT;
        let client = reqwest::blocking::Client::new();
        for _ in 0..1200 {
            if !servers.running() {
                break;
            }
            // Each on its own port, not another server that took the port first.
            let listening = [self.port, self.proxy_port].iter().all(|port| {
                TcpStream::connect(("127.0.0.1", *port)).is_ok() && servers.listens_on(*port)
            });
            if listening
                && client
                    .get(self.auth_url())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .is_ok_and(|r| r.status().is_success())
            {
                self.servers = Some(servers);
                return;
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "keystone did not start on port {} (install keystone and \
             python3-keystonemiddleware: see .ci/test):\n{}",
            self.port,
            self.log_text()
        );
    }

    /// One call to Keystone's API with a token; the answer's JSON (null when empty).
    fn api(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.auth_url());
        let mut req = reqwest::blocking::Client::new()
            .request(method.clone(), &url)
            .header("x-auth-token", token)
            .timeout(Duration::from_secs(60));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status();
        let text = resp.text().unwrap_or_default();
        assert!(
            status.is_success(),
            "{method} {url}: {status}: {text}\n{}",
            self.errors()
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A v3 token for a user of a domain, scoped to `scope`.
    pub fn token(&self, user: &str, domain: &str, password: &str, scope: Value) -> String {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"name": domain}, "password": password}}},
            "scope": scope}});
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/auth/tokens", self.auth_url()))
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .expect("keystone token request");
        assert!(
            resp.status().is_success(),
            "token for {user}: {}",
            resp.status()
        );
        resp.headers()["x-subject-token"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The catalog entry, domain, project, users, role and trust the tests use.
    fn provision(&mut self) {
        use reqwest::Method;
        let admin = self.token(
            "admin",
            "Default",
            ADMIN_PASSWORD,
            json!({"project": {"name": "admin", "domain": {"id": "default"}}}),
        );
        let service = self.api(
            &admin,
            Method::POST,
            "/services",
            Some(json!({"service": {"type": "object-store", "name": "swift"}})),
        );
        let service_id = service["service"]["id"].as_str().unwrap().to_string();
        let url = format!("{}/v1/AUTH_$(project_id)s", self.proxy_url());
        for interface in ["public", "internal"] {
            self.api(
                &admin,
                Method::POST,
                "/endpoints",
                Some(
                    json!({"endpoint": {"service_id": service_id, "interface": interface,
                    "region_id": REGION, "url": url}}),
                ),
            );
        }
        let domain = self.api(
            &admin,
            Method::POST,
            "/domains",
            Some(json!({"domain": {"name": DOMAIN}})),
        );
        let domain_id = domain["domain"]["id"].as_str().unwrap().to_string();
        let project = self.api(
            &admin,
            Method::POST,
            "/projects",
            Some(json!({"project": {"name": PROJECT, "domain_id": domain_id}})),
        );
        self.project_id = project["project"]["id"].as_str().unwrap().to_string();
        let mut user_ids = Vec::new();
        for (name, password) in [(USER, PASSWORD), (TRUSTEE, TRUSTEE_PASSWORD)] {
            let user = self.api(
                &admin,
                Method::POST,
                "/users",
                Some(json!({"user": {"name": name, "domain_id": domain_id,
                    "password": password}})),
            );
            user_ids.push(user["user"]["id"].as_str().unwrap().to_string());
        }
        let roles = self.api(&admin, Method::GET, "/roles?name=member", None);
        let role_id = roles["roles"][0]["id"].as_str().unwrap().to_string();
        self.api(
            &admin,
            Method::PUT,
            &format!(
                "/projects/{}/users/{}/roles/{role_id}",
                self.project_id, user_ids[0]
            ),
            None,
        );
        let trustor = self.token(
            USER,
            DOMAIN,
            PASSWORD,
            json!({"project": {"id": self.project_id}}),
        );
        let trust = self.api(
            &trustor,
            Method::POST,
            "/OS-TRUST/trusts",
            Some(json!({"trust": {"trustor_user_id": user_ids[0],
                "trustee_user_id": user_ids[1], "project_id": self.project_id,
                "impersonation": false, "roles": [{"name": "member"}]}})),
        );
        self.trust_id = trust["trust"]["id"].as_str().unwrap().to_string();
    }

    /// `http://127.0.0.1:<port>/v3`.
    pub fn auth_url(&self) -> String {
        format!("http://127.0.0.1:{}/v3", self.port)
    }

    /// The Keystone-authenticated proxy, `http://127.0.0.1:<port>`.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy_port)
    }

    /// The id of [`PROJECT`].
    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The trust from [`USER`] to [`TRUSTEE`] on [`PROJECT`] (role `member`).
    pub fn trust_id(&self) -> &str {
        &self.trust_id
    }

    /// The project's storage URL on the proxy.
    pub fn storage_url(&self) -> String {
        format!("{}/v1/AUTH_{}", self.proxy_url(), self.project_id)
    }

    /// A token of [`USER`] scoped to [`PROJECT`].
    pub fn user_token(&self) -> String {
        self.token(
            USER,
            DOMAIN,
            PASSWORD,
            json!({"project": {"id": self.project_id}}),
        )
    }

    /// Keystone's log from its first error on (what explains a failed call).
    fn errors(&self) -> String {
        let text = self.log_text();
        let from = text.find(" ERROR ").unwrap_or(0);
        text[text[..from].rfind('\n').map_or(0, |i| i + 1)..]
            .chars()
            .take(20_000)
            .collect()
    }

    /// The last lines of what Keystone and the proxy printed, without start-up noise.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("is not known to keystonemiddleware"))
            .collect();
        kept[kept.len().saturating_sub(80)..].join("\n")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("servers.log")
    }

    /// What Keystone and the proxy printed.
    pub fn log_text(&self) -> String {
        let mut text = fs::read_to_string(self.log_path()).unwrap_or_default();
        text.push_str(
            &fs::read_to_string(self.dir.path().join("keystone.log")).unwrap_or_default(),
        );
        text
    }
}

/// A fresh container for the Keystone tests (the driver creates it on first use).
pub fn fresh_target() -> SwiftTarget {
    SwiftTarget {
        auth_url: shared().auth_url(),
        container: swift::fresh_container(),
    }
}

/// Keystone v3 settings as `storage.swift` gives them: user and project in [`DOMAIN`].
pub fn v3_settings() -> wharf::storage::drivers::swift::KeystoneSettings {
    wharf::storage::drivers::swift::KeystoneSettings {
        version: 3,
        tenant: PROJECT.into(),
        domain: DOMAIN.into(),
        region: REGION.into(),
        ..Default::default()
    }
}

/// A driver on a container through the library, authenticated as `user`/`password` with
/// `keystone`, with segments of `chunk` bytes.
pub fn driver(
    target: &SwiftTarget,
    user: &str,
    password: &str,
    keystone: wharf::storage::drivers::swift::KeystoneSettings,
    chunk: usize,
) -> wharf::storage::drivers::swift::SwiftDriver {
    let settings = wharf::storage::drivers::swift::SwiftSettings {
        keystone: Some(keystone),
        ..swift::settings(target, user, password, chunk)
    };
    wharf::storage::drivers::swift::SwiftDriver::new(&settings).expect("swift driver")
}

/// The `storage.swift` section of a registry on a container with Keystone v3 as [`USER`]
/// (keys indented by four spaces), followed by `extra` lines.
pub fn storage_section(target: &SwiftTarget, password: &str, extra: &[String]) -> String {
    let mut text = format!(
        "  swift:\n    authurl: {}\n    username: {USER}\n    password: {password}\n    \
         container: {}\n    tenant: {PROJECT}\n    domain: {DOMAIN}\n    region: {REGION}\n    \
         chunksize: 5242880\n",
        target.auth_url, target.container
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    text
}
