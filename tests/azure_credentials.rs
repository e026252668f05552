//! `storage.azure.credentials` beyond Shared Key, through the real binary: `client_secret` and
//! each `default_credentials` source Wharf can use here (environment variables, workload
//! identity's token file, App Service's managed identity endpoint, the instance metadata
//! service) push and pull images with skopeo over an HTTPS Azurite that checks every bearer
//! token. The tokens come from the loopback Entra ID stand-in (tests/support/entra.rs).

mod support;

use std::time::Duration;

use support::azure::{self, AzureTarget};
use support::entra::{self, EntraStandIn};
use support::*;

/// A registry over a fresh container of the shared HTTPS Azurite, authorized as the
/// `credentials` lines say, with `env` on top of the stand-in's authority host.
fn builder(entra: &EntraStandIn, credentials: &str, env: &[(&str, String)]) -> RegistryBuilder {
    let target: AzureTarget = azure::oauth_target();
    let section = azure::oauth_storage_section(&target, credentials);
    let mut builder = Registry::builder(Driver::Inmemory)
        .template(&format!(
            "version: 0.1\nstorage:\n{section}  delete:\n    enabled: true\nhttp:\n  addr: {{addr}}\n"
        ))
        .env("AZURE_AUTHORITY_HOST", &entra.authority())
        // No `az` is ever run, and no other identity of this machine is found.
        .env("PATH", "/nonexistent");
    for (key, value) in env {
        builder = builder.env(key, value);
    }
    builder
}

/// skopeo pushes an image, pulls it back (following redirects to user delegation SAS URLs)
/// and gets the same blobs.
fn round_trip(reg: &Registry) {
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 2);
    layout.tag("v1", &image);
    copy_in(reg, &layout.dir, "v1", "azure/creds:v1", false);
    assert_eq!(raw_digest(reg, "azure/creds:v1"), image.digest);
    let out_dir = work.path().join("out");
    copy_out(reg, "azure/creds:v1", &oci_ref(&out_dir, "v1"), false);
    let out = OciLayout::create_existing(&out_dir);
    assert_eq!(out.digest_of("v1"), Some(image.digest.clone()));
    let manifest: serde_json::Value = image.json();
    for layer in manifest["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap();
        assert_eq!(out.blob(digest), layout.blob(digest), "{digest}");
        // Pulls are sent to the store: a user delegation SAS URL (no account key here).
        let resp = send(reg.get(&format!("/v2/azure/creds/blobs/{digest}")));
        resp.assert_status(307);
        let location = resp.header("location").unwrap_or_default().to_string();
        assert!(
            location.starts_with("https://127.0.0.1:") && location.contains("skoid="),
            "{location}"
        );
    }
}

const CLIENT_SECRET_LINES: &str = "      type: client_secret\n      tenantid: {tenant}\n      clientid: {client}\n      secret: {secret}\n";

fn client_secret_lines(secret: &str) -> String {
    CLIENT_SECRET_LINES
        .replace("{tenant}", entra::TENANT)
        .replace("{client}", entra::CLIENT_ID)
        .replace("{secret}", secret)
}

/// `client_secret`: images round-trip, and one token serves every storage call of the push
/// and pull (the start-up check's and the driver's own: two at most).
#[test]
fn client_secret_round_trips_on_cached_tokens() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let reg = builder(&entra, &client_secret_lines(entra::CLIENT_SECRET), &[]).start();
    round_trip(&reg);
    let issued = entra.issued();
    assert!((1..=2).contains(&issued), "{issued} tokens issued");
    assert_eq!(entra.refused(), 0);
}

/// A secret Entra ID refuses stops start-up with its answer.
#[test]
fn a_wrong_client_secret_stops_start_up() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let mut reg = builder(&entra, &client_secret_lines("wrong"), &[]).spawn();
    let status = reg.wait_exit(WAIT_LIMIT);
    let stderr = reg.stderr_text();
    let status = status.unwrap_or_else(|| panic!("the server kept running\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("storage.azure: credentials:") && stderr.contains("invalid_client"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(entra.issued(), 0);
}

const DEFAULT_LINES: &str = "      type: default_credentials\n";

/// `default_credentials` from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
#[test]
fn default_credentials_from_environment_variables() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let env = [
        ("AZURE_TENANT_ID", entra::TENANT.to_string()),
        ("AZURE_CLIENT_ID", entra::CLIENT_ID.to_string()),
        ("AZURE_CLIENT_SECRET", entra::CLIENT_SECRET.to_string()),
    ];
    let reg = builder(&entra, DEFAULT_LINES, &env).start();
    round_trip(&reg);
    assert!(entra.issued() >= 1);
}

