//! The requests a `skopeo copy` push makes to Azure Blob (Azurite), GCS (fake-gcs-server) and
//! Swift, counted by the node's own `wharf_external_call_seconds` metric, and the image read
//! back. Looking for a blob that is not stored yet is one metadata request, and a finished
//! upload's folder is deleted by its known files: on Azure and GCS no folder of the tree is
//! listed (`ListBlobs`, `ListObjects`). What one file keeps apart is listed, as S3's
//! `ListParts` is: GCS's append claims (`ListClaims`), Swift's segments (`ListSegments`).
//! Swift still lists each finished upload's folder: its large-object manifests are only known
//! by a `HEAD` each, which costs more than the listing. S3's push is counted at the server
//! itself in `s3_push_requests.rs`.

mod support;

use support::object_store::StoreTarget;
use support::*;

/// Calls to the store by operation, from one scrape.
fn calls(reg: &Registry, system: &str) -> std::collections::BTreeMap<String, f64> {
    let scrape = reg.scrape();
    let mut by_op = std::collections::BTreeMap::new();
    for (labels, value) in
        scrape.matching("wharf_external_call_seconds_count", &[("system", system)])
    {
        if let Some(op) = labels.get("operation") {
            *by_op.entry(op.clone()).or_insert(0.0) += value;
        }
    }
    by_op
}

/// Pushes a 3-layer image (4 uploads) and checks that at most `folders_per_upload` listings
/// of the tree's folders (`tree_listing`) were made per upload; returns the calls by operation.
fn push_listings(
    driver: Driver,
    system: &str,
    tree_listing: &str,
    folders_per_upload: f64,
) -> Vec<(String, f64)> {
    let target = StoreTarget::fresh(driver);
    let reg = target
        .builder()
        .debug_server(true)
        // Nothing in the background may list while the push is counted.
        .without_upload_purging()
        .start();
    let work = tempfile::tempdir().unwrap();
    let mut layout = OciLayout::create(&work.path().join("in"));
    let image = layout.image_with_layers("amd64", &[1 << 20, 2 << 20, 3 << 20]);
    layout.tag("image", &image);

    let before = calls(&reg, system);
    copy_in(&reg, &layout.dir, "image", "push/requests:v1", false);
    let after = calls(&reg, system);
    let pushed: Vec<(String, f64)> = after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    eprintln!("{system} calls of the push: {pushed:?}");
    assert!(
        pushed.iter().map(|(_, n)| n).sum::<f64>() >= 10.0,
        "the push was counted: {pushed:?}"
    );
    let listings: f64 = pushed
        .iter()
        .filter(|(op, _)| op == tree_listing)
        .map(|(_, n)| n)
        .sum();
    assert!(
        listings <= 4.0 * folders_per_upload,
        "{listings} folder listings for 4 uploads: {pushed:?}"
    );

    let out = work.path().join("out");
    copy_out(&reg, "push/requests:v1", &oci_ref(&out, "image"), false);
    let pulled = OciLayout::create_existing(&out);
    assert_eq!(pulled.digest_of("image"), layout.digest_of("image"));
    assert_eq!(target.problems(), Vec::<String>::new());
    pushed
}

/// At most this many `HEAD`s per upload on Swift: four (the first chunk's open and commit; the
/// closing PUT's two looks at the blob's place: is it stored, what did it hold), with room for
/// the manifest's checks of its blobs and the maintenance watch.
const HEADS_PER_UPLOAD: f64 = 6.0;

/// Calls of `op` among `pushed`.
fn count(pushed: &[(String, f64)], op: &str) -> f64 {
    pushed.iter().filter(|(o, _)| o == op).map(|(_, n)| n).sum()
}

/// Azure also closes each upload without writing its block list again (the PUT brings no last
/// chunk) and leaves the upload's data to its folder's delete: one `Put Block List` per upload
/// (its one chunk) and three deletes (the folder's three files).
#[test]
fn azure_push_lists_no_folder() {
    let pushed = push_listings(Driver::Azure, "azure", "ListBlobs", 0.0);
    assert!(
        count(&pushed, "PutBlockList") <= 4.0 && count(&pushed, "DeleteBlob") <= 12.0,
        "block lists and deletes for 4 uploads: {pushed:?}"
    );
}

#[test]
fn gcs_push_lists_no_folder() {
    push_listings(Driver::Gcs, "gcs", "ListObjects", 0.0);
}

/// Swift also opens each chunk's writer from the note of the last commit, without a `HEAD` of
/// the upload's manifest, and a POST writes that manifest in one conditional `PUT`.
#[test]
fn swift_push_lists_only_each_finished_upload_folder() {
    let pushed = push_listings(Driver::Swift, "swift", "ListObjects", 1.0);
    let heads = count(&pushed, "HeadObject");
    assert!(
        heads <= 4.0 * HEADS_PER_UPLOAD,
        "{heads} HEADs for 4 uploads: {pushed:?}"
    );
}
