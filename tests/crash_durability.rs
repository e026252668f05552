//! Power loss on the filesystem driver, without a VM. The registry stores into an ext4 image
//! mounted through a loop device with a 300 s journal commit interval, so while the test runs
//! the only writes that reach the image are the ones an fsync forces out (dirty pages expire
//! after 30 s, and nothing else writes to that filesystem). While 32 clients push small blobs,
//! the registry is frozen (SIGSTOP), in-flight syscalls are given time to finish, the image is
//! copied (the disk at that instant; the page cache is what a power cut loses), then the
//! registry is killed. The copy is mounted (the journal replays) and served by a fresh
//! registry: every push acknowledged before the freeze reads back whole, and the storage holds
//! no blob that does not hash to its path.
//!
//! Needs root for `losetup`/`mount`; without them the test says so and does nothing. A
//! `sync` run by someone else on the machine at the wrong moment only makes more survive.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use support::*;

/// An ext4 image mounted on a folder through a loop device; unmounted and detached on drop.
struct LoopMount {
    dir: PathBuf,
    mounted: bool,
}

impl LoopMount {
    /// Mounts `image` on `dir`, or says why it cannot.
    fn mount(image: &Path, dir: &Path) -> Result<LoopMount, String> {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new("mount");
        cmd.args(["-t", "ext4", "-o", "loop,commit=300"])
            .arg(image)
            .arg(dir);
        let out = run_bounded(cmd, Duration::from_secs(60));
        if !out.status.success() {
            return Err(out.stderr);
        }
        Ok(LoopMount {
            dir: dir.to_path_buf(),
            mounted: true,
        })
    }

    fn unmount(&mut self) {
        if std::mem::take(&mut self.mounted) {
            // `mount -o loop` set the loop device up to detach when unmounted.
            let mut cmd = Command::new("umount");
            cmd.arg(&self.dir);
            run_bounded(cmd, Duration::from_secs(60)).assert_success("umount");
        }
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -s {signal} {pid}");
}

#[test]
fn a_power_cut_while_small_blobs_are_pushed_loses_nothing_acknowledged() {
    let work = tempfile::tempdir().unwrap();
    let image = work.path().join("disk.img");
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(&image)
        .arg("256M");
    if !run_bounded(mkfs, Duration::from_secs(60)).status.success() {
        eprintln!("skipped: mkfs.ext4 is not available");
        return;
    }
    let mut disk = match LoopMount::mount(&image, &work.path().join("disk")) {
        Ok(mounted) => mounted,
        Err(why) => {
            eprintln!("skipped: cannot loop-mount an image here: {why}");
            return;
        }
    };
    let root = disk.dir.join("data");
    let mut reg = Registry::builder(Driver::Filesystem)
        .storage_dir(&root)
        .start();
    let pid = reg.pid();

    // (digest, acknowledged at) of every push answered 201.
    let acked = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..32u64)
        .map(|client| {
            let (api, acked, stop) = (reg.endpoint(), Arc::clone(&acked), Arc::clone(&stop));
            thread::spawn(move || {
                let mut prng = Prng::new(unique_seed() ^ client);
                // Bounded by count as well as by the freeze.
                for _ in 0..5_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let data = prng.bytes(4096);
                    if api.push_monolithic("crash/small", &data).is_ok() {
                        let digest = sha256_digest(&data);
                        acked.lock().unwrap().push((digest, Instant::now()));
                    } else {
                        // The frozen server stops answering; the client gives up at the stop.
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            })
        })
        .collect();
    // Some pushes acknowledged, more in flight.
    let enough = wait_until(Duration::from_secs(60), || {
        acked.lock().unwrap().len() >= 300
    });
    assert!(enough, "pushes were not acknowledged");
    let frozen_at = Instant::now();
    signal(pid, "STOP");
    // Syscalls under way (an fsync, a rename) finish even in a stopped process.
    thread::sleep(Duration::from_millis(500));
    let snapshot = work.path().join("after-power-cut.img");
    std::fs::copy(&image, &snapshot).unwrap();
    stop.store(true, Ordering::Relaxed);
    reg.kill();
    for client in clients {
        client.join().unwrap();
    }
    disk.unmount();

    let must_survive: Vec<String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, at)| *at < frozen_at)
        .map(|(digest, _)| digest.clone())
        .collect();
    let restored = LoopMount::mount(&snapshot, &work.path().join("restored")).unwrap();
    let reg = Registry::builder(Driver::Filesystem)
        .storage_dir(&restored.dir.join("data"))
        .start();
    let mut lost = Vec::new();
    for digest in &must_survive {
        match reg.pull_digest("crash/small", digest) {
            Ok((got, 4096, _)) if &got == digest => {}
            other => lost.push(format!("{digest}: {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged pushes lost in the power cut: {:?}",
        lost.len(),
        must_survive.len(),
        &lost[..lost.len().min(5)]
    );
    // A push cut before its rename leaves a blob folder holding only its temporary file, as
    // distribution's would: not readable, not wrong. Every `data` there must hash right.
    let problems: Vec<String> = storage_problems(&reg.v2_root())
        .into_iter()
        .filter(|p| !p.ends_with("/data: No such file or directory (os error 2)"))
        .collect();
    assert!(
        problems.is_empty(),
        "storage after the power cut: {problems:?}"
    );
    eprintln!(
        "power cut: {} pushes acknowledged before it, all read back",
        must_survive.len()
    );
}
