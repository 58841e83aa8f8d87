//! [`CleanupSchedule`]: retention applied on a timer, in the background.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::task::JoinHandle;

use crate::store::Store;
use crate::types::{CleanupReport, RetentionPolicy};

/// What the schedule has done so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupStatus {
    /// Clean-ups that completed.
    pub runs: u64,
    /// Clean-ups that failed (retried at the next tick).
    pub failures: u64,
    /// Everything removed so far.
    pub removed: CleanupReport,
    /// The last failure's message.
    pub last_error: Option<String>,
}

/// How soon a failed clean-up is tried again (or after `interval`, if that is shorter).
pub const CLEANUP_RETRY: Duration = Duration::from_secs(60);

/// Runs [`Store::cleanup`] with a policy every `interval` (the first run at once), logging what each run removed,
/// until it is dropped or [`stop`](CleanupSchedule::stop)ped. A failed run (the database is down) is logged and
/// counted, and tried again after [`CLEANUP_RETRY`] rather than a whole `interval` later.
///
/// ```
/// use anomaly_store::{CleanupSchedule, InMemoryStore, RetentionPolicy};
/// use std::{sync::Arc, time::Duration};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::default());
/// let schedule = CleanupSchedule::start(store, RetentionPolicy::default(), Duration::from_secs(3600));
/// tokio::time::sleep(Duration::from_millis(50)).await;
/// assert_eq!(schedule.status().runs, 1);
/// # });
/// ```
#[derive(Debug)]
pub struct CleanupSchedule {
    status: Arc<Mutex<CleanupStatus>>,
    task: JoinHandle<()>,
}

impl CleanupSchedule {
    /// Starts the schedule on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, policy: RetentionPolicy, interval: Duration) -> Self {
        let status = Arc::new(Mutex::new(CleanupStatus::default()));
        let shared = status.clone();
        let task = tokio::spawn(async move {
            let interval = interval.max(Duration::from_millis(1));
            let mut wait = Duration::ZERO;
            loop {
                tokio::time::sleep(wait).await;
                let result = store.cleanup(&policy, Utc::now()).await;
                wait = if result.is_ok() {
                    interval
                } else {
                    interval.min(CLEANUP_RETRY)
                };
                let mut status = shared.lock().unwrap_or_else(PoisonError::into_inner);
                match result {
                    Ok(report) => {
                        tracing::info!(
                            history = report.history_removed,
                            anomalies = report.anomalies_removed,
                            models = report.models_removed,
                            "retention clean-up"
                        );
                        status.runs += 1;
                        status.removed.history_removed += report.history_removed;
                        status.removed.anomalies_removed += report.anomalies_removed;
                        status.removed.models_removed += report.models_removed;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "retention clean-up failed; trying again in a minute at most");
                        status.failures += 1;
                        status.last_error = Some(e.to_string());
                    }
                }
            }
        });
        CleanupSchedule { status, task }
    }

    /// What the schedule has done so far.
    pub fn status(&self) -> CleanupStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the schedule (a run in progress is abandoned; its removals so far stay removed).
    pub fn stop(self) {}
}

impl Drop for CleanupSchedule {
    fn drop(&mut self) {
        self.task.abort();
    }
}
