//! The log-line anomaly service: the original's endpoints (`POST /analyze-log`, `POST /analyze-batch`,
//! `GET /health`) over an analysis that learns what is normal for the system that logs
//! ([`anomaly_core::logs::LogDetector`]: Drain templates, their rarity, parameters, severity, bursts and silences)
//! instead of a sentiment model. Lines are scored, then learned; the detector's state is kept in the store
//! (SQLite by default) and survives a restart; flagged lines are stored as detections.
//!
//! A thin binary over the libraries: [`config`] reads the environment, [`analysis`] checks and answers a line,
//! [`state`] restores and saves the detector, `api` routes, [`metrics`] counts.

pub mod analysis;
pub mod config;
pub mod error;
pub mod metrics;
pub mod state;

mod api;

pub use analysis::{Analysis, LogAnswer, LogRequest, MODEL_NAME};
pub use config::Config;
pub use error::AnalyzerError;

use std::sync::Arc;

use anomaly_store::{AnomalyQueue, QueueConfig, Store};
use service_kit::Telemetry;

/// Builds the analysis the configuration describes around `store`'s saved state (the second opinion and the
/// detections' queue included when `with_queue`).
///
/// # Errors
/// As [`state::restore`]; [`AnalyzerError::Llm`] for unusable LLM settings.
pub async fn analysis(
    config: &Config,
    store: &Arc<dyn Store>,
    metrics: metrics::Metrics,
    with_queue: bool,
) -> Result<Analysis, AnalyzerError> {
    let detector =
        state::restore(store.as_ref(), &config.state_key, config.detector_params()).await?;
    let mut analysis = Analysis::new(
        detector,
        config.threshold,
        config.max_line_bytes,
        config.state_key.clone(),
        metrics,
    );
    if config.second_opinion {
        let settings = anomaly_llm::LlmSettings::from_env()?;
        let chain = settings.chain()?;
        let analyzer =
            anomaly_llm::logs::LogAnalyzer::with_settings(chain, settings.analyzer.clone());
        analysis = analysis.with_second_opinion(analyzer, config.second_opinion_timeout);
    }
    if with_queue {
        analysis = analysis.with_queue(AnomalyQueue::new(store.clone(), QueueConfig::default()));
    }
    Ok(analysis)
}

/// Serves HTTP on `listener` until `shutdown` resolves (SIGTERM or SIGINT in the binary): restores the saved
/// state, saves it every `CHECKPOINT_SECONDS` when it changed, and at shutdown finishes the requests in flight,
/// then saves the state and writes the queued detections within `SHUTDOWN_TIMEOUT_SECONDS`.
///
/// # Errors
/// [`AnalyzerError::Config`] when it would listen beyond loopback without `API_TOKEN`; [`AnalyzerError::Store`]
/// when the database cannot be opened or read; [`AnalyzerError::Detector`] when the saved state is refused.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), AnalyzerError> {
    config.check_exposure()?;
    let store = state::open_store(&config).await?;
    let mut telemetry = Telemetry::new("log_analyzer");
    let metrics = metrics::Metrics::register(&mut telemetry);
    let analysis = Arc::new(analysis(&config, &store, metrics.clone(), true).await?);
    {
        let (lines, templates) = analysis.totals();
        metrics.templates(templates as u64, lines);
    }
    let checkpoints = tokio::spawn(checkpoint_loop(
        analysis.clone(),
        store.clone(),
        config.state_key.clone(),
        config.checkpoint_every,
        metrics.clone(),
    ));
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        threshold = config.threshold,
        authentication = config.api_token.is_some(),
        second_opinion = config.second_opinion,
        "log-analyzer listening"
    );
    let app = service_kit::app(
        api::router(api::ApiState {
            analysis: analysis.clone(),
            store: store.clone(),
            max_batch_lines: config.max_batch_lines,
        }),
        &config.serve,
        config.auth(),
        Arc::new(telemetry),
    );
    let deadline = service_kit::serve(listener, app, &config.serve, shutdown).await;
    // A checkpoint in progress must not race the final save.
    checkpoints.abort();
    let _ = checkpoints.await;
    match deadline
        .run(state::save(&analysis, store.as_ref(), &config.state_key))
        .await
    {
        Some(Ok(lines)) => {
            metrics.checkpoint(true);
            tracing::info!(lines, "state saved");
        }
        Some(Err(e)) => {
            metrics.checkpoint(false);
            tracing::error!(error = %e, "the state could not be saved at shutdown");
        }
        None => tracing::error!("the state was not saved within SHUTDOWN_TIMEOUT_SECONDS"),
    }
    if let Some(queue) = analysis.take_queue() {
        let left = queue.close(deadline.remaining()).await;
        if !left.is_empty() {
            tracing::error!(
                detections = left.len(),
                "flagged lines not written by the shutdown deadline"
            );
        }
    }
    Ok(())
}

/// Saves the state every `every` when lines were learned since the last save.
async fn checkpoint_loop(
    analysis: Arc<Analysis>,
    store: Arc<dyn Store>,
    key: String,
    every: std::time::Duration,
    metrics: metrics::Metrics,
) {
    let mut saved = analysis.totals().0;
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        if analysis.totals().0 == saved {
            continue;
        }
        match state::save(&analysis, store.as_ref(), &key).await {
            Ok(lines) => {
                saved = lines;
                metrics.checkpoint(true);
                tracing::debug!(lines, "state saved");
            }
            Err(e) => {
                metrics.checkpoint(false);
                tracing::warn!(error = %e, "the state could not be saved; retrying at the next checkpoint");
            }
        }
    }
}
