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
}

impl RedisServer {
    /// Starts a server and waits until it answers PING.
    pub fn start() -> RedisServer {
        let mut redis = RedisServer {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("wharf-redis-")
                .tempdir()
                .expect("temp dir"),
            process: None,
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
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.path().display().to_string(),
        ])
        .stdout(log_file(&log))
        .stderr(log_file(&log));
        self.process = Some(Process::spawn("redis-server", cmd));
        let addr = self.addr();
        let up = wait_until(
            Duration::from_secs(15),
            || matches!(redis_command(&addr, &["PING"]), Ok(RedisReply::Status(s)) if s == "PONG"),
        );
        assert!(up, "redis-server did not answer PING:\n{}", read_text(&log));
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
