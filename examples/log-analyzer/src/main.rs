//! `log-analyzer`: the log-line anomaly service on `127.0.0.1:5000` by default (`serve`, the default command),
//! and its batch modes: `train FILE` warms the saved state from existing logs, `score [FILE]` prints one JSON
//! answer per line (standard input when FILE is `-` or absent). Configured by environment variables (see the
//! README). SIGTERM or SIGINT stops the service gracefully (exit 0).

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use log_analyzer::metrics::Metrics;
use log_analyzer::{AnalyzerError, Config, LogRequest};
use serde_json::{Value, json};

/// Command line.
#[derive(Parser)]
#[command(version, about = "The log-line anomaly service")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serves HTTP (the default).
    Serve,
    /// Learns every line of FILE (`-`: standard input) and saves the state.
    Train {
        /// The log file.
        file: String,
    },
    /// Prints one JSON answer per line of FILE (`-` or absent: standard input); lines are learned as they are
    /// scored, in memory only.
    Score {
        /// The log file.
        file: Option<String>,
        /// Score against the saved state without learning the lines.
        #[arg(long)]
        no_learn: bool,
    },
}

/// Lines handed to the detector at a time.
const CHUNK: usize = 1_000;

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command.unwrap_or(Command::Serve) {
        Command::Serve => service_kit::run_service(
            "log-analyzer",
            || {
                let config = Config::from_env()?;
                config.check_exposure()?;
                let settings = config.serve.clone();
                Ok::<_, AnalyzerError>((config, settings))
            },
            |config, listener| {
                log_analyzer::serve(config, listener, service_kit::shutdown_signal())
            },
        ),
        Command::Train { file } => batch("train", &file, true, true),
        Command::Score { file, no_learn } => {
            batch("score", file.as_deref().unwrap_or("-"), !no_learn, false)
        }
    }
}

/// Runs `train` or `score` over `file`.
fn batch(command: &str, file: &str, learn: bool, save: bool) -> ExitCode {
    #[allow(clippy::print_stderr)]
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("log-analyzer {command}: {e}");
        ExitCode::from(1)
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => return fail(&format!("{file}: {e}")),
        }
    };
    match runtime.block_on(run_batch(&config, reader, learn, save)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

async fn run_batch(
    config: &Config,
    mut reader: Box<dyn BufRead>,
    learn: bool,
    save: bool,
) -> Result<(), AnalyzerError> {
    let io = |e: std::io::Error| AnalyzerError::Io {
        what: "reading the log".into(),
        source: e,
    };
    let store = log_analyzer::state::open_store(config).await?;
    let analysis = log_analyzer::analysis(config, &store, Metrics::default(), false).await?;
    let started = Instant::now();
    let (mut read, mut refused, mut flagged) = (0u64, 0u64, 0u64);
    let mut out = std::io::stdout().lock();
    let mut chunk: Vec<LogRequest> = Vec::with_capacity(CHUNK);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(io)?;
        if n > 0 {
            read += 1;
            let text = String::from_utf8_lossy(&buf);
            let text = text.trim_end_matches(['\n', '\r']);
            chunk.push(LogRequest {
                log_id: json!(read),
                log_text: Value::String(text.to_string()),
                timestamp: None,
            });
        }
        if chunk.len() == CHUNK || (n == 0 && !chunk.is_empty()) {
            for answer in analysis.analyze(&chunk, learn).await {
                let line = match answer {
                    Ok(a) => {
                        flagged += u64::from(a.is_anomaly);
                        serde_json::to_string(&a)
                    }
                    Err(r) => {
                        refused += 1;
                        serde_json::to_string(&json!({"log_id": r.log_id, "error": r.error}))
                    }
                };
                if !save {
                    writeln!(out, "{}", line.unwrap_or_default()).map_err(io)?;
                }
            }
            chunk.clear();
        }
        if n == 0 {
            break;
        }
    }
    let (lines_seen, templates) = analysis.totals();
    if save {
        log_analyzer::state::save(&analysis, store.as_ref(), &config.state_key).await?;
        let summary = json!({
            "lines": read,
            "refused": refused,
            "flagged": flagged,
            "templates": templates,
            "lines_seen": lines_seen,
            "seconds": started.elapsed().as_secs_f64(),
            "state_key": config.state_key,
        });
        writeln!(out, "{summary}").map_err(io)?;
    }
    Ok(())
}
