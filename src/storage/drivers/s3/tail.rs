//! How a file being appended to is laid out over S3 objects, and how it is made whole again.
//!
//! Between requests, an appended file is an open multipart upload on its key holding whole
//! parts, plus one object at the key itself (the "tail") whose body is the bytes after those
//! parts and whose metadata names the upload, how many parts belong to the file, their total
//! size and a digest chained over their entity tags. Any node finds the file again with one
//! `HeadObject` ([`Layout::head`]), without reading the data back. Before a file is read or
//! moved, [`Layout::finish_in_place`] completes the upload onto the same key, server-side.
//!
//! Only this module and [`super::writer`] know this layout.

use std::collections::HashMap;
use std::time::SystemTime;

use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;

use super::client::{io_error, Inner, PartCopy};
use crate::storage::StorageError;

/// Metadata keys of an object that is the tail of an open multipart upload.
const META_UPLOAD: &str = "wharf-upload-id";
const META_PARTS: &str = "wharf-parts";
const META_PARTS_SIZE: &str = "wharf-parts-size";
/// A digest chained over the entity tags of parts 1..=parts, in order: what the writers that
/// uploaded them saw. Parts can be overwritten by number, so a writer racing another at the
/// same offset could swap one; the chain tells before the file is published.
const META_PARTS_DIGEST: &str = "wharf-parts-digest";

/// How a stored object stands: a plain file, or the tail of an open multipart upload.
#[derive(Debug, Clone, Default)]
pub(super) struct Layout {
    /// The open multipart upload holding the first `parts` parts.
    pub upload: Option<String>,
    /// Parts 1..=parts of `upload` hold the start of the file.
    pub parts: i32,
    /// Bytes in those parts.
    pub parts_size: u64,
    /// Bytes in the object body, after the parts.
    pub body: u64,
    /// Entity tag of the object.
    pub etag: Option<String>,
    /// [`chain_part`] over the parts' entity tags, when recorded (tails written before it
    /// was recorded have none).
    pub parts_digest: Option<String>,
}

