//! Time to first byte of a 64 MiB blob pulled through the pull-through cache: uncached (fetched
//! from a second `wharf`, behind a proxy pausing 1 ms per 64 KiB piece, while it is served), a
//! waiter (the same blob asked of a second node while the first fetches it: it streams from the
//! file being written) and cached (from storage), and the time to the last byte of each.
//!
//! ```sh
//! cargo bench --bench mirror_ttfb -- --run               # 3 rounds of 64 MiB
//! cargo bench --bench mirror_ttfb -- --run --mib 256
//! ```
//! Without `--run` it prints this usage and exits (so `cargo test --all-targets` starts nothing).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use support::*;

/// Time to the first body byte and to the last, reading `url` with a plain blocking client.
fn timed_get(url: &str) -> (Duration, Duration, String) {
    timed_get_signalling(url, None)
}

/// [`timed_get`], telling `first_byte` when the first body byte arrived.
fn timed_get_signalling(
    url: &str,
    first_byte: Option<std::sync::mpsc::Sender<()>>,
) -> (Duration, Duration, String) {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("client");
    let started = Instant::now();
    let mut resp = client.get(url).send().expect("GET");
    assert_eq!(resp.status(), 200, "GET {url}");
    let mut buf = vec![0u8; 1 << 16];
    let mut hasher = Sha256Stream::default();
    let n = resp.read(&mut buf).expect("first read");
    let first = started.elapsed();
    if let Some(tx) = first_byte {
        let _ = tx.send(());
    }
    hasher.update(&buf[..n]);
    loop {
        let n = resp.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    (first, started.elapsed(), hasher.finish())
}

/// sha256 over a stream, as `sha256:<hex>`.
#[derive(Default)]
struct Sha256Stream(sha2::Sha256);

impl Sha256Stream {
    fn update(&mut self, data: &[u8]) {
        sha2::Digest::update(&mut self.0, data);
    }

    fn finish(self) -> String {
        let out = sha2::Digest::finalize(self.0);
        format!(
            "sha256:{}",
            out.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--run") {
        println!(
            "usage: cargo bench --bench mirror_ttfb -- --run [--rounds N] [--mib N] [--pause-us N]"
        );
        return ExitCode::SUCCESS;
    }
    let value = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (rounds, mib) = (value("--rounds", 3), value("--mib", 64));
    let pause = Duration::from_micros(value("--pause-us", 1000) as u64);
    let upstream = Registry::start(Driver::Filesystem);
    // The upstream seen through a pause per 64 KiB piece: a remote registry, not loopback.
    let slow = ChaosProxy::start(upstream.addr().to_string());
    if !pause.is_zero() {
        slow.set(Chaos::Delay(pause));
    }
    let mut rows = Vec::new();
    for round in 0..rounds {
        let blob = Blob::random(mib << 20);
        let repo = format!("bench/r{round}");
        push(&upstream, &repo, &blob);
        // Two nodes over one folder: the second one's request waits on the first one's fetch.
        let storage = tempfile::tempdir().expect("storage");
        let nodes: Vec<Registry> = (1..=2)
            .map(|i| {
                Registry::builder(Driver::Filesystem)
                    .storage_dir(storage.path())
                    .node(&format!("node{i}"))
                    .section(&format!("proxy:\n  remoteurl: {}\n", slow.endpoint()))
                    .start()
            })
            .collect();
        let url = |n: &Registry| format!("{}/v2/{repo}/blobs/{}", n.endpoint().url(), blob.digest);
        let (first_byte_tx, first_byte_rx) = std::sync::mpsc::channel();
        let miss_url = url(&nodes[0]);
        let miss = std::thread::spawn(move || timed_get_signalling(&miss_url, Some(first_byte_tx)));
        first_byte_rx
            .recv_timeout(Duration::from_secs(300))
            .expect("the miss's first byte");
        let (wait_first, wait_last, d0) = timed_get(&url(&nodes[1]));
        let (miss_first, miss_last, d1) = miss.join().expect("miss");
        let (hit_first, hit_last, d2) = timed_get(&url(&nodes[0]));
        assert_eq!(d0, blob.digest);
        assert_eq!(d1, blob.digest);
        assert_eq!(d2, blob.digest);
        rows.push([
            miss_first, miss_last, wait_first, wait_last, hit_first, hit_last,
        ]);
    }
    println!(
        "{mib} MiB blob, upstream paused {pause:?} per 64 KiB piece; the waiter asks the other node once the miss's first byte arrived"
    );
    println!("| round | uncached first byte | uncached last byte | waiter first byte | waiter last byte | cached first byte | cached last byte |");
    println!("|---|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        println!(
            "| {i} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.2?} | {:.2?} |",
            r[0], r[1], r[2], r[3], r[4], r[5]
        );
    }
    ExitCode::SUCCESS
}
