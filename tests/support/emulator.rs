//! A storage emulator process (moto, Azurite, fake-gcs-server) on a loopback port, shared by
//! the object-store modules: it runs under a small shell that kills it by its PID when this
//! process's end of a pipe closes, so it never outlives the tests, even on a panic or a kill.
//! Ready once a probe URL answers anything over HTTP; stopped (and reaped) on drop.

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use super::wait::WAIT_LIMIT;

/// How to start one emulator.
pub struct Launch<'a> {
    /// Named in panics and temp folders (`moto`, `azurite`, `fake-gcs-server`).
    pub name: &'a str,
    pub port: u16,
    /// The shell command line, given the emulator's own temp folder (for its data).
    pub command: &'a dyn Fn(&Path) -> String,
    /// Environment variables starting with these are not passed on.
    pub scrub_env: &'a [&'a str],
    /// Path (after `http://127.0.0.1:<port>`) whose answer, any, means it serves; empty: that
    /// it accepts connections (an HTTPS-only server).
    pub probe: &'a str,
    /// How to install it, for the panic when it does not start.
    pub install_hint: &'a str,
}

/// A running emulator; dropping it stops it.
pub struct Emulator {
    port: u16,
    shell: Mutex<Option<(Child, ChildStdin)>>,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts the emulator and waits (bounded) until it answers; panics with its log if not.
    pub fn start(launch: &Launch<'_>) -> Emulator {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-{}-", launch.name))
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join(format!("{}.log", launch.name));
        // The shell starts the program, then waits for its stdin to close and kills it. When
        // this process went away without `stop` (a shared emulator lives in a static, never
        // dropped), nothing was written first, and the shell also removes the temp folder.
        let script = format!(
            "{} >>'{}' 2>&1 & pid=$!; read stop; kill $pid; wait $pid; [ -n \"$stop\" ] || rm -rf '{}'",
            (launch.command)(dir.path()),
            log.display(),
            dir.path().display()
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if launch.scrub_env.iter().any(|p| k.starts_with(p)) || k.starts_with("REGISTRY_") {
                cmd.env_remove(&key);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sh for {}: {e}", launch.name));
        let stdin = child.stdin.take().expect("piped stdin");
        let server = Emulator {
            port: launch.port,
            shell: Mutex::new(Some((child, stdin))),
            log,
            dir,
        };
        server.wait_ready(launch);
        server
    }

    fn wait_ready(&self, launch: &Launch<'_>) {
        let deadline = Instant::now() + WAIT_LIMIT;
        for _ in 0..1200 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // HTTPS only: listening is all that can be seen without a TLS client.
                if launch.probe.is_empty() {
                    return;
                }
                let probe = reqwest::blocking::Client::new()
                    .get(format!("{}{}", self.origin(), launch.probe))
                    .timeout(Duration::from_secs(5))
                    .send();
                if probe.is_ok() {
                    return;
                }
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} did not start on port {} (install it with: {}):\n{}",
            launch.name,
            self.port,
            launch.install_hint,
            self.log_text()
        );
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The emulator's own temp folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the emulator printed.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the emulator (and waits, bounded, for it to exit).
    pub fn stop(&self) {
        if let Some((mut child, mut stdin)) = self.shell.lock().unwrap().take() {
            // Stopped on purpose: the folder stays (a restart may reuse its data).
            let _ = stdin.write_all(b"stop\n");
            drop(stdin);
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