/// `default_credentials` by workload identity: the federated token in
/// `AZURE_FEDERATED_TOKEN_FILE` is exchanged for an access token.
#[test]
fn default_credentials_by_workload_identity() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, entra::FEDERATED_TOKEN).unwrap();
    let env = [
        ("AZURE_TENANT_ID", entra::TENANT.to_string()),
        ("AZURE_CLIENT_ID", entra::CLIENT_ID.to_string()),
        ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
    ];
    let reg = builder(&entra, DEFAULT_LINES, &env).start();
    round_trip(&reg);
    assert!(entra.issued() >= 1);
}

/// `default_credentials` by an App Service style managed identity endpoint.
#[test]
fn default_credentials_by_app_service_managed_identity() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let env = [
        ("IDENTITY_ENDPOINT", entra.identity_endpoint()),
        ("IDENTITY_HEADER", entra::IDENTITY_HEADER.to_string()),
    ];
    let reg = builder(&entra, DEFAULT_LINES, &env).start();
    round_trip(&reg);
    assert!(entra.issued() >= 1);
}

/// `default_credentials` by the instance metadata service (here at the address
/// `AZURE_POD_IDENTITY_AUTHORITY_HOST` gives it).
#[test]
fn default_credentials_by_instance_metadata_service() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let env = [("AZURE_POD_IDENTITY_AUTHORITY_HOST", entra.authority())];
    let reg = builder(&entra, DEFAULT_LINES, &env).start();
    round_trip(&reg);
    assert!(entra.issued() >= 1);
}

/// A self-signed RSA certificate made by `openssl` for the tests below, with its files.
struct TestCertificate {
    /// The certificate (DER), as registered with the application.
    der: Vec<u8>,
    /// The certificate and its unencrypted key in one PEM file.
    pem: std::path::PathBuf,
    /// The same in a PKCS#12 file encrypted with [`PFX_PASSWORD`] (OpenSSL 3's defaults:
    /// AES-256 and a SHA-256 MAC).
    pfx: std::path::PathBuf,
}

const PFX_PASSWORD: &str = "pfx pass";

fn openssl(args: &[&std::ffi::OsStr]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {output:?}");
}

fn make_certificate(dir: &std::path::Path, name: &str) -> TestCertificate {
    let key = dir.join(format!("{name}.key"));
    let crt = dir.join(format!("{name}.crt"));
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let subject = format!("/CN={name}");
    openssl(&[
        os("req"),
        os("-x509"),
        os("-newkey"),
        os("rsa:2048"),
        os("-nodes"),
        os("-days"),
        os("2"),
        os("-subj"),
        subject.as_ref(),
        os("-keyout"),
        key.as_os_str(),
        os("-out"),
        crt.as_os_str(),
    ]);
    let pem = dir.join(format!("{name}.pem"));
    let text = [std::fs::read(&crt).unwrap(), std::fs::read(&key).unwrap()].concat();
    std::fs::write(&pem, &text).unwrap();
    let pfx = dir.join(format!("{name}.pfx"));
    let pass = format!("pass:{PFX_PASSWORD}");
    openssl(&[
        os("pkcs12"),
        os("-export"),
        os("-in"),
        pem.as_os_str(),
        os("-out"),
        pfx.as_os_str(),
        os("-passout"),
        pass.as_ref(),
    ]);
    let der = std::process::Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&crt)
        .output()
        .expect("run openssl")
        .stdout;
    assert!(!der.is_empty());
    TestCertificate { der, pem, pfx }
}

