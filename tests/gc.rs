//! `wharf garbage-collect` against a filesystem store written by the server:
//! dry runs delete nothing, unreferenced blobs go, images stay pullable, and
//! `--delete-untagged` keeps index children and referrers of kept manifests.

mod support;

use std::process::Output;

use support::*;

const REPO: &str = "gc/app";

fn gc(reg: &Registry, args: &[&str]) -> Output {
    let out = clean_command(&Server::Wharf.binary())
        .arg("garbage-collect")
        .args(args)
        .arg(reg.config_path())
        .output()
        .expect("run garbage-collect");
    assert!(
        out.status.success(),
        "garbage-collect {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn blob_status(reg: &Registry, digest: &str) -> u16 {
    send(reg.head(&format!("/v2/{REPO}/blobs/{digest}"))).status
}

fn blob_data_exists(reg: &Registry, digest: &str) -> bool {
    let hex = digest_hex(digest);
    reg.v2_root()
        .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
        .exists()
}

fn manifest_status(reg: &Registry, reference: &str) -> u16 {
    get_manifest(reg, REPO, reference, ACCEPT_ALL_MANIFESTS).status
}

#[test]
fn sweeps_unreferenced_blobs_and_keeps_images() {
    let mut reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .start();
    let image = push_image(&reg, REPO, "v1", Kind::OciManifest);
    let orphan = push_blob(&reg, REPO, b"nobody references me");
    reg.kill();

    let dry = gc(&reg, &["--dry-run"]);
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("would delete 1 blobs"),
        "{dry:?}"
    );
    assert!(blob_data_exists(&reg, &orphan), "a dry run deletes nothing");

    gc(&reg, &[]);
    assert!(
        !blob_data_exists(&reg, &orphan),
        "the unreferenced blob is gone"
    );
    assert!(blob_data_exists(&reg, &image.digest), "the manifest stays");

    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .storage_dir(reg.root())
        .start();
    assert_eq!(blob_status(&reg, &orphan), 404, "its link went with it");
    assert_eq!(manifest_status(&reg, "v1"), 200);
    for layer in image.json()["layers"].as_array().unwrap() {
        assert_eq!(blob_status(&reg, layer["digest"].as_str().unwrap()), 200);
    }
}

#[test]
fn delete_untagged_keeps_index_children_and_referrers() {
    let mut reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .start();
    let index = push_image(&reg, REPO, "multi", Kind::OciIndex);
    let children: Vec<String> = index.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["digest"].as_str().unwrap().to_string())
        .collect();
    let payload = Blob::random(200);
    push(&reg, REPO, &payload);
    push_blob(&reg, REPO, b"{}");
    let sbom = artifact_manifest("application/vnd.example.sbom", &payload, Some(&index), None);
    put_manifest(&reg, REPO, &sbom.digest, &sbom).assert_status(201);
    let untagged = prepare(&reg, REPO, Kind::OciManifest);
    put_manifest(&reg, REPO, &untagged.digest, &untagged).assert_status(201);
    let untagged_layer = untagged.json()["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    reg.kill();

    gc(&reg, &["--delete-untagged"]);
    assert!(
        !blob_data_exists(&reg, &untagged_layer),
        "the untagged image's layer is swept"
    );

    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .storage_dir(reg.root())
        .start();
    assert_eq!(
        manifest_status(&reg, &untagged.digest),
        404,
        "the untagged manifest is deleted"
    );
    assert_eq!(manifest_status(&reg, "multi"), 200);
    for child in &children {
        assert_eq!(
            manifest_status(&reg, child),
            200,
            "index child {child} survives"
        );
    }
    assert_eq!(
        manifest_status(&reg, &sbom.digest),
        200,
        "the referrer of a kept manifest survives"
    );
    assert_eq!(blob_status(&reg, &payload.digest), 200);
}

