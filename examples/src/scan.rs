//! Scanning a table file (CSV, JSON lines, Parquet) in two steps: [`Trained::fit`] reads the file once, keeping a
//! uniform sample of at most `train_rows` rows, learns each column's role and fits the model; [`Trained::score`]
//! scores every row in blocks of [`BLOCK_ROWS`], reading the file a second time when it did not fit in the sample.
//! Memory stays bounded by the sample, a block, and the top rows kept for the report, whatever the file's length
//! (plus one score per row when labels ask for ROC-AUC).
//!
//! A table whose sample holds numbers only (see [`TableEncoding`]: every cell of its scored columns a number,
//! identifiers aside) is scored as the numeric matrix it is, column by column, as `.npy` files are: when the whole
//! table fits in the sample, the same scores as the CSV reader of earlier versions, bit for bit, with or without
//! identifier columns; rows read later with a blank or text where a number belongs take the column's training
//! median and are reported as bad cells. Any other table goes through the record engine's model
//! ([`RecordModel`]): categories are hashed, dates give hour and weekday features, blanks are imputed with a
//! missing-value indicator, identifiers are set aside and free text is measured by its length.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anomaly_core::engine::RecordModel;
use anomaly_core::records::kind::FieldKind;
use anomaly_core::records::role::{FieldRole, FieldRoles};
use anomaly_core::records::vectorizer::{RecordNotes, VectorizerParams};
use anomaly_core::table::{TableEncoding, TableOptions, TableReader};
use anomaly_core::{IsolationForest, IsolationForestParams};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::Value;

use crate::error::{DetectError, shorten};

/// Rows scored at a time.
pub const BLOCK_ROWS: usize = 8192;

/// The fewest rows of a block given to one thread.
const MIN_PART_ROWS: usize = 1024;

/// Default of `train_rows`: the most rows kept in memory to learn from.
pub const DEFAULT_TRAIN_ROWS: usize = 200_000;

/// The most cells (rows × the values of the first row, nested ones counted) kept in memory to learn from: a wide
/// table keeps fewer rows than `train_rows`, down to [`MIN_SAMPLE_ROWS`].
pub const MAX_SAMPLE_CELLS: usize = 4_000_000;

/// The fewest rows kept to learn from, however wide the table.
pub const MIN_SAMPLE_ROWS: usize = 1_000;

/// Bad cells listed by their row and column in the summary; the rest are counted.
pub const LISTED_BAD_CELLS: usize = 5;

/// Longest cell text quoted in messages, in characters.
const QUOTE_MAX: usize = 60;

/// How to scan a table.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Format and CSV delimiter (sniffed when not given).
    pub table: TableOptions,
    /// Roles pinned by `--column NAME=ROLE`.
    pub roles: FieldRoles,
    /// The forest's parameters.
    pub forest: IsolationForestParams,
    /// Most rows kept to learn from: a table with more is learnt from a uniform sample of this many.
    pub train_rows: usize,
    /// Seed of the sample (the forest has its own in `forest`).
    pub seed: u64,
    /// Stop at the first cell that does not parse as its column's type, rather than counting it as missing.
    pub strict: bool,
    /// Show progress bars (on stderr; only when it is a terminal).
    pub progress: bool,
    /// Threads, as the forest's `n_threads`: `None` for one per core. Rows are vectorised on the same threads the
    /// forest scores them on.
    pub threads: Option<usize>,
}

/// One column of the table and what the model does with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column's name (a dotted path for nested JSON).
    pub name: String,
    /// Its role.
    pub role: FieldRole,
    /// Why it has that role.
    pub rule: String,
}

/// The model a table is scored with.
#[derive(Debug)]
pub enum TableModel {
    /// A table of numbers only (identifiers aside): the forest over its columns, in file order.
    Numeric {
        /// The forest.
        forest: IsolationForest,
        /// Its columns, and its identifiers.
        encoding: Box<TableEncoding>,
    },
    /// Any other table: the record engine's model.
    Records(Box<RecordModel>),
}

