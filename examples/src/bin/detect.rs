#![allow(clippy::print_stdout, clippy::print_stderr)]
//! `detect`: finds the most anomalous rows of a table with `anomaly_core`'s isolation forest and explains them.
//!
//! Without arguments it runs on the bundled, labelled ADBench "cardio" sample. Errors are one line on stderr,
//! exit status 2.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anomaly_core::{Contamination, IsolationForestParams, MaxSamples};
use anomaly_examples::args::{parse_contamination, parse_sample_size};
use anomaly_examples::input::display_name;
use anomaly_examples::{
    Dataset, DetectError, Report, bundled, read_input, read_labels, roc_auc, top_rows,
};
use clap::Parser;

/// Finds the most anomalous rows of a table with an isolation forest and explains each one.
///
/// Without --input, runs on the bundled ADBench "cardio" sample (1831 cardiotocograms, 176 labelled anomalous).
/// Rows are numbered from 1 everywhere, counting data rows only (a CSV header is not counted). On an error, prints
/// one line naming the file, row and column to stderr and exits with status 2.
#[derive(Debug, Parser)]
#[command(name = "detect", version)]
struct Cli {
    /// Table to scan: a .csv file with a header row and numeric columns, or a .npy file holding a 2-D float64
    /// array (rows × features). Default: the bundled "cardio" sample and its labels.
    #[arg(long, value_name = "PATH")]
    input: Option<PathBuf>,
    /// Labels, one 0 or 1 (1 = anomaly) per line and per input row; adds ROC-AUC to the summary.
    #[arg(long, value_name = "PATH")]
    labels: Option<PathBuf>,
    /// Write one score per input row to this file, one per line, in row order (higher = more anomalous).
    #[arg(long, value_name = "PATH")]
    scores: Option<PathBuf>,
    /// Number of trees.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    trees: u32,
    /// Rows each tree is grown on: `auto` = min(256, rows), or a number (at least 2).
    #[arg(long, value_name = "N", default_value = "auto", value_parser = parse_sample_size)]
    sample_size: MaxSamples,
    /// Expected share of anomalies, which sets the threshold: `auto` (score 0.5) or a fraction in (0, 0.5].
    #[arg(long, value_name = "auto|F", default_value = "auto", value_parser = parse_contamination, allow_negative_numbers = true)]
    contamination: Contamination,
    /// Seed of every random draw; the same seed gives the same scores, whatever the number of threads.
    #[arg(long, value_name = "N", default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    threads: Option<u32>,
    /// How many of the highest-scoring rows to list and explain.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
    /// Write a JSON summary here: n_samples, n_features, fit_seconds, score_seconds, threshold, n_anomalies, and
    /// roc_auc when labels are known. Times exclude reading and writing files.
    #[arg(long, value_name = "PATH")]
    report: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // clap's first line says what is wrong; the rest is a usage reminder. Keep errors to one line.
            let message = e.to_string();
            let first = message
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: invalid arguments");
            eprintln!("{} (see --help)", first.trim_end());
            return ExitCode::from(2);
        }
    };
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.one_line());
            ExitCode::from(2)
        }
    }
}

/// The data, its labels if known, and a one-line description of where they came from.
fn load(cli: &Cli) -> Result<(Dataset, Option<Vec<bool>>, String), DetectError> {
    let (data, origin) = match &cli.input {
        Some(path) => {
            let data = read_input(path)?;
            let origin = data.file.clone();
            (data, origin)
        }
        None => (
            bundled::cardio()?,
            "bundled ADBench \"cardio\" sample (examples/data/cardio, BSD-2-Clause)".to_string(),
        ),
    };
    let labels = match (&cli.labels, &cli.input) {
        (Some(path), _) => Some(read_labels(path, &data)?),
        (None, None) => Some(bundled::cardio_labels(&data)?),
        (None, Some(_)) => None,
    };
    Ok((data, labels, origin))
}

