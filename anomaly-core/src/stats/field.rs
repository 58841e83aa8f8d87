//! Statistics of one field, built from a batch and merged across batches.

use std::collections::HashMap;
use std::fmt::Write as _;

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::sketch::{
    DistinctSet, Moments, SAMPLE_CAP, TRACKED_CAP, Tracked, field_rng, hash64, merge_samples,
    merge_tracked, reservoir_push, sort_tracked,
};
use crate::records::flatten::Leaf;
use crate::records::kind::{FieldKind, Typed};

/// Top values reported per field.
pub(crate) const TOP_VALUES: usize = 10;
/// Quantile levels reported: 0 %, 5 %, …, 100 %.
pub(crate) const QUANTILE_POINTS: usize = 21;

/// How many values of each kind a field held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// Numbers and numeric strings.
    pub number: u64,
    /// Booleans.
    pub bool: u64,
    /// Date/time strings.
    pub date_time: u64,
    /// Other strings.
    pub category: u64,
    /// Explicit `null`s (a missing field is not counted here).
    pub null: u64,
}

impl KindCounts {
    fn add(&mut self, kind: FieldKind) {
        let slot = match kind {
            FieldKind::Number => &mut self.number,
            FieldKind::Bool => &mut self.bool,
            FieldKind::DateTime => &mut self.date_time,
            FieldKind::Category => &mut self.category,
            FieldKind::Null => &mut self.null,
        };
        *slot = slot.saturating_add(1);
    }

    fn merge(&mut self, o: &KindCounts) {
        self.number = self.number.saturating_add(o.number);
        self.bool = self.bool.saturating_add(o.bool);
        self.date_time = self.date_time.saturating_add(o.date_time);
        self.category = self.category.saturating_add(o.category);
        self.null = self.null.saturating_add(o.null);
    }

    /// Values that are not `null`.
    pub fn non_null(&self) -> u64 {
        self.number
            .saturating_add(self.bool)
            .saturating_add(self.date_time)
            .saturating_add(self.category)
    }

    /// The most frequent non-null kind (ties go to the earlier of number, bool, date/time, category), or
    /// [`FieldKind::Null`] when only nulls were seen.
    pub fn dominant(&self) -> FieldKind {
        let candidates = [
            (self.number, FieldKind::Number),
            (self.bool, FieldKind::Bool),
            (self.date_time, FieldKind::DateTime),
            (self.category, FieldKind::Category),
        ];
        let mut best = (0, FieldKind::Null);
        for (count, kind) in candidates {
            if count > best.0 {
                best = (count, kind);
            }
        }
        best.1
    }
}

/// How many distinct values a field held (values compared as strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cardinality {
    /// Exact count of distinct values, at most 10,000.
    pub distinct: u64,
    /// Whether there were more than 10,000 distinct values (then `distinct` is 10,000).
    pub capped: bool,
    /// `distinct` when not capped; beyond the cap, a k-minimum-values estimate (about 1 % relative error).
    pub estimate: u64,
}

/// Moments and quantiles of a field's numeric values: numbers, numeric strings, booleans as 0/1 and date/times as
/// seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NumericStats {
    /// Numeric values seen.
    pub count: u64,
    /// Smallest value (exact).
    pub min: f64,
    /// Largest value (exact).
    pub max: f64,
    /// Mean (exact up to rounding).
    pub mean: f64,
    /// Population standard deviation (exact up to rounding).
    pub std: f64,
    /// Quantiles at 0 %, 5 %, …, 100 % (21 values, numpy's `linear` method). The first and last are the exact
    /// minimum and maximum.
    pub quantiles: Vec<f64>,
    /// Whether the quantiles were computed from every value; otherwise from a uniform sample of 2,048.
    pub quantiles_exact: bool,
}

