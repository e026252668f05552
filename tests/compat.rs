//! registry:2 storage compatibility: a folder written by distribution 2.8.2 is served by Wharf and
//! the other way round, and both write the same tree of files for the same pushes.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::*;

/// One image or index pushed with skopeo.
struct Entry {
    /// The name in the source layout.
    source_tag: &'static str,
    repo: &'static str,
    tag: &'static str,
    /// `--all` (an index).
    all: bool,
    /// `--format v2s2` (skopeo converts to a Docker schema2 manifest).
    docker_format: bool,
}

const ENTRIES: [Entry; 5] = [
    Entry {
        source_tag: "image",
        repo: "compat/image",
        tag: "v1",
        all: false,
        docker_format: false,
    },
    Entry {
        source_tag: "image",
        repo: "compat/image",
        tag: "stable",
        all: false,
        docker_format: false,
    },
    Entry {
        source_tag: "multi",
        repo: "compat/multi",
        tag: "latest",
        all: true,
        docker_format: false,
    },
    Entry {
        source_tag: "arm",
        repo: "compat/nested/deep/image",
        tag: "v2",
        all: false,
        docker_format: false,
    },
    Entry {
        source_tag: "image",
        repo: "compat/docker",
        tag: "v1",
        all: false,
        docker_format: true,
    },
];

fn fixture_layout(dir: &Path) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let image = layout.image("amd64", 3);
    layout.tag("image", &image);
    let (index, _) = layout.multi_arch(2);
    layout.tag("multi", &index);
    let arm = layout.image("arm64", 1);
    layout.tag("arm", &arm);
    layout
}

/// Push every entry; returns `repo:tag -> manifest digest` as the registry serves it.
fn push_fixture(reg: &Registry, layout: &OciLayout) -> BTreeMap<String, String> {
    let mut digests = BTreeMap::new();
    for entry in &ENTRIES {
        let source = oci_ref(&layout.dir, entry.source_tag);
        let repo_tag = format!("{}:{}", entry.repo, entry.tag);
        let dest = docker_ref(reg, &repo_tag);
        let mut args = vec!["copy", "--dest-tls-verify=false"];
        if entry.all {
            args.push("--all");
        }
        if entry.docker_format {
            args.extend(["--format", "v2s2"]);
        } else {
            args.push("--preserve-digests");
        }
        args.extend([source.as_str(), dest.as_str()]);
        skopeo(&args).assert_success("skopeo copy into the registry");
        let digest = raw_digest(reg, &repo_tag);
        if !entry.docker_format {
            assert_eq!(Some(digest.clone()), layout.digest_of(entry.source_tag));
        }
        digests.insert(repo_tag, digest);
    }
    digests
}

