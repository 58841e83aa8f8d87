//! The learned schema that turns records into fixed-width feature vectors, and explains them in field names.
//!
//! Each field has a kind (the most frequent non-null kind of its values in training) and a
//! [role](super::role) (decided from the training values, or pinned), and the role decides its columns:
//!
//! | role | columns |
//! | --- | --- |
//! | measurement | value (a number, 0/1 for a boolean, epoch seconds for a date/time), missing |
//! | category | `hash_width` signed buckets (MurmurHash3 of `path=value`), training frequency (optional), missing |
//! | timestamp | sin/cos of hour of day, sin/cos of day of week, missing |
//! | text | length in characters, missing |
//! | identifier, ignore | none |
//! | (a field only ever null) | missing |
//!
//! A missing or null value sets the missing indicator and takes the learned imputation value (the training median).
//! Fields are laid out in sorted path order, so the same record gives the same vector in any process. A record with
//! a field the schema does not know is still scored on the known fields, and the new field is reported; a value of
//! another type than learned counts as missing and is reported; an unseen category lands in its hash bucket with
//! frequency 0 and is reported. Nothing is padded or truncated: the width is the schema's.
//!
//! The width is bounded: a schema has at most [`VectorizerParams::max_columns`] columns. When the training records
//! hold more fields than fit, the most frequent fields are kept and the rarest left out; the schema says how many
//! ([`Vectorizer::left_out`]), and a record carrying them has them reported as fields the schema does not hold.
//!
//! Models of snapshot version 1 encoded a date/time as its epoch seconds too, and had no roles; they load with the
//! roles their kinds gave and keep that layout, so they score as they did.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::columns::RecordColumns;
use super::flatten::{Leaf, Limits, flatten_into, for_each_leaf};
use super::hashing::bucket;
use super::kind::{FieldKind, Moment, Typed, interpret, interpret_str};
use super::role::{Evidence, FieldRole, FieldRoles, infer};
use crate::error::{Error, Result};
use crate::explanation::{Attribution, describe_attribution, fmt_num};
use crate::forest::percentile;

thread_local! {
    /// Scratch for the `path=value` token a category hashes, so encoding does not allocate per field.
    static TOKEN: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Most hash buckets per categorical field ([`VectorizerParams::hash_width`]); a wider one is refused with
/// [`Error::InvalidParameter`] (no schema could hold it within a sensible `max_columns`).
pub const MAX_HASH_WIDTH: usize = 65_536;

/// Fields named in a [`RecordNotes`] list, at most (the rest are counted).
pub const MAX_LISTED_FIELDS: usize = 32;

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
/// | `hash_width` | 8 | hash buckets per categorical field (1 to [`MAX_HASH_WIDTH`]) |
/// | `frequency_encoding` | `true` | add a column with the category's share in training |
/// | `scaler` | `None` | scaling of value, length and frequency columns |
/// | `limits` | depth 32, 10,000 fields | what one record may contain |
/// | `max_categories` | 1,000 | categories remembered per field (the most frequent) |
/// | `max_columns` | 1,000 | columns of the schema: the rarest fields beyond it are left out |
/// | `field_roles` | none | roles pinned by field path, over the inferred ones |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorizerParams {
    hash_width: usize,
    frequency_encoding: bool,
    scaler: Scaler,
    limits: Limits,
    max_categories: usize,
    #[serde(default = "default_max_columns")]
    max_columns: usize,
    #[serde(default)]
    field_roles: FieldRoles,
}

