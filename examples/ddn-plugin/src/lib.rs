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

use service_kit::Telemetry;

/// Starts the plugin on `listener` and serves until `shutdown` resolves (SIGTERM or SIGINT in the binary): then
/// it stops accepting, lets in-flight requests finish, and writes pending query patterns, history records, late
/// LLM answers and queued detections, all within `SHUTDOWN_TIMEOUT_SECONDS` ([`Plugin::shutdown`]).
///
/// # Errors
/// [`PluginError::Config`] when it would listen beyond loopback without `PLUGIN_SECRET` (see
/// [`Config::check_exposure`]); as [`Plugin::start`].
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), PluginError> {
    config.check_exposure()?;
    let settings = config.serve.clone();
    let auth = config.auth();
    let plugin = Arc::new(Plugin::start(config).await?);
    let mut telemetry = Telemetry::new("ddn_plugin");
    let reader = plugin.clone();
    telemetry
        .registry()
        .register_collector(Box::new(metrics::PluginCollector::new(move || {
            reader.snapshot()
        })));
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        llm = %plugin.provider_chain(),
        authentication = auth.is_some(),
        "ddn-plugin listening"
    );
    let app = service_kit::app(
        routes::router(plugin.clone()),
        &settings,
        auth,
        Arc::new(telemetry),
    );
    let deadline = service_kit::serve(listener, app, &settings, shutdown).await;
    if plugin.shutdown(deadline).await {
        tracing::info!("everything pending was written; stopped");
    }
    Ok(())
}
