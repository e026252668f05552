//! Configuration reload on the real binary: SIGHUP (and `reload.watch`) applies a changed
//! config.yml to the next request, and a broken file leaves the node serving as it was.

mod support;

use std::collections::BTreeMap;
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

/// How often each piece of background work was started, from `/debug/vars`.
fn work_started(reg: &Registry) -> BTreeMap<String, u64> {
    serde_json::from_value(reload_vars(reg)["work_started"].clone()).unwrap()
}

fn work_running(reg: &Registry) -> Vec<String> {
    serde_json::from_value(reload_vars(reg)["work_running"].clone()).unwrap()
}

/// Sends SIGHUP and waits until the `n`th reload has been applied.
fn reload(reg: &mut Registry, n: f64) {
    reg.hangup();
    let scrape =
        reg.scrape_until(|s| s.sum("wharf_config_reloads_total", &[("result", "success")]) >= n);
    assert_eq!(
        scrape.sum("wharf_config_reloads_total", &[("result", "success")]),
        n,
        "reload {n} not applied:\n{}",
        reg.log()
    );
}

/// Polls `/debug/vars` until `done` holds for it (bounded); returns it.
fn wait_vars(reg: &Registry, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (_, body) = reg.debug_get("/debug/vars");
        let vars: Value = serde_json::from_str(&body).unwrap();
        if done(&vars) {
            return vars;
        }
        assert!(started.elapsed() < RELOAD_LIMIT, "{what}: {vars}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";

/// Pushes an OCI manifest with a non-distributable layer at `url`; the PUT's answer.
fn put_with_layer_url(reg: &Registry, repo: &str, url: &str) -> Resp {
    let config = image_config("amd64", unique_seed(), 2);
    let local = Blob::random(300);
    push(reg, repo, &config);
    push(reg, repo, &local);
    let external = Blob::random(200);
    let mut layer = descriptor(NONDIST, &external.digest, external.size());
    layer["urls"] = serde_json::json!([url]);
    let value = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config.digest, config.size()),
        "layers": [descriptor(OCI_LAYER, &local.digest, local.size()), layer],
    });
    put_manifest(
        reg,
        repo,
        "external",
        &Manifest::from_value(OCI_MANIFEST, &value),
    )
}

fn redis_keys_naming(redis: &RedisServer, digest: &str) -> usize {
    redis
        .keys("*")
        .iter()
        .filter(|k| k.contains(digest))
        .count()
}

