//! What this process knows of cluster work (leases, garbage collection, read-only mode), for `/debug/vars`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{json, Value};

static LEASES: Mutex<BTreeMap<String, String>> = Mutex::new(BTreeMap::new());
static GC: Mutex<Option<Value>> = Mutex::new(None);
static PURGE: Mutex<Option<Value>> = Mutex::new(None);
static GC_HOLDER: Mutex<Option<String>> = Mutex::new(None);
static READ_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records the cluster's run-time read-only flag as last read.
pub fn read_only(on: bool) {
    READ_ONLY.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Records who holds the cluster's `gc` lease, as last seen by this process.
pub fn gc_lease_holder(holder: Option<&str>) {
    *GC_HOLDER.lock().unwrap_or_else(|e| e.into_inner()) = holder.map(str::to_string);
}

/// Records that this process took lease `name` as `holder`.
pub fn lease_taken(name: &str, holder: &str) {
    LEASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(name.to_string(), holder.to_string());
}

/// Records that this process no longer holds lease `name`.
pub fn lease_released(name: &str) {
    LEASES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
}

/// Records the outcome of the last garbage-collection attempt seen by this process.
pub fn gc_pass(summary: Value) {
    *GC.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
}

/// Records the outcome of this process's last upload-purging pass (run under the `purge` lease).
pub fn purge_pass(summary: Value) {
    *PURGE.lock().unwrap_or_else(|e| e.into_inner()) = Some(summary);
}

/// Leases held by this process and the last garbage-collection pass, as JSON.
pub fn snapshot() -> Value {
    let leases = LEASES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let gc = GC.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let holder = GC_HOLDER.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let purge = PURGE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    json!({
        "leases_held": leases,
        "gc_lease_holder": holder,
        "gc_last_pass": gc,
        "purge_last_pass": purge,
        "read_only": READ_ONLY.load(std::sync::atomic::Ordering::Relaxed),
    })
}
