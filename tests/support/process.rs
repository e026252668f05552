//! Child processes and external commands: a guard that kills and reaps its process on drop,
//! signals by PID, the server binaries under test, bounded commands, free loopback ports and log
//! files.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::wait::wait_until;

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
}

impl Process {
    /// Spawns `cmd`, panicking with `name` if it cannot start.
    pub fn spawn(name: &str, mut cmd: Command) -> Process {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Process {
            name: name.to_string(),
            child: Some(child),
        }
    }

    /// The PID, unless the process was killed and reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` (`TERM`, `KILL`, ...) to this process, by PID.
    pub fn signal(&mut self, signal: &str) {
        if self.try_exit().is_some() {
            return;
        }
        let Some(pid) = self.pid() else { return };
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .stdin(Stdio::null())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {signal} {pid} ({})", self.name);
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let mut status = None;
        wait_until(limit, || {
            status = self.try_exit();
            status.is_some()
        });
        status
    }

    /// Started, not killed, not exited.
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_exit().is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which server binary a registry runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The binary under test: `wharf`, or `$WHARF_TEST_SERVER` when set (a development aid).
    Wharf,
    /// CNCF distribution 2.8.2 as packaged by Debian.
    DockerRegistry,
}

/// Where Debian installs distribution 2.8.2.
pub const DOCKER_REGISTRY_BIN: &str = "/usr/bin/docker-registry";

impl Server {
    /// The path of the binary.
    pub fn binary(self) -> PathBuf {
        match self {
            Server::Wharf => match std::env::var_os("WHARF_TEST_SERVER") {
                Some(path) if !path.is_empty() => PathBuf::from(path),
                _ => PathBuf::from(env!("CARGO_BIN_EXE_wharf")),
            },
            Server::DockerRegistry => PathBuf::from(DOCKER_REGISTRY_BIN),
        }
    }
}

/// A `Command` with every `REGISTRY_*` and `AWS_*` variable removed and stdin closed.
pub fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        // The machine's own cloud identity is never used by accident.
        if ["REGISTRY_", "AWS_", "AZURE_", "IDENTITY_", "MSI_"]
            .iter()
            .any(|p| key_text.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// A 127.0.0.1 port that was free a moment ago (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// What a finished command wrote, and how it exited.
pub struct CommandOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CommandOutput {
    /// Panics with both outputs unless the command succeeded.
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs a command to completion, killing it if it runs past `limit`.
pub fn run_bounded(mut cmd: Command, limit: Duration) -> CommandOutput {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).unwrap())
        .stderr(fs::File::create(&err_path).unwrap());
    let what = format!("{cmd:?}");
    let mut process = Process::spawn(&what, cmd);
    let Some(status) = process.wait_exit(limit) else {
        process.kill();
        panic!("{what} did not finish within {limit:?}");
    };
    CommandOutput {
        status,
        stdout: read_text(&out_path),
        stderr: read_text(&err_path),
    }
}

/// A log file opened for appending (created if missing), for a child's stdout or stderr.
pub fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// A file's text (lossy), or nothing if it cannot be read.
pub fn read_text(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// The lines of a log that `keep` picks.
pub fn log_lines(text: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    text.lines()
        .filter(|l| keep(l))
        .map(str::to_string)
        .collect()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A path in the repository (where `haproxy/`, `deploy/` and `Dockerfile` live).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `VmHWM` (peak resident set) of a process, in bytes.
pub fn vm_hwm(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}
