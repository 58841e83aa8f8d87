//! [`BlockingStore`]: any [`Store`] behind a synchronous API, and the engine's [`Persistence`] on top of it.
//!
//! The engine is synchronous (it runs on its callers' threads and on rayon), the stores are async. The adapter
//! owns a small tokio runtime of its own (one worker thread), runs each call there and blocks the calling thread
//! until it is done. It must **not be called from inside an async runtime's thread**: it would not fail, but it
//! would stall that runtime's worker for the length of a database round trip. Async callers that hold an engine
//! call it through `tokio::task::spawn_blocking`, or use the async [`Store`] directly ([`BlockingStore::store`]).

use std::sync::Arc;

use anomaly_core::Error as CoreError;
use anomaly_core::engine::{ModelMeta, Persistence, StoredModel};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::{HistoryRecord, ModelMetadata, SavedModel};
use crate::{InMemoryStore, SeaOrmStore};

/// A [`Store`] with a synchronous API, on a runtime it owns. Implements the engine's [`Persistence`].
///
/// ```no_run
/// use std::sync::Arc;
/// use anomaly_core::engine::{Engine, EngineParams};
/// use anomaly_store::BlockingStore;
///
/// let store = BlockingStore::connect("sqlite://anomaly.db?mode=rwc", 100_000)?;
/// let engine = Engine::new(EngineParams::new(), Arc::new(store)).expect("valid parameters");
/// # Ok::<(), anomaly_store::StoreError>(())
/// ```
pub struct BlockingStore {
    runtime: Option<tokio::runtime::Runtime>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for BlockingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingStore").finish_non_exhaustive()
    }
}

/// Runs `fut` on `runtime` and blocks until it is done. Spawning (rather than `Runtime::block_on`) works on any
/// thread, an async worker's included, where `block_on` would panic.
fn wait<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        // The receiver only goes away if the caller's thread died; nothing to report to then.
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Database {
            operation: "run a blocking store call",
            source: "the store task panicked".into(),
        })
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("anomaly-store")
        .enable_all()
        .build()
        .map_err(|e| StoreError::Connect {
            backend: "runtime",
            source: Box::new(e),
        })
}

impl BlockingStore {
    /// Connects a [`SeaOrmStore`] (see [`SeaOrmStore::connect`] for the URLs) keeping `max_history` records per
    /// key.
    ///
    /// # Errors
    /// As [`SeaOrmStore::connect`].
    pub fn connect(url: &str, max_history: u64) -> Result<Self> {
        let runtime = runtime()?;
        let url = url.to_string();
        let store = wait(&runtime, async move { SeaOrmStore::connect(&url).await })?;
        Ok(BlockingStore {
            runtime: Some(runtime),
            store: Arc::new(store.with_max_history(max_history)),
        })
    }

    /// Wraps a store that is already connected, so the engine and async callers share one connection pool (on
    /// SQLite that also means one writer instead of two pools contending for the file's lock).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use anomaly_store::{BlockingStore, InMemoryStore, Store};
    /// let shared: Arc<dyn Store> = Arc::new(InMemoryStore::new(100));
    /// let blocking = BlockingStore::new(shared.clone())?;
    /// assert!(Arc::ptr_eq(blocking.store(), &shared));
    /// # Ok::<(), anomaly_store::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Connect`] when the adapter's runtime cannot start (no threads left).
    pub fn new(store: Arc<dyn Store>) -> Result<Self> {
        Ok(BlockingStore {
            runtime: Some(runtime()?),
            store,
        })
    }

    /// An [`InMemoryStore`] keeping `max_history` records per key.
    ///
    /// # Errors
    /// [`StoreError::Connect`] when the runtime cannot start (no threads left).
    pub fn in_memory(max_history: u64) -> Result<Self> {
        Ok(BlockingStore {
            runtime: Some(runtime()?),
            store: Arc::new(InMemoryStore::new(max_history)),
        })
    }

    /// The async store underneath, for calls made from async code.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs `f` on the store, on the adapter's runtime, and waits for its result.
    ///
    /// ```
    /// use anomaly_store::{BlockingStore, HistoryRecord, Store};
    /// let store = BlockingStore::in_memory(10)?;
    /// let record = HistoryRecord::now("k", serde_json::json!({"a": 1}));
    /// store.run(|s| async move { s.append_history(&[record]).await })?;
    /// assert_eq!(store.run(|s| async move { s.load_history("k", 10).await })?.len(), 1);
    /// # Ok::<(), anomaly_store::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// The call's error.
    pub fn run<T, Fut>(&self, f: impl FnOnce(Arc<dyn Store>) -> Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let fut = f(Arc::clone(&self.store));
        match &self.runtime {
            Some(runtime) => wait(runtime, fut),
            None => unreachable!("the runtime is only taken by drop"),
        }
    }
}

