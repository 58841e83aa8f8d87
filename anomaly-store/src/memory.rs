//! [`InMemoryStore`]: the reference implementation, for tests and for processes that need no durability.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::error::{Result, check_key, check_source};
use crate::store::Store;
use crate::types::{
    Anomaly, AnomalyPage, AnomalyQuery, CleanupReport, DataSource, HistoryRecord, ModelMetadata,
    ModelVersion, QueryPattern, RetentionPolicy, SavedModel, SourceStatus, StoredAnomaly,
    to_micros,
};

#[derive(Default)]
struct Tables {
    /// Per key: (timestamp, insertion number) → record; sorted as the databases sort.
    history: HashMap<String, BTreeMap<(chrono::DateTime<Utc>, u64), HistoryRecord>>,
    history_seq: u64,
    anomalies: Vec<StoredAnomaly>,
    /// The last anomaly id given (ids are never reused, even after a cleanup).
    anomaly_seq: i64,
    models: HashMap<String, Vec<SavedModel>>,
    patterns: HashMap<String, QueryPattern>,
    sources: BTreeMap<String, DataSource>,
}

/// A [`Store`] in process memory. History is capped at `max_history` records per key.
///
/// Clones share the same tables.
#[derive(Clone)]
pub struct InMemoryStore {
    tables: std::sync::Arc<Mutex<Tables>>,
    max_history: u64,
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryStore")
            .field("max_history", &self.max_history)
            .finish_non_exhaustive()
    }
}

impl InMemoryStore {
    /// Keeps at most `max_history` history records per key (the oldest are dropped first).
    pub fn new(max_history: u64) -> Self {
        InMemoryStore {
            tables: std::sync::Arc::new(Mutex::new(Tables::default())),
            max_history,
        }
    }
}

impl Default for InMemoryStore {
    /// 100,000 history records per key, as the engine keeps.
    fn default() -> Self {
        Self::new(100_000)
    }
}

#[async_trait]
impl Store for InMemoryStore {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<()> {
        for r in records {
            check_key("key", &r.key)?;
        }
        let mut t = self.tables.lock().await;
        for r in records {
            t.history_seq += 1;
            let seq = t.history_seq;
            let ts = to_micros(r.timestamp);
            let h = t.history.entry(r.key.clone()).or_default();
            h.insert(
                (ts, seq),
                HistoryRecord {
                    timestamp: ts,
                    ..r.clone()
                },
            );
            while h.len() as u64 > self.max_history {
                h.pop_first();
            }
        }
        Ok(())
    }

    async fn load_history(&self, key: &str, limit: u64) -> Result<Vec<HistoryRecord>> {
        let t = self.tables.lock().await;
        let Some(h) = t.history.get(key) else {
            return Ok(Vec::new());
        };
        let skip = (h.len() as u64).saturating_sub(limit) as usize;
        Ok(h.values().skip(skip).cloned().collect())
    }

    async fn clear_history(&self, key: &str) -> Result<u64> {
        let mut t = self.tables.lock().await;
        Ok(t.history.remove(key).map_or(0, |h| h.len() as u64))
    }

    async fn insert_anomaly(&self, anomaly: &Anomaly) -> Result<i64> {
        check_key("key", &anomaly.key)?;
        check_key("detector", &anomaly.detector)?;
        let mut t = self.tables.lock().await;
        t.anomaly_seq += 1;
        let id = t.anomaly_seq;
        t.anomalies.push(StoredAnomaly {
            id,
            anomaly: Anomaly {
                created_at: to_micros(anomaly.created_at),
                ..anomaly.clone()
            },
        });
        Ok(id)
    }

    async fn insert_anomalies(&self, anomalies: &[Anomaly]) -> Result<u64> {
        for a in anomalies {
            check_key("key", &a.key)?;
            check_key("detector", &a.detector)?;
        }
        let mut t = self.tables.lock().await;
        for a in anomalies {
            t.anomaly_seq += 1;
            let id = t.anomaly_seq;
            t.anomalies.push(StoredAnomaly {
                id,
                anomaly: Anomaly {
                    created_at: to_micros(a.created_at),
                    ..a.clone()
                },
            });
        }
        Ok(anomalies.len() as u64)
    }

    async fn query_anomalies(&self, query: &AnomalyQuery) -> Result<AnomalyPage> {
        let t = self.tables.lock().await;
        let mut items: Vec<StoredAnomaly> = t
            .anomalies
            .iter()
            .filter(|a| query.matches(a))
            .cloned()
            .collect();
        items.sort_by_key(|a| std::cmp::Reverse((a.anomaly.created_at, a.id)));
        let limit = query.page_size();
        let skip = usize::try_from(query.offset).unwrap_or(usize::MAX);
        let items: Vec<StoredAnomaly> = items
            .into_iter()
            .skip(skip)
            .take(limit as usize + 1)
            .collect();
        Ok(AnomalyPage::from_items(items, limit))
    }