fn catalog(reg: &Registry) -> Vec<String> {
    let resp = send(reg.get("/v2/_catalog"));
    resp.assert_status(200);
    let mut repos: Vec<String> = resp.json()["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    repos.sort();
    repos
}

fn sorted_tags(reg: &Registry, repo: &str) -> Vec<String> {
    let mut tags = list_tags(reg, repo);
    tags.sort();
    tags
}

/// Pull every entry back with skopeo, compare digests, catalog and tags.
fn verify_served(reg: &Registry, digests: &BTreeMap<String, String>, work: &Path) {
    for (i, entry) in ENTRIES.iter().enumerate() {
        let key = format!("{}:{}", entry.repo, entry.tag);
        let expected = &digests[&key];
        assert_eq!(&raw_digest(reg, &key), expected, "{key}");
        let out_dir = work.join(format!("pulled-{i}"));
        copy_out(reg, &key, &oci_ref(&out_dir, entry.tag), entry.all);
        let pulled = OciLayout::create_existing(&out_dir);
        assert_eq!(
            pulled.digest_of(entry.tag).as_ref(),
            Some(expected),
            "{key}"
        );
    }

    let repos: BTreeSet<&str> = ENTRIES.iter().map(|e| e.repo).collect();
    assert_eq!(
        catalog(reg),
        repos.iter().map(|r| r.to_string()).collect::<Vec<_>>()
    );
    for repo in repos {
        let mut expected: Vec<String> = ENTRIES
            .iter()
            .filter(|e| e.repo == repo)
            .map(|e| e.tag.to_string())
            .collect();
        expected.sort();
        assert_eq!(sorted_tags(reg, repo), expected, "tags of {repo}");
    }
}

fn start(server: Server, storage: &Path) -> Registry {
    Registry::builder(Driver::Filesystem)
        .server(server)
        .storage_dir(storage)
        .start()
}

#[test]
fn registry2_storage_served_by_wharf() {
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("storage");
    let layout = fixture_layout(&work.path().join("layout"));

    let registry2 = start(Server::DockerRegistry, &storage);
    let digests = push_fixture(&registry2, &layout);
    let reference_catalog = catalog(&registry2);
    drop(registry2);

    let wharf = start(Server::Wharf, &storage);
    assert_eq!(catalog(&wharf), reference_catalog);
    verify_served(&wharf, &digests, work.path());
}

#[test]
fn wharf_storage_served_by_registry2() {
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("storage");
    let layout = fixture_layout(&work.path().join("layout"));

    let wharf = start(Server::Wharf, &storage);
    let digests = push_fixture(&wharf, &layout);
    let reference_catalog = catalog(&wharf);
    drop(wharf);

    let registry2 = start(Server::DockerRegistry, &storage);
    assert_eq!(catalog(&registry2), reference_catalog);
    verify_served(&registry2, &digests, work.path());
}

/// `sha256:<64 hex>` with no newline.
fn assert_link(path: &Path, expected: Option<&str>) {
    let text = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = String::from_utf8(text).expect("link is text");
    let hex = text.strip_prefix("sha256:").unwrap_or("");
    assert!(
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{} holds {text:?}",
        path.display()
    );
    if let Some(expected) = expected {
        assert_eq!(text, expected, "{}", path.display());
    }
}

fn tree(storage: &Path) -> BTreeSet<PathBuf> {
    list_files(&storage.join("docker/registry/v2"))
}

#[test]
fn storage_layout_matches_registry2() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixture_layout(&work.path().join("layout"));
    let registry2_storage = work.path().join("registry2");
    let wharf_storage = work.path().join("wharf");

    let registry2 = start(Server::DockerRegistry, &registry2_storage);
    let registry2_digests = push_fixture(&registry2, &layout);
    drop(registry2);
    let wharf = start(Server::Wharf, &wharf_storage);
    let wharf_digests = push_fixture(&wharf, &layout);
    drop(wharf);
    assert_eq!(wharf_digests, registry2_digests);

    let expected = tree(&registry2_storage);
    let actual = tree(&wharf_storage);
    let missing: Vec<_> = expected.difference(&actual).collect();
    let extra: Vec<_> = actual.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "Wharf's tree differs from registry:2's\nmissing: {missing:#?}\nextra: {extra:#?}"
    );

    // Every link holds a bare digest; data files hold what their path says.
    let v2 = wharf_storage.join("docker/registry/v2");
    for file in &actual {
        let text = file.display().to_string();
        if text.ends_with("/link") {
            assert_link(&v2.join(file), None);
            let registry2_link =
                fs::read(registry2_storage.join("docker/registry/v2").join(file)).unwrap();
            assert_eq!(fs::read(v2.join(file)).unwrap(), registry2_link, "{text}");
        } else if text.ends_with("/data") && text.starts_with("blobs/") {
            let hex = file
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            let data = fs::read(v2.join(file)).unwrap();
            assert_eq!(sha256_digest(&data), format!("sha256:{hex}"), "{text}");
        } else {
            panic!("unexpected file {text}");
        }
    }

    // The documented paths for one image, spelled out.
    let image_digest = &wharf_digests["compat/image:v1"];
    let image_hex = digest_hex(image_digest);
    let repo = v2.join("repositories/compat/image");
    assert_link(
        &repo.join(format!("_manifests/revisions/sha256/{image_hex}/link")),
        Some(image_digest),
    );
    for tag in ["v1", "stable"] {
        assert_link(
            &repo.join(format!("_manifests/tags/{tag}/current/link")),
            Some(image_digest),
        );
        assert_link(
            &repo.join(format!(
                "_manifests/tags/{tag}/index/sha256/{image_hex}/link"
            )),
            Some(image_digest),
        );
    }
    let manifest: Value = serde_json::from_slice(
        &fs::read(v2.join(format!("blobs/sha256/{}/{image_hex}/data", &image_hex[..2]))).unwrap(),
    )
    .unwrap();
    let mut blob_digests: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    blob_digests.push(manifest["config"]["digest"].as_str().unwrap());
    for digest in blob_digests {
        let hex = digest_hex(digest);
        assert_link(
            &repo.join(format!("_layers/sha256/{hex}/link")),
            Some(digest),
        );
        assert!(v2
            .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
            .is_file());
    }
}
