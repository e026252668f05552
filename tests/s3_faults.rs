//! Object storage failing under a push: a TCP proxy between Wharf and the S3 server cuts every
//! connection in the middle of uploads. The client gets a registry error (5xx with the error
//! JSON), nothing it was told is stored is lost, no partial blob becomes visible, and the same
//! requests succeed once storage is back.

mod support;

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::s3::S3Server;
use support::*;

const MIB: usize = 1 << 20;
const REPO: &str = "faults/app";

struct Setup {
    server: S3Server,
    proxy: ChaosProxy,
    target: S3Target,
    reg: Registry,
}

fn setup() -> Setup {
    let server = S3Server::start();
    let bucket = server.create_bucket();
    let proxy = ChaosProxy::start(format!("127.0.0.1:{}", server.port()));
    let target = S3Target {
        endpoint: proxy.endpoint(),
        bucket,
    };
    let reg = Registry::builder(Driver::S3).s3_target(&target).start();
    Setup {
        server,
        proxy,
        target,
        reg,
    }
}

impl Setup {
    /// The blob is neither served nor stored anywhere under `blobs/`.
    fn assert_invisible(&self, digest: &str) {
        let resp = send(self.reg.head(&format!("/v2/{REPO}/blobs/{digest}")));
        assert_eq!(resp.status, 404, "{}", resp.describe());
        let hex = digest_hex(digest);
        let keys = self
            .server
            .keys(&self.target.bucket, "docker/registry/v2/blobs/");
        assert!(
            !keys.iter().any(|k| k.contains(hex)),
            "no object for {digest}: {keys:?}"
        );
    }

    fn assert_served(&self, blob: &Blob) {
        let resp = send(self.reg.get(&format!("/v2/{REPO}/blobs/{}", blob.digest)));
        resp.assert_status(200);
        assert!(resp.body == blob.data, "blob reads back whole");
    }
}

/// A request on a new connection.
fn fresh(reg: &Registry, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
    http_client().request(method, reg.resolve(path))
}

/// A registry error: 5xx (or 503) with the error JSON.
fn assert_storage_error(resp: &Resp) {
    assert!(
        resp.status >= 500,
        "a server error while storage is down: {}",
        resp.describe()
    );
    assert_error_in(resp, &[500, 502, 503, 504], &["UNKNOWN", "UNAVAILABLE"]);
}

#[test]
fn chunk_refused_while_storage_is_cut_then_retried() {
    let s = setup();
    let blob = Blob::random(3 * MIB + 100);
    let location = start_upload(&s.reg, REPO);
    let first = 2 * MIB;
    let resp = send(
        s.reg
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("0-{}", first - 1))
            .body(blob.data[..first].to_vec()),
    );
    resp.assert_status(202);
    let acked = resp.must_header("location").to_string();

    s.proxy.set(Chaos::Cut);
    let started = Instant::now();
    let resp = send(
        s.reg
            .patch(&acked)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{first}-{}", blob.data.len() - 1))
            .body(blob.data[first..].to_vec()),
    );
    assert_storage_error(&resp);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "bounded retries: answered in {:?}",
        started.elapsed()
    );
    // The commit cannot go through either. (A fresh connection: the server may close one whose
    // request body it did not read.)
    let resp = send(fresh(
        &s.reg,
        reqwest::Method::PUT,
        &with_digest(&acked, &blob.digest),
    ));
    assert!(resp.status >= 400, "{}", resp.describe());
    s.proxy.set(Chaos::Pass);

    // What was acknowledged is still there; the failed chunk is not.
    let resp = send(fresh(&s.reg, reqwest::Method::GET, &acked));
    resp.assert_status(204);
    assert_eq!(
        resp.header("range"),
        Some(format!("0-{}", first - 1).as_str())
    );
    s.assert_invisible(&blob.digest);

    let resp = send(
        s.reg
            .patch(&acked)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{first}-{}", blob.data.len() - 1))
            .body(blob.data[first..].to_vec()),
    );
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    send(s.reg.put(&with_digest(&location, &blob.digest))).assert_status(201);
    s.assert_served(&blob);
}

