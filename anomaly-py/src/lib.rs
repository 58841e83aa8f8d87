#![doc = include_str!("../README.md")]
//!
//! The Rust side of the `anomaly` Python package: it converts and delegates to `anomaly-core`, releases the GIL
//! around every core call, and maps each core error to a Python exception. It holds no algorithm and no defaults.

mod columns;
mod convert;
mod engine;
mod errors;
mod explain;
mod forest;
mod record_model;
mod stream;
mod table;

use pyo3::prelude::*;

/// The native module, imported as `anomaly._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<forest::NativeForest>()?;
    m.add_class::<stream::NativeStream>()?;
    m.add_class::<engine::NativeEngine>()?;
    m.add_class::<record_model::NativeRecordModel>()?;
    m.add_class::<explain::Attribution>()?;
    m.add_class::<explain::Explanation>()?;
    m.add_class::<explain::Detection>()?;
    m.add_function(wrap_pyfunction!(forest::isolation_forest_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(forest::_thread_limit, m)?)?;
    m.add_function(wrap_pyfunction!(forest::_set_thread_limit, m)?)?;
    m.add_function(wrap_pyfunction!(stream::stream_defaults, m)?)?;
    m.add_function(wrap_pyfunction!(table::_read_table_file, m)?)?;
    m.add_function(wrap_pyfunction!(table::_read_table_rows, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