/// One node through a series of reloads: Redis moves to another server, online GC is turned on
/// and its interval changed, a health check comes and goes, upload purging is turned off, the
/// manifest URL rules change; and each reload restarts only the background work it reaches
/// (a reload of the log level alone restarts nothing).
#[test]
fn reloads_move_redis_gc_health_purging_validation_restarting_only_what_changed() {
    let (one, two) = (RedisServer::start(), RedisServer::start());
    let dir = tempfile::tempdir().unwrap();
    let down = dir.path().join("down");
    fs::write(&down, b"maintenance").unwrap();
    let mut reg = Registry::builder(Driver::Filesystem)
        .log_section("log:\n  level: info\n  formatter: text\n")
        .redis(&one.addr(), Duration::from_secs(2))
        .section("gc:\n  enabled: false\n  interval: 1h\n  graceperiod: 1h\n")
        .section(
            "validation:\n  manifests:\n    urls:\n      allow: ['^https://one\\.example\\.com/']\n",
        )
        .debug_server(true)
        .start();
    let first = work_started(&reg);
    assert_eq!(first.get("upload purging"), Some(&1), "{first:?}");
    assert!(!first.contains_key("garbage collection"), "{first:?}");
    assert!(!first.contains_key("health checks"), "{first:?}");
    let before = push_blob(&reg, "reload/redis", b"cached in the first redis");
    pull(&reg, "reload/redis", &before);
    assert!(redis_keys_naming(&one, &before) > 0, "{:?}", one.keys("*"));

    // The log level alone: nothing restarts.
    edit(&reg, "level: info", "level: debug");
    reload(&mut reg, 1.0);
    assert_eq!(work_started(&reg), first);

    // Redis moves (address and timeouts): the cache and the leases use the new server; upload
    // purging runs under a lease, so it starts again; nothing else does.
    let text = reg.config_text();
    assert_eq!(text.matches("timeout: 2000ms").count(), 3, "{text}");
    let moved = text
        .replace(&one.addr(), &two.addr())
        .replace("timeout: 2000ms", "timeout: 1500ms");
    fs::write(reg.config_path(), moved).unwrap();
    reload(&mut reg, 2.0);
    let after = push_blob(&reg, "reload/redis", b"cached in the second redis");
    pull(&reg, "reload/redis", &after);
    pull(&reg, "reload/redis", &before);
    assert!(redis_keys_naming(&two, &after) > 0, "{:?}", two.keys("*"));
    assert!(
        redis_keys_naming(&two, &before) > 0,
        "a lookup after the move fills the new server"
    );
    assert_eq!(redis_keys_naming(&one, &after), 0, "{:?}", one.keys("*"));
    let mut expected = first.clone();
    *expected.get_mut("upload purging").unwrap() += 1;
    assert_eq!(work_started(&reg), expected);

    // GC on, with a short interval: a pass runs; it alone starts.
    edit(
        &reg,
        "enabled: false\n  interval: 1h",
        "enabled: true\n  interval: 1s",
    );
    reload(&mut reg, 3.0);
    wait_vars(&reg, "no garbage collection pass", |v| {
        v["cluster"]["gc_last_pass"]["result"] == "success"
    });
    expected.insert("garbage collection".into(), 1);
    assert_eq!(work_started(&reg), expected);

    // The log level alone again: collection goes on as it was (not started again).
    edit(&reg, "level: debug", "level: info");
    reload(&mut reg, 4.0);
    assert_eq!(work_started(&reg), expected);

    // A new interval restarts collection, and only it.
    edit(&reg, "interval: 1s", "interval: 2s");
    reload(&mut reg, 5.0);
    *expected.get_mut("garbage collection").unwrap() += 1;
    assert_eq!(work_started(&reg), expected);

    // A file health check is added: the node reports it failing; then it is removed again.
    let healthy = reg.config_text();
    let check = format!(
        "health:\n  file:\n    - file: {}\n      interval: 200ms\n",
        down.display()
    );
    fs::write(reg.config_path(), healthy.clone() + &check).unwrap();
    reload(&mut reg, 6.0);
    let (_, body) = reg.wait_debug("/debug/health", 503);
    assert!(body.contains(&down.display().to_string()), "{body}");
    expected.insert("health checks".into(), 1);
    assert_eq!(work_started(&reg), expected);
    fs::write(reg.config_path(), &healthy).unwrap();
    reload(&mut reg, 7.0);
    assert_eq!(reg.wait_debug("/debug/health", 200).0, 200);
    assert!(!work_running(&reg).contains(&"health checks".to_string()));

    // Upload purging off: it stops, the rest runs on.
    assert!(work_running(&reg).contains(&"upload purging".to_string()));
    edit(
        &reg,
        "  delete:\n",
        "  maintenance:\n    uploadpurging:\n      enabled: false\n  delete:\n",
    );
    reload(&mut reg, 8.0);
    let running = work_running(&reg);
    assert!(
        !running.contains(&"upload purging".to_string()),
        "{running:?}"
    );
    assert!(
        running.contains(&"garbage collection".to_string()),
        "{running:?}"
    );
    assert_eq!(work_started(&reg), expected);

    // The manifest URL rules: a URL refused before is admitted after, and the reverse.
    let resp = put_with_layer_url(&reg, "reload/urls", "https://two.example.com/l.tgz");
    assert_error(&resp, 400, "MANIFEST_INVALID");
    put_with_layer_url(&reg, "reload/urls", "https://one.example.com/l.tgz").assert_status(201);
    edit(&reg, "one\\.example", "two\\.example");
    reload(&mut reg, 9.0);
    put_with_layer_url(&reg, "reload/urls", "https://two.example.com/l.tgz").assert_status(201);
    let resp = put_with_layer_url(&reg, "reload/urls", "https://one.example.com/l.tgz");
    assert_error(&resp, 400, "MANIFEST_INVALID");
    assert_eq!(reloads(&reg, "error"), 0.0);
}

fn token_for(reg: &Registry, service: &str, user: &str, password: &str) -> Resp {
    send(
        reg.get(&format!(
            "/auth/token?service={service}&scope=repository:team/app:pull,push"
        ))
        .basic_auth(user, Some(password)),
    )
}

