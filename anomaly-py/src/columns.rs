//! Records held as columns (a data frame's, as `anomaly._columns` hands them over): numbers and booleans borrowed
//! from their numpy arrays, other values read once into one text buffer per column, so the core scores them
//! without a dict, or a JSON object, per record.

use std::collections::HashMap;

use anomaly_core::records::columns::{ColumnValues, RecordColumns};
use anomaly_core::records::flatten::{Leaf, Limits, MAX_DEPTH, number_summaries};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use serde_json::Value;

use crate::convert::{MAX_RECORD_DEPTH, MAX_RECORD_VALUES, Scalar, scalar, to_json};
use crate::errors::{IntoPyResult, named};

/// Cells (rows × columns) that dicts read by [`Columns::from_records`] may always fill.
pub(crate) const FREE_CELLS: usize = 1 << 20;

/// Cells that dicts read by [`Columns::from_records`] never exceed: 48 bytes each while scored (the cell, and the
/// leaf the core reads), 1.5 GiB in all, for a batch whose dicts hold at least 8 M values.
pub(crate) const MAX_CELLS: usize = 32 << 20;

/// Cells allowed per row read (see [`Columns::from_records`]).
const CELLS_PER_ROW: usize = 16;

/// Cells allowed per leaf read (see [`Columns::from_records`]).
const CELLS_PER_LEAF: usize = 4;

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
    /// Rows read as whole JSON records (dicts the columns cannot hold), by rising row.
    replaced: Vec<(usize, Value)>,
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
            replaced: Vec::new(),
        })
    }

    /// Reads dicts into columns, one per dotted path, as [`flatten`] would flatten the records that [`to_json`] makes
    /// of them: the same leaves, so each row scores as its record does, bit for bit. A dict the columns cannot hold
    /// as such (two leaves on one path, nesting or leaves beyond `limits`, a non-string key, a container inside a
    /// list, a value of another type) is converted by [`to_json`] and kept as its row's record (raising as the
    /// record path does).
    ///
    /// A list or tuple is read in place; any other iterable is read as it yields, each record converted by
    /// [`to_json`] when it comes (a generator may reuse one dict). The columns are bounded: a column grows only to
    /// the last row that sets it, and their cells, while reading and in the end, stay within [`FREE_CELLS`], or
    /// within 16 per row plus 4 per leaf read and [`MAX_CELLS`]. Records sparser than that (each with fields of its
    /// own) are all kept as records instead.
    ///
    /// [`flatten`]: anomaly_core::records::flatten::flatten
    pub(crate) fn from_records(records: &Bound<'py, PyAny>, limits: &Limits) -> PyResult<Self> {
        let as_records = |rows: Vec<Value>| Columns {
            rows: rows.len(),
            names: Vec::new(),
            columns: Vec::new(),
            replaced: rows.into_iter().enumerate().collect(),
        };
        if !(records.is_instance_of::<PyList>() || records.is_instance_of::<PyTuple>()) {
            let rows = records
                .try_iter()?
                .map(|r| to_json(&r?))
                .collect::<PyResult<_>>()?;
            return Ok(as_records(rows));
        }
        let records: Vec<Bound<'py, PyAny>> = records.try_iter()?.collect::<PyResult<_>>()?;
        let rows = records.len();
        let mut reader = RecordReader {
            limits,
            index: HashMap::new(),
            names: Vec::new(),
            columns: Vec::new(),
            path: String::new(),
            row: 0,
            touched: Vec::new(),
            leaves: 0,
            values: 0,
            all_leaves: 0,
            cells: 0,
            too_wide: false,
        };
        let mut replaced = Vec::new();
        for (row, record) in records.iter().enumerate() {
            reader.start(row);
            let read = match record.cast::<PyDict>() {
                Ok(dict) => reader.object(dict, 1)?,
                Err(_) => false,
            };
            if reader.too_wide {
                break;
            }
            if !read {
                reader.clear_row();
                replaced.push((row, to_json(record)?));
            }
        }
        let all_cells = reader.columns.len().saturating_mul(rows);
        if reader.too_wide || all_cells > reader.budget(rows) {
            drop(reader);
            drop(replaced);
            let rows = records.iter().map(to_json).collect::<PyResult<_>>()?;
            return Ok(as_records(rows));
        }
        Ok(Columns {
            rows,
            names: reader.names,
            columns: reader
                .columns
                .into_iter()
                .map(|mut c| {
                    c.cells.resize(rows, Cell::Null);
                    Column::Objects {
                        text: c.text,
                        cells: c.cells,
                    }
                })
                .collect(),
            replaced,
        })
    }

    /// `f` run on the core's view of the columns, without the GIL.
    pub(crate) fn scored<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&RecordColumns<'_>) -> Result<R, anomaly_core::Error> + Send,
    ) -> PyResult<R> {
        let prepared = self.prepare().py_err()?;
        let view = self.view(&prepared).py_err()?;
        py.detach(|| f(&view)).py_err()
    }

    /// What each column needs before [`view`](Self::view) can borrow it: the leaves of a column of objects, and
    /// for Arrow strings their bytes as text (or, when the bytes are not UTF-8 throughout, which Arrow allows
    /// under null rows, their leaves, each checked).
    ///
    /// # Errors
    /// [`anomaly_core::Error::InvalidParameter`] for Arrow strings whose offsets or bytes are not valid.
    fn prepare(&self) -> Result<Vec<Prepared<'_>>, anomaly_core::Error> {
        self.names
            .iter()
            .zip(&self.columns)
            .map(|(name, c)| match c {
                Column::Objects { text, cells } => Ok(Prepared::Leaves(
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
                } => {
                    let chars = contiguous(chars.as_slice())?;
                    match std::str::from_utf8(chars) {
                        Ok(text) => Ok(Prepared::Text(text)),
                        Err(_) => text_leaves(
                            name,
                            contiguous(offsets.as_slice())?,
                            chars,
                            contiguous(nulls.as_slice())?,
                        )
                        .map(Prepared::Leaves),
                    }
                }
                _ => Ok(Prepared::Direct),
            })
            .collect()
    }

    /// The core's view of the columns, with `prepared` from [`prepare`](Self::prepare).
    fn view<'a>(
        &'a self,
        prepared: &'a [Prepared<'a>],
    ) -> Result<RecordColumns<'a>, anomaly_core::Error> {
        let mut out = RecordColumns::new(self.rows);
        for ((name, column), prepared) in self.names.iter().zip(&self.columns).zip(prepared) {
            let values = match (column, prepared) {
                (_, Prepared::Leaves(leaves)) => ColumnValues::Leaves(leaves),
                (Column::Texts { offsets, nulls, .. }, Prepared::Text(text)) => {
                    ColumnValues::Strings {
                        text,
                        offsets: contiguous(offsets.as_slice())?,
                        nulls: contiguous(nulls.as_slice())?,
                    }
                }
                (Column::Numbers(a), _) => ColumnValues::Numbers(contiguous(a.as_slice())?),
                (Column::Integers(a), _) => ColumnValues::Integers(contiguous(a.as_slice())?),
                (Column::Booleans(a), _) => ColumnValues::Booleans(contiguous(a.as_slice())?),
                // Not prepared (`prepare` prepares every such column): refused by `push` as a length mismatch.
                (Column::Objects { .. } | Column::Texts { .. }, _) => ColumnValues::Leaves(&[]),
            };
            out.push(name, values)?;
        }
        for (row, record) in &self.replaced {
            out.replace_row(*row, record)?;
        }
        Ok(out)
    }
}

