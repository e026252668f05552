//! Manifests of the five kinds a registry:2 drop-in stores: push, pull, conditional GET,
//! content negotiation, deletes, and validation.

mod support;

use serde_json::json;
use support::*;

const REPO: &str = "shop/web";

fn manifest_path(reference: &str) -> String {
    format!("/v2/{REPO}/manifests/{reference}")
}

/// GET and HEAD give back exactly what was pushed, with the right headers.
fn assert_served(reg: &Registry, reference: &str, manifest: &Manifest, accept: &str) {
    let resp = send(reg.get(&manifest_path(reference)).header("accept", accept));
    assert_eq!(resp.status, 200, "GET {reference}: {}", resp.describe());
    assert!(
        resp.body == manifest.body,
        "GET {reference} returns the bytes pushed, got {}",
        resp.text()
    );
    assert_eq!(
        resp.header("content-type"),
        Some(manifest.media_type.as_str()),
        "GET {reference}"
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(manifest.digest.as_str()),
        "GET {reference}"
    );
    assert_eq!(
        resp.header("etag"),
        Some(format!("\"{}\"", manifest.digest).as_str()),
        "GET {reference}"
    );

    let resp = send(reg.head(&manifest_path(reference)).header("accept", accept));
    assert_eq!(resp.status, 200, "HEAD {reference}: {}", resp.describe());
    assert!(resp.body.is_empty());
    assert_eq!(
        resp.header("content-type"),
        Some(manifest.media_type.as_str())
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(manifest.digest.as_str())
    );
    assert_eq!(
        resp.header("content-length"),
        Some(manifest.body.len().to_string().as_str())
    );
}

fn assert_manifest_gone(reg: &Registry, reference: &str) {
    let resp = get_manifest(reg, REPO, reference, ACCEPT_ALL_MANIFESTS);
    assert_error_in(&resp, &[404], &["MANIFEST_UNKNOWN"]);
    let resp = send(
        reg.head(&manifest_path(reference))
            .header("accept", ACCEPT_ALL_MANIFESTS),
    );
    assert_eq!(resp.status, 404, "HEAD {reference}: {}", resp.describe());
}

fn put_and_get(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);

    // By tag.
    let manifest = prepare(&reg, REPO, kind);
    let resp = put_manifest(&reg, REPO, "v1", &manifest);
    resp.assert_status(201);
    assert_eq!(
        location_path(resp.must_header("location")),
        manifest_path(&manifest.digest)
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(manifest.digest.as_str())
    );

    // By digest, a second manifest of the same kind.
    let by_digest = prepare(&reg, REPO, kind);
    let resp = put_manifest(&reg, REPO, &by_digest.digest, &by_digest);
    resp.assert_status(201);
    assert_eq!(
        location_path(resp.must_header("location")),
        manifest_path(&by_digest.digest)
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(by_digest.digest.as_str())
    );

    for accept in [manifest.media_type.as_str(), ACCEPT_ALL_MANIFESTS] {
        assert_served(&reg, "v1", &manifest, accept);
        assert_served(&reg, &manifest.digest, &manifest, accept);
        assert_served(&reg, &by_digest.digest, &by_digest, accept);
    }
    // Pushing the same bytes again by digest is idempotent.
    push_manifest(&reg, REPO, &manifest.digest, &manifest);
    assert_served(&reg, "v1", &manifest, &manifest.media_type);
    assert_eq!(list_tags(&reg, REPO), vec!["v1".to_string()]);
}

fn conditional_get(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = push_image(&reg, REPO, "v1", kind);
    let etag = format!("\"{}\"", manifest.digest);
    for reference in ["v1", manifest.digest.as_str()] {
        let resp = send(
            reg.get(&manifest_path(reference))
                .header("accept", &manifest.media_type)
                .header("if-none-match", &etag),
        );
        assert_eq!(
            resp.status,
            304,
            "If-None-Match on {reference}: {}",
            resp.describe()
        );
        assert!(resp.body.is_empty());
        // A different ETag still gets the manifest.
        let resp = send(
            reg.get(&manifest_path(reference))
                .header("accept", &manifest.media_type)
                .header("if-none-match", format!("\"{}\"", sha256_digest(b"other"))),
        );
        assert_eq!(resp.status, 200, "{}", resp.describe());
    }
}

