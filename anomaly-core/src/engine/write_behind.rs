//! [`WriteBehind`]: a [`Persistence`] that buffers history appends in memory and writes them in the background,
//! one batch per key per interval, and keeps an outage of the storage off the caller's path.
//!
//! The engine appends every record it learns to its key's history, on the caller's thread. On a database that is
//! one transaction (and, on SQLite, one `fsync`) per call; a busy key that sees thousands of records a second
//! rewrites its whole capped history several times a second. Behind a `WriteBehind` the call only copies the
//! records into a per-key buffer; a background thread writes each key's pending records in one call every
//! `interval`, keeping only the newest `cap` of them (older ones would be trimmed by the store on arrival). Model
//! versions are written through at once: a version number is an answer the engine needs.
//!
//! - A crash loses what is pending: the history of the last `interval`, or, while the store is down, up to `cap`
//!   records per key. [`flush`](WriteBehind::flush) writes everything pending now, and dropping the `WriteBehind`
//!   writes it once more (waiting at most [`WriteBehind::SHUTDOWN_WAIT`], on the dropping thread: drop the last
//!   handle outside an async runtime's worker, or flush first).
//! - A write that fails with [`Error::Persistence`] (the store is down) keeps its records pending, still capped per
//!   key, and ends that flush: an outage delays history (up to `cap` records per key), it does not drop it.
//! - Records the store refuses as invalid ([`Error::PersistenceRefused`]) are found by bisecting the batch, dropped
//!   and counted; the rest of the batch is written.
//! - The inner [`Persistence::append_history_many`] should be atomic (the database stores do it in one
//!   transaction): a failed call is retried whole. As with any retried write, a commit whose answer is lost writes
//!   its records twice.
//! - Records are stamped by the store when they are written, up to `interval` after they were seen (after an
//!   outage, when it ends).
//! - **Outages** ([`Availability`]): the first call that fails with [`Error::Persistence`] while the storage does
//!   not answer a probe either marks it unavailable (a failure of one call or one key's data does not). From then on every call through the `WriteBehind` (reads that restore a key, model saves,
//!   clears) fails at once instead of waiting for the storage's timeout, history appends keep buffering, and the
//!   background thread probes the storage ([`Persistence::probe`]) right away and then every `interval` until it
//!   answers; then it writes what is pending. [`check`](WriteBehind::check) asks the storage now.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::availability::Availability;
use super::persistence::{ModelMetadata, ModelVersion, Persistence, SavedModel};
use crate::error::{Error, Result};

/// Counters of a [`WriteBehind`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBehindStats {
    /// History records waiting to be written.
    pub pending: u64,
    /// History records written to the inner persistence.
    pub written: u64,
    /// Pending records dropped because newer ones of the same key exceeded the cap before they were written.
    pub superseded: u64,
    /// Records the inner persistence refused as invalid, dropped.
    pub refused: u64,
    /// Flushes that stopped on a failed write or found the storage down (their records stayed pending).
    pub failed_flushes: u64,
}

