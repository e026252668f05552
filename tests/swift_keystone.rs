//! A registry on OpenStack Swift authenticated by Keystone v3 (a real Keystone and a Swift
//! proxy with keystonemiddleware, see `support::keystone`): the config keys distribution 2.8
//! takes, the auth version guessed from the URL, pushes and pulls with blob reads redirected to
//! Swift temp URLs, a wrong password refused at start-up by both binaries, and registry:2
//! (Debian's `docker-registry` 2.8.2) with the same configuration serving what Wharf wrote.

mod support;

use support::keystone::{self as keystone, PASSWORD};
use support::swift::{refused_start, SwiftTarget};
use support::*;

/// A whole config for a registry on `target` with Keystone v3, `password`, redirects on.
fn config(target: &SwiftTarget, password: &str) -> String {
    format!(
        "version: 0.1\nlog:\n  level: info\nstorage:\n{}  redirect:\n    disable: false\n\
         http:\n  addr: {{addr}}\n  secret: keystone-test-secret\n",
        keystone::storage_section(target, password, &[])
    )
}

fn start(server: Server, target: &SwiftTarget, password: &str) -> Registry {
    Registry::builder(Driver::Inmemory)
        .server(server)
        .template(&config(target, password))
        .start()
}

/// Pushes an image with blobs of several segments; the manifest.
fn push_image(reg: &Registry, repo: &str) -> (Manifest, Vec<u8>) {
    let big = Prng::new(7).bytes(12 * (1 << 20) + 5);
    let manifest = prepare(reg, repo, Kind::OciManifest);
    push_blob_chunked(reg, repo, &big, 4 << 20);
    push_manifest(reg, repo, "v1", &manifest);
    (manifest, big)
}

/// The image and the big blob read back; blob reads are 307s to Swift temp URLs.
fn pull_and_compare(reg: &Registry, repo: &str, manifest: &Manifest, big: &[u8]) {
    let resp = get_manifest(reg, repo, "v1", OCI_MANIFEST);
    resp.assert_status(200);
    assert_eq!(resp.body, manifest.body, "{}", resp.describe());
    let digest = sha256_digest(big);
    let resp = send(reg.get(&format!("/v2/{repo}/blobs/{digest}")));
    resp.assert_status(307);
    let location = resp.must_header("location").to_string();
    let keystone = keystone::shared();
    assert!(
        location.starts_with(&keystone.storage_url()) && location.contains("temp_url_sig="),
        "{location}"
    );
    let body = reqwest::blocking::get(&location).unwrap().bytes().unwrap();
    assert!(body.as_ref() == big, "the temp URL serves the blob");
}

/// Wharf pushes and pulls through Keystone v3; the version is guessed from `/v3` in the URL.
#[test]
fn wharf_pushes_and_pulls_through_keystone_v3() {
    let target = keystone::fresh_target();
    let reg = start(Server::Wharf, &target, PASSWORD);
    let (manifest, big) = push_image(&reg, "keystone/image");
    pull_and_compare(&reg, "keystone/image", &manifest, &big);
}

/// registry:2 2.8.2, with the same config, serves the container Wharf wrote.
#[test]
fn registry2_serves_what_wharf_wrote_through_keystone() {
    let target = keystone::fresh_target();
    let wharf = start(Server::Wharf, &target, PASSWORD);
    let (manifest, big) = push_image(&wharf, "keystone/shared");
    drop(wharf);
    let registry2 = start(Server::DockerRegistry, &target, PASSWORD);
    pull_and_compare(&registry2, "keystone/shared", &manifest, &big);
}

/// Keystone refuses the password: Wharf, as registry:2, authenticates at start-up, so it does
/// not start, and says which section and why.
#[test]
fn wharf_with_a_wrong_password_does_not_start() {
    let log = refused_start(wrong_password(Server::Wharf));
    assert!(
        log.contains("storage.swift") && log.contains("refused the credentials (401"),
        "{log}"
    );
}

/// registry:2 refuses to start with the same wrong password, as it authenticates at start-up.
#[test]
fn registry2_with_a_wrong_password_does_not_start() {
    let log = refused_start(wrong_password(Server::DockerRegistry));
    assert!(log.contains("swift authentication failed"), "{log}");
}

/// `server` with a password Keystone refuses.
fn wrong_password(server: Server) -> RegistryBuilder {
    let target = keystone::fresh_target();
    Registry::builder(Driver::Inmemory)
        .server(server)
        .template(&config(&target, "not-the-password"))
}
