//! Configuration reloads of this process, for `/debug/vars` and the
//! `wharf_config_reloads_total{result}` counter.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};

use prometheus::{IntCounterVec, Opts};
use serde::Serialize;

/// What an operator wants to see about reloads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadState {
    /// Reloads applied.
    pub applied: u64,
    /// Reloads refused (the old configuration kept serving).
    pub errors: u64,
    /// `applied` or `error`, once a reload has been tried.
    pub last_result: Option<&'static str>,
    /// Why the last refused reload was refused.
    pub last_error: Option<String>,
    /// When the last reload was tried (RFC 3339).
    pub last_attempt: Option<String>,
    /// Keys changed in the file that only a restart applies.
    pub restart_pending: Vec<String>,
    /// How often each piece of background work was started: once with the process, again by
    /// each reload that changed what it is built from.
    pub work_started: BTreeMap<&'static str, u64>,
    /// The background work running now.
    pub work_running: Vec<&'static str>,
}

static STATE: LazyLock<Mutex<ReloadState>> = LazyLock::new(Mutex::default);

static RELOADS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let vec = IntCounterVec::new(
        Opts::new(
            "wharf_config_reloads_total",
            "Configuration reloads by result (success: applied; error: refused, old configuration kept).",
        ),
        &["result"],
    )
    .expect("valid counter");
    prometheus::register(Box::new(vec.clone())).expect("reload counter registered once");
    for result in ["success", "error"] {
        vec.with_label_values(&[result]);
    }
    vec
});

/// Registers the counter, so that it is exported at zero before the first reload.
pub fn init() {
    LazyLock::force(&RELOADS);
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Records an applied reload and the keys still waiting for a restart.
pub fn applied(restart_pending: Vec<String>) {
    RELOADS.with_label_values(&["success"]).inc();
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    s.applied += 1;
    s.last_result = Some("applied");
    s.last_attempt = Some(now());
    s.restart_pending = restart_pending;
}

/// Records that background work `name` was started.
pub fn work_started(name: &'static str) {
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    *s.work_started.entry(name).or_default() += 1;
}

/// Records the background work running now.
pub fn work_running(names: Vec<&'static str>) {
    STATE.lock().unwrap_or_else(|e| e.into_inner()).work_running = names;
}

/// Records a refused reload.
pub fn refused(error: String) {
    RELOADS.with_label_values(&["error"]).inc();
    let mut s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    s.errors += 1;
    s.last_result = Some("error");
    s.last_error = Some(error);
    s.last_attempt = Some(now());
}

/// The state, for `/debug/vars`.
pub fn snapshot() -> serde_json::Value {
    let s = STATE.lock().unwrap_or_else(|e| e.into_inner());
    serde_json::to_value(&*s).unwrap_or_default()
}
