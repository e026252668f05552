//! A webhook receiver for notification tests: a small HTTP/1.1 server on a 127.0.0.1 port,
//! on threads of the test process. It records every POST it reads, and can accept (204),
//! answer another status, hang past the sender's timeout, stop (connections refused) and
//! start again on the same port. [`Receiver::start_tls`] serves https with a given certificate.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::wait::wait_until;

/// How the receiver answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 204, accepted.
    Accept,
    /// This status (not accepted by the sender unless 2xx).
    Status(u16),
    /// Reads the request, then answers nothing for this long and closes.
    Hang(Duration),
    /// Accepts (204) after this long: a slow receiver.
    Slow(Duration),
}

/// One POST as received.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// Request path.
    pub path: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
    /// What the receiver answered (0 for a hang).
    pub answered: u16,
}

impl Delivery {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The envelope's events.
    pub fn events(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("events").and_then(|e| e.as_array().cloned()))
            .unwrap_or_default()
    }
}

struct Shared {
    mode: Mutex<Mode>,
    log: Mutex<Vec<Delivery>>,
    stop: AtomicBool,
    /// Open connections, shut down by `stop` so a pooled connection cannot outlive it.
    conns: Mutex<Vec<TcpStream>>,
    /// Set for https.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// The receiver; stopped when dropped.
pub struct Receiver {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Receiver {
    /// Starts on a free port, accepting.
    pub fn start() -> Receiver {
        Self::start_with(None)
    }

    /// Starts on a free port, serving https with `cert_der` (a leaf for 127.0.0.1) and its
    /// PKCS#8 `key_der`.
    pub fn start_tls(cert_der: Vec<u8>, key_der: Vec<u8>) -> Receiver {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert_der)],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key_der).into(),
            )
            .expect("receiver certificate");
        Self::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let port = listener.local_addr().expect("receiver addr").port();
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Accept),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            tls,
        });
        let mut r = Receiver {
            port,
            shared,
            acceptor: None,
        };
        r.listen(listener);
        r
    }

    fn listen(&mut self, listener: TcpListener) {
        self.shared.stop.store(false, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.acceptor = Some(thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(stream) = stream {
                    if let Ok(c) = stream.try_clone() {
                        shared.conns.lock().unwrap().push(c);
                    }
                    let shared = shared.clone();
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let Ok(socket) = stream.try_clone() else {
                        continue;
                    };
                    thread::spawn(move || match shared.tls.clone() {
                        None => serve(stream, &socket, &shared),
                        Some(config) => {
                            let Ok(conn) = rustls::ServerConnection::new(config) else {
                                return;
                            };
                            serve(rustls::StreamOwned::new(conn, stream), &socket, &shared);
                        }
                    });
                }
            }
        }));
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.shared.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}{path}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Changes how it answers from the next request on.
    pub fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    /// Stops listening: new connections are refused, open ones end after their request.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the acceptor so it sees the flag and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
        for c in self.shared.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Listens again on the same port (bounded retries while the old socket goes away).
    pub fn restart(&mut self) {
        let mut bound = None;
        wait_until(Duration::from_secs(10), || {
            bound = TcpListener::bind(("127.0.0.1", self.port)).ok();
            bound.is_some()
        });
        self.listen(bound.expect("rebind receiver port"));
    }

    /// Every POST read so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.log.lock().unwrap().clone()
    }

    /// The events of accepted POSTs to `path`, in arrival order.
    pub fn accepted_events(&self, path: &str) -> Vec<serde_json::Value> {
        self.deliveries()
            .iter()
            .filter(|d| d.path == path && (200..300).contains(&d.answered))
            .flat_map(|d| d.events())
            .collect()
    }

    /// Waits (bounded) until `path` accepted at least `n` events; returns them.
    pub fn wait_events(&self, path: &str, n: usize, limit: Duration) -> Vec<serde_json::Value> {
        wait_until(limit, || self.accepted_events(path).len() >= n);
        self.accepted_events(path)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves one connection: requests until the peer closes, the receiver stops, or a hang.
/// `socket` is the connection under `stream`, to close it.
fn serve(stream: impl Read + Write, socket: &TcpStream, shared: &Shared) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length.min(16 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let mode = *shared.mode.lock().unwrap();
        let answered = match mode {
            Mode::Accept | Mode::Slow(_) => 204,
            Mode::Status(s) => s,
            Mode::Hang(_) => 0,
        };
        shared.log.lock().unwrap().push(Delivery {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            answered,
        });
        let writer = reader.get_mut();
        match mode {
            Mode::Hang(d) => {
                thread::sleep(d);
                let _ = socket.shutdown(Shutdown::Both);
                return;
            }
            _ => {
                if let Mode::Slow(d) = mode {
                    thread::sleep(d);
                }
                let reply = format!("HTTP/1.1 {answered} X\r\nContent-Length: 2\r\n\r\nok");
                let reply = if answered == 204 {
                    "HTTP/1.1 204 No Content\r\n\r\n".to_string()
                } else {
                    reply
                };
                if writer.write_all(reply.as_bytes()).is_err() {
                    return;
                }
            }
        }
        let _ = writer.flush();
        if shared.stop.load(Ordering::SeqCst) {
            let _ = socket.shutdown(Shutdown::Both);
            return;
        }
    }
}
