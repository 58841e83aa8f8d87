//! Dataset statistics per field, and the comparison of a new batch with history.
//!
//! [`DatasetStats::from_records`] summarises a batch of JSON records field by field, each field a dotted path as
//! [`flatten`](crate::records::flatten::flatten) produces it and each value interpreted by
//! [`interpret`](crate::records::kind::interpret): dominant kind, presence and nulls, cardinality, numeric moments
//! and quantiles, most frequent values. [`DatasetStats::merge`] folds batches into a history;
//! [`DatasetStats::compare`] reports how a new batch differs from it. The statistics are also the compact view of
//! a batch an LLM analysis is given instead of raw rows ([`DatasetStats::to_prompt_json`]).
//!
//! ```
//! use anomaly_core::records::flatten::Limits;
//! use anomaly_core::stats::{CompareThresholds, DatasetStats};
//! use serde_json::json;
//!
//! let day = |latency: f64| json!({"latency_ms": latency, "status": "ok"});
//! let mut history = DatasetStats::new();
//! for batch in [[10.0, 12.0, 11.0], [9.0, 13.0, 11.0]] {
//!     let records: Vec<_> = batch.iter().map(|&l| day(l)).collect();
//!     history.merge(&DatasetStats::from_records(&records, &Limits::default())?);
//! }
//! let today = DatasetStats::from_records(&[day(40.0), day(45.0), day(50.0)], &Limits::default())?;
//! let diff = history.compare(&today, &CompareThresholds::default());
//! assert_eq!(diff.mean_shifts[0].field, "latency_ms");
//! assert!(diff.summary().contains("range expansions: latency_ms"));
//! # Ok::<(), anomaly_core::Error>(())
//! ```
//!
//! # What is exact and what is estimated
//! | statistic | within a batch | after [`merge`](DatasetStats::merge) |
//! | --- | --- | --- |
//! | counts, nulls, kinds, min, max | exact | exact |
//! | mean, standard deviation | exact (Welford) | exact (Chan et al.'s pairwise update) |
//! | quantiles | exact up to 2,048 values, then from a uniform reservoir sample of 2,048 (Algorithm R, seeded by the field's path) | exact while the union has at most 2,048 values, then from a 2,048-value uniform sample of the union (hypergeometric split of the two samples); the 0 % and 100 % points are always the exact min and max |
//! | cardinality | exact up to 10,000 distinct values (compared as strings, by a fixed 64-bit hash), then flagged as capped with a k-minimum-values estimate | the same, by union of the kept hashes |
//! | top values | exact | counts summed over each side's 64 most frequent values: exact while every batch had at most 64 distinct category values, lower bounds otherwise |
//!
//! Everything is deterministic: the same records in the same order give the same statistics bit for bit.
//!
//! # Bounds
//! A field's statistics are bounded (the sketches above), and so is the number of fields: at most
//! [`DatasetStats::max_fields`] ([`DEFAULT_MAX_FIELDS`] unless set), the most frequent of a batch, and in a merged
//! history the first that came; the others are counted in [`DatasetStats::fields_left_out`]. Records with thousands
//! of distinct field names cost a bounded summary.
//! Distribution comparisons are estimated from the 21 quantiles; see [`DatasetStats::compare`].

mod compare;
pub(crate) mod distribution;
mod field;
mod sketch;

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use compare::{
    CategoryChange, CompareThresholds, Comparison, DistributionChange, MeanShift, NullIncrease,
    RangeExpansion, ResultSize, TypeChange,
};
pub use field::{Cardinality, FieldStats, KindCounts, NumericStats, TopValue};

use crate::error::{Error, Result};
use crate::records::flatten::{self, Limits};
use crate::records::kind;
use field::FieldAccumulator;

/// Fields a [`DatasetStats`] keeps unless told otherwise.
pub const DEFAULT_MAX_FIELDS: usize = 1_000;

fn default_max_fields() -> usize {
    DEFAULT_MAX_FIELDS
}

/// Statistics of a set of JSON records: one batch, or a history of merged batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetStats {
    n_records: u64,
    n_batches: u64,
    fields: BTreeMap<String, FieldStats>,
    #[serde(default)]
    fields_left_out: u64,
    #[serde(default = "default_max_fields")]
    max_fields: usize,
}

impl Default for DatasetStats {
    fn default() -> Self {
        DatasetStats {
            n_records: 0,
            n_batches: 0,
            fields: BTreeMap::new(),
            fields_left_out: 0,
            max_fields: DEFAULT_MAX_FIELDS,
        }
    }
}

