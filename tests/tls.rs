//! TLS on the main listener with a CA generated here: skopeo with `--dest-cert-dir`, https
//! `Location`s, large blobs pushed and pulled intact, mutual TLS, TLS 1.1 refused, the
//! certificate reloaded from disk, and start-up errors naming the key at fault.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::auth::*;
use support::*;

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("wharf-test-ca");
        std::fs::write(dir.path().join("ca.crt"), &ca.identity.cert_pem).unwrap();
        ca.sign(ec_key(), &["localhost", "127.0.0.1"])
            .write(dir.path(), "server");
        Self { dir, ca }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn tls_lines(&self, extra: &[String]) -> Vec<String> {
        let mut lines = vec![
            "  tls:".to_string(),
            format!("    certificate: {}", self.path("server.crt")),
            format!("    key: {}", self.path("server.key")),
        ];
        lines.extend(extra.iter().cloned());
        lines
    }
}

fn spawn(lines: &[String]) -> Registry {
    let mut b = Registry::builder(Driver::Filesystem);
    for l in lines {
        b = b.http_line(l);
    }
    b.spawn()
}

fn curl(args: &[&str]) -> CommandOutput {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"]).args(args);
    run_bounded(cmd, Duration::from_secs(30))
}

/// Waits until a TLS request with the CA answers (or the process exits).
fn wait_tls(reg: &mut Registry, pki: &Pki, client: &[&str]) {
    let url = format!("https://{}/v2/", reg.host());
    let deadline = Instant::now() + WAIT_LIMIT;
    while Instant::now() < deadline {
        if let Some(status) = reg.try_exit() {
            panic!("registry exited with {status}: {}", reg.stderr_text());
        }
        let mut args = vec!["-o", "/dev/null", "-w", "%{http_code}", "--cacert"];
        let ca = pki.path("ca.crt");
        args.push(&ca);
        args.extend(client);
        args.push(&url);
        if curl(&args).stdout == "200" {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("TLS registry not ready: {}", reg.stderr_text());
}

fn s_client(reg: &Registry, args: &[&str]) -> CommandOutput {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", reg.host()])
        .args(args)
        .stdin(std::process::Stdio::null());
    run_bounded(cmd, Duration::from_secs(30))
}

/// openssl s_client may exit 0 after a refused handshake; it prints `New, (NONE)` then instead
/// of `New, TLSv1.x, Cipher is ...`.
fn handshake_failed(out: &CommandOutput) -> bool {
    !out.stdout.contains("New, TLSv1")
}

#[test]
fn skopeo_pushes_over_tls_with_a_cert_dir() {
    let pki = Pki::new();
    let mut reg = spawn(&pki.tls_lines(&[]));
    wait_tls(&mut reg, &pki, &[]);
    let work = tempfile::tempdir().unwrap();
    let layout = one_image_layout(work.path());
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(pki.dir.path().join("ca.crt"), certs.join("ca.crt")).unwrap();
    let dest = format!("docker://{}/tls/image:v1", reg.host());
    skopeo(&[
        "copy",
        "--dest-cert-dir",
        &certs.display().to_string(),
        &format!("oci:{}:v1", layout.display()),
        &dest,
    ])
    .assert_success("skopeo copy over TLS");
    skopeo(&["inspect", "--cert-dir", &certs.display().to_string(), &dest])
        .assert_success("skopeo inspect over TLS");
    // Without the CA the certificate is not trusted.
    assert!(!skopeo(&["inspect", &dest]).status.success());

    // Locations point back over https; HTTP/2 is offered by ALPN.
    let out = curl(&[
        "-i",
        "--http2",
        "-X",
        "POST",
        "--cacert",
        &pki.path("ca.crt"),
        &format!("https://{}/v2/tls/image/blobs/uploads/", reg.host()),
    ]);
    let head = out.stdout.to_ascii_lowercase();
    assert!(head.starts_with("http/2 202"), "{}", out.stdout);
    assert!(
        head.contains(&format!(
            "location: https://{}/v2/tls/image/blobs/uploads/",
            reg.host()
        )),
        "{}",
        out.stdout
    );
    // Plain HTTP on the TLS port gets no registry answer.
    assert_ne!(
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/v2/", reg.host())
        ])
        .stdout,
        "200"
    );
}

/// The `Location` of a `curl -i` answer as an absolute URL, with `extra` appended as a query
/// parameter when given.
fn location(base: &str, head: &str, extra: Option<&str>) -> String {
    let value = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("location")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no Location in {head}"));
    let url = if value.starts_with('/') {
        format!("{base}{value}")
    } else {
        value
    };
    match extra {
        Some(q) if url.contains('?') => format!("{url}&{q}"),
        Some(q) => format!("{url}?{q}"),
        None => url,
    }
}

