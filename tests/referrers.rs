//! The OCI 1.1 referrers API (section 14), which distribution lacks.

mod support;

use serde_json::{json, Value};
use support::*;

const REPO: &str = "signed/app";
const SBOM: &str = "application/vnd.example.sbom.v1+json";
const SIGNATURE: &str = "application/vnd.example.signature.v1";
const CONFIG_TYPED: &str = "application/vnd.example.config.v1+json";

/// A query value: `+` would read as a space.
fn query_value(value: &str) -> String {
    value.replace('+', "%2B")
}

fn referrers(reg: &Registry, subject: &str, query: &str) -> Resp {
    send(reg.get(&format!("/v2/{REPO}/referrers/{subject}{query}")))
}

/// The index answered for a subject, checked for shape; returns its `manifests`.
fn referrer_list(resp: &Resp) -> Vec<Value> {
    resp.assert_status(200);
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with(OCI_INDEX),
        "referrers answer is an OCI index: {}",
        resp.describe()
    );
    let body = resp.json();
    assert_eq!(body["schemaVersion"], 2, "{}", resp.describe());
    if let Some(media_type) = body.get("mediaType") {
        assert_eq!(media_type, OCI_INDEX);
    }
    body["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("manifests is a list: {}", resp.describe()))
        .clone()
}

fn find<'a>(list: &'a [Value], digest: &str) -> &'a Value {
    list.iter()
        .find(|d| d["digest"] == digest)
        .unwrap_or_else(|| panic!("{digest} listed in {list:?}"))
}

fn digests(list: &[Value]) -> Vec<String> {
    let mut out: Vec<String> = list
        .iter()
        .map(|d| d["digest"].as_str().expect("digest").to_string())
        .collect();
    out.sort();
    out
}

struct Fixture {
    reg: Registry,
    image: Manifest,
    sbom: Manifest,
    signature: Manifest,
    typed_by_config: Manifest,
}

fn push_referrer(reg: &Registry, manifest: &Manifest, subject: &Manifest) {
    let resp = put_manifest(reg, REPO, &manifest.digest, manifest);
    resp.assert_status(201);
    assert_eq!(
        resp.header("oci-subject"),
        Some(subject.digest.as_str()),
        "a manifest with a subject answers OCI-Subject: {}",
        resp.describe()
    );
}

fn fixture(driver: Driver) -> Fixture {
    let reg = Registry::start(driver);
    let image = push_image(&reg, REPO, "v1", Kind::OciManifest);
    push_blob(&reg, REPO, b"{}");

    let payload = Blob::random(300);
    push(&reg, REPO, &payload);
    let sbom = artifact_manifest(
        SBOM,
        &payload,
        Some(&image),
        Some(
            json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"}),
        ),
    );
    push_referrer(&reg, &sbom, &image);

    let signature_payload = Blob::random(64);
    push(&reg, REPO, &signature_payload);
    let signature = artifact_manifest(SIGNATURE, &signature_payload, Some(&image), None);
    push_referrer(&reg, &signature, &image);

    // No artifactType: the config's media type stands in for it.
    let config = Blob::new(br#"{"kind":"typed by config"}"#.to_vec());
    push(&reg, REPO, &config);
    let typed_by_config = Manifest::from_value(
        OCI_MANIFEST,
        &json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(CONFIG_TYPED, &config.digest, config.size()),
            "layers": [descriptor("application/vnd.example.payload", &payload.digest, payload.size())],
            "subject": image.descriptor(),
        }),
    );
    push_referrer(&reg, &typed_by_config, &image);

    // A manifest without a subject gets no OCI-Subject header and is no referrer.
    let plain = prepare(&reg, REPO, Kind::OciArtifact);
    let resp = put_manifest(&reg, REPO, "plain", &plain);
    resp.assert_status(201);
    assert_eq!(resp.header("oci-subject"), None);

    Fixture {
        reg,
        image,
        sbom,
        signature,
        typed_by_config,
    }
}