fn default_max_columns() -> usize {
    1_000
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
            max_columns: default_max_columns(),
            field_roles: FieldRoles::new(),
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

    /// Bounds on one record.
    pub fn get_limits(&self) -> &Limits {
        &self.limits
    }

    /// Categories remembered per field (default 1,000).
    pub fn max_categories(mut self, n: usize) -> Self {
        self.max_categories = n;
        self
    }

    /// Columns of the schema, at most (default 1,000, at least 1). Training records with more fields keep their
    /// most frequent ones; the rest are left out and reported. A training holds `records × columns` numbers.
    pub fn max_columns(mut self, n: usize) -> Self {
        self.max_columns = n;
        self
    }

    /// The column cap.
    pub fn get_max_columns(&self) -> usize {
        self.max_columns
    }

    /// Pins the role of fields by dotted path (replacing earlier pins); other fields get the role the training
    /// data gives them.
    pub fn field_roles(mut self, roles: FieldRoles) -> Self {
        self.field_roles = roles;
        self
    }

    /// The pinned roles.
    pub fn get_field_roles(&self) -> &FieldRoles {
        &self.field_roles
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a `hash_width` outside 1 to [`MAX_HASH_WIDTH`] or a zero `max_columns`.
    pub fn validate(&self) -> Result<()> {
        if self.hash_width == 0 {
            return Err(Error::invalid("hash_width", "must be at least 1"));
        }
        if self.hash_width > MAX_HASH_WIDTH {
            return Err(Error::invalid(
                "hash_width",
                format!("{} exceeds the limit of {MAX_HASH_WIDTH}", self.hash_width),
            ));
        }
        if self.max_columns == 0 {
            return Err(Error::invalid("max_columns", "must be at least 1"));
        }
        Ok(())
    }

    /// Learns the schema (fields, their roles and layout), imputation values, category frequencies and scaling from
    /// `records`.
    ///
    /// # Errors
    /// [`Error::EmptyInput`] for no records, [`Error::InvalidRecord`] (naming the record) for a record that is not
    /// an object or exceeds the limits, [`Error::InvalidParameter`] for a zero `hash_width` or `max_columns`.
    pub fn fit(&self, records: &[Value]) -> Result<Vectorizer> {
        self.validate()?;
        if records.is_empty() {
            return Err(Error::EmptyInput { what: "no records" });
        }
        // Pass 1: how often each field occurs, and which records repeat an earlier one.
        let mut leaves = Vec::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut fingerprints = HashSet::with_capacity(records.len());
        let mut repeated = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            flatten_into(record, &self.limits, &mut leaves).map_err(|e| at_record(i, e))?;
            let mut h = std::hash::DefaultHasher::new();
            for (path, leaf) in &leaves {
                match counts.get_mut(path.as_ref()) {
                    Some(c) => *c += 1,
                    None => {
                        counts.insert(path.to_string(), 1);
                    }
                }
                path.hash(&mut h);
                hash_leaf(leaf, &mut h);
            }
            repeated.push(!fingerprints.insert(h.finish()));
        }
        drop(fingerprints);
        // Candidates: every field, or the most frequent ones when there are more than columns (each field kept has at
        // least one column, identifiers and ignored fields aside).
        let mut by_count: Vec<(String, usize)> = counts.into_iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut left_out = LeftOut::default();
        if by_count.len() > self.max_columns {
            for (path, _) in by_count.drain(self.max_columns..) {
                left_out.add(path);
            }
        }
        // Pass 2: what each candidate field holds.
        let mut observed: BTreeMap<String, Observed> = by_count
            .iter()
            .map(|(p, _)| (p.clone(), Observed::default()))
            .collect();
        for (record, &repeated) in records.iter().zip(&repeated) {
            flatten_into(record, &self.limits, &mut leaves)?;
            for (path, leaf) in &leaves {
                if let Some(o) = observed.get_mut(path.as_ref()) {
                    o.observe(leaf, !repeated);
                }
            }
        }
        let n = records.len() as f64;
        let mut specs: BTreeMap<String, FieldSpec> = observed
            .into_iter()
            .map(|(path, o)| {
                let spec = o.into_spec(path.clone(), n, self);
                (path, spec)
            })
            .collect();
        // The column cap: the most frequent fields first, until the next one would not fit.
        let mut width = 0;
        for (path, _) in &by_count {
            let w = specs.get(path).map_or(0, |s| s.width);
            if width + w <= self.max_columns {
                width += w;
            } else if let Some(s) = specs.remove(path) {
                left_out.add(s.path);
            }
        }
        let mut offset = 0;
        let fields: Vec<FieldSpec> = specs
            .into_values()
            .map(|mut f| {
                f.offset = offset;
                offset += f.width;
                f
            })
            .collect();
        if left_out.total > 0 {
            tracing::warn!(
                kept = fields.len(),
                left_out = left_out.total,
                max_columns = self.max_columns,
                "the records hold more fields than the schema has columns: the rarest are left out"
            );
        }
        let mut v = Vectorizer {
            params: self.clone(),
            fields,
            width: offset,
            template: Vec::new(),
            scale: Vec::new(),
            timestamp_epoch: false,
            left_out,
            codes: CategoryCodes::default(),
        };
        v.template = v.build_template();
        v.scale = vec![(0.0, 1.0); v.width];
        if self.scaler != Scaler::None {
            v.scale = v.fit_scale(records)?;
        }
        Ok(v)
    }
}

fn hash_leaf(leaf: &Leaf<'_>, h: &mut impl Hasher) {
    match *leaf {
        Leaf::Null => 0u8.hash(h),
        Leaf::Bool(b) => (1u8, b).hash(h),
        Leaf::Number(v) => (2u8, v.to_bits()).hash(h),
        Leaf::String(s) => (3u8, s).hash(h),
    }
}

/// `e`, naming record `i` when it is about the record.
pub(crate) fn at_record(i: usize, e: Error) -> Error {
    match e {
        Error::InvalidRecord { reason } => Error::InvalidRecord {
            reason: format!("record {i}: {reason}"),
        },
        other => other,
    }
}

/// Fields of the training records that the schema left out to stay within its column cap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// How many.
    pub total: usize,
    /// The most frequent of them, at most [`MAX_LISTED_FIELDS`].
    pub sample: Vec<String>,
}

impl LeftOut {
    fn add(&mut self, path: String) {
        self.total += 1;
        if self.sample.len() < MAX_LISTED_FIELDS {
            self.sample.push(path);
        }
    }
}

/// What fitting saw of one field.
#[derive(Default)]
struct Observed {
    kinds: BTreeMap<FieldKind, usize>,
    numbers: Vec<f64>,
    lengths: Vec<f64>,
    categories: BTreeMap<String, u64>,
    present: usize,
    evidence: Evidence,
}

