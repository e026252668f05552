//! The machine's ceiling for the read workloads: an HTTP/1 server on loopback that does no
//! work. Every GET answers `--size` bytes from one buffer in memory (a `Range` its length),
//! a blob's HEAD that size with no body,
//! any other request an empty 200. Run the read workloads against it with `--no-seed`:
//! whatever a registry adds to those figures is its own cost.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::client::Result;

/// Serves on 127.0.0.1:`port` until the process is stopped.
pub async fn serve(port: u16, size: u64) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let data = Bytes::from(vec![b'n'; usize::try_from(size)?]);
    let data = Arc::new(data);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let data = data.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let data = data.clone();
                async move { Ok::<_, Infallible>(answer(&req, &data)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(req: &Request<Incoming>, data: &Bytes) -> Response<Full<Bytes>> {
    let empty = || {
        Response::builder()
            .header(header::CONTENT_LENGTH, "0")
            .body(Full::new(Bytes::new()))
            .unwrap_or_default()
    };
    if req.method() == Method::HEAD && req.uri().path().contains("/blobs/") {
        // What a seeded blob's HEAD says: the size, no body.
        return Response::builder()
            .header(header::CONTENT_LENGTH, data.len())
            .body(Full::new(Bytes::new()))
            .unwrap_or_default();
    }
    if req.method() != Method::GET || req.uri().path() == "/v2/" {
        return empty();
    }
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .filter(|(a, b)| a <= b && *b < data.len());
    match range {
        Some((start, end)) => Response::builder()
            .status(StatusCode::PARTIAL_CONTENT)
            .body(Full::new(data.slice(start..=end)))
            .unwrap_or_default(),
        None => Response::new(Full::new(data.clone())),
    }
}
