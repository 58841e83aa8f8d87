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

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = match Config::from_env().and_then(|c| c.check_exposure().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("metrics-worker: {e}");
            }
            return std::process::ExitCode::from(2);
        }
    };
    service_kit::init_logging(&config.serve);
    let listener = match config.serve.bind().await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            return std::process::ExitCode::from(1);
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if args.demo {
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
            match metrics_worker::produce(&demo_config, &options, stop_rx).await {
                Ok(n) => tracing::info!(published = n, "demo producer stopped"),
                Err(e) => tracing::error!(error = %e, "demo producer failed"),
            }
        });
    }
    let shutdown = async move {
        service_kit::shutdown_signal().await;
        let _ = stop_tx.send(true);
    };
    match metrics_worker::serve(config, listener, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "metrics-worker stopped");
            std::process::ExitCode::from(1)
        }
    }
}
