//! A real client: skopeo copies images and indexes from OCI layouts into the registry and back.

mod support;

use serde_json::Value;
use support::*;

fn image_round_trip(driver: Driver) {
    let reg = Registry::start(driver);
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image("amd64", 3);
    layout.tag("v1", &image);

    copy_in(&reg, &layout.dir, "v1", "skopeo/image:v1", false);
    assert_eq!(raw_digest(&reg, "skopeo/image:v1"), image.digest);
    let resp = get_manifest(&reg, "skopeo/image", "v1", OCI_MANIFEST);
    resp.assert_status(200);
    assert!(resp.body == image.body, "manifest bytes preserved");

    // Back out to an OCI layout: same manifest digest, same blobs.
    let out_dir = work.path().join("out");
    copy_out(&reg, "skopeo/image:v1", &oci_ref(&out_dir, "v1"), false);
    let out = OciLayout::create_existing(&out_dir);
    assert_eq!(out.digest_of("v1"), Some(image.digest.clone()));
    let manifest: Value = image.json();
    let mut blobs: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    blobs.push(manifest["config"]["digest"].as_str().unwrap().to_string());
    for digest in &blobs {
        let data = out
            .blob(digest)
            .unwrap_or_else(|| panic!("{digest} copied out"));
        assert_eq!(&sha256_digest(&data), digest);
        assert_eq!(Some(data), layout.blob(digest));
    }

    // And to a `dir:` copy.
    let dir_out = work.path().join("dir");
    copy_out(
        &reg,
        "skopeo/image:v1",
        &format!("dir:{}", dir_out.display()),
        false,
    );
    let manifest_bytes = std::fs::read(dir_out.join("manifest.json")).expect("dir: manifest");
    assert_eq!(sha256_digest(&manifest_bytes), image.digest);
}

fn multi_arch_round_trip(driver: Driver) {
    let reg = Registry::start(driver);
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let (index, children) = layout.multi_arch(2);
    layout.tag("multi", &index);

    copy_in(&reg, &layout.dir, "multi", "skopeo/multi:latest", true);
    assert_eq!(raw_digest(&reg, "skopeo/multi:latest"), index.digest);
    for child in &children {
        let resp = get_manifest(&reg, "skopeo/multi", &child.digest, OCI_MANIFEST);
        resp.assert_status(200);
        assert!(resp.body == child.body);
    }

    let out_dir = work.path().join("out");
    copy_out(
        &reg,
        "skopeo/multi:latest",
        &oci_ref(&out_dir, "multi"),
        true,
    );
    let out = OciLayout::create_existing(&out_dir);
    assert_eq!(out.digest_of("multi"), Some(index.digest.clone()));
    for child in &children {
        let data = out
            .blob(&child.digest)
            .unwrap_or_else(|| panic!("child {} copied out", child.digest));
        assert!(data == child.body);
    }
}

fn inspect_list_delete(driver: Driver) {
    let reg = Registry::start(driver);
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let one = layout.image("amd64", 2);
    let two = layout.image("arm64", 1);
    layout.tag("one", &one);
    layout.tag("two", &two);
    copy_in(&reg, &layout.dir, "one", "skopeo/app:v1", false);
    copy_in(&reg, &layout.dir, "one", "skopeo/app:latest", false);
    copy_in(&reg, &layout.dir, "two", "skopeo/app:v2", false);

    let out = skopeo(&[
        "inspect",
        "--tls-verify=false",
        &docker_ref(&reg, "skopeo/app:v1"),
    ]);
    out.assert_success("skopeo inspect");
    let info: Value = serde_json::from_str(&out.stdout).expect("inspect JSON");
    assert_eq!(info["Digest"], one.digest.as_str());
    assert_eq!(info["Architecture"], "amd64");
    assert_eq!(info["Os"], "linux");
    assert_eq!(info["Layers"].as_array().map(|l| l.len()), Some(2));
    let mut tags: Vec<&str> = info["RepoTags"]
        .as_array()
        .expect("RepoTags")
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, vec!["latest", "v1", "v2"]);

    let list = || {
        let out = skopeo(&[
            "list-tags",
            "--tls-verify=false",
            &docker_ref(&reg, "skopeo/app"),
        ]);
        out.assert_success("skopeo list-tags");
        let value: Value = serde_json::from_str(&out.stdout).expect("list-tags JSON");
        let mut tags: Vec<String> = value["Tags"]
            .as_array()
            .expect("Tags")
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(list(), vec!["latest", "v1", "v2"]);

    // skopeo deletes by digest: the manifest and every tag on it go.
    skopeo(&[
        "delete",
        "--tls-verify=false",
        &docker_ref(&reg, "skopeo/app:v2"),
    ])
    .assert_success("skopeo delete");
    assert_eq!(list(), vec!["latest", "v1"]);
    let resp = get_manifest(&reg, "skopeo/app", &two.digest, OCI_MANIFEST);
    assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    assert_eq!(raw_digest(&reg, "skopeo/app:v1"), one.digest);
}

for_each_driver!(image_round_trip, multi_arch_round_trip, inspect_list_delete);
