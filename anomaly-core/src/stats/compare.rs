//! How a new batch differs from the history of earlier batches.

use serde::{Deserialize, Serialize};

use super::DatasetStats;
use super::distribution;
use super::field::FieldStats;
use crate::explanation::fmt_num;
use crate::records::kind::FieldKind;

/// When [`DatasetStats::compare`] reports a difference.
///
/// | threshold | default | reported when |
/// | --- | --- | --- |
/// | `mean_shift_std` | 1 | the batch mean is more than this many history standard deviations from the history mean |
/// | `psi` | 0.2 | PSI over the history's deciles exceeds this (and its significance test, see `alpha`) |
/// | `ks` | 0.2 | the Kolmogorov–Smirnov D exceeds this (and its significance test) |
/// | `alpha` | 0.001 | significance level of the distribution tests and of a field's absence |
/// | `result_size_factor` | 3 | the batch holds more than this factor times, or less than its inverse, the typical batch |
/// | `null_ratio_increase` | 0.25 | the null ratio grew by more than this (absolute) |
/// | `unseen_share` | 0.1 | more than this share of a category field's values were never seen in the history |
///
/// A NaN threshold never reports; `alpha` outside `(0, 0.5]` turns the significance requirements off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareThresholds {
    /// Mean shift, in history standard deviations (default 1).
    pub mean_shift_std: f64,
    /// Population stability index (default 0.2).
    pub psi: f64,
    /// Kolmogorov–Smirnov statistic (default 0.2).
    pub ks: f64,
    /// Significance level (default 0.001).
    pub alpha: f64,
    /// Factor between the batch size and the typical batch size (default 3).
    pub result_size_factor: f64,
    /// Absolute increase of the null ratio (default 0.25).
    pub null_ratio_increase: f64,
    /// Share of never-seen category values (default 0.1).
    pub unseen_share: f64,
}

impl Default for CompareThresholds {
    fn default() -> Self {
        CompareThresholds {
            mean_shift_std: 1.0,
            psi: 0.2,
            ks: 0.2,
            alpha: 0.001,
            result_size_factor: 3.0,
            null_ratio_increase: 0.25,
            unseen_share: 0.1,
        }
    }
}

/// A field whose dominant kind changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeChange {
    /// Dotted path.
    pub field: String,
    /// Dominant kind in the history.
    pub history: FieldKind,
    /// Dominant kind in the batch.
    pub batch: FieldKind,
}

/// A field that is null or missing much more often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NullIncrease {
    /// Dotted path.
    pub field: String,
    /// Null ratio in the history.
    pub history_ratio: f64,
    /// Null ratio in the batch.
    pub batch_ratio: f64,
}

/// A numeric field with values outside the history's range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeExpansion {
    /// Dotted path.
    pub field: String,
    /// Smallest value in the history.
    pub history_min: f64,
    /// Largest value in the history.
    pub history_max: f64,
    /// Smallest value in the batch.
    pub batch_min: f64,
    /// Largest value in the batch.
    pub batch_max: f64,
}

/// A numeric field whose mean moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanShift {
    /// Dotted path.
    pub field: String,
    /// Mean in the history.
    pub history_mean: f64,
    /// Population standard deviation in the history.
    pub history_std: f64,
    /// Mean in the batch.
    pub batch_mean: f64,
    /// `(batch_mean − history_mean) / history_std`, signed and finite (a zero standard deviation is floored at a
    /// relative epsilon, so a constant history gives a very large shift).
    pub shift_std: f64,
}

/// A numeric field whose distribution changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributionChange {
    /// Dotted path.
    pub field: String,
    /// Population stability index over the history's deciles (estimated from quantiles).
    pub psi: f64,
    /// Two-sample Kolmogorov–Smirnov D (estimated from quantiles).
    pub ks: f64,
}

/// A category field with values the history never held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryChange {
    /// Dotted path.
    pub field: String,
    /// Share of the batch's category and boolean values never seen in the history (a lower bound when the batch
    /// had more than 64 distinct values).
    pub unseen_share: f64,
    /// Up to five of the unseen values, most frequent first.
    pub examples: Vec<String>,
}

