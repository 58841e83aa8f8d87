//! The learned schema that turns records into fixed-width feature vectors, and explains them in field names.
//!
//! Encoding per field, by the kind it had in training (the most frequent non-null kind):
//!
//! | kind | columns |
//! | --- | --- |
//! | number | value, missing |
//! | boolean | 0/1, missing |
//! | date/time | epoch seconds, sin/cos of hour of day, sin/cos of day of week, missing |
//! | category | `hash_width` signed buckets (MurmurHash3 of `path=value`), training frequency (optional), missing |
//! | always null | missing |
//!
//! A missing or null value sets the missing indicator and takes the learned imputation value (the training median).
//! Fields are laid out in sorted path order, so the same record gives the same vector in any process. A record with
//! a field the schema does not know is still scored on the known fields, and the new field is reported; a value of
//! another type than learned counts as missing and is reported; an unseen category lands in its hash bucket with
//! frequency 0 and is reported. Nothing is padded or truncated: the width is the schema's.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::flatten::{Leaf, Limits, flatten_into};
use super::hashing::bucket;
use super::kind::{FieldKind, Moment, Typed, interpret, interpret_str};
use crate::error::{Error, Result};
use crate::explanation::{Attribution, describe_attribution, fmt_num};
use crate::forest::percentile;

thread_local! {
    /// Scratch for the `path=value` token a category hashes, so encoding does not allocate per field.
    static TOKEN: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// How numeric columns are scaled after encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaler {
    /// No scaling (isolation forests are invariant to per-feature scaling).
    None,
    /// `(x − mean) / std` (scikit-learn's `StandardScaler`).
    Standard,
    /// `(x − median) / IQR` (scikit-learn's `RobustScaler`).
    Robust,
}

/// Parameters of a [`Vectorizer`].
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `hash_width` | 8 | hash buckets per categorical field |
/// | `frequency_encoding` | `true` | add a column with the category's share in training |
/// | `scaler` | `None` | scaling of value, epoch and frequency columns |
/// | `limits` | depth 32, 10,000 fields | what one record may contain |
/// | `max_categories` | 1,000 | categories remembered per field (the most frequent) |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorizerParams {
    hash_width: usize,
    frequency_encoding: bool,
    scaler: Scaler,
    limits: Limits,
    max_categories: usize,
}

impl Default for VectorizerParams {
    fn default() -> Self {
        Self::new()
    }
}

impl VectorizerParams {
    /// The defaults in the table above.
    pub fn new() -> Self {
        VectorizerParams {
            hash_width: 8,
            frequency_encoding: true,
            scaler: Scaler::None,
            limits: Limits::default(),
            max_categories: 1_000,
        }
    }

    /// Hash buckets per categorical field (default 8).
    pub fn hash_width(mut self, w: usize) -> Self {
        self.hash_width = w;
        self
    }

    /// Add each category's training frequency as a column (default `true`).
    pub fn frequency_encoding(mut self, on: bool) -> Self {
        self.frequency_encoding = on;
        self
    }

    /// Scaling of numeric columns (default [`Scaler::None`]).
    pub fn scaler(mut self, s: Scaler) -> Self {
        self.scaler = s;
        self
    }

    /// Bounds on one record (default depth 32, 10,000 fields).
    pub fn limits(mut self, l: Limits) -> Self {
        self.limits = l;
        self
    }

    /// Categories remembered per field (default 1,000).
    pub fn max_categories(mut self, n: usize) -> Self {
        self.max_categories = n;
        self
    }