/// Extends a parts digest with the next part's entity tag.
pub(super) fn chain_part(digest: &str, etag: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(digest.as_bytes());
    h.update(b"\n");
    h.update(etag.trim_matches('"').as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Layout {
    /// Where the object at `key` stands, from its metadata, and when it was last written.
    pub async fn head(
        s3: &Inner,
        key: &str,
        path: &str,
    ) -> Result<(Layout, Option<SystemTime>), StorageError> {
        let out = s3.head_object(key, path).await?;
        let layout = Layout::from_object(
            out.metadata(),
            out.content_length().unwrap_or(0).max(0) as u64,
            out.e_tag(),
        );
        let modified = out
            .last_modified()
            .and_then(|t| SystemTime::try_from(*t).ok());
        Ok((layout, modified))
    }

    fn from_object(
        metadata: Option<&HashMap<String, String>>,
        body: u64,
        etag: Option<&str>,
    ) -> Self {
        let meta = |k: &str| metadata.and_then(|m| m.get(k));
        let upload = meta(META_UPLOAD).filter(|u| !u.is_empty()).cloned();
        Layout {
            parts: meta(META_PARTS).and_then(|v| v.parse().ok()).unwrap_or(0),
            parts_size: meta(META_PARTS_SIZE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            upload: upload.clone(),
            body,
            etag: etag.map(str::to_string),
            parts_digest: meta(META_PARTS_DIGEST).cloned(),
        }
        .checked()
    }

    /// Metadata without an upload id is ignored: the object is a plain file.
    fn checked(mut self) -> Self {
        if self.upload.is_none() {
            self.parts = 0;
            self.parts_size = 0;
        }
        self
    }

    /// Logical size of the file.
    pub fn size(&self) -> u64 {
        self.parts_size + self.body
    }

    /// Metadata recording this layout on the tail object.
    pub fn metadata(&self) -> Option<HashMap<String, String>> {
        let upload = self.upload.as_ref()?;
        let mut meta = HashMap::from([
            (META_UPLOAD.to_string(), upload.clone()),
            (META_PARTS.to_string(), self.parts.to_string()),
            (META_PARTS_SIZE.to_string(), self.parts_size.to_string()),
        ]);
        if let Some(digest) = &self.parts_digest {
            meta.insert(META_PARTS_DIGEST.to_string(), digest.clone());
        }
        Some(meta)
    }

    /// Parts 1..=parts of the upload, checked against the size and digest recorded beside them.
    async fn listed_parts(
        &self,
        s3: &Inner,
        key: &str,
        path: &str,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let upload = self.upload.as_deref().unwrap_or_default();
        let mut parts = Vec::new();
        let mut size = 0u64;
        for listed in s3.list_parts(key, path, upload, self.parts).await? {
            size += listed.size;
            parts.push(listed.part);
        }
        parts.sort_by_key(|p| p.part_number());
        parts.dedup_by_key(|p| p.part_number());
        if let Some(recorded) = &self.parts_digest {
            let listed = parts.iter().fold(String::new(), |d, p| {
                chain_part(&d, p.e_tag().unwrap_or_default())
            });
            if &listed != recorded {
                return Err(StorageError::Changed(path.to_string()));
            }
        }
        if parts.len() != self.parts as usize || size != self.parts_size {
            return Err(io_error(
                "ListParts",
                path,
                format!(
                    "multipart upload holds {} parts ({size} bytes), {} parts ({} bytes) were recorded",
                    parts.len(),
                    self.parts,
                    self.parts_size
                ),
            ));
        }
        Ok(parts)
    }

    /// Turns the tail object of an open multipart upload into the whole file, server-side:
    /// the tail becomes the last part and the upload is completed onto the same key.
    pub async fn finish_in_place(
        &self,
        s3: &Inner,
        key: &str,
        path: &str,
    ) -> Result<Layout, StorageError> {
        let Some(upload) = self.upload.as_deref() else {
            return Ok(self.clone());
        };
        let mut parts = self.listed_parts(s3, key, path).await?;
        if self.body > 0 || parts.is_empty() {
            let number = self.parts + 1;
            let etag = if self.body > 0 {
                let copy = PartCopy {
                    source: key.to_string(),
                    source_etag: self.etag.clone(),
                    key: key.to_string(),
                    path: path.to_string(),
                    upload: upload.to_string(),
                };
                s3.copy_part(&copy, number, (0, self.body)).await?
            } else {
                s3.upload_part(key, path, upload, number, Bytes::new())
                    .await?
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
        }
        s3.complete(key, path, upload, parts).await?;
        Ok(Layout {
            body: self.size(),
            ..Layout::default()
        })
    }
}

/// Reads a file: the whole body, or a range. The tail of an open upload is first
/// completed in place, so that the whole file is read.
pub(super) async fn get(
    s3: &Inner,
    path: &str,
    range: Option<(u64, Option<u64>)>,
) -> Result<GetObjectOutput, StorageError> {
    let key = s3.key(path)?;
    for _ in 0..2 {
        let out = s3.get_object(&key, path, range, None).await?;
        let layout = Layout::from_object(out.metadata(), 0, out.e_tag());
        if layout.upload.is_none() {
            return Ok(out);
        }
        // The parts of an open upload cannot be read: make it a plain object first.
        let (layout, _) = Layout::head(s3, &key, path).await?;
        layout.finish_in_place(s3, &key, path).await?;
    }
    Err(io_error(
        "GetObject",
        path,
        "the file keeps changing while being read",
    ))
}

/// Moves the file at `source` to `target`, server-side: made whole in place, copied, and
/// the source deleted.
pub(super) async fn move_file(
    s3: &Inner,
    source: &str,
    target: &str,
    path: &str,
) -> Result<(), StorageError> {
    let (layout, _) = Layout::head(s3, source, path).await?;
    let whole = layout.finish_in_place(s3, source, path).await?;
    s3.copy_object(source, target, path, whole.size()).await?;
    s3.delete_object(source, path).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_reads_its_metadata() {
        let meta = HashMap::from([
            (META_UPLOAD.to_string(), "u1".to_string()),
            (META_PARTS.to_string(), "3".to_string()),
            (META_PARTS_SIZE.to_string(), "30".to_string()),
        ]);
        let l = Layout::from_object(Some(&meta), 4, Some("\"e\""));
        assert_eq!(
            (l.upload.as_deref(), l.parts, l.size()),
            (Some("u1"), 3, 34)
        );
        assert_eq!(l.metadata().unwrap(), meta);
        let plain = Layout::from_object(None, 9, None);
        assert_eq!(
            (plain.upload.as_deref(), plain.parts, plain.size()),
            (None, 0, 9)
        );
        assert!(Layout::default().metadata().is_none());
    }
}
