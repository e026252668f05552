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
/// with the key the refusal names: registry:2 refuses them too.
const REFUSED_AS_WRITTEN: &[(&str, &str)] = &[(
    "dist-3.1.1_docs_content_about_configuration_http.yml",
    "http.tls.letsencrypt",
)];
const LIMIT: Duration = Duration::from_secs(20);

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
            (Some(key), code) => failures.push(format!(
                "{name}: expected a refusal naming {key}, got {code:?}: {}",
                out.stderr
            )),
            (None, code) => failures.push(format!("{name}: exit {code:?}: {}", out.stderr)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(accepted >= 30, "only {accepted} configs checked");
    println!("config check: {accepted} accepted, {refused} refused as listed");
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