    /// Learns the schema, imputation values, category frequencies and scaling from `records`.
    ///
    /// # Errors
    /// [`Error::EmptyInput`] for no records, [`Error::InvalidRecord`] (naming the record) for a record that is not
    /// an object or exceeds the limits, [`Error::InvalidParameter`] for a zero `hash_width`.
    pub fn fit(&self, records: &[Value]) -> Result<Vectorizer> {
        if self.hash_width == 0 {
            return Err(Error::invalid("hash_width", "must be at least 1"));
        }
        if records.is_empty() {
            return Err(Error::EmptyInput { what: "no records" });
        }
        let mut observed: BTreeMap<String, Observed> = BTreeMap::new();
        let mut leaves = Vec::new();
        for (i, record) in records.iter().enumerate() {
            flatten_into(record, &self.limits, &mut leaves).map_err(|e| at_record(i, e))?;
            for (path, leaf) in &leaves {
                let o = observed.entry(path.to_string()).or_default();
                o.observe(leaf);
            }
        }
        let n = records.len() as f64;
        let mut fields = Vec::with_capacity(observed.len());
        let mut offset = 0;
        for (path, o) in observed {
            let spec = o.into_spec(path, offset, n, self);
            offset += spec.width;
            fields.push(spec);
        }
        let mut v = Vectorizer {
            params: self.clone(),
            fields,
            width: offset,
            template: Vec::new(),
            scale: Vec::new(),
        };
        v.template = v.build_template();
        v.scale = vec![(0.0, 1.0); v.width];
        if self.scaler != Scaler::None {
            v.scale = v.fit_scale(records)?;
        }
        Ok(v)
    }
}

fn at_record(i: usize, e: Error) -> Error {
    match e {
        Error::InvalidRecord { reason } => Error::InvalidRecord {
            reason: format!("record {i}: {reason}"),
        },
        other => other,
    }
}

/// What fitting saw of one field.
#[derive(Default)]
struct Observed {
    kinds: BTreeMap<FieldKind, usize>,
    numbers: Vec<f64>,
    categories: BTreeMap<String, u64>,
    present: usize,
}

impl Observed {
    fn observe(&mut self, leaf: &Leaf<'_>) {
        let typed = interpret(leaf);
        *self.kinds.entry(typed.kind()).or_default() += 1;
        if typed.kind() != FieldKind::Null {
            self.present += 1;
        }
        match typed {
            Typed::Number(v) => self.numbers.push(v),
            Typed::Bool(b) => self.numbers.push(b as u8 as f64),
            Typed::DateTime(m) => self.numbers.push(m.epoch_seconds),
            Typed::Category(_) | Typed::Null => {}
        }
        if let Some(token) = token(leaf) {
            *self.categories.entry(token.into_owned()).or_default() += 1;
        }
    }

    fn into_spec(mut self, path: String, offset: usize, n: f64, p: &VectorizerParams) -> FieldSpec {
        // The most frequent non-null kind; ties go to the most general (category, date/time, number, boolean).
        let priority = |k: &FieldKind| match k {
            FieldKind::Category => 4,
            FieldKind::DateTime => 3,
            FieldKind::Number => 2,
            FieldKind::Bool => 1,
            FieldKind::Null => 0,
        };
        let kind = self
            .kinds
            .iter()
            .filter(|(k, _)| **k != FieldKind::Null)
            .max_by_key(|(k, c)| (**c, priority(k)))
            .map(|(k, _)| *k)
            .unwrap_or(FieldKind::Null);
        let width = match kind {
            FieldKind::Number | FieldKind::Bool => 2,
            FieldKind::DateTime => 6,
            FieldKind::Category => p.hash_width + usize::from(p.frequency_encoding) + 1,
            FieldKind::Null => 1,
        };
        self.numbers.sort_by(f64::total_cmp);
        let numeric = matches!(
            kind,
            FieldKind::Number | FieldKind::Bool | FieldKind::DateTime
        ) && !self.numbers.is_empty();
        let (imputation, typical) = if numeric {
            let q = |p: f64| percentile(&self.numbers, p);
            (q(50.0), (q(5.0), q(95.0)))
        } else {
            (0.0, (0.0, 0.0))
        };
        let category_total = self.categories.values().sum();
        let categories = if kind == FieldKind::Category {
            let mut counts: Vec<(String, u64)> =
                std::mem::take(&mut self.categories).into_iter().collect();
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.truncate(p.max_categories);
            counts.into_iter().collect()
        } else {
            BTreeMap::new()
        };
        FieldSpec {
            path,
            kind,
            offset,
            width,
            presence: self.present as f64 / n,
            imputation,
            typical,
            categories,
            category_total,
        }
    }
}

/// The string a categorical field hashes: the string itself, or the JSON text of a number or boolean.
fn token<'a>(leaf: &Leaf<'a>) -> Option<std::borrow::Cow<'a, str>> {
    match *leaf {
        Leaf::String(s) => Some(s.into()),
        Leaf::Number(v) => Some(fmt_token(v).into()),
        Leaf::Bool(b) => Some(if b { "true" } else { "false" }.into()),
        Leaf::Null => None,
    }
}

