//! Wharf on S3 (moto on loopback), as users run it: blob reads redirected to presigned URLs,
//! chunked uploads continued on other nodes sharing the bucket and the secret, and the bucket
//! holding exactly distribution's layout.

mod support;

use support::s3::shared;
use support::*;

const MIB: usize = 1 << 20;

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

#[test]
fn blob_reads_redirect_to_presigned_urls() {
    let reg = Registry::builder(Driver::S3).redirect(true).start();
    let blob = Blob::random(100_000);
    push(&reg, "redirect/app", &blob);
    let path = blob_path("redirect/app", &blob.digest);

    let resp = send(reg.get(&path));
    resp.assert_status(307);
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    let location = resp.must_header("location").to_string();
    assert!(
        location.starts_with(&reg.s3().unwrap().endpoint) && location.contains("X-Amz-Signature="),
        "a presigned URL of the bucket: {location}"
    );
    let plain = reqwest::blocking::Client::new();
    let direct = plain.get(&location).send().unwrap();
    assert_eq!(direct.status(), 200);
    assert!(
        direct.bytes().unwrap().as_ref() == blob.data.as_slice(),
        "bytes via the redirect"
    );
    let ranged = plain
        .get(&location)
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert!(
        ranged.bytes().unwrap().as_ref() == &blob.data[1000..2000],
        "range via the redirect"
    );

    assert_eq!(
        resp.header("content-length"),
        Some("0"),
        "the redirect's own body"
    );
    // HEAD is answered by the registry (a URL presigned for GET does not sign a HEAD), with
    // the blob's digest and size; a GET client that follows redirects gets the bytes.
    let resp = send(reg.head(&path));
    resp.assert_status(200);
    assert_eq!(resp.header("content-length"), Some("100000"));
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    let following = reqwest::blocking::Client::new()
        .get(reg.resolve(&path))
        .header("range", "bytes=99990-")
        .send()
        .unwrap();
    assert_eq!(following.status(), 206);
    assert!(following.bytes().unwrap().as_ref() == &blob.data[99_990..]);

    // Manifests are served by the registry itself.
    let image = push_image(&reg, "redirect/app", "v1", Kind::OciManifest);
    let resp = get_manifest(&reg, "redirect/app", "v1", OCI_MANIFEST);
    resp.assert_status(200);
    assert!(resp.body == image.body);
    // Unknown blobs are still 404 from the registry.
    let missing = sha256_digest(b"never pushed");
    assert_error(
        &send(reg.get(&blob_path("redirect/app", &missing))),
        404,
        "BLOB_UNKNOWN",
    );
}

#[test]
fn streamed_reads_with_ranges_when_redirects_are_off() {
    let reg = Registry::start(Driver::S3);
    let blob = Blob::random(6 * MIB + 17);
    push_blob_chunked(&reg, "stream/app", &blob.data, 2 * MIB);
    let path = blob_path("stream/app", &blob.digest);
    let resp = send(reg.get(&path));
    resp.assert_status(200);
    assert!(resp.body == blob.data);
    let resp = send(reg.get(&path).header("range", "bytes=5242870-5242889"));
    resp.assert_status(206);
    assert_eq!(
        resp.header("content-range"),
        Some(format!("bytes 5242870-5242889/{}", blob.size()).as_str())
    );
    assert!(resp.body == blob.data[5_242_870..5_242_890]);
}

