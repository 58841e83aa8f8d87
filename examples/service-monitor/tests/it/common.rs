//! What the tests share: configurations, generated traffic written to files, and running the commands in-process.

use std::path::{Path, PathBuf};

use anomaly_core::synth::Incident;
use service_monitor::anomalies::{Recent, Sink};
use service_monitor::commands::{self, MonitorOptions, MonitorReport, Shared};
use service_monitor::generate::{self, GenerateOptions, Target};
use service_monitor::metrics::MonitorMetrics;
use service_monitor::source::Source;
use service_monitor::{Config, Context};

/// A configuration from `vars` over the defaults, with its data in `dir`.
pub(crate) fn config(dir: &Path, vars: &[(&str, &str)]) -> Config {
    let mut all: Vec<(String, String)> = vec![("DATA_DIR".into(), dir.display().to_string())];
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_lookup(move |name| {
        all.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap()
}

/// Labelled traffic as the demo makes it: `train_hours` quiet, then `live_hours` with the incident plan, written
/// to `<dir>/traffic.ndjson`; the training part is collected to `<dir>/training.ndjson`.
pub(crate) struct Traffic {
    /// All of it.
    pub(crate) file: PathBuf,
    /// The training part.
    pub(crate) training: PathBuf,
    /// The incidents.
    pub(crate) incidents: Vec<Incident>,
    /// Where training ends, epoch seconds.
    pub(crate) training_end: f64,
}

pub(crate) async fn traffic(
    config: &Config,
    dir: &Path,
    seed: u64,
    train_hours: f64,
    live_hours: f64,
) -> Traffic {
    let options = GenerateOptions {
        hours: train_hours + live_hours,
        rate: 2.0,
        quiet_hours: train_hours,
        seed,
        start: Some(1_780_000_000.0 + seed as f64 * 7_919.0),
        ..GenerateOptions::default()
    };
    let file = dir.join("traffic.ndjson");
    let generated = generate::generate(config, &options, &Target::File(file.clone()))
        .await
        .unwrap();
    let training_end = generated.span.0 + train_hours * 3600.0;
    let training = dir.join("training.ndjson");
    commands::collect(
        config,
        &Source::File(file.clone()),
        (generated.span.0, training_end),
        &training,
    )
    .await
    .unwrap();
    Traffic {
        file,
        training,
        incidents: generated.incidents,
        training_end,
    }
}

/// Shared state for a monitor run whose HTTP side is not served.
pub(crate) fn shared() -> Shared {
    let mut telemetry = service_kit::Telemetry::new("service_monitor");
    Shared {
        recent: Recent::default(),
        metrics: MonitorMetrics::register(&mut telemetry),
        scored_through: Default::default(),
    }
}

/// Trains on the traffic's training part, then monitors the whole file once, keeping the windows.
pub(crate) async fn train_and_monitor(
    ctx: &Context,
    traffic: &Traffic,
    sink: Sink,
) -> MonitorReport {
    commands::train(ctx, &traffic.training).await.unwrap();
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let options = MonitorOptions {
        once: true,
        keep_windows: true,
    };
    commands::monitor(
        ctx,
        &Source::File(traffic.file.clone()),
        sink,
        shared(),
        options,
        rx,
    )
    .await
    .unwrap()
}