/// registry:2 accepted a host name as first component (`Legacy-Host.example/app`: uppercase;
/// its storage drivers refuse the `:` of a port); Wharf no longer serves such names, but garbage
/// collection must still count their manifests, or it would delete their layers.
#[test]
fn names_registry2_accepted_keep_their_blobs() {
    let legacy = "Legacy-Host.example/app";
    let mut old = Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .start();
    let image = push_image(&old, legacy, "v1", Kind::DockerManifest);
    old.kill();
    let layers: Vec<String> = image.json()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();

    let mut reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .storage_dir(old.root())
        .start();
    let resp = send(reg.get(&format!("/v2/{legacy}/tags/list")));
    assert_error(&resp, 400, "NAME_INVALID");
    let catalog = send(reg.get("/v2/_catalog")).json();
    assert_eq!(catalog["repositories"], serde_json::json!([]));
    reg.kill();

    let out = gc(&reg, &["--delete-untagged"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted 0 blobs"),
        "{out:?}"
    );
    for digest in layers.iter().chain([&image.digest]) {
        assert!(blob_data_exists(&reg, digest), "{digest} kept");
    }
}

/// On S3 the sweep deletes in bulk: the keys of every swept blob and link go in
/// `DeleteObjects` batches after one listing per folder, with no request per blob
/// (`DeleteObject`, `ListMultipartUploads`); what is kept stays whole.
#[test]
fn sweeps_s3_in_batches() {
    const ORPHANS: usize = 40;
    let server = support::s3::S3Server::start();
    let target = S3Target {
        endpoint: server.endpoint(),
        bucket: server.create_bucket(),
    };
    let mut reg = Registry::builder(Driver::S3)
        .s3_target(&target)
        .delete_enabled(true)
        .start();
    let image = push_image(&reg, REPO, "v1", Kind::OciManifest);
    let orphans: Vec<String> = (0..ORPHANS)
        .map(|i| push_blob(&reg, REPO, format!("orphan {i}").as_bytes()))
        .collect();
    reg.kill();

    let before = server.request_lines().len();
    let out = gc(&reg, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains(&format!(
            "deleted {ORPHANS} blobs and 0 manifests ({ORPHANS} repository links"
        )),
        "{stdout}"
    );
    let requests: Vec<String> = server.request_lines().into_iter().skip(before).collect();
    let count = |method: &str, has: &str| {
        requests
            .iter()
            .filter(|l| l.contains(&format!("\"{method} ")) && l.contains(has))
            .count()
    };
    eprintln!(
        "garbage-collect on S3: {} requests for {ORPHANS} blobs ({} DeleteObjects, {} listings)",
        requests.len(),
        count("POST", "?delete"),
        count("GET", "list-type")
    );
    let writes: Vec<&String> = requests
        .iter()
        .filter(|l| !l.contains("\"GET ") && !l.contains("\"HEAD "))
        .collect();
    assert_eq!(
        count("POST", "?delete"),
        2,
        "one batch of links, one of blobs: {writes:?}"
    );
    assert_eq!(count("DELETE", ""), 0, "no object deleted one by one");
    assert_eq!(count("GET", "?uploads"), 0, "no per-blob upload listing");
    let keys = server.keys(&target.bucket, "");
    for orphan in &orphans {
        let hex = digest_hex(orphan);
        assert!(
            !keys.iter().any(|k| k.contains(hex)),
            "{orphan} left keys behind"
        );
    }

    let reg = Registry::builder(Driver::S3).s3_target(&target).start();
    assert_eq!(blob_status(&reg, &orphans[0]), 404);
    assert_eq!(manifest_status(&reg, "v1"), 200);
    for layer in image.json()["layers"].as_array().unwrap() {
        assert_eq!(blob_status(&reg, layer["digest"].as_str().unwrap()), 200);
    }
}

/// Sets a stored file's modification time `age` into the past.
fn backdate(path: &std::path::Path, age: std::time::Duration) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.set_modified(std::time::SystemTime::now() - age)
        .expect("set modification time");
}

