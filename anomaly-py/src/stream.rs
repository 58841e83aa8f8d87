//! `_Stream`: one native class over the three streaming detectors. `anomaly/_stream.py` gives each its own class.

use std::sync::Mutex;

use anomaly_core::{
    Ema, EmaParams, Error, MovingAverage, MovingAverageParams, StreamingDetector,
    StreamingIsolationForest, StreamingIsolationForestParams, Verdict,
};
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::convert::{Matrix, to_python};
use crate::errors::IntoPyResult;
use crate::explain::{Detection, Explanation};

#[allow(clippy::large_enum_variant)] // one detector per object, behind a lock: size is not a concern
enum Detector {
    MovingAverage(MovingAverage),
    Ema(Ema),
    Forest(StreamingIsolationForest),
}

impl Detector {
    fn get(&self) -> &dyn StreamingDetector {
        match self {
            Detector::MovingAverage(d) => d,
            Detector::Ema(d) => d,
            Detector::Forest(d) => d,
        }
    }

    fn get_mut(&mut self) -> &mut dyn StreamingDetector {
        match self {
            Detector::MovingAverage(d) => d,
            Detector::Ema(d) => d,
            Detector::Forest(d) => d,
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        match self {
            Detector::MovingAverage(d) => d.to_snapshot_bytes(),
            Detector::Ema(d) => d.to_snapshot_bytes(),
            Detector::Forest(d) => d.to_snapshot_bytes(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Detector::MovingAverage(_) => "moving_average",
            Detector::Ema(_) => "ema",
            Detector::Forest(_) => "streaming_isolation_forest",
        }
    }
}

/// A streaming detector behind a lock: calls from several Python threads run one at a time.
#[pyclass(module = "anomaly._native", name = "_Stream", frozen)]
pub(crate) struct NativeStream {
    detector: Mutex<Detector>,
}

impl NativeStream {
    fn new(d: Detector) -> Self {
        NativeStream {
            detector: Mutex::new(d),
        }
    }

    fn with<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Detector) -> Result<T, Error> + Send,
    ) -> PyResult<T> {
        py.detach(|| {
            // A panic cannot leave a detector half-updated (updates validate first), so a poisoned lock is usable.
            let mut guard = self
                .detector
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .py_err()
    }
}

/// Verdicts as arrays: `ready` is false during warm-up, where `scores` and `thresholds` are NaN.
fn verdict_arrays<'py>(
    py: Python<'py>,
    verdicts: Vec<Option<Verdict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let n = verdicts.len();
    let (mut scores, mut thresholds) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut ready, mut anomalies) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for v in verdicts {
        scores.push(v.map_or(f64::NAN, |v| v.score));
        thresholds.push(v.map_or(f64::NAN, |v| v.threshold));
        ready.push(v.is_some());
        anomalies.push(v.is_some_and(|v| v.is_anomaly));
    }
    let out = PyDict::new(py);
    out.set_item("scores", scores.into_pyarray(py))?;
    out.set_item("thresholds", thresholds.into_pyarray(py))?;
    out.set_item("ready", ready.into_pyarray(py))?;
    out.set_item("is_anomaly", anomalies.into_pyarray(py))?;
    Ok(out)
}

#[pymethods]
impl NativeStream {
    /// A moving-average detector; `None` leaves the core's default.
    #[staticmethod]
    #[pyo3(signature = (window=None, threshold=None, sigma=None))]
    fn moving_average(
        window: Option<usize>,
        threshold: Option<f64>,
        sigma: Option<f64>,
    ) -> PyResult<Self> {
        let mut p = MovingAverageParams::new();
        if let Some(w) = window {
            p = p.window(w);
        }
        if let Some(t) = threshold {
            p = p.threshold(t);
        }
        if sigma.is_some() {
            p = p.sigma(sigma);
        }
        Ok(Self::new(Detector::MovingAverage(p.build().py_err()?)))
    }

    /// An EMA detector; `None` leaves the core's default.
    #[staticmethod]
    #[pyo3(signature = (alpha=None, sigma=None, warmup=None))]
    fn ema(alpha: Option<f64>, sigma: Option<f64>, warmup: Option<u64>) -> PyResult<Self> {
        let mut p = EmaParams::new();
        if let Some(a) = alpha {
            p = p.alpha(a);
        }
        if let Some(s) = sigma {
            p = p.sigma(s);
        }
        if let Some(w) = warmup {
            p = p.warmup(w);
        }
        Ok(Self::new(Detector::Ema(p.build().py_err()?)))
    }

