//! registry:2 container compatibility on OpenStack Swift (tempauth, auth v1): images pushed
//! through distribution 2.8.2 (Debian's `docker-registry`) into a container are pulled through
//! Wharf, and the reverse, with skopeo and blob reads redirected to temp URLs on both sides;
//! distribution's `garbage-collect --dry-run` walks a container Wharf wrote; and a chunked
//! upload started on one binary continues and finishes on the other, in both directions, with
//! chunks under and over the 5 MiB segment size.

mod support;

use std::path::Path;

use support::mixed_fleet::{push_across, Fleet, Side};
use support::swift::{
    refused_start, shared, small_objects, Swift, SwiftTarget, SMALL_MAX_FILE_SIZE,
};
use support::*;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

fn fixture(dir: &Path) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let image = layout.image("amd64", 3);
    layout.tag("image", &image);
    let (index, _) = layout.multi_arch(1);
    layout.tag("multi", &index);
    layout
}

/// `server` on `target` with one `http.secret`, blob reads redirected or not.
fn builder(server: Server, target: &SwiftTarget, redirect: bool) -> RegistryBuilder {
    Registry::builder(Driver::Swift)
        .server(server)
        .swift_target(target)
        .redirect(redirect)
        .secret(SECRET)
}

fn start(server: Server, target: &SwiftTarget, redirect: bool) -> Registry {
    builder(server, target, redirect).start()
}

const IMAGES: [(&str, &str, bool); 2] = [
    ("image", "compat/image:v1", false),
    ("multi", "compat/multi:latest", true),
];

fn push(reg: &Registry, layout: &OciLayout) {
    for (tag, repo, all) in IMAGES {
        copy_in(reg, &layout.dir, tag, repo, all);
    }
}

/// The first layer of the single-arch image: its digest and bytes.
fn first_layer(layout: &OciLayout) -> (String, Vec<u8>) {
    let manifest_digest = layout.digest_of("image").expect("image tagged");
    let manifest: serde_json::Value =
        serde_json::from_slice(&layout.blob(&manifest_digest).expect("manifest blob"))
            .expect("manifest JSON");
    let digest = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let data = layout.blob(&digest).expect("layer blob");
    (digest, data)
}

/// A blob read is answered with a redirect to a temp URL of the container, which serves the
/// bytes without a token.
fn assert_redirects(reg: &Registry, target: &SwiftTarget, repo: &str, digest: &str, data: &[u8]) {
    let resp = send(reg.get(&format!("/v2/{repo}/blobs/{digest}")));
    resp.assert_status(307);
    let location = resp.must_header("location").to_string();
    let storage = target.auth_url.trim_end_matches("/auth/v1.0");
    assert!(
        location.starts_with(storage)
            && location.contains(&format!("/{}/", target.container))
            && location.contains("temp_url_sig=")
            && location.contains("temp_url_expires="),
        "a temp URL of the container: {location}"
    );
    let direct = reqwest::blocking::Client::new()
        .get(&location)
        .send()
        .unwrap();
    assert_eq!(direct.status(), 200, "{location}");
    assert!(
        direct.bytes().unwrap().as_ref() == data,
        "bytes via the temp URL"
    );
}

