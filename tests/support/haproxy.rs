//! haproxy in the foreground with one of the repository's configs (`haproxy/haproxy.cfg`,
//! `haproxy/haproxy-sticky.cfg`), its environment pointing at the nodes, plus an admin socket
//! through which tests read the servers' states.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use super::client::Endpoint;
use super::process::{
    clean_command, free_port, log_file, log_lines, read_text, run_bounded, CommandOutput, Process,
};
use super::wait::{wait_until, WAIT_LIMIT};

/// A haproxy running one of the repository's configs (`haproxy/haproxy.cfg`,
/// `haproxy/haproxy-sticky.cfg`) in the foreground, plus an admin socket for the tests.
pub struct Haproxy {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

/// The environment the configs read, for nodes `(api port, debug port)`.
pub fn haproxy_env(listen: u16, nodes: &[(u16, u16)]) -> Vec<(String, String)> {
    let mut env = vec![("WHARF_LISTEN".to_string(), format!("127.0.0.1:{listen}"))];
    for (i, (port, debug)) in nodes.iter().enumerate() {
        env.push((format!("WHARF_NODE{}", i + 1), format!("127.0.0.1:{port}")));
        env.push((format!("WHARF_NODE{}_DEBUG_PORT", i + 1), debug.to_string()));
    }
    env
}

/// `haproxy -c -f <config>` with that environment.
pub fn haproxy_check(config: &Path, env: &[(String, String)]) -> CommandOutput {
    let mut cmd = clean_command(Path::new("haproxy"));
    cmd.arg("-c").arg("-f").arg(config);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, Duration::from_secs(30))
}

impl Haproxy {
    /// Starts haproxy with `config` in front of exactly three nodes `(api port, debug port)`.
    pub fn start(config: &Path, nodes: &[(u16, u16)]) -> Haproxy {
        Self::start_with_env(config, nodes, &[])
    }

    /// [`Haproxy::start`] with more environment (`WHARF_TLS_PEM` for `haproxy-tls.cfg`).
    pub fn start_with_env(config: &Path, nodes: &[(u16, u16)], extra: &[(&str, &str)]) -> Haproxy {
        assert_eq!(nodes.len(), 3, "the configs name three servers");
        let dir = tempfile::Builder::new()
            .prefix("wharf-haproxy-")
            .tempdir()
            .expect("temp dir");
        let admin = dir.path().join("admin.cfg");
        fs::write(
            &admin,
            format!(
                "global\n    stats socket {} mode 600 level admin\n",
                dir.path().join("admin.sock").display()
            ),
        )
        .unwrap();
        let mut last = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = clean_command(Path::new("haproxy"));
            cmd.arg("-db").arg("-f").arg(config).arg("-f").arg(&admin);
            for (k, v) in haproxy_env(port, nodes) {
                cmd.env(k, v);
            }
            for (k, v) in extra {
                cmd.env(k, v);
            }
            let log = dir.path().join("haproxy.log");
            cmd.stdout(log_file(&log)).stderr(log_file(&log));
            let mut process = Process::spawn("haproxy", cmd);
            let listening = wait_until(Duration::from_secs(15), || {
                !process.running() || TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            if listening && process.running() {
                let haproxy = Haproxy { port, dir, process };
                haproxy.wait_all_up(WAIT_LIMIT);
                return haproxy;
            }
            process.kill();
            last = read_text(&log);
        }
        panic!("haproxy did not start:\n{last}");
    }

    /// The client's view: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(&format!("http://127.0.0.1:{}", self.port))
    }

    /// haproxy's own output: request log lines and server state changes.
    pub fn log(&self) -> String {
        read_text(&self.dir.path().join("haproxy.log"))
    }

    /// A command on the admin socket.
    pub fn admin(&self, command: &str) -> String {
        let sock = self.dir.path().join("admin.sock");
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(&sock) else {
            return String::new();
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(format!("{command}\n").as_bytes());
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// `server name -> up` for the `wharf` backend.
    pub fn servers_up(&self) -> Vec<(String, bool)> {
        self.admin("show servers state wharf")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // be_id be_name srv_id srv_name srv_addr srv_op_state ...
                (f.len() > 5).then(|| (f[3].to_string(), f[5] == "2"))
            })
            .collect()
    }

    /// Whether haproxy sends to `server` (`node1`, ...).
    pub fn is_up(&self, server: &str) -> bool {
        self.servers_up()
            .iter()
            .any(|(name, up)| name == server && *up)
    }

    /// Waits until every server is up; panics with the log if not.
    pub fn wait_all_up(&self, limit: Duration) {
        let ok = wait_until(limit, || {
            let s = self.servers_up();
            !s.is_empty() && s.iter().all(|(_, up)| *up)
        });
        assert!(
            ok,
            "haproxy servers not all up: {:?}\n{}",
            self.servers_up(),
            self.log()
        );
    }

    /// The request log lines (`option httplog`).
    pub fn request_lines(&self) -> Vec<String> {
        log_lines(&self.log(), |l| l.contains(" registry wharf/"))
    }
}
