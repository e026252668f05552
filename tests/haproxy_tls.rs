//! The two places users put TLS in front of a cluster, with the shipped configs and a CA made
//! here: `haproxy/haproxy-tls.cfg` (TLS ends in haproxy, round-robin, `X-Forwarded-Proto:
//! https`) and `haproxy/haproxy-tcp.cfg` (TLS passed through to nodes serving `http.tls`,
//! round-robin with clients stuck by source address). skopeo pushes and pulls a multi-layer
//! image through each; chunked uploads cross nodes behind the terminating balancer.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::auth::{ec_key, Ca};
use support::*;

/// A CA, a certificate for `localhost`/`127.0.0.1`, and skopeo's cert dir holding the CA.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("wharf-test-balancer-ca");
        let certs = dir.path().join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::write(certs.join("ca.crt"), &ca.identity.cert_pem).unwrap();
        std::fs::write(dir.path().join("ca.crt"), &ca.identity.cert_pem).unwrap();
        let server = ca.sign(ec_key(), &["localhost", "127.0.0.1"]);
        server.write(dir.path(), "server");
        std::fs::write(
            dir.path().join("server.pem"),
            format!("{}{}", server.cert_pem, server.key_pem),
        )
        .unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Three nodes over one folder (with `http.tls` when `tls`), named node1..3.
fn nodes(storage: &Path, pki: &Pki, tls: bool) -> Vec<Registry> {
    (1..=3)
        .map(|i| {
            let mut b = Registry::builder(Driver::Filesystem)
                .storage_dir(storage)
                .node(&format!("node{i}"));
            if tls {
                b = b
                    .http_line("  tls:")
                    .http_line(&format!("    certificate: {}", s(&pki.path("server.crt"))))
                    .http_line(&format!("    key: {}", s(&pki.path("server.key"))));
            }
            b.start()
        })
        .collect()
}

/// skopeo copies a three-layer image in through `host` and back out, over TLS verified with the
/// CA; the digests match.
fn skopeo_round_trip(host: &str, pki: &Pki, repo: &str) {
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 3);
    layout.tag("v1", &image);
    let certs = s(&pki.path("certs"));
    let dest = format!("docker://{host}/{repo}:v1");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-cert-dir",
        &certs,
        &format!("oci:{}:v1", work.path().join("in").display()),
        &dest,
    ])
    .assert_success("skopeo copy in over TLS");
    let out_dir = work.path().join("out");
    skopeo(&[
        "copy",
        "--preserve-digests",
        "--src-cert-dir",
        &certs,
        &dest,
        &format!("oci:{}:v1", out_dir.display()),
    ])
    .assert_success("skopeo copy out over TLS");
    let back = OciLayout::create_existing(&out_dir);
    assert_eq!(back.digest_of("v1").as_deref(), Some(image.digest.as_str()));
    // Without the CA the balancer's certificate is not trusted.
    assert!(!skopeo(&["inspect", &dest]).status.success());
}

/// One curl request over TLS with the CA: (status, head and body).
fn curl(pki: &Pki, args: &[&str]) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--max-time", "30", "--cacert"])
        .arg(pki.path("ca.crt"))
        .args(args);
    let out = run_bounded(cmd, Duration::from_secs(40));
    out.assert_success("curl");
    let status = out
        .stdout
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out.stdout)
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value)
        })
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in\n{head}"))
}

#[test]
fn tls_terminated_in_haproxy_round_robin() {
    let pki = Pki::new();
    let storage = tempfile::tempdir().unwrap();
    let nodes = nodes(storage.path(), &pki, false);
    let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
    let pem = s(&pki.path("server.pem"));
    let haproxy = Haproxy::start_with_env(
        &repo_path("haproxy/haproxy-tls.cfg"),
        &ports,
        &[("WHARF_TLS_PEM", &pem)],
    );
    let host = format!("localhost:{}", haproxy.port);
    skopeo_round_trip(&host, &pki, "tls/terminated");

    // A chunked upload, one request per connection: round-robin spreads it over the nodes, and
    // every Location points back at the balancer over https.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = sha256_digest(&data);
    let base = format!("https://{host}");
    let (status, head) = curl(
        &pki,
        &[
            "-X",
            "POST",
            &format!("{base}/v2/tls/chunked/blobs/uploads/"),
        ],
    );
    assert_eq!(status, 202, "{head}");
    let mut location = header(&head, "location").to_string();
    let mut seen = vec![header(&head, "x-wharf-node").to_string()];
    let work = tempfile::tempdir().unwrap();
    let mut offset = 0;
    for (i, chunk) in data.chunks(100_000).enumerate() {
        assert!(
            location.starts_with(&format!("{base}/v2/tls/chunked/blobs/uploads/")),
            "{location}"
        );
        let file = work.path().join(format!("chunk{i}"));
        std::fs::write(&file, chunk).unwrap();
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let (status, head) = curl(
            &pki,
            &[
                "-X",
                "PATCH",
                "-H",
                "Content-Type: application/octet-stream",
                "-H",
                &format!("Content-Range: {range}"),
                "--data-binary",
                &format!("@{}", file.display()),
                &location,
            ],
        );
        assert_eq!(status, 202, "{head}");
        location = header(&head, "location").to_string();
        seen.push(header(&head, "x-wharf-node").to_string());
        offset += chunk.len();
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let (status, head) = curl(
        &pki,
        &["-X", "PUT", &format!("{location}{sep}digest={digest}")],
    );
    assert_eq!(status, 201, "{head}");
    assert!(header(&head, "location").starts_with("https://"), "{head}");
    seen.push(header(&head, "x-wharf-node").to_string());
    seen.sort();
    seen.dedup();
    assert!(seen.len() >= 2, "one upload over one node only: {seen:?}");
    let (status, head) = curl(
        &pki,
        &["-I", &format!("{base}/v2/tls/chunked/blobs/{digest}")],
    );
    assert_eq!(status, 200, "{head}");
    // The readiness checks see every node.
    assert!(haproxy.servers_up().iter().all(|(_, up)| *up));
}

#[test]
fn tls_passed_through_to_nodes_with_clients_stuck_by_source() {
    let pki = Pki::new();
    let storage = tempfile::tempdir().unwrap();
    let nodes = nodes(storage.path(), &pki, true);
    let ports: Vec<(u16, u16)> = nodes.iter().map(|n| (n.port(), n.debug_port())).collect();
    let haproxy = Haproxy::start(&repo_path("haproxy/haproxy-tcp.cfg"), &ports);
    let host = format!("localhost:{}", haproxy.port);
    skopeo_round_trip(&host, &pki, "tls/passthrough");
    // Every request from this client's address went to one node (stick on src).
    let mut seen: Vec<String> = (0..6)
        .map(|_| {
            let (status, head) = curl(&pki, &[&format!("https://{host}/v2/")]);
            assert_eq!(status, 200, "{head}");
            header(&head, "x-wharf-node").to_string()
        })
        .collect();
    seen.dedup();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(haproxy.servers_up().iter().all(|(_, up)| *up));
}
