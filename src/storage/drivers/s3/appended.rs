//! How a file being appended to is laid out over S3 objects: distribution's layout, so that
//! registry:2 nodes and Wharf nodes continue each other's uploads over one bucket.
//!
//! Between requests, an appended file at key K is the parts of the open multipart upload on K
//! (the first one `ListMultipartUploads` gives for K, the one distribution continues), in part
//! order. Every part but the last holds at least 5 MiB. To append after a shorter last part,
//! distribution completes the upload onto K and opens a new one holding K's bytes, so while an
//! upload is open the object at K may be an outdated copy; with none open, the object at K (if
//! any) is the file. Parts of an open upload cannot be read: a reader first completes the
//! upload onto K and opens a new one from K, as distribution's writer does.
//!
//! A part can be replaced by number, so a writer racing another at one offset could replace a
//! part after its writer was acknowledged. Wharf's writers keep a record beside the file (a
//! small object, `_parts_<name>` in the same folder): the upload and a digest chained over the
//! entity tags of the parts they acknowledged, replaced only if it is still the record the
//! writer opened with. Parts that no longer match it make the file [`StorageError::Changed`].
//! Parts after the recorded ones were appended by registry:2, or uploaded by a writer that
//! failed after sending them (the client's own next bytes, which registry:2 counts as well).
//!
//! Only this module and [`super::writer`] know this layout.

use std::time::SystemTime;

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::client::{body_cut, copy_ranges, Inner, PartCopy, PutCondition, MIN_PART};
use super::spool::PartBody;
use crate::storage::StorageError;

/// One part of an open multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    /// Part number, from 1.
    pub number: i32,
    /// Entity tag S3 gave it.
    pub etag: String,
    /// Bytes in it.
    pub size: u64,
}

impl Part {
    /// The part as a completion names it.
    pub fn completed(&self) -> CompletedPart {
        CompletedPart::builder()
            .part_number(self.number)
            .e_tag(&self.etag)
            .build()
    }
}

/// What Wharf's writers acknowledged of an appended file, kept beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Record {
    /// The open upload holding the file.
    pub upload: String,
    /// Parts 1..=parts were acknowledged.
    pub parts: usize,
    /// [`parts_digest`] of those parts.
    pub digest: String,
    /// Entity tag of the object at the file's key when it holds exactly these parts (a reader
    /// completed them onto it), so that the next reader reads it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<String>,
}

/// What a writer's commit tells the next writer of the file (the note of
/// [`crate::storage::FileWriter::commit_noted`]): the record it wrote and that record's entity
/// tag. The next writer lists the parts of the recorded upload and checks them against it,
/// instead of finding the upload and reading the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Note {
    /// The record as written.
    #[serde(rename = "r")]
    pub record: Record,
    /// Its entity tag; `None`: no record was written yet (the upload was just opened).
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl Note {
    /// The note as text, for the caller to keep.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a note serializes")
    }

    /// A note read back; `None` if it is not one.
    pub fn decode(text: &str) -> Option<Note> {
        serde_json::from_str(text).ok()
    }

    /// Whether this is the note of an upload just opened, before any writer committed.
    pub fn is_fresh(&self) -> bool {
        self.etag.is_none() && self.record.parts == 0
    }
}

/// The key of the record of the file at `key`: in the same folder, under a name that no
/// distribution path starts with (distribution lists a file's key as a prefix to stat it).
pub(super) fn record_key(key: &str) -> String {
    match key.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/_parts_{name}"),
        None => format!("_parts_{key}"),
    }
}

