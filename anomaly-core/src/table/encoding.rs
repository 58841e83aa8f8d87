//! How a table's rows become a numeric matrix: a table of numbers is taken as it is, column by column; any other
//! table goes through the record vectorizer.

use std::collections::HashMap;

use ndarray::Array2;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::records::kind::FieldKind;
use crate::records::role::FieldRole;
use crate::records::vectorizer::{FieldSpec, Vectorizer, VectorizerParams};

/// What was learnt about a table's columns, and how its rows become vectors.
#[derive(Debug, Clone)]
pub struct TableEncoding {
    /// The schema learnt from the rows: every column's role and the rule that decided it.
    pub vectorizer: Vectorizer,
    /// `Some(columns)` when the table holds numbers only, besides identifiers and ignored columns: its rows are
    /// then these columns' values, in file order, as a numeric file would be read (no imputation, no scaling, no
    /// missing-value columns), so an identifier column does not change a single score.
    pub numbers: Option<Vec<String>>,
    /// The training median of each of `numbers`, which stands in for a cell without a number in rows read later.
    medians: Vec<f64>,
}

/// A cell of a table of numbers that holds no number, in a row read after learning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NotANumber<'a> {
    /// The column.
    pub column: &'a str,
    /// What the cell holds: `null` for a blank.
    pub value: &'a Value,
}

impl TableEncoding {
    /// Learns the columns of `rows` (a table's rows, its columns in file order), with the roles `params` pins.
    ///
    /// When the schema's column cap ([`VectorizerParams::max_columns`]) leaves columns of a table of numbers out,
    /// the schema is learnt again with two columns per table column, so that none is. The table counts as numbers only when every scored column is a
    /// measurement of numbers, no column was left out, and every row holds a number (not a blank) in each of them,
    /// and nothing but the file's columns.
    ///
    /// # Errors
    /// As [`VectorizerParams::fit`].
    pub fn learn(
        rows: &[Value],
        columns: &[String],
        params: &VectorizerParams,
    ) -> Result<TableEncoding> {
        let wide_enough = params
            .get_max_columns()
            .max(columns.len().saturating_mul(2));
        let vectorizer = params.clone().max_columns(wide_enough).fit(rows)?;
        let number_field = |path: &str| {
            vectorizer.fields().iter().find(|f| {
                f.path == path && f.role == FieldRole::Measurement && f.kind == FieldKind::Number
            })
        };
        let measured: Vec<String> = columns
            .iter()
            .filter(|c| number_field(c).is_some())
            .cloned()
            .collect();
        let only_numbers = !measured.is_empty()
            && vectorizer.left_out().total == 0
            && vectorizer.fields().iter().all(|f| {
                matches!(f.role, FieldRole::Identifier | FieldRole::Ignore)
                    || measured.contains(&f.path)
            })
            && rows.iter().all(|r| {
                r.as_object().is_some_and(|o| {
                    o.len() == columns.len()
                        && measured
                            .iter()
                            .all(|c| o.get(c).is_some_and(Value::is_number))
                })
            });
        let medians = measured
            .iter()
            .map(|c| number_field(c).map_or(0.0, |f| f.imputation))
            .collect();
        Ok(TableEncoding {
            numbers: only_numbers.then_some(measured),
            medians,
            vectorizer,
        })
    }

    /// The names of the matrix's columns.
    pub fn feature_names(&self) -> Vec<String> {
        match &self.numbers {
            Some(columns) => columns.clone(),
            None => self.vectorizer.feature_names(),
        }
    }

    /// The vector of one row, strictly: a row of a table of numbers must hold a number in each of its columns.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] naming the column without a number, and as [`Vectorizer::transform`].
    pub fn vector(&self, row: &Value) -> Result<Vec<f64>> {
        let mut missing = None;
        let v = self.vector_imputing(row, |cell| {
            missing.get_or_insert_with(|| cell.column.to_string());
        })?;
        match missing {
            Some(c) => Err(Error::InvalidRecord {
                reason: format!("column {c:?} holds no number"),
            }),
            None => Ok(v),
        }
    }

    /// The vector of one row read after learning. In a table of numbers, a cell without a number (a blank, text)
    /// takes its column's training median and is told to `on_missing`; other tables impute as the vectorizer does.
    ///
    /// # Errors
    /// As [`Vectorizer::transform`].
    pub fn vector_imputing(
        &self,
        row: &Value,
        mut on_missing: impl FnMut(NotANumber<'_>),
    ) -> Result<Vec<f64>> {
        match &self.numbers {
            Some(columns) => Ok(columns
                .iter()
                .zip(&self.medians)
                .map(|(c, &median)| match row.get(c) {
                    Some(v) if v.is_number() => v.as_f64().unwrap_or(median),
                    cell => {
                        on_missing(NotANumber {
                            column: c,
                            value: cell.unwrap_or(&Value::Null),
                        });
                        median
                    }
                })
                .collect()),
            None => Ok(self.vectorizer.transform(row)?.0),
        }
    }

    /// The matrix of `rows`, one row each, strictly (see [`vector`](Self::vector)).
    ///
    /// # Errors
    /// As [`vector`](Self::vector), naming the row (from 1).
    pub fn matrix(&self, rows: &[Value]) -> Result<Array2<f64>> {
        if self.numbers.is_none() {
            return self.vectorizer.transform_many(rows);
        }
        let width = self.feature_names().len();
        let mut data = Vec::with_capacity(rows.len() * width);
        for (i, r) in rows.iter().enumerate() {
            let v = self.vector(r).map_err(|e| match e {
                Error::InvalidRecord { reason } => Error::InvalidRecord {
                    reason: format!("row {}: {reason}", i + 1),
                },
                e => e,
            })?;
            data.extend_from_slice(&v);
        }
        Array2::from_shape_vec((rows.len(), width), data).map_err(|e| Error::InvalidRecord {
            reason: e.to_string(),
        })
    }

    /// The schema's fields grouped by the table column they come from, in file order (a nested JSON column by its
    /// leaves, in path order); fields of no listed column last.
    pub fn fields_in_file_order(&self, columns: &[String]) -> Vec<&FieldSpec> {
        let index: HashMap<&str, usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        // A field's column: its own path, or the longest dotted prefix of it that names a column.
        let column_of = |path: &str| {
            let mut p = path;
            loop {
                if let Some(&i) = index.get(p) {
                    return i;
                }
                match p.rfind('.') {
                    Some(dot) => p = &p[..dot],
                    None => return usize::MAX,
                }
            }
        };
        let mut fields: Vec<(usize, &FieldSpec)> = self
            .vectorizer
            .fields()
            .iter()
            .map(|f| (column_of(&f.path), f))
            .collect();
        fields.sort_by_key(|(column, _)| *column);
        fields.into_iter().map(|(_, f)| f).collect()
    }

    /// Columns set aside as identifiers, which name a row.
    pub fn identifiers(&self) -> Vec<String> {
        self.vectorizer
            .fields()
            .iter()
            .filter(|f| f.role == FieldRole::Identifier)
            .map(|f| f.path.clone())
            .collect()
    }
}
