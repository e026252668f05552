//! A read buffer under a TLS connection. rustls asks its transport for at most 4 KiB at a
//! time (its record buffer grows by 4 KiB per read and shrinks again once drained), so an
//! upload over TLS cost four or more `read` calls per 16 KiB record. Reads into this buffer
//! take up to [`READ_AHEAD`] bytes in one call; rustls then copies its pieces from memory.
//! The buffer lives only while a connection streams: until a read fills all rustls asked
//! for, reads go straight into rustls' buffer, so a connection of small requests allocates
//! none; it is dropped whenever a read finds nothing waiting, and when it runs empty after a
//! read that did not fill half of it, so an idle or trickling connection holds none.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

/// Bytes read from the socket per call while a connection streams.
pub const READ_AHEAD: usize = 256 << 10;

/// `inner` with its reads buffered (see the module comment); writes pass straight through.
pub struct ReadAhead<T> {
    inner: T,
    /// Read but not yet handed out; never zero-filled before a read.
    buf: BytesMut,
    /// Bytes the last read from `inner` returned.
    last_fill: usize,
    /// Reads go through `buf` while set: set when a direct read fills all it was asked for,
    /// cleared when `buf` runs empty after a short read.
    streaming: bool,
}

impl<T> ReadAhead<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
            last_fill: 0,
            streaming: false,
        }
    }

    /// Moves buffered bytes into `out`; frees the buffer when it runs empty after a short read.
    fn drain_into(&mut self, out: &mut ReadBuf<'_>) {
        let n = out.remaining().min(self.buf.len());
        out.put_slice(&self.buf[..n]);
        self.buf.advance(n);
        if self.buf.is_empty() && self.last_fill < READ_AHEAD / 2 {
            self.buf = BytesMut::new();
            self.streaming = false;
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.buf.is_empty() {
            this.drain_into(out);
            return Poll::Ready(Ok(()));
        }
        if out.remaining() >= READ_AHEAD || !this.streaming {
            let wanted = out.remaining();
            let before = out.filled().len();
            let read = Pin::new(&mut this.inner).poll_read(cx, out);
            if let Poll::Ready(Ok(())) = read {
                // All it asked for: more is likely waiting behind it.
                this.streaming = out.filled().len() - before == wanted;
            }
            return read;
        }
        this.buf.reserve(READ_AHEAD);
        // `read_buf` fills spare capacity without zeroing it first; it keeps no state of its
        // own, so polling a fresh one each time is the same as keeping one.
        let read = pin!(this.inner.read_buf(&mut this.buf));
        match read.poll(cx) {
            Poll::Ready(filled) => this.last_fill = filled?,
            Poll::Pending => {
                // Nothing arrived: a connection waiting for its next request holds no buffer.
                this.buf = BytesMut::new();
                return Poll::Pending;
            }
        }
        this.drain_into(out);
        Poll::Ready(Ok(()))
    }
}

crate::http::write_through::write_through!(ReadAhead);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn small_reads_see_every_byte_in_order_and_a_drained_short_read_keeps_no_buffer() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let mut reader = ReadAhead::new(server);
        let data: Vec<u8> = (0..900_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let mut client = client;
            for piece in sent.chunks(70_001) {
                client.write_all(piece).await.unwrap();
            }
            client
        });
        let mut got = Vec::new();
        let mut piece = [0u8; 4096];
        while got.len() < data.len() {
            let n = reader.read(&mut piece).await.unwrap();
            assert_ne!(n, 0, "early end of stream");
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, data);
        let mut client = writer.await.unwrap();
        client.write_all(b"tail").await.unwrap();
        let n = reader.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"tail");
        assert_eq!(
            reader.buf.capacity(),
            0,
            "a short read, drained, keeps no buffer"
        );
        assert!(!reader.streaming, "a short read ends a stream");
        // A read that finds nothing waiting holds no buffer either.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut space = [0u8; 4096];
        let mut out = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut reader)
            .poll_read(&mut cx, &mut out)
            .is_pending());
        assert_eq!(
            reader.buf.capacity(),
            0,
            "an idle connection keeps no buffer"
        );
        drop(client);
        assert_eq!(reader.read(&mut piece).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn small_requests_go_straight_through_and_a_stream_reads_ahead() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut reader = ReadAhead::new(server);
        let mut piece = [0u8; 4096];
        // A request smaller than what rustls asks for: read directly, no buffer allocated.
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let n = reader.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(reader.buf.capacity(), 0, "no buffer for a small request");
        // A body: the first read fills all that was asked, the next reads ahead.
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        client.write_all(&body).await.unwrap();
        let mut got = Vec::new();
        let n = reader.read(&mut piece).await.unwrap();
        got.extend_from_slice(&piece[..n]);
        assert_eq!(n, piece.len());
        assert_eq!(reader.buf.capacity(), 0, "the first read is direct");
        let n = reader.read(&mut piece).await.unwrap();
        got.extend_from_slice(&piece[..n]);
        assert!(
            reader.buf.len() >= READ_AHEAD - 2 * piece.len(),
            "the next read takes up to {READ_AHEAD} bytes at once: {} buffered",
            reader.buf.len()
        );
        while got.len() < body.len() {
            let n = reader.read(&mut piece).await.unwrap();
            assert_ne!(n, 0, "early end of stream");
            got.extend_from_slice(&piece[..n]);
        }
        assert_eq!(got, body);
        assert_eq!(reader.buf.capacity(), 0, "drained after a short read");
    }
}
