//! `wharf config check` and `wharf config diff` on the real binary.
//!
//! `config check` accepts every config of the corpus (`tests/configs/`, and the shared corpus at
//! `../shared/configs/` when it is there) that `serve` accepts, refuses those listed in
//! `expected-refusals.txt` naming the listed key, and never shows a secret.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::{clean_command, run_bounded, CommandOutput, Server};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/configs");
const SHARED_CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/configs");
/// Corpus files refused as they are written (the corpus test rewrites them for this host first),
/// with the key the refusal names.
const REFUSED_AS_WRITTEN: &[(&str, &str)] = &[
    // registry:2 refuses it too (ACME with a cache file).
    (
        "dist-3.1.1_docs_content_about_configuration_http.yml",
        "http.tls.letsencrypt",
    ),
];
const LIMIT: Duration = Duration::from_secs(20);
/// Keys that name a file `config check` opens.
const FILE_KEYS: &[&str] = &[
    "http.tls.certificate",
    "http.tls.key",
    "http.tls.clientcas",
    "auth.htpasswd.path",
    "auth.token.rootcertbundle",
    "auth.token.jwks",
    "tokenissuer.key",
    "tokenissuer.certificate",
    "tokenissuer.dockerauthconfig",
];

/// Whether a refusal names a file key and a file that does not exist here (the corpus's
/// configs name their hosts' certificates and password files; `serve` refuses them too).
fn names_a_missing_file(stderr: &str) -> bool {
    FILE_KEYS.iter().any(|k| stderr.contains(k))
        && stderr
            .split_whitespace()
            .map(|w| w.trim_end_matches([':', ',']))
            .any(|w| w.starts_with('/') && !Path::new(w).exists())
}

fn wharf(args: &[&str], env: &[(&str, &str)]) -> CommandOutput {
    let mut cmd = clean_command(&Server::Wharf.binary());
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, LIMIT)
}

