//! Storage driver implementations.

pub mod filesystem;
pub mod inmemory;
pub mod s3;
