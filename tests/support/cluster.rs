//! A registry cluster for the multi-node tests: N `wharf` nodes sharing one storage folder and
//! one `http.secret`, a real `redis-server` as their blob-descriptor cache (optionally behind a
//! chaos TCP proxy), and a real haproxy running `haproxy/haproxy.cfg` (or the sticky variant)
//! with its environment variables pointing at the nodes.
//!
//! Every process is started on 127.0.0.1, stopped by its PID when its guard is dropped, and every
//! wait is bounded in time and in count.
//!
//! Included with `#[path = "support/cluster.rs"] mod cluster;` next to `mod support;`.

#![allow(dead_code)]

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client};
use reqwest::Method;
use sha2::{Digest as _, Sha256};

use super::support::{clean_command, free_port, hex, run_bounded, HashingSink, Server, WAIT_LIMIT};

/// The secret every node of a cluster shares.
pub const SECRET: &str = "wharf-cluster-test-secret";
/// The response header naming the node that answered (set through `http.headers`).
pub const NODE_HEADER: &str = "x-wharf-node";

const POLL: Duration = Duration::from_millis(50);

/// Clusters take most of the machine: tests of one file run them one at a time.
pub fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls `done` every 50 ms until it holds or `limit` has passed; true if it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    for _ in 0..(limit.as_millis() / POLL.as_millis() + 2) {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            break;
        }
        thread::sleep(POLL);
    }
    done()
}

/// The repository root (where `haproxy/` lives).
pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Process {
    name: String,
    child: Option<Child>,
}

impl Process {
    fn spawn(name: &str, mut cmd: Command) -> Process {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        Process {
            name: name.to_string(),
            child: Some(child),
        }
    }

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

    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_exit().is_none()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_file(path: &Path) -> fs::File {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn read_text(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

// ---------------------------------------------------------------------------------------------
// redis-server and a minimal RESP client
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Chaos TCP proxy
// ---------------------------------------------------------------------------------------------

/// What the chaos proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chaos {
    /// Forward everything.
    Pass,
    /// Forward everything, each piece after this delay.
    Delay(Duration),
    /// Cut every connection and close new ones at once.
    Cut,
    /// Accept connections but never answer (a hung server).
    Blackhole,
}

struct ProxyShared {
    mode: Mutex<Chaos>,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
}

/// A TCP proxy on a free loopback port in front of `upstream`, whose behaviour tests switch.
pub struct ChaosProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ChaosProxy {
    pub fn start(upstream: String) -> ChaosProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind chaos proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).expect("nonblocking");
        let shared = Arc::new(ProxyShared {
            mode: Mutex::new(Chaos::Pass),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = thread::spawn(move || accept_loop(listener, upstream, s));
        ChaosProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn mode(&self) -> Chaos {
        *self.shared.mode.lock().unwrap()
    }

    /// Switches behaviour; `Cut` also closes every open connection.
    pub fn set(&self, mode: Chaos) {
        *self.shared.mode.lock().unwrap() = mode;
        if mode == Chaos::Cut {
            self.cut_all();
        }
    }

    /// Closes every open connection (the mode stays as it is).
    pub fn cut_all(&self) {
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut_all();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, upstream: String, shared: Arc<ProxyShared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
                continue;
            }
            Err(_) => {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nonblocking(false);
        let mode = *shared.mode.lock().unwrap();
        match mode {
            Chaos::Cut => {
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            Chaos::Blackhole => {
                // Held open, never answered; closed when the mode is cut or the proxy stops.
                shared.conns.lock().unwrap().push(client);
                continue;
            }
            Chaos::Pass | Chaos::Delay(_) => {}
        }
        let Ok(server) = TcpStream::connect_timeout(
            &upstream.parse().expect("upstream address"),
            Duration::from_secs(1),
        ) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        {
            let mut conns = shared.conns.lock().unwrap();
            conns.push(client.try_clone().expect("clone"));
            conns.push(server.try_clone().expect("clone"));
        }
        let (a, b) = (shared.clone(), shared.clone());
        let up = thread::spawn(move || pump(client, server, a));
        let down = thread::spawn(move || pump(s2, c2, b));
        let mut threads = shared.threads.lock().unwrap();
        threads.retain(|t| !t.is_finished());
        threads.push(up);
        threads.push(down);
    }
}

/// Copies `from` to `to` until either closes or the proxy stops, applying the current mode.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: Arc<ProxyShared>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stop.load(Ordering::SeqCst) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        let mode = *shared.mode.lock().unwrap();
        match mode {
            Chaos::Pass => {}
            Chaos::Delay(d) => thread::sleep(d),
            // A hung server: what was sent is swallowed.
            Chaos::Blackhole => continue,
            Chaos::Cut => break,
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------------------------
// wharf nodes
// ---------------------------------------------------------------------------------------------

/// How one node is configured.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub port: u16,
    pub debug_port: u16,
    pub secret: String,
    pub storage: PathBuf,
    /// A `storage.s3` section (see `support::s3::storage_section`) used instead of the
    /// filesystem at `storage`, with whether blob reads redirect to the bucket.
    pub s3: Option<(String, bool)>,
    /// `redis.addr`, or no cache.
    pub redis: Option<String>,
    pub draintimeout: Duration,
    /// Redis dial/read/write timeouts.
    pub redis_timeout: Duration,
}

impl NodeSpec {
    pub fn config(&self) -> String {
        let mut text = format!(
            "version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: registry
    node: {name}
storage:
{storage}  delete:
    enabled: true
",
            name = self.name,
            storage = match &self.s3 {
                Some((section, redirect)) => {
                    format!("{section}  redirect:\n    disable: {}\n", !redirect)
                }
                None => format!(
                    "  filesystem:\n    rootdirectory: {}\n",
                    self.storage.display()
                ),
            }
        );
        if let Some(addr) = &self.redis {
            let t = format!("{}ms", self.redis_timeout.as_millis());
            text.push_str(&format!(
                "  cache:
    blobdescriptor: redis
redis:
  addr: {addr}
  dialtimeout: {t}
  readtimeout: {t}
  writetimeout: {t}
  pool:
    maxidle: 16
    maxactive: 64
    idletimeout: 300s
"
            ));
        }
        text.push_str(&format!(
            "http:
  addr: 127.0.0.1:{port}
  secret: {secret}
  draintimeout: {drain}ms
  headers:
    X-Content-Type-Options: [nosniff]
    X-Wharf-Node: [{name}]
  debug:
    addr: 127.0.0.1:{debug}
    prometheus:
      enabled: true
      path: /metrics
",
            port = self.port,
            secret = self.secret,
            drain = self.draintimeout.as_millis(),
            name = self.name,
            debug = self.debug_port,
        ));
        text
    }
}

/// A `wharf` node: its spec, its current process, its logs (every process it ran, appended).
pub struct Node {
    pub spec: NodeSpec,
    dir: tempfile::TempDir,
    pub process: Option<Process>,
    /// How many processes this node has run.
    pub generation: u32,
}

impl Node {
    /// Starts a node and waits until `/readyz` answers 200.
    pub fn start(spec: NodeSpec) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("wharf-{}-", spec.name))
            .tempdir()
            .expect("temp dir");
        let mut node = Node {
            spec,
            dir,
            process: None,
            generation: 0,
        };
        node.restart();
        node
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.spec.port)
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    /// Everything the node's processes wrote to stderr and stdout.
    pub fn log(&self) -> String {
        read_text(&self.log_path())
    }

    /// Access log lines (`msg="request"`, with method, path and status) of every process this
    /// node ran.
    pub fn access_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("msg=\"request\"") && l.contains(" method="))
            .map(str::to_string)
            .collect()
    }

