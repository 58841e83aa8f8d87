//! The [`Store`] trait: what every backend provides.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use chrono::{DateTime, Utc};

use crate::types::{
    Anomaly, AnomalyPage, AnomalyQuery, CleanupReport, DataSource, HistoryRecord, ModelMetadata,
    ModelVersion, QueryPattern, RetentionPolicy, SavedModel, SourceStatus, StoredAnomaly,
};
use serde_json::Value;

/// Storage for history, detections, model versions and query patterns.
///
/// Implementations are safe to share between tasks (`Send + Sync`); every method is one atomic operation.
#[async_trait]
pub trait Store: Send + Sync {
    /// Appends records to their keys' histories, then drops each key's oldest records beyond the store's
    /// `max_history`.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails,
    /// [`StoreError::InvalidInput`](crate::StoreError::InvalidInput) for a key longer than
    /// [`MAX_KEY_CHARS`](crate::MAX_KEY_CHARS).
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<()>;

    /// The most recent `limit` records of a key (by timestamp, then insertion), oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn load_history(&self, key: &str, limit: u64) -> Result<Vec<HistoryRecord>>;

    /// Removes a key's history; returns how many records were removed.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn clear_history(&self, key: &str) -> Result<u64>;

    /// Stores one detection; returns its id.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails,
    /// [`StoreError::InvalidInput`](crate::StoreError::InvalidInput) for a key or detector longer than
    /// [`MAX_KEY_CHARS`](crate::MAX_KEY_CHARS).
    async fn insert_anomaly(&self, anomaly: &Anomaly) -> Result<i64>;

    /// Stores a batch of detections in one transaction (all or none); returns how many were stored.
    ///
    /// # Errors
    /// As [`insert_anomaly`](Store::insert_anomaly); nothing is stored then.
    async fn insert_anomalies(&self, anomalies: &[Anomaly]) -> Result<u64>;

    /// One page of detections matching the query, newest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn query_anomalies(&self, query: &AnomalyQuery) -> Result<AnomalyPage>;

    /// How many detections match the query's filters (its `limit`, `offset` and cursor are ignored).
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn count_anomalies(&self, query: &AnomalyQuery) -> Result<u64>;

    /// The detection with this id, `None` when there is none.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn anomaly(&self, id: i64) -> Result<Option<StoredAnomaly>>;

    /// Saves a new model version of `key` and returns its number: one more than the key's latest, decided
    /// atomically, so concurrent writers get distinct versions. Its `saved_at` is now.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> Result<u64> {
        self.save_model_at(key, kind, metadata, snapshot, Utc::now())
            .await
    }

    /// As [`save_model`](Store::save_model), with an explicit `saved_at` (truncated to microseconds): for imports
    /// and for tests of retention, which goes by `saved_at`. Versions still increase in call order, whatever
    /// `saved_at` says.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn save_model_at(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
        saved_at: DateTime<Utc>,
    ) -> Result<u64>;

    /// A given version of a key's model, or the latest when `version` is `None`.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>>;

    /// Rolls a key back to an earlier model: saves a copy of `version` (snapshot, kind and metadata) as a new,
    /// latest version and returns its number, or `None` when `version` does not exist. Nothing is deleted, so the
    /// versions that detections name stay loadable.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn rollback_model(&self, key: &str, version: u64) -> Result<Option<u64>> {
        let Some(m) = self.load_model(key, Some(version)).await? else {
            return Ok(None);
        };
        self.save_model(key, &m.info.kind, &m.info.metadata, &m.snapshot)
            .await
            .map(Some)
    }

    /// Every stored version of a key's model (without snapshots), oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>>;

    /// Keys with history or models, sorted.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn keys(&self) -> Result<Vec<String>>;

    /// Asks the database the cheapest question there is, to tell whether it answers.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) or [`StoreError::Connect`](crate::StoreError::Connect)
    /// when it does not.
    async fn ping(&self) -> Result<()> {
        self.query_pattern("health-check").await.map(|_| ())
    }

    /// Applies a retention policy at `now` to every key: removes history and detections older than their limits,
    /// and model versions older than theirs except each key's latest, which is never removed. A record exactly at
    /// its limit (`timestamp == now - limit`) is kept. `now` is a parameter so callers (and tests) choose the clock.
    ///
    /// ```
    /// # use anomaly_store::{InMemoryStore, RetentionPolicy, Store};
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = InMemoryStore::default();
    /// let report = store.cleanup(&RetentionPolicy::default(), chrono::Utc::now()).await?;
    /// assert_eq!(report.history_removed + report.anomalies_removed + report.models_removed, 0);
    /// # Ok::<(), anomaly_store::StoreError>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails; what was removed before the
    /// failure stays removed.
    async fn cleanup(&self, policy: &RetentionPolicy, now: DateTime<Utc>) -> Result<CleanupReport> {
        self.cleanup_keys(policy, now, None).await
    }

    /// As [`cleanup`](Store::cleanup), restricted to the given keys when `keys` is `Some` (a shared database's
    /// tenant, or a test that must not touch other rows).
    ///
    /// # Errors
    /// As [`cleanup`](Store::cleanup).
    async fn cleanup_keys(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        keys: Option<&[String]>,
    ) -> Result<CleanupReport>;

    /// Inserts a query pattern, or replaces the one with the same hash (keeping the earliest `first_seen`).
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn upsert_query_pattern(&self, pattern: &QueryPattern) -> Result<()>;

    /// The query pattern with this hash.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn query_pattern(&self, query_hash: &str) -> Result<Option<QueryPattern>>;

    /// Registers a data source, or replaces the one with the same name.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails,
    /// [`StoreError::InvalidInput`](crate::StoreError::InvalidInput) for a name or column longer than
    /// [`MAX_KEY_CHARS`](crate::MAX_KEY_CHARS).
    async fn upsert_data_source(&self, source: &DataSource) -> Result<()>;

    /// The data source with this name, its connection URL whole (for the poller; do not log it).
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn data_source(&self, name: &str) -> Result<Option<DataSource>>;

    /// Every data source, sorted by name, with passwords redacted from the URLs ([`DataSource::redacted`]).
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn data_sources(&self) -> Result<Vec<DataSource>>;

    /// Records where a poll got to: its watermark, status and error. Returns `false` for an unknown name.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn update_data_source_state(
        &self,
        name: &str,
        watermark: &Value,
        status: SourceStatus,
        last_error: Option<&str>,
    ) -> Result<bool>;

    /// Removes a data source; returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::Database`](crate::StoreError::Database) when storage fails.
    async fn delete_data_source(&self, name: &str) -> Result<bool>;
}

