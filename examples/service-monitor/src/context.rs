//! What every command opens: the store (SQLite by default) and the record engine over it.

use std::sync::Arc;
use std::time::Duration;

use anomaly_core::drift::DriftParams;
use anomaly_core::engine::{Engine, EngineParams, Persistence, WriteBehind};
use anomaly_core::records::vectorizer::VectorizerParams;
use anomaly_core::{Contamination, IsolationForestParams};
use anomaly_store::{SeaOrmStore, Store};

use crate::config::Config;
use crate::error::{MonitorError, Result};

/// How often buffered history is written to the store.
const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Windows of history kept per service: a month of one-minute windows.
pub const MAX_HISTORY_WINDOWS: usize = 43_200;

/// The store and the engine, shared by the commands.
#[derive(Clone)]
pub struct Context {
    /// The settings.
    pub config: Arc<Config>,
    /// The monitor's name: its engine keys are `<name>/<service>`, its progress is stored under it.
    pub name: String,
    /// The store: models, history, progress, and anomalies when there is no cluster.
    pub store: Arc<dyn Store>,
    /// The record engine, one model per service.
    pub engine: Arc<Engine>,
    /// The engine's buffered history writer (flushed at the end of a command).
    pub history: Arc<WriteBehind>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The engine's settings for service windows: the first model after `MIN_TRAINING_WINDOWS`, a retrain every
/// `RETRAIN_EVERY_WINDOWS` normal windows, contamination `SENSITIVITY`, drift over `DRIFT_WINDOWS`, and flagged
/// windows never learnt unless drift makes them the new normal.
pub fn engine_params(config: &Config) -> EngineParams {
    let drift = config.drift_windows;
    EngineParams::new()
        .min_training_records(config.min_training_windows)
        .max_history(MAX_HISTORY_WINDOWS.max(config.min_training_windows))
        .max_keys_in_memory(config.max_services)
        .retrain_every(config.retrain_every_windows)
        .sensitivity(Contamination::Fraction(config.sensitivity))
        .forest(IsolationForestParams::new().n_estimators(200).seed(7))
        .drift(Some(
            DriftParams::new()
                .window(drift)
                .check_every((drift / 8).max(1)),
        ))
        .learn_flagged(false)
        .vectorizer(VectorizerParams::new().field_roles(crate::fields::record_roles()))
}

impl Context {
    /// Opens (and migrates) the store at `DATABASE_URL`, creating `DATA_DIR` for the default SQLite file, and
    /// builds the engine over it.
    ///
    /// # Errors
    /// [`MonitorError::Io`] when the data directory cannot be made; [`MonitorError::Store`] when the database
    /// cannot be opened.
    pub async fn open(config: Config, name: &str) -> Result<Context> {
        if config.database_url.starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir).map_err(|e| {
                MonitorError::io(format!("creating {}", config.data_dir.display()), e)
            })?;
        }
        let store = SeaOrmStore::connect_with_timeout(&config.database_url, config.store_timeout)
            .await?
            .with_max_history(MAX_HISTORY_WINDOWS as u64);
        let persistence: Arc<dyn Persistence> = Arc::new(store.clone());
        let history = Arc::new(WriteBehind::new(
            persistence,
            MAX_HISTORY_WINDOWS,
            HISTORY_FLUSH_INTERVAL,
        )?);
        let engine = Engine::new(engine_params(&config), history.clone())?;
        Ok(Context {
            config: Arc::new(config),
            name: name.to_string(),
            store: Arc::new(store),
            engine: Arc::new(engine),
            history,
        })
    }

    /// Writes the buffered history.
    pub fn flush(&self) {
        if let Err(e) = self.history.flush() {
            tracing::warn!(error = %e, "history not written");
        }
    }
}
