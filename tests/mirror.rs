//! Pull-through cache (`proxy`): a second `wharf` is the upstream. Images pulled through the
//! cache with skopeo (an index with two images, multi-layer images) come out with the
//! upstream's digests; the upstream sees each blob fetched once; pushes are refused; with the
//! upstream stopped cached images still pull and misses answer 503; upstream credentials
//! reach token realms on the upstream's host (or listed) only; a lying upstream poisons
//! nothing.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::auth::*;
use support::*;

/// Digests of the config and layers of an image manifest.
fn blob_digests(manifest: &Manifest) -> Vec<String> {
    let v: Value = serde_json::from_slice(&manifest.body).unwrap();
    let mut out = vec![v["config"]["digest"].as_str().unwrap().to_string()];
    for l in v["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_string());
    }
    out
}

/// Upstream access-log lines of GETs whose path ends with `tail`, answered 200 (a 401
/// challenge answered before credentials are sent is not a fetch).
fn upstream_gets(upstream: &Registry, tail: &str) -> usize {
    upstream
        .access_lines()
        .iter()
        .filter(|l| {
            l.contains("method=GET") && l.contains(&format!("{tail} ")) && l.contains("status=200")
        })
        .count()
}

fn htpasswd_upstream(dir: &std::path::Path) -> Registry {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
    Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  htpasswd:\n    realm: upstream\n    path: {}\n",
            path.display()
        ))
        .log_section("log:\n  level: info\n  formatter: text\n  fields:\n    service: upstream\n")
        .ready(Ready::V2Answers)
        .start()
}

fn mirror_of(upstream_url: &str, extra: &str, storage: Option<&std::path::Path>) -> Registry {
    let mut b = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "proxy:\n  remoteurl: {upstream_url}\n  username: alice\n  password: alice-pw\n{extra}"
        ))
        .debug_server(true);
    if let Some(dir) = storage {
        b = b.storage_dir(dir);
    }
    b.start()
}

fn push_with_skopeo(
    upstream: &Registry,
    layout: &std::path::Path,
    tag: &str,
    repo_tag: &str,
    all: bool,
) {
    let source = oci_ref(layout, tag);
    let dest = docker_ref(upstream, repo_tag);
    let mut args = vec![
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-pw",
    ];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), dest.as_str()]);
    skopeo(&args).assert_success("skopeo copy into the upstream");
}

fn pull_with_skopeo(
    reg: &Registry,
    repo_tag: &str,
    out: &std::path::Path,
    all: bool,
) -> CommandOutput {
    let source = docker_ref(reg, repo_tag);
    let dest = format!("oci:{}:x", out.display());
    let mut args = vec![
        "copy",
        "--preserve-digests",
        "--src-tls-verify=false",
        "--src-no-creds",
    ];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), dest.as_str()]);
    skopeo(&args)
}