impl Observed {
    /// Adds one value; `distinct` when its record is not a repeat of an earlier one.
    fn observe(&mut self, leaf: &Leaf<'_>, distinct: bool) {
        let typed = interpret(leaf);
        *self.kinds.entry(typed.kind()).or_default() += 1;
        if typed.kind() != FieldKind::Null {
            self.present += 1;
            if distinct {
                self.evidence.present_distinct += 1;
            }
        }
        match typed {
            Typed::Number(v) => {
                self.numbers.push(v);
                self.evidence.number(v);
                if distinct {
                    self.evidence.step(v);
                }
            }
            Typed::Bool(b) => self.numbers.push(b as u8 as f64),
            Typed::DateTime(m) => self.numbers.push(m.epoch_seconds),
            Typed::Category(_) | Typed::Null => {}
        }
        if let Leaf::String(s) = leaf {
            self.evidence.string(s);
        }
        if let Some(token) = token(leaf) {
            self.lengths.push(token.chars().count() as f64);
            *self.categories.entry(token.into_owned()).or_default() += 1;
        }
    }

    fn into_spec(mut self, path: String, n: f64, p: &VectorizerParams) -> FieldSpec {
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
        self.evidence.distinct_values = self.categories.len();
        let (role, rule) = match p.field_roles.get(&path) {
            Some(r) => (*r, "pinned".to_string()),
            None => infer(&path, kind, &self.evidence),
        };
        let width = column_count(role, kind, p, false);
        let values = if role == FieldRole::Text {
            &mut self.lengths
        } else {
            &mut self.numbers
        };
        values.sort_by(f64::total_cmp);
        let (imputation, typical) = if values.is_empty() {
            (0.0, (0.0, 0.0))
        } else {
            let q = |p: f64| percentile(values, p);
            (q(50.0), (q(5.0), q(95.0)))
        };
        let category_total = self.categories.values().sum();
        let categories = if role == FieldRole::Category {
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
            role,
            rule,
            offset: 0,
            width,
            presence: self.present as f64 / n,
            imputation,
            typical,
            categories,
            category_total,
        }
    }
}

/// Columns of a field with `role` whose values were of `kind`; `timestamp_epoch` for the version 1 layout.
fn column_count(
    role: FieldRole,
    kind: FieldKind,
    p: &VectorizerParams,
    timestamp_epoch: bool,
) -> usize {
    match role {
        FieldRole::Identifier | FieldRole::Ignore => 0,
        FieldRole::Measurement if kind == FieldKind::Null => 1,
        FieldRole::Measurement | FieldRole::Text => 2,
        FieldRole::Timestamp => 5 + usize::from(timestamp_epoch),
        // Saturating: a restored `hash_width` is checked only after the layout.
        FieldRole::Category => p
            .hash_width
            .saturating_add(usize::from(p.frequency_encoding) + 1),
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
    /// What it is for, which decides its columns.
    #[serde(default = "measurement")]
    pub role: FieldRole,
    /// The rule that decided the role (`pinned`, `numbers`, `a sequence of distinct whole numbers: …`, …).
    #[serde(default)]
    pub rule: String,
    /// First column of the field.
    pub offset: usize,
    /// Number of columns (0 for identifiers and ignored fields).
    pub width: usize,
    /// Share of training records where the field was present and not null.
    pub presence: f64,
    /// Value used when the field is missing (training median; the median length for text; 0 for categories).
    pub imputation: f64,
    /// 5th and 95th percentiles of the field's numeric values in training (epoch seconds for date/times, lengths
    /// for text).
    pub typical: (f64, f64),
    /// Most frequent categories in training and their counts.
    pub categories: BTreeMap<String, u64>,
    /// Number of categorical observations in training.
    pub category_total: u64,
}

fn measurement() -> FieldRole {
    FieldRole::Measurement
}

/// Things worth telling about a record besides its vector.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordNotes {
    /// Fields the schema does not hold (never seen in training, or left out by the column cap), not part of the
    /// vector; at most [`MAX_LISTED_FIELDS`] of them.
    pub unseen_fields: Vec<String>,
    /// Fields the schema does not hold beyond those listed in `unseen_fields`.
    #[serde(default)]
    pub more_unseen_fields: usize,
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

    /// Fields the schema does not hold, listed or not.
    pub fn unseen_total(&self) -> usize {
        self.unseen_fields.len() + self.more_unseen_fields
    }

    fn clear(&mut self) {
        self.unseen_fields.clear();
        self.more_unseen_fields = 0;
        self.type_changes.clear();
        self.unseen_categories.clear();
    }

    fn unseen(&mut self, path: &str) {
        if self.unseen_fields.len() < MAX_LISTED_FIELDS {
            self.unseen_fields.push(path.to_string());
        } else {
            self.more_unseen_fields += 1;
        }
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
    /// Whether timestamps carry their epoch seconds as a column (the layout of snapshot version 1).
    #[serde(default)]
    timestamp_epoch: bool,
    /// Fields left out by the column cap.
    #[serde(default)]
    left_out: LeftOut,
    /// The learnt categories' columns, derived from `fields` on first use.
    #[serde(skip)]
    codes: CategoryCodes,
}

/// Where a learnt category lands in its field's columns: computed once per category rather than hashed per record.
#[derive(Debug, Clone, Copy)]
struct CategoryCode {
    bucket: usize,
    sign: f64,
    /// Its training frequency (the frequency column's value).
    frequency: f64,
}

/// Each field's learnt categories by value, with their [`CategoryCode`]s (empty for fields of other roles).
type CategoryMaps = [HashMap<Box<str>, CategoryCode, foldhash::fast::FixedState>];

/// Each field's learnt categories with their [`CategoryCode`]s (empty for fields of other roles), built from the
/// fields on first use. Derived, so it is never serialized and never part of a vectoriser's equality.
#[derive(Default)]
struct CategoryCodes(
    std::sync::OnceLock<Vec<HashMap<Box<str>, CategoryCode, foldhash::fast::FixedState>>>,
);

impl CategoryCodes {
    fn get(&self, fields: &[FieldSpec], hash_width: usize) -> &CategoryMaps {
        self.0.get_or_init(|| {
            fields
                .iter()
                .map(|f| {
                    if f.role != FieldRole::Category {
                        return HashMap::default();
                    }
                    f.categories
                        .iter()
                        .map(|(t, &count)| {
                            let (bucket, sign) = bucket(&format!("{}={t}", f.path), hash_width);
                            let frequency = count as f64 / f.category_total.max(1) as f64;
                            (
                                t.as_str().into(),
                                CategoryCode {
                                    bucket,
                                    sign,
                                    frequency,
                                },
                            )
                        })
                        .collect()
                })
                .collect()
        })
    }
}

impl Clone for CategoryCodes {
    fn clone(&self) -> Self {
        let cell = std::sync::OnceLock::new();
        if let Some(codes) = self.0.get() {
            let _ = cell.set(codes.clone());
        }
        CategoryCodes(cell)
    }
}

impl PartialEq for CategoryCodes {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CategoryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CategoryCodes")
    }
}

