//! Security cases from registry advisories, each against the real binary: a blob deleted from one
//! repository is never served through it again from the Redis or in-memory descriptor cache,
//! tag deletes obey `storage.delete.enabled`, page sizes and tokens of absurd size cost neither
//! time nor memory, manifest bodies are capped before being read whole, and a bearer token is
//! never taken for a Basic password.

#[path = "support/auth.rs"]
mod auth_support;
#[path = "support/cluster.rs"]
mod cluster;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::*;

// ---------------------------------------------------------------------------------------------
// A blob deleted from A and still in B is never served through A
// ---------------------------------------------------------------------------------------------

fn deleted_link_stays_deleted(reg: &Registry, redis: Option<&cluster::RedisServer>) {
    let blob = Blob::random(20_000);
    push(reg, "sec/a", &blob);
    push(reg, "sec/b", &blob);
    let path = |repo: &str| format!("/v2/{repo}/blobs/{}", blob.digest);
    for _ in 0..3 {
        for repo in ["sec/a", "sec/b"] {
            send(reg.head(&path(repo))).assert_status(200);
            send(reg.get(&path(repo))).assert_status(200);
        }
    }
    if let Some(redis) = redis {
        let linked = redis
            .command(&["SISMEMBER", "repository::sec/a::blobs", &blob.digest])
            .unwrap();
        assert_eq!(
            linked.text(),
            "1",
            "the cache knows the link before the delete"
        );
    }

    // Readers of A race with the delete: a reader that read the link just before it was
    // deleted must not leave the cache saying A still has the blob.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), reg.resolve(&path("sec/a")));
            thread::spawn(move || {
                let client = http_client();
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = client.head(&url).send();
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    send(reg.delete(&path("sec/a"))).assert_status(202);
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }

    for _ in 0..20 {
        assert_error(&send(reg.get(&path("sec/a"))), 404, "BLOB_UNKNOWN");
        assert_eq!(send(reg.head(&path("sec/a"))).status, 404);
        let resp = send(reg.get(&path("sec/b")));
        resp.assert_status(200);
        assert!(resp.body == blob.data);
    }
    // Nor can it be mounted from A.
    let resp = send(reg.post(&format!(
        "/v2/sec/c/blobs/uploads/?mount={}&from=sec/a",
        blob.digest
    )));
    resp.assert_status(202);
    if let Some(redis) = redis {
        let linked = redis
            .command(&["SISMEMBER", "repository::sec/a::blobs", &blob.digest])
            .unwrap();
        assert_eq!(linked.text(), "0", "the cache forgot the link");
        let hints = redis
            .command(&[
                "SMEMBERS",
                &format!("wharf::blobs::{}::repositories", blob.digest),
            ])
            .unwrap()
            .items();
        assert!(!hints.iter().any(|r| r == "sec/a"), "{hints:?}");
    }
}

fn deleted_link_redis(driver: Driver) {
    let redis = cluster::RedisServer::start();
    let reg = Registry::builder(driver)
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "redis")
        .env("REGISTRY_REDIS_ADDR", &redis.addr())
        .start();
    deleted_link_stays_deleted(&reg, Some(&redis));
}

fn deleted_link_inmemory_cache(driver: Driver) {
    let reg = Registry::builder(driver)
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")
        .start();
    deleted_link_stays_deleted(&reg, None);
}

for_each_driver!(deleted_link_redis, deleted_link_inmemory_cache);
