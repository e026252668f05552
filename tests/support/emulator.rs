//! A storage emulator process (moto, Azurite, fake-gcs-server) on a loopback port, shared by
//! the object-store modules: it runs in a [`ShellGroup`], so it never outlives the tests, even
//! on a panic or a kill. Ready once a probe URL answers anything over HTTP *and* the port is
//! this emulator's (not another server's that took it first); stopped (and reaped) on drop.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use super::process::free_port;
use super::shell_group::{Programs, ShellGroup};
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
    programs: ShellGroup,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl Emulator {
    /// Starts the emulator and waits (bounded) until it answers; panics with its log if not.
    pub fn start(launch: &Launch<'_>) -> Emulator {
        Emulator::try_start(launch).unwrap_or_else(|why| panic!("{why}"))
    }

    /// Starts the emulator and waits (bounded) until it answers; why not, with its log.
    pub fn try_start(launch: &Launch<'_>) -> Result<Emulator, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-{}-", launch.name))
            .tempdir()
            .expect("temp dir");
        let log = dir.path().join(format!("{}.log", launch.name));
        let programs = ShellGroup::start(&Programs {
            name: launch.name,
            commands: &[(launch.command)(dir.path())],
            log: &log,
            dir: dir.path(),
            scrub_env: launch.scrub_env,
        });
        let server = Emulator {
            port: launch.port,
            programs,
            log,
            dir,
        };
        server.wait_ready(launch)?;
        Ok(server)
    }

    fn wait_ready(&self, launch: &Launch<'_>) -> Result<(), String> {
        let deadline = Instant::now() + WAIT_LIMIT;
        for _ in 0..1200 {
            // Exited (its port taken by another server, say): it will not serve.
            if !self.programs.running() {
                break;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.programs.listens_on(self.port)
            {
                // HTTPS only: listening is all that can be seen without a TLS client.
                if launch.probe.is_empty() {
                    return Ok(());
                }
                let probe = reqwest::blocking::Client::new()
                    .get(format!("{}{}", self.origin(), launch.probe))
                    .timeout(Duration::from_secs(5))
                    .send();
                if probe.is_ok() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "{} did not start on port {} (port taken by another server? not installed? \
             install it with: {}):\n{}",
            launch.name,
            self.port,
            launch.install_hint,
            self.log_text()
        ))
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

    /// Stops the emulator; returns once it has exited.
    pub fn stop(&self) {
        self.programs.stop();
    }
}

/// A server started by `start` on a port that was free a moment ago, on another one when
/// something else took that port first (a few tries).
pub fn on_free_port<T>(start: impl Fn(u16) -> Result<T, String>) -> T {
    let mut why = String::new();
    for _ in 0..3 {
        match start(free_port()) {
            Ok(server) => return server,
            Err(e) => why = e,
        }
    }
    panic!("{why}")
}