    /// Starts a fresh process with the same configuration and ports (the last one must have
    /// exited), and waits until it is ready.
    pub fn restart(&mut self) {
        if let Some(p) = self.process.as_mut() {
            assert!(!p.running(), "{} is still running", self.spec.name);
        }
        let config = self.dir.path().join("config.yml");
        fs::write(&config, self.spec.config()).expect("write config");
        let mut last = String::new();
        // The port was free when the spec was made; a replacement binds it again at once.
        for _attempt in 0..5 {
            self.generation += 1;
            let mut cmd = clean_command(&Server::Wharf.binary());
            cmd.arg("serve")
                .arg(&config)
                .stdout(log_file(&self.log_path()))
                .stderr(log_file(&self.log_path()));
            let mut process = Process::spawn(&self.spec.name, cmd);
            match wait_ready(&mut process, self.spec.debug_port) {
                Ok(()) => {
                    self.process = Some(process);
                    return;
                }
                Err(e) => {
                    last = e;
                    process.kill();
                    thread::sleep(Duration::from_millis(200));
                }
            }
        }
        panic!(
            "{} did not become ready: {last}\n--- config ---\n{}\n--- log ---\n{}",
            self.spec.name,
            self.spec.config(),
            self.log()
        );
    }

    /// `GET /readyz` on the debug port: the status, or None if nothing answers.
    pub fn readyz(&self) -> Option<u16> {
        probe(&format!("http://127.0.0.1:{}/readyz", self.spec.debug_port))
    }

    /// SIGTERM: the node drains and exits by itself.
    pub fn terminate(&mut self) {
        self.process.as_mut().expect("running").signal("TERM");
    }

    /// SIGKILL, at once.
    pub fn kill(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill();
        }
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        self.process.as_mut().and_then(|p| p.wait_exit(limit))
    }

    pub fn running(&mut self) -> bool {
        self.process.as_mut().is_some_and(Process::running)
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(&self.url())
    }
}

fn probe(url: &str) -> Option<u16> {
    Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?
        .get(url)
        .send()
        .ok()
        .map(|r| r.status().as_u16())
}

