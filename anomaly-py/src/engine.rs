//! `_Engine`: the record engine (one model per key over JSON-like records).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anomaly_core::engine::{Engine, EngineParams, Outcome, Persistence, WriteBehind};
use anomaly_core::records::flatten::Limits;
use anomaly_core::records::role::{FieldRole, FieldRoles};
use anomaly_core::records::vectorizer::VectorizerParams;
use anomaly_core::{Contamination, IsolationForestParams};
use numpy::{IntoPyArray, PyArray1};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use serde_json::{Value, json};

use crate::columns::Columns;
use crate::convert::{to_json, to_python};
use crate::errors::IntoPyResult;

/// Scores, verdicts, threshold and model version of records scored as columns.
type ColumnScores<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<bool>>,
    Option<f64>,
    Option<u64>,
);

impl NativeEngine {
    /// The limits dicts for `key` are read within: the engine's, narrowed by those of the key's model (restored
    /// from a store, it keeps the limits it was trained with), so that a dict either limit refuses is read as a
    /// record, and refused as one.
    fn read_limits(&self, py: Python<'_>, key: &str) -> PyResult<Limits> {
        let mut limits = *self.engine.params().get_vectorizer().get_limits();
        if let Some(model) = py.detach(|| self.engine.model(key)).py_err()? {
            let own = model.vectorizer().params().get_limits();
            limits.max_depth = limits.max_depth.min(own.max_depth);
            limits.max_fields = limits.max_fields.min(own.max_fields);
        }
        Ok(limits)
    }

    /// Scores dicts read into columns (see [`Columns::from_records`]).
    fn score_records(
        &self,
        py: Python<'_>,
        key: &str,
        records: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Outcome>> {
        let limits = self.read_limits(py, key)?;
        let columns = Columns::from_records(records, &limits)?;
        self.score_read(py, key, &columns)
    }

    /// Scores columns read from Python, without the GIL.
    fn score_read(
        &self,
        py: Python<'_>,
        key: &str,
        columns: &Columns<'_>,
    ) -> PyResult<Vec<Outcome>> {
        columns.scored(py, |view| self.engine.score_columns(key, view))
    }

    /// Outcomes as `(scores, is_anomaly, threshold, model_version)`: NaN scores while the key is learning, and the
    /// threshold and version of the key's model (`None` without one).
    fn as_arrays<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        outcomes: &[Outcome],
    ) -> PyResult<ColumnScores<'py>> {
        let model = match outcomes.iter().find_map(Outcome::verdict) {
            Some(v) => Some((v.threshold, v.model_version)),
            None => py
                .detach(|| self.engine.model(key))
                .py_err()?
                .map(|m| (m.forest().threshold(), m.version())),
        };
        let scores: Vec<f64> = outcomes
            .iter()
            .map(|o| o.verdict().map_or(f64::NAN, |v| v.score))
            .collect();
        let flagged: Vec<bool> = outcomes.iter().map(Outcome::is_anomaly).collect();
        Ok((
            scores.into_pyarray(py),
            flagged.into_pyarray(py),
            model.map(|m| m.0),
            model.map(|m| m.1),
        ))
    }
}

/// An outcome as the dict `to_python` makes of it (the same keys, in the same order), built directly: a batch's
/// outcomes cost a dict each, not a JSON value and then a dict.
fn outcome_dict<'py>(py: Python<'py>, o: &Outcome) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match o {
        Outcome::Learning { seen, needed } => {
            d.set_item(intern!(py, "needed"), needed)?;
            d.set_item(intern!(py, "seen"), seen)?;
            d.set_item(intern!(py, "status"), intern!(py, "learning"))?;
        }
        Outcome::Scored(v) => {
            let flagged = PyDict::new(py);
            flagged.set_item(
                intern!(py, "isolation_forest"),
                v.flagged_by.isolation_forest,
            )?;
            flagged.set_item(intern!(py, "range_rule"), v.flagged_by.range_rule)?;
            d.set_item(intern!(py, "flagged_by"), flagged)?;
            d.set_item(intern!(py, "is_anomaly"), v.is_anomaly)?;
            d.set_item(intern!(py, "model_version"), v.model_version)?;
            d.set_item(intern!(py, "score"), v.score)?;
            d.set_item(intern!(py, "status"), intern!(py, "scored"))?;
            d.set_item(intern!(py, "threshold"), v.threshold)?;
        }
    }
    Ok(d)
}

fn sensitivity(v: Option<f64>) -> Contamination {
    v.map_or(Contamination::Auto, Contamination::Fraction)
}

