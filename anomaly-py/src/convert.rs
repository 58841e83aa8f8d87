//! Conversions at the boundary: numpy arrays in, JSON-like values both ways.

use ndarray::ArrayView2;
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::Value;

use crate::errors::named;

/// A 2-D float64 matrix read from Python: the caller's own buffer when it is a C-contiguous float64 array, a
/// converted copy (`numpy.ascontiguousarray(x, dtype=float64)`) otherwise.
pub(crate) struct Matrix<'py>(PyReadonlyArray2<'py, f64>);

impl<'py> Matrix<'py> {
    /// Reads `x`; raises `InvalidInputError` when it is not 2-D or cannot be converted to float64.
    pub(crate) fn extract(x: &Bound<'py, PyAny>) -> PyResult<Self> {
        let py = x.py();
        if let Ok(a) = x.cast::<PyArray2<f64>>()
            && a.is_c_contiguous()
        {
            return Ok(Matrix(a.readonly()));
        }
        let numpy = py.import("numpy")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("dtype", numpy.getattr("float64")?)?;
        let converted = numpy
            .call_method("ascontiguousarray", (x,), Some(&kwargs))
            .map_err(|e| {
                let err = named(
                    py,
                    "InvalidInputError",
                    format!("cannot read X as float64: {e}"),
                );
                err.set_cause(py, Some(e));
                err
            })?;
        let ndim: usize = converted.getattr("ndim")?.extract()?;
        if ndim != 2 {
            return Err(named(
                py,
                "InvalidInputError",
                format!("expected a 2-D array (rows × features), got {ndim} dimension(s)"),
            ));
        }
        let a = converted
            .cast_into::<PyArray2<f64>>()
            .map_err(PyErr::from)?;
        Ok(Matrix(a.readonly()))
    }

    /// The rows, without copying.
    pub(crate) fn view(&self) -> ArrayView2<'_, f64> {
        self.0.as_array()
    }
}

/// A scipy CSR matrix read from Python (the package hands over a canonical float64 one): the values borrowed, the
/// offsets and column indices (int32 or int64) copied as `usize`.
pub(crate) struct Csr<'py> {
    shape: (usize, usize),
    indptr: Vec<usize>,
    indices: Vec<usize>,
    data: PyReadonlyArray1<'py, f64>,
}

/// Offsets or indices of a CSR matrix as `usize` (from int32 or int64; a negative one becomes `usize::MAX`, which
/// the core's checks refuse).
fn index_array(v: &Bound<'_, PyAny>) -> PyResult<Vec<usize>> {
    let as_usize = |i: i64| usize::try_from(i).unwrap_or(usize::MAX);
    if let Ok(a) = v.cast::<PyArray1<i32>>() {
        return Ok(a
            .readonly()
            .as_array()
            .iter()
            .map(|&i| as_usize(i64::from(i)))
            .collect());
    }
    let a = v.cast::<PyArray1<i64>>().map_err(PyErr::from)?;
    Ok(a.readonly()
        .as_array()
        .iter()
        .map(|&i| as_usize(i))
        .collect())
}

impl<'py> Csr<'py> {
    /// `x` when it is a scipy CSR matrix or array (`format == "csr"`), else `None`.
    pub(crate) fn extract(x: &Bound<'py, PyAny>) -> PyResult<Option<Self>> {
        let is_csr = x
            .getattr("format")
            .ok()
            .and_then(|f| f.extract::<String>().ok())
            .is_some_and(|f| f == "csr");
        if !is_csr {
            return Ok(None);
        }
        let shape: (usize, usize) = x.getattr("shape")?.extract()?;
        let data = x
            .getattr("data")?
            .cast_into::<PyArray1<f64>>()
            .map_err(|_| {
                named(
                    x.py(),
                    "InvalidInputError",
                    "sparse values must be float64".into(),
                )
            })?
            .readonly();
        Ok(Some(Csr {
            shape,
            indptr: index_array(&x.getattr("indptr")?)?,
            indices: index_array(&x.getattr("indices")?)?,
            data,
        }))
    }