    /// A streaming isolation forest; `None` leaves the core's default.
    #[staticmethod]
    #[pyo3(signature = (batch_size=None, window_size=None, warmup=None, n_estimators=None, smoothing_alpha=None, threshold_sigma=None, threshold_window=None, min_consecutive=None, contamination=None, seed=None))]
    #[allow(clippy::too_many_arguments)]
    fn streaming_isolation_forest(
        batch_size: Option<usize>,
        window_size: Option<usize>,
        warmup: Option<usize>,
        n_estimators: Option<usize>,
        smoothing_alpha: Option<f64>,
        threshold_sigma: Option<f64>,
        threshold_window: Option<usize>,
        min_consecutive: Option<usize>,
        contamination: Option<f64>,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let mut p = StreamingIsolationForestParams::new();
        macro_rules! set {
            ($($name:ident),*) => {$(
                if let Some(v) = $name {
                    p = p.$name(v);
                }
            )*};
        }
        set!(
            batch_size,
            window_size,
            warmup,
            n_estimators,
            smoothing_alpha,
            threshold_sigma,
            threshold_window,
            min_consecutive,
            contamination,
            seed
        );
        Ok(Self::new(Detector::Forest(p.build().py_err()?)))
    }

    /// Scores `x` against what was learnt, explains the verdict, then learns `x`; `None` during warm-up.
    fn update(&self, py: Python<'_>, x: Vec<f64>) -> PyResult<Option<Detection>> {
        let result = self.with(py, |d| {
            let explanation = d.get().explain(&x)?;
            let verdict = d.get_mut().score_and_update(&x)?;
            Ok(verdict.zip(explanation))
        })?;
        result.map(|(v, e)| Detection::new(py, v, &e)).transpose()
    }

    /// Judges `x` without learning it; `None` during warm-up.
    fn score(&self, py: Python<'_>, x: Vec<f64>) -> PyResult<Option<(f64, f64, bool)>> {
        let v = self.with(py, |d| d.get().score(&x))?;
        Ok(v.map(|v| (v.score, v.threshold, v.is_anomaly)))
    }

    /// Explains the verdict `score` would give, without learning `x`; `None` during warm-up.
    fn explain(&self, py: Python<'_>, x: Vec<f64>) -> PyResult<Option<Explanation>> {
        let e = self.with(py, |d| d.get().explain(&x))?;
        e.map(|e| Explanation::new(py, &e)).transpose()
    }

    /// Runs score-then-learn over every row of `series` (rows × dims) in the native loop.
    fn score_many<'py>(&self, series: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        let py = series.py();
        let m = Matrix::extract(series)?;
        let view = m.view();
        let verdicts = self.with(py, |d| d.get_mut().score_many(view))?;
        verdict_arrays(py, verdicts)
    }

    /// The observation width once the first observation fixed it.
    #[getter]
    fn dims(&self, py: Python<'_>) -> PyResult<Option<usize>> {
        self.with(py, |d| Ok(d.get().dims()))
    }

    #[getter]
    fn kind(&self, py: Python<'_>) -> PyResult<&'static str> {
        self.with(py, |d| Ok(d.kind()))
    }

    /// The core parameters, as a dict.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let guard = self
            .detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*guard {
            Detector::MovingAverage(d) => to_python(py, d.params()),
            Detector::Ema(d) => to_python(py, d.params()),
            Detector::Forest(d) => to_python(py, d.params()),
        }
    }

    /// The versioned snapshot of the detector and its state.
    fn to_snapshot_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.with(py, |d| Ok(d.snapshot()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// Restores any streaming detector from snapshot bytes written here or by Rust.
    #[staticmethod]
    fn from_snapshot_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let detector = py
            .detach(|| match anomaly_core::Snapshot::from_bytes(data)?.model {
                anomaly_core::Model::MovingAverage(d) => Ok(Detector::MovingAverage(d)),
                anomaly_core::Model::Ema(d) => Ok(Detector::Ema(d)),
                anomaly_core::Model::StreamingIsolationForest(d) => Ok(Detector::Forest(d)),
                other => Err(Error::UnsupportedSnapshot {
                    reason: format!(
                        "snapshot holds a {} model, not a streaming detector",
                        other.kind()
                    ),
                }),
            })
            .py_err()?;
        Ok(Self::new(detector))
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let restore = slf.get_type().getattr("from_snapshot_bytes")?;
        let bytes = slf.get().to_snapshot_bytes(py)?;
        PyTuple::new(py, [restore, PyTuple::new(py, [bytes])?.into_any()])
    }
}

/// The core's default parameters of each streaming detector.
#[pyfunction]
pub(crate) fn stream_defaults<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    out.set_item(
        "moving_average",
        to_python(py, &MovingAverageParams::new())?,
    )?;
    out.set_item("ema", to_python(py, &EmaParams::new())?)?;
    out.set_item(
        "streaming_isolation_forest",
        to_python(py, &StreamingIsolationForestParams::new())?,
    )?;
    Ok(out)
}
