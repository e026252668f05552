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
