//! Where a monitor got to, kept in the store between runs: the end of the last window it scored, and the endpoints
//! and methods each service has shown.

use anomaly_core::window::Vocabularies;
use anomaly_store::{DataSource, SourceStatus, Store};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Config;
use crate::error::Result;

/// A monitor's progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The end of the last window scored, epoch seconds; events before it are not read again.
    pub scored_through: Option<f64>,
    /// The endpoints and methods each service has shown (at most 1,000 per field and service).
    #[serde(default)]
    pub vocabulary: Vocabularies,
    /// Whether the models were trained with day-of-week features (decided by `train`).
    #[serde(default)]
    pub weekday: bool,
}

/// The monitor's progress under `name`; empty before its first run.
///
/// # Errors
/// [`MonitorError::Store`](crate::MonitorError::Store) when the store cannot be read.
pub async fn load(store: &dyn Store, name: &str) -> Result<Progress> {
    let Some(source) = store.data_source(name).await? else {
        return Ok(Progress::default());
    };
    Ok(
        serde_json::from_value(source.watermark).unwrap_or_else(|e| {
            tracing::warn!(error = %e, name, "stored progress unreadable; starting over");
            Progress::default()
        }),
    )
}

/// Records the monitor's progress under `name`, with what it reads (`source`, no credentials).
///
/// # Errors
/// [`MonitorError::Store`](crate::MonitorError::Store) when the store cannot be written.
pub async fn save(
    store: &dyn Store,
    name: &str,
    config: &Config,
    source: &str,
    progress: &Progress,
) -> Result<()> {
    let watermark = serde_json::to_value(progress).unwrap_or(Value::Null);
    if store
        .update_data_source_state(name, &watermark, SourceStatus::Active, None)
        .await?
    {
        return Ok(());
    }
    store
        .upsert_data_source(&DataSource {
            name: name.to_string(),
            url: source.to_string(),
            query: config.index.clone(),
            timestamp_column: config.fields.timestamp.clone(),
            series_columns: vec![config.fields.service.clone()],
            poll_interval_seconds: config.monitor_interval.as_secs(),
            sensitivity: Some(config.sensitivity),
            watermark,
            status: SourceStatus::Active,
            last_error: None,
        })
        .await?;
    Ok(())
}