fn fmt_token(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// What the schema knows about one field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Dotted path of the field.
    pub path: String,
    /// The kind it had in training.
    pub kind: FieldKind,
    /// First column of the field.
    pub offset: usize,
    /// Number of columns.
    pub width: usize,
    /// Share of training records where the field was present and not null.
    pub presence: f64,
    /// Value used when the field is missing (training median; 0 for categories).
    pub imputation: f64,
    /// 5th and 95th percentiles of the field's numeric values in training (epoch seconds for date/times).
    pub typical: (f64, f64),
    /// Most frequent categories in training and their counts.
    pub categories: BTreeMap<String, u64>,
    /// Number of categorical observations in training.
    pub category_total: u64,
}

/// Things worth telling about a record besides its vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordNotes {
    /// Fields the schema did not have (not part of the vector).
    pub unseen_fields: Vec<String>,
    /// Fields whose value had another kind than in training: `(path, learned, got)`.
    pub type_changes: Vec<(String, FieldKind, FieldKind)>,
    /// Categories never seen in training: `(path, value)`.
    pub unseen_categories: Vec<(String, String)>,
}

impl RecordNotes {
    /// Whether there is nothing to tell.
    pub fn is_empty(&self) -> bool {
        self.unseen_fields.is_empty()
            && self.type_changes.is_empty()
            && self.unseen_categories.is_empty()
    }

    fn clear(&mut self) {
        self.unseen_fields.clear();
        self.type_changes.clear();
        self.unseen_categories.clear();
    }
}

/// One field's share in a verdict, in words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldAttribution {
    /// Dotted path of the field.
    pub field: String,
    /// Share of the verdict credited to the field (sum of its columns' attributions).
    pub contribution: f64,
    /// The record's value for the field, if present.
    pub value: Option<Value>,
    /// For example "`amount` = 99,812 is above the typical 12–480".
    pub description: String,
    /// Whether the value itself is unusual: outside the typical range, an unseen or rare category, missing where
    /// it is usually present, of another type than learnt, or a field never seen.
    pub unusual: bool,
}

/// A fitted record vectoriser: the schema learnt from training records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vectorizer {
    params: VectorizerParams,
    fields: Vec<FieldSpec>,
    width: usize,
    /// The vector of a record with every field missing, before scaling.
    template: Vec<f64>,
    /// `(center, scale)` per column: `(x − center) / scale`.
    scale: Vec<(f64, f64)>,
}

impl Vectorizer {
    /// Number of columns of every vector.
    pub fn n_features(&self) -> usize {
        self.width
    }

    /// The fields of the schema, in column order.
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &VectorizerParams {
        &self.params
    }