fn lists_referrers(driver: Driver) {
    let f = fixture(driver);
    let resp = referrers(&f.reg, &f.image.digest, "");
    let list = referrer_list(&resp);
    let mut expected = vec![
        f.sbom.digest.clone(),
        f.signature.digest.clone(),
        f.typed_by_config.digest.clone(),
    ];
    expected.sort();
    assert_eq!(digests(&list), expected, "{}", resp.describe());

    let sbom = find(&list, &f.sbom.digest);
    assert_eq!(sbom["mediaType"], OCI_MANIFEST);
    assert_eq!(sbom["size"], f.sbom.size());
    assert_eq!(sbom["artifactType"], SBOM);
    assert_eq!(
        sbom["annotations"],
        json!({"org.example.kind": "sbom", "org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
    );

    let signature = find(&list, &f.signature.digest);
    assert_eq!(signature["mediaType"], OCI_MANIFEST);
    assert_eq!(signature["size"], f.signature.size());
    assert_eq!(signature["artifactType"], SIGNATURE);
    let no_annotations = signature
        .get("annotations")
        .map(|a| a.is_null() || a.as_object().is_some_and(|o| o.is_empty()))
        .unwrap_or(true);
    assert!(no_annotations, "no annotations on {signature}");

    let typed = find(&list, &f.typed_by_config.digest);
    assert_eq!(typed["artifactType"], CONFIG_TYPED);
    assert_eq!(typed["size"], f.typed_by_config.size());
}

fn filter_by_artifact_type(driver: Driver) {
    let f = fixture(driver);
    let resp = referrers(
        &f.reg,
        &f.image.digest,
        &format!("?artifactType={}", query_value(SBOM)),
    );
    let list = referrer_list(&resp);
    assert_eq!(digests(&list), vec![f.sbom.digest.clone()]);
    assert_eq!(resp.header("oci-filters-applied"), Some("artifactType"));
    assert_eq!(find(&list, &f.sbom.digest)["artifactType"], SBOM);

    let resp = referrers(
        &f.reg,
        &f.image.digest,
        "?artifactType=application/vnd.example.nothing",
    );
    assert!(referrer_list(&resp).is_empty());
    assert_eq!(resp.header("oci-filters-applied"), Some("artifactType"));

    // Without a filter the header is absent.
    let resp = referrers(&f.reg, &f.image.digest, "");
    assert_eq!(resp.header("oci-filters-applied"), None);
}

fn unknown_subject(driver: Driver) {
    let f = fixture(driver);
    let unknown = sha256_digest(b"no such subject");
    assert!(referrer_list(&referrers(&f.reg, &unknown, "")).is_empty());
    // A known manifest with no referrers.
    assert!(referrer_list(&referrers(&f.reg, &f.sbom.digest, "")).is_empty());
    // A repository that does not exist.
    let resp = send(f.reg.get(&format!("/v2/no/such/repo/referrers/{unknown}")));
    assert!(
        resp.status == 200 || resp.status == 404,
        "{}",
        resp.describe()
    );
    if resp.status == 200 {
        assert!(referrer_list(&resp).is_empty());
    } else {
        assert_error(&resp, 404, "NAME_UNKNOWN");
    }
}

fn deleted_referrer_disappears(driver: Driver) {
    let f = fixture(driver);
    let resp = send(
        f.reg
            .delete(&format!("/v2/{REPO}/manifests/{}", f.sbom.digest)),
    );
    resp.assert_status(202);
    let list = referrer_list(&referrers(&f.reg, &f.image.digest, ""));
    let mut expected = vec![f.signature.digest.clone(), f.typed_by_config.digest.clone()];
    expected.sort();
    assert_eq!(digests(&list), expected);
    let list = referrer_list(&referrers(
        &f.reg,
        &f.image.digest,
        &format!("?artifactType={}", query_value(SBOM)),
    ));
    assert!(list.is_empty());
}

fn invalid_digest(driver: Driver) {
    let f = fixture(driver);
    for bad in [
        "sha256:xyz",
        "sha256:abc",
        &format!("sha256:{}", "A".repeat(64)),
        "not-a-digest",
    ] {
        let resp = referrers(&f.reg, bad, "");
        assert_error(&resp, 400, "DIGEST_INVALID");
    }
}

for_each_driver!(
    lists_referrers,
    filter_by_artifact_type,
    unknown_subject,
    deleted_referrer_disappears,
    invalid_digest,
);
