//! Records held as columns (a data frame's, as `anomaly._columns` hands them over): numbers and booleans borrowed
//! from their numpy arrays, other values read once into one text buffer per column, so the core scores them
//! without a dict, or a JSON object, per record.

use anomaly_core::records::columns::{ColumnValues, RecordColumns};
use anomaly_core::records::flatten::Leaf;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::named;

/// One value of a column of Python objects.
#[derive(Clone, Copy)]
enum Cell {
    Null,
    Bool(bool),
    Number(f64),
    /// A string: its bytes in the column's text buffer.
    Text(usize, usize),
}

/// One column as read from Python.
enum Column<'py> {
    Numbers(PyReadonlyArray1<'py, f64>),
    Integers(PyReadonlyArray1<'py, i64>),
    Booleans(PyReadonlyArray1<'py, bool>),
    Objects {
        text: String,
        cells: Vec<Cell>,
    },
    /// Strings as Arrow holds them: `offsets` (one more than the rows) into the UTF-8 bytes `chars`, and which
    /// rows are null.
    Texts {
        offsets: PyReadonlyArray1<'py, i64>,
        chars: PyReadonlyArray1<'py, u8>,
        nulls: PyReadonlyArray1<'py, bool>,
    },
}

/// Columns read from Python, kept alive while the core reads them.
pub(crate) struct Columns<'py> {
    rows: usize,
    names: Vec<String>,
    columns: Vec<Column<'py>>,
}

impl<'py> Columns<'py> {
    /// Reads `arrays` (contiguous 1-D numpy arrays of float64, int64, bool or objects, one per name, each of `rows`
    /// values). A Python object is read as in a dict record: `None` is missing, and so are a NaN and an infinity;
    /// `str`, `bool`, `int`, `float` and numpy scalars are values; a dict, list or tuple raises
    /// `InvalidRecordError` (flatten nested values first), any other type `TypeError`, naming the column and row.
    pub(crate) fn read(
        names: Vec<String>,
        arrays: Vec<Bound<'py, PyAny>>,
        rows: usize,
    ) -> PyResult<Self> {
        let columns = names
            .iter()
            .zip(&arrays)
            .map(|(name, a)| column(name, a))
            .collect::<PyResult<_>>()?;
        Ok(Columns {
            rows,
            names,
            columns,
        })
    }

    /// The leaves of each column of objects or strings (`None` for the others), which [`view`](Self::view)
    /// borrows.
    ///
    /// # Errors
    /// [`anomaly_core::Error::InvalidParameter`] for Arrow strings whose offsets or bytes are not valid.
    pub(crate) fn leaves(&self) -> Result<Vec<Option<Vec<Leaf<'_>>>>, anomaly_core::Error> {
        self.names
            .iter()
            .zip(&self.columns)
            .map(|(name, c)| match c {
                Column::Objects { text, cells } => Ok(Some(
                    cells
                        .iter()
                        .map(|cell| match *cell {
                            Cell::Null => Leaf::Null,
                            Cell::Bool(b) => Leaf::Bool(b),
                            Cell::Number(v) => Leaf::Number(v),
                            Cell::Text(start, end) => Leaf::String(&text[start..end]),
                        })
                        .collect(),
                )),
                Column::Texts {
                    offsets,
                    chars,
                    nulls,
                } => text_leaves(
                    name,
                    contiguous(offsets.as_slice())?,
                    contiguous(chars.as_slice())?,
                    contiguous(nulls.as_slice())?,
                )
                .map(Some),
                _ => Ok(None),
            })
            .collect()
    }

    /// The core's view of the columns, with `leaves` from [`leaves`](Self::leaves).
    pub(crate) fn view<'a>(
        &'a self,
        leaves: &'a [Option<Vec<Leaf<'a>>>],
    ) -> Result<RecordColumns<'a>, anomaly_core::Error> {
        let mut out = RecordColumns::new(self.rows);
        for ((name, column), leaves) in self.names.iter().zip(&self.columns).zip(leaves) {
            let values = match (column, leaves) {
                (_, Some(leaves)) => ColumnValues::Leaves(leaves),
                (Column::Numbers(a), None) => ColumnValues::Numbers(contiguous(a.as_slice())?),
                (Column::Integers(a), None) => ColumnValues::Integers(contiguous(a.as_slice())?),
                (Column::Booleans(a), None) => ColumnValues::Booleans(contiguous(a.as_slice())?),
                (Column::Objects { .. } | Column::Texts { .. }, None) => ColumnValues::Leaves(&[]),
            };
            out.push(name, values)?;
        }
        Ok(out)
    }
}

fn contiguous<T>(slice: Result<&[T], numpy::AsSliceError>) -> Result<&[T], anomaly_core::Error> {
    slice.map_err(|_| anomaly_core::Error::InvalidParameter {
        name: "columns",
        reason: "a column's values must be contiguous".into(),
    })
}