impl DatasetStats {
    /// An empty history: no batches, no records.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps at most `n` fields (at least 1) from now on: merges add no field beyond them.
    pub fn with_max_fields(mut self, n: usize) -> Self {
        self.max_fields = n.max(1);
        self
    }

    /// Fields kept at most.
    pub fn max_fields(&self) -> usize {
        self.max_fields
    }

    /// Field occurrences left out by the field cap (a field left out of several batches counts once per batch).
    pub fn fields_left_out(&self) -> u64 {
        self.fields_left_out
    }

    /// Statistics of one batch of records (each a JSON object); `n_batches` is 1. An empty slice is a batch of zero
    /// records. At most [`DEFAULT_MAX_FIELDS`] fields are kept, the most frequent.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] (naming the record's index) for a record that is not an object or exceeds `limits`.
    pub fn from_records<R: Borrow<Value>>(records: &[R], limits: &Limits) -> Result<Self> {
        Self::from_records_capped(records, limits, DEFAULT_MAX_FIELDS)
    }

    /// [`from_records`](Self::from_records) keeping at most `max_fields` fields (at least 1): when the records
    /// hold more, the most frequent (ties by path), and the others counted in
    /// [`fields_left_out`](Self::fields_left_out).
    ///
    /// # Errors
    /// As [`from_records`](Self::from_records).
    pub fn from_records_capped<R: Borrow<Value>>(
        records: &[R],
        limits: &Limits,
        max_fields: usize,
    ) -> Result<Self> {
        let max_fields = max_fields.max(1);
        // Usually every field fits, and one pass does; a batch with more fields than twice the cap is counted
        // first, then summarised on its most frequent fields only.
        match accumulate(records, limits, None, 2 * max_fields)? {
            Some(stats) if stats.fields.len() <= max_fields => {
                Ok(stats.with_max_fields(max_fields))
            }
            _ => {
                let mut counts: HashMap<String, u64> = HashMap::new();
                let mut leaves = Vec::new();
                for (i, record) in records.iter().enumerate() {
                    flatten::flatten_into(record.borrow(), limits, &mut leaves)
                        .map_err(|e| at(i, e))?;
                    for (path, _) in &leaves {
                        match counts.get_mut(path.as_ref()) {
                            Some(c) => *c += 1,
                            None => {
                                counts.insert(path.to_string(), 1);
                            }
                        }
                    }
                }
                let mut by_count: Vec<(String, u64)> = counts.into_iter().collect();
                by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let left_out = by_count.len().saturating_sub(max_fields) as u64;
                let keep: HashSet<String> = by_count
                    .into_iter()
                    .take(max_fields)
                    .map(|(p, _)| p)
                    .collect();
                let mut stats = accumulate(records, limits, Some(&keep), usize::MAX)?
                    .unwrap_or_default()
                    .with_max_fields(max_fields);
                stats.fields_left_out = left_out;
                Ok(stats)
            }
        }
    }

    /// Adds `other`'s records to `self`'s batches without counting a batch more: `other` holds more records of the
    /// same batch (the engine summarises a batch's normal and flagged records apart, then puts them together).
    pub(crate) fn merge_same_batch(&mut self, other: &DatasetStats) {
        let batches = self.n_batches.max(other.n_batches);
        self.merge(other);
        self.n_batches = batches;
    }

    /// Adds `other`'s records to `self`, as if both had been computed from all of them; batch counts add up so
    /// [`typical_batch_size`](Self::typical_batch_size) stays meaningful. See the module docs for what stays exact.
    /// Fields beyond `self`'s [`max_fields`](Self::max_fields) are counted, not added.
    pub fn merge(&mut self, other: &DatasetStats) {
        self.n_records = self.n_records.saturating_add(other.n_records);
        self.n_batches = self.n_batches.saturating_add(other.n_batches);
        self.fields_left_out = self.fields_left_out.saturating_add(other.fields_left_out);
        for (path, theirs) in &other.fields {
            let room = self.fields.len() < self.max_fields;
            match self.fields.get_mut(path) {
                Some(ours) => ours.absorb(theirs, path),
                None if room => {
                    self.fields.insert(path.clone(), theirs.clone());
                }
                None => self.fields_left_out = self.fields_left_out.saturating_add(1),
            }
        }
        for f in self.fields.values_mut() {
            f.refresh(self.n_records);
        }
    }

