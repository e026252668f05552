//! Google Cloud Storage (and fake-gcs-server), over the JSON API.
//!
//! Object names are distribution's (`pathToKey`): `<rootdirectory>/` then the driver path
//! without its leading `/`; so a bucket written by registry:2 is served as is, and the
//! reverse. `STORAGE_EMULATOR_HOST` points the driver at an emulator, as it does Google's
//! client libraries (and so registry:2).
//!
//! A PATCH on GCS, in order:
//! 1. [`StorageDriver::writer`] reads the upload object's size, generation and component
//!    count: the size must be the offset, else `OffsetMismatch`.
//! 2. Each write buffers the body; the first full chunk opens a resumable upload session for
//!    one part object in the driver's scratch area (`<rootdirectory>.wharf-scratch/parts/`),
//!    and every full chunk is sent into it.
//! 3. The commit finishes the part, claims the generation it started from (a claim object
//!    created only if absent), then composes the old object and the part into the upload's
//!    name, conditional on that generation, and deletes the part. An upload object that
//!    would pass 1,024 components is first copied to a single one (see `writer`).
//!
//! The closing PUT commits the same way, claims the new generation, then rewrites the upload
//! to the blob's name server-side (conditional on that generation) and deletes it.
//!
//! Every call has timeouts, bounded retries with backoff on throttling, 5xx and connection
//! failures, a metric and a `tracing` event.
//!
//! Modules, each importing only those after it: `purge` (stale scratch objects), `writer`
//! (appends and atomic writes),
//! `client` (every JSON API call), `auth` (tokens and URL signing keys), `sign` (signed URLs
//! and name encoding), `settings` (configuration to settings: the only one that reads
//! `config`).

mod auth;
mod client;
mod purge;
mod settings;
mod sign;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::storage::drivers::bulk_delete::{delete_each, names_in_folder};
use crate::storage::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError};
use client::Client;
use writer::GcsWriter;

pub use settings::{GcsSettings, GcsSetupError, KeySource, GOOGLE_ENDPOINT};

/// Driver over one bucket.
#[derive(Clone)]
pub struct GcsDriver {
    client: Arc<Client>,
    chunk: usize,
}

impl GcsDriver {
    /// Builds the client (reading the service-account key); nothing is sent until the first
    /// call.
    pub fn new(settings: &GcsSettings) -> Result<Self, GcsSetupError> {
        Ok(GcsDriver {
            client: Arc::new(Client::new(settings)?),
            chunk: settings.chunk_size,
        })
    }

    /// Deletes what writers on nodes that died mid-request left in the scratch area (open
    /// upload sessions, parts, claims) written more than `age` ago; returns how many objects
    /// were (or, with `dry_run`, would be) deleted.
    pub async fn purge_scratch(&self, age: Duration, dry_run: bool) -> Result<usize, StorageError> {
        purge::purge_scratch(&self.client, crate::storage::stale_before(age), dry_run).await
    }

    /// Deletes objects, concurrently; ones already gone are skipped.
    async fn delete_objects(&self, names: Vec<String>, path: &str) -> Result<(), StorageError> {
        let client = &self.client;
        delete_each(
            names,
            |n| async move { client.delete(&n, path, None).await },
        )
        .await
    }
}

