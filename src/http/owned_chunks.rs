//! Request bodies whose small chunks are moved out of the connection's read buffer.
//!
//! hyper hands body data out as slices of the connection's read buffer. While a slice lives
//! (being hashed, queued for the disk writer) the buffer is shared, so hyper's next read
//! cannot reuse it in place and allocates another: a trickling upload then holds a read
//! buffer per chunk in flight, each larger than the few KiB it carries. Copying a small chunk
//! into an allocation of its own size hands the buffer back at once. Large chunks (a fast
//! upload, whose reads have grown) pass as they are: they fill their buffer, and a copy would
//! cost a pass over every byte.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// Data chunks up to this size are copied out of the read buffer.
pub const COPY_UP_TO: usize = 16 << 10;

/// `inner` with its small data chunks copied (see the module comment).
pub struct OwnedChunks<B> {
    inner: B,
}

impl<B> OwnedChunks<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Self { inner }
    }
}

impl<B> Body for OwnedChunks<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.get_mut().inner).poll_frame(cx));
        Poll::Ready(frame.map(|f| {
            f.map(|f| {
                f.map_data(|data| {
                    if data.len() <= COPY_UP_TO {
                        Bytes::copy_from_slice(&data)
                    } else {
                        data
                    }
                })
            })
        }))
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
    use bytes::BytesMut;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test]
    async fn small_chunks_release_the_buffer_they_came_in_and_large_ones_pass_untouched() {
        let mut read_buf = BytesMut::with_capacity(64 << 10);
        read_buf.extend_from_slice(&[7u8; 40 << 10]);
        let small = read_buf.split_to(3000).freeze();
        let large = read_buf.split_to(COPY_UP_TO + 1).freeze();
        let large_ptr = large.as_ptr();
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
            Ok(Frame::data(small)),
            Ok(Frame::data(large)),
            Ok(Frame::trailers(http::HeaderMap::new())),
        ];
        let mut body = OwnedChunks::new(StreamBody::new(futures_util::stream::iter(frames)));
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(first, vec![7u8; 3000]);
        let second = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(second.len(), COPY_UP_TO + 1);
        assert_eq!(second.as_ptr(), large_ptr, "a large chunk was copied");
        drop(second);
        // Only the copy of the small chunk lives: the read buffer is reused in place.
        read_buf.clear();
        assert!(
            read_buf.try_reclaim(64 << 10),
            "the read buffer is still shared"
        );
        assert!(body.frame().await.unwrap().unwrap().is_trailers());
        assert!(body.frame().await.is_none());
        drop(first);
    }
}