/// History appends buffered and written in the background; everything else passed through. See the
/// [module documentation](self).
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use anomaly_core::engine::{InMemoryPersistence, Persistence, WriteBehind};
/// use serde_json::json;
///
/// let store = Arc::new(InMemoryPersistence::new(10_000));
/// let buffered = WriteBehind::new(store.clone(), 10_000, Duration::from_secs(1))?;
/// buffered.append_history("orders", &[json!({"amount": 12.5}), json!({"amount": 13.0})])?;
/// assert_eq!(buffered.stats().pending, 2);
/// // Reads see pending records; the store gets them at the next interval, or now:
/// assert_eq!(buffered.load_history("orders", 10)?.len(), 2);
/// buffered.flush()?;
/// assert_eq!(store.load_history("orders", 10)?.len(), 2);
/// # Ok::<(), anomaly_core::Error>(())
/// ```
pub struct WriteBehind {
    shared: Arc<Shared>,
    /// The writer thread, and the channel on which it says it is done (in a mutex only to make the type `Sync`).
    flusher: Option<(JoinHandle<()>, Mutex<Receiver<()>>)>,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("cap", &self.shared.cap)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One key's pending records, and whether a call is using its stored history (writing, reading or clearing it).
#[derive(Default)]
struct KeyBuffer {
    queue: VecDeque<Value>,
    busy: bool,
}

/// What the background thread is asked to do besides its periodic write.
#[derive(Default)]
struct Signals {
    stop: bool,
    /// Probe the storage now (a call just found it down).
    probe: bool,
}

struct Shared {
    inner: Arc<dyn Persistence>,
    cap: usize,
    keys: Mutex<HashMap<String, KeyBuffer>>,
    /// Notified when a key stops being busy.
    released: Condvar,
    signals: Mutex<Signals>,
    wake: Condvar,
    availability: Availability,
    /// The key whose write failed last, if the last flush failed.
    last_failed: Mutex<Option<String>>,
    /// Whether the last background flush failed.
    failing: AtomicBool,
    pending: AtomicU64,
    written: AtomicU64,
    superseded: AtomicU64,
    refused: AtomicU64,
    failed_flushes: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Appends `records` to `queue`, keeping the newest `cap`; returns how many older records were dropped.
fn push_capped(
    queue: &mut VecDeque<Value>,
    records: impl IntoIterator<Item = Value>,
    cap: usize,
) -> u64 {
    queue.extend(records);
    let excess = queue.len().saturating_sub(cap);
    queue.drain(..excess);
    excess as u64
}

/// Exclusive use of one key's stored history, so that a record is always either pending or stored for the call
/// holding it, never on its way; released on drop.
struct Claim<'a> {
    shared: &'a Shared,
    key: &'a str,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = lock(&self.shared.keys);
        if let Some(buffer) = keys.get_mut(self.key) {
            buffer.busy = false;
            if buffer.queue.is_empty() {
                keys.remove(self.key);
            }
        }
        self.shared.released.notify_all();
    }
}

impl Shared {
    fn claim<'a>(&'a self, key: &'a str) -> Claim<'a> {
        let mut keys = lock(&self.keys);
        while keys.get(key).is_some_and(|b| b.busy) {
            keys = self.released.wait(keys).unwrap_or_else(|e| e.into_inner());
        }
        keys.entry(key.to_string()).or_default().busy = true;
        Claim { shared: self, key }
    }

    /// Takes the key's pending records (the caller holds its claim).
    fn take(&self, key: &str) -> VecDeque<Value> {
        let mut keys = lock(&self.keys);
        let queue = keys
            .get_mut(key)
            .map(|b| std::mem::take(&mut b.queue))
            .unwrap_or_default();
        // Counted under the lock, like every change of the queues, so the count never passes below zero.
        self.pending
            .fetch_sub(queue.len() as u64, Ordering::Relaxed);
        queue
    }

