//! registry:2 container compatibility on OpenStack Swift (tempauth, auth v1): images pushed
//! through distribution 2.8.2 (Debian's `docker-registry`) into a container are pulled through
//! Wharf, and the reverse, with skopeo and blob reads redirected to temp URLs on both sides;
//! distribution's `garbage-collect --dry-run` walks a container Wharf wrote; and a chunked
//! upload started on one binary continues and finishes on the other, in both directions, with
//! chunks under and over the 5 MiB segment size.

mod support;

use std::path::Path;

use support::swift::{shared, SwiftTarget};
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

fn start(server: Server, target: &SwiftTarget, redirect: bool) -> Registry {
    Registry::builder(Driver::Swift)
        .server(server)
        .swift_target(target)
        .redirect(redirect)
        .secret(SECRET)
        .start()
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
    shared()
        .objects(&target.container, "files/docker/registry/v2/repositories/")
        .into_iter()
        .filter(|name| name.contains("/_uploads/"))
        .collect()
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

/// Which binary answers a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Registry2,
    Wharf,
}

/// A registry:2 node and a Wharf node over one container with one `http.secret`.
struct Fleet {
    registry2: Registry,
    wharf: Registry,
}

impl Fleet {
    fn endpoint(&self, side: Side) -> Endpoint {
        match side {
            Side::Registry2 => self.registry2.endpoint(),
            Side::Wharf => self.wharf.endpoint(),
        }
    }

    fn logs(&self) -> String {
        format!(
            "--- registry:2 ---\n{}\n--- wharf ---\n{}\n",
            process::tail(&self.registry2.log(), 40),
            process::tail(&self.wharf.log(), 40)
        )
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Registry2 => Side::Wharf,
        Side::Wharf => Side::Registry2,
    }
}

/// One chunked upload whose requests alternate between the binaries: POST on `first`, each
/// PATCH on the other side from the request before, PUT on the side after the last PATCH.
/// Returns the answers that were not what a client expects.
fn push_alternating(
    fleet: &Fleet,
    first: Side,
    repo: &str,
    data: &[u8],
    chunks: &[usize],
) -> Vec<String> {
    let digest = sha256_digest(data);
    let mut side = first;
    let post = send(
        fleet
            .endpoint(side)
            .post(&format!("/v2/{repo}/blobs/uploads/")),
    );
    if post.status != 202 {
        return vec![format!("POST on {side:?}: {}", post.describe())];
    }
    let mut location = location_path(post.must_header("location"));
    let mut start = 0usize;
    for &len in chunks {
        side = other(side);
        let end = start + len;
        let request = fleet
            .endpoint(side)
            .patch(&location)
            .header("content-range", format!("{start}-{}", end - 1))
            .header("content-type", "application/octet-stream")
            .body(data[start..end].to_vec());
        let resp = send(request);
        let range = format!("0-{}", end - 1);
        if resp.status != 202 || resp.header("range") != Some(range.as_str()) {
            return vec![format!(
                "PATCH {start}..{end} on {side:?}: {}",
                resp.describe()
            )];
        }
        location = location_path(resp.must_header("location"));
        start = end;
    }
    side = other(side);
    let put = send(
        fleet
            .endpoint(side)
            .put(&with_digest(&location, &digest))
            .header("content-length", "0"),
    );
    if put.status != 201 || put.header("docker-content-digest") != Some(digest.as_str()) {
        return vec![format!("PUT on {side:?}: {}", put.describe())];
    }
    Vec::new()
}

/// Streams the blob from both binaries and compares.
fn read_back(fleet: &Fleet, repo: &str, data: &[u8]) -> Vec<String> {
    let digest = sha256_digest(data);
    let mut problems = Vec::new();
    for side in [Side::Registry2, Side::Wharf] {
        match fleet.endpoint(side).pull_digest(repo, &digest) {
            Ok((got, len, _)) if got == digest && len == data.len() as u64 => {}
            Ok((got, len, _)) => {
                problems.push(format!("GET on {side:?}: {len} bytes hashing to {got}"))
            }
            Err(f) => problems.push(format!("GET on {side:?}: {f}")),
        }
    }
    problems
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
    let mut prng = Prng::new(0x5_1f7 + first as u64);
    let mut failed = Vec::new();
    for (i, (name, chunks)) in cases().into_iter().enumerate() {
        let repo = format!("mixed/{}-{i}", format!("{first:?}").to_lowercase());
        let data = prng.bytes(chunks.iter().sum());
        let mut problems = push_alternating(&fleet, first, &repo, &data, &chunks);
        if problems.is_empty() {
            problems.extend(read_back(&fleet, &repo, &data));
        }
        if !problems.is_empty() {
            failed.push(format!("{name}: {}", problems.join("; ")));
        }
    }
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