/// `Store` for a type that hands every call to another store: `$target`, an expression in `$s` (which stands for
/// `self`), yields that store. Used for references and smart pointers, and by [`LazyStore`](crate::LazyStore).
macro_rules! forward_store {
    ($(impl[$($generics:tt)*] $ty:ty => |$s:ident| $target:expr;)*) => {$(
        #[async_trait]
        impl<$($generics)*> Store for $ty {
            async fn append_history(&self, records: &[HistoryRecord]) -> Result<()> {
                let $s = self;
                $target.append_history(records).await
            }
            async fn load_history(&self, key: &str, limit: u64) -> Result<Vec<HistoryRecord>> {
                let $s = self;
                $target.load_history(key, limit).await
            }
            async fn clear_history(&self, key: &str) -> Result<u64> {
                let $s = self;
                $target.clear_history(key).await
            }
            async fn insert_anomalies(&self, anomalies: &[Anomaly]) -> Result<u64> {
                let $s = self;
                $target.insert_anomalies(anomalies).await
            }
            async fn insert_anomaly(&self, anomaly: &Anomaly) -> Result<i64> {
                let $s = self;
                $target.insert_anomaly(anomaly).await
            }
            async fn query_anomalies(&self, query: &AnomalyQuery) -> Result<AnomalyPage> {
                let $s = self;
                $target.query_anomalies(query).await
            }
            async fn count_anomalies(&self, query: &AnomalyQuery) -> Result<u64> {
                let $s = self;
                $target.count_anomalies(query).await
            }
            async fn anomaly(&self, id: i64) -> Result<Option<$crate::StoredAnomaly>> {
                let $s = self;
                $target.anomaly(id).await
            }
            async fn save_model(
                &self,
                key: &str,
                kind: &str,
                metadata: &ModelMetadata,
                snapshot: &[u8],
            ) -> Result<u64> {
                let $s = self;
                $target.save_model(key, kind, metadata, snapshot).await
            }
            async fn save_model_at(
                &self,
                key: &str,
                kind: &str,
                metadata: &ModelMetadata,
                snapshot: &[u8],
                saved_at: DateTime<Utc>,
            ) -> Result<u64> {
                let $s = self;
                $target.save_model_at(key, kind, metadata, snapshot, saved_at).await
            }
            async fn cleanup(&self, policy: &RetentionPolicy, now: DateTime<Utc>) -> Result<CleanupReport> {
                let $s = self;
                $target.cleanup(policy, now).await
            }
            async fn cleanup_keys(
                &self,
                policy: &RetentionPolicy,
                now: DateTime<Utc>,
                keys: Option<&[String]>,
            ) -> Result<CleanupReport> {
                let $s = self;
                $target.cleanup_keys(policy, now, keys).await
            }
            async fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
                let $s = self;
                $target.load_model(key, version).await
            }
            async fn rollback_model(&self, key: &str, version: u64) -> Result<Option<u64>> {
                let $s = self;
                $target.rollback_model(key, version).await
            }
            async fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
                let $s = self;
                $target.model_versions(key).await
            }
            async fn keys(&self) -> Result<Vec<String>> {
                let $s = self;
                $target.keys().await
            }
            async fn ping(&self) -> Result<()> {
                let $s = self;
                $target.ping().await
            }
            async fn upsert_query_pattern(&self, pattern: &QueryPattern) -> Result<()> {
                let $s = self;
                $target.upsert_query_pattern(pattern).await
            }
            async fn query_pattern(&self, query_hash: &str) -> Result<Option<QueryPattern>> {
                let $s = self;
                $target.query_pattern(query_hash).await
            }
            async fn upsert_data_source(&self, source: &DataSource) -> Result<()> {
                let $s = self;
                $target.upsert_data_source(source).await
            }
            async fn data_source(&self, name: &str) -> Result<Option<DataSource>> {
                let $s = self;
                $target.data_source(name).await
            }
            async fn data_sources(&self) -> Result<Vec<DataSource>> {
                let $s = self;
                $target.data_sources().await
            }
            async fn update_data_source_state(
                &self,
                name: &str,
                watermark: &Value,
                status: SourceStatus,
                last_error: Option<&str>,
            ) -> Result<bool> {
                let $s = self;
                $target.update_data_source_state(name, watermark, status, last_error).await
            }
            async fn delete_data_source(&self, name: &str) -> Result<bool> {
                let $s = self;
                $target.delete_data_source(name).await
            }
        }
    )*};
}

forward_store! {
    impl[T: Store + ?Sized] &T => |s| (**s);
    impl[T: Store + ?Sized] Box<T> => |s| (**s);
    impl[T: Store + ?Sized] Arc<T> => |s| (**s);
}
pub(crate) use forward_store;
