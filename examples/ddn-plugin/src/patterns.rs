//! Query patterns, counted in memory and written to the store once per interval and query rather than once per
//! call: a busy query costs one read and one upsert a second, not two database round trips per hook call, and the
//! writes never sit on the response path.
//!
//! Bounded: counts of at most `capacity` queries (`MAX_KEYS_IN_MEMORY`) wait at once; while the database is down
//! a call of a query not already waiting is dropped and counted beyond that. A pattern the database refuses for
//! what it is ([`StoreError::InvalidInput`], e.g. a NUL character on PostgreSQL) is dropped and counted rather than
//! retried forever.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomaly_store::{QueryPattern, Store, StoreError};

use crate::plugin::lock;

/// Counts waiting per query hash, and what became of earlier ones.
#[derive(Debug, Default)]
struct Book {
    pending: Mutex<HashMap<String, QueryPattern>>,
    capacity: usize,
    written: AtomicU64,
    dropped: AtomicU64,
    /// One flush at a time: two would read, merge and write the same row, and one count would overwrite the other.
    flushing: tokio::sync::Mutex<()>,
}

type Pending = Arc<Book>;

/// What a [`PatternBook`] holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatternStats {
    /// Queries whose counts wait to be written.
    pub pending: usize,
    /// Pattern updates written.
    pub written: u64,
    /// Calls whose counts were dropped: refused by the database, or beyond the capacity.
    pub dropped: u64,
}

/// Pattern counts waiting to be written, and the task that writes them.
pub struct PatternBook {
    pending: Pending,
    store: Arc<dyn Store>,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stop: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for PatternBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternBook")
            .field("pending", &lock(&self.pending.pending).len())
            .finish_non_exhaustive()
    }
}

/// Adds the calls counted in `new` to `into` (the same query): counts add up, the latest call's text, variables and
/// role win, the earliest first sighting stays.
fn merge(into: &mut QueryPattern, new: QueryPattern) {
    into.count = into.count.saturating_add(new.count);
    into.anomaly_count = into.anomaly_count.saturating_add(new.anomaly_count);
    into.anomalous |= new.anomalous;
    into.first_seen = into.first_seen.min(new.first_seen);
    if new.last_seen >= into.last_seen {
        into.last_seen = new.last_seen;
        into.text = new.text;
        into.operation_name = new.operation_name;
        into.variables = new.variables;
        into.role = new.role;
    }
}

impl PatternBook {
    /// Starts writing pending counts to `store` every `every`, holding counts of at most `capacity` queries
    /// (at least one). Call inside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, every: Duration, capacity: usize) -> PatternBook {
        let pending: Pending = Arc::new(Book {
            capacity: capacity.max(1),
            ..Book::default()
        });
        let stop = Arc::new(tokio::sync::Notify::new());
        let flusher = tokio::spawn({
            let (store, pending, stop) = (store.clone(), pending.clone(), stop.clone());
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    // Stopping is seen between flushes, never in the middle of one.
                    tokio::select! {
                        _ = tick.tick() => flush(store.as_ref(), &pending, None).await,
                        () = stop.notified() => return,
                    }
                }
            }
        });
        PatternBook {
            pending,
            store,
            flusher: Mutex::new(Some(flusher)),
            stop,
        }
    }

    /// Counts one call of a query (a pattern with `count` 1).
    pub fn record(&self, call: QueryPattern) {
        add(&self.pending, call);
    }

    /// Writes every pending count now (for tests); returns how many queries still wait (their writes failed).
    pub async fn flush(&self) -> usize {
        flush(self.store.as_ref(), &self.pending, None).await;
        lock(&self.pending.pending).len()
    }

    /// The last flush, at shutdown: stops the background writer (after the write it may be doing), then writes
    /// query by query until `deadline`; returns how many queries still wait (failed, or not reached in time).
    pub async fn close(&self, deadline: tokio::time::Instant) -> usize {
        let flusher = lock(&self.flusher).take();
        if let Some(flusher) = flusher {
            self.stop.notify_one();
            let _ = tokio::time::timeout_at(deadline, flusher).await;
        }
        flush(self.store.as_ref(), &self.pending, Some(deadline)).await;
        lock(&self.pending.pending).len()
    }

    /// What it holds and has done.
    pub fn stats(&self) -> PatternStats {
        PatternStats {
            pending: lock(&self.pending.pending).len(),
            written: self.pending.written.load(Ordering::Relaxed),
            dropped: self.pending.dropped.load(Ordering::Relaxed),
        }
    }
}

impl Drop for PatternBook {
    fn drop(&mut self) {
        if let Some(flusher) = lock(&self.flusher).take() {
            flusher.abort();
        }
    }
}

