//! Prometheus metrics on the debug server: a push and a pull move distribution's
//! counters and histograms by the right amounts, with distribution's labels,
//! plus Wharf's bytes, upload and token counters.

mod support;

use support::metrics::Scrape;
use support::*;

const HTTP_REQUESTS: &str = "registry_http_requests_total";

fn requests(s: &Scrape, code: &str, method: &str, handler: &str) -> f64 {
    s.sum(
        HTTP_REQUESTS,
        &[("code", code), ("method", method), ("handler", handler)],
    )
}

/// Everything that changed between two scrapes, for failure messages.
fn changes(before: &Scrape, after: &Scrape) -> String {
    let mut out = String::new();
    for ((name, labels), value) in &after.samples {
        let old = before.sum(
            name,
            &labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        );
        if (value - old).abs() > f64::EPSILON && !name.starts_with("process_") {
            out.push_str(&format!("{name}{labels:?}: {old} -> {value}\n"));
        }
    }
    out
}

fn push_and_pull(driver: Driver) {
    let reg = &Registry::builder(driver).debug_server(true).start();
    let repo = "ops/metrics";
    let layer = Blob::random(300_000);
    let config = image_config("amd64", unique_seed(), 1);
    let manifest = image_manifest(
        DOCKER_MANIFEST,
        (DOCKER_CONFIG, &config),
        &[(DOCKER_LAYER, &layer)],
        None,
    );
    let before = reg.scrape();

    // Push: the layer monolithic (POST + PUT), the config chunked (POST, 2 PATCH, PUT), the manifest.
    push_blob(reg, repo, &layer.data);
    let half = config.data.len() / 2 + 1;
    push_blob_chunked(reg, repo, &config.data, half);
    push_manifest(reg, repo, "v1", &manifest);
    // Pull: the manifest by tag, then the layer.
    get_manifest(reg, repo, "v1", DOCKER_MANIFEST).assert_status(200);
    let pulled = send(reg.get(&format!("/v2/{repo}/blobs/{}", layer.digest)));
    pulled.assert_status(200);
    assert_eq!(pulled.body.len(), layer.data.len());

    let pushed_bytes = (layer.data.len() + config.data.len()) as f64;
    let pulled_bytes = layer.data.len() as f64;
    let delta = |s: &Scrape, name: &str, labels: &[(&str, &str)]| {
        s.sum(name, labels) - before.sum(name, labels)
    };
    // Response sizes and in-flight gauges settle when the body has been sent: wait for that.
    let after = reg.scrape_until(|s| {
        delta(
            s,
            "registry_http_response_size_bytes_count",
            &[("handler", "blob")],
        ) >= 1.0
            && s.sum("registry_http_in_flight_requests", &[]) == 0.0
    });
    let why = changes(&before, &after);

    // registry_http_requests_total{code,method,handler}
    for (code, method, handler, n) in [
        ("202", "post", "blob_upload", 2.0),
        ("201", "put", "blob_upload_chunk", 2.0),
        ("202", "patch", "blob_upload_chunk", 2.0),
        ("201", "put", "manifest", 1.0),
        ("200", "get", "manifest", 1.0),
        ("200", "get", "blob", 1.0),
    ] {
        assert_eq!(
            requests(&after, code, method, handler) - requests(&before, code, method, handler),
            n,
            "{code} {method} {handler}\n{why}"
        );
    }
    assert_eq!(
        delta(&after, HTTP_REQUESTS, &[]),
        9.0,
        "exactly the 9 requests made\n{why}"
    );

    // registry_http_request_duration_seconds{method,handler}: one observation per request.
    for (method, handler, n) in [
        ("post", "blob_upload", 2.0),
        ("patch", "blob_upload_chunk", 2.0),
        ("put", "blob_upload_chunk", 2.0),
        ("put", "manifest", 1.0),
        ("get", "manifest", 1.0),
        ("get", "blob", 1.0),
    ] {
        let labels = [("method", method), ("handler", handler)];
        assert_eq!(
            delta(
                &after,
                "registry_http_request_duration_seconds_count",
                &labels
            ),
            n,
            "{method} {handler}\n{why}"
        );
        let inf = [("method", method), ("handler", handler), ("le", "+Inf")];
        assert_eq!(
            delta(
                &after,
                "registry_http_request_duration_seconds_bucket",
                &inf
            ),
            n
        );
    }

    // Request sizes: the upload bodies; response sizes: the blob and the manifest.
    assert_eq!(
        delta(
            &after,
            "registry_http_request_size_bytes_sum",
            &[("handler", "blob_upload_chunk")]
        ),
        pushed_bytes,
        "{why}"
    );
    assert_eq!(
        delta(
            &after,
            "registry_http_request_size_bytes_count",
            &[("handler", "blob_upload_chunk")]
        ),
        4.0
    );
    assert_eq!(
        delta(
            &after,
            "registry_http_request_size_bytes_sum",
            &[("handler", "manifest")]
        ),
        (manifest.body.len()) as f64
    );
    assert_eq!(
        delta(
            &after,
            "registry_http_response_size_bytes_sum",
            &[("handler", "blob")]
        ),
        pulled_bytes,
        "{why}"
    );
    assert_eq!(
        delta(
            &after,
            "registry_http_response_size_bytes_sum",
            &[("handler", "manifest")]
        ),
        // The PUT answers with an empty body, the GET with the manifest.
        manifest.body.len() as f64,
        "{why}"
    );

    // Wharf's own counters.
    assert_eq!(
        delta(&after, "wharf_blob_bytes_pushed_total", &[]),
        pushed_bytes,
        "{why}"
    );
    assert_eq!(
        delta(&after, "wharf_blob_bytes_pulled_total", &[]),
        pulled_bytes,
        "{why}"
    );
    assert_eq!(
        delta(&after, "wharf_uploads_total", &[("event", "started")]),
        2.0
    );
    assert_eq!(
        delta(&after, "wharf_uploads_total", &[("event", "completed")]),
        2.0
    );
    assert_eq!(after.sum("wharf_uploads_in_progress", &[]), 0.0);

    // Storage calls, by distribution's action names, under this driver's name.
    let driver_name = match driver {
        Driver::Filesystem => "filesystem",
        Driver::Inmemory => "inmemory",
        Driver::S3 => "s3aws",
        Driver::Azure => "azure",
        Driver::Gcs => "gcs",
        Driver::Swift => "swift",
    };
    for action in [
        "GetContent",
        "PutContent",
        "Stat",
        "Writer",
        "Commit",
        "Reader",
    ] {
        let labels = [("driver", driver_name), ("action", action)];
        assert!(
            delta(&after, "registry_storage_action_seconds_count", &labels) >= 1.0,
            "no {action} timed\n{why}"
        );
    }

    // On Azure every Blob service call is timed by operation.
    if driver == Driver::Azure {
        for operation in ["PutBlob", "GetBlobProperties", "PutBlockList", "CopyBlob"] {
            let labels = [("system", "azure"), ("operation", operation)];
            assert!(
                delta(&after, "wharf_external_call_seconds_count", &labels) >= 1.0,
                "no Azure {operation} timed\n{why}"
            );
        }
    }

    // On S3 every object-storage call is timed by operation.
    if driver == Driver::S3 {
        for operation in ["PutObject", "HeadObject"] {
            let labels = [("system", "s3"), ("operation", operation)];
            assert!(
                delta(&after, "wharf_external_call_seconds_count", &labels) >= 1.0,
                "no S3 {operation} timed\n{why}"
            );
        }
    }

    // Exactly distribution's label sets.
    let names = |v: &[&str]| vec![v.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
    assert_eq!(
        after.label_names(HTTP_REQUESTS),
        names(&["code", "handler", "method"])
    );
    assert_eq!(
        after.label_names("registry_http_request_duration_seconds_count"),
        names(&["handler", "method"])
    );
    assert_eq!(
        after.label_names("registry_http_in_flight_requests"),
        names(&["handler"])
    );
    for name in [
        "registry_http_request_size_bytes_count",
        "registry_http_response_size_bytes_count",
    ] {
        assert_eq!(after.label_names(name), names(&["handler"]), "{name}");
    }
    assert_eq!(
        after.label_names("registry_storage_action_seconds_count"),
        names(&["action", "driver"])
    );
    for (name, kind) in [
        (HTTP_REQUESTS, "counter"),
        ("registry_http_request_duration_seconds", "histogram"),
        ("registry_http_request_size_bytes", "histogram"),
        ("registry_http_response_size_bytes", "histogram"),
        ("registry_http_in_flight_requests", "gauge"),
        ("registry_storage_action_seconds", "histogram"),
    ] {
        assert_eq!(
            after.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }

    // Process metrics and build info.
    assert!(after.sum("process_resident_memory_bytes", &[]) > 0.0);
    assert!(after.sum("process_open_fds", &[]) > 0.0);
    assert!(after.types.contains_key("process_cpu_seconds_total"));
    assert_eq!(
        after.sum(
            "wharf_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
}

fn tampered_upload_tokens_are_counted(driver: Driver) {
    let reg = &Registry::builder(driver).debug_server(true).start();
    let before = reg.scrape();
    let location = start_upload(reg, "ops/tokens");
    let tampered = location.replacen("_state=", "_state=x", 1);
    assert_ne!(tampered, location, "upload URL has a _state: {location}");
    let resp = send(
        reg.patch(&tampered)
            .header("content-type", "application/octet-stream")
            .body(vec![1u8; 10]),
    );
    assert_error(&resp, 404, "BLOB_UPLOAD_INVALID");
    // Requests are counted once their response has been sent.
    let after = reg.scrape_until(|s| s.sum("registry_http_in_flight_requests", &[]) == 0.0);
    assert_eq!(
        after.sum("wharf_upload_token_rejected_total", &[])
            - before.sum("wharf_upload_token_rejected_total", &[]),
        1.0
    );
    assert_eq!(
        requests(&after, "404", "patch", "blob_upload_chunk")
            - requests(&before, "404", "patch", "blob_upload_chunk"),
        1.0
    );
}

for_each_driver!(push_and_pull, tampered_upload_tokens_are_counted);

#[test]
fn metrics_only_when_enabled() {
    let reg = Registry::builder(Driver::Inmemory)
        .debug_server(false)
        .start();
    assert_eq!(reg.debug_get("/metrics").0, 404);
    assert_eq!(reg.debug_get("/debug/health"), (200, "{}".to_string()));

    let port = free_port();
    let reg = Registry::builder(Driver::Inmemory)
        .http_line(&format!(
            "  debug:\n    addr: 127.0.0.1:{port}\n    prometheus:\n      enabled: true\n      path: /prom"
        ))
        .start();
    let text = http_client()
        .get(format!("http://127.0.0.1:{port}/prom"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("# TYPE wharf_build_info gauge"), "{text}");
    drop(reg);
}
#[test]
fn parses_the_text_format() {
    let s = Scrape::parse(
        "# TYPE a counter\na{x=\"1\",y=\"q\\\"z\"} 3\na{x=\"2\"} 4\nb 1.5\nc_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s.sum("a", &[]), 7.0);
    assert_eq!(s.sum("a", &[("y", "q\"z")]), 3.0);
    assert_eq!(s.sum("b", &[]), 1.5);
    assert_eq!(s.sum("c_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(s.types["a"], "counter");
}