#[test]
fn skopeo_pulls_through_an_htpasswd_upstream_and_the_cache_survives_its_outage() {
    let work = tempfile::tempdir().unwrap();
    let mut upstream = htpasswd_upstream(work.path());
    let mut layout = OciLayout::create(&work.path().join("layout"));
    let (index, children) = layout.multi_arch(3);
    layout.tag("multi", &index);
    let single = layout.image_with_layers("amd64", &[200_000, 1_500_000, 70_000]);
    layout.tag("single", &single);
    push_with_skopeo(&upstream, &layout.dir, "multi", "team/app:multi", true);
    push_with_skopeo(&upstream, &layout.dir, "single", "team/app:single", false);
    push_with_skopeo(&upstream, &layout.dir, "single", "team/other:v1", false);

    let storage = tempfile::tempdir().unwrap();
    let mirror = mirror_of(
        upstream.endpoint().url(),
        "  tagrecheck: 1h\n",
        Some(storage.path()),
    );

    // Twice each: the second pull is served by the cache.
    for round in 0..2 {
        let out = work.path().join(format!("out-multi-{round}"));
        pull_with_skopeo(&mirror, "team/app:multi", &out, true)
            .assert_success("pull the index through the cache");
        let out = work.path().join(format!("out-single-{round}"));
        pull_with_skopeo(&mirror, "team/app:single", &out, false)
            .assert_success("pull the image through the cache");
    }
    let served = send(
        mirror
            .get("/v2/team/app/manifests/multi")
            .header("Accept", OCI_INDEX),
    );
    served.assert_status(200);
    assert_eq!(served.must_header("docker-content-digest"), index.digest);
    assert_eq!(
        sha256_digest(served.text().as_bytes()),
        index.digest,
        "the index's bytes unchanged"
    );

    // The upstream served each blob once, and the tag once (re-checked at most once an hour).
    let mut blobs: Vec<String> = children.iter().flat_map(blob_digests).collect();
    blobs.extend(blob_digests(&single));
    blobs.sort();
    blobs.dedup();
    for blob in &blobs {
        assert_eq!(
            upstream_gets(&upstream, &format!("/blobs/{blob}")),
            1,
            "upstream GETs of {blob}"
        );
    }
    assert_eq!(upstream_gets(&upstream, "/v2/team/app/manifests/multi"), 1);
    let scrape = mirror.scrape();
    assert!(scrape.sum("wharf_mirror_hits_total", &[("kind", "blob")]) >= blobs.len() as f64);
    assert_eq!(
        scrape.sum("wharf_mirror_misses_total", &[("kind", "blob")]),
        blobs.len() as f64
    );
    assert!(scrape.sum("wharf_mirror_upstream_bytes_total", &[]) > 1_500_000.0);

    // A cache takes no pushes or deletes, as registry:2's proxy mode.
    let refused = send(mirror.post("/v2/team/app/blobs/uploads/"));
    assert_error(&refused, 405, "UNSUPPORTED");
    let refused = send(mirror.delete(&format!("/v2/team/app/manifests/{}", index.digest)));
    assert_error(&refused, 405, "UNSUPPORTED");

    // A HEAD of an uncached blob asks the upstream without fetching it.
    let other_layer = blob_digests(&single)[1].clone();
    let head = send(mirror.head(&format!("/v2/team/other/blobs/{other_layer}")));
    head.assert_status(200);
    let single_json: Value = serde_json::from_slice(&single.body).unwrap();
    assert_eq!(
        head.must_header("content-length"),
        single_json["layers"][0]["size"].to_string()
    );
    assert_eq!(
        upstream_gets(&upstream, &format!("/v2/team/other/blobs/{other_layer}")),
        0
    );

    // Upstream gone: cached images pull, misses are 503 with Retry-After.
    upstream.kill();
    let out = work.path().join("out-offline");
    pull_with_skopeo(&mirror, "team/app:multi", &out, true)
        .assert_success("cached index pulls with the upstream down");
    let miss = send(mirror.get("/v2/team/other/manifests/v1"));
    assert_error(&miss, 503, "UNAVAILABLE");
    assert!(miss.header("retry-after").is_some(), "{}", miss.describe());
    let miss = send(mirror.get(&format!("/v2/team/other/blobs/{other_layer}")));
    assert_error(&miss, 503, "UNAVAILABLE");
    assert!(miss.header("retry-after").is_some());

    // A node that checks tags on every pull serves the cached tag, marked stale.
    let eager = mirror_of(
        upstream.endpoint().url(),
        "  tagrecheck: 0s\n",
        Some(storage.path()),
    );
    let stale = send(
        eager
            .get("/v2/team/app/manifests/single")
            .header("Accept", OCI_MANIFEST),
    );
    stale.assert_status(200);
    assert_eq!(stale.must_header("docker-content-digest"), single.digest);
    assert!(
        stale.must_header("warning").starts_with("110 "),
        "{}",
        stale.describe()
    );
    assert_eq!(
        eager.scrape().sum("wharf_mirror_stale_serves_total", &[]),
        1.0
    );
}

/// An upstream with the built-in token issuer: the realm is on the upstream's host.
fn token_upstream(dir: &std::path::Path) -> Registry {
    let identity = self_signed(ec_key(), &["wharf-token-issuer"]);
    identity.write(dir, "issuer");
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:
  token:
    realm: http://placeholder/auth/token
    service: upstream
    issuer: upstream-issuer
    rootcertbundle: {cert}
tokenissuer:
  key: {key}
  certificate: {cert}
  expiration: 5m
  users:
    alice: '{hash}'
  acl:
    - match: {{account: alice, name: 'team/*'}}
      actions: [pull, push]
",
            key = dir.join("issuer.key").display(),
            cert = dir.join("issuer.crt").display(),
        ))
        .env("REGISTRY_AUTH_TOKEN_REALM", "http://{addr}/auth/token")
        .log_section("log:\n  level: info\n  formatter: text\n  fields:\n    service: upstream\n")
        .ready(Ready::V2Answers)
        .start()
}

