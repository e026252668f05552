//! One blob published by several writers at once over S3: pushes of the same layer to many
//! repositories at the same moment (CI jobs sharing a base image), and reads of a blob while
//! another writer (a Wharf node, or a registry:2 node in a mixed fleet) is still copying it into
//! place with a multipart copy. Every push succeeds, every read gets the blob whole, and the
//! stored object hashes to its digest.

mod support;

use std::thread;

use support::s3::shared;
use support::*;

const MIB: usize = 1 << 20;

/// The object key of a blob's data.
fn data_key(digest: &str) -> String {
    let hex = digest_hex(digest);
    format!("docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2])
}

/// Larger than the default `multipartcopythresholdsize` (32 MiB): published by multipart copy.
fn large_blob() -> Blob {
    Blob::random(40 * MIB + 7)
}

#[test]
fn a_blob_another_writer_is_copying_again_reads_back_whole() {
    let target = S3Target::fresh();
    let reg = Registry::builder(Driver::S3).s3_target(&target).start();
    let blob = large_blob();
    push(&reg, "copy/a", &blob);
    // Another writer's multipart copy onto the blob's key, one part of two done.
    let key = data_key(&blob.digest);
    let server = shared();
    let foreign = server.create_upload(&target.bucket, &key);
    server.upload_part(&target.bucket, &key, &foreign, 1, &blob.data[..20 * MIB]);

    let resp = send(reg.head(&format!("/v2/copy/a/blobs/{}", blob.digest)));
    resp.assert_status(200);
    assert_eq!(
        resp.header("content-length"),
        Some(blob.data.len().to_string().as_str())
    );
    let resp = send(reg.get(&format!("/v2/copy/a/blobs/{}", blob.digest)));
    resp.assert_status(200);
    assert!(
        resp.body == blob.data,
        "the blob reads back whole ({} bytes read)",
        resp.body.len()
    );
    let resp = send(
        reg.get(&format!("/v2/copy/a/blobs/{}", blob.digest))
            .header("range", format!("bytes={}-", 30 * MIB)),
    );
    resp.assert_status(206);
    assert!(resp.body == blob.data[30 * MIB..], "a range of it too");

    // The reads left the other writer's copy alone, and the object is the blob.
    assert_eq!(server.upload_ids(&target.bucket, &key), vec![foreign]);
    let stored = server
        .object(&target.bucket, &key)
        .expect("the blob's object");
    assert_eq!(
        sha256_digest(&stored),
        blob.digest,
        "the stored object is the blob"
    );
    // Pushing it again (another repository) while that copy is open works too.
    push(&reg, "copy/b", &blob);
    let resp = send(reg.get(&format!("/v2/copy/b/blobs/{}", blob.digest)));
    resp.assert_status(200);
    assert!(resp.body == blob.data);
}

#[test]
fn pushes_of_one_blob_to_many_repositories_at_once_all_succeed() {
    let target = S3Target::fresh();
    let reg = Registry::builder(Driver::S3).s3_target(&target).start();
    let blob = large_blob();
    let pushers: Vec<_> = (0..8)
        .map(|i| {
            let (endpoint, data) = (reg.endpoint(), blob.data.clone());
            thread::spawn(move || {
                let repo = format!("many/r{i}");
                let location = start_upload(&endpoint, &repo);
                let resp = send(
                    endpoint
                        .patch(&location)
                        .header("content-type", "application/octet-stream")
                        .body(data.clone()),
                );
                resp.assert_status(202);
                let location = resp.must_header("location").to_string();
                let resp = send(endpoint.put(&with_digest(&location, &sha256_digest(&data))));
                (repo, resp)
            })
        })
        .collect();
    for pusher in pushers {
        let (repo, resp) = pusher.join().unwrap();
        assert_eq!(resp.status, 201, "{repo}: {}", resp.describe());
        let resp = send(reg.get(&format!("/v2/{repo}/blobs/{}", blob.digest)));
        resp.assert_status(200);
        assert!(resp.body == blob.data, "{repo} serves the blob whole");
    }
    let stored = shared()
        .object(&target.bucket, &data_key(&blob.digest))
        .expect("the blob's object");
    assert_eq!(sha256_digest(&stored), blob.digest);
}