/// What a column needs before the core can borrow it (see [`Columns::prepare`]).
enum Prepared<'a> {
    /// Nothing: numbers and booleans are borrowed as they are.
    Direct,
    /// Its values as leaves.
    Leaves(Vec<Leaf<'a>>),
    /// Arrow strings' bytes as text.
    Text(&'a str),
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
    // The bytes the rows span are checked at once; Arrow lets a null row's bytes be anything, so when that check
    // fails, each row that is not null is checked on its own.
    let spanned = match (offsets.first(), offsets.last()) {
        (Some(&first), Some(&last)) => match (usize::try_from(first), usize::try_from(last)) {
            (Ok(first), Ok(last)) => chars.get(first..last).map(|bytes| (first, bytes)),
            _ => None,
        },
        _ => None,
    };
    let whole = spanned.and_then(|(first, bytes)| Some((first, std::str::from_utf8(bytes).ok()?)));
    nulls
        .iter()
        .zip(offsets.windows(2))
        .enumerate()
        .map(|(row, (&null, span))| {
            if null {
                return Ok(Leaf::Null);
            }
            let (start, end) = match (usize::try_from(span[0]), usize::try_from(span[1])) {
                (Ok(start), Ok(end)) if start <= end => (start, end),
                _ => return Err(invalid(row, "offsets that do not rise")),
            };
            let text = match whole {
                Some((first, text)) => start
                    .checked_sub(first)
                    .and_then(|s| text.get(s..end - first)),
                None => match chars.get(start..end) {
                    Some(bytes) => Some(
                        std::str::from_utf8(bytes)
                            .map_err(|_| invalid(row, "a string that is not UTF-8"))?,
                    ),
                    None => None,
                },
            };
            text.map(Leaf::String).ok_or_else(|| {
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
        cells.push(cell(v.bind(py), &mut text, true).map_err(|e| at(py, name, row, e))?);
    }
    Ok(Column::Objects { text, cells })
}

/// A Python value as a cell, by the rules of a value in a dict record ([`scalar`]), and with `pandas_missing`,
/// `pd.NA` and `NaT` missing (a DataFrame's object columns hold them; a dict record does not take them).
fn cell(v: &Bound<'_, PyAny>, text: &mut String, pandas_missing: bool) -> PyResult<Cell> {
    if let Some(s) = scalar(v)? {
        return Ok(s.into_cell(text));
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
    if pandas_missing && is_pandas_missing(v)? {
        return Ok(Cell::Null);
    }
    Err(PyTypeError::new_err(format!(
        "cannot use a value of type {} in a record (expected str, bool, int, float or None)",
        v.get_type().name()?
    )))
}

impl Scalar<'_> {
    /// The cell of the leaf the scalar's JSON value flattens to (a string's bytes appended to `text`).
    fn into_cell(self, text: &mut String) -> Cell {
        match self {
            Scalar::Null => Cell::Null,
            Scalar::Bool(b) => Cell::Bool(b),
            Scalar::Text(t) => {
                let start = text.len();
                text.push_str(&t);
                Cell::Text(start, text.len())
            }
            Scalar::Int(i) => Cell::Number(i as f64),
            Scalar::UInt(u) => Cell::Number(u as f64),
            Scalar::Float(f) => Cell::Number(f),
        }
    }

    /// Whether JSON holds it as null: `None`, or a float that is not finite.
    fn is_null(&self) -> bool {
        match self {
            Scalar::Null => true,
            Scalar::Float(f) => !f.is_finite(),
            _ => false,
        }
    }

    /// The number an array's summaries count it as (`as_f64` of its JSON value): a finite int or float.
    fn number(&self) -> Option<f64> {
        match *self {
            Scalar::Int(i) => Some(i as f64),
            Scalar::UInt(u) => Some(u as f64),
            Scalar::Float(f) if f.is_finite() => Some(f),
            _ => None,
        }
    }
}

/// Whether `v` is pandas' `pd.NA` or `NaT`, the missing markers of a DataFrame's object columns.
fn is_pandas_missing(v: &Bound<'_, PyAny>) -> PyResult<bool> {
    let ty = v.get_type();
    let name = ty.name()?;
    if name != "NAType" && name != "NaTType" {
        return Ok(false);
    }
    let module = ty.module()?;
    Ok(module.to_cow()?.starts_with("pandas."))
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

/// One column being filled from dicts.
struct Filling {
    text: String,
    cells: Vec<Cell>,
    /// The last row that set a value.
    last_row: Option<usize>,
}

/// The state of [`Columns::from_records`].
struct RecordReader<'l> {
    limits: &'l Limits,
    index: HashMap<String, usize>,
    names: Vec<String>,
    columns: Vec<Filling>,
    /// The path of the current value.
    path: String,
    /// The current row, the columns it set, its leaves and its values (as `to_json` counts them).
    row: usize,
    touched: Vec<usize>,
    leaves: usize,
    values: usize,
    /// Leaves of the rows read so far, this one included.
    all_leaves: usize,
    /// Cells the columns hold.
    cells: usize,
    /// Set when the columns would pass their bound: every row is then read as a record.
    too_wide: bool,
}

impl RecordReader<'_> {
    fn start(&mut self, row: usize) {
        self.row = row;
        self.touched.clear();
        self.leaves = 0;
        self.values = 1;
    }

    /// Unsets what the current row set (it is read as a record instead).
    fn clear_row(&mut self) {
        for &c in &self.touched {
            self.columns[c].cells[self.row] = Cell::Null;
            self.columns[c].last_row = None;
        }
    }

    /// The cells the columns may hold once `rows` rows are read (see [`Columns::from_records`]).
    fn budget(&self, rows: usize) -> usize {
        let earned = CELLS_PER_ROW
            .saturating_mul(rows)
            .saturating_add(CELLS_PER_LEAF.saturating_mul(self.all_leaves));
        FREE_CELLS.max(earned.min(MAX_CELLS))
    }

    /// Reads the entries of `dict` at depth `depth`; `false` when the record must be read as a record.
    fn object(&mut self, dict: &Bound<'_, PyDict>, depth: usize) -> PyResult<bool> {
        if depth > self.limits.max_depth.min(MAX_DEPTH) {
            return Ok(false);
        }
        for (key, value) in dict.iter() {
            let Ok(key) = key.cast::<PyString>() else {
                return Ok(false);
            };
            let len = self.path.len();
            if !self.path.is_empty() {
                self.path.push('.');
            }
            self.path.push_str(&key.to_cow()?);
            let read = self.value(&value, depth)?;
            self.path.truncate(len);
            if !read {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Reads the value at the current path.
    fn value(&mut self, value: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
        self.values += 1;
        if self.values > MAX_RECORD_VALUES {
            return Ok(false);
        }
        if let Ok(inner) = value.cast::<PyDict>() {
            return self.object(inner, depth + 1);
        }
        if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
            // `to_json` counts the list as a container below this dict's.
            if depth + 1 > MAX_RECORD_DEPTH {
                return Ok(false);
            }
            return self.array(value);
        }
        match scalar(value) {
            Ok(Some(s)) if s.is_null() => Ok(self.count()),
            Ok(Some(s)) => self.set(s, None),
            // A type `to_json` refuses, or cannot convert: it raises for the record.
            Ok(None) | Err(_) => Ok(false),
        }
    }

    /// A list or tuple: its length, and when every element is a number their minimum, maximum and mean, as
    /// [`flatten`](anomaly_core::records::flatten::flatten) summarises an array.
    fn array(&mut self, items: &Bound<'_, PyAny>) -> PyResult<bool> {
        // The items as `to_json` reads them: the list's or tuple's own, whatever a subclass's `__iter__` says.
        let items: Vec<Bound<'_, PyAny>> = match items.cast::<PyList>() {
            Ok(list) => list.iter().collect(),
            Err(_) => items
                .cast::<PyTuple>()
                .map_err(PyErr::from)?
                .iter()
                .collect(),
        };
        let mut numbers = Vec::new();
        let mut all_numbers = true;
        for item in &items {
            self.values += 1;
            if self.values > MAX_RECORD_VALUES {
                return Ok(false);
            }
            match scalar(item) {
                Ok(Some(s)) => match s.number() {
                    Some(v) => numbers.push(v),
                    None => all_numbers = false,
                },
                // A container (which `to_json` converts and checks), or a type it refuses or cannot convert.
                Ok(None) | Err(_) => return Ok(false),
            }
        }
        let len = items.len();
        if !self.set(Scalar::Int(len as i64), Some(".len"))? {
            return Ok(false);
        }
        let summaries = if all_numbers {
            number_summaries(&numbers)
        } else {
            None
        };
        for (suffix, v) in summaries.into_iter().flatten() {
            if !self.set(Scalar::Float(v), Some(suffix))? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Counts a leaf; `false` past the limit.
    fn count(&mut self) -> bool {
        self.leaves += 1;
        self.all_leaves += 1;
        self.leaves <= self.limits.max_fields
    }

    /// Sets the current path's (with `suffix`) cell in the current row; `false` past the leaf limit or when the
    /// path already has a value in this row (and past the columns' bound, which sets `too_wide`).
    fn set(&mut self, value: Scalar<'_>, suffix: Option<&str>) -> PyResult<bool> {
        if !self.count() {
            return Ok(false);
        }
        let len = self.path.len();
        if let Some(s) = suffix {
            self.path.push_str(s);
        }
        let c = match self.index.get(self.path.as_str()) {
            Some(&c) => Some(c),
            None if self.columns.len() < self.limits.max_fields => {
                let c = self.columns.len();
                self.index.insert(self.path.clone(), c);
                self.names.push(self.path.clone());
                self.columns.push(Filling {
                    text: String::new(),
                    cells: Vec::new(),
                    last_row: None,
                });
                Some(c)
            }
            None => None,
        };
        self.path.truncate(len);
        let Some(c) = c else {
            self.too_wide = true;
            return Ok(false);
        };
        if self.columns[c].last_row == Some(self.row) {
            return Ok(false);
        }
        // The column grows to this row: its rows since the last it set are missing.
        let grown = self.row + 1 - self.columns[c].cells.len();
        if self.cells + grown > self.budget(self.row + 1) {
            self.too_wide = true;
            return Ok(false);
        }
        self.cells += grown;
        let column = &mut self.columns[c];
        column.cells.resize(self.row, Cell::Null);
        column.last_row = Some(self.row);
        self.touched.push(c);
        column.cells.push(value.into_cell(&mut column.text));
        Ok(true)
    }
}