#[test]
fn monolithic_push_refused_while_storage_is_cut_then_retried() {
    let s = setup();
    let blob = Blob::random(6 * MIB + 5);
    let location = start_upload(&s.reg, REPO);
    s.proxy.set(Chaos::Cut);
    let resp = send(
        s.reg
            .put(&with_digest(&location, &blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone()),
    );
    assert_storage_error(&resp);
    s.proxy.set(Chaos::Pass);
    s.assert_invisible(&blob.digest);
    // The client starts over.
    push_blob(&s.reg, REPO, &blob.data);
    s.assert_served(&blob);
    let image = push_image(&s.reg, REPO, "v1", Kind::OciManifest);
    let resp = get_manifest(&s.reg, REPO, "v1", OCI_MANIFEST);
    resp.assert_status(200);
    assert!(resp.body == image.body);
}

/// A body streamed slowly across several parts; the connections to storage are cut while it
/// is still arriving.
#[test]
fn connections_cut_in_the_middle_of_a_streamed_chunk() {
    let s = setup();
    let blob = Blob::random(12 * MIB + 3);
    let head = Blob::new(blob.data[..MIB].to_vec());
    let location = start_upload(&s.reg, REPO);
    let resp = send(
        s.reg
            .patch(&location)
            .header("content-type", "application/octet-stream")
            .body(head.data.clone()),
    );
    resp.assert_status(202);
    let acked = resp.must_header("location").to_string();

    // The rest arrives at about 8 MiB/s; storage goes away after the first part is sent.
    let sent = Arc::new(AtomicBool::new(false));
    let rest = blob.data[MIB..].to_vec();
    let reader = SlowReader {
        data: rest.clone(),
        at: 0,
        sent: sent.clone(),
    };
    let url = s.reg.resolve(&acked);
    let client = http_client();
    let sender = thread::spawn(move || {
        client
            .patch(url)
            .header("content-type", "application/octet-stream")
            .body(reqwest::blocking::Body::sized(reader, rest.len() as u64))
            .send()
            .map(|r| r.status().as_u16())
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sent.load(Ordering::SeqCst) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    s.proxy.set(Chaos::Cut);
    let outcome = sender.join().unwrap();
    if let Ok(status) = outcome {
        assert!(status >= 500, "the chunk cannot succeed: {status}");
    }
    s.proxy.set(Chaos::Pass);

    // The session holds what was acknowledged, plus at most the whole 5 MiB parts of the
    // failed chunk that were stored before the cut (distribution's writer keeps them too): the
    // client asks where to go on from, as it does after a failed chunk.
    let resp = send(s.reg.get(&acked));
    resp.assert_status(204);
    let range = resp.must_header("range").to_string();
    let stored: usize = range
        .strip_prefix("0-")
        .and_then(|end| end.parse::<usize>().ok())
        .map(|end| end + 1)
        .unwrap_or_else(|| panic!("Range {range}"));
    assert!(
        stored == MIB || (stored.is_multiple_of(5 * MIB) && stored < blob.data.len()),
        "{stored} bytes stored after the cut"
    );
    eprintln!("after the cut the session holds {stored} bytes");
    let resume = resp.must_header("location").to_string();
    s.assert_invisible(&blob.digest);

    let resp = send(
        s.reg
            .patch(&resume)
            .header("content-type", "application/octet-stream")
            .body(blob.data[stored..].to_vec()),
    );
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    send(s.reg.put(&with_digest(&location, &blob.digest))).assert_status(201);
    s.assert_served(&blob);
    assert!(s.proxy.accepted() > 0);
}

/// A store answering every request with `500 InternalError`: each retry goes out on a
/// connection of its own (the S3 client library closes the one that carried a transient
/// error, which a balancer in front of the store may be about to drop), the client gets 503
/// `UNAVAILABLE`, and the log holds no error about a connection the library could not find.
#[test]
fn a_connection_that_carried_a_transient_error_is_not_reused() {
    let s = setup();
    s.proxy.set(Chaos::Fail(100));
    // Connections opened before are closed: every request from now on is refused.
    s.proxy.cut_all();
    let before = s.proxy.accepted();
    let path = format!("/v2/{REPO}/blobs/{}", sha256_digest(b"not stored"));
    let resp = send(fresh(&s.reg, reqwest::Method::GET, &path));
    assert_error_in(&resp, &[503], &["UNAVAILABLE"]);
    let opened = s.proxy.accepted() - before;
    s.proxy.set(Chaos::Pass);
    assert!(
        opened >= 4,
        "the 4 attempts of the read each on a connection of its own: {opened} opened"
    );
    let log = s.reg.log();
    assert!(
        !log.contains("unable to mark the connection"),
        "no error about a connection the client library could not close: {log}"
    );
    send(fresh(&s.reg, reqwest::Method::GET, &path)).assert_status(404);
}

/// An object store busy with other uploads can stop reading a part for seconds (moto under a
/// push storm does); registry:2 waits for it, and so must Wharf: a 48 MiB chunk sent while
/// storage takes nothing for 12 s (more than twice the few seconds after which a client library
/// may give up on a transfer making no progress) is stored whole once storage reads again.
#[test]
fn a_store_that_stops_reading_for_seconds_is_waited_for() {
    let s = setup();
    let blob = Blob::random(48 * MIB + 11);
    let location = start_upload(&s.reg, REPO);
    // Everything already relayed stays; every byte from now on is held.
    s.proxy.set(Chaos::Hold(0));
    let url = s.reg.resolve(&location);
    let body = blob.data.clone();
    let client = http_client();
    let sender = thread::spawn(move || {
        client
            .patch(url)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .map(|r| (r.status().as_u16(), r.headers().clone()))
    });
    let deadline = Instant::now() + Duration::from_secs(12);
    while Instant::now() < deadline && !sender.is_finished() {
        thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !sender.is_finished(),
        "the chunk waits for storage: {:?}",
        sender.join().unwrap()
    );
    assert!(s.proxy.holding() > 0, "storage was held");
    s.proxy.set(Chaos::Pass);
    let (status, headers) = sender.join().unwrap().expect("the chunk's answer");
    assert_eq!(status, 202, "the chunk is stored once storage reads again");
    let location = headers["location"].to_str().unwrap().to_string();
    send(s.reg.put(&with_digest(&location, &blob.digest))).assert_status(201);
    s.assert_served(&blob);
}

/// Hands out 64 KiB every 8 ms, and says when 6 MiB are out.
struct SlowReader {
    data: Vec<u8>,
    at: usize,
    sent: Arc<AtomicBool>,
}

impl Read for SlowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at >= self.data.len() {
            return Ok(0);
        }
        thread::sleep(Duration::from_millis(8));
        let n = buf.len().min(64 * 1024).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        if self.at >= 6 * MIB {
            self.sent.store(true, Ordering::SeqCst);
        }
        Ok(n)
    }
}

/// The log's warnings and errors, to say why a request failed.
fn error_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("level=error") || l.contains("level=warn"))
        .take(20)
        .collect()
}

