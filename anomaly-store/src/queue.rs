//! [`AnomalyQueue`]: detections are accepted at once and written in the background, and wait in a bounded queue
//! while the database is unavailable.
//!
//! A detector must not lose a detection because the database blinked, nor stall its scoring loop while it does.
//! [`push`](AnomalyQueue::push) appends to an in-memory queue of bounded capacity; one background task writes the
//! queue's head in batches (one transaction each, [`Store::insert_anomalies`]) and removes a batch only once it is
//! committed. When a write or the first connection fails, the task waits (exponential backoff from
//! [`QueueConfig::retry_initial`] to [`QueueConfig::retry_max`]) and tries again, for as long as it takes. A full
//! queue pushes back: [`push`](AnomalyQueue::push) waits for room and [`try_push`](AnomalyQueue::try_push) returns
//! [`StoreError::QueueFull`]; nothing is dropped.
//!
//! Exactly once: a batch is committed whole or not at all, and is removed from the queue only after its commit
//! returned, so every detection is written once. The one case no client can rule out is a connection lost after
//! the database committed and before it answered: that batch is written again on retry.
//!
//! A detection the store refuses for what it is ([`StoreError::InvalidInput`], for example a key over
//! [`MAX_KEY_CHARS`](crate::MAX_KEY_CHARS)) would be refused forever: the task writes the rest of its batch one by
//! one and sets the refused detections aside, logged and counted, for [`take_rejected`](AnomalyQueue::take_rejected).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::{Result, StoreError};
use crate::sea::SeaOrmStore;
use crate::store::Store;
use crate::types::Anomaly;

/// Settings of an [`AnomalyQueue`].
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Detections held at most while the database is unavailable (default 100,000).
    pub capacity: usize,
    /// Detections per write (default 500).
    pub batch_size: usize,
    /// First wait after a failure (default 100 ms); doubled after each further failure.
    pub retry_initial: Duration,
    /// Longest wait between attempts (default 30 s).
    pub retry_max: Duration,
    /// How long one attempt may wait to connect (default 5 s; see
    /// [`SeaOrmStore::connect_with_timeout`]), for queues made by [`AnomalyQueue::connect_lazily`].
    pub connect_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 100_000,
            batch_size: 500,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What an [`AnomalyQueue`] has done so far: the figures a metrics endpoint exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    /// Detections waiting to be written (the queue depth).
    pub depth: usize,
    /// The queue's capacity.
    pub capacity: usize,
    /// Detections written.
    pub written: u64,
    /// Failed attempts to connect or write (each followed by a retry).
    pub failures: u64,
    /// Detections the store refused as invalid, set aside.
    pub rejected: u64,
    /// Whether the last attempt to reach the database succeeded (`false` until a lazily connecting queue has
    /// connected).
    pub healthy: bool,
    /// The last failure's message (never a URL or a password).
    pub last_error: Option<String>,
}

/// Where the background task writes.
enum Target {
    Store(Arc<dyn Store>),
    Url { url: String, max_history: u64 },
}

#[derive(Default)]
struct State {
    queue: VecDeque<Anomaly>,
    rejected: Vec<(Anomaly, String)>,
    closed: bool,
    last_error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    capacity: usize,
    /// Woken when detections arrive or the queue closes.
    arrived: Notify,
    /// Woken when room is made or the queue empties.
    progressed: Notify,
    written: AtomicU64,
    failures: AtomicU64,
    rejected: AtomicU64,
    healthy: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded queue of detections in front of a [`Store`], written by a background task that outlasts database
/// outages (see the [module docs](self)). Create it inside a tokio runtime.
///
/// ```
/// use anomaly_store::{Anomaly, AnomalyQueue, InMemoryStore, QueueConfig, Store};
/// use std::{sync::Arc, time::Duration};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Arc::new(InMemoryStore::default());
/// let queue = AnomalyQueue::new(store.clone(), QueueConfig::default());
/// queue.push(Anomaly::flagged("orders", "isolation_forest", 0.82, 0.6)).await?;
/// assert!(queue.flush(Duration::from_secs(5)).await);
/// assert_eq!(queue.stats().written, 1);
/// assert!(queue.close(Duration::from_secs(1)).await.is_empty());
/// # Ok::<(), anomaly_store::StoreError>(())
/// # }).unwrap();
/// ```
pub struct AnomalyQueue {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for AnomalyQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnomalyQueue")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl AnomalyQueue {
    /// A queue writing to `store`.
    ///
    /// # Panics
    /// Outside a tokio runtime (it spawns its writer task).
    pub fn new(store: Arc<dyn Store>, config: QueueConfig) -> Self {
        Self::spawn(Target::Store(store), config)
    }

