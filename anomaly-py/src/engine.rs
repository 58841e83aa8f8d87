//! `_Engine`: the record engine (one model per key over JSON-like records).

use anomaly_core::engine::{Engine, EngineParams};
use anomaly_core::{Contamination, IsolationForestParams};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};
use serde_json::Value;

use crate::convert::{to_json, to_python};
use crate::errors::IntoPyResult;

fn sensitivity(v: Option<f64>) -> Contamination {
    v.map_or(Contamination::Auto, Contamination::Fraction)
}

/// An engine with in-memory persistence; safe to call from several Python threads at once.
#[pyclass(module = "anomaly._native", name = "_Engine", frozen)]
pub(crate) struct NativeEngine {
    engine: Engine,
}

#[pymethods]
impl NativeEngine {
    /// `None` leaves the core's default; `auto_sensitivity` asks for `"auto"` explicitly.
    #[new]
    #[pyo3(signature = (*, min_training_records=None, max_history=None, retrain_every=None, sensitivity=None, auto_sensitivity=false, n_estimators=None, drift=None, seed=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        min_training_records: Option<usize>,
        max_history: Option<usize>,
        retrain_every: Option<usize>,
        sensitivity: Option<f64>,
        auto_sensitivity: bool,
        n_estimators: Option<usize>,
        drift: Option<bool>,
        seed: Option<u64>,
    ) -> PyResult<Self> {
        let mut p = EngineParams::new();
        if let Some(n) = min_training_records {
            p = p.min_training_records(n);
        }
        if let Some(n) = max_history {
            p = p.max_history(n);
        }
        if let Some(n) = retrain_every {
            p = p.retrain_every(n);
        }
        if auto_sensitivity {
            p = p.sensitivity(Contamination::Auto);
        } else if sensitivity.is_some() {
            p = p.sensitivity(self::sensitivity(sensitivity));
        }
        if let Some(n) = n_estimators {
            p = p.forest(IsolationForestParams::new().n_estimators(n));
        }
        if drift == Some(false) {
            p = p.drift(None);
        }
        if let Some(s) = seed {
            p = p.seed(s);
        }
        Ok(NativeEngine {
            engine: Engine::in_memory(p).py_err()?,
        })
    }

    /// Scores the record with the key's model (if any), learns it, and trains when due.
    fn observe<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = to_json(record)?;
        let outcome = py.detach(|| self.engine.observe(key, &record)).py_err()?;
        to_python(py, &outcome)
    }

    /// `observe` for each record in order, in one native call.
    fn observe_many<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let records: Vec<Value> = records
            .try_iter()?
            .map(|r| to_json(&r?))
            .collect::<PyResult<_>>()?;
        let outcomes = py
            .detach(|| self.engine.observe_many(key, &records))
            .py_err()?;
        to_python(py, &outcomes)
    }

    /// Scores the record without learning it.
    fn score<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = to_json(record)?;
        let outcome = py.detach(|| self.engine.score(key, &record)).py_err()?;
        to_python(py, &outcome)
    }

    /// The verdict explained in field names; `None` while the key is learning.
    fn explain<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = to_json(record)?;
        let e = py.detach(|| self.engine.explain(key, &record)).py_err()?;
        to_python(py, &e)
    }

    /// Trains the key now; returns the new model version.
    fn train(&self, py: Python<'_>, key: &str) -> PyResult<u64> {
        py.detach(|| self.engine.train(key)).py_err()
    }

    /// Sets a key's contamination (`None` for `"auto"`) and retrains it if it has a model.
    #[pyo3(signature = (key, contamination))]
    fn set_sensitivity(
        &self,
        py: Python<'_>,
        key: &str,
        contamination: Option<f64>,
    ) -> PyResult<()> {
        let c = sensitivity(contamination);
        py.detach(|| self.engine.set_sensitivity(key, c)).py_err()
    }

    fn keys(&self) -> Vec<String> {
        self.engine.keys()
    }

    fn stats<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.engine.stats(key))
    }

    fn model_info<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.engine.model_info(key))
    }

    fn history<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for r in self.engine.history(key) {
            list.append(crate::convert::from_json(py, &r)?)?;
        }
        Ok(list)
    }

    fn clear(&self, py: Python<'_>, key: &str) -> PyResult<usize> {
        py.detach(|| self.engine.clear(key)).py_err()
    }

    /// The key's current record model as snapshot bytes (`RecordModel::from_snapshot_bytes` reads them in Rust).
    fn model_snapshot<'py>(
        &self,
        py: Python<'py>,
        key: &str,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        Ok(self
            .engine
            .model(key)
            .map(|m| PyBytes::new(py, &m.to_snapshot_bytes())))
    }

    /// The core parameters, as a dict.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.engine.params())
    }
}
