//! `Attribution`, `Explanation` and `Detection`: the core's explanation types as read-only Python objects.
//!
//! Scores here follow the core's convention (higher means more anomalous), not scikit-learn's.

use anomaly_core::{Attribution as CoreAttribution, Explanation as CoreExplanation, Verdict};
use pyo3::prelude::*;

use crate::convert::to_python;

/// How much one feature contributed to a verdict.
#[pyclass(
    module = "anomaly._native",
    name = "Attribution",
    frozen,
    get_all,
    skip_from_py_object
)]
#[derive(Clone)]
pub(crate) struct Attribution {
    feature: usize,
    name: Option<String>,
    value: f64,
    contribution: f64,
    typical_low: f64,
    typical_high: f64,
    label: String,
    is_atypical: bool,
}

impl From<&CoreAttribution> for Attribution {
    fn from(a: &CoreAttribution) -> Self {
        Attribution {
            feature: a.feature,
            name: a.name.clone(),
            value: a.value,
            contribution: a.contribution,
            typical_low: a.typical_low,
            typical_high: a.typical_high,
            label: a.label(),
            is_atypical: a.is_atypical(),
        }
    }
}

#[pymethods]
impl Attribution {
    fn __repr__(&self) -> String {
        format!(
            "Attribution(label={:?}, value={}, contribution={:.4}, typical=({}, {}))",
            self.label, self.value, self.contribution, self.typical_low, self.typical_high
        )
    }
}

/// A verdict with its attributions, detector details and a one-sentence rationale.
///
/// `Explanation` for a fitted forest's rows, `Detection` for a streaming detector's observations: the same fields.
#[pyclass(module = "anomaly._native", name = "Explanation", frozen, get_all)]
pub(crate) struct Explanation {
    score: f64,
    threshold: f64,
    is_anomaly: bool,
    attributions: Vec<Attribution>,
    details: Py<PyAny>,
    rationale: String,
}

impl Explanation {
    pub(crate) fn new(py: Python<'_>, e: &CoreExplanation) -> PyResult<Self> {
        Ok(Explanation {
            score: e.score,
            threshold: e.threshold,
            is_anomaly: e.is_anomaly,
            attributions: e.attributions.iter().map(Attribution::from).collect(),
            details: to_python(py, &e.details)?.unbind(),
            rationale: e.rationale.clone(),
        })
    }
}

#[pymethods]
impl Explanation {
    fn __repr__(&self) -> String {
        format!(
            "Explanation(score={}, threshold={}, is_anomaly={}, rationale={:?})",
            self.score,
            self.threshold,
            if self.is_anomaly { "True" } else { "False" },
            self.rationale
        )
    }
}

/// A streaming detector's verdict on one observation, with its explanation.
#[pyclass(module = "anomaly._native", name = "Detection", frozen, get_all)]
pub(crate) struct Detection {
    score: f64,
    threshold: f64,
    is_anomaly: bool,
    attributions: Vec<Attribution>,
    details: Py<PyAny>,
    rationale: String,
}

impl Detection {
    pub(crate) fn new(py: Python<'_>, verdict: Verdict, e: &CoreExplanation) -> PyResult<Self> {
        Ok(Detection {
            score: verdict.score,
            threshold: verdict.threshold,
            is_anomaly: verdict.is_anomaly,
            attributions: e.attributions.iter().map(Attribution::from).collect(),
            details: to_python(py, &e.details)?.unbind(),
            rationale: e.rationale.clone(),
        })
    }
}

#[pymethods]
impl Detection {
    fn __repr__(&self) -> String {
        format!(
            "Detection(score={}, threshold={}, is_anomaly={}, rationale={:?})",
            self.score,
            self.threshold,
            if self.is_anomaly { "True" } else { "False" },
            self.rationale
        )
    }
}
