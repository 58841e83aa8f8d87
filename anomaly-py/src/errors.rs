//! Core errors as Python exceptions.
//!
//! The exception classes live in `anomaly/exceptions.py` (so `NotFittedError` can subclass scikit-learn's when it
//! is installed); each core variant maps to one class, and the values the variant carries become attributes of the
//! exception (`expected`, `got`, `row`, `column`, …). The message is the core's, unchanged.

use anomaly_core::Error;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// Builds the Python exception for a core error.
pub(crate) fn to_py(err: Error) -> PyErr {
    Python::attach(|py| match build(py, &err) {
        Ok(e) => e,
        // The exceptions module is part of the package; failing to import it means a broken install.
        Err(import_failure) => {
            let e = PyRuntimeError::new_err(err.to_string());
            e.set_cause(py, Some(import_failure));
            e
        }
    })
}

fn build(py: Python<'_>, err: &Error) -> PyResult<PyErr> {
    let attrs = PyDict::new(py);
    let class = match err {
        Error::InvalidParameter { name, reason } => {
            attrs.set_item("parameter", *name)?;
            attrs.set_item("reason", reason)?;
            "InvalidParameterError"
        }
        Error::DimensionMismatch { expected, got } => {
            attrs.set_item("expected", expected)?;
            attrs.set_item("got", got)?;
            "DimensionMismatchError"
        }
        Error::NotEnoughSamples { needed, got } => {
            attrs.set_item("needed", needed)?;
            attrs.set_item("got", got)?;
            "NotEnoughSamplesError"
        }
        Error::NonFinite { row, column, value } => {
            attrs.set_item("row", row)?;
            attrs.set_item("column", column)?;
            attrs.set_item("value", value)?;
            "NonFiniteError"
        }
        Error::EmptyInput { what } => {
            attrs.set_item("what", *what)?;
            "EmptyInputError"
        }
        Error::UnsupportedSnapshot { reason } => {
            attrs.set_item("reason", reason)?;
            "CorruptModelError"
        }
        Error::InvalidRecord { reason } => {
            attrs.set_item("reason", reason)?;
            "InvalidRecordError"
        }
        Error::Persistence { reason } | Error::PersistenceRefused { reason } => {
            attrs.set_item("reason", reason)?;
            "PersistenceError"
        }
        Error::Table { file, reason } => {
            attrs.set_item("file", file)?;
            attrs.set_item("reason", reason)?;
            "TableError"
        }
        // `Error` is non-exhaustive: a variant added to the core maps to the base class until it gets its own.
        _ => "AnomalyError",
    };
    let message = match err {
        // scikit-learn's estimator checks look for "n_samples = 1" in the message of a fit on one row.
        Error::NotEnoughSamples { got, .. } => format!("{err} (n_samples = {got})"),
        _ => err.to_string(),
    };
    let exceptions = py.import("anomaly.exceptions")?;
    let value = exceptions.getattr(class)?.call1((message,))?;
    for (k, v) in attrs.iter() {
        value.setattr(k.cast::<pyo3::types::PyString>()?, v)?;
    }
    Ok(PyErr::from_value(value))
}

/// A Python exception of class `class` (from `anomaly.exceptions`) with `message`.
pub(crate) fn named(py: Python<'_>, class: &str, message: String) -> PyErr {
    let built = py
        .import("anomaly.exceptions")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((message.clone(),)));
    match built {
        Ok(value) => PyErr::from_value(value),
        Err(e) => e,
    }
}

/// `map_err` shorthand.
pub(crate) trait IntoPyResult<T> {
    fn py_err(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, Error> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
