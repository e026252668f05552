//! Azure Blob Storage (and Azurite), authorized with the account's Shared Key or with
//! Microsoft Entra ID tokens (`credentials.type: client_secret` or `default_credentials`).
//!
//! Blob names are distribution's: with a distribution 2.8 config (no `credentials`) the
//! driver path itself (`/docker/registry/v2/...`), with a distribution 3 config
//! `<rootdirectory>/docker/registry/v2/...` without the leading `/`; so a container written
//! by registry:2 is served as is, and the reverse.
//!
//! A PATCH on Azure, in order:
//! 1. [`StorageDriver::writer`] reads the upload's committed block list (`Get Block List`):
//!    its size must be the offset, else `OffsetMismatch`.
//! 2. Each write buffers the body and stages every full block (`Put Block`).
//! 3. The commit names the old blocks then the new in one `Put Block List`, conditional on
//!    the entity tag the writer started from: of two writers racing at one offset only the
//!    first to commit succeeds.
//!
//! The closing PUT commits the same way, then copies the upload to the blob's name
//! server-side (`Copy Blob`, conditional on the entity tag just committed).
//!
//! Every call is signed, has timeouts, bounded retries with backoff on throttling, 5xx and
//! connection failures, a metric and a `tracing` event.
//!
//! Modules, each importing only those after it: `writer` (appends and atomic writes),
//! `client` (every Blob service call), `token` (Entra ID tokens and their cache),
//! `certificate` (client certificate files and the assertions signed with them), `xml`
//! (answers read), `sign` (Shared Key, SAS and user delegation SAS), `http` (the HTTP client),
//! `settings` (configuration to settings: the only one that reads `config`).

mod certificate;
mod client;
mod http;
mod settings;
mod sign;
mod token;
mod writer;
mod xml;

use std::sync::Arc;

use bytes::Bytes;

use crate::storage::drivers::bulk_delete::{delete_each, names_in_folder};
use crate::storage::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError};
use client::{Client, Condition};
use writer::AzureWriter;

pub use settings::{AzureAuth, AzureSettings, AzureSetupError};
pub use writer::BLOCK_SIZE;

/// Driver over one container.
#[derive(Clone)]
pub struct AzureDriver {
    client: Arc<Client>,
}

impl AzureDriver {
    /// Builds the client; nothing is sent until the first call (which creates the container
    /// when it is missing).
    pub fn new(settings: &AzureSettings) -> Result<Self, AzureSetupError> {
        Ok(AzureDriver {
            client: Arc::new(Client::new(settings)?),
        })
    }

    /// Deletes the named blobs, several at once.
    async fn delete_blobs(&self, names: Vec<String>, path: &str) -> Result<(), StorageError> {
        let client = &self.client;
        delete_each(names, |n| async move {
            client.delete(&n, path, Condition::Always).await
        })
        .await
    }
}

/// With Entra ID credentials, asks for a first token so that a configuration that cannot work
/// stops start-up with the reason: no credential source available here (each one tried is
/// named), or the identity provider refusing (a wrong secret). An identity provider that does
/// not answer is only logged: requests answer 503 until it does.
pub async fn check_credentials(settings: &AzureSettings) -> Result<(), AzureSetupError> {
    let env = |name: &str| std::env::var(name).ok();
    let Some(sources) = client::token_sources(&settings.auth, &env) else {
        return Ok(());
    };
    for source in &sources {
        if let token::TokenSource::ClientCertificate {
            certificate: Err(why),
            ..
        } = source
        {
            // azidentity moves on to the next source; say why this one is passed over.
            tracing::warn!(
                target: "wharf::storage::azure",
                source = %source.describe(), reason = %why,
                "client certificate unusable; default credentials try the next source"
            );
        }
    }
    match token::TokenCredential::new(sources).token().await {
        Ok(_) => Ok(()),
        Err(token::TokenError::Failed(why)) => {
            tracing::warn!(
                target: "wharf::storage::azure",
                reason = %why,
                "no storage access token yet; storage requests answer 503 until one is had"
            );
            Ok(())
        }
        Err(e) => Err(AzureSetupError(format!("credentials: {e}"))),
    }
}

#[async_trait::async_trait]
impl StorageDriver for AzureDriver {
    fn name(&self) -> &'static str {
        "azure"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let name = self.client.name(path)?;
        self.client.get_all(&name, path).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        let name = self.client.name(path)?;
        self.client
            .put_blob(&name, path, content, Condition::Always)
            .await
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let name = self.client.name(path)?;
        match self
            .client
            .put_blob(&name, path, content, Condition::Absent)
            .await
        {
            Ok(()) => Ok(true),
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
        // A file here is one blob, open for appends or not: the file-only stat sizes every
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
            match self.client.properties(&name, path).await {
                Ok(props) => {
                    return Ok(FileInfo {
                        size: props.size,
                        is_dir: false,
                        modified: props.modified,
                    })
                }
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // A "directory" is any blob under the prefix.
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

    // One properties request: a missing sealed file needs no listing to tell it from a folder.
    async fn stat_sealed(&self, path: &str) -> Result<FileInfo, StorageError> {
        let name = self.client.name(path)?;
        if name.is_empty() || name.ends_with('/') {
            return Err(StorageError::NotFound(path.to_string()));
        }
        let props = self.client.properties(&name, path).await?;
        Ok(FileInfo {
            size: props.size,
            is_dir: false,
            modified: props.modified,
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let entries = self.list_entries(path).await?;
        Ok(entries.into_iter().map(|(name, _)| name).collect())
    }

    // The delimited listing says which children are directories: no per-child calls.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        let prefix = self.client.dir_prefix(path)?;
        let (blobs, dirs) = self.client.list(&prefix, Some("/"), path).await?;
        let strip = |n: &str| n.strip_prefix(prefix.as_str()).map(str::to_string);
        let dirs = dirs
            .iter()
            .filter_map(|d| strip(d))
            .map(|d| (d.trim_end_matches('/').to_string(), true));
        let files = blobs
            .iter()
            .filter_map(|b| strip(&b.name))
            .map(|f| (f, false));
        let mut entries: Vec<(String, bool)> =
            dirs.chain(files).filter(|(n, _)| !n.is_empty()).collect();
        if entries.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        // A name both a blob and a prefix is reported once, as a directory.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(entries)
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (source, target) = (self.client.name(from)?, self.client.name(to)?);
        self.client.copy(&source, &target, from, None).await?;
        match self.client.delete(&source, from, Condition::Always).await {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let name = self.client.name(path)?;
        let prefix = self.client.dir_prefix(path)?;
        // Everything at or under the path: listing by the bare name also returns siblings
        // that merely start with it (`v1` and `v10`), which are left alone.
        let (blobs, _) = self.client.list(&name, None, path).await?;
        let doomed: Vec<String> = blobs
            .into_iter()
            .map(|b| b.name)
            .filter(|n| *n == name || n.starts_with(prefix.as_str()))
            .collect();
        if doomed.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        self.delete_blobs(doomed, path).await
    }

    // A file is one block blob with nothing kept beside it: the known files are the tree.
    async fn delete_known_tree(&self, dir: &str, files: &[String]) -> Result<(), StorageError> {
        let prefix = self.client.dir_prefix(dir)?;
        let names = names_in_folder(&prefix, files, |f| self.client.name(f))?;
        self.delete_blobs(names, dir).await
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(
            AzureWriter::append(self.client.clone(), path, offset).await?,
        ))
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(AzureWriter::atomic(self.client.clone(), path)?))
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        let name = self.client.name(path)?;
        Ok(Some(self.client.signed_url(&name, path).await?))
    }
}
