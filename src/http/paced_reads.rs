//! A connection stream whose reads start small and grow only while the client keeps the
//! socket full.
//!
//! hyper sizes a connection's read buffer after the reads it sees: a read that fills the
//! space it asked for doubles the next request (up to `max_buf_size`, which must hold the
//! largest request head), and the buffer keeps the largest size it reached. An upload that
//! trickles, or a server that falls a piece or two behind its clients, then holds 64 to
//! 128 KiB per connection for as long as the connection lasts. Capping each read keeps that
//! buffer near the cap; the cap doubles only after several reads in a row found more data
//! waiting than it let through (a fast upload, a large head), and halves again when reads
//! come back short.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// The smallest read cap, where every connection starts.
pub const MIN_READ: usize = 8 << 10;
/// The largest read cap, reached by a client that keeps sending faster than the server reads.
pub const MAX_READ: usize = 256 << 10;
/// Full reads in a row before the cap doubles (256 KiB queued at the smallest cap): what a
/// slow upload has queued when the server falls behind does not make that many, a fast
/// upload does within its first megabytes.
const GROW_AFTER: u8 = 32;

/// How much the next read may take, adapted to what the previous reads found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadPace {
    limit: usize,
    full_in_a_row: u8,
    /// Bytes read since the socket was last found empty.
    run: usize,
}

impl Default for ReadPace {
    fn default() -> Self {
        Self {
            limit: MIN_READ,
            full_in_a_row: 0,
            run: 0,
        }
    }
}

impl ReadPace {
    /// The cap of the next read.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Records a read that returned `n` bytes under the cap (0 at the end of the stream).
    pub fn read(&mut self, n: usize) {
        self.run = self.run.saturating_add(n);
        if n < self.limit {
            self.full_in_a_row = 0;
            return;
        }
        self.full_in_a_row += 1;
        if self.full_in_a_row >= GROW_AFTER {
            self.limit = (self.limit * 2).min(MAX_READ);
            self.full_in_a_row = 0;
        }
    }

    /// Records a read that found the socket empty: what was queued has been taken. A
    /// backlog that two reads of half the cap would have taken halves the cap.
    pub fn drained(&mut self) {
        if self.run > 0 && self.run < 2 * self.limit {
            self.limit = (self.limit / 2).max(MIN_READ);
        }
        self.run = 0;
        self.full_in_a_row = 0;
    }
}

/// `inner` with reads capped by a [`ReadPace`]; writes pass through.
pub struct PacedReads<S> {
    inner: S,
    pace: ReadPace,
}

impl<S> PacedReads<S> {
    /// Wraps `inner`, starting at the smallest cap.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            pace: ReadPace::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PacedReads<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let limit = this.pace.limit();
        let room = buf.remaining();
        if room <= limit {
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            match &polled {
                Poll::Ready(Ok(())) => this.pace.read(buf.filled().len() - before),
                Poll::Pending => this.pace.drained(),
                Poll::Ready(Err(_)) => {}
            }
            return polled;
        }
        let mut capped = buf.take(limit);
        let polled = Pin::new(&mut this.inner).poll_read(cx, &mut capped);
        if polled.is_pending() {
            this.pace.drained();
        }
        ready!(polled)?;
        let n = capped.filled().len();
        // SAFETY: the first `n` unfilled bytes of `buf` are the ones `capped` filled.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        this.pace.read(n);
        Poll::Ready(Ok(()))
    }
}

crate::http::write_through::write_through!(PacedReads);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_trickle_keeps_the_smallest_cap_and_a_flood_reaches_the_largest() {
        let mut pace = ReadPace::default();
        // 16 KiB pieces, up to eight queued: full reads, then an empty socket.
        for queued in [2, 4, 2, 2, 6, 16, 2, 0, 0] {
            for _ in 0..queued {
                pace.read(pace.limit());
            }
            pace.drained();
            assert_eq!(pace.limit(), MIN_READ);
        }
        let mut reads = 0;
        while pace.limit() < MAX_READ {
            pace.read(pace.limit());
            reads += 1;
            assert!(reads < 1000, "the cap never reached {MAX_READ}");
        }
        pace.read(pace.limit());
        assert_eq!(pace.limit(), MAX_READ);
        // A spurious wake-up finds nothing and changes nothing.
        pace.drained();
        pace.drained();
        assert_eq!(pace.limit(), MAX_READ);
        // Small backlogs bring it back down.
        for _ in 0..20 {
            pace.read(100);
            pace.drained();
        }
        assert_eq!(pace.limit(), MIN_READ);
    }

    #[tokio::test]
    async fn reads_are_capped_and_every_byte_arrives_in_order() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut paced = PacedReads::new(server);
        let mut received = Vec::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut largest = 0;
        for _ in 0..100_000 {
            let limit = paced.pace.limit();
            let n = paced.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= limit, "read {n} bytes under a cap of {limit}");
            largest = largest.max(n);
            received.extend_from_slice(&buf[..n]);
        }
        writer.await.unwrap();
        assert!(received == data, "bytes lost or reordered");
        assert!(largest > MIN_READ, "the cap never grew under a flood");
    }
}
