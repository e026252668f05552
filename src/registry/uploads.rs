//! Upload sessions: data under `_uploads/<uuid>/`, state in a signed token.
//!
//! A node never keeps session state in memory: the token carries the offset
//! and the SHA-256 mid-state, so any node sharing the secret and the storage
//! continues any upload, paying only for the bytes it receives.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::registry::blobs::BlobInfo;
use crate::registry::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::hashstate::Sha256State;
use crate::registry::reference::RepositoryName;
use crate::registry::upload_state::UploadState;
use crate::registry::{BodyStream, Registry};
use crate::storage::{layout, FileWriter, StorageError};

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
    /// Opens a new upload session in `repo`.
    pub async fn start_upload(&self, repo: &RepositoryName) -> Result<UploadProgress> {
        self.check_writable()?;
        let uuid = uuid::Uuid::new_v4().to_string();
        let now = chrono::Utc::now();
        let started = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        // Not durable yet: a session holds no data until its first chunk, which
        // makes it durable (see `receive`); one lost in a crash before that is
        // only restarted by the client. A monolithic PUT never needs it durable.
        self.driver
            .put_content_lazy(
                &layout::upload_started_at(repo.as_str(), &uuid),
                Bytes::from(started),
            )
            .await?;
        let mut state = UploadState {
            name: repo.to_string(),
            uuid: uuid.clone(),
            offset: 0,
            started_at: now.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            sha256_state: None,
        };
        state.set_hasher(&Sha256State::new());
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
        self.check_session_exists(repo, uuid).await?;
        Ok(state)
    }

    async fn check_session_exists(&self, repo: &RepositoryName, uuid: &str) -> Result<()> {
        match self
            .driver
            .stat(&layout::upload_started_at(repo.as_str(), uuid))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(RegistryError::BlobUploadUnknown),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a session stands; trusts a valid token over the stored size, since
    /// bytes past the token's offset were never acknowledged.
    pub async fn upload_status(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
    ) -> Result<UploadProgress> {
        check_uuid(uuid)?;
        if let Ok(state) = self.resume(repo, uuid, token).await {
            return Ok(self.progress(&state));
        }
        self.check_session_exists(repo, uuid).await?;
        let size = match self
            .driver
            .stat(&layout::upload_data(repo.as_str(), uuid))
            .await
        {
            Ok(info) => info.size,
            Err(e) if e.is_not_found() => 0,
            Err(e) => return Err(e.into()),
        };
        let started = self
            .driver
            .get_content(&layout::upload_started_at(repo.as_str(), uuid))
            .await?;
        let state = UploadState {
            name: repo.to_string(),
            uuid: uuid.to_string(),
            offset: size,
            started_at: String::from_utf8_lossy(&started).trim().to_string(),
            sha256_state: None,
        };
        Ok(self.progress(&state))
    }

    /// Appends a chunk (PATCH).
    pub async fn append_upload(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
        chunk: UploadRequest,
    ) -> Result<UploadProgress> {
        self.check_writable()?;
        let mut state = self.resume(repo, uuid, token).await?;
        let hasher = self.receive(&state, chunk).await?;
        state.set_hasher(&hasher);
        Ok(self.progress(&state))
    }

    /// Finishes a session (PUT `?digest=`), with an optional last chunk.
    pub async fn complete_upload(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        token: Option<&str>,
        digest: &str,
        last_chunk: UploadRequest,
    ) -> Result<BlobInfo> {
        self.check_writable()?;
        let state = self.resume(repo, uuid, token).await?;
        let digest: Digest = digest.parse()?;
        if state.offset == 0 && last_chunk.expected_len()? != Some(0) {
            // The whole blob comes with the PUT: write it straight to its place.
            let blob = match self.store_verified(&digest, last_chunk).await {
                Ok(blob) => blob,
                Err(e) => {
                    self.discard_upload(repo, uuid).await;
                    return Err(e);
                }
            };
            // Independent: each waits for its own fsync, so they overlap.
            let ((), linked) = tokio::join!(
                self.discard_upload(repo, uuid),
                self.link_blob(repo, &digest)
            );
            linked?;
            return Ok(blob);
        }
        let hasher = self.receive(&state, last_chunk).await?;
        self.commit_upload(repo, uuid, &digest, &hasher).await
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
        let blob = self.store_verified(&digest, body).await?;
        self.link_blob(repo, &digest).await?;
        Ok(blob)
    }

    /// Streams a whole blob into `blobs/` under `digest`, verifying it first.
    async fn store_verified(&self, digest: &Digest, mut body: UploadRequest) -> Result<BlobInfo> {
        let expected = body.expected_len()?;
        let mut hasher = Sha256State::new();
        // Content-addressed: if the blob is already stored, only the hash matters.
        let exists = self.stat_blob_data(digest).await?.is_some();
        let mut writer = if exists {
            None
        } else {
            Some(
                self.driver
                    .atomic_writer(&layout::blob_data(digest.algorithm(), digest.hex()))
                    .await?,
            )
        };
        let pumped = pump(&mut body, expected, &mut hasher, writer.as_mut()).await;
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
        match (verified, writer) {
            (Ok(()), Some(w)) => w.commit().await?,
            (Ok(()), None) => {}
            (Err(e), w) => {
                if let Some(w) = w {
                    if let Err(cancel) = w.cancel().await {
                        tracing::warn!(error = %cancel, "could not drop a refused blob");
                    }
                }
                return Err(e);
            }
        }
        Ok(BlobInfo {
            digest: digest.clone(),
            size: hasher.len(),
        })
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

    /// Verifies the digest, then moves the data into `blobs/` and links it.
    async fn commit_upload(
        &self,
        repo: &RepositoryName,
        uuid: &str,
        digest: &Digest,
        hasher: &Sha256State,
    ) -> Result<BlobInfo> {
        let actual = hasher.digest();
        if &actual != digest {
            self.discard_upload(repo, uuid).await;
            return Err(RegistryError::DigestInvalid(format!(
                "digest {digest} does not match the uploaded content ({actual})"
            )));
        }
        let data = layout::upload_data(repo.as_str(), uuid);
        let target = layout::blob_data(digest.algorithm(), digest.hex());
        if self.stat_blob_data(digest).await?.is_none() {
            match self.driver.move_to(&data, &target).await {
                Ok(()) => {}
                // An empty blob never opened a writer.
                Err(StorageError::NotFound(_)) if hasher.is_empty() => {
                    self.driver.put_content(&target, Bytes::new()).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let (linked, ()) = tokio::join!(
            self.link_blob(repo, digest),
            self.discard_upload(repo, uuid)
        );
        linked?;
        Ok(BlobInfo {
            digest: digest.clone(),
            size: hasher.len(),
        })
    }

    /// The hash of the first `state.offset` bytes: from the token, else from
    /// distribution's `hashstates` file, else by re-reading the data.
    async fn hasher_for(&self, state: &UploadState) -> Result<Sha256State> {
        if let Some(h) = state.hasher() {
            return Ok(h);
        }
        let path = layout::upload_hashstate(&state.name, &state.uuid, "sha256", state.offset);
        if let Ok(bytes) = self.driver.get_content(&path).await {
            if let Ok(h) = Sha256State::from_go_bytes(&bytes) {
                if h.len() == state.offset {
                    return Ok(h);
                }
            }
        }
        let mut h = Sha256State::new();
        if state.offset > 0 {
            let data = layout::upload_data(&state.name, &state.uuid);
            let mut stream = self.driver.reader(&data, 0, Some(state.offset)).await?;
            while let Some(chunk) = stream.next().await {
                h.update(&chunk?);
            }
            if h.len() != state.offset {
                return Err(RegistryError::RangeInvalid { offset: h.len() });
            }
        }
        Ok(h)
    }

    /// Streams a chunk into the session's data while hashing it; on any
    /// failure the bytes written by this request are dropped.
    async fn receive(&self, state: &UploadState, mut chunk: UploadRequest) -> Result<Sha256State> {
        if let Some((start, _)) = chunk.range {
            if start != state.offset {
                return Err(RegistryError::RangeInvalid {
                    offset: state.offset,
                });
            }
        }
        let expected = chunk.expected_len()?;
        let mut hasher = self.hasher_for(state).await?;
        if expected == Some(0) {
            return Ok(hasher);
        }
        let path = layout::upload_data(&state.name, &state.uuid);
        let mut writer = match self.driver.writer(&path, state.offset).await {
            Ok(w) => w,
            Err(StorageError::ShortFile { actual, .. }) => {
                return Err(RegistryError::RangeInvalid { offset: actual })
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = pump(&mut chunk, expected, &mut hasher, Some(&mut writer)).await {
            if let Err(cancel) = writer.cancel().await {
                tracing::warn!(error = %cancel, "could not drop a failed chunk");
            }
            return Err(e);
        }
        writer.commit().await?;
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
        // Distribution keeps the hash state beside the data; writing it lets a
        // registry:2 node finish this upload without rehashing it. Lazy: wharf
        // does not need it (its token carries the state), and only a power loss
        // can lose it.
        let state_path = layout::upload_hashstate(&state.name, &state.uuid, "sha256", hasher.len());
        if let Err(e) = self
            .driver
            .put_content_lazy(&state_path, Bytes::copy_from_slice(&hasher.to_go_bytes()))
            .await
        {
            tracing::warn!(error = %e, "could not store the upload hash state");
        }
        Ok(hasher)
    }
}

impl UploadRequest {
    /// The length the client declared, by `Content-Range` or `Content-Length`;
    /// refuses a range that contradicts the length.
    fn expected_len(&self) -> Result<Option<u64>> {
        match self.range {
            Some((start, end)) => {
                if end < start {
                    return Err(RegistryError::RangeInvalid { offset: start });
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
async fn pump(
    chunk: &mut UploadRequest,
    expected: Option<u64>,
    hasher: &mut Sha256State,
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
