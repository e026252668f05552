//! The OCI 1.1 referrers index, derived from the stored manifests.
//!
//! Nothing extra is written at push time: the answer is computed from the
//! repository's revisions, so it can never disagree with what registry:2 or a
//! garbage collection left on storage. Parsed summaries are cached by digest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::layout;
use crate::registry::manifest_format;
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;

/// One entry of a referrers answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    /// Media type of the referring manifest.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size.
    pub size: u64,
    /// `artifactType`, else the config media type.
    pub artifact_type: Option<String>,
    /// Its annotations.
    pub annotations: Option<Map<String, Value>>,
}

/// What referrers needs to know about a manifest.
#[derive(Debug)]
struct Summary {
    subject: Option<Digest>,
    referrer: Referrer,
}

/// Bounded digest -> summary map; cleared wholesale when full, since
/// entries are cheap to rebuild and never stale.
pub(crate) struct SummaryCache {
    map: Mutex<HashMap<Digest, Arc<Summary>>>,
    capacity: usize,
}

impl SummaryCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn get(&self, d: &Digest) -> Option<Arc<Summary>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(d)
            .cloned()
    }

    fn insert(&self, d: Digest, s: Arc<Summary>) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.capacity {
            map.clear();
        }
        map.insert(d, s);
    }
}

impl Registry {
    async fn summary(&self, digest: &Digest) -> Result<Option<Arc<Summary>>> {
        if let Some(s) = self.summaries.get(digest) {
            return Ok(Some(s));
        }
        let stored = match self.read_manifest(digest).await {
            Ok(m) => m,
            Err(RegistryError::ManifestUnknown(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Ok(parsed) = manifest_format::parse_stored(&stored.body) else {
            return Ok(None);
        };
        let summary = Arc::new(Summary {
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            referrer: Referrer {
                media_type: stored.media_type.clone(),
                digest: digest.clone(),
                size: stored.body.len() as u64,
                artifact_type: parsed.effective_artifact_type().map(str::to_string),
                annotations: parsed.annotations.clone(),
            },
        });
        self.summaries.insert(digest.clone(), summary.clone());
        Ok(Some(summary))
    }

    /// Manifests in `repo` whose `subject` is `subject`, optionally filtered by
    /// artifact type, in digest order.
    pub async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let mut out = Vec::new();
        let mut revisions = self
            .digests_in(|alg| layout::revisions_dir(repo.as_str(), alg))
            .await?;
        revisions.sort();
        for digest in revisions {
            let link = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
            if self.read_link(&link).await?.as_ref() != Some(&digest) {
                continue;
            }
            let Some(summary) = self.summary(&digest).await? else {
                continue;
            };
            if summary.subject.as_ref() != Some(subject) {
                continue;
            }
            if artifact_type.is_some_and(|t| summary.referrer.artifact_type.as_deref() != Some(t)) {
                continue;
            }
            out.push(summary.referrer.clone());
        }
        Ok(out)
    }
}
