//! Limits against abuse (`http.limits`): request head size and count, header read timeout,
//! body idle timeout and the connection cap.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::config::LimitsConfig;

/// Error type of request bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits applied by the server, from `http.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Time to send the request head (and to finish a TLS handshake).
    pub header_read_timeout: Duration,
    /// Longest pause inside a request body.
    pub body_idle_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

impl From<&LimitsConfig> for Limits {
    fn from(c: &LimitsConfig) -> Self {
        Self {
            max_header_bytes: usize::try_from(c.maxheaderbytes).unwrap_or(usize::MAX),
            max_headers: c.maxheaders,
            header_read_timeout: c.headerreadtimeout,
            body_idle_timeout: c.bodyidletimeout,
            max_connections: c.maxconnections,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&LimitsConfig::default())
    }
}

/// Size of a request head as HTTP/1.1 would carry it.
pub fn head_size(method: &http::Method, uri: &http::Uri, headers: &HeaderMap) -> usize {
    let line = method.as_str().len() + displayed_len(uri) + 11;
    headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// How many bytes `value` takes when displayed, without building the text.
fn displayed_len(value: &impl std::fmt::Display) -> usize {
    struct Counter(usize);
    impl std::fmt::Write for Counter {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            self.0 += s.len();
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = std::fmt::Write::write_fmt(&mut counter, format_args!("{value}"));
    counter.0
}

/// A body that fails with `TimedOut` when no frame arrives for `timeout`.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; the clock starts at the first wait.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::info!(?timeout, "request body stalled; aborting it");
                        Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!("no request body data for {}s", timeout.as_secs()),
                        )))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out_and_a_flowing_one_does_not() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, BoxError>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let mut body = IdleTimeout::new(StreamBody::new(Box::pin(stream)), Duration::from_secs(5));
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "abc");
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"d"))))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(tx);
        });
        assert!(body.frame().await.unwrap().is_ok());
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("no request body data"), "{err}");
        sender.abort();
    }

    #[test]
    fn head_size_counts_line_and_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-a", "bb".parse().unwrap());
        let uri: http::Uri = "/v2/".parse().unwrap();
        assert_eq!(
            head_size(&http::Method::GET, &uri, &h),
            3 + 4 + 11 + 3 + 2 + 4
        );
        let uri: http::Uri = "http://example.com:5000/v2/a/tags/list?n=1"
            .parse()
            .unwrap();
        assert_eq!(displayed_len(&uri), uri.to_string().len());
    }
}
