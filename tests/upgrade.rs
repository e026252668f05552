//! Replacing the binary of a single node without refusing a request: with `http.reuseport`, a
//! new `wharf serve` on the same config binds the same address while the old one runs, reports
//! ready, and the old one drains on SIGTERM.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

const LIMIT: Duration = Duration::from_secs(30);

/// Pushes and pulls against `reg` until `stop`: (requests answered, failures).
fn client_loop(reg: Endpoint, stop: Arc<AtomicBool>) -> (u64, Vec<String>) {
    let (mut requests, mut failures) = (0u64, Vec::new());
    let started = Instant::now();
    let mut pushed: Vec<String> = Vec::new();
    for i in 0..100_000u64 {
        if stop.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        let data = format!("layer {i} pushed while the binary is replaced").into_bytes();
        match reg.push_monolithic("upgrade/loop", &data) {
            Ok(trace) => {
                requests += trace.len() as u64;
                pushed.push(sha256_digest(&data));
            }
            Err(f) => failures.push(format!("push {i}: {f:?}")),
        }
        if let Some(digest) = pushed.last() {
            match reg.pull_digest("upgrade/loop", digest) {
                Ok((got, _, _)) if &got == digest => requests += 1,
                Ok((got, _, _)) => failures.push(format!("pull {digest}: got {got}")),
                Err(f) => failures.push(format!("pull {digest}: {f:?}")),
            }
        }
    }
    (requests, failures)
}