    /// The core's checked view.
    pub(crate) fn view(&self) -> Result<anomaly_core::CsrMatrix<'_>, anomaly_core::Error> {
        let data = self
            .data
            .as_slice()
            .map_err(|_| anomaly_core::Error::InvalidParameter {
                name: "x",
                reason: "sparse values must be contiguous".into(),
            })?;
        anomaly_core::CsrMatrix::new(self.shape, &self.indptr, &self.indices, data)
    }
}

/// Deepest nesting of dicts, lists and tuples that [`to_json`] converts: serde_json's own recursion limit, so a record
/// that could not be parsed from JSON text cannot be passed as Python objects either. A deeper value, or one that
/// contains itself (`d = {}; d["a"] = d`), raises `InvalidRecordError` (a `ValueError`) naming this limit instead of
/// overflowing the stack.
pub(crate) const MAX_RECORD_DEPTH: usize = 128;

/// Most values (containers and scalars) one record may hold once shared sub-objects are counted each time they
/// appear: a record that reuses one dict at every level (`d = {"a": x, "b": x}`, 128 times) would otherwise expand
/// to 2^128 values. Beyond it, `InvalidRecordError`.
pub(crate) const MAX_RECORD_VALUES: usize = 1_000_000;

/// A Python value (dict, list, tuple, str, bool, int, float, None, or anything with `__float__`) as JSON, nested at
/// most [`MAX_RECORD_DEPTH`] deep, holding at most [`MAX_RECORD_VALUES`] values, containing no container of its own
/// path (a dict that contains itself).
pub(crate) fn to_json(v: &Bound<'_, PyAny>) -> PyResult<Value> {
    let mut walk = Walk {
        path: Vec::new(),
        values: 0,
    };
    to_json_within(v, MAX_RECORD_DEPTH, &mut walk)
}

/// The state of one conversion: the containers from the root to the current value (by identity), and the values
/// converted so far.
struct Walk {
    path: Vec<usize>,
    values: usize,
}

/// [`to_json`] with `depth_left` more levels of containers allowed below `v`.
fn to_json_within(v: &Bound<'_, PyAny>, depth_left: usize, walk: &mut Walk) -> PyResult<Value> {
    walk.values += 1;
    if walk.values > MAX_RECORD_VALUES {
        return Err(named(
            v.py(),
            "InvalidRecordError",
            format!(
                "record holding more than {MAX_RECORD_VALUES} values (a sub-object shared many times counts each time)"
            ),
        ));
    }
    if let Some(s) = scalar(v)? {
        return Ok(match s {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Text(t) => Value::String(t.into_owned()),
            Scalar::Int(i) => Value::from(i),
            Scalar::UInt(u) => Value::from(u),
            Scalar::Float(f) => float(f),
        });
    }
    let is_container = v.is_instance_of::<PyDict>()
        || v.is_instance_of::<PyList>()
        || v.is_instance_of::<PyTuple>();
    if is_container && depth_left == 0 {
        return Err(named(
            v.py(),
            "InvalidRecordError",
            format!(
                "record nested deeper than {MAX_RECORD_DEPTH} levels of dicts, lists and tuples (or containing itself)"
            ),
        ));
    }
    if is_container {
        let id = v.as_ptr() as usize;
        if walk.path.contains(&id) {
            return Err(named(
                v.py(),
                "InvalidRecordError",
                "record containing itself (a dict, list or tuple inside itself)".to_string(),
            ));
        }
        walk.path.push(id);
        let converted = container_to_json(v, depth_left.saturating_sub(1), walk);
        walk.path.pop();
        return converted;
    }
    Err(PyTypeError::new_err(format!(
        "cannot use a value of type {} in a record (expected dict, list, str, bool, int, float or None)",
        v.get_type().name()?
    )))
}

