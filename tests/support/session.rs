//! What a client does in a session with a registry: start an upload, send chunks, finish it, push
//! and pull manifests, list tags.
//!
//! The methods on [`Endpoint`] return a [`Failure`] for any answer but the one the protocol
//! promises (clients under load and nodes being killed count failures instead of stopping). The
//! free functions do the same and panic with the failure: a single-node test's assertions.

use reqwest::Method;

use super::client::{
    location_path, send, with_digest, Endpoint, Failure, Payload, Resp, NODE_HEADER,
};
use super::fixtures::{sha256_digest, unique_seed, Blob, HashingSink};
use super::manifest::{
    artifact_manifest, image_config, image_manifest, index_manifest, platform, Kind, Manifest,
    ACCEPT_ALL_MANIFESTS, DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER,
    OCI_MANIFEST,
};

/// One request of a push: method, status, the node that answered, the request path.
#[derive(Debug, Clone)]
pub struct Hop {
    pub method: &'static str,
    pub status: u16,
    pub node: String,
    pub path: String,
}

/// What a push went through.
pub type Trace = Vec<Hop>;

fn hop(method: &'static str, url: &str, resp: &Resp) -> Hop {
    let path = location_path(url);
    Hop {
        method,
        status: resp.status,
        node: resp.node().to_string(),
        path: path.split('?').next().unwrap_or("").to_string(),
    }
}

impl Endpoint {
    /// POST a new upload session: 202 with a `Location` and a `Docker-Upload-UUID`.
    pub fn start_upload(&self, repo: &str) -> Result<Resp, Failure> {
        let what = "POST upload";
        let resp = self.expect(what, self.post(&format!("/v2/{repo}/blobs/uploads/")), 202)?;
        for header in ["location", "docker-upload-uuid"] {
            if resp.header(header).is_none() {
                return Err(Failure::answer(what, &format!("no {header}"), resp));
            }
        }
        Ok(resp)
    }

    /// PATCH `data` (bytes `start..start+len` of the blob, with `Content-Range`) to `location`.
    pub fn patch_chunk(&self, location: &str, start: u64, data: Payload) -> Result<Resp, Failure> {
        let len = data.len();
        let mut request = self.patch(location);
        if len > 0 {
            request = request.header("content-range", format!("{start}-{}", start + len - 1));
        }
        self.expect("PATCH", data.attach(request), 202)
    }

    /// PUT `?digest=` (no body) to finish an upload.
    pub fn finish(&self, location: &str, digest: &str) -> Result<Resp, Failure> {
        let request = self.put(&with_digest(location, digest));
        self.expect("PUT", Payload::Bytes(Vec::new()).attach(request), 201)
    }