/// A model fitted on a table, ready to score it.
#[derive(Debug)]
pub struct Trained {
    path: PathBuf,
    options: ScanOptions,
    /// The file, as named in messages.
    pub file: String,
    /// Rows in the table.
    pub n_rows: usize,
    /// Rows the model learnt from.
    pub trained_on: usize,
    /// Each column's role, in file order.
    pub columns: Vec<Column>,
    /// The model.
    pub model: TableModel,
    /// Seconds spent learning each column's role from the sample.
    pub schema_seconds: f64,
    /// Seconds spent fitting the model on the sample (reading and learning the roles excluded).
    pub fit_seconds: f64,
    /// Fields of the sample left out of the schema by its column cap (the rarest), not scored.
    pub left_out: usize,
    /// The whole table, when it fitted in the sample (then it is not read again).
    rows: Option<Vec<Value>>,
}

/// A cell that did not parse as its column's type.
#[derive(Debug, Clone, PartialEq)]
pub struct BadCell {
    /// Data row, from 1.
    pub row: usize,
    /// The column.
    pub column: String,
    /// The type the column has.
    pub expected: FieldKind,
    /// The cell's value, as JSON text (shortened).
    pub value: String,
}

/// One scored row, as handed to the caller's sink.
#[derive(Debug)]
pub struct ScoredRow<'a> {
    /// Zero-based row index.
    pub index: usize,
    /// The row as read.
    pub record: &'a Value,
    /// Its anomaly score.
    pub score: f64,
    /// Whether it scores above the threshold.
    pub is_anomaly: bool,
}

/// What scoring a table found.
#[derive(Debug, Default)]
pub struct Scored {
    /// Rows scored.
    pub n_rows: usize,
    /// Rows above the threshold.
    pub n_anomalies: usize,
    /// The highest-scoring rows, highest first (ties by row): `(index, score, record)`.
    pub top: Vec<(usize, f64, Value)>,
    /// Every score in row order, when asked for.
    pub scores: Option<Vec<f64>>,
    /// Cells that did not parse as their column's type (counted as missing values).
    pub bad_cells: usize,
    /// The first [`LISTED_BAD_CELLS`] of them.
    pub first_bad_cells: Vec<BadCell>,
    /// Values in fields the model does not hold (JSON keys first seen after the sample), not scored.
    pub unseen_fields: usize,
    /// Seconds spent scoring (reading and the sink excluded).
    pub score_seconds: f64,
}

impl TableModel {
    /// The threshold a score is compared with.
    pub fn threshold(&self) -> f64 {
        self.forest().threshold()
    }

    /// The forest.
    pub fn forest(&self) -> &IsolationForest {
        match self {
            TableModel::Numeric { forest, .. } => forest,
            TableModel::Records(m) => m.forest(),
        }
    }

    /// One or two sentences on why `record` scores as it does, in column names.
    ///
    /// # Errors
    /// The model's error on this record.
    pub fn explain(&self, record: &Value) -> anomaly_core::Result<String> {
        match self {
            TableModel::Numeric { forest, encoding } => {
                // As scored: a cell without a number (in a row read after the sample) takes its column's median.
                let row = encoding.vector_imputing(record, |_| {})?;
                Ok(forest.explain_row(&row)?.rationale)
            }
            TableModel::Records(m) => Ok(m.explain(record)?.rationale),
        }
    }

    /// Columns set aside as identifiers, which name a row in the output.
    pub fn identifiers(&self) -> Vec<String> {
        match self {
            TableModel::Numeric { encoding, .. } => encoding.identifiers(),
            TableModel::Records(m) => m
                .vectorizer()
                .fields()
                .iter()
                .filter(|f| f.role == FieldRole::Identifier)
                .map(|f| f.path.clone())
                .collect(),
        }
    }
}

