//! Storage driver implementations.

pub mod azure;
mod bulk_delete;
mod cached_read;
pub mod filesystem;
pub mod gcs;
mod group_commit;
pub mod inmemory;
mod listing_cache;
mod read_budget;
mod rest_io;
pub mod s3;
mod stale_writes;
pub mod swift;

pub use stale_writes::StaleWrites;