/// OCI manifests and indexes are only served to clients that accept their type (section 11),
/// or any type.
fn oci_content_negotiation(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = push_image(&reg, REPO, "v1", kind);
    let others: Vec<&str> = [DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX]
        .into_iter()
        .filter(|t| *t != manifest.media_type)
        .collect();
    for reference in ["v1", manifest.digest.as_str()] {
        let resp = get_manifest(&reg, REPO, reference, &others.join(", "));
        assert_error(&resp, 404, "MANIFEST_UNKNOWN");

        // No Accept header at all: distribution answers 404 MANIFEST_UNKNOWN; HTTP reads a missing
        // Accept as "anything" (RFC 9110 12.5.1). Either is accepted, but nothing else.
        let raw = reg
            .raw(
                &format!(
                    "GET {} HTTP/1.1\r\nHost: {}",
                    manifest_path(reference),
                    reg.host()
                ),
                b"",
            )
            .expect("raw GET");
        assert_api_version(&raw);
        if raw.status == 200 {
            assert!(raw.body == manifest.body, "{}", raw.describe());
            assert_eq!(
                raw.header("content-type"),
                Some(manifest.media_type.as_str())
            );
        } else {
            assert_error(&raw, 404, "MANIFEST_UNKNOWN");
        }

        assert_served(&reg, reference, &manifest, "*/*");
        assert_served(
            &reg,
            reference,
            &manifest,
            &format!("{};q=0.9, application/json", manifest.media_type),
        );
    }
}

fn delete_by_digest(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = push_image(&reg, REPO, "a", kind);
    push_manifest(&reg, REPO, "b", &manifest);
    let other = push_image(&reg, REPO, "other", kind);

    let resp = send(reg.delete(&manifest_path(&manifest.digest)));
    resp.assert_status(202);

    assert_manifest_gone(&reg, &manifest.digest);
    assert_manifest_gone(&reg, "a");
    assert_manifest_gone(&reg, "b");
    assert_eq!(list_tags(&reg, REPO), vec!["other".to_string()]);
    assert_served(&reg, "other", &other, &other.media_type);
    let resp = send(reg.delete(&manifest_path(&manifest.digest)));
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
}

fn delete_by_tag(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = push_image(&reg, REPO, "a", kind);
    push_manifest(&reg, REPO, "b", &manifest);

    let resp = send(reg.delete(&manifest_path("a")));
    resp.assert_status(202);

    assert_manifest_gone(&reg, "a");
    assert_served(&reg, &manifest.digest, &manifest, &manifest.media_type);
    assert_served(&reg, "b", &manifest, &manifest.media_type);
    assert_eq!(list_tags(&reg, REPO), vec!["b".to_string()]);
    let resp = send(reg.delete(&manifest_path("a")));
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
}

fn delete_disabled(driver: Driver, kind: Kind) {
    let reg = Registry::builder(driver).delete_enabled(false).start();
    let manifest = push_image(&reg, REPO, "a", kind);
    for reference in [manifest.digest.as_str(), "a"] {
        let resp = send(reg.delete(&manifest_path(reference)));
        assert_error(&resp, 405, "UNSUPPORTED");
    }
    assert_served(&reg, "a", &manifest, &manifest.media_type);
}

fn digest_mismatch(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, REPO, kind);
    let wrong = sha256_digest(b"not this manifest");
    let resp = put_manifest(&reg, REPO, &wrong, &manifest);
    assert_error(&resp, 400, "DIGEST_INVALID");
    assert_manifest_gone(&reg, &wrong);
    assert_manifest_gone(&reg, &manifest.digest);
}