/// An iterable of dicts as JSON records.
pub(crate) fn json_records(records: &Bound<'_, PyAny>) -> PyResult<Vec<Value>> {
    records.try_iter()?.map(|r| to_json(&r?)).collect()
}

/// `{"path": "role"}` → pinned roles; an unknown role name is an `InvalidParameterError`.
pub(crate) fn field_roles(roles: BTreeMap<String, String>) -> PyResult<FieldRoles> {
    roles
        .into_iter()
        .map(|(path, role)| Ok((path, role.parse::<FieldRole>().py_err()?)))
        .collect()
}

/// How long connecting to a store, and each of its operations, may take.
const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a store that could not be reached at start is tried again.
const STORE_RETRY: Duration = Duration::from_secs(30);
/// How often buffered history appends are written.
const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A store URL as the engine opens it: an SQLite file is created when missing (`mode=rwc`), with its directory,
/// unless the URL sets a mode or is in memory.
fn store_url(url: &str) -> PyResult<String> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=") {
        return Ok(url.to_string());
    }
    anomaly_store::SeaOrmStore::create_sqlite_dir(url)
        .map_err(|e| persistence(format!("cannot create the directory of {url}: {e}")))?;
    let sep = if url.contains('?') { '&' } else { '?' };
    Ok(format!("{url}{sep}mode=rwc"))
}

/// `PersistenceError` with `reason`.
fn persistence(reason: String) -> PyErr {
    crate::errors::to_py(anomaly_core::Error::Persistence { reason })
}

/// The engine's persistence over the store at `url` (SQLite, PostgreSQL or MySQL/MariaDB), as the services open
/// it: connected now, or, for a server that cannot be reached, when it answers (with a warning saying why), and
/// history appends buffered and written every second.
fn open_store(py: Python<'_>, url: &str, max_history: usize) -> PyResult<Arc<WriteBehind>> {
    let url = store_url(url)?;
    let max = u64::try_from(max_history).unwrap_or(u64::MAX);
    let (store, down) = py
        .detach(|| {
            anomaly_store::SeaOrmStore::connect_or_lazy_blocking(
                &url,
                STORE_TIMEOUT,
                max,
                STORE_RETRY,
            )
        })
        .map_err(|e| persistence(e.chain()))?;
    if let Some(reason) = down {
        let warning = py.get_type::<pyo3::exceptions::PyRuntimeWarning>();
        PyErr::warn(
            py,
            &warning,
            &std::ffi::CString::new(format!(
                "the store does not answer ({reason}); the engine runs and connects when it does"
            ))
            .unwrap_or_default(),
            2,
        )?;
    }
    let store: Arc<dyn Persistence> = Arc::new(store);
    WriteBehind::new(store, max_history, HISTORY_FLUSH_INTERVAL)
        .map(Arc::new)
        .py_err()
}

/// An engine, in memory or over a store; safe to call from several Python threads at once.
#[pyclass(module = "anomaly._native", name = "_Engine", frozen)]
pub(crate) struct NativeEngine {
    engine: Engine,
    /// The buffered history writer of a store-backed engine.
    history: Option<Arc<WriteBehind>>,
}

