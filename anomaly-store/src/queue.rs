//! [`AnomalyQueue`]: detections are accepted at once and written in the background, and wait in a bounded queue
//! while the database is unavailable.
//!
//! A detector must not lose a detection because the database blinked, nor stall its scoring loop while it does.
//! [`push`](AnomalyQueue::push) appends to an in-memory queue of bounded capacity; one background task writes the
//! queue's head in batches (one transaction each, [`Store::insert_anomalies`]) and removes a batch only once it is
//! committed. A full queue pushes back: [`push`](AnomalyQueue::push) waits for room and
//! [`try_push`](AnomalyQueue::try_push) returns [`StoreError::QueueFull`]; nothing is dropped.
//!
//! Which failures are waited out, and which are the data's:
//! - **The store is unavailable**: the first connection fails, the server cannot be reached
//!   ([`StoreError::is_unreachable`]) and does not answer a [`ping`](Store::ping) either, or it answers with a
//!   condition of its own ([`StoreError::is_transient`]: read-only, out of space or connections, a lost race). The
//!   task waits (exponential backoff from [`QueueConfig::retry_initial`] to [`QueueConfig::retry_max`]) and tries
//!   the same batch again, for as long as it takes.
//! - **The store works but refuses the batch**: [`StoreError::InvalidInput`] (a key over
//!   [`MAX_KEY_CHARS`](crate::MAX_KEY_CHARS), a NUL character on PostgreSQL, a value the server calls a data
//!   exception, a packet over MariaDB's `max_allowed_packet`), or any other error while a ping still succeeds (the
//!   server cut the connection over this batch, a statement error). The batch is split in halves, written half by
//!   half, down to the detection at fault. A single detection refused as invalid is set aside at once; one failing
//!   otherwise is tried [`QueueConfig::max_attempts`] times (default 3, the backoff between attempts) and then set
//!   aside with the last error as its reason. The rest of the queue moves on either way.
//!
//! Set-aside detections are logged, counted ([`QueueStats::rejected`]) and kept, with their reason, for
//! [`take_rejected`](AnomalyQueue::take_rejected): at most [`QueueConfig::rejected_capacity`] of them (default
//! 1,000); beyond it the oldest is dropped, logged and counted ([`QueueStats::rejected_dropped`]).
//!
//! Every wait on the server is bounded: one write (and the ping that follows a failed one) by
//! [`QueueConfig::write_timeout`], a connection by [`QueueConfig::connect_timeout`]; a write cut short counts as
//! the server not answering.
//!
//! Exactly once: a batch is committed whole or not at all, and is removed from the queue only after its commit
//! returned, so every detection is written once. The one case no client can rule out is a connection lost (or a
//! write timed out) after the database committed and before it answered: that batch is written again on retry.

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
    /// Attempts at one detection whose write fails although the store works, with an error other than
    /// [`StoreError::InvalidInput`], before it is set aside (default 3; at least 1). See the [module docs](self).
    pub max_attempts: u32,
    /// Set-aside detections kept for [`AnomalyQueue::take_rejected`] (default 1,000); beyond it the oldest are
    /// dropped, logged and counted in [`QueueStats::rejected_dropped`].
    pub rejected_capacity: usize,
    /// How long one write, or one ping of the store, may take before it counts as the server not answering
    /// (default 60 s).
    pub write_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: 100_000,
            batch_size: 500,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            max_attempts: 3,
            rejected_capacity: 1_000,
            write_timeout: Duration::from_secs(60),
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
    /// Detections set aside: refused by the store as invalid, or failing [`QueueConfig::max_attempts`] times
    /// while the store worked.
    pub rejected: u64,
    /// Set-aside detections dropped (the oldest first) because more than [`QueueConfig::rejected_capacity`]
    /// waited for [`AnomalyQueue::take_rejected`].
    pub rejected_dropped: u64,
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
    rejected: VecDeque<(Anomaly, String)>,
    /// Failed attempts at the queue's head alone (see [`QueueConfig::max_attempts`]); 0 when the head is not
    /// suspected.
    head_attempts: u32,
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
    rejected_dropped: AtomicU64,
    rejected_capacity: usize,
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
            rejected_dropped: AtomicU64::new(0),
            rejected_capacity: config.rejected_capacity,
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
            rejected_dropped: self.shared.rejected_dropped.load(Ordering::Relaxed),
            healthy: self.shared.healthy.load(Ordering::Relaxed),
            last_error: state.last_error.clone(),
        }
    }

    /// Takes the detections set aside (refused by the store, or failing every attempt while it worked), oldest
    /// first, each with the reason: at most [`QueueConfig::rejected_capacity`], the most recent ones.
    pub fn take_rejected(&self) -> Vec<(Anomaly, String)> {
        std::mem::take(&mut self.shared.lock().rejected).into()
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
    let writer = Writer {
        shared: &shared,
        max_attempts: config.max_attempts.max(1),
        write_timeout: config.write_timeout,
    };
    let batch_size = config.batch_size.max(1);
    let mut backoff = config.retry_initial;
    loop {
        let arrived = shared.arrived.notified();
        let batch: Vec<Anomaly> = {
            let state = shared.lock();
            // A suspected head is tried alone until it is written or set aside.
            let size = if state.head_attempts > 0 {
                1
            } else {
                batch_size
            };
            state.queue.iter().take(size).cloned().collect()
        };
        if batch.is_empty() {
            shared.progressed.notify_waiters();
            arrived.await;
            continue;
        }
        let outcome = match (&store, &url) {
            (Some(s), _) => writer.write(s.as_ref(), &batch).await,
            (None, Some((url, max_history))) => {
                match SeaOrmStore::connect_with_timeout(url, config.connect_timeout).await {
                    Ok(s) => {
                        tracing::info!(backend = s.backend(), "anomaly queue connected");
                        store = Some(Arc::new(s.with_max_history(*max_history)));
                        Ok(())
                    }
                    Err(e) => Err(Stalled::Unavailable(e)),
                }
            }
            (None, None) => unreachable!("a queue has a store or a url"),
        };
        match outcome {
            Ok(()) => {
                shared.healthy.store(true, Ordering::Relaxed);
                backoff = config.retry_initial;
            }
            Err(stalled) => {
                let failures = shared.failures.fetch_add(1, Ordering::Relaxed) + 1;
                let message = stalled.error().chain();
                if let Stalled::Head { attempts, .. } = stalled {
                    // The store works; one detection fails. Not an outage.
                    shared.healthy.store(true, Ordering::Relaxed);
                    tracing::warn!(
                        error = %message,
                        attempt = attempts,
                        max_attempts = writer.max_attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        "anomaly queue cannot write the detection at its head; retrying it alone"
                    );
                } else {
                    shared.healthy.store(false, Ordering::Relaxed);
                    tracing::warn!(
                        error = %message,
                        failures,
                        retry_in_ms = backoff.as_millis() as u64,
                        "anomaly queue cannot write; retrying"
                    );
                }
                shared.lock().last_error = Some(message);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.retry_max);
            }
        }
    }
}

