//! Upload sessions: data under `_uploads/<uuid>/`, state in a signed token.
//!
//! A node never keeps session state in memory: the token carries the offset and the hash
//! mid-state, so any node sharing the secret and the storage continues any upload, paying only
//! for the bytes it receives. The token is a claim, though, and storage is the truth: every
//! request checks the token's offset against the bytes stored (the driver's writer opens only
//! at the stored size, one writer at a time, and never rewrites stored bytes). A stale token
//! gets 416 with the real range and a token for it, and a blob becomes readable only once the
//! digest was checked against exactly the bytes stored. So every readable blob hashes to its
//! digest, whatever order requests arrive in.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::digest::{Algorithm, Digest};
use crate::registry::blobs::{BlobInfo, SpareCopy};
use crate::registry::error::{RegistryError, Result};
use crate::registry::hash_state::HashState;
use crate::registry::layout;
use crate::registry::reference::RepositoryName;
use crate::registry::upload_token::UploadState;
use crate::registry::{BodyStream, Registry};
use crate::storage::{FileWriter, StorageError};

/// Where an upload session stands after a request.
#[derive(Debug, Clone)]
pub struct UploadProgress {
    /// Session id.
    pub uuid: String,
    /// Bytes received so far.
    pub offset: u64,
    /// Signed state for the next request (`_state`).
    pub token: String,
}

/// One chunk of upload data as the client sent it.
pub struct UploadRequest {
    /// Inclusive `Content-Range` the client declared, if any.
    pub range: Option<(u64, u64)>,
    /// Declared body length, if any.
    pub content_length: Option<u64>,
    /// The bytes.
    pub body: BodyStream,
}

impl UploadRequest {
    /// A request without a body.
    pub fn empty() -> Self {
        Self {
            range: None,
            content_length: Some(0),
            body: Box::pin(futures_util::stream::empty()),
        }
    }
}

/// Upload ids are used as a directory name: distribution's `[a-zA-Z0-9-_.=]+`,
/// never `.` or `..`.
fn check_uuid(uuid: &str) -> Result<()> {
    let ok = !uuid.is_empty()
        && uuid.len() <= 128
        && uuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.=".contains(&b))
        && uuid != "."
        && uuid != "..";
    if ok {
        Ok(())
    } else {
        Err(RegistryError::BlobUploadUnknown)
    }
}