    async fn count_anomalies(&self, query: &AnomalyQuery) -> Result<u64> {
        let filters = AnomalyQuery {
            after: None,
            ..query.clone()
        };
        let t = self.tables.lock().await;
        Ok(t.anomalies.iter().filter(|a| filters.matches(a)).count() as u64)
    }

    async fn anomaly(&self, id: i64) -> Result<Option<StoredAnomaly>> {
        let t = self.tables.lock().await;
        Ok(t.anomalies.iter().find(|a| a.id == id).cloned())
    }

    async fn save_model_at(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
        saved_at: DateTime<Utc>,
    ) -> Result<u64> {
        check_key("key", key)?;
        check_key("kind", kind)?;
        let mut t = self.tables.lock().await;
        let versions = t.models.entry(key.to_string()).or_default();
        let version = versions.last().map_or(1, |m| m.info.version + 1);
        versions.push(SavedModel {
            info: ModelVersion {
                key: key.to_string(),
                version,
                kind: kind.to_string(),
                metadata: ModelMetadata {
                    trained_at: to_micros(metadata.trained_at),
                    ..metadata.clone()
                },
                saved_at: to_micros(saved_at),
            },
            snapshot: snapshot.to_vec(),
        });
        Ok(version)
    }

    async fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
        let t = self.tables.lock().await;
        let Some(versions) = t.models.get(key) else {
            return Ok(None);
        };
        Ok(match version {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|m| m.info.version == v).cloned(),
        })
    }

    async fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
        let t = self.tables.lock().await;
        Ok(t.models
            .get(key)
            .map(|v| v.iter().map(|m| m.info.clone()).collect())
            .unwrap_or_default())
    }

    async fn keys(&self) -> Result<Vec<String>> {
        let t = self.tables.lock().await;
        let mut keys: Vec<String> = t.history.keys().chain(t.models.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn cleanup_keys(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        keys: Option<&[String]>,
    ) -> Result<CleanupReport> {
        let [history_cut, anomaly_cut, model_cut] = policy.cutoffs(now);
        let in_scope = |k: &str| keys.is_none_or(|ks| ks.iter().any(|x| x == k));
        let mut t = self.tables.lock().await;
        let mut report = CleanupReport::default();
        t.history.retain(|k, h| {
            if in_scope(k) {
                let before = h.len();
                h.retain(|(ts, _), _| *ts >= history_cut);
                report.history_removed += (before - h.len()) as u64;
            }
            !h.is_empty()
        });
        let before = t.anomalies.len();
        t.anomalies
            .retain(|a| !in_scope(&a.anomaly.key) || a.anomaly.created_at >= anomaly_cut);
        report.anomalies_removed = (before - t.anomalies.len()) as u64;
        for (_, versions) in t.models.iter_mut().filter(|(k, _)| in_scope(k)) {
            let latest = versions.last().map_or(0, |m| m.info.version);
            let before = versions.len();
            versions.retain(|m| m.info.version == latest || m.info.saved_at >= model_cut);
            report.models_removed += (before - versions.len()) as u64;
        }
        Ok(report)
    }

    async fn upsert_query_pattern(&self, pattern: &QueryPattern) -> Result<()> {
        check_key("query_hash", &pattern.query_hash)?;
        let mut t = self.tables.lock().await;
        let mut p = QueryPattern {
            first_seen: to_micros(pattern.first_seen),
            last_seen: to_micros(pattern.last_seen),
            ..pattern.clone()
        };
        if let Some(old) = t.patterns.get(&pattern.query_hash) {
            p.first_seen = p.first_seen.min(old.first_seen);
        }
        t.patterns.insert(pattern.query_hash.clone(), p);
        Ok(())
    }

    async fn query_pattern(&self, query_hash: &str) -> Result<Option<QueryPattern>> {
        Ok(self.tables.lock().await.patterns.get(query_hash).cloned())
    }

    async fn upsert_data_source(&self, source: &DataSource) -> Result<()> {
        check_source(source)?;
        let mut t = self.tables.lock().await;
        t.sources.insert(source.name.clone(), source.clone());
        Ok(())
    }

    async fn data_source(&self, name: &str) -> Result<Option<DataSource>> {
        Ok(self.tables.lock().await.sources.get(name).cloned())
    }

    async fn data_sources(&self) -> Result<Vec<DataSource>> {
        let t = self.tables.lock().await;
        Ok(t.sources.values().map(DataSource::redacted).collect())
    }

    async fn update_data_source_state(
        &self,
        name: &str,
        watermark: &Value,
        status: SourceStatus,
        last_error: Option<&str>,
    ) -> Result<bool> {
        let mut t = self.tables.lock().await;
        let Some(s) = t.sources.get_mut(name) else {
            return Ok(false);
        };
        s.watermark = watermark.clone();
        s.status = status;
        s.last_error = last_error.map(str::to_string);
        Ok(true)
    }

    async fn delete_data_source(&self, name: &str) -> Result<bool> {
        Ok(self.tables.lock().await.sources.remove(name).is_some())
    }
}