/// `expected-refusals.txt`: config file name to the key its refusal must name.
fn expected_refusals() -> BTreeMap<String, String> {
    let text = fs::read_to_string(Path::new(CORPUS).join("expected-refusals.txt")).unwrap();
    text.lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn config_check_accepts_the_corpus_and_refuses_by_key() {
    let mut expected = expected_refusals();
    for (file, key) in REFUSED_AS_WRITTEN {
        expected.insert(file.to_string(), key.to_string());
    }
    let mut dirs = vec![PathBuf::from(CORPUS)];
    if Path::new(SHARED_CORPUS).is_dir() {
        dirs.push(PathBuf::from(SHARED_CORPUS));
    }
    let (mut accepted, mut refused, mut failures) = (0, 0, Vec::new());
    let mut missing_files = 0;
    for file in dirs.iter().flat_map(|d| corpus_files(d)) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = wharf(&["config", "check", file.to_str().unwrap()], &[]);
        match (expected.get(&name), out.status.code()) {
            (None, Some(0)) => {
                accepted += 1;
                if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(&out.stdout) {
                    failures.push(format!("{name}: printed configuration is not YAML: {e}"));
                }
            }
            (Some(key), Some(1)) if out.stderr.contains(key.as_str()) => refused += 1,
            (None, Some(1)) if names_a_missing_file(&out.stderr) => missing_files += 1,
            (Some(key), code) => failures.push(format!(
                "{name}: expected a refusal naming {key}, got {code:?}: {}",
                out.stderr
            )),
            (None, code) => failures.push(format!("{name}: exit {code:?}: {}", out.stderr)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        accepted + missing_files >= 30,
        "only {accepted} configs accepted and {missing_files} refused for a missing file"
    );
    println!(
        "config check: {accepted} accepted, {refused} refused as listed, {missing_files} refused \
         for a file they name that this host does not have"
    );
}

#[test]
fn config_check_masks_secrets_and_applies_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yml");
    fs::write(
        &path,
        "version: 0.1\n\
         storage: {s3: {region: us-east-1, bucket: b, accesskey: AKIDEXAMPLE, secretkey: very-secret-key}}\n\
         http: {addr: '127.0.0.1:5000', secret: upload-secret}\n\
         redis: {addr: '127.0.0.1:6379', password: redis-password}\n",
    )
    .unwrap();
    let out = wharf(
        &["config", "check", path.to_str().unwrap()],
        &[("REGISTRY_HTTP_ADDR", "127.0.0.1:5999")],
    );
    out.assert_success("config check");
    for secret in [
        "AKIDEXAMPLE",
        "very-secret-key",
        "upload-secret",
        "redis-password",
    ] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} shown:\n{}",
            out.stdout
        );
    }
    let shown: serde_yaml::Value = serde_yaml::from_str(&out.stdout).unwrap();
    assert_eq!(shown["http"]["addr"].as_str(), Some("127.0.0.1:5999"));
    assert_eq!(shown["storage"]["s3"]["bucket"].as_str(), Some("b"));

    // A value of the wrong type, and an environment variable that breaks a good file.
    fs::write(
        dir.path().join("bad.yml"),
        "version: 0.1\nstorage: {inmemory: {}}\nhttp: {addr: [1, 2]}\n",
    )
    .unwrap();
    let out = wharf(
        &[
            "config",
            "check",
            dir.path().join("bad.yml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("http.addr"), "{}", out.stderr);
    let out = wharf(
        &["config", "check", path.to_str().unwrap()],
        &[("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "soon")],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("uploadpurging"), "{}", out.stderr);
}

#[test]
fn config_diff_names_live_and_restart_changes() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.yml");
    let new = dir.path().join("new.yml");
    fs::write(
        &old,
        "version: 0.1\nlog: {level: info}\nstorage: {filesystem: {rootdirectory: /tmp/a}}\nhttp: {addr: '127.0.0.1:5000', secret: a}\n",
    )
    .unwrap();
    fs::write(
        &new,
        "version: 0.1\nlog: {level: debug}\nstorage: {filesystem: {rootdirectory: /tmp/b}, maintenance: {readonly: {enabled: true}}}\nhttp: {addr: '127.0.0.1:5001', secret: b}\n",
    )
    .unwrap();
    let out = wharf(
        &[
            "config",
            "diff",
            old.to_str().unwrap(),
            new.to_str().unwrap(),
        ],
        &[],
    );
    out.assert_success("config diff");
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        vec![
            vec!["needs-restart", "http.addr"],
            vec!["needs-restart", "http.secret"],
            vec!["live", "log.level"],
            vec!["needs-restart", "storage.filesystem.rootdirectory"],
            vec!["live", "storage.maintenance.readonly.enabled"],
        ]
    );
    fs::write(&new, "version: 0.1\nstorage: {nosuchdriver: {}}\n").unwrap();
    let out = wharf(
        &[
            "config",
            "diff",
            old.to_str().unwrap(),
            new.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("storage"), "{}", out.stderr);
}

/// `config check` opens what the configuration names, as `serve` does: a missing or broken
/// certificate, key, bundle or password file is refused naming its key and file; a missing
/// htpasswd file (which `serve` creates) or a folder (registry:2 starts with one) is only a
/// warning, and the check creates nothing.
#[test]
fn config_check_opens_the_files_a_config_names() {
    use support::auth::{ec_key, self_signed};
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let (key, cert) = self_signed(ec_key(), &["localhost"]).write(dir.path(), "tls");
    let (key, cert) = (key.display().to_string(), cert.display().to_string());
    fs::write(
        at("htpasswd"),
        format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap()),
    )
    .unwrap();
    fs::write(at("garbage.pem"), "not a PEM file\n").unwrap();
    fs::create_dir(at("folder")).unwrap();
    // A configuration: `extra` sections after storage, with a plain `http` unless it has one.
    let write = |name: &str, extra: &str| {
        let http = if extra.starts_with("http:") {
            ""
        } else {
            "http: {addr: '127.0.0.1:5000', secret: s}\n"
        };
        let path = dir.path().join(name);
        let text = format!("version: 0.1\nstorage: {{inmemory: {{}}}}\n{http}{extra}");
        fs::write(&path, text).unwrap();
        wharf(&["config", "check", path.to_str().unwrap()], &[])
    };
    let tls = |c: &str, k: &str| {
        format!(
            "http:\n  addr: '127.0.0.1:5000'\n  secret: s\n  tls: {{certificate: {c}, key: {k}}}\n"
        )
    };
    let token = |bundle: &str| {
        format!(
            "auth:\n  token: {{realm: 'http://127.0.0.1:1/token', service: s, issuer: i, rootcertbundle: {bundle}}}\n"
        )
    };
    let issuer = |k: &str, c: &str| {
        format!("tokenissuer:\n  issuer: i\n  service: s\n  key: {k}\n  certificate: {c}\n  users: {{}}\n  acl: []\n")
    };
    let htpasswd = |p: &str| format!("auth:\n  htpasswd: {{realm: r, path: {p}}}\n");

    // Everything present and well formed.
    for (name, extra) in [
        ("tls.yml", tls(&cert, &key)),
        ("token.yml", token(&cert)),
        ("issuer.yml", issuer(&key, &cert)),
        ("htpasswd.yml", htpasswd(&at("htpasswd"))),
    ] {
        let out = write(name, &extra);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", out.stderr);
    }

    // Missing, not what it should be, or a folder: refused naming the key and the file.
    let none = at("none.crt");
    let garbage = at("garbage.pem");
    let docker_auth = format!(
        "tokenissuer:\n  issuer: i\n  service: s\n  key: {key}\n  certificate: {cert}\n  dockerauthconfig: {}\n",
        at("none.yml")
    );
    let bad = [
        (
            "tls certificate",
            tls(&none, &key),
            "http.tls.certificate",
            none.clone(),
        ),
        (
            "tls key",
            tls(&cert, &garbage),
            "http.tls.key",
            garbage.clone(),
        ),
        (
            "bundle",
            token(&none),
            "auth.token.rootcertbundle",
            none.clone(),
        ),
        (
            "bundle garbage",
            token(&garbage),
            "auth.token.rootcertbundle",
            garbage.clone(),
        ),
        (
            "issuer key",
            issuer(&garbage, &cert),
            "tokenissuer.key",
            garbage.clone(),
        ),
        (
            "issuer certificate",
            issuer(&key, &none),
            "tokenissuer.certificate",
            none.clone(),
        ),
        (
            "dockerauthconfig",
            docker_auth,
            "tokenissuer.dockerauthconfig",
            at("none.yml"),
        ),
        (
            "htpasswd in no folder",
            htpasswd(&at("none/htpasswd")),
            "auth.htpasswd.path",
            at("none/htpasswd"),
        ),
    ];
    for (what, extra, key, file) in &bad {
        let out = write("bad.yml", extra);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", out.stderr);
        assert!(
            out.stderr.contains(key) && out.stderr.contains(file.as_str()),
            "{what}: the refusal does not name {key} and {file}: {}",
            out.stderr
        );
    }

    // A missing htpasswd file: serve creates it; the check warns and creates nothing.
    let out = write("created.yml", &htpasswd(&at("later")));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("auth.htpasswd.path") && out.stderr.contains("does not exist"),
        "{}",
        out.stderr
    );
    assert!(
        !Path::new(&at("later")).exists(),
        "config check created the file"
    );
    // A folder: registry:2 starts with it (and refuses every login); a warning.
    let out = write("folder.yml", &htpasswd(&at("folder")));
    assert_eq!(out.status.code(), Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("is a folder"), "{}", out.stderr);
}
