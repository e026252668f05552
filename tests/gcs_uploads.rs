//! GCS uploads past the service's 1,024-component limit, on fake-gcs-server, and what a node
//! that dies mid-PATCH leaves behind.
//!
//! fake-gcs-server does not count components (its objects carry no `componentCount`), so the
//! count asserted is the one Wharf records on every object it composes (`wharf-components` in
//! the object's metadata), which it reads back to decide when to copy an upload object to one
//! component. It does not drop a cancelled upload session either (it answers 499 as GCS
//! does): the cancellation is asserted as the call Wharf counts.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;
use support::fixtures::{prng_digest, PrngReader};
use support::*;

/// `storage.gcs.chunksize` here: the smallest the key takes (256 KiB).
const CHUNK: u64 = 256 << 10;
/// The service's limit on an object's components.
const MAX_COMPONENTS: u64 = 1024;

fn small_chunks(builder: RegistryBuilder) -> RegistryBuilder {
    builder
        .without_upload_purging()
        .env("REGISTRY_STORAGE_GCS_CHUNKSIZE", &CHUNK.to_string())
}

fn emulator(target: &GcsTarget) -> String {
    format!("http://{}", target.host)
}

/// An object's metadata on the emulator; `None` when there is none.
fn object(target: &GcsTarget, name: &str) -> Option<Value> {
    let url = format!(
        "{}/storage/v1/b/{}/o/{}",
        emulator(target),
        target.bucket,
        name.replace('/', "%2F")
    );
    let resp = http_client().get(url).send().expect("GET object");
    if resp.status() == 404 {
        return None;
    }
    assert!(resp.status().is_success(), "GET {name}: {}", resp.status());
    Some(resp.json().expect("object JSON"))
}