impl Trained {
    /// Reads `path` once, keeping a uniform sample of at most `options.train_rows` rows, and fits the model on it.
    ///
    /// # Errors
    /// [`DetectError::Table`] when the file cannot be read as a table, [`DetectError::NoRows`] for a table without
    /// rows, and the model's errors.
    pub fn fit(path: &Path, options: &ScanOptions) -> Result<Trained, DetectError> {
        let mut reader =
            TableReader::open(path, &options.table).map_err(|e| table_error(path, e))?;
        let file = reader.file().to_string();
        let bar = progress(options.progress, None, "reading");
        let mut limit = options.train_rows.max(2);
        // (row index, row): the sample is put back in file order before learning, as the role rules that look at
        // order (an auto-increment key rises from row to row) need.
        let mut sample: Vec<(usize, Value)> = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let mut n = 0usize;
        loop {
            // Reservoir sampling (Algorithm R): row n is kept with probability limit / (n + 1), in a random slot.
            // A row that will not be kept is passed over unread.
            let slot = if sample.len() < limit {
                Some(sample.len())
            } else {
                Some(rng.random_range(0..=n)).filter(|&j| j < limit)
            };
            match slot {
                Some(j) => {
                    let Some(row) = reader.next_row().map_err(|e| table_error(path, e))? else {
                        break;
                    };
                    if n == 0 {
                        // Bounded in cells, not only rows: a wide table keeps fewer rows.
                        let width = leaves(&row).max(1);
                        limit = limit.min((MAX_SAMPLE_CELLS / width).max(MIN_SAMPLE_ROWS));
                    }
                    if j == sample.len() {
                        sample.push((n, row));
                    } else {
                        sample[j] = (n, row);
                    }
                }
                None => {
                    if !reader.skip_row().map_err(|e| table_error(path, e))? {
                        break;
                    }
                }
            }
            n += 1;
            if n.is_multiple_of(4096) {
                bar.set_position(n as u64);
            }
        }
        bar.finish_and_clear();
        if n == 0 {
            return Err(DetectError::NoRows { file });
        }
        if n > limit && !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            return Err(DetectError::Table {
                file,
                reason: format!(
                    "{n} rows, more than the {limit} kept to learn from: the table is read twice, so it must be a \
                     regular file (not a pipe)"
                ),
            });
        }
        sample.sort_unstable_by_key(|(i, _)| *i);
        let (order, sample): (Vec<usize>, Vec<Value>) = sample.into_iter().unzip();
        let row_of = |i: usize| order.get(i).map_or(i + 1, |r| r + 1);
        let file_columns = reader.columns().to_vec();
        let params = VectorizerParams::new().field_roles(options.roles.clone());
        let params = params.clone().max_columns(
            params
                .get_max_columns()
                .max(file_columns.len().saturating_mul(2)),
        );
        let start = Instant::now();
        let encoding = TableEncoding::learn(&sample, &file_columns, &params)
            .map_err(|e| record_error(&file, e, &row_of, &[]))?;
        let columns: Vec<Column> = encoding
            .fields_in_file_order(&file_columns)
            .into_iter()
            .map(|f| Column {
                name: f.path.clone(),
                role: f.role,
                rule: f.rule.clone(),
            })
            .collect();
        let left_out = encoding.vectorizer.left_out().clone();
        let schema_seconds = start.elapsed().as_secs_f64();
        let start = Instant::now();
        let model = if encoding.numbers.is_some() {
            let names = encoding.feature_names();
            let x = encoding
                .matrix(&sample)
                .map_err(|e| record_error(&file, e, &row_of, &names))?;
            let forest = options
                .forest
                .clone()
                .feature_names(Some(names.clone()))
                .fit(x.view())
                .map_err(|e| record_error(&file, e, &row_of, &names))?;
            TableModel::Numeric {
                forest,
                encoding: Box::new(encoding),
            }
        } else {
            let m = RecordModel::fit_with_schema(encoding.vectorizer, &sample, &options.forest, 1)
                .map_err(|e| record_error(&file, e, &row_of, &[]))?;
            TableModel::Records(Box::new(m))
        };
        let fit_seconds = start.elapsed().as_secs_f64();
        let trained_on = sample.len();
        Ok(Trained {
            path: path.to_path_buf(),
            options: options.clone(),
            file,
            n_rows: n,
            trained_on,
            columns,
            left_out: left_out.total,
            model,
            schema_seconds,
            fit_seconds,
            rows: (n <= limit).then_some(sample),
        })
    }

    /// Scores every row in order, handing each to `sink`; keeps the `top` highest-scoring rows, and every score
    /// when `keep_scores`.
    ///
    /// # Errors
    /// As [`fit`](Self::fit) for reading; [`DetectError::BadCell`] under `strict`; the sink's errors.
    pub fn score(
        &self,
        top: usize,
        keep_scores: bool,
        sink: &mut dyn FnMut(ScoredRow<'_>) -> Result<(), DetectError>,
    ) -> Result<Scored, DetectError> {
        let mut out = Scored {
            scores: keep_scores.then(|| Vec::with_capacity(self.n_rows)),
            ..Scored::default()
        };
        let mut heap: BinaryHeap<Ranked> =
            BinaryHeap::with_capacity(top.min(self.n_rows).saturating_add(1));
        let bar = progress(self.options.progress, Some(self.n_rows as u64), "scoring");
        let threshold = self.model.threshold();
        let mut seconds = Duration::ZERO;
        let mut score_block =
            |block: &[Value], first: usize, out: &mut Scored| -> Result<(), DetectError> {
                let scores = self.score_block(block, first, out, &mut seconds)?;
                for (i, (record, score)) in block.iter().zip(scores).enumerate() {
                    let index = first + i;
                    let is_anomaly = score > threshold;
                    out.n_anomalies += usize::from(is_anomaly);
                    if let Some(s) = &mut out.scores {
                        s.push(score);
                    }
                    if top > 0 {
                        let ranked = Ranked {
                            score,
                            index,
                            record: None,
                        };
                        if heap.len() < top {
                            heap.push(ranked.with(record));
                        } else if heap
                            .peek()
                            .is_some_and(|worst| ranked.cmp(worst) == Ordering::Less)
                        {
                            heap.pop();
                            heap.push(ranked.with(record));
                        }
                    }
                    sink(ScoredRow {
                        index,
                        record,
                        score,
                        is_anomaly,
                    })?;
                }
                out.n_rows += block.len();
                bar.set_position(out.n_rows as u64);
                Ok(())
            };
        match &self.rows {
            Some(rows) => {
                for (b, block) in rows.chunks(BLOCK_ROWS).enumerate() {
                    score_block(block, b * BLOCK_ROWS, &mut out)?;
                }
            }
            None => {
                let mut reader = TableReader::open(&self.path, &self.options.table)
                    .map_err(|e| table_error(&self.path, e))?;
                let mut block = Vec::with_capacity(BLOCK_ROWS);
                while out.n_rows < self.n_rows {
                    let first = out.n_rows;
                    let want = BLOCK_ROWS.min(self.n_rows - first);
                    let got = reader
                        .read_block_into(want, &mut block)
                        .map_err(|e| table_error(&self.path, e))?;
                    if got == 0 {
                        break;
                    }
                    score_block(&block, first, &mut out)?;
                }
                if out.n_rows != self.n_rows || !matches!(reader.skip_row(), Ok(false)) {
                    return Err(DetectError::Table {
                        file: self.file.clone(),
                        reason: format!(
                            "the table changed between its two reads (it had {} rows the first time)",
                            self.n_rows
                        ),
                    });
                }
            }
        }
        bar.finish_and_clear();
        out.score_seconds = seconds.as_secs_f64();
        let mut top: Vec<Ranked> = heap.into_vec();
        top.sort();
        out.top = top
            .into_iter()
            .map(|r| (r.index, r.score, r.record.unwrap_or(Value::Null)))
            .collect();
        Ok(out)
    }

    /// Scores of one block starting at row `first` (zero-based), counting its bad cells and adding the time the
    /// model took to `seconds`.
    fn score_block(
        &self,
        block: &[Value],
        first: usize,
        out: &mut Scored,
        seconds: &mut Duration,
    ) -> Result<Vec<f64>, DetectError> {
        let row_of = |i: usize| first + i + 1;
        let mut failed = None;
        let scores = match &self.model {
            TableModel::Numeric { forest, encoding } => {
                let names = encoding.feature_names();
                let mut data = Vec::with_capacity(block.len() * names.len());
                for (i, r) in block.iter().enumerate() {
                    let v = encoding
                        .vector_imputing(r, |cell| {
                            let bad = BadCell {
                                row: row_of(i),
                                column: cell.column.to_string(),
                                expected: FieldKind::Number,
                                value: shorten(&cell_text(cell.value), QUOTE_MAX),
                            };
                            self.note_bad_cell(out, &mut failed, bad);
                        })
                        .map_err(|e| record_error(&self.file, e, &row_of, &names))?;
                    data.extend_from_slice(&v);
                }
                let x = Array2::from_shape_vec((block.len(), names.len()), data).map_err(|e| {
                    self.model_failed(anomaly_core::Error::InvalidRecord {
                        reason: e.to_string(),
                    })
                })?;
                let start = Instant::now();
                let scores = forest.score(x.view());
                *seconds += start.elapsed();
                scores
                    .map_err(|e| record_error(&self.file, e, &row_of, &names))?
                    .to_vec()
            }
            TableModel::Records(m) => {
                // Vectorising is the larger part: the block is split among the threads, each part vectorised and
                // scored on its own (a row's score does not depend on the others, so the scores are the same).
                let start = Instant::now();
                let results: Vec<Result<Part, DetectError>> =
                    anomaly_core::forest::on_threads(self.options.threads, || {
                        let threads = rayon::current_num_threads();
                        let parts = threads.clamp(1, block.len().div_ceil(MIN_PART_ROWS).max(1));
                        let size = block.len().div_ceil(parts).max(1);
                        if parts > 1 {
                            block
                                .par_chunks(size)
                                .enumerate()
                                .map(|(p, chunk)| self.score_records(m, chunk, first + p * size))
                                .collect()
                        } else {
                            vec![self.score_records(m, block, first)]
                        }
                    })
                    .map_err(|e| self.model_failed(e))?;
                *seconds += start.elapsed();
                let mut scores = Vec::with_capacity(block.len());
                for part in results {
                    let part = part?;
                    scores.extend(part.scores);
                    for bad in part.bad_cells {
                        self.note_bad_cell(out, &mut failed, bad);
                    }
                    out.unseen_fields += part.unseen_fields;
                }
                scores
            }
        };
        match failed {
            Some(bad) => Err(DetectError::BadCell {
                file: self.file.clone(),
                row: bad.row,
                column: bad.column,
                expected: kind_name(bad.expected).to_string(),
                value: bad.value,
            }),
            None => Ok(scores),
        }
    }

    /// Scores `chunk`, whose first row is row `first` (zero-based), with the record model.
    fn score_records(
        &self,
        m: &RecordModel,
        chunk: &[Value],
        first: usize,
    ) -> Result<Part, DetectError> {
        let row_of = |i: usize| first + i + 1;
        let mut part = Part::default();
        let verdicts = m.score_many_noted(chunk, |i, notes: &RecordNotes| {
            // Any text is a category, and a column only blank in the sample has no type to break.
            for (path, expected, _) in &notes.type_changes {
                if matches!(expected, FieldKind::Category | FieldKind::Null) {
                    continue;
                }
                part.bad_cells.push(BadCell {
                    row: row_of(i),
                    column: path.clone(),
                    expected: *expected,
                    value: shorten(&cell_text(&value_at(&chunk[i], path)), QUOTE_MAX),
                });
            }
            part.unseen_fields += notes.unseen_total();
        });
        let verdicts = verdicts
            .map_err(|e| record_error(&self.file, e, &row_of, &m.vectorizer().feature_names()))?;
        part.scores = verdicts.iter().map(|v| v.score).collect();
        Ok(part)
    }

    /// Counts a bad cell, lists it when it is among the first, and under `strict` keeps the first to stop at.
    fn note_bad_cell(&self, out: &mut Scored, failed: &mut Option<BadCell>, bad: BadCell) {
        out.bad_cells += 1;
        if self.options.strict && failed.is_none() {
            *failed = Some(bad.clone());
        }
        if out.first_bad_cells.len() < LISTED_BAD_CELLS {
            out.first_bad_cells.push(bad);
        }
    }

    fn model_failed(&self, e: anomaly_core::Error) -> DetectError {
        DetectError::Model {
            file: self.file.clone(),
            source: e,
        }
    }
}