fn pull_and_compare(reg: &Registry, layout: &OciLayout, work: &Path) {
    for (tag, repo, all) in IMAGES {
        let out = work.join(format!("pulled-{tag}"));
        copy_out(reg, repo, &oci_ref(&out, tag), all);
        let pulled = OciLayout::create_existing(&out);
        assert_eq!(pulled.digest_of(tag), layout.digest_of(tag), "{repo}");
        let inspect = skopeo(&["inspect", "--raw", &oci_ref(&out, tag)]);
        inspect.assert_success("skopeo inspect");
        let manifest: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        for blob in manifest["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain([&manifest["config"]])
        {
            // An index has no config.
            let Some(digest) = blob["digest"].as_str() else {
                continue;
            };
            assert_eq!(pulled.blob(digest), layout.blob(digest), "{digest}");
        }
    }
    let resp = send(reg.get("/v2/_catalog"));
    resp.assert_status(200);
    let mut repos: Vec<String> = resp.json()["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    repos.sort();
    assert_eq!(repos, vec!["compat/image", "compat/multi"]);
    assert_eq!(list_tags(reg, "compat/image"), vec!["v1".to_string()]);
}

/// Objects of an upload left in the container.
fn upload_leftovers(target: &SwiftTarget) -> Vec<String> {
    upload_leftovers_on(shared(), target)
}

#[test]
fn registry2_container_served_by_wharf() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixture(&work.path().join("layout"));
    let target = SwiftTarget::fresh();
    let registry2 = start(Server::DockerRegistry, &target, true);
    push(&registry2, &layout);
    let (digest, data) = first_layer(&layout);
    assert_redirects(&registry2, &target, "compat/image", &digest, &data);
    drop(registry2);
    let wharf = start(Server::Wharf, &target, true);
    pull_and_compare(&wharf, &layout, work.path());
    assert_redirects(&wharf, &target, "compat/image", &digest, &data);
}

#[test]
fn wharf_container_served_and_collected_by_registry2() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixture(&work.path().join("layout"));
    let target = SwiftTarget::fresh();
    let wharf = start(Server::Wharf, &target, true);
    push(&wharf, &layout);
    let orphan = push_blob(&wharf, "compat/image", b"a blob no manifest references");
    let (digest, data) = first_layer(&layout);
    assert_redirects(&wharf, &target, "compat/image", &digest, &data);
    drop(wharf);
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());

    let registry2 = start(Server::DockerRegistry, &target, true);
    pull_and_compare(&registry2, &layout, work.path());
    assert_redirects(&registry2, &target, "compat/image", &digest, &data);

    // distribution's collector walks the container: every pushed manifest is marked, only
    // the orphan is eligible, and a dry run deletes nothing.
    let mut cmd = clean_command(&Server::DockerRegistry.binary());
    cmd.args(["garbage-collect", "--dry-run"])
        .arg(registry2.config_path());
    let out = run_bounded(cmd, std::time::Duration::from_secs(120));
    out.assert_success("docker-registry garbage-collect --dry-run");
    let text = format!("{}{}", out.stdout, out.stderr);
    for (tag, _, _) in IMAGES {
        let manifest = layout.digest_of(tag).unwrap();
        assert!(
            text.contains(&format!("marking manifest {manifest}")),
            "{manifest} is marked:\n{text}"
        );
    }
    assert!(
        text.contains(&format!("blob eligible for deletion: {orphan}")),
        "the orphan is eligible:\n{text}"
    );
    assert!(
        text.contains("1 blobs and 0 manifests eligible for deletion"),
        "only the orphan is eligible:\n{text}"
    );
    // Found (registry:2 redirects HEAD to the temp URL too).
    let status = send(registry2.head(&format!("/v2/compat/image/blobs/{orphan}"))).status;
    assert!(
        status == 200 || status == 307,
        "a dry run deletes nothing: {status}"
    );
}

/// Chunk sizes on both sides of the 5 MiB segment size (`chunksize` of both binaries).
fn cases() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("three 1 KiB chunks", vec![KIB, KIB, KIB]),
        ("small, over a segment, small", vec![KIB, 6 * MIB + 3, KIB]),
        ("exactly one segment twice", vec![5 * MIB, 5 * MIB, 1]),
        (
            "under, then two segments and more",
            vec![3 * MIB, 11 * MIB + 1, 100],
        ),
    ]
}

fn run_direction(first: Side) {
    let target = SwiftTarget::fresh();
    let fleet = Fleet {
        registry2: start(Server::DockerRegistry, &target, false),
        wharf: start(Server::Wharf, &target, false),
    };
    let failed = fleet.uploads_both_ways(first, 0x5_1f7, cases());
    assert!(
        failed.is_empty(),
        "uploads started on {first:?} failed:\n{}\n{}",
        failed.join("\n"),
        fleet.logs()
    );
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());
}

#[test]
fn uploads_started_on_registry2_continue_on_wharf() {
    run_direction(Side::Registry2);
}

#[test]
fn uploads_started_on_wharf_continue_on_registry2() {
    run_direction(Side::Wharf);
}

