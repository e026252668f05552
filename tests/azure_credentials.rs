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
