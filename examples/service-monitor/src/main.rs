//! `service-monitor`: collect API logs, train a model per service, monitor every minute, alert, write anomalies
//! back, draw charts, generate labelled traffic. Configured by environment variables (see the README); the
//! subcommands take what changes from run to run. `service-monitor all --demo` runs everything on generated
//! traffic with no cluster.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde::Serialize;
use service_kit::{Telemetry, run_service};
use service_monitor::anomalies::{Recent, Sink};
use service_monitor::commands::{self, MonitorOptions, Shared, unix_now};
use service_monitor::generate::{self, GenerateOptions, Target};
use service_monitor::metrics::MonitorMetrics;
use service_monitor::report::{self, ReportData};
use service_monitor::source::Source;
use service_monitor::{Config, Context, MonitorError};
use tokio::sync::watch;

/// Command line.
#[derive(Parser)]
#[command(
    version,
    about = "The microservice monitor over Elasticsearch API logs"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
    /// The monitor's name: its models are `<name>/<service>` in the store, its progress is kept under it.
    #[arg(long, global = true, default_value = "service-monitor")]
    name: String,
}

#[derive(Subcommand)]
enum Command {
    /// Copy the last TRAIN_LOOKBACK_HOURS of events (from ES_URL, or a file) to an NDJSON file.
    Collect {
        /// Read this NDJSON file instead of the cluster.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Where to write (default DATA_DIR/collected.ndjson).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Hours to read, back from now (default TRAIN_LOOKBACK_HOURS); from a file, the whole file unless set.
        #[arg(long)]
        hours: Option<f64>,
    },
    /// Learn a model per service from an NDJSON file (default DATA_DIR/collected.ndjson).
    Train {
        /// The events.
        #[arg(long)]
        input: Option<PathBuf>,
    },
    /// Read new events every MONITOR_INTERVAL_SECONDS, score closed windows, alert, write anomalies; serves
    /// /metrics, /health and /anomalies on PORT.
    Monitor {
        /// Read this NDJSON file (and what is appended to it) instead of the cluster.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Read once and exit (a file to its end, a cluster up to now).
        #[arg(long)]
        once: bool,
    },
    /// Write API traffic with labelled incidents.
    Generate(GenerateArgs),
    /// PNG charts per service, an overview and a Markdown summary.
    Report {
        /// Read this NDJSON file instead of the cluster.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Hours back from the newest event (default: the whole file; from a cluster TRAIN_LOOKBACK_HOURS).
        #[arg(long)]
        hours: Option<f64>,
        /// Incident labels (`generate` writes them beside its file) to shade in the charts.
        #[arg(long)]
        labels: Option<PathBuf>,
        /// Directory (default DATA_DIR/report).
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Generate (with --demo), collect, train and monitor.
    All {
        /// No cluster: generate 30 hours of traffic with incidents in the last 6 into DATA_DIR/demo, train on
        /// the first 24, monitor the rest once, and write the report.
        #[arg(long)]
        demo: bool,
        /// Read this NDJSON file instead of the cluster.
        #[arg(long)]
        input: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// NDJSON file to write (default DATA_DIR/generated.ndjson); labels go beside it.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Write into the cluster at ES_URL (index ES_INDEX with `*` as the day) instead of a file.
    #[arg(long)]
    elasticsearch: bool,
    /// Hours of traffic.
    #[arg(long, default_value_t = 6.0)]
    hours: f64,
    /// Requests per second per service (daily mean).
    #[arg(long, default_value_t = 5.0)]
    rate: f64,
    /// Services, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "api,auth,billing,search")]
    services: Vec<String>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// No incidents.
    #[arg(long)]
    no_incidents: bool,
    /// Incidents only after this many hours.
    #[arg(long, default_value_t = 0.0)]
    quiet_hours: f64,
    /// Start (RFC 3339; default: `hours` before now, or now with --realtime).
    #[arg(long)]
    start: Option<String>,
    /// Write each event when its time comes instead of as fast as possible.
    #[arg(long)]
    realtime: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Monitor { input, once: false } => serve_monitor(args.name, input),
        command => run_once(&args.name, command),
    }
}

/// `monitor` without `--once`: the service, with its HTTP routes, until SIGTERM.
fn serve_monitor(name: String, input: Option<PathBuf>) -> ExitCode {
    run_service(
        "service-monitor",
        || {
            let config = Config::from_env()?;
            config.check_exposure()?;
            let settings = config.serve.clone();
            Ok::<_, MonitorError>((config, settings))
        },
        |config, listener| async move {
            let ctx = Context::open(config, &name).await?;
            let source = Source::open(&ctx.config, input.as_deref()).await?;
            let sink = sink_for(&ctx, &source);
            let mut telemetry = Telemetry::new("service_monitor");
            let shared = Shared {
                recent: Recent::default(),
                metrics: MonitorMetrics::register(&mut telemetry),
                scored_through: Arc::default(),
            };
            let app = service_kit::app(
                service_monitor::http::routes(shared.clone()),
                &ctx.config.serve,
                ctx.config.auth(),
                Arc::new(telemetry),
            );
            let (stop_tx, stop_rx) = watch::channel(false);
            let monitoring = {
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    commands::monitor(
                        &ctx,
                        &source,
                        sink,
                        shared,
                        MonitorOptions::default(),
                        stop_rx,
                    )
                    .await
                })
            };
            let settings = ctx.config.serve.clone();
            let shutdown = async move {
                service_kit::shutdown_signal().await;
                let _ = stop_tx.send(true);
            };
            let deadline = service_kit::serve(listener, app, &settings, shutdown).await;
            match deadline.run(monitoring).await {
                Some(Ok(Ok(report))) => {
                    tracing::info!(
                        windows = report.windows,
                        anomalies = report.anomalies,
                        "stopped"
                    );
                    Ok(())
                }
                Some(Ok(Err(e))) => Err(e),
                Some(Err(e)) => Err(MonitorError::Io {
                    what: "monitoring".into(),
                    source: std::io::Error::other(e),
                }),
                None => {
                    tracing::error!("the monitor did not stop within SHUTDOWN_TIMEOUT_SECONDS");
                    Ok(())
                }
            }
        },
    )
}