/// The object holding a blob's bytes.
fn blob_object(digest: &str) -> String {
    let hex = digest_hex(digest);
    format!(
        "files/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    )
}

/// `X-Object-Manifest` of a blob's object: it is a DLO of `len` bytes over segments of the
/// container.
fn assert_dlo(swift: &Swift, target: &SwiftTarget, digest: &str, len: usize) {
    let head = swift
        .head_object(&target.container, &blob_object(digest))
        .unwrap_or_else(|| panic!("{digest} is stored"));
    let manifest = head
        .get("x-object-manifest")
        .map(|v| v.to_str().unwrap().to_string());
    assert!(
        manifest
            .as_deref()
            .is_some_and(|m| m.starts_with(&format!("{}/segments/", target.container))),
        "{digest} is a DLO over the container's segments: {head:?}"
    );
    assert_eq!(head["content-length"].to_str().unwrap(), len.to_string());
}

/// [`start`] with blob deletes enabled.
fn start_deleting(server: Server, target: &SwiftTarget, redirect: bool) -> Registry {
    builder(server, target, redirect)
        .delete_enabled(true)
        .start()
}

/// On a Swift whose largest object is 8 MiB, a 20 MiB layer pushed in chunks across two Wharf
/// nodes is stored as registry:2 stores it (a DLO over segments), read whole by Wharf and
/// registry:2, by range across segments, and through a temp URL; a 20 MiB layer registry:2
/// pushed reads back through Wharf; deleting both and collecting garbage leaves no segment.
#[test]
fn blobs_over_swifts_largest_object_are_dlos_read_by_both_and_collected() {
    let swift = small_objects();
    let target = SwiftTarget::fresh_on(swift);
    let a = start_deleting(Server::Wharf, &target, false);
    let b = start_deleting(Server::Wharf, &target, true);
    let registry2 = start_deleting(Server::DockerRegistry, &target, false);
    let logs = || {
        format!(
            "--- a ---\n{}\n--- b ---\n{}\n--- registry:2 ---\n{}",
            process::tail(&a.log(), 40),
            process::tail(&b.log(), 40),
            process::tail(&registry2.log(), 40)
        )
    };
    let repo = "large/layer";
    let mut prng = Prng::new(0x1a_46e);
    let data = prng.bytes(20 * MIB + 3);
    assert!(data.len() as u64 > SMALL_MAX_FILE_SIZE);
    let nodes = [
        ("a".to_string(), a.endpoint()),
        ("b".to_string(), b.endpoint()),
    ];
    let problems = push_across(&nodes, repo, &data, &[7 * MIB, 7 * MIB, 6 * MIB + 3]);
    assert!(problems.is_empty(), "{problems:?}\n{}", logs());
    let digest = sha256_digest(&data);
    assert_dlo(swift, &target, &digest, data.len());
    for (name, node) in [
        ("wharf", a.endpoint()),
        ("registry:2", registry2.endpoint()),
    ] {
        let (got, len, _) = node
            .pull_digest(repo, &digest)
            .unwrap_or_else(|f| panic!("GET on {name}: {f}\n{}", logs()));
        assert_eq!(
            (got.as_str(), len),
            (digest.as_str(), data.len() as u64),
            "{name}"
        );
    }
    // A range across the first segment boundaries.
    let (from, to) = (5 * MIB - 7, 10 * MIB + 9);
    let resp = send(
        a.get(&format!("/v2/{repo}/blobs/{digest}"))
            .header("range", format!("bytes={from}-{to}")),
    );
    resp.assert_status(206);
    assert!(resp.body == data[from..=to], "the range's bytes");
    assert_redirects(&b, &target, repo, &digest, &data);

    // registry:2's own large blob: a DLO over its upload's segments.
    let theirs = prng.bytes(20 * MIB + 11);
    let nodes = [("registry:2".to_string(), registry2.endpoint())];
    let problems = push_across(&nodes, repo, &theirs, &[9 * MIB, 11 * MIB + 11]);
    assert!(problems.is_empty(), "{problems:?}\n{}", logs());
    let their_digest = sha256_digest(&theirs);
    assert_dlo(swift, &target, &their_digest, theirs.len());
    let (got, len, _) = a.endpoint().pull_digest(repo, &their_digest).unwrap();
    assert_eq!((got, len), (their_digest.clone(), theirs.len() as u64));
    assert_eq!(upload_leftovers_on(swift, &target), Vec::<String>::new());
    assert!(!swift.objects(&target.container, "segments/").is_empty());

    for d in [&digest, &their_digest] {
        send(a.delete(&format!("/v2/{repo}/blobs/{d}"))).assert_status(202);
    }
    drop((b, registry2));
    let out = run_bounded(
        {
            let mut cmd = clean_command(&Server::Wharf.binary());
            cmd.arg("garbage-collect").arg(a.config_path());
            cmd
        },
        std::time::Duration::from_secs(120),
    );
    out.assert_success("wharf garbage-collect");
    for d in [&digest, &their_digest] {
        assert!(
            swift
                .head_object(&target.container, &blob_object(d))
                .is_none(),
            "{d} collected"
        );
    }
    assert_eq!(
        swift.objects(&target.container, "segments/"),
        Vec::<String>::new(),
        "the collected blobs' segments are gone:\n{}{}",
        out.stdout,
        out.stderr
    );
}

/// Objects of an upload left in a container of `swift`.
fn upload_leftovers_on(swift: &Swift, target: &SwiftTarget) -> Vec<String> {
    swift
        .objects(&target.container, "files/docker/registry/v2/repositories/")
        .into_iter()
        .filter(|name| name.contains("/_uploads/"))
        .collect()
}

/// The session id in an upload's `Location`.
fn upload_id(location: &str) -> String {
    let path = location_path(location);
    let path = path.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_string()
}

/// Purging a dead upload deletes its segments with it.
#[test]
fn upload_purge_removes_a_dead_uploads_segments() {
    let swift = small_objects();
    let target = SwiftTarget::fresh_on(swift);
    let wharf = Registry::builder(Driver::Swift)
        .swift_target(&target)
        .secret(SECRET)
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_ENABLED", "true")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_AGE", "1h")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_INTERVAL", "1s")
        .env("REGISTRY_STORAGE_MAINTENANCE_UPLOADPURGING_DRYRUN", "false")
        .start();
    let repo = "purge/app";
    let location = start_upload(&wharf.endpoint(), repo);
    let data = Prng::new(3).bytes(11 * MIB);
    let resp = send(
        wharf
            .patch(&location_path(&location))
            .header("content-type", "application/octet-stream")
            .body(data),
    );
    resp.assert_status(202);
    let segments = swift.objects(&target.container, "segments/");
    assert_eq!(segments.len(), 3, "{segments:?}");
    let uuid = upload_id(&location);
    // Started long ago: the next pass purges it.
    swift.put_object(
        &target.container,
        &format!("files/docker/registry/v2/repositories/{repo}/_uploads/{uuid}/startedat"),
        b"2020-01-01T00:00:00Z",
    );
    let purged = wait_until(std::time::Duration::from_secs(60), || {
        upload_leftovers_on(swift, &target).is_empty()
            && swift.objects(&target.container, "segments/").is_empty()
    });
    assert!(
        purged,
        "left: {:?} {:?}\n{}",
        upload_leftovers_on(swift, &target),
        swift.objects(&target.container, "segments/"),
        process::tail(&wharf.log(), 40)
    );
}