#[test]
fn large_blobs_stream_both_ways_over_tls_intact() {
    // Uploads are read through a read-ahead buffer under rustls and downloads leave in 1 MiB
    // bursts of records: bytes must arrive whole and in order, whatever the split.
    let pki = Pki::new();
    let mut reg = spawn(&pki.tls_lines(&[]));
    wait_tls(&mut reg, &pki, &[]);
    let work = tempfile::tempdir().unwrap();
    let ca = pki.path("ca.crt");
    let base = format!("https://{}", reg.host());
    // HTTP/1.1, as Docker clients pull, trusting the test CA.
    let curl11 = |args: &[&str]| curl(&[&["--http1.1", "--cacert", ca.as_str()], args].concat());
    // The response's status code alone.
    let status_only: &[&str] = &["-o", "/dev/null", "-w", "%{http_code}"];
    // An upload started in repository `tls/<repo>`: the response head, with its Location.
    let start_upload = |repo: &str| {
        let url = format!("{base}/v2/tls/{repo}/blobs/uploads/");
        curl11(&["-i", "-X", "POST", &url]).stdout
    };
    // A file as the body of `method` to `url`, with `output` options.
    let send_file = |output: &[&str], method: &str, file: &std::path::Path, url: &str| {
        let body = format!("@{}", file.display());
        let content_type = "Content-Type: application/octet-stream";
        let request = [
            "-X",
            method,
            "-H",
            content_type,
            "--data-binary",
            &body,
            url,
        ];
        curl11(&[output, &request].concat())
    };
    // `url` downloaded into `file`, with `extra` options; the status code.
    let download = |file: &std::path::Path, extra: &[&str], url: &str| {
        let file = file.display().to_string();
        let output = ["-o", file.as_str(), "-w", "%{http_code}"];
        curl11(&[&output[..], extra, &[url]].concat())
    };
    let data: Vec<u8> = (0..24_000_037u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let digest = sha256_digest(&data);
    let whole = work.path().join("blob");
    std::fs::write(&whole, &data).unwrap();
    let (first, rest) = data.split_at(7_000_003);
    std::fs::write(work.path().join("first"), first).unwrap();
    std::fs::write(work.path().join("rest"), rest).unwrap();

    // Monolithic: one PUT carries the blob.
    let digest_query = format!("digest={digest}");
    let put = location(&base, &start_upload("big"), Some(&digest_query));
    let out = send_file(status_only, "PUT", &whole, &put);
    assert_eq!(out.stdout, "201", "{}", out.stderr);

    // Chunked into another repository: a PATCH, then the rest with the closing PUT.
    let patch = location(&base, &start_upload("chunked"), None);
    let patched = send_file(&["-i"], "PATCH", &work.path().join("first"), &patch);
    // curl sends `Expect: 100-continue` with large bodies: a `100 Continue` head comes first.
    assert!(
        patched.stdout.contains("HTTP/1.1 202 Accepted"),
        "{}",
        patched.stdout
    );
    let close = location(&base, &patched.stdout, Some(&digest_query));
    let out = send_file(status_only, "PUT", &work.path().join("rest"), &close);
    assert_eq!(out.stdout, "201", "{}", out.stderr);

    // Both download whole, and a range from the middle, with the same bytes.
    for repo in ["big", "chunked"] {
        let got = work.path().join(format!("got-{repo}"));
        let out = download(&got, &[], &format!("{base}/v2/tls/{repo}/blobs/{digest}"));
        assert_eq!(out.stdout, "200", "{}", out.stderr);
        assert_eq!(
            sha256_digest(&std::fs::read(&got).unwrap()),
            digest,
            "{repo}"
        );
    }
    let got = work.path().join("range");
    let out = download(
        &got,
        &["-H", "Range: bytes=5000000-17000000"],
        &format!("{base}/v2/tls/big/blobs/{digest}"),
    );
    assert_eq!(out.stdout, "206", "{}", out.stderr);
    assert!(std::fs::read(&got).unwrap() == data[5_000_000..=17_000_000]);

    // Many at once: the open downloads share a read budget, so each one's chunks change
    // size as the others start and finish (12 open: 320 KiB, not a power of two).
    let url = format!("{base}/v2/tls/big/blobs/{digest}");
    std::thread::scope(|scope| {
        let downloads: Vec<_> = (0..12)
            .map(|i| {
                let got = work.path().join(format!("many-{i}"));
                let (url, download) = (&url, &download);
                scope.spawn(move || (download(&got, &[], url), got))
            })
            .collect();
        for (i, handle) in downloads.into_iter().enumerate() {
            let (out, got) = handle.join().unwrap();
            assert_eq!(out.stdout, "200", "download {i}: {}", out.stderr);
            let bytes = std::fs::read(&got).unwrap();
            assert_eq!(sha256_digest(&bytes), digest, "download {i}");
        }
    });
}

#[test]
fn tls_versions_and_reload() {
    let pki = Pki::new();
    let mut reg = spawn(&pki.tls_lines(&[]));
    wait_tls(&mut reg, &pki, &[]);
    let ok = s_client(&reg, &["-tls1_2", "-CAfile", &pki.path("ca.crt")]);
    assert!(ok.stdout.contains("TLSv1.2"), "{}{}", ok.stdout, ok.stderr);
    let old = s_client(&reg, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]);
    assert!(handshake_failed(&old), "TLS 1.1 accepted: {}", old.stdout);

    // A new certificate written over the old files is served without a restart.
    let fresh = pki.ca.sign(ec_key(), &["renewed.example", "127.0.0.1"]);
    std::thread::sleep(Duration::from_millis(1100));
    fresh.write(pki.dir.path(), "server");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = s_client(&reg, &["-CAfile", &pki.path("ca.crt")]);
        if out.stdout.contains("renewed.example") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "certificate not reloaded: {}",
            out.stdout
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_tls(&mut reg, &pki, &[]);
}