#[test]
fn a_new_binary_takes_over_without_a_refused_request() {
    let mut old = Registry::builder(Driver::Filesystem)
        .http_line("  reuseport: true")
        .draintimeout(Duration::from_secs(3))
        .start();

    // An upload begun on the old process, to be finished on the new one.
    let (first, second) = (vec![b'a'; 256 * 1024], vec![b'b'; 128 * 1024]);
    let location = start_upload(&old, "upgrade/upload");
    let resp = send(
        old.patch(&location)
            .header("Content-Type", "application/octet-stream")
            .header("Content-Range", format!("0-{}", first.len() - 1))
            .body(first.clone()),
    );
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();

    let stop = Arc::new(AtomicBool::new(false));
    let result = Arc::new(Mutex::new(None));
    let worker = {
        let (reg, stop, result) = (old.endpoint(), stop.clone(), result.clone());
        std::thread::spawn(move || {
            *result.lock().unwrap() = Some(client_loop(reg, stop));
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // The new binary, on the same config (its own debug port, to ask it whether it is ready).
    let debug_port = free_port();
    let logs = tempfile::tempdir().unwrap();
    let new_stderr = logs.path().join("new.stderr");
    let mut cmd = clean_command(&Server::Wharf.binary());
    cmd.arg("serve")
        .arg(old.config_path())
        .env(
            "REGISTRY_HTTP_DEBUG_ADDR",
            format!("127.0.0.1:{debug_port}"),
        )
        .stdout(log_file(&logs.path().join("new.stdout")))
        .stderr(log_file(&new_stderr));
    let mut new = Process::spawn("wharf (new binary)", cmd);
    let readyz = format!("http://127.0.0.1:{debug_port}/readyz");
    let ready = wait_until(LIMIT, || {
        assert!(
            new.running(),
            "the new process exited:\n{}",
            read_text(&new_stderr)
        );
        http_client()
            .get(&readyz)
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(
        ready,
        "the new process is not ready:\n{}",
        read_text(&new_stderr)
    );
    std::thread::sleep(Duration::from_millis(500));

    // The old one drains and exits; the loop goes on against the same address.
    old.terminate();
    let exited = old
        .wait_exit(LIMIT)
        .expect("the old process exits after draining");
    assert!(exited.success(), "old process: {exited}\n{}", old.log());
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    let (requests, failures) = result.lock().unwrap().take().unwrap();

    // The upload begun on the old process ends on the new one.
    let resp = send(
        old.patch(&location)
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                format!("{}-{}", first.len(), first.len() + second.len() - 1),
            )
            .body(second.clone()),
    );
    resp.assert_status(202);
    let whole = [first, second].concat();
    let digest = sha256_digest(&whole);
    let location = resp.must_header("location").to_string();
    send(old.put(&with_digest(&location, &digest))).assert_status(201);
    let (got, size, _) = old.pull_digest("upgrade/upload", &digest).unwrap();
    assert_eq!((got.as_str(), size), (digest.as_str(), whole.len() as u64));

    let old_served = old.access_lines().len();
    let new_served = log_lines(&read_text(&new_stderr), |l| l.contains("msg=\"request\"")).len();
    println!(
        "upgrade: {requests} requests answered by the client loop, {} failed; access lines: old process {old_served}, new process {new_served}",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(new_served > 0, "the new process served nothing");
    new.signal("TERM");
    assert!(new.wait_exit(LIMIT).is_some_and(|s| s.success()));
}

#[test]
fn without_reuseport_a_second_process_cannot_take_the_address() {
    let reg = Registry::builder(Driver::Filesystem).start();
    let mut cmd = clean_command(&Server::Wharf.binary());
    cmd.arg("serve").arg(reg.config_path());
    let out = run_bounded(cmd, LIMIT);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("http.addr") && out.stderr.to_lowercase().contains("in use"),
        "{}",
        out.stderr
    );
    send(reg.get("/v2/")).assert_status(200);
}

/// Spawns `wharf serve config` as a service manager starts a socket-activated service: the
/// manager's `socket` as descriptor 3, `LISTEN_FDS=1` and `LISTEN_PID` its own pid (`sh`
/// sets it, then `exec`s the binary under the same pid).
fn spawn_activated(
    name: &str,
    socket: &std::net::TcpListener,
    config: &std::path::Path,
    debug_port: u16,
    stderr: &std::path::Path,
) -> Process {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let mut cmd = clean_command(std::path::Path::new("/bin/sh"));
    cmd.arg("-c")
        .arg("LISTEN_PID=$$ LISTEN_FDS=1 exec \"$0\" serve \"$1\"")
        .arg(Server::Wharf.binary())
        .arg(config)
        .env(
            "REGISTRY_HTTP_DEBUG_ADDR",
            format!("127.0.0.1:{debug_port}"),
        )
        .stdout(log_file(&stderr.with_extension("stdout")))
        .stderr(log_file(stderr));
    let fd = socket.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec: clear it in every case.
            if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Process::spawn(name, cmd)
}

fn wait_ready(process: &mut Process, debug_port: u16, stderr: &std::path::Path) {
    let readyz = format!("http://127.0.0.1:{debug_port}/readyz");
    let ready = wait_until(LIMIT, || {
        assert!(
            process.running(),
            "the process exited:\n{}",
            read_text(stderr)
        );
        http_client()
            .get(&readyz)
            .send()
            .is_ok_and(|r| r.status() == 200)
    });
    assert!(ready, "the process is not ready:\n{}", read_text(stderr));
}

/// With socket activation the listening socket belongs to the service manager: the old
/// process and the new one accept from the same socket, and when the old one stops accepting
/// nothing queued is lost. A client loop sees no failure while the binary is replaced, and
/// the old process's exit leaves the socket serving.
#[test]
fn a_socket_activated_upgrade_refuses_nothing() {
    let manager = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = manager.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n  secret: activated\n  draintimeout: 3s\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (old_debug, new_debug) = (free_port(), free_port());
    let (old_log, new_log) = (dir.path().join("old.stderr"), dir.path().join("new.stderr"));
    let mut old = spawn_activated(
        "wharf (activated, old)",
        &manager,
        &config,
        old_debug,
        &old_log,
    );
    wait_ready(&mut old, old_debug, &old_log);
    // The config's address is the manager's: a process that bound it itself (without
    // reuseport) would have been refused `address in use` and never got ready.
    let endpoint = Endpoint::new(&format!("http://{addr}"));
    send(endpoint.get("/v2/")).assert_status(200);

    let stop = Arc::new(AtomicBool::new(false));
    let result = Arc::new(Mutex::new(None));
    let worker = {
        let (reg, stop, result) = (endpoint.clone(), stop.clone(), result.clone());
        std::thread::spawn(move || {
            *result.lock().unwrap() = Some(client_loop(reg, stop));
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let mut new = spawn_activated(
        "wharf (activated, new)",
        &manager,
        &config,
        new_debug,
        &new_log,
    );
    wait_ready(&mut new, new_debug, &new_log);
    std::thread::sleep(Duration::from_millis(500));
    old.signal("TERM");
    let exited = old
        .wait_exit(LIMIT)
        .expect("the old process exits after draining");
    assert!(
        exited.success(),
        "old process: {exited}\n{}",
        read_text(&old_log)
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    let (requests, failures) = result.lock().unwrap().take().unwrap();
    let served =
        |log: &std::path::Path| log_lines(&read_text(log), |l| l.contains("msg=\"request\"")).len();
    println!(
        "socket-activated upgrade: {requests} requests answered by the client loop, {} failed; access lines: old process {}, new process {}",
        failures.len(),
        served(&old_log),
        served(&new_log)
    );
    assert!(
        failures.is_empty(),
        "{} failed requests:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(served(&new_log) > 0, "the new process served nothing");
    send(endpoint.get("/v2/")).assert_status(200);
    new.signal("TERM");
    assert!(new.wait_exit(LIMIT).is_some_and(|s| s.success()));
}