/// What scoring part of a block found.
#[derive(Debug, Default)]
struct Part {
    scores: Vec<f64>,
    bad_cells: Vec<BadCell>,
    unseen_fields: usize,
}

/// How a column's type reads in messages: "a number", "a date/time", ….
pub fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Number => "a number",
        FieldKind::Bool => "a boolean",
        FieldKind::DateTime => "a date/time",
        FieldKind::Category => "a category",
        FieldKind::Null => "empty",
    }
}

/// A row in the top-N heap: ordered so that the heap's greatest is the row to drop first (lowest score, then the
/// latest row), which gives the order of [`top_rows`](crate::top_rows).
#[derive(Debug)]
struct Ranked {
    score: f64,
    index: usize,
    record: Option<Value>,
}

impl Ranked {
    fn with(self, record: &Value) -> Ranked {
        Ranked {
            record: Some(record.clone()),
            ..self
        }
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ranked {
    /// Less = ranked higher: NaN last, higher scores first, then earlier rows.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .is_nan()
            .cmp(&other.score.is_nan())
            .then(other.score.total_cmp(&self.score))
            .then(self.index.cmp(&other.index))
    }
}

/// The values of a row, counting those of nested objects and arrays.
fn leaves(v: &Value) -> usize {
    match v {
        Value::Object(o) => o.values().map(leaves).sum(),
        Value::Array(a) => a.iter().map(leaves).sum(),
        _ => 1,
    }
}

/// The value at dotted `path` of `record` (a top-level key that holds dots, or nested objects); null when absent.
pub fn value_at(record: &Value, path: &str) -> Value {
    if let Some(v) = record.get(path) {
        return v.clone();
    }
    let mut v = record;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return Value::Null,
        }
    }
    v.clone()
}

