//! registry:2 bucket compatibility: images pushed through distribution 2.8.2 (Debian's
//! `docker-registry`) into a bucket are pulled through Wharf, and the reverse, with skopeo.
//! Blob reads are redirected to the object store on both sides.

mod support;

use std::path::Path;

use support::s3::shared;
use support::*;

fn fixture(dir: &Path) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let image = layout.image("amd64", 3);
    layout.tag("image", &image);
    let (index, _) = layout.multi_arch(1);
    layout.tag("multi", &index);
    layout
}

fn start(server: Server, target: &S3Target) -> Registry {
    Registry::builder(Driver::S3)
        .server(server)
        .s3_target(target)
        .redirect(true)
        .start()
}

fn push(reg: &Registry, layout: &OciLayout) {
    for (tag, repo, all) in [
        ("image", "compat/image:v1", false),
        ("multi", "compat/multi:latest", true),
    ] {
        copy_in(reg, &layout.dir, tag, repo, all);
    }
}

fn pull_and_compare(reg: &Registry, layout: &OciLayout, work: &Path) {
    for (tag, repo, all) in [
        ("image", "compat/image:v1", false),
        ("multi", "compat/multi:latest", true),
    ] {
        let out = work.join(format!("pulled-{tag}"));
        copy_out(reg, repo, &oci_ref(&out, tag), all);
        let pulled = OciLayout::create_existing(&out);
        assert_eq!(pulled.digest_of(tag), layout.digest_of(tag), "{repo}");
        // Every blob of the pulled image is byte-identical to the source.
        let inspect = skopeo(&["inspect", "--raw", &oci_ref(&out, tag)]);
        inspect.assert_success("skopeo inspect");
        let manifest: serde_json::Value = serde_json::from_str(&inspect.stdout).unwrap();
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            let digest = layer["digest"].as_str().unwrap();
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

#[test]
fn registry2_bucket_served_by_wharf() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixture(&work.path().join("layout"));
    let target = S3Target::fresh();
    let registry2 = start(Server::DockerRegistry, &target);
    push(&registry2, &layout);
    drop(registry2);
    let wharf = start(Server::Wharf, &target);
    pull_and_compare(&wharf, &layout, work.path());
}

#[test]
fn wharf_bucket_served_by_registry2() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixture(&work.path().join("layout"));
    let target = S3Target::fresh();
    let wharf = start(Server::Wharf, &target);
    push(&wharf, &layout);
    drop(wharf);
    assert!(
        shared().open_uploads(&target.bucket).is_empty(),
        "Wharf leaves no open multipart upload"
    );
    let registry2 = start(Server::DockerRegistry, &target);
    pull_and_compare(&registry2, &layout, work.path());
}