/// A digest chained over the parts' entity tags, in order.
pub(super) fn parts_digest(parts: &[Part]) -> String {
    use sha2::Digest as _;
    parts.iter().fold(String::new(), |digest, part| {
        let mut h = sha2::Sha256::new();
        h.update(digest.as_bytes());
        h.update(b"\n");
        h.update(part.etag.trim_matches('"').as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Whether an entity tag is a completed multipart upload's (`"<md5>-<parts>"`): only those
/// objects can be a stale copy of a file still open for appends.
fn from_completion(etag: Option<&str>) -> bool {
    etag.is_some_and(|e| e.trim_matches('"').contains('-'))
}

/// Reads of a file racing writers that complete its upload, before giving up as busy.
const RELOADS: usize = 4;

/// A completion or abort that finds its upload gone lost to another writer.
fn gone_is_busy(e: StorageError, path: &str) -> StorageError {
    if e.is_not_found() {
        StorageError::Busy(path.to_string())
    } else {
        e
    }
}

/// Every part of an upload, in order.
async fn list_parts(
    s3: &Inner,
    key: &str,
    path: &str,
    upload: &str,
) -> Result<Vec<Part>, StorageError> {
    let mut parts: Vec<Part> = s3
        .list_parts(key, path, upload, i32::MAX)
        .await?
        .into_iter()
        .map(|p| Part {
            number: p.part.part_number().unwrap_or(0),
            etag: p.part.e_tag().unwrap_or_default().to_string(),
            size: p.size,
        })
        .collect();
    parts.sort_by_key(|p| p.number);
    parts.dedup_by_key(|p| p.number);
    // Distribution numbers parts 1..n; any gap means the upload is not one of its files.
    if parts
        .iter()
        .enumerate()
        .any(|(i, p)| p.number != i as i32 + 1)
    {
        return Err(StorageError::Changed(path.to_string()));
    }
    Ok(parts)
}

/// Reads a whole (small) object, of the version `etag`.
pub(super) async fn read_small(
    s3: &Inner,
    key: &str,
    path: &str,
    etag: &str,
) -> Result<BytesMut, StorageError> {
    let out = s3.get_object(key, path, None, Some(etag)).await?;
    let mut body = out.body;
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| body_cut(path, &e))?;
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// An appended file as storage holds it.
#[derive(Debug, Clone, Default)]
pub(super) struct Appended {
    /// The open upload holding the file, if any.
    pub upload: Option<String>,
    /// Its parts.
    pub parts: Vec<Part>,
    /// Size and entity tag of the object at the key, if any.
    pub object: Option<(u64, String)>,
    /// The record and its entity tag, if any.
    pub record: Option<(Record, String)>,
}

impl Appended {
    /// Where the file at `key` stands: its open upload and parts, the object at the key and
    /// the record beside it. The object is looked at only when no upload is open, unless
    /// `object` asks for it (a reader checking whether it is the whole file): while an upload
    /// is open the object is at most an outdated copy, which writers never read.
    ///
    /// An upload listed and then completed or aborted by a racing writer before its parts were
    /// read is read again; a file that keeps changing under the reads is
    /// [`StorageError::Busy`]: another request is writing it right now.
    pub async fn load(
        s3: &Inner,
        key: &str,
        path: &str,
        object: bool,
    ) -> Result<Appended, StorageError> {
        for _ in 0..RELOADS {
            if let Some(file) = Self::load_once(s3, key, path, object).await? {
                return Ok(file);
            }
        }
        Err(StorageError::Busy(path.to_string()))
    }

    /// One read of the file; `None` if its upload went away between the listing and `ListParts`.
    async fn load_once(
        s3: &Inner,
        key: &str,
        path: &str,
        with_object: bool,
    ) -> Result<Option<Appended>, StorageError> {
        let record_key = record_key(key);
        let head = || async {
            if with_object {
                Some(s3.head_object(key, path).await)
            } else {
                None
            }
        };
        let (upload, object, record) = tokio::join!(
            s3.first_upload(key, path),
            head(),
            s3.get_object(&record_key, path, None, None),
        );
        let upload = upload?;
        let parts = match &upload {
            Some(upload) => match list_parts(s3, key, path, upload).await {
                Ok(parts) => parts,
                Err(e) if e.is_not_found() => return Ok(None),
                Err(e) => return Err(e),
            },
            None => Vec::new(),
        };
        // An upload without parts may be one a reopening is filling from the object: see
        // [`Self::reopening`], which needs the object.
        let object = match object {
            Some(object) => Some(object),
            None if parts.is_empty() => Some(s3.head_object(key, path).await),
            None => None,
        };
        let object = match object.transpose() {
            Ok(out) => out.map(|out| {
                (
                    out.content_length().unwrap_or(0).max(0) as u64,
                    out.e_tag().unwrap_or_default().to_string(),
                )
            }),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let record = match record {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_string();
                let body = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| body_cut(path, &e))?
                    .into_bytes();
                // An unreadable record protects nothing; the next commit replaces it.
                let record = serde_json::from_slice::<Record>(&body).unwrap_or_default();
                Some((record, etag))
            }
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        Ok(Some(Appended {
            upload,
            parts,
            object,
            record,
        }))
    }

    /// The file as `note` describes it, if its upload is still open: the upload a writer
    /// acknowledged stays the first open on the key until it is completed (a later one sorts
    /// after it), and its parts are checked against the noted record as a loaded record's
    /// would be. `None`: the upload was completed or aborted since; load the file instead.
    pub async fn from_note(
        s3: &Inner,
        key: &str,
        path: &str,
        note: Note,
    ) -> Result<Option<Appended>, StorageError> {
        let upload = note.record.upload.clone();
        let parts = match list_parts(s3, key, path, &upload).await {
            Ok(parts) => parts,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(Appended {
            upload: Some(upload),
            parts,
            object: None,
            record: note.etag.map(|etag| (note.record, etag)),
        }))
    }

    /// Logical size of the file.
    pub fn size(&self) -> u64 {
        match self.upload {
            Some(_) => self.parts.iter().map(|p| p.size).sum(),
            None => self.object.as_ref().map_or(0, |(size, _)| *size),
        }
    }

    /// Whether the open upload has no parts yet over an object with bytes: a reopening
    /// (completion, then a new upload filled with the object's bytes by copies) is under way
    /// or stopped half-way, and the object is the file. Completing that upload would replace
    /// the file with nothing, so reads and moves take the object. Writers and `stat` still see
    /// the upload's size (none): a writer continuing the file is refused by its offset until
    /// the reopening is done, and one the reopening's death left behind starts over at 0.
    pub fn reopening(&self) -> bool {
        self.upload.is_some()
            && self.parts.is_empty()
            && self.object.as_ref().is_some_and(|(size, _)| *size > 0)
    }

    /// Whether there is a file at all.
    pub fn exists(&self) -> bool {
        self.upload.is_some() || self.object.is_some()
    }

    /// Checks the parts against the record: [`StorageError::Changed`] when an acknowledged
    /// part was replaced.
    pub fn check(&self, path: &str) -> Result<(), StorageError> {
        let (Some(upload), Some((record, _))) = (&self.upload, &self.record) else {
            return Ok(());
        };
        // Another upload (distribution started one from the completed object since): nothing
        // in it was acknowledged by a Wharf writer.
        if &record.upload != upload {
            return Ok(());
        }
        let n = record.parts;
        if self.parts.len() < n || parts_digest(&self.parts[..n]) != record.digest {
            return Err(StorageError::Changed(path.to_string()));
        }
        Ok(())
    }

    /// Whether the object at the key holds exactly the file.
    fn is_whole(&self) -> bool {
        match (&self.upload, &self.object, &self.record) {
            (None, _, _) => true,
            (Some(upload), Some((_, etag)), Some((record, _))) => {
                &record.upload == upload
                    && record.parts == self.parts.len()
                    && record.whole.as_deref() == Some(etag.as_str())
            }
            _ => false,
        }
    }

    /// Replaces the record, if it is still the one this file was loaded with
    /// ([`StorageError::Busy`] if not); returns the new record's entity tag, when the store
    /// gives it.
    pub async fn write_record(
        &self,
        s3: &Inner,
        key: &str,
        path: &str,
        record: &Record,
    ) -> Result<Option<String>, StorageError> {
        let body = serde_json::to_vec(record).expect("a record serializes");
        let condition = match &self.record {
            Some((_, etag)) => PutCondition::Matches(etag),
            None => PutCondition::Absent,
        };
        let body = PartBody::Memory(Bytes::from(body));
        s3.put_tagged(&record_key(key), path, &body, None, condition)
            .await
    }

    /// Completes the open upload onto the key with `parts` (S3 checks each part is still the
    /// one named); returns the object's size and entity tag. Without an upload, the object is
    /// the file as it is.
    pub async fn complete_in_place(
        &self,
        s3: &Inner,
        key: &str,
        path: &str,
        parts: &[Part],
    ) -> Result<(u64, String), StorageError> {
        let Some(upload) = &self.upload else {
            return self
                .object
                .clone()
                .ok_or_else(|| StorageError::NotFound(path.to_string()));
        };
        let mut completed: Vec<CompletedPart> = parts.iter().map(Part::completed).collect();
        if completed.is_empty() {
            // A completion needs a part; an empty one makes an empty file.
            let etag = s3
                .upload_part(key, path, upload, 1, &PartBody::Memory(Bytes::new()))
                .await
                .map_err(|e| gone_is_busy(e, path))?;
            completed.push(CompletedPart::builder().part_number(1).e_tag(etag).build());
        }
        let etag = s3
            .complete(key, path, upload, completed)
            .await
            .map_err(|e| gone_is_busy(e, path))?;
        let etag = match etag {
            Some(etag) => etag,
            None => s3
                .head_object(key, path)
                .await?
                .e_tag()
                .unwrap_or_default()
                .to_string(),
        };
        Ok((parts.iter().map(|p| p.size).sum(), etag))
    }

    /// Opens a new upload on the key holding the `size` bytes of the object there (version
    /// `etag`), copied server-side as distribution does after completing: parts of at least
    /// 5 MiB, or a single smaller one.
    pub async fn reopen(
        s3: &Inner,
        key: &str,
        path: &str,
        size: u64,
        etag: &str,
    ) -> Result<(String, Vec<Part>), StorageError> {
        let upload = s3.create_upload(key, path).await?;
        let ranges = if size == 0 {
            Vec::new()
        } else if size < MIN_PART {
            vec![(0, size)]
        } else {
            copy_ranges(size, s3.copy_chunk.max(MIN_PART))
        };
        let copy = PartCopy {
            source: key.to_string(),
            source_etag: Some(etag.to_string()),
            key: key.to_string(),
            path: path.to_string(),
            upload: upload.clone(),
        };
        match s3.copy_parts(&copy, 1, &ranges).await {
            Ok(copied) => {
                let parts = copied
                    .iter()
                    .zip(&ranges)
                    .map(|(p, (start, end))| Part {
                        number: p.part_number().unwrap_or(0),
                        etag: p.e_tag().unwrap_or_default().to_string(),
                        size: end - start,
                    })
                    .collect();
                Ok((upload, parts))
            }
            Err(e) => {
                if let Err(abort) = s3.abort(key, &upload).await {
                    tracing::warn!(error = %abort, key, "could not abort a multipart upload; upload purging will");
                }
                Err(e)
            }
        }
    }

    /// Makes the object at the key hold exactly the file, which stays open for appends.
    async fn make_whole(&self, s3: &Inner, key: &str, path: &str) -> Result<(), StorageError> {
        if self.is_whole() || self.reopening() {
            return Ok(());
        }
        self.check(path)?;
        let (size, etag) = self.complete_in_place(s3, key, path, &self.parts).await?;
        let (upload, parts) = Self::reopen(s3, key, path, size, &etag).await?;
        let record = Record {
            upload,
            parts: parts.len(),
            digest: parts_digest(&parts),
            whole: Some(etag),
        };
        // Losing to a writer's commit only costs the next reader another completion.
        match self.write_record(s3, key, path, &record).await {
            Ok(_) | Err(StorageError::Busy(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Size and modification time of the file at `key`, `None` if there is none: one `HeadObject`
/// for objects that cannot be a stale copy of an open upload.
pub(super) async fn stat(
    s3: &Inner,
    key: &str,
    path: &str,
) -> Result<Option<(u64, Option<SystemTime>)>, StorageError> {
    let head = match s3.head_object(key, path).await {
        Ok(out) => {
            let size = out.content_length().unwrap_or(0).max(0) as u64;
            let modified = out
                .last_modified()
                .and_then(|t| SystemTime::try_from(*t).ok());
            if !from_completion(out.e_tag()) {
                return Ok(Some((size, modified)));
            }
            Some((size, modified))
        }
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    for _ in 0..RELOADS {
        let Some(upload) = s3.first_upload(key, path).await? else {
            return Ok(head);
        };
        match list_parts(s3, key, path, &upload).await {
            Ok(parts) => {
                let modified = head.and_then(|(_, m)| m);
                return Ok(Some((parts.iter().map(|p| p.size).sum(), modified)));
            }
            // Completed by a racing writer between the listing and `ListParts`.
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StorageError::Busy(path.to_string()))
}

/// Reads a file: the whole object at its key, or a range of it. With `open`, a file held by an
/// open upload is first made whole at the key (and stays open for appends); without, the file
/// is sealed: the object is the file, whatever uploads are open on its key.
pub(super) async fn get(
    s3: &Inner,
    path: &str,
    range: Option<(u64, Option<u64>)>,
    open: bool,
) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
    let key = s3.key(path)?;
    let first = s3.get_object(&key, path, range, None).await;
    match &first {
        _ if !open => return first,
        Ok(out) if !from_completion(out.e_tag()) => return first,
        Err(e) if !e.is_not_found() => return first,
        _ => {}
    }
    let file = Appended::load(s3, &key, path, true).await?;
    if file.upload.is_none() {
        return first;
    }
    if file.is_whole() {
        if let Ok(out) = &first {
            if file.object.as_ref().map(|(_, e)| e.as_str()) == out.e_tag() {
                return first;
            }
        }
    }
    drop(first);
    file.make_whole(s3, &key, path).await?;
    s3.get_object(&key, path, range, None).await
}

/// Moves the file at `source` to `target`, server-side: made whole in place, copied, and the
/// source and its record deleted.
pub(super) async fn move_file(
    s3: &Inner,
    source: &str,
    target: &str,
    path: &str,
) -> Result<(), StorageError> {
    let file = Appended::load(s3, source, path, false).await?;
    if !file.exists() {
        return Err(StorageError::NotFound(path.to_string()));
    }
    file.check(path)?;
    let (size, _) = match (&file.object, file.reopening()) {
        (Some(object), true) => object.clone(),
        _ => {
            file.complete_in_place(s3, source, path, &file.parts)
                .await?
        }
    };
    s3.copy_object(source, target, path, size).await?;
    remove(s3, source, path).await
}

/// Deletes a file's object and record once it was copied elsewhere.
pub(super) async fn remove(s3: &Inner, key: &str, path: &str) -> Result<(), StorageError> {
    s3.delete_objects(&[key.to_string(), record_key(key)], path)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: i32, etag: &str, size: u64) -> Part {
        Part {
            number,
            etag: etag.to_string(),
            size,
        }
    }

    #[test]
    fn records_sit_beside_the_file_under_no_distribution_prefix() {
        assert_eq!(record_key("r/_uploads/u/data"), "r/_uploads/u/_parts_data");
        assert_eq!(record_key("data"), "_parts_data");
        assert!(!record_key("a/data").starts_with("a/data"));
    }

    #[test]
    fn replaced_parts_are_changed_files() {
        let parts = vec![part(1, "\"a\"", 5 << 20), part(2, "\"b\"", 3)];
        let record = Record {
            upload: "u".into(),
            parts: 2,
            digest: parts_digest(&parts),
            whole: None,
        };
        let file = Appended {
            upload: Some("u".into()),
            parts: parts.clone(),
            object: None,
            record: Some((record.clone(), "\"r\"".into())),
        };
        assert!(file.check("/p").is_ok());
        assert_eq!(file.size(), (5 << 20) + 3);
        // A part appended after the record (registry:2's) is fine; a replaced one is not.
        let mut appended = file.clone();
        appended.parts.push(part(3, "\"c\"", 1));
        assert!(appended.check("/p").is_ok());
        let mut replaced = file.clone();
        replaced.parts[1].etag = "\"x\"".into();
        assert!(matches!(
            replaced.check("/p"),
            Err(StorageError::Changed(_))
        ));
        // A record of another upload says nothing about this one.
        let mut other = replaced.clone();
        other.upload = Some("v".into());
        assert!(other.check("/p").is_ok());
    }

    #[test]
    fn completion_tags_are_recognised() {
        assert!(from_completion(Some(
            "\"9b2cf535f27731c974343645a3985328-3\""
        )));
        assert!(!from_completion(Some(
            "\"9b2cf535f27731c974343645a3985328\""
        )));
        assert!(!from_completion(None));
    }
}
