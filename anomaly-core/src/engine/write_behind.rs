//! [`WriteBehind`]: a [`Persistence`] that buffers history appends in memory and writes them in the background,
//! one batch per key per interval.
//!
//! The engine appends every record it learns to its key's history, on the caller's thread. On a database that is
//! one transaction (and, on SQLite, one `fsync`) per call; a busy key that sees thousands of records a second
//! rewrites its whole capped history several times a second. Behind a `WriteBehind` the call only copies the
//! records into a per-key buffer; a background thread writes each key's pending records in one call every
//! `interval`, keeping only the newest `cap` of them (older ones would be trimmed by the store on arrival). Model
//! versions are written through at once: a version number is an answer the engine needs.
//!
//! What a crash can lose is the history of the last `interval`; [`flush`](WriteBehind::flush) and dropping the
//! last handle write everything pending. A write that fails (the store is down) keeps its records pending, still
//! capped per key, for the next attempt: an outage delays history, it does not drop it.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::persistence::{ModelMeta, Persistence, StoredModel};
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
    /// Background writes that failed (their records stayed pending).
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
/// buffered.append_history_many("orders", &[json!({"amount": 12.5}), json!({"amount": 13.0})])?;
/// assert_eq!(buffered.stats().pending, 2);
/// // Reads see pending records; the store gets them at the next interval, or now:
/// assert_eq!(buffered.load_history("orders", 10)?.len(), 2);
/// buffered.flush()?;
/// assert_eq!(store.load_history("orders", 10)?.len(), 2);
/// # Ok::<(), anomaly_core::Error>(())
/// ```
pub struct WriteBehind {
    shared: Arc<Shared>,
    flusher: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBehind")
            .field("cap", &self.shared.cap)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Shared {
    inner: Arc<dyn Persistence>,
    cap: usize,
    pending: Mutex<HashMap<String, VecDeque<Value>>>,
    /// Held while records are out of `pending` but not yet written, and by the calls that must not see that
    /// state (reads, clears): a record is always either pending or written, never in between for them.
    writing: Mutex<()>,
    stop: Mutex<bool>,
    wake: Condvar,
    written: AtomicU64,
    superseded: AtomicU64,
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

impl Shared {
    fn flush(&self) -> Result<()> {
        let _writing = lock(&self.writing);
        let batch: Vec<(String, VecDeque<Value>)> = lock(&self.pending).drain().collect();
        let mut first_error = None;
        for (key, records) in batch {
            let records = Vec::from(records);
            match self.inner.append_history_many(&key, &records) {
                Ok(()) => {
                    self.written
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    // Back in front of whatever arrived meanwhile, still capped.
                    let mut pending = lock(&self.pending);
                    let queue = pending.entry(key).or_default();
                    let newer: Vec<Value> = queue.drain(..).collect();
                    let dropped = push_capped(queue, records.into_iter().chain(newer), self.cap);
                    self.superseded.fetch_add(dropped, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => {
                self.failed_flushes.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn run(&self, interval: Duration) {
        loop {
            let stopping = {
                let stop = lock(&self.stop);
                let (stop, _) = self
                    .wake
                    .wait_timeout_while(stop, interval, |stop| !*stop)
                    .unwrap_or_else(|e| e.into_inner());
                *stop
            };
            if let Err(e) = self.flush() {
                tracing::warn!(error = %e, "could not write pending history records; they stay pending");
            }
            if stopping {
                return;
            }
        }
    }
}

impl WriteBehind {
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
            pending: Mutex::new(HashMap::new()),
            writing: Mutex::new(()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            written: AtomicU64::new(0),
            superseded: AtomicU64::new(0),
            failed_flushes: AtomicU64::new(0),
        });
        let background = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || background.run(interval))
            .map_err(|e| Error::Persistence {
                reason: format!("cannot start the history writer thread: {e}"),
            })?;
        Ok(WriteBehind {
            shared,
            flusher: Some(flusher),
        })
    }

    /// Writes every pending record now.
    ///
    /// # Errors
    /// The first error of the inner persistence; the records of the keys that failed stay pending.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush()
    }

    /// The persistence the records are written to.
    pub fn inner(&self) -> &Arc<dyn Persistence> {
        &self.shared.inner
    }

    /// Pending, written, superseded records and failed writes so far.
    pub fn stats(&self) -> WriteBehindStats {
        let pending = lock(&self.shared.pending)
            .values()
            .map(|q| q.len() as u64)
            .sum();
        WriteBehindStats {
            pending,
            written: self.shared.written.load(Ordering::Relaxed),
            superseded: self.shared.superseded.load(Ordering::Relaxed),
            failed_flushes: self.shared.failed_flushes.load(Ordering::Relaxed),
        }
    }
}

impl Drop for WriteBehind {
    /// Stops the background thread after a last write of everything pending (logged if it fails).
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(flusher) = self.flusher.take()
            && flusher.join().is_err()
        {
            tracing::error!("the history writer thread panicked");
        }
        let left = self.stats().pending;
        if left > 0 {
            tracing::warn!(records = left, "history records left unwritten at shutdown");
        }
    }
}

impl Persistence for WriteBehind {
    fn append_history(&self, key: &str, record: &Value) -> Result<()> {
        self.append_history_many(key, std::slice::from_ref(record))
    }

    fn append_history_many(&self, key: &str, records: &[Value]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        // Only the newest `cap` can survive; copy no more than those.
        let newest = &records[records.len().saturating_sub(self.shared.cap)..];
        let mut pending = lock(&self.shared.pending);
        let queue = match pending.get_mut(key) {
            Some(q) => q,
            None => pending.entry(key.to_string()).or_default(),
        };
        let dropped = (records.len() - newest.len()) as u64
            + push_capped(queue, newest.iter().cloned(), self.shared.cap);
        self.shared.superseded.fetch_add(dropped, Ordering::Relaxed);
        Ok(())
    }

    /// The stored history followed by the pending records, the most recent `limit` of them.
    fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        let _writing = lock(&self.shared.writing);
        let mut records = self.shared.inner.load_history(key, limit)?;
        if let Some(queue) = lock(&self.shared.pending).get(key) {
            records.extend(queue.iter().cloned());
        }
        let excess = records.len().saturating_sub(limit);
        records.drain(..excess);
        Ok(records)
    }

    /// Drops the key's pending records, then clears the stored history; counts both.
    fn clear_history(&self, key: &str) -> Result<usize> {
        let _writing = lock(&self.shared.writing);
        let dropped = lock(&self.shared.pending)
            .remove(key)
            .map_or(0, |q| q.len());
        Ok(dropped + self.shared.inner.clear_history(key)?)
    }

    fn save_model(&self, key: &str, meta: &ModelMeta, snapshot: &[u8]) -> Result<u64> {
        self.shared.inner.save_model(key, meta, snapshot)
    }

    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<StoredModel>> {
        self.shared.inner.load_model(key, version)
    }

    fn model_versions(&self, key: &str) -> Result<Vec<ModelMeta>> {
        self.shared.inner.model_versions(key)
    }

    fn keys(&self) -> Result<Vec<String>> {
        let _writing = lock(&self.shared.writing);
        let mut keys = self.shared.inner.keys()?;
        keys.extend(lock(&self.shared.pending).keys().cloned());
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::InMemoryPersistence;
    use serde_json::json;
    use std::sync::atomic::AtomicBool;

    /// In-memory persistence that fails history writes while `down` is set, and counts write calls.
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

    impl Persistence for Flaky {
        fn append_history(&self, key: &str, record: &Value) -> Result<()> {
            self.append_history_many(key, std::slice::from_ref(record))
        }
        fn append_history_many(&self, key: &str, records: &[Value]) -> Result<()> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(Error::Persistence {
                    reason: "down".into(),
                });
            }
            self.inner.append_history_many(key, records)
        }
        fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
            self.inner.load_history(key, limit)
        }
        fn clear_history(&self, key: &str) -> Result<usize> {
            self.inner.clear_history(key)
        }
        fn save_model(&self, key: &str, meta: &ModelMeta, snapshot: &[u8]) -> Result<u64> {
            self.inner.save_model(key, meta, snapshot)
        }
        fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<StoredModel>> {
            self.inner.load_model(key, version)
        }
        fn model_versions(&self, key: &str) -> Result<Vec<ModelMeta>> {
            self.inner.model_versions(key)
        }
        fn keys(&self) -> Result<Vec<String>> {
            self.inner.keys()
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
            wb.append_history_many("a", &records(chunk * 10, 10))
                .unwrap();
        }
        wb.append_history("b", &json!({"i": -1})).unwrap();
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
        wb.append_history_many("a", &records(0, 25)).unwrap();
        wb.append_history_many("a", &records(25, 50)).unwrap();
        assert_eq!(wb.stats().pending, 30);
        assert_eq!(wb.stats().superseded, 45);
        wb.flush().unwrap();
        assert_eq!(store.load_history("a", 1_000).unwrap(), records(45, 30));
    }

