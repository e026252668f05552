//! A [`StorageDriver`] decorator that times every call into
//! `registry_storage_action_seconds{driver,action}` (distribution's action
//! names) and opens a child span per call for traces.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tracing::Instrument;

use super::{ByteStream, FileInfo, FileRegion, FileWriter, StorageDriver, StorageError};
use crate::ops::metrics;

/// Wraps a driver; behaves exactly like it, plus metrics and spans.
pub struct InstrumentedDriver {
    inner: Arc<dyn StorageDriver>,
}

impl InstrumentedDriver {
    /// Instruments `inner`.
    pub fn new(inner: Arc<dyn StorageDriver>) -> Self {
        Self { inner }
    }

    async fn timed<T, F>(
        &self,
        action: &'static str,
        path: &str,
        call: F,
    ) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, StorageError>>,
    {
        timed(self.inner.name(), action, path, call).await
    }
}

/// Runs one storage call inside a span and records its duration; a missing
/// path is an answer, not a failure.
async fn timed<T, F>(
    driver: &'static str,
    action: &'static str,
    path: &str,
    call: F,
) -> Result<T, StorageError>
where
    F: Future<Output = Result<T, StorageError>>,
{
    let span = tracing::info_span!(
        "storage",
        otel.name = %format_args!("storage {action}"),
        otel.kind = "client",
        storage.driver = driver,
        storage.action = action,
        storage.path = path,
        error = tracing::field::Empty,
    );
    let started = Instant::now();
    let result = call.instrument(span.clone()).await;
    let failed = matches!(&result, Err(e) if !e.is_not_found());
    if let Err(e) = &result {
        span.record("error", tracing::field::display(e));
    }
    metrics::storage_action(driver, action, started.elapsed(), failed);
    result
}

#[async_trait::async_trait]
impl StorageDriver for InstrumentedDriver {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn reads_growing_files(&self) -> bool {
        self.inner.reads_growing_files()
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        self.timed("GetContent", path, self.inner.get_content(path))
            .await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.timed("PutContent", path, self.inner.put_content(path, content))
            .await
    }

    async fn put_content_lazy(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        self.timed(
            "PutContent",
            path,
            self.inner.put_content_lazy(path, content),
        )
        .await
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        self.timed(
            "PutContentIfAbsent",
            path,
            self.inner.put_content_if_absent(path, content),
        )
        .await
    }

    async fn sync(&self, paths: &[String]) -> Result<(), StorageError> {
        let first = paths.first().map(String::as_str).unwrap_or("/");
        self.timed("Sync", first, self.inner.sync(paths)).await
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.timed("Reader", path, self.inner.reader(path, offset, len))
            .await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        self.timed("Stat", path, self.inner.stat(path)).await
    }

    async fn stat_sealed(&self, path: &str) -> Result<FileInfo, StorageError> {
        self.timed("Stat", path, self.inner.stat_sealed(path)).await
    }

    async fn size_of(&self, path: &str) -> Result<Option<u64>, StorageError> {
        self.timed("Stat", path, self.inner.size_of(path)).await
    }

    async fn sealed_reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.timed("Reader", path, self.inner.sealed_reader(path, offset, len))
            .await
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        self.timed("List", path, self.inner.list(path)).await
    }

    // Forwarded so the driver's own listing is used, not the trait's one-stat-per-child default.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        self.timed("List", path, self.inner.list_entries(path))
            .await
    }

    async fn list_files(&self, path: &str) -> Result<Vec<String>, StorageError> {
        self.timed("Walk", path, self.inner.list_files(path)).await
    }

    async fn dirs_holding(
        &self,
        path: &str,
        marker: &str,
        skip: &str,
    ) -> Result<Vec<String>, StorageError> {
        let walk = self.inner.dirs_holding(path, marker, skip);
        self.timed("Walk", path, walk).await
    }

    async fn dirs_holding_after(
        &self,
        path: &str,
        marker: &str,
        skip: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let walk = self
            .inner
            .dirs_holding_after(path, marker, skip, after, limit);
        self.timed("Walk", path, walk).await
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.timed("Move", from, self.inner.move_to(from, to)).await
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        self.timed("Delete", path, self.inner.delete(path)).await
    }

    async fn delete_lazy(&self, path: &str) -> Result<(), StorageError> {
        self.timed("Delete", path, self.inner.delete_lazy(path))
            .await
    }

    async fn delete_known_tree(&self, dir: &str, files: &[String]) -> Result<(), StorageError> {
        self.timed("Delete", dir, self.inner.delete_known_tree(dir, files))
            .await
    }

    async fn delete_many(&self, paths: &[String]) -> Result<(), StorageError> {
        let first = paths.first().map_or("", String::as_str);
        self.timed("DeleteMany", first, self.inner.delete_many(paths))
            .await
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        let inner = self
            .timed("Writer", path, self.inner.writer(path, offset))
            .await?;
        Ok(Box::new(InstrumentedWriter {
            inner,
            driver: self.inner.name(),
            path: path.to_string(),
            written: 0,
        }))
    }

    async fn writer_noted(
        &self,
        path: &str,
        offset: u64,
        note: Option<&str>,
    ) -> Result<Box<dyn FileWriter>, StorageError> {
        let inner = self
            .timed("Writer", path, self.inner.writer_noted(path, offset, note))
            .await?;
        Ok(Box::new(InstrumentedWriter {
            inner,
            driver: self.inner.name(),
            path: path.to_string(),
            written: 0,
        }))
    }

    async fn prepare_append_noted(&self, path: &str) -> Result<Option<String>, StorageError> {
        self.timed("Writer", path, self.inner.prepare_append_noted(path))
            .await
    }

    async fn prepare_append(&self, path: &str) -> Result<(), StorageError> {
        self.timed("Writer", path, self.inner.prepare_append(path))
            .await
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        let inner = self
            .timed("Writer", path, self.inner.atomic_writer(path))
            .await?;
        Ok(Box::new(InstrumentedWriter {
            inner,
            driver: self.inner.name(),
            path: path.to_string(),
            written: 0,
        }))
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        self.timed("RedirectURL", path, self.inner.redirect_url(path))
            .await
    }

    async fn file_region(
        &self,
        path: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<FileRegion>, StorageError> {
        self.timed("Reader", path, self.inner.file_region(path, offset, len))
            .await
    }
}

