//! The cluster lease, through the library, against each place it can live: two "nodes" (two
//! backend instances over one storage folder, one in-memory store, one moto bucket, one real
//! redis-server) contend for it. One holder at a time; a holder that keeps renewing keeps it
//! past its time to live; a holder that dies without releasing is taken over once its lease
//! expires; a release frees it at once; of many simultaneous contenders exactly one wins.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::s3::{self, ACCESS_KEY, REGION, SECRET_KEY};
use wharf::coord::redis_lease::RedisLeases;
use wharf::coord::storage_lease::StorageLeases;
use wharf::coord::{Lease, LeaseBackend};
use wharf::storage::drivers::filesystem::FilesystemDriver;
use wharf::storage::drivers::inmemory::InMemoryDriver;
use wharf::storage::drivers::s3::{S3Driver, S3Settings};
use wharf::storage::StorageDriver;

const TTL: Duration = Duration::from_secs(3);

/// Bound on waiting for a takeover: the time to live, plus generous slack for a loaded machine.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(30);

async fn contend(
    a: Arc<dyn LeaseBackend>,
    b: Arc<dyn LeaseBackend>,
    others: Vec<Arc<dyn LeaseBackend>>,
) {
    let name = format!("test-{}", rand_suffix());
    let node_a = Lease::new(a.clone(), &name, TTL);
    let node_b = Lease::new(b.clone(), &name, TTL);

    let held = node_a
        .try_acquire()
        .await
        .expect("acquire")
        .expect("a free lease is taken");
    assert!(held.is_held());
    assert!(
        node_b.try_acquire().await.expect("acquire").is_none(),
        "a second holder"
    );
    let seen = node_b
        .holder()
        .await
        .expect("holder")
        .expect("a holder is visible");
    assert!(!seen.holder.is_empty());

    // Renewals keep it past its time to live.
    tokio::time::sleep(TTL + TTL / 2).await;
    assert!(held.is_held(), "the holder lost a lease it kept renewing");
    assert!(
        node_b.try_acquire().await.expect("acquire").is_none(),
        "taken over while renewed"
    );

    // The holder dies without releasing: the other node takes over after expiry.
    drop(held);
    let started = Instant::now();
    let taken = loop {
        if let Some(h) = node_b.try_acquire().await.expect("acquire") {
            break h;
        }
        assert!(
            started.elapsed() < TAKEOVER_LIMIT,
            "no takeover after expiry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(taken.is_held());
    assert!(node_a.try_acquire().await.expect("acquire").is_none());

    // A release frees it at once.
    taken.release().await;
    let again = node_a
        .try_acquire()
        .await
        .expect("acquire")
        .expect("a released lease is free");
    again.release().await;

    // Many contenders at once: exactly one wins.
    let race_name = format!("race-{}", rand_suffix());
    let mut backends = vec![a, b];
    backends.extend(others);
    let race_name = race_name.as_str();
    let attempts: Vec<_> = backends
        .iter()
        .flat_map(|backend| (0..4).map(move |_| Lease::new(backend.clone(), race_name, TTL)))
        .map(|lease| tokio::spawn(async move { lease.try_acquire().await.expect("acquire") }))
        .collect();
    let mut winners = Vec::new();
    for attempt in attempts {
        if let Some(h) = attempt.await.expect("join") {
            winners.push(h);
        }
    }
    assert_eq!(winners.len(), 1, "contenders that all won the same lease");
    for w in winners {
        w.release().await;
    }
}

fn rand_suffix() -> String {
    format!("{:08x}", rand_u32())
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    t ^ std::process::id()
}

fn storage(driver: Arc<dyn StorageDriver>) -> Arc<dyn LeaseBackend> {
    Arc::new(StorageLeases::new(driver))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_on_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let node = || storage(Arc::new(FilesystemDriver::new(dir.path())));
    contend(node(), node(), vec![node()]).await;
    // Nothing but numbered records is left behind, and old epochs are pruned.
    let leases = dir.path().join("wharf/leases");
    for entry in std::fs::read_dir(&leases).unwrap() {
        let records: Vec<_> = std::fs::read_dir(entry.unwrap().path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(records.len() <= 3, "epochs not pruned: {records:?}");
        assert!(
            records
                .iter()
                .all(|r| r.len() == 20 && r.parse::<u64>().is_ok()),
            "{records:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_in_memory() {
    let shared: Arc<dyn StorageDriver> = Arc::new(InMemoryDriver::new());
    contend(
        storage(shared.clone()),
        storage(shared.clone()),
        vec![storage(shared)],
    )
    .await;
}

fn s3_settings(bucket: &str) -> S3Settings {
    S3Settings {
        driver_name: "s3",
        bucket: bucket.to_string(),
        region: REGION.to_string(),
        endpoint: Some(s3::shared().endpoint()),
        redirect_endpoint: None,
        force_path_style: true,
        credentials: Some((ACCESS_KEY.into(), SECRET_KEY.into(), None)),
        root: "wharf-root".into(),
        chunk_size: 5 << 20,
        copy_chunk_size: 5 << 20,
        copy_max_concurrency: 4,
        copy_threshold: 6 << 20,
        encrypt: false,
        key_id: None,
        storage_class: "STANDARD".into(),
        object_acl: Some("private".into()),
        skip_verify: false,
        user_agent: Some("wharf tests".into()),
        dual_stack: false,
        accelerate: false,
        fips: false,
        log_calls: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_on_s3() {
    let bucket = tokio::task::spawn_blocking(|| s3::shared().create_bucket())
        .await
        .unwrap();
    let node = || {
        storage(Arc::new(
            S3Driver::new(&s3_settings(&bucket)).expect("driver"),
        ))
    };
    contend(node(), node(), vec![node()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_in_redis() {
    let server = tokio::task::spawn_blocking(support::RedisServer::start)
        .await
        .unwrap();
    let cfg = wharf::config::RedisConfig {
        addr: Some(server.addr()),
        ..Default::default()
    };
    let node =
        || -> Arc<dyn LeaseBackend> { Arc::new(RedisLeases::new(&cfg).expect("redis leases")) };
    contend(node(), node(), vec![node()]).await;
    // The key carries Redis's own expiry.
    let keys = server.keys("wharf::lease::*");
    assert!(
        keys.iter().all(|k| k.starts_with("wharf::lease::")),
        "{keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_create_on_every_local_driver() {
    let dir = tempfile::tempdir().unwrap();
    let drivers: Vec<Arc<dyn StorageDriver>> = vec![
        Arc::new(FilesystemDriver::new(dir.path())),
        Arc::new(InMemoryDriver::new()),
    ];
    for d in drivers {
        assert!(d.put_content_if_absent("/x/y", "one".into()).await.unwrap());
        assert!(!d.put_content_if_absent("/x/y", "two".into()).await.unwrap());
        assert_eq!(&d.get_content("/x/y").await.unwrap()[..], b"one");
        assert_eq!(
            d.list("/x").await.unwrap(),
            vec!["y".to_string()],
            "{}",
            d.name()
        );
    }
}

/// Short-lived per-object leases (fetch claims) that ended long ago are deleted from the
/// storage; a held one and one that ended recently stay, and a deleted one can be taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_leases_are_forgotten_in_the_storage() {
    let driver: Arc<dyn StorageDriver> = Arc::new(InMemoryDriver::new());
    let backend = storage(driver.clone());
    let held_one = Lease::new(backend.clone(), "claim-held", TTL)
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    let ended = Lease::new(backend.clone(), "claim-ended", TTL)
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    ended.release().await;
    let other = Lease::new(backend.clone(), "other-ended", TTL)
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    other.release().await;

    // Ended a minute ago at the earliest: nothing is old enough yet.
    let n = backend
        .forget_idle("claim-", Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert_eq!(n, 0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let n = backend
        .forget_idle("claim-", Duration::from_millis(10), 100)
        .await
        .unwrap();
    assert_eq!(n, 1, "only the ended claim goes");
    let left = driver.list("/wharf/leases").await.unwrap();
    assert!(left.iter().any(|n| n == "claim-held"), "{left:?}");
    assert!(left.iter().any(|n| n == "other-ended"), "{left:?}");
    assert!(!left.iter().any(|n| n == "claim-ended"), "{left:?}");
    assert!(held_one.is_held());
    // A forgotten lease is free to take again.
    let again = Lease::new(backend.clone(), "claim-ended", TTL)
        .try_acquire()
        .await
        .unwrap();
    assert!(again.is_some());
}

/// The lease as a pass sees it when its holder loses it part-way (what `HeldLease` reports
/// once a renewal finds another holder): held until the first of `blobs` is gone.
struct LostOnceDeleting {
    blobs: Vec<std::path::PathBuf>,
}

impl wharf::registry::gc_online::PassFence for LostOnceDeleting {
    fn is_held(&self) -> bool {
        self.blobs.iter().all(|b| b.exists())
    }

    fn expires_ms(&self) -> u64 {
        wharf::registry::gc_online::now_ms() + TTL.as_millis() as u64 * 20
    }
}

/// A value of a metric line `name` in the process's metrics, 0 when absent.
fn metric(name: &str) -> f64 {
    let text = String::from_utf8(wharf::ops::metrics::render()).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// A pass that loses its lease mid-sweep stops, counts as `lost_lease`, and reports (in its
/// error, the metrics and `/debug/vars`) exactly what it deleted before; the next pass, under
/// a real lease, finishes the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_losing_its_lease_counts_what_it_deleted() {
    use wharf::coord::collector::{self, PassError};
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("docker/registry/v2");
    // More orphans than one sweep batch, each linked in a repository with no manifest.
    let mut blobs = Vec::new();
    for i in 0..400u32 {
        let data = format!("orphan {i}").into_bytes();
        let digest = support::sha256_digest(&data);
        let hex = digest.trim_start_matches("sha256:").to_string();
        let blob = v2.join(format!("blobs/sha256/{}/{hex}", &hex[..2]));
        std::fs::create_dir_all(&blob).unwrap();
        std::fs::write(blob.join("data"), &data).unwrap();
        let link = v2.join(format!("repositories/lost/r/_layers/sha256/{hex}"));
        std::fs::create_dir_all(&link).unwrap();
        std::fs::write(link.join("link"), digest.as_bytes()).unwrap();
        blobs.push(blob.join("data"));
    }
    let left = || blobs.iter().filter(|b| b.exists()).count();
    let yaml = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
        dir.path().display()
    );
    let config = wharf::config::load_text(&yaml, "test", &[]).unwrap().config;
    let registry = wharf::build_registry(&config, b"secret".to_vec()).unwrap();
    let opts = wharf::registry::gc_online::OnlineOptions {
        grace: Duration::ZERO,
        delete_untagged: false,
        dry_run: false,
        wait_for_memory_caches: false,
    };
    let lost_before = metric("wharf_gc_runs_total{result=\"lost_lease\"}");
    let deleted_before = metric("wharf_gc_blobs_deleted_total");
    // Lost as soon as the first batch's data deletes are done.
    let fence = LostOnceDeleting {
        blobs: blobs.clone(),
    };
    let err = collector::run_fenced(&registry, &fence, &opts)
        .await
        .expect_err("a pass that lost its lease stops");
    let PassError::Stopped { report, source } = &err else {
        panic!("unexpected error {err}");
    };
    assert!(source.to_string().contains("lease lost"), "{source}");
    let deleted = 400 - left();
    assert!(deleted > 0 && deleted < 400, "deleted {deleted} of 400");
    assert_eq!(report.blobs_deleted, deleted, "{report:?}");
    assert!(
        err.to_string()
            .contains(&format!("deleted {deleted} blobs")),
        "{err}"
    );
    assert_eq!(
        metric("wharf_gc_runs_total{result=\"lost_lease\"}") - lost_before,
        1.0
    );
    assert_eq!(
        metric("wharf_gc_blobs_deleted_total") - deleted_before,
        deleted as f64
    );
    let status = wharf::ops::cluster_status::snapshot();
    let last = &status["gc_last_pass"];
    assert_eq!(last["result"], "lost_lease", "{status}");
    assert_eq!(last["report"]["blobs_deleted"], deleted, "{status}");
    // The next pass, under the storage lease, collects the rest.
    let lease = Lease::new(
        storage(Arc::new(FilesystemDriver::new(dir.path()))),
        collector::GC_LEASE,
        TTL * 10,
    );
    let report = collector::run_pass(&registry, &lease, &opts).await.unwrap();
    assert_eq!(report.blobs_deleted, 400 - deleted, "{report:?}");
    assert_eq!(left(), 0);
}