    /// A chunked push: POST, one PATCH per chunk cut at `cuts` (each answered with the whole
    /// `Range` so far and a new `Location`), PUT answered with the digest. Returns the trace.
    pub fn push_chunked(&self, repo: &str, data: &[u8], cuts: &[usize]) -> Result<Trace, Failure> {
        let digest = sha256_digest(data);
        let mut trace = Trace::new();
        let post = self.start_upload(repo)?;
        trace.push(hop("POST", &format!("/v2/{repo}/blobs/uploads/"), &post));
        let mut location = post.must_header("location").to_string();
        let mut start = 0usize;
        let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c < data.len()).collect();
        bounds.push(data.len());
        for end in bounds {
            if end <= start {
                continue;
            }
            let resp = self.patch_chunk(
                &location,
                start as u64,
                Payload::Bytes(data[start..end].to_vec()),
            )?;
            trace.push(hop("PATCH", &location, &resp));
            let expected_range = format!("0-{}", end - 1);
            if resp.header("range") != Some(expected_range.as_str())
                || resp.header("location").is_none()
            {
                return Err(Failure::answer(
                    "PATCH",
                    &format!("expected Range {expected_range} and a Location"),
                    resp,
                ));
            }
            location = resp.must_header("location").to_string();
            start = end;
        }
        let put = self.finish(&location, &digest)?;
        trace.push(hop("PUT", &location, &put));
        check_digest_header("PUT", put, &digest)?;
        Ok(trace)
    }

    /// A monolithic push: POST, then PUT `?digest=` with the whole body, answered with the
    /// digest.
    pub fn push_monolithic(&self, repo: &str, data: &[u8]) -> Result<Trace, Failure> {
        let digest = sha256_digest(data);
        let post = self.start_upload(repo)?;
        let location = post.must_header("location").to_string();
        let request = self.put(&with_digest(&location, &digest));
        let put = self.expect("PUT", Payload::Bytes(data.to_vec()).attach(request), 201)?;
        let trace = vec![
            hop("POST", &format!("/v2/{repo}/blobs/uploads/"), &post),
            hop("PUT", &location, &put),
        ];
        check_digest_header("PUT", put, &digest)?;
        Ok(trace)
    }

    /// Streams a blob back (never held in memory): (digest of the bytes, size, node).
    pub fn pull_digest(&self, repo: &str, digest: &str) -> Result<(String, u64, String), Failure> {
        let fail = |error: String| Failure {
            what: format!("GET blob {digest}"),
            answer: None,
            error,
        };
        let mut resp = self
            .get(&format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .map_err(|e| fail(format!("{e:#}")))?;
        let node = resp
            .headers()
            .get(NODE_HEADER)
            .map_or_else(String::new, |v| {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            });
        if resp.status().as_u16() != 200 {
            return Err(fail(format!("status {} from {node}", resp.status())));
        }
        let mut sink = HashingSink::default();
        resp.copy_to(&mut sink)
            .map_err(|e| fail(format!("reading the body from {node}: {e:#}")))?;
        let size = sink.written;
        Ok((sink.digest(), size, node))
    }

    /// PUT a manifest under `reference`: 201 with its digest.
    pub fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Manifest,
    ) -> Result<Resp, Failure> {
        let what = "PUT manifest";
        let resp = self.expect(
            what,
            put_manifest_request(self, repo, reference, manifest),
            201,
        )?;
        check_digest_header(what, resp, &manifest.digest)
    }

    /// GET a manifest of any type: 200.
    pub fn pull_manifest(&self, repo: &str, reference: &str) -> Result<Resp, Failure> {
        self.expect(
            "GET manifest",
            self.get(&format!("/v2/{repo}/manifests/{reference}"))
                .header("accept", ACCEPT_ALL_MANIFESTS),
            200,
        )
    }

    /// HEAD a blob: 200.
    pub fn head_blob(&self, repo: &str, digest: &str) -> Result<Resp, Failure> {
        self.expect(
            "HEAD blob",
            self.request(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}")),
            200,
        )
    }
}

fn check_digest_header(what: &str, resp: Resp, digest: &str) -> Result<Resp, Failure> {
    if resp.header("docker-content-digest") == Some(digest) {
        Ok(resp)
    } else {
        Err(Failure::answer(
            what,
            &format!("Docker-Content-Digest is not {digest}"),
            resp,
        ))
    }
}

fn put_manifest_request(
    to: &Endpoint,
    repo: &str,
    reference: &str,
    manifest: &Manifest,
) -> reqwest::blocking::RequestBuilder {
    to.put(&format!("/v2/{repo}/manifests/{reference}"))
        .header("content-type", &manifest.media_type)
        .body(manifest.body.clone())
}

fn or_panic<T>(result: Result<T, Failure>) -> T {
    result.unwrap_or_else(|f| panic!("{f}"))
}

/// POST a new upload session; its `Location`.
pub fn start_upload(reg: &Endpoint, repo: &str) -> String {
    or_panic(reg.start_upload(repo))
        .must_header("location")
        .to_string()
}

/// Monolithic upload: POST, then PUT `?digest=` with the whole body. Returns the digest.
pub fn push_blob(reg: &Endpoint, repo: &str, data: &[u8]) -> String {
    or_panic(reg.push_monolithic(repo, data));
    sha256_digest(data)
}

/// Chunked upload: POST, PATCH each `chunk` bytes with `Content-Range`, PUT `?digest=` with no
/// body. Returns the digest.
pub fn push_blob_chunked(reg: &Endpoint, repo: &str, data: &[u8], chunk: usize) -> String {
    let cuts: Vec<usize> = (1..data.len().div_ceil(chunk.max(1)))
        .map(|i| i * chunk.max(1))
        .collect();
    or_panic(reg.push_chunked(repo, data, &cuts));
    sha256_digest(data)
}