#[test]
fn token_upstream_is_selected_by_prefix_or_namespace() {
    let work = tempfile::tempdir().unwrap();
    let upstream = token_upstream(work.path());
    let mut layout = OciLayout::create(&work.path().join("layout"));
    let image = layout.image("amd64", 2);
    layout.tag("v1", &image);
    push_with_skopeo(&upstream, &layout.dir, "v1", "team/app:v1", false);

    let mirror = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "proxy:\n  upstreams:\n    - prefix: 'upstream.test/*'\n      remoteurl: {}\n      username: alice\n      password: alice-pw\n      tagrecheck: 1h\n",
            upstream.endpoint().url()
        ))
        .debug_server(true)
        .start();
    // containerd's `?ns=`: cached under the prefix, named in the answer.
    let by_ns = send(
        mirror
            .get("/v2/team/app/manifests/v1?ns=upstream.test")
            .header("Accept", OCI_MANIFEST),
    );
    by_ns.assert_status(200);
    assert_eq!(by_ns.must_header("docker-content-digest"), image.digest);
    assert_eq!(by_ns.must_header("oci-namespace"), "upstream.test");
    let layer = blob_digests(&image)[1].clone();
    let blob = send(mirror.get(&format!("/v2/team/app/blobs/{layer}?ns=upstream.test")));
    blob.assert_status(200);
    assert_eq!(sha256_digest(&blob.body), layer);
    assert_eq!(blob.must_header("oci-namespace"), "upstream.test");
    // The same repository by its prefixed name: already cached.
    let out = work.path().join("out");
    pull_with_skopeo(&mirror, "upstream.test/team/app:v1", &out, false)
        .assert_success("pull by prefix");
    for blob in blob_digests(&image) {
        assert_eq!(
            upstream_gets(&upstream, &format!("/blobs/{blob}")),
            1,
            "{blob}"
        );
    }
    // Repositories no upstream serves are only local.
    let unknown = send(mirror.get("/v2/team/app/manifests/v1"));
    assert_error(&unknown, 404, "MANIFEST_UNKNOWN");
    // The token came from the upstream's own realm, with the credentials.
    let token_requests = upstream
        .access_lines()
        .iter()
        .filter(|l| l.contains("path=/auth/token") && l.contains("status=200"))
        .count();
    assert!(token_requests >= 1, "{:?}", upstream.access_lines());
}

/// A user and password a token server was given.
type UserPass = (String, String);

/// An upstream whose challenges name a realm on another host:port (a token server that
/// records who asked).
#[test]
fn a_foreign_token_realm_gets_no_credentials_unless_listed() {
    let work = tempfile::tempdir().unwrap();
    let seen: Arc<Mutex<Vec<Option<UserPass>>>> = Arc::default();
    let record = seen.clone();
    let tokens = TokenServer::start(move |req| {
        record.lock().unwrap().push(req.user.clone());
        None
    });
    let identity = self_signed(ec_key(), &["foreign"]);
    identity.write(work.path(), "foreign");
    let upstream = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  token:\n    realm: {}\n    service: upstream\n    issuer: foreign\n    rootcertbundle: {}\n",
            tokens.realm(),
            work.path().join("foreign.crt").display()
        ))
        .ready(Ready::V2Answers)
        .start();
    let unlisted = mirror_of(upstream.endpoint().url(), "", None);
    let answer = send(unlisted.get("/v2/team/app/manifests/v1"));
    assert!(
        (400..500).contains(&answer.status) || answer.status == 503,
        "{}",
        answer.describe()
    );
    {
        let seen = seen.lock().unwrap();
        assert!(!seen.is_empty(), "the realm was asked");
        assert!(
            seen.iter().all(Option::is_none),
            "credentials went to a foreign realm: {seen:?}"
        );
    }
    seen.lock().unwrap().clear();
    let listed = mirror_of(
        upstream.endpoint().url(),
        &format!("  tokenrealms: ['{}']\n", tokens.realm()),
        None,
    );
    let _ = send(listed.get("/v2/team/app/manifests/v1"));
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.first().cloned().flatten(),
        Some(("alice".to_string(), "alice-pw".to_string())),
        "a listed realm gets the credentials"
    );
}

