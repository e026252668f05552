//! Bounded waiting: every poll in the harness ends by a deadline and after a bounded count.

use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for any single wait (start-up, exit, a log line, an external command).
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `done` every 50 ms until it holds or `limit` has passed; true if it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    for _ in 0..(limit.as_millis() / POLL.as_millis() + 2) {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            break;
        }
        thread::sleep(POLL);
    }
    done()
}

/// Retries `attempt` until it succeeds or [`WAIT_LIMIT`] passes; returns the success or the
/// last failure's value (for the caller's assertions to explain).
pub fn retry_until<T>(mut attempt: impl FnMut() -> Result<T, T>) -> T {
    let mut last = None;
    wait_until(WAIT_LIMIT, || match attempt() {
        Ok(value) => {
            last = Some(value);
            true
        }
        Err(value) => {
            last = Some(value);
            false
        }
    });
    last.expect("attempted at least once")
}
