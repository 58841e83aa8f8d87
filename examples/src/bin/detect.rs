#![allow(clippy::print_stdout, clippy::print_stderr)]
//! `detect`: finds the most anomalous rows of a table with `anomaly_core`'s isolation forest and explains them.
//!
//! Without arguments it runs on the bundled, labelled ADBench "cardio" sample. Errors are one line on stderr,
//! exit status 2.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anomaly_core::records::role::{FieldRole, FieldRoles};
use anomaly_core::table::{TableFormat, TableOptions};
use anomaly_core::{Contamination, IsolationForestParams, MaxSamples};
use anomaly_examples::args::{
    parse_column_role, parse_contamination, parse_delimiter, parse_output_format,
    parse_sample_size, parse_train_rows,
};
use anomaly_examples::input::{display_name, parse_labels_for, read_file};
use anomaly_examples::output::{OutputFormat, RowWriter};
use anomaly_examples::scan::{DEFAULT_TRAIN_ROWS, ScanOptions, TableModel, Trained, kind_name};
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
    /// Table to scan: CSV (.csv, .tsv, .txt: a header row, the delimiter sniffed), JSON lines (.jsonl, .ndjson),
    /// Parquet (.parquet), or a .npy file holding a 2-D float64 array (rows × features). Columns may hold numbers,
    /// booleans, dates and times, categories, identifiers, free text and blanks: each column's role is inferred and
    /// printed before scoring. Default: the bundled "cardio" sample and its labels.
    #[arg(long, value_name = "PATH")]
    input: Option<PathBuf>,
    /// The input's format when its extension does not say: csv, jsonl or parquet.
    #[arg(long, value_name = "FORMAT")]
    format: Option<TableFormat>,
    /// The CSV delimiter (one character, or `tab`); sniffed from the first lines by default.
    #[arg(long, value_name = "CHAR", value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// Pins a column's role, overriding the inferred one (repeatable): measurement, category, timestamp,
    /// identifier, text or ignore. Nested JSON fields are named by dotted paths (`customer.age=identifier`).
    #[arg(long = "column", value_name = "NAME=ROLE", value_parser = parse_column_role)]
    columns: Vec<(String, FieldRole)>,
    /// Stop at the first cell that does not parse as its column's type (by default such cells are counted as
    /// missing values and reported in the summary).
    #[arg(long)]
    strict: bool,
    /// Most rows kept in memory to learn from (default 200000, and at most 4 million values counted from the first
    /// row, but never fewer than 1000 rows): a longer table is
    /// learnt from a uniform random sample of that many rows, then scored in full, block by block. A table that
    /// fits is learnt from every row.
    #[arg(long, value_name = "N", value_parser = parse_train_rows)]
    train_rows: Option<usize>,
    /// No progress bars (they are shown on a terminal only).
    #[arg(long)]
    quiet: bool,
    /// Labels, one 0 or 1 (1 = anomaly) per line and per input row; adds ROC-AUC to the summary.
    #[arg(long, value_name = "PATH")]
    labels: Option<PathBuf>,
    /// Write one score per input row to this file, one per line, in row order (higher = more anomalous).
    #[arg(long, value_name = "PATH")]
    scores: Option<PathBuf>,
    /// Write one line per input row: the identifier columns (or `row`, from 1), `score`, `is_anomaly`, and
    /// `explanation` for the anomalies. CSV, or JSON lines for a .jsonl/.ndjson/.json file or `--output-format
    /// jsonl`.
    #[arg(long, value_name = "PATH")]
    output: Option<PathBuf>,
    /// The format of --output: csv or jsonl (default: by its extension).
    #[arg(long, value_name = "csv|jsonl", value_parser = parse_output_format)]
    output_format: Option<OutputFormat>,
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

fn forest_params(cli: &Cli) -> IsolationForestParams {
    IsolationForestParams::new()
        .n_estimators(cli.trees as usize)
        .max_samples(cli.sample_size)
        .contamination(cli.contamination)
        .seed(cli.seed)
        .n_threads(cli.threads.map(|t| t as usize))
}

