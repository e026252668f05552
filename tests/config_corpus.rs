//! Every real-world registry:2 configuration in `tests/configs/` starts Wharf.
//!
//! The corpus holds configs that registry:2 users run: distribution's own examples and
//! documentation, the Debian package's file, the registry images' files, and what popular Helm
//! charts and Harbor render. Each is rewritten only where it ties itself to a host (listen
//! addresses, file paths, certificates, and every address the registry could contact, which point
//! at a loopback stub here), exactly as the corpus's `check.py` does, and the real binary is
//! started with it: it must answer HTTP on `/v2/` (any status counts). The configs listed in
//! `expected-refusals.txt` must instead be refused with a message naming the listed key.
//! Where Debian's `docker-registry` 2.8.2 is installed, each config is also run through it, and
//! every config it starts must start Wharf unless listed.

mod support;

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_yaml::{Mapping, Value};
use support::{clean_command, free_port, run_bounded, Server, DOCKER_REGISTRY_BIN};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/configs");
/// How long a server gets to answer `/v2/`, or a refused one to exit.
const START_LIMIT: Duration = Duration::from_secs(15);
/// Configs started at once (each runs the reference, then Wharf).
const WORKERS: usize = 4;
/// User `u`, password `p`, bcrypt cost 5 (the same line as check.py).
const HTPASSWD: &str = "u:$2y$05$6D7r3mXW7O3Y3NQ7sJ0y1eQ0kpKxk9C9wHbS3dAqz3c5Yw0m1g1yG\n";

// ------------------------------------------------------------------------------ reading the corpus

/// A YAML value read as gopkg.in/yaml.v2 reads it: a repeated key keeps its last value.
struct LastWins;

impl<'de> DeserializeSeed<'de> for LastWins {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LastWins {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("YAML")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(LastWins)? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        while let Some(key) = map.next_key_seed(LastWins)? {
            let value = map.next_value_seed(LastWins)?;
            out.insert(key, value);
        }
        Ok(Value::Mapping(out))
    }
}

fn read_yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    LastWins
        .deserialize(serde_yaml::Deserializer::from_str(&text))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `expected-refusals.txt`: config file name to the key its refusal must name.
fn expected_refusals() -> BTreeMap<String, String> {
    let path = Path::new(CORPUS).join("expected-refusals.txt");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

// ------------------------------------------------------------------------------ what configs point at

/// Certificates, keys and files the rewritten configs name (generated as check.py does).
struct Materials {
    _dir: tempfile::TempDir,
    crt: PathBuf,
    key: PathBuf,
    rsa: PathBuf,
    jwks: PathBuf,
    htpasswd: PathBuf,
    ca: PathBuf,
    client_crt: PathBuf,
    client_key: PathBuf,
}

fn openssl(args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(60)).assert_success(&format!("openssl {args:?}"));
}

impl Materials {
    fn generate() -> Materials {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        let s = |path: &Path| path.display().to_string();
        let (crt, key, ca, ca_key) = (p("tls.crt"), p("tls.key"), p("ca.crt"), p("ca.key"));
        let (csr, ext, client_crt, client_key) = (
            p("client.csr"),
            p("client.ext"),
            p("client.crt"),
            p("client.key"),
        );
        #[rustfmt::skip]
        openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", &s(&key), "-out", &s(&crt)]);
        #[rustfmt::skip]
        openssl(&["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=corpus-ca", "-keyout", &s(&ca_key), "-out", &s(&ca)]);
        #[rustfmt::skip]
        openssl(&["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=corpus-client",
            "-keyout", &s(&client_key), "-out", &s(&csr)]);
        fs::write(&ext, "extendedKeyUsage=clientAuth\n").unwrap();
        #[rustfmt::skip]
        openssl(&["x509", "-req", "-in", &s(&csr), "-CA", &s(&ca), "-CAkey", &s(&ca_key),
            "-CAcreateserial", "-days", "2", "-extfile", &s(&ext), "-out", &s(&client_crt)]);
        let rsa = p("rsa.pem");
        openssl(&["rsa", "-in", &s(&key), "-traditional", "-out", &s(&rsa)]);

        let mut cmd = Command::new("openssl");
        cmd.args(["x509", "-noout", "-modulus", "-in", &s(&crt)]);
        let out = run_bounded(cmd, Duration::from_secs(60));
        out.assert_success("openssl x509 -modulus");
        let hex = out.stdout.trim().split_once('=').expect("Modulus=<hex>").1;
        let modulus: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex modulus"))
            .collect();
        let n = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(modulus);
        let jwks = p("jwks.json");
        fs::write(
            &jwks,
            format!(
                r#"{{"keys":[{{"kty":"RSA","kid":"corpus","alg":"RS256","use":"sig","n":"{n}","e":"AQAB"}}]}}"#
            ),
        )
        .unwrap();
        let htpasswd = p("htpasswd");
        fs::write(&htpasswd, HTPASSWD).unwrap();
        Materials {
            _dir: dir,
            crt,
            key,
            rsa,
            jwks,
            htpasswd,
            ca,
            client_crt,
            client_key,
        }
    }
}