/// The environment of `default_credentials` by client certificate.
fn certificate_env(
    path: &std::path::Path,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("AZURE_TENANT_ID", entra::TENANT.to_string()),
        ("AZURE_CLIENT_ID", entra::CLIENT_ID.to_string()),
        ("AZURE_CLIENT_CERTIFICATE_PATH", path.display().to_string()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    env
}

/// `default_credentials` by a client certificate in a PEM file: each token request carries a
/// PS256 client assertion the stand-in verifies with the registered certificate.
#[test]
fn default_credentials_by_pem_client_certificate() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let cert = make_certificate(dir.path(), "wharf-pem");
    entra.register_certificate(&cert.der);
    let reg = builder(&entra, DEFAULT_LINES, &certificate_env(&cert.pem, &[])).start();
    round_trip(&reg);
    assert!(entra.issued() >= 1);
    assert_eq!(entra.refused(), 0, "{:?}", entra.last_refusal());
    let header = entra.last_assertion_header().expect("a client assertion");
    assert_eq!(header["alg"], "PS256");
    assert!(header.get("x5c").is_none(), "{header}");
}

/// `default_credentials` by a password-protected PKCS#12 file, sending the certificate chain
/// (`x5c`) as `AZURE_CLIENT_SEND_CERTIFICATE_CHAIN` asks.
#[test]
fn default_credentials_by_pkcs12_client_certificate_with_chain() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let cert = make_certificate(dir.path(), "wharf-pfx");
    entra.register_certificate(&cert.der);
    let env = certificate_env(
        &cert.pfx,
        &[
            ("AZURE_CLIENT_CERTIFICATE_PASSWORD", PFX_PASSWORD),
            ("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "true"),
        ],
    );
    let reg = builder(&entra, DEFAULT_LINES, &env).start();
    round_trip(&reg);
    assert!(entra.issued() >= 1);
    assert_eq!(entra.refused(), 0, "{:?}", entra.last_refusal());
    let header = entra.last_assertion_header().expect("a client assertion");
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(1), "{header}");
}

/// Waits for a server that must not start; gives its stderr.
fn refused_start(mut reg: Registry) -> String {
    let status = reg.wait_exit(WAIT_LIMIT);
    let stderr = reg.stderr_text();
    let status = status.unwrap_or_else(|| panic!("the server kept running\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// A certificate the application does not have registered is refused by Entra ID: start-up
/// stops with its answer, as for a wrong client secret.
#[test]
fn an_unregistered_client_certificate_stops_start_up() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let registered = make_certificate(dir.path(), "registered");
    let other = make_certificate(dir.path(), "other");
    entra.register_certificate(&registered.der);
    let reg = builder(&entra, DEFAULT_LINES, &certificate_env(&other.pem, &[])).spawn();
    let stderr = refused_start(reg);
    assert!(
        stderr.contains("storage.azure: credentials:")
            && stderr.contains("client certificate")
            && stderr.contains("AADSTS700027"),
        "{stderr}"
    );
    assert_eq!(entra.issued(), 0);
    assert!(entra.refused() >= 1);
}

/// A wrong PKCS#12 password leaves the certificate unusable: with no other identity here,
/// start-up stops naming the file and the reason.
#[test]
fn a_wrong_pkcs12_password_stops_start_up() {
    let entra = EntraStandIn::start(Duration::from_secs(3600));
    let dir = tempfile::tempdir().unwrap();
    let cert = make_certificate(dir.path(), "wharf-pfx");
    entra.register_certificate(&cert.der);
    let mut env = certificate_env(
        &cert.pfx,
        &[("AZURE_CLIENT_CERTIFICATE_PASSWORD", "not the password")],
    );
    // The instance metadata service is asked next: a closed loopback port stands for "none".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    env.push((
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        format!("http://127.0.0.1:{closed_port}"),
    ));
    let reg = builder(&entra, DEFAULT_LINES, &env).spawn();
    let stderr = refused_start(reg);
    let path = cert.pfx.display().to_string();
    assert!(
        stderr.contains("storage.azure: credentials:")
            && stderr.contains(&path)
            && stderr.contains("wrong password (AZURE_CLIENT_CERTIFICATE_PASSWORD)"),
        "{stderr}"
    );
    assert_eq!(entra.issued() + entra.refused(), 0);
}
