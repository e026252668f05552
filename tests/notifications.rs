//! Webhook notifications: registry:2's events and envelope, delivered at least once, in order,
//! with retries, backoff, ignore rules and a bounded backlog, by a cluster that loses nodes.
//! The receiver is a real HTTP server of this test process; registries are real processes.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::Value;
use support::receiver::{Mode, Receiver};
use support::*;

/// Longest wait for a delivery that should happen.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

/// A `notifications` section; each endpoint is `(name, url, extra YAML lines)`.
fn notifications(endpoints: &[(&str, String, &str)]) -> String {
    let mut text =
        String::from("notifications:\n  events:\n    includereferences: true\n  endpoints:\n");
    for (name, url, extra) in endpoints {
        text.push_str(&format!(
            "    - name: {name}\n      url: {url}\n      headers:\n        X-Test: [{name}]\n      timeout: 500ms\n      threshold: 3\n      backoff: 500ms\n"
        ));
        for line in extra.lines().filter(|l| !l.trim().is_empty()) {
            text.push_str(&format!("      {line}\n"));
        }
    }
    text
}

fn wharf(section: &str) -> Registry {
    Registry::builder(Driver::Filesystem)
        .debug_server(true)
        .section(section)
        .start()
}

/// A small image whose bytes do not depend on the run, so two registries give equal digests.
fn fixed_image() -> (Blob, Blob, Manifest) {
    let config = Blob::new(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
    );
    let layer = Blob::new(b"wharf notification layer".to_vec());
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &layer)],
        None,
    );
    (config, layer, manifest)
}

/// An image manifest over `config` and `layer` that differs by `n` (an annotation).
fn numbered_manifest(config: &Blob, layer: &Blob, n: usize) -> Manifest {
    image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, config),
        &[(OCI_LAYER, layer)],
        Some(serde_json::json!({"annotations": {"n": n.to_string()}})),
    )
}

fn field<'a>(event: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(event, |v, k| &v[k])
}

fn text(event: &Value, path: &str) -> String {
    field(event, path).as_str().unwrap_or("").to_string()
}

/// The same operations against a registry: pushes, pulls (GET and HEAD), a mount, deletes.
fn same_operations(reg: &Endpoint) {
    let (config, layer, manifest) = fixed_image();
    push(reg, "notify/app", &config);
    push(reg, "notify/app", &layer);
    push_manifest(reg, "notify/app", "v1", &manifest);
    get_manifest(reg, "notify/app", "v1", OCI_MANIFEST).assert_status(200);
    get_manifest(reg, "notify/app", &manifest.digest, OCI_MANIFEST).assert_status(200);
    send(
        reg.head("/v2/notify/app/manifests/v1")
            .header("accept", OCI_MANIFEST),
    )
    .assert_status(200);
    send(reg.get(&format!("/v2/notify/app/blobs/{}", layer.digest))).assert_status(200);
    send(reg.head(&format!("/v2/notify/app/blobs/{}", layer.digest))).assert_status(200);
    send(reg.post(&format!(
        "/v2/notify/other/blobs/uploads/?mount={}&from=notify/app",
        layer.digest
    )))
    .assert_status(201);
    send(reg.delete(&format!("/v2/notify/app/manifests/{}", manifest.digest))).assert_status(202);
    send(reg.delete(&format!("/v2/notify/other/blobs/{}", layer.digest))).assert_status(202);
}

/// An event with what differs between two registries and two runs blanked: ids, timestamps,
/// addresses, the registry's host in URLs, the source node.
fn comparable(event: &Value, host: &str) -> Value {
    let mut e = event.clone();
    e["id"] = Value::Null;
    e["timestamp"] = Value::Null;
    e["request"]["id"] = Value::Null;
    e["request"]["addr"] = Value::Null;
    e["request"]["host"] = Value::Null;
    e["source"] = Value::Null;
    if let Some(url) = e["target"]["url"].as_str() {
        e["target"]["url"] = Value::String(url.replace(host, "HOST"));
    }
    e
}