/// The batch's size against the history's typical batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultSize {
    /// Mean records per batch in the history.
    pub typical_records: f64,
    /// Batch records over `typical_records`; `None` when the history's batches were all empty.
    pub ratio: Option<f64>,
    /// Whether the ratio is beyond the threshold factor either way (or the batch has records and the history none).
    pub flagged: bool,
}

/// What [`DatasetStats::compare`] found. Lists are empty when nothing was found; each holds only the reported items.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Records in the history.
    pub history_records: u64,
    /// Batches in the history.
    pub history_batches: u64,
    /// Records in the batch.
    pub batch_records: u64,
    /// The batch's size against the typical batch; `None` without history.
    pub result_size: Option<ResultSize>,
    /// Fields in the batch that the history never had.
    pub new_fields: Vec<String>,
    /// Fields of the history absent from the batch, when their absence is unlikely by chance: a field present in a
    /// share `p` of the history's records is reported when `(1 − p)^m ≤ alpha` for a batch of `m` records.
    pub missing_fields: Vec<String>,
    /// Fields whose dominant kind changed (nulls aside).
    pub type_changes: Vec<TypeChange>,
    /// Fields null or missing much more often.
    pub null_increases: Vec<NullIncrease>,
    /// Numeric fields with values beyond the history's range.
    pub range_expansions: Vec<RangeExpansion>,
    /// Numeric fields whose mean moved, largest shift first.
    pub mean_shifts: Vec<MeanShift>,
    /// Numeric fields whose distribution changed, largest PSI first.
    pub distribution_changes: Vec<DistributionChange>,
    /// Category fields with never-seen values, largest share first.
    pub category_changes: Vec<CategoryChange>,
}

/// Names listed per item in [`Comparison::summary`].
const SUMMARY_ITEMS: usize = 5;

impl Comparison {
    /// Whether nothing was reported (an unflagged result size does not count).
    pub fn is_empty(&self) -> bool {
        !self.result_size.as_ref().is_some_and(|r| r.flagged)
            && self.new_fields.is_empty()
            && self.missing_fields.is_empty()
            && self.type_changes.is_empty()
            && self.null_increases.is_empty()
            && self.range_expansions.is_empty()
            && self.mean_shifts.is_empty()
            && self.distribution_changes.is_empty()
            && self.category_changes.is_empty()
    }

    /// One line describing what was reported, for logs and LLM prompts; `"no changes"` when empty.
    ///
    /// ```text
    /// result size 10× typical (1,000 records vs 100); new fields: region; type changes: status number→category;
    /// mean shifts: latency +2 std
    /// ```
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(r) = self.result_size.as_ref().filter(|r| r.flagged) {
            let records = fmt_num(self.batch_records as f64);
            let typical = fmt_num(r.typical_records);
            parts.push(match r.ratio {
                Some(ratio) => {
                    format!(
                        "result size {}× typical ({records} records vs {typical})",
                        fmt_num(ratio)
                    )
                }
                None => format!("result size {records} records where the history had none"),
            });
        }
        list(&mut parts, "new fields", &self.new_fields, |f| f.clone());
        list(&mut parts, "missing fields", &self.missing_fields, |f| {
            f.clone()
        });
        list(&mut parts, "type changes", &self.type_changes, |t| {
            format!(
                "{} {}→{}",
                t.field,
                kind_name(t.history),
                kind_name(t.batch)
            )
        });
        list(&mut parts, "more nulls", &self.null_increases, |n| {
            format!(
                "{} {}→{}",
                n.field,
                percent(n.history_ratio),
                percent(n.batch_ratio)
            )
        });
        list(
            &mut parts,
            "range expansions",
            &self.range_expansions,
            |r| {
                format!(
                    "{} [{}, {}]→[{}, {}]",
                    r.field,
                    fmt_num(r.history_min),
                    fmt_num(r.history_max),
                    fmt_num(r.batch_min),
                    fmt_num(r.batch_max)
                )
            },
        );
        list(&mut parts, "mean shifts", &self.mean_shifts, |m| {
            let sign = if m.shift_std >= 0.0 { "+" } else { "" };
            format!("{} {sign}{} std", m.field, fmt_num(m.shift_std))
        });
        list(
            &mut parts,
            "distribution changes",
            &self.distribution_changes,
            |d| format!("{} (PSI {}, KS {})", d.field, fmt_num(d.psi), fmt_num(d.ks)),
        );
        list(&mut parts, "new categories", &self.category_changes, |c| {
            format!(
                "{} {} unseen ({})",
                c.field,
                percent(c.unseen_share),
                c.examples.join(", ")
            )
        });
        if parts.is_empty() {
            "no changes".to_string()
        } else {
            parts.join("; ")
        }
    }
}

