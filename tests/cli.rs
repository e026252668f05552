//! The command line and the configuration: version, unknown and unsupported keys, registry:2's
//! leniency (repeated keys, yes/no, deprecated keys), YAML errors,
//! environment overrides, the Debian package's config, JSON logs and the access log.

mod support;

use std::fs;
use std::net::TcpListener;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn storage_yaml(driver: Driver) -> &'static str {
    match driver {
        Driver::Filesystem => "storage:\n  filesystem:\n    rootdirectory: {root}\n",
        Driver::Inmemory => "storage:\n  inmemory: {}\n",
        Driver::S3 | Driver::Azure | Driver::Gcs | Driver::Swift => {
            unreachable!("the command-line tests run on local storage")
        }
    }
}

/// The server must exit by itself, unsuccessfully; returns its stderr.
fn assert_start_fails(builder: RegistryBuilder, what: &str) -> String {
    let mut reg = builder.spawn();
    let status = reg.wait_exit(WAIT_LIMIT);
    let stderr = reg.stderr_text();
    let status = status
        .unwrap_or_else(|| panic!("{what}: the server kept running\n--- stderr ---\n{stderr}"));
    assert!(!status.success(), "{what}: exit status {status}\n{stderr}");
    stderr
}

#[test]
fn version() {
    let mut cmd = clean_command(&Server::Wharf.binary());
    cmd.arg("--version");
    let out = run_bounded(cmd, Duration::from_secs(30));
    out.assert_success("wharf --version");
    let first = out.stdout.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("wharf {}", env!("CARGO_PKG_VERSION"))),
        "--version printed {:?}",
        out.stdout
    );
}

fn unknown_keys_warned(driver: Driver) {
    let reg = Registry::builder(driver)
        .http_line("  adr: 127.0.0.1:1")
        .section("notasection:\n  nested: 1\n")
        .start();
    send(reg.get("/v2/")).assert_status(200);
    for key in ["http.adr", "notasection"] {
        assert!(
            reg.wait_stderr(|text| text.contains(key)).is_some(),
            "stderr names the unknown key {key}:\n{}",
            reg.stderr_text()
        );
    }
}

/// Swift with an auth version distribution's client does not know is refused at start-up,
/// naming the key.
#[test]
fn swift_with_an_unknown_auth_version_is_refused_by_key() {
    let section = "  swift:\n    authurl: http://127.0.0.1:1/v3\n    username: u\n    password: p\n    container: c\n    authversion: 4\n";
    let builder = Registry::builder(Driver::Inmemory).template(&format!(
        "version: 0.1\nstorage:\n{section}http:\n  addr: {{addr}}\n"
    ));
    let stderr = assert_start_fails(builder, "swift");
    assert!(
        stderr.contains("storage.swift.authversion:"),
        "stderr names storage.swift.authversion:\n{stderr}"
    );
}

/// GCS with a key file that cannot be read, or inline credentials that are not a
/// service-account key, is refused at start-up, naming the section and the key.
#[test]
fn gcs_without_a_usable_key_is_refused_by_key() {
    for (key, section) in [
        (
            "storage.gcs: keyfile",
            "  gcs:\n    bucket: b\n    keyfile: /nonexistent/key.json\n",
        ),
        (
            "storage.gcs: service-account private_key",
            "  gcs:\n    bucket: b\n    credentials:\n      type: service_account\n      client_email: a@b\n      private_key: not-a-key\n",
        ),
    ] {
        let builder = Registry::builder(Driver::Inmemory)
            .template(&format!(
                "version: 0.1\nstorage:\n{section}http:\n  addr: {{addr}}\n"
            ))
            .env("STORAGE_EMULATOR_HOST", "127.0.0.1:1");
        let stderr = assert_start_fails(builder, key);
        assert!(stderr.contains(key), "stderr names {key}:\n{stderr}");
    }
}

/// Azure with a key that is not base64, or with default credentials where no source of them
/// is available, is refused at start-up, saying why.
#[test]
fn azure_without_usable_credentials_is_refused() {
    // The instance metadata service is looked for on a closed loopback port.
    let closed = format!("http://127.0.0.1:{}", support::process::free_port());
    for (key, section) in [
        (
            "storage.azure: credentials: no credential available; tried",
            "  azure:\n    accountname: a\n    container: c\n    credentials:\n      type: default_credentials\n",
        ),
        (
            "storage.azure: accountkey",
            "  azure:\n    accountname: a\n    accountkey: not*base64\n    container: c\n",
        ),
    ] {
        let builder = Registry::builder(Driver::Inmemory)
            .template(&format!(
                "version: 0.1\nstorage:\n{section}http:\n  addr: {{addr}}\n"
            ))
            .env("AZURE_POD_IDENTITY_AUTHORITY_HOST", &closed)
            .env("PATH", "/nonexistent");
        let stderr = assert_start_fails(builder, key);
        assert!(stderr.contains(key), "stderr names {key}:\n{stderr}");
    }
}