impl Vectorizer {
    /// Number of columns of every vector.
    pub fn n_features(&self) -> usize {
        self.width
    }

    /// The fields of the schema, in column order (identifiers and ignored fields among them, with no columns).
    pub fn fields(&self) -> &[FieldSpec] {
        &self.fields
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &VectorizerParams {
        &self.params
    }

    /// Fields of the training records left out by the column cap.
    pub fn left_out(&self) -> &LeftOut {
        &self.left_out
    }

    /// Brings a schema of snapshot version 1 to this version's terms: each field gets the role its kind gives and
    /// timestamps keep their epoch column, so the model scores as it did.
    pub(crate) fn upgrade_from_v1(&mut self) {
        self.codes = CategoryCodes::default();
        self.timestamp_epoch = true;
        for f in &mut self.fields {
            f.role = FieldRole::default_for(f.kind);
            f.rule = "by its kind (a model of snapshot version 1)".into();
        }
    }

    /// Column names: `amount`, `amount.missing`, `created_at.hour_sin`, `country#3`, `country.freq`,
    /// `note.length`, …
    pub fn feature_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width);
        for f in &self.fields {
            if f.width == 0 {
                continue;
            }
            let p = &f.path;
            match f.role {
                FieldRole::Measurement if f.kind != FieldKind::Null => names.push(p.clone()),
                FieldRole::Measurement | FieldRole::Identifier | FieldRole::Ignore => {}
                FieldRole::Text => names.push(format!("{p}.length")),
                FieldRole::Timestamp => {
                    let epoch = self.timestamp_epoch.then_some("epoch");
                    for s in epoch.into_iter().chain([
                        "hour_sin",
                        "hour_cos",
                        "weekday_sin",
                        "weekday_cos",
                    ]) {
                        names.push(format!("{p}.{s}"));
                    }
                }
                FieldRole::Category => {
                    names.extend((0..self.params.hash_width).map(|b| format!("{p}#{b}")));
                    if self.params.frequency_encoding {
                        names.push(format!("{p}.freq"));
                    }
                }
            }
            names.push(format!("{p}.missing"));
        }
        names
    }

    /// The index of the field of `path`, trying `fields[*next]` before searching; `*next` then points past the
    /// field found.
    fn field_from(&self, path: &str, next: &mut usize) -> Option<usize> {
        let i = match self.fields.get(*next) {
            Some(f) if f.path == path => *next,
            _ => self
                .fields
                .binary_search_by(|f| f.path.as_str().cmp(path))
                .ok()?,
        };
        *next = i + 1;
        Some(i)
    }

    /// Columns where a timestamp's calendar features start within its field.
    fn moment_start(&self) -> usize {
        usize::from(self.timestamp_epoch)
    }

    fn build_template(&self) -> Vec<f64> {
        let mut t = vec![0.0; self.width];
        for f in &self.fields {
            if f.width == 0 {
                continue;
            }
            let o = f.offset;
            match f.role {
                FieldRole::Measurement | FieldRole::Text if f.width == 2 => t[o] = f.imputation,
                FieldRole::Timestamp => {
                    let m = moment_of_epoch(f.imputation);
                    self.write_moment(&mut t[o..o + f.width - 1], &m);
                }
                _ => {}
            }
            t[o + f.width - 1] = 1.0;
        }
        t
    }

    /// Writes a moment's columns (its epoch seconds in the version 1 layout, then the four cycles).
    fn write_moment(&self, cols: &mut [f64], m: &Moment) {
        if self.timestamp_epoch {
            cols[0] = m.epoch_seconds;
        }
        let s = self.moment_start();
        let (hs, hc) = m.hour_cycle();
        let (ws, wc) = m.weekday_cycle();
        cols[s] = hs;
        cols[s + 1] = hc;
        cols[s + 2] = ws;
        cols[s + 3] = wc;
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

    /// Columns that carry magnitudes: values, lengths, epochs and frequencies (not indicators, hashes or cycles).
    fn scaled_columns(&self) -> Vec<usize> {
        let mut cols = Vec::new();
        for f in &self.fields {
            match f.role {
                FieldRole::Measurement | FieldRole::Text if f.width == 2 => cols.push(f.offset),
                FieldRole::Timestamp if self.timestamp_epoch => cols.push(f.offset),
                FieldRole::Category if self.params.frequency_encoding => {
                    cols.push(f.offset + self.params.hash_width)
                }
                _ => {}
            }
        }
        cols
    }

    /// The column of each measured number (a measurement of numbers), with its field: where the value of a number
    /// field sits in a vector, before scaling.
    pub fn measured_columns(&self) -> impl Iterator<Item = (usize, &FieldSpec)> {
        self.fields.iter().filter_map(|f| {
            (f.role == FieldRole::Measurement && f.kind == FieldKind::Number && f.width == 2)
                .then_some((f.offset, f))
        })
    }

    /// The `(center, scale)` applied to each column (`(0, 1)` without a scaler).
    pub fn column_scale(&self, column: usize) -> (f64, f64) {
        self.scale.get(column).copied().unwrap_or((0.0, 1.0))
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
        self.scale_in_place(out);
        Ok(())
    }

    fn scale_in_place(&self, out: &mut [f64]) {
        if self.params.scaler != Scaler::None {
            for (v, &(c, s)) in out.iter_mut().zip(&self.scale) {
                *v = (*v - c) / s;
            }
        }
    }

    /// Where each of `columns` lands: the index of its field in the schema, `None` for a field the schema does not
    /// hold.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] when there are more columns than a record may have fields
    /// ([`Limits::max_fields`]).
    pub(crate) fn column_fields(&self, columns: &RecordColumns<'_>) -> Result<Vec<Option<usize>>> {
        columns.check(&self.params.limits)?;
        let mut next = 0;
        Ok(columns
            .columns()
            .iter()
            .map(|(path, _)| self.field_from(path, &mut next))
            .collect())
    }

    /// The vector of record `row` of `columns` into `out` (the same bits as [`transform_into`](Self::transform_into)
    /// gives for [`RecordColumns::record`]`(row)`), with `fields` from [`column_fields`](Self::column_fields).
    ///
    /// # Errors
    /// As [`transform`](Self::transform), for a row [replaced](RecordColumns::replace_row) by a record.
    pub(crate) fn transform_row_into(
        &self,
        columns: &RecordColumns<'_>,
        fields: &[Option<usize>],
        row: usize,
        out: &mut Vec<f64>,
        notes: &mut RecordNotes,
    ) -> Result<()> {
        if let Some(record) = columns.replaced(row) {
            return self.transform_into(record, out, notes);
        }
        let codes = self.start_vector(out, notes);
        for ((path, values), field) in columns.columns().iter().zip(fields) {
            self.encode_at(*field, path, &values.leaf(row), out, notes, codes);
        }
        self.scale_in_place(out);
        Ok(())
    }

    /// Vectors of records held as columns, as a matrix (rows in order): the same as
    /// [`transform_many`](Self::transform_many) of their [`RecordColumns::record`]s, without building them.
    ///
    /// # Errors
    /// As [`column_fields`](Self::column_fields); as [`transform_many`](Self::transform_many) for the rows
    /// [replaced](RecordColumns::replace_row) by records.
    pub fn transform_columns(&self, columns: &RecordColumns<'_>) -> Result<ndarray::Array2<f64>> {
        let fields = self.column_fields(columns)?;
        let mut data = Vec::with_capacity(columns.rows() * self.width);
        let mut row = Vec::with_capacity(self.width);
        let mut notes = RecordNotes::default();
        for i in 0..columns.rows() {
            self.transform_row_into(columns, &fields, i, &mut row, &mut notes)
                .map_err(|e| at_record(i, e))?;
            data.extend_from_slice(&row);
        }
        ndarray::Array2::from_shape_vec((columns.rows(), self.width), data)
            .map_err(|e| Error::invalid("columns", e.to_string()))
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
        let codes = self.start_vector(out, notes);
        // Leaves come in about the fields' order: each lookup first tries the field after the last one found.
        let mut next = 0;
        let walked = for_each_leaf(record, &self.params.limits, |path, _, leaf| {
            let field = self.field_from(path, &mut next);
            self.encode_at(field, path, &leaf, out, notes, codes);
        });
        if walked.is_err() {
            // A refused record has no notes (nor a vector).
            notes.clear();
            out.clear();
        }
        walked
    }

    /// Starts a record's vector in `out` as the template (every field missing) and clears `notes`; returns the
    /// learnt categories' columns.
    fn start_vector(&self, out: &mut Vec<f64>, notes: &mut RecordNotes) -> &CategoryMaps {
        notes.clear();
        out.clear();
        out.extend_from_slice(&self.template);
        self.codes.get(&self.fields, self.params.hash_width)
    }

    /// Encodes the leaf at `path` into the columns of its field (`None`: a field the schema does not hold, noted
    /// unless the leaf is null).
    fn encode_at(
        &self,
        field: Option<usize>,
        path: &str,
        leaf: &Leaf<'_>,
        out: &mut [f64],
        notes: &mut RecordNotes,
        codes: &CategoryMaps,
    ) {
        match field {
            Some(i) => self.encode_leaf(i, leaf, out, notes, codes),
            None if !matches!(leaf, Leaf::Null) => notes.unseen(path),
            None => {}
        }
    }

    /// Writes the columns of field `i` for `leaf` into `out` (a record's vector, the template's values where
    /// nothing was written), noting what does not fit the schema.
    fn encode_leaf(
        &self,
        i: usize,
        leaf: &Leaf<'_>,
        out: &mut [f64],
        notes: &mut RecordNotes,
        codes: &CategoryMaps,
    ) {
        let f = &self.fields[i];
        if f.width == 0 {
            return;
        }
        let o = f.offset;
        let cols = &mut out[o..o + f.width];
        let encoded = match f.role {
            FieldRole::Category => match token(leaf) {
                Some(t) => {
                    let known = codes[i].get(t.as_ref()).copied();
                    // An unseen category is hashed here, with frequency 0.
                    let code = known.unwrap_or_else(|| {
                        let (bucket, sign) = TOKEN.with_borrow_mut(|token| {
                            token.clear();
                            token.push_str(&f.path);
                            token.push('=');
                            token.push_str(&t);
                            bucket(token, self.params.hash_width)
                        });
                        CategoryCode {
                            bucket,
                            sign,
                            frequency: 0.0,
                        }
                    });
                    cols[code.bucket] += code.sign;
                    if self.params.frequency_encoding {
                        cols[self.params.hash_width] = code.frequency;
                    }
                    if known.is_none() {
                        notes
                            .unseen_categories
                            .push((f.path.clone(), t.into_owned()));
                    }
                    let changed = if f.kind == FieldKind::Category {
                        !matches!(leaf, Leaf::String(_))
                    } else {
                        interpret(leaf).kind() != f.kind
                    };
                    if changed {
                        notes
                            .type_changes
                            .push((f.path.clone(), f.kind, interpret(leaf).kind()));
                    }
                    true
                }
                None => false,
            },
            FieldRole::Measurement => {
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
                    Some(v) if f.width == 2 => {
                        cols[0] = v;
                        true
                    }
                    // A field only ever null in training has only its missing column: any value is present.
                    _ if f.width == 1 => typed.kind() != FieldKind::Null,
                    Some(_) => true,
                    None => false,
                }
            }
            FieldRole::Timestamp => {
                let typed = interpret(leaf);
                let m = match typed {
                    Typed::DateTime(m) => Some(m),
                    Typed::Number(v) => Some(moment_of_number(v, self.timestamp_epoch)),
                    _ => None,
                };
                if typed.kind() != f.kind && typed.kind() != FieldKind::Null {
                    notes
                        .type_changes
                        .push((f.path.clone(), f.kind, typed.kind()));
                }
                match m {
                    Some(m) => {
                        self.write_moment(&mut cols[..f.width - 1], &m);
                        true
                    }
                    None => false,
                }
            }
            FieldRole::Text => match token(leaf) {
                Some(t) => {
                    cols[0] = t.chars().count() as f64;
                    true
                }
                None => false,
            },
            FieldRole::Identifier | FieldRole::Ignore => false,
        };
        if encoded {
            cols[f.width - 1] = 0.0;
        }
    }

    /// Per-field attributions of `record`, from per-column contributions (as
    /// [`IsolationForest::attributions`](crate::IsolationForest::attributions) gives them), most important first,
    /// followed by identifiers (not scored) and fields the schema does not hold (at most [`MAX_LISTED_FIELDS`],
    /// then one line counting the rest). Ignored fields are not mentioned.
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
        let values: HashMap<&str, &Leaf<'_>> =
            leaves.iter().map(|(p, l)| (p.as_ref(), l)).collect();
        let value_of = |path: &str| -> Option<Value> {
            values.get(path).and_then(|l| match **l {
                Leaf::Null => None,
                Leaf::Bool(b) => Some(Value::Bool(b)),
                // Whole numbers read back as integers (`601`, not `601.0`).
                Leaf::Number(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => {
                    Some(Value::from(v as i64))
                }
                Leaf::Number(v) => serde_json::Number::from_f64(v).map(Value::Number),
                Leaf::String(s) => Some(Value::String(s.to_string())),
            })
        };
        let mut out: Vec<FieldAttribution> = Vec::with_capacity(self.fields.len());
        let mut identifiers = Vec::new();
        for f in &self.fields {
            match f.role {
                FieldRole::Ignore => continue,
                FieldRole::Identifier => {
                    if let Some(value) = value_of(&f.path) {
                        identifiers.push(FieldAttribution {
                            field: f.path.clone(),
                            contribution: 0.0,
                            description: format!("`{}` = {value} (identifier, not scored)", f.path),
                            value: Some(value),
                            unusual: false,
                        });
                    }
                    continue;
                }
                _ => {}
            }
            let contribution = column_contributions[f.offset..f.offset + f.width]
                .iter()
                .sum();
            let value = value_of(&f.path);
            let (description, unusual) = self.describe(f, value.as_ref(), &notes);
            out.push(FieldAttribution {
                field: f.path.clone(),
                contribution,
                value,
                description,
                unusual,
            });
        }
        out.sort_by(|a, b| {
            b.contribution
                .total_cmp(&a.contribution)
                .then_with(|| a.field.cmp(&b.field))
        });
        out.extend(identifiers);
        for path in &notes.unseen_fields {
            let left_out = self.left_out.sample.iter().any(|p| p == path);
            out.push(FieldAttribution {
                field: path.clone(),
                contribution: 0.0,
                value: value_of(path),
                description: if left_out {
                    format!("`{path}` is left out of the schema (its column cap)")
                } else {
                    format!("new field `{path}`")
                },
                unusual: !left_out,
            });
        }
        if notes.more_unseen_fields > 0 {
            out.push(FieldAttribution {
                field: String::new(),
                contribution: 0.0,
                value: None,
                description: format!(
                    "{} more fields the schema does not hold",
                    fmt_num(notes.more_unseen_fields as f64)
                ),
                unusual: false,
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
        match f.role {
            FieldRole::Category => {
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
            FieldRole::Measurement => {
                let v = match value {
                    Value::Bool(b) => *b as u8 as f64,
                    Value::Number(n) => n.as_f64().unwrap_or(0.0),
                    Value::String(s) => match interpret_str(s) {
                        Typed::Number(v) => v,
                        Typed::DateTime(m) => m.epoch_seconds,
                        _ => return (format!("`{p}` = {value}"), false),
                    },
                    _ => return (format!("`{p}` = {value}"), false),
                };
                self.describe_number(f, v, p)
            }
            FieldRole::Text => {
                let len = match value {
                    Value::String(s) => s.chars().count(),
                    other => other.to_string().chars().count(),
                };
                let (lo, hi) = f.typical;
                let (where_, unusual) = if (len as f64) < lo {
                    ("below", true)
                } else if (len as f64) > hi {
                    ("above", true)
                } else {
                    ("within", false)
                };
                (
                    format!(
                        "`{p}` is {} characters long, {where_} the typical {}–{}",
                        fmt_num(len as f64),
                        fmt_num(lo),
                        fmt_num(hi)
                    ),
                    unusual,
                )
            }
            FieldRole::Timestamp => {
                let m = match value {
                    Value::String(s) => super::kind::parse_moment(s.trim()),
                    Value::Number(n) => n
                        .as_f64()
                        .map(|v| moment_of_number(v, self.timestamp_epoch)),
                    _ => None,
                };
                let Some(m) = m else {
                    return (format!("`{p}` = {value}"), false);
                };
                let minutes = (m.hour * 60.0) as u32;
                let at = format!(
                    "at {:02}:{:02} on a {}",
                    minutes / 60,
                    minutes % 60,
                    WEEKDAYS[m.weekday as usize % 7]
                );
                if !self.timestamp_epoch {
                    return (format!("`{p}` = {value} ({at})"), false);
                }
                let (lo, hi) = (date(f.typical.0), date(f.typical.1));
                let (when, outside) = if m.epoch_seconds < f.typical.0 {
                    (format!("before the typical {lo} to {hi}"), true)
                } else if m.epoch_seconds > f.typical.1 {
                    (format!("after the typical {lo} to {hi}"), true)
                } else {
                    (format!("within the typical {lo} to {hi}"), false)
                };
                (format!("`{p}` = {value} ({at}) is {when}"), outside)
            }
            FieldRole::Identifier | FieldRole::Ignore => (format!("`{p}` = {value}"), false),
        }
    }

    fn describe_number(&self, f: &FieldSpec, v: f64, p: &str) -> (String, bool) {
        if f.kind == FieldKind::Null {
            return (
                format!("`{p}` = {} where only nulls were seen", fmt_num(v)),
                true,
            );
        }
        let a = Attribution {
            feature: f.offset,
            name: Some(p.to_string()),
            value: v,
            contribution: 0.0,
            typical_low: f.typical.0,
            typical_high: f.typical.1,
        };
        (describe_attribution(&a), a.is_atypical())
    }

    /// Checks a vectoriser restored from bytes.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Err(e) = self.params.validate() {
            return Err(format!("invalid vectoriser parameters: {e}"));
        }
        let mut offset: usize = 0;
        for w in self.fields.windows(2) {
            if w[0].path >= w[1].path {
                return Err("fields out of order".into());
            }
        }
        for f in &self.fields {
            let expected = column_count(f.role, f.kind, &self.params, self.timestamp_epoch);
            if f.offset != offset || f.width != expected {
                return Err(format!("field `{}` has an inconsistent layout", f.path));
            }
            offset = offset
                .checked_add(f.width)
                .ok_or("vectoriser width overflows")?;
        }
        if offset != self.width
            || self.template.len() != self.width
            || self.scale.len() != self.width
        {
            return Err("vectoriser width is inconsistent".into());
        }
        if self.params.validate().is_err()
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

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

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

/// The moment of a number taken as a Unix time: seconds, or milliseconds from 10¹¹ on (the year 5138 in seconds)
/// — except in the version 1 layout, which always read seconds.
fn moment_of_number(v: f64, version_1: bool) -> Moment {
    if !version_1 && v.abs() >= 1e11 {
        moment_of_epoch(v / 1_000.0)
    } else {
        moment_of_epoch(v)
    }
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
        assert!(
            !names.iter().any(|n| n.ends_with(".epoch")),
            "no time line: {names:?}"
        );
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

    #[test]
    fn roles_decide_columns_and_identifiers_stay_in_explanations() {
        let records: Vec<Value> = (0..200)
            .map(|i| {
                json!({
                    "id": i + 1,
                    "ref": format!("{i:08x}-1234-4abc-8def-0123456789ab"),
                    "amount": 10.0 + (i % 50) as f64,
                    "note": format!("customer {i} asked for a refund"),
                    "created_at": format!("2024-03-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24),
                })
            })
            .collect();
        let v = VectorizerParams::new().fit(&records).unwrap();
        let role = |p: &str| v.fields().iter().find(|f| f.path == p).unwrap().role;
        assert_eq!(role("id"), FieldRole::Identifier);
        assert_eq!(role("ref"), FieldRole::Identifier);
        assert_eq!(role("amount"), FieldRole::Measurement);
        assert_eq!(role("note"), FieldRole::Text);
        assert_eq!(role("created_at"), FieldRole::Timestamp);
        let names = v.feature_names();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with("id") || n.starts_with("ref")),
            "{names:?}"
        );
        assert!(names.contains(&"note.length".to_string()), "{names:?}");
        let rule = &v.fields().iter().find(|f| f.path == "id").unwrap().rule;
        assert!(
            rule.contains("sequence") || rule.contains("identifier"),
            "{rule}"
        );
        // A new id is neither unusual nor a new field; it is shown in the explanation.
        let odd = json!({"id": 100_000, "ref": "ffffffff-1234-4abc-8def-0123456789ab", "amount": 30.0,
            "note": "customer 7 asked for a refund", "created_at": "2024-03-05T10:00:00Z"});
        let (x, notes) = v.transform(&odd).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(x.len(), v.n_features());
        let fields = v.explain_fields(&odd, &vec![0.0; v.n_features()]).unwrap();
        let id = fields.iter().find(|f| f.field == "id").unwrap();
        assert_eq!(id.description, "`id` = 100000 (identifier, not scored)");
        assert!(!id.unusual);
    }

    #[test]
    fn pinned_roles_win() {
        let mut pins = FieldRoles::new();
        pins.insert("amount".into(), FieldRole::Ignore);
        pins.insert("express".into(), FieldRole::Category);
        let v = VectorizerParams::new()
            .field_roles(pins)
            .fit(&training())
            .unwrap();
        let spec = |p: &str| v.fields().iter().find(|f| f.path == p).unwrap().clone();
        assert_eq!(spec("amount").role, FieldRole::Ignore);
        assert_eq!(spec("amount").rule, "pinned");
        assert_eq!(spec("amount").width, 0);
        assert_eq!(spec("express").role, FieldRole::Category);
        let names = v.feature_names();
        assert!(!names.iter().any(|n| n.starts_with("amount")), "{names:?}");
        assert!(names.contains(&"express#0".to_string()), "{names:?}");
        let fields = v
            .explain_fields(
                &json!({"amount": 5, "express": true}),
                &vec![0.0; v.n_features()],
            )
            .unwrap();
        assert!(
            !fields.iter().any(|f| f.field == "amount"),
            "ignored fields are not mentioned"
        );
    }

    #[test]
    fn the_column_cap_keeps_the_most_frequent_fields() {
        // Every record has `a` and `b`, and 500 fields of its own.
        let records: Vec<Value> = (0..20)
            .map(|i| {
                let mut m = serde_json::Map::new();
                m.insert("a".into(), json!(i % 3));
                m.insert("b".into(), json!(["x", "y"][i % 2]));
                for j in 0..500 {
                    m.insert(format!("f{i}_{j}"), json!(j));
                }
                Value::Object(m)
            })
            .collect();
        let v = VectorizerParams::new()
            .max_columns(40)
            .fit(&records)
            .unwrap();
        assert!(v.n_features() <= 40, "{}", v.n_features());
        let kept: Vec<&str> = v.fields().iter().map(|f| f.path.as_str()).collect();
        assert!(kept.contains(&"a") && kept.contains(&"b"), "{kept:?}");
        assert_eq!(v.left_out().total, 20 * 500 + 2 - kept.len());
        assert_eq!(v.left_out().sample.len(), MAX_LISTED_FIELDS);
        let (_, notes) = v.transform(&records[0]).unwrap();
        assert_eq!(notes.unseen_total(), 502 - kept.len());
        assert_eq!(notes.unseen_fields.len(), MAX_LISTED_FIELDS);
        let fields = v
            .explain_fields(&records[0], &vec![0.0; v.n_features()])
            .unwrap();
        assert!(
            fields.len() <= kept.len() + MAX_LISTED_FIELDS + 1,
            "{}",
            fields.len()
        );
        assert!(
            fields.last().unwrap().description.contains("more fields"),
            "{:?}",
            fields.last()
        );
        assert!(matches!(
            VectorizerParams::new().max_columns(0).fit(&records),
            Err(Error::InvalidParameter { .. })
        ));
    }

    #[test]
    fn repeated_rows_do_not_hide_identifiers() {
        // The same 40 rows returned five times over: `id` still has one value per distinct row.
        let rows: Vec<Value> = (0..40)
            .map(|i| json!({"id": 1000 + i * 7, "amount": (i % 9) as f64}))
            .collect();
        let records: Vec<Value> = (0..5).flat_map(|_| rows.clone()).collect();
        let v = VectorizerParams::new().fit(&records).unwrap();
        assert_eq!(v.fields()[1].path, "id");
        assert_eq!(
            v.fields()[1].role,
            FieldRole::Identifier,
            "{}",
            v.fields()[1].rule
        );
    }
}
