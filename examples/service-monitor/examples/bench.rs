//! The monitor's speed on this machine: `train` on a million events, then `monitor` reading another million, from
//! NDJSON files, with the store in SQLite. `cargo run --release -p service-monitor --example bench [EVENTS]`
//! prints events per second for each step and the time `train` took.

use std::time::Instant;

use service_monitor::anomalies::{Recent, Sink};
use service_monitor::commands::{self, MonitorOptions, Shared};
use service_monitor::generate::{self, GenerateOptions, Target};
use service_monitor::metrics::MonitorMetrics;
use service_monitor::source::Source;
use service_monitor::{Config, Context};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let events: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000.0);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let config = Config::from_lookup(|name| (name == "DATA_DIR").then(|| data.clone())).unwrap();
    // Four services over a day (the models see the daily cycle), at the rate that makes `events` a day; each
    // file is cut to exactly `events` lines.
    let hours = 24.0;
    let rate = events / (4.0 * 86_400.0) * 1.02;
    let start = 1_780_000_000.0;
    let training = dir.path().join("training.ndjson");
    let live = dir.path().join("live.ndjson");
    let made = Instant::now();
    let first = GenerateOptions {
        hours,
        rate,
        start: Some(start),
        incidents: false,
        ..GenerateOptions::default()
    };
    let a = generate::generate(&config, &first, &Target::File(training.clone()))
        .await
        .unwrap();
    let second = GenerateOptions {
        hours,
        rate,
        start: Some(a.span.1),
        seed: 2,
        ..GenerateOptions::default()
    };
    let b = generate::generate(&config, &second, &Target::File(live.clone()))
        .await
        .unwrap();
    for file in [&training, &live] {
        cut(file, events as usize);
    }
    say(format!(
        "generated {} + {} events in {:.1} s",
        a.events.min(events as u64),
        b.events.min(events as u64),
        made.elapsed().as_secs_f64()
    ));

    let ctx = Context::open(config, "bench").await.unwrap();
    let t = Instant::now();
    let trained = commands::train(&ctx, &training).await.unwrap();
    let took = t.elapsed().as_secs_f64();
    say(format!(
        "train: {} events, {} windows, {} models in {took:.2} s ({:.0} events/s)",
        trained.events,
        trained.windows,
        trained.models.len(),
        trained.events as f64 / took
    ));

    let mut telemetry = service_kit::Telemetry::new("bench");
    let shared = Shared {
        recent: Recent::default(),
        metrics: MonitorMetrics::register(&mut telemetry),
        scored_through: Default::default(),
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let report = commands::monitor(
        &ctx,
        &Source::File(live),
        Sink::Store(ctx.store.clone()),
        shared,
        MonitorOptions {
            once: true,
            keep_windows: false,
        },
        rx,
    )
    .await
    .unwrap();
    let took = t.elapsed().as_secs_f64();
    say(format!(
        "monitor: {} events, {} windows, {} anomalies, {} alerts in {took:.2} s ({:.0} events/s)",
        report.events,
        report.windows,
        report.anomalies,
        report.alerts,
        report.events as f64 / took
    ));
}

/// Keeps the first `lines` lines of `file`.
fn cut(file: &std::path::Path, lines: usize) {
    let text = std::fs::read(file).unwrap();
    let end = text
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines - 1)
        .map_or(text.len(), |(i, _)| i + 1);
    std::fs::write(file, &text[..end]).unwrap();
}

#[allow(clippy::print_stdout)]
fn say(line: String) {
    println!("{line}");
}