/// distribution's own cmd/registry/config-dev.yml keeps upload purging off with the bare
/// `uploadpurging: {enabled: false}`; files repeat keys, use yes/no booleans and deprecated
/// keys: all start, with warnings naming what registry:2 would have ignored.
fn registry2_leniency_at_start(driver: Driver) {
    let config = format!(
        "version: 0.1\n{}  maintenance:\n    uploadpurging:\n      enabled: false\n    readonly:\n      enabled: no\n  cache:\n    blobdescriptor: memcached\nhttp:\n  addr: {{addr}}\n  headers:\n    X-Repeated: [first]\n    X-Repeated: [last]\nlog:\n  hooks:\n    - type: mail\n      disabled: true\n      levels: [panic]\nvalidation:\n  enabled: true\n",
        storage_yaml(driver)
    );
    let reg = Registry::builder(driver).template(&config).start();
    let resp = send(reg.get("/v2/"));
    resp.assert_status(200);
    assert_eq!(resp.header("x-repeated"), Some("last"));
    for warning in [
        "http.headers.X-Repeated is given more than once",
        "memcached",
        "caching disabled",
        "validation.enabled is deprecated",
    ] {
        assert!(
            reg.wait_stderr(|text| text.contains(warning)).is_some(),
            "stderr has {warning:?}:\n{}",
            reg.stderr_text()
        );
    }
    assert!(
        !reg.stderr_text().contains("log.hooks"),
        "a disabled hook is not warned about:\n{}",
        reg.stderr_text()
    );
    // `readonly.enabled: no` leaves writes on.
    push(&reg, "lenient/repo", &Blob::random(10));
}

#[test]
fn yaml_syntax_error() {
    let builder = Registry::builder(Driver::Inmemory).template(
        "version: 0.1\nstorage:\n  inmemory: {}\nhttp:\n  addr: {addr}\n  headers: [unclosed\n    X: y\n",
    );
    let stderr = assert_start_fails(builder, "a YAML syntax error");
    let lower = stderr.to_lowercase();
    assert!(
        lower.contains("yaml") || lower.contains("line") || lower.contains("pars"),
        "a useful message (the parser's error, with a position):\n{stderr}"
    );
}

fn configuration_path_from_env(driver: Driver) {
    let reg = Registry::builder(driver)
        .args(&["serve"])
        .env("REGISTRY_CONFIGURATION_PATH", "{config}")
        .response_header("X-From-Config-Path", "yes")
        .start();
    let resp = send(reg.get("/v2/"));
    resp.assert_status(200);
    assert_eq!(resp.header("x-from-config-path"), Some("yes"));
}

fn http_addr_from_env(driver: Driver) {
    // The file names a port this test holds: the server can only start on the env address.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_addr = held.local_addr().unwrap();
    let config = format!(
        "version: 0.1\n{}http:\n  addr: {held_addr}\n  headers:\n    X-Content-Type-Options: [nosniff]\n",
        storage_yaml(driver)
    );
    let reg = Registry::builder(driver)
        .template(&config)
        .env("REGISTRY_HTTP_ADDR", "{addr}")
        .start();
    send(reg.get("/v2/")).assert_status(200);
    drop(held);
}

fn environment_overrides_storage(driver: Driver) {
    // REGISTRY_STORAGE_DELETE_ENABLED turns deletes on over a file that leaves them off.
    let reg = Registry::builder(driver)
        .delete_enabled(false)
        .env("REGISTRY_STORAGE_DELETE_ENABLED", "true")
        .start();
    let blob = Blob::random(100);
    push(&reg, "env/repo", &blob);
    let resp = send(reg.delete(&format!("/v2/env/repo/blobs/{}", blob.digest)));
    resp.assert_status(202);
}

/// bcrypt of `wharf-test-password` (cost 5) for user `wharf`.
const HTPASSWD: &str = "wharf:$2b$05$XoyjhPYM3MLNt382o/qEHurAAuD0OvywXT6l93EnCsAOaJnn1pB5O\n";

