//! Blob GETs on filesystem storage go out with `sendfile` on plain HTTP/1: many clients pull
//! blobs of every size (whole, ranged, HEAD, missing) over keep-alive connections at once and
//! every byte is checked; pipelined requests on one connection are answered in order.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use support::*;

const REPO: &str = "pull/keepalive";

/// Sizes around the server's 8 MiB frame and its 512 KiB read chunk, and tiny ones.
const SIZES: [usize; 7] = [
    1,
    4096,
    (512 << 10) + 1,
    1_000_003,
    8 << 20,
    (8 << 20) + 1,
    (19 << 20) + 12_345,
];
const CLIENTS: usize = 8;
const REQUESTS_PER_CLIENT: usize = 40;

fn push_all(reg: &Registry) -> Vec<Blob> {
    SIZES
        .iter()
        .map(|&len| {
            let blob = Blob::random(len);
            push(reg, REPO, &blob);
            blob
        })
        .collect()
}

#[test]
fn concurrent_pulls_over_keepalive_connections_return_every_byte() {
    let reg = Registry::start(Driver::Filesystem);
    let blobs = push_all(&reg);
    let missing = sha256_digest(b"pull-keepalive: never pushed");
    thread::scope(|scope| {
        let workers: Vec<_> = (0..CLIENTS)
            .map(|client| {
                let (reg, blobs, missing) = (&reg, &blobs, &missing);
                scope.spawn(move || {
                    // One client per thread: its pool keeps one connection to the server alive.
                    let endpoint = Endpoint::new(reg.url());
                    let mut prng = Prng::new(unique_seed() ^ client as u64);
                    for i in 0..REQUESTS_PER_CLIENT {
                        let blob = &blobs[(prng.next_u64() % blobs.len() as u64) as usize];
                        let path = format!("/v2/{REPO}/blobs/{}", blob.digest);
                        let what =
                            format!("client {client} request {i}, {} bytes", blob.data.len());
                        match prng.next_u64() % 6 {
                            0 => {
                                let resp = send(endpoint.head(&path));
                                resp.assert_status(200);
                                assert!(resp.body.is_empty(), "{what}: HEAD has no body");
                                assert_eq!(
                                    resp.header("content-length"),
                                    Some(blob.data.len().to_string().as_str()),
                                    "{what}"
                                );
                            }
                            1 => {
                                let start = (prng.next_u64() % blob.size()) as usize;
                                let end = start
                                    + (prng.next_u64() % (blob.size() - start as u64)) as usize;
                                let resp = send(
                                    endpoint
                                        .get(&path)
                                        .header("range", format!("bytes={start}-{end}")),
                                );
                                assert_eq!(resp.status, 206, "{what}: {}", resp.describe());
                                assert!(
                                    resp.body == blob.data[start..=end],
                                    "{what}: bytes {start}-{end} differ"
                                );
                            }
                            2 => {
                                let resp =
                                    send(endpoint.get(&format!("/v2/{REPO}/blobs/{missing}")));
                                assert_error(&resp, 404, "BLOB_UNKNOWN");
                            }
                            _ => {
                                let resp = send(endpoint.get(&path));
                                resp.assert_status(200);
                                assert_eq!(resp.body.len(), blob.data.len(), "{what}: length");
                                assert_eq!(
                                    sha256_digest(&resp.body),
                                    blob.digest,
                                    "{what}: digest"
                                );
                            }
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a pulling client failed");
        }
    });
}

/// One answer read off a raw connection: status, head, body.
struct Answer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 answer from `stream` (after `pending`, bytes already read past the
/// previous answer); the body by `Content-Length`, none for a HEAD.
fn read_answer(stream: &mut TcpStream, pending: &mut Vec<u8>, head_request: bool) -> Answer {
    let mut buf = vec![0u8; 1 << 16];
    let head_end = loop {
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).expect("read an answer head");
        assert!(n > 0, "connection closed before an answer's head");
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_string();
    pending.drain(..head_end);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let length: usize = if head_request {
        0
    } else {
        head.lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("content-length")
    };
    while pending.len() < length {
        let n = stream.read(&mut buf).expect("read an answer body");
        assert!(n > 0, "connection closed inside a body");
        pending.extend_from_slice(&buf[..n]);
    }
    let body = pending.drain(..length).collect();
    Answer { status, head, body }
}

/// A pipelined request: method, path, `Range`, the status and body it must get.
type Pipelined<'a> = (&'a str, String, Option<&'a str>, u16, Option<&'a [u8]>);

#[test]
fn pipelined_requests_are_answered_in_order() {
    let reg = Registry::start(Driver::Filesystem);
    let blobs = push_all(&reg);
    let missing = sha256_digest(b"pull-keepalive: never pushed either");
    let (small, large, middle) = (&blobs[1], &blobs[6], &blobs[3]);
    let requests: Vec<Pipelined> = vec![
        (
            "GET",
            format!("/v2/{REPO}/blobs/{}", large.digest),
            None,
            200,
            Some(&large.data),
        ),
        (
            "HEAD",
            format!("/v2/{REPO}/blobs/{}", small.digest),
            None,
            200,
            None,
        ),
        (
            "GET",
            format!("/v2/{REPO}/blobs/{}", large.digest),
            Some("bytes=8388600-8388615"),
            206,
            Some(&large.data[8_388_600..8_388_616]),
        ),
        (
            "GET",
            format!("/v2/{REPO}/blobs/{missing}"),
            None,
            404,
            None,
        ),
        (
            "GET",
            format!("/v2/{REPO}/blobs/{}", small.digest),
            None,
            200,
            Some(&small.data),
        ),
        (
            "GET",
            format!("/v2/{REPO}/blobs/{}", middle.digest),
            None,
            200,
            Some(&middle.data),
        ),
    ];
    let mut stream =
        TcpStream::connect_timeout(&reg.addr(), Duration::from_secs(10)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    // Every request in one write: the server reads them all before the first answer is out.
    let mut all = String::new();
    for (method, path, range, _, _) in &requests {
        all.push_str(&format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n",
            reg.host()
        ));
        if let Some(range) = range {
            all.push_str(&format!("Range: {range}\r\n"));
        }
        all.push_str("\r\n");
    }
    stream.write_all(all.as_bytes()).expect("send the requests");
    let mut pending = Vec::new();
    for (i, (method, path, _, status, body)) in requests.iter().enumerate() {
        let answer = read_answer(&mut stream, &mut pending, *method == "HEAD");
        assert_eq!(
            answer.status, *status,
            "answer {i} ({method} {path}): {}",
            answer.head
        );
        if let Some(body) = body {
            assert!(
                answer.body == *body,
                "answer {i} ({method} {path}): body differs"
            );
        }
    }
}
