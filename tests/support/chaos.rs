//! A chaos TCP proxy on loopback between a server and what it depends on (Redis, S3): it
//! forwards, delays, hangs or cuts the traffic as a test switches it, to show the server
//! degrades instead of failing.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

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
    /// Forward the first this-many bytes of each direction of each connection, then hold the
    /// rest (kept, not lost) until the mode changes: a transfer caught in the middle.
    Hold(u64),
    /// HTTP upstreams only: answer this percentage of requests (every n-th of each hundred,
    /// spread evenly) with S3's `503 SlowDown`, and forward the others.
    Throttle(u8),
    /// HTTP upstreams only: as [`Chaos::Throttle`], with S3's `500 InternalError` (a transient
    /// failure, not a request to slow down).
    Fail(u8),
}

struct ProxyShared {
    mode: Mutex<Chaos>,
    stop: AtomicBool,
    conns: Mutex<Vec<TcpStream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    accepted: AtomicU64,
    /// Directions of connections holding bytes back right now ([`Chaos::Hold`]).
    holding: AtomicU64,
}

/// A TCP proxy on a free loopback port in front of `upstream`, whose behaviour tests switch.
pub struct ChaosProxy {
    pub port: u16,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

impl ChaosProxy {
    /// A proxy passing everything to `upstream` (`127.0.0.1:<port>`) until told otherwise.
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
            holding: AtomicU64::new(0),
        });
        let s = shared.clone();
        let acceptor = thread::spawn(move || accept_loop(listener, upstream, s));
        ChaosProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:<port>`, for an HTTP upstream (an S3 endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// What it does now.
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

    /// Directions of connections holding bytes back right now ([`Chaos::Hold`]): a transfer
    /// that is still open and unfinished.
    pub fn holding(&self) -> u64 {
        self.shared.holding.load(Ordering::SeqCst)
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
            Chaos::Throttle(_) | Chaos::Fail(_) => {
                shared
                    .conns
                    .lock()
                    .unwrap()
                    .push(client.try_clone().expect("clone"));
                let (s, up) = (shared.clone(), upstream.clone());
                let handler = thread::spawn(move || throttle(client, up, s));
                shared.threads.lock().unwrap().push(handler);
                continue;
            }
            Chaos::Pass | Chaos::Delay(_) | Chaos::Hold(_) => {}
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
    let mut forwarded = 0u64;
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
        let mut piece = &buf[..n];
        match mode {
            Chaos::Pass | Chaos::Throttle(_) | Chaos::Fail(_) => {}
            Chaos::Hold(limit) if forwarded + n as u64 > limit => {
                let first = limit.saturating_sub(forwarded) as usize;
                if to.write_all(&piece[..first]).is_err() {
                    break;
                }
                forwarded += first as u64;
                piece = &piece[first..];
                shared.holding.fetch_add(1, Ordering::SeqCst);
                // Bounded: held at most 5 minutes, or until the proxy stops.
                for _ in 0..30_000 {
                    let held = matches!(*shared.mode.lock().unwrap(), Chaos::Hold(_));
                    if !held || shared.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                shared.holding.fetch_sub(1, Ordering::SeqCst);
            }
            Chaos::Hold(_) => {}
            Chaos::Delay(d) => thread::sleep(d),
            // A hung server: what was sent is swallowed.
            Chaos::Blackhole => continue,
            Chaos::Cut => break,
        }
        if to.write_all(piece).is_err() {
            break;
        }
        forwarded += piece.len() as u64;
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// Requests answered or forwarded by every throttling connection, for spreading refusals.
static THROTTLE_COUNTER: AtomicU64 = AtomicU64::new(0);

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

const INTERNAL_ERROR: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message></Error>";

/// Serves one client connection request by request: each is refused (`503 SlowDown`, `500
/// InternalError`) or forwarded alone on a new upstream connection (asked to close after its
/// answer, so that the answer ends where the upstream connection does).
fn throttle(mut client: TcpStream, upstream: String, shared: Arc<ProxyShared>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let mut pending: Vec<u8> = Vec::new();
    // Bounded: a connection carries at most this many requests.
    for _ in 0..100_000 {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Some((head, body)) = read_request(&mut client, &mut pending) else {
            break;
        };
        let (percent, status, refusal) = match *shared.mode.lock().unwrap() {
            Chaos::Throttle(p) => (u64::from(p), "503 Slow Down", SLOW_DOWN),
            Chaos::Fail(p) => (u64::from(p), "500 Internal Server Error", INTERNAL_ERROR),
            Chaos::Cut | Chaos::Blackhole => break,
            Chaos::Pass | Chaos::Delay(_) | Chaos::Hold(_) => (0, "", ""),
        };
        let n = THROTTLE_COUNTER.fetch_add(1, Ordering::SeqCst);
        // Every request whose slot in the hundred falls under the percentage.
        let refused = (n * 37 % 100) < percent;
        let answer = if refused {
            format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{refusal}",
                refusal.len()
            )
            .into_bytes()
        } else {
            match forward(&upstream, &head, &body) {
                Some(answer) => answer,
                None => break,
            }
        };
        if client.write_all(&answer).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads one request (head and `Content-Length` body) from `client`; `None` at the end of the
/// connection. A `100-continue` expectation is answered here and dropped from the head.
fn read_request(client: &mut TcpStream, pending: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = client.read(&mut buf).ok().filter(|&n| n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_string();
    pending.drain(..head_end);
    let mut length = 0usize;
    let mut kept = Vec::new();
    for line in head.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("expect:") {
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
            continue;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        kept.push(line.to_string());
    }
    kept.push("Connection: close".to_string());
    while pending.len() < length {
        let n = client.read(&mut buf).ok().filter(|&n| n > 0)?;
        pending.extend_from_slice(&buf[..n]);
    }
    let body: Vec<u8> = pending.drain(..length).collect();
    Some((format!("{}\r\n\r\n", kept.join("\r\n")), body))
}

/// Sends one request upstream on its own connection and returns the whole answer.
fn forward(upstream: &str, head: &str, body: &[u8]) -> Option<Vec<u8>> {
    let mut server = TcpStream::connect_timeout(
        &upstream.parse().expect("upstream address"),
        Duration::from_secs(1),
    )
    .ok()?;
    let _ = server.set_read_timeout(Some(Duration::from_secs(60)));
    server.write_all(head.as_bytes()).ok()?;
    server.write_all(body).ok()?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}