fn progress(on: bool, total: Option<u64>, what: &'static str) -> ProgressBar {
    if !on || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{msg:8} {bar:40} {pos}/{len} rows, {per_sec}, {eta} left",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{msg:8} {spinner} {pos} rows, {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn table_error(path: &Path, e: anomaly_core::Error) -> DetectError {
    match e {
        anomaly_core::Error::Table { file, reason } => DetectError::Table { file, reason },
        source => DetectError::Model {
            file: path.display().to_string(),
            source,
        },
    }
}

/// An error of the model on rows, naming the row (from 1, through `row_of`, which maps the model's zero-based index
/// in its batch) and the column (through `names`, the model's feature names).
fn record_error(
    file: &str,
    e: anomaly_core::Error,
    row_of: &dyn Fn(usize) -> usize,
    names: &[String],
) -> DetectError {
    match e {
        anomaly_core::Error::NonFinite { row, column, value } => DetectError::NonFinite {
            file: file.to_string(),
            row: row_of(row),
            column: names
                .get(column)
                .cloned()
                .unwrap_or_else(|| format!("x{column}")),
            value,
        },
        anomaly_core::Error::InvalidRecord { reason } => {
            // The core names a record by its index in the batch: "record 7: …".
            let located = reason
                .strip_prefix("record ")
                .and_then(|r| r.split_once(": "))
                .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
            let reason = match located {
                Some((i, rest)) => format!("row {}: {rest}", row_of(i)),
                None => reason,
            };
            DetectError::Model {
                file: file.to_string(),
                source: anomaly_core::Error::InvalidRecord { reason },
            }
        }
        e => numeric_error(file, names, e),
    }
}

/// A cell's text in messages: a string as it is written, a blank as `""`, anything else as JSON.
fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => "\"\"".to_string(),
        other => other.to_string(),
    }
}

/// A numeric-path error in the terms [`Dataset::describe`](crate::Dataset::describe) uses.
fn numeric_error(file: &str, columns: &[String], e: anomaly_core::Error) -> DetectError {
    crate::Dataset {
        file: file.to_string(),
        names: columns.to_vec(),
        named: true,
        x: Array2::zeros((0, 0)),
    }
    .describe(e)
}
