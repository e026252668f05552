//! Anonymous cross-repository mount (`POST /v2/<name>/blobs/uploads/?mount=<digest>`, no
//! `from`): the blob is linked from a repository that has it (201), found through the cache's
//! hints or in the target's namespace within a fixed number of storage requests; otherwise the
//! answer is a normal upload session (202).

mod support;

use support::*;

fn mount(reg: &Registry, repo: &str, digest: &str) -> Resp {
    send(reg.post(&format!("/v2/{repo}/blobs/uploads/?mount={digest}")))
}

fn assert_mounted(reg: &Registry, repo: &str, blob: &Blob) {
    let resp = mount(reg, repo, &blob.digest);
    resp.assert_status(201);
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert!(
        location_path(resp.must_header("location"))
            .ends_with(&format!("/v2/{repo}/blobs/{}", blob.digest)),
        "{}",
        resp.describe()
    );
    let resp = send(reg.get(&format!("/v2/{repo}/blobs/{}", blob.digest)));
    resp.assert_status(200);
    assert!(resp.body == blob.data, "the mounted blob reads back");
}

/// A 202 upload session that takes the bytes.
fn assert_upload_instead(reg: &Registry, repo: &str, blob: &Blob) {
    let resp = mount(reg, repo, &blob.digest);
    resp.assert_status(202);
    assert_eq!(
        send(reg.head(&format!("/v2/{repo}/blobs/{}", blob.digest))).status,
        404,
        "nothing linked by the refused mount"
    );
    let location = resp.must_header("location").to_string();
    let resp = send(
        reg.put(&with_digest(&location, &blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone()),
    );
    resp.assert_status(201);
}

fn siblings_and_root(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(5000);
    push(&reg, "conformance/repo2", &blob);
    assert_mounted(&reg, "conformance/repo1", &blob);
    // Deeper in the namespace, and from a repository nested below a sibling.
    let deep = Blob::random(3000);
    push(&reg, "org/team/tools/src", &deep);
    assert_mounted(&reg, "org/apps/dst", &deep);
    // A single-component target searches the top level.
    let top = Blob::random(2000);
    push(&reg, "base", &top);
    assert_mounted(&reg, "app", &top);
    // Already in the target: nothing to do, 201.
    assert_mounted(&reg, "app", &top);
    // Unknown anywhere: an upload session.
    assert_upload_instead(&reg, "conformance/repo1", &Blob::random(100));
    // In another namespace, and no cache to say so: an upload session.
    let far = Blob::random(4000);
    push(&reg, "elsewhere/src", &far);
    assert_upload_instead(&reg, "conformance/repo3", &far);
    // Deleted from its only repository: the data is still there, the link is not.
    let gone = Blob::random(1000);
    push(&reg, "conformance/old", &gone);
    send(reg.delete(&format!("/v2/conformance/old/blobs/{}", gone.digest))).assert_status(202);
    assert_upload_instead(&reg, "conformance/new", &gone);
    // A malformed digest is refused; nothing created.
    let resp = send(reg.post("/v2/conformance/repo1/blobs/uploads/?mount=sha256:abc"));
    assert_error(&resp, 400, "DIGEST_INVALID");
}

/// With a blob-descriptor cache, the repositories a blob was last read through are tried
/// first, wherever they are.
fn cache_hints(driver: Driver) {
    let reg = Registry::builder(driver)
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")
        .start();
    let blob = Blob::random(4000);
    push(&reg, "elsewhere/src", &blob);
    send(reg.head(&format!("/v2/elsewhere/src/blobs/{}", blob.digest))).assert_status(200);
    assert_mounted(&reg, "conformance/dst", &blob);
    // A hint whose link was deleted since is checked, not trusted.
    let gone = Blob::random(1000);
    push(&reg, "elsewhere/old", &gone);
    send(reg.head(&format!("/v2/elsewhere/old/blobs/{}", gone.digest))).assert_status(200);
    send(reg.delete(&format!("/v2/elsewhere/old/blobs/{}", gone.digest))).assert_status(202);
    assert_upload_instead(&reg, "conformance/other", &gone);
}

/// 200 repositories in the target's namespace, the blob in the last one searched: the search
/// gives up within its budget of storage requests and answers 202.
fn bounded_search(driver: Driver) {
    let reg = &Registry::builder(driver)
        .without_upload_purging()
        .debug_server(true)
        .start();
    let filler = Blob::random(10);
    for i in 0..200 {
        let digest = push_blob(reg, &format!("big/r{i:03}"), &filler.data);
        assert_eq!(digest, filler.digest);
    }
    let blob = Blob::random(700);
    push(reg, "big/zzz", &blob);
    let calls = || {
        reg.scrape()
            .sum("registry_storage_action_seconds_count", &[])
    };
    let before = calls();
    assert_upload_instead(reg, "big/target", &blob);
    let spent = calls() - before;
    // The search's budget, plus the target's link and the data's stat, the upload session
    // (start, then the PUT) and the HEAD.
    let budget = 64.0;
    assert!(
        (budget..=budget + 16.0).contains(&spent),
        "{spent} storage calls: the whole budget, no more"
    );
    // Found when it is near: a sibling listed early.
    let near = Blob::random(800);
    push(reg, "big/a-first", &near);
    assert_mounted(reg, "big/target", &near);
}

for_each_driver!(siblings_and_root, cache_hints, bounded_search);