    /// Puts `records` back in front of what arrived meanwhile, still capped.
    fn put_back(&self, key: &str, records: &[Value]) {
        let mut keys = lock(&self.keys);
        let queue = &mut keys.entry(key.to_string()).or_default().queue;
        let newer: Vec<Value> = queue.drain(..).collect();
        let dropped = push_capped(queue, records.iter().cloned().chain(newer), self.cap);
        self.pending
            .fetch_add(records.len() as u64 - dropped, Ordering::Relaxed);
        self.superseded.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Writes `records`, dropping the ones the store refuses (found by bisecting). On a failure that may pass,
    /// returns the index from which the records are unwritten, with the error.
    fn write(&self, key: &str, records: &[Value]) -> std::result::Result<(), (usize, Error)> {
        let mut ranges = vec![(0, records.len())];
        let mut refused = 0u64;
        let mut outcome = Ok(());
        while let Some((lo, hi)) = ranges.pop() {
            match self.inner.append_history(key, &records[lo..hi]) {
                Ok(()) => {
                    self.written.fetch_add((hi - lo) as u64, Ordering::Relaxed);
                }
                Err(Error::PersistenceRefused { reason }) if hi - lo == 1 => {
                    refused += 1;
                    tracing::debug!(key, reason, "history record refused by the store");
                }
                Err(Error::PersistenceRefused { .. }) => {
                    let mid = lo + (hi - lo) / 2;
                    ranges.push((mid, hi));
                    ranges.push((lo, mid));
                }
                Err(e) => {
                    outcome = Err((lo, e));
                    break;
                }
            }
        }
        if refused > 0 {
            self.refused.fetch_add(refused, Ordering::Relaxed);
            tracing::warn!(
                key,
                records = refused,
                "history records refused by the store as invalid; dropped"
            );
        }
        outcome
    }

    /// Runs `f` on the inner persistence unless the storage is known to be down; a failure that is not a refusal
    /// marks it down and wakes the probe.
    fn guarded<T>(&self, f: impl FnOnce(&dyn Persistence) -> Result<T>) -> Result<T> {
        if !self.availability.is_available() {
            return Err(self.availability.unavailable());
        }
        f(self.inner.as_ref()).inspect_err(|e| self.failed(e))
    }

    /// A call failed: the storage is down if it does not answer a probe either (a failure of one key's data or of
    /// one call is not an outage).
    fn failed(&self, e: &Error) {
        if !matches!(e, Error::Persistence { .. }) {
            return;
        }
        if self.inner.probe().is_ok() {
            tracing::debug!(error = %e, "a store call failed but the store answers");
            return;
        }
        self.mark_down(e);
    }

    fn mark_down(&self, e: &Error) {
        if self.availability.failed(&e.to_string()) {
            lock(&self.signals).probe = true;
            self.wake.notify_all();
        }
    }

    /// Asks the storage whether it answers, and records the answer.
    fn probe(&self) -> bool {
        match self.inner.probe() {
            Ok(()) => {
                self.availability.answered();
                true
            }
            Err(e) => {
                self.availability.failed(&e.to_string());
                false
            }
        }
    }

    fn flush(&self) -> Result<()> {
        if !self.availability.is_available() && !self.probe() {
            self.failed_flushes.fetch_add(1, Ordering::Relaxed);
            return Err(self.availability.unavailable());
        }
        let mut keys: Vec<String> = lock(&self.keys)
            .iter()
            .filter(|(_, b)| !b.queue.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        // The key whose write failed last goes last: a batch that keeps failing does not hold up the others.
        if let Some(failed) = &*lock(&self.last_failed) {
            keys.sort_by_key(|k| k == failed);
        }
        for key in &keys {
            let _claim = self.claim(key);
            let records = Vec::from(self.take(key));
            if records.is_empty() {
                continue;
            }
            if let Err((unwritten, e)) = self.write(key, &records) {
                self.put_back(key, &records[unwritten..]);
                self.failed(&e);
                self.failed_flushes.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_failed) = Some(key.clone());
                // The store is failing: the other keys wait for the next flush rather than fail one by one.
                return Err(e);
            }
        }
        *lock(&self.last_failed) = None;
        Ok(())
    }

    fn run(&self, interval: Duration) {
        loop {
            let stopping = {
                let signals = lock(&self.signals);
                let (mut signals, _) = self
                    .wake
                    .wait_timeout_while(signals, interval, |s| !s.stop && !s.probe)
                    .unwrap_or_else(|e| e.into_inner());
                signals.probe = false;
                signals.stop
            };
            // While the storage is down, probe it (each interval) and write nothing until it answers.
            if !self.availability.is_available() && !self.probe() && !stopping {
                continue;
            }
            match std::panic::catch_unwind(AssertUnwindSafe(|| self.flush())) {
                Ok(Ok(())) => {
                    if self.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("pending history records are written again");
                    }
                }
                // Said once per outage, not once per interval.
                Ok(Err(e)) if self.failing.swap(true, Ordering::Relaxed) => {
                    tracing::debug!(error = %e, "pending history records still cannot be written")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not write pending history records; they stay pending")
                }
                Err(_) => tracing::error!("writing pending history records panicked"),
            }
            if stopping {
                return;
            }
        }
    }
}

impl WriteBehind {
    /// How long dropping a `WriteBehind` waits for its last write before leaving it to finish on its own.
    pub const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

