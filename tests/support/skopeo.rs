//! skopeo, the client a user copies images with: bounded runs in a clean environment, copies
//! between OCI layouts and a registry, and the manifest digest a registry serves.

use std::path::Path;
use std::time::Duration;

use super::client::Endpoint;
use super::fixtures::sha256_digest;
use super::process::{clean_command, run_bounded, CommandOutput};

/// Runs skopeo (`--insecure-policy`, no `REGISTRY_*`/`AWS_*` in its environment), bounded.
pub fn skopeo(args: &[&str]) -> CommandOutput {
    let mut cmd = clean_command(Path::new("skopeo"));
    cmd.arg("--insecure-policy").args(args);
    run_bounded(cmd, Duration::from_secs(300))
}

/// `docker://<host>/<repo[:tag]>` on a registry.
pub fn docker_ref(reg: &Endpoint, repo_tag: &str) -> String {
    format!("docker://{}/{repo_tag}", reg.host())
}

/// `oci:<dir>:<tag>`.
pub fn oci_ref(dir: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", dir.display())
}

/// `skopeo copy --preserve-digests` of `tag` in the layout at `layout` to `repo_tag` on a
/// registry over plain HTTP (`--all` for an index and its children).
pub fn copy_in(reg: &Endpoint, layout: &Path, tag: &str, repo_tag: &str, all: bool) {
    let source = oci_ref(layout, tag);
    let dest = docker_ref(reg, repo_tag);
    let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), dest.as_str()]);
    skopeo(&args).assert_success("skopeo copy into the registry");
}

/// `skopeo copy --preserve-digests` of `repo_tag` on a registry over plain HTTP to `dest` (any
/// skopeo transport, e.g. [`oci_ref`]).
pub fn copy_out(reg: &Endpoint, repo_tag: &str, dest: &str, all: bool) {
    let source = docker_ref(reg, repo_tag);
    let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([source.as_str(), dest]);
    skopeo(&args).assert_success("skopeo copy out of the registry");
}

/// `skopeo inspect --raw`: the digest of the manifest bytes the registry serves.
pub fn raw_digest(reg: &Endpoint, repo_tag: &str) -> String {
    let out = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &docker_ref(reg, repo_tag),
    ]);
    out.assert_success("skopeo inspect --raw");
    sha256_digest(out.stdout.as_bytes())
}
