//! Running the service: logs, traces, metrics, health checks, the debug
//! server and the node's lifecycle.

pub mod cluster_status;
pub mod debug;
pub mod gc_metrics;
pub mod health;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod notification_status;
pub mod reload_status;
pub mod tasks;
pub mod telemetry;
