//! A batch of records held column by column: what a data frame holds, read without building a JSON object per
//! record.
//!
//! Each column is one field's values, one per record, under the field's dotted path (`customer.tier`, as
//! [`flatten`](super::flatten) names a nested field and as `pandas.json_normalize` names its columns). Row `i` of
//! the columns is the record whose leaves are the columns' values in row `i`, so the vectoriser gives it the same
//! vector, bit for bit, as the JSON record with those leaves ([`RecordColumns::record`]). A missing value (a null,
//! or a NaN or infinity in a column of numbers, as a NaN is in a record passed from Python) is a null leaf: the
//! field takes its imputation value, as when it is absent.

use serde_json::Value;

use super::flatten::{Leaf, Limits};
use crate::error::{Error, Result};

/// One column's values.
#[derive(Debug, Clone, Copy)]
pub enum ColumnValues<'a> {
    /// Floating-point numbers; a NaN or an infinity is a missing value.
    Numbers(&'a [f64]),
    /// Whole numbers (read as a JSON integer is: converted to the nearest `f64`).
    Integers(&'a [i64]),
    /// Booleans.
    Booleans(&'a [bool]),
    /// Any leaves, mixed: strings, numbers, booleans and nulls (a non-finite number is a null).
    Leaves(&'a [Leaf<'a>]),
    /// Strings in Arrow's layout: row `i` is `text[offsets[i]..offsets[i + 1]]`, or null where `nulls[i]`
    /// (checked by [`RecordColumns::push`]: one more offset than rows, rising within `text`, on character
    /// boundaries).
    Strings {
        /// The strings' bytes, one after the other.
        text: &'a str,
        /// Where each string starts, and where the last ends.
        offsets: &'a [i64],
        /// Which rows are null.
        nulls: &'a [bool],
    },
}

impl<'a> ColumnValues<'a> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ColumnValues::Numbers(v) => v.len(),
            ColumnValues::Integers(v) => v.len(),
            ColumnValues::Booleans(v) => v.len(),
            ColumnValues::Leaves(v) => v.len(),
            ColumnValues::Strings { nulls, .. } => nulls.len(),
        }
    }

    /// Checks a [`Strings`](ColumnValues::Strings) column's layout.
    fn check(&self) -> std::result::Result<(), String> {
        let ColumnValues::Strings {
            text,
            offsets,
            nulls,
        } = *self
        else {
            return Ok(());
        };
        if offsets.len() != nulls.len() + 1 {
            return Err(format!(
                "{} offsets for {} rows (one more than the rows needed)",
                offsets.len(),
                nulls.len()
            ));
        }
        let mut last = 0;
        for (i, &o) in offsets.iter().enumerate() {
            let o = usize::try_from(o).map_err(|_| format!("offset {i} is negative"))?;
            if (i > 0 && o < last) || !text.is_char_boundary(o) {
                return Err(format!(
                    "offset {i} ({o}) falls before the one above it, past the text or inside a character"
                ));
            }
            last = o;
        }
        Ok(())
    }

    /// Whether the column holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value in `row` as a leaf (a missing value as [`Leaf::Null`]).
    ///
    /// # Panics
    /// If `row` is out of bounds, or for [`Strings`](ColumnValues::Strings) whose offsets are fewer than the rows
    /// and one (which [`RecordColumns::push`] refuses); a string whose offsets are otherwise invalid reads as null.
    pub fn leaf(&self, row: usize) -> Leaf<'a> {
        let number = |v: f64| {
            if v.is_finite() {
                Leaf::Number(v)
            } else {
                Leaf::Null
            }
        };
        match *self {
            ColumnValues::Numbers(v) => number(v[row]),
            ColumnValues::Integers(v) => Leaf::Number(v[row] as f64),
            ColumnValues::Booleans(v) => Leaf::Bool(v[row]),
            ColumnValues::Leaves(v) => match v[row] {
                Leaf::Number(x) => number(x),
                ref other => other.clone(),
            },
            ColumnValues::Strings {
                text,
                offsets,
                nulls,
            } => {
                if nulls[row] {
                    return Leaf::Null;
                }
                // Checked when the column was added: the slice is inside the text, on character boundaries.
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                text.get(start..end).map_or(Leaf::Null, Leaf::String)
            }
        }
    }
}

