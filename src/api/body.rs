//! Request and response body types shared by all handlers.

use bytes::Bytes;
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    BodyExt, Empty, Full, StreamBody,
};

use crate::storage::ByteStream;

/// Any response body: empty, in memory, or streamed from storage.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request body as handlers read it, boxed so the API does not name the server's
/// connection types (the server adds its idle timeout before handing it over).
pub type RequestBody = BoxBody<Bytes, std::io::Error>;

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body held in memory (JSON, manifests).
pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body streamed from storage.
pub fn stream(s: ByteStream) -> Body {
    use futures_util::TryStreamExt;
    StreamBody::new(
        s.map_ok(http_body::Frame::data)
            .map_err(std::io::Error::other),
    )
    .boxed_unsync()
}