fn wait_ready(process: &mut Process, debug_port: u16) -> Result<(), String> {
    let url = format!("http://127.0.0.1:{debug_port}/readyz");
    let mut last = None;
    let ready = wait_until(WAIT_LIMIT, || {
        if !process.running() {
            return true;
        }
        last = probe(&url);
        last == Some(200)
    });
    if let Some(status) = process.try_exit() {
        return Err(format!("exited early with {status}"));
    }
    if ready {
        Ok(())
    } else {
        Err(format!("GET /readyz answered {last:?}"))
    }
}

// ---------------------------------------------------------------------------------------------
// haproxy
// ---------------------------------------------------------------------------------------------

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
pub fn haproxy_check(config: &Path, env: &[(String, String)]) -> super::support::CommandOutput {
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(&self.url())
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
        self.log()
            .lines()
            .filter(|l| l.contains(" registry wharf/"))
            .map(str::to_string)
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/// Options for [`Cluster::start`].
pub struct ClusterOptions {
    /// `haproxy/haproxy.cfg` or `haproxy/haproxy-sticky.cfg`.
    pub haproxy_config: &'static str,
    /// Put a chaos proxy between the nodes and Redis.
    pub chaos: bool,
    /// Per-node secret overrides (`None`: the shared [`SECRET`]).
    pub secrets: [Option<&'static str>; 3],
    pub draintimeout: Duration,
    pub redis_timeout: Duration,
    /// Store in this bucket of the shared S3 server instead of a shared folder, blob reads
    /// redirected to it or not.
    pub s3: Option<(super::support::S3Target, bool)>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            haproxy_config: "haproxy/haproxy.cfg",
            chaos: false,
            secrets: [None, None, None],
            draintimeout: Duration::from_secs(12),
            redis_timeout: Duration::from_millis(100),
            s3: None,
        }
    }
}

/// Three nodes over one storage folder and one Redis, behind haproxy.
pub struct Cluster {
    // Field order is drop order: the balancer first, then nodes, then what they use.
    pub haproxy: Haproxy,
    pub nodes: Vec<Node>,
    pub chaos: Option<ChaosProxy>,
    pub redis: RedisServer,
    pub storage: tempfile::TempDir,
}

impl Cluster {
    pub fn start(options: ClusterOptions) -> Cluster {
        let storage = tempfile::Builder::new()
            .prefix("wharf-cluster-storage-")
            .tempdir()
            .expect("temp dir");
        let redis = RedisServer::start();
        let chaos = options.chaos.then(|| ChaosProxy::start(redis.addr()));
        let redis_addr = chaos
            .as_ref()
            .map(ChaosProxy::addr)
            .unwrap_or_else(|| redis.addr());
        let nodes: Vec<Node> = (0..3)
            .map(|i| {
                Node::start(NodeSpec {
                    name: format!("node{}", i + 1),
                    port: free_port(),
                    debug_port: free_port(),
                    secret: options.secrets[i].unwrap_or(SECRET).to_string(),
                    storage: storage.path().to_path_buf(),
                    s3: options.s3.as_ref().map(|(target, redirect)| {
                        let section = super::support::s3::storage_section(
                            &target.endpoint,
                            &target.bucket,
                            &[],
                        );
                        (section, *redirect)
                    }),
                    redis: Some(redis_addr.clone()),
                    draintimeout: options.draintimeout,
                    redis_timeout: options.redis_timeout,
                })
            })
            .collect();
        let ports: Vec<(u16, u16)> = nodes
            .iter()
            .map(|n| (n.spec.port, n.spec.debug_port))
            .collect();
        let haproxy = Haproxy::start(&repo_path(options.haproxy_config), &ports);
        Cluster {
            haproxy,
            nodes,
            chaos,
            redis,
            storage,
        }
    }

    /// The client's view: everything through haproxy.
    pub fn endpoint(&self) -> Endpoint {
        self.haproxy.endpoint()
    }

    pub fn node(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.spec.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// `<storage>/docker/registry/v2`.
    pub fn v2_root(&self) -> PathBuf {
        self.storage.path().join("docker/registry/v2")
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            out.push_str(&format!(
                "--- {} ---\n{}\n",
                n.spec.name,
                tail(&n.log(), 60)
            ));
        }
        out.push_str(&format!(
            "--- haproxy ---\n{}\n",
            tail(&self.haproxy.log(), 60)
        ));
        out
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Client sessions
// ---------------------------------------------------------------------------------------------

/// Cut points splitting `len` bytes into `chunks` random, non-empty chunks (fewer when two cuts
/// coincide).
pub fn random_cuts(prng: &mut super::support::Prng, len: usize, chunks: usize) -> Vec<usize> {
    let mut cuts: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
    for _ in 0..chunks - 1 {
        cuts.insert(1 + (prng.next_u64() as usize) % (len - 1));
    }
    cuts.into_iter().collect()
}

/// A chunked push through the cluster's haproxy whose requests must be answered by at least
/// two nodes; panics with the seed, the cuts and the nodes' logs when the push fails.
pub fn push_over_nodes(
    cluster: &Cluster,
    repo: &str,
    data: &[u8],
    cuts: &[usize],
    seed: u64,
) -> Trace {
    let trace = cluster
        .endpoint()
        .push_chunked(repo, data, cuts)
        .unwrap_or_else(|f| {
            panic!(
                "push of {} bytes (seed {seed:#x}, cuts {cuts:?}): {f}\n{}",
                data.len(),
                cluster.logs()
            )
        });
    let nodes: std::collections::BTreeSet<&str> = trace.iter().map(|h| h.node.as_str()).collect();
    assert!(
        nodes.len() >= 2,
        "one upload's requests should be spread over nodes: {trace:?}"
    );
    trace
}

/// `skopeo copy --preserve-digests` of `oci:<layout>:<tag>` to `docker://<host>/<repo>:v1`
/// (`--all` for an index).
pub fn skopeo_push(host: &str, layout: &Path, tag: &str, repo: &str, all: bool) {
    let source = format!("oci:{}:{tag}", layout.display());
    let dest = format!("docker://{host}/{repo}:v1");
    let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), dest.as_str()]);
    super::support::skopeo(&args).assert_success("skopeo copy into the cluster");
}