/// Merges each pending pattern into the stored one and upserts it, one query at a time (taken from pending only
/// as it is written, so a flush stopped by `deadline` leaves the rest pending); what cannot be written goes back
/// to pending, unless the database refused it for what it is (then it is dropped and counted).
async fn flush(store: &dyn Store, book: &Pending, deadline: Option<tokio::time::Instant>) {
    let _one_at_a_time = book.flushing.lock().await;
    let hashes: Vec<String> = lock(&book.pending).keys().cloned().collect();
    for hash in hashes {
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return;
        }
        let Some(delta) = lock(&book.pending).remove(&hash) else {
            continue;
        };
        let written = match store.query_pattern(&delta.query_hash).await {
            Ok(Some(mut stored)) => {
                merge(&mut stored, delta.clone());
                store.upsert_query_pattern(&stored).await
            }
            Ok(None) => store.upsert_query_pattern(&delta).await,
            Err(e) => Err(e),
        };
        match written {
            Ok(()) => {
                book.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e @ StoreError::InvalidInput { .. }) => {
                tracing::warn!(error = %e, calls = delta.count, "the database refused a query pattern; dropped");
                book.dropped.fetch_add(delta.count, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(error = %e, "query pattern not written yet; kept for the next attempt");
                add(book, delta);
            }
        }
    }
}

/// Adds `calls` to the pending counts of its query (a call just made, or counts a flush could not write: merging
/// keeps the newest text, variables and role whichever arrives first).
fn add(book: &Book, calls: QueryPattern) {
    let mut pending = lock(&book.pending);
    let full = pending.len() >= book.capacity;
    match pending.get_mut(&calls.query_hash) {
        Some(p) => merge(p, calls),
        None if full => {
            drop(pending);
            book.dropped.fetch_add(calls.count, Ordering::Relaxed);
            tracing::debug!("query-pattern book full; a call's counts were dropped");
        }
        None => {
            pending.insert(calls.query_hash.clone(), calls);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anomaly_store::InMemoryStore;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn call(hash: &str, second: u32, anomalies: u64) -> QueryPattern {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, second).unwrap();
        QueryPattern {
            query_hash: hash.into(),
            text: format!("query Q{second} {{ a }}"),
            operation_name: Some(format!("Q{second}")),
            variables: json!({"second": second}),
            role: Some("user".into()),
            count: 1,
            anomaly_count: anomalies,
            anomalous: anomalies > 0,
            first_seen: at,
            last_seen: at,
        }
    }

    #[tokio::test]
    async fn calls_add_up_across_flushes() {
        let store: Arc<dyn Store> = Arc::new(InMemoryStore::new(10));
        let book = PatternBook::start(store.clone(), Duration::from_secs(3_600), 100);
        book.record(call("h", 1, 0));
        book.record(call("h", 3, 2));
        book.record(call("other", 2, 0));
        book.flush().await;
        book.record(call("h", 5, 0));
        book.flush().await;
        let p = store.query_pattern("h").await.unwrap().unwrap();
        assert_eq!((p.count, p.anomaly_count, p.anomalous), (3, 2, true));
        assert_eq!(p.first_seen, call("h", 1, 0).first_seen);
        assert_eq!(p.last_seen, call("h", 5, 0).last_seen);
        assert_eq!(p.variables, json!({"second": 5}));
        assert_eq!(
            store.query_pattern("other").await.unwrap().unwrap().count,
            1
        );
        assert_eq!(
            book.stats(),
            PatternStats {
                pending: 0,
                written: 3,
                dropped: 0
            }
        );
    }

    #[tokio::test]
    async fn a_store_that_stays_down_keeps_at_most_capacity_queries() {
        // Nothing listens on port 1: every attempt fails at once, as in an outage.
        let store: Arc<dyn Store> = Arc::new(
            anomaly_store::SeaOrmStore::lazy(
                "postgres://postgres@127.0.0.1:1/test",
                Duration::from_millis(500),
                10,
                Duration::from_secs(3_600),
            )
            .unwrap(),
        );
        let book = PatternBook::start(store, Duration::from_secs(3_600), 2);
        for (i, hash) in ["a", "b", "c", "a", "d"].iter().enumerate() {
            book.record(call(hash, i as u32, 0));
            book.flush().await;
        }
        let stats = book.stats();
        assert_eq!(
            (stats.pending, stats.dropped, stats.written),
            (2, 2, 0),
            "a and b wait; c and d were dropped"
        );
    }

    #[tokio::test]
    async fn a_refused_pattern_is_dropped_not_retried() {
        // A query hash longer than the store's keys: refused for what it is, every time.
        let store: Arc<dyn Store> = Arc::new(InMemoryStore::new(10));
        let book = PatternBook::start(store, Duration::from_secs(3_600), 10);
        let long = "h".repeat(anomaly_store::MAX_KEY_CHARS + 1);
        book.record(call(&long, 1, 0));
        book.record(call(&long, 2, 0));
        assert_eq!(book.flush().await, 0, "nothing waits for a retry");
        assert_eq!(book.stats().dropped, 2);
    }
}