/// Monolithic upload of a blob.
pub fn push(reg: &Endpoint, repo: &str, blob: &Blob) {
    push_blob(reg, repo, &blob.data);
}

/// PUT a manifest, whatever the answer.
pub fn put_manifest(reg: &Endpoint, repo: &str, reference: &str, manifest: &Manifest) -> Resp {
    send(put_manifest_request(reg, repo, reference, manifest))
}

/// PUT a manifest and check the 201 answer (`Docker-Content-Digest`).
pub fn push_manifest(reg: &Endpoint, repo: &str, reference: &str, manifest: &Manifest) {
    or_panic(reg.push_manifest(repo, reference, manifest));
}

/// GET a manifest with this `Accept`, whatever the answer.
pub fn get_manifest(reg: &Endpoint, repo: &str, reference: &str, accept: &str) -> Resp {
    send(
        reg.get(&format!("/v2/{repo}/manifests/{reference}"))
            .header("accept", accept),
    )
}

/// `GET /v2/<repo>/tags/list` answered 200: the tags, in the order given.
pub fn list_tags(reg: &Endpoint, repo: &str) -> Vec<String> {
    let resp = send(reg.get(&format!("/v2/{repo}/tags/list")));
    resp.assert_status(200);
    let body = resp.json();
    assert_eq!(body["name"], repo, "{}", resp.describe());
    body["tags"]
        .as_array()
        .map(|tags| {
            tags.iter()
                .map(|t| t.as_str().expect("tag is a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Push an image's config and layers to `repo` and return its (not yet pushed) manifest.
pub fn prepare_image(reg: &Endpoint, repo: &str, media_type: &str, arch: &str) -> Manifest {
    let seed = unique_seed();
    let (config_type, layer_type) = if media_type == DOCKER_MANIFEST {
        (DOCKER_CONFIG, DOCKER_LAYER)
    } else {
        (OCI_CONFIG, OCI_LAYER)
    };
    let config = image_config(arch, seed, 2);
    let layers = [Blob::random(1500), Blob::random(3000)];
    push(reg, repo, &config);
    for layer in &layers {
        push(reg, repo, layer);
    }
    image_manifest(
        media_type,
        (config_type, &config),
        &[(layer_type, &layers[0]), (layer_type, &layers[1])],
        None,
    )
}

/// Push everything a manifest of `kind` refers to (blobs, child manifests by digest) and return
/// the manifest itself, not yet pushed.
pub fn prepare(reg: &Endpoint, repo: &str, kind: Kind) -> Manifest {
    match kind {
        Kind::DockerManifest => prepare_image(reg, repo, DOCKER_MANIFEST, "amd64"),
        Kind::OciManifest => prepare_image(reg, repo, OCI_MANIFEST, "amd64"),
        Kind::DockerList | Kind::OciIndex => {
            let child_type = if kind == Kind::DockerList {
                DOCKER_MANIFEST
            } else {
                OCI_MANIFEST
            };
            let amd64 = prepare_image(reg, repo, child_type, "amd64");
            let arm64 = prepare_image(reg, repo, child_type, "arm64");
            put_manifest(reg, repo, &amd64.digest, &amd64).assert_status(201);
            put_manifest(reg, repo, &arm64.digest, &arm64).assert_status(201);
            index_manifest(
                kind.media_type(),
                &[
                    (&amd64, platform("linux", "amd64")),
                    (&arm64, platform("linux", "arm64")),
                ],
            )
        }
        Kind::OciArtifact => {
            let payload = Blob::random(700);
            push(reg, repo, &payload);
            push_blob(reg, repo, b"{}");
            artifact_manifest(
                "application/vnd.example.wharf.test+json",
                &payload,
                None,
                None,
            )
        }
    }
}

/// A whole image (blobs and manifest) pushed under `tag`.
pub fn push_image(reg: &Endpoint, repo: &str, tag: &str, kind: Kind) -> Manifest {
    let manifest = prepare(reg, repo, kind);
    push_manifest(reg, repo, tag, &manifest);
    manifest
}
