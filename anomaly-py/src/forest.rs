//! `_IsolationForest`: the fitted core forest. The scikit-learn estimator in `anomaly/_forest.py` wraps it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anomaly_core::{
    Contamination, CsrMatrix, Error, IsolationForest, IsolationForestParams, MaxFeatures,
    MaxSamples,
};
use ndarray::{Array1, ArrayView1, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

use crate::convert::{Csr, Matrix, to_python};
use crate::errors::IntoPyResult;
use crate::explain::Explanation;

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidParameter {
        name,
        reason: reason.into(),
    }
}

fn is_auto(v: &Bound<'_, PyAny>) -> bool {
    v.cast::<PyString>()
        .is_ok_and(|s| s.to_cow().is_ok_and(|s| s == "auto"))
}

/// An integer that is not a bool (scikit-learn reads `True` as neither a count nor a fraction).
fn as_int(v: &Bound<'_, PyAny>) -> Option<i64> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return None;
    }
    if v.is_instance_of::<pyo3::types::PyFloat>() {
        return None;
    }
    v.extract::<i64>().ok()
}

fn as_float(v: &Bound<'_, PyAny>) -> Option<f64> {
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return None;
    }
    v.extract::<f64>().ok()
}

/// scikit-learn's `max_samples`: `"auto"`, an int (a count) or a float (a fraction).
pub(crate) fn max_samples(v: &Bound<'_, PyAny>) -> Result<MaxSamples, Error> {
    if is_auto(v) {
        Ok(MaxSamples::Auto)
    } else if let Some(n) = as_int(v) {
        usize::try_from(n)
            .map(MaxSamples::Count)
            .map_err(|_| invalid("max_samples", format!("{n} is negative")))
    } else if let Some(f) = as_float(v) {
        Ok(MaxSamples::Fraction(f))
    } else {
        Err(invalid(
            "max_samples",
            "must be \"auto\", an int or a float",
        ))
    }
}

/// scikit-learn's `contamination`: `"auto"` or a float in (0, 0.5].
pub(crate) fn contamination(v: &Bound<'_, PyAny>) -> Result<Contamination, Error> {
    if is_auto(v) {
        Ok(Contamination::Auto)
    } else if let Some(f) = as_float(v) {
        Ok(Contamination::Fraction(f))
    } else {
        Err(invalid("contamination", "must be \"auto\" or a float"))
    }
}

/// scikit-learn's `max_features`: an int (a count) or a float (a fraction).
fn max_features(v: &Bound<'_, PyAny>) -> Result<MaxFeatures, Error> {
    if let Some(n) = as_int(v) {
        usize::try_from(n)
            .map(MaxFeatures::Count)
            .map_err(|_| invalid("max_features", format!("{n} is negative")))
    } else if let Some(f) = as_float(v) {
        Ok(MaxFeatures::Fraction(f))
    } else {
        Err(invalid("max_features", "must be an int or a float"))
    }
}

/// The process-wide cap on the threads of a fit or a score (0: none), set through threadpoolctl's
/// `threadpool_limits` (the package registers a controller for it).
static THREAD_LIMIT: AtomicUsize = AtomicUsize::new(0);

/// The threads of the core's shared pool (one per core unless `RAYON_NUM_THREADS` says otherwise).
fn cpus() -> usize {
    rayon::current_num_threads()
}

/// joblib's `n_jobs`: `None` or −1 for every core (the core's default pool), k ≥ 1 for k threads, −k for all but
/// k − 1 cores; then capped by the threadpoolctl limit, if any.
pub(crate) fn n_threads(n_jobs: Option<i64>) -> Result<Option<usize>, Error> {
    let asked = match n_jobs {
        None | Some(-1) => None,
        Some(0) => return Err(invalid("n_jobs", "must not be 0")),
        Some(k) if k > 0 => Some(usize::try_from(k).unwrap_or(usize::MAX)),
        Some(k) => Some((cpus() as i64 + 1 + k).max(1) as usize),
    };
    Ok(match THREAD_LIMIT.load(Ordering::Relaxed) {
        0 => asked,
        limit => Some(asked.unwrap_or_else(cpus).min(limit)),
    })
}

