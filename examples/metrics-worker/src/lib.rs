//! The real-time metric-stream anomaly worker: metric points arrive on NATS JetStream
//! (`<prefix>.<series>`), each series goes through a moving average and a streaming isolation forest
//! ([`anomaly_core::stream::SeriesDetectors`]), every detection is stored with everything that decided it
//! ([`anomaly_store`]: SQLite by default, PostgreSQL by `DATABASE_URL`), and a message is acknowledged only once its
//! detections are stored, then announced (`<prefix>-alerts.<series>`, a webhook). HTTP through the service kit:
//! `/health`, `/ready`, `/metrics`, `/anomalies`, `/anomalies/{id}`, and the live dashboard at `/ui`.
//!
//! A thin binary over the libraries: [`config`] reads the environment, [`message`] parses and checks a point,
//! `worker` consumes, `alerts` announces, `api` and `ui` answer, [`producer`] generates labelled synthetic series. See the README for the
//! acknowledgement and idempotency design.

pub mod config;
pub mod error;
pub mod message;
pub mod producer;

mod alerts;
mod api;
mod metrics;
mod ui;
mod worker;

pub use config::Config;
pub use error::WorkerError;
#[doc(hidden)]
pub use worker::TestHooks;
pub use worker::ensure_stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anomaly_core::stream::SeriesDetectors;
use anomaly_store::{SeaOrmStore, Store};
use service_kit::Telemetry;
use tokio::sync::watch;

/// How often the consumer's backlog is read from the server for `/metrics`.
const BACKLOG_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts the worker: connects to the database and to NATS (creating the stream and the durable consumer), then
/// consumes and serves HTTP on `listener` until `shutdown` resolves (SIGTERM or SIGINT in the binary). Then it stops
/// pulling, finishes the message in hand (stored and acknowledged), and returns within `SHUTDOWN_TIMEOUT_SECONDS`;
/// messages fetched but not yet handled are redelivered by the server after `NATS_ACK_WAIT_SECONDS`.
///
/// # Errors
/// [`WorkerError::Config`] when it would listen beyond loopback without `API_TOKEN`; [`WorkerError::Store`] when
/// the database cannot be opened; [`WorkerError::Nats`] when NATS cannot be reached or refuses the stream or the
/// consumer.
pub async fn serve(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    serve_with_hooks(config, listener, shutdown, TestHooks::default()).await
}

/// As [`serve`], with faults injected by tests.
#[doc(hidden)]
pub async fn serve_with_hooks(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    hooks: TestHooks,
) -> Result<(), WorkerError> {
    config.check_exposure()?;
    let config = Arc::new(config);
    let detectors = SeriesDetectors::new(config.series_params())?;
    let config_json = serde_json::json!({
        "detectors": detectors.params(),
        "MA_WINDOW_SIZE": config.ma_window_size,
        "MA_THRESHOLD": config.ma_threshold,
        "IF_SMOOTHING_ALPHA": config.if_smoothing_alpha,
        "IF_CONTAMINATION": config.if_contamination,
        "IF_BATCH_SIZE": config.if_batch_size,
        "IF_MIN_ANOMALY_CONSEC": config.if_min_anomaly_consec,
    });
    let store = open_store(&config).await?;
    let attached = worker::connect(&config).await?;
    let mut telemetry = Telemetry::new("metrics");
    let metrics = metrics::WorkerMetrics::register(&mut telemetry);
    let (stop_tx, stop_rx) = watch::channel(false);
    let consuming = Arc::new(AtomicBool::new(true));
    let (alerts, webhook_task) =
        alerts::Alerts::start(attached.client.clone(), config.clone(), metrics.clone())?;
    let (changes, changes_rx) = watch::channel(0u64);
    tokio::spawn(worker::watch_backlog(
        attached.stream.clone(),
        config.consumer_name(),
        metrics.clone(),
        BACKLOG_EVERY,
        stop_rx.clone(),
    ));
    let consumer = worker::Consumer {
        config: config.clone(),
        client: attached.client,
        consumer: attached.consumer,
        detectors,
        store: store.clone(),
        metrics,
        hooks,
        config_json,
        stored: 0,
        replay_until: attached.replay_until,
        alerts,
        changes,
    };
    let consumer_task = {
        let consuming = consuming.clone();
        let stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let alerts = consumer.run(stop_rx).await;
            consuming.store(false, Ordering::Relaxed);
            alerts
        })
    };
    // The signal stops the consumer at once, while HTTP drains its requests.
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }
    let mut http_stop = stop_rx.clone();
    let http_shutdown = async move {
        let _ = http_stop.wait_for(|s| *s).await;
    };
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        nats = %config.nats_url,
        stream = %config.stream,
        subjects = %config.stream_subjects(),
        consumer = %config.consumer_name(),
        worker = %format!("{} of {}", config.worker_index + 1, config.worker_count),
        webhook = config.alert_webhook_url.is_some(),
        authentication = config.api_token.is_some(),
        "metrics-worker consuming and listening"
    );
    let app = service_kit::app(
        api::router(api::ApiState {
            store: store.clone(),
            consuming,
        })
        .merge(ui::router(ui::UiState {
            store,
            changes: changes_rx,
            stop: stop_rx,
            signed_in: config.api_token.is_some(),
        })),
        &config.serve,
        config.auth(),
        Arc::new(telemetry),
    );
    let deadline = service_kit::serve(listener, app, &config.serve, http_shutdown).await;
    let _ = stop_tx.send(true);
    match deadline.run(consumer_task).await {
        Some(Ok(alerts)) => {
            tracing::info!("the message in hand was stored and acknowledged; stopped");
            alerts.close(webhook_task, &deadline).await;
        }
        Some(Err(e)) => tracing::error!(error = %e, "the consumer failed"),
        None => tracing::warn!(
            "the message in hand was not finished by the shutdown deadline; the server will redeliver it"
        ),
    }
    Ok(())
}

/// The store at `DATABASE_URL` (the SQLite file's directory created when missing), migrated.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>, WorkerError> {
    SeaOrmStore::create_sqlite_dir(&config.database_url).map_err(|source| WorkerError::Io {
        what: "the database's directory".into(),
        source,
    })?;
    let store =
        SeaOrmStore::connect_with_timeout(&config.database_url, config.store_timeout).await?;
    Ok(Arc::new(store))
}

/// Publishes the producer's synthetic series to the configured NATS (creating the stream when missing) until
/// `stop` turns true or the options' count or duration is reached: what `metrics-worker --demo` runs beside the
/// worker, and what `metrics-producer` runs alone.
///
/// # Errors
/// [`WorkerError::Nats`].
pub async fn produce(
    config: &Config,
    options: &producer::ProducerOptions,
    stop: watch::Receiver<bool>,
) -> Result<u64, WorkerError> {
    let client = worker::connect_client(config, "metrics-producer").await?;
    let js = async_nats::jetstream::new(client);
    ensure_stream(&js, config).await?;
    producer::publish(&js, options, stop)
        .await
        .map_err(|e| WorkerError::nats(&config.nats_url, e))
}
