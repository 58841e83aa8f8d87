//! The scheduler: a task in the application's process (the original's Celery beat, worker and broker in one).
//! Once a second it asks the database which sources are due; they wait in a queue, the longest waiting first, and
//! start as slots free (at most `SCHEDULER_CONCURRENCY` runs at a time), each the moment a run ends; it removes
//! expired sessions every hour.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::watcher::{Trigger, Watcher};

/// How often the scheduler looks for due sources.
const TICK: Duration = Duration::from_secs(1);
/// How often expired sessions are removed.
const SESSION_SWEEP: Duration = Duration::from_secs(3_600);
/// Due sources read per look at most.
const MAX_DUE: u64 = 10_000;

/// Runs until `stop` turns true, then waits for the runs under way (each stores page by page, so a run cut off
/// by the process's end loses nothing stored and is fetched again from its watermark).
pub async fn run(watcher: Arc<Watcher>, metrics: Metrics, mut stop: watch::Receiver<bool>) {
    let mut runs = JoinSet::new();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sweep = tokio::time::Instant::now();
    let concurrency = watcher.config().scheduler_concurrency;
    // Due sources waiting for a slot, the longest waiting first: a slot that frees starts the next at once.
    let mut queue: VecDeque<i64> = VecDeque::new();
    loop {
        let tick = tokio::select! {
            _ = ticker.tick() => true,
            Some(_) = runs.join_next(), if !runs.is_empty() => false,
            _ = stop.changed() => break,
        };
        if *stop.borrow() {
            break;
        }
        if tick {
            match watcher.db().due_sources(Utc::now(), MAX_DUE).await {
                Ok(due) => {
                    queue = due
                        .into_iter()
                        .filter(|id| !watcher.is_running(*id))
                        .collect();
                }
                Err(e) => tracing::warn!(error = %e, "the scheduler cannot read the due sources"),
            }
        }
        while runs.len() < concurrency {
            let Some(id) = queue.pop_front() else { break };
            if watcher.is_running(id) {
                continue;
            }
            let watcher = watcher.clone();
            runs.spawn(async move {
                match watcher.run(id, Trigger::Schedule).await {
                    Ok(_) | Err(crate::WatcherError::Busy) => {}
                    Err(e) => tracing::warn!(source = id, error = %e, "a scheduled run could not be recorded"),
                }
            });
        }
        metrics.behind(queue.len());
        if last_sweep.elapsed() >= SESSION_SWEEP {
            last_sweep = tokio::time::Instant::now();
            match watcher.db().prune_sessions(Utc::now()).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "expired sessions removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "expired sessions could not be removed"),
            }
        }
    }
    while runs.join_next().await.is_some() {}
}
