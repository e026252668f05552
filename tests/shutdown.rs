//! SIGTERM stops every background task: a node terminated in the middle of an upload-purge
//! pass interrupts the pass and exits cleanly, within `http.draintimeout` and a margin.

mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use support::*;

/// Stale sessions to purge: enough that one pass over them outlasts the poll that sees it
/// start.
const STALE_SESSIONS: usize = 20_000;

/// Writes `count` upload sessions started in 2020 under `root`'s repository `stale/pile`.
fn pile_up_stale_sessions(root: &Path, count: usize) {
    let uploads = root.join("docker/registry/v2/repositories/stale/pile/_uploads");
    for i in 0..count {
        let session = uploads.join(format!("00000000-0000-4000-8000-{i:012}"));
        fs::create_dir_all(&session).unwrap();
        fs::write(session.join("startedat"), "2020-01-01T00:00:00Z").unwrap();
    }
}

#[test]
fn sigterm_during_an_upload_purge_pass_exits_cleanly() {
    let storage = tempfile::tempdir().unwrap();
    pile_up_stale_sessions(storage.path(), STALE_SESSIONS);
    let drain = Duration::from_secs(1);
    // The shortest interval purging takes (1m): its first pass starts within a minute.
    let mut node = Registry::builder(Driver::Filesystem)
        .storage_dir(storage.path())
        .draintimeout(drain)
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "true")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "1h")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "1m")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN", "false")
        .start();
    assert!(
        wait_until(Duration::from_secs(90), || node
            .log()
            .contains("upload purge started")),
        "no purge pass started\n{}",
        node.log()
    );
    node.terminate();
    let status = node
        .wait_exit(drain + Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running after SIGTERM\n{}", node.log()));
    let log = node.log();
    assert!(status.success(), "exit status {status}\n{log}");
    assert!(
        !log.contains("upload purge done"),
        "the pass ended before the signal: pile up more sessions\n{log}"
    );
    assert!(
        log.contains("upload purge interrupted by shutdown"),
        "{log}"
    );
    assert!(!log.contains("did not stop in time"), "{log}");
    // The pass stopped part-way: the sessions it did not reach wait for the next one.
    let left = fs::read_dir(
        storage
            .path()
            .join("docker/registry/v2/repositories/stale/pile/_uploads"),
    )
    .map_or(0, |d| d.count());
    assert!(left > 0, "the pass finished\n{log}");
}
