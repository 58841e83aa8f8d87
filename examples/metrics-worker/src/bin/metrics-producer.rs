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
    /// A benchmark: after publishing, watch the worker at this base URL (`http://127.0.0.1:8000`) until it has
    /// acknowledged every message, then print the throughput from the first publication to the last
    /// acknowledgement and the publication-to-acknowledgement latency quantiles (from its histogram).
    #[arg(long)]
    report: Option<String>,
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
    let http = reqwest::Client::new();
    let scrape = |base: String| {
        let http = http.clone();
        async move {
            let text = http
                .get(format!("{base}/metrics"))
                .send()
                .await?
                .error_for_status()?
                .text()
                .await?;
            Ok::<_, reqwest::Error>(metrics_worker::producer::WorkerProgress::parse(&text))
        }
    };
    let before = match &args.report {
        Some(base) => match scrape(base.clone()).await {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the worker's /metrics");
                return std::process::ExitCode::from(1);
            }
        },
        None => None,
    };
    let started = std::time::Instant::now();
    match metrics_worker::produce(&config, &options, stop_rx).await {
        Ok(n) => {
            let published_in = started.elapsed();
            tracing::info!(published = n, "done");
            if let (Some(base), Some(before)) = (args.report, before) {
                return report(n, published_in, started, &before, || scrape(base.clone())).await;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics-producer failed");
            std::process::ExitCode::from(1)
        }
    }
}

/// Waits until the worker has acknowledged `n` more messages than `before`, then prints the figures.
#[allow(clippy::print_stdout)]
async fn report<F, Fut>(
    n: u64,
    published_in: Duration,
    started: std::time::Instant,
    before: &metrics_worker::producer::WorkerProgress,
    scrape: F,
) -> std::process::ExitCode
where
    F: Fn() -> Fut,
    Fut: std::future::Future<
            Output = Result<metrics_worker::producer::WorkerProgress, reqwest::Error>,
        >,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let after = loop {
        match scrape().await {
            Ok(p) if p.acknowledged - before.acknowledged >= n as f64 => break p,
            Ok(_) if std::time::Instant::now() < deadline => {}
            Ok(p) => {
                tracing::error!(
                    acknowledged = p.acknowledged - before.acknowledged,
                    published = n,
                    "the worker did not catch up within 300 s"
                );
                return std::process::ExitCode::from(1);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read the worker's /metrics");
                return std::process::ExitCode::from(1);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let done_in = started.elapsed();
    let q = |q: f64| {
        after.end_to_end_quantile(before, q).map_or_else(
            || "n/a".to_string(),
            |s| format!("<= {:.1} ms", s * 1_000.0),
        )
    };
    println!(
        "published {n} messages in {:.2} s ({:.0}/s); all acknowledged after {:.2} s: {:.0} messages/s end to end; \
         publication to acknowledgement p50 {}, p99 {}, p99.9 {}",
        published_in.as_secs_f64(),
        n as f64 / published_in.as_secs_f64(),
        done_in.as_secs_f64(),
        n as f64 / done_in.as_secs_f64(),
        q(0.5),
        q(0.99),
        q(0.999),
    );
    std::process::ExitCode::SUCCESS
}