impl Drop for BlockingStore {
    // Dropping a runtime blocks, which tokio forbids on an async worker; shutting it down in the background does not.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn core_err(e: StoreError) -> CoreError {
    let refused = matches!(e, StoreError::InvalidInput { .. });
    let reason = e.chain();
    if refused {
        CoreError::PersistenceRefused { reason }
    } else {
        CoreError::Persistence { reason }
    }
}

fn seconds_to_time(seconds: f64) -> DateTime<Utc> {
    let micros = (seconds * 1e6).round();
    if micros.is_finite() && micros.abs() < 9.0e15 {
        DateTime::from_timestamp_micros(micros as i64).unwrap_or_default()
    } else {
        DateTime::default()
    }
}

fn time_to_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_micros() as f64 / 1e6
}

fn meta_of(m: &SavedModel) -> ModelMeta {
    ModelMeta {
        version: m.info.version,
        kind: m.info.kind.clone(),
        records_trained_on: usize::try_from(m.info.metadata.records_trained_on)
            .unwrap_or(usize::MAX),
        features: m.info.metadata.features.clone(),
        trained_at: time_to_seconds(m.info.metadata.trained_at),
        metrics: m.info.metadata.metrics.clone(),
    }
}

impl Persistence for BlockingStore {
    fn append_history(&self, key: &str, record: &Value) -> anomaly_core::Result<()> {
        let record = HistoryRecord::now(key, record.clone());
        self.run(|s| async move { s.append_history(&[record]).await })
            .map_err(core_err)
    }

    fn append_history_many(&self, key: &str, records: &[Value]) -> anomaly_core::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<HistoryRecord> = records
            .iter()
            .map(|r| HistoryRecord::now(key, r.clone()))
            .collect();
        self.run(|s| async move { s.append_history(&records).await })
            .map_err(core_err)
    }

    fn load_history(&self, key: &str, limit: usize) -> anomaly_core::Result<Vec<Value>> {
        let (key, limit) = (key.to_string(), u64::try_from(limit).unwrap_or(u64::MAX));
        let records = self
            .run(|s| async move { s.load_history(&key, limit).await })
            .map_err(core_err)?;
        Ok(records.into_iter().map(|r| r.payload).collect())
    }

    fn clear_history(&self, key: &str) -> anomaly_core::Result<usize> {
        let key = key.to_string();
        let n = self
            .run(|s| async move { s.clear_history(&key).await })
            .map_err(core_err)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn save_model(
        &self,
        key: &str,
        meta: &ModelMeta,
        snapshot: &[u8],
    ) -> anomaly_core::Result<u64> {
        let metadata = ModelMetadata {
            records_trained_on: meta.records_trained_on as u64,
            features: meta.features.clone(),
            trained_at: seconds_to_time(meta.trained_at),
            metrics: meta.metrics.clone(),
        };
        let (key, kind, snapshot) = (key.to_string(), meta.kind.clone(), snapshot.to_vec());
        self.run(|s| async move { s.save_model(&key, &kind, &metadata, &snapshot).await })
            .map_err(core_err)
    }

    fn load_model(
        &self,
        key: &str,
        version: Option<u64>,
    ) -> anomaly_core::Result<Option<StoredModel>> {
        let key = key.to_string();
        let m = self
            .run(|s| async move { s.load_model(&key, version).await })
            .map_err(core_err)?;
        Ok(m.map(|m| StoredModel {
            meta: meta_of(&m),
            snapshot: m.snapshot,
        }))
    }

    fn model_versions(&self, key: &str) -> anomaly_core::Result<Vec<ModelMeta>> {
        let key = key.to_string();
        let infos = self
            .run(|s| async move { s.model_versions(&key).await })
            .map_err(core_err)?;
        Ok(infos
            .into_iter()
            .map(|info| {
                meta_of(&SavedModel {
                    info,
                    snapshot: Vec::new(),
                })
            })
            .collect())
    }

    fn keys(&self) -> anomaly_core::Result<Vec<String>> {
        self.run(|s| async move { s.keys().await })
            .map_err(core_err)
    }
}
