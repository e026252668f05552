//! Storage driver implementations.

pub mod filesystem;
pub mod inmemory;
