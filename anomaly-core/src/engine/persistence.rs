//! What the engine needs from storage: a small synchronous trait, and an in-memory implementation.
//!
//! The store crate implements [`Persistence`] for databases; the engine only appends history, saves model versions
//! and reads both back on start.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// Metadata of one stored model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Version number, from 1, increasing per key.
    pub version: u64,
    /// Snapshot kind, for example `record_model`.
    pub kind: String,
    /// Records the model was trained on.
    pub records_trained_on: usize,
    /// Feature names of the model's input.
    pub features: Vec<String>,
    /// When it was trained, in seconds since the Unix epoch.
    pub trained_at: f64,
    /// Anything else worth keeping (threshold, contamination, drift that caused the retrain, …).
    pub metrics: Value,
}

/// A model version with its snapshot bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredModel {
    /// Its metadata.
    pub meta: ModelMeta,
    /// [`Snapshot`](crate::Snapshot) bytes.
    pub snapshot: Vec<u8>,
}

/// Storage for per-key history and model versions.
///
/// Implementations must be safe to call from many threads. Errors are reported as [`Error::Persistence`].
pub trait Persistence: Send + Sync {
    /// Appends one record to a key's history.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn append_history(&self, key: &str, record: &Value) -> Result<()>;

    /// Appends records to a key's history, in order. The default appends them one by one; a store that can
    /// write them in one transaction should (one commit instead of one per record).
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails; records before the failing one may have been appended.
    fn append_history_many(&self, key: &str, records: &[Value]) -> Result<()> {
        records.iter().try_for_each(|r| self.append_history(key, r))
    }

    /// The most recent `limit` records of a key's history, oldest first.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>>;

    /// Removes a key's history; returns how many records were removed.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn clear_history(&self, key: &str) -> Result<usize>;

    /// Saves a new model version and returns its number (one more than the latest, atomically).
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn save_model(&self, key: &str, meta: &ModelMeta, snapshot: &[u8]) -> Result<u64>;

    /// A given version of a key's model, or the latest when `version` is `None`.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<StoredModel>>;

    /// Metadata of every stored version of a key's model, oldest first.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn model_versions(&self, key: &str) -> Result<Vec<ModelMeta>>;

    /// Keys with history or models.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn keys(&self) -> Result<Vec<String>>;
}

#[derive(Default)]
struct Tables {
    history: HashMap<String, Vec<Value>>,
    models: HashMap<String, Vec<StoredModel>>,
}

/// Persistence in process memory: the default, and the reference for tests. History per key is capped.
pub struct InMemoryPersistence {
    tables: Mutex<Tables>,
    max_history: usize,
}

impl InMemoryPersistence {
    /// Keeps at most `max_history` records per key (the oldest are dropped first).
    pub fn new(max_history: usize) -> Self {
        InMemoryPersistence {
            tables: Mutex::new(Tables::default()),
            max_history,
        }
    }

    fn tables(&self) -> Result<std::sync::MutexGuard<'_, Tables>> {
        self.tables.lock().map_err(|_| Error::Persistence {
            reason: "in-memory tables poisoned by a panic".into(),
        })
    }
}

impl Default for InMemoryPersistence {
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl Persistence for InMemoryPersistence {
    fn append_history(&self, key: &str, record: &Value) -> Result<()> {
        let mut t = self.tables()?;
        let h = t.history.entry(key.to_string()).or_default();
        h.push(record.clone());
        if h.len() > self.max_history {
            let excess = h.len() - self.max_history;
            h.drain(..excess);
        }
        Ok(())
    }

    fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        let t = self.tables()?;
        Ok(t.history
            .get(key)
            .map(|h| h[h.len().saturating_sub(limit)..].to_vec())
            .unwrap_or_default())
    }

    fn clear_history(&self, key: &str) -> Result<usize> {
        Ok(self.tables()?.history.remove(key).map_or(0, |h| h.len()))
    }

    fn save_model(&self, key: &str, meta: &ModelMeta, snapshot: &[u8]) -> Result<u64> {
        let mut t = self.tables()?;
        let versions = t.models.entry(key.to_string()).or_default();
        let version = versions.last().map_or(1, |m| m.meta.version + 1);
        versions.push(StoredModel {
            meta: ModelMeta {
                version,
                ..meta.clone()
            },
            snapshot: snapshot.to_vec(),
        });
        Ok(version)
    }

    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<StoredModel>> {
        let t = self.tables()?;
        let Some(versions) = t.models.get(key) else {
            return Ok(None);
        };
        Ok(match version {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|m| m.meta.version == v).cloned(),
        })
    }

    fn model_versions(&self, key: &str) -> Result<Vec<ModelMeta>> {
        let t = self.tables()?;
        Ok(t.models
            .get(key)
            .map(|v| v.iter().map(|m| m.meta.clone()).collect())
            .unwrap_or_default())
    }

    fn keys(&self) -> Result<Vec<String>> {
        let t = self.tables()?;
        let mut keys: Vec<String> = t.history.keys().chain(t.models.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}

impl<T: Persistence + ?Sized> Persistence for std::sync::Arc<T> {
    fn append_history(&self, key: &str, record: &Value) -> Result<()> {
        (**self).append_history(key, record)
    }
    fn append_history_many(&self, key: &str, records: &[Value]) -> Result<()> {
        (**self).append_history_many(key, records)
    }
    fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        (**self).load_history(key, limit)
    }
    fn clear_history(&self, key: &str) -> Result<usize> {
        (**self).clear_history(key)
    }
    fn save_model(&self, key: &str, meta: &ModelMeta, snapshot: &[u8]) -> Result<u64> {
        (**self).save_model(key, meta, snapshot)
    }
    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<StoredModel>> {
        (**self).load_model(key, version)
    }
    fn model_versions(&self, key: &str) -> Result<Vec<ModelMeta>> {
        (**self).model_versions(key)
    }
    fn keys(&self) -> Result<Vec<String>> {
        (**self).keys()
    }
}
