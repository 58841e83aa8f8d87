//! Whether the database answers, and the engine's persistence in front of it.
//!
//! When the database goes down, every store call would wait for the connection pool's timeout
//! (`STORE_TIMEOUT_MS`) before failing. So the plugin keeps one [`StoreStatus`]: the first call that fails marks
//! the store unavailable, and from then on the engine's store calls ([`GuardedPersistence`]) fail at once instead
//! of waiting, until a probe ([`StoreMonitor`], every [`PROBE_INTERVAL`] while the store is unavailable) gets an
//! answer again.
//!
//! The engine's persistence is a [`WriteBehind`](anomaly_core::engine::WriteBehind) over a `GuardedPersistence`.
//! History writes come from the `WriteBehind`'s background thread, once a second: while the store is down they
//! fail at once and their records stay pending until it is back. Model saves and the reads that restore a key
//! still fail fast: the engine logs and counts them and carries on in memory. A hook request reaches the database
//! only to restore a dataset this process has not loaded yet or to store a dataset's first model, and waits on it
//! at most `STORE_TIMEOUT_MS`, not at all once the store is known to be down. Since most hook requests do not
//! reach the database, an outage is usually noticed by a failed background write or by `/health`'s probe.
//!
//! Detections do not go through here: they wait in the [`AnomalyQueue`](anomaly_store::AnomalyQueue), which
//! retries until the database is back.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anomaly_core::engine::{ModelMeta, Persistence, StoredModel};
use anomaly_store::{BlockingStore, Store};
use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How often an unavailable store is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the store answered the last time the plugin asked, shared by the engine's persistence, the hook and
/// `/health`.
#[derive(Debug)]
pub struct StoreStatus {
    available: AtomicBool,
    outages: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Woken when the store is marked unavailable, so the probe checks at once and then keeps probing.
    suspect: Notify,
}

impl Default for StoreStatus {
    fn default() -> Self {
        StoreStatus {
            available: AtomicBool::new(true),
            outages: AtomicU64::new(0),
            last_error: Mutex::new(None),
            suspect: Notify::new(),
        }
    }
}

impl StoreStatus {
    /// Whether the store is taken to answer.
    pub fn available(&self) -> bool {
        self.available.load(Ordering::Acquire)
    }

    /// Times the store went from available to unavailable.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// The last failure's message (store errors never carry the URL or a password).
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a failed store call: the store is unavailable until a probe gets an answer; the probe runs at once.
    /// [`GuardedPersistence`] does not report a call refused for what it carried (not for an outage); one reported
    /// anyway makes the store unavailable only for the length of one probe.
    pub fn failed(&self, error: &str) {
        self.set_unavailable(error);
    }

    /// Marks the store unavailable and wakes the probe (which then probes until it gets an answer).
    fn set_unavailable(&self, error: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        if self.available.swap(false, Ordering::AcqRel) {
            self.outages.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                error,
                "the store is unavailable: history and detections wait for it; model versions are not written"
            );
        }
        // Whatever the monitor is doing: parked while the store was available, it must start probing. (A permit
        // left while it is already probing costs one extra probe after the store is back.)
        self.suspect.notify_one();
    }

    fn set_available(&self) {
        if !self.available.swap(true, Ordering::AcqRel) {
            tracing::info!("the store answers again");
        }
    }
}

/// Asks the store a cheap question within `timeout` and records the answer in `status`.
async fn probe(store: &dyn Store, status: &StoreStatus, timeout: Duration) -> bool {
    match tokio::time::timeout(timeout, store.query_pattern("health-check")).await {
        Ok(Ok(_)) => {
            status.set_available();
            true
        }
        Ok(Err(e)) => {
            status.set_unavailable(&e.chain());
            false
        }
        Err(_) => {
            status.set_unavailable(&format!(
                "no answer to a health check within {} ms",
                timeout.as_millis()
            ));
            false
        }
    }
}

/// The background probe of a [`StoreStatus`]: right after a failed call, then every [`PROBE_INTERVAL`] while the
/// store is unavailable; idle while it answers. Stops when dropped.
pub struct StoreMonitor {
    store: Arc<dyn Store>,
    status: Arc<StoreStatus>,
    timeout: Duration,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for StoreMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreMonitor")
            .field("status", &self.status)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl StoreMonitor {
    /// Starts probing `store` (each probe given `timeout`) on the current tokio runtime; the store is taken to be
    /// available until a call or a probe fails.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn start(store: Arc<dyn Store>, timeout: Duration) -> Self {
        let status = Arc::new(StoreStatus::default());
        let task = tokio::spawn({
            let (store, status) = (store.clone(), status.clone());
            async move {
                loop {
                    if status.available() {
                        status.suspect.notified().await;
                    }
                    if !probe(store.as_ref(), &status, timeout).await {
                        tokio::time::sleep(PROBE_INTERVAL).await;
                    }
                }
            }
        });
        StoreMonitor {
            store,
            status,
            timeout,
            task,
        }
    }

    /// The status it keeps.
    pub fn status(&self) -> &Arc<StoreStatus> {
        &self.status
    }