fn invalid_json(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let bodies: [&[u8]; 6] = [
        b"{\"schemaVersion\": 2, \"mediaType\": ",
        b"not json at all",
        b"[]",
        b"\"a string\"",
        b"{\"schemaVersion\": \"two\", \"config\": 7, \"layers\": {}, \"manifests\": 3}",
        b"\xff\xfe\x00garbage",
    ];
    for body in bodies {
        let resp = send(
            reg.put(&manifest_path("broken"))
                .header("content-type", kind.media_type())
                .body(body.to_vec()),
        );
        assert_error(&resp, 400, "MANIFEST_INVALID");
    }
    assert_manifest_gone(&reg, "broken");
}

fn missing_references(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let never = Blob::random(100);
    let manifest = match kind {
        Kind::DockerManifest | Kind::OciManifest => {
            let (config_type, layer_type) = if kind == Kind::DockerManifest {
                (DOCKER_CONFIG, DOCKER_LAYER)
            } else {
                (OCI_CONFIG, OCI_LAYER)
            };
            let config = image_config("amd64", unique_seed(), 1);
            let layer = Blob::random(100);
            // Missing layer.
            push(&reg, REPO, &config);
            let m = image_manifest(
                kind.media_type(),
                (config_type, &config),
                &[(layer_type, &layer), (layer_type, &never)],
                None,
            );
            push(&reg, REPO, &layer);
            let resp = put_manifest(&reg, REPO, "v1", &m);
            assert_error(&resp, 400, "MANIFEST_BLOB_UNKNOWN");
            // Missing config.
            let missing_config = image_config("arm64", unique_seed(), 1);
            image_manifest(
                kind.media_type(),
                (config_type, &missing_config),
                &[(layer_type, &layer)],
                None,
            )
        }
        Kind::DockerList | Kind::OciIndex => {
            let child_type = if kind == Kind::DockerList {
                DOCKER_MANIFEST
            } else {
                OCI_MANIFEST
            };
            let pushed = prepare_image(&reg, REPO, child_type, "amd64");
            push_manifest(&reg, REPO, &pushed.digest, &pushed);
            let missing = prepare_image(&reg, REPO, child_type, "arm64");
            index_manifest(
                kind.media_type(),
                &[
                    (&pushed, platform("linux", "amd64")),
                    (&missing, platform("linux", "arm64")),
                ],
            )
        }
        Kind::OciArtifact => {
            push_blob(&reg, REPO, b"{}");
            artifact_manifest("application/vnd.example.test", &never, None, None)
        }
    };
    for reference in ["v1", manifest.digest.as_str()] {
        let resp = put_manifest(&reg, REPO, reference, &manifest);
        assert_error(&resp, 400, "MANIFEST_BLOB_UNKNOWN");
    }
    assert_manifest_gone(&reg, "v1");
    assert_manifest_gone(&reg, &manifest.digest);
}

fn oversized(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, REPO, kind);
    let mut value = manifest.json();
    // Valid JSON just over 4 MiB.
    value["annotations"] = json!({"org.example.padding": "x".repeat(4 * 1024 * 1024 + 16)});
    let big = Manifest::from_value(kind.media_type(), &value);
    assert!(big.body.len() > 4 * 1024 * 1024);
    let result = reg.raw(
        &format!(
            "PUT {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}",
            manifest_path("big"),
            reg.host(),
            kind.media_type(),
            big.body.len()
        ),
        &big.body,
    );
    assert_refused(result, &[400, 413], &["MANIFEST_INVALID", "SIZE_INVALID"]);
    assert_manifest_gone(&reg, "big");
    assert_manifest_gone(&reg, &big.digest);
    // The registry still takes the manifest at its normal size.
    push_manifest(&reg, REPO, "small", &manifest);
}

fn wrong_content_type(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, REPO, kind);
    for content_type in [
        Some("application/json"),
        Some("application/octet-stream"),
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws"),
        Some("text/plain"),
        None,
    ] {
        let mut request = reg.put(&manifest_path("typed")).body(manifest.body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let resp = send(request);
        assert_error(&resp, 400, "MANIFEST_INVALID");
    }
    assert_manifest_gone(&reg, "typed");
}