fn run(cli: &Cli) -> Result<(), DetectError> {
    if cli.output_format.is_some() && cli.output.is_none() {
        return Err(DetectError::Parameter {
            flag: "--output-format".into(),
            reason: "needs --output".into(),
        });
    }
    let table = cli.input.as_deref().filter(|p| {
        cli.format.is_some() || !p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    });
    match table {
        Some(path) => run_table(cli, path),
        None => {
            for (set, flag) in [
                (!cli.columns.is_empty(), "--column"),
                (cli.delimiter.is_some(), "--delimiter"),
                (cli.strict, "--strict"),
                (cli.train_rows.is_some(), "--train-rows"),
            ] {
                if set {
                    return Err(DetectError::Parameter {
                        flag: flag.into(),
                        reason: "applies to CSV, JSON lines and Parquet input, not to .npy files or the bundled sample"
                            .into(),
                    });
                }
            }
            run_dataset(cli)
        }
    }
}

/// A numeric matrix in memory: a `.npy` file or the bundled sample.
fn run_dataset(cli: &Cli) -> Result<(), DetectError> {
    let (data, labels, origin) = load(cli)?;
    let params = forest_params(cli).feature_names(data.named.then(|| data.names.clone()));

    let start = Instant::now();
    let model = params.fit(data.x.view()).map_err(|e| data.describe(e))?;
    let fit_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let scores = model.score(data.x.view()).map_err(|e| data.describe(e))?;
    let score_seconds = start.elapsed().as_secs_f64();
    let scores = scores.to_vec();

    let threshold = model.threshold();
    let n_anomalies = scores.iter().filter(|&&s| s > threshold).count();
    let top = top_rows(&scores, cli.top);

    let mut text = String::new();
    let _ = writeln!(
        text,
        "Data:  {origin}: {} rows × {} features{}",
        data.n_samples(),
        data.n_features(),
        labelled(labels.as_deref())
    );
    model_line(&mut text, cli, &model);
    let mut entries = Vec::with_capacity(top.len());
    for &i in &top {
        let row = data.x.row(i).to_vec();
        let explanation = model.explain_row(&row).map_err(|e| data.describe(e))?;
        entries.push((i, scores[i], explanation.rationale));
    }
    top_section(&mut text, &entries, labels.as_deref());
    let summary = Summary {
        n_samples: data.n_samples(),
        n_features: data.n_features(),
        threshold,
        n_anomalies,
        scores: Some(&scores),
        top: &top,
        labels: labels.as_deref(),
        fit_seconds,
        score_seconds,
        schema_seconds: None,
        contamination_auto: cli.contamination == Contamination::Auto,
    };
    let auc = summary.write(&mut text);

    if let Some(path) = &cli.scores {
        let mut out = String::with_capacity(scores.len() * 20);
        for s in &scores {
            let _ = writeln!(out, "{s}");
        }
        write_file(path, &out)?;
    }
    if let Some(path) = &cli.output {
        let mut w = RowWriter::create(path, output_format(cli, path), Vec::new())?;
        for (i, &s) in scores.iter().enumerate() {
            let flagged = s > threshold;
            let why = if flagged {
                let row = data.x.row(i).to_vec();
                Some(
                    model
                        .explain_row(&row)
                        .map_err(|e| data.describe(e))?
                        .rationale,
                )
            } else {
                None
            };
            w.write(i + 1, None, s, flagged, why.as_deref())?;
        }
        w.finish()?;
    }
    write_report(cli, &summary, auc)?;
    print(&text)
}

