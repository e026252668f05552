//! `/v2/<name>/blobs/uploads/[<uuid>]`: start, chunk, status, finish, cancel, mount.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::api::body::{empty, Body};
use crate::api::error::{ApiError, ErrorCode};
use crate::api::events::Emitter;
use crate::api::headers::parse_content_range;
use crate::api::{header_value, may_pull, mount_source, App, Req};
use crate::auth::{Access, Grant};
use crate::digest::{Algorithm, Digest};
use crate::notify::event::Action;
use crate::registry::error::RegistryError;
use crate::registry::reference::RepositoryName;
use crate::registry::{BlobInfo, MountSearch, UploadProgress, UploadRequest, MAX_SUGGESTED};

/// The headers that tell a client where a session stands: `Location` (with a token for the
/// stored bytes), `Range` and `Docker-Upload-UUID`.
fn progress_headers(
    app: &App,
    headers: &HeaderMap,
    name: &RepositoryName,
    p: &UploadProgress,
) -> [(header::HeaderName, HeaderValue); 3] {
    let token: String = form_urlencoded::byte_serialize(p.token.as_bytes()).collect();
    let path = format!("/v2/{name}/blobs/uploads/{}?_state={token}", p.uuid);
    [
        (
            header::LOCATION,
            header_value(&app.urls.url(headers, &path)),
        ),
        (
            header::RANGE,
            header_value(&format!("0-{}", p.offset.saturating_sub(1))),
        ),
        (
            header::HeaderName::from_static("docker-upload-uuid"),
            header_value(&p.uuid),
        ),
    ]
}