fn invalid_tag(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, REPO, kind);
    let long = "a".repeat(129);
    for tag in [
        "-leading-dash",
        ".leading-dot",
        long.as_str(),
        "semi;colon",
        "tag+plus",
    ] {
        let resp = put_manifest(&reg, REPO, tag, &manifest);
        assert_error(&resp, 400, "TAG_INVALID");
    }
    // The longest valid tag works.
    let longest = "a".repeat(128);
    push_manifest(&reg, REPO, &longest, &manifest);
    assert_eq!(list_tags(&reg, REPO), vec![longest]);
}

/// A reference that is neither a tag nor a digest names nothing: GET and HEAD answer 404
/// `MANIFEST_UNKNOWN` (OCI conformance), a PUT keeps 400 `TAG_INVALID`, a DELETE 400.
fn invalid_reference_reads(driver: Driver) {
    let reg = Registry::start(driver);
    let manifest = push_image(&reg, REPO, "v1", Kind::OciManifest);
    let long = "a".repeat(129);
    for reference in [
        ".INVALID_MANIFEST_NAME",
        "-dash",
        long.as_str(),
        "semi;colon",
        "sha256:zz",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
    ] {
        let resp = get_manifest(&reg, REPO, reference, ACCEPT_ALL_MANIFESTS);
        assert_error(&resp, 404, "MANIFEST_UNKNOWN");
        let resp = send(
            reg.head(&manifest_path(reference))
                .header("accept", ACCEPT_ALL_MANIFESTS),
        );
        assert_eq!(resp.status, 404, "HEAD {reference}: {}", resp.describe());
        let resp = send(reg.delete(&manifest_path(reference)));
        assert_error_in(&resp, &[400], &["TAG_INVALID", "DIGEST_INVALID"]);
    }
    let resp = put_manifest(&reg, REPO, ".INVALID_MANIFEST_NAME", &manifest);
    assert_error(&resp, 400, "TAG_INVALID");
    assert_eq!(list_tags(&reg, REPO), ["v1"]);
}

/// The tags an `OCI-Tag` answer names (one header per tag, or comma-separated).
fn oci_tags(resp: &Resp) -> Vec<String> {
    resp.header_all("oci-tag")
        .iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .collect()
}

/// `PUT /v2/<name>/manifests/<digest>?tag=a&tag=b` (OCI multi-tag push): every tag points at
/// the manifest, one `OCI-Tag` header per tag, 64 tags in one request.
fn multi_tag_push(driver: Driver) {
    let reg = Registry::start(driver);
    let manifest = prepare(&reg, REPO, Kind::OciManifest);
    let tags = ["1.2.3", "1.2", "1", "latest"];
    let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
    let path = format!("{}?{}", manifest_path(&manifest.digest), query.join("&"));
    let resp = send(
        reg.put(&path)
            .header("content-type", &manifest.media_type)
            .body(manifest.body.clone()),
    );
    resp.assert_status(201);
    assert_eq!(resp.header_all("oci-tag"), tags, "{}", resp.describe());
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(manifest.digest.as_str())
    );
    let mut sorted: Vec<&str> = tags.to_vec();
    sorted.sort();
    assert_eq!(list_tags(&reg, REPO), sorted);
    for tag in tags {
        assert_served(&reg, tag, &manifest, OCI_MANIFEST);
    }

    // 64 tags at once.
    let many: Vec<String> = (0..64).map(|i| format!("t{i:02}")).collect();
    let query: Vec<String> = many.iter().map(|t| format!("tag={t}")).collect();
    let resp = send(
        reg.put(&format!(
            "{}?{}",
            manifest_path(&manifest.digest),
            query.join("&")
        ))
        .header("content-type", &manifest.media_type)
        .body(manifest.body.clone()),
    );
    resp.assert_status(201);
    assert_eq!(resp.header_all("oci-tag").len(), 64);
    assert_eq!(oci_tags(&resp), many);
    assert_eq!(list_tags(&reg, REPO).len(), 4 + 64);
    for tag in ["t00", "t63"] {
        assert_served(&reg, tag, &manifest, OCI_MANIFEST);
    }

    // By tag: the reference's tag and the extra ones, each once.
    let resp = send(
        reg.put(&format!("{}?tag=x&tag=x&tag=base", manifest_path("base")))
            .header("content-type", &manifest.media_type)
            .body(manifest.body.clone()),
    );
    resp.assert_status(201);
    assert_eq!(oci_tags(&resp), ["base", "x"]);
    assert_served(&reg, "x", &manifest, OCI_MANIFEST);
}

const NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
const FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// A manifest whose second layer is `layer_type` with `urls` (its blob never pushed).
fn with_external_layer(
    reg: &Registry,
    media_type: &str,
    layer_type: &str,
    urls: &[&str],
) -> Manifest {
    let config_type = if media_type == DOCKER_MANIFEST {
        DOCKER_CONFIG
    } else {
        OCI_CONFIG
    };
    let config = image_config("amd64", unique_seed(), 2);
    let local = Blob::random(1000);
    push(reg, REPO, &config);
    push(reg, REPO, &local);
    let external = Blob::random(500);
    let mut layer = descriptor(layer_type, &external.digest, external.size());
    if !urls.is_empty() {
        layer["urls"] = json!(urls);
    }
    let local_type = if media_type == DOCKER_MANIFEST {
        DOCKER_LAYER
    } else {
        OCI_LAYER
    };
    let value = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config_type, &config.digest, config.size()),
        "layers": [descriptor(local_type, &local.digest, local.size()), layer],
    });
    Manifest::from_value(media_type, &value)
}

/// Non-distributable (OCI) and foreign (Docker) layers with `urls` follow registry:2: refused
/// unless `validation.manifests.urls.allow` admits every URL and `deny` none; the blob itself
/// need not be in the registry.
fn layer_urls(driver: Driver) {
    let good = "https://layers.example.com/base.tar.gz";
    let refused = |reg: &Registry, m: &Manifest, tag: &str| {
        let resp = put_manifest(reg, REPO, tag, m);
        assert_error(&resp, 400, "MANIFEST_INVALID");
        assert_manifest_gone(reg, &m.digest);
    };

    // Nothing configured (the default): no URL is admitted.
    let reg = Registry::start(driver);
    refused(
        &reg,
        &with_external_layer(&reg, OCI_MANIFEST, NONDIST, &[good]),
        "a",
    );
    refused(
        &reg,
        &with_external_layer(&reg, DOCKER_MANIFEST, FOREIGN, &[good]),
        "b",
    );
    // Other layer types ignore `urls`, as registry:2 does: the blob must be here.
    let artifact = with_external_layer(&reg, OCI_MANIFEST, "application/vnd.example+json", &[good]);
    let resp = put_manifest(&reg, REPO, "c", &artifact);
    assert_error(&resp, 400, "MANIFEST_BLOB_UNKNOWN");
    drop(reg);

    let reg = Registry::builder(driver)
        .section(
            "validation:\n  manifests:\n    urls:\n      allow: ['^https://layers\\.example\\.com/']\n      deny: ['^https://layers\\.example\\.com/secret/']\n",
        )
        .start();
    for (media_type, layer_type) in [(OCI_MANIFEST, NONDIST), (DOCKER_MANIFEST, FOREIGN)] {
        let admitted = with_external_layer(&reg, media_type, layer_type, &[good]);
        push_manifest(&reg, REPO, "ok", &admitted);
        assert_served(&reg, "ok", &admitted, media_type);
        for urls in [
            vec!["https://elsewhere.example.org/base.tar.gz"],
            vec![good, "https://layers.example.com/secret/x"],
            vec!["http://layers.example.com/base.tar.gz"],
            vec!["https://layers.example.com/base.tar.gz#frag"],
            vec!["ftp://layers.example.com/base.tar.gz"],
        ] {
            refused(
                &reg,
                &with_external_layer(&reg, media_type, layer_type, &urls),
                "no",
            );
        }
    }
    // A foreign layer without urls, a non-distributable one without urls and without its blob.
    refused(
        &reg,
        &with_external_layer(&reg, DOCKER_MANIFEST, FOREIGN, &[]),
        "no",
    );
    let resp = put_manifest(
        &reg,
        REPO,
        "no",
        &with_external_layer(&reg, OCI_MANIFEST, NONDIST, &[]),
    );
    assert_error(&resp, 400, "MANIFEST_BLOB_UNKNOWN");
    // A distributable OCI layer with admitted urls must still be here.
    let resp = put_manifest(
        &reg,
        REPO,
        "no",
        &with_external_layer(&reg, OCI_MANIFEST, OCI_LAYER, &[good]),
    );
    assert_error(&resp, 400, "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(list_tags(&reg, REPO), ["ok"]);
}

fn unknown_references(driver: Driver, kind: Kind) {
    let reg = Registry::start(driver);
    let manifest = push_image(&reg, REPO, "v1", kind);
    let accept = manifest.media_type.as_str();
    let unknown_digest = sha256_digest(b"unknown manifest");
    for (repo, reference) in [
        (REPO, "v2"),
        (REPO, unknown_digest.as_str()),
        ("no/such/repo", "v1"),
        ("no/such/repo", manifest.digest.as_str()),
    ] {
        let resp = get_manifest(&reg, repo, reference, accept);
        assert_error_in(&resp, &[404], &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"]);
        let resp = send(
            reg.head(&format!("/v2/{repo}/manifests/{reference}"))
                .header("accept", accept),
        );
        assert_eq!(resp.status, 404, "{}", resp.describe());
    }
}

for_kinds_and_drivers!(
    [DockerManifest, DockerList, OciManifest, OciIndex, OciArtifact]
    put_and_get,
    conditional_get,
    delete_by_digest,
    delete_by_tag,
    delete_disabled,
    digest_mismatch,
    invalid_json,
    missing_references,
    oversized,
    wrong_content_type,
    invalid_tag,
    unknown_references,
);

for_kinds_and_drivers!([OciManifest, OciIndex, OciArtifact] oci_content_negotiation);

for_each_driver!(invalid_reference_reads, multi_tag_push, layer_urls);

/// Two nodes over one folder: a manifest one node has served (and keeps in memory) is gone
/// from it as soon as the other deletes it, by digest or by tag, and a tag moved on the other
/// node is served with its new manifest.
#[test]
fn a_node_serving_manifests_from_memory_sees_deletes_and_retags_made_elsewhere() {
    let folder = tempfile::tempdir().unwrap();
    let a = Registry::builder(Driver::Filesystem)
        .storage_dir(folder.path())
        .start();
    let b = Registry::builder(Driver::Filesystem)
        .storage_dir(folder.path())
        .start();
    let first = push_image(&a, REPO, "moving", Kind::OciManifest);
    let kept = push_image(&a, REPO, "kept", Kind::OciManifest);
    for reference in [
        first.digest.as_str(),
        "moving",
        kept.digest.as_str(),
        "kept",
    ] {
        let served = if reference.contains(&first.digest) || reference == "moving" {
            &first
        } else {
            &kept
        };
        // Twice: the second answer comes from memory.
        assert_served(&a, reference, served, &served.media_type);
        assert_served(&a, reference, served, &served.media_type);
    }
    // Moved elsewhere: the tag's current link is read on every request.
    push_manifest(&b, REPO, "moving", &kept);
    assert_served(&a, "moving", &kept, &kept.media_type);
    // Deleted elsewhere by digest: the revision link is gone, whatever memory holds.
    send(b.delete(&manifest_path(&first.digest))).assert_status(202);
    assert_manifest_gone(&a, &first.digest);
    send(b.delete(&manifest_path("kept"))).assert_status(202);
    assert_manifest_gone(&a, "kept");
    assert_served(&a, &kept.digest, &kept, &kept.media_type);
    send(b.delete(&manifest_path(&kept.digest))).assert_status(202);
    assert_manifest_gone(&a, &kept.digest);
    assert_manifest_gone(&a, "moving");
}