/// Swift refuses the credentials (tempauth answers 401): Wharf does not start, and says why.
#[test]
fn wharf_refuses_to_start_when_swift_refuses_the_credentials() {
    let log = refused_start(
        Registry::builder(Driver::Swift)
            .swift_target(&SwiftTarget::fresh())
            .env("REGISTRY_STORAGE_SWIFT_PASSWORD", "not-the-key"),
    );
    assert!(
        log.contains("storage.swift") && log.contains("refused the credentials"),
        "{log}"
    );
}

/// No authentication service where `authurl` points: Wharf does not start, as registry:2.
#[test]
fn wharf_refuses_to_start_when_the_auth_service_is_unreachable() {
    let target = SwiftTarget {
        auth_url: format!("http://127.0.0.1:{}/auth/v1.0", process::free_port()),
        container: support::swift::fresh_container(),
    };
    let log = refused_start(Registry::builder(Driver::Swift).swift_target(&target));
    assert!(
        log.contains("storage.swift") && log.contains("cannot reach the authentication service"),
        "{log}"
    );
}

/// Empty uploads (POST then PUT; POST, a PATCH without a body, PUT) started on registry:2 or
/// touched by it are finished by Wharf and read by both. registry:2 2.8.2 itself cannot finish
/// an empty upload on Swift (its writer waits for a size it never sees), even one it started:
/// checked here too, so the directions that end on registry:2 are known not to work with the
/// reference rather than skipped.
#[test]
fn empty_uploads_cross_between_binaries() {
    let target = SwiftTarget::fresh();
    let fleet = Fleet {
        registry2: start(Server::DockerRegistry, &target, false),
        wharf: start(Server::Wharf, &target, false),
    };
    let (r, w) = (Side::Registry2, Side::Wharf);
    let cases: [(&str, Vec<Side>, Vec<usize>); 4] = [
        ("POST on registry:2, PUT on Wharf", vec![r, w], vec![]),
        (
            "POST and empty PATCH on registry:2, PUT on Wharf",
            vec![r, r, w],
            vec![0],
        ),
        (
            "POST on registry:2, empty PATCH and PUT on Wharf",
            vec![r, w, w],
            vec![0],
        ),
        (
            "POST on Wharf, empty PATCH on registry:2, PUT on Wharf",
            vec![w, r, w],
            vec![0],
        ),
    ];
    let mut failed = Vec::new();
    for (i, (name, sides, chunks)) in cases.iter().enumerate() {
        let repo = format!("empty/case-{i}");
        let nodes: Vec<(String, Endpoint)> = sides.iter().map(|s| fleet.node(*s)).collect();
        let mut problems = push_across(&nodes, &repo, b"", chunks);
        if problems.is_empty() {
            problems.extend(fleet.read_back(&repo, b""));
        }
        if !problems.is_empty() {
            failed.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(failed.is_empty(), "{}\n{}", failed.join("\n"), fleet.logs());
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());
    let alone = push_across(&[fleet.node(r)], "empty/registry2", b"", &[]);
    assert!(
        alone.iter().any(|p| p.starts_with("PUT on Registry2: 500")),
        "registry:2 finishes an empty upload on Swift now: test the other directions\n{alone:?}"
    );
}