    /// Reports how `batch` differs from `self` (the history).
    ///
    /// Checks, per field present on both sides (dotted paths):
    /// - dominant kind changed (a field that is all nulls on one side does not count), and nothing else is
    ///   compared for that field;
    /// - null ratio grew by more than `null_ratio_increase`;
    /// - for number and date/time fields: range expansion (batch min below or max above the history's), mean shift
    ///   beyond `mean_shift_std` history standard deviations, and distribution change: PSI over the history's deciles
    ///   or the Kolmogorov–Smirnov D, both estimated from the two sets of 21 quantiles (the distribution taken as
    ///   linear between quantiles), reported when above `psi` / `ks` *and* significant at `alpha` for the number of
    ///   values the quantiles came from (at most 2,048 per side), so small batches do not report noise;
    /// - for boolean fields: mean shift (the mean being the share of `true`);
    /// - for category and boolean fields: the share of the batch's values never seen in the history
    ///   (skipped for identifier-like fields whose distinct values exceed half their values).
    ///
    /// And for the whole batch: new fields, missing fields (when their absence is unlikely by chance), and the batch
    /// size against the history's mean records per batch. Without history (no batches) nothing is reported.
    pub fn compare(&self, batch: &DatasetStats, thresholds: &CompareThresholds) -> Comparison {
        compare::compare(self, batch, thresholds)
    }

    /// Records summarised.
    pub fn n_records(&self) -> u64 {
        self.n_records
    }

    /// Batches merged (1 for [`from_records`](Self::from_records), 0 for [`new`](Self::new)).
    pub fn n_batches(&self) -> u64 {
        self.n_batches
    }

    /// Mean records per batch; `None` without batches.
    pub fn typical_batch_size(&self) -> Option<f64> {
        (self.n_batches > 0).then(|| self.n_records as f64 / self.n_batches as f64)
    }

    /// Statistics per field, by dotted path in sorted order.
    pub fn fields(&self) -> &BTreeMap<String, FieldStats> {
        &self.fields
    }

    /// One field's statistics.
    pub fn field(&self, path: &str) -> Option<&FieldStats> {
        self.fields.get(path)
    }

    /// The statistics as JSON without the merge state (samples, hashes), for an LLM prompt or a report: about a
    /// kilobyte per field instead of up to about 250 kB. Serialising `self` keeps the merge state, which a
    /// persisted history needs.
    pub fn to_prompt_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(Value::Object(fields)) = v.get_mut("fields") {
            for f in fields.values_mut() {
                if let Value::Object(f) = f {
                    f.remove("sketch");
                }
            }
        }
        v
    }
}

fn at(i: usize, e: Error) -> Error {
    match e {
        Error::InvalidRecord { reason } => Error::InvalidRecord {
            reason: format!("record {i}: {reason}"),
        },
        other => other,
    }
}

/// One pass over `records`, on the fields in `keep` (or all); `None` as soon as more than `give_up` fields appear.
fn accumulate<'a, R: Borrow<Value>>(
    records: &'a [R],
    limits: &Limits,
    keep: Option<&HashSet<String>>,
    give_up: usize,
) -> Result<Option<DatasetStats>> {
    let mut acc: BTreeMap<String, FieldAccumulator<'a>> = BTreeMap::new();
    let mut leaves = Vec::new();
    let mut buf = String::new();
    for (i, record) in records.iter().enumerate() {
        flatten::flatten_into(record.borrow(), limits, &mut leaves).map_err(|e| at(i, e))?;
        // A path can repeat (a key `a.b` next to an object `a` with a key `b`): the first value counts.
        leaves.sort_by(|a, b| a.0.cmp(&b.0));
        leaves.dedup_by(|a, b| a.0 == b.0);
        for (path, leaf) in leaves.drain(..) {
            let path: &str = &path;
            if keep.is_some_and(|k| !k.contains(path)) {
                continue;
            }
            let typed = kind::interpret(&leaf);
            let field = match acc.get_mut(path) {
                Some(f) => f,
                None => {
                    if acc.len() >= give_up {
                        return Ok(None);
                    }
                    acc.entry(path.to_string())
                        .or_insert_with(|| FieldAccumulator::new(path))
                }
            };
            field.push(&leaf, &typed, &mut buf);
        }
    }
    let n_records = records.len() as u64;
    Ok(Some(DatasetStats {
        n_records,
        n_batches: 1,
        fields: acc
            .into_iter()
            .map(|(path, f)| (path, f.finish(n_records)))
            .collect(),
        ..DatasetStats::default()
    }))
}

#[cfg(test)]
mod tests;
