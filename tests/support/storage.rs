//! Checks on what a registry left in its storage: a filesystem tree, an S3 bucket or an Azure
//! container holds only
//! blobs that hash to their path, links that are whole digests, and nothing unexpected.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::azure::{self, AzureTarget};
use super::fixtures::{hex, sha256_digest};
use super::gcs::{self, GcsTarget};
use super::s3::{self, S3Target};
use super::swift::{self, SwiftTarget};

/// Visits every entry under `root`, folders before what they hold; `visit(path, is_dir)` says
/// whether to go into a folder.
fn walk(root: &Path, mut visit: impl FnMut(&Path, bool) -> bool) {
    let mut stack = vec![root.to_path_buf()];
    for _ in 0..1_000_000 {
        let Some(dir) = stack.pop() else { return };
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if visit(&path, kind.is_dir()) && kind.is_dir() {
                stack.push(path);
            }
        }
    }
    panic!("{} is too large to walk", root.display());
}

/// Every file (not folder) under `dir`, as paths relative to it.
pub fn list_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    walk(dir, |path, is_dir| {
        if !is_dir {
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
        true
    });
    out
}

/// Repositories under `<v2_root>/repositories/` (folders holding `_layers`, `_manifests` or
/// `_uploads`): what was written.
pub fn repositories_in(v2_root: &Path) -> Vec<String> {
    let root = v2_root.join("repositories");
    let mut out = Vec::new();
    walk(&root, |path, is_dir| {
        let special = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('_'));
        if is_dir && special {
            let repository = path.parent().unwrap().strip_prefix(&root).unwrap();
            out.push(repository.display().to_string());
        }
        is_dir && !special
    });
    out.sort();
    out.dedup();
    out
}

/// Checks every blob under `v2_root/blobs` against its digest (a blob folder without `data`
/// is a problem too), and that no link file in `v2_root/repositories` is anything but a whole
/// `sha256:<64 hex>`. Returns the problems.
pub fn storage_problems(v2_root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let blobs = v2_root.join("blobs/sha256");
    for prefix in fs::read_dir(&blobs).into_iter().flatten().flatten() {
        for entry in fs::read_dir(prefix.path()).into_iter().flatten().flatten() {
            let hex_name = entry.file_name().to_string_lossy().into_owned();
            let data = entry.path().join("data");
            let mut file = match fs::File::open(&data) {
                Ok(file) => file,
                Err(e) => {
                    problems.push(format!("{}: {e}", data.display()));
                    continue;
                }
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
    walk(&v2_root.join("repositories"), |path, is_dir| {
        let name = path.file_name().unwrap_or_default();
        if is_dir {
            // Upload sessions are not links.
            return name != "_uploads";
        }
        if name == "link" {
            let text = fs::read_to_string(path).unwrap_or_default();
            let ok = text.len() == 71
                && text.starts_with("sha256:")
                && text[7..].bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                problems.push(format!("torn link {}: {text:?}", path.display()));
            }
        }
        false
    });
    problems
}

/// Blob objects in a bucket of the shared S3 server whose bytes do not hash to their key, and
/// objects under `blobs/` that are not a blob's `data`.
pub fn bucket_blob_problems(target: &S3Target) -> Vec<String> {
    let server = s3::shared();
    let mut problems = Vec::new();
    for key in server.keys(&target.bucket, "docker/registry/v2/blobs/") {
        let Some(hex_name) = key.strip_suffix("/data").and_then(|k| k.rsplit('/').next()) else {
            problems.push(format!("unexpected object {key}"));
            continue;
        };
        let Some(data) = server.object(&target.bucket, &key) else {
            problems.push(format!("{key} is listed but cannot be read"));
            continue;
        };
        let actual = sha256_digest(&data);
        if actual != format!("sha256:{hex_name}") {
            problems.push(format!("{key} holds content hashing to {actual}"));
        }
    }
    problems
}

/// Blobs in a container of the shared Azurite whose bytes do not hash to their name, and
/// entries under `blobs/` that are not a blob's `data`.
pub fn container_blob_problems(target: &AzureTarget) -> Vec<String> {
    container_check(target, false)
}

/// [`container_blob_problems`], and upload data left under `repositories/` (for runs where
/// every upload finishes).
pub fn container_problems(target: &AzureTarget) -> Vec<String> {
    container_check(target, true)
}

fn container_check(target: &AzureTarget, uploads_too: bool) -> Vec<String> {
    driver_check(&azure::driver(target, Some("")), uploads_too)
}

/// Objects in a bucket of the shared fake-gcs-server whose bytes do not hash to their name,
/// and entries under `blobs/` that are not a blob's `data`.
pub fn gcs_blob_problems(target: &GcsTarget) -> Vec<String> {
    driver_check(&gcs::driver(target, "", 1 << 20), false)
}

/// [`gcs_blob_problems`], upload data left under `repositories/`, and part objects, append
/// claims or upload session markers left in the driver's scratch area (for runs where every
/// upload finishes).
pub fn gcs_problems(target: &GcsTarget) -> Vec<String> {
    let mut problems = driver_check(&gcs::driver(target, "", 1 << 20), true);
    // The scratch area is outside every driver path: read it through a driver rooted there.
    let scratch = gcs::driver(target, ".wharf-scratch", 1 << 20);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use wharf::storage::StorageDriver;
        for dir in ["parts", "claims", "sessions"] {
            if let Ok(left) = scratch.list(&format!("/{dir}")).await {
                problems.push(format!("scratch {dir} left: {left:?}"));
            }
        }
    });
    problems
}

/// Blobs under `blobs/` whose bytes do not hash to their name, entries there that are not a
/// blob's `data`, and upload data left under `repositories/` in a Swift container.
pub fn swift_problems(target: &SwiftTarget) -> Vec<String> {
    driver_check(&swift::driver(target, 5 << 20), true)
}

/// The checks of [`container_problems`] through any driver rooted at the registry's root.
fn driver_check(driver: &dyn wharf::storage::StorageDriver, uploads_too: bool) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut problems = Vec::new();
        let blobs = "/docker/registry/v2/blobs/sha256";
        for prefix in driver.list(blobs).await.unwrap_or_default() {
            let dir = format!("{blobs}/{prefix}");
            for hex_name in driver.list(&dir).await.unwrap_or_default() {
                let entries = driver.list(&format!("{dir}/{hex_name}")).await;
                if entries.as_deref().ok() != Some(&["data".to_string()][..]) {
                    problems.push(format!("{dir}/{hex_name} holds {entries:?}"));
                    continue;
                }
                match driver.get_content(&format!("{dir}/{hex_name}/data")).await {
                    Ok(bytes) => {
                        let actual = sha256_digest(&bytes);
                        if actual != format!("sha256:{hex_name}") {
                            problems.push(format!("blob {hex_name} hashes to {actual}"));
                        }
                    }
                    Err(e) => problems.push(format!("blob {hex_name}: {e}")),
                }
            }
        }
        if !uploads_too {
            return problems;
        }
        let uploads = driver
            .dirs_holding("/docker/registry/v2/repositories", "data", "")
            .await
            .unwrap_or_default();
        for dir in uploads.into_iter().filter(|d| d.contains("_uploads/")) {
            problems.push(format!("upload data left: {dir}"));
        }
        problems
    })
}