fn list<T>(parts: &mut Vec<String>, title: &str, items: &[T], show: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    let mut shown: Vec<String> = items.iter().take(SUMMARY_ITEMS).map(show).collect();
    if items.len() > SUMMARY_ITEMS {
        shown.push(format!("and {} more", items.len() - SUMMARY_ITEMS));
    }
    parts.push(format!("{title}: {}", shown.join(", ")));
}

fn percent(share: f64) -> String {
    format!("{}%", fmt_num(share * 100.0))
}

fn kind_name(kind: FieldKind) -> &'static str {
    match kind {
        FieldKind::Number => "number",
        FieldKind::Bool => "bool",
        FieldKind::DateTime => "date_time",
        FieldKind::Category => "category",
        FieldKind::Null => "null",
    }
}

/// Whether a field present in a share `present_share` of the history's records is unlikely (at level `alpha`) to be
/// absent from all `m` records of a batch by chance.
fn absence_is_significant(present_share: f64, m: u64, alpha: f64) -> bool {
    if m == 0 {
        return false;
    }
    if !(alpha > 0.0 && alpha <= 0.5) {
        return true;
    }
    let p = present_share.clamp(0.0, 1.0);
    // (1 − p)^m in logs, so large batches do not underflow into a wrong answer.
    let log_chance = m as f64 * (-p).ln_1p();
    log_chance <= alpha.ln()
}

pub(super) fn compare(
    history: &DatasetStats,
    batch: &DatasetStats,
    th: &CompareThresholds,
) -> Comparison {
    let mut c = Comparison {
        history_records: history.n_records,
        history_batches: history.n_batches,
        batch_records: batch.n_records,
        ..Comparison::default()
    };
    if history.n_batches == 0 {
        return c;
    }
    let typical = history.n_records as f64 / history.n_batches as f64;
    let ratio = (typical > 0.0).then(|| batch.n_records as f64 / typical);
    let f = th.result_size_factor;
    c.result_size = Some(ResultSize {
        typical_records: typical,
        ratio,
        flagged: match ratio {
            Some(r) => r > f || r * f < 1.0,
            None => batch.n_records > 0,
        },
    });
    for name in batch.fields.keys() {
        if !history.fields.contains_key(name) {
            c.new_fields.push(name.clone());
        }
    }
    for (name, h) in &history.fields {
        let Some(b) = batch.fields.get(name) else {
            let p = if history.n_records == 0 {
                0.0
            } else {
                h.present as f64 / history.n_records as f64
            };
            if absence_is_significant(p, batch.n_records, th.alpha) {
                c.missing_fields.push(name.clone());
            }
            continue;
        };
        compare_field(name, h, b, th, &mut c);
    }
    c.mean_shifts.sort_by(|a, b| {
        b.shift_std
            .abs()
            .total_cmp(&a.shift_std.abs())
            .then_with(|| a.field.cmp(&b.field))
    });
    c.distribution_changes
        .sort_by(|a, b| b.psi.total_cmp(&a.psi).then_with(|| a.field.cmp(&b.field)));
    c.category_changes.sort_by(|a, b| {
        b.unseen_share
            .total_cmp(&a.unseen_share)
            .then_with(|| a.field.cmp(&b.field))
    });
    c
}