impl NumericStats {
    /// The summary of moments `m` and a sample kept sorted (one that is not, as a deserialised older one may be, is
    /// sorted here).
    fn from_parts(m: &Moments, sample: &[f64]) -> Option<Self> {
        if m.count == 0 || sample.is_empty() {
            return None;
        }
        let copy;
        let sorted = if sample.is_sorted_by(|a, b| a.total_cmp(b).is_le()) {
            sample
        } else {
            let mut s = sample.to_vec();
            s.sort_by(f64::total_cmp);
            copy = s;
            &copy
        };
        let mut quantiles: Vec<f64> = (0..QUANTILE_POINTS)
            .map(|i| crate::forest::percentile_sorted(sorted, i as f64 * 5.0))
            .collect();
        quantiles[0] = m.min;
        quantiles[QUANTILE_POINTS - 1] = m.max;
        Some(NumericStats {
            count: m.count,
            min: m.min,
            max: m.max,
            mean: m.mean,
            std: m.std(),
            quantiles,
            quantiles_exact: sample.len() as u64 == m.count,
        })
    }

    pub(crate) fn moments(&self, m2: f64) -> Moments {
        Moments {
            count: self.count,
            min: self.min,
            max: self.max,
            mean: self.mean,
            m2,
        }
    }

    /// How many values the quantiles were computed from.
    pub(crate) fn sample_size(&self) -> u64 {
        self.count.min(SAMPLE_CAP as u64)
    }
}

/// One of a field's most frequent category or boolean values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopValue {
    /// The value (booleans as `true`/`false`), cut to 200 characters.
    pub value: String,
    /// Occurrences.
    pub count: u64,
    /// `count` over the field's non-null values.
    pub share: f64,
}

/// Statistics of one field (a dotted path) over a set of records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldStats {
    /// The most frequent non-null kind ([`FieldKind::Null`] when only nulls were seen).
    pub kind: FieldKind,
    /// Values per kind.
    pub kinds: KindCounts,
    /// Records in which the field appears, `null` included.
    pub present: u64,
    /// Records in which the field is `null` or missing.
    pub null_count: u64,
    /// `null_count` over all records (0 when there are none).
    pub null_ratio: f64,
    /// Distinct values.
    pub cardinality: Cardinality,
    /// Moments and quantiles of the numeric values, when there are any.
    pub numeric: Option<NumericStats>,
    /// The 10 most frequent category and boolean values, most frequent first.
    pub top_values: Vec<TopValue>,
    /// What merging needs beyond the summary above.
    pub(crate) sketch: FieldSketch,
}

/// The mergeable state of a field that the summary is computed from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct FieldSketch {
    /// Sum of squared deviations of the numeric values from their mean.
    pub(crate) m2: f64,
    /// Uniform sample of the numeric values (all of them up to 2,048).
    pub(crate) sample: Vec<f64>,
    pub(crate) distinct: DistinctSet,
    /// The 64 most frequent category and boolean values.
    pub(crate) tracked: Vec<Tracked>,
}

impl FieldStats {
    /// Adds `other` (the same field in other records) to `self`; call [`refresh`](Self::refresh) afterwards.
    pub(crate) fn absorb(&mut self, other: &FieldStats, path: &str) {
        self.kinds.merge(&other.kinds);
        self.present = self.present.saturating_add(other.present);
        let m_self = self.numeric.as_ref().map(|n| n.moments(self.sketch.m2));
        let m_other = other.numeric.as_ref().map(|n| n.moments(other.sketch.m2));
        match (m_self, m_other) {
            (Some(a), Some(b)) => {
                let sample = merge_samples(
                    &self.sketch.sample,
                    a.count,
                    &other.sketch.sample,
                    b.count,
                    path,
                );
                let m = Moments::combine(&a, &b);
                self.sketch.m2 = m.m2;
                self.sketch.sample = sample;
                self.numeric = NumericStats::from_parts(&m, &self.sketch.sample);
            }
            (None, Some(_)) => {
                self.numeric.clone_from(&other.numeric);
                self.sketch.m2 = other.sketch.m2;
                self.sketch.sample.clone_from(&other.sketch.sample);
            }
            _ => {}
        }
        self.sketch.distinct.merge(&other.sketch.distinct);
        self.sketch.tracked = merge_tracked(&self.sketch.tracked, &other.sketch.tracked);
        self.refresh_summary();
    }

    /// Recomputes what depends on the total number of records.
    pub(crate) fn refresh(&mut self, n_records: u64) {
        self.null_count = n_records.saturating_sub(self.kinds.non_null());
        self.null_ratio = if n_records == 0 {
            0.0
        } else {
            self.null_count as f64 / n_records as f64
        };
    }