    #[test]
    fn reads_see_stored_then_pending_records() {
        let store = Flaky::new();
        store.append_history_many("a", &records(0, 5)).unwrap();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history_many("a", &records(5, 5)).unwrap();
        wb.append_history_many("new", &records(0, 1)).unwrap();
        assert_eq!(wb.load_history("a", 100).unwrap(), records(0, 10));
        assert_eq!(wb.load_history("a", 3).unwrap(), records(7, 3));
        assert_eq!(wb.keys().unwrap(), vec!["a".to_string(), "new".to_string()]);
    }

    #[test]
    fn clearing_drops_pending_records_too() {
        let store = Flaky::new();
        store.append_history_many("a", &records(0, 5)).unwrap();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history_many("a", &records(5, 3)).unwrap();
        assert_eq!(wb.clear_history("a").unwrap(), 8);
        wb.flush().unwrap();
        assert!(store.load_history("a", 100).unwrap().is_empty());
    }

    #[test]
    fn a_failed_write_keeps_its_records_pending_before_newer_ones() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        store.down.store(true, Ordering::Relaxed);
        wb.append_history_many("a", &records(0, 10)).unwrap();
        assert!(wb.flush().is_err());
        wb.append_history_many("a", &records(10, 10)).unwrap();
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
    fn the_background_thread_writes_and_drop_writes_the_rest() {
        let store = Flaky::new();
        let wb = WriteBehind::new(store.clone(), 100, Duration::from_millis(10)).unwrap();
        wb.append_history_many("a", &records(0, 3)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.load_history("a", 100).unwrap().len() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "the background write never came"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let wb = WriteBehind::new(store.clone(), 100, HOUR).unwrap();
        wb.append_history_many("a", &records(3, 2)).unwrap();
        drop(wb);
        assert_eq!(store.load_history("a", 100).unwrap(), records(0, 5));
    }

    #[test]
    fn zero_cap_or_interval_is_refused() {
        let store: Arc<dyn Persistence> = Flaky::new();
        assert!(WriteBehind::new(store.clone(), 0, HOUR).is_err());
        assert!(WriteBehind::new(store, 10, Duration::ZERO).is_err());
    }
}
