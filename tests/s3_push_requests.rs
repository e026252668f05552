//! The S3 requests of a push, counted at the S3 server (moto's request log, by bucket): a
//! `skopeo copy` of a 3-layer image lists nothing and stays within its request budget (with
//! an in-memory blob-descriptor cache, the manifest reads no blob's data), a session finished
//! by Wharf is removed by its known files (no listing) and leaves nothing under `_uploads/`,
//! and a session cancelled before its first chunk is unknown to that chunk.

mod support;

use std::collections::BTreeMap;

use support::s3::shared;
use support::*;

const V2: &str = "docker/registry/v2/";

/// Most S3 requests one `skopeo copy` of the 3-layer image below may cost (measured: 74, of
/// which 14 for the manifest; it was 90). A regression guard, not a timing.
const PUSH_BUDGET: usize = 74;

/// The S3 operation of a logged request to `bucket`, if it is one.
fn operation(line: &str, bucket: &str) -> Option<&'static str> {
    operation_and_path(line, bucket).map(|(op, _)| op)
}

/// The S3 operation of a logged request to `bucket` and the key it names, if it is one.
fn operation_and_path<'a>(line: &'a str, bucket: &str) -> Option<(&'static str, &'a str)> {
    let request = line.split('"').nth(1)?;
    let mut parts = request.split_whitespace();
    let method = parts.next()?;
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let in_bucket = path == format!("/{bucket}") || path.starts_with(&format!("/{bucket}/"));
    // The read-only flag is polled in the background, whatever the requests.
    if !in_bucket || path.contains("/wharf/maintenance/") {
        return None;
    }
    let has = |k: &str| {
        query
            .split('&')
            .any(|p| p == k || p.starts_with(&format!("{k}=")))
    };
    let op = match method {
        "GET" if has("list-type") => "ListObjectsV2",
        "GET" if has("uploads") => "ListMultipartUploads",
        "GET" if has("uploadId") => "ListParts",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "PUT" if has("partNumber") => "UploadPart",
        "PUT" if path == format!("/{bucket}") => "CreateBucket",
        "PUT" => "PutObject/CopyObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        _ => "other",
    };
    Some((op, path))
}

/// Requests to `bucket` logged after the first `from` lines, by operation.
fn requests_since(from: usize, bucket: &str) -> BTreeMap<&'static str, usize> {
    let mut by_op = BTreeMap::new();
    for line in shared().request_lines().iter().skip(from) {
        if let Some(op) = operation(line, bucket) {
            *by_op.entry(op).or_insert(0) += 1;
        }
    }
    by_op
}

fn listings(by_op: &BTreeMap<&'static str, usize>) -> usize {
    ["ListObjectsV2", "ListMultipartUploads"]
        .iter()
        .map(|op| by_op.get(op).copied().unwrap_or(0))
        .sum()
}

/// Objects left under `_uploads/` and multipart uploads left open.
fn upload_leftovers(target: &S3Target) -> Vec<String> {
    let mut left: Vec<String> = shared()
        .keys(&target.bucket, &format!("{V2}repositories/"))
        .into_iter()
        .filter(|k| k.contains("/_uploads/"))
        .collect();
    left.extend(
        shared()
            .open_uploads(&target.bucket)
            .into_iter()
            .map(|k| format!("open multipart upload: {k}")),
    );
    left
}

fn registry(target: &S3Target) -> Registry {
    Registry::builder(Driver::S3).s3_target(target).start()
}

/// The image pushed: 3 layers (1, 2 and 3 MiB: one part each) and a config.
fn image_layout(dir: &std::path::Path) -> OciLayout {
    let mut layout = OciLayout::create(dir);
    let image = layout.image_with_layers("amd64", &[1 << 20, 2 << 20, 3 << 20]);
    layout.tag("image", &image);
    layout
}

