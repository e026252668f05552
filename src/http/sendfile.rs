//! A TCP stream that sends file frames ([`crate::api::file_body`]) with `sendfile(2)`.
//!
//! hyper writes a response's head from its own buffer and queues body frames as they are
//! (its vectored write strategy), so each write call hands this stream the head's bytes and
//! the frames in order. Ordinary slices are written as they come; a slice inside the marker
//! buffer stands for the oldest region in the connection's queue and is replaced by that
//! region's bytes, copied from the page cache to the socket without passing through memory
//! of this process. A write never mixes the two, so heads go out before the file bytes they
//! announce.

use std::io::{self, IoSlice};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::api::file_body::{marker_offset, SendfileQueue};

/// A connection's TCP stream plus the queue its file bodies register regions with.
pub struct SendfileStream {
    inner: TcpStream,
    queue: SendfileQueue,
    /// Bytes of the queue's oldest region already sent.
    sent: u64,
}

impl SendfileStream {
    /// Wraps `inner`; `queue` is handed to the connection's requests.
    pub fn new(inner: TcpStream, queue: SendfileQueue) -> Self {
        Self {
            inner,
            queue,
            sent: 0,
        }
    }

    /// Sends the part of the oldest region that `slice` (at `at` within its frame) stands for.
    fn poll_send_file(
        &mut self,
        cx: &mut Context<'_>,
        at: usize,
        slice: &[u8],
    ) -> Poll<io::Result<usize>> {
        let Some((file, offset, len)) = self.queue.front() else {
            return Poll::Ready(Err(io::Error::other(
                "file frame without a registered region",
            )));
        };
        // hyper resumes a frame where the last write stopped: anything else would send the
        // wrong bytes, so the connection fails instead.
        if at as u64 != self.sent || slice.len() as u64 != len - self.sent {
            return Poll::Ready(Err(io::Error::other(
                "file frame out of step with its registered region",
            )));
        }
        loop {
            ready!(self.inner.poll_write_ready(cx))?;
            let mut from = offset + self.sent;
            let sock = &self.inner;
            let sent = sock.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(sock.as_fd(), file.as_fd(), Some(&mut from), slice.len())
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shorter than the region being sent",
                    )))
                }
                Ok(n) => {
                    self.sent += n as u64;
                    if self.sent == len {
                        self.queue.pop();
                        self.sent = 0;
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncRead for SendfileStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for SendfileStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match marker_offset(buf) {
            Some(at) => this.poll_send_file(cx, at, buf),
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let bufs = {
            let skip = bufs.iter().take_while(|b| b.is_empty()).count();
            &bufs[skip..]
        };
        let Some(first) = bufs.first() else {
            return Poll::Ready(Ok(0));
        };
        if let Some(at) = marker_offset(first) {
            return this.poll_send_file(cx, at, first);
        }
        // Ordinary bytes up to the first file frame, in one writev.
        let plain = bufs
            .iter()
            .take_while(|b| b.is_empty() || marker_offset(b).is_none())
            .count();
        Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs[..plain])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
