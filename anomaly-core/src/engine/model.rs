//! A model of one key's records: the learned schema and an isolation forest over its vectors.

use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::range_rule::RangeViolation;
use crate::error::{Error, Result};
use crate::explanation::{Verdict, fmt_num};
use crate::forest::{IsolationForest, IsolationForestParams, on_threads};
use crate::records::columns::RecordColumns;
use crate::records::role::FieldRoles;
use crate::records::vectorizer::{
    FieldAttribution, RecordNotes, Vectorizer, VectorizerParams, at_record,
};

/// Most records [`RecordModel::score_many`] vectorises and scores at a time.
const SCORE_CHUNK: usize = 1024;

/// Fewest records per chunk when a batch is split between threads.
const MIN_CHUNK: usize = 128;

/// Told, in row order, the notes of each record where something did not fit the schema.
type NotesSink<'a> = &'a mut dyn FnMut(usize, &RecordNotes);

/// A chunk's verdicts, and the notes of the records where something did not fit the schema.
type ChunkScored = (Vec<RecordVerdict>, Vec<(usize, RecordNotes)>);

/// Chunks of `0..n` for `threads` threads: at most [`SCORE_CHUNK`] records, and small enough (down to
/// [`MIN_CHUNK`]) that each thread gets about four.
fn chunk_ranges(n: usize, threads: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = n.div_ceil(4 * threads.max(1)).clamp(MIN_CHUNK, SCORE_CHUNK);
    (0..n.div_ceil(size)).map(move |c| c * size..((c + 1) * size).min(n))
}

/// A vectoriser and the forest fitted on its vectors; immutable once trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordModel {
    vectorizer: Vectorizer,
    forest: IsolationForest,
    version: u64,
    trained_on: usize,
    trained_at: f64,
    /// Roles pinned for its key (not the engine's), kept so that a restored key keeps them.
    #[serde(default)]
    pinned: FieldRoles,
}

/// One of the engine's detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// The key's isolation forest over the record's vector.
    IsolationForest,
    /// The range rule over the key's baseline (see [`RangeViolation`]).
    RangeRule,
}

impl Detector {
    /// `isolation_forest` or `range_rule`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Detector::IsolationForest => "isolation_forest",
            Detector::RangeRule => "range_rule",
        }
    }
}

/// Which detectors flagged a record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlaggedBy {
    /// The isolation forest: its score exceeds its threshold.
    pub isolation_forest: bool,
    /// The range rule: a measured number lies far outside everything the key's history holds.
    pub range_rule: bool,
}

impl FlaggedBy {
    /// The detector to name first: the forest when it flagged the record, else the range rule, else none.
    pub fn primary(&self) -> Option<Detector> {
        if self.isolation_forest {
            Some(Detector::IsolationForest)
        } else if self.range_rule {
            Some(Detector::RangeRule)
        } else {
            None
        }
    }
}

/// The verdict on one record: the forest's score, and whether any detector flagged it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecordVerdict {
    /// Isolation-forest score in `(0, 1]`; higher is more anomalous.
    pub score: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// Whether a detector flagged the record: `score > threshold`, or the range rule.
    pub is_anomaly: bool,
    /// Which detectors flagged it.
    #[serde(default)]
    pub flagged_by: FlaggedBy,
    /// Version of the model that scored it.
    pub model_version: u64,
}

impl RecordVerdict {
    /// The verdict with the range rule's answer merged in.
    pub(crate) fn with_range_rule(mut self, fires: bool) -> Self {
        self.flagged_by.range_rule = fires;
        self.is_anomaly = self.flagged_by.isolation_forest || fires;
        self
    }
}

/// A verdict on one record, explained in field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordExplanation {
    /// The verdict.
    pub verdict: RecordVerdict,
    /// Fields by contribution, then identifiers and fields the schema does not hold.
    pub fields: Vec<FieldAttribution>,
    /// What did not fit the schema.
    pub notes: RecordNotes,
    /// The range rule's reasons, when it flagged the record.
    #[serde(default)]
    pub range_violations: Vec<RangeViolation>,
    /// One sentence or two, for example "Anomalous: score 0.71 exceeds the threshold 0.5; `amount` = 99,812 is
    /// above the typical 12–480, and `country` = 'KP' was never seen."
    pub rationale: String,
}

