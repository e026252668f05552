//! Per-stream tallies, merged once at the end into the one result line.

use std::time::Duration;

use serde_json::{json, Value};

#[derive(Default)]
pub struct Tally {
    /// Latency of every successful operation, in microseconds.
    latencies_us: Vec<u32>,
    bytes: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    pub fn success(&mut self, latency: Duration, bytes: u64) {
        self.latencies_us
            .push(latency.as_micros().min(u32::MAX as u128) as u32);
        self.bytes += bytes;
    }

    pub fn failure(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    pub fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.bytes += other.bytes;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn ops(&self) -> u64 {
        self.latencies_us.len() as u64
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }

    /// The result line's measured fields. `unit` picks the headline `figure`: `MB/s`
    /// (10^6 bytes per second), `uploads` (a count of completed operations), or operations per
    /// second under any other name.
    pub fn summary(mut self, elapsed: Duration, unit: &str) -> Value {
        self.latencies_us.sort_unstable();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let ops_per_s = self.ops() as f64 / secs;
        let mb_per_s = self.bytes as f64 / 1e6 / secs;
        let figure = match unit {
            "MB/s" => mb_per_s,
            "uploads" => self.ops() as f64,
            _ => ops_per_s,
        };
        json!({
            "figure": round(figure),
            "unit": unit,
            "elapsed_s": round(secs),
            "ops": self.ops(),
            "ops_per_s": round(ops_per_s),
            "bytes": self.bytes,
            "mb_per_s": round(mb_per_s),
            "p50_ms": percentile_ms(&self.latencies_us, 0.50),
            "p99_ms": percentile_ms(&self.latencies_us, 0.99),
            "max_ms": percentile_ms(&self.latencies_us, 1.0),
            "errors": self.errors,
            "first_error": self.first_error,
        })
    }
}

/// Nearest-rank percentile of sorted microsecond samples, in milliseconds; null when empty.
fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p * sorted_us.len() as f64).ceil() as usize).clamp(1, sorted_us.len());
    Some(round(sorted_us[rank - 1] as f64 / 1000.0))
}

/// CPU time this process has used (user + system), from `/proc/self/stat`, so a result can
/// show whether the load generator itself was short of CPU. Linux's USER_HZ is 100.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
