//! What the engine needs from storage: the one [`Persistence`] trait between the engine and a store, the model
//! version types every store shares, and an in-memory implementation.
//!
//! The engine appends history, saves model versions and reads both back when it restores a key. The store crate
//! implements the trait for its databases; a [`WriteBehind`](super::WriteBehind) in front of one keeps history
//! appends and outages off the caller's path.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// What a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Records it was trained on.
    pub records_trained_on: u64,
    /// Names of its input features.
    pub features: Vec<String>,
    /// When it was trained.
    pub trained_at: DateTime<Utc>,
    /// Anything else worth keeping (threshold, contamination, the reason for the training, …).
    pub metrics: Value,
}

/// One stored version of a key's model, without its snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    /// The key.
    pub key: String,
    /// Version, from 1, increasing per key.
    pub version: u64,
    /// Snapshot kind (`record_model`, `isolation_forest`, …).
    pub kind: String,
    /// What it was trained on.
    pub metadata: ModelMetadata,
    /// When this version was saved.
    pub saved_at: DateTime<Utc>,
}

/// A stored model version with its snapshot bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedModel {
    /// Its description.
    pub info: ModelVersion,
    /// The [`Snapshot`](crate::Snapshot) bytes.
    pub snapshot: Vec<u8>,
}

/// Storage for per-key history and model versions: what the [`Engine`](super::Engine) reads and writes.
///
/// Implementations must be safe to call from many threads. A failure that may pass (the storage is down, a
/// timeout) is [`Error::Persistence`]; data the storage will never take (a key too long, a character it cannot
/// store) is [`Error::PersistenceRefused`].
pub trait Persistence: Send + Sync {
    /// Appends records to a key's history, in order, in one transaction where the storage has them.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails (nothing is appended then, where it is transactional).
    fn append_history(&self, key: &str, records: &[Value]) -> Result<()>;

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

    /// Saves a new model version and returns its number (one more than the latest, decided atomically).
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> Result<u64>;

    /// A given version of a key's model, or the latest when `version` is `None`.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>>;

    /// Every stored version of a key's model (without snapshots), oldest first.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>>;

    /// Keys with history or models, sorted.
    ///
    /// # Errors
    /// [`Error::Persistence`] when storage fails.
    fn keys(&self) -> Result<Vec<String>>;

    /// Asks the storage a cheap question, to tell whether it answers. The default lists the keys; a database
    /// should answer something cheaper.
    ///
    /// # Errors
    /// [`Error::Persistence`] when it does not answer.
    fn probe(&self) -> Result<()> {
        self.keys().map(|_| ())
    }
}

#[derive(Default)]
struct Tables {
    history: HashMap<String, Vec<Value>>,
    models: HashMap<String, Vec<SavedModel>>,
}

/// Model versions an [`InMemoryPersistence`] keeps per key (the newest; numbering goes on).
pub const IN_MEMORY_MODEL_VERSIONS: usize = 8;

/// Persistence in process memory: the default, and the reference for tests. History per key is capped, and so are
/// model versions ([`IN_MEMORY_MODEL_VERSIONS`], the newest); the number of keys is not: an engine over it keeps
/// every key's history and latest models in memory, evicted keys included.
pub struct InMemoryPersistence {
    tables: Mutex<Tables>,
    max_history: usize,
}

impl std::fmt::Debug for InMemoryPersistence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryPersistence")
            .field("max_history", &self.max_history)
            .finish_non_exhaustive()
    }
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
    fn append_history(&self, key: &str, records: &[Value]) -> Result<()> {
        let mut t = self.tables()?;
        let h = t.history.entry(key.to_string()).or_default();
        h.extend_from_slice(records);
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

    fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> Result<u64> {
        let mut t = self.tables()?;
        let versions = t.models.entry(key.to_string()).or_default();
        let version = versions.last().map_or(1, |m| m.info.version + 1);
        versions.push(SavedModel {
            info: ModelVersion {
                key: key.to_string(),
                version,
                kind: kind.to_string(),
                metadata: metadata.clone(),
                saved_at: Utc::now(),
            },
            snapshot: snapshot.to_vec(),
        });
        let excess = versions.len().saturating_sub(IN_MEMORY_MODEL_VERSIONS);
        versions.drain(..excess);
        Ok(version)
    }

    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
        let t = self.tables()?;
        let Some(versions) = t.models.get(key) else {
            return Ok(None);
        };
        Ok(match version {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|m| m.info.version == v).cloned(),
        })
    }

    fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
        let t = self.tables()?;
        Ok(t.models
            .get(key)
            .map(|v| v.iter().map(|m| m.info.clone()).collect())
            .unwrap_or_default())
    }

    fn keys(&self) -> Result<Vec<String>> {
        let t = self.tables()?;
        let mut keys: Vec<String> = t.history.keys().chain(t.models.keys()).cloned().collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn probe(&self) -> Result<()> {
        self.tables().map(|_| ())
    }
}

impl<T: Persistence + ?Sized> Persistence for std::sync::Arc<T> {
    fn append_history(&self, key: &str, records: &[Value]) -> Result<()> {
        (**self).append_history(key, records)
    }
    fn load_history(&self, key: &str, limit: usize) -> Result<Vec<Value>> {
        (**self).load_history(key, limit)
    }
    fn clear_history(&self, key: &str) -> Result<usize> {
        (**self).clear_history(key)
    }
    fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> Result<u64> {
        (**self).save_model(key, kind, metadata, snapshot)
    }
    fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
        (**self).load_model(key, version)
    }
    fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
        (**self).model_versions(key)
    }
    fn keys(&self) -> Result<Vec<String>> {
        (**self).keys()
    }
    fn probe(&self) -> Result<()> {
        (**self).probe()
    }
}