/// `skopeo copy` of `docker://<host>/<repo>:v1` into a fresh layout at `out` under `tag`.
pub fn skopeo_pull(
    host: &str,
    repo: &str,
    tag: &str,
    all: bool,
    out: &Path,
) -> super::support::layout::OciLayout {
    let source = format!("docker://{host}/{repo}:v1");
    let dest = format!("oci:{}:{tag}", out.display());
    let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), dest.as_str()]);
    super::support::skopeo(&args).assert_success("skopeo copy out of the cluster");
    super::support::layout::OciLayout::create_existing(out)
}

// ---------------------------------------------------------------------------------------------
// Storage checks
// ---------------------------------------------------------------------------------------------

/// Checks every blob under `v2_root/blobs` against its digest, and that no link file in
/// `v2_root/repositories` is anything but a whole `sha256:<64 hex>`. Returns the problems.
pub fn storage_problems(v2_root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let blobs = v2_root.join("blobs/sha256");
    for prefix in fs::read_dir(&blobs).into_iter().flatten().flatten() {
        for entry in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            let hex_name = entry.file_name().to_string_lossy().into_owned();
            let data = entry.path().join("data");
            let Ok(mut file) = fs::File::open(&data) else {
                continue;
            };
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(e) => {
                        problems.push(format!("{}: {e}", data.display()));
                        break;
                    }
                }
            }
            let actual = hex(&hasher.finalize());
            if actual != hex_name {
                problems.push(format!("blob {hex_name} holds content hashing to {actual}"));
            }
        }
    }
    let mut stack = vec![v2_root.join("repositories")];
    let mut visited = 0usize;
    while let Some(dir) = stack.pop() {
        visited += 1;
        assert!(visited < 1_000_000, "storage tree too large to check");
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                // Upload sessions are not links.
                if name != "_uploads" {
                    stack.push(path);
                }
            } else if name == "link" {
                let text = fs::read_to_string(&path).unwrap_or_default();
                let ok = text.len() == 71
                    && text.starts_with("sha256:")
                    && text[7..].bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    problems.push(format!("torn link {}: {text:?}", path.display()));
                }
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

/// One answer from the registry.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The node that answered ([`NODE_HEADER`]).
    pub node: String,
    pub location: Option<String>,
    /// `Range` (upload progress).
    pub range: Option<String>,
    pub digest_header: Option<String>,
    pub body: Vec<u8>,
    pub elapsed: Duration,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first error code of an OCI error body.
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_string)
    }
}

/// A request that did not get the expected answer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    /// None for a transport error (connection refused, reset, timeout).
    pub answer: Option<Box<Answer>>,
    pub error: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.answer {
            Some(a) => write!(
                f,
                "{}: {} from {} ({} ms): {}",
                self.what,
                a.status,
                a.node,
                a.elapsed.as_millis(),
                a.text()
            ),
            None => write!(f, "{}: {}", self.what, self.error),
        }
    }
}

/// One request of a push: method, status, the node that answered, the request path.
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: &'static str,
    pub status: u16,
    pub node: String,
    pub path: String,
}

/// What a push went through.
pub type Trace = Vec<Hop>;

fn hop(method: &'static str, url: &str, a: &Answer) -> Hop {
    let path = super::support::location_path(url);
    Hop {
        method,
        status: a.status,
        node: a.node.clone(),
        path: path.split('?').next().unwrap_or("").to_string(),
    }
}

/// An HTTP client for one base URL (haproxy's or a node's).
#[derive(Clone)]
pub struct Endpoint {
    pub base: String,
    client: Client,
}

/// A body: bytes, or a reader of a known length.
pub enum Payload {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + Send + 'static>, u64),
}