impl RecordExplanation {
    /// The explanation with the range rule's reasons merged into the verdict and the rationale.
    pub(crate) fn with_range_violations(mut self, violations: Vec<RangeViolation>) -> Self {
        if violations.is_empty() {
            return self;
        }
        let reasons: Vec<String> = violations.iter().map(RangeViolation::description).collect();
        let reasons = reasons.join("; ");
        self.rationale = if self.verdict.flagged_by.isolation_forest {
            format!("{} Range rule: {reasons}.", self.rationale)
        } else {
            format!(
                "Anomalous by the range rule: {reasons}. The forest's score {} does not exceed its threshold {}.",
                fmt_num(self.verdict.score),
                fmt_num(self.verdict.threshold)
            )
        };
        self.verdict = self.verdict.with_range_rule(true);
        self.range_violations = violations;
        self
    }
}

impl RecordModel {
    /// Learns the schema from `records` and fits a forest on their vectors.
    ///
    /// # Errors
    /// As [`VectorizerParams::fit`] and [`IsolationForestParams::fit`].
    pub fn fit(
        records: &[Value],
        vectorizer: &VectorizerParams,
        forest: &IsolationForestParams,
        version: u64,
    ) -> Result<Self> {
        Self::fit_with_schema(vectorizer.fit(records)?, records, forest, version)
    }

    /// Fits a forest on the vectors of `records` under a schema already learnt from them (by
    /// [`VectorizerParams::fit`]): the same model as [`fit`](Self::fit) with that schema's parameters.
    ///
    /// # Errors
    /// As [`IsolationForestParams::fit`]; [`Error::EmptyInput`] when the schema scores no field.
    pub fn fit_with_schema(
        vectorizer: Vectorizer,
        records: &[Value],
        forest: &IsolationForestParams,
        version: u64,
    ) -> Result<Self> {
        if vectorizer.n_features() == 0 {
            return Err(Error::EmptyInput {
                what: "no field to score (every field is an identifier or ignored)",
            });
        }
        let x = vectorizer.transform_many(records)?;
        let forest = forest
            .clone()
            .feature_names(Some(vectorizer.feature_names()))
            .fit(x.view())?;
        Ok(RecordModel {
            vectorizer,
            forest,
            version,
            trained_on: records.len(),
            trained_at: now(),
            pinned: FieldRoles::new(),
        })
    }

