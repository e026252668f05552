//! Background tasks and the one shutdown signal that reaches them all (as in mini-redis):
//! each task is spawned with a [`Shutdown`]; [`Tasks::shutdown`] raises it, then waits for
//! every task up to a deadline and names those that did not stop.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A task's view of the shutdown signal.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown is requested (or whoever could request it is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The process's background tasks, by name.
pub struct Tasks {
    stop: watch::Sender<bool>,
    running: Mutex<Vec<(String, JoinHandle<()>)>>,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// No tasks yet; shutdown not requested.
    pub fn new() -> Self {
        Self {
            stop: watch::Sender::new(false),
            running: Mutex::new(Vec::new()),
        }
    }

    /// The shutdown signal, for work that runs outside [`Tasks::spawn`] (another runtime).
    pub fn signal(&self) -> Shutdown {
        Shutdown(self.stop.subscribe())
    }

    /// Spawns `task` on the current runtime, handing it the shutdown signal.
    pub fn spawn<F>(&self, name: impl Into<String>, task: impl FnOnce(Shutdown) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task(self.signal()));
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.into(), handle));
    }

    /// Requests shutdown and waits for every task, together at most `deadline`; a task
    /// still running then is logged and aborted. Returns the names of those.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<String> {
        self.stop.send_replace(true);
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|e| e.into_inner()));
        let until = tokio::time::Instant::now() + deadline;
        let mut late = Vec::new();
        for (name, mut handle) in running {
            match tokio::time::timeout_at(until, &mut handle).await {
                Ok(Ok(())) => tracing::debug!(task = %name, "background task stopped"),
                Ok(Err(e)) => tracing::warn!(task = %name, error = %e, "background task failed"),
                Err(_) => {
                    tracing::warn!(task = %name, "background task did not stop in time; aborted");
                    handle.abort();
                    late.push(name);
                }
            }
        }
        late
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Paused time: the deadline passes only once every task that can run has run.
    #[tokio::test(start_paused = true)]
    async fn every_task_hears_the_signal_and_a_stuck_one_is_named() {
        let tasks = Tasks::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        for name in ["purge", "health"] {
            let done_tx = done_tx.clone();
            tasks.spawn(name, move |mut stop| async move {
                stop.requested().await;
                let _ = done_tx.send(name);
            });
        }
        tasks.spawn("stuck", |_| std::future::pending());
        let late = tasks.shutdown(Duration::from_millis(200)).await;
        assert_eq!(late, vec!["stuck".to_string()]);
        let mut heard = vec![done_rx.recv().await.unwrap(), done_rx.recv().await.unwrap()];
        heard.sort();
        assert_eq!(heard, vec!["health", "purge"]);
    }
}