    /// Column names: `amount`, `amount.missing`, `created_at.hour_sin`, `country#3`, `country.freq`, …
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width);
        for f in &self.fields {
            let p = &f.path;
            match f.kind {
                FieldKind::Number | FieldKind::Bool => names.push(p.clone()),
                FieldKind::DateTime => {
                    for s in [
                        "epoch",
                        "hour_sin",
                        "hour_cos",
                        "weekday_sin",
                        "weekday_cos",
                    ] {
                        names.push(format!("{p}.{s}"));
                    }
                }
                FieldKind::Category => {
                    names.extend((0..self.params.hash_width).map(|b| format!("{p}#{b}")));
                    if self.params.frequency_encoding {
                        names.push(format!("{p}.freq"));
                    }
                }
                FieldKind::Null => {}
            }
            names.push(format!("{p}.missing"));
        }
        names
    }

    fn field(&self, path: &str) -> Option<&FieldSpec> {
        self.fields
            .binary_search_by(|f| f.path.as_str().cmp(path))
            .ok()
            .map(|i| &self.fields[i])
    }

    fn build_template(&self) -> Vec<f64> {
        let mut t = vec![0.0; self.width];
        for f in &self.fields {
            let o = f.offset;
            match f.kind {
                FieldKind::Number | FieldKind::Bool => t[o] = f.imputation,
                FieldKind::DateTime => {
                    let m = moment_of_epoch(f.imputation);
                    write_moment(&mut t[o..o + 5], &m);
                }
                FieldKind::Category | FieldKind::Null => {}
            }
            t[o + f.width - 1] = 1.0;
        }
        t
    }

    fn fit_scale(&self, records: &[Value]) -> Result<Vec<(f64, f64)>> {
        let mut notes = RecordNotes::default();
        let mut rows = Vec::with_capacity(records.len());
        let mut buf = Vec::new();
        for r in records {
            self.encode(r, &mut buf, &mut notes)?;
            rows.push(buf.clone());
        }
        let mut scale = vec![(0.0, 1.0); self.width];
        for c in self.scaled_columns() {
            let mut col: Vec<f64> = rows.iter().map(|r| r[c]).collect();
            col.sort_by(f64::total_cmp);
            let (center, spread) = match self.params.scaler {
                Scaler::Standard => {
                    let mean = col.iter().map(|v| v / col.len() as f64).sum::<f64>();
                    let var = col
                        .iter()
                        .map(|v| (v - mean).powi(2) / col.len() as f64)
                        .sum::<f64>();
                    (mean, var.sqrt())
                }
                Scaler::Robust => (
                    percentile(&col, 50.0),
                    percentile(&col, 75.0) - percentile(&col, 25.0),
                ),
                Scaler::None => (0.0, 1.0),
            };
            // A constant column keeps its scale, as scikit-learn's scalers do.
            scale[c] = (
                center,
                if spread > 0.0 && spread.is_finite() {
                    spread
                } else {
                    1.0
                },
            );
        }
        Ok(scale)
    }

    /// Columns that carry magnitudes: values, epochs and frequencies (not indicators, hashes or cycles).
    fn scaled_columns(&self) -> Vec<usize> {
        let mut cols = Vec::new();
        for f in &self.fields {
            match f.kind {
                FieldKind::Number | FieldKind::DateTime => cols.push(f.offset),
                FieldKind::Category if self.params.frequency_encoding => {
                    cols.push(f.offset + self.params.hash_width)
                }
                _ => {}
            }
        }
        cols
    }

    /// The vector of one record, with notes on what did not fit the schema.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits.
    pub fn transform(&self, record: &Value) -> Result<(Vec<f64>, RecordNotes)> {
        let mut out = Vec::with_capacity(self.width);
        let mut notes = RecordNotes::default();
        self.transform_into(record, &mut out, &mut notes)?;
        Ok((out, notes))
    }

    /// As [`transform`](Self::transform), reusing `out` and `notes`.
    ///
    /// # Errors
    /// As [`transform`](Self::transform).
    pub fn transform_into(
        &self,
        record: &Value,
        out: &mut Vec<f64>,
        notes: &mut RecordNotes,
    ) -> Result<()> {
        self.encode(record, out, notes)?;
        if self.params.scaler != Scaler::None {
            for (v, &(c, s)) in out.iter_mut().zip(&self.scale) {
                *v = (*v - c) / s;
            }
        }
        Ok(())
    }

    /// Vectors of many records as a matrix (rows in order).
    ///
    /// # Errors
    /// As [`transform`](Self::transform), naming the record.
    pub fn transform_many(&self, records: &[Value]) -> Result<ndarray::Array2<f64>> {
        let mut data = Vec::with_capacity(records.len() * self.width);
        let mut row = Vec::with_capacity(self.width);
        let mut notes = RecordNotes::default();
        for (i, r) in records.iter().enumerate() {
            self.transform_into(r, &mut row, &mut notes)
                .map_err(|e| at_record(i, e))?;
            data.extend_from_slice(&row);
        }
        ndarray::Array2::from_shape_vec((records.len(), self.width), data)
            .map_err(|e| Error::invalid("records", e.to_string()))
    }

    fn encode(&self, record: &Value, out: &mut Vec<f64>, notes: &mut RecordNotes) -> Result<()> {
        notes.clear();
        let mut leaves = Vec::new();
        flatten_into(record, &self.params.limits, &mut leaves)?;
        out.clear();
        out.extend_from_slice(&self.template);
        for (path, leaf) in &leaves {
            let Some(f) = self.field(path) else {
                if !matches!(leaf, Leaf::Null) {
                    notes.unseen_fields.push(path.to_string());
                }
                continue;
            };
            let o = f.offset;
            let cols = &mut out[o..o + f.width];
            let encoded = match f.kind {
                FieldKind::Category => match token(leaf) {
                    Some(t) => {
                        let (b, sign) = TOKEN.with_borrow_mut(|token| {
                            token.clear();
                            token.push_str(&f.path);
                            token.push('=');
                            token.push_str(&t);
                            bucket(token, self.params.hash_width)
                        });
                        cols[b] += sign;
                        let count = f.categories.get(t.as_ref()).copied();
                        if self.params.frequency_encoding {
                            cols[self.params.hash_width] =
                                count.unwrap_or(0) as f64 / f.category_total.max(1) as f64;
                        }
                        if count.is_none() {
                            notes
                                .unseen_categories
                                .push((f.path.clone(), t.into_owned()));
                        }
                        if !matches!(leaf, Leaf::String(_)) {
                            notes.type_changes.push((
                                f.path.clone(),
                                f.kind,
                                interpret(leaf).kind(),
                            ));
                        }
                        true
                    }
                    None => false,
                },
                FieldKind::Number | FieldKind::Bool => {
                    let typed = match leaf {
                        Leaf::String(s) => interpret_str(s),
                        other => interpret(other),
                    };
                    let value = match typed {
                        Typed::Number(v) => Some(v),
                        Typed::Bool(b) => Some(b as u8 as f64),
                        Typed::DateTime(m) => Some(m.epoch_seconds),
                        Typed::Category(_) | Typed::Null => None,
                    };
                    if typed.kind() != f.kind && typed.kind() != FieldKind::Null {
                        notes
                            .type_changes
                            .push((f.path.clone(), f.kind, typed.kind()));
                    }
                    match value {
                        Some(v) => {
                            cols[0] = v;
                            true
                        }
                        None => false,
                    }
                }
                FieldKind::DateTime => {
                    let typed = interpret(leaf);
                    let m = match typed {
                        Typed::DateTime(m) => Some(m),
                        Typed::Number(v) => Some(moment_of_epoch(v)),
                        _ => None,
                    };
                    if typed.kind() != f.kind && typed.kind() != FieldKind::Null {
                        notes
                            .type_changes
                            .push((f.path.clone(), f.kind, typed.kind()));
                    }
                    match m {
                        Some(m) => {
                            write_moment(&mut cols[..5], &m);
                            true
                        }
                        None => false,
                    }
                }
                FieldKind::Null => {
                    let kind = interpret(leaf).kind();
                    if kind != FieldKind::Null {
                        notes.type_changes.push((f.path.clone(), f.kind, kind));
                    }
                    kind != FieldKind::Null
                }
            };
            if encoded {
                cols[f.width - 1] = 0.0;
            }
        }
        Ok(())
    }

    /// Per-field attributions of `record`, from per-column contributions (as
    /// [`IsolationForest::attributions`](crate::IsolationForest::attributions) gives them), most important first,
    /// followed by fields the schema never saw.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] if `column_contributions` is not one per column; as
    /// [`transform`](Self::transform) for the record.
    pub fn explain_fields(
        &self,
        record: &Value,
        column_contributions: &[f64],
    ) -> Result<Vec<FieldAttribution>> {
        if column_contributions.len() != self.width {
            return Err(Error::DimensionMismatch {
                expected: self.width,
                got: column_contributions.len(),
            });
        }
        let (_, notes) = self.transform(record)?;
        let mut leaves = Vec::new();
        flatten_into(record, &self.params.limits, &mut leaves)?;
        let value_of = |path: &str| -> Option<Value> {
            leaves
                .iter()
                .find(|(p, _)| p == path)
                .and_then(|(_, l)| match *l {
                    Leaf::Null => None,
                    Leaf::Bool(b) => Some(Value::Bool(b)),
                    Leaf::Number(v) => serde_json::Number::from_f64(v).map(Value::Number),
                    Leaf::String(s) => Some(Value::String(s.to_string())),
                })
        };
        let mut out: Vec<FieldAttribution> = self
            .fields
            .iter()
            .map(|f| {
                let contribution = column_contributions[f.offset..f.offset + f.width]
                    .iter()
                    .sum();
                let value = value_of(&f.path);
                let (description, unusual) = self.describe(f, value.as_ref(), &notes);
                FieldAttribution {
                    field: f.path.clone(),
                    contribution,
                    value,
                    description,
                    unusual,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.contribution
                .total_cmp(&a.contribution)
                .then_with(|| a.field.cmp(&b.field))
        });
        for path in &notes.unseen_fields {
            out.push(FieldAttribution {
                field: path.clone(),
                contribution: 0.0,
                value: value_of(path),
                description: format!("new field `{path}`"),
                unusual: true,
            });
        }
        Ok(out)
    }

    fn describe(
        &self,
        f: &FieldSpec,
        value: Option<&Value>,
        notes: &RecordNotes,
    ) -> (String, bool) {
        let p = &f.path;
        let Some(value) = value else {
            return (
                format!(
                    "`{p}` is missing (present in {:.0}% of training records)",
                    100.0 * f.presence
                ),
                f.presence >= 0.9,
            );
        };
        if let Some((_, learned, got)) = notes.type_changes.iter().find(|(path, _, _)| path == p)
            && *learned != FieldKind::Category
        {
            let text = format!(
                "`{p}` = {value} is {} where {} was learnt",
                kind_phrase(*got),
                kind_phrase(*learned)
            );
            return (text, true);
        }
        match f.kind {
            FieldKind::Category => {
                let t = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match f.categories.get(&t) {
                    None => (format!("`{p}` = '{t}' was never seen"), true),
                    Some(&c) => {
                        let rare = (c as f64) < 0.01 * f.category_total as f64;
                        let text = format!(
                            "`{p}` = '{t}' is {} ({} of training values)",
                            if rare { "rare" } else { "known" },
                            pct(c as f64 / f.category_total.max(1) as f64)
                        );
                        (text, rare)
                    }
                }
            }
            FieldKind::Number | FieldKind::Bool => {
                let v = match value {
                    Value::Bool(b) => *b as u8 as f64,
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    Value::String(s) => match interpret_str(s) {
                        Typed::Number(v) => v,
                        _ => return (format!("`{p}` = {value}"), false),
                    },
                    _ => return (format!("`{p}` = {value}"), false),
                };
                let a = Attribution {
                    feature: f.offset,
                    name: Some(p.clone()),
                    value: v,
                    contribution: 0.0,
                    typical_low: f.typical.0,
                    typical_high: f.typical.1,
                };
                (describe_attribution(&a), a.is_atypical())
            }
            FieldKind::DateTime => {
                let m = match value {
                    Value::String(s) => super::kind::parse_moment(s.trim()),
                    Value::Number(n) => n.as_f64().map(moment_of_epoch),
                    _ => None,
                };
                match m {
                    Some(m) => {
                        let (lo, hi) = (date(f.typical.0), date(f.typical.1));
                        let (when, outside) = if m.epoch_seconds < f.typical.0 {
                            (format!("before the typical {lo} to {hi}"), true)
                        } else if m.epoch_seconds > f.typical.1 {
                            (format!("after the typical {lo} to {hi}"), true)
                        } else {
                            (format!("within the typical {lo} to {hi}"), false)
                        };
                        let minutes = (m.hour * 60.0) as u32;
                        (
                            format!(
                                "`{p}` = {value} (at {:02}:{:02}) is {when}",
                                minutes / 60,
                                minutes % 60
                            ),
                            outside,
                        )
                    }
                    None => (format!("`{p}` = {value}"), false),
                }
            }
            FieldKind::Null => (format!("`{p}` = {value} where only nulls were seen"), true),
        }
    }

    /// Checks a vectoriser restored from bytes.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut offset = 0;
        for w in self.fields.windows(2) {
            if w[0].path >= w[1].path {
                return Err("fields out of order".into());
            }
        }
        for f in &self.fields {
            let expected = match f.kind {
                FieldKind::Number | FieldKind::Bool => 2,
                FieldKind::DateTime => 6,
                FieldKind::Category => {
                    self.params.hash_width + usize::from(self.params.frequency_encoding) + 1
                }
                FieldKind::Null => 1,
            };
            if f.offset != offset || f.width != expected {
                return Err(format!("field `{}` has an inconsistent layout", f.path));
            }
            offset += f.width;
        }
        if offset != self.width
            || self.template.len() != self.width
            || self.scale.len() != self.width
        {
            return Err("vectoriser width is inconsistent".into());
        }
        if self.params.hash_width == 0
            || self
                .scale
                .iter()
                .any(|(c, s)| !(c.is_finite() && s.is_finite() && *s != 0.0))
        {
            return Err("invalid vectoriser parameters".into());
        }
        Ok(())
    }
}