#[test]
fn events_match_registry_2_field_by_field() {
    let receiver = Receiver::start();
    let section = |path: &str| notifications(&[("hook", receiver.url(path), "")]);
    let reference = Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .section(&section("/reference"))
        .start();
    let ours = wharf(&section("/wharf"));
    same_operations(&reference.endpoint());
    same_operations(&ours.endpoint());
    // registry:2 sends a pull for the two HEADs as well; Wharf records none for a HEAD.
    receiver.wait_events("/reference", 12, DELIVERY_WAIT);
    receiver.wait_events("/wharf", 10, DELIVERY_WAIT);
    // Anything more would arrive right behind: give it a moment to show up.
    std::thread::sleep(Duration::from_millis(500));
    let theirs = receiver.accepted_events("/reference");
    let mine = receiver.accepted_events("/wharf");
    assert_eq!(theirs.len(), 12, "registry:2 events: {theirs:#?}");
    let head_pulls: Vec<&Value> = theirs
        .iter()
        .filter(|e| text(e, "request.method") == "HEAD")
        .collect();
    assert_eq!(head_pulls.len(), 2, "{theirs:#?}");
    assert!(head_pulls.iter().all(|e| text(e, "action") == "pull"));
    let theirs: Vec<Value> = theirs
        .iter()
        .filter(|e| text(e, "request.method") != "HEAD")
        .map(|e| comparable(e, reference.endpoint().host()))
        .collect();
    let mine: Vec<Value> = mine
        .iter()
        .map(|e| comparable(e, ours.endpoint().host()))
        .collect();
    assert_eq!(
        mine.len(),
        theirs.len(),
        "wharf: {mine:#?}\nregistry:2: {theirs:#?}"
    );
    for (i, (m, t)) in mine.iter().zip(&theirs).enumerate() {
        assert_eq!(m, t, "event {i} differs");
    }
    // The fields blanked above are present and shaped alike.
    let raw = receiver.accepted_events("/wharf");
    for e in &raw {
        assert_eq!(text(e, "id").len(), 36, "{e}");
        assert!(text(e, "timestamp").ends_with('Z'), "{e}");
        assert!(text(e, "request.addr").starts_with("127.0.0.1:"), "{e}");
        assert_eq!(text(e, "request.id").len(), 36, "{e}");
        assert_eq!(text(e, "request.host"), ours.endpoint().host());
        assert!(
            text(e, "source.addr").ends_with(&format!(":{}", ours.port())),
            "{e}"
        );
        assert_eq!(text(e, "source.instanceID").len(), 36, "{e}");
        assert_eq!(field(e, "actor"), &serde_json::json!({}));
    }
    // The POSTs themselves: media type and the configured header, as registry:2 sends them.
    let posts: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.path == "/wharf")
        .collect();
    for d in &posts {
        assert_eq!(
            d.header("content-type"),
            Some("application/vnd.docker.distribution.events.v1+json")
        );
        assert_eq!(d.header("x-test"), Some("hook"));
        assert_eq!(d.events().len(), 1);
    }
    let reference_post = receiver
        .deliveries()
        .into_iter()
        .find(|d| d.path == "/reference")
        .unwrap();
    // Byte layout too: Go's MarshalIndent with three spaces.
    assert!(reference_post
        .body
        .starts_with("{\n   \"events\": [\n      {\n         \"id\""));
    assert!(posts[0]
        .body
        .starts_with("{\n   \"events\": [\n      {\n         \"id\""));
}

