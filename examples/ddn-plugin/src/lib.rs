//! The GraphQL gateway anomaly plugin as a service: a Hasura DDN pre-response hook that learns, per query and
//! root field, what normal results look like, flags unusual records and suspicious query patterns, and keeps
//! everything (history, detections, models, query patterns) in a database: SQLite by default.
//!
//! A thin binary over the libraries: [`protocol`] parses the hook's request, [`plugin`] wires the record engine
//! (which owns every dataset's life: history, baseline, both detectors, models, restore, outages) to the LLM (or
//! offline) query analysis and the store, [`routes`] serves the endpoints, [`config`] reads the environment. See
//! the README for the endpoints and how to wire the plugin into a DDN project.

pub mod config;
pub mod error;
pub mod late;
pub mod metrics;
pub mod patterns;
pub mod plugin;
pub mod protocol;
pub mod routes;

pub use config::Config;
pub use error::PluginError;
pub use plugin::Plugin;

use std::sync::Arc;

/// Starts the plugin on `listener` and serves until `shutdown` resolves; pending query patterns and history
/// records, and queued detections (up to five seconds), are written before it returns.
///
/// # Errors
/// As [`Plugin::start`]; [`PluginError::Internal`] when serving fails.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), PluginError> {
    let plugin = Arc::new(Plugin::start(config).await?);
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        llm = %plugin.provider_chain(),
        "ddn-plugin listening"
    );
    axum::serve(listener, routes::router(plugin.clone()))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| PluginError::Internal(e.to_string()))?;
    plugin.patterns().flush().await;
    flush_history(&plugin, std::time::Duration::from_secs(5)).await;
    if !plugin
        .queue()
        .flush(std::time::Duration::from_secs(5))
        .await
    {
        tracing::error!(
            unwritten = plugin.queue().depth(),
            "shutting down with detections unwritten"
        );
    }
    Ok(())
}

/// Writes the engine's pending history, retrying (the database may be blinking) until `deadline` has passed.
async fn flush_history(plugin: &Arc<Plugin>, deadline: std::time::Duration) {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let writer = plugin.clone();
        let error = match tokio::task::spawn_blocking(move || writer.history_writer().flush()).await
        {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => format!("the history flush panicked: {e}"),
        };
        if tokio::time::Instant::now() >= until {
            tracing::error!(
                error,
                unwritten = plugin.history_writer().stats().pending,
                "shutting down with history records unwritten"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