/// A registry that serves, for every blob and manifest asked, bytes that do not match the
/// digest asked for. Counts the requests. Stops when dropped.
struct LyingUpstream {
    addr: std::net::SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LyingUpstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, flag) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 5 minutes of polling.
            for _ in 0..30_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        Self::answer(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn answer(mut stream: std::net::TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        for _ in 0..100 {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
        }
        let head_only = line.starts_with("HEAD");
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (content_type, body): (&str, Vec<u8>) = if path.contains("/blobs/") {
            ("application/octet-stream", vec![b'x'; 300_000])
        } else if path.contains("/manifests/") {
            (OCI_MANIFEST, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec())
        } else {
            ("application/json", b"{}".to_vec())
        };
        let mut out = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&body);
        }
        let _ = stream.write_all(&out);
        let _ = stream.flush();
        let mut rest = Vec::new();
        let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
        let _ = stream.read_to_end(&mut rest);
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LyingUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_lying_upstream_poisons_nothing() {
    let liar = LyingUpstream::start();
    let storage = tempfile::tempdir().unwrap();
    let mirror = mirror_of(&liar.url(), "", Some(storage.path()));
    let wanted = Blob::random(300_000);
    // The client's stream is cut: it never receives a whole blob.
    for _ in 0..2 {
        match try_send(mirror.get(&format!("/v2/lie/blobs/{}", wanted.digest))) {
            Ok(resp) => assert!(
                resp.status != 200 || resp.body.len() < 300_000,
                "a wrong blob was served whole: {}",
                resp.describe()
            ),
            Err(_cut) => {}
        }
    }
    let hex = wanted.digest.trim_start_matches("sha256:");
    let data = storage.path().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    assert!(!data.exists(), "the wrong bytes were stored");
    let link = storage.path().join(format!(
        "docker/registry/v2/repositories/lie/_layers/sha256/{hex}/link"
    ));
    assert!(!link.exists());
    // Nothing cached: the second request went upstream again.
    let blob_fetches = liar.requests.load(Ordering::Relaxed);
    assert!(blob_fetches >= 2, "{blob_fetches}");
    // A manifest by digest that does not match is refused, not stored.
    let wanted_manifest = format!("sha256:{}", "ab".repeat(32));
    let refused = send(mirror.get(&format!("/v2/lie/manifests/{wanted_manifest}")));
    assert_error(&refused, 503, "UNAVAILABLE");
    let revisions = storage
        .path()
        .join("docker/registry/v2/repositories/lie/_manifests");
    assert!(!revisions.exists(), "a wrong manifest was stored");
    assert_eq!(
        mirror
            .scrape()
            .sum("wharf_mirror_digest_mismatches_total", &[]),
        3.0
    );
}