    /// A queue writing to the database at `url` ([`SeaOrmStore::connect`]), connecting in the background: a
    /// database that is down at start-up is retried like any other outage, and detections queue meanwhile.
    ///
    /// # Panics
    /// Outside a tokio runtime (it spawns its writer task).
    pub fn connect_lazily(url: impl Into<String>, max_history: u64, config: QueueConfig) -> Self {
        Self::spawn(
            Target::Url {
                url: url.into(),
                max_history,
            },
            config,
        )
    }

    fn spawn(target: Target, config: QueueConfig) -> Self {
        let connected = matches!(target, Target::Store(_));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            capacity: config.capacity.max(1),
            arrived: Notify::new(),
            progressed: Notify::new(),
            written: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            healthy: AtomicBool::new(connected),
        });
        let worker = tokio::spawn(write_loop(shared.clone(), target, config));
        AnomalyQueue {
            shared,
            worker: Some(worker),
        }
    }

    /// Queues a detection, waiting for room when the queue is full.
    ///
    /// # Errors
    /// [`StoreError::QueueClosed`] after [`close`](AnomalyQueue::close) began.
    pub async fn push(&self, anomaly: Anomaly) -> Result<()> {
        let mut slot = Some(anomaly);
        loop {
            let progressed = self.shared.progressed.notified();
            if self.offer(&mut slot)? {
                return Ok(());
            }
            progressed.await;
        }
    }

    /// Queues a detection if there is room.
    ///
    /// # Errors
    /// [`StoreError::QueueFull`] when the queue holds `capacity` detections (the detection is not queued),
    /// [`StoreError::QueueClosed`] after [`close`](AnomalyQueue::close) began.
    pub fn try_push(&self, anomaly: Anomaly) -> Result<()> {
        if self.offer(&mut Some(anomaly))? {
            Ok(())
        } else {
            Err(StoreError::QueueFull {
                capacity: self.shared.capacity,
            })
        }
    }

    /// Moves the detection out of `slot` into the queue if there is room; `Ok(false)` (and `slot` untouched) when
    /// the queue is full.
    fn offer(&self, slot: &mut Option<Anomaly>) -> Result<bool> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(StoreError::QueueClosed);
        }
        if state.queue.len() >= self.shared.capacity {
            return Ok(false);
        }
        state.queue.extend(slot.take());
        drop(state);
        self.shared.arrived.notify_one();
        Ok(true)
    }

    /// Detections waiting to be written.
    pub fn depth(&self) -> usize {
        self.shared.lock().queue.len()
    }

    /// The queue's figures.
    pub fn stats(&self) -> QueueStats {
        let state = self.shared.lock();
        QueueStats {
            depth: state.queue.len(),
            capacity: self.shared.capacity,
            written: self.shared.written.load(Ordering::Relaxed),
            failures: self.shared.failures.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            healthy: self.shared.healthy.load(Ordering::Relaxed),
            last_error: state.last_error.clone(),
        }
    }

    /// Takes the detections the store refused as invalid, each with the reason.
    pub fn take_rejected(&self) -> Vec<(Anomaly, String)> {
        std::mem::take(&mut self.shared.lock().rejected)
    }

    /// Waits until every queued detection is written, at most `timeout`; returns whether the queue is empty.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let progressed = self.shared.progressed.notified();
                if self.depth() == 0 {
                    return;
                }
                progressed.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Stops accepting detections, gives the writer up to `timeout` to write what is queued, stops it, and returns
    /// the detections still unwritten (empty when all landed) for the caller to keep elsewhere.
    pub async fn close(mut self, timeout: Duration) -> Vec<Anomaly> {
        self.shared.lock().closed = true;
        self.shared.arrived.notify_one();
        self.flush(timeout).await;
        if let Some(worker) = self.worker.take() {
            worker.abort();
            let _ = worker.await;
        }
        let left: Vec<Anomaly> = self.shared.lock().queue.drain(..).collect();
        if !left.is_empty() {
            tracing::error!(
                unwritten = left.len(),
                "anomaly queue closed with detections unwritten"
            );
        }
        left
    }
}