/// Whatever a config points the registry at answers here, on loopback: `200 {}` to anything,
/// with the headers of a Swift v1 authentication answer that names this stub as the storage.
fn start_stub() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut stream = stream;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the request head (bounded), then answer and close.
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // Also a Swift v1 authentication answer, for the `authurl` of a swift config:
                // both registry:2 and Wharf authenticate and prepare the container at start-up.
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     X-Storage-Url: http://127.0.0.1:{port}/v1/AUTH_stub\r\n\
                     X-Auth-Token: stub\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
                let _ = stream.write_all(answer.as_bytes());
            });
        }
    });
    port
}

// ------------------------------------------------------------------------------ the rewriting

fn map_mut<'a>(value: &'a mut Value, key: &str) -> Option<&'a mut Mapping> {
    value.get_mut(key).and_then(Value::as_mapping_mut)
}

fn child<'a>(map: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    map.get_mut(key).and_then(Value::as_mapping_mut)
}

/// The mappings in the list under `key`.
fn entries<'a>(map: &'a mut Mapping, key: &str) -> Vec<&'a mut Mapping> {
    match map.get_mut(key).and_then(Value::as_sequence_mut) {
        Some(items) => items.iter_mut().filter_map(Value::as_mapping_mut).collect(),
        None => Vec::new(),
    }
}

fn set(map: &mut Mapping, key: &str, value: impl Into<Value>) {
    map.insert(key.into(), value.into());
}

fn path_value(path: &Path) -> Value {
    Value::String(path.display().to_string())
}

/// Where a rewritten config listens.
struct Listening {
    port: u16,
    tls: bool,
    client_certificate: bool,
}

