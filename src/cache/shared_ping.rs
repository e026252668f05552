//! Round trips shared by concurrent callers, each started after its callers asked.
//!
//! Redis pushes invalidations on the tracked connection in order with its replies, so once a
//! `PING` sent there after a request arrived is answered, every change made before the request
//! arrived (a delete on another node, answered to its client already) has been applied to the
//! links held in the process. Callers that arrive while a round trip is under way wait for the
//! next one, which then serves them all: one round trip per batch, not per request.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// Coalesces round trips: [`SharedPing::after_now`] resolves once a round trip that started
/// after it was called has ended.
pub struct SharedPing {
    state: Mutex<State>,
    ended: watch::Sender<Ended>,
}

#[derive(Default)]
struct State {
    /// Round trips started so far.
    started: u64,
    /// The round trip the latest caller waits for.
    wanted: u64,
    /// Whether a task runs round trips.
    running: bool,
}

/// The latest round trip that ended.
#[derive(Clone, Copy, Default)]
struct Ended {
    round: u64,
    /// What the round trip said (for Redis: the tracked connection it went over), `None` when
    /// it failed.
    answer: Option<u64>,
}

impl Default for SharedPing {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            ended: watch::channel(Ended::default()).0,
        }
    }
}

impl SharedPing {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What a round trip started after this call answered, or `None` when it failed or none
    /// ended within `limit`. `ping` makes one round trip; it runs on a task of its own, so a
    /// caller that goes away stops no one else's wait.
    pub async fn after_now<F, Fut>(self: &Arc<Self>, limit: Duration, ping: F) -> Option<u64>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Option<u64>> + Send + 'static,
    {
        let mut ended = self.ended.subscribe();
        let round = {
            let mut state = self.state();
            // The round trip under way, if any, may have been sent before this call.
            let round = state.started + 1;
            state.wanted = round;
            if !state.running {
                state.running = true;
                tokio::spawn(run_rounds(self.clone(), ping));
            }
            round
        };
        let waited = tokio::time::timeout(limit, ended.wait_for(|e| e.round >= round)).await;
        match waited {
            Ok(Ok(ended)) => ended.answer,
            _ => None,
        }
    }
}

/// Runs round trips while a caller waits for one not yet started.
async fn run_rounds<F, Fut>(shared: Arc<SharedPing>, ping: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<u64>>,
{
    loop {
        let round = {
            let mut state = shared.state();
            if state.wanted <= state.started {
                state.running = false;
                return;
            }
            state.started += 1;
            state.started
        };
        let answer = ping().await;
        shared.ended.send_replace(Ended { round, answer });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A round trip that takes `delay` and answers with how many were made before it ended.
    fn counting(made: &Arc<AtomicU64>, delay: Duration) -> impl Fn() -> BoxedAnswer {
        let made = made.clone();
        move || {
            let made = made.clone();
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Some(made.fetch_add(1, Ordering::SeqCst) + 1)
            })
        }
    }

    type BoxedAnswer = std::pin::Pin<Box<dyn Future<Output = Option<u64>> + Send>>;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_a_round_trip_started_after_they_asked() {
        let shared = Arc::new(SharedPing::default());
        let made = Arc::new(AtomicU64::new(0));
        let delay = Duration::from_millis(10);
        let limit = Duration::from_secs(5);
        // The first caller starts round 1.
        let first = {
            let shared = shared.clone();
            let ping = counting(&made, delay);
            tokio::spawn(async move { shared.after_now(limit, ping).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        // Callers arriving while round 1 is under way all wait for round 2.
        let later: Vec<_> = (0..8)
            .map(|_| {
                let shared = shared.clone();
                let ping = counting(&made, delay);
                tokio::spawn(async move { shared.after_now(limit, ping).await })
            })
            .collect();
        assert_eq!(first.await.unwrap(), Some(1));
        for caller in later {
            assert_eq!(caller.await.unwrap(), Some(2));
        }
        assert_eq!(made.load(Ordering::SeqCst), 2);
        // Nothing waits: no round trip runs.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(made.load(Ordering::SeqCst), 2);
        // A new caller gets a round trip of its own.
        let ping = counting(&made, delay);
        assert_eq!(shared.after_now(limit, ping).await, Some(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_or_late_round_trip_answers_none() {
        let shared = Arc::new(SharedPing::default());
        let failing = || Box::pin(async { None }) as BoxedAnswer;
        assert_eq!(
            shared.after_now(Duration::from_secs(1), failing).await,
            None
        );
        let made = Arc::new(AtomicU64::new(0));
        let slow = counting(&made, Duration::from_secs(10));
        assert_eq!(shared.after_now(Duration::from_secs(1), slow).await, None);
    }
}
