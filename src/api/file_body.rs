//! Response bodies whose bytes the connection copies from a file in the kernel (`sendfile`).
//!
//! hyper writes heads and body frames itself, so the seam is the connection's stream: a
//! [`FileBody`] yields frames that point into one marker buffer and registers, in the same
//! order, the file region each stands for with its connection's [`SendfileQueue`]. The
//! stream under hyper (`http::sendfile`) recognises those frames among the slices hyper
//! writes and sends the registered region in their place. Only plain HTTP/1 connections carry
//! a queue: their frames reach the socket whole and in order, which TLS and HTTP/2 do not.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use crate::api::body::Body;
use crate::storage::FileRegion;

/// Largest frame a [`FileBody`] yields (the marker buffer's length). Only its address is
/// used: the pages are never touched, so it costs address space, not memory.
const MARKER_LEN: usize = 8 << 20;

/// The buffer file frames point into; zeroed allocation leaves its pages unmapped.
static MARKER: LazyLock<&'static [u8]> =
    LazyLock::new(|| Box::leak(vec![0u8; MARKER_LEN].into_boxed_slice()));

/// File regions a connection's response bodies have yielded and its stream has not yet sent,
/// in the order of their frames.
#[derive(Clone, Default)]
pub struct SendfileQueue(Arc<Mutex<VecDeque<FileRegion>>>);

impl SendfileQueue {
    /// The oldest region not fully sent, as (file, offset, len), if any.
    pub fn front(&self) -> Option<(Arc<std::fs::File>, u64, u64)> {
        let q = self.0.lock().unwrap_or_else(|e| e.into_inner());
        q.front().map(|r| (r.file.clone(), r.offset, r.len))
    }

    /// Forgets the oldest region: it has been sent.
    pub fn pop(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
    }

    fn push(&self, region: FileRegion) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(region);
    }
}

/// Where `slice` starts within a file frame, when it lies inside the marker buffer.
pub fn marker_offset(slice: &[u8]) -> Option<usize> {
    let start = MARKER.as_ptr() as usize;
    let at = slice.as_ptr() as usize;
    (!slice.is_empty() && at >= start && at + slice.len() <= start + MARKER_LEN).then(|| at - start)
}

/// A body of `region`'s bytes, sent by `queue`'s connection with `sendfile`.
pub fn body(region: FileRegion, queue: SendfileQueue) -> Body {
    http_body_util::BodyExt::boxed_unsync(FileBody { region, queue })
}

/// Yields marker frames for a file region, registering each frame's part of it.
struct FileBody {
    region: FileRegion,
    queue: SendfileQueue,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if this.region.len == 0 {
            return Poll::Ready(None);
        }
        let n = this.region.len.min(MARKER_LEN as u64);
        // Registered when yielded: hyper queues the frame at once, so the queue's order is
        // the order the frames reach the stream.
        this.queue.push(FileRegion {
            file: this.region.file.clone(),
            offset: this.region.offset,
            len: n,
        });
        this.region.offset += n;
        this.region.len -= n;
        let frame = Bytes::from_static(&MARKER[..n as usize]);
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.region.len == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.region.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slices_of_the_marker_are_file_frames() {
        assert_eq!(marker_offset(&MARKER[..10]), Some(0));
        assert_eq!(marker_offset(&MARKER[5..10]), Some(5));
        assert_eq!(marker_offset(&MARKER[..0]), None);
        let other = vec![0u8; 16];
        assert_eq!(marker_offset(&other), None);
        assert_eq!(marker_offset(b"HTTP/1.1 200 OK\r\n"), None);
    }
}