    /// The model's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    pub(crate) fn with_pinned(mut self, pinned: FieldRoles) -> Self {
        self.pinned = pinned;
        self
    }

    /// The roles pinned for its key when it was trained (the engine's own pins are in the vectoriser's parameters).
    pub fn pinned(&self) -> &FieldRoles {
        &self.pinned
    }

    /// Records it was trained on.
    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    /// When it was trained, in seconds since the Unix epoch.
    pub fn trained_at(&self) -> f64 {
        self.trained_at
    }

    /// The learned schema.
    pub fn vectorizer(&self) -> &Vectorizer {
        &self.vectorizer
    }

    /// The forest.
    pub fn forest(&self) -> &IsolationForest {
        &self.forest
    }

    /// Scores one record, reusing `buf` for its vector.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits.
    pub fn score_with(
        &self,
        record: &Value,
        buf: &mut Vec<f64>,
        notes: &mut RecordNotes,
    ) -> Result<RecordVerdict> {
        self.vectorizer.transform_into(record, buf, notes)?;
        self.verdict(buf)
    }

    /// Scores many records at once, chunk by chunk, each chunk vectorised and scored in a block by one of the
    /// forest's threads, which is several times faster per record than [`score`](Self::score) and gives the same
    /// verdicts, bit for bit. `range_rule(vector)` says whether the engine's range rule fires on a record.
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with), naming the first record that fails; nothing is scored then.
    pub(crate) fn score_many_with(
        &self,
        records: &[Value],
        range_rule: impl Fn(&[f64]) -> bool + Sync,
        on_notes: Option<NotesSink<'_>>,
    ) -> Result<Vec<RecordVerdict>> {
        self.score_rows(
            records.len(),
            |i, row, notes| {
                self.vectorizer
                    .transform_into(&records[i], row, notes)
                    .map_err(|e| at_record(i, e))
            },
            range_rule,
            on_notes,
        )
    }

    /// As [`score_many_with`](Self::score_many_with), for records held as columns.
    ///
    /// # Errors
    /// As [`score_columns`](Self::score_columns).
    pub(crate) fn score_columns_with(
        &self,
        columns: &RecordColumns<'_>,
        range_rule: impl Fn(&[f64]) -> bool + Sync,
        on_notes: Option<NotesSink<'_>>,
    ) -> Result<Vec<RecordVerdict>> {
        let fields = self.vectorizer.column_fields(columns)?;
        self.score_rows(
            columns.rows(),
            |i, row, notes| {
                self.vectorizer
                    .transform_row_into(columns, &fields, i, row, notes)
                    .map_err(|e| at_record(i, e))
            },
            range_rule,
            on_notes,
        )
    }

    /// Scores rows `0..n`, whose vectors `encode(i, vector, notes)` writes, in chunks: each chunk is vectorised and
    /// scored by one of the forest's threads (the calling thread alone with one thread), so the vectors stay in
    /// cache and the verdicts are the same bits for any thread count. `on_notes`, when given, is told each row's
    /// notes, in row order, once every chunk is scored (they are held until then).
    fn score_rows(
        &self,
        n: usize,
        encode: impl Fn(usize, &mut Vec<f64>, &mut RecordNotes) -> Result<()> + Sync,
        range_rule: impl Fn(&[f64]) -> bool + Sync,
        mut on_notes: Option<NotesSink<'_>>,
    ) -> Result<Vec<RecordVerdict>> {
        let wants_notes = on_notes.is_some();
        let width = self.vectorizer.n_features();
        let threshold = self.forest.threshold();
        let threads = self.forest.params().get_n_threads();
        // One chunk's verdicts, and the notes of its records where something did not fit the schema.
        let chunk = |range: std::ops::Range<usize>| -> Result<ChunkScored> {
            let mut data = Vec::with_capacity(range.len() * width);
            let (mut row, mut notes) = (Vec::with_capacity(width), RecordNotes::default());
            let mut noted = Vec::new();
            for at in range.clone() {
                encode(at, &mut row, &mut notes)?;
                if wants_notes && !notes.is_empty() {
                    noted.push((at, notes.clone()));
                }
                // A scaled value can overflow: refused here, naming the record in the batch (as the forest would
                // name its row in the chunk).
                if let Some(column) = row.iter().position(|v| !v.is_finite()) {
                    return Err(Error::NonFinite {
                        row: at,
                        column,
                        value: row[column],
                    });
                }
                data.extend_from_slice(&row);
            }
            let x = ArrayView2::from_shape((range.len(), width), &data)
                .map_err(|e| Error::invalid("records", e.to_string()))?;
            let scores = self.forest.score_on_threads(x, Some(1))?;
            let verdicts = data
                .chunks_exact(width.max(1))
                .zip(scores)
                .map(|(row, score)| {
                    let verdict = self.verdict_of(Verdict::new(score, threshold));
                    verdict.with_range_rule(range_rule(row))
                })
                .collect();
            Ok((verdicts, noted))
        };
        let chunks: Vec<Result<ChunkScored>> = if n == 0 {
            Vec::new()
        } else if threads == Some(1) {
            chunk_ranges(n, 1).map(chunk).collect()
        } else {
            on_threads(threads, || {
                let ranges: Vec<_> = chunk_ranges(n, rayon::current_num_threads()).collect();
                ranges.into_par_iter().map(chunk).collect()
            })?
        };
        let mut verdicts = Vec::with_capacity(n);
        for c in chunks {
            let (v, noted) = c?;
            verdicts.extend(v);
            if let Some(on_notes) = on_notes.as_mut() {
                for (at, notes) in &noted {
                    on_notes(*at, notes);
                }
            }
        }
        Ok(verdicts)
    }

    /// Scores records held as columns, as [`score_many`](Self::score_many) scores their
    /// [`RecordColumns::record`]s (the same verdicts, bit for bit), without building them: the fast path for a
    /// data frame.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for more columns than a record may have fields, or naming a row
    /// [replaced](RecordColumns::replace_row) by a record it refuses; [`Error::NonFinite`] naming the record whose
    /// scaled vector overflows; nothing is scored then.
    pub fn score_columns(&self, columns: &RecordColumns<'_>) -> Result<Vec<RecordVerdict>> {
        self.score_columns_with(columns, |_| false, None)
    }

    /// Scores many records at once, as [`score`](Self::score) does one by one (the same verdicts, bit for bit),
    /// several times faster per record: chunk by chunk, each chunk vectorised and scored in a block by one of the
    /// forest's threads.
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with), naming the first record that fails; nothing is scored then.
    pub fn score_many(&self, records: &[Value]) -> Result<Vec<RecordVerdict>> {
        self.score_many_with(records, |_| false, None)
    }

    /// As [`score_many`](Self::score_many), telling `on_notes(i, notes)` what did not fit the schema in record `i`
    /// (values of another type than learned, unseen fields and categories), for each record where something did not.
    ///
    /// # Errors
    /// As [`score_many`](Self::score_many).
    pub fn score_many_noted(
        &self,
        records: &[Value],
        mut on_notes: impl FnMut(usize, &RecordNotes),
    ) -> Result<Vec<RecordVerdict>> {
        self.score_many_with(records, |_| false, Some(&mut on_notes))
    }

    /// The forest's verdict on the vector `x`.
    fn verdict(&self, x: &[f64]) -> Result<RecordVerdict> {
        Ok(self.verdict_of(self.forest.verdict_row(x)?))
    }

    /// The record verdict of the forest's verdict.
    fn verdict_of(&self, v: Verdict) -> RecordVerdict {
        RecordVerdict {
            score: v.score,
            threshold: v.threshold,
            is_anomaly: v.is_anomaly,
            flagged_by: FlaggedBy {
                isolation_forest: v.is_anomaly,
                range_rule: false,
            },
            model_version: self.version,
        }
    }

    /// Scores one record.
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with).
    pub fn score(&self, record: &Value) -> Result<RecordVerdict> {
        self.score_with(record, &mut Vec::new(), &mut RecordNotes::default())
    }

    /// Scores and explains one record in field names (the forest's verdict; the engine adds the range rule's).
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with).
    pub fn explain(&self, record: &Value) -> Result<RecordExplanation> {
        let (x, notes) = self.vectorizer.transform(record)?;
        self.explain_vector(record, &x, notes)
    }

    /// [`explain`](Self::explain) of a record whose vector `x` and notes are known.
    pub(crate) fn explain_vector(
        &self,
        record: &Value,
        x: &[f64],
        notes: RecordNotes,
    ) -> Result<RecordExplanation> {
        let verdict = self.verdict(x)?;
        let attributions = self.forest.attributions(x)?;
        let mut per_column = vec![0.0; x.len()];
        for a in &attributions {
            per_column[a.feature] = a.contribution;
        }
        let fields = self.vectorizer.explain_fields(record, &per_column)?;
        let rationale = rationale(&verdict, &fields);
        Ok(RecordExplanation {
            verdict,
            fields,
            notes,
            range_violations: Vec::new(),
            rationale,
        })
    }

    /// A model of snapshot version 1: see [`Vectorizer::upgrade_from_v1`].
    pub(crate) fn upgrade_from_v1(&mut self) {
        self.vectorizer.upgrade_from_v1();
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.vectorizer.check()?;
        self.forest.check()?;
        if self.forest.n_features() != self.vectorizer.n_features() {
            return Err("forest and vectoriser widths differ".into());
        }
        Ok(())
    }
}

