//! The one place where failures become OCI error JSON and HTTP statuses.

use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::{json, Value};

use crate::api::body::{full, Body};
use crate::registry::error::RegistryError;
use crate::storage::StorageError;

/// `Retry-After` of a 429 or 503 that does not set its own: long enough for
/// a health check or a storage connection to recover, short enough that
/// clients do not give up.
pub const RETRY_AFTER_SECONDS: u64 = 5;

/// An error response: status, OCI code, message, detail and extra headers.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OCI / distribution error code.
    pub code: &'static str,
    /// Fixed message for the code, as distribution words it.
    pub message: &'static str,
    /// Free-form detail.
    pub detail: Value,
    /// Headers such as `WWW-Authenticate` or `Range`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with the standard message for `code`.
    pub fn new(code: &'static str, detail: impl Into<Value>) -> Self {
        let (status, message) = describe(code);
        Self {
            status,
            code,
            message,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// No resource at this path.
    pub fn route_not_found() -> Self {
        let mut e = Self::new("NOT_FOUND", "no such API endpoint");
        e.status = StatusCode::NOT_FOUND;
        e.message = "page not found";
        e
    }

    /// More `?tag=` values on one manifest push than Wharf takes (OCI: 414).
    pub fn too_many_tags(limit: usize) -> Self {
        let mut e = Self::new(
            "TAG_INVALID",
            format!("at most {limit} tags per manifest push"),
        );
        e.status = StatusCode::URI_TOO_LONG;
        e
    }

    /// Method not allowed on an existing resource.
    pub fn method_not_allowed(allow: &'static str) -> Self {
        Self::new("UNSUPPORTED", "method not allowed on this resource")
            .with_header(http::header::ALLOW, HeaderValue::from_static(allow))
    }

    /// The JSON body distribution sends.
    pub fn body_json(&self) -> Value {
        json!({"errors": [{"code": self.code, "message": self.message, "detail": self.detail}]})
    }

    /// Renders the response.
    pub fn into_response(self) -> http::Response<Body> {
        let mut resp = http::Response::new(full(
            serde_json::to_vec(&self.body_json()).unwrap_or_default(),
        ));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        for (name, value) in self.headers {
            h.append(name, value);
        }
        let retryable = matches!(
            self.status,
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

/// Status and message per code (distribution's `errcode/register.go`).
fn describe(code: &str) -> (StatusCode, &'static str) {
    match code {
        "BLOB_UNKNOWN" => (StatusCode::NOT_FOUND, "blob unknown to registry"),
        "BLOB_UPLOAD_INVALID" => (StatusCode::NOT_FOUND, "blob upload invalid"),
        "BLOB_UPLOAD_UNKNOWN" => (StatusCode::NOT_FOUND, "blob upload unknown to registry"),
        "DIGEST_INVALID" => (
            StatusCode::BAD_REQUEST,
            "provided digest did not match uploaded content",
        ),
        "MANIFEST_BLOB_UNKNOWN" => (StatusCode::BAD_REQUEST, "blob unknown to registry"),
        "MANIFEST_INVALID" => (StatusCode::BAD_REQUEST, "manifest invalid"),
        "MANIFEST_UNKNOWN" => (StatusCode::NOT_FOUND, "manifest unknown"),
        "NAME_INVALID" => (StatusCode::BAD_REQUEST, "invalid repository name"),
        "NAME_UNKNOWN" => (
            StatusCode::NOT_FOUND,
            "repository name not known to registry",
        ),
        "SIZE_INVALID" => (
            StatusCode::BAD_REQUEST,
            "provided length did not match content length",
        ),
        "TAG_INVALID" => (StatusCode::BAD_REQUEST, "manifest tag did not match URI"),
        "UNAUTHORIZED" => (StatusCode::UNAUTHORIZED, "authentication required"),
        "DENIED" => (
            StatusCode::FORBIDDEN,
            "requested access to the resource is denied",
        ),
        "UNSUPPORTED" => (
            StatusCode::METHOD_NOT_ALLOWED,
            "The operation is unsupported.",
        ),
        "RANGE_INVALID" => (StatusCode::RANGE_NOT_SATISFIABLE, "invalid content range"),
        "PAGINATION_NUMBER_INVALID" => (
            StatusCode::BAD_REQUEST,
            "invalid number of results requested",
        ),
        "UNAVAILABLE" => (StatusCode::SERVICE_UNAVAILABLE, "service unavailable"),
        "TOOMANYREQUESTS" => (StatusCode::TOO_MANY_REQUESTS, "too many requests"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "unknown error"),
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let text = e.to_string();
        match e {
            RegistryError::NameInvalid(_) => Self::new("NAME_INVALID", text),
            RegistryError::NameUnknown(name) => Self::new("NAME_UNKNOWN", json!({ "name": name })),
            RegistryError::TagInvalid(_) => Self::new("TAG_INVALID", text),
            RegistryError::BlobUnknown(d) => Self::new("BLOB_UNKNOWN", d.to_string()),
            RegistryError::BlobUploadUnknown => Self::new("BLOB_UPLOAD_UNKNOWN", json!({})),
            // Distribution answers a bad token with an empty detail; so do we.
            RegistryError::BlobUploadInvalid(_) => {
                crate::ops::metrics::upload_token_rejected();
                Self::new("BLOB_UPLOAD_INVALID", json!({}))
            }
            RegistryError::DigestInvalid(_) | RegistryError::DigestUnsupported(_) => {
                Self::new("DIGEST_INVALID", text)
            }
            RegistryError::SizeInvalid(_) => Self::new("SIZE_INVALID", text),
            RegistryError::RangeInvalid { offset, .. } => {
                let range = format!("0-{}", offset.saturating_sub(1));
                Self::new("RANGE_INVALID", text).with_header(
                    http::header::RANGE,
                    HeaderValue::from_str(&range).expect("digits"),
                )
            }
            RegistryError::ManifestUnknown(_) => Self::new("MANIFEST_UNKNOWN", text),
            RegistryError::ManifestInvalid(_) => Self::new("MANIFEST_INVALID", text),
            RegistryError::ManifestBlobUnknown(d) => {
                Self::new("MANIFEST_BLOB_UNKNOWN", d.to_string())
            }
            RegistryError::PaginationNumberInvalid(_) => {
                Self::new("PAGINATION_NUMBER_INVALID", text)
            }
            RegistryError::Unsupported(_) => Self::new("UNSUPPORTED", text),
            RegistryError::Unavailable(_) => Self::new("UNAVAILABLE", text),
            RegistryError::Body(_) => Self::new("SIZE_INVALID", text),
            RegistryError::Storage(e) => storage_error(e),
        }
    }
}

/// Backend failures are logged in full and answered without internal paths;
/// a backend that cannot be reached is 503 (retry later), not 500.
fn storage_error(e: StorageError) -> ApiError {
    tracing::error!(error = %e, "storage failure");
    match &e {
        StorageError::InvalidPath(_) => ApiError::new("NAME_INVALID", "invalid path"),
        StorageError::Unavailable { .. } => {
            ApiError::new("UNAVAILABLE", "storage backend unavailable")
        }
        StorageError::Io { source, .. } if is_unreachable(source.kind()) => {
            ApiError::new("UNAVAILABLE", "storage backend unavailable")
        }
        // An upload whose stored parts were replaced by a concurrent writer: the client
        // starts the blob again.
        StorageError::Changed(_) => ApiError::new("BLOB_UPLOAD_UNKNOWN", json!({})),
        // A request that lost a race with another on the same upload, past the point where
        // it could be told where the upload stands.
        StorageError::Busy(_) => ApiError::new("BLOB_UPLOAD_INVALID", json!({})),
        _ => ApiError::new("UNKNOWN", "storage backend error"),
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
            (e.status, e.code),
            (StatusCode::NOT_FOUND, "BLOB_UPLOAD_INVALID")
        );
        let e: ApiError = RegistryError::RangeInvalid {
            offset: 10,
            resume: None,
        }
        .into();
        assert_eq!(e.status, StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(e.headers[0].1, "0-9");
        let e: ApiError =
            RegistryError::Storage(StorageError::NotFound("/secret/path".into())).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.body_json().to_string().contains("secret"));
        let e: ApiError = RegistryError::Storage(StorageError::Io {
            op: "get",
            path: "/secret/path".into(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "slow"),
        })
        .into();
        assert_eq!(
            (e.status, e.code),
            (StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE")
        );
        assert_eq!(
            ApiError::new("UNSUPPORTED", "x").body_json(),
            json!({"errors":[{"code":"UNSUPPORTED","message":"The operation is unsupported.","detail":"x"}]})
        );
    }

    #[test]
    fn retryable_statuses_say_when() {
        for code in ["UNAVAILABLE", "TOOMANYREQUESTS"] {
            let resp = ApiError::new(code, "x").into_response();
            assert_eq!(resp.headers()[http::header::RETRY_AFTER], "5", "{code}");
        }
        let own = ApiError::new("UNAVAILABLE", "x")
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
        let plain = ApiError::new("BLOB_UNKNOWN", "x").into_response();
        assert!(!plain.headers().contains_key(http::header::RETRY_AFTER));
    }
}