    fn refresh_summary(&mut self) {
        self.kind = self.kinds.dominant();
        let d = &self.sketch.distinct;
        self.cardinality = Cardinality {
            distinct: d.count(),
            capped: d.capped(),
            estimate: d.estimate(),
        };
        let non_null = self.kinds.non_null().max(1) as f64;
        self.top_values = self
            .sketch
            .tracked
            .iter()
            .take(TOP_VALUES)
            .map(|t| TopValue {
                value: t.value.clone(),
                count: t.count,
                share: t.count as f64 / non_null,
            })
            .collect();
    }

    /// Whether `value` (a category or boolean as a string) was seen in this field: exactly while the distinct set is
    /// not capped, otherwise by the distinct set or the tracked values.
    pub(crate) fn has_seen_hash(&self, hash: u64) -> bool {
        self.sketch.distinct.contains(hash) || self.sketch.tracked.iter().any(|t| t.hash == hash)
    }

    /// The tracked category values (at most 64, most frequent first).
    pub(crate) fn tracked(&self) -> &[Tracked] {
        &self.sketch.tracked
    }
}

/// Builds one field's statistics from the records of one batch.
pub(crate) struct FieldAccumulator<'a> {
    present: u64,
    kinds: KindCounts,
    moments: Moments,
    sample: Vec<f64>,
    rng: ChaCha8Rng,
    distinct: DistinctSet,
    categories: HashMap<&'a str, u64>,
}

impl<'a> FieldAccumulator<'a> {
    pub(crate) fn new(path: &str) -> Self {
        FieldAccumulator {
            present: 0,
            kinds: KindCounts::default(),
            moments: Moments::new(),
            sample: Vec::new(),
            rng: field_rng(path),
            distinct: DistinctSet::default(),
            categories: HashMap::new(),
        }
    }

    /// Adds the field's value in one record; `buf` is scratch space.
    pub(crate) fn push(&mut self, leaf: &Leaf<'a>, typed: &Typed<'a>, buf: &mut String) {
        self.present += 1;
        self.kinds.add(typed.kind());
        let numeric = match *typed {
            Typed::Null => return,
            Typed::Number(v) => Some(v),
            Typed::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            Typed::DateTime(m) => Some(m.epoch_seconds).filter(|v| v.is_finite()),
            Typed::Category(_) => None,
        };
        if let Some(v) = numeric {
            reservoir_push(&mut self.sample, self.moments.count, v, &mut self.rng);
            self.moments.push(v);
        }
        let text: &str = match *leaf {
            Leaf::Null => return,
            Leaf::Bool(b) => {
                if b {
                    "true"
                } else {
                    "false"
                }
            }
            Leaf::String(s) => s,
            Leaf::Number(v) => {
                buf.clear();
                let _ = write!(buf, "{v}");
                buf.as_str()
            }
        };
        self.distinct.insert(hash64(text.as_bytes()));
        match *typed {
            Typed::Category(s) => *self.categories.entry(s).or_insert(0) += 1,
            Typed::Bool(b) => {
                *self
                    .categories
                    .entry(if b { "true" } else { "false" })
                    .or_insert(0) += 1
            }
            _ => {}
        }
    }

    pub(crate) fn finish(mut self, n_records: u64) -> FieldStats {
        // The sample is kept sorted: quantiles and merges read it without sorting again.
        self.sample.sort_by(f64::total_cmp);
        let mut tracked: Vec<Tracked> = self
            .categories
            .into_iter()
            .map(|(value, count)| Tracked::new(value, count))
            .collect();
        sort_tracked(&mut tracked);
        tracked.truncate(TRACKED_CAP);
        let mut stats = FieldStats {
            kind: FieldKind::Null,
            kinds: self.kinds,
            present: self.present,
            null_count: 0,
            null_ratio: 0.0,
            cardinality: Cardinality::default(),
            numeric: NumericStats::from_parts(&self.moments, &self.sample),
            top_values: Vec::new(),
            sketch: FieldSketch {
                m2: self.moments.m2,
                sample: self.sample,
                distinct: self.distinct,
                tracked,
            },
        };
        stats.refresh_summary();
        stats.refresh(n_records);
        stats
    }
}
