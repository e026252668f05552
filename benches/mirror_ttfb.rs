//! Time to first byte of a 64 MiB blob pulled through the pull-through cache: uncached (fetched
//! from a second `wharf` on loopback while it is served) and cached (from the mirror's storage),
//! and the time to the last byte of each.
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
        println!("usage: cargo bench --bench mirror_ttfb -- --run [--rounds N] [--mib N]");
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
    let upstream = Registry::start(Driver::Filesystem);
    let mut rows = Vec::new();
    for round in 0..rounds {
        let blob = Blob::random(mib << 20);
        let repo = format!("bench/r{round}");
        push(&upstream, &repo, &blob);
        let mirror = Registry::builder(Driver::Filesystem)
            .section(&format!(
                "proxy:\n  remoteurl: {}\n",
                upstream.endpoint().url()
            ))
            .start();
        let url = format!(
            "{}/v2/{repo}/blobs/{}",
            mirror.endpoint().url(),
            blob.digest
        );
        let (miss_first, miss_last, d1) = timed_get(&url);
        let (hit_first, hit_last, d2) = timed_get(&url);
        assert_eq!(d1, blob.digest);
        assert_eq!(d2, blob.digest);
        rows.push((miss_first, miss_last, hit_first, hit_last));
    }
    println!("| round | uncached first byte | uncached last byte | cached first byte | cached last byte |");
    println!("|---|---|---|---|---|");
    for (i, (a, b, c, d)) in rows.iter().enumerate() {
        println!("| {i} | {a:.2?} | {b:.2?} | {c:.2?} | {d:.2?} |");
    }
    ExitCode::SUCCESS
}
