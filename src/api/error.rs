//! The one place where failures become OCI error JSON and HTTP statuses.

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::api::body::{full, Body};
use crate::ops::health::RETRY_AFTER_SECONDS;
use crate::registry::error::RegistryError;
use crate::storage::StorageError;

/// An error code as the API answers it: its OCI / distribution code, HTTP status and
/// message (distribution's `errcode/register.go`). A code answered with more than one
/// status has a variant per status, so nothing patches a status after the fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`, 404.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`, 404.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`, 404.
    BlobUploadUnknown,
    /// `DIGEST_INVALID`, 400.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`, 400.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`, 400.
    ManifestInvalid,
    /// `MANIFEST_INVALID` with 413, as OCI asks of a registry that limits manifest size
    /// (registry:2 answers 400 with the same code).
    ManifestTooLarge,
    /// `MANIFEST_UNKNOWN`, 404.
    ManifestUnknown,
    /// `NAME_INVALID`, 400.
    NameInvalid,
    /// `NAME_UNKNOWN`, 404.
    NameUnknown,
    /// `SIZE_INVALID`, 400.
    SizeInvalid,
    /// `SIZE_INVALID` with 431: a request head beyond `http.limits`.
    HeadersTooLarge,
    /// `TAG_INVALID`, 400.
    TagInvalid,
    /// `TAG_INVALID` with 414: more `?tag=` values on one push than Wharf takes (OCI).
    TooManyTags,
    /// `UNAUTHORIZED`, 401.
    Unauthorized,
    /// `DENIED`, 403.
    Denied,
    /// `UNSUPPORTED`, 405.
    Unsupported,
    /// `RANGE_INVALID`, 416.
    RangeInvalid,
    /// `PAGINATION_NUMBER_INVALID`, 400.
    PaginationNumberInvalid,
    /// `UNAVAILABLE`, 503.
    Unavailable,
    /// `TOOMANYREQUESTS`, 429.
    TooManyRequests,
    /// `NOT_FOUND`, 404: no API endpoint at this path.
    RouteNotFound,
    /// `UNKNOWN`, 500.
    Unknown,
}