#[test]
fn two_endpoints_in_order_with_their_own_ignore_rules() {
    let receiver = Receiver::start();
    let reg = wharf(&notifications(&[
        ("all", receiver.url("/all"), ""),
        (
            "manifests",
            receiver.url("/manifests"),
            "ignore:\n  mediatypes: [application/octet-stream]\n  actions: [pull]",
        ),
    ]));
    let (config, layer, _) = fixed_image();
    push(&reg, "order/app", &config);
    push(&reg, "order/app", &layer);
    const N: usize = 20;
    let mut digests = Vec::new();
    for i in 0..N {
        let m = numbered_manifest(&config, &layer, i);
        push_manifest(&reg, "order/app", &format!("t{i}"), &m);
        digests.push(m.digest.clone());
    }
    get_manifest(&reg, "order/app", "t0", OCI_MANIFEST).assert_status(200);
    let all = receiver.wait_events("/all", 2 + N + 1, DELIVERY_WAIT);
    let manifests = receiver.wait_events("/manifests", N, DELIVERY_WAIT);
    assert_eq!(all.len(), 2 + N + 1, "{all:#?}");
    assert_eq!(manifests.len(), N, "{manifests:#?}");
    // Recorded order: the two blob pushes, the manifests t0..t19, the pull.
    assert_eq!(text(&all[0], "target.digest"), config.digest);
    assert_eq!(text(&all[1], "target.digest"), layer.digest);
    let tags: Vec<String> = all[2..2 + N]
        .iter()
        .map(|e| text(e, "target.tag"))
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
    assert_eq!(tags, expected);
    assert_eq!(text(&all[2 + N], "action"), "pull");
    let filtered: Vec<String> = manifests.iter().map(|e| text(e, "target.tag")).collect();
    assert_eq!(filtered, expected);
    for (i, e) in manifests.iter().enumerate() {
        assert_eq!(text(e, "action"), "push");
        assert_eq!(text(e, "target.digest"), digests[i]);
        // The same event (same id) goes to both endpoints.
        assert_eq!(text(e, "id"), text(&all[2 + i], "id"));
    }
    // Counted per endpoint and action; states in /debug/vars.
    let scrape = reg.scrape_until(|s| {
        s.sum(
            "wharf_notifications_delivered_total",
            &[("endpoint", "manifests")],
        ) >= N as f64
    });
    assert_eq!(
        scrape.sum(
            "registry_notifications_events_total",
            &[("endpoint", "all"), ("action", "push")]
        ),
        (2 + N) as f64
    );
    assert_eq!(
        scrape.sum(
            "registry_notifications_events_total",
            &[("endpoint", "manifests"), ("action", "pull")]
        ),
        0.0
    );
    assert_eq!(
        scrape.sum(
            "registry_notifications_pending",
            &[("endpoint", "manifests")]
        ),
        0.0
    );
    let (status, vars) = reg.debug_get("/debug/vars");
    assert_eq!(status, 200);
    let vars: Value = serde_json::from_str(&vars).unwrap();
    let state = &vars["registry"]["notifications"]["endpoints"]["manifests"];
    assert_eq!(state["url"], receiver.url("/manifests"));
    assert_eq!(state["deliverer"], true);
    assert_eq!(state["delivered"], N as u64);
}

#[test]
fn failures_are_retried_with_backoff_then_delivered() {
    let receiver = Receiver::start();
    receiver.set_mode(Mode::Status(500));
    let reg = wharf(&notifications(&[(
        "flaky",
        receiver.url("/flaky"),
        "ignore:\n  mediatypes: [application/octet-stream]",
    )]));
    let (config, layer, manifest) = fixed_image();
    push(&reg, "retry/app", &config);
    push(&reg, "retry/app", &layer);
    push_manifest(&reg, "retry/app", "v1", &manifest);
    // threshold 3: three attempts at once, then one per backoff.
    assert!(wait_until(DELIVERY_WAIT, || receiver.deliveries().len() >= 5));
    receiver.set_mode(Mode::Hang(Duration::from_secs(2)));
    let before = receiver.deliveries().len();
    assert!(wait_until(DELIVERY_WAIT, || receiver
        .deliveries()
        .iter()
        .skip(before)
        .any(|d| d.answered == 0)));
    receiver.set_mode(Mode::Accept);
    let events = receiver.wait_events("/flaky", 1, DELIVERY_WAIT);
    assert_eq!(events.len(), 1);
    let all = receiver.deliveries();
    let ids: Vec<String> = all.iter().map(|d| text(&d.events()[0], "id")).collect();
    // Every attempt carried the same event.
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert!(all.iter().filter(|d| d.answered == 500).count() >= 5);
    let scrape = reg.scrape_until(|s| {
        s.sum(
            "wharf_notifications_delivered_total",
            &[("endpoint", "flaky")],
        ) >= 1.0
    });
    assert!(
        scrape.sum(
            "registry_notifications_errors_total",
            &[("endpoint", "flaky")]
        ) >= 6.0
    );
    assert!(
        scrape.sum(
            "registry_notifications_status_total",
            &[("endpoint", "flaky"), ("code", "500")]
        ) >= 5.0
    );
    let log = reg.log();
    assert!(log.contains("backing off"), "{log}");
}

/// How long the receiver is away in `receiver_down_then_back_loses_nothing`.
const OUTAGE: Duration = Duration::from_secs(30);

