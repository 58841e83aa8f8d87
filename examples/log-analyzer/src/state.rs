//! The detector's state in the store: restored at start, saved every `CHECKPOINT_SECONDS` when it changed and at
//! shutdown, older versions pruned.

use std::sync::Arc;

use anomaly_core::engine::ModelMetadata;
use anomaly_core::logs::{LogDetector, LogDetectorParams};
use anomaly_store::{RetentionPolicy, SeaOrmStore, Store};
use chrono::Utc;
use serde_json::json;

use crate::analysis::Analysis;
use crate::config::Config;
use crate::error::AnalyzerError;

/// The snapshot kind of the detector's state.
const KIND: &str = "log_detector";

/// The store at `DATABASE_URL` (the SQLite file's directory created when missing), migrated.
///
/// # Errors
/// [`AnalyzerError::Store`] when the database cannot be opened, [`AnalyzerError::Io`] when the directory cannot
/// be created.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, AnalyzerError> {
    SeaOrmStore::create_sqlite_dir(&config.database_url).map_err(|source| AnalyzerError::Io {
        what: "the database's directory".into(),
        source,
    })?;
    let store =
        SeaOrmStore::connect_with_timeout(&config.database_url, config.store_timeout).await?;
    Ok(Arc::new(store))
}

/// The detector saved under `key`, or a new one with `params` when none was saved.
///
/// A saved state keeps its own settings; when they differ from `params` (`MAX_TEMPLATES`, `WINDOW_SECONDS`
/// changed), a warning says so.
///
/// # Errors
/// [`AnalyzerError::Store`] when the database cannot be read, [`AnalyzerError::Detector`] when the saved state is
/// refused (corrupt, or from an incompatible version): the service does not start empty over a state it cannot read.
pub async fn restore(
    store: &dyn Store,
    key: &str,
    params: LogDetectorParams,
) -> Result<LogDetector, AnalyzerError> {
    let Some(saved) = store.load_model(key, None).await? else {
        tracing::info!(key, "no saved state: starting empty");
        return Ok(LogDetector::new(params)?);
    };
    let detector =
        tokio::task::spawn_blocking(move || LogDetector::from_snapshot_bytes(&saved.snapshot))
            .await
            .map_err(|e| AnalyzerError::Io {
                what: "restoring the saved state".into(),
                source: std::io::Error::other(e),
            })??;
    if detector.params() != &params {
        tracing::warn!(
            key,
            "the saved state keeps the settings it was made with (MAX_TEMPLATES, WINDOW_SECONDS)"
        );
    }
    tracing::info!(
        key,
        lines = detector.lines_seen(),
        templates = detector.template_count(),
        "restored the saved state"
    );
    Ok(detector)
}

/// Saves the detector's state as a new version under `key` and removes the older versions; returns the lines it
/// had seen.
///
/// # Errors
/// [`AnalyzerError::Store`] when the database refuses the write.
pub async fn save(analysis: &Analysis, store: &dyn Store, key: &str) -> Result<u64, AnalyzerError> {
    let copy = analysis.detector().clone();
    let lines = copy.lines_seen();
    let templates = copy.template_count();
    let bytes = tokio::task::spawn_blocking(move || copy.to_snapshot_bytes())
        .await
        .map_err(|e| AnalyzerError::Io {
            what: "serialising the state".into(),
            source: std::io::Error::other(e),
        })?;
    let metadata = ModelMetadata {
        records_trained_on: lines,
        features: Vec::new(),
        trained_at: Utc::now(),
        metrics: json!({"templates": templates, "bytes": bytes.len()}),
    };
    store.save_model(key, KIND, &metadata, &bytes).await?;
    // Only the latest version is needed; detections keep the default retention.
    let policy = RetentionPolicy {
        models: std::time::Duration::ZERO,
        ..RetentionPolicy::default()
    };
    store
        .cleanup_keys(&policy, Utc::now(), Some(&[key.to_string()]))
        .await?;
    Ok(lines)
}