/// Records as columns of equal length, each under a distinct dotted path.
///
/// ```
/// use anomaly_core::records::columns::{ColumnValues, RecordColumns};
/// use anomaly_core::records::flatten::Leaf;
///
/// let amount = [12.5, 14.0, f64::NAN];
/// let country = [Leaf::String("FR"), Leaf::String("DE"), Leaf::Null];
/// let mut columns = RecordColumns::new(3);
/// columns.push("amount", ColumnValues::Numbers(&amount))?;
/// columns.push("customer.country", ColumnValues::Leaves(&country))?;
/// assert_eq!(columns.record(0), serde_json::json!({"amount": 12.5, "customer.country": "FR"}));
/// assert_eq!(columns.record(2), serde_json::json!({"amount": null, "customer.country": null}));
/// # Ok::<(), anomaly_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct RecordColumns<'a> {
    rows: usize,
    columns: Vec<(&'a str, ColumnValues<'a>)>,
    /// Rows given as whole records instead of the columns' values, by row.
    records: Vec<(usize, &'a Value)>,
}

impl<'a> RecordColumns<'a> {
    /// No columns yet, for `rows` records.
    pub fn new(rows: usize) -> Self {
        RecordColumns {
            rows,
            columns: Vec::new(),
            records: Vec::new(),
        }
    }

    /// Adds the column of field `path`.
    ///
    /// # Errors
    /// [`Error::DimensionMismatch`] (`expected` rows, `got` values) when the column's length is not the number of
    /// records; [`Error::InvalidParameter`] when `path` is already a column, or for strings whose offsets do not
    /// fit their text.
    pub fn push(&mut self, path: &'a str, values: ColumnValues<'a>) -> Result<()> {
        values
            .check()
            .map_err(|reason| Error::invalid("columns", format!("column `{path}`: {reason}")))?;
        if values.len() != self.rows {
            return Err(Error::DimensionMismatch {
                expected: self.rows,
                got: values.len(),
            });
        }
        if self.columns.iter().any(|(p, _)| *p == path) {
            return Err(Error::invalid(
                "columns",
                format!("the column `{path}` is given twice"),
            ));
        }
        self.columns.push((path, values));
        Ok(())
    }

    /// Makes row `row` the JSON record `record` rather than the columns' values in that row: for a record the
    /// columns cannot hold (two leaves on one path, nesting past the limits, a value of a type they do not take),
    /// which is then vectorised, and refused, as a record is. Rows are given in rising order.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a row out of bounds or not after the last one given.
    pub fn replace_row(&mut self, row: usize, record: &'a Value) -> Result<()> {
        if row >= self.rows || self.records.last().is_some_and(|&(last, _)| last >= row) {
            return Err(Error::invalid(
                "columns",
                format!("row {row} is out of bounds or not after the last row replaced"),
            ));
        }
        self.records.push((row, record));
        Ok(())
    }

