//! Configuration reload on the real binary: SIGHUP (and `reload.watch`) applies a changed
//! config.yml to the next request, and a broken file leaves the node serving as it was.

mod support;

use std::fs;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::receiver::Receiver;
use support::*;

/// How long a reload may take to show before a test gives up.
const RELOAD_LIMIT: Duration = Duration::from_secs(15);

/// Replaces `from` by `to` in the running config file (exactly once).
fn edit(reg: &Registry, from: &str, to: &str) {
    let text = reg.config_text();
    assert_eq!(text.matches(from).count(), 1, "{from:?} in:\n{text}");
    fs::write(reg.config_path(), text.replacen(from, to, 1)).unwrap();
}

/// Polls `GET /v2/` until `done` holds for its answer; returns how long that took (bounded).
fn poll_v2(reg: &Registry, done: impl Fn(&Resp) -> bool) -> Duration {
    let started = Instant::now();
    for _ in 0..20_000 {
        if let Ok(resp) = try_send(reg.get("/v2/")) {
            if done(&resp) {
                return started.elapsed();
            }
        }
        assert!(started.elapsed() < RELOAD_LIMIT, "the reload did not show");
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("the reload did not show");
}

fn reload_vars(reg: &Registry) -> Value {
    let (status, body) = reg.debug_get("/debug/vars");
    assert_eq!(status, 200);
    let vars: Value = serde_json::from_str(&body).unwrap();
    vars["registry"]["reload"].clone()
}

fn reloads(reg: &Registry, result: &str) -> f64 {
    reg.scrape()
        .sum("wharf_config_reloads_total", &[("result", result)])
}

#[test]
fn sighup_changes_log_level_fields_headers_and_read_only_on_the_next_request() {
    let mut reg = Registry::builder(Driver::Filesystem)
        .log_section("log:\n  level: error\n  formatter: text\n  fields:\n    generation: first\n")
        .debug_server(true)
        .start();
    let blob = push_blob(&reg, "reload/app", b"written before the reload");
    send(reg.get("/v2/reload/app/tags/list"));
    assert!(
        reg.access_lines().is_empty(),
        "level error logs no requests"
    );

    // Level, fields, a response header and read-only, all in one reload.
    edit(&reg, "level: error", "level: info");
    edit(&reg, "generation: first", "generation: second");
    edit(
        &reg,
        "    X-Content-Type-Options: [nosniff]\n",
        "    X-Content-Type-Options: [nosniff]\n    X-Reloaded: [yes]\n",
    );
    edit(
        &reg,
        "  delete:\n",
        "  maintenance:\n    readonly:\n      enabled: true\n  delete:\n",
    );
    reg.hangup();
    let latency = poll_v2(&reg, |r| r.header("x-reloaded") == Some("yes"));
    println!(
        "reload latency (SIGHUP to the first request under the new configuration): {latency:?}"
    );
    send(reg.get("/v2/reload/app/tags/list")).assert_status(404);
    let logged = reg.wait_stderr(|log| {
        log.lines()
            .any(|l| l.contains("msg=\"request\"") && l.contains("generation=second"))
    });
    assert!(
        logged.is_some(),
        "no access line at level info with the new field:\n{}",
        reg.log()
    );
    let refused = try_send(reg.post("/v2/reload/app/blobs/uploads/")).unwrap();
    assert_error(&refused, 405, "UNSUPPORTED");
    let (_, size, _) = pull(&reg, "reload/app", &blob);
    assert_eq!(size, b"written before the reload".len() as u64);
    assert_eq!(reloads(&reg, "success"), 1.0);

    // And back: writable again.
    edit(
        &reg,
        "readonly:\n      enabled: true\n",
        "readonly:\n      enabled: false\n",
    );
    reg.hangup();
    let latency = poll_v2(&reg, |_| {
        try_send(reg.post("/v2/reload/app/blobs/uploads/")).is_ok_and(|r| r.status == 202)
    });
    println!("reload latency (read-only off): {latency:?}");
    push_blob(
        &reg,
        "reload/app",
        b"written after read-only was turned off",
    );
    assert_eq!(reloads(&reg, "success"), 2.0);
    assert_eq!(reloads(&reg, "error"), 0.0);
}

/// Pulls a blob; (digest, size, body digest).
fn pull(reg: &Registry, repo: &str, digest: &str) -> (String, u64, String) {
    reg.pull_digest(repo, digest)
        .unwrap_or_else(|f| panic!("pull {repo}@{digest}: {f:?}"))
}

fn as_user(reg: &Registry, user: &str, password: &str) -> u16 {
    send(reg.get("/v2/").basic_auth(user, Some(password))).status
}

#[test]
fn a_reload_adds_an_htpasswd_user() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    let alice = format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap());
    let bob = format!("bob:{}\n", bcrypt::hash("bob-pw", 4).unwrap());
    fs::write(&one, &alice).unwrap();
    fs::write(&two, format!("{alice}{bob}")).unwrap();
    let mut reg = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  htpasswd:\n    realm: first-realm\n    path: {}\n",
            one.display()
        ))
        .debug_server(true)
        .ready(Ready::V2Answers)
        .start();
    assert_eq!(as_user(&reg, "alice", "alice-pw"), 200);
    assert_eq!(as_user(&reg, "bob", "bob-pw"), 401);

    edit(&reg, &one.display().to_string(), &two.display().to_string());
    edit(&reg, "first-realm", "second-realm");
    reg.hangup();
    let latency = poll_v2(&reg, |r| {
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("second-realm"))
    });
    println!("reload latency (htpasswd path and realm): {latency:?}");
    assert_eq!(as_user(&reg, "bob", "bob-pw"), 200);
    assert_eq!(as_user(&reg, "alice", "alice-pw"), 200);
    assert_eq!(as_user(&reg, "bob", "wrong"), 401);
}