#[test]
fn receiver_down_then_back_loses_nothing() {
    let mut receiver = Receiver::start();
    let reg = wharf(&notifications(&[(
        "down",
        receiver.url("/down"),
        "ignore:\n  mediatypes: [application/octet-stream]",
    )]));
    let (config, layer, _) = fixed_image();
    push(&reg, "down/app", &config);
    push(&reg, "down/app", &layer);
    receiver.stop();
    let stopped = std::time::Instant::now();
    const N: usize = 10;
    for i in 0..N {
        push_manifest(
            &reg,
            "down/app",
            &format!("t{i}"),
            &numbered_manifest(&config, &layer, i),
        );
    }
    // Refused connections are failures: the endpoint backs off while the receiver is away.
    reg.scrape_until(|s| {
        s.sum(
            "registry_notifications_errors_total",
            &[("endpoint", "down")],
        ) >= 4.0
    });
    // Away for 30 s in all, many backoffs long.
    std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
    receiver.restart();
    let events = receiver.wait_events("/down", N, DELIVERY_WAIT);
    let tags: Vec<String> = events.iter().map(|e| text(e, "target.tag")).collect();
    let expected: Vec<String> = (0..N).map(|i| format!("t{i}")).collect();
    assert_eq!(tags, expected);
}

#[test]
fn backlog_past_its_limit_drops_the_oldest_and_counts_them() {
    let mut receiver = Receiver::start();
    let reg = wharf(&notifications(&[(
        "small",
        receiver.url("/small"),
        "ignore:\n  mediatypes: [application/octet-stream]\nbacklog:\n  maxevents: 5",
    )]));
    let (config, layer, _) = fixed_image();
    push(&reg, "small/app", &config);
    push(&reg, "small/app", &layer);
    receiver.stop();
    const N: usize = 12;
    for i in 0..N {
        push_manifest(
            &reg,
            "small/app",
            &format!("t{i}"),
            &numbered_manifest(&config, &layer, i),
        );
    }
    let scrape = reg.scrape_until(|s| {
        s.sum(
            "wharf_notifications_dropped_total",
            &[("endpoint", "small")],
        ) >= (N - 5) as f64
    });
    assert_eq!(
        scrape.sum(
            "wharf_notifications_dropped_total",
            &[("endpoint", "small")]
        ),
        (N - 5) as f64
    );
    receiver.restart();
    let events = receiver.wait_events("/small", 5, DELIVERY_WAIT);
    std::thread::sleep(Duration::from_secs(1));
    let tags: Vec<String> = receiver
        .accepted_events("/small")
        .iter()
        .map(|e| text(e, "target.tag"))
        .collect();
    let expected: Vec<String> = (N - 5..N).map(|i| format!("t{i}")).collect();
    assert_eq!(tags, expected, "{events:#?}");
    assert!(reg.log().contains("oldest events dropped"));
}

