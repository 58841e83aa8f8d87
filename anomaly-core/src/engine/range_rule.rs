//! The range rule: the engine's second detector, beside the isolation forest.
//!
//! A record is flagged when one of its measured numbers lies further than `range_tolerance` widths beyond the
//! minimum or maximum of the key's history; a width is the history's 5–95 % range, but at least half its whole
//! range and a tenth of its largest magnitude (so a field that is nearly always the same value is not flagged for
//! any small change). An isolation forest cannot see how far outside
//! its training range a value is (it follows the extreme training point's path), so `amount = 99,999` among
//! amounts of 20–200 may score like an ordinary large order; this rule says what any analyst would. It reads the
//! key's baseline (statistics of the records neither detector flagged) and applies to the fields the model
//! measures: numbers in the role `measurement`, not identifiers, timestamps or categories.
//!
//! The limits are kept per column of the model's vectors, so checking a record costs a comparison per measured
//! field of the vector the forest scores anyway.

use serde::{Deserialize, Serialize};

use super::model::RecordModel;
use crate::explanation::fmt_num;
use crate::stats::DatasetStats;

/// A measured number far outside everything the key's history holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeViolation {
    /// Dotted path of the field.
    pub field: String,
    /// The record's value.
    pub value: f64,
    /// The smallest value of the history.
    pub min: f64,
    /// The largest value of the history.
    pub max: f64,
}

impl RangeViolation {
    /// For example "`amount` = 99,999 is far outside everything seen (20–200)".
    pub fn description(&self) -> String {
        format!(
            "`{}` = {} is far outside everything seen ({}–{})",
            self.field,
            fmt_num(self.value),
            fmt_num(self.min),
            fmt_num(self.max)
        )
    }
}

/// The width that measures how far is far for a field: its 5–95 % range, but at least half its whole range and a
/// tenth of its largest magnitude, so that a field whose values are nearly all equal (a quantity that is almost
/// always 1, a constant) is not flagged for any small change.
fn width(q5: f64, q95: f64, min: f64, max: f64) -> f64 {
    (q95 - q5)
        .max((max - min) / 2.0)
        .max(0.1 * min.abs().max(max.abs()))
        .max(f64::EPSILON)
}

/// The limits of one measured column.
#[derive(Debug, Clone)]
struct Limit {
    column: usize,
    /// The limits in the vector's (scaled) units, and the history's range as it reads.
    low: f64,
    high: f64,
    min: f64,
    max: f64,
    field: usize,
}

/// The range rule of one model over one baseline.
#[derive(Debug, Clone, Default)]
pub(crate) struct RangeRule {
    limits: Vec<Limit>,
}

impl RangeRule {
    /// The rule for `model`'s measured numbers against `baseline`, `tolerance` widths of slack beyond the
    /// baseline's extremes.
    pub(crate) fn new(model: &RecordModel, baseline: &DatasetStats, tolerance: f64) -> RangeRule {
        Self::build(model, baseline, tolerance, false)
    }

    /// The rule with `tolerance` widths of slack beyond the baseline's 5th and 95th percentiles rather than its
    /// extremes: for a baseline that may hold outliers (a history rebuilt after a restart, flagged records
    /// included), which this rule still finds.
    pub(crate) fn robust(
        model: &RecordModel,
        baseline: &DatasetStats,
        tolerance: f64,
    ) -> RangeRule {
        Self::build(model, baseline, tolerance, true)
    }

    fn build(
        model: &RecordModel,
        baseline: &DatasetStats,
        tolerance: f64,
        from_quantiles: bool,
    ) -> RangeRule {
        let v = model.vectorizer();
        let fields = v.fields();
        let limits = v
            .measured_columns()
            .filter_map(|(column, spec)| {
                let n = baseline.field(&spec.path)?.numeric.as_ref()?;
                let (q5, q95) = (*n.quantiles.get(1)?, *n.quantiles.get(19)?);
                // The robust rule's extremes are the percentiles: its width must not read the extremes either.
                let (lo, hi) = if from_quantiles {
                    (q5, q95)
                } else {
                    (n.min, n.max)
                };
                let slack = tolerance * width(q5, q95, lo, hi);
                let (center, scale) = v.column_scale(column);
                let field = fields.iter().position(|f| f.path == spec.path)?;
                Some(Limit {
                    column,
                    low: (lo - slack - center) / scale,
                    high: (hi + slack - center) / scale,
                    min: n.min,
                    max: n.max,
                    field,
                })
            })
            .collect();
        RangeRule { limits }
    }

    /// Whether the rule flags the vector `x` (of the rule's model). A missing value takes the median, so never
    /// fires.
    pub(crate) fn fires(&self, x: &[f64]) -> bool {
        self.limits
            .iter()
            .any(|l| x.get(l.column).is_some_and(|&v| v < l.low || v > l.high))
    }

    /// The limits (by index) the vector `x` lies beyond.
    pub(crate) fn firing<'a>(&'a self, x: &'a [f64]) -> impl Iterator<Item = usize> + 'a {
        self.limits.iter().enumerate().filter_map(|(i, l)| {
            x.get(l.column)
                .is_some_and(|&v| v < l.low || v > l.high)
                .then_some(i)
        })
    }

    /// Why the rule flags the vector `x` of `model`.
    pub(crate) fn violations(&self, model: &RecordModel, x: &[f64]) -> Vec<RangeViolation> {
        let v = model.vectorizer();
        self.limits
            .iter()
            .filter(|l| x.get(l.column).is_some_and(|&v| v < l.low || v > l.high))
            .filter(|l| l.field < v.fields().len())
            .map(|l| {
                let (center, scale) = v.column_scale(l.column);
                RangeViolation {
                    field: v.fields()[l.field].path.clone(),
                    value: x[l.column] * scale + center,
                    min: l.min,
                    max: l.max,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forest::IsolationForestParams;
    use crate::records::flatten::Limits;
    use crate::records::vectorizer::VectorizerParams;
    use serde_json::{Value, json};

    #[test]
    fn a_vector_of_another_width_never_panics() {
        let records: Vec<Value> = (0..50).map(|i| json!({"a": i % 7, "b": i % 5})).collect();
        let model = RecordModel::fit(
            &records,
            &VectorizerParams::new(),
            &IsolationForestParams::new().n_estimators(5),
            1,
        )
        .unwrap();
        let stats = DatasetStats::from_records(&records, &Limits::default()).unwrap();
        let rule = RangeRule::new(&model, &stats, 3.0);
        assert!(rule.fires(&[0.0, 0.0, 1_000.0, 0.0]));
        assert!(!rule.fires(&[1.0]));
        assert!(!rule.fires(&[]));
        assert!(rule.violations(&model, &[]).is_empty());
        assert_eq!(width(1.0, 1.0, 1.0, 5.0), 2.0);
        assert_eq!(width(0.0, 0.0, 0.0, 0.0), f64::EPSILON);
        assert_eq!(width(100.0, 100.0, 100.0, 100.0), 10.0);
    }
}