/// check.py's `localise`: rewrites what ties `cfg` to a host, nothing else.
fn localise(cfg: &mut Value, dir: &Path, m: &Materials, stub: u16) -> Listening {
    let url = format!("http://127.0.0.1:{stub}");
    let port = free_port();
    let root = cfg.as_mapping_mut().expect("a config is a mapping");
    if !root.get("http").is_some_and(Value::is_mapping) {
        set(root, "http", Mapping::new());
    }
    let http = map_mut(cfg, "http").unwrap();
    set(http, "addr", format!("127.0.0.1:{port}"));
    if let Some(debug) = http.get_mut("debug").and_then(Value::as_mapping_mut) {
        if debug.contains_key("addr") {
            set(debug, "addr", format!("127.0.0.1:{}", free_port()));
        }
    }
    let mut listening = Listening {
        port,
        tls: false,
        client_certificate: false,
    };
    if let Some(tls) = http.get_mut("tls").and_then(Value::as_mapping_mut) {
        tls.remove("letsencrypt");
        set(tls, "certificate", path_value(&m.crt));
        set(tls, "key", path_value(&m.key));
        if tls.contains_key("clientcas") {
            set(tls, "clientcas", vec![path_value(&m.ca)]);
        }
        listening.tls = true;
        listening.client_certificate = tls
            .get("clientcas")
            .and_then(Value::as_sequence)
            .is_some_and(|cas| !cas.is_empty());
    }

    if let Some(storage) = map_mut(cfg, "storage") {
        if let Some(fs_driver) = child(storage, "filesystem") {
            set(fs_driver, "rootdirectory", path_value(&dir.join("data")));
        }
        if let Some(s3) = child(storage, "s3") {
            set(s3, "regionendpoint", url.clone());
        }
        if let Some(oss) = child(storage, "oss") {
            set(oss, "endpoint", format!("127.0.0.1:{stub}"));
        }
        if let Some(swift) = child(storage, "swift") {
            set(swift, "authurl", format!("{url}/auth/v1.0"));
        }
        if let Some(azure) = child(storage, "azure") {
            if azure.contains_key("serviceurl") {
                set(azure, "serviceurl", url.clone());
            }
        }
        if let Some(gcs) = child(storage, "gcs") {
            // A service-account key as Google issues them (PKCS#8 RSA), its token URI the stub.
            let key = serde_json::json!({
                "type": "service_account",
                "client_email": "corpus@corpus.iam.gserviceaccount.com",
                "private_key": fs::read_to_string(&m.key).unwrap(),
                "token_uri": format!("{url}/token"),
            });
            if gcs.contains_key("keyfile") {
                let keyfile = dir.join("gcs-key.json");
                fs::write(&keyfile, key.to_string()).unwrap();
                set(gcs, "keyfile", path_value(&keyfile));
            }
            if let Some(inline) = child(gcs, "credentials") {
                set(inline, "private_key", key["private_key"].as_str().unwrap());
                set(inline, "token_uri", format!("{url}/token"));
            }
        }
    }

    if let Some(auth) = map_mut(cfg, "auth") {
        if let Some(token) = auth.get_mut("token").and_then(Value::as_mapping_mut) {
            if token.contains_key("rootcertbundle") {
                set(token, "rootcertbundle", path_value(&m.crt));
            }
            if token.contains_key("jwks") {
                set(token, "jwks", path_value(&m.jwks));
            }
        }
        if let Some(htpasswd) = auth.get_mut("htpasswd").and_then(Value::as_mapping_mut) {
            set(htpasswd, "path", path_value(&m.htpasswd));
        }
    }

    if let Some(redis) = map_mut(cfg, "redis") {
        let addr = redis.get("addr").cloned().unwrap_or(Value::Null);
        let addr_text = match &addr {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => String::new(),
        };
        if !addr_text.is_empty() {
            let rewritten: Vec<String> = (1..=addr_text.split(',').count())
                .map(|i| format!("127.0.0.1:{i}"))
                .collect();
            set(redis, "addr", rewritten.join(","));
        }
        if let Some(count) = redis
            .get("addrs")
            .and_then(Value::as_sequence)
            .map(Vec::len)
        {
            let rewritten: Vec<Value> = (1..=count)
                .map(|i| Value::String(format!("127.0.0.1:{i}")))
                .collect();
            set(redis, "addrs", rewritten);
        }
        if let Some(tls) = redis.get_mut("tls").and_then(Value::as_mapping_mut) {
            if tls.contains_key("certificate") {
                set(tls, "certificate", path_value(&m.crt));
            }
            if tls.contains_key("key") {
                set(tls, "key", path_value(&m.key));
            }
            for list in ["rootcas", "clientcas"] {
                if tls.contains_key(list) {
                    set(tls, list, vec![path_value(&m.crt)]);
                }
            }
        }
    }

    if let Some(proxy) = map_mut(cfg, "proxy") {
        let given = match proxy.get("remoteurl") {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if given {
            set(proxy, "remoteurl", url.clone());
        }
    }

    if let Some(notifications) = map_mut(cfg, "notifications") {
        let endpoints = notifications
            .get_mut("endpoints")
            .and_then(Value::as_sequence_mut);
        for endpoint in endpoints.into_iter().flatten() {
            if let Some(endpoint) = endpoint.as_mapping_mut() {
                if endpoint.contains_key("url") {
                    set(endpoint, "url", format!("{url}/events"));
                }
            }
        }
    }

    if let Some(health) = map_mut(cfg, "health") {
        for (i, check) in entries(health, "file").into_iter().enumerate() {
            if check.contains_key("file") {
                set(check, "file", path_value(&dir.join(format!("down-{i}"))));
            }
        }
        for check in entries(health, "http") {
            if check.contains_key("uri") {
                set(check, "uri", format!("{url}/"));
            }
        }
        for check in entries(health, "tcp") {
            if check.contains_key("addr") {
                set(check, "addr", format!("127.0.0.1:{stub}"));
            }
        }
    }

    if let Some(middleware) = map_mut(cfg, "middleware") {
        let entries = middleware
            .get_mut("storage")
            .and_then(Value::as_sequence_mut);
        for entry in entries.into_iter().flatten() {
            if let Some(options) = map_mut(entry, "options") {
                if options.contains_key("privatekey") {
                    set(options, "privatekey", path_value(&m.rsa));
                }
                if options.contains_key("iprangesurl") {
                    set(options, "iprangesurl", format!("{url}/ip-ranges.json"));
                }
            }
        }
    }

    if let Some(reporting) = map_mut(cfg, "reporting") {
        if let Some(bugsnag) = reporting.get_mut("bugsnag").and_then(Value::as_mapping_mut) {
            set(bugsnag, "endpoint", url.clone());
        }
        if let Some(newrelic) = reporting
            .get_mut("newrelic")
            .and_then(Value::as_mapping_mut)
        {
            set(newrelic, "licensekey", "");
        }
    }
    listening
}

// ------------------------------------------------------------------------------ starting a server

/// What a server did with a config.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// It answered HTTP on `/v2/`.
    Starts,
    /// It exited, or never answered; the log's telling lines.
    Refused(String),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Outcome::Starts => f.write_str("starts"),
            Outcome::Refused(why) => write!(f, "refused: {why}"),
        }
    }
}

