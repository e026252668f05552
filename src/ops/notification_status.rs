//! Endpoint states for `/debug/vars`, kept by the deliverers of this process.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use serde::Serialize;

/// What an operator wants to see about one endpoint.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EndpointState {
    /// Receiver URL (from the operator's config).
    pub url: String,
    /// `idle`, `delivering`, `backing-off`, `standby` (another node delivers) or `disabled`.
    pub state: &'static str,
    /// Whether this node holds the endpoint's delivery lease.
    pub deliverer: bool,
    /// Events in the queue when last listed.
    pub pending: usize,
    /// Consecutive failed attempts.
    pub failures: usize,
    /// Events delivered by this node.
    pub delivered: u64,
    /// Events dropped by this node (backlog limits).
    pub dropped: u64,
    /// Last error, if the last attempt failed.
    pub last_error: Option<String>,
    /// Receiver answers by status code.
    pub statuses: BTreeMap<String, u64>,
}

static STATES: LazyLock<Mutex<BTreeMap<String, EndpointState>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

/// Changes one endpoint's state.
pub fn update(endpoint: &str, change: impl FnOnce(&mut EndpointState)) {
    let mut states = STATES.lock().unwrap_or_else(|e| e.into_inner());
    change(states.entry(endpoint.to_string()).or_default());
}

/// Every endpoint's state, for `/debug/vars`.
pub fn snapshot() -> serde_json::Value {
    let states = STATES.lock().unwrap_or_else(|e| e.into_inner());
    serde_json::json!({ "endpoints": &*states })
}
