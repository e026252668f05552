//! Cluster coordination: who does cluster-wide work (garbage collection, upload purging), and
//! what every node must know about it. Built on leases that expire, held in Redis when one is
//! configured, else in the shared storage, so a cluster needs nothing more than its storage.

pub mod cache_watch;
pub mod collector;
pub mod lease;
pub mod maintenance;
pub mod redis_lease;
pub mod storage_lease;

pub use lease::{HeldLease, Lease, LeaseBackend, LeaseError, LeaseRecord};
