//! The console's repository list with 10,000 repositories: response times of its first page,
//! a later page, and a search, against the real binary on the filesystem driver (and
//! `/v2/_catalog?n=50` beside them for scale).
//!
//! ```text
//! cargo bench --bench console_bench
//! ```
//!
//! The repositories are written straight into the storage tree (a `_manifests` folder each is
//! what makes a repository listed), so the run takes seconds instead of 10,000 pushes.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use support::*;

const REPOSITORIES: usize = 10_000;
const ROUNDS: usize = 40;

/// Median and 95th percentile of `ROUNDS` GETs of `path`, in milliseconds; checks each answer
/// with `check`.
fn time(reg: &Registry, path: &str, check: impl Fn(&str)) -> (f64, f64) {
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let resp = send(reg.get(path));
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        resp.assert_status(200);
        check(&resp.text());
    }
    times.sort_by(f64::total_cmp);
    (times[ROUNDS / 2], times[ROUNDS * 95 / 100])
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let repos = dir.path().join("docker/registry/v2/repositories");
    for i in 0..REPOSITORIES {
        let name = format!("team{:02}/service-{i:05}", i % 50);
        std::fs::create_dir_all(repos.join(name).join("_manifests/tags")).unwrap();
    }
    let reg = Registry::builder(Driver::Filesystem)
        .storage_dir(dir.path())
        .section("ui:\n  enabled: true\n  pagesize: 50\ncatalog:\n  maxentries: 50\n")
        .start();
    let count = |want: usize| move |html: &str| assert_eq!(html.matches("<li><a ").count(), want);
    // One warm-up: the first walk reads the directories into the page cache.
    send(reg.get("/ui/")).assert_status(200);
    println!("console repository list, {REPOSITORIES} repositories, {ROUNDS} requests each (ms):");
    for (what, path, want) in [
        ("first page", "/ui/".to_string(), 50),
        (
            "page after team25/",
            "/ui/?last=team25%2Fservice-09975".to_string(),
            50,
        ),
        (
            "search \"service-0999\"",
            "/ui/?q=service-0999".to_string(),
            10,
        ),
        ("/v2/_catalog?n=50", "/v2/_catalog?n=50".to_string(), 0),
    ] {
        let (median, p95) = time(&reg, &path, count(want));
        println!("  {what:<28} median {median:7.1}  p95 {p95:7.1}");
    }
}
