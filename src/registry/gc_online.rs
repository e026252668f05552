//! Online garbage collection: mark and sweep while the registry serves, on one node of the
//! cluster at a time (the caller holds a lease; [`PassFence`] says whether it still does).
//! The sweeper's half of the protocol in the README's GC section; writers' half is `gc_guard`.
//!
//! A pass: write the pass marker (running, next generation); mark every blob referenced by a
//! kept manifest of every repository (all revisions, or with `deleteuntagged` the tagged ones,
//! grown by children of kept indexes and referrers of kept subjects); then for each unmarked
//! blob: skip it if its data or any of its links is younger than the grace period; else write
//! an intent, read `touched` (a writer referenced it during this pass: keep), re-check ages,
//! clear it from the blob-descriptor cache, delete its links and data, remove the intent.
//! Untagged manifests go through the same intent and re-check (plus their tags re-read) before
//! their revision link is deleted. Finally the marker says the pass is over. With in-memory
//! caches configured, no blob is deleted before every node has seen the marker
//! (`coord::cache_watch`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;

use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::gc_guard::{
    intent_path, pass_path, touched_dir, touched_path, Intent, PassState, CACHE_VIEW_MAX_AGE,
};
use crate::registry::layout;
use crate::registry::manifest_format::{self, Manifest};
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;

/// Storage requests a pass keeps in flight.
const CONCURRENCY: usize = 16;

/// Candidates swept together: one intent each, then their deletes in bulk.
const SWEEP_BATCH: usize = 256;

/// How long before its intents expire the collector stops deleting: writers compare the
/// expiry with their own clocks.
const INTENT_MARGIN_MS: u64 = 1000;

/// Intents with less validity than this left are extended before a delete.
const INTENT_REFRESH_BELOW_MS: u64 = 10_000;

/// The latest time a file stamped `modified` may have been written: object stores (S3's
/// `Last-Modified`) give whole seconds, cut down from the write's real time, so a stamp with
/// no fraction stands for any moment of that second. Ages measured from it never make a file
/// look older than it is, which the grace period relies on.
fn written_by(modified: SystemTime) -> SystemTime {
    let whole_second = modified
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_nanos() == 0);
    if whole_second {
        modified + Duration::from_secs(1)
    } else {
        modified
    }
}

/// Added to [`CACHE_VIEW_MAX_AGE`] for nodes' clocks that run at slightly different rates.
const CACHE_VIEW_MARGIN: Duration = Duration::from_millis(500);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `gc` settings of one pass.
#[derive(Debug, Clone)]
pub struct OnlineOptions {
    /// Nothing younger than this is deleted.
    pub grace: Duration,
    /// Also delete manifests no tag reaches (and that nothing kept reaches).
    pub delete_untagged: bool,
    /// Report, delete nothing.
    pub dry_run: bool,
    /// Nodes keep in-memory blob-descriptor caches: delete nothing until they have all seen the
    /// pass start (see `coord::cache_watch`).
    pub wait_for_memory_caches: bool,
}

/// Whether the pass may still act: the caller's hold on the cluster-wide lease.
pub trait PassFence: Send + Sync {
    /// False once another node may have taken over; the pass then stops.
    fn is_held(&self) -> bool;
    /// Wall-clock time (ms since the Unix epoch) until which the hold is guaranteed to others.
    fn expires_ms(&self) -> u64;
}

/// What a pass did (or, dry, would do).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct OnlineReport {
    /// The pass's generation.
    pub generation: u64,
    /// Repositories walked.
    pub repositories: usize,
    /// Blobs referenced by kept manifests.
    pub marked: usize,
    /// Blobs deleted.
    pub blobs_deleted: usize,
    /// Bytes of blob data deleted.
    pub bytes_deleted: u64,
    /// Untagged manifests deleted (revision links).
    pub manifests_deleted: usize,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub kept_young: usize,
    /// Candidates kept because a writer referenced them during the pass.
    pub kept_touched: usize,
    /// True for a dry run.
    pub dry_run: bool,
}

/// What became of one candidate.
enum Outcome {
    Deleted(u64),
    Young,
    Touched,
    Gone,
}

/// One repository's contribution to the mark.
#[derive(Default)]
struct RepoMark {
    marked: HashSet<Digest>,
    manifests_deleted: usize,
}

/// A repository's links, as listed at the start of the pass.
#[derive(Default)]
struct RepoFiles {
    revisions: Vec<Digest>,
    layers: Vec<Digest>,
}