/// Why the background task waits before trying again.
enum Stalled {
    /// The store is unavailable (unreachable, not connected yet, a condition of the server's).
    Unavailable(StoreError),
    /// The store works, but the detection at the queue's head failed; it has attempts left.
    Head {
        /// The failure.
        error: StoreError,
        /// Attempts made so far.
        attempts: u32,
    },
}

impl Stalled {
    fn error(&self) -> &StoreError {
        match self {
            Stalled::Unavailable(error) | Stalled::Head { error, .. } => error,
        }
    }
}

/// Writes batches from the queue's head for the background task.
struct Writer<'a> {
    shared: &'a Shared,
    max_attempts: u32,
    write_timeout: Duration,
}

impl Writer<'_> {
    /// Writes `batch`, the queue's head, removing what was committed and setting aside what is at fault (see the
    /// [module docs](self)). `Err` when the task must wait and try again: the store is unavailable, or the one
    /// detection at the head failed and has attempts left.
    fn write<'b>(
        &'b self,
        store: &'b dyn Store,
        batch: &'b [Anomaly],
    ) -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<(), Stalled>> + Send + 'b>> {
        Box::pin(async move {
            let error = match self.insert(store, batch).await {
                Ok(()) => {
                    self.committed(batch.len());
                    return Ok(());
                }
                Err(e) => e,
            };
            if !self.batch_at_fault(store, &error).await {
                return Err(Stalled::Unavailable(error));
            }
            if batch.len() > 1 {
                let (first, second) = batch.split_at(batch.len() / 2);
                self.write(store, first).await?;
                return self.write(store, second).await;
            }
            let refused = matches!(error, StoreError::InvalidInput { .. });
            let attempts = {
                let mut state = self.shared.lock();
                state.head_attempts += 1;
                state.head_attempts
            };
            if refused || attempts >= self.max_attempts {
                self.set_aside(&batch[0], &error, attempts);
                return Ok(());
            }
            Err(Stalled::Head { error, attempts })
        })
    }

    /// One bounded write of `batch`.
    async fn insert(&self, store: &dyn Store, batch: &[Anomaly]) -> Result<()> {
        match tokio::time::timeout(self.write_timeout, store.insert_anomalies(batch)).await {
            Ok(written) => written.map(|_| ()),
            Err(_) => Err(timed_out("insert anomalies", self.write_timeout)),
        }
    }

    /// Whether `error` is the batch's rather than the store's: refused input, or a failure that is no server
    /// condition while the store still answers a ping.
    async fn batch_at_fault(&self, store: &dyn Store, error: &StoreError) -> bool {
        match error {
            StoreError::InvalidInput { .. } => true,
            StoreError::Database { .. } if !error.is_transient() => {
                match tokio::time::timeout(self.write_timeout, store.ping()).await {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e.chain(), "the store does not answer a ping either");
                        false
                    }
                    Err(_) => false,
                }
            }
            _ => false,
        }
    }

    /// Removes the committed `n` detections from the queue's head.
    fn committed(&self, n: usize) {
        let mut state = self.shared.lock();
        state.queue.drain(..n);
        state.head_attempts = 0;
        drop(state);
        self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
        self.shared.progressed.notify_waiters();
    }

    /// Moves the queue's head, `anomaly`, to the set-aside list (bounded: the oldest goes beyond its capacity).
    fn set_aside(&self, anomaly: &Anomaly, error: &StoreError, attempts: u32) {
        let reason = error.chain();
        tracing::error!(key = %anomaly.key, %reason, attempts, "detection refused by the store; set aside");
        self.shared.rejected.fetch_add(1, Ordering::Relaxed);
        let mut state = self.shared.lock();
        let head = state.queue.pop_front();
        state.head_attempts = 0;
        let mut dropped = 0u64;
        if let Some(head) = head {
            state.rejected.push_back((head, reason));
            while state.rejected.len() > self.shared.rejected_capacity {
                state.rejected.pop_front();
                dropped += 1;
            }
        }
        drop(state);
        if dropped > 0 {
            let total = self
                .shared
                .rejected_dropped
                .fetch_add(dropped, Ordering::Relaxed)
                + dropped;
            tracing::warn!(
                dropped,
                total,
                capacity = self.shared.rejected_capacity,
                "set-aside detections over capacity: the oldest dropped (call take_rejected to keep them)"
            );
        }
        self.shared.progressed.notify_waiters();
    }
}

/// A wait on the server cut short after `timeout`, as the store would report it (unreachable).
fn timed_out(operation: &'static str, timeout: Duration) -> StoreError {
    StoreError::Database {
        operation,
        source: Box::new(sea_orm::sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        ))),
    }
}