#[test]
fn tls13_only_refuses_tls12() {
    let pki = Pki::new();
    let mut reg = spawn(&pki.tls_lines(&["    minimumtls: tls1.3".into()]));
    wait_tls(&mut reg, &pki, &[]);
    assert!(handshake_failed(&s_client(&reg, &["-tls1_2"])));
    assert!(s_client(&reg, &["-tls1_3", "-CAfile", &pki.path("ca.crt")])
        .stdout
        .contains("TLSv1.3"));
}

#[test]
fn mutual_tls() {
    let pki = Pki::new();
    let client_ca = Ca::new("client-ca");
    std::fs::write(
        pki.dir.path().join("client-ca.crt"),
        &client_ca.identity.cert_pem,
    )
    .unwrap();
    client_ca
        .sign(ec_key(), &["client"])
        .write(pki.dir.path(), "client");
    let stranger = Ca::new("other-ca").sign(ec_key(), &["intruder"]);
    stranger.write(pki.dir.path(), "intruder");
    let mut reg = spawn(&pki.tls_lines(&[
        "    clientcas:".into(),
        format!("      - {}", pki.path("client-ca.crt")),
    ]));
    let (cert, key) = (pki.path("client.crt"), pki.path("client.key"));
    wait_tls(&mut reg, &pki, &["--cert", &cert, "--key", &key]);
    let url = format!("https://{}/v2/", reg.host());
    let code = |extra: &[&str]| {
        let ca = pki.path("ca.crt");
        let mut args = vec![
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            ca.as_str(),
        ];
        args.extend(extra);
        args.push(&url);
        curl(&args)
    };
    assert_eq!(code(&["--cert", &cert, "--key", &key]).stdout, "200");
    let without = code(&[]);
    assert_ne!(
        without.stdout, "200",
        "accepted without a client certificate"
    );
    let (icert, ikey) = (pki.path("intruder.crt"), pki.path("intruder.key"));
    assert_ne!(code(&["--cert", &icert, "--key", &ikey]).stdout, "200");
}

fn start_error(lines: &[String]) -> String {
    let mut reg = spawn(lines);
    let status = reg.wait_exit(WAIT_LIMIT).expect("registry should exit");
    assert!(!status.success());
    reg.stderr_text()
}

#[test]
fn startup_errors_name_the_key() {
    let pki = Pki::new();
    let other = self_signed(ec_key(), &["other"]);
    other.write(pki.dir.path(), "other");
    let missing = pki.path("missing.crt");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "  tls:".into(),
                format!("    certificate: {missing}"),
                format!("    key: {}", pki.path("server.key")),
            ],
            "http.tls.certificate",
        ),
        (
            vec![
                "  tls:".into(),
                format!("    certificate: {}", pki.path("server.crt")),
                format!("    key: {}", pki.path("other.key")),
            ],
            "does not match http.tls.certificate",
        ),
        (
            vec![
                "  tls:".into(),
                format!("    certificate: {}", pki.path("server.crt")),
                format!("    key: {}", pki.path("ca.crt")),
            ],
            "http.tls.key",
        ),
        (
            pki.tls_lines(&["    ciphersuites: [TLS_RSA_WITH_RC4_128_SHA]".into()]),
            "http.tls.ciphersuites",
        ),
    ];
    for (lines, expected) in cases {
        let stderr = start_error(&lines);
        assert!(
            stderr.contains(expected),
            "expected {expected:?} in:\n{stderr}"
        );
    }
    assert!(Path::new(&pki.path("server.crt")).exists());
}

