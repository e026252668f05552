//! Offline garbage collection: mark what manifests reference, sweep the rest.
//!
//! Unlike distribution, marking is index- and referrer-aware: with
//! `--delete-untagged`, children of a kept index and artifacts whose subject
//! is kept survive (distribution#3004, #3178).

use std::collections::{BTreeSet, HashSet};
use std::fmt;

use crate::digest::{Algorithm, Digest};
use crate::registry::error::{RegistryError, Result};
use crate::registry::layout;
use crate::registry::manifest_format;
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;

/// `garbage-collect` flags.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report, delete nothing.
    pub dry_run: bool,
    /// Also delete manifests that no tag reaches.
    pub delete_untagged: bool,
    /// Do not list every deletion.
    pub quiet: bool,
}

/// What a collection did (or would do).
#[derive(Debug, Default)]
pub struct GcReport {
    /// Blobs kept.
    pub marked: usize,
    /// Blob data deleted.
    pub blobs_deleted: Vec<Digest>,
    /// Untagged manifests deleted, as `repo@digest`.
    pub manifests_deleted: Vec<String>,
    /// Repository links (`_layers`) to swept blobs deleted.
    pub links_deleted: usize,
    /// True for a dry run.
    pub dry_run: bool,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        write!(
            f,
            "{} blobs marked, {verb} {} blobs and {} manifests ({} repository links to them)",
            self.marked,
            self.blobs_deleted.len(),
            self.manifests_deleted.len(),
            self.links_deleted
        )
    }
}