/// Every other command: run, print its result as JSON, exit.
fn run_once(name: &str, command: Command) -> ExitCode {
    service_kit::run_command(
        "service-monitor",
        || {
            let config = Config::from_env()?;
            let settings = config.serve.clone();
            Ok::<_, MonitorError>((config, settings))
        },
        |config| run(name, config, command),
    )
}

fn sink_for(ctx: &Context, source: &Source) -> Sink {
    match source {
        Source::Elastic { client, .. } => Sink::Elastic {
            client: client.clone(),
            index: ctx.config.anomaly_index.clone(),
        },
        Source::File(_) => Sink::Store(ctx.store.clone()),
    }
}

fn unused_shared() -> Shared {
    let mut telemetry = Telemetry::new("service_monitor");
    Shared {
        recent: Recent::default(),
        metrics: MonitorMetrics::register(&mut telemetry),
        scored_through: Arc::default(),
    }
}

/// The outcome of a command, printed as JSON.
#[derive(Serialize)]
#[serde(untagged)]
enum Outcome {
    Collect(commands::CollectReport),
    Train(commands::TrainReport),
    Monitor(commands::MonitorReport),
    Generate(generate::Generated),
    Report(report::ReportFiles),
    All(serde_json::Value),
}

async fn run(name: &str, config: Config, command: Command) -> Result<Outcome, MonitorError> {
    let data_dir = config.data_dir.clone();
    match command {
        Command::Generate(g) => {
            let options = generate_options(&g)?;
            let target = if g.elasticsearch {
                let Source::Elastic { client, .. } = Source::open(&config, None).await? else {
                    unreachable!("no input given")
                };
                Target::Elastic(client)
            } else {
                Target::File(
                    g.output
                        .unwrap_or_else(|| data_dir.join("generated.ndjson")),
                )
            };
            Ok(Outcome::Generate(
                generate::generate(&config, &options, &target).await?,
            ))
        }
        Command::Collect {
            input,
            output,
            hours,
        } => {
            let source = Source::open(&config, input.as_deref()).await?;
            let range = collect_range(&config, &source, hours);
            let output = output.unwrap_or_else(|| data_dir.join("collected.ndjson"));
            Ok(Outcome::Collect(
                commands::collect(&config, &source, range, &output).await?,
            ))
        }
        Command::Train { input } => {
            let ctx = Context::open(config, name).await?;
            let input = input.unwrap_or_else(|| data_dir.join("collected.ndjson"));
            Ok(Outcome::Train(commands::train(&ctx, &input).await?))
        }
        Command::Monitor { input, .. } => {
            let ctx = Context::open(config, name).await?;
            let source = Source::open(&ctx.config, input.as_deref()).await?;
            let sink = sink_for(&ctx, &source);
            let options = MonitorOptions {
                once: true,
                keep_windows: false,
            };
            let (_tx, rx) = watch::channel(false);
            Ok(Outcome::Monitor(
                commands::monitor(&ctx, &source, sink, unused_shared(), options, rx).await?,
            ))
        }
        Command::Report {
            input,
            hours,
            labels,
            output,
        } => {
            let ctx = Context::open(config, name).await?;
            let source = Source::open(&ctx.config, input.as_deref()).await?;
            let sink = sink_for(&ctx, &source);
            let range = match (&source, hours) {
                (Source::File(_), None) => (f64::MIN, f64::MAX),
                (_, h) => {
                    let now = unix_now();
                    (
                        now - h.unwrap_or(ctx.config.train_lookback_hours as f64) * 3600.0,
                        now,
                    )
                }
            };
            let mut data = commands::report_data(&ctx, &source, &sink, range).await?;
            if let Some(path) = labels {
                data.incidents = read_labels(&path)?;
            }
            let dir = output.unwrap_or_else(|| data_dir.join("report"));
            Ok(Outcome::Report(report::write_report(&dir, &data)?))
        }
        Command::All { demo, input } => all(name, config, demo, input).await.map(Outcome::All),
    }
}