/// The names of the objects under `prefix`.
fn names_under(target: &GcsTarget, prefix: &str) -> Vec<String> {
    let url = format!(
        "{}/storage/v1/b/{}/o?prefix={}&maxResults=1000",
        emulator(target),
        target.bucket,
        prefix.replace('/', "%2F")
    );
    let page: Value = http_client()
        .get(url)
        .send()
        .expect("list")
        .json()
        .expect("list JSON");
    assert!(page.get("nextPageToken").is_none(), "one page expected");
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The component count Wharf recorded on an upload's data object.
fn components(target: &GcsTarget, repo: &str, uuid: &str) -> u64 {
    let name = format!("docker/registry/v2/repositories/{repo}/_uploads/{uuid}/data");
    let meta = object(target, &name).unwrap_or_else(|| panic!("no {name}"));
    assert!(
        meta.get("componentCount").is_none(),
        "the emulator counts components now: assert on its count ({meta})"
    );
    meta["metadata"]["wharf-components"]
        .as_str()
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no component count on {name}: {meta}"))
}

/// 1,100 PATCHes, alternating between two nodes over one bucket: each adds one component, the
/// upload object is copied to one component once before it would pass 1,024, and the blob
/// pulled back has the digest pushed.
#[test]
fn an_upload_of_more_patches_than_the_component_limit_completes() {
    const PATCHES: u64 = 1_100;
    const PIECE: u64 = 2_000;
    let target = GcsTarget::fresh();
    let nodes = [
        small_chunks(Registry::builder(Driver::Gcs).gcs_target(&target)).start(),
        small_chunks(Registry::builder(Driver::Gcs).gcs_target(&target)).start(),
    ];
    let endpoints: Vec<Endpoint> = nodes.iter().map(Registry::endpoint).collect();
    let repo = "many/patches";
    let seed = 0x6c5_1100;
    let total = PATCHES * PIECE;
    let mut data = PrngReader::new(seed, total);

    let post = endpoints[0].start_upload(repo).expect("POST");
    let uuid = post.must_header("docker-upload-uuid").to_string();
    let mut location = post.must_header("location").to_string();
    for i in 0..PATCHES {
        let mut piece = vec![0u8; PIECE as usize];
        data.read_exact(&mut piece).expect("piece");
        let node = &endpoints[(i % 2) as usize];
        let resp = node
            .patch_chunk(&node.here(&location), i * PIECE, Payload::Bytes(piece))
            .unwrap_or_else(|f| panic!("PATCH {i}: {f}"));
        location = resp.must_header("location").to_string();
        if i + 1 == MAX_COMPONENTS {
            assert_eq!(components(&target, repo, &uuid), MAX_COMPONENTS);
        }
    }
    // 1,024 appends, then a copy to one component that the next append joins, then one
    // component per append.
    assert_eq!(
        components(&target, repo, &uuid),
        PATCHES - MAX_COMPONENTS + 1
    );
    let copies: usize = nodes
        .iter()
        .map(|n| log_lines(&n.log(), |l| l.contains("copied to a single component")).len())
        .sum();
    assert_eq!(copies, 1, "one copy to a single component");

    let digest = prng_digest(seed, total);
    endpoints[1]
        .finish(&endpoints[1].here(&location), &digest)
        .expect("PUT");
    let (pulled, size, _) = endpoints[0].pull_digest(repo, &digest).expect("pull");
    assert_eq!((pulled, size), (digest, total));
    assert!(
        names_under(&target, ".wharf-scratch/parts/").is_empty(),
        "parts left behind"
    );
}

/// One PATCH of more than 40 chunks streams into one part: the upload object is one
/// component after it and two after a second such PATCH; the blob verifies on pull.
#[test]
fn a_patch_of_many_chunks_adds_one_component() {
    let target = GcsTarget::fresh();
    let node = small_chunks(Registry::builder(Driver::Gcs).gcs_target(&target)).start();
    let ep = node.endpoint();
    let repo = "large/patch";
    let seed = 0x6c5_0041;
    let piece = 41 * CHUNK + 12_345;
    let total = 2 * piece;
    let mut data = PrngReader::new(seed, total);

    let post = ep.start_upload(repo).expect("POST");
    let uuid = post.must_header("docker-upload-uuid").to_string();
    let mut location = post.must_header("location").to_string();
    for (i, expected) in [1u64, 2].into_iter().enumerate() {
        let mut body = vec![0u8; piece as usize];
        data.read_exact(&mut body).expect("piece");
        let resp = ep
            .patch_chunk(&location, i as u64 * piece, Payload::Bytes(body))
            .unwrap_or_else(|f| panic!("PATCH {i}: {f}"));
        location = resp.must_header("location").to_string();
        assert_eq!(components(&target, repo, &uuid), expected);
    }
    let digest = prng_digest(seed, total);
    ep.finish(&location, &digest).expect("PUT");
    let (pulled, size, _) = ep.pull_digest(repo, &digest).expect("pull");
    assert_eq!((pulled, size), (digest, total));
    assert!(names_under(&target, ".wharf-scratch/").is_empty());
}

/// A PATCH whose body stops half-way: the connection stays open, so the node is still
/// streaming it.
struct StalledPatch {
    stream: TcpStream,
    sent: u64,
    declared: u64,
}

impl StalledPatch {
    /// Starts an upload and sends `sent` of `declared` bytes of a PATCH body.
    fn start(ep: &Endpoint, repo: &str, seed: u64, sent: u64, declared: u64) -> StalledPatch {
        let post = ep.start_upload(repo).expect("POST");
        let location = location_path(post.must_header("location"));
        let mut stream = TcpStream::connect(ep.host()).expect("connect");
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {declared}\r\nConnection: close\r\n\r\n",
            ep.host()
        );
        stream.write_all(head.as_bytes()).expect("head");
        let mut body = vec![0u8; sent as usize];
        PrngReader::new(seed, sent)
            .read_exact(&mut body)
            .expect("body");
        stream.write_all(&body).expect("body");
        stream.flush().expect("flush");
        StalledPatch {
            stream,
            sent,
            declared,
        }
    }

    /// Sends the rest of the body; returns the answer.
    fn finish(mut self, seed: u64) -> Resp {
        let mut all = vec![0u8; self.declared as usize];
        PrngReader::new(seed, self.declared)
            .read_exact(&mut all)
            .expect("body");
        self.stream
            .write_all(&all[self.sent as usize..])
            .expect("rest of the body");
        self.stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut answer = Vec::new();
        let mut buf = [0u8; 16 << 10];
        for _ in 0..10_000 {
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        support::raw::parse_raw_response(&answer).expect("an answer")
    }
}

/// The session markers in the scratch area.
fn markers(target: &GcsTarget) -> Vec<String> {
    names_under(target, ".wharf-scratch/sessions/")
}

/// Waits for a marker not in `known`.
fn new_marker(target: &GcsTarget, known: &[String]) -> String {
    let mut found = None;
    wait_until(Duration::from_secs(30), || {
        found = markers(target).into_iter().find(|m| !known.contains(m));
        found.is_some()
    });
    found.expect("the PATCH opened an upload session")
}

/// A purging node (`age` 8 s, every second) until its first pass over the scratch area.
fn purge_once(target: &GcsTarget, dry_run: bool) -> Registry {
    let node = Registry::builder(Driver::Gcs)
        .gcs_target(target)
        .debug_server(true)
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "true")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "8s")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "1s")
        .env(
            "REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN",
            &dry_run.to_string(),
        )
        .start();
    let done = wait_until(Duration::from_secs(60), || {
        node.log()
            .contains("stale write state on the object store done")
    });
    assert!(done, "no purge pass: {}", tail(&node.log(), 20));
    node
}

