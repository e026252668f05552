//! `/v2/<name>/manifests/<reference>`: GET/HEAD with Accept negotiation, PUT, DELETE.

use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::api::body::{empty, full, Body};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::events::Emitter;
use crate::api::headers::accepted_types;
use crate::api::{header_value, App, Req};
use crate::notify::event::Action;
use crate::registry::error::RegistryError;
use crate::registry::manifest_format::{self, MAX_MANIFEST_SIZE};
use crate::registry::reference::{RepositoryName, Tag};
use crate::registry::{tags_of, ManifestReference, StoredManifest};

/// Most `?tag=` values one manifest push may carry (OCI asks for at least 10).
pub const MAX_TAGS_PER_PUSH: usize = 64;

/// 413, as OCI asks of a registry that limits manifest size (registry:2
/// answers 400 with the same code).
fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::ManifestTooLarge,
        format!("manifest exceeds the {MAX_MANIFEST_SIZE} byte limit"),
    )
}

/// GET or HEAD a manifest.
pub async fn get(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    reference: &str,
) -> Result<Response<Body>, ApiError> {
    // Nothing can be stored under a reference that is neither a tag nor a
    // digest: for a read that is "not found" (OCI), not a bad request.
    let reference = ManifestReference::parse(reference).map_err(|_| {
        let shown: String = reference.chars().take(160).collect();
        RegistryError::ManifestUnknown(format!("{name}:{shown}: not a valid tag or digest"))
    })?;
    let target = app
        .mirror
        .as_ref()
        .and_then(|m| m.target(name, req.query("ns").as_deref()));
    let (mut m, stale) = match (&app.mirror, &target) {
        (Some(mirror), Some(target)) => {
            let answer = mirror.manifest(&app.registry, target, &reference).await?;
            (answer.manifest, answer.stale)
        }
        _ => (app.registry.get_manifest(name, &reference).await?, false),
    };
    let name = target.as_ref().map_or(name, |t| &t.local);
    let tag = match &reference {
        ManifestReference::Tag(t) => Some(t.as_str().to_string()),
        ManifestReference::Digest(_) => None,
    };
    // registry:2 answers a matching If-None-Match before reading the manifest: no event.
    let not_modified = req.header(header::IF_NONE_MATCH).is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim() == format!("\"{}\"", m.digest) || t.trim() == m.digest.to_string())
    });
    // A HEAD is an existence check, not a pull: it records no event.
    let mut events = Emitter::new(app, req);
    if req.parts.method == Method::GET && !not_modified {
        events.manifest(
            Action::Pull,
            name,
            &m.media_type,
            &m.digest,
            &m.body,
            tag.as_deref(),
        );
    }
    let accepted = accepted_types(
        req.parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let accepts = |t: &str| {
        accepted.is_empty()
            || accepted
                .iter()
                .any(|a| a == t || a == "*/*" || a == "application/*")
    };
    // Old Docker clients that only know schema 2 get the linux/amd64 image of a list.
    if m.media_type == manifest_format::DOCKER_MANIFEST_LIST
        && matches!(reference, ManifestReference::Tag(_))
        && !accepts(manifest_format::DOCKER_MANIFEST_LIST)
        && accepted
            .iter()
            .any(|a| a == manifest_format::DOCKER_MANIFEST)
    {
        m = amd64_child(app, target.as_ref(), name, &m).await?;
        if req.parts.method == Method::GET {
            events.manifest(Action::Pull, name, &m.media_type, &m.digest, &m.body, None);
        }
    }
    events.record().await;
    if (m.media_type == manifest_format::OCI_MANIFEST || m.media_type == manifest_format::OCI_INDEX)
        && !accepts(&m.media_type)
    {
        return Err(RegistryError::ManifestUnknown(
            "OCI manifest found, but accept header does not support OCI manifests".into(),
        )
        .into());
    }
    let etag = format!("\"{}\"", m.digest);
    let mut resp = super::roomy_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(&m.media_type));
    h.insert("docker-content-digest", header_value(&m.digest.to_string()));
    h.insert(header::ETAG, header_value(&etag));
    if let Some(ns) = target.as_ref().and_then(|t| t.namespace.as_deref()) {
        h.insert("oci-namespace", header_value(ns));
    }
    if stale {
        // RFC 7234's "response is stale": the upstream could not confirm the tag.
        h.insert(
            header::WARNING,
            HeaderValue::from_static("110 wharf \"Response is stale\""),
        );
    }
    if req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        // No Content-Length: HTTP/1.1 servers drop it from a bodiless 304.
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    resp.headers_mut().insert(
        header::CONTENT_LENGTH,
        header_value(&m.body.len().to_string()),
    );
    if req.parts.method == Method::HEAD {
        return Ok(resp);
    }
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, full(m.body)))
}