fn read_labels(path: &std::path::Path) -> Result<Vec<anomaly_core::synth::Incident>, MonitorError> {
    let text = std::fs::read_to_string(path).map_err(|e| MonitorError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })?;
    serde_json::from_str(&text).map_err(|e| MonitorError::BadEvent {
        place: path.display().to_string(),
        reason: format!("not a list of incidents: {e}"),
    })
}

fn collect_range(config: &Config, source: &Source, hours: Option<f64>) -> (f64, f64) {
    let now = unix_now();
    match (source, hours) {
        (Source::File(_), None) => (f64::MIN, f64::MAX),
        (_, h) => (
            now - h.unwrap_or(config.train_lookback_hours as f64) * 3600.0,
            now,
        ),
    }
}

fn generate_options(g: &GenerateArgs) -> Result<GenerateOptions, MonitorError> {
    let start = match &g.start {
        None => None,
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| MonitorError::BadEvent {
                    place: "--start".into(),
                    reason: e.to_string(),
                })?
                .timestamp() as f64,
        ),
    };
    Ok(GenerateOptions {
        services: g.services.clone(),
        rate: g.rate,
        hours: g.hours,
        start,
        seed: g.seed,
        incidents: !g.no_incidents,
        quiet_hours: g.quiet_hours,
        realtime: g.realtime,
    })
}

/// `all`: with `--demo`, generate → collect the first 24 h → train → monitor the rest → report; otherwise
/// collect → train → monitor (as a service, until SIGTERM) from the cluster or `--input`.
async fn all(
    name: &str,
    config: Config,
    demo: bool,
    input: Option<PathBuf>,
) -> Result<serde_json::Value, MonitorError> {
    let data_dir = config.data_dir.clone();
    if !demo {
        let source = Source::open(&config, input.as_deref()).await?;
        let range = collect_range(&config, &source, None);
        let collected =
            commands::collect(&config, &source, range, &data_dir.join("collected.ndjson")).await?;
        let ctx = Context::open(config, name).await?;
        let trained = commands::train(&ctx, &collected.output).await?;
        let sink = sink_for(&ctx, &source);
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            service_kit::shutdown_signal().await;
            let _ = stop_tx.send(true);
        });
        let monitored = commands::monitor(
            &ctx,
            &source,
            sink,
            unused_shared(),
            MonitorOptions::default(),
            stop_rx,
        )
        .await?;
        return Ok(
            serde_json::json!({"collect": collected, "train": trained, "monitor": monitored}),
        );
    }
    let demo_dir = data_dir.join("demo");
    let traffic = demo_dir.join("traffic.ndjson");
    let options = GenerateOptions {
        hours: 30.0,
        rate: 2.0,
        quiet_hours: 24.0,
        ..GenerateOptions::default()
    };
    tracing::info!(file = %traffic.display(), "demo: generating 30 hours of traffic, incidents in the last 6");
    let generated = generate::generate(&config, &options, &Target::File(traffic.clone())).await?;
    let (start, end) = generated.span;
    let width = config.window_seconds as f64;
    let training_end = ((start + 24.0 * 3600.0) / width).floor() * width;
    let source = Source::File(traffic.clone());
    let collected = commands::collect(
        &config,
        &source,
        (start, training_end),
        &demo_dir.join("collected.ndjson"),
    )
    .await?;
    // The demo keeps its own store, new each time: never a database DATABASE_URL names.
    let mut config = config;
    config.database_url = format!("sqlite://{}/demo.db?mode=rwc", demo_dir.display());
    for file in ["demo.db", "demo.db-wal", "demo.db-shm"] {
        let path = demo_dir.join(file);
        if path.exists() {
            std::fs::remove_file(&path).map_err(|e| MonitorError::Io {
                what: format!("removing {}", path.display()),
                source: e,
            })?;
        }
    }
    let ctx = Context::open(config, name).await?;
    tracing::info!("demo: training a model per service on the first 24 hours");
    let trained = commands::train(&ctx, &collected.output).await?;
    tracing::info!("demo: monitoring the last 6 hours");
    let (_tx, rx) = watch::channel(false);
    let options = MonitorOptions {
        once: true,
        keep_windows: true,
    };
    let sink = Sink::Store(ctx.store.clone());
    let monitored =
        commands::monitor(&ctx, &source, sink.clone(), unused_shared(), options, rx).await?;
    let mut data: ReportData =
        commands::report_data(&ctx, &source, &sink, (training_end, end)).await?;
    data.incidents = generated.incidents.clone();
    let files = report::write_report(&demo_dir.join("report"), &data)?;
    let caught = generated
        .incidents
        .iter()
        .map(|i| {
            let flagged = data.marks.iter().any(|m| {
                m.service == i.service() && m.window_start < i.end() && m.window_start + data.window_seconds > i.start()
            });
            serde_json::json!({"service": i.service(), "kind": i.kind().as_str(), "flagged": flagged})
        })
        .collect::<Vec<_>>();
    Ok(serde_json::json!({
        "generate": {"events": generated.events, "file": generated.target},
        "collect": collected,
        "train": trained,
        "monitor": monitored,
        "incidents": caught,
        "report": files,
    }))
}
