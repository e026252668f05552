//! Hostile and broken requests: each gets a 4xx (never a 5xx), the server keeps serving, what was
//! stored before is unchanged, and nothing lands outside the storage root or under `blobs/`.

mod support;

use std::io;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use support::*;

const REPO: &str = "safe/repo";

struct Fixture {
    reg: Registry,
    blob: Blob,
    image: Manifest,
}

impl Fixture {
    fn new(driver: Driver) -> Self {
        let reg = Registry::start(driver);
        let blob = Blob::random(20_000);
        push(&reg, REPO, &blob);
        let image = push_image(&reg, REPO, "stable", Kind::OciManifest);
        Fixture { reg, blob, image }
    }

    /// Still serving, and the earlier blob and manifest read back unchanged.
    fn assert_intact(&self) {
        let resp = send(self.reg.get("/v2/"));
        resp.assert_status(200);
        let resp = send(
            self.reg
                .get(&format!("/v2/{REPO}/blobs/{}", self.blob.digest)),
        );
        resp.assert_status(200);
        assert!(resp.body == self.blob.data, "earlier blob unchanged");
        let resp = get_manifest(&self.reg, REPO, "stable", OCI_MANIFEST);
        resp.assert_status(200);
        assert!(resp.body == self.image.body, "earlier manifest unchanged");
        assert_eq!(list_tags(&self.reg, REPO), vec!["stable".to_string()]);
    }

    fn blob_files(&self) -> std::collections::BTreeSet<PathBuf> {
        list_files(&self.reg.v2_root().join("blobs"))
    }

    fn raw(&self, head: &str, body: &[u8]) -> io::Result<Resp> {
        self.reg
            .raw(&format!("{head}\r\nHost: {}", self.reg.host()), body)
    }

    fn upload_path(&self) -> String {
        location_path(&start_upload(&self.reg, REPO))
    }
}

fn assert_no_blob(reg: &Registry, digest: &str) {
    let resp = send(reg.get(&format!("/v2/{REPO}/blobs/{digest}")));
    assert_error(&resp, 404, "BLOB_UNKNOWN");
}

fn assert_4xx(resp: &Resp, what: &str) {
    assert!(
        (400..500).contains(&resp.status),
        "{what}: expected a 4xx, got {}",
        resp.describe()
    );
}

/// The `{"errors":[{"code","message"}]}` body, whatever the code.
fn assert_error_json(resp: &Resp, what: &str) {
    let codes = [
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
        "TOOMANYREQUESTS",
        "RANGE_INVALID",
        "UNKNOWN",
    ];
    let statuses: Vec<u16> = (400..500).collect();
    assert!(
        resp.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{what}: error JSON expected, got {}",
        resp.describe()
    );
    assert_error_in(resp, &statuses, &codes);
}