    /// Whether the store answers: asked now (within the timeout) while it is taken to be available, the last
    /// probe's answer (at most [`PROBE_INTERVAL`] old) while it is not, so this never waits on a store known down.
    pub async fn reachable(&self) -> bool {
        self.status.available() && probe(self.store.as_ref(), &self.status, self.timeout).await
    }
}

impl Drop for StoreMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The engine's [`Persistence`] over a [`BlockingStore`], under the plugin's
/// [`WriteBehind`](anomaly_core::engine::WriteBehind): fails at once while the [`StoreStatus`] says the store is
/// unavailable, and reports each failed call to the status, except a refusal of the data it carried (which says
/// nothing about the store's health). A failed history write leaves its records pending in the `WriteBehind`; a
/// failed model save or key restore is logged and counted per key by the engine, which carries on in memory.
#[derive(Debug)]
pub struct GuardedPersistence {
    inner: BlockingStore,
    status: Arc<StoreStatus>,
}

impl GuardedPersistence {
    /// Persistence through `inner`, guarded by `status`.
    pub fn new(inner: BlockingStore, status: Arc<StoreStatus>) -> Self {
        GuardedPersistence { inner, status }
    }

    fn call<T>(
        &self,
        f: impl FnOnce(&BlockingStore) -> anomaly_core::Result<T>,
    ) -> anomaly_core::Result<T> {
        if !self.status.available() {
            return Err(anomaly_core::Error::Persistence {
                reason: format!(
                    "skipped: the store is unavailable ({})",
                    self.status.last_error().unwrap_or_default()
                ),
            });
        }
        f(&self.inner).inspect_err(|e| {
            // A refusal (invalid data) says nothing about the store's health.
            if !matches!(e, anomaly_core::Error::PersistenceRefused { .. }) {
                self.status.failed(&e.to_string());
            }
        })
    }
}

impl Persistence for GuardedPersistence {
    fn append_history(&self, key: &str, record: &Value) -> anomaly_core::Result<()> {
        self.call(|p| p.append_history(key, record))
    }

    fn append_history_many(&self, key: &str, records: &[Value]) -> anomaly_core::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.call(|p| p.append_history_many(key, records))
    }

    fn load_history(&self, key: &str, limit: usize) -> anomaly_core::Result<Vec<Value>> {
        self.call(|p| p.load_history(key, limit))
    }

    fn clear_history(&self, key: &str) -> anomaly_core::Result<usize> {
        self.call(|p| p.clear_history(key))
    }

    fn save_model(
        &self,
        key: &str,
        meta: &ModelMeta,
        snapshot: &[u8],
    ) -> anomaly_core::Result<u64> {
        self.call(|p| p.save_model(key, meta, snapshot))
    }

    fn load_model(
        &self,
        key: &str,
        version: Option<u64>,
    ) -> anomaly_core::Result<Option<StoredModel>> {
        self.call(|p| p.load_model(key, version))
    }

    fn model_versions(&self, key: &str) -> anomaly_core::Result<Vec<ModelMeta>> {
        self.call(|p| p.model_versions(key))
    }

    fn keys(&self) -> anomaly_core::Result<Vec<String>> {
        self.call(|p| p.keys())
    }
}

#[cfg(test)]
mod tests {
    use super::{GuardedPersistence, StoreMonitor, StoreStatus};
    use anomaly_core::engine::Persistence;
    use anomaly_store::{BlockingStore, InMemoryStore, Store};
    use serde_json::json;
    use std::sync::Arc;
    use std::time::Duration;

    /// While the status says unavailable, calls fail at once without reaching the store, and say why.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unavailable_fails_fast() {
        let store: Arc<dyn Store> = Arc::new(InMemoryStore::new(100));
        let status = Arc::new(StoreStatus::default());
        let guarded = Arc::new(GuardedPersistence::new(
            BlockingStore::new(store.clone()).unwrap(),
            status.clone(),
        ));
        let g = guarded.clone();
        tokio::task::spawn_blocking(move || g.append_history("k", &json!({"a": 1})).unwrap())
            .await
            .unwrap();

        status.failed("connection refused");
        assert!(!status.available());
        assert_eq!(status.outages(), 1);
        let g = guarded.clone();
        let err = tokio::task::spawn_blocking(move || g.append_history("k", &json!({"a": 2})))
            .await
            .unwrap()
            .unwrap_err();
        assert!(err.to_string().contains("unavailable"), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert_eq!(store.load_history("k", 10).await.unwrap().len(), 1);
    }

    /// A store marked unavailable is probed at once; a probe that gets an answer makes it available again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_restores_the_store() {
        let store: Arc<dyn Store> = Arc::new(InMemoryStore::new(100));
        let monitor = StoreMonitor::start(store, Duration::from_secs(1));
        let status = monitor.status().clone();
        assert!(monitor.reachable().await);
        status.failed("connection refused");
        let mut waited = 0;
        while !status.available() && waited < 50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        assert!(status.available(), "the in-memory store answers the probe");
        assert_eq!(status.outages(), 1);
        assert_eq!(status.last_error().as_deref(), Some("connection refused"));
        assert!(monitor.reachable().await);
    }
}
