//! Anonymous cross-repository mount (`?mount=<digest>` without `from`): find a
//! repository the caller may pull that links the blob, within a fixed budget
//! of storage requests, and link the blob from there.
//!
//! Where to look, cheapest first: the repositories the caller's token grants
//! pull on (a token lists them all, so nothing else is searched), else those
//! the blob-descriptor cache last saw the blob in, then the target's own
//! namespace (its siblings and their sub-repositories, nearest first). The
//! repositories root is only listed for a single-component target: on a large
//! registry it is the one listing that costs more than a request. Every
//! candidate is checked against its link file, never the cache alone.

use std::collections::{HashSet, VecDeque};

use crate::digest::Digest;
use crate::registry::blobs::BlobInfo;
use crate::registry::error::{RegistryError, Result};
use crate::registry::layout;
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;

/// Storage requests (link reads and directory listings) one search may make.
pub const SEARCH_BUDGET: usize = 64;

/// Candidates taken from a token or the cache, at most.
pub const MAX_SUGGESTED: usize = 32;

/// Where the blob may be found: the caller's view of the registry.
pub struct MountSearch<'a> {
    /// Repositories the caller may pull, when that is a list (token auth);
    /// `None` when the caller may pull everything it can name.
    pub pullable: Option<&'a [String]>,
    /// Whether the caller may pull from a repository.
    pub may_pull: &'a (dyn Fn(&str) -> bool + Send + Sync),
}

impl Registry {
    /// Links into `repo` a blob some repository the caller may pull already
    /// links; `None` (start a plain upload) when none is found in budget.
    pub async fn mount_anonymous(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        search: &MountSearch<'_>,
    ) -> Result<Option<BlobInfo>> {
        self.check_writable()?;
        match self.stat_blob(repo, digest).await {
            Ok(info) => return Ok(Some(info)),
            Err(RegistryError::BlobUnknown(_)) => {}
            Err(e) => return Err(e),
        }
        // No data, nothing to find: one stat instead of a search.
        let Some(size) = self.stat_blob_data(digest).await? else {
            return Ok(None);
        };
        let mut budget = SEARCH_BUDGET;
        let mut checked: HashSet<String> = HashSet::new();
        checked.insert(repo.as_str().to_string());
        let suggested = match search.pullable {
            Some(granted) => granted.to_vec(),
            None => self.cached_holders(digest).await,
        };
        for name in suggested.into_iter().take(MAX_SUGGESTED) {
            if budget == 0 {
                return Ok(None);
            }
            if let Some(found) = self
                .probe(&name, digest, search, &mut checked, &mut budget)
                .await?
            {
                return self.mount_found(repo, &found, digest, size).await;
            }
        }
        if search.pullable.is_some() {
            return Ok(None);
        }
        match self
            .walk_namespace(repo, digest, search, &mut checked, &mut budget)
            .await?
        {
            Some(found) => self.mount_found(repo, &found, digest, size).await,
            None => Ok(None),
        }
    }

    /// Repositories the cache last saw linking `digest`; none when it fails.
    async fn cached_holders(&self, digest: &Digest) -> Vec<String> {
        let Some(cache) = &self.cache else {
            return Vec::new();
        };
        cache
            .repositories_holding(digest, MAX_SUGGESTED)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "cache lookup failed");
                Vec::new()
            })
    }

    /// Checks one candidate's link (one storage request), if it is a
    /// repository the caller may pull and was not checked yet.
    async fn probe(
        &self,
        name: &str,
        digest: &Digest,
        search: &MountSearch<'_>,
        checked: &mut HashSet<String>,
        budget: &mut usize,
    ) -> Result<Option<RepositoryName>> {
        if *budget == 0 || !checked.insert(name.to_string()) || !(search.may_pull)(name) {
            return Ok(None);
        }
        let Some(candidate) = RepositoryName::parse(name) else {
            return Ok(None);
        };
        *budget -= 1;
        let link = layout::layer_link(candidate.as_str(), digest.algorithm(), digest.hex());
        Ok((self.read_link(&link).await?.as_ref() == Some(digest)).then_some(candidate))
    }

    /// Breadth-first through the target's namespace: its parent directory,
    /// then the parent's parent, up to the top-level namespace, each with
    /// the repositories below it.
    async fn walk_namespace(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        search: &MountSearch<'_>,
        checked: &mut HashSet<String>,
        budget: &mut usize,
    ) -> Result<Option<RepositoryName>> {
        let components: Vec<&str> = repo.components().collect();
        // Ancestors, nearest first; "" is the repositories root.
        let mut queue: VecDeque<String> = (0..components.len())
            .rev()
            .map(|n| components[..n].join("/"))
            .filter(|dir| !dir.is_empty() || components.len() == 1)
            .collect();
        let mut listed: HashSet<String> = HashSet::new();
        while let Some(dir) = queue.pop_front() {
            if *budget == 0 {
                break;
            }
            if !listed.insert(dir.clone()) {
                continue;
            }
            *budget -= 1;
            let path = if dir.is_empty() {
                layout::repositories_dir()
            } else {
                layout::repository_dir(&dir)
            };
            let entries = match self.driver.list_entries(&path).await {
                Ok(entries) => entries,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            if !dir.is_empty() && entries.iter().any(|(n, is_dir)| *is_dir && n == "_layers") {
                if let Some(found) = self.probe(&dir, digest, search, checked, budget).await? {
                    return Ok(Some(found));
                }
            }
            let mut children: Vec<String> = entries
                .into_iter()
                .filter(|(n, is_dir)| *is_dir && !n.starts_with('_'))
                .map(|(n, _)| {
                    if dir.is_empty() {
                        n
                    } else {
                        format!("{dir}/{n}")
                    }
                })
                .filter(|child| !listed.contains(child))
                .collect();
            children.sort_unstable();
            queue.extend(children);
        }
        Ok(None)
    }

    async fn mount_found(
        &self,
        repo: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<BlobInfo>> {
        tracing::debug!(%repo, %from, %digest, "anonymous mount");
        self.link_blob(repo, digest).await?;
        self.cache_blob(Some(repo), digest, size).await;
        Ok(Some(BlobInfo {
            digest: digest.clone(),
            size,
        }))
    }
}