/// A scalar of a record, as [`to_json`] reads it.
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    Text(std::borrow::Cow<'a, str>),
    Int(i64),
    UInt(u64),
    /// A float (or an int too large for 64 bits, as its nearest float); JSON holds a non-finite one as null.
    Float(f64),
}

/// `v` as a record's scalar: `None`, `bool`, `str`, `int`, `float`, or a numpy scalar (integers through
/// `__index__`, floats through `__float__`); `None` for a dict, list or tuple, or a value of another type.
///
/// # Errors
/// An int that no float holds (`OverflowError`), a string that is not valid UTF-8.
pub(crate) fn scalar<'a>(v: &'a Bound<'_, PyAny>) -> PyResult<Option<Scalar<'a>>> {
    if v.is_none() {
        return Ok(Some(Scalar::Null));
    }
    if let Ok(b) = v.cast::<PyBool>() {
        return Ok(Some(Scalar::Bool(b.is_true())));
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(Some(Scalar::Text(s.to_cow()?)));
    }
    if v.is_instance_of::<PyInt>() {
        if let Ok(i) = v.extract::<i64>() {
            return Ok(Some(Scalar::Int(i)));
        }
        if let Ok(u) = v.extract::<u64>() {
            return Ok(Some(Scalar::UInt(u)));
        }
        return Ok(Some(Scalar::Float(v.extract::<f64>()?)));
    }
    if let Ok(f) = v.cast::<PyFloat>() {
        return Ok(Some(Scalar::Float(f.value())));
    }
    if v.is_instance_of::<PyDict>() || v.is_instance_of::<PyList>() || v.is_instance_of::<PyTuple>()
    {
        return Ok(None);
    }
    if v.hasattr("__index__")?
        && let Ok(i) = v.extract::<i64>()
    {
        return Ok(Some(Scalar::Int(i)));
    }
    if let Ok(f) = v.extract::<f64>() {
        return Ok(Some(Scalar::Float(f)));
    }
    Ok(None)
}

/// A dict, list or tuple as JSON.
fn container_to_json(v: &Bound<'_, PyAny>, depth_left: usize, walk: &mut Walk) -> PyResult<Value> {
    if let Ok(d) = v.cast::<PyDict>() {
        let mut map = serde_json::Map::with_capacity(d.len());
        for (k, val) in d.iter() {
            let key = match k.cast::<PyString>() {
                Ok(s) => s.to_cow()?.into_owned(),
                Err(_) => k.str()?.to_cow()?.into_owned(),
            };
            map.insert(key, to_json_within(&val, depth_left, walk)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = v.cast::<PyList>() {
        return l
            .iter()
            .map(|x| to_json_within(&x, depth_left, walk))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    if let Ok(t) = v.cast::<PyTuple>() {
        return t
            .iter()
            .map(|x| to_json_within(&x, depth_left, walk))
            .collect::<PyResult<_>>()
            .map(Value::Array);
    }
    Err(PyTypeError::new_err(format!(
        "cannot use a value of type {} in a record",
        v.get_type().name()?
    )))
}

/// JSON has no NaN or infinity: they become null (a missing value), as `json.dumps` would refuse them.
fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// JSON as Python objects (dict, list, str, int, float, bool, None).
pub(crate) fn from_json<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(from_json(py, item)?)?;
            }
            list.into_any()
        }
        Value::Object(map) => {
            let dict = PyDict::new(py);
            for (k, item) in map {
                dict.set_item(k, from_json(py, item)?)?;
            }
            dict.into_any()
        }
    })
}

/// Any serialisable core value as Python objects.
pub(crate) fn to_python<'py, T: serde::Serialize>(
    py: Python<'py>,
    v: &T,
) -> PyResult<Bound<'py, PyAny>> {
    let value = serde_json::to_value(v)
        .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.to_string()))?;
    from_json(py, &value)
}
