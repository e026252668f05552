//! A 1 GiB blob, streamed in and out (never held in memory by the test), on filesystem storage;
//! the server's peak resident memory stays under 256 MiB.

mod support;

use std::io::{self, Read};

use reqwest::blocking::Body;
use support::*;

const SEGMENT: u64 = 64 * 1024 * 1024;
const SEGMENTS: u64 = 16;
const TOTAL: u64 = SEGMENT * SEGMENTS; // 1 GiB
const MEMORY_LIMIT: u64 = 256 * 1024 * 1024;
const REPO: &str = "big/blob";

/// The blob: segment `i` is the PRNG stream seeded with `seed + i`, `SEGMENT` bytes long.
struct BlobStream {
    seed: u64,
    next_segment: u64,
    current: PrngReader,
}

impl BlobStream {
    fn new(seed: u64) -> Self {
        BlobStream {
            seed,
            next_segment: 1,
            current: PrngReader::new(seed, SEGMENT),
        }
    }
}

impl Read for BlobStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = self.current.read(buf)?;
            if n > 0 || self.next_segment == SEGMENTS {
                return Ok(n);
            }
            self.current = PrngReader::new(self.seed + self.next_segment, SEGMENT);
            self.next_segment += 1;
        }
    }
}

fn expected_digest(seed: u64) -> String {
    let mut sink = HashingSink::default();
    io::copy(&mut BlobStream::new(seed), &mut sink).unwrap();
    assert_eq!(sink.written, TOTAL);
    sink.digest()
}

/// Pull the blob back streaming, check its digest and length, and the server's peak memory.
fn pull_and_check(reg: &Registry, digest: &str) {
    let path = format!("/v2/{REPO}/blobs/{digest}");
    let resp = send(reg.head(&path));
    resp.assert_status(200);
    assert_eq!(
        resp.header("content-length"),
        Some(TOTAL.to_string().as_str())
    );

    let mut resp = reg.get(&path).send().expect("GET the blob");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok()),
        Some(digest)
    );
    let mut sink = HashingSink::default();
    resp.copy_to(&mut sink).expect("stream the blob");
    assert_eq!(sink.written, TOTAL);
    assert_eq!(sink.digest(), digest);

    let peak = vm_hwm(reg.pid());
    assert!(
        peak < MEMORY_LIMIT,
        "server VmHWM {} MiB is over {} MiB",
        peak / (1024 * 1024),
        MEMORY_LIMIT / (1024 * 1024)
    );
}

#[test]
fn one_gib_monolithic() {
    let seed = unique_seed();
    let digest = expected_digest(seed);
    let reg = Registry::start(Driver::Filesystem);

    let location = start_upload(&reg, REPO);
    let resp = send(
        reg.put(&with_digest(&location, &digest))
            .header("content-type", "application/octet-stream")
            .body(Body::sized(BlobStream::new(seed), TOTAL)),
    );
    resp.assert_status(201);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    pull_and_check(&reg, &digest);
}

#[test]
fn one_gib_chunked() {
    let seed = unique_seed();
    let digest = expected_digest(seed);
    let reg = Registry::start(Driver::Filesystem);

    let mut location = start_upload(&reg, REPO);
    for i in 0..SEGMENTS {
        let start = i * SEGMENT;
        let end = start + SEGMENT - 1;
        let resp = send(
            reg.patch(&location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{end}"))
                .body(Body::sized(PrngReader::new(seed + i, SEGMENT), SEGMENT)),
        );
        resp.assert_status(202);
        assert_eq!(resp.header("range"), Some(format!("0-{end}").as_str()));
        location = resp.must_header("location").to_string();
    }
    let resp = send(reg.put(&with_digest(&location, &digest)));
    resp.assert_status(201);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    pull_and_check(&reg, &digest);
}