impl Registry {
    /// Runs one online pass. Stops with an error, marker left running (the next pass starts a
    /// new generation), when the fence is lost; the report then counts what was done before.
    pub async fn collect_online(
        &self,
        opts: &OnlineOptions,
        fence: &dyn PassFence,
    ) -> (OnlineReport, Result<()>) {
        let mut report = OnlineReport {
            dry_run: opts.dry_run,
            ..OnlineReport::default()
        };
        let outcome = self.run_online(opts, fence, &mut report).await;
        (report, outcome)
    }

    async fn run_online(
        &self,
        opts: &OnlineOptions,
        fence: &dyn PassFence,
        report: &mut OnlineReport,
    ) -> Result<()> {
        let previous = self.gc_pass_state().await?;
        let pass = PassState {
            generation: previous.generation + 1,
            running: true,
            started_ms: now_ms(),
        };
        self.write_pass(&pass).await?;
        let announced = Instant::now();
        report.generation = pass.generation;
        let repos: Vec<(RepositoryName, RepoFiles)> = self
            .repository_files()
            .await?
            .into_iter()
            .filter_map(|(n, f)| Some((RepositoryName::from_storage(&n)?, f)))
            .collect();
        report.repositories = repos.len();
        // Futures collected before streaming them: a stream over a borrowing closure is not
        // `Send` for every lifetime, which spawned passes need.
        let marks: Vec<_> = repos
            .iter()
            .map(|(repo, files)| self.mark_online(repo, files, opts, pass.generation, fence))
            .collect();
        let marks = futures_util::stream::iter(marks)
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut marked: HashSet<Digest> = HashSet::new();
        let mut holders: HashMap<Digest, Vec<String>> = HashMap::new();
        for ((repo, files), m) in repos.iter().zip(marks) {
            let m = m?;
            marked.extend(m.marked);
            report.manifests_deleted += m.manifests_deleted;
            for d in &files.layers {
                holders.entry(d.clone()).or_default().push(repo.to_string());
            }
        }
        report.marked = marked.len();
        let candidates: Vec<Digest> = self
            .all_blobs()
            .await?
            .into_iter()
            .filter(|d| !marked.contains(d))
            .collect();
        if opts.wait_for_memory_caches && !opts.dry_run && !candidates.is_empty() {
            // Nodes' in-memory caches stop answering once they read the marker: wait until
            // every node still answering from one has read it (see `coord::cache_watch`).
            let settled = announced + CACHE_VIEW_MAX_AGE + CACHE_VIEW_MARGIN;
            tokio::time::sleep_until(settled.into()).await;
        }
        for batch in candidates.chunks(SWEEP_BATCH) {
            self.sweep_batch(batch, &holders, &pass, opts, fence, report)
                .await?;
        }
        self.write_pass(&PassState {
            running: false,
            ..pass
        })
        .await?;
        if let Err(e) = self.driver.delete(&touched_dir()).await {
            if !e.is_not_found() {
                tracing::warn!(error = %e, "could not clear the collector's touched marks");
            }
        }
        Ok(())
    }