fn run(cli: &Cli) -> Result<(), DetectError> {
    let (data, labels, origin) = load(cli)?;
    let params = IsolationForestParams::new()
        .n_estimators(cli.trees as usize)
        .max_samples(cli.sample_size)
        .contamination(cli.contamination)
        .seed(cli.seed)
        .n_threads(cli.threads.map(|t| t as usize))
        .feature_names(data.named.then(|| data.names.clone()));

    let start = Instant::now();
    let model = params.fit(data.x.view()).map_err(|e| data.describe(e))?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let scores = model.score(data.x.view()).map_err(|e| data.describe(e))?;
    let score_seconds = start.elapsed().as_secs_f64();
    let scores = scores.to_vec();

    let threshold = model.threshold();
    let n_anomalies = scores.iter().filter(|&&s| s > threshold).count();
    let auc = labels.as_deref().map(|l| roc_auc(&scores, l));
    let top = top_rows(&scores, cli.top);

    let mut text = String::new();
    let _ = writeln!(
        text,
        "Data:  {origin}: {} rows × {} features{}",
        data.n_samples(),
        data.n_features(),
        match &labels {
            Some(l) => format!(", {} labelled anomalies", l.iter().filter(|&&a| a).count()),
            None => String::new(),
        }
    );
    let _ = writeln!(
        text,
        "Model: isolation forest, {} trees, {} rows per tree, contamination {}, seed {}",
        model.n_estimators(),
        model.max_samples(),
        match cli.contamination {
            Contamination::Fraction(f) => f.to_string(),
            _ => "auto".to_string(),
        },
        cli.seed
    );
    let _ = writeln!(
        text,
        "\nTop {} rows by anomaly score (rows numbered from 1, header not counted):",
        top.len()
    );
    for (rank, &i) in top.iter().enumerate() {
        let row = data.x.row(i).to_vec();
        let explanation = model.explain_row(&row).map_err(|e| data.describe(e))?;
        let label = match labels.as_deref() {
            Some(l) if l[i] => "   labelled anomaly",
            Some(_) => "   labelled normal",
            None => "",
        };
        let _ = writeln!(
            text,
            "{:>3}. row {:<6} score {:.4}{label}\n     {}",
            rank + 1,
            i + 1,
            scores[i],
            explanation.rationale
        );
    }
    let _ = writeln!(text, "\nSummary:");
    let _ = writeln!(text, "  n_samples   {}", data.n_samples());
    let _ = writeln!(text, "  n_features  {}", data.n_features());
    let _ = writeln!(text, "  threshold   {threshold:.4}");
    let _ = writeln!(
        text,
        "  flagged     {n_anomalies} rows score above the threshold"
    );
    match (&labels, auc) {
        (Some(l), Some(auc)) => {
            let hits = top.iter().filter(|&&i| l[i]).count();
            let _ = writeln!(
                text,
                "  top {:<7} {hits} of {} are labelled anomalies",
                top.len(),
                top.len()
            );
            let _ = match auc {
                Some(a) => writeln!(text, "  ROC-AUC     {a:.4}"),
                None => writeln!(
                    text,
                    "  ROC-AUC     undefined (the labels hold only one class)"
                ),
            };
        }
        _ => {
            let _ = writeln!(text, "  labels      none (pass --labels for ROC-AUC)");
        }
    }
    let _ = writeln!(
        text,
        "  time        fit {:.1} ms, score {:.1} ms (file reading and writing excluded)",
        fit_seconds * 1e3,
        score_seconds * 1e3
    );

    if let Some(path) = &cli.scores {
        let mut out = String::with_capacity(scores.len() * 20);
        for s in &scores {
            let _ = writeln!(out, "{s}");
        }
        write_file(path, &out)?;
    }
    if let Some(path) = &cli.report {
        let report = Report {
            n_samples: data.n_samples(),
            n_features: data.n_features(),
            fit_seconds,
            score_seconds,
            threshold,
            n_anomalies,
            roc_auc: auc,
        };
        write_file(path, &(report.to_json() + "\n"))?;
    }

    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`detect | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(DetectError::Write {
            file: "stdout".into(),
            reason: e.to_string(),
        }),
        _ => Ok(()),
    }
}

fn write_file(path: &Path, contents: &str) -> Result<(), DetectError> {
    std::fs::write(path, contents).map_err(|e| DetectError::Write {
        file: display_name(path),
        reason: e.to_string(),
    })
}