#[test]
fn a_node_killed_right_after_answering_still_gets_its_event_delivered() {
    let _cluster = cluster::exclusive();
    let mut receiver = Receiver::start();
    let storage = tempfile::Builder::new()
        .prefix("wharf-notify-cluster-")
        .tempdir()
        .unwrap();
    let section = notifications(&[(
        "hook",
        receiver.url("/hook"),
        "ignore:\n  mediatypes: [application/octet-stream]",
    )]);
    // No Redis: leases and the queue live in the shared storage.
    let mut nodes: Vec<Registry> = (1..=3)
        .map(|i| {
            Registry::builder(Driver::Filesystem)
                .storage_dir(storage.path())
                .node(&format!("node{i}"))
                .section(&section)
                .start()
        })
        .collect();
    let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
    let haproxy = Haproxy::start(&repo_path("haproxy/haproxy.cfg"), &ports);
    let lb = haproxy.endpoint();
    let (config, layer, _) = fixed_image();
    push(&lb, "cluster/app", &config);
    push(&lb, "cluster/app", &layer);
    // The receiver is away, so the event is still queued when its node dies.
    receiver.stop();
    let m = numbered_manifest(&config, &layer, 0);
    let resp = put_manifest(&lb, "cluster/app", "killed", &m);
    resp.assert_status(201);
    let node = resp.node().to_string();
    let victim = nodes
        .iter_mut()
        .find(|n| n.name() == node)
        .expect("answering node");
    victim.kill();
    receiver.restart();
    let events = receiver.wait_events("/hook", 1, DELIVERY_WAIT);
    assert_eq!(text(&events[0], "target.tag"), "killed");
    assert_eq!(text(&events[0], "target.digest"), m.digest);
    // Steady state: every later event exactly once, even with deliveries slow enough that other
    // nodes look at the queue while one is in flight.
    receiver.set_mode(Mode::Slow(Duration::from_millis(150)));
    const N: usize = 15;
    for i in 1..=N {
        put_manifest(
            &lb,
            "cluster/app",
            &format!("t{i}"),
            &numbered_manifest(&config, &layer, i),
        )
        .assert_status(201);
    }
    let events = receiver.wait_events("/hook", 1 + N, DELIVERY_WAIT);
    std::thread::sleep(Duration::from_secs(2));
    let events = receiver.accepted_events("/hook").len().max(events.len());
    let all = receiver.accepted_events("/hook");
    assert!(all.len() >= events);
    let mut per_id: HashMap<String, usize> = HashMap::new();
    let mut per_tag: BTreeMap<String, usize> = BTreeMap::new();
    for e in &all {
        *per_id.entry(text(e, "id")).or_default() += 1;
        *per_tag.entry(text(e, "target.tag")).or_default() += 1;
    }
    for i in 1..=N {
        assert_eq!(per_tag.get(&format!("t{i}")), Some(&1), "{per_tag:?}");
    }
    let later: Vec<&Value> = all
        .iter()
        .filter(|e| text(e, "target.tag") != "killed")
        .collect();
    for e in later {
        assert_eq!(per_id[&text(e, "id")], 1);
    }
    let tags: Vec<String> = all
        .iter()
        .map(|e| text(e, "target.tag"))
        .filter(|t| t != "killed")
        .collect();
    let expected: Vec<String> = (1..=N).map(|i| format!("t{i}")).collect();
    assert_eq!(tags, expected, "delivered in recorded order");
    drop(haproxy);
}

#[test]
fn a_disabled_endpoint_sends_nothing() {
    let receiver = Receiver::start();
    let reg = wharf(&notifications(&[
        ("on", receiver.url("/on"), ""),
        ("off", receiver.url("/off"), "disabled: true"),
    ]));
    let (config, layer, manifest) = fixed_image();
    push(&reg, "disabled/app", &config);
    push(&reg, "disabled/app", &layer);
    push_manifest(&reg, "disabled/app", "v1", &manifest);
    // The enabled endpoint's events arrive in order, so once the last is in nothing is pending.
    let on = receiver.wait_events("/on", 3, DELIVERY_WAIT);
    assert_eq!(text(&on[2], "target.tag"), "v1");
    assert!(receiver.deliveries().iter().all(|d| d.path == "/on"));
    let (_, vars) = reg.debug_get("/debug/vars");
    let vars: Value = serde_json::from_str(&vars).unwrap();
    assert!(vars["registry"]["notifications"]["endpoints"]["off"].is_null());
}

#[test]
fn a_failed_record_is_counted_and_the_request_still_answered() {
    let receiver = Receiver::start();
    let reg = wharf(&notifications(&[("hook", receiver.url("/hook"), "")]));
    // A file where the queue's folder should be: every record write fails.
    std::fs::create_dir_all(reg.root().join("wharf")).unwrap();
    std::fs::write(reg.root().join("wharf/notifications"), b"not a folder").unwrap();
    let (config, layer, manifest) = fixed_image();
    push(&reg, "unrecorded/app", &config);
    push(&reg, "unrecorded/app", &layer);
    push_manifest(&reg, "unrecorded/app", "v1", &manifest);
    get_manifest(&reg, "unrecorded/app", "v1", OCI_MANIFEST).assert_status(200);
    let scrape = reg.scrape_until(|s| {
        s.sum(
            "wharf_notifications_record_failures_total",
            &[("endpoint", "hook")],
        ) >= 4.0
    });
    assert_eq!(
        scrape.sum(
            "wharf_notifications_record_failures_total",
            &[("endpoint", "hook")]
        ),
        4.0
    );
    assert!(reg.log().contains("could not be recorded"));
}