impl Endpoint {
    pub fn new(base: &str) -> Endpoint {
        Endpoint {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(300))
                .connect_timeout(Duration::from_secs(5))
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
        }
    }

    /// An absolute URL for a path, or a `Location` (absolute ones are used as they are).
    pub fn url(&self, path_or_location: &str) -> String {
        if path_or_location.starts_with("http://") || path_or_location.starts_with("https://") {
            path_or_location.to_string()
        } else {
            format!("{}{}", self.base, path_or_location)
        }
    }

    /// A `Location` pointed at this endpoint instead of whichever host it names.
    pub fn here(&self, location: &str) -> String {
        format!("{}{}", self.base, super::support::location_path(location))
    }

    /// Sends a request; `Err` only for transport errors. The body is read whole unless `sink`.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        payload: Option<Payload>,
    ) -> Result<Answer, String> {
        let started = Instant::now();
        let mut req = self.client.request(method.clone(), self.url(url));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match payload {
            Some(Payload::Bytes(b)) => {
                req = req
                    .header("content-type", "application/octet-stream")
                    .header("content-length", b.len().to_string())
                    .body(b)
            }
            Some(Payload::Reader(r, len)) => {
                req = req
                    .header("content-type", "application/octet-stream")
                    .body(Body::sized(r, len))
            }
            None => {}
        }
        let resp = req.send().map_err(|e| format!("{method} {url}: {e:#}"))?;
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (status, node, location, range, digest_header) = (
            resp.status().as_u16(),
            header(NODE_HEADER).unwrap_or_default(),
            header("location"),
            header("range"),
            header("docker-content-digest"),
        );
        let body = resp
            .bytes()
            .map_err(|e| format!("{method} {url}: reading the body: {e:#}"))?
            .to_vec();
        Ok(Answer {
            status,
            node,
            location,
            range,
            digest_header,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// Sends and requires `expected`; anything else is a [`Failure`].
    pub fn expect(
        &self,
        what: &str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        payload: Option<Payload>,
        expected: u16,
    ) -> Result<Answer, Failure> {
        match self.send(method, url, headers, payload) {
            Ok(a) if a.status == expected => Ok(a),
            Ok(a) => Err(Failure {
                what: what.to_string(),
                error: format!("expected {expected}"),
                answer: Some(Box::new(a)),
            }),
            Err(error) => Err(Failure {
                what: what.to_string(),
                answer: None,
                error,
            }),
        }
    }

    /// POST a new upload session: the `Location` and the answer.
    pub fn start_upload(&self, repo: &str) -> Result<Answer, Failure> {
        let a = self.expect(
            "POST upload",
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            None,
            202,
        )?;
        if a.location.is_none() {
            return Err(Failure {
                what: "POST upload".into(),
                error: "no Location".into(),
                answer: Some(Box::new(a)),
            });
        }
        Ok(a)
    }

    /// PATCH `data` (bytes `start..start+len` of the blob) to `location`.
    pub fn patch(&self, location: &str, start: u64, data: Payload) -> Result<Answer, Failure> {
        let len = match &data {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Reader(_, l) => *l,
        };
        let mut headers = vec![];
        if len > 0 {
            headers.push(("content-range", format!("{start}-{}", start + len - 1)));
        }
        self.expect("PATCH", Method::PATCH, location, &headers, Some(data), 202)
    }

    /// PUT `?digest=` (no body) to finish an upload.
    pub fn finish(&self, location: &str, digest: &str) -> Result<Answer, Failure> {
        let url = super::support::with_digest(location, digest);
        self.expect(
            "PUT",
            Method::PUT,
            &url,
            &[],
            Some(Payload::Bytes(Vec::new())),
            201,
        )
    }

    /// A chunked push: POST, one PATCH per chunk cut at `cuts`, PUT. Returns the trace.
    pub fn push_chunked(&self, repo: &str, data: &[u8], cuts: &[usize]) -> Result<Trace, Failure> {
        let digest = sha256_hex_digest(data);
        let mut trace = Trace::new();
        let post = self.start_upload(repo)?;
        trace.push(hop("POST", &format!("/v2/{repo}/blobs/uploads/"), &post));
        let mut location = post.location.unwrap();
        let mut start = 0usize;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < data.len()).collect();
        bounds.push(data.len());
        for end in bounds {
            if end <= start {
                continue;
            }
            let a = self.patch(
                &location,
                start as u64,
                Payload::Bytes(data[start..end].to_vec()),
            )?;
            trace.push(hop("PATCH", &location, &a));
            let expected_range = format!("0-{}", end - 1);
            if a.range.as_deref() != Some(expected_range.as_str()) || a.location.is_none() {
                return Err(Failure {
                    what: "PATCH".into(),
                    error: format!("expected Range {expected_range} and a Location"),
                    answer: Some(Box::new(a)),
                });
            }
            location = a.location.unwrap();
            start = end;
        }
        let put = self.finish(&location, &digest)?;
        trace.push(hop("PUT", &location, &put));
        if put.digest_header.as_deref() != Some(digest.as_str()) {
            return Err(Failure {
                what: "PUT".into(),
                error: format!("Docker-Content-Digest is not {digest}"),
                answer: Some(Box::new(put)),
            });
        }
        Ok(trace)
    }

    /// A monolithic push: POST, then PUT `?digest=` with the whole body.
    pub fn push_monolithic(&self, repo: &str, data: &[u8]) -> Result<Trace, Failure> {
        let digest = sha256_hex_digest(data);
        let post = self.start_upload(repo)?;
        let location = post.location.clone().unwrap();
        let url = super::support::with_digest(&location, &digest);
        let put = self.expect(
            "PUT",
            Method::PUT,
            &url,
            &[],
            Some(Payload::Bytes(data.to_vec())),
            201,
        )?;
        Ok(vec![
            hop("POST", &format!("/v2/{repo}/blobs/uploads/"), &post),
            hop("PUT", &location, &put),
        ])
    }

    /// Streams a blob back and returns (digest of the bytes, size, node).
    pub fn pull_digest(&self, repo: &str, digest: &str) -> Result<(String, u64, String), Failure> {
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let fail = |error: String| Failure {
            what: format!("GET blob {digest}"),
            answer: None,
            error,
        };
        let mut resp = self
            .client
            .get(&url)
            .send()
            .map_err(|e| fail(format!("{e:#}")))?;
        let node = resp
            .headers()
            .get(NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if resp.status().as_u16() != 200 {
            return Err(fail(format!("status {} from {node}", resp.status())));
        }
        let mut sink = HashingSink::default();
        resp.copy_to(&mut sink)
            .map_err(|e| fail(format!("reading the body: {e:#}")))?;
        let size = sink.written;
        Ok((sink.digest(), size, node))
    }

    /// PUT a manifest under `reference`; returns the answer (201 expected).
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Result<Answer, Failure> {
        self.expect(
            "PUT manifest",
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("content-type", media_type.to_string())],
            Some(Payload::Bytes(body.to_vec())),
            201,
        )
    }

    /// GET a manifest (any type): its bytes and the answer.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Result<Answer, Failure> {
        self.expect(
            "GET manifest",
            Method::GET,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("accept", super::support::ACCEPT_ALL_MANIFESTS.to_string())],
            None,
            200,
        )
    }

    /// HEAD a blob (200 expected).
    pub fn head_blob(&self, repo: &str, digest: &str) -> Result<Answer, Failure> {
        self.expect(
            "HEAD blob",
            Method::HEAD,
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            None,
            200,
        )
    }
}

