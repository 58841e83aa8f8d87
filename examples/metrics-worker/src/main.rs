//! `metrics-worker`: consumes metric points from NATS JetStream, detects anomalies per series and stores each
//! with its context; HTTP on `127.0.0.1:8000` by default. Configured by environment variables (see the README).
//! `--demo` also runs the synthetic producer in-process. SIGTERM or SIGINT stops it gracefully (exit 0).

use clap::Parser;
use metrics_worker::Config;
use metrics_worker::producer::ProducerOptions;

/// Command line.
#[derive(Parser)]
#[command(version, about = "The real-time metric-stream anomaly worker")]
struct Args {
    /// Also publish synthetic series with incidents to the configured NATS, in-process.
    #[arg(long)]
    demo: bool,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    service_kit::run_service(
        "metrics-worker",
        || {
            let config = Config::from_env()?;
            config.check_exposure()?;
            let settings = config.serve.clone();
            Ok::<_, metrics_worker::WorkerError>((config, settings))
        },
        |config, listener| async move {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            if args.demo {
                start_demo(&config, stop_rx);
            }
            let shutdown = async move {
                service_kit::shutdown_signal().await;
                let _ = stop_tx.send(true);
            };
            metrics_worker::serve(config, listener, shutdown).await
        },
    )
}

/// Publishes synthetic series with incidents to the configured NATS, in-process, until `stop`.
fn start_demo(config: &Config, stop: tokio::sync::watch::Receiver<bool>) {
    let demo_config = config.clone();
    let options = ProducerOptions {
        prefix: config.subject_prefix.clone(),
        ..ProducerOptions::default()
    };
    tracing::info!(
        rate = options.rate,
        series = options.series,
        "demo: publishing synthetic series with a spike, a level shift or a drift every {} points per series; \
         watch GET /anomalies",
        options.quiet_points
    );
    tokio::spawn(async move {
        match metrics_worker::produce(&demo_config, &options, stop).await {
            Ok(n) => tracing::info!(published = n, "demo producer stopped"),
            Err(e) => tracing::error!(error = %e, "demo producer failed"),
        }
    });
}
