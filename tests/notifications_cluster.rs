//! Webhook delivery where it runs in production: three nodes behind haproxy with Redis
//! configured, over a folder and over S3 (moto), delivering every event once and in order, and
//! still delivering once Redis is stopped (the queue and the delivery lease are in the storage);
//! and an `https://` receiver whose private CA is trusted through `SSL_CERT_FILE`.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use support::auth::{ec_key, Ca};
use support::receiver::Receiver;
use support::*;

/// Longest wait for deliveries that should happen.
const DELIVERY_WAIT: Duration = Duration::from_secs(60);

/// One endpoint that ignores blob events, so each manifest push is one event.
fn notifications(url: &str) -> String {
    format!(
        "notifications:\n  endpoints:\n    - name: hook\n      url: {url}\n      timeout: 500ms\n      threshold: 3\n      backoff: 500ms\n      ignore:\n        mediatypes: [application/octet-stream]\n"
    )
}

fn text(event: &Value, path: &str) -> String {
    let mut v = event;
    for part in path.split('.') {
        v = &v[part];
    }
    v.as_str().unwrap_or_default().to_string()
}

/// A small image; manifests numbered `n` differ by an annotation, so each push is an event.
fn image(ep: &Endpoint, repo: &str) -> (Blob, Blob) {
    let config = image_config("amd64", 11, 1);
    let layer = Blob::random(1024);
    push(ep, repo, &config);
    push(ep, repo, &layer);
    (config, layer)
}

fn numbered(config: &Blob, layer: &Blob, n: usize) -> Manifest {
    image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, config),
        &[(OCI_LAYER, layer)],
        Some(serde_json::json!({"annotations": {"n": n.to_string()}})),
    )
}

/// Checks that the receiver got exactly `tags`, each once, in this order.
fn assert_once_in_order(receiver: &Receiver, tags: &[String]) {
    let events = receiver.wait_events("/hook", tags.len(), DELIVERY_WAIT);
    let got: Vec<String> = events.iter().map(|e| text(e, "target.tag")).collect();
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        *per_id.entry(text(e, "id")).or_default() += 1;
    }
    assert_eq!(got, tags, "every event once, in recorded order");
    assert!(per_id.values().all(|&n| n == 1), "{per_id:?}");
}

fn three_nodes_with_redis_keep_delivering_without_it(s3: bool) {
    let _cluster = cluster::exclusive();
    let receiver = Receiver::start();
    let mut redis = RedisServer::start();
    let storage = tempfile::Builder::new()
        .prefix("wharf-notify-redis-")
        .tempdir()
        .unwrap();
    let target = s3.then(S3Target::fresh);
    let section = notifications(&receiver.url("/hook"));
    let nodes: Vec<Registry> = (1..=3)
        .map(|i| {
            let b = match &target {
                Some(t) => Registry::builder(Driver::S3).s3_target(t),
                None => Registry::builder(Driver::Filesystem).storage_dir(storage.path()),
            };
            b.redis(&redis.addr(), Duration::from_millis(500))
                .node(&format!("node{i}"))
                .section(&section)
                .start()
        })
        .collect();
    let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
    let haproxy = Haproxy::start(&repo_path("haproxy/haproxy.cfg"), &ports);
    let lb = haproxy.endpoint();
    let (config, layer) = image(&lb, "hooks/app");
    const N: usize = 10;
    let mut tags = Vec::new();
    for i in 0..N {
        let tag = format!("up{i}");
        put_manifest(&lb, "hooks/app", &tag, &numbered(&config, &layer, i)).assert_status(201);
        tags.push(tag);
    }
    assert_once_in_order(&receiver, &tags);

    // Redis gone: requests are still answered (the cache is skipped) and events still arrive.
    redis.stop();
    for i in 0..N {
        let tag = format!("down{i}");
        put_manifest(&lb, "hooks/app", &tag, &numbered(&config, &layer, N + i)).assert_status(201);
        tags.push(tag);
    }
    assert_once_in_order(&receiver, &tags);
    let answered: Vec<String> = nodes
        .iter()
        .filter(|n| n.log().contains("delivering notifications from this node"))
        .map(|n| n.name().to_string())
        .collect();
    assert!(!answered.is_empty(), "one node delivered");
    drop(haproxy);
}

#[test]
fn three_nodes_with_redis_keep_delivering_without_it_filesystem() {
    three_nodes_with_redis_keep_delivering_without_it(false);
}

#[test]
fn three_nodes_with_redis_keep_delivering_without_it_s3() {
    three_nodes_with_redis_keep_delivering_without_it(true);
}

#[test]
fn https_receiver_trusted_through_ssl_cert_file() {
    let ca = Ca::new("wharf test hooks CA");
    let leaf = ca.sign(ec_key(), &["127.0.0.1"]);
    let receiver = Receiver::start_tls(leaf.cert_der.clone(), leaf.key.serialize_der());
    let url = receiver.url("/hook");
    assert!(url.starts_with("https://"), "{url}");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.identity.cert_pem).unwrap();

    // Trusted: the CA is the only root the node has.
    let trusting = Registry::builder(Driver::Filesystem)
        .debug_server(true)
        .env("SSL_CERT_FILE", ca_file.to_str().unwrap())
        .section(&notifications(&url))
        .start();
    let ep = trusting.endpoint();
    let (config, layer) = image(&ep, "tls/app");
    put_manifest(&ep, "tls/app", "v1", &numbered(&config, &layer, 1)).assert_status(201);
    assert_once_in_order(&receiver, &["v1".to_string()]);
    drop(trusting);

    // Not trusted: a node whose roots lack the CA never delivers; each attempt is an error.
    let other_ca = Ca::new("unrelated CA");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, &other_ca.identity.cert_pem).unwrap();
    let doubting = Registry::builder(Driver::Filesystem)
        .debug_server(true)
        .env("SSL_CERT_FILE", other_file.to_str().unwrap())
        .section(&notifications(&url))
        .start();
    let ep = doubting.endpoint();
    let (config, layer) = image(&ep, "tls/other");
    put_manifest(&ep, "tls/other", "v2", &numbered(&config, &layer, 2)).assert_status(201);
    doubting.scrape_until(|s| {
        s.sum(
            "registry_notifications_errors_total",
            &[("endpoint", "hook")],
        ) >= 2.0
    });
    assert_eq!(
        receiver.accepted_events("/hook").len(),
        1,
        "nothing accepted from the untrusting node"
    );
    let log = doubting.log();
    assert!(
        log.contains("certificate") || log.contains("UnknownIssuer"),
        "the failure names the certificate:\n{}",
        tail(&log, 20)
    );
}