/// The threadpoolctl limit on this package's threads: the cap set by `threadpool_limits`, or every core.
#[pyfunction]
pub(crate) fn _thread_limit() -> usize {
    match THREAD_LIMIT.load(Ordering::Relaxed) {
        0 => cpus(),
        limit => limit,
    }
}

/// Sets the threadpoolctl limit (threadpoolctl calls this, and restores the previous value the same way); a limit
/// of every core or more, or `None`, lifts it.
#[pyfunction]
#[pyo3(signature = (limit))]
pub(crate) fn _set_thread_limit(limit: Option<usize>) {
    let limit = limit.filter(|&l| l < cpus()).map_or(0, |l| l.max(1));
    THREAD_LIMIT.store(limit, Ordering::Relaxed);
}

/// Below this many rows, scores come from `score_row` row by row: the batch kernel works on 128-row blocks, so one
/// row would cost as much as 128. Both paths give the same bits (the core sums trees in the same order).
const SMALL_BATCH: usize = 32;

/// The rows a call reads: a dense matrix, or a sparse one that stays sparse.
enum Input<'a> {
    Dense(ArrayView2<'a, f64>),
    Sparse(CsrMatrix<'a>),
}

/// The core's s(x) of every row on `threads` threads, through `score_row` for small dense batches,
/// `score_on_threads` for larger ones and `score_sparse_on_threads` for sparse ones.
fn core_scores(
    m: &IsolationForest,
    x: Input<'_>,
    threads: Option<usize>,
) -> Result<Array1<f64>, Error> {
    let x = match x {
        Input::Dense(x) => x,
        Input::Sparse(x) => return m.score_sparse_on_threads(&x, threads),
    };
    if x.nrows() >= SMALL_BATCH || x.nrows() == 0 || x.ncols() != m.n_features() {
        return m.score_on_threads(x, threads);
    }
    let mut out = Vec::with_capacity(x.nrows());
    for (i, row) in x.outer_iter().enumerate() {
        let row = row.as_slice().map_or_else(|| row.to_vec(), <[f64]>::to_vec);
        out.push(m.score_row(&row).map_err(|e| match e {
            Error::NonFinite { column, value, .. } => Error::NonFinite {
                row: i,
                column,
                value,
            },
            other => other,
        })?);
    }
    Ok(Array1::from(out))
}

/// A fitted isolation forest (immutable; share it between threads freely).
#[pyclass(module = "anomaly._native", name = "_IsolationForest", frozen)]
pub(crate) struct NativeForest {
    model: Arc<IsolationForest>,
}

/// Reads `x` (a scipy CSR matrix, or anything numpy reads as a matrix) and runs `f` on it without the GIL.
fn with_input<T: Send>(
    x: &Bound<'_, PyAny>,
    f: impl FnOnce(Input<'_>) -> Result<T, Error> + Send,
) -> PyResult<T> {
    if let Some(csr) = Csr::extract(x)? {
        let view = csr.view().py_err()?;
        return x.py().detach(|| f(Input::Sparse(view))).py_err();
    }
    let m = Matrix::extract(x)?;
    let view = m.view();
    x.py().detach(|| f(Input::Dense(view))).py_err()
}

impl NativeForest {
    fn run<T: Send>(
        &self,
        x: &Bound<'_, PyAny>,
        f: impl FnOnce(&IsolationForest, Input<'_>) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        let model = &*self.model;
        with_input(x, |input| f(model, input))
    }
}

#[pymethods]
impl NativeForest {
    /// Fits a forest; every parameter is converted to the core's and validated there.
    #[staticmethod]
    #[pyo3(signature = (x, *, n_estimators, max_samples, contamination, max_features, bootstrap, seed, n_jobs=None, feature_names=None, sample_weight=None))]
    #[allow(clippy::too_many_arguments)]
    fn fit(
        x: &Bound<'_, PyAny>,
        n_estimators: i64,
        max_samples: &Bound<'_, PyAny>,
        contamination: &Bound<'_, PyAny>,
        max_features: &Bound<'_, PyAny>,
        bootstrap: bool,
        seed: u64,
        n_jobs: Option<i64>,
        feature_names: Option<Vec<String>>,
        sample_weight: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let n_estimators = usize::try_from(n_estimators)
            .map_err(|_| invalid("n_estimators", format!("{n_estimators} is negative")))
            .py_err()?;
        let params = IsolationForestParams::new()
            .n_estimators(n_estimators)
            .max_samples(self::max_samples(max_samples).py_err()?)
            .contamination(self::contamination(contamination).py_err()?)
            .max_features(self::max_features(max_features).py_err()?)
            .bootstrap(bootstrap)
            .seed(seed)
            .n_threads(n_threads(n_jobs).py_err()?)
            .feature_names(feature_names);
        let weights = sample_weight.as_ref().map(|w| w.as_array());
        let model = with_input(x, |input| {
            let w = weight_slice(weights.as_ref())?;
            match (input, w) {
                (Input::Sparse(x), w) => params.fit_sparse(&x, w),
                (Input::Dense(x), Some(w)) => params.fit_weighted(x, w),
                (Input::Dense(x), None) => params.fit(x),
            }
        })?;
        Ok(NativeForest {
            model: Arc::new(model),
        })
    }

    /// A forest with `additional` more trees grown on `x` (scikit-learn's `warm_start`), their rows drawn by
    /// `sample_weight` when given.
    #[pyo3(signature = (x, additional, sample_weight=None))]
    fn grow(
        &self,
        x: &Bound<'_, PyAny>,
        additional: usize,
        sample_weight: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let weights = sample_weight.as_ref().map(|w| w.as_array());
        let model = self.run(x, |m, input| {
            let w = weight_slice(weights.as_ref())?;
            match (input, w) {
                (Input::Sparse(x), w) => m.grow_sparse(&x, additional, w),
                (Input::Dense(x), Some(w)) => m.grow_weighted(x, additional, w),
                (Input::Dense(x), None) => m.grow(x, additional),
            }
        })?;
        Ok(NativeForest {
            model: Arc::new(model),
        })
    }

    /// The core's score s(x) in (0, 1]: higher is more anomalous. `n_jobs` as in `fit`, read per call.
    #[pyo3(signature = (x, n_jobs=None))]
    fn score<'py>(
        &self,
        x: &Bound<'py, PyAny>,
        n_jobs: Option<i64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let threads = n_threads(n_jobs).py_err()?;
        Ok(self
            .run(x, |m, v| core_scores(m, v, threads))?
            .into_pyarray(x.py()))
    }

    /// scikit-learn's `score_samples`: −s(x), lower is more anomalous.
    #[pyo3(signature = (x, n_jobs=None))]
    fn score_samples<'py>(
        &self,
        x: &Bound<'py, PyAny>,
        n_jobs: Option<i64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let threads = n_threads(n_jobs).py_err()?;
        // The core's definitions: score_samples = −s(x).
        Ok(self
            .run(x, |m, v| Ok(core_scores(m, v, threads)?.mapv(|s| -s)))?
            .into_pyarray(x.py()))
    }

    /// scikit-learn's `decision_function`: `score_samples − offset_`, negative for anomalies.
    #[pyo3(signature = (x, n_jobs=None))]
    fn decision_function<'py>(
        &self,
        x: &Bound<'py, PyAny>,
        n_jobs: Option<i64>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let threads = n_threads(n_jobs).py_err()?;
        // decision_function = score_samples − offset_.
        Ok(self
            .run(x, |m, v| {
                Ok(core_scores(m, v, threads)?.mapv(|s| -s - m.offset()))
            })?
            .into_pyarray(x.py()))
    }

    /// scikit-learn's `predict`: −1 for anomalies, +1 for inliers.
    #[pyo3(signature = (x, n_jobs=None))]
    fn predict<'py>(
        &self,
        x: &Bound<'py, PyAny>,
        n_jobs: Option<i64>,
    ) -> PyResult<Bound<'py, PyArray1<i32>>> {
        let threads = n_threads(n_jobs).py_err()?;
        // predict = −1 where decision_function < 0, else +1.
        Ok(self
            .run(x, |m, v| {
                Ok(
                    core_scores(m, v, threads)?
                        .mapv(|s| if -s - m.offset() < 0.0 { -1 } else { 1 }),
                )
            })?
            .into_pyarray(x.py()))
    }

    /// One explanation per row.
    fn explain(&self, x: &Bound<'_, PyAny>) -> PyResult<Vec<Explanation>> {
        let explanations = self.run(x, |m, input| match input {
            Input::Dense(v) => v
                .outer_iter()
                .map(|row| match row.as_slice() {
                    Some(r) => m.explain_row(r),
                    None => m.explain_row(&row.to_vec()),
                })
                .collect::<Result<Vec<_>, Error>>(),
            // One row at a time made dense.
            Input::Sparse(x) => (0..x.nrows())
                .map(|r| {
                    let mut row = vec![0.0; x.ncols()];
                    let (columns, values) = x.row(r);
                    for (&c, &v) in columns.iter().zip(values) {
                        row[c] = v;
                    }
                    m.explain_row(&row)
                })
                .collect(),
        })?;
        explanations
            .iter()
            .map(|e| Explanation::new(x.py(), e))
            .collect()
    }

    #[getter]
    fn n_features(&self) -> usize {
        self.model.n_features()
    }

    #[getter]
    fn n_estimators(&self) -> usize {
        self.model.n_estimators()
    }

    #[getter]
    fn max_samples(&self) -> usize {
        self.model.max_samples()
    }

    #[getter]
    fn offset(&self) -> f64 {
        self.model.offset()
    }

    #[getter]
    fn threshold(&self) -> f64 {
        self.model.threshold()
    }

    #[getter]
    fn feature_names(&self) -> Option<Vec<String>> {
        self.model.feature_names().map(<[String]>::to_vec)
    }

    /// The core parameters the forest was fitted with, as a dict.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.model.params())
    }

    /// The versioned snapshot (the same bytes `IsolationForest::to_snapshot_bytes` writes in Rust).
    fn to_snapshot_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| self.model.to_snapshot_bytes());
        PyBytes::new(py, &bytes)
    }

    /// Restores a forest from snapshot bytes written here or by Rust.
    #[staticmethod]
    fn from_snapshot_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let model = py
            .detach(|| IsolationForest::from_snapshot_bytes(data))
            .py_err()?;
        Ok(NativeForest {
            model: Arc::new(model),
        })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let restore = slf.get_type().getattr("from_snapshot_bytes")?;
        let bytes = slf.get().to_snapshot_bytes(py);
        PyTuple::new(py, [restore, PyTuple::new(py, [bytes])?.into_any()])
    }
}

/// The core's default parameters, in scikit-learn's terms (the estimator's signature reads them).
#[pyfunction]
pub(crate) fn isolation_forest_defaults<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
    to_python(py, &IsolationForestParams::new())
}

/// The weights as a slice; a weight array that is not contiguous is refused (the Python layer always passes a
/// fresh contiguous copy).
fn weight_slice<'a>(weights: Option<&'a ArrayView1<'_, f64>>) -> Result<Option<&'a [f64]>, Error> {
    weights
        .map(|w| {
            w.as_slice()
                .ok_or_else(|| invalid("sample_weight", "must be a contiguous float64 array"))
        })
        .transpose()
}