/// `sha256:<hex>` of `data`.
pub fn sha256_hex_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// A small image manifest referring to `config` and `layers` (digest, size), OCI media types.
pub fn image_manifest(config: (&str, u64), layers: &[(String, u64)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, s)| {
            serde_json::json!({
                "mediaType": super::support::OCI_LAYER, "digest": d, "size": s
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": super::support::OCI_MANIFEST,
        "config": {"mediaType": super::support::OCI_CONFIG, "digest": config.0, "size": config.1},
        "layers": layers,
    }))
    .unwrap()
}

/// Latency figures of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latency {
    pub fn of(samples: &[Duration]) -> Latency {
        let mut s = samples.to_vec();
        s.sort();
        let at = |q: f64| {
            s.get(((s.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or_default()
        };
        let total: Duration = s.iter().sum();
        Latency {
            count: s.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: s.last().copied().unwrap_or_default(),
            mean: total / (s.len().max(1) as u32),
        }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "n={} mean={:.2}ms p50={:.2}ms p99={:.2}ms max={:.2}ms",
            self.count,
            ms(self.mean),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Continuous load
// ---------------------------------------------------------------------------------------------

/// An image pushed by the load and acknowledged (every PUT answered 201).
#[derive(Debug, Clone)]
pub struct Pushed {
    pub repo: String,
    pub tag: String,
    pub manifest: String,
    pub config: (String, u64),
    pub layer: (String, u64),
    pub acked_at: Instant,
    /// The node that acknowledged the manifest.
    pub node: String,
}

/// A push that failed and then succeeded when the client tried again.
#[derive(Debug, Clone)]
pub struct Retried {
    pub first_failure: String,
    pub attempts: u32,
    /// The nodes that answered the successful attempt.
    pub nodes: Vec<String>,
}

/// What a load run saw.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub requests: u64,
    pub pushes: u64,
    pub pulls: u64,
    /// Requests that failed (for pushes with retries: attempts that failed, also in `retried`).
    pub failures: Vec<String>,
    pub retried: Vec<Retried>,
    pub pushed: Vec<Pushed>,
    pub bytes_pushed: u64,
    pub bytes_pulled: u64,
}

/// Options for [`Load::start`].
#[derive(Clone)]
pub struct LoadOptions {
    pub pushers: usize,
    pub pullers: usize,
    /// Slow clients: each uploads 2 MiB in four PATCHes that take about a second each, so
    /// requests are always in flight.
    pub slow_uploaders: usize,
    /// Layer size; the layer goes up in three PATCHes.
    pub layer_size: usize,
    /// Retry a failed push from the start (up to 5 attempts) instead of only recording it.
    pub retry: bool,
    /// Stop by itself after this long, whatever happens.
    pub limit: Duration,
    /// And after this many operations per worker.
    pub max_ops: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            pushers: 2,
            pullers: 2,
            slow_uploaders: 0,
            layer_size: 256 * 1024,
            retry: false,
            limit: Duration::from_secs(120),
            max_ops: 10_000,
        }
    }
}

/// Pushers and pullers working through one endpoint until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<LoadReport>>,
    workers: Vec<JoinHandle<()>>,
}