/// The strings of an Arrow string column, checked: UTF-8 bytes, and offsets that rise within them on character
/// boundaries.
fn text_leaves<'a>(
    name: &str,
    offsets: &[i64],
    chars: &'a [u8],
    nulls: &[bool],
) -> Result<Vec<Leaf<'a>>, anomaly_core::Error> {
    let invalid = |row: usize, what: &str| anomaly_core::Error::InvalidParameter {
        name: "columns",
        reason: format!("column `{name}`, row {row}: {what}"),
    };
    if offsets.len() != nulls.len() + 1 {
        return Err(invalid(0, "offsets do not match the rows"));
    }
    let text = std::str::from_utf8(chars).map_err(|e| {
        let row = offsets
            .partition_point(|&o| usize::try_from(o).is_ok_and(|o| o <= e.valid_up_to()))
            .saturating_sub(1);
        invalid(row, "a string that is not UTF-8")
    })?;
    nulls
        .iter()
        .zip(offsets.windows(2))
        .enumerate()
        .map(|(row, (&null, span))| {
            if null {
                return Ok(Leaf::Null);
            }
            let (start, end) = (usize::try_from(span[0]), usize::try_from(span[1]));
            match (start, end) {
                (Ok(start), Ok(end)) => text.get(start..end),
                _ => None,
            }
            .map(Leaf::String)
            .ok_or_else(|| {
                invalid(
                    row,
                    "offsets outside the string bytes or inside a character",
                )
            })
        })
        .collect()
}

/// One array as a column: a numpy array, or Arrow strings as `(offsets, chars, nulls)`.
fn column<'py>(name: &str, a: &Bound<'py, PyAny>) -> PyResult<Column<'py>> {
    if let Ok((offsets, chars, nulls)) = a.extract::<(
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyArray1<u8>>,
        Bound<'py, PyArray1<bool>>,
    )>() {
        return Ok(Column::Texts {
            offsets: offsets.readonly(),
            chars: chars.readonly(),
            nulls: nulls.readonly(),
        });
    }
    if let Ok(a) = a.cast::<PyArray1<f64>>() {
        return Ok(Column::Numbers(a.readonly()));
    }
    if let Ok(a) = a.cast::<PyArray1<i64>>() {
        return Ok(Column::Integers(a.readonly()));
    }
    if let Ok(a) = a.cast::<PyArray1<bool>>() {
        return Ok(Column::Booleans(a.readonly()));
    }
    let objects = a.cast::<PyArray1<Py<PyAny>>>().map_err(|_| {
        PyTypeError::new_err(format!(
            "column `{name}`: expected a 1-D array of float64, int64, bool or objects"
        ))
    })?;
    let objects = objects.readonly();
    let objects = objects
        .as_slice()
        .map_err(|_| PyTypeError::new_err(format!("column `{name}`: values must be contiguous")))?;
    let py = a.py();
    let mut text = String::new();
    let mut cells = Vec::with_capacity(objects.len());
    for (row, v) in objects.iter().enumerate() {
        cells.push(cell(v.bind(py), &mut text).map_err(|e| at(py, name, row, e))?);
    }
    Ok(Column::Objects { text, cells })
}

/// A Python value as a cell, by the rules of a value in a dict record.
fn cell(v: &Bound<'_, PyAny>, text: &mut String) -> PyResult<Cell> {
    if v.is_none() {
        return Ok(Cell::Null);
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Cell::Bool(b.is_true()));
    }
    if let Ok(s) = v.cast::<PyString>() {
        let start = text.len();
        text.push_str(&s.to_cow()?);
        return Ok(Cell::Text(start, text.len()));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Cell::Number(i as f64));
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Cell::Number(u as f64));
        }
        return Ok(Cell::Number(v.extract::<f64>()?));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(Cell::Number(f.value()));
    }
    if v.is_instance_of::<PyDict>() || v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>()
    {
        return Err(named(
            v.py(),
            "InvalidRecordError",
            "a nested value (dict, list or tuple): flatten the column first, for example with \
             pandas.json_normalize, whose dotted column names are the engine's field paths"
                .into(),
        ));
    }
    // numpy scalars: integers through `__index__`, floats through `__float__`.
    if v.hasattr("__index__")?
        && let Ok(i) = v.extract::<i64>()
    {
        return Ok(Cell::Number(i as f64));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(Cell::Number(f));
    }
    Err(PyTypeError::new_err(format!(
        "cannot use a value of type {} in a record (expected str, bool, int, float or None)",
        v.get_type().name()?
    )))
}

/// `e` with the column and row it concerns, of the same exception type.
fn at(py: Python<'_>, name: &str, row: usize, e: PyErr) -> PyErr {
    let located = format!("column `{name}`, row {row}: {}", e.value(py));
    let ty = e.get_type(py);
    match ty.call1((located,)) {
        Ok(instance) => {
            let err = PyErr::from_value(instance);
            err.set_cause(py, Some(e));
            err
        }
        Err(_) => e,
    }
}
