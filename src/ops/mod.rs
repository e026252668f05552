//! Running the service: logs, health checks.

pub mod health;
pub mod logging;
