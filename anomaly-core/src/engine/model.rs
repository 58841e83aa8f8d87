//! A model of one key's records: the learned schema and an isolation forest over its vectors.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::explanation::fmt_num;
use crate::forest::{IsolationForest, IsolationForestParams};
use crate::records::vectorizer::{FieldAttribution, RecordNotes, Vectorizer, VectorizerParams};

/// A vectoriser and the forest fitted on its vectors; immutable once trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordModel {
    vectorizer: Vectorizer,
    forest: IsolationForest,
    version: u64,
    trained_on: usize,
    trained_at: f64,
}

/// The verdict on one record.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RecordVerdict {
    /// Isolation-forest score in `(0, 1]`; higher is more anomalous.
    pub score: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// `score > threshold`.
    pub is_anomaly: bool,
    /// Version of the model that scored it.
    pub model_version: u64,
}

/// A verdict on one record, explained in field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordExplanation {
    /// The verdict.
    pub verdict: RecordVerdict,
    /// Fields by contribution, then fields the schema never saw.
    pub fields: Vec<FieldAttribution>,
    /// What did not fit the schema.
    pub notes: RecordNotes,
    /// One sentence, for example "Anomalous: score 0.71 exceeds the threshold 0.5; `amount` = 99,812 is above the
    /// typical 12–480, and `country` = 'KP' was never seen."
    pub rationale: String,
}

impl RecordModel {
    /// Learns the schema from `records` and fits a forest on their vectors.
    ///
    /// # Errors
    /// As [`VectorizerParams::fit`] and [`IsolationForestParams::fit`].
    pub fn fit(
        records: &[Value],
        vectorizer: &VectorizerParams,
        forest: &IsolationForestParams,
        version: u64,
    ) -> Result<Self> {
        let vectorizer = vectorizer.fit(records)?;
        let x = vectorizer.transform_many(records)?;
        let forest = forest
            .clone()
            .feature_names(Some(vectorizer.feature_names()))
            .fit(x.view())?;
        Ok(RecordModel {
            vectorizer,
            forest,
            version,
            trained_on: records.len(),
            trained_at: now(),
        })
    }

    /// The model's version.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Records it was trained on.
    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    /// When it was trained, in seconds since the Unix epoch.
    pub fn trained_at(&self) -> f64 {
        self.trained_at
    }

    /// The learned schema.
    pub fn vectorizer(&self) -> &Vectorizer {
        &self.vectorizer
    }

    /// The forest.
    pub fn forest(&self) -> &IsolationForest {
        &self.forest
    }

    /// Scores one record, reusing `buf` for its vector.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits.
    pub fn score_with(
        &self,
        record: &Value,
        buf: &mut Vec<f64>,
        notes: &mut RecordNotes,
    ) -> Result<RecordVerdict> {
        self.vectorizer.transform_into(record, buf, notes)?;
        let v = self.forest.verdict_row(buf)?;
        Ok(RecordVerdict {
            score: v.score,
            threshold: v.threshold,
            is_anomaly: v.is_anomaly,
            model_version: self.version,
        })
    }

    /// Scores one record.
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with).
    pub fn score(&self, record: &Value) -> Result<RecordVerdict> {
        self.score_with(record, &mut Vec::new(), &mut RecordNotes::default())
    }

    /// Scores and explains one record in field names.
    ///
    /// # Errors
    /// As [`score_with`](Self::score_with).
    pub fn explain(&self, record: &Value) -> Result<RecordExplanation> {
        let (x, notes) = self.vectorizer.transform(record)?;
        let verdict = self.score(record)?;
        let attributions = self.forest.attributions(&x)?;
        let mut per_column = vec![0.0; x.len()];
        for a in &attributions {
            per_column[a.feature] = a.contribution;
        }
        let fields = self.vectorizer.explain_fields(record, &per_column)?;
        let rationale = rationale(&verdict, &fields);
        Ok(RecordExplanation {
            verdict,
            fields,
            notes,
            rationale,
        })
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.vectorizer.check()?;
        self.forest.check()?;
        if self.forest.n_features() != self.vectorizer.n_features() {
            return Err("forest and vectoriser widths differ".into());
        }
        Ok(())
    }
}

fn rationale(v: &RecordVerdict, fields: &[FieldAttribution]) -> String {
    let mut reasons: Vec<&str> = fields
        .iter()
        .filter(|f| f.unusual && f.contribution > 0.0)
        .take(3)
        .map(|f| f.description.as_str())
        .collect();
    let new_fields: Vec<&str> = fields
        .iter()
        .filter(|f| f.description.starts_with("new field"))
        .take(3)
        .map(|f| f.description.as_str())
        .collect();
    if reasons.is_empty()
        && let Some(f) = fields.first().filter(|f| f.contribution > 0.0)
    {
        reasons.push(f.description.as_str());
    }
    reasons.extend(new_fields);
    format!(
        "{}: score {} {} the threshold {}{}.",
        if v.is_anomaly { "Anomalous" } else { "Normal" },
        fmt_num(v.score),
        if v.is_anomaly {
            "exceeds"
        } else {
            "does not exceed"
        },
        fmt_num(v.threshold),
        if reasons.is_empty() {
            String::new()
        } else {
            format!("; {}", reasons.join(", and "))
        }
    )
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Turns a snapshot error into one naming the key.
pub(crate) fn restore(bytes: &[u8]) -> Result<RecordModel> {
    RecordModel::from_snapshot_bytes(bytes).map_err(|e| match e {
        Error::UnsupportedSnapshot { reason } => Error::Persistence {
            reason: format!("stored model cannot be restored: {reason}"),
        },
        other => other,
    })
}