impl Registry {
    /// Runs mark and sweep over the whole storage.
    pub async fn garbage_collect(&self, opts: &GcOptions) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run: opts.dry_run,
            ..GcReport::default()
        };
        let mut marked: HashSet<Digest> = HashSet::new();
        // Every stored repository, also those whose names the API no longer
        // serves: their manifests still keep their blobs.
        let repos: Vec<RepositoryName> = self
            .stored_repositories()
            .await?
            .iter()
            .filter_map(|n| RepositoryName::from_storage(n))
            .collect();
        for repo in &repos {
            self.mark_repository(repo, opts, &mut marked, &mut report)
                .await?;
        }
        // Links are judged against the global mark set: a blob kept by any
        // repository keeps its links everywhere.
        let mut link_dirs = Vec::new();
        for repo in &repos {
            link_dirs.extend(self.unmarked_layer_links(repo, &marked).await?);
        }
        if !opts.dry_run {
            self.driver.delete_many(&link_dirs).await?;
        }
        report.links_deleted = link_dirs.len();
        report.marked = marked.len();
        let mut blob_dirs = Vec::new();
        for digest in self.all_blobs().await? {
            if marked.contains(&digest) {
                continue;
            }
            if !opts.quiet {
                tracing::info!(blob = %digest, dry_run = opts.dry_run, "blob eligible for deletion");
            }
            if !opts.dry_run {
                // A cache that still listed the blob would let a manifest
                // reference data that is gone: clear it first, or stop.
                if let Some(cache) = &self.cache {
                    let names: Vec<String> = repos.iter().map(|r| r.to_string()).collect();
                    cache.clear(&digest, &names).await.map_err(|e| {
                        RegistryError::Unavailable(format!(
                            "cannot clear {digest} from the blob-descriptor cache ({e}); nothing more was deleted"
                        ))
                    })?;
                }
                self.manifests.remove(&digest);
                blob_dirs.push(layout::blob_dir(digest.algorithm(), digest.hex()));
            }
            report.blobs_deleted.push(digest);
        }
        // In bulk: on object stores, batched deletes after one listing per folder.
        self.driver.delete_many(&blob_dirs).await?;
        Ok(report)
    }

    /// Marks the blobs of the manifests kept in `repo`.
    async fn mark_repository(
        &self,
        repo: &RepositoryName,
        opts: &GcOptions,
        marked: &mut HashSet<Digest>,
        report: &mut GcReport,
    ) -> Result<()> {
        let revisions: BTreeSet<Digest> = self
            .digests_in(|alg| layout::revisions_dir(repo.as_str(), alg))
            .await?
            .into_iter()
            .collect();
        let mut parsed = Vec::new();
        for d in &revisions {
            let body = match self.read_manifest(d).await {
                Ok(m) => m.body,
                Err(_) => continue,
            };
            if let Ok(m) = manifest_format::parse_stored(&body) {
                parsed.push((d.clone(), m));
            }
        }
        let mut kept: HashSet<Digest> = if opts.delete_untagged {
            let mut tagged = HashSet::new();
            for tag in self.list_or_empty(&layout::tags_dir(repo.as_str())).await? {
                if let Some(d) = self
                    .read_link(&layout::tag_current_link(repo.as_str(), &tag))
                    .await?
                {
                    tagged.insert(d);
                }
            }
            tagged
        } else {
            revisions.iter().cloned().collect()
        };
        // Grow the kept set to a fixpoint: children of kept indexes, and
        // artifacts whose subject is kept.
        loop {
            let before = kept.len();
            for (d, m) in &parsed {
                if kept.contains(d) {
                    kept.extend(m.manifests.iter().map(|c| c.digest.clone()));
                } else if m.subject.as_ref().is_some_and(|s| kept.contains(&s.digest)) {
                    kept.insert(d.clone());
                }
            }
            if kept.len() == before {
                break;
            }
        }
        for d in &revisions {
            if kept.contains(d) {
                continue;
            }
            report.manifests_deleted.push(format!("{repo}@{d}"));
            if !opts.quiet {
                tracing::info!(repository = %repo, manifest = %d, dry_run = opts.dry_run, "untagged manifest eligible for deletion");
            }
            if !opts.dry_run {
                let link = layout::revision_link(repo.as_str(), d.algorithm(), d.hex());
                if let Err(e) = self.driver.delete(link.trim_end_matches("/link")).await {
                    if !e.is_not_found() {
                        return Err(e.into());
                    }
                }
            }
        }
        for (d, m) in &parsed {
            if !kept.contains(d) {
                continue;
            }
            marked.insert(d.clone());
            marked.extend(m.config.iter().chain(&m.layers).map(|b| b.digest.clone()));
        }
        Ok(())
    }

    /// The `_layers` link folders of `repo` naming blobs that are about to be swept.
    async fn unmarked_layer_links(
        &self,
        repo: &RepositoryName,
        marked: &HashSet<Digest>,
    ) -> Result<Vec<String>> {
        let layers = layout::layers_dir(repo.as_str());
        Ok(self
            .digests_in(|alg| format!("{layers}/{alg}"))
            .await?
            .into_iter()
            .filter(|d| !marked.contains(d))
            .map(|d| format!("{layers}/{}/{}", d.algorithm(), d.hex()))
            .collect())
    }

    /// Every blob in `blobs/<algorithm>/<prefix>/`.
    pub(crate) async fn all_blobs(&self) -> Result<Vec<Digest>> {
        use futures_util::StreamExt as _;
        let mut out = Vec::new();
        for algorithm in Algorithm::ALL {
            let root = format!("{}/{}", layout::blobs_dir(), algorithm.name());
            // The prefix folders are listed several at once: on an object store each is a
            // round trip.
            let folders: Vec<String> = self
                .list_or_empty(&root)
                .await?
                .into_iter()
                .map(|prefix| format!("{root}/{prefix}"))
                .collect();
            let listings: Vec<_> = folders.iter().map(|f| self.list_or_empty(f)).collect();
            let mut listings = futures_util::stream::iter(listings).buffered(16);
            while let Some(names) = listings.next().await {
                for hex in names? {
                    if let Ok(d) = format!("{}:{hex}", algorithm.name()).parse::<Digest>() {
                        out.push(d);
                    }
                }
            }
        }
        Ok(out)
    }
}