    /// The record that replaces row `row`, if one does ([`replace_row`](Self::replace_row)).
    pub fn replaced(&self, row: usize) -> Option<&'a Value> {
        if self.records.is_empty() {
            return None;
        }
        self.records
            .binary_search_by_key(&row, |&(r, _)| r)
            .ok()
            .map(|i| self.records[i].1)
    }

    /// The rows replaced by records, in order.
    pub fn replaced_rows(&self) -> &[(usize, &'a Value)] {
        &self.records
    }

    /// Number of records.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The columns, in the order they were added.
    pub fn columns(&self) -> &[(&'a str, ColumnValues<'a>)] {
        &self.columns
    }

    /// Checks the columns against what one record may hold: at most [`Limits::max_fields`] fields.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for more columns.
    pub fn check(&self, limits: &Limits) -> Result<()> {
        let max = limits.max_fields;
        if self.columns.len() > max {
            return Err(Error::InvalidRecord {
                reason: format!(
                    "{} columns: a record holds at most {max} fields",
                    self.columns.len()
                ),
            });
        }
        Ok(())
    }

    /// Record `row` as a JSON object with one key per column (the dotted path as the key, which flattens to the
    /// same path), a missing value as `null`; or the record that [replaces](Self::replace_row) it.
    ///
    /// # Panics
    /// If `row` is out of bounds.
    pub fn record(&self, row: usize) -> Value {
        if let Some(record) = self.replaced(row) {
            return record.clone();
        }
        let map = self
            .columns
            .iter()
            .map(|(path, values)| {
                let value = match values.leaf(row) {
                    Leaf::Null => Value::Null,
                    Leaf::Bool(b) => Value::Bool(b),
                    Leaf::Number(v) => {
                        serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
                    }
                    Leaf::String(s) => Value::String(s.to_string()),
                };
                (path.to_string(), value)
            })
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::IsolationForestParams;
    use crate::engine::{Engine, EngineParams, RecordModel};
    use crate::records::flatten::flatten;
    use crate::records::vectorizer::VectorizerParams;
    use crate::synth::orders;

    /// The leaves of `records` as one column per path (null where a record lacks it), paths in first-seen order.
    fn leaf_columns(records: &[Value]) -> Vec<(String, Vec<Leaf<'_>>)> {
        let limits = Limits::default();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut columns: Vec<(String, Vec<Leaf<'_>>)> = Vec::new();
        for (row, r) in records.iter().enumerate() {
            for (path, leaf) in flatten(r, &limits).unwrap() {
                let c = *index.entry(path.to_string()).or_insert_with(|| {
                    columns.push((path.to_string(), vec![Leaf::Null; records.len()]));
                    columns.len() - 1
                });
                columns[c].1[row] = leaf;
            }
        }
        columns
    }

    fn as_columns<'a>(rows: usize, columns: &'a [(String, Vec<Leaf<'a>>)]) -> RecordColumns<'a> {
        let mut out = RecordColumns::new(rows);
        for (path, leaves) in columns {
            out.push(path, ColumnValues::Leaves(leaves)).unwrap();
        }
        out
    }

    fn model(train: &[Value], threads: Option<usize>) -> RecordModel {
        let forest = IsolationForestParams::new().seed(3).n_threads(threads);
        RecordModel::fit(train, &VectorizerParams::new(), &forest, 1).unwrap()
    }

    #[test]
    fn columns_score_as_their_records_do_bit_for_bit() {
        let train: Vec<Value> = orders(1, 2_000, 20).into_iter().map(|(r, _)| r).collect();
        let mut probe: Vec<Value> = orders(2, 3_000, 60).into_iter().map(|(r, _)| r).collect();
        // What does not fit the schema: an unseen field, a type change, an unseen category, nulls.
        probe[5]["coupon"] = json!("SPRING");
        probe[6]["amount"] = json!("a lot");
        probe[7]["customer"]["country"] = json!("ZZ");
        probe[8]["status"] = Value::Null;
        probe[9].as_object_mut().unwrap().remove("discount");
        let columns = leaf_columns(&probe);
        let columns = as_columns(probe.len(), &columns);
        for threads in [Some(1), Some(2), None] {
            let m = model(&train, threads);
            let expected = m.score_many(&probe).unwrap();
            assert_eq!(m.score_columns(&columns).unwrap(), expected, "{threads:?}");
            let x = m.vectorizer().transform_many(&probe).unwrap();
            assert_eq!(m.vectorizer().transform_columns(&columns).unwrap(), x);
        }
        // Each row is the record it reads as.
        let m = model(&train, Some(1));
        for row in [0, 5, 6, 7, 8, 9] {
            let v = columns.record(row);
            assert_eq!(
                m.score(&v).unwrap(),
                m.score_many(&probe[row..=row]).unwrap()[0]
            );
        }
    }

    #[test]
    fn typed_columns_read_as_leaves() {
        let train: Vec<Value> = (0..300)
            .map(|i| json!({"n": (i % 17) as f64 + 0.5, "k": i % 5, "ok": i % 3 == 0, "s": if i % 2 == 0 { "a" } else { "b" }}))
            .collect();
        let m = model(&train, Some(1));
        let n = [1.5, f64::NAN, f64::INFINITY, 99.0];
        let k = [1_i64, 2, 3, i64::MAX];
        let ok = [true, false, true, false];
        let s = [
            Leaf::String("a"),
            Leaf::Null,
            Leaf::Number(f64::NAN),
            Leaf::String("zz"),
        ];
        let mut columns = RecordColumns::new(4);
        columns.push("n", ColumnValues::Numbers(&n)).unwrap();
        columns.push("k", ColumnValues::Integers(&k)).unwrap();
        columns.push("ok", ColumnValues::Booleans(&ok)).unwrap();
        columns.push("s", ColumnValues::Leaves(&s)).unwrap();
        // The same strings in Arrow's layout, sliced (offsets not from 0), with bytes under the null row.
        let text = "__a??zz";
        let offsets = [2_i64, 3, 5, 5, 7];
        let nulls = [false, true, true, false];
        let mut arrow = RecordColumns::new(4);
        arrow.push("n", ColumnValues::Numbers(&n)).unwrap();
        arrow.push("k", ColumnValues::Integers(&k)).unwrap();
        arrow.push("ok", ColumnValues::Booleans(&ok)).unwrap();
        arrow
            .push(
                "s",
                ColumnValues::Strings {
                    text,
                    offsets: &offsets,
                    nulls: &nulls,
                },
            )
            .unwrap();
        assert_eq!(
            m.score_columns(&arrow).unwrap(),
            m.score_columns(&columns).unwrap()
        );
        for bad in [[2_i64, 3, 5, 4, 7], [2, 3, 5, 5, 8], [-1, 3, 5, 5, 7]] {
            let err = RecordColumns::new(4).push(
                "s",
                ColumnValues::Strings {
                    text,
                    offsets: &bad,
                    nulls: &nulls,
                },
            );
            assert!(
                matches!(err, Err(Error::InvalidParameter { .. })),
                "{bad:?}"
            );
        }
        let accents = "é";
        let inside = RecordColumns::new(1).push(
            "s",
            ColumnValues::Strings {
                text: accents,
                offsets: &[0, 1],
                nulls: &[false],
            },
        );
        assert!(matches!(inside, Err(Error::InvalidParameter { .. })));
        let records = [
            json!({"n": 1.5, "k": 1, "ok": true, "s": "a"}),
            json!({"n": null, "k": 2, "ok": false, "s": null}),
            json!({"k": 3, "ok": true}),
            json!({"n": 99.0, "k": i64::MAX, "ok": false, "s": "zz"}),
        ];
        assert_eq!(
            m.score_columns(&columns).unwrap(),
            m.score_many(&records).unwrap()
        );
    }

    #[test]
    fn refuses_ragged_twice_given_and_too_many_columns() {
        let a = [1.0, 2.0];
        let mut columns = RecordColumns::new(3);
        assert!(matches!(
            columns.push("a", ColumnValues::Numbers(&a)),
            Err(Error::DimensionMismatch {
                expected: 3,
                got: 2
            })
        ));
        let mut columns = RecordColumns::new(2);
        columns.push("a", ColumnValues::Numbers(&a)).unwrap();
        assert!(matches!(
            columns.push("a", ColumnValues::Numbers(&a)),
            Err(Error::InvalidParameter { .. })
        ));
        let names: Vec<String> = (0..11).map(|i| format!("f{i}")).collect();
        let mut wide = RecordColumns::new(2);
        for name in &names {
            wide.push(name, ColumnValues::Numbers(&a)).unwrap();
        }
        let limits = Limits {
            max_depth: 4,
            max_fields: 10,
        };
        assert!(matches!(
            wide.check(&limits),
            Err(Error::InvalidRecord { .. })
        ));
        let train: Vec<Value> = (0..50)
            .map(|i| json!({"f0": (i * 7) % 11, "f1": i % 3}))
            .collect();
        let m = RecordModel::fit(
            &train,
            &VectorizerParams::new().limits(limits),
            &IsolationForestParams::new(),
            1,
        )
        .unwrap();
        assert!(matches!(
            m.score_columns(&wide),
            Err(Error::InvalidRecord { .. })
        ));
        // No rows: no verdicts.
        assert!(m.score_columns(&RecordColumns::new(0)).unwrap().is_empty());
    }

    #[test]
    fn the_engine_scores_columns_as_records_with_the_range_rule() {
        let train: Vec<Value> = orders(4, 600, 0).into_iter().map(|(r, _)| r).collect();
        let probe: Vec<Value> = orders(5, 500, 25).into_iter().map(|(r, _)| r).collect();
        let engine = Engine::in_memory(EngineParams::new().min_training_records(600)).unwrap();
        let columns = leaf_columns(&probe);
        let columns = as_columns(probe.len(), &columns);
        let learning = engine.score_columns("orders", &columns).unwrap();
        assert!(
            learning
                .iter()
                .all(|o| matches!(o, crate::engine::Outcome::Learning { .. }))
        );
        engine.observe_many("orders", &train).unwrap();
        let expected = engine.score_many("orders", &probe).unwrap();
        assert!(
            expected
                .iter()
                .any(|o| o.verdict().is_some_and(|v| v.flagged_by.range_rule))
        );
        assert_eq!(engine.score_columns("orders", &columns).unwrap(), expected);
    }

    #[test]
    fn replaced_rows_read_as_their_records() {
        let train: Vec<Value> = orders(6, 800, 8).into_iter().map(|(r, _)| r).collect();
        let mut probe: Vec<Value> = orders(7, 300, 6).into_iter().map(|(r, _)| r).collect();
        // Two leaves on one path, which no column can hold in one row.
        probe[10]["customer.tier"] = json!("gold");
        let leaves = leaf_columns(&probe);
        let mut columns = as_columns(probe.len(), &leaves);
        columns.replace_row(10, &probe[10]).unwrap();
        assert_eq!(columns.record(10), probe[10]);
        let m = model(&train, Some(2));
        assert_eq!(
            m.score_columns(&columns).unwrap(),
            m.score_many(&probe).unwrap()
        );
        assert!(matches!(
            columns.replace_row(10, &probe[10]),
            Err(Error::InvalidParameter { .. })
        ));
        // A replaced row the schema refuses fails the batch, naming the row.
        let mut deep = json!({"leaf": 1});
        for _ in 0..40 {
            deep = json!({ "n": deep });
        }
        columns.replace_row(200, &deep).unwrap();
        let err = m.score_columns(&columns).unwrap_err();
        assert!(
            err.to_string().contains("record 200: nested deeper"),
            "{err}"
        );
        let engine = Engine::in_memory(EngineParams::new()).unwrap();
        let err = engine.score_columns("new", &columns).unwrap_err();
        assert!(
            err.to_string().contains("record 200: nested deeper"),
            "{err}"
        );
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1e6..1e6f64).prop_map(|v| json!(v)),
            (-1000..1000i64).prop_map(|v| json!(v)),
            prop::sample::select(vec!["a", "b", "c", "12.5", "2024-03-01T10:00:00Z", "x y z"])
                .prop_map(|s| json!(s)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_records_score_alike_as_columns(
            train in prop::collection::vec(prop::collection::btree_map("[pqrs]", leaf(), 0..4), 20..60),
            probe in prop::collection::vec(prop::collection::btree_map("[pqrst]", leaf(), 0..5), 1..40),
        ) {
            let train: Vec<Value> = train.into_iter().map(|m| json!(m)).collect();
            let probe: Vec<Value> = probe.into_iter().map(|m| json!(m)).collect();
            let forest = IsolationForestParams::new().n_estimators(20).n_threads(Some(1));
            let Ok(m) = RecordModel::fit(&train, &VectorizerParams::new(), &forest, 1) else {
                return Ok(());
            };
            let columns = leaf_columns(&probe);
            let columns = as_columns(probe.len(), &columns);
            prop_assert_eq!(m.score_columns(&columns).unwrap(), m.score_many(&probe).unwrap());
        }
    }
}