static LOAD_SEED: AtomicU64 = AtomicU64::new(1);

impl Load {
    pub fn start(endpoint: Endpoint, options: LoadOptions) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(LoadReport::default()));
        // Pullers need something to pull from the first moment.
        let seed_push = push_image(&endpoint, "load/seed", "seed", options.layer_size)
            .unwrap_or_else(|(f, _)| panic!("seed push failed: {f}"));
        {
            let mut r = shared.lock().unwrap();
            r.pushed.push(seed_push);
            r.requests += 8;
        }
        let deadline = Instant::now() + options.limit;
        let mut workers = Vec::new();
        for w in 0..options.pushers {
            let (endpoint, stop, shared, options) = (
                endpoint.clone(),
                stop.clone(),
                shared.clone(),
                options.clone(),
            );
            workers.push(thread::spawn(move || {
                for i in 0..options.max_ops {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let repo = format!("load/pusher{w}");
                    let tag = format!("t{i}");
                    push_with_retries(&endpoint, &repo, &tag, &options, &shared);
                }
            }));
        }
        for w in 0..options.pullers {
            let (endpoint, stop, shared, options) = (
                endpoint.clone(),
                stop.clone(),
                shared.clone(),
                options.clone(),
            );
            workers.push(thread::spawn(move || {
                for i in 0..options.max_ops {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let target = {
                        let r = shared.lock().unwrap();
                        let n = r.pushed.len();
                        r.pushed[(i as usize * 7 + w * 13) % n].clone()
                    };
                    let result = pull_image(&endpoint, &target);
                    let mut r = shared.lock().unwrap();
                    r.pulls += 1;
                    match result {
                        Ok((requests, bytes)) => {
                            r.requests += requests;
                            r.bytes_pulled += bytes;
                        }
                        Err((f, requests)) => {
                            r.requests += requests;
                            r.failures
                                .push(format!("pull {}:{}: {f}", target.repo, target.tag));
                        }
                    }
                }
            }));
        }
        for w in 0..options.slow_uploaders {
            let (endpoint, stop, shared, options) = (
                endpoint.clone(),
                stop.clone(),
                shared.clone(),
                options.clone(),
            );
            workers.push(thread::spawn(move || {
                for i in 0..options.max_ops {
                    if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                        break;
                    }
                    let repo = format!("load/slow{w}");
                    let result = slow_upload(&endpoint, &repo, i);
                    let mut r = shared.lock().unwrap();
                    r.pushes += 1;
                    match result {
                        Ok(bytes) => {
                            r.requests += 7;
                            r.bytes_pushed += bytes;
                        }
                        Err(f) => r.failures.push(format!("slow upload {repo} #{i}: {f}")),
                    }
                }
            }));
        }
        Load {
            stop,
            shared,
            workers,
        }
    }

    /// Operations so far (pushes + pulls).
    pub fn ops(&self) -> u64 {
        let r = self.shared.lock().unwrap();
        r.pushes + r.pulls
    }

    /// Failures so far.
    pub fn failures(&self) -> usize {
        self.shared.lock().unwrap().failures.len()
    }

    /// Waits (bounded) until `n` more operations have completed.
    pub fn wait_ops(&self, n: u64, limit: Duration) -> bool {
        let target = self.ops() + n;
        wait_until(limit, || self.ops() >= target)
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
        std::mem::take(&mut *self.shared.lock().unwrap())
    }
}

/// POST, four trickling PATCHes, PUT, then a pull that checks the digest.
fn slow_upload(endpoint: &Endpoint, repo: &str, i: u64) -> Result<u64, Failure> {
    let seed = LOAD_SEED.fetch_add(1, Ordering::SeqCst) ^ (std::process::id() as u64) << 32;
    let data = super::support::Prng::new(seed ^ i).bytes(2 * 1024 * 1024);
    let digest = sha256_hex_digest(&data);
    let mut location = endpoint.start_upload(repo)?.location.unwrap();
    let quarter = data.len() / 4;
    for k in 0..4 {
        let part = data[k * quarter..(k + 1) * quarter].to_vec();
        let a = endpoint.patch(
            &location,
            (k * quarter) as u64,
            Trickle::new(part, 8, Duration::from_millis(900)).payload(),
        )?;
        location = a.location.unwrap();
    }
    endpoint.finish(&location, &digest)?;
    let (got, len, node) = endpoint.pull_digest(repo, &digest)?;
    if got != digest {
        return Err(Failure {
            what: "GET slow upload".into(),
            answer: None,
            error: format!("got {got} ({len} bytes) from {node}, pushed {digest}"),
        });
    }
    Ok(data.len() as u64)
}

