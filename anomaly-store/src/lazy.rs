//! [`LazyStore`]: a store that connects on first use, and keeps trying until it can, so that a service can start
//! while its database is down.
//!
//! Until the connection (and the schema migration that comes with it) succeeds, every call tries to connect and
//! fails with the connection's error; attempts are at least a retry interval apart, and calls in between fail at
//! once with the last error. Once connected, calls go straight to the connected store.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::OnceCell;

use crate::error::{Result, StoreError};
use crate::store::Store;
use crate::types::{
    Anomaly, AnomalyPage, AnomalyQuery, CleanupReport, DataSource, HistoryRecord, ModelMetadata,
    ModelVersion, QueryPattern, RetentionPolicy, SavedModel, SourceStatus,
};

/// A connection attempt: a future that yields the connected store.
pub type Connect =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn Store>>> + Send>> + Send + Sync>;

/// A [`Store`] that connects on first use; see the [module documentation](self).
///
/// [`SeaOrmStore::lazy`](crate::SeaOrmStore::lazy) builds one for a database URL.
///
/// Clones share the connection (and the attempts to make it).
#[derive(Clone)]
pub struct LazyStore {
    inner: Arc<Lazy>,
}

struct Lazy {
    backend: &'static str,
    connect: Connect,
    retry_after: Duration,
    store: OnceCell<Arc<dyn Store>>,
    /// When the last attempt started, and how it failed.
    last_attempt: Mutex<Option<(Instant, String)>>,
}

impl std::fmt::Debug for LazyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyStore")
            .field("backend", &self.inner.backend)
            .field("connected", &self.connected())
            .finish_non_exhaustive()
    }
}

impl LazyStore {
    /// A store for `backend` (`sqlite`, `postgres` or `mysql`, named in errors) that runs `connect` on first use,
    /// and again at most every `retry_after` until it succeeds.
    pub fn new(backend: &'static str, retry_after: Duration, connect: Connect) -> Self {
        LazyStore {
            inner: Arc::new(Lazy {
                backend,
                connect,
                retry_after,
                store: OnceCell::new(),
                last_attempt: Mutex::new(None),
            }),
        }
    }

    /// A store that is connected already: `store`, on `backend`.
    pub fn ready(backend: &'static str, store: Arc<dyn Store>) -> Self {
        let lazy = LazyStore::new(
            backend,
            Duration::from_secs(1),
            Box::new(|| {
                Box::pin(async {
                    Err(StoreError::Connect {
                        backend: "ready",
                        source: "a ready store never connects again".into(),
                    })
                })
            }),
        );
        let _ = lazy.inner.store.set(store);
        lazy
    }

    /// Whether the connection has been made.
    pub fn connected(&self) -> bool {
        self.inner.store.initialized()
    }

    /// The connected store, connecting now if it is time to try again.
    ///
    /// # Errors
    /// [`StoreError::Connect`] (or the migration's error) while the database cannot be reached.
    pub async fn store(&self) -> Result<&Arc<dyn Store>> {
        self.inner.store().await
    }
}

impl Lazy {
    async fn store(&self) -> Result<&Arc<dyn Store>> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        self.too_soon()?;
        self.store
            .get_or_try_init(|| async {
                // Callers queued behind a failed attempt come here one after the other: only one of them per
                // interval tries again. The attempt is recorded before it starts, so one cut short (its caller
                // gave up waiting) counts too.
                self.too_soon()?;
                *self.last_attempt() = Some((Instant::now(), "cut short".to_string()));
                let result = (self.connect)().await;
                match &result {
                    Ok(_) => tracing::info!(backend = self.backend, "connected to the store"),
                    Err(e) => {
                        let reason = e.chain();
                        if e.is_unreachable() {
                            tracing::debug!(backend = self.backend, error = %reason, "the store does not answer yet");
                        } else {
                            tracing::error!(backend = self.backend, error = %reason, "connecting to the store failed");
                        }
                        *self.last_attempt() = Some((Instant::now(), reason));
                    }
                }
                result
            })
            .await
    }

    fn last_attempt(&self) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
        self.last_attempt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails with the last attempt's error while it is less than `retry_after` old.
    fn too_soon(&self) -> Result<()> {
        match &*self.last_attempt() {
            Some((at, reason)) if at.elapsed() < self.retry_after => Err(StoreError::Connect {
                backend: self.backend,
                source: format!("not connected yet (last attempt: {reason})").into(),
            }),
            _ => Ok(()),
        }
    }
}

crate::store::forward_store! {
    impl[] LazyStore => |s| s.store().await?;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryStore;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    fn lazy(up: Arc<AtomicBool>, attempts: Arc<AtomicU32>, retry_after: Duration) -> LazyStore {
        LazyStore::new(
            "postgres",
            retry_after,
            Box::new(move || {
                let (up, attempts) = (up.clone(), attempts.clone());
                Box::pin(async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    if up.load(Ordering::SeqCst) {
                        Ok(Arc::new(InMemoryStore::new(100)) as Arc<dyn Store>)
                    } else {
                        Err(StoreError::Connect {
                            backend: "postgres",
                            source: "connection refused".into(),
                        })
                    }
                })
            }),
        )
    }

    #[tokio::test]
    async fn fails_until_the_database_answers_then_connects_once() {
        let (up, attempts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU32::new(0)),
        );
        let store = lazy(up.clone(), attempts.clone(), Duration::from_millis(50));
        let err = store.keys().await.unwrap_err();
        assert!(matches!(err, StoreError::Connect { .. }), "{err}");
        // Within the retry interval: no new attempt, the last error.
        let err = store.keys().await.unwrap_err();
        assert!(
            err.chain().contains("connection refused"),
            "{}",
            err.chain()
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(!store.connected());

        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(store.keys().await.unwrap().is_empty());
        assert!(store.connected());
        store
            .append_history(&[HistoryRecord {
                key: "k".into(),
                payload: serde_json::json!({"a": 1}),
                timestamp: Utc::now(),
            }])
            .await
            .unwrap();
        assert_eq!(store.load_history("k", 10).await.unwrap().len(), 1);
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            2,
            "connected once, then reused"
        );
    }

    #[test]
    fn a_url_of_no_supported_database_is_refused_at_once() {
        let err = crate::SeaOrmStore::lazy(
            "redis://127.0.0.1:6379",
            Duration::from_secs(1),
            100,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    }

    #[tokio::test]
    async fn callers_arriving_together_make_one_attempt_per_interval() {
        let (up, attempts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU32::new(0)),
        );
        let store = Arc::new(lazy(up, attempts.clone(), Duration::from_secs(3600)));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.keys().await })
            })
            .collect();
        for call in calls {
            assert!(call.await.unwrap().is_err());
        }
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_attempt_cut_short_counts() {
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = attempts.clone();
        let store = LazyStore::new(
            "postgres",
            Duration::from_secs(3600),
            Box::new(move || {
                let attempts = counted.clone();
                Box::pin(async move {
                    attempts.fetch_add(1, Ordering::SeqCst);
                    // A server that never answers.
                    std::future::pending::<()>().await;
                    Ok(Arc::new(InMemoryStore::new(100)) as Arc<dyn Store>)
                })
            }),
        );
        let cut = tokio::time::timeout(Duration::from_millis(20), store.keys()).await;
        assert!(cut.is_err(), "the caller gave up");
        let err = store.keys().await.unwrap_err();
        assert!(err.chain().contains("cut short"), "{}", err.chain());
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
    }
}