/// 202/204 with the session's `Location`, `Range` and `Docker-Upload-UUID`.
fn progress_response(
    app: &App,
    headers: &HeaderMap,
    name: &RepositoryName,
    p: &UploadProgress,
    status: StatusCode,
) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    for (k, v) in progress_headers(app, headers, name, p) {
        h.insert(k, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// A registry error about a session, counted when its token was refused, with the
/// session's place attached when the request was out of order (416): the client
/// continues from the `Location` it is given.
fn upload_error(
    app: &App,
    headers: &HeaderMap,
    name: &RepositoryName,
    e: RegistryError,
) -> ApiError {
    if matches!(e, RegistryError::BlobUploadInvalid(_)) {
        crate::ops::metrics::upload_token_rejected();
    }
    let resume = match &e {
        RegistryError::RangeInvalid {
            resume: Some(p), ..
        } => Some(progress_headers(app, headers, name, p)),
        _ => None,
    };
    let mut error = ApiError::from(e);
    if let Some(extra) = resume {
        error.headers.retain(|(k, _)| k != header::RANGE);
        error.headers.extend(extra);
    }
    error
}

/// 201 for a blob now in the repository.
fn created_response(
    app: &App,
    headers: &HeaderMap,
    name: &RepositoryName,
    blob: &BlobInfo,
) -> Response<Body> {
    let location = app
        .urls
        .url(headers, &format!("/v2/{name}/blobs/{}", blob.digest));
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    h.insert(header::LOCATION, header_value(&location));
    h.insert(
        "docker-content-digest",
        header_value(&blob.digest.to_string()),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// Takes the chunk a request carries.
fn take_chunk(req: &mut Req) -> Result<UploadRequest, ApiError> {
    let range = match req.header(header::CONTENT_RANGE) {
        None => None,
        Some(v) => Some(parse_content_range(v).ok_or_else(|| {
            ApiError::new(
                ErrorCode::RangeInvalid,
                format!("malformed Content-Range {v:?}"),
            )
        })?),
    };
    Ok(UploadRequest {
        range,
        content_length: req.content_length(),
        body: req.body_stream(),
    })
}

/// POST: new session (202), monolithic upload with `?digest=` (201), or
/// cross-repository mount with `?mount=` (201, else a new session): from
/// `from`, or without it from any repository the caller may pull.
pub async fn start(
    app: &App,
    req: &mut Req,
    name: &RepositoryName,
) -> Result<Response<Body>, ApiError> {
    if let Some(wanted) = req.query("mount") {
        let digest = wanted.parse().map_err(RegistryError::from)?;
        if let Some((blob, from)) = mount(app, req, name, &digest).await? {
            let mut events = Emitter::new(app, req);
            events.blob(
                Action::Mount,
                name,
                &blob.digest,
                blob.size,
                from.as_deref(),
            );
            events.record().await;
            return Ok(created_response(app, &req.parts.headers, name, &blob));
        }
    }
    if let Some(digest) = req.query("digest") {
        let chunk = take_chunk(req)?;
        let blob = app.registry.put_blob(name, &digest, chunk).await?;
        pushed(app, req, name, &blob).await;
        return Ok(created_response(app, &req.parts.headers, name, &blob));
    }
    let algorithm = match req.query("digest-algorithm") {
        None => Algorithm::Sha256,
        Some(a) => Algorithm::from_name(&a).ok_or_else(|| {
            ApiError::new(
                ErrorCode::DigestInvalid,
                format!("unsupported digest algorithm {a:?}"),
            )
        })?,
    };
    let p = app.registry.start_upload(name, algorithm).await?;
    Ok(progress_response(
        app,
        &req.parts.headers,
        name,
        &p,
        StatusCode::ACCEPTED,
    ))
}

/// Records the push event of a finished upload.
async fn pushed(app: &App, req: &Req, name: &RepositoryName, blob: &BlobInfo) {
    let mut events = Emitter::new(app, req);
    events.blob(Action::Push, name, &blob.digest, blob.size, None);
    events.record().await;
}

/// Links a blob the caller may pull into `name`, with the source when the request named
/// one; `None` to upload instead. Without pull on the source, mounting would leak its
/// blobs: the caller uploads the bytes instead, as when the blob is not there.
async fn mount(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    digest: &Digest,
) -> Result<Option<(BlobInfo, Option<String>)>, ApiError> {
    if let Some(from) = mount_source(req)? {
        if !may_pull(req, from.as_str()) {
            return Ok(None);
        }
        return Ok(app
            .registry
            .mount_blob(name, &from, digest)
            .await?
            .map(|blob| (blob, Some(from.to_string()))));
    }
    let grant = req.parts.extensions.get::<Grant>().cloned();
    let pullable = grant
        .as_ref()
        .and_then(|g| g.repositories_allowing("pull", MAX_SUGGESTED));
    let may_pull = move |repo: &str| {
        grant
            .as_ref()
            .is_none_or(|g| g.permits(&Access::repository(repo, "pull")))
    };
    let search = MountSearch {
        pullable: pullable.as_deref(),
        may_pull: &may_pull,
    };
    Ok(app
        .registry
        .mount_anonymous(name, digest, &search)
        .await?
        .map(|blob| (blob, None)))
}

/// GET/HEAD: where the session stands (204).
pub async fn status(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    uuid: &str,
) -> Result<Response<Body>, ApiError> {
    let p = app
        .registry
        .upload_status(name, uuid, req.query("_state").as_deref())
        .await
        .map_err(|e| upload_error(app, &req.parts.headers, name, e))?;
    Ok(progress_response(
        app,
        &req.parts.headers,
        name,
        &p,
        StatusCode::NO_CONTENT,
    ))
}

/// PATCH: append a chunk (202).
pub async fn patch(
    app: &App,
    req: &mut Req,
    name: &RepositoryName,
    uuid: &str,
) -> Result<Response<Body>, ApiError> {
    let token = req.query("_state");
    let chunk = take_chunk(req)?;
    let p = app
        .registry
        .append_upload(name, uuid, token.as_deref(), chunk)
        .await
        .map_err(|e| upload_error(app, &req.parts.headers, name, e))?;
    Ok(progress_response(
        app,
        &req.parts.headers,
        name,
        &p,
        StatusCode::ACCEPTED,
    ))
}

/// PUT `?digest=`: finish, with an optional last chunk (201).
pub async fn put(
    app: &App,
    req: &mut Req,
    name: &RepositoryName,
    uuid: &str,
) -> Result<Response<Body>, ApiError> {
    let token = req.query("_state");
    let digest = req.query("digest").ok_or_else(|| {
        ApiError::new(
            ErrorCode::DigestInvalid,
            "the digest query parameter is required",
        )
    })?;
    let chunk = take_chunk(req)?;
    let blob = app
        .registry
        .complete_upload(name, uuid, token.as_deref(), &digest, chunk)
        .await
        .map_err(|e| upload_error(app, &req.parts.headers, name, e))?;
    pushed(app, req, name, &blob).await;
    Ok(created_response(app, &req.parts.headers, name, &blob))
}

/// DELETE: cancel the session (204).
pub async fn cancel(
    app: &App,
    req: &Req,
    name: &RepositoryName,
    uuid: &str,
) -> Result<Response<Body>, ApiError> {
    app.registry
        .cancel_upload(name, uuid, req.query("_state").as_deref())
        .await
        .map_err(|e| upload_error(app, &req.parts.headers, name, e))?;
    let mut resp = Response::new(empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}
