//! Server programs (emulators, Swift's servers, Keystone) run in the background of one small
//! shell that kills them by their PIDs when this process's end of a pipe closes, so they never
//! outlive the tests, even on a panic or a kill.
//!
//! The shell prints the programs' PIDs first: readiness is checked against *these* processes
//! (a port that answers may be another server's that took the port first), and a stop waits
//! until they are gone, killing them outright when they do not go in time.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// How long a stop waits for the programs to exit after being asked, then after `SIGKILL`.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// What to run under one shell.
pub struct Programs<'a> {
    /// Named in panics.
    pub name: &'a str,
    /// Shell command lines, each run in the background with its output appended to `log`.
    pub commands: &'a [String],
    pub log: &'a Path,
    /// Removed by the shell when this process went away without [`ShellGroup::stop`].
    pub dir: &'a Path,
    /// Environment variables starting with these are not passed on.
    pub scrub_env: &'a [&'a str],
}

/// Running programs; [`ShellGroup::stop`] (or drop) stops them.
pub struct ShellGroup {
    shell: Mutex<Option<(Child, ChildStdin)>>,
    /// The programs' PIDs, as the shell printed them.
    pids: Vec<u32>,
}

impl ShellGroup {
    /// Starts the programs (without waiting for them to serve).
    pub fn start(p: &Programs<'_>) -> ShellGroup {
        let mut script = String::from("pids=; ");
        for command in p.commands {
            script.push_str(&format!(
                "{command} >>'{}' 2>&1 & pids=\"$pids $!\"; ",
                p.log.display()
            ));
        }
        // Without a `stop` line first (this process went away: a shared server lives in a
        // static, never dropped), the shell also removes the folder.
        script.push_str(&format!(
            "echo $pids; read stop; kill $pids; wait; [ -n \"$stop\" ] || rm -rf '{}'",
            p.dir.display()
        ));
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("REGISTRY_") || p.scrub_env.iter().any(|s| k.starts_with(s)) {
                cmd.env_remove(&key);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sh for {}: {e}", p.name));
        let stdin = child.stdin.take().expect("piped stdin");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let pids: Vec<u32> = line
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        assert_eq!(
            pids.len(),
            p.commands.len(),
            "the shell for {} printed {line:?} for its PIDs",
            p.name
        );
        ShellGroup {
            shell: Mutex::new(Some((child, stdin))),
            pids,
        }
    }

    /// Every program is still running.
    pub fn running(&self) -> bool {
        self.pids.iter().all(|&pid| alive(pid))
    }

    /// One of the programs (or a process one of them started) listens on `port`.
    pub fn listens_on(&self, port: u16) -> bool {
        let sockets = listening_sockets(port);
        !sockets.is_empty()
            && descendants(&self.pids).iter().any(|pid| {
                fs::read_dir(format!("/proc/{pid}/fd"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .filter_map(|fd| fs::read_link(fd.path()).ok())
                    .any(|target| sockets.contains(&target.to_string_lossy().into_owned()))
            })
    }

    /// Stops the programs and returns once none runs: asked to stop first, killed when they
    /// have not exited within a bound.
    pub fn stop(&self) {
        let Some((mut child, mut stdin)) = self.shell.lock().unwrap().take() else {
            return;
        };
        // Stopped on purpose: the folder stays (a restart may reuse its data).
        let _ = stdin.write_all(b"stop\n");
        drop(stdin);
        let exited = |child: &mut Child| matches!(child.try_wait(), Ok(Some(_)));
        let deadline = Instant::now() + STOP_LIMIT;
        while !exited(&mut child) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if !exited(&mut child) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The shell is gone, but a program it could not stop in time would go on serving.
        for &pid in &self.pids {
            if alive(pid) {
                // SAFETY: a plain signal to a PID this group started.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + STOP_LIMIT;
        while self.pids.iter().any(|&pid| alive(pid)) {
            assert!(
                Instant::now() < deadline,
                "programs {:?} still run after SIGKILL",
                self.pids
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ShellGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The process runs (a zombie holds no sockets: it counts as gone).
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_string();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

/// `socket:[inode]` of every TCP socket listening on `port` (IPv4 or IPv6).
fn listening_sockets(port: u16) -> Vec<String> {
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // 0A: LISTEN.
            if local_port == Some(port) && *state == "0A" {
                sockets.push(format!("socket:[{inode}]"));
            }
        }
    }
    sockets
}

/// `roots` and every process below them.
fn descendants(roots: &[u32]) -> Vec<u32> {
    let mut parent = HashMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let ppid = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()
            });
        if let Some(ppid) = ppid {
            parent.insert(pid, ppid);
        }
    }
    parent
        .keys()
        .copied()
        .filter(|&pid| {
            let mut at = pid;
            // Bounded: a process tree is never this deep.
            for _ in 0..64 {
                if roots.contains(&at) {
                    return true;
                }
                match parent.get(&at) {
                    Some(&up) if up != 0 => at = up,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}