/// A CSV, JSON lines or Parquet file, read twice at most and scored block by block.
fn run_table(cli: &Cli, path: &Path) -> Result<(), DetectError> {
    let roles: FieldRoles = cli.columns.iter().cloned().collect();
    let options = ScanOptions {
        table: TableOptions {
            format: cli.format,
            delimiter: cli.delimiter,
        },
        roles,
        forest: forest_params(cli),
        train_rows: cli.train_rows.unwrap_or(DEFAULT_TRAIN_ROWS),
        seed: cli.seed,
        strict: cli.strict,
        progress: !cli.quiet,
        threads: cli.threads.map(|t| t as usize),
    };
    let trained = Trained::fit(path, &options)?;
    let labels = match &cli.labels {
        Some(l) => Some(parse_labels_for(
            &display_name(l),
            &read_file(l)?,
            trained.n_rows,
            &trained.file,
        )?),
        None => None,
    };
    for (name, _) in &cli.columns {
        if !trained.columns.iter().any(|c| &c.name == name) {
            return Err(DetectError::Parameter {
                flag: "--column".into(),
                reason: format!(
                    "{} has no column {name:?} in the rows learnt from (columns: {})",
                    trained.file,
                    trained
                        .columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }

    // What each column is for, before the (possibly long) scoring.
    let mut head = String::new();
    let n_columns = trained.columns.len();
    let _ = writeln!(
        head,
        "Data:  {}: {} rows × {} columns{}",
        trained.file,
        trained.n_rows,
        n_columns,
        labelled(labels.as_deref())
    );
    let all_measured = trained
        .columns
        .iter()
        .all(|c| c.role == FieldRole::Measurement);
    match &trained.model {
        TableModel::Numeric { .. } if all_measured => {
            let _ = writeln!(
                head,
                "Columns: all {n_columns} hold numbers only: scored as they are"
            );
        }
        _ => {
            let _ = writeln!(
                head,
                "Columns (role, and why; override with --column NAME=ROLE):"
            );
            let width = trained
                .columns
                .iter()
                .map(|c| c.name.chars().count())
                .max()
                .unwrap_or(0)
                .min(40);
            for c in &trained.columns {
                let _ = writeln!(
                    head,
                    "  {:<width$}  {:<11}  {}",
                    c.name,
                    c.role.as_str(),
                    c.rule
                );
            }
        }
    }
    if trained.left_out > 0 {
        let _ = writeln!(
            head,
            "  ({} more fields left out: the schema holds the most frequent ones within its column cap)",
            trained.left_out
        );
    }
    if trained.trained_on < trained.n_rows {
        let _ = writeln!(
            head,
            "Learnt from a uniform sample of {} rows (--train-rows), then every row scored",
            trained.trained_on
        );
    }
    model_line(&mut head, cli, trained.model.forest());
    print(&head)?;

    let threshold = trained.model.threshold();
    let mut scores_out = match &cli.scores {
        Some(p) => Some((
            display_name(p),
            BufWriter::new(File::create(p).map_err(|e| DetectError::Write {
                file: display_name(p),
                reason: e.to_string(),
            })?),
        )),
        None => None,
    };
    let mut rows_out = match &cli.output {
        Some(p) => Some(RowWriter::create(
            p,
            output_format(cli, p),
            trained.model.identifiers(),
        )?),
        None => None,
    };
    let mut sink = |r: anomaly_examples::scan::ScoredRow<'_>| -> Result<(), DetectError> {
        if let Some((file, w)) = &mut scores_out {
            writeln!(w, "{}", r.score).map_err(|e| DetectError::Write {
                file: file.clone(),
                reason: e.to_string(),
            })?;
        }
        if let Some(w) = &mut rows_out {
            let why = if r.is_anomaly {
                Some(
                    trained
                        .model
                        .explain(r.record)
                        .map_err(|e| DetectError::Model {
                            file: trained.file.clone(),
                            source: e,
                        })?,
                )
            } else {
                None
            };
            w.write(
                r.index + 1,
                Some(r.record),
                r.score,
                r.is_anomaly,
                why.as_deref(),
            )?;
        }
        Ok(())
    };
    let scored = trained.score(cli.top, labels.is_some(), &mut sink)?;
    if let Some((file, mut w)) = scores_out {
        w.flush().map_err(|e| DetectError::Write {
            file,
            reason: e.to_string(),
        })?;
    }
    if let Some(w) = rows_out {
        w.finish()?;
    }

    let mut text = String::new();
    let mut entries = Vec::with_capacity(scored.top.len());
    for (i, score, record) in &scored.top {
        let why = trained
            .model
            .explain(record)
            .map_err(|e| DetectError::Model {
                file: trained.file.clone(),
                source: e,
            })?;
        entries.push((*i, *score, why));
    }
    top_section(&mut text, &entries, labels.as_deref());
    let top: Vec<usize> = scored.top.iter().map(|t| t.0).collect();
    let summary = Summary {
        n_samples: scored.n_rows,
        n_features: trained.model.forest().n_features(),
        threshold,
        n_anomalies: scored.n_anomalies,
        scores: scored.scores.as_deref(),
        top: &top,
        labels: labels.as_deref(),
        fit_seconds: trained.fit_seconds,
        score_seconds: scored.score_seconds,
        schema_seconds: Some(trained.schema_seconds),
        contamination_auto: cli.contamination == Contamination::Auto,
    };
    let auc = summary.write(&mut text);
    if scored.bad_cells > 0 {
        let _ = writeln!(
            text,
            "  bad cells   {} did not parse as their column's type and count as missing values (--strict stops at the first):",
            scored.bad_cells
        );
        for b in &scored.first_bad_cells {
            let _ = writeln!(
                text,
                "              row {}, column {:?}: {} is not {}",
                b.row,
                b.column,
                b.value,
                kind_name(b.expected)
            );
        }
    }
    if scored.unseen_fields > 0 {
        let _ = writeln!(
            text,
            "  unseen      {} values in fields absent from the rows learnt from (not scored)",
            scored.unseen_fields
        );
    }
    write_report(cli, &summary, auc)?;
    print(&text)
}

/// `, N labelled anomalies` when labels are known.
fn labelled(labels: Option<&[bool]>) -> String {
    match labels {
        Some(l) => format!(", {} labelled anomalies", l.iter().filter(|&&a| a).count()),
        None => String::new(),
    }
}

fn model_line(text: &mut String, cli: &Cli, model: &anomaly_core::IsolationForest) {
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
}

/// The top rows, each `(index, score, rationale)`.
fn top_section(text: &mut String, entries: &[(usize, f64, String)], labels: Option<&[bool]>) {
    let _ = writeln!(
        text,
        "\nTop {} rows by anomaly score (rows numbered from 1, header not counted):",
        entries.len()
    );
    for (rank, (i, score, rationale)) in entries.iter().enumerate() {
        let label = match labels {
            Some(l) if l[*i] => "   labelled anomaly",
            Some(_) => "   labelled normal",
            None => "",
        };
        let _ = writeln!(
            text,
            "{:>3}. row {:<6} score {:.4}{label}\n     {}",
            rank + 1,
            i + 1,
            score,
            rationale
        );
    }
}

/// The summary's figures.
struct Summary<'a> {
    n_samples: usize,
    n_features: usize,
    threshold: f64,
    n_anomalies: usize,
    scores: Option<&'a [f64]>,
    top: &'a [usize],
    labels: Option<&'a [bool]>,
    fit_seconds: f64,
    score_seconds: f64,
    /// Learning the columns' roles, for tables.
    schema_seconds: Option<f64>,
    contamination_auto: bool,
}

impl Summary<'_> {
    /// Writes the summary; the ROC-AUC when labels are known (`Some(None)` for labels of one class).
    fn write(&self, text: &mut String) -> Option<Option<f64>> {
        let auc = match (self.labels, self.scores) {
            (Some(l), Some(s)) => Some(roc_auc(s, l)),
            _ => None,
        };
        let _ = writeln!(text, "\nSummary:");
        let _ = writeln!(text, "  n_samples   {}", self.n_samples);
        let _ = writeln!(text, "  n_features  {}", self.n_features);
        let _ = writeln!(text, "  threshold   {:.4}", self.threshold);
        let _ = writeln!(
            text,
            "  flagged     {} rows score above the threshold",
            self.n_anomalies
        );
        if self.n_anomalies * 2 > self.n_samples && self.contamination_auto {
            let _ = writeln!(
                text,
                "              (most rows score above 0.5, the default threshold: --contamination 0.01 flags the top 1 %)"
            );
        }
        match (self.labels, auc) {
            (Some(l), Some(auc)) => {
                let hits = self.top.iter().filter(|&&i| l[i]).count();
                let _ = writeln!(
                    text,
                    "  top {:<7} {hits} of {} are labelled anomalies",
                    self.top.len(),
                    self.top.len()
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
        let roles = match self.schema_seconds {
            Some(s) => format!("column roles {:.1} ms, ", s * 1e3),
            None => String::new(),
        };
        let _ = writeln!(
            text,
            "  time        {roles}fit {:.1} ms, score {:.1} ms (file reading and writing excluded)",
            self.fit_seconds * 1e3,
            self.score_seconds * 1e3
        );
        auc
    }
}

fn write_report(cli: &Cli, s: &Summary<'_>, auc: Option<Option<f64>>) -> Result<(), DetectError> {
    if let Some(path) = &cli.report {
        let report = Report {
            n_samples: s.n_samples,
            n_features: s.n_features,
            fit_seconds: s.fit_seconds,
            score_seconds: s.score_seconds,
            threshold: s.threshold,
            n_anomalies: s.n_anomalies,
            roc_auc: auc,
        };
        write_file(path, &(report.to_json() + "\n"))?;
    }
    Ok(())
}

fn output_format(cli: &Cli, path: &Path) -> OutputFormat {
    cli.output_format
        .unwrap_or_else(|| OutputFormat::for_path(path))
}

fn print(text: &str) -> Result<(), DetectError> {
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
