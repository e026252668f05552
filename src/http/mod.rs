//! The HTTP server: listeners, connections, per-request headers and access log.

pub mod cors;
pub mod limits;
pub mod owned_chunks;
pub mod paced_reads;
pub mod read_ahead;
pub mod sendfile;
pub mod server;
pub mod socket_activation;
pub mod tls;
mod write_through;
