//! `metrics-producer`: publishes synthetic metric series with labelled incidents (spikes, level shifts, drifts)
//! to NATS JetStream (`NATS_URL`, `NATS_SUBJECT_PREFIX`, `NATS_STREAM` as the worker reads them).

use std::time::Duration;

use clap::Parser;
use metrics_worker::Config;
use metrics_worker::producer::ProducerOptions;

/// Command line.
#[derive(Parser)]
#[command(
    version,
    about = "Publishes synthetic metric series with labelled incidents"
)]
struct Args {
    /// Messages per second, over all series.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Number of series.
    #[arg(long, default_value_t = 5)]
    series: usize,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop after this many messages.
    #[arg(long)]
    count: Option<u64>,
    /// Normal points per series between two incidents.
    #[arg(long, default_value_t = 50)]
    quiet_points: u64,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("metrics-producer: {e}");
            }
            return std::process::ExitCode::from(2);
        }
    };
    if !(args.rate.is_finite() && args.rate > 0.0)
        || args.duration.is_some_and(|d| !(d.is_finite() && d > 0.0))
    {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("metrics-producer: --rate and --duration must be positive numbers");
        }
        return std::process::ExitCode::from(2);
    }
    service_kit::init_logging(&config.serve);
    let options = ProducerOptions {
        prefix: config.subject_prefix.clone(),
        series: args.series,
        rate: args.rate,
        count: args.count,
        duration: args.duration.map(Duration::from_secs_f64),
        quiet_points: args.quiet_points,
        seed: args.seed,
        ..ProducerOptions::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        service_kit::shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    match metrics_worker::produce(&config, &options, stop_rx).await {
        Ok(n) => {
            tracing::info!(published = n, "done");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics-producer failed");
            std::process::ExitCode::from(1)
        }
    }
}
