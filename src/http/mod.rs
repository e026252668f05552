//! The HTTP server: listeners, connections, per-request headers and access log.

pub mod server;
