//! `anomaly.RecordModel`: one record model (the engine's schema and forest) fitted on dicts, scored in batches,
//! explained in field names, and carried as snapshot bytes, for per-group jobs (`anomaly.spark`, `anomaly.dask`).

use std::collections::BTreeMap;

use anomaly_core::IsolationForestParams;
use anomaly_core::engine::{RecordModel, RecordVerdict};
use anomaly_core::records::vectorizer::VectorizerParams;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::columns::Columns;
use crate::convert::to_python;
use crate::engine::{field_roles, json_records};
use crate::errors::IntoPyResult;
use crate::forest::{contamination, max_samples};

/// Scores and verdicts, one each per record.
type Scored<'py> = (Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<bool>>);

/// The scores and verdicts of `verdicts` as arrays.
fn scored<'py>(py: Python<'py>, verdicts: &[RecordVerdict]) -> Scored<'py> {
    let scores: Vec<f64> = verdicts.iter().map(|v| v.score).collect();
    let flagged: Vec<bool> = verdicts.iter().map(|v| v.is_anomaly).collect();
    (scores.into_pyarray(py), flagged.into_pyarray(py))
}

impl NativeRecordModel {
    /// Scores columns read from Python, without the GIL.
    fn score_read<'py>(&self, py: Python<'py>, columns: &Columns<'_>) -> PyResult<Scored<'py>> {
        let verdicts = columns.scored(py, |view| self.model.score_columns(view))?;
        Ok(scored(py, &verdicts))
    }
}

/// A fitted record model; immutable.
#[pyclass(module = "anomaly._native", name = "_RecordModel", frozen)]
pub(crate) struct NativeRecordModel {
    model: RecordModel,
}

#[pymethods]
impl NativeRecordModel {
    /// Learns the schema of `records` (dicts), with `roles` pinned, and fits a forest on their vectors.
    #[staticmethod]
    #[pyo3(signature = (records, roles=None, n_estimators=100, max_samples_=None, contamination_=None, seed=0))]
    fn fit(
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
        roles: Option<BTreeMap<String, String>>,
        n_estimators: usize,
        max_samples_: Option<&Bound<'_, PyAny>>,
        contamination_: Option<&Bound<'_, PyAny>>,
        seed: u64,
    ) -> PyResult<Self> {
        let records = json_records(records)?;
        let vectorizer =
            VectorizerParams::new().field_roles(field_roles(roles.unwrap_or_default())?);
        let mut forest = IsolationForestParams::new()
            .n_estimators(n_estimators)
            .seed(seed);
        if let Some(m) = max_samples_ {
            forest = forest.max_samples(max_samples(m).py_err()?);
        }
        if let Some(c) = contamination_ {
            forest = forest.contamination(contamination(c).py_err()?);
        }
        let model = py
            .detach(|| RecordModel::fit(&records, &vectorizer, &forest, 1))
            .py_err()?;
        Ok(NativeRecordModel { model })
    }

    /// Scores and verdicts of `records`, in order: `(scores, is_anomaly)`, without learning from them.
    fn score<'py>(&self, py: Python<'py>, records: &Bound<'py, PyAny>) -> PyResult<Scored<'py>> {
        let limits = self.model.vectorizer().params().get_limits();
        let columns = Columns::from_records(records, limits)?;
        self.score_read(py, &columns)
    }

    /// `score` of records held as columns (`names[i]` holds `arrays[i]`, `rows` values each).
    fn score_columns<'py>(
        &self,
        py: Python<'py>,
        names: Vec<String>,
        arrays: Vec<Bound<'py, PyAny>>,
        rows: usize,
    ) -> PyResult<Scored<'py>> {
        let columns = Columns::read(names, arrays, rows)?;
        self.score_read(py, &columns)
    }

    /// One record's verdict explained in field names, as a dict.
    fn explain<'py>(
        &self,
        py: Python<'py>,
        record: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = crate::convert::to_json(record)?;
        let e = py.detach(|| self.model.explain(&record)).py_err()?;
        to_python(py, &e)
    }

    /// The threshold a score is compared with.
    #[getter]
    fn threshold(&self) -> f64 {
        self.model.forest().threshold()
    }

    /// The schema's column names.
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.model.vectorizer().feature_names()
    }

    /// Each field's role, by dotted path.
    #[getter]
    fn roles(&self) -> BTreeMap<String, String> {
        self.model
            .vectorizer()
            .fields()
            .iter()
            .map(|f| (f.path.clone(), f.role.as_str().to_string()))
            .collect()
    }

    /// Records the model was fitted on.
    #[getter]
    fn trained_on(&self) -> usize {
        self.model.trained_on()
    }

    /// The model as the core's versioned snapshot.
    fn to_snapshot_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.model.to_snapshot_bytes())
    }

    /// A model from snapshot bytes (`CorruptModelError` for bytes that are not a record model's snapshot, or from
    /// a newer format).
    #[staticmethod]
    fn from_snapshot_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let model = py
            .detach(|| RecordModel::from_snapshot_bytes(data))
            .py_err()?;
        Ok(NativeRecordModel { model })
    }
}