#[test]
fn debian_package_config() {
    let path = "/etc/docker/registry/config.yml";
    let config = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path} (from the docker-registry package): {e}"));
    let auth_dir = tempfile::tempdir().unwrap();
    let htpasswd = auth_dir.path().join("htpasswd");
    fs::write(&htpasswd, HTPASSWD).unwrap();

    let reg = Registry::builder(Driver::Filesystem)
        .template(&config)
        .env("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "{root}")
        .env("REGISTRY_HTTP_ADDR", "{addr}")
        .env(
            "REGISTRY_AUTH_HTPASSWD_PATH",
            &htpasswd.display().to_string(),
        )
        .ready(Ready::V2Answers)
        .start();

    let resp = send(reg.get("/v2/"));
    resp.assert_status(401);
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Basic realm=\"basic-realm\"")
    );
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    let resp = send(
        reg.get("/v2/")
            .basic_auth("wharf", Some("wharf-test-password")),
    );
    resp.assert_status(200);
    let resp = send(reg.get("/v2/").basic_auth("wharf", Some("wrong")));
    resp.assert_status(401);

    // Authenticated push and read into the overridden root directory.
    let data = b"debian config blob".to_vec();
    let digest = sha256_digest(&data);
    let resp = send(
        reg.post(&format!("/v2/deb/app/blobs/uploads/?digest={digest}"))
            .basic_auth("wharf", Some("wharf-test-password"))
            .header("content-type", "application/octet-stream")
            .body(data.clone()),
    );
    let location = if resp.status == 202 {
        resp.must_header("location").to_string()
    } else {
        String::new()
    };
    if resp.status == 202 {
        send(
            reg.put(&with_digest(&location, &digest))
                .basic_auth("wharf", Some("wharf-test-password"))
                .header("content-type", "application/octet-stream")
                .body(data.clone()),
        )
        .assert_status(201);
    } else {
        resp.assert_status(201);
    }
    let hex = digest_hex(&digest);
    assert!(reg
        .root()
        .join(format!(
            "docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ))
        .is_file());
}

fn find_value(value: &Value, key: &str, expected: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == key && v.as_str() == Some(expected)) || find_value(v, key, expected)
        }),
        Value::Array(items) => items.iter().any(|v| find_value(v, key, expected)),
        _ => false,
    }
}

fn json_logs(driver: Driver) {
    let reg = Registry::builder(driver)
        .log_section(
            "log:\n  level: info\n  formatter: json\n  fields:\n    service: registry\n    environment: wharf-test\n",
        )
        .start();
    send(reg.get("/v2/")).assert_status(200);
    let probe = format!("/v2/jsonprobe{}/tags/list", unique_seed());
    send(reg.get(&probe)).assert_status(404);
    let text = reg
        .wait_stderr(|text| text.contains(&probe))
        .unwrap_or_else(|| panic!("a log line for GET {probe}:\n{}", reg.stderr_text()));

    let mut lines = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(value.is_object(), "log line is an object: {line}");
        lines.push((line, value));
    }
    assert!(
        lines
            .iter()
            .any(|(_, v)| find_value(v, "environment", "wharf-test")
                && find_value(v, "service", "registry")),
        "log.fields appear in the JSON lines:\n{text}"
    );
    assert!(
        lines
            .iter()
            .any(|(l, _)| l.contains("GET") && l.contains(&probe) && l.contains("404")),
        "an access line with method, path and status:\n{text}"
    );
}

fn access_log(driver: Driver) {
    let reg = Registry::start(driver);
    let seed = unique_seed();
    let repo = format!("accessprobe{seed}/app");
    let missing = format!("accessprobe{seed}/missing");
    let blob = Blob::random(100);
    push(&reg, &repo, &blob);
    let zero = format!("sha256:{}", "0".repeat(64));

    let blob_path = format!("/v2/{repo}/blobs/{}", blob.digest);
    let tags_path = format!("/v2/{missing}/tags/list");
    let delete_path = format!("/v2/{missing}/manifests/{zero}");
    send(reg.get(&blob_path)).assert_status(200);
    send(reg.head(&blob_path)).assert_status(200);
    send(reg.get(&tags_path)).assert_status(404);
    send(reg.delete(&delete_path)).assert_status(404);

    let expected = [
        ("GET", blob_path.as_str(), "200"),
        ("HEAD", blob_path.as_str(), "200"),
        ("GET", tags_path.as_str(), "404"),
        ("DELETE", delete_path.as_str(), "404"),
    ];
    let has_line = |text: &str, (method, path, status): (&str, &str, &str)| {
        text.lines().any(|line| {
            line.contains(method)
                && line.contains(path)
                && line
                    .split(|c: char| !c.is_ascii_digit())
                    .any(|token| token == status)
        })
    };
    let text = reg
        .wait_stderr(|text| expected.iter().all(|e| has_line(text, *e)))
        .unwrap_or_else(|| reg.stderr_text());
    for e in expected {
        assert!(
            has_line(&text, e),
            "an access-log line for {} {} {}:\n{text}",
            e.0,
            e.1,
            e.2
        );
    }
}

for_each_driver!(
    local:
    unknown_keys_warned,
    registry2_leniency_at_start,
    configuration_path_from_env,
    http_addr_from_env,
    environment_overrides_storage,
    json_logs,
    access_log,
);