fn rationale(v: &RecordVerdict, fields: &[FieldAttribution]) -> String {
    let mut reasons: Vec<&str> = fields
        .iter()
        .filter(|f| f.unusual && f.contribution > 0.0)
        .take(3)
        .map(|f| f.description.as_str())
        .collect();
    let new_fields: Vec<&str> = fields
        .iter()
        .filter(|f| f.description.starts_with("new field"))
        .take(3)
        .map(|f| f.description.as_str())
        .collect();
    if reasons.is_empty()
        && let Some(f) = fields.first().filter(|f| f.contribution > 0.0)
    {
        reasons.push(f.description.as_str());
    }
    reasons.extend(new_fields);
    format!(
        "{}: score {} {} the threshold {}{}.",
        if v.is_anomaly { "Anomalous" } else { "Normal" },
        fmt_num(v.score),
        if v.is_anomaly {
            "exceeds"
        } else {
            "does not exceed"
        },
        fmt_num(v.threshold),
        if reasons.is_empty() {
            String::new()
        } else {
            format!("; {}", reasons.join(", and "))
        }
    )
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Turns a snapshot error into one naming the key.
pub(crate) fn restore(bytes: &[u8]) -> Result<RecordModel> {
    RecordModel::from_snapshot_bytes(bytes).map_err(|e| match e {
        Error::UnsupportedSnapshot { reason } => Error::Persistence {
            reason: format!("stored model cannot be restored: {reason}"),
        },
        other => other,
    })
}
