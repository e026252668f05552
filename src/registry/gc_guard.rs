//! What writers do so that an online garbage-collection pass never deletes what they are
//! about to reference (the writer's half of the protocol in the README's GC section).
//!
//! Shared state, beside distribution's tree (registry:2 never walks it):
//! - `pass`: the current pass's generation and whether it is running, written by the sweeper
//!   before it marks anything and after it has swept;
//! - `intents/<alg>/<hex>`: written by the sweeper before it re-checks a candidate and removed
//!   when done with it;
//! - `touched/<generation>/<alg>/<hex>`: written by a writer that overlapped that pass; the
//!   sweeper reads it after writing its intent.
//!
//! A writer reads `pass` before it looks at anything it will reference and again after its own
//! writes. When a pass overlapped, it writes `touched` for each referenced digest, then reads
//! the digest's intent (waiting while one is live), then checks the digest's files exist. The
//! sweeper writes the intent, then reads `touched`: of two such write-then-read sequences at
//! least one sees the other's write, so either the sweeper keeps the digest or the writer
//! learns it is gone and refuses instead of acknowledging a dangling reference.

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::Registry;

/// Root of the collector's shared state.
pub const GC_ROOT: &str = "/wharf/gc";

/// How often a serving node with an in-memory blob-descriptor cache reads the pass marker.
pub const CACHE_VIEW_REFRESH: Duration = Duration::from_millis(500);

/// How old a node's reading of the pass marker may be for its in-memory cache to answer; a
/// pass deletes no blob until this long (and a margin) after announcing itself.
pub const CACHE_VIEW_MAX_AGE: Duration = Duration::from_millis(1500);

/// Longest a writer waits for a sweeper's intent on one digest to be resolved.
const INTENT_WAIT: Duration = Duration::from_secs(120);

/// The pass marker.
pub fn pass_path() -> String {
    format!("{GC_ROOT}/pass")
}

/// The sweeper's intent to delete `digest`.
pub fn intent_path(digest: &Digest) -> String {
    format!("{GC_ROOT}/intents/{}/{}", digest.algorithm(), digest.hex())
}

/// A writer's mark that it references `digest` during pass `generation`. One path per
/// pass: a late writer of an earlier pass cannot overwrite the mark a writer of this one left.
pub fn touched_path(digest: &Digest, generation: u64) -> String {
    format!(
        "{GC_ROOT}/touched/{generation}/{}/{}",
        digest.algorithm(),
        digest.hex()
    )
}

/// A fresh place for an upload's spare copy of a blob (see `SpareCopy`).
pub fn spare_path() -> String {
    format!("{GC_ROOT}/spare/{}", uuid::Uuid::new_v4())
}

/// Directory of all `touched` marks.
pub fn touched_dir() -> String {
    format!("{GC_ROOT}/touched")
}

/// The pass marker's content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassState {
    /// Incremented by every pass.
    pub generation: u64,
    /// True from before marking until sweeping is over.
    pub running: bool,
    /// Wall-clock start of the pass, milliseconds since the Unix epoch.
    #[serde(default)]
    pub started_ms: u64,
}

/// An intent's content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    /// After this (the sweeper's lease expiry) the intent is void.
    pub expires_ms: u64,
}

/// Files that must exist for a reference to `digest` to be sound.
pub struct Reference {
    /// The referenced digest.
    pub digest: Digest,
    /// Its files (blob data, a revision link).
    pub paths: Vec<String>,
}

impl Registry {
    /// The pass marker as stored now (no pass ever: generation 0).
    pub async fn gc_pass_state(&self) -> Result<PassState> {
        match self.driver.get_content(&pass_path()).await {
            Ok(body) => Ok(serde_json::from_slice(&body).unwrap_or_default()),
            Err(e) if e.is_not_found() => Ok(PassState::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// The writer's check after its writes: the references whose files are missing. With no
    /// pass overlapping `before`..now, only existence is checked; otherwise each reference is
    /// first marked as touched and waits out the sweeper's intent on it.
    pub(crate) async fn settle_references(
        &self,
        before: PassState,
        refs: &[Reference],
    ) -> Result<Vec<Digest>> {
        let after = self.gc_pass_state().await?;
        let overlapped = after.running || after.generation != before.generation;
        // Collected first: a stream over a borrowing closure would not be `Send` for every
        // lifetime, which the server's connection futures require.
        let checks: Vec<_> = refs
            .iter()
            .map(|r| self.check_reference(r, overlapped, after.generation))
            .collect();
        let checks = futures_util::stream::iter(checks)
            .buffer_unordered(8)
            .collect::<Vec<Result<Option<Digest>>>>()
            .await;
        let mut missing = Vec::new();
        for c in checks {
            if let Some(d) = c? {
                missing.push(d);
            }
        }
        Ok(missing)
    }

    /// `Some(digest)` when a file of `r` is missing.
    async fn check_reference(
        &self,
        r: &Reference,
        overlapped: bool,
        generation: u64,
    ) -> Result<Option<Digest>> {
        if overlapped {
            self.touch_and_wait(r, generation).await?;
        }
        let mut missing = None;
        for path in &r.paths {
            match self.driver.stat(path).await {
                Ok(info) if !info.is_dir => {}
                Ok(_) => missing = Some(r.digest.clone()),
                Err(e) if e.is_not_found() => missing = Some(r.digest.clone()),
                Err(e) => return Err(e.into()),
            }
            if missing.is_some() {
                break;
            }
        }
        tracing::debug!(blob = %r.digest, overlapped, generation, missing = missing.is_some(), "reference settled");
        Ok(missing)
    }

    /// Marks `r` as referenced in pass `generation`, then waits while a sweeper's intent on it
    /// is live (it ends with the digest kept or deleted; the caller then checks which).
    async fn touch_and_wait(&self, r: &Reference, generation: u64) -> Result<()> {
        self.put_small(
            &touched_path(&r.digest, generation),
            Bytes::from(generation.to_string()),
        )
        .await?;
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(10);
        loop {
            let intent = match self.driver.get_content(&intent_path(&r.digest)).await {
                Ok(body) => serde_json::from_slice::<Intent>(&body).ok(),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(e.into()),
            };
            let live = intent.is_some_and(|i| i.expires_ms > crate::registry::gc_online::now_ms());
            if !live {
                return Ok(());
            }
            if started.elapsed() > INTENT_WAIT {
                return Err(RegistryError::Unavailable(format!(
                    "garbage collection is deciding about {}; retry",
                    r.digest
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }
}
