//! Anomaly Studio: users register `SELECT` queries over their MariaDB, PostgreSQL or SQLite tables; a scheduler
//! in the same process fetches each source's new rows by its timestamp watermark, scores them per series with the
//! record engine (models that retrain on new rows and drift), and stores them; users review the anomalies on
//! server-rendered pages or through a REST API (`Authorization: Token <key>`). One binary replaces the original's
//! web, worker, scheduler and broker.
//!
//! A thin binary over the libraries: [`config`] reads the environment, [`source`] is what a user registers,
//! [`accounts`] hashes and checks credentials, [`db`] is the application's database, [`watcher`] registers and
//! runs sources, [`scheduler`] runs them on time, [`web`] answers, [`import`] is the read-only account helper.

pub mod accounts;
pub mod config;
pub mod db;
pub mod error;
pub mod import;
pub mod metrics;
pub mod scheduler;
pub mod source;
pub mod watcher;
pub mod web;

pub use config::Config;
pub use error::WatcherError;
pub use watcher::{Trigger, Watcher};

use std::sync::Arc;

use service_kit::{Deadline, Telemetry};

/// Serves HTTP on `listener` and runs the scheduler until `shutdown` resolves (SIGTERM or SIGINT in the binary);
/// then finishes the requests in flight, lets the runs under way end and writes the engine's pending history,
/// within `SHUTDOWN_TIMEOUT_SECONDS`.
///
/// # Errors
/// [`WatcherError::Database`] / [`WatcherError::Store`] when the database cannot be opened.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WatcherError> {
    let mut telemetry = Telemetry::new("sql_watcher");
    let metrics = metrics::Metrics::register(&mut telemetry);
    let watcher = Arc::new(Watcher::open(config.clone(), metrics.clone()).await?);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = config
        .scheduler
        .then(|| tokio::spawn(scheduler::run(watcher.clone(), metrics.clone(), stop_rx)));
    let state = Arc::new(web::AppState {
        watcher: watcher.clone(),
    });
    let state_for_metrics = state.clone();
    let ready = watcher.clone();
    let routes = web::router(state).route(
        "/health",
        axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    );
    let routes = routes.route(
        "/ready",
        axum::routing::get(move || {
            let w = ready.clone();
            async move { service_kit::ready_response(w.ready().await) }
        }),
    );
    // Users sign in, so the kit's single-token authentication is off; `/metrics`, which the kit adds, takes any
    // user's token (Prometheus: `authorization: {type: Token, credentials: …}`).
    let app = service_kit::app(routes, &config.serve, None, Arc::new(telemetry)).layer(
        axum::middleware::from_fn_with_state(state_for_metrics, web::auth::metrics_guard),
    );
    tracing::info!(
        addr = %config.serve.addr(),
        database = %anomaly_store::redact_url(&config.database_url),
        scheduler = config.scheduler,
        "sql-watcher listening"
    );
    let deadline: Deadline = service_kit::serve(listener, app, &config.serve, shutdown).await;
    let _ = stop_tx.send(true);
    if let Some(task) = scheduler {
        let abort = task.abort_handle();
        if deadline.run(task).await.is_none() {
            abort.abort();
            tracing::warn!(
                "runs still under way at the shutdown deadline were cut off; they resume from their watermark"
            );
        }
    }
    let w = watcher.clone();
    if deadline
        .run(tokio::task::spawn_blocking(move || w.flush()))
        .await
        .is_none()
    {
        tracing::warn!("pending engine history was not all written by the shutdown deadline");
    }
    tracing::info!("sql-watcher stopped");
    Ok(())
}
