//! Blob-descriptor caches of other nodes after a collection or a delete: node A collects (online
//! garbage collection, one-second grace period), node B serves with an in-memory or a Redis
//! cache over the same folder. A blob B has answered for is collected by A; B then answers 404
//! for it, even with its `_layers` link written back (as distribution's own `garbage-collect`
//! leaves links behind), which only a cache could answer from. A blob link deleted through A is
//! 404 through B at once, while the same blob in another repository still answers.

mod support;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use support::*;

const GC_SECTION: &str =
    "gc:\n  enabled: true\n  interval: 1s\n  graceperiod: 1s\n  leasettl: 3s\n";

/// Node A collects, node B only serves; both over `dir`, with Redis (cache) when given, else
/// an in-memory cache.
fn nodes(dir: &Path, redis: Option<&RedisServer>) -> (Registry, Registry) {
    let build = |name: &str, gc: bool| {
        let mut b = Registry::builder(Driver::Filesystem)
            .storage_dir(dir)
            .node(name)
            .delete_enabled(true);
        b = match redis {
            Some(r) => b.redis(&r.addr(), Duration::from_millis(500)),
            None => b.env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory"),
        };
        if gc {
            b = b.section(GC_SECTION);
        }
        b.start()
    };
    (build("a", true), build("b", false))
}

fn head_status(ep: &Endpoint, repo: &str, digest: &str) -> u16 {
    send(ep.request(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))).status
}

fn layer_link(dir: &Path, repo: &str, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    dir.join(format!(
        "docker/registry/v2/repositories/{repo}/_layers/sha256/{hex}/link"
    ))
}

fn blob_data(dir: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    dir.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

fn collected_blob_not_served(redis: bool) {
    let server = redis.then(RedisServer::start);
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = nodes(dir.path(), server.as_ref());
    let (ea, eb) = (a.endpoint(), b.endpoint());

    // Kept: referenced by a tagged manifest, so the collector leaves it (and its links) alone.
    let kept = Blob::random(2048);
    push(&eb, "cache/c", &kept);
    let config = image_config("amd64", 7, 1);
    push(&eb, "cache/c", &config);
    let manifest = image_manifest(
        OCI_MANIFEST,
        (OCI_CONFIG, &config),
        &[(OCI_LAYER, &kept)],
        None,
    );
    push_manifest(&eb, "cache/c", "v1", &manifest);
    // Linked in a second repository too, through a mount.
    let mount = send(eb.post(&format!(
        "/v2/cache/b/blobs/uploads/?mount={}&from=cache/c",
        kept.digest
    )));
    assert_eq!(mount.status, 201, "{}", mount.describe());

    // Collectable: referenced by nothing.
    let doomed = Blob::random(4096);
    push(&eb, "cache/a", &doomed);

    // B answers for both, from storage and then from its cache.
    for _ in 0..3 {
        assert_eq!(head_status(&eb, "cache/a", &doomed.digest), 200);
        assert_eq!(head_status(&eb, "cache/b", &kept.digest), 200);
        std::thread::sleep(Duration::from_millis(300));
    }

    // A deletes the link in cache/b: B answers 404 there at once, 200 in cache/c.
    let deleted = send(ea.delete(&format!("/v2/cache/b/blobs/{}", kept.digest)));
    assert_eq!(deleted.status, 202, "{}", deleted.describe());
    assert_eq!(head_status(&eb, "cache/b", &kept.digest), 404);
    assert_eq!(head_status(&eb, "cache/c", &kept.digest), 200);

    // A collects the unreferenced blob (bounded wait for its data to go).
    let data = blob_data(dir.path(), &doomed.digest);
    let gone = wait_until(Duration::from_secs(60), || !data.exists());
    assert!(
        gone,
        "the collector did not delete {}\n--- a ---\n{}",
        doomed.digest,
        tail(&a.log(), 40)
    );
    assert_eq!(head_status(&eb, "cache/a", &doomed.digest), 404);
    // The link written back, as distribution's garbage-collect leaves it: only a stale cache
    // entry could still say the blob exists.
    let link = layer_link(dir.path(), "cache/a", &doomed.digest);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::fs::write(&link, &doomed.digest).unwrap();
    for _ in 0..3 {
        assert_eq!(head_status(&eb, "cache/a", &doomed.digest), 404);
        let get = send(eb.get(&format!("/v2/cache/a/blobs/{}", doomed.digest)));
        assert_error(&get, 404, "BLOB_UNKNOWN");
    }
    // The kept blob still answers and pulls everywhere it is linked.
    for ep in [&ea, &eb] {
        assert_eq!(head_status(ep, "cache/c", &kept.digest), 200);
        let (digest, size, _) = ep
            .pull_digest("cache/c", &kept.digest)
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!((digest.as_str(), size), (kept.digest.as_str(), 2048));
    }
}

#[test]
fn collected_blob_not_served_inmemory() {
    collected_blob_not_served(false);
}

#[test]
fn collected_blob_not_served_redis() {
    collected_blob_not_served(true);
}