/// Three nodes share the bucket and the secret; each PATCH (under 5 MiB) goes to the next node,
/// a retried PATCH repeats bytes already stored (and is told so), and the PUT lands on yet
/// another node.
#[test]
fn chunked_upload_continues_on_other_nodes() {
    let target = S3Target::fresh();
    let nodes: Vec<Registry> = (0..3)
        .map(|_| Registry::builder(Driver::S3).s3_target(&target).start())
        .collect();
    let blob = Blob::random(13 * MIB + 4321);
    let repo = "ha/app";
    let mut location = start_upload(&nodes[0], repo);
    let mut offset = 0usize;
    let mut tokens = Vec::new();
    for (i, part) in blob.data.chunks(3 * MIB + 11).enumerate() {
        let node = &nodes[(i + 1) % 3];
        let end = offset + part.len() - 1;
        let resp = send(
            node.patch(&location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{offset}-{end}"))
                .body(part.to_vec()),
        );
        resp.assert_status(202);
        assert_eq!(resp.header("range"), Some(format!("0-{end}").as_str()));
        tokens.push((location.clone(), offset));
        location = resp.must_header("location").to_string();
        offset = end + 1;
    }
    // The answer to the last PATCH was "lost": the client sends it again with the old state,
    // and is told the bytes are already there (416 with the stored range and a Location).
    let (old_location, old_offset) = tokens.last().unwrap().clone();
    let resp = send(
        nodes[2]
            .patch(&old_location)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{old_offset}-{}", blob.data.len() - 1),
            )
            .body(blob.data[old_offset..].to_vec()),
    );
    assert_error(&resp, 416, "RANGE_INVALID");
    assert_eq!(
        resp.header("range"),
        Some(format!("0-{}", blob.data.len() - 1).as_str())
    );
    let location = resp.must_header("location").to_string();
    let resp = send(nodes[1].get(&location));
    resp.assert_status(204);
    assert_eq!(
        resp.header("range"),
        Some(format!("0-{}", blob.data.len() - 1).as_str())
    );

    let resp = send(nodes[0].put(&with_digest(&location, &blob.digest)));
    resp.assert_status(201);
    for node in &nodes {
        let resp = send(node.get(&blob_path(repo, &blob.digest)));
        resp.assert_status(200);
        assert!(resp.body == blob.data, "every node serves the blob");
    }
    let server = shared();
    assert!(
        server.open_uploads(&target.bucket).is_empty(),
        "no multipart upload left open"
    );
    let leftovers: Vec<String> = server
        .keys(
            &target.bucket,
            "docker/registry/v2/repositories/ha/app/_uploads/",
        )
        .into_iter()
        .collect();
    assert!(
        leftovers.is_empty(),
        "upload folders removed: {leftovers:?}"
    );
}

/// The keys a push leaves are distribution's, under `rootdirectory`, and nothing else.
#[test]
fn bucket_holds_distribution_layout_under_the_root() {
    let target = S3Target::fresh();
    let reg = Registry::builder(Driver::S3)
        .s3_target(&target)
        .s3_line("    rootdirectory: /some/root/")
        .start();
    let image = push_image(&reg, "layout/app", "v1", Kind::DockerManifest);
    let chunked = Blob::random(7 * MIB);
    push_blob_chunked(&reg, "layout/app", &chunked.data, 4 * MIB);
    let keys = shared().keys(&target.bucket, "");
    let v2 = "some/root/docker/registry/v2";
    let image_hex = digest_hex(&image.digest);
    for expected in [
        format!("{v2}/blobs/sha256/{}/{image_hex}/data", &image_hex[..2]),
        format!("{v2}/repositories/layout/app/_manifests/revisions/sha256/{image_hex}/link"),
        format!("{v2}/repositories/layout/app/_manifests/tags/v1/current/link"),
        format!("{v2}/repositories/layout/app/_manifests/tags/v1/index/sha256/{image_hex}/link"),
        format!(
            "{v2}/repositories/layout/app/_layers/sha256/{}/link",
            digest_hex(&chunked.digest)
        ),
    ] {
        assert!(
            keys.contains(&expected),
            "{expected} missing from {keys:#?}"
        );
    }
    for key in &keys {
        assert!(key.starts_with(v2), "{key} outside the root");
        let rest = &key[v2.len()..];
        assert!(
            (rest.starts_with("/blobs/sha256/") && rest.ends_with("/data"))
                || (rest.starts_with("/repositories/layout/app/") && rest.ends_with("/link")),
            "unexpected key {key}"
        );
    }
    let hex = digest_hex(&chunked.digest);
    let stored = shared()
        .object(
            &target.bucket,
            &format!("{v2}/blobs/sha256/{}/{hex}/data", &hex[..2]),
        )
        .expect("blob object");
    assert!(
        stored == chunked.data,
        "the object is the blob, readable by any S3 client"
    );
    let link = shared()
        .object(
            &target.bucket,
            &format!("{v2}/repositories/layout/app/_manifests/tags/v1/current/link"),
        )
        .unwrap();
    assert_eq!(link, image.digest.as_bytes(), "links hold the bare digest");
}