fn token_of(resp: &Resp) -> String {
    resp.assert_status(200);
    let body: Value = serde_json::from_str(&resp.text()).unwrap();
    body["token"].as_str().unwrap().to_string()
}

fn tags_with(reg: &Registry, token: &str) -> Resp {
    send(reg.get("/v2/team/app/tags/list").bearer_auth(token))
}

/// Token authentication and the built-in issuer change with a reload: the challenge names the
/// new realm and service, a token for the old issuer and service is refused and one for the new
/// accepted, a certificate added to `rootcertbundle` is trusted, and a user added to
/// `tokenissuer.users` with an ACL gets a token.
#[test]
fn a_reload_changes_token_auth_and_the_issuer_users() {
    use jsonwebtoken::Algorithm;
    use support::auth::*;
    let dir = tempfile::tempdir().unwrap();
    let own = self_signed(ec_key(), &["wharf-token-issuer"]);
    let (key, cert) = own.write(dir.path(), "issuer");
    let other = self_signed(ec_key(), &["other-issuer"]);
    let (_, bundle) = other.write(dir.path(), "other");
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let sections = format!(
        "auth:
  token:
    realm: http://realm-one.invalid/auth/token
    service: svc-one
    issuer: iss-one
tokenissuer:
  key: {key}
  certificate: {cert}
  users:
    alice: '{alice}'
  acl:
    - match: {{account: alice}}
      actions: ['*']
",
        key = key.display(),
        cert = cert.display(),
        alice = hash("alice-pw"),
    );
    let mut reg = Registry::builder(Driver::Filesystem)
        .section(&sections)
        .debug_server(true)
        .ready(Ready::V2Answers)
        .start();
    let outside = |iss: &str, aud: &str| {
        let pull: &[&str] = &["pull"];
        let claims = claims(iss, aud, &[("repository", "team/app", pull)]);
        sign(
            &kid_header(Algorithm::ES256, &libtrust_kid(&other.spki())),
            &claims,
            &other.key,
        )
    };
    let challenge = send(reg.get("/v2/"));
    challenge.assert_status(401);
    let header = challenge
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    assert!(
        header.contains("realm=\"http://realm-one.invalid/auth/token\"")
            && header.contains("service=\"svc-one\""),
        "{header}"
    );
    let old = token_of(&token_for(&reg, "svc-one", "alice", "alice-pw"));
    tags_with(&reg, &old).assert_status(404);
    assert_eq!(tags_with(&reg, &outside("iss-two", "svc-two")).status, 401);
    assert_eq!(token_for(&reg, "svc-one", "bob", "bob-pw").status, 401);

    let next = sections
        .replace("realm-one", "realm-two")
        .replace("service: svc-one", "service: svc-two")
        .replace(
            "issuer: iss-one",
            &format!("issuer: iss-two\n    rootcertbundle: {}", bundle.display()),
        )
        .replace(
            "  acl:\n",
            &format!(
                "    bob: '{}'\n  acl:\n    - match: {{account: bob}}\n      actions: [pull]\n",
                hash("bob-pw")
            ),
        );
    let text = reg.config_text().replace(&sections, &next);
    assert_ne!(text, reg.config_text());
    fs::write(reg.config_path(), text).unwrap();
    reg.hangup();
    let latency = poll_v2(&reg, |r| {
        r.header("www-authenticate")
            .is_some_and(|c| c.contains("realm-two"))
    });
    println!("reload latency (token realm, service, issuer, bundle, users): {latency:?}");
    let header = send(reg.get("/v2/"))
        .header("www-authenticate")
        .unwrap_or_default()
        .to_string();
    assert!(header.contains("service=\"svc-two\""), "{header}");
    let refused = tags_with(&reg, &old);
    assert_eq!(refused.status, 401, "{}", refused.describe());
    assert!(
        refused
            .header("www-authenticate")
            .is_some_and(|c| c.contains("invalid_token")),
        "{}",
        refused.describe()
    );
    let new = token_of(&token_for(&reg, "svc-two", "alice", "alice-pw"));
    tags_with(&reg, &new).assert_status(404);
    let bob = token_of(&token_for(&reg, "svc-two", "bob", "bob-pw"));
    tags_with(&reg, &bob).assert_status(404);
    let trusted = tags_with(&reg, &outside("iss-two", "svc-two"));
    assert_eq!(trusted.status, 404, "{}", trusted.describe());
    assert_eq!(reloads(&reg, "success"), 1.0);
}
