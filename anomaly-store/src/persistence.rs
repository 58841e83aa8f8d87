//! The engine's [`Persistence`], implemented by every store: [`SeaOrmStore`], [`LazyStore`] and [`InMemoryStore`].
//!
//! The engine is synchronous (it runs on its callers' threads and on rayon); the stores are async. A synchronous
//! call runs the store's async method on a small runtime of this crate's (one worker thread, started on first use)
//! and blocks the calling thread until it is done. It works from any thread, but on an async runtime's worker it
//! stalls that worker for the length of a database round trip: async code calls the engine through
//! `tokio::task::spawn_blocking`, or uses the async [`Store`] directly. A store and its clones share one
//! connection pool, so a service hands one clone to the engine and keeps another for its own async calls.
//!
//! Errors: a key or a value the database will never take ([`StoreError::InvalidInput`]) is
//! [`Error::PersistenceRefused`]; any other failure is [`Error::Persistence`], with the chain of causes.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use anomaly_core::engine::{Engine, EngineParams, WriteBehind};
//! use anomaly_store::SeaOrmStore;
//!
//! let store = SeaOrmStore::connect_blocking("sqlite://anomaly.db?mode=rwc", 100_000)?;
//! let history = WriteBehind::new(Arc::new(store), 100_000, Duration::from_secs(1))
//!     .expect("a writer thread");
//! let engine = Engine::new(EngineParams::new(), Arc::new(history)).expect("valid parameters");
//! # Ok::<(), anomaly_store::StoreError>(())
//! ```

use std::sync::OnceLock;

use anomaly_core::Error;
use anomaly_core::engine::{ModelMetadata, ModelVersion, Persistence, SavedModel};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::HistoryRecord;
use crate::{InMemoryStore, LazyStore, SeaOrmStore};

/// The runtime synchronous calls run on; `None` if it could not start.
fn runtime() -> std::result::Result<&'static tokio::runtime::Runtime, StoreError> {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("anomaly-store")
                .enable_all()
                .build()
                .inspect_err(|e| tracing::error!(error = %e, "cannot start the store's runtime"))
                .ok()
        })
        .as_ref()
        .ok_or_else(|| StoreError::Connect {
            backend: "runtime",
            source: "the store's runtime could not start (no threads left?)".into(),
        })
}

/// Runs `fut` on the store's runtime and blocks until it is done. Spawning (rather than `Runtime::block_on`)
/// works on any thread, an async worker's included, where `block_on` would panic.
pub(crate) fn wait<T: Send + 'static>(
    fut: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        // The receiver only goes away if the caller's thread died; nothing to report to then.
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Database {
            operation: "run a synchronous store call",
            source: "the store task panicked".into(),
        })
    })
}

fn core_err(e: StoreError) -> Error {
    let refused = matches!(e, StoreError::InvalidInput { .. });
    let reason = e.chain();
    if refused {
        Error::PersistenceRefused { reason }
    } else {
        Error::Persistence { reason }
    }
}