/// How one phase of [`outages_under_load_answer_503_and_lose_nothing`] went.
struct Phase {
    name: &'static str,
    ops: Tally,
}

/// Push and pull load while storage is cut, slow (every 64 KiB relayed 5 ms late, well within
/// the client's timeouts, so operations complete slowly), then throttling 30 % of requests with
/// `503 SlowDown`: operations fail only with 503 `UNAVAILABLE` (never 500), pushes and pulls
/// both go on through latency and throttling, every image acknowledged at any time reads back
/// whole afterwards, and no pull is served a body that does not hash to its digest (the load
/// checks every digest it pulls).
#[test]
fn outages_under_load_answer_503_and_lose_nothing() {
    let s = setup();
    let load = Load::start(
        s.reg.endpoint(),
        LoadOptions {
            pushers: 2,
            pullers: 2,
            // Over one part: the layer's three chunks straddle the 5 MiB minimum.
            layer_size: 6 * MIB + 17,
            limit: Duration::from_secs(240),
            ..LoadOptions::default()
        },
    );
    let phases = [
        ("storage up", Chaos::Pass, 6),
        ("connections cut", Chaos::Cut, 6),
        (
            "latency 5 ms/64 KiB",
            Chaos::Delay(Duration::from_millis(5)),
            6,
        ),
        ("30 % SlowDown", Chaos::Throttle(30), 8),
        ("storage back", Chaos::Pass, 6),
    ];
    let mut seen = Vec::new();
    for (name, mode, ops) in phases {
        s.proxy.set(mode);
        let before = load.tally();
        // At least `ops` operations with pushes and pulls among them, or 30 s of trying.
        wait_until(Duration::from_secs(30), || {
            let now = load.tally() - before;
            let (pushes, pulls) = (now.push_ok + now.push_failed, now.pull_ok + now.pull_failed);
            pushes > 0 && pulls > 0 && pushes + pulls >= ops
        });
        seen.push(Phase {
            name,
            ops: load.tally() - before,
        });
    }
    s.proxy.set(Chaos::Pass);
    let report = load.stop();
    for p in &seen {
        eprintln!(
            "phase {:<20} pushes failed {:>3} succeeded {:>3} | pulls failed {:>3} succeeded {:>3}",
            p.name, p.ops.push_failed, p.ops.push_ok, p.ops.pull_failed, p.ops.pull_ok
        );
    }
    eprintln!(
        "{} pushes, {} pulls, {} failures, {} images acknowledged",
        report.pushes,
        report.pulls,
        report.failures.len(),
        report.pushed.len()
    );
    // Storage up and back: nothing fails. (Operations started while storage was cut may still
    // end, failed, in the slow phase after it, so that phase only has to get work through.)
    for p in [&seen[0], &seen[4]] {
        assert_eq!(
            (p.ops.push_failed, p.ops.pull_failed),
            (0, 0),
            "{}: {:?}",
            p.name,
            report.failures
        );
    }
    // Up, slow and back: pushes and pulls both complete.
    for p in [&seen[0], &seen[2], &seen[4]] {
        assert!(
            p.ops.push_ok > 0 && p.ops.pull_ok > 0,
            "{}: pushes and pulls go on: {:?}",
            p.name,
            p.ops
        );
    }
    // Throttled: the SDK's retries absorb most refusals; pulls and pushes still get through.
    assert!(
        seen[3].ops.push_ok + seen[3].ops.pull_ok > 0,
        "nothing got through 30 % SlowDown: {:?}",
        seen[3].ops
    );
    // While it is away, clients are told to come back later: 503, never 500.
    let statuses: Vec<String> = s
        .reg
        .access_lines()
        .into_iter()
        .filter(|l| l.contains(" status=5"))
        .collect();
    let not_503: Vec<&String> = statuses
        .iter()
        .filter(|l| !l.contains(" status=503"))
        .take(5)
        .collect();
    assert!(
        not_503.is_empty(),
        "5xx other than 503: {not_503:?}\nerrors logged: {:?}",
        error_lines(&s.reg.log())
    );
    assert!(
        report
            .failures
            .iter()
            .all(|f| !f.contains("digest") || f.contains("503")),
        "a corrupt body was served: {:?}",
        report.failures
    );
    // Everything acknowledged is there, whole.
    let api = s.reg.endpoint();
    for image in &report.pushed {
        pull_and_verify(&api, image)
            .unwrap_or_else(|(f, _)| panic!("acknowledged {}:{} lost: {f}", image.repo, image.tag));
    }
}