#[pymethods]
impl NativeEngine {
    /// `None` leaves the core's default; `auto_sensitivity` asks for `"auto"` explicitly.
    #[new]
    #[pyo3(signature = (*, min_training_records=None, max_history=None, retrain_every=None, sensitivity=None, auto_sensitivity=false, n_estimators=None, drift=None, seed=None, field_roles=None, max_columns=None, max_keys_in_memory=None, stale_growth=None, range_tolerance=None, range_rule=true, store=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        min_training_records: Option<usize>,
        max_history: Option<usize>,
        retrain_every: Option<usize>,
        sensitivity: Option<f64>,
        auto_sensitivity: bool,
        n_estimators: Option<usize>,
        drift: Option<bool>,
        seed: Option<u64>,
        field_roles: Option<BTreeMap<String, String>>,
        max_columns: Option<usize>,
        max_keys_in_memory: Option<usize>,
        stale_growth: Option<f64>,
        range_tolerance: Option<f64>,
        range_rule: bool,
        store: Option<&str>,
    ) -> PyResult<Self> {
        let mut p = EngineParams::new();
        let mut v = VectorizerParams::new();
        if let Some(roles) = field_roles {
            v = v.field_roles(self::field_roles(roles)?);
        }
        if let Some(n) = max_columns {
            v = v.max_columns(n);
        }
        p = p.vectorizer(v);
        if let Some(n) = max_keys_in_memory {
            p = p.max_keys_in_memory(n);
        }
        if let Some(g) = stale_growth {
            p = p.stale_growth(g);
        }
        if !range_rule {
            p = p.range_tolerance(None);
        } else if let Some(t) = range_tolerance {
            p = p.range_tolerance(Some(t));
        }
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
        let Some(url) = store else {
            return Ok(NativeEngine {
                engine: Engine::in_memory(p).py_err()?,
                history: None,
            });
        };
        let history = open_store(py, url, p.get_max_history())?;
        Ok(NativeEngine {
            engine: Engine::new(p, history.clone()).py_err()?,
            history: Some(history),
        })
    }

    /// Writes the history appends still buffered (a store-backed engine; nothing otherwise).
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        match &self.history {
            Some(h) => py.detach(|| h.flush()).py_err(),
            None => Ok(()),
        }
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
        let records = json_records(records)?;
        let outcomes = py
            .detach(|| self.engine.observe_many(key, &records))
            .py_err()?;
        to_python(py, &outcomes)
    }

    /// One batch as a service sees it: outcomes, explanations of the flagged records, the batch's statistics
    /// against the key's baseline, and the model's summary.
    fn observe_batch<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let records = json_records(records)?;
        let report = py
            .detach(|| self.engine.observe_batch(key, &records))
            .py_err()?;
        let explanations: serde_json::Map<String, Value> = report
            .explanations
            .iter()
            .map(|(i, e)| {
                (
                    i.to_string(),
                    serde_json::to_value(e).unwrap_or(Value::Null),
                )
            })
            .collect();
        to_python(
            py,
            &json!({
                "outcomes": report.outcomes,
                "flagged": report.flagged().collect::<Vec<_>>(),
                "explanations": explanations,
                "comparison": report.comparison,
                "comparison_summary": report.comparison.as_ref().map(|c| c.summary()),
                "model": report.model,
                "persistence_failures": report.persistence_failures,
            }),
        )
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

    /// `score` for each record, in one native call that learns nothing: the vectors first, then the forest over
    /// all of them in blocks (the same outcomes as `score`, bit for bit).
    fn score_many<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let outcomes = self.score_records(py, key, records)?;
        let list = PyList::empty(py);
        for o in &outcomes {
            list.append(outcome_dict(py, o)?)?;
        }
        Ok(list.into_any())
    }

    /// `score_many` answered as arrays, as `score_columns` answers.
    fn score_dicts<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<ColumnScores<'py>> {
        let outcomes = self.score_records(py, key, records)?;
        self.as_arrays(py, key, &outcomes)
    }

    /// `score_many` of records held as columns (`names[i]` holds `arrays[i]`, `rows` values each), as arrays:
    /// `(scores, is_anomaly, threshold, model_version)`; while the key is learning, NaN scores, no anomaly, and
    /// `None` for the threshold and version.
    fn score_columns<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        names: Vec<String>,
        arrays: Vec<Bound<'py, PyAny>>,
        rows: usize,
    ) -> PyResult<ColumnScores<'py>> {
        let columns = Columns::read(names, arrays, rows)?;
        let outcomes = self.score_read(py, key, &columns)?;
        self.as_arrays(py, key, &outcomes)
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

    /// Pins the roles of a key's fields (`{"path": "role"}`) and retrains it if it has a model.
    fn set_field_roles(
        &self,
        py: Python<'_>,
        key: &str,
        roles: BTreeMap<String, String>,
    ) -> PyResult<()> {
        let roles = field_roles(roles)?;
        py.detach(|| self.engine.set_field_roles(key, roles))
            .py_err()
    }

    fn keys(&self) -> Vec<String> {
        self.engine.keys()
    }

    /// Keys held, restored and evicted, and trainings.
    fn totals<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, &self.engine.totals())
    }

    fn stats<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let stats = py.detach(|| self.engine.stats(key)).py_err()?;
        to_python(py, &stats)
    }

    fn model_info<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let info = py.detach(|| self.engine.model_info(key)).py_err()?;
        to_python(py, &info)
    }

    /// The key's baseline statistics (of its records neither detector flagged), without merge state.
    fn statistics<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyAny>> {
        let stats = py.detach(|| self.engine.statistics(key)).py_err()?;
        to_python(py, &stats.to_prompt_json())
    }

    fn history<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyList>> {
        let records = py.detach(|| self.engine.history(key)).py_err()?;
        let list = PyList::empty(py);
        for r in records {
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
        let model = py.detach(|| self.engine.model(key)).py_err()?;
        Ok(model.map(|m| PyBytes::new(py, &m.to_snapshot_bytes())))
    }

    /// The core parameters, as a dict.
    #[getter]
    fn params<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_python(py, self.engine.params())
    }
}
