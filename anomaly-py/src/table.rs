//! `anomaly.read_table`: a table file, or rows a DataFrame was turned into, as a numeric matrix with its feature
//! names and each column's role (`anomaly_core::table`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anomaly_core::records::vectorizer::VectorizerParams;
use anomaly_core::table::{TableEncoding, TableFormat, TableOptions, TableReader, parse_delimiter};
use ndarray::Array2;
use numpy::{IntoPyArray, PyArray2};
use pyo3::prelude::*;
use serde_json::Value;

use crate::engine::{field_roles, json_records};
use crate::errors::IntoPyResult;

/// `(column, role, rule)` per column of the table.
type Roles = Vec<(String, String, String)>;

/// The matrix, its column names, and each column's role.
type Read<'py> = (Bound<'py, PyArray2<f64>>, Vec<String>, Roles);

/// Reads the table at `path` (CSV, JSON lines, Parquet; `format` and `delimiter` as `detect` takes them) and
/// encodes it.
#[pyfunction]
#[pyo3(signature = (path, format=None, delimiter=None, roles=None))]
pub(crate) fn _read_table_file<'py>(
    py: Python<'py>,
    path: PathBuf,
    format: Option<String>,
    delimiter: Option<String>,
    roles: Option<BTreeMap<String, String>>,
) -> PyResult<Read<'py>> {
    let format = format
        .map(|f| f.parse::<TableFormat>())
        .transpose()
        .py_err()?;
    let delimiter = delimiter
        .as_deref()
        .map(parse_delimiter)
        .transpose()
        .py_err()?;
    let params = VectorizerParams::new().field_roles(field_roles(roles.unwrap_or_default())?);
    let options = TableOptions { format, delimiter };
    let (x, names, columns) = py
        .detach(|| {
            let mut reader = TableReader::open(&path, &options)?;
            let rows = reader.read_all()?;
            encode(&rows, reader.columns(), &params)
        })
        .py_err()?;
    Ok((x.into_pyarray(py), names, columns))
}

/// Encodes rows (dicts, as a DataFrame's rows are turned into) whose columns, in order, are `columns`.
#[pyfunction]
#[pyo3(signature = (rows, columns, roles=None))]
pub(crate) fn _read_table_rows<'py>(
    py: Python<'py>,
    rows: &Bound<'py, PyAny>,
    columns: Vec<String>,
    roles: Option<BTreeMap<String, String>>,
) -> PyResult<Read<'py>> {
    let rows = json_records(rows)?;
    let params = VectorizerParams::new().field_roles(field_roles(roles.unwrap_or_default())?);
    let (x, names, columns) = py.detach(|| encode(&rows, &columns, &params)).py_err()?;
    Ok((x.into_pyarray(py), names, columns))
}

fn encode(
    rows: &[Value],
    columns: &[String],
    params: &VectorizerParams,
) -> anomaly_core::Result<(Array2<f64>, Vec<String>, Roles)> {
    let encoding = TableEncoding::learn(rows, columns, params)?;
    let x = encoding.matrix(rows)?;
    let listed: Roles = encoding
        .fields_in_file_order(columns)
        .into_iter()
        .map(|f| (f.path.clone(), f.role.as_str().to_string(), f.rule.clone()))
        .collect();
    Ok((x, encoding.feature_names(), listed))
}