/// Counts what goes through a writer (only uploads write through one); the
/// bytes count as pushed once committed.
struct InstrumentedWriter {
    inner: Box<dyn FileWriter>,
    driver: &'static str,
    path: String,
    written: u64,
}

#[async_trait::async_trait]
impl FileWriter for InstrumentedWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        let len = data.len() as u64;
        self.inner.write(data).await?;
        self.written += len;
        Ok(())
    }

    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        let Self {
            inner,
            driver,
            path,
            written,
        } = *self;
        timed(driver, "Commit", &path, inner.commit()).await?;
        metrics::bytes_pushed(written);
        Ok(())
    }

    async fn commit_noted(self: Box<Self>) -> Result<Option<String>, StorageError> {
        let Self {
            inner,
            driver,
            path,
            written,
        } = *self;
        let note = timed(driver, "Commit", &path, inner.commit_noted()).await?;
        metrics::bytes_pushed(written);
        Ok(note)
    }

    async fn commit_to(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let Self {
            inner,
            driver,
            path,
            written,
        } = *self;
        timed(driver, "Commit", &path, inner.commit_to(to)).await?;
        metrics::bytes_pushed(written);
        Ok(())
    }

    async fn commit_to_leaving_source(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let Self {
            inner,
            driver,
            path,
            written,
        } = *self;
        timed(driver, "Commit", &path, inner.commit_to_leaving_source(to)).await?;
        metrics::bytes_pushed(written);
        Ok(())
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        let Self {
            inner,
            driver,
            path,
            ..
        } = *self;
        timed(driver, "Cancel", &path, inner.cancel()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::drivers::inmemory::InMemoryDriver;

    #[tokio::test]
    async fn behaves_like_the_driver_and_counts_actions() {
        let driver = InstrumentedDriver::new(Arc::new(InMemoryDriver::new()));
        assert_eq!(driver.name(), "inmemory");
        driver
            .put_content("/a/b", Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(&driver.get_content("/a/b").await.unwrap()[..], b"hello");
        assert!(driver.stat("/missing").await.unwrap_err().is_not_found());
        let mut w = driver.writer("/a/up", 0).await.unwrap();
        w.write(Bytes::from_static(b"12345")).await.unwrap();
        assert_eq!(w.size(), 5);
        w.commit().await.unwrap();
        assert_eq!(driver.stat("/a/up").await.unwrap().size, 5);
        let mut w = driver.atomic_writer("/a/blob").await.unwrap();
        w.write(Bytes::from_static(b"xyz")).await.unwrap();
        w.commit().await.unwrap();
        assert_eq!(&driver.get_content("/a/blob").await.unwrap()[..], b"xyz");
        let text = String::from_utf8(metrics::render()).unwrap();
        for action in ["PutContent", "GetContent", "Stat", "Writer", "Commit"] {
            let needle = format!(
                "registry_storage_action_seconds_count{{action=\"{action}\",driver=\"inmemory\"}}"
            );
            assert!(text.contains(&needle), "missing {needle}");
        }
        assert!(!text.contains(r#"wharf_storage_errors_total{action="Stat",driver="inmemory"}"#));
    }

    /// The `Stat` count of `driver="inmemory"` in the rendered metrics.
    fn stat_count() -> f64 {
        let text = String::from_utf8(metrics::render()).unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(
                    r#"registry_storage_action_seconds_count{action="Stat",driver="inmemory"} "#,
                )
            })
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn list_entries_is_the_drivers_own() {
        let driver = InstrumentedDriver::new(Arc::new(InMemoryDriver::new()));
        for name in ["/d/x", "/d/y/z", "/d/w"] {
            driver.put_content(name, Bytes::new()).await.unwrap();
        }
        let before = stat_count();
        let mut entries = driver.list_entries("/d").await.unwrap();
        entries.sort();
        assert_eq!(
            entries,
            vec![
                ("w".to_string(), false),
                ("x".to_string(), false),
                ("y".to_string(), true)
            ]
        );
        // One listing, no stat per child.
        assert_eq!(stat_count(), before);
    }
}