impl Registry {
    /// Opens a new upload session in `repo`, hashing with `algorithm`.
    pub async fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: Algorithm,
    ) -> Result<UploadProgress> {
        self.check_writable()?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let now = chrono::Utc::now();
        let started = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // Not durable yet: a session holds no data until its first chunk, which
        // makes it durable (see `append`); one lost in a crash before that is
        // only restarted by the client. A monolithic PUT never needs it durable.
        self.driver
            .put_content_lazy(
                &layout::upload_started_at(repo.as_str(), &uuid),
                Bytes::from(started),
            )
            .await?;
        let note = self
            .driver
            .prepare_append_noted(&layout::upload_data(repo.as_str(), &uuid))
            .await?;
        let mut state = UploadState {
            name: repo.to_string(),
            uuid: uuid.clone(),
            offset: 0,
            started_at: now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            algorithm: (algorithm != Algorithm::Sha256).then(|| algorithm.name().to_string()),
            sha256_state: None,
            sha512_state: None,
            note: None,
            hashstates: Some(Vec::new()),
        };
        state.set_hasher(&HashState::new(algorithm));
        state.note = note;
        Ok(self.progress(&state))
    }

    fn progress(&self, state: &UploadState) -> UploadProgress {
        UploadProgress {
            uuid: state.uuid.clone(),
            offset: state.offset,
            token: state.sign(&self.secret),
        }
    }

    /// Checks a session token against the URL it came with and the storage.
    async fn resume(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
    ) -> Result<UploadState> {
        let state = self.resume_token(repo, uuid, token)?;
        self.check_session_exists(repo.as_str(), uuid).await?;
        Ok(state)
    }

    /// Checks a session token against the URL it came with. For a token past offset 0 the
    /// writer opening the session's data at that offset is what shows the session exists;
    /// `out_of_order` looks for it when the data is not there.
    fn resume_token(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
    ) -> Result<UploadState> {
        check_uuid(uuid)?;
        let token =
            token.ok_or_else(|| RegistryError::BlobUploadInvalid("missing upload state".into()))?;
        let state = UploadState::verify(token, &self.secret)
            .map_err(|e| RegistryError::BlobUploadInvalid(e.to_string()))?;
        if state.name != repo.as_str() || state.uuid != uuid {
            return Err(RegistryError::BlobUploadInvalid(
                "upload state does not match the upload URL".into(),
            ));
        }
        state
            .algorithm()
            .map_err(|e| RegistryError::BlobUploadInvalid(e.to_string()))?;
        Ok(state)
    }

    async fn check_session_exists(&self, repo: &str, uuid: &str) -> Result<()> {
        match self
            .driver
            .size_of(&layout::upload_started_at(repo, uuid))
            .await?
        {
            Some(_) => Ok(()),
            None => Err(RegistryError::BlobUploadUnknown),
        }
    }

    /// Bytes the session's data holds in storage.
    async fn stored_size(&self, state: &UploadState) -> Result<u64> {
        match self
            .driver
            .stat(&layout::upload_data(&state.name, &state.uuid))
            .await
        {
            Ok(info) => Ok(info.size),
            Err(e) if e.is_not_found() => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// `state` moved to `size` stored bytes, with the hash state of those bytes when the
    /// token or distribution's `hashstates` file has it (else the next request rehashes).
    async fn state_at(&self, mut state: UploadState, size: u64) -> UploadState {
        if state.offset == size {
            return state;
        }
        state.at_offset(size);
        state.forget_files();
        if let Ok(algorithm) = state.algorithm() {
            if let Some(h) = self.stored_hashstate(&state, algorithm).await {
                state.set_hasher(&h);
            }
        }
        state
    }

    /// The answer to a request whose idea of the session is not what storage holds: 416
    /// with the stored range and a token describing it.
    async fn out_of_order(&self, mut state: UploadState) -> RegistryError {
        state.forget_files();
        // A cancelled session is unknown, whatever its token says.
        if let Err(e) = self.check_session_exists(&state.name, &state.uuid).await {
            return e;
        }
        let size = match self.stored_size(&state).await {
            Ok(size) => size,
            Err(e) => return e,
        };
        let state = self.state_at(state, size).await;
        RegistryError::RangeInvalid {
            offset: size,
            resume: Some(Box::new(self.progress(&state))),
        }
    }

    /// Where a session stands: the bytes stored. A missing or foreign token still gets an
    /// answer, since the status request is how a client finds its place again.
    pub async fn upload_status(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
    ) -> Result<UploadProgress> {
        check_uuid(uuid)?;
        let state = match self.resume(repo, uuid, token).await {
            Ok(state) => state,
            Err(RegistryError::BlobUploadInvalid(_)) => {
                self.check_session_exists(repo.as_str(), uuid).await?;
                let started = self
                    .driver
                    .get_content(&layout::upload_started_at(repo.as_str(), uuid))
                    .await?;
                UploadState {
                    name: repo.to_string(),
                    uuid: uuid.to_string(),
                    offset: 0,
                    started_at: String::from_utf8_lossy(&started).trim().to_string(),
                    algorithm: None,
                    sha256_state: None,
                    sha512_state: None,
                    note: None,
                    hashstates: None,
                }
            }
            Err(e) => return Err(e),
        };
        let size = self.stored_size(&state).await?;
        Ok(self.progress(&self.state_at(state, size).await))
    }

    /// Appends a chunk (PATCH).
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
        mut chunk: UploadRequest,
    ) -> Result<UploadProgress> {
        self.check_writable()?;
        let mut state = self.resume_token(repo, uuid, token)?;
        // With the driver's note of the empty file POST prepared, opening the writer is what
        // shows the session still exists (see `open_session`).
        if state.offset == 0 && state.note.is_none() {
            self.check_session_exists(repo.as_str(), uuid).await?;
        }
        let expected = chunk.expected_len()?;
        let algorithm = state.algorithm().unwrap_or(Algorithm::Sha256);
        let (mut writer, mut hasher) =
            match self.open_session(&state, chunk.range, algorithm).await? {
                Ok(opened) => opened,
                Err(stale) => return Err(self.out_of_order(stale).await),
            };
        if let Err(e) = pump(&mut chunk, expected, &mut hasher, Some(&mut writer)).await {
            cancel(writer).await;
            return Err(e);
        }
        let note = match writer.commit_noted().await {
            Ok(note) => note,
            Err(StorageError::Busy(_)) => return Err(self.out_of_order(state).await),
            Err(e) => return Err(e.into()),
        };
        if state.offset == 0 {
            // The session now holds acknowledged data: make it durable with it.
            match self
                .driver
                .sync(&layout::upload_session_chain(&state.name, &state.uuid))
                .await
            {
                Ok(()) => {}
                // Cancelled by another request meanwhile.
                Err(e) if e.is_not_found() => return Err(RegistryError::BlobUploadUnknown),
                Err(e) => return Err(e.into()),
            }
        }
        self.save_hashstate(&state, &hasher).await;
        state.set_hasher(&hasher);
        state.note = note;
        state.add_hashstate(hasher.len());
        Ok(self.progress(&state))
    }

    /// Finishes a session (PUT `?digest=`), with an optional last chunk.
    pub async fn complete_upload(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
        digest: &str,
        mut last_chunk: UploadRequest,
    ) -> Result<BlobInfo> {
        self.check_writable()?;
        let state = self.resume_token(repo, uuid, token)?;
        if state.offset == 0 {
            self.check_session_exists(repo.as_str(), uuid).await?;
        }
        let digest: Digest = digest.parse()?;
        let expected = last_chunk.expected_len()?;
        // Read before the blob's data is looked at: see `gc_guard`.
        let pass = self.gc_pass_before().await?;
        if state.offset == 0 && expected != Some(0) {
            // The whole blob comes with the PUT, and the session must hold nothing yet: a
            // body meant to start at 0 on a session that moved on is out of order.
            if self.stored_size(&state).await? != 0 {
                return Err(self.out_of_order(state).await);
            }
            // Written straight to its place, verified from the body itself.
            let (blob, spare) = match self.store_verified(&digest, last_chunk).await {
                Ok(stored) => stored,
                Err(e) => {
                    self.discard_upload(repo, uuid).await;
                    return Err(e);
                }
            };
            // Independent: each waits for its own fsync, so they overlap.
            let ((), linked) = tokio::join!(
                self.discard_upload(repo, uuid),
                self.link_blob_settled(repo, &digest, pass, spare, true)
            );
            linked?;
            self.cache_blob(None, &digest, blob.size).await;
            return Ok(blob);
        }
        // The session's files, when the token knows them all.
        let mut known = self.session_files(&state);
        let opened = match self
            .open_session(&state, last_chunk.range, digest.kind())
            .await?
        {
            Ok(opened) => Some(opened),
            // A stale token with nothing more to add: finish what is stored, rehashed.
            Err(stale) if expected == Some(0) => {
                self.check_session_exists(repo.as_str(), uuid).await?;
                let size = self.stored_size(&stale).await?;
                let mut moved = stale.clone();
                moved.at_offset(size);
                known = None;
                self.open_session(&moved, last_chunk.range, digest.kind())
                    .await?
                    .ok()
            }
            Err(_) => None,
        };
        let Some((mut writer, mut hasher)) = opened else {
            return Err(self.out_of_order(state).await);
        };
        if let Err(e) = pump(&mut last_chunk, expected, &mut hasher, Some(&mut writer)).await {
            cancel(writer).await;
            return Err(e);
        }
        let actual = hasher.digest();
        if actual != digest {
            cancel(writer).await;
            self.discard_upload(repo, uuid).await;
            return Err(RegistryError::DigestInvalid(format!(
                "digest {digest} does not match the uploaded content ({actual})"
            )));
        }
        let mut spare = None;
        let published = if self.stat_blob_data(&digest).await?.is_some() {
            // Content-addressed: the stored copy is the same bytes. The session's stay until
            // the link is settled with any collection (which may remove the stored copy).
            spare = Some(SpareCopy::Session(writer));
            Ok(())
        } else {
            let to = layout::blob_data(digest.algorithm(), digest.hex());
            // The session's folder is deleted right after, with the data left in it.
            writer.commit_to_leaving_source(&to).await
        };
        match published {
            Ok(()) => {}
            Err(StorageError::Busy(_)) => return Err(self.out_of_order(state).await),
            // A concurrent writer broke the session's data: it can only be started again.
            Err(StorageError::Changed(_)) => {
                self.discard_upload(repo, uuid).await;
                return Err(RegistryError::BlobUploadUnknown);
            }
            Err(e) => return Err(e.into()),
        }
        let linked = if spare.is_some() {
            // The spare copy lives in the session: link first, then discard the session.
            let linked = self
                .link_blob_settled(repo, &digest, pass, spare, true)
                .await;
            // Its data was never moved out: still open for appends, found by the tree's delete.
            self.discard_upload(repo, uuid).await;
            linked
        } else {
            let (linked, ()) = tokio::join!(
                self.link_blob_settled(repo, &digest, pass, None, true),
                self.discard_finished(repo, uuid, known)
            );
            linked
        };
        linked?;
        // Known stored: a manifest naming it next needs no storage read for its size.
        self.cache_blob(None, &digest, hasher.len()).await;
        Ok(BlobInfo {
            digest,
            size: hasher.len(),
        })
    }

    /// Opens the session's data for appending at the token's offset, with the hash (in
    /// `algorithm`) of what is stored before it. `Err(state)` inside: the token does not
    /// describe what storage holds (stale, or another request is writing right now).
    async fn open_session(
        &self,
        state: &UploadState,
        range: Option<(u64, u64)>,
        algorithm: Algorithm,
    ) -> Result<std::result::Result<(Box<dyn FileWriter>, HashState), UploadState>> {
        if range.is_some_and(|(start, _)| start != state.offset) {
            return Ok(Err(state.clone()));
        }
        let path = layout::upload_data(&state.name, &state.uuid);
        let writer = match self
            .driver
            .writer_noted(&path, state.offset, state.note.as_deref())
            .await
        {
            Ok(w) => w,
            Err(StorageError::OffsetMismatch { .. } | StorageError::Busy(_)) => {
                return Ok(Err(state.clone()))
            }
            // No data yet, while the token says there is.
            Err(e) if e.is_not_found() && state.offset > 0 => return Ok(Err(state.clone())),
            // The file a note at offset 0 named is gone: the session was cancelled or purged.
            Err(e) if e.is_not_found() && state.note.is_some() => {
                return Err(RegistryError::BlobUploadUnknown)
            }
            Err(e) => return Err(e.into()),
        };
        // The writer excludes other writers, so what is hashed below stays what is stored.
        // Where it cannot, only the stored bytes themselves are trusted.
        let hashed = if writer.exclusive() {
            self.hasher_for(state, algorithm).await
        } else {
            self.rehash(state, algorithm).await
        };
        match hashed {
            Ok(hasher) => Ok(Ok((writer, hasher))),
            Err(e) => {
                cancel(writer).await;
                Err(e)
            }
        }
    }

    /// The hash of the first `state.offset` stored bytes: from the token, else from
    /// distribution's `hashstates` file, else by reading the data back.
    async fn hasher_for(&self, state: &UploadState, algorithm: Algorithm) -> Result<HashState> {
        if let Some(h) = state.hasher().filter(|h| h.algorithm() == algorithm) {
            return Ok(h);
        }
        if let Some(h) = self.stored_hashstate(state, algorithm).await {
            return Ok(h);
        }
        self.rehash(state, algorithm).await
    }

    /// The hash of the first `state.offset` stored bytes, read back.
    async fn rehash(&self, state: &UploadState, algorithm: Algorithm) -> Result<HashState> {
        let mut h = HashState::new(algorithm);
        if state.offset > 0 {
            let data = layout::upload_data(&state.name, &state.uuid);
            let mut stream = self.driver.reader(&data, 0, Some(state.offset)).await?;
            while let Some(chunk) = stream.next().await {
                h.update(&chunk?);
            }
            if h.len() != state.offset {
                return Err(RegistryError::RangeInvalid {
                    offset: h.len(),
                    resume: None,
                });
            }
        }
        Ok(h)
    }

    /// distribution's `hashstates/<algorithm>/<offset>` for `state.offset`, when stored and valid.
    async fn stored_hashstate(
        &self,
        state: &UploadState,
        algorithm: Algorithm,
    ) -> Option<HashState> {
        let path =
            layout::upload_hashstate(&state.name, &state.uuid, algorithm.name(), state.offset);
        let bytes = self.driver.get_content(&path).await.ok()?;
        HashState::from_go_bytes(algorithm, &bytes)
            .ok()
            .filter(|h| h.len() == state.offset)
    }

    /// Keeps the hash state beside the data, as distribution does: a registry:2 node (or a
    /// request with an older token) continues from it without rehashing. Lazy: only a power
    /// loss can lose it, and then the data is rehashed.
    async fn save_hashstate(&self, state: &UploadState, hasher: &HashState) {
        let path = layout::upload_hashstate(
            &state.name,
            &state.uuid,
            hasher.algorithm().name(),
            hasher.len(),
        );
        if let Err(e) = self
            .driver
            .put_content_lazy(&path, Bytes::from(hasher.to_go_bytes()))
            .await
        {
            tracing::warn!(error = %e, "could not store the upload hash state");
        }
    }

    /// Monolithic upload of a blob whose digest the client states up front:
    /// written straight to its final place, published only once verified.
    pub async fn put_blob(
        &self,
        repo: &RepositoryName,
        digest: &str,
        body: UploadRequest,
    ) -> Result<BlobInfo> {
        self.check_writable()?;
        let digest: Digest = digest.parse()?;
        let pass = self.gc_pass_before().await?;
        let (blob, spare) = self.store_verified(&digest, body).await?;
        self.link_blob_settled(repo, &digest, pass, spare, true)
            .await?;
        self.cache_blob(None, &digest, blob.size).await;
        Ok(blob)
    }

    /// Streams a whole blob into `blobs/` under `digest`, verifying it first. When the blob is
    /// already stored, the verified bytes come back unpublished, as a spare copy in case a
    /// collection removes the stored one before the upload's link is settled.
    pub(super) async fn store_verified(
        &self,
        digest: &Digest,
        mut body: UploadRequest,
    ) -> Result<(BlobInfo, Option<SpareCopy>)> {
        let expected = body.expected_len()?;
        let mut hasher = HashState::new(digest.kind());
        let exists = self.stat_blob_data(digest).await?.is_some();
        // A spare copy is kept outside the blob's directory, which a collection may remove.
        let target = if exists {
            crate::registry::gc_guard::spare_path()
        } else {
            layout::blob_data(digest.algorithm(), digest.hex())
        };
        let mut writer = self.driver.atomic_writer(&target).await?;
        let pumped = pump(&mut body, expected, &mut hasher, Some(&mut writer)).await;
        let verified = pumped.and_then(|()| {
            let actual = hasher.digest();
            if &actual == digest {
                Ok(())
            } else {
                Err(RegistryError::DigestInvalid(format!(
                    "digest {digest} does not match the uploaded content ({actual})"
                )))
            }
        });
        let spare = match verified {
            Ok(()) if exists => Some(SpareCopy::Atomic(writer, target)),
            Ok(()) => {
                writer.commit().await?;
                None
            }
            Err(e) => {
                cancel(writer).await;
                return Err(e);
            }
        };
        Ok((
            BlobInfo {
                digest: digest.clone(),
                size: hasher.len(),
            },
            spare,
        ))
    }

    /// Drops a session (DELETE).
    pub async fn cancel_upload(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
    ) -> Result<()> {
        self.check_writable()?;
        self.resume(repo, uuid, token).await?;
        match self
            .driver
            .delete(&layout::upload_dir(repo.as_str(), uuid))
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Err(RegistryError::BlobUploadUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Every file of the session `state` describes, when its token knows them all; called for
    /// a session whose writer published its data, so no upload is left open on it.
    fn session_files(&self, state: &UploadState) -> Option<Vec<String>> {
        let offsets = state.hashstates.as_ref()?;
        let algorithm = state.algorithm().ok()?;
        let (repo, uuid) = (state.name.as_str(), state.uuid.as_str());
        let mut files = vec![
            layout::upload_started_at(repo, uuid),
            layout::upload_data(repo, uuid),
        ];
        files.extend(
            offsets
                .iter()
                .map(|&o| layout::upload_hashstate(repo, uuid, algorithm.name(), o)),
        );
        Some(files)
    }

    /// Removes a finished session: by its files when they are known, else as a tree.
    async fn discard_finished(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        files: Option<Vec<String>>,
    ) {
        let Some(files) = files else {
            return self.discard_upload(repo, uuid).await;
        };
        let dir = layout::upload_dir(repo.as_str(), uuid);
        if let Err(e) = self.driver.delete_known_tree(&dir, &files).await {
            tracing::warn!(error = %e, upload = uuid, "could not remove a finished upload");
        }
    }

    async fn discard_upload(&self, repo: &RepositoryName, uuid: &str) {
        // Lazy: a session brought back by a crash is purged like any stale one.
        if let Err(e) = self
            .driver
            .delete_lazy(&layout::upload_dir(repo.as_str(), uuid))
            .await
        {
            if !e.is_not_found() {
                tracing::warn!(error = %e, upload = uuid, "could not remove a failed upload");
            }
        }
    }
}

/// Gives a writer up, logging (not failing on) a clean-up error.
async fn cancel(writer: Box<dyn FileWriter>) {
    if let Err(e) = writer.cancel().await {
        tracing::warn!(error = %e, "could not drop the bytes of a failed write");
    }
}

impl UploadRequest {
    /// The length the client declared, by `Content-Range` or `Content-Length`;
    /// refuses a range that contradicts the length.
    pub(super) fn expected_len(&self) -> Result<Option<u64>> {
        match self.range {
            Some((start, end)) => {
                if end < start {
                    return Err(RegistryError::RangeInvalid {
                        offset: start,
                        resume: None,
                    });
                }
                let len = end - start + 1;
                match self.content_length {
                    Some(cl) if cl != len => Err(RegistryError::SizeInvalid(format!(
                        "Content-Range covers {len} bytes but Content-Length is {cl}"
                    ))),
                    _ => Ok(Some(len)),
                }
            }
            None => Ok(self.content_length),
        }
    }
}

/// Moves a request body into `writer` (when given) while hashing it, checking
/// it against the declared length.
pub(super) async fn pump(
    chunk: &mut UploadRequest,
    expected: Option<u64>,
    hasher: &mut HashState,
    mut writer: Option<&mut Box<dyn FileWriter>>,
) -> Result<()> {
    let mut received = 0u64;
    while let Some(next) = chunk.body.next().await {
        let bytes = next.map_err(RegistryError::Body)?;
        received += bytes.len() as u64;
        if let Some(x) = expected.filter(|&x| received > x) {
            return Err(RegistryError::SizeInvalid(format!(
                "body is longer than the declared {x} bytes"
            )));
        }
        hasher.update(&bytes);
        if let Some(w) = writer.as_mut() {
            w.write(bytes).await?;
        }
    }
    match expected {
        Some(x) if x != received => Err(RegistryError::SizeInvalid(format!(
            "received {received} bytes, {x} were declared"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_cannot_escape() {
        assert!(check_uuid("3f0c0c6e-0000-4000-8000-000000000001").is_ok());
        for bad in ["", ".", "..", "a/b", "a%2f", &"a".repeat(129)] {
            assert!(check_uuid(bad).is_err(), "{bad}");
        }
    }
}