/// A session store that keeps everything, but can report another key-exchange group as the one
/// last negotiated with a server: the client then sends that group's key share first.
#[derive(Debug)]
struct HintedStore {
    inner: rustls::client::ClientSessionMemoryCache,
    hint: std::sync::Mutex<Option<rustls::NamedGroup>>,
}

impl rustls::client::ClientSessionStore for HintedStore {
    fn set_kx_hint(&self, name: rustls::pki_types::ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group)
    }
    fn kx_hint(&self, name: &rustls::pki_types::ServerName<'_>) -> Option<rustls::NamedGroup> {
        (*self.hint.lock().unwrap()).or_else(|| self.inner.kx_hint(name))
    }
    fn set_tls12_session(
        &self,
        name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value)
    }
    fn tls12_session(
        &self,
        name: &rustls::pki_types::ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &rustls::pki_types::ServerName<'static>) {
        self.inner.remove_tls12_session(name)
    }
    fn insert_tls13_ticket(
        &self,
        name: rustls::pki_types::ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        self.inner.insert_tls13_ticket(name, value)
    }
    fn take_tls13_ticket(
        &self,
        name: &rustls::pki_types::ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// A rustls client (ring, its default suites: AES-256 first; X25519 then P-256) keeping sessions
/// in `store` and trusting `ca`.
fn resuming_client(
    store: std::sync::Arc<HintedStore>,
    ca: &str,
) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = rustls::crypto::ring::default_provider();
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::store(store);
    std::sync::Arc::new(config)
}

/// `GET /v2/` over TLS to `localhost:<port>`: the handshake, then the response read to its end
/// (so the server's session tickets are received). Returns the status line and how the
/// handshake went, or the error.
fn get_v2(config: std::sync::Arc<rustls::ClientConfig>, port: u16) -> Result<String, String> {
    use std::io::{Read, Write};
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /v2/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // Go closes without close_notify; what was read counts.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    let text = String::from_utf8_lossy(&out);
    let line = text.lines().next().unwrap_or_default();
    Ok(format!(
        "{line} ({:?}, {:?}, {} tickets)",
        conn.handshake_kind(),
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        conn.tls13_tickets_received()
    ))
}

/// Nodes of a mixed fleet share one name, so a client resumes sessions across binaries: a
/// rustls client holding a TLS 1.3 ticket from registry:2 (Go, AES-128-GCM/SHA-256) whose first
/// key share Wharf does not pick (a HelloRetryRequest) must still complete its handshake. Wharf
/// orders suites as Go does and picks by that order, so the retry's suite has the ticket's hash
/// and the client keeps its pre-shared key offer.
#[test]
fn a_session_ticket_from_registry_2_does_not_break_the_handshake_with_wharf() {
    if !Path::new(DOCKER_REGISTRY_BIN).exists() {
        eprintln!("skipped: {DOCKER_REGISTRY_BIN} is not installed");
        return;
    }
    let pki = Pki::new();
    let mut go = Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .http_line("  tls:")
        .http_line(&format!("    certificate: {}", pki.path("server.crt")))
        .http_line(&format!("    key: {}", pki.path("server.key")))
        .spawn();
    wait_tls(&mut go, &pki, &[]);
    let mut wharf = spawn(&pki.tls_lines(&[]));
    wait_tls(&mut wharf, &pki, &[]);
    let store = std::sync::Arc::new(HintedStore {
        inner: rustls::client::ClientSessionMemoryCache::new(32),
        hint: std::sync::Mutex::new(None),
    });
    let client = resuming_client(store.clone(), &pki.path("ca.crt"));
    let first = get_v2(client.clone(), go.port());
    eprintln!("registry:2: {first:?}");
    assert!(
        first
            .as_ref()
            .is_ok_and(|l| l.contains(" 200") && !l.contains(", 0 tickets")),
        "{first:?}"
    );
    // The client's first key share is P-256 (as after a session whose server chose P-256):
    // Wharf, following the client's list, asks for X25519.
    *store.hint.lock().unwrap() = Some(rustls::NamedGroup::secp256r1);
    let second = get_v2(client, wharf.port());
    eprintln!("wharf: {second:?}");
    assert!(
        second.as_ref().is_ok_and(|l| l.contains(" 200")),
        "handshake with Wharf after registry:2's ticket: {second:?}"
    );
    assert!(
        second
            .as_ref()
            .unwrap()
            .contains("FullWithHelloRetryRequest"),
        "no HelloRetryRequest: the case is not exercised: {second:?}"
    );
}