impl ErrorCode {
    /// The code on the wire.
    pub fn code(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid | Self::ManifestTooLarge => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid | Self::HeadersTooLarge => "SIZE_INVALID",
            Self::TagInvalid | Self::TooManyTags => "TAG_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::RangeInvalid => "RANGE_INVALID",
            Self::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            Self::Unavailable => "UNAVAILABLE",
            Self::TooManyRequests => "TOOMANYREQUESTS",
            Self::RouteNotFound => "NOT_FOUND",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status answered with it.
    pub fn status(self) -> StatusCode {
        match self {
            Self::BlobUnknown
            | Self::BlobUploadInvalid
            | Self::BlobUploadUnknown
            | Self::ManifestUnknown
            | Self::NameUnknown
            | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::DigestInvalid
            | Self::ManifestBlobUnknown
            | Self::ManifestInvalid
            | Self::NameInvalid
            | Self::SizeInvalid
            | Self::TagInvalid
            | Self::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            Self::ManifestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::TooManyTags => StatusCode::URI_TOO_LONG,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Denied => StatusCode::FORBIDDEN,
            Self::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Self::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The fixed message, as distribution words it.
    pub fn message(self) -> &'static str {
        match self {
            Self::BlobUnknown | Self::ManifestBlobUnknown => "blob unknown to registry",
            Self::BlobUploadInvalid => "blob upload invalid",
            Self::BlobUploadUnknown => "blob upload unknown to registry",
            Self::DigestInvalid => "provided digest did not match uploaded content",
            Self::ManifestInvalid | Self::ManifestTooLarge => "manifest invalid",
            Self::ManifestUnknown => "manifest unknown",
            Self::NameInvalid => "invalid repository name",
            Self::NameUnknown => "repository name not known to registry",
            Self::SizeInvalid | Self::HeadersTooLarge => {
                "provided length did not match content length"
            }
            Self::TagInvalid | Self::TooManyTags => "manifest tag did not match URI",
            Self::Unauthorized => "authentication required",
            Self::Denied => "requested access to the resource is denied",
            Self::Unsupported => "The operation is unsupported.",
            Self::RangeInvalid => "invalid content range",
            Self::PaginationNumberInvalid => "invalid number of results requested",
            Self::Unavailable => "service unavailable",
            Self::TooManyRequests => "too many requests",
            Self::RouteNotFound => "page not found",
            Self::Unknown => "unknown error",
        }
    }
}

/// An error response: its code, detail and extra headers.
#[derive(Debug)]
pub struct ApiError {
    /// The code, which fixes the status and message.
    pub code: ErrorCode,
    /// Free-form detail.
    pub detail: Value,
    /// Headers such as `WWW-Authenticate` or `Range`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with `code`'s status and message.
    pub fn new(code: ErrorCode, detail: impl Into<Value>) -> Self {
        Self {
            code,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// No resource at this path.
    pub fn route_not_found() -> Self {
        Self::new(ErrorCode::RouteNotFound, "no such API endpoint")
    }

    /// More `?tag=` values on one manifest push than Wharf takes (OCI: 414).
    pub fn too_many_tags(limit: usize) -> Self {
        Self::new(
            ErrorCode::TooManyTags,
            format!("at most {limit} tags per manifest push"),
        )
    }

    /// Method not allowed on an existing resource.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::new(
            ErrorCode::Unsupported,
            "method not allowed on this resource",
        )
        .with_header(http::header::ALLOW, HeaderValue::from_static(allow))
    }

    /// The JSON body distribution sends.
    pub fn body_json(&self) -> Value {
        json!({"errors": [{
            "code": self.code.code(),
            "message": self.code.message(),
            "detail": self.detail,
        }]})
    }

    /// Renders the response.
    pub fn into_response(self) -> http::Response<Body> {
        let mut resp = http::Response::new(full(
            serde_json::to_vec(&self.body_json()).unwrap_or_default(),
        ));
        let status = self.status();
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (name, value) in self.headers {
            h.append(name, value);
        }
        let retryable = matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        );
        if retryable && !h.contains_key(http::header::RETRY_AFTER) {
            h.insert(
                http::header::RETRY_AFTER,
                HeaderValue::from(RETRY_AFTER_SECONDS),
            );
        }
        resp
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let text = e.to_string();
        match e {
            RegistryError::NameInvalid(_) => Self::new(ErrorCode::NameInvalid, text),
            RegistryError::NameUnknown(name) => {
                Self::new(ErrorCode::NameUnknown, json!({ "name": name }))
            }
            RegistryError::TagInvalid(_) => Self::new(ErrorCode::TagInvalid, text),
            RegistryError::BlobUnknown(d) => Self::new(ErrorCode::BlobUnknown, d.to_string()),
            RegistryError::BlobUploadUnknown => Self::new(ErrorCode::BlobUploadUnknown, json!({})),
            // Distribution answers a bad token with an empty detail; so do we.
            RegistryError::BlobUploadInvalid(_) => {
                Self::new(ErrorCode::BlobUploadInvalid, json!({}))
            }
            RegistryError::DigestInvalid(_) | RegistryError::DigestUnsupported(_) => {
                Self::new(ErrorCode::DigestInvalid, text)
            }
            RegistryError::SizeInvalid(_) => Self::new(ErrorCode::SizeInvalid, text),
            RegistryError::RangeInvalid { offset, .. } => {
                let range = format!("0-{}", offset.saturating_sub(1));
                Self::new(ErrorCode::RangeInvalid, text).with_header(
                    http::header::RANGE,
                    HeaderValue::from_str(&range).expect("digits"),
                )
            }
            RegistryError::ManifestUnknown(_) => Self::new(ErrorCode::ManifestUnknown, text),
            RegistryError::ManifestInvalid(_) => Self::new(ErrorCode::ManifestInvalid, text),
            RegistryError::ManifestBlobUnknown(d) => {
                Self::new(ErrorCode::ManifestBlobUnknown, d.to_string())
            }
            RegistryError::PaginationNumberInvalid(_) => {
                Self::new(ErrorCode::PaginationNumberInvalid, text)
            }
            RegistryError::Unsupported(_) => Self::new(ErrorCode::Unsupported, text),
            RegistryError::Unavailable(_) => Self::new(ErrorCode::Unavailable, text),
            RegistryError::Body(_) => Self::new(ErrorCode::SizeInvalid, text),
            RegistryError::Storage(e) => storage_error(e),
        }
    }
}

impl From<crate::mirror::MirrorError> for ApiError {
    fn from(e: crate::mirror::MirrorError) -> Self {
        use crate::mirror::upstream::UpstreamError;
        use crate::mirror::MirrorError;
        let text = e.to_string();
        match e {
            MirrorError::Registry(e) => e.into(),
            // Upstream trouble is the upstream's, never a 500: retry when it said.
            MirrorError::Upstream(UpstreamError::Unavailable { retry_after, .. }) => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                Self::new(ErrorCode::Unavailable, text)
                    .with_header(http::header::RETRY_AFTER, HeaderValue::from(secs))
            }
            MirrorError::Upstream(UpstreamError::Denied { .. }) => {
                Self::new(ErrorCode::Denied, text)
            }
            MirrorError::Mismatch { .. } | MirrorError::WaitTimedOut(_) => {
                Self::new(ErrorCode::Unavailable, text)
            }
        }
    }
}