    /// Buffers history appends to `inner`, keeping at most `cap` pending records per key (use the store's own
    /// per-key cap) and writing them every `interval` from a background thread.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] when `cap` or `interval` is zero; [`Error::Persistence`] when the background
    /// thread cannot be started.
    pub fn new(inner: Arc<dyn Persistence>, cap: usize, interval: Duration) -> Result<Self> {
        if cap == 0 {
            return Err(Error::invalid("cap", "must be at least 1"));
        }
        if interval.is_zero() {
            return Err(Error::invalid("interval", "must be positive"));
        }
        let shared = Arc::new(Shared {
            inner,
            cap,
            keys: Mutex::new(HashMap::new()),
            released: Condvar::new(),
            signals: Mutex::new(Signals::default()),
            wake: Condvar::new(),
            availability: Availability::default(),
            last_failed: Mutex::new(None),
            failing: AtomicBool::new(false),
            pending: AtomicU64::new(0),
            written: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
        });
        let background = shared.clone();
        let (done, finished) = sync_channel(1);
        let flusher = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                background.run(interval);
                let _ = done.send(());
            })
            .map_err(|e| Error::Persistence {
                reason: format!("cannot start the history writer thread: {e}"),
            })?;
        Ok(WriteBehind {
            shared,
            flusher: Some((flusher, Mutex::new(finished))),
        })
    }

    /// Writes every pending record now (probing the storage first if it is taken to be down).
    ///
    /// # Errors
    /// The first failed write of the inner persistence; its records, and those of the keys not reached yet, stay
    /// pending. [`Error::Persistence`] when the storage is down and still does not answer.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush()
    }

    /// Whether the storage answers, as last seen.
    pub fn availability(&self) -> &Availability {
        &self.shared.availability
    }

    /// Whether the storage answers: asked now while it is taken to be available (a failure marks it down), the
    /// background probe's last answer (at most an interval old) while it is not, so this never waits on a storage
    /// known to be down.
    pub fn check(&self) -> bool {
        self.shared.availability.is_available() && self.shared.probe()
    }

    /// Marks the storage unavailable (for example a database server that did not answer at start-up); the
    /// background thread probes it from now on.
    pub fn mark_unavailable(&self, reason: &str) {
        self.shared.mark_down(&Error::Persistence {
            reason: reason.to_string(),
        });
    }

    /// The persistence the records are written to.
    pub fn inner(&self) -> &Arc<dyn Persistence> {
        &self.shared.inner
    }

    /// Pending, written, superseded and refused records, and failed flushes so far.
    pub fn stats(&self) -> WriteBehindStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WriteBehindStats {
            pending: get(&self.shared.pending),
            written: get(&self.shared.written),
            superseded: get(&self.shared.superseded),
            refused: get(&self.shared.refused),
            failed_flushes: get(&self.shared.failed_flushes),
        }
    }
}

impl Drop for WriteBehind {
    /// Stops the background thread after a last write of everything pending, waiting at most [`WriteBehind::SHUTDOWN_WAIT`].
    fn drop(&mut self) {
        lock(&self.shared.signals).stop = true;
        self.shared.wake.notify_all();
        if let Some((flusher, finished)) = self.flusher.take() {
            let finished = finished.into_inner().unwrap_or_else(|e| e.into_inner());
            if finished.recv_timeout(Self::SHUTDOWN_WAIT).is_ok() {
                let _ = flusher.join();
            } else {
                tracing::error!(
                    "the last history write did not finish in time; left to finish on its own"
                );
                return;
            }
        }
        let left = self.stats().pending;
        if left > 0 {
            tracing::warn!(records = left, "history records left unwritten at shutdown");
        }
    }
}