#[test]
fn a_reload_adds_a_notification_endpoint() {
    let receiver = Receiver::start();
    let mut reg = Registry::builder(Driver::Filesystem)
        .debug_server(true)
        .start();
    push_image(&reg, "notify/before", "v1", Kind::OciManifest);
    let section = format!(
        "notifications:\n  endpoints:\n    - name: added\n      url: {}\n      timeout: 2s\n      threshold: 3\n      backoff: 1s\n",
        receiver.url("/added")
    );
    let text = reg.config_text() + &section;
    fs::write(reg.config_path(), text).unwrap();
    reg.hangup();
    assert!(
        reg.wait_stderr(|log| log.contains("configuration reloaded"))
            .is_some(),
        "no reload:\n{}",
        reg.log()
    );
    push_image(&reg, "notify/after", "v1", Kind::OciManifest);
    let events = receiver.wait_events("/added", 1, RELOAD_LIMIT);
    let pushed: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "push" && e["target"]["repository"] == "notify/after")
        .collect();
    assert!(
        !pushed.is_empty(),
        "no push event for notify/after: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| e["target"]["repository"] != "notify/before"),
        "events from before the endpoint existed: {events:?}"
    );
}

#[test]
fn broken_files_leave_the_node_serving_unchanged() {
    let reg = Registry::builder(Driver::Filesystem)
        .response_header("X-Generation", "one")
        .section("reload:\n  watch: true\n")
        .debug_server(true)
        .start();
    let good = reg.config_text();
    let cases = [
        (
            "bad YAML",
            good.replace("version: 0.1\n", "version: 0.1\nlog: [unclosed\n"),
            "config.yml",
        ),
        (
            "unknown driver",
            good.replace("storage:\n", "storage:\n  nosuchdriver: {}\n"),
            "storage",
        ),
        (
            "wrong type",
            good.clone() + "catalog:\n  maxentries: plenty\n",
            "catalog.maxentries",
        ),
    ];
    for (n, (what, text, key)) in cases.iter().enumerate() {
        fs::write(reg.config_path(), text).unwrap();
        let errors = (n + 1) as f64;
        let scrape = reg.scrape_until(|s| {
            s.sum("wharf_config_reloads_total", &[("result", "error")]) >= errors
        });
        assert_eq!(
            scrape.sum("wharf_config_reloads_total", &[("result", "error")]),
            errors,
            "{what}"
        );
        let vars = reload_vars(&reg);
        let error = vars["last_error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains(key),
            "{what}: the error does not name {key}: {error}"
        );
        let resp = send(reg.get("/v2/"));
        resp.assert_status(200);
        assert_eq!(resp.header("x-generation"), Some("one"), "{what}");
        push_blob(
            &reg,
            "broken/still",
            format!("served after {what}").as_bytes(),
        );
        assert!(
            reg.log().contains(key),
            "{what}: the log does not name {key}"
        );
    }
    assert_eq!(reloads(&reg, "success"), 0.0);

    // A good file again (with a restart-only change): the live part applies, the rest waits.
    let next = good
        .replace("X-Generation: [\"one\"]", "X-Generation: [\"two\"]")
        .replace("  secret: ", "  secret: changed-");
    assert_ne!(next, good);
    fs::write(reg.config_path(), &next).unwrap();
    poll_v2(&reg, |r| r.header("x-generation") == Some("two"));
    let vars = reload_vars(&reg);
    assert_eq!(
        vars["restart_pending"],
        serde_json::json!(["http.secret"]),
        "{vars}"
    );
    assert!(
        reg.log()
            .lines()
            .any(|l| l.contains("needs a restart") && l.contains("http.secret")),
        "{}",
        reg.log()
    );
    assert_eq!(reloads(&reg, "success"), 1.0);
}

#[test]
fn a_reload_changes_cors_origins_and_turns_the_console_on() {
    let (first, second) = ("http://127.0.0.1:1", "http://127.0.0.1:2");
    let mut reg = Registry::builder(Driver::Filesystem)
        .http_line(&format!(
            "  cors:\n    allowedorigins: [{first:?}]\n    maxage: 60\n"
        ))
        .section("ui:\n  enabled: false\n")
        .debug_server(true)
        .start();
    let preflight = |reg: &Registry, origin: &str| {
        send(
            reg.request(reqwest::Method::OPTIONS, "/v2/_catalog")
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "GET"),
        )
    };
    assert_eq!(preflight(&reg, first).status, 204);
    assert_eq!(preflight(&reg, second).status, 403);
    assert_eq!(send(reg.get("/ui/")).status, 404);

    edit(&reg, &format!("[{first:?}]"), &format!("[{second:?}]"));
    edit(&reg, "enabled: false", "enabled: true");
    reg.hangup();
    let started = Instant::now();
    while preflight(&reg, second).status != 204 {
        assert!(started.elapsed() < RELOAD_LIMIT, "the reload did not show");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        preflight(&reg, first).status,
        403,
        "the old origin is refused"
    );
    let console = send(reg.get("/ui/"));
    assert_eq!(console.status, 200, "{}", console.describe());
    assert!(
        console.text().contains("<h1>Repositories</h1>"),
        "{}",
        console.describe()
    );
    assert!(reload_vars(&reg)["restart_pending"]
        .as_array()
        .is_none_or(|keys| keys.is_empty()));
}