impl Drop for AnomalyQueue {
    fn drop(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.abort();
            let left = self.shared.lock().queue.len();
            if left > 0 {
                tracing::error!(
                    unwritten = left,
                    "anomaly queue dropped with detections unwritten; call close() to get them back"
                );
            }
        }
    }
}

async fn write_loop(shared: Arc<Shared>, target: Target, config: QueueConfig) {
    let (mut store, url) = match target {
        Target::Store(s) => (Some(s), None),
        Target::Url { url, max_history } => (None, Some((url, max_history))),
    };
    let batch_size = config.batch_size.max(1);
    let mut backoff = config.retry_initial;
    loop {
        let arrived = shared.arrived.notified();
        let batch: Vec<Anomaly> = shared
            .lock()
            .queue
            .iter()
            .take(batch_size)
            .cloned()
            .collect();
        if batch.is_empty() {
            shared.progressed.notify_waiters();
            arrived.await;
            continue;
        }
        let outcome = match (&store, &url) {
            (Some(s), _) => write_batch(&shared, s.as_ref(), batch).await,
            (None, Some((url, max_history))) => {
                match SeaOrmStore::connect_with_timeout(url, config.connect_timeout).await {
                    Ok(s) => {
                        tracing::info!(backend = s.backend(), "anomaly queue connected");
                        store = Some(Arc::new(s.with_max_history(*max_history)));
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            (None, None) => unreachable!("a queue has a store or a url"),
        };
        match outcome {
            Ok(()) => {
                shared.healthy.store(true, Ordering::Relaxed);
                backoff = config.retry_initial;
            }
            Err(e) => {
                let failures = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
                shared.healthy.store(false, Ordering::Relaxed);
                let message = e.chain();
                tracing::warn!(
                    error = %message,
                    failures,
                    retry_in_ms = backoff.as_millis() as u64,
                    "anomaly queue cannot write; retrying"
                );
                shared.lock().last_error = Some(message);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.retry_max);
            }
        }
    }
}

/// Writes the queue's head; removes what was committed. An invalid detection in the batch sends it one by one.
async fn write_batch(shared: &Shared, store: &dyn Store, batch: Vec<Anomaly>) -> Result<()> {
    match store.insert_anomalies(&batch).await {
        Ok(_) => {
            committed(shared, batch.len());
            Ok(())
        }
        Err(StoreError::InvalidInput { .. }) => {
            for anomaly in batch {
                match store.insert_anomaly(&anomaly).await {
                    Ok(_) => committed(shared, 1),
                    Err(e @ StoreError::InvalidInput { .. }) => {
                        let reason = e.to_string();
                        tracing::error!(key = %anomaly.key, %reason, "detection refused by the store; set aside");
                        shared.rejected.fetch_add(1, Ordering::Relaxed);
                        let mut state = shared.lock();
                        state.queue.pop_front();
                        state.rejected.push((anomaly, reason));
                        drop(state);
                        shared.progressed.notify_waiters();
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn committed(shared: &Shared, n: usize) {
    shared.lock().queue.drain(..n);
    shared.written.fetch_add(n as u64, Ordering::Relaxed);
    shared.progressed.notify_waiters();
}