macro_rules! persistence_through_store {
    ($($ty:ty),* $(,)?) => {$(
        impl Persistence for $ty {
            fn append_history(&self, key: &str, records: &[Value]) -> anomaly_core::Result<()> {
                if records.is_empty() {
                    return Ok(());
                }
                let rows: Vec<HistoryRecord> =
                    records.iter().map(|r| HistoryRecord::now(key, r.clone())).collect();
                let s = self.clone();
                wait(async move { Store::append_history(&s, &rows).await }).map_err(core_err)
            }

            fn load_history(&self, key: &str, limit: usize) -> anomaly_core::Result<Vec<Value>> {
                let (s, key, limit) = (self.clone(), key.to_string(), u64::try_from(limit).unwrap_or(u64::MAX));
                let rows = wait(async move { Store::load_history(&s, &key, limit).await }).map_err(core_err)?;
                Ok(rows.into_iter().map(|r| r.payload).collect())
            }

            fn clear_history(&self, key: &str) -> anomaly_core::Result<usize> {
                let (s, key) = (self.clone(), key.to_string());
                let n = wait(async move { Store::clear_history(&s, &key).await }).map_err(core_err)?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }

            fn save_model(
                &self,
                key: &str,
                kind: &str,
                metadata: &ModelMetadata,
                snapshot: &[u8],
            ) -> anomaly_core::Result<u64> {
                let s = self.clone();
                let (key, kind, metadata, snapshot) =
                    (key.to_string(), kind.to_string(), metadata.clone(), snapshot.to_vec());
                wait(async move { Store::save_model(&s, &key, &kind, &metadata, &snapshot).await })
                    .map_err(core_err)
            }

            fn load_model(&self, key: &str, version: Option<u64>) -> anomaly_core::Result<Option<SavedModel>> {
                let (s, key) = (self.clone(), key.to_string());
                wait(async move { Store::load_model(&s, &key, version).await }).map_err(core_err)
            }

            fn model_versions(&self, key: &str) -> anomaly_core::Result<Vec<ModelVersion>> {
                let (s, key) = (self.clone(), key.to_string());
                wait(async move { Store::model_versions(&s, &key).await }).map_err(core_err)
            }

            fn keys(&self) -> anomaly_core::Result<Vec<String>> {
                let s = self.clone();
                wait(async move { Store::keys(&s).await }).map_err(core_err)
            }

            fn probe(&self) -> anomaly_core::Result<()> {
                let s = self.clone();
                wait(async move { Store::ping(&s).await }).map_err(core_err)
            }
        }
    )*};
}

persistence_through_store!(SeaOrmStore, LazyStore, InMemoryStore);

impl SeaOrmStore {
    /// [`connect`](SeaOrmStore::connect) for synchronous callers (no async runtime needed), keeping `max_history`
    /// records per key.
    ///
    /// # Errors
    /// As [`connect`](SeaOrmStore::connect).
    pub fn connect_blocking(url: &str, max_history: u64) -> Result<SeaOrmStore> {
        let url = url.to_string();
        wait(async move {
            SeaOrmStore::connect(&url)
                .await
                .map(|s| s.with_max_history(max_history))
        })
    }

    /// [`connect_or_lazy`](SeaOrmStore::connect_or_lazy) for synchronous callers (no async runtime needed): the
    /// store of `url`, connected now, or (for a server that cannot be reached) connected when it answers, with the
    /// reason it did not.
    ///
    /// # Errors
    /// As [`connect_or_lazy`](SeaOrmStore::connect_or_lazy).
    pub fn connect_or_lazy_blocking(
        url: &str,
        timeout: std::time::Duration,
        max_history: u64,
        retry_after: std::time::Duration,
    ) -> Result<(LazyStore, Option<String>)> {
        let url = url.to_string();
        wait(
            async move { SeaOrmStore::connect_or_lazy(&url, timeout, max_history, retry_after).await },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refusals_and_failures_reach_the_engine_typed() {
        let store = InMemoryStore::new(10);
        let long_key = "k".repeat(crate::MAX_KEY_CHARS + 1);
        let err = Persistence::append_history(&store, &long_key, &[json!({"a": 1})]).unwrap_err();
        assert!(matches!(err, Error::PersistenceRefused { .. }), "{err:?}");
        Persistence::append_history(&store, "k", &[json!({"a": 1})]).unwrap();
        assert_eq!(
            Persistence::load_history(&store, "k", 10).unwrap(),
            [json!({"a": 1})]
        );
        assert!(Persistence::probe(&store).is_ok());
    }

    /// Async code may call it on a worker thread (stalling that worker for the call), or through
    /// `spawn_blocking`, and drop it anywhere.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn works_from_async_code() {
        let store = InMemoryStore::new(10);
        let s = store.clone();
        let history = tokio::task::spawn_blocking(move || {
            Persistence::append_history(&s, "k", &[json!({"a": 1})]).unwrap();
            Persistence::load_history(&s, "k", 10).unwrap()
        })
        .await
        .unwrap();
        assert_eq!(history, vec![json!({"a": 1})]);
        assert_eq!(Persistence::keys(&store).unwrap(), vec!["k".to_string()]);
        assert_eq!(Store::keys(&store).await.unwrap(), vec!["k".to_string()]);
    }
}