/// Pushes the image with skopeo; returns its requests to the bucket, in order, as
/// (operation, key), leaving out the pass-marker reads when `without_pass_reads`.
fn push_requests(
    reg: &Registry,
    target: &S3Target,
    layout: &OciLayout,
    without_pass_reads: bool,
) -> Vec<(&'static str, String)> {
    let before = shared().request_lines().len();
    copy_in(reg, &layout.dir, "image", "push/requests:v1", false);
    let requests: Vec<(&'static str, String)> = shared()
        .request_lines()
        .iter()
        .skip(before)
        .filter_map(|l| operation_and_path(l, &target.bucket))
        .filter(|(op, path)| {
            !(without_pass_reads && *op == "GetObject" && path.ends_with("/wharf/gc/pass"))
        })
        .map(|(op, path)| (op, path.to_string()))
        .collect();
    for (op, path) in &requests {
        eprintln!("  {op} {path}");
    }
    requests
}

fn by_operation(requests: &[(&'static str, String)]) -> BTreeMap<&'static str, usize> {
    let mut by_op = BTreeMap::new();
    for (op, _) in requests {
        *by_op.entry(*op).or_insert(0) += 1;
    }
    by_op
}

#[test]
fn skopeo_push_lists_nothing_and_stays_within_its_request_budget() {
    let target = S3Target::fresh();
    let reg = registry(&target);
    let work = tempfile::tempdir().unwrap();
    let layout = image_layout(&work.path().join("in"));
    let requests = push_requests(&reg, &target, &layout, false);
    let by_op = by_operation(&requests);
    let total = requests.len();
    eprintln!("S3 requests of the push: {total} {by_op:?}");
    assert_eq!(
        listings(&by_op),
        0,
        "no listing on the push path: {by_op:?}"
    );
    assert!(total <= PUSH_BUDGET, "{total} requests: {by_op:?}");
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());
    assert_eq!(bucket_blob_problems(&target), Vec::<String>::new());
    let out = work.path().join("out");
    copy_out(&reg, "push/requests:v1", &oci_ref(&out, "image"), false);
    let pulled = OciLayout::create_existing(&out);
    assert_eq!(pulled.digest_of("image"), layout.digest_of("image"));
}

/// With `blobdescriptor: inmemory` (which answers only while no collection can be deleting
/// blobs), the blobs the push just stored are known to the cache: the manifest reads each
/// referenced blob's link, never its data.
#[test]
fn with_an_in_memory_cache_the_manifest_reads_no_blob_data() {
    let target = S3Target::fresh();
    let reg = Registry::builder(Driver::S3)
        .s3_target(&target)
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")
        .start();
    let work = tempfile::tempdir().unwrap();
    let layout = image_layout(&work.path().join("in"));
    // The pass marker is polled in the background by a node with an in-memory cache.
    let requests = push_requests(&reg, &target, &layout, true);
    let by_op = by_operation(&requests);
    eprintln!(
        "S3 requests of the push, pass-marker reads aside: {} {by_op:?}",
        requests.len()
    );
    assert_eq!(listings(&by_op), 0, "{by_op:?}");
    // The closing PUTs look for an existing copy of each blob; nothing else looks at blob data
    // but the manifest's own.
    let blob_heads: Vec<_> = requests
        .iter()
        .filter(|(op, path)| *op == "HeadObject" && path.contains("/blobs/"))
        .collect();
    assert_eq!(blob_heads.len(), 4 + 1, "{blob_heads:?}");
    assert!(
        requests.len() <= PUSH_BUDGET - 6 - 4,
        "{} requests: {by_op:?}",
        requests.len()
    );
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());
    assert_eq!(bucket_blob_problems(&target), Vec::<String>::new());
}

#[test]
fn a_chunked_upload_is_removed_by_its_known_files() {
    let target = S3Target::fresh();
    let reg = registry(&target);
    let data = Prng::new(0x51).bytes(3 * 1024 + 7);
    let digest = sha256_digest(&data);
    let post = send(reg.post("/v2/push/chunks/blobs/uploads/"));
    post.assert_status(202);
    let mut location = location_path(post.must_header("location"));
    for (start, end) in [(0, 1024), (1024, 2048), (2048, data.len())] {
        let resp = send(
            reg.patch(&location)
                .header("content-type", "application/octet-stream")
                .header("content-range", format!("{start}-{}", end - 1))
                .body(data[start..end].to_vec()),
        );
        resp.assert_status(202);
        location = location_path(resp.must_header("location"));
    }
    let before = shared().request_lines().len();
    let put = send(
        reg.put(&with_digest(&location, &digest))
            .header("content-length", "0"),
    );
    put.assert_status(201);
    let by_op = requests_since(before, &target.bucket);
    assert_eq!(listings(&by_op), 0, "the PUT lists nothing: {by_op:?}");
    // Every hash state the three chunks left went with the session.
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());
    let got = send(reg.get(&format!("/v2/push/chunks/blobs/{digest}")));
    got.assert_status(200);
    assert!(got.body == data, "the blob reads back");
}

#[test]
fn a_session_cancelled_before_its_first_chunk_stays_unknown() {
    let target = S3Target::fresh();
    let reg = registry(&target);
    let post = send(reg.post("/v2/push/cancel/blobs/uploads/"));
    post.assert_status(202);
    let location = location_path(post.must_header("location"));
    send(reg.delete(&location)).assert_status(204);
    let resp = send(
        reg.patch(&location)
            .header("content-type", "application/octet-stream")
            .body(vec![7u8; 100]),
    );
    assert_error(&resp, 404, "BLOB_UPLOAD_UNKNOWN");
    let data = vec![7u8; 100];
    let resp = send(
        reg.put(&with_digest(&location, &sha256_digest(&data)))
            .header("content-type", "application/octet-stream")
            .body(data),
    );
    assert_error(&resp, 404, "BLOB_UPLOAD_UNKNOWN");
    // Nothing was brought back to life under the cancelled session.
    assert_eq!(upload_leftovers(&target), Vec::<String>::new());
}