impl Persistence for WriteBehind {
    /// Buffers the records (the newest `cap` per key); never fails.
    fn append_history(&self, key: &str, records: &[Value]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Only the newest `cap` can survive; copy no more than those.
        let newest = &records[records.len().saturating_sub(self.shared.cap)..];
        let mut keys = lock(&self.shared.keys);
        let buffer = match keys.get_mut(key) {
            Some(b) => b,
            None => keys.entry(key.to_string()).or_default(),
        };
        let dropped = push_capped(&mut buffer.queue, newest.iter().cloned(), self.shared.cap);
        self.shared
            .pending
            .fetch_add(newest.len() as u64 - dropped, Ordering::Relaxed);
        drop(keys);
        self.shared.superseded.fetch_add(
            (records.len() - newest.len()) as u64 + dropped,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// The stored history followed by the pending records, the most recent `limit` of them.
    fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        let _claim = self.shared.claim(key);
        let mut records = self.shared.guarded(|p| p.load_history(key, limit))?;
        if let Some(buffer) = lock(&self.shared.keys).get(key) {
            records.extend(buffer.queue.iter().cloned());
        }
        // The store keeps the newest `cap` per key: what it holds plus what is pending is read as it will be once
        // written, so a read gives the same answer before and after a flush.
        let excess = records.len().saturating_sub(limit.min(self.shared.cap));
        records.drain(..excess);
        Ok(records)
    }

    /// Clears the stored history, then drops the key's pending records; counts both. When the store fails, the
    /// pending records stay.
    fn clear_history(&self, key: &str) -> Result<usize> {
        let _claim = self.shared.claim(key);
        let stored = self.shared.guarded(|p| p.clear_history(key))?;
        Ok(stored + self.shared.take(key).len())
    }

    fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> Result<u64> {
        self.shared
            .guarded(|p| p.save_model(key, kind, metadata, snapshot))
    }

    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
        self.shared.guarded(|p| p.load_model(key, version))
    }

    fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
        self.shared.guarded(|p| p.model_versions(key))
    }

    fn keys(&self) -> Result<Vec<String>> {
        // Every key with pending records or in use (its first records may be on their way to the store), read
        // before the store's: a key that leaves this map has had its records written by then.
        let mut keys: Vec<String> = lock(&self.shared.keys).keys().cloned().collect();
        keys.extend(self.shared.guarded(|p| p.keys())?);
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn probe(&self) -> Result<()> {
        if self.check() {
            Ok(())
        } else {
            Err(self.shared.availability.unavailable())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::InMemoryPersistence;
    use serde_json::json;

    /// In-memory persistence that fails history writes and clears while `down` is set, refuses (atomically) any
    /// batch holding a record with `"bad": true`, and counts write calls.
    struct Flaky {
        inner: InMemoryPersistence,
        down: AtomicBool,
        calls: AtomicU64,
    }

    impl Flaky {
        fn new() -> Arc<Self> {
            Arc::new(Flaky {
                inner: InMemoryPersistence::new(1_000),
                down: AtomicBool::new(false),
                calls: AtomicU64::new(0),
            })
        }
    }

    fn down() -> Error {
        Error::Persistence {
            reason: "down".into(),
        }
    }

    impl Persistence for Flaky {
        fn append_history(&self, key: &str, records: &[Value]) -> Result<()> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) || key == "always-fails" {
                return Err(down());
            }
            if records.iter().any(|r| r["bad"] == true) {
                return Err(Error::PersistenceRefused {
                    reason: "bad record".into(),
                });
            }
            self.inner.append_history(key, records)
        }
        fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
            if self.down.load(Ordering::Relaxed) {
                return Err(down());
            }
            self.inner.load_history(key, limit)
        }
        fn clear_history(&self, key: &str) -> Result<usize> {
            if self.down.load(Ordering::Relaxed) {
                return Err(down());
            }
            self.inner.clear_history(key)
        }
        fn save_model(
            &self,
            key: &str,
            kind: &str,
            metadata: &ModelMetadata,
            snapshot: &[u8],
        ) -> Result<u64> {
            self.inner.save_model(key, kind, metadata, snapshot)
        }
        fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
            self.inner.load_model(key, version)
        }
        fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
            self.inner.model_versions(key)
        }
        fn keys(&self) -> Result<Vec<String>> {
            self.inner.keys()
        }
        fn probe(&self) -> Result<()> {
            if self.down.load(Ordering::Relaxed) {
                return Err(down());
            }
            Ok(())
        }
    }

    fn records(from: i64, n: i64) -> Vec<Value> {
        (from..from + n).map(|i| json!({ "i": i })).collect()
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn appends_are_written_in_one_call_per_key_and_in_order() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        for chunk in 0..5 {
            wb.append_history("a", &records(chunk * 10, 10)).unwrap();
        }
        wb.append_history("b", &[json!({"i": -1})]).unwrap();
        assert_eq!(
            store.calls.load(Ordering::Relaxed),
            0,
            "nothing written before the flush"
        );
        wb.flush().unwrap();
        assert_eq!(store.calls.load(Ordering::Relaxed), 2, "one write per key");
        assert_eq!(store.load_history("a", 100).unwrap(), records(0, 50));
        assert_eq!(
            store.load_history("b", 100).unwrap(),
            vec![json!({"i": -1})]
        );
        assert_eq!(wb.stats().written, 51);
        assert_eq!(wb.stats().pending, 0);
    }

    #[test]
    fn only_the_newest_cap_records_are_kept_pending() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 30, HOUR).unwrap();
        wb.append_history("a", &records(0, 25)).unwrap();
        wb.append_history("a", &records(25, 50)).unwrap();
        assert_eq!(wb.stats().pending, 30);
        assert_eq!(wb.stats().superseded, 45);
        wb.flush().unwrap();
        assert_eq!(store.load_history("a", 1_000).unwrap(), records(45, 30));
    }

    #[test]
    fn reads_see_stored_then_pending_records() {
        let store = Flaky::new();
        store.append_history("a", &records(0, 5)).unwrap();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history("a", &records(5, 5)).unwrap();
        wb.append_history("new", &records(0, 1)).unwrap();
        assert_eq!(wb.load_history("a", 100).unwrap(), records(0, 10));
        assert_eq!(wb.load_history("a", 3).unwrap(), records(7, 3));
        assert_eq!(wb.keys().unwrap(), vec!["a".to_string(), "new".to_string()]);
    }

    #[test]
    fn a_read_before_the_flush_gives_what_the_store_will_keep() {
        // Three records stored, twelve pending, a cap of ten: the store will keep the newest ten, so a read gives
        // those ten before the flush as after it.
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 10, HOUR).unwrap();
        store.append_history("a", &records(0, 3)).unwrap();
        wb.append_history("a", &records(3, 12)).unwrap();
        assert_eq!(wb.load_history("a", 100).unwrap(), records(5, 10));
        assert_eq!(wb.load_history("a", 4).unwrap(), records(11, 4));
    }

    #[test]
    fn clearing_drops_pending_records_too() {
        let store = Flaky::new();
        store.append_history("a", &records(0, 5)).unwrap();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history("a", &records(5, 3)).unwrap();
        assert_eq!(wb.clear_history("a").unwrap(), 8);
        wb.flush().unwrap();
        assert!(store.load_history("a", 100).unwrap().is_empty());
    }

    #[test]
    fn a_failed_write_keeps_its_records_pending_before_newer_ones() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        store.down.store(true, Ordering::Relaxed);
        wb.append_history("a", &records(0, 10)).unwrap();
        assert!(wb.flush().is_err());
        wb.append_history("a", &records(10, 10)).unwrap();
        assert!(wb.flush().is_err());
        let stats = wb.stats();
        assert_eq!(
            (stats.pending, stats.failed_flushes, stats.written),
            (20, 2, 0)
        );
        store.down.store(false, Ordering::Relaxed);
        wb.flush().unwrap();
        assert_eq!(
            store.load_history("a", 100).unwrap(),
            records(0, 20),
            "each record once, in order"
        );
    }

    #[test]
    fn a_failing_store_ends_the_flush_and_other_keys_wait() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        for key in ["a", "b", "c"] {
            wb.append_history(key, &records(0, 4)).unwrap();
        }
        store.down.store(true, Ordering::Relaxed);
        assert!(wb.flush().is_err());
        assert_eq!(
            store.calls.load(Ordering::Relaxed),
            1,
            "one attempt, not one per key"
        );
        assert_eq!(wb.stats().pending, 12);
        store.down.store(false, Ordering::Relaxed);
        wb.flush().unwrap();
        for key in ["a", "b", "c"] {
            assert_eq!(store.load_history(key, 100).unwrap(), records(0, 4));
        }
    }

    #[test]
    fn a_key_that_keeps_failing_does_not_hold_up_the_others() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history("always-fails", &records(0, 3)).unwrap();
        wb.append_history("fine", &records(0, 3)).unwrap();
        // Whichever comes first in the first flush, the second flush writes `fine`.
        let _ = wb.flush();
        assert!(wb.flush().is_err());
        assert_eq!(store.load_history("fine", 10).unwrap(), records(0, 3));
        assert_eq!(wb.stats().pending, 3);
        // The store answers its probes: one key's failing writes are no outage.
        assert!(wb.availability().is_available());
        assert_eq!(wb.availability().outages(), 0);
    }

    #[test]
    fn refused_records_are_dropped_and_the_rest_written_in_order() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 1_000, HOUR).unwrap();
        let mut batch = records(0, 100);
        for bad in [3, 4, 57, 99] {
            batch[bad] = json!({"i": bad, "bad": true});
        }
        wb.append_history("a", &batch).unwrap();
        wb.flush().unwrap();
        let good: Vec<Value> = batch.iter().filter(|r| r["bad"] != true).cloned().collect();
        assert_eq!(store.load_history("a", 1_000).unwrap(), good);
        let stats = wb.stats();
        assert_eq!((stats.refused, stats.written, stats.pending), (4, 96, 0));
        assert!(
            store.calls.load(Ordering::Relaxed) < 60,
            "bisected, not one call per record: {}",
            store.calls.load(Ordering::Relaxed)
        );
        // Nothing is retried afterwards.
        wb.flush().unwrap();
        assert_eq!(wb.stats().refused, 4);
    }

    #[test]
    fn concurrent_appends_reads_and_flushes_lose_and_repeat_nothing() {
        let store = Flaky::new();
        let wb =
            Arc::new(WriteBehind::new(store.clone(), 1_000, Duration::from_millis(1)).unwrap());
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let wb = wb.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        wb.append_history(&format!("k{t}"), &records(n * 2, 2))
                            .unwrap();
                        let seen = wb.load_history(&format!("k{t}"), 1_000).unwrap();
                        assert_eq!(
                            seen,
                            records(0, n * 2 + 2),
                            "every record seen once, in order"
                        );
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        wb.flush().unwrap();
        for t in 0..4 {
            assert_eq!(
                store.load_history(&format!("k{t}"), 1_000).unwrap(),
                records(0, 100)
            );
        }
        assert_eq!(wb.keys().unwrap().len(), 4);
    }

    #[test]
    fn the_background_thread_writes_and_drop_writes_the_rest() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, Duration::from_millis(10)).unwrap();
        wb.append_history("a", &records(0, 3)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.load_history("a", 100).unwrap().len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the background write never came"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history("a", &records(3, 2)).unwrap();
        drop(wb);
        assert_eq!(store.load_history("a", 100).unwrap(), records(0, 5));
    }

    #[test]
    fn an_outage_fails_calls_at_once_and_the_probe_ends_it() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, Duration::from_millis(20)).unwrap();
        assert!(wb.check());
        store.down.store(true, Ordering::Relaxed);
        // The first call that fails marks the storage down ...
        assert!(wb.load_history("a", 10).is_err());
        assert!(!wb.availability().is_available());
        assert_eq!(wb.availability().outages(), 1);
        // ... after which calls fail at once, without reaching it, and appends keep buffering.
        let calls = store.calls.load(Ordering::Relaxed);
        let err = wb.clear_history("a").unwrap_err().to_string();
        assert!(err.contains("unavailable") && err.contains("down"), "{err}");
        wb.append_history("a", &records(0, 3)).unwrap();
        assert_eq!(
            store.calls.load(Ordering::Relaxed),
            calls,
            "no write while down"
        );
        assert!(!wb.check(), "no probe answers while down");
        // The storage answers again: the background probe notices and the pending records are written.
        store.down.store(false, Ordering::Relaxed);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.load_history("a", 100).unwrap().len() < 3 {
            assert!(std::time::Instant::now() < deadline, "the probe never came");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(wb.availability().is_available());
        assert_eq!(wb.availability().outages(), 1);
        // A refusal is no outage.
        wb.append_history("a", &[json!({"bad": true})]).unwrap();
        wb.flush().unwrap();
        assert!(wb.availability().is_available());
        store.down.store(true, Ordering::Relaxed);
        wb.mark_unavailable("not reachable at start-up");
        assert!(!wb.availability().is_available());
        assert_eq!(wb.availability().outages(), 2);
    }

    #[test]
    fn zero_cap_or_interval_is_refused() {
        let store: Arc<dyn Persistence> = Flaky::new();
        assert!(WriteBehind::new(store.clone(), 0, HOUR).is_err());
        assert!(WriteBehind::new(store, 10, Duration::ZERO).is_err());
    }
}