fn compare_field(
    name: &str,
    h: &FieldStats,
    b: &FieldStats,
    th: &CompareThresholds,
    c: &mut Comparison,
) {
    if h.kind != FieldKind::Null && b.kind != FieldKind::Null && h.kind != b.kind {
        c.type_changes.push(TypeChange {
            field: name.to_string(),
            history: h.kind,
            batch: b.kind,
        });
        return;
    }
    if b.null_ratio - h.null_ratio > th.null_ratio_increase {
        c.null_increases.push(NullIncrease {
            field: name.to_string(),
            history_ratio: h.null_ratio,
            batch_ratio: b.null_ratio,
        });
    }
    match h.kind {
        FieldKind::Number | FieldKind::DateTime if b.kind == h.kind => {
            compare_numeric(name, h, b, th, c)
        }
        FieldKind::Bool => {
            // The mean of a boolean field is its share of `true`.
            if b.kind == h.kind {
                mean_shift(name, h, b, th, c);
            }
            compare_categories(name, h, b, th, c);
        }
        FieldKind::Category => compare_categories(name, h, b, th, c),
        _ => {}
    }
}

fn mean_shift(
    name: &str,
    h: &FieldStats,
    b: &FieldStats,
    th: &CompareThresholds,
    c: &mut Comparison,
) {
    let (Some(hn), Some(bn)) = (&h.numeric, &b.numeric) else {
        return;
    };
    let diff = bn.mean - hn.mean;
    let shift = crate::stream::z_score(diff.abs(), hn.std, hn.mean).copysign(diff);
    if shift.abs() > th.mean_shift_std {
        c.mean_shifts.push(MeanShift {
            field: name.to_string(),
            history_mean: hn.mean,
            history_std: hn.std,
            batch_mean: bn.mean,
            shift_std: shift,
        });
    }
}

fn compare_numeric(
    name: &str,
    h: &FieldStats,
    b: &FieldStats,
    th: &CompareThresholds,
    c: &mut Comparison,
) {
    let (Some(hn), Some(bn)) = (&h.numeric, &b.numeric) else {
        return;
    };
    if bn.min < hn.min || bn.max > hn.max {
        c.range_expansions.push(RangeExpansion {
            field: name.to_string(),
            history_min: hn.min,
            history_max: hn.max,
            batch_min: bn.min,
            batch_max: bn.max,
        });
    }
    mean_shift(name, h, b, th, c);
    let (Some(binned), Some(ks)) = (
        distribution::bins(&hn.quantiles, &bn.quantiles),
        distribution::ks(&hn.quantiles, &bn.quantiles),
    ) else {
        return;
    };
    let (n, m) = (hn.sample_size(), bn.sample_size());
    let (pearson_crit, ks_crit) = distribution::critical(th.alpha, binned.bins, n, m);
    let pearson = binned.pearson * (n as f64 * m as f64 / (n as f64 + m as f64).max(1.0));
    let psi = binned.psi;
    if (psi > th.psi && pearson > pearson_crit) || (ks > th.ks && ks > ks_crit) {
        c.distribution_changes.push(DistributionChange {
            field: name.to_string(),
            psi,
            ks,
        });
    }
}

/// Skipped for identifier-like fields (more distinct values than half the values, or beyond the distinct cap),
/// where most values are new in every batch.
fn compare_categories(
    name: &str,
    h: &FieldStats,
    b: &FieldStats,
    th: &CompareThresholds,
    c: &mut Comparison,
) {
    let hc = &h.cardinality;
    if hc.capped || hc.distinct as f64 > 0.5 * h.kinds.non_null() as f64 {
        return;
    }
    let total = b.kinds.category.saturating_add(b.kinds.bool);
    if total == 0 {
        return;
    }
    let mut unseen = 0u64;
    let mut examples = Vec::new();
    for t in b.tracked() {
        if !h.has_seen_hash(t.hash) {
            unseen = unseen.saturating_add(t.count);
            if examples.len() < SUMMARY_ITEMS {
                examples.push(t.value.clone());
            }
        }
    }
    let share = unseen as f64 / total as f64;
    if share > th.unseen_share {
        c.category_changes.push(CategoryChange {
            field: name.to_string(),
            unseen_share: share,
            examples,
        });
    }
}