/// A node killed mid-PATCH leaves an open upload session (and its marker); upload purging
/// (dry run: only logged) cancels it and deletes the marker once older than `age`, and leaves
/// a live PATCH's session alone: the PATCH then completes and its blob verifies.
#[test]
fn upload_purging_cleans_what_a_killed_node_left_mid_patch() {
    let target = GcsTarget::fresh();
    let declared = 8 * CHUNK;
    let sent = 3 * CHUNK;

    let mut dying = small_chunks(Registry::builder(Driver::Gcs).gcs_target(&target)).start();
    let stalled = StalledPatch::start(&dying.endpoint(), "dead/node", 1, sent, declared);
    let dead_marker = new_marker(&target, &[]);
    dying.kill();
    drop(stalled);

    // Older than `age`.
    std::thread::sleep(Duration::from_secs(9));
    let mut dry = purge_once(&target, true);
    assert!(
        dry.log().contains("would delete a stale scratch object"),
        "{}",
        tail(&dry.log(), 20)
    );
    dry.terminate();
    dry.wait_exit(Duration::from_secs(30));
    assert!(markers(&target).contains(&dead_marker), "a dry run deletes");

    let live_node = small_chunks(Registry::builder(Driver::Gcs).gcs_target(&target)).start();
    let live_seed = 2;
    let live = StalledPatch::start(
        &live_node.endpoint(),
        "live/node",
        live_seed,
        sent,
        declared,
    );
    let live_marker = new_marker(&target, std::slice::from_ref(&dead_marker));

    let mut purging = purge_once(&target, false);
    let cancels: f64 = purging
        .scrape()
        .matching(
            "wharf_external_call_seconds_count",
            &[("system", "gcs"), ("operation", "CancelUpload")],
        )
        .map(|(_, v)| v)
        .sum();
    purging.terminate();
    purging.wait_exit(Duration::from_secs(30));
    let left = markers(&target);
    assert!(!left.contains(&dead_marker), "the dead node's marker stays");
    assert!(
        left.contains(&live_marker),
        "a live PATCH's marker was deleted"
    );
    // fake-gcs-server answers a cancellation as GCS does (499) but keeps the session: the
    // call is counted instead. One: the dead node's session, not the live one.
    assert_eq!(cancels, 1.0, "upload sessions cancelled");

    let answer = live.finish(live_seed);
    assert_eq!(answer.status, 202, "live PATCH: {answer:?}");
    let ep = live_node.endpoint();
    let digest = prng_digest(live_seed, declared);
    let location = answer.must_header("location").to_string();
    ep.finish(&location, &digest).expect("PUT");
    let (pulled, size, _) = ep.pull_digest("live/node", &digest).expect("pull");
    assert_eq!((pulled, size), (digest, declared));
    assert!(markers(&target).is_empty());
}