fn push_with_retries(
    endpoint: &Endpoint,
    repo: &str,
    tag: &str,
    options: &LoadOptions,
    shared: &Mutex<LoadReport>,
) {
    let attempts = if options.retry { 5 } else { 1 };
    let mut first_failure = None;
    for attempt in 1..=attempts {
        let result = push_image(endpoint, repo, tag, options.layer_size);
        let mut r = shared.lock().unwrap();
        r.pushes += 1;
        match result {
            Ok(pushed) => {
                r.requests += 8;
                r.bytes_pushed += pushed.layer.1 + pushed.config.1;
                if let Some(first_failure) = first_failure.take() {
                    r.retried.push(Retried {
                        first_failure,
                        attempts: attempt,
                        nodes: vec![pushed.node.clone()],
                    });
                }
                r.pushed.push(pushed);
                return;
            }
            Err((f, requests)) => {
                r.requests += requests;
                let text = format!("push {repo}:{tag} attempt {attempt}: {f}");
                r.failures.push(text.clone());
                first_failure.get_or_insert(text);
            }
        }
        drop(r);
        thread::sleep(Duration::from_millis(100));
    }
}

/// Pushes a config blob (monolithic), a layer (three PATCHes) and a manifest tagged `tag`.
/// On failure: the failure and how many requests were sent.
pub fn push_image(
    endpoint: &Endpoint,
    repo: &str,
    tag: &str,
    layer_size: usize,
) -> Result<Pushed, (Failure, u64)> {
    let seed = LOAD_SEED.fetch_add(1, Ordering::SeqCst) ^ (std::process::id() as u64) << 32;
    let mut prng = super::support::Prng::new(seed);
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = prng.bytes(layer_size);
    let config_digest = sha256_hex_digest(&config);
    let layer_digest = sha256_hex_digest(&layer);
    endpoint
        .push_monolithic(repo, &config)
        .map_err(|f| (f, 2))?;
    let cuts = [layer_size / 3, 2 * layer_size / 3];
    endpoint
        .push_chunked(repo, &layer, &cuts)
        .map_err(|f| (f, 7))?;
    let manifest = image_manifest(
        (&config_digest, config.len() as u64),
        &[(layer_digest.clone(), layer.len() as u64)],
    );
    let put = endpoint
        .put_manifest(repo, tag, super::support::OCI_MANIFEST, &manifest)
        .map_err(|f| (f, 8))?;
    Ok(Pushed {
        repo: repo.to_string(),
        tag: tag.to_string(),
        manifest: sha256_hex_digest(&manifest),
        config: (config_digest, config.len() as u64),
        layer: (layer_digest, layer.len() as u64),
        acked_at: Instant::now(),
        node: put.node,
    })
}

/// Pulls an image back and checks every digest: the manifest by tag, the layer, a HEAD of the
/// config. On success: requests sent and bytes pulled.
pub fn pull_image(endpoint: &Endpoint, image: &Pushed) -> Result<(u64, u64), (Failure, u64)> {
    let m = endpoint
        .get_manifest(&image.repo, &image.tag)
        .map_err(|f| (f, 1))?;
    let got = sha256_hex_digest(&m.body);
    if got != image.manifest || m.digest_header.as_deref() != Some(image.manifest.as_str()) {
        return Err((
            Failure {
                what: "GET manifest".into(),
                error: format!(
                    "digest {got} (header {:?}), pushed {}",
                    m.digest_header, image.manifest
                ),
                answer: Some(Box::new(m)),
            },
            1,
        ));
    }
    let (digest, size, node) = endpoint
        .pull_digest(&image.repo, &image.layer.0)
        .map_err(|f| (f, 2))?;
    if digest != image.layer.0 || size != image.layer.1 {
        return Err((
            Failure {
                what: "GET layer".into(),
                error: format!(
                    "got {digest} ({size} bytes) from {node}, pushed {:?}",
                    image.layer
                ),
                answer: None,
            },
            2,
        ));
    }
    endpoint
        .head_blob(&image.repo, &image.config.0)
        .map_err(|f| (f, 3))?;
    Ok((3, size + m.body.len() as u64))
}

/// A body that trickles out: `piece` bytes, then a pause, until done (a slow client).
pub struct Trickle {
    data: Vec<u8>,
    pos: usize,
    piece: usize,
    pause: Duration,
}

impl Trickle {
    /// `data` sent in `pieces` pieces over about `over`.
    pub fn new(data: Vec<u8>, pieces: usize, over: Duration) -> Trickle {
        let piece = data.len().div_ceil(pieces.max(1)).max(1);
        Trickle {
            data,
            pos: 0,
            piece,
            pause: over / pieces.max(1) as u32,
        }
    }

    pub fn payload(self) -> Payload {
        let len = self.data.len() as u64;
        Payload::Reader(Box::new(self), len)
    }
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.data.len() {
            return Ok(0);
        }
        // Pause at each piece boundary, whatever the size of the caller's buffer.
        let in_piece = self.pos % self.piece;
        if self.pos > 0 && in_piece == 0 {
            thread::sleep(self.pause);
        }
        let n = buf
            .len()
            .min(self.piece - in_piece)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