/// An online pass walks repositories that hold blob links but no manifest (an upload waiting
/// for its manifest; on an object store, also a repository whose manifests were all deleted):
/// a fresh link there keeps an old blob for the grace period, and an old one goes with it.
#[test]
fn online_pass_keeps_blobs_freshly_linked_in_repositories_without_manifests() {
    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .section("gc:\n  enabled: false\n  graceperiod: 1h\n")
        .start();
    let long_ago = std::time::Duration::from_secs(2 * 3600);
    let blob_file = |digest: &str| {
        let hex = digest_hex(digest);
        reg.v2_root()
            .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
    };
    let link_file = |repo: &str, digest: &str| {
        reg.v2_root().join(format!(
            "repositories/{repo}/_layers/sha256/{}/link",
            digest_hex(digest)
        ))
    };
    // Old data, linked moments ago (an upload of bytes the storage already had).
    let waiting = push_blob(&reg, "gc/waiting", b"a layer pushed again");
    backdate(&blob_file(&waiting), long_ago);
    // Old data, old link: nothing protects it.
    let stale = push_blob(&reg, "gc/stale", b"a layer nobody came back for");
    backdate(&blob_file(&stale), long_ago);
    backdate(&link_file("gc/stale", &stale), long_ago);

    let out = gc(&reg, &["--online"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["blobs_deleted"], 1, "{report}");
    assert!(
        blob_file(&waiting).exists(),
        "a freshly linked blob was collected"
    );
    assert_eq!(
        send(reg.head(&format!("/v2/gc/waiting/blobs/{waiting}"))).status,
        200
    );
    assert!(!blob_file(&stale).exists(), "the stale blob stayed");
    assert!(
        !link_file("gc/stale", &stale).exists(),
        "the stale blob's link stayed behind"
    );
}

/// The manifest and every blob it references pull from `ep`, digests verified.
fn assert_pulls_whole(ep: &Endpoint, repo: &str, image: &Manifest) {
    let resp = ep
        .pull_manifest(repo, &image.digest)
        .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(sha256_digest(&resp.body), image.digest);
    let json = image.json();
    let blobs = json["layers"]
        .as_array()
        .unwrap()
        .iter()
        .chain([&json["config"]])
        .map(|d| d["digest"].as_str().unwrap().to_string());
    for digest in blobs {
        let (got, _, _) = ep
            .pull_digest(repo, &digest)
            .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(got, digest);
    }
}

/// Distribution's own collector, `--dry-run` or not, on `reg`'s configuration.
fn distribution_gc(reg: &Registry, dry_run: bool) -> String {
    let mut cmd = clean_command(&Server::DockerRegistry.binary());
    cmd.arg("garbage-collect");
    if dry_run {
        cmd.arg("--dry-run");
    }
    cmd.arg(reg.config_path());
    let out = run_bounded(cmd, std::time::Duration::from_secs(60));
    out.assert_success("docker-registry garbage-collect");
    format!("{}{}", out.stdout, out.stderr)
}

/// A storage collected online by Wharf is served by distribution 2.8.2, whose collector finds
/// nothing more to delete; one collected by distribution is served by Wharf, whose online pass
/// finds nothing more to delete either.
#[test]
fn storage_collected_by_either_is_served_by_the_other() {
    let grace = "gc:\n  enabled: false\n  graceperiod: 1s\n";
    let mut reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .section(grace)
        .start();
    let image = push_image(&reg, REPO, "v1", Kind::OciManifest);
    let orphan = push_blob(&reg, REPO, b"collected by wharf");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = gc(&reg, &["--online"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs_deleted"], 1, "{report}");
    reg.kill();
    let mut old = Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .delete_enabled(true)
        .storage_dir(reg.root())
        .start();
    assert_pulls_whole(&old, REPO, &image);
    assert_eq!(
        send(old.head(&format!("/v2/{REPO}/blobs/{orphan}"))).status,
        404
    );
    old.kill();
    let text = distribution_gc(&old, true);
    assert!(
        text.contains("0 blobs and 0 manifests eligible for deletion"),
        "distribution would delete more:\n{}",
        tail(&text, 20)
    );

    // The reverse: distribution writes and collects, Wharf serves and collects.
    let mut old = Registry::builder(Driver::Filesystem)
        .server(Server::DockerRegistry)
        .delete_enabled(true)
        .start();
    let image = push_image(&old, REPO, "v1", Kind::DockerManifest);
    let orphan = push_blob(&old, REPO, b"collected by distribution");
    old.kill();
    distribution_gc(&old, false);
    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .storage_dir(old.root())
        .section(grace)
        .start();
    assert_pulls_whole(&reg, REPO, &image);
    assert_eq!(
        send(reg.head(&format!("/v2/{REPO}/blobs/{orphan}"))).status,
        404
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = gc(&reg, &["--online"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["blobs_deleted"], 0, "{report}");
    assert_eq!(report["manifests_deleted"], 0, "{report}");
    assert_pulls_whole(&reg, REPO, &image);
}
