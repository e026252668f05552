//! What registry operations can refuse; mapped to HTTP only in `api::error`.

use crate::digest::{Digest, DigestError};
use crate::registry::UploadProgress;
use crate::storage::StorageError;

/// A failed registry operation.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Repository name outside the grammar.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// Repository does not exist.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// Tag outside the grammar.
    #[error("invalid tag: {0}")]
    TagInvalid(String),
    /// Blob not in this repository.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    /// Upload session does not exist.
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// Upload state token refused.
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// Malformed or mismatching digest.
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    /// Digest algorithm not supported.
    #[error("unsupported digest: {0}")]
    DigestUnsupported(String),
    /// Declared and received sizes disagree.
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    /// A chunk that does not start where the stored upload ends, or a token that does not
    /// describe what is stored.
    #[error("invalid content range; upload is at offset {offset}")]
    RangeInvalid {
        /// Bytes the session holds.
        offset: u64,
        /// Where to continue: the session's id and a token for the stored bytes.
        resume: Option<Box<UploadProgress>>,
    },
    /// Manifest not found by tag or digest.
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    /// Manifest refused by validation.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// Manifest references a blob missing from the repository.
    #[error("blob unknown to registry: {0}")]
    ManifestBlobUnknown(Digest),
    /// `n` outside the allowed page size.
    #[error("invalid number of results requested: {0}")]
    PaginationNumberInvalid(String),
    /// Operation disabled by configuration.
    #[error("the operation is unsupported: {0}")]
    Unsupported(String),
    /// A dependency needed for this operation is unreachable; retry later.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The request body could not be read to the end.
    #[error("request body: {0}")]
    Body(std::io::Error),
    /// Backend failure.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<DigestError> for RegistryError {
    fn from(e: DigestError) -> Self {
        match e {
            DigestError::UnsupportedAlgorithm(_) => Self::DigestUnsupported(e.to_string()),
            _ => Self::DigestInvalid(e.to_string()),
        }
    }
}

/// Shorthand for registry results.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
