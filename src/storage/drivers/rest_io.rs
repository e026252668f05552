//! Byte-level pieces the REST object-store clients (Azure, GCS, Swift) share: what a failed
//! call without an answer was, an answer body as a driver stream bounded by idle time, the
//! `bytes=` value of a ranged read, a small object collected into memory, the I/O error a
//! driver call reports, and bounded retries with backoff.

use std::future::Future;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use rand::Rng;

use crate::error_chain::error_chain;
use crate::storage::{ByteStream, StorageError};

/// The kind of "no answer" a hyper failure was, and its message with every cause.
pub(crate) fn transport_failure(
    err: &hyper_util::client::legacy::Error,
) -> (std::io::ErrorKind, String) {
    let kind = if err.is_connect() {
        std::io::ErrorKind::ConnectionRefused
    } else {
        std::io::ErrorKind::ConnectionAborted
    };
    (kind, error_chain(err))
}

/// An I/O error of `op` on `path`.
pub(crate) fn io_error(op: &'static str, path: &str, message: impl ToString) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_string(),
        source: std::io::Error::other(message.to_string()),
    }
}

/// A response body as a driver stream; a read error, or no data for `idle`, ends it with an
/// error.
pub(crate) fn body_stream(path: &str, body: Incoming, idle: Duration) -> ByteStream {
    let path = path.to_string();
    let frames = BodyStream::new(body);
    Box::pin(futures_util::stream::unfold(
        Some((frames, path)),
        move |state| async move {
            let (mut frames, path) = state?;
            loop {
                let next = tokio::time::timeout(idle, frames.next()).await;
                let failure = match next {
                    Ok(None) => return None,
                    Ok(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) if data.is_empty() => continue,
                        Ok(data) => return Some((Ok(data), Some((frames, path)))),
                        // Trailers: nothing to pass on.
                        Err(_) => continue,
                    },
                    Ok(Some(Err(e))) => {
                        std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string())
                    }
                    Err(_) => std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no data for {idle:?}"),
                    ),
                };
                let err = StorageError::Io {
                    op: "read",
                    path,
                    source: failure,
                };
                return Some((Err(err), None));
            }
        },
    ))
}

/// The `bytes=` value (of `Range`, or Azure's `x-ms-range`) of `len` bytes from `offset`, to
/// the end when `len` is `None`.
pub(crate) fn range_value(offset: u64, len: Option<u64>) -> String {
    match len {
        Some(len) => format!("bytes={offset}-{}", offset + len - 1),
        None => format!("bytes={offset}-"),
    }
}

/// A whole (small) object's stream collected into memory.
pub(crate) async fn collect(mut stream: ByteStream) -> Result<Bytes, StorageError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(buf.freeze())
}

/// The longest wait between two attempts of a call.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs `send` until it succeeds, fails in a way `transient` says will not change, or
/// `max_attempts` are spent; waits exponentially longer from `first_delay` (with up to a
/// quarter of jitter, at most 5 s) between attempts.
pub(crate) async fn retrying<T, F, Fut>(
    system: &'static str,
    op: &'static str,
    max_attempts: u32,
    first_delay: Duration,
    transient: impl Fn(&F) -> bool,
    mut send: impl FnMut() -> Fut,
) -> Result<T, F>
where
    F: std::fmt::Debug,
    Fut: Future<Output = Result<T, F>>,
{
    let mut attempt = 1;
    loop {
        match send().await {
            Err(f) if transient(&f) && attempt < max_attempts => {
                let base = first_delay.saturating_mul(1 << (attempt - 1).min(16));
                let jitter = rand::thread_rng().gen_range(0..=base.as_millis() as u64 / 4);
                let delay = (base + Duration::from_millis(jitter)).min(MAX_BACKOFF);
                tracing::debug!(
                    target: "wharf::storage",
                    system, op, attempt, failure = ?f, "retrying storage call"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_values() {
        assert_eq!(range_value(0, None), "bytes=0-");
        assert_eq!(range_value(10, Some(5)), "bytes=10-14");
        assert_eq!(range_value(7, Some(1)), "bytes=7-7");
    }
}