fn kind_phrase(k: FieldKind) -> &'static str {
    match k {
        FieldKind::Number => "a number",
        FieldKind::Bool => "a boolean",
        FieldKind::DateTime => "a date/time",
        FieldKind::Category => "text",
        FieldKind::Null => "null",
    }
}

fn pct(share: f64) -> String {
    if share < 0.001 {
        "under 0.1%".to_string()
    } else {
        format!("{}%", fmt_num(100.0 * share))
    }
}

fn date(epoch: f64) -> String {
    chrono::DateTime::from_timestamp(epoch as i64, 0)
        .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| fmt_num(epoch))
}

fn moment_of_epoch(epoch: f64) -> Moment {
    let secs = epoch.rem_euclid(86_400.0);
    let days = (epoch / 86_400.0).floor();
    Moment {
        epoch_seconds: epoch,
        hour: secs / 3600.0,
        // 1970-01-01 was a Thursday (Monday = 0).
        weekday: ((days + 3.0).rem_euclid(7.0)) as u32,
    }
}

fn write_moment(cols: &mut [f64], m: &Moment) {
    let (hs, hc) = m.hour_cycle();
    let (ws, wc) = m.weekday_cycle();
    cols[0] = m.epoch_seconds;
    cols[1] = hs;
    cols[2] = hc;
    cols[3] = ws;
    cols[4] = wc;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn training() -> Vec<Value> {
        (0..100)
            .map(|i| {
                let country = ["FR", "DE", "FR", "ES"][i % 4];
                json!({
                    "amount": 10.0 + (i % 50) as f64,
                    "country": country,
                    "express": i % 3 == 0,
                    "created_at": format!("2024-03-{:02}T{:02}:00:00Z", 1 + i % 28, 8 + i % 10),
                    "customer": {"tier": if i % 2 == 0 { "gold" } else { "basic" }},
                    "items": [1, 2, (i % 5) as i64],
                    "note": null,
                })
            })
            .collect()
    }

    #[test]
    fn every_encoding_rule() {
        let v = VectorizerParams::new()
            .hash_width(4)
            .fit(&training())
            .unwrap();
        let names = v.feature_names();
        assert_eq!(names.len(), v.n_features());
        let kinds: Vec<(&str, FieldKind)> = v
            .fields()
            .iter()
            .map(|f| (f.path.as_str(), f.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("amount", FieldKind::Number),
                ("country", FieldKind::Category),
                ("created_at", FieldKind::DateTime),
                ("customer.tier", FieldKind::Category),
                ("express", FieldKind::Bool),
                ("items.len", FieldKind::Number),
                ("items.max", FieldKind::Number),
                ("items.mean", FieldKind::Number),
                ("items.min", FieldKind::Number),
                ("note", FieldKind::Null),
            ]
        );
        let record = json!({"amount": "42", "country": "DE", "express": true,
            "created_at": "2024-03-05T14:00:00Z", "customer": {"tier": "gold"}, "items": [3, 5]});
        let (x, notes) = v.transform(&record).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let col = |name: &str| x[names.iter().position(|n| n == name).unwrap()];
        assert_eq!(col("amount"), 42.0, "numeric strings are numbers");
        assert_eq!(col("amount.missing"), 0.0);
        assert_eq!(col("express"), 1.0);
        assert_eq!(col("created_at.epoch"), 1_709_647_200.0);
        assert!(
            (col("created_at.hour_sin") - (14.0f64 / 24.0 * std::f64::consts::TAU).sin()).abs()
                < 1e-12
        );
        assert!(
            (col("created_at.weekday_sin") - (1.0f64 / 7.0 * std::f64::consts::TAU).sin()).abs()
                < 1e-12
        );
        assert_eq!(col("items.len"), 2.0);
        assert_eq!(col("items.mean"), 4.0);
        assert_eq!(col("country.freq"), 0.25);
        assert_eq!(col("note.missing"), 1.0);
        let (b, sign) = bucket("country=DE", 4);
        assert_eq!(col(&format!("country#{b}")), sign);
        let hashed: f64 = (0..4).map(|i| col(&format!("country#{i}")).abs()).sum();
        assert_eq!(hashed, 1.0);
    }

    #[test]
    fn missing_values_are_imputed_and_flagged() {
        let v = VectorizerParams::new().fit(&training()).unwrap();
        let names = v.feature_names();
        let (x, _) = v
            .transform(&json!({"country": "FR", "amount": null}))
            .unwrap();
        let col = |name: &str| x[names.iter().position(|n| n == name).unwrap()];
        assert_eq!(col("amount.missing"), 1.0);
        assert_eq!(col("amount"), v.fields()[0].imputation);
        assert_eq!(col("express.missing"), 1.0);
        assert_eq!(col("country.missing"), 0.0);
    }

    #[test]
    fn schema_evolution_is_reported_never_padded() {
        let v = VectorizerParams::new().fit(&training()).unwrap();
        let record =
            json!({"amount": "lots", "country": "KP", "debug_token": "abc", "express": false});
        let (x, notes) = v.transform(&record).unwrap();
        assert_eq!(x.len(), v.n_features());
        assert_eq!(notes.unseen_fields, ["debug_token"]);
        assert_eq!(
            notes.unseen_categories,
            [("country".to_string(), "KP".to_string())]
        );
        assert_eq!(
            notes.type_changes,
            [("amount".to_string(), FieldKind::Number, FieldKind::Category)]
        );
        let contributions = vec![1.0 / v.n_features() as f64; v.n_features()];
        let fields = v.explain_fields(&record, &contributions).unwrap();
        let text: Vec<&str> = fields.iter().map(|f| f.description.as_str()).collect();
        assert!(
            text.contains(&"`country` = 'KP' was never seen"),
            "{text:?}"
        );
        assert!(text.contains(&"new field `debug_token`"), "{text:?}");
        assert!(
            text.contains(&"`amount` = \"lots\" is text where a number was learnt"),
            "{text:?}"
        );
    }

    #[test]
    fn explanations_speak_in_field_names() {
        let v = VectorizerParams::new().fit(&training()).unwrap();
        let record = json!({"amount": 99812, "country": "FR"});
        let mut contributions = vec![0.0; v.n_features()];
        contributions[0] = 1.0;
        let fields = v.explain_fields(&record, &contributions).unwrap();
        assert_eq!(fields[0].field, "amount");
        assert_eq!(
            fields[0].description,
            "`amount` = 99,812 is above the typical 12–57"
        );
    }

    #[test]
    fn scalers_centre_and_scale() {
        let records: Vec<Value> = (0..9).map(|i| json!({"x": i as f64})).collect();
        let s = VectorizerParams::new()
            .scaler(Scaler::Standard)
            .fit(&records)
            .unwrap();
        let m = s.transform_many(&records).unwrap();
        let col = m.column(0);
        assert!(col.mean().unwrap().abs() < 1e-12);
        assert!((col.std(0.0) - 1.0).abs() < 1e-12);
        let r = VectorizerParams::new()
            .scaler(Scaler::Robust)
            .fit(&records)
            .unwrap();
        // median 4, IQR 6 − 2 = 4
        assert_eq!(r.transform(&json!({"x": 8.0})).unwrap().0[0], 1.0);
    }

    #[test]
    fn bad_records_are_typed_errors() {
        let v = VectorizerParams::new().fit(&training()).unwrap();
        assert!(matches!(
            v.transform(&json!([1, 2])),
            Err(Error::InvalidRecord { .. })
        ));
        assert!(matches!(
            VectorizerParams::new().fit(&[]),
            Err(Error::EmptyInput { .. })
        ));
        match VectorizerParams::new().fit(&[json!({"a": 1}), json!(3)]) {
            Err(Error::InvalidRecord { reason }) => {
                assert!(reason.starts_with("record 1:"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
