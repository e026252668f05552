//! The debug server's health endpoints: `/debug/health` as distribution
//! answers it, the main port's 503 `UNAVAILABLE` while a check fails, and
//! the Kubernetes probes `/readyz` and `/livez`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
use std::thread;

use support::*;

/// Polls the main port's `GET /v2/` until it answers `status` (bounded).
fn wait_v2(reg: &Registry, status: u16) -> Resp {
    retry_until(|| {
        let resp = send(reg.get("/v2/"));
        if resp.status == status {
            Ok(resp)
        } else {
            Err(resp)
        }
    })
}

fn file_check_takes_the_node_out_and_back(driver: Driver) {
    let dir = tempfile::tempdir().unwrap();
    let down = dir.path().join("down");
    let reg = &Registry::builder(driver)
        .section(&format!(
            "health:\n  file:\n    - file: {}\n      interval: 200ms\n",
            down.display()
        ))
        .debug_server(true)
        .start();
    assert_eq!(reg.debug_get("/debug/health"), (200, "{}".to_string()));
    assert_eq!(reg.debug_get("/readyz").0, 200);
    assert_eq!(reg.debug_get("/livez").0, 200);

    std::fs::write(&down, b"maintenance").unwrap();
    let (status, body) = reg.wait_debug("/debug/health", 503);
    assert_eq!(status, 503, "{body}");
    let failures: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        failures,
        serde_json::json!({ down.display().to_string(): "file exists" })
    );
    // The main port refuses everything, as distribution does.
    let resp = wait_v2(reg, 503);
    assert_error(&resp, 503, "UNAVAILABLE");
    let root = send(reg.get("/"));
    assert_eq!(root.status, 503);
    let blob = send(reg.get(
        "/v2/a/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ));
    assert_error(&blob, 503, "UNAVAILABLE");
    // Readiness follows; liveness does not (the process is fine).
    let (status, body) = reg.debug_get("/readyz");
    assert_eq!(status, 503);
    assert!(body.contains("file exists"), "{body}");
    assert_eq!(reg.debug_get("/livez").0, 200);
    let scrape = reg.scrape();
    assert_eq!(
        scrape.sum(
            "wharf_health_check_healthy",
            &[("check", &down.display().to_string())]
        ),
        0.0
    );
    assert_eq!(scrape.sum("wharf_ready", &[]), 0.0);

    std::fs::remove_file(&down).unwrap();
    assert_eq!(
        reg.wait_debug("/debug/health", 200),
        (200, "{}".to_string())
    );
    wait_v2(reg, 200).assert_status(200);
    assert_eq!(reg.debug_get("/readyz"), (200, "ok\n".to_string()));
    let scrape = reg.scrape();
    assert_eq!(scrape.sum("wharf_ready", &[]), 1.0);
    assert_eq!(scrape.sum("wharf_draining", &[]), 0.0);
}

for_each_driver!(file_check_takes_the_node_out_and_back);

/// A tiny HTTP server answering every request with the current `status`;
/// records the method of what it received.
fn downstream(status: Arc<AtomicU16>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}/status", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            log.lock().unwrap().push(head);
            let answer = format!(
                "HTTP/1.1 {} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                status.load(Ordering::SeqCst)
            );
            let _ = stream.write_all(answer.as_bytes());
        }
    });
    (uri, seen)
}

#[test]
fn http_check_follows_the_downstream_status() {
    let status = Arc::new(AtomicU16::new(200));
    let (uri, seen) = downstream(status.clone());
    let reg = &Registry::builder(Driver::Inmemory).section(&format!(
            "health:\n  http:\n    - uri: {uri}\n      interval: 200ms\n      statuscode: 200\n      headers:\n        X-Probe: [wharf]\n"
        ))
.debug_server(false)
.start();
    assert_eq!(reg.debug_get("/readyz").0, 200);
    status.store(500, Ordering::SeqCst);
    let (code, body) = reg.wait_debug("/debug/health", 503);
    assert_eq!(code, 503, "{body}");
    let failures: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        failures,
        serde_json::json!({ uri.as_str(): "downstream service returned unexpected status: 500" })
    );
    assert_error(&wait_v2(reg, 503), 503, "UNAVAILABLE");
    assert_eq!(reg.debug_get("/readyz").0, 503);

    status.store(200, Ordering::SeqCst);
    assert_eq!(reg.wait_debug("/debug/health", 200).0, 200);
    wait_v2(reg, 200).assert_status(200);
    let heads = seen.lock().unwrap().clone();
    assert!(!heads.is_empty());
    for head in &heads {
        assert!(head.starts_with("HEAD /status HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("x-probe: wharf"),
            "{head}"
        );
    }
}

#[test]
fn debug_vars_and_unknown_paths() {
    let reg = Registry::builder(Driver::Inmemory)
        .debug_server(false)
        .start();
    let (status, body) = reg.debug_get("/debug/vars");
    assert_eq!(status, 200);
    let vars: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        vars["cmdline"].as_array().is_some_and(|a| !a.is_empty()),
        "{vars}"
    );
    assert_eq!(vars["registry"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(vars["registry"]["draining"], false);
    assert_eq!(reg.debug_get("/nothing").0, 404);
    // The debug endpoints are not on the main port.
    assert_eq!(send(reg.get("/debug/health")).status, 404);
}

#[test]
fn a_busy_debug_address_stops_start_up() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut reg = Registry::builder(Driver::Inmemory)
        .http_line(&format!("  debug:\n    addr: {addr}"))
        .spawn();
    let status = reg.wait_exit(WAIT_LIMIT).expect("exits");
    assert!(!status.success());
    let stderr = reg.stderr_text();
    assert!(stderr.contains("http.debug.addr"), "{stderr}");
}

#[test]
fn https_http_checks_are_refused_at_start() {
    let mut reg = Registry::builder(Driver::Inmemory)
        .section("health:\n  http:\n    - uri: https://example.invalid/\n")
        .spawn();
    let status = reg.wait_exit(WAIT_LIMIT).expect("exits");
    assert!(!status.success());
    let stderr = reg.stderr_text();
    assert!(stderr.contains("health.http.0.uri"), "{stderr}");
}