/// Backend failures are logged in full and answered without internal paths;
/// a backend that cannot be reached is 503 (retry later), not 500.
fn storage_error(e: StorageError) -> ApiError {
    tracing::error!(error = %e, "storage failure");
    match &e {
        StorageError::InvalidPath(_) => ApiError::new(ErrorCode::NameInvalid, "invalid path"),
        StorageError::Unavailable { .. } => {
            ApiError::new(ErrorCode::Unavailable, "storage backend unavailable")
        }
        StorageError::Io { source, .. } if is_unreachable(source.kind()) => {
            ApiError::new(ErrorCode::Unavailable, "storage backend unavailable")
        }
        // An upload whose stored parts were replaced by a concurrent writer: the client
        // starts the blob again.
        StorageError::Changed(_) => ApiError::new(ErrorCode::BlobUploadUnknown, json!({})),
        // A request that lost a race with another on the same upload, past the point where
        // it could be told where the upload stands.
        StorageError::Busy(_) => ApiError::new(ErrorCode::BlobUploadInvalid, json!({})),
        _ => ApiError::new(ErrorCode::Unknown, "storage backend error"),
    }
}

/// I/O failures that say the backend is not answering (as opposed to
/// answering with an error).
fn is_unreachable(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        TimedOut
            | ConnectionRefused
            | ConnectionReset
            | ConnectionAborted
            | NotConnected
            | HostUnreachable
            | NetworkUnreachable
            | ResourceBusy
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_codes_to_distribution_statuses() {
        let e: ApiError = RegistryError::BlobUploadInvalid("x".into()).into();
        assert_eq!(
            (e.status(), e.code.code()),
            (StatusCode::NOT_FOUND, "BLOB_UPLOAD_INVALID")
        );
        let e: ApiError = RegistryError::RangeInvalid {
            offset: 10,
            resume: None,
        }
        .into();
        assert_eq!(e.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(e.headers[0].1, "0-9");
        let e: ApiError =
            RegistryError::Storage(StorageError::NotFound("/secret/path".into())).into();
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body_json().to_string().contains("secret"));
        let e: ApiError = RegistryError::Storage(StorageError::Io {
            op: "get",
            path: "/secret/path".into(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"),
        })
        .into();
        assert_eq!(
            (e.status(), e.code.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        );
        assert_eq!(
            ApiError::new(ErrorCode::Unsupported, "x").body_json(),
            json!({"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported.","detail":"x"}]})
        );
    }

    /// The wire triple of every code, as distribution's `errcode/register.go` (and OCI,
    /// for the statuses it asks for) has it.
    #[test]
    fn every_code_answers_its_status_and_message() {
        use ErrorCode::*;
        #[rustfmt::skip]
        let codes = [
            BlobUnknown, BlobUploadInvalid, BlobUploadUnknown, DigestInvalid,
            ManifestBlobUnknown, ManifestInvalid, ManifestTooLarge, ManifestUnknown, NameInvalid,
            NameUnknown, SizeInvalid, HeadersTooLarge, TagInvalid, TooManyTags, Unauthorized,
            Denied, Unsupported, RangeInvalid, PaginationNumberInvalid, Unavailable,
            TooManyRequests, RouteNotFound, Unknown,
        ];
        let wire: String = codes
            .iter()
            .map(|c| format!("{} {} {}\n", c.status().as_u16(), c.code(), c.message()))
            .collect();
        assert_eq!(
            wire,
            "404 BLOB_UNKNOWN blob unknown to registry
404 BLOB_UPLOAD_INVALID blob upload invalid
404 BLOB_UPLOAD_UNKNOWN blob upload unknown to registry
400 DIGEST_INVALID provided digest did not match uploaded content
400 MANIFEST_BLOB_UNKNOWN blob unknown to registry
400 MANIFEST_INVALID manifest invalid
413 MANIFEST_INVALID manifest invalid
404 MANIFEST_UNKNOWN manifest unknown
400 NAME_INVALID invalid repository name
404 NAME_UNKNOWN repository name not known to registry
400 SIZE_INVALID provided length did not match content length
431 SIZE_INVALID provided length did not match content length
400 TAG_INVALID manifest tag did not match URI
414 TAG_INVALID manifest tag did not match URI
401 UNAUTHORIZED authentication required
403 DENIED requested access to the resource is denied
405 UNSUPPORTED The operation is unsupported.
416 RANGE_INVALID invalid content range
400 PAGINATION_NUMBER_INVALID invalid number of results requested
503 UNAVAILABLE service unavailable
429 TOOMANYREQUESTS too many requests
404 NOT_FOUND page not found
500 UNKNOWN unknown error
"
        );
    }

    #[test]
    fn retryable_statuses_say_when() {
        for code in [ErrorCode::Unavailable, ErrorCode::TooManyRequests] {
            let resp = ApiError::new(code, "x").into_response();
            assert_eq!(resp.headers()[http::header::RETRY_AFTER], "5", "{code:?}");
        }
        let own = ApiError::new(ErrorCode::Unavailable, "x")
            .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("30"))
            .into_response();
        assert_eq!(
            own.headers()
                .get_all(http::header::RETRY_AFTER)
                .iter()
                .count(),
            1
        );
        assert_eq!(own.headers()[http::header::RETRY_AFTER], "30");
        let plain = ApiError::new(ErrorCode::BlobUnknown, "x").into_response();
        assert!(!plain.headers().contains_key(http::header::RETRY_AFTER));
    }
}