/// Whether `/v2/` answers HTTP (any status) on the rewritten address.
fn answers(listening: &Listening, m: &Materials) -> bool {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-k",
        "--max-time",
        "2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ]);
    if listening.client_certificate {
        cmd.arg("--cert").arg(&m.client_crt);
        cmd.arg("--key").arg(&m.client_key);
    }
    let scheme = if listening.tls { "https" } else { "http" };
    cmd.arg(format!("{scheme}://127.0.0.1:{}/v2/", listening.port));
    let out = run_bounded(cmd, Duration::from_secs(10));
    let code = out.stdout.trim();
    !code.is_empty() && code != "000"
}

/// Why a server stopped, from its log: Wharf's closing `wharf: ...` message (with the lines
/// under it), Go's panic or cobra's configuration error, else the last line.
fn refusal(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(at) = lines.iter().rposition(|l| l.starts_with("wharf:")) {
        return lines[at..].join(" | ");
    }
    lines
        .iter()
        .find(|l| l.starts_with("panic:") || l.starts_with("configuration error"))
        .or(lines.last())
        .map_or_else(|| "(no output)".to_owned(), |l| l.to_string())
}

/// Starts `binary serve <rewritten config>` and reports whether it serves `/v2/`.
fn try_start(binary: &Path, config: &Path, m: &Materials, stub: u16) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = read_yaml(config);
    let listening = localise(&mut cfg, dir.path(), m, stub);
    let path = dir.path().join("config.yml");
    fs::write(&path, serde_yaml::to_string(&cfg).unwrap()).unwrap();
    let log_path = dir.path().join("log");
    let log = fs::File::create(&log_path).unwrap();
    let mut cmd = clean_command(binary);
    // A config without S3 keys must not send the credential chain to the cloud's metadata address.
    cmd.env("AWS_EC2_METADATA_DISABLED", "true");
    // Google Cloud Storage calls (Wharf's and registry:2's) go to the stub, as to an emulator.
    cmd.env("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{stub}"));
    // Azure token requests (`credentials.type: client_secret`) go to the stub, whose answer is
    // no token: the server starts and logs that it has none yet.
    cmd.env("AZURE_AUTHORITY_HOST", format!("http://127.0.0.1:{stub}"));
    cmd.arg("serve")
        .arg(&path)
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
    let deadline = Instant::now() + START_LIMIT;
    let mut started = false;
    let mut exited = false;
    while Instant::now() < deadline {
        if child.try_wait().expect("wait").is_some() {
            exited = true;
            break;
        }
        if answers(&listening, m) {
            started = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    if !exited {
        // Stopped by its own PID; reaped before the log is read.
        let _ = child.kill();
    }
    let _ = child.wait();
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if started {
        Outcome::Starts
    } else if exited {
        Outcome::Refused(refusal(&text))
    } else {
        Outcome::Refused(format!(
            "no answer on /v2/ within {START_LIMIT:?}: {}",
            refusal(&text)
        ))
    }
}

// ------------------------------------------------------------------------------ the test

/// One config's results.
struct Row {
    name: String,
    reference: Option<Outcome>,
    wharf: Outcome,
}

#[test]
fn every_corpus_config_starts_or_is_refused_by_name() {
    let mut configs: Vec<PathBuf> = fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    configs.sort();
    assert!(
        configs.len() >= 40,
        "the corpus is in {CORPUS}: {configs:?}"
    );
    let expected = expected_refusals();
    for name in expected.keys() {
        assert!(
            configs
                .iter()
                .any(|p| p.file_name().unwrap() == name.as_str()),
            "expected-refusals.txt names {name}, which is not in the corpus"
        );
    }
    let reference = Path::new(DOCKER_REGISTRY_BIN)
        .exists()
        .then(|| PathBuf::from(DOCKER_REGISTRY_BIN));
    if reference.is_none() {
        eprintln!("note: {DOCKER_REGISTRY_BIN} is not installed; configs are not compared with it");
    }
    let wharf = Server::Wharf.binary();
    let materials = Arc::new(Materials::generate());
    let stub = start_stub();

    let queue = Arc::new(Mutex::new(configs.clone()));
    let rows = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (queue, rows, materials) = (queue.clone(), rows.clone(), materials.clone());
            let (reference, wharf) = (reference.clone(), wharf.clone());
            thread::spawn(move || loop {
                let Some(config) = queue.lock().unwrap().pop() else {
                    break;
                };
                let reference_outcome = reference
                    .as_ref()
                    .map(|bin| try_start(bin, &config, &materials, stub));
                let wharf_outcome = try_start(&wharf, &config, &materials, stub);
                rows.lock().unwrap().push(Row {
                    name: config.file_name().unwrap().to_string_lossy().into_owned(),
                    reference: reference_outcome,
                    wharf: wharf_outcome,
                });
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker panicked");
    }
    let mut rows = Arc::try_unwrap(rows).ok().unwrap().into_inner().unwrap();
    rows.sort_by(|a, b| a.name.cmp(&b.name));

    let mut failures = Vec::new();
    let mut started = 0;
    for row in &rows {
        let reference = row
            .reference
            .as_ref()
            .map_or("(not run)".to_string(), Outcome::to_string);
        println!(
            "{}\n    registry:2 2.8.2: {reference}\n    wharf: {}",
            row.name, row.wharf
        );
        match (expected.get(&row.name), &row.wharf) {
            (None, Outcome::Starts) => started += 1,
            (None, Outcome::Refused(why)) => {
                failures.push(format!("{}: must start, but {why}", row.name));
            }
            (Some(key), Outcome::Starts) => failures.push(format!(
                "{}: listed in expected-refusals.txt as refused naming {key}, but it starts (remove the line?)",
                row.name
            )),
            (Some(key), Outcome::Refused(why)) if !why.contains(key.as_str()) => {
                failures.push(format!("{}: refused without naming {key}: {why}", row.name));
            }
            (Some(_), Outcome::Refused(_)) => {}
        }
        if row.reference == Some(Outcome::Starts)
            && row.wharf != Outcome::Starts
            && !expected.contains_key(&row.name)
        {
            failures.push(format!(
                "{}: registry:2 2.8.2 starts with it, Wharf does not",
                row.name
            ));
        }
    }
    if reference.is_some() {
        // The harness itself works: the reference starts with the file its own package installs.
        let own = rows
            .iter()
            .find(|r| r.name == "debian_docker-registry-2.8.2_etc_docker_registry_config.yml")
            .expect("the Debian package's config is in the corpus");
        assert_eq!(
            own.reference,
            Some(Outcome::Starts),
            "registry:2 2.8.2 with its own packaged config"
        );
    }
    println!(
        "{} configs: {started} start, {} refused as listed",
        rows.len(),
        rows.len() - started - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A spot check that the rewriting leaves everything but host ties alone.
#[test]
fn rewriting_changes_only_what_ties_a_config_to_a_host() {
    let materials = Materials::generate();
    let dir = tempfile::tempdir().unwrap();
    let original = read_yaml(&Path::new(CORPUS).join("dist-2.8.2_cmd_registry_config-dev.yml"));
    let mut rewritten = original.clone();
    localise(&mut rewritten, dir.path(), &materials, 9);
    for key in ["version", "log", "health"] {
        assert_eq!(original.get(key), rewritten.get(key), "{key}");
    }
    for key in ["cache", "delete", "maintenance"] {
        assert_eq!(
            original["storage"][key], rewritten["storage"][key],
            "storage.{key}"
        );
    }
    assert_eq!(
        rewritten["notifications"]["endpoints"][0]["url"],
        Value::String("http://127.0.0.1:9/events".into())
    );
    assert_eq!(
        rewritten["notifications"]["endpoints"][0]["headers"],
        original["notifications"]["endpoints"][0]["headers"]
    );
    assert_eq!(
        rewritten["redis"]["addr"],
        Value::String("127.0.0.1:1".into())
    );
    assert_eq!(rewritten["redis"]["pool"], original["redis"]["pool"]);
    assert_eq!(
        rewritten["storage"]["filesystem"]["rootdirectory"],
        path_value(&dir.path().join("data"))
    );
    assert_eq!(rewritten["http"]["headers"], original["http"]["headers"]);
    assert!(rewritten["http"]["addr"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // Repeated keys: the last wins, as registry:2 reads them.
    let e2e = read_yaml(&Path::new(CORPUS).join("dist-3.1.1_tests_conf-e2e-cloud-storage.yml"));
    assert_eq!(e2e["storage"]["s3"]["secure"], Value::Bool(true));
}