#[async_trait::async_trait]
impl StorageDriver for GcsDriver {
    fn name(&self) -> &'static str {
        "gcs"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let name = self.client.name(path)?;
        self.client.get_all(&name, path).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        let name = self.client.name(path)?;
        self.client.upload(&name, path, content, None).await?;
        Ok(())
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let name = self.client.name(path)?;
        match self.client.upload(&name, path, content, Some(0)).await {
            Ok(_) => Ok(true),
            Err(StorageError::Busy(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let name = self.client.name(path)?;
        // A file here is one object, open for appends or not: the file-only stat sizes every
        // read, and a missing file costs no listing to tell it from a folder.
        let Some(range) = crate::storage::object_range(self, path, (offset, len), true).await?
        else {
            return Ok(Box::pin(futures_util::stream::empty()));
        };
        self.client.get(&name, path, range).await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let name = self.client.name(path)?;
        if !name.is_empty() && !name.ends_with('/') {
            match self.client.metadata(&name, path).await {
                Ok(object) => {
                    return Ok(FileInfo {
                        size: object.size(),
                        is_dir: false,
                        modified: object.modified(),
                    })
                }
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // A "directory" is any object under the prefix.
        if self
            .client
            .any_under(&self.client.dir_prefix(path)?, path)
            .await?
        {
            Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            })
        } else {
            Err(StorageError::NotFound(path.to_string()))
        }
    }

    // One metadata request: a missing sealed file needs no listing to tell it from a folder.
    async fn stat_sealed(&self, path: &str) -> Result<FileInfo, StorageError> {
        let name = self.client.name(path)?;
        if name.is_empty() || name.ends_with('/') {
            return Err(StorageError::NotFound(path.to_string()));
        }
        let object = self.client.metadata(&name, path).await?;
        Ok(FileInfo {
            size: object.size(),
            is_dir: false,
            modified: object.modified(),
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let entries = self.list_entries(path).await?;
        Ok(entries.into_iter().map(|(name, _)| name).collect())
    }

    // The delimited listing says which children are directories: no per-child calls.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        let prefix = self.client.dir_prefix(path)?;
        let (objects, dirs) = self.client.list(&prefix, true, path).await?;
        let strip = |n: &str| n.strip_prefix(prefix.as_str()).map(str::to_string);
        let dirs = dirs
            .iter()
            .filter_map(|d| strip(d))
            .map(|d| (d.trim_end_matches('/').to_string(), true));
        let files = objects
            .iter()
            .filter_map(|o| strip(&o.name))
            .map(|f| (f, false));
        let scratch = self.client.scratch_entry();
        let mut entries: Vec<(String, bool)> = dirs
            .chain(files)
            .filter(|(n, _)| !n.is_empty() && (path != "/" || Some(n.as_str()) != scratch))
            .collect();
        if entries.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        // A name both an object and a prefix is reported once, as a directory.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(entries)
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (source, target) = (self.client.name(from)?, self.client.name(to)?);
        self.client.rewrite(&source, &target, from, None).await?;
        match self.client.delete(&source, from, None).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        writer::forget_claims(&self.client, &source, from).await
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let name = self.client.name(path)?;
        let prefix = self.client.dir_prefix(path)?;
        let scratch = self.client.scratch_prefix();
        // Everything at or under the path: listing by the bare name also returns siblings
        // that merely start with it (`v1` and `v10`), which are left alone.
        let (objects, _) = self.client.list(&name, false, path).await?;
        let doomed: Vec<String> = objects
            .into_iter()
            .map(|o| o.name)
            .filter(|n| (*n == name || n.starts_with(prefix.as_str())) && !n.starts_with(&scratch))
            .collect();
        if doomed.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        self.delete_objects(doomed, path).await?;
        writer::forget_claims(&self.client, &name, path).await
    }

    // The known files, then the append claims of everything under the folder (one listing
    // of the scratch area, whose claims are not known).
    async fn delete_known_tree(&self, dir: &str, files: &[String]) -> Result<(), StorageError> {
        let name = self.client.name(dir)?;
        let prefix = self.client.dir_prefix(dir)?;
        let names = names_in_folder(&prefix, files, |f| self.client.name(f))?;
        self.delete_objects(names, dir).await?;
        writer::forget_claims(&self.client, &name, dir).await
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(
            GcsWriter::append(self.client.clone(), path, offset, self.chunk).await?,
        ))
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(GcsWriter::atomic(
            self.client.clone(),
            path,
            self.chunk,
        )?))
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        let name = self.client.name(path)?;
        self.client.signed_url(&name, path)
    }
}