/// One request as a [`FakeServer`] read it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// Headers, names lower-cased.
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An answer of a [`FakeServer`]: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A small HTTP/1.1 server on a loopback port answering with `handler`, one connection at a
/// time, recording every request. Stops when dropped.
struct FakeServer {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    fn start(handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, flag) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: at most 10 minutes of polling.
            for _ in 0..60_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        Self::serve(stream, &handler, &log);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers the requests of one connection (bounded).
    fn serve(stream: std::net::TcpStream, handler: &Handler, log: &Mutex<Vec<Seen>>) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        for _ in 0..100 {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut headers = Vec::new();
            for _ in 0..100 {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                    break;
                }
                if let Some((n, v)) = header.split_once(':') {
                    headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let seen = Seen {
                method,
                path,
                headers,
            };
            log.lock().unwrap().push(seen.clone());
            let (status, headers, body) = handler(&seen);
            let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
            for (n, v) in headers {
                head.push_str(&format!("{n}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let mut bytes = head.into_bytes();
            if seen.method != "HEAD" {
                bytes.extend_from_slice(&body);
            }
            if out.write_all(&bytes).is_err() {
                return;
            }
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A manifest's bytes (an empty-layer OCI image) and digest.
fn small_manifest() -> (Vec<u8>, String) {
    let body = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}"#.to_vec();
    let digest = sha256_digest(&body);
    (body, digest)
}

fn header(name: &str, value: &str) -> (String, String) {
    (name.to_string(), value.to_string())
}

#[test]
fn an_upstream_429_is_honoured_cached_content_served_and_misses_answer_503() {
    let (manifest, manifest_digest) = small_manifest();
    let blob = Blob::random(100_000);
    let limited = Arc::new(AtomicBool::new(false));
    let handler: Handler = {
        let (manifest, manifest_digest, blob, limited) = (
            manifest.clone(),
            manifest_digest.clone(),
            blob.clone(),
            limited.clone(),
        );
        Arc::new(move |r: &Seen| {
            if limited.load(Ordering::Relaxed) {
                return (
                    429,
                    vec![header("Retry-After", "120")],
                    br#"{"errors":[{"code":"TOOMANYREQUESTS"}]}"#.to_vec(),
                );
            }
            if r.path.ends_with("/manifests/v1") || r.path.ends_with(&manifest_digest) {
                (
                    200,
                    vec![
                        header("Content-Type", OCI_MANIFEST),
                        header("Docker-Content-Digest", &manifest_digest),
                    ],
                    manifest.clone(),
                )
            } else if r.path.ends_with(&blob.digest) {
                (200, vec![], blob.data.clone())
            } else {
                (404, vec![], b"{}".to_vec())
            }
        })
    };
    let fake = FakeServer::start(handler);
    // Tags re-checked on every pull, so a cached tag would go upstream if it could.
    let mirror = mirror_of(&fake.url(), "  tagrecheck: 0s\n", None);
    send(mirror.get("/v2/rl/app/manifests/v1")).assert_status(200);
    send(mirror.get(&format!("/v2/rl/app/blobs/{}", blob.digest))).assert_status(200);

    limited.store(true, Ordering::Relaxed);
    // The tag check meets the 429: the cached manifest is served, marked stale.
    let stale = send(mirror.get("/v2/rl/app/manifests/v1"));
    stale.assert_status(200);
    assert_eq!(stale.must_header("docker-content-digest"), manifest_digest);
    let asked = fake.seen().len();

    // Until Retry-After runs out nothing goes upstream: cached content is served, a miss
    // answers 503 with Retry-After.
    for _ in 0..3 {
        let tag = send(mirror.get("/v2/rl/app/manifests/v1"));
        tag.assert_status(200);
        assert_eq!(tag.must_header("docker-content-digest"), manifest_digest);
        let cached = send(mirror.get(&format!("/v2/rl/app/blobs/{}", blob.digest)));
        cached.assert_status(200);
        assert_eq!(sha256_digest(&cached.body), blob.digest);
        let miss = send(mirror.get(&format!("/v2/rl/app/blobs/{}", Blob::random(10).digest)));
        assert_error(&miss, 503, "UNAVAILABLE");
        let wait: u64 = miss.must_header("retry-after").parse().unwrap();
        assert!((1..=120).contains(&wait), "Retry-After {wait}");
        let miss = send(mirror.get("/v2/rl/other/manifests/v2"));
        assert_error(&miss, 503, "UNAVAILABLE");
        assert!(miss.header("retry-after").is_some(), "{}", miss.describe());
    }
    assert_eq!(
        fake.seen().len(),
        asked,
        "requests went upstream during its Retry-After: {:#?}",
        &fake.seen()[asked..]
    );
    assert!(
        mirror
            .scrape()
            .sum("wharf_mirror_upstream_errors_total", &[("status", "429")])
            >= 1.0
    );
}

#[test]
fn redirects_to_blob_storage_are_followed_without_credentials() {
    let blob = Blob::random(200_000);
    let storage_side: Handler = {
        let blob = blob.clone();
        Arc::new(move |r: &Seen| {
            if r.path.starts_with("/bucket/") {
                (200, vec![], blob.data.clone())
            } else {
                (404, vec![], Vec::new())
            }
        })
    };
    let bucket = FakeServer::start(storage_side);
    let bucket_url = bucket.url();
    let registry_side: Handler = {
        let expected = format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:alice-pw")
        );
        Arc::new(move |r: &Seen| {
            if r.header("authorization") != Some(expected.as_str()) {
                return (
                    401,
                    vec![header("WWW-Authenticate", "Basic realm=\"upstream\"")],
                    b"{}".to_vec(),
                );
            }
            if r.path.contains("/blobs/") {
                let name = r.path.rsplit('/').next().unwrap_or("");
                (
                    307,
                    vec![header(
                        "Location",
                        &format!("{bucket_url}/bucket/{name}?signature=abc"),
                    )],
                    Vec::new(),
                )
            } else {
                (404, vec![], b"{}".to_vec())
            }
        })
    };
    let upstream = FakeServer::start(registry_side);
    let mirror = mirror_of(&upstream.url(), "", None);
    let got = send(mirror.get(&format!("/v2/team/app/blobs/{}", blob.digest)));
    got.assert_status(200);
    assert_eq!(sha256_digest(&got.body), blob.digest);
    // The upstream got the credentials; the storage it redirected to did not.
    assert!(upstream
        .seen()
        .iter()
        .any(|r| r.path.contains("/blobs/") && r.header("authorization").is_some()));
    let at_bucket = bucket.seen();
    assert!(!at_bucket.is_empty(), "the redirect was not followed");
    for r in &at_bucket {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        assert!(r.path.contains("signature=abc"), "{r:?}");
    }
}

const INFO_LOG: &str = "log:\n  level: info\n  formatter: text\n";

/// An upstream holding `repo:tag` (a config and one layer); the image's manifest and layer.
fn upstream_with_image(upstream: &Registry, repo: &str, tag: &str) -> (Manifest, Blob) {
    let config = image_config("amd64", unique_seed(), 1);
    let layer = Blob::random(150_000);
    push(upstream, repo, &config);
    push(upstream, repo, &layer);
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &layer)],
        None,
    );
    push_manifest(upstream, repo, tag, &manifest);
    (manifest, layer)
}

#[test]
fn expired_content_is_removed_by_one_node_and_fetched_again() {
    let upstream = Registry::builder(Driver::Filesystem)
        .log_section("log:\n  level: info\n  formatter: text\n  fields:\n    service: upstream\n")
        .start();
    let (manifest, layer) = upstream_with_image(&upstream, "team/ttl", "v1");
    let storage = tempfile::tempdir().unwrap();
    // Two nodes over one folder, the sweep's lease in the folder too (no Redis).
    let nodes: Vec<Registry> = (1..=2)
        .map(|i| {
            Registry::builder(Driver::Filesystem)
                .storage_dir(storage.path())
                .node(&format!("node{i}"))
                .log_section(INFO_LOG)
                .section(&format!(
                    "proxy:\n  remoteurl: {}\n  ttl: 2s\n  tagrecheck: 1h\n",
                    upstream.endpoint().url()
                ))
                .start()
        })
        .collect();
    let pulled = send(
        nodes[0]
            .get("/v2/team/ttl/manifests/v1")
            .header("Accept", OCI_MANIFEST),
    );
    pulled.assert_status(200);
    assert_eq!(pulled.must_header("docker-content-digest"), manifest.digest);
    send(nodes[0].get(&format!("/v2/team/ttl/blobs/{}", layer.digest))).assert_status(200);
    let v2 = storage
        .path()
        .join("docker/registry/v2/repositories/team/ttl");
    let hex = layer.digest.trim_start_matches("sha256:");
    let link = v2.join(format!("_layers/sha256/{hex}/link"));
    let tag = v2.join("_manifests/tags/v1");
    assert!(link.exists() && tag.exists());

    // Expired: the layer's link and the tag go, by the sweep of one node.
    assert!(
        wait_until(Duration::from_secs(60), || !link.exists() && !tag.exists()),
        "expired content stayed"
    );
    let expired_lines = |digest: &str| -> usize {
        nodes
            .iter()
            .map(|n| {
                n.log()
                    .lines()
                    .filter(|l| l.contains("cached content expired") && l.contains(digest))
                    .count()
            })
            .sum()
    };
    // Logged once each (the log is written a little after the removal).
    let logged = wait_until(Duration::from_secs(15), || {
        expired_lines(&layer.digest) > 0 && expired_lines(&manifest.digest) > 0
    });
    assert!(logged, "{}", nodes[0].log() + &nodes[1].log());
    assert_eq!(expired_lines(&layer.digest), 1);
    assert_eq!(expired_lines(&manifest.digest), 1);
    assert!(
        nodes
            .iter()
            .map(|n| n.scrape().sum("wharf_mirror_expired_total", &[]))
            .sum::<f64>()
            >= 2.0
    );

    // The next pull fetches them again.
    assert_eq!(upstream_gets(&upstream, "/v2/team/ttl/manifests/v1"), 1);
    assert_eq!(
        upstream_gets(&upstream, &format!("/v2/team/ttl/blobs/{}", layer.digest)),
        1
    );
    let again = send(
        nodes[1]
            .get("/v2/team/ttl/manifests/v1")
            .header("Accept", OCI_MANIFEST),
    );
    again.assert_status(200);
    let blob = send(nodes[1].get(&format!("/v2/team/ttl/blobs/{}", layer.digest)));
    blob.assert_status(200);
    assert_eq!(sha256_digest(&blob.body), layer.digest);
    assert_eq!(upstream_gets(&upstream, "/v2/team/ttl/manifests/v1"), 2);
    // The blob's data outlives its link until garbage collection: the upstream is asked again
    // whether the repository has it (HEAD), and it is linked again without a second download.
    let blob_path = format!("/v2/team/ttl/blobs/{} ", layer.digest);
    let heads = upstream
        .access_lines()
        .iter()
        .filter(|l| l.contains("method=HEAD") && l.contains(&blob_path) && l.contains("status=200"))
        .count();
    assert_eq!(heads, 1, "upstream asked again for the expired blob");
    assert_eq!(
        upstream_gets(&upstream, &format!("/v2/team/ttl/blobs/{}", layer.digest)),
        1
    );
    assert!(link.exists(), "linked again");
}

#[test]
fn tags_are_listed_upstream_and_from_the_cache_when_it_is_down() {
    let mut upstream = Registry::start(Driver::Filesystem);
    let (manifest, _) = upstream_with_image(&upstream, "team/tags", "a");
    for tag in ["b", "c"] {
        push_manifest(&upstream, "team/tags", tag, &manifest);
    }
    let mirror = mirror_of(upstream.endpoint().url(), "  tagrecheck: 1h\n", None);
    send(
        mirror
            .get("/v2/team/tags/manifests/a")
            .header("Accept", OCI_MANIFEST),
    )
    .assert_status(200);
    let tags = |path: &str| -> Value {
        let resp = send(mirror.get(path));
        resp.assert_status(200);
        serde_json::from_slice(&resp.body).unwrap()
    };
    // As registry:2's proxy: the upstream's list, paginated here.
    assert_eq!(
        tags("/v2/team/tags/tags/list")["tags"],
        serde_json::json!(["a", "b", "c"])
    );
    let first = send(mirror.get("/v2/team/tags/tags/list?n=2"));
    first.assert_status(200);
    let page: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(page["tags"], serde_json::json!(["a", "b"]));
    assert!(first.must_header("link").contains("last=b"));
    // Upstream down: the tags the cache holds.
    upstream.kill();
    assert_eq!(
        tags("/v2/team/tags/tags/list")["tags"],
        serde_json::json!(["a"])
    );
}

#[test]
fn a_blob_not_stored_within_cachewritetimeout_is_given_up() {
    let upstream = Registry::builder(Driver::Filesystem)
        .log_section("log:\n  level: info\n  formatter: text\n  fields:\n    service: upstream\n")
        .start();
    let blob = Blob::random(4 << 20);
    push(&upstream, "team/slow", &blob);
    // The upstream's answer stops after 1 MiB: the fetch cannot finish while it is held.
    let proxy = ChaosProxy::start(upstream.addr().to_string());
    proxy.set(Chaos::Hold(1 << 20));
    let storage = tempfile::tempdir().unwrap();
    let mirror = mirror_of(
        &proxy.endpoint(),
        "  cachewritetimeout: 1s\n",
        Some(storage.path()),
    );
    let path = format!("/v2/team/slow/blobs/{}", blob.digest);
    match try_send(mirror.get(&path)) {
        Ok(resp) => assert!(
            resp.status != 200 || resp.body.len() < blob.data.len(),
            "served whole: {}",
            resp.describe()
        ),
        Err(_cut) => {}
    }
    assert!(proxy.holding() > 0, "the upstream's answer was let go");
    let hex = blob.digest.trim_start_matches("sha256:");
    let data = storage.path().join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ));
    assert!(!data.exists(), "stored although given up");
    // The claim was freed: the next request fetches again and gets the blob.
    proxy.set(Chaos::Pass);
    let again = send(mirror.get(&path));
    again.assert_status(200);
    assert_eq!(sha256_digest(&again.body), blob.digest);
    assert!(data.exists());
    let asked = upstream
        .access_lines()
        .iter()
        .filter(|l| l.contains("method=GET") && l.contains(&format!("/blobs/{} ", blob.digest)))
        .count();
    assert_eq!(
        asked, 2,
        "fetched twice (the first answer cut by the mirror)"
    );
}