    /// The revision and blob links of every repository holding any, from one listing of the
    /// repositories' tree (a few pages of keys on an object store, instead of listings per
    /// repository and folder). A repository with blob links and no manifest (uploads waiting
    /// for theirs; on an object store, also one whose manifests were all deleted, since no
    /// empty `_manifests` folder stays behind) is walked too: its links are what protect
    /// those blobs for the grace period.
    async fn repository_files(&self) -> Result<BTreeMap<String, RepoFiles>> {
        let files = match self.driver.list_files(&layout::repositories_dir()).await {
            Ok(files) => files,
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut repos: BTreeMap<String, RepoFiles> = BTreeMap::new();
        for file in &files {
            let parts: Vec<&str> = file.split('/').collect();
            // Repository name components never start with `_`: the first one that does is
            // the repository's own folder.
            let Some(i) = parts.iter().position(|p| p.starts_with('_')) else {
                continue;
            };
            if i == 0 {
                continue;
            }
            let repo = || parts[..i].join("/");
            let digest = |alg: &str, hex: &str| format!("{alg}:{hex}").parse::<Digest>().ok();
            match parts[i..] {
                ["_manifests", "revisions", alg, hex, "link"] => {
                    let entry = repos.entry(repo()).or_default();
                    entry.revisions.extend(digest(alg, hex));
                }
                ["_layers", alg, hex, "link"] => {
                    let entry = repos.entry(repo()).or_default();
                    entry.layers.extend(digest(alg, hex));
                }
                ["_manifests", ..] | ["_layers", ..] => {
                    repos.entry(repo()).or_default();
                }
                _ => {}
            }
        }
        Ok(repos)
    }

    async fn write_pass(&self, pass: &PassState) -> Result<()> {
        let body = serde_json::to_vec(pass).expect("pass state serializes");
        self.driver
            .put_content(&pass_path(), Bytes::from(body))
            .await?;
        Ok(())
    }

    /// Marks what `repo` keeps, deleting its collectable untagged manifests on the way.
    async fn mark_online(
        &self,
        repo: &RepositoryName,
        files: &RepoFiles,
        opts: &OnlineOptions,
        generation: u64,
        fence: &dyn PassFence,
    ) -> Result<RepoMark> {
        let revisions: BTreeSet<Digest> = files.revisions.iter().cloned().collect();
        let reads: Vec<_> = revisions.iter().map(|d| self.read_revision(d)).collect();
        let parsed: HashMap<Digest, Option<Manifest>> = futures_util::stream::iter(reads)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<Result<_>>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let mut mark = RepoMark::default();
        let mut kept: HashSet<Digest> = if opts.delete_untagged {
            self.tagged(repo).await?
        } else {
            revisions.iter().cloned().collect()
        };
        // Unparseable revisions are kept: what is not understood is not deleted.
        kept.extend(
            parsed
                .iter()
                .filter(|(_, m)| m.is_none())
                .map(|(d, _)| d.clone()),
        );
        grow_kept(&mut kept, &parsed);
        if opts.delete_untagged {
            // Young revisions first, so nothing they reach is deleted before they are seen.
            loop {
                let before = kept.len();
                let unkept: Vec<&Digest> =
                    revisions.iter().filter(|d| !kept.contains(*d)).collect();
                for d in unkept {
                    if self.revision_is_young(repo, d, opts.grace).await? {
                        kept.insert(d.clone());
                    }
                }
                grow_kept(&mut kept, &parsed);
                if kept.len() == before {
                    break;
                }
            }
            // Parents (indexes, referrers) before what they reach.
            let mut candidates: Vec<&Digest> =
                revisions.iter().filter(|d| !kept.contains(*d)).collect();
            candidates.sort_by_key(|d| {
                parsed
                    .get(*d)
                    .and_then(|m| m.as_ref())
                    .is_none_or(|m| m.manifests.is_empty() && m.subject.is_none())
            });
            for d in candidates {
                if kept.contains(d) {
                    continue;
                }
                let deleted = opts.dry_run
                    || self
                        .delete_untagged_revision(repo, d, opts.grace, generation, fence)
                        .await?;
                if deleted {
                    mark.manifests_deleted += 1;
                    tracing::info!(repository = %repo, manifest = %d, dry_run = opts.dry_run, "untagged manifest collected");
                } else {
                    kept.insert(d.clone());
                    grow_kept(&mut kept, &parsed);
                }
            }
        }
        for d in &kept {
            mark.marked.insert(d.clone());
            if let Some(Some(m)) = parsed.get(d) {
                mark.marked.extend(
                    m.config
                        .iter()
                        .chain(&m.layers)
                        .chain(&m.manifests)
                        .map(|b| b.digest.clone()),
                );
            }
        }
        Ok(mark)
    }

    /// A revision's parsed content; `None` when it cannot be parsed or is gone (then it
    /// references nothing).
    async fn read_revision(&self, d: &Digest) -> Result<(Digest, Option<Manifest>)> {
        match self.read_manifest(d).await {
            Ok(m) => Ok((d.clone(), manifest_format::parse_stored(&m.body).ok())),
            Err(RegistryError::ManifestUnknown(_)) => Ok((d.clone(), None)),
            Err(e) => Err(e),
        }
    }

    /// The digests `repo`'s tags point at now.
    async fn tagged(&self, repo: &RepositoryName) -> Result<HashSet<Digest>> {
        let mut tagged = HashSet::new();
        for tag in self.list_or_empty(&layout::tags_dir(repo.as_str())).await? {
            if let Some(d) = self
                .read_link(&layout::tag_current_link(repo.as_str(), &tag))
                .await?
            {
                tagged.insert(d);
            }
        }
        Ok(tagged)
    }

    async fn revision_is_young(
        &self,
        repo: &RepositoryName,
        d: &Digest,
        grace: Duration,
    ) -> Result<bool> {
        let link = layout::revision_link(repo.as_str(), d.algorithm(), d.hex());
        self.is_young(&link, grace).await
    }

    /// True when `path` was written within `grace` (or its age is unknown); false when absent.
    async fn is_young(&self, path: &str, grace: Duration) -> Result<bool> {
        match self.driver.stat_sealed(path).await {
            Ok(info) => Ok(info
                .modified
                .map(written_by)
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_none_or(|age| age < grace)),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes an untagged revision link unless a writer reached it during this pass.
    async fn delete_untagged_revision(
        &self,
        repo: &RepositoryName,
        d: &Digest,
        grace: Duration,
        generation: u64,
        fence: &dyn PassFence,
    ) -> Result<bool> {
        let intent = self.write_intent(d, fence).await?;
        let decided = async {
            if self.touched_in(d, generation).await?
                || self.revision_is_young(repo, d, grace).await?
                || self.tagged(repo).await?.contains(d)
            {
                return Ok(false);
            }
            let link = layout::revision_link(repo.as_str(), d.algorithm(), d.hex());
            let delete = self.driver.delete(link.trim_end_matches("/link"));
            before_expiry(fence, &intent, async {
                match delete.await {
                    Err(e) if e.is_not_found() => Ok(false),
                    other => other.map(|()| true),
                }
            })
            .await
        }
        .await;
        // Left to expire when the pass stopped: its delete may still be carried out.
        if decided.is_ok() {
            self.remove_intent(d).await;
        }
        decided
    }

    /// Sweeps a batch of unmarked blobs: those gone or young are left; intents are written
    /// for the others, each is re-checked (touched by a writer, young), and those still
    /// collectable are cleared from the blob-descriptor cache and deleted in bulk, links
    /// first, then data. Counts go into `report` as they are settled, so a pass that stops
    /// still tells what it did.
    async fn sweep_batch(
        &self,
        batch: &[Digest],
        holders: &HashMap<Digest, Vec<String>>,
        pass: &PassState,
        opts: &OnlineOptions,
        fence: &dyn PassFence,
        report: &mut OnlineReport,
    ) -> Result<()> {
        let holders_of = |d: &Digest| holders_of(holders, d);
        let looks: Vec<_> = batch
            .iter()
            .map(|d| self.first_look(d, holders_of(d), opts))
            .collect();
        let looks = futures_util::stream::iter(looks)
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut eligible: Vec<(&Digest, u64)> = Vec::new();
        for (d, look) in batch.iter().zip(looks) {
            match look? {
                Outcome::Deleted(size) => eligible.push((d, size)),
                Outcome::Young => report.kept_young += 1,
                Outcome::Touched => report.kept_touched += 1,
                Outcome::Gone => {}
            }
        }
        if opts.dry_run {
            for (d, size) in eligible {
                tracing::info!(blob = %d, dry_run = true, "blob eligible for deletion");
                report.blobs_deleted += 1;
                report.bytes_deleted += size;
            }
            return Ok(());
        }
        if eligible.is_empty() {
            return Ok(());
        }
        if !fence.is_held() {
            return Err(lost());
        }
        let intent = Intent {
            expires_ms: fence.expires_ms(),
        };
        let outcome = self
            .sweep_intended(&eligible, holders, &intent, pass, opts, fence, report)
            .await;
        match &outcome {
            Ok(()) => {
                let intents: Vec<String> = eligible.iter().map(|(d, _)| intent_path(d)).collect();
                if let Err(e) = self.driver.delete_many(&intents).await {
                    tracing::warn!(error = %e, "could not remove collector intents; they expire");
                }
            }
            // A delete the pass gave up on may still be carried out by the store: the intents
            // stay until they expire, and writers wait for them.
            Err(e) => tracing::warn!(error = %e, "sweep stopped; its intents are left to expire"),
        }
        outcome
    }

    /// The sweep of `eligible` once its intents are decided on: written, re-checked, deleted.
    #[allow(clippy::too_many_arguments)]
    async fn sweep_intended(
        &self,
        eligible: &[(&Digest, u64)],
        holders: &HashMap<Digest, Vec<String>>,
        intent: &Intent,
        pass: &PassState,
        opts: &OnlineOptions,
        fence: &dyn PassFence,
        report: &mut OnlineReport,
    ) -> Result<()> {
        let holders_of = |d: &Digest| holders_of(holders, d);
        let body = Bytes::from(serde_json::to_vec(intent).expect("intent serializes"));
        let writes: Vec<_> = eligible
            .iter()
            .map(|(d, _)| {
                let (path, body) = (intent_path(d), body.clone());
                async move { self.driver.put_content(&path, body).await }
            })
            .collect();
        let writes = futures_util::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for w in writes {
            w?;
        }
        let rechecks: Vec<_> = eligible
            .iter()
            .map(|(d, _)| self.recheck(d, holders_of(d), pass.generation, opts.grace))
            .collect();
        let rechecks = futures_util::stream::iter(rechecks)
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut doomed: Vec<(&Digest, u64)> = Vec::new();
        for (&(d, size), recheck) in eligible.iter().zip(rechecks) {
            match recheck? {
                Outcome::Deleted(_) => doomed.push((d, size)),
                Outcome::Young => report.kept_young += 1,
                Outcome::Touched => report.kept_touched += 1,
                Outcome::Gone => {}
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        check_fence(fence, intent)?;
        // A cache that still listed a blob would let a manifest reference data that is gone:
        // clear them first, or stop.
        if let Some(cache) = &self.cache {
            let clears: Vec<_> = doomed
                .iter()
                .map(|(d, _)| async move {
                    cache.clear(d, holders_of(d)).await.map_err(|e| {
                        RegistryError::Unavailable(format!(
                            "cannot clear {d} from the blob-descriptor cache ({e}); pass stopped"
                        ))
                    })
                })
                .collect();
            let clears = futures_util::stream::iter(clears)
                .buffer_unordered(CONCURRENCY)
                .collect::<Vec<_>>()
                .await;
            for c in clears {
                c?;
            }
        }
        let links: Vec<String> = doomed
            .iter()
            .flat_map(|(d, _)| {
                holders_of(d).iter().map(|repo| {
                    let link = layout::layer_link(repo, d.algorithm(), d.hex());
                    link.trim_end_matches("/link").to_string()
                })
            })
            .collect();
        let doomed_digests: Vec<&Digest> = doomed.iter().map(|(d, _)| *d).collect();
        if !links.is_empty() {
            let intent = self.extend_intents(&doomed_digests, intent, fence).await?;
            before_expiry(fence, &intent, self.driver.delete_many(&links)).await?;
        }
        for (d, _) in &doomed {
            self.manifests.remove(d);
        }
        let data: Vec<String> = doomed
            .iter()
            .map(|(d, _)| layout::blob_dir(d.algorithm(), d.hex()))
            .collect();
        let intent = self.extend_intents(&doomed_digests, intent, fence).await?;
        before_expiry(fence, &intent, self.driver.delete_many(&data)).await?;
        for (d, size) in doomed {
            tracing::info!(blob = %d, size, holders = ?holders_of(d), generation = pass.generation, "blob collected");
            report.blobs_deleted += 1;
            report.bytes_deleted += size;
        }
        Ok(())
    }

    /// The intents on `digests`, rewritten with the lease's current expiry when less than
    /// [`INTENT_REFRESH_BELOW_MS`] of `intent` is left (the lease renews; intents keep the
    /// expiry they were written with): a delete then starts with most of a lease's validity
    /// before it rather than the last second of it. Writers re-read an intent while they wait
    /// for it, so they wait for the new expiry.
    async fn extend_intents(
        &self,
        digests: &[&Digest],
        intent: &Intent,
        fence: &dyn PassFence,
    ) -> Result<Intent> {
        check_fence(fence, intent)?;
        let expires_ms = fence.expires_ms();
        if intent.expires_ms.saturating_sub(now_ms()) >= INTENT_REFRESH_BELOW_MS
            || expires_ms <= intent.expires_ms
        {
            return Ok(intent.clone());
        }
        let extended = Intent { expires_ms };
        let body = Bytes::from(serde_json::to_vec(&extended).expect("intent serializes"));
        let writes: Vec<_> = digests
            .iter()
            .map(|d| {
                let (path, body) = (intent_path(d), body.clone());
                async move { self.driver.put_content(&path, body).await }
            })
            .collect();
        let writes = futures_util::stream::iter(writes)
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for w in writes {
            w?;
        }
        Ok(extended)
    }

    /// A candidate's first check, before any intent: `Deleted` (with its size) when it may go.
    async fn first_look(
        &self,
        d: &Digest,
        holders: &[String],
        opts: &OnlineOptions,
    ) -> Result<Outcome> {
        let data = layout::blob_data(d.algorithm(), d.hex());
        let size = match self.driver.stat_sealed(&data).await {
            Ok(info) => info.size,
            Err(e) if e.is_not_found() => return Ok(Outcome::Gone),
            Err(e) => return Err(e.into()),
        };
        if self.is_young(&data, opts.grace).await? {
            return Ok(Outcome::Young);
        }
        if opts.dry_run && self.links_young(d, holders, opts.grace).await? {
            return Ok(Outcome::Young);
        }
        Ok(Outcome::Deleted(size))
    }

    /// A candidate's check after its intent is written: `Deleted` when it may go.
    async fn recheck(
        &self,
        d: &Digest,
        holders: &[String],
        generation: u64,
        grace: Duration,
    ) -> Result<Outcome> {
        if self.touched_in(d, generation).await? {
            return Ok(Outcome::Touched);
        }
        let data = layout::blob_data(d.algorithm(), d.hex());
        match self.driver.stat_sealed(&data).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(Outcome::Gone),
            Err(e) => return Err(e.into()),
        }
        if self.is_young(&data, grace).await? || self.links_young(d, holders, grace).await? {
            return Ok(Outcome::Young);
        }
        Ok(Outcome::Deleted(0))
    }

    /// True when a link to `d` in any of `holders` is younger than `grace`.
    async fn links_young(&self, d: &Digest, holders: &[String], grace: Duration) -> Result<bool> {
        for repo in holders {
            if self
                .is_young(&layout::layer_link(repo, d.algorithm(), d.hex()), grace)
                .await?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn write_intent(&self, d: &Digest, fence: &dyn PassFence) -> Result<Intent> {
        if !fence.is_held() {
            return Err(lost());
        }
        let intent = Intent {
            expires_ms: fence.expires_ms(),
        };
        let body = serde_json::to_vec(&intent).expect("intent serializes");
        self.driver
            .put_content(&intent_path(d), Bytes::from(body))
            .await?;
        Ok(intent)
    }

    /// Best effort: an intent left behind expires with the lease it was written under.
    async fn remove_intent(&self, d: &Digest) {
        if let Err(e) = self.driver.delete(&intent_path(d)).await {
            if !e.is_not_found() {
                tracing::warn!(digest = %d, error = %e, "could not remove a collector intent; it expires");
            }
        }
    }

    async fn touched_in(&self, d: &Digest, generation: u64) -> Result<bool> {
        match self.driver.stat_sealed(&touched_path(d, generation)).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Stops the pass unless the lease is still held and the intent still binds writers for a
/// while (writers ignore intents past their expiry).
fn check_fence(fence: &dyn PassFence, intent: &Intent) -> Result<()> {
    if fence.is_held() && now_ms() + INTENT_MARGIN_MS < intent.expires_ms {
        Ok(())
    } else {
        Err(lost())
    }
}

/// Runs a destructive storage call only while the lease is held and the intent binds
/// writers, and gives it until `INTENT_MARGIN_MS` before the intent expires: a call still
/// running then is abandoned and the pass stops, leaving its intents to expire. A delete is
/// never started, nor waited for, when writers may already be ignoring its intent.
async fn before_expiry<T>(
    fence: &dyn PassFence,
    intent: &Intent,
    call: impl std::future::Future<Output = std::result::Result<T, crate::storage::StorageError>>,
) -> Result<T> {
    check_fence(fence, intent)?;
    let budget = intent
        .expires_ms
        .saturating_sub(now_ms() + INTENT_MARGIN_MS);
    match tokio::time::timeout(Duration::from_millis(budget), call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(RegistryError::Unavailable(
            "a collector delete ran into its intents' expiry; pass stopped".into(),
        )),
    }
}

fn lost() -> RegistryError {
    RegistryError::Unavailable("garbage collection lease lost; pass stopped".into())
}

/// The repositories holding a link to `d`, as listed at the start of the pass.
fn holders_of<'a>(holders: &'a HashMap<Digest, Vec<String>>, d: &Digest) -> &'a [String] {
    holders.get(d).map_or(&[], Vec::as_slice)
}

/// Grows `kept` to a fixpoint: children of kept indexes, referrers of kept subjects.
fn grow_kept(kept: &mut HashSet<Digest>, parsed: &HashMap<Digest, Option<Manifest>>) {
    loop {
        let before = kept.len();
        for (d, m) in parsed {
            let Some(m) = m else { continue };
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_second_stamps_count_from_the_end_of_their_second() {
        let second = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(written_by(second), second + Duration::from_secs(1));
        let precise = second + Duration::from_millis(250);
        assert_eq!(written_by(precise), precise);
    }
}