async fn amd64_child(
    app: &App,
    target: Option<&crate::mirror::Target>,
    name: &RepositoryName,
    list: &StoredManifest,
) -> Result<StoredManifest, ApiError> {
    let parsed = manifest_format::parse_stored(&list.body)
        .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
    let child = parsed
        .manifests
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|(arch, os)| arch == "amd64" && os == "linux")
        })
        .ok_or_else(|| {
            RegistryError::ManifestUnknown("no linux/amd64 image in the manifest list".into())
        })?;
    let reference = ManifestReference::Digest(child.digest.clone());
    if let (Some(mirror), Some(target)) = (&app.mirror, target) {
        return Ok(mirror
            .manifest(&app.registry, target, &reference)
            .await?
            .manifest);
    }
    Ok(app.registry.get_manifest(name, &reference).await?)
}

/// PUT a manifest by tag or digest (201).
pub async fn put(
    app: &App,
    req: &mut Req,
    name: &RepositoryName,
    reference: &str,
) -> Result<Response<Body>, ApiError> {
    let reference = ManifestReference::parse(reference)?;
    let extra_tags = tags_to_push(req)?;
    if req
        .content_length()
        .is_some_and(|l| l > MAX_MANIFEST_SIZE as u64)
    {
        return Err(too_large());
    }
    let content_type = req.header(header::CONTENT_TYPE).unwrap_or("").to_string();
    let incoming = req
        .take_body()
        .ok_or_else(|| ApiError::new(ErrorCode::ManifestInvalid, "no body"))?;
    let body = http_body_util::Limited::new(incoming, MAX_MANIFEST_SIZE)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::new(
                    ErrorCode::ManifestInvalid,
                    format!("reading the manifest: {e}"),
                )
            }
        })?
        .to_bytes();
    let (digest, parsed) = app
        .registry
        .put_manifest(name, &reference, &extra_tags, &content_type, body.clone())
        .await?;
    let mut events = Emitter::new(app, req);
    let media_type =
        crate::registry::manifest_format::detect_media_type(&body).unwrap_or(content_type);
    let tags = tags_of(&reference, &extra_tags);
    if tags.is_empty() {
        events.manifest(Action::Push, name, &media_type, &digest, &body, None);
    }
    for tag in &tags {
        events.manifest(
            Action::Push,
            name,
            &media_type,
            &digest,
            &body,
            Some(tag.as_str()),
        );
    }
    events.record().await;
    let location = app.urls.url(
        &req.parts.headers,
        &format!("/v2/{name}/manifests/{digest}"),
    );
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, header_value(&location));
    h.insert("docker-content-digest", header_value(&digest.to_string()));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    if let Some(subject) = parsed.subject {
        h.insert("oci-subject", header_value(&subject.digest.to_string()));
    }
    for tag in tags_of(&reference, &extra_tags) {
        h.append("oci-tag", header_value(tag.as_str()));
    }
    Ok(resp)
}

/// The `?tag=` values of a manifest push (OCI multi-tag push), each checked;
/// more than [`MAX_TAGS_PER_PUSH`] answer 414.
fn tags_to_push(req: &Req) -> Result<Vec<Tag>, ApiError> {
    let values = req.query_all("tag", MAX_TAGS_PER_PUSH);
    if values.len() > MAX_TAGS_PER_PUSH {
        return Err(ApiError::too_many_tags(MAX_TAGS_PER_PUSH));
    }
    values
        .iter()
        .map(|v| {
            Tag::parse(v).ok_or_else(|| {
                let shown: String = v.chars().take(160).collect();
                RegistryError::TagInvalid(shown).into()
            })
        })
        .collect()
}

/// DELETE by digest (manifest and its tags) or by tag (the tag only); 202.
pub async fn delete(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    reference: &str,
) -> Result<Response<Body>, ApiError> {
    let reference = ManifestReference::parse(reference)?;
    let untagged = app.registry.delete_manifest(name, &reference).await?;
    let mut events = Emitter::new(app, req);
    if let ManifestReference::Digest(digest) = &reference {
        events.deleted(name, digest);
    }
    for tag in &untagged {
        events.tag_deleted(name, tag);
    }
    events.record().await;
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(resp)
}
