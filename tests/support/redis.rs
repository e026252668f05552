//! A real `redis-server` on a free loopback port without persistence, and a minimal RESP client
//! to look at what the registry keeps in it.

use std::io::{self, BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use super::process::{clean_command, free_port, log_file, read_text, Process};
use super::wait::wait_until;

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisReply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<RedisReply>),
}

impl RedisReply {
    /// The reply as text (arrays joined with commas).
    pub fn text(&self) -> String {
        match self {
            RedisReply::Status(s) | RedisReply::Error(s) => s.clone(),
            RedisReply::Int(i) => i.to_string(),
            RedisReply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            RedisReply::Bulk(None) => String::new(),
            RedisReply::Array(items) => items
                .iter()
                .map(RedisReply::text)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// The items of an array reply as text.
    pub fn items(&self) -> Vec<String> {
        match self {
            RedisReply::Array(items) => items.iter().map(RedisReply::text).collect(),
            _ => Vec::new(),
        }
    }
}

fn read_reply(r: &mut impl BufRead) -> io::Result<RedisReply> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let bad = || io::Error::new(io::ErrorKind::InvalidData, format!("bad reply {line:?}"));
    let (kind, rest) = line.split_at_checked(1).ok_or_else(bad)?;
    Ok(match kind {
        "+" => RedisReply::Status(rest.to_string()),
        "-" => RedisReply::Error(rest.to_string()),
        ":" => RedisReply::Int(rest.parse().map_err(|_| bad())?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| bad())?;
            if len < 0 {
                RedisReply::Bulk(None)
            } else {
                let mut buf = vec![0u8; len as usize + 2];
                r.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                RedisReply::Bulk(Some(buf))
            }
        }
        "*" => {
            let n: i64 = rest.parse().map_err(|_| bad())?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            RedisReply::Array(items)
        }
        _ => return Err(bad()),
    })
}

/// Sends one command to the Redis at `addr` and reads its reply (2 s deadline).
pub fn redis_command(addr: &str, args: &[&str]) -> io::Result<RedisReply> {
    let sock = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_reply(&mut BufReader::new(stream))
}

/// A `redis-server` on a free loopback port, without persistence.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Option<Process>,
    /// Arguments after the defaults (replication, TLS, cluster, ACL...).
    extra: Vec<String>,
    /// Whether the server answers plain RESP on `port` (false for TLS-only servers).
    plain: bool,
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with `extra` arguments (`--replicaof`, `--cluster-enabled yes`, ...) and
    /// waits until it answers PING.
    pub fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_on(free_port(), extra, true)
    }

    /// A server listening for TLS only on `port` (`--port 0 --tls-port <port>` plus `extra`
    /// naming the certificates); waits until the port accepts connections.
    pub fn start_tls(port: u16, extra: &[&str]) -> RedisServer {
        let mut args = vec!["--tls-port".to_string(), port.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_on(port, &args, false)
    }

    fn start_on(port: u16, extra: &[&str], plain: bool) -> RedisServer {
        let mut redis = RedisServer {
            port,
            dir: tempfile::Builder::new()
                .prefix("wharf-redis-")
                .tempdir()
                .expect("temp dir"),
            process: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            plain,
        };
        redis.restart();
        redis
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on its port, empty, and waits until it answers PING.
    pub fn restart(&mut self) {
        self.stop();
        let log = self.dir.path().join("redis.log");
        let mut cmd = clean_command(Path::new("redis-server"));
        let port = if self.plain { self.port } else { 0 };
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ])
        .args(&self.extra)
        .stdout(log_file(&log))
        .stderr(log_file(&log));
        self.process = Some(Process::spawn("redis-server", cmd));
        let addr = self.addr();
        let plain = self.plain;
        let up = wait_until(Duration::from_secs(15), || {
            if plain {
                matches!(redis_command(&addr, &["PING"]), Ok(RedisReply::Status(s)) if s == "PONG")
            } else {
                TcpStream::connect(&addr).is_ok()
            }
        });
        assert!(up, "redis-server did not answer PING:\n{}", read_text(&log));
    }

    /// The server's log.
    pub fn log(&self) -> String {
        read_text(&self.dir.path().join("redis.log"))
    }

    /// Its folder (for files such as a cluster's `nodes.conf`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILL, keeping the guard (a server killed under load).
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Kills the server (its data is gone: it never persists).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    /// One command and its reply.
    pub fn command(&self, args: &[&str]) -> io::Result<RedisReply> {
        redis_command(&self.addr(), args)
    }

    /// The keys matching `pattern`.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.command(&["KEYS", pattern])
            .map(|r| r.items())
            .unwrap_or_default()
    }
}

/// Commands processed per command name (`INFO commandstats`): `calls` by `cmdstat_<name>`.
pub fn command_calls(addr: &str) -> std::collections::BTreeMap<String, u64> {
    let text = redis_command(addr, &["INFO", "commandstats"])
        .map(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_string(), calls.trim().parse().ok()?))
        })
        .collect()
}

/// A `redis-sentinel` on a free loopback port watching `master` (as `name`, quorum 2), with a
/// short `down-after-milliseconds` so a killed master is replaced in seconds.
pub struct RedisSentinel {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Process,
}

impl RedisSentinel {
    /// Starts a sentinel and waits until it knows the master.
    pub fn start(name: &str, master: &str, down_after: Duration) -> RedisSentinel {
        let dir = tempfile::Builder::new()
            .prefix("wharf-sentinel-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let (host, master_port) = master.rsplit_once(':').expect("host:port");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {name} {host} {master_port} 2\n\
                 sentinel down-after-milliseconds {name} {down}\nsentinel failover-timeout {name} 10000\n\
                 sentinel parallel-syncs {name} 1\n",
                dir = dir.path().display(),
                down = down_after.as_millis()
            ),
        )
        .expect("write sentinel.conf");
        let log = dir.path().join("sentinel.log");
        let mut cmd = clean_command(Path::new("redis-sentinel"));
        cmd.arg(&conf).stdout(log_file(&log)).stderr(log_file(&log));
        let process = Process::spawn("redis-sentinel", cmd);
        let sentinel = RedisSentinel { port, dir, process };
        let addr = sentinel.addr();
        let up = wait_until(Duration::from_secs(15), || {
            redis_command(&addr, &["SENTINEL", "get-master-addr-by-name", name])
                .map(|r| r.items().len() == 2)
                .unwrap_or(false)
        });
        assert!(up, "redis-sentinel did not start:\n{}", read_text(&log));
        sentinel
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The master's address as this sentinel sees it.
    pub fn master(&self, name: &str) -> Option<String> {
        let items = redis_command(&self.addr(), &["SENTINEL", "get-master-addr-by-name", name])
            .ok()?
            .items();
        (items.len() == 2).then(|| format!("{}:{}", items[0], items[1]))
    }

    /// The sentinel's log.
    pub fn log(&self) -> String {
        read_text(&self.dir.path().join("sentinel.log"))
    }

    /// Its PID (stopped by it on drop).
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }
}
