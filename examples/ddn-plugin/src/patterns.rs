//! Query patterns, counted in memory and written to the store once per interval and query rather than once per
//! call: a busy query costs one read and one upsert a second, not two database round trips per hook call, and the
//! writes never sit on the response path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anomaly_store::{QueryPattern, Store};

use crate::plugin::lock;

type Pending = Arc<Mutex<HashMap<String, QueryPattern>>>;

/// Pattern counts waiting to be written, and the task that writes them.
pub struct PatternBook {
    pending: Pending,
    store: Arc<dyn Store>,
    flusher: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for PatternBook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PatternBook")
            .field("pending", &lock(&self.pending).len())
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
    /// Starts writing pending counts to `store` every `every`. Call inside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, every: Duration) -> PatternBook {
        let pending: Pending = Arc::default();
        let flusher = tokio::spawn({
            let (store, pending) = (store.clone(), pending.clone());
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    flush(store.as_ref(), &pending).await;
                }
            }
        });
        PatternBook {
            pending,
            store,
            flusher,
        }
    }

    /// Counts one call of a query (a pattern with `count` 1).
    pub fn record(&self, call: QueryPattern) {
        add(&self.pending, call);
    }

    /// Writes every pending count now (at shutdown, and for tests).
    pub async fn flush(&self) {
        flush(self.store.as_ref(), &self.pending).await;
    }
}

impl Drop for PatternBook {
    fn drop(&mut self) {
        self.flusher.abort();
    }
}

/// Merges each pending pattern into the stored one and upserts it; what cannot be written goes back to pending.
async fn flush(store: &dyn Store, pending: &Pending) {
    let batch: Vec<QueryPattern> = lock(pending).drain().map(|(_, p)| p).collect();
    for delta in batch {
        let merged = match store.query_pattern(&delta.query_hash).await {
            Ok(Some(mut stored)) => {
                merge(&mut stored, delta.clone());
                stored
            }
            Ok(None) => delta.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "query pattern not written yet; kept for the next attempt");
                add(pending, delta);
                continue;
            }
        };
        if let Err(e) = store.upsert_query_pattern(&merged).await {
            tracing::warn!(error = %e, "query pattern not written yet; kept for the next attempt");
            add(pending, delta);
        }
    }
}

/// Adds `calls` to the pending counts of its query (a call just made, or counts a flush could not write: merging
/// keeps the newest text, variables and role whichever arrives first).
fn add(pending: &Pending, calls: QueryPattern) {
    let mut pending = lock(pending);
    match pending.get_mut(&calls.query_hash) {
        Some(p) => merge(p, calls),
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
        let book = PatternBook::start(store.clone(), Duration::from_secs(3_600));
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
    }
}