fn malformed_digests(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let bad_digests = [
        "sha256:xyz".to_string(),
        "sha256:abc".to_string(),
        format!("sha256:{}", "a".repeat(63)),
        format!("sha256:{}", "a".repeat(65)),
        format!("sha256:{}", digest_hex(&f.blob.digest).to_uppercase()),
        "sha256:".to_string(),
        format!("sha256:{}", "g".repeat(64)),
        "sha256".to_string(),
    ];
    for bad in &bad_digests {
        let what = format!("digest {bad:?}");
        let resp = send(f.reg.get(&format!("/v2/{REPO}/blobs/{bad}")));
        assert_error(&resp, 400, "DIGEST_INVALID");
        let resp = send(f.reg.head(&format!("/v2/{REPO}/blobs/{bad}")));
        assert_eq!(resp.status, 400, "HEAD {what}: {}", resp.describe());
        let resp = send(f.reg.delete(&format!("/v2/{REPO}/blobs/{bad}")));
        assert_error(&resp, 400, "DIGEST_INVALID");

        let location = start_upload(&f.reg, REPO);
        let resp = send(
            f.reg
                .put(&with_digest(&location, bad))
                .header("content-type", "application/octet-stream")
                .body(b"some bytes".to_vec()),
        );
        assert_error(&resp, 400, "DIGEST_INVALID");

        let resp = send(
            f.reg
                .post(&format!("/v2/{REPO}/blobs/uploads/?digest={bad}"))
                .header("content-type", "application/octet-stream")
                .body(b"some bytes".to_vec()),
        );
        assert_error(&resp, 400, "DIGEST_INVALID");

        // Without a colon the reference is a (valid) tag, not a digest. A reference that is
        // neither names nothing: reads answer 404, writes 400.
        if bad.contains(':') {
            let resp = get_manifest(&f.reg, REPO, bad, ACCEPT_ALL_MANIFESTS);
            assert_error(&resp, 404, "MANIFEST_UNKNOWN");
            let resp = put_manifest(&f.reg, REPO, bad, &f.image);
            assert_error(&resp, 400, "DIGEST_INVALID");
        }
    }
    // An empty `digest` on the completing PUT.
    let location = start_upload(&f.reg, REPO);
    let resp = send(
        f.reg
            .put(&with_digest(&location, ""))
            .header("content-type", "application/octet-stream")
            .body(b"some bytes".to_vec()),
    );
    assert_error(&resp, 400, "DIGEST_INVALID");
    assert_no_blob(&f.reg, &sha256_digest(b"some bytes"));
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

fn unknown_algorithm(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let check = |resp: &Resp| {
        assert_error_in(resp, &[400, 405], &["DIGEST_INVALID", "UNSUPPORTED"]);
        if resp.json()["errors"][0]["code"] == "DIGEST_INVALID" {
            assert_eq!(resp.status, 400);
        }
    };
    for bad in [
        format!("md5:{}", "0".repeat(32)),
        format!("sha1:{}", "0".repeat(40)),
        format!("foo:{}", "0".repeat(64)),
    ] {
        check(&send(f.reg.get(&format!("/v2/{REPO}/blobs/{bad}"))));
        let location = start_upload(&f.reg, REPO);
        check(&send(
            f.reg
                .put(&with_digest(&location, &bad))
                .header("content-type", "application/octet-stream")
                .body(b"some bytes".to_vec()),
        ));
    }
    assert_no_blob(&f.reg, &sha256_digest(b"some bytes"));
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

/// `..`, `.`, `%2e%2e`, `//` and uppercase in repository names.
fn hostile_names(driver: Driver) {
    let f = Fixture::new(driver);
    let marker = format!("escape{}", unique_seed());
    let up = "../".repeat(12);
    let up_encoded = "%2e%2e/".repeat(12);
    let manifest = &f.image;
    let put_manifest_head = |path: &str| {
        format!(
            "PUT {path} HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}",
            manifest.body.len()
        )
    };
    let post_head = |path: &str| format!("POST {path} HTTP/1.1\r\nContent-Length: 0");
    let get_head = |path: &str| format!("GET {path} HTTP/1.1\r\nAccept: {OCI_MANIFEST}");

    let requests: Vec<(String, Vec<u8>)> = vec![
        (
            put_manifest_head(&format!("/v2/{up}{marker}/manifests/latest")),
            manifest.body.clone(),
        ),
        (
            post_head(&format!("/v2/{up}{marker}/blobs/uploads/")),
            Vec::new(),
        ),
        (
            put_manifest_head(&format!("/v2/safe/{up_encoded}{marker}/manifests/latest")),
            manifest.body.clone(),
        ),
        (
            post_head(&format!("/v2/safe/{up_encoded}{marker}/blobs/uploads/")),
            Vec::new(),
        ),
        (
            post_head(&format!(
                "/v2/safe/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/{marker}/blobs/uploads/"
            )),
            Vec::new(),
        ),
        (
            put_manifest_head(&format!(
                "/v2/safe/..%2f..%2f..%2f..%2f..%2f..%2f{marker}/manifests/latest"
            )),
            manifest.body.clone(),
        ),
        (get_head("/v2/../safe/repo/manifests/stable"), Vec::new()),
        (
            get_head("/v2/safe/repo/../repo/manifests/stable"),
            Vec::new(),
        ),
        (
            get_head("/v2/safe/%2e%2e/safe/repo/manifests/stable"),
            Vec::new(),
        ),
        (get_head("/v2/./safe/repo/manifests/stable"), Vec::new()),
        (get_head("/v2/safe/./repo/manifests/stable"), Vec::new()),
        (get_head("/v2/safe/%2e/repo/manifests/stable"), Vec::new()),
        (get_head("/v2//safe/repo/manifests/stable"), Vec::new()),
        (get_head("/v2/safe//repo/manifests/stable"), Vec::new()),
        (post_head("/v2/safe//repo/blobs/uploads/"), Vec::new()),
        (get_head("/v2/Safe/Repo/manifests/stable"), Vec::new()),
        // Uppercase outside the first component (which distribution reads as a host name).
        (post_head("/v2/upper/CASE/blobs/uploads/"), Vec::new()),
        (
            put_manifest_head("/v2/upper/CASE/manifests/latest"),
            manifest.body.clone(),
        ),
        (get_head("/v2/safe/repo./manifests/stable"), Vec::new()),
        (post_head("/v2/-safe/repo/blobs/uploads/"), Vec::new()),
        (post_head("/v2/safe/repo%00x/blobs/uploads/"), Vec::new()),
    ];
    let mut wrong = Vec::new();
    for (head, body) in &requests {
        let resp = f
            .raw(head, body)
            .unwrap_or_else(|e| panic!("{head:?}: no answer: {e}"));
        assert_api_version(&resp);
        let name_invalid = resp.status == 400
            && resp
                .header("content-type")
                .unwrap_or("")
                .starts_with("application/json")
            && resp.json()["errors"][0]["code"] == "NAME_INVALID";
        if !(resp.status == 404 || name_invalid) {
            wrong.push(format!("{head:?} -> {}", resp.describe()));
        }
    }
    assert!(
        wrong.is_empty(),
        "expected 400 NAME_INVALID or 404:\n{}",
        wrong.join("\n")
    );

    // Nothing outside the storage root: no marker in any ancestor folder, only the harness's
    // own files beside the storage folder, only `blobs` and `repositories` inside it.
    for ancestor in f.reg.root().ancestors() {
        assert!(
            !ancestor.join(&marker).exists(),
            "{} was created",
            ancestor.join(&marker).display()
        );
    }
    for file in list_files(f.reg.tmp()) {
        let text = file.display().to_string();
        assert!(!text.contains(&marker), "{text} was created");
        let allowed = ["config.yml", "stdout.log", "stderr.log"].contains(&text.as_str())
            || text.starts_with("storage/docker/registry/v2/blobs/")
            || text.starts_with("storage/docker/registry/v2/repositories/safe/repo/");
        assert!(allowed, "unexpected file {text}");
    }
    f.assert_intact();
}

fn name_too_long(driver: Driver) {
    let f = Fixture::new(driver);
    let long = format!("{}/{}/{}", "a".repeat(85), "b".repeat(85), "c".repeat(84));
    assert_eq!(long.len(), 256);
    let resp = send(f.reg.get(&format!("/v2/{long}/tags/list")));
    assert_error(&resp, 400, "NAME_INVALID");
    let resp = send(f.reg.post(&format!("/v2/{long}/blobs/uploads/")));
    assert_error(&resp, 400, "NAME_INVALID");
    let resp = put_manifest(&f.reg, &long, "latest", &f.image);
    assert_error(&resp, 400, "NAME_INVALID");
    let resp = send(f.reg.get(&format!("/v2/{long}/blobs/{}", f.blob.digest)));
    assert_error(&resp, 400, "NAME_INVALID");

    // Raw UTF-8 in the request line, as no client sends it but anyone can: still a 400 with
    // the error JSON, never a dropped connection.
    let wide = "é".repeat(200);
    for path in [
        format!("/v2/{wide}/tags/list"),
        format!("/v2/{wide}/blobs/{}", f.blob.digest),
    ] {
        let resp = f
            .raw(&format!("GET {path} HTTP/1.1"), b"")
            .expect("answered");
        assert_error(&resp, 400, "NAME_INVALID");
    }

    // 255 characters is allowed.
    let longest = &long[..255];
    let resp = send(f.reg.post(&format!("/v2/{longest}/blobs/uploads/")));
    resp.assert_status(202);
    f.assert_intact();
}

/// Names outside the OCI grammar (`Upper/lower`, a `host:port/` first component, as registry:2
/// accepted) answer 400 `NAME_INVALID` on every route, before any storage call.
fn names_outside_oci_grammar(driver: Driver) {
    // No upload purging in the background: the test counts storage calls.
    let reg = &Registry::builder(driver)
        .without_upload_purging()
        .debug_server(true)
        .start();
    let blob = Blob::random(1000);
    push(reg, REPO, &blob);
    let image = push_image(reg, REPO, "stable", Kind::OciManifest);
    let session = location_path(&start_upload(reg, REPO));
    // `<uuid>?_state=<token>` of a real session of another repository.
    let uuid_and_state = session.rsplit('/').next().unwrap().to_string();
    let long = format!("{}/{}", "a".repeat(200), "b".repeat(55));
    assert_eq!(long.len(), 256);
    let names = [
        "Upper/lower",
        "localhost:5000/lower",
        "a:5000/b",
        "lower/Upper",
        "lower/x_",
        long.as_str(),
    ];
    let files_before = list_files(reg.root());
    let bucket_keys = || reg.s3().map(|t| support::s3::shared().keys(&t.bucket, ""));
    let keys_before = bucket_keys();
    let storage_calls = || {
        reg.scrape()
            .sum("registry_storage_action_seconds_count", &[])
    };
    let calls_before = storage_calls();
    let d = &blob.digest;
    for name in names {
        let requests = [
            reg.get(&format!("/v2/{name}/tags/list")),
            reg.get(&format!("/v2/{name}/manifests/stable"))
                .header("accept", OCI_MANIFEST),
            reg.put(&format!("/v2/{name}/manifests/stable"))
                .header("content-type", OCI_MANIFEST)
                .body(image.body.clone()),
            reg.put(&format!(
                "/v2/{name}/manifests/{}?tag=a&tag=b",
                image.digest
            ))
            .header("content-type", OCI_MANIFEST)
            .body(image.body.clone()),
            reg.delete(&format!("/v2/{name}/manifests/stable")),
            reg.delete(&format!("/v2/{name}/manifests/{}", image.digest)),
            reg.get(&format!("/v2/{name}/blobs/{d}")),
            reg.delete(&format!("/v2/{name}/blobs/{d}")),
            reg.post(&format!("/v2/{name}/blobs/uploads/")),
            reg.post(&format!("/v2/{name}/blobs/uploads/?digest={d}"))
                .header("content-type", "application/octet-stream")
                .body(blob.data.clone()),
            reg.post(&format!("/v2/{name}/blobs/uploads/?mount={d}&from={REPO}")),
            reg.post(&format!("/v2/{name}/blobs/uploads/?mount={d}")),
            // A valid target mounting from an invalid source.
            reg.post(&format!(
                "/v2/{REPO}/blobs/uploads/?mount={d}&from={}",
                form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
            )),
            reg.get(&format!("/v2/{name}/blobs/uploads/{uuid_and_state}")),
            reg.patch(&format!("/v2/{name}/blobs/uploads/{uuid_and_state}"))
                .header("content-type", "application/octet-stream")
                .body(blob.data.clone()),
            reg.put(&with_digest(
                &format!("/v2/{name}/blobs/uploads/{uuid_and_state}"),
                d,
            ))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone()),
            reg.delete(&format!("/v2/{name}/blobs/uploads/{uuid_and_state}")),
            reg.get(&format!("/v2/{name}/referrers/{}", image.digest)),
        ];
        for request in requests {
            let resp = send(request);
            assert_error(&resp, 400, "NAME_INVALID");
        }
        for path in [
            format!("/v2/{name}/manifests/stable"),
            format!("/v2/{name}/blobs/{d}"),
            format!("/v2/{name}/tags/list"),
        ] {
            let resp = send(reg.head(&path));
            assert_eq!(resp.status, 400, "HEAD {path}: {}", resp.describe());
        }
    }
    assert_eq!(
        storage_calls(),
        calls_before,
        "no storage call for an invalid name"
    );
    assert_eq!(list_files(reg.root()), files_before, "nothing written");
    assert_eq!(bucket_keys(), keys_before, "nothing written");
    let catalog = send(reg.get("/v2/_catalog")).json();
    assert_eq!(catalog["repositories"], serde_json::json!([REPO]));
}

/// Multi-tag pushes with a bad tag, too many tags or the wrong digest: refused before anything
/// is stored (no tag moves, no manifest appears).
fn multi_tag_push_refused(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let other = prepare(&f.reg, REPO, Kind::OciManifest);
    let put = |reference: &str, query: &str| {
        send(
            f.reg
                .put(&format!("/v2/{REPO}/manifests/{reference}?{query}"))
                .header("content-type", OCI_MANIFEST)
                .body(other.body.clone()),
        )
    };
    let too_many: Vec<String> = (0..65).map(|i| format!("tag=t{i}")).collect();
    let resp = put(&other.digest, &too_many.join("&"));
    assert_error(&resp, 414, "TAG_INVALID");
    let resp = put("fresh", &too_many.join("&"));
    assert_error(&resp, 414, "TAG_INVALID");
    let long = "a".repeat(129);
    for query in [
        "tag=ok&tag=.bad".to_string(),
        "tag=ok&tag=".to_string(),
        "tag=stable&tag=a%2Fb".to_string(),
        format!("tag=ok&tag={long}"),
        "tag=ok&tag=semi;colon".to_string(),
    ] {
        let resp = put(&other.digest, &query);
        assert_error(&resp, 400, "TAG_INVALID");
    }
    let wrong = sha256_digest(b"not this manifest");
    let resp = put(&wrong, "tag=stable&tag=ok");
    assert_error(&resp, 400, "DIGEST_INVALID");

    let resp = get_manifest(&f.reg, REPO, &other.digest, OCI_MANIFEST);
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    assert_eq!(
        f.blob_files().len(),
        files.len() + 3 * usize::from(driver == Driver::Filesystem),
        "only the new image's config and layers under blobs/"
    );
    f.assert_intact();
}

/// The newer spec inputs: references that are neither tag nor digest, page sizes that are no
/// number, layer URLs nobody admitted, mounts of malformed digests, manifests streamed past
/// 4 MiB. Each a 4xx with the error JSON; nothing stored.
fn spec_inputs_refused(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    for reference in [".INVALID_MANIFEST_NAME", "-x", "a:b:c", "sha256:"] {
        let resp = get_manifest(&f.reg, REPO, reference, OCI_MANIFEST);
        assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    }
    for path in ["/v2/_catalog", &format!("/v2/{REPO}/tags/list")] {
        for n in ["-1", "abc", "1.5", "%00"] {
            let resp = send(f.reg.get(&format!("{path}?n={n}")));
            assert_error(&resp, 400, "PAGINATION_NUMBER_INVALID");
        }
    }
    // A non-distributable layer whose URL nobody admitted (no validation.manifests.urls).
    let mut value = f.image.json();
    value["layers"][0]["mediaType"] =
        serde_json::json!("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip");
    value["layers"][0]["digest"] = serde_json::json!(sha256_digest(b"elsewhere"));
    value["layers"][0]["urls"] = serde_json::json!(["https://layers.example.com/x.tar.gz"]);
    let foreign = Manifest::from_value(OCI_MANIFEST, &value);
    assert_error(
        &put_manifest(&f.reg, REPO, "foreign", &foreign),
        400,
        "MANIFEST_INVALID",
    );
    for mount in ["sha256:abc", "md5:00", ""] {
        let resp = send(
            f.reg
                .post(&format!("/v2/{REPO}/blobs/uploads/?mount={mount}")),
        );
        assert_error_json(&resp, &format!("mount={mount}"));
        assert_eq!(resp.status, 400, "mount={mount}: {}", resp.describe());
    }
    // Streamed (chunked) past 4 MiB: cut there, 413.
    let mut chunked = Vec::new();
    let piece = vec![b' '; 1 << 20];
    for _ in 0..6 {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(&piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PUT /v2/{REPO}/manifests/stable HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked"
    );
    assert_refused(f.raw(&head, &chunked), &[413], &["MANIFEST_INVALID"]);
    let resp = get_manifest(&f.reg, REPO, "foreign", OCI_MANIFEST);
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

fn absurd_content_length(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let huge = "1000000000000000000";
    let digest = sha256_digest(b"0123456789");

    let patch = f.upload_path();
    let put = with_digest(&f.upload_path(), &digest);
    let heads = [
        format!("PATCH {patch} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {huge}"),
        format!("PUT {put} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {huge}"),
        format!("POST /v2/{REPO}/blobs/uploads/?digest={digest} HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {huge}"),
        format!("PUT /v2/{REPO}/manifests/huge HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {huge}"),
    ];
    for head in &heads {
        // The short body is followed by the end of the client's sending side: a server that did
        // not refuse the length up front sees a truncated body, and may then answer 4xx or just
        // close the connection.
        let request = format!("{head}\r\nHost: {}", f.reg.host());
        match raw_request(f.reg.addr(), &request, b"0123456789", RawEnd::ShutdownWrite) {
            Ok(resp) => {
                assert_4xx(&resp, head);
                assert_error_json(&resp, head);
            }
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ),
                "{head:?}: {e}"
            ),
        }
    }
    // Lengths that do not parse are an HTTP framing error: a plain 400 from the HTTP layer is
    // right (error JSON optional).
    for length in ["99999999999999999999999999", "-5", "12abc"] {
        let head = format!(
            "PATCH {patch} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}",
            f.reg.host()
        );
        let resp = raw_request(f.reg.addr(), &head, b"0123456789", RawEnd::KeepOpen)
            .unwrap_or_else(|e| panic!("Content-Length {length}: no answer: {e}"));
        assert_eq!(
            resp.status,
            400,
            "Content-Length {length}: {}",
            resp.describe()
        );
    }
    assert_no_blob(&f.reg, &digest);
    let resp = get_manifest(&f.reg, REPO, "huge", OCI_MANIFEST);
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

fn truncated_bodies(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let full = Prng::new(unique_seed()).bytes(100_000);
    let digest = sha256_digest(&full);
    let partial = &full[..1000];
    let host = f.reg.host();

    let patch = f.upload_path();
    let put = with_digest(&f.upload_path(), &digest);
    let manifest_half = &f.image.body[..f.image.body.len() / 2];
    let cases: Vec<(String, &[u8])> = vec![
        (format!("PATCH {patch} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000"), partial),
        (format!("PUT {put} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000"), partial),
        (format!("POST /v2/{REPO}/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000"), partial),
        (format!("PUT /v2/{REPO}/manifests/truncated HTTP/1.1\r\nHost: {host}\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}", f.image.body.len()), manifest_half),
        (format!("PUT /v2/{REPO}/manifests/stable HTTP/1.1\r\nHost: {host}\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}", f.image.body.len()), manifest_half),
        (format!("PATCH {patch} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n3e8"), partial),
    ];
    for (head, body) in &cases {
        raw_truncated(f.reg.addr(), head, body).expect("send a truncated request");
    }
    // Let the server notice the closed connections before looking.
    thread::sleep(Duration::from_millis(500));

    assert_no_blob(&f.reg, &digest);
    assert_no_blob(&f.reg, &sha256_digest(partial));
    let resp = get_manifest(&f.reg, REPO, "truncated", OCI_MANIFEST);
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

fn wrong_content_range(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let data = Prng::new(unique_seed()).bytes(30);
    let location = start_upload(&f.reg, REPO);
    let resp = send(
        f.reg
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", "0-9")
            .body(data[..10].to_vec()),
    );
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();

    for range in [
        "garbage", "19-10", "10-99", "10-", "-10", "abc-def", "10-19-29", "10-5",
    ] {
        let resp = send(
            f.reg
                .patch(&location)
                .header("content-type", "application/octet-stream")
                .header("content-range", range)
                .body(data[10..20].to_vec()),
        );
        assert_error_in(
            &resp,
            &[400, 416],
            &["RANGE_INVALID", "SIZE_INVALID", "BLOB_UPLOAD_INVALID"],
        );
    }
    // Nothing was appended; the upload goes on.
    let resp = send(f.reg.get(&location));
    resp.assert_status(204);
    assert_eq!(resp.header("range"), Some("0-9"));
    let resp = send(
        f.reg
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", "10-29")
            .body(data[10..].to_vec()),
    );
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let digest = sha256_digest(&data);
    send(f.reg.put(&with_digest(&location, &digest))).assert_status(201);
    let resp = send(f.reg.get(&format!("/v2/{REPO}/blobs/{digest}")));
    resp.assert_status(200);
    assert!(resp.body == data);
    assert_eq!(
        f.blob_files().len(),
        files.len() + usize::from(driver == Driver::Filesystem)
    );
    f.assert_intact();
}

fn invalid_manifests(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let bodies: [&[u8]; 5] = [
        b"{",
        b"{\"schemaVersion\": 2, \"mediaType\": \"application/vnd.oci.image.manifest.v1+json\", \"config\": ",
        b"null",
        b"\x00\x01\x02\x03",
        b"{\"schemaVersion\": 2}}",
    ];
    for body in bodies {
        for reference in ["stable", "broken"] {
            let resp = send(
                f.reg
                    .put(&format!("/v2/{REPO}/manifests/{reference}"))
                    .header("content-type", OCI_MANIFEST)
                    .body(body.to_vec()),
            );
            assert_error(&resp, 400, "MANIFEST_INVALID");
        }
    }
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

fn oversized_manifest(driver: Driver) {
    let f = Fixture::new(driver);
    let files = f.blob_files();
    let mut value = f.image.json();
    value["annotations"] = serde_json::json!({"org.example.padding": "y".repeat(6 * 1024 * 1024)});
    let big = Manifest::from_value(OCI_MANIFEST, &value);
    let head = format!(
        "PUT /v2/{REPO}/manifests/stable HTTP/1.1\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}",
        big.body.len()
    );
    assert_refused(
        f.raw(&head, &big.body),
        &[400, 413],
        &["MANIFEST_INVALID", "SIZE_INVALID"],
    );
    let resp = get_manifest(&f.reg, REPO, &big.digest, OCI_MANIFEST);
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    assert_eq!(f.blob_files(), files, "nothing new under blobs/");
    f.assert_intact();
}

fn huge_header(driver: Driver) {
    let f = Fixture::new(driver);
    let filler = "a".repeat(1536 * 1024);
    for head in [
        format!("GET /v2/ HTTP/1.1\r\nX-Filler: {filler}"),
        format!("GET /v2/{REPO}/manifests/stable HTTP/1.1\r\nAccept: {OCI_MANIFEST}, {filler}"),
        format!("GET /v2/{REPO}/{filler}/tags/list HTTP/1.1"),
    ] {
        match f.raw(&head, b"") {
            Ok(resp) => assert!(
                [400, 413, 414, 431].contains(&resp.status),
                "huge header: {}",
                resp.describe()
            ),
            Err(e) => assert!(
                matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                ),
                "huge header: {e}"
            ),
        }
    }
    f.assert_intact();
}

for_each_driver!(
    malformed_digests,
    unknown_algorithm,
    hostile_names,
    name_too_long,
    names_outside_oci_grammar,
    multi_tag_push_refused,
    spec_inputs_refused,
    absurd_content_length,
    truncated_bodies,
    wrong_content_range,
    invalid_manifests,
    oversized_manifest,
    huge_header,
);
