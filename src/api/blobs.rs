//! `/v2/<name>/blobs/<digest>`: GET (with Range), HEAD, DELETE.

use http::{header, HeaderValue, Method, Response, StatusCode};

use crate::api::body::{empty, stream, Body};
use crate::api::error::ApiError;
use crate::api::events::Emitter;
use crate::api::file_body::{self, SendfileQueue};
use crate::api::headers::{parse_range, ByteRange};
use crate::api::{header_value, App, Req};
use crate::digest::Digest;
use crate::mirror::BlobAnswer;
use crate::notify::event::Action;
use crate::registry::reference::RepositoryName;

/// GET or HEAD a blob.
pub async fn get(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    digest: &str,
) -> Result<Response<Body>, ApiError> {
    let digest: Digest = digest
        .parse()
        .map_err(crate::registry::error::RegistryError::from)?;
    let mut namespace = None;
    let target = app
        .mirror
        .as_ref()
        .and_then(|m| Some((m, m.target(name, req.query("ns").as_deref())?)));
    let mut local = name.clone();
    let blob = match target {
        None => app.registry.stat_blob(name, &digest).await?,
        Some((mirror, target)) => {
            let head = req.parts.method == Method::HEAD;
            let answer = mirror.blob(&app.registry, &target, &digest, head).await?;
            namespace = target.namespace.clone();
            match answer {
                BlobAnswer::Cached(info) => {
                    local = target.local;
                    info
                }
                BlobAnswer::Streaming { size, body } => {
                    let mut events = Emitter::new(app, req);
                    events.blob(
                        Action::Pull,
                        &target.local,
                        &digest,
                        size.unwrap_or(0),
                        None,
                    );
                    events.record().await;
                    let mut resp = Response::new(stream(body));
                    fetched_headers(resp.headers_mut(), &digest, size, namespace.as_deref());
                    return Ok(resp);
                }
                BlobAnswer::Upstream { size } => {
                    let mut resp = Response::new(empty());
                    fetched_headers(resp.headers_mut(), &digest, size, namespace.as_deref());
                    return Ok(resp);
                }
            }
        }
    };
    let name = &local;
    // registry:2 records a pull for every GET it serves (redirects, ranges and 304s too); a
    // HEAD is an existence check and records nothing.
    if req.parts.method == Method::GET {
        let mut events = Emitter::new(app, req);
        events.blob(Action::Pull, name, &blob.digest, blob.size, None);
        events.record().await;
    }
    let digest_header = header_value(&digest.to_string());
    let etag = format!("\"{digest}\"");
    let mut resp = super::roomy_response();
    let h = resp.headers_mut();
    if let Some(ns) = &namespace {
        h.insert("oci-namespace", header_value(ns));
    }
    h.insert("docker-content-digest", digest_header.clone());
    h.insert(header::ETAG, header_value(&etag));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if req
        .header(header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        return Ok(resp);
    }
    // HEAD is answered here: the size is already known, and a URL presigned
    // for GET does not sign a HEAD (S3 would refuse it).
    if req.parts.method != Method::HEAD {
        if let Some(url) = app.registry.blob_redirect(&blob).await? {
            let mut resp = Response::new(empty());
            *resp.status_mut() = StatusCode::TEMPORARY_REDIRECT;
            let h = resp.headers_mut();
            h.insert(header::LOCATION, header_value(&url));
            h.insert("docker-content-digest", digest_header);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return Ok(resp);
        }
    }
    let (start, len) = match parse_range(req.header(header::RANGE), blob.size) {
        ByteRange::Full => (0, blob.size),
        ByteRange::Partial { start, end } => {
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            resp.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes {start}-{end}/{}", blob.size)),
            );
            (start, end - start + 1)
        }
        ByteRange::Unsatisfiable => {
            let mut e = Response::new(empty());
            *e.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = e.headers_mut();
            h.insert(
                header::CONTENT_RANGE,
                header_value(&format!("bytes */{}", blob.size)),
            );
            h.insert("docker-content-digest", digest_header);
            h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
            return Ok(e);
        }
    };
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, header_value(&len.to_string()));
    if req.parts.method == Method::HEAD || len == 0 {
        return Ok(resp);
    }
    let (parts, _) = resp.into_parts();
    // A plain HTTP/1 connection copies file bytes to its socket in the kernel.
    if let Some(queue) = req.parts.extensions.get::<SendfileQueue>() {
        if let Some(region) = app.registry.blob_file(&blob, start, len).await? {
            return Ok(Response::from_parts(
                parts,
                file_body::body(region, queue.clone()),
            ));
        }
    }
    let data = app.registry.read_blob(&blob, start, len).await?;
    Ok(Response::from_parts(parts, stream(data)))
}

/// DELETE a blob's link (202).
pub async fn delete(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    digest: &str,
) -> Result<Response<Body>, ApiError> {
    let digest: Digest = digest
        .parse()
        .map_err(crate::registry::error::RegistryError::from)?;
    app.registry.delete_blob(name, &digest).await?;
    let mut events = Emitter::new(app, req);
    events.deleted(name, &digest);
    events.record().await;
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::ACCEPTED;
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp.headers_mut()
        .insert("docker-content-digest", header_value(&digest.to_string()));
    Ok(resp)
}

/// Headers of a blob answered from its upstream (streamed while fetched, or a HEAD).
fn fetched_headers(
    h: &mut http::HeaderMap,
    digest: &Digest,
    size: Option<u64>,
    namespace: Option<&str>,
) {
    h.insert("docker-content-digest", header_value(&digest.to_string()));
    h.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = size {
        h.insert(header::CONTENT_LENGTH, header_value(&size.to_string()));
    }
    if let Some(ns) = namespace {
        h.insert("oci-namespace", header_value(ns));
    }
}
