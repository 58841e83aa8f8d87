//! What the engine answers: a record's [`Outcome`], a batch's [`BatchReport`], a key's [`ModelInfo`] and
//! [`KeyStats`], and the engine's [`EngineTotals`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::model::{RecordExplanation, RecordVerdict};
use crate::drift::DriftReport;
use crate::records::kind::FieldKind;
use crate::records::role::FieldRole;
use crate::stats::{Comparison, DatasetStats};

/// What the engine says about one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// No model yet: `seen` of the `needed` records are in.
    Learning {
        /// Records in the key's history, this one included.
        seen: usize,
        /// Records needed before the first model.
        needed: usize,
    },
    /// Scored by the key's current model and the range rule.
    Scored(RecordVerdict),
}

impl Outcome {
    /// The verdict, if the record was scored.
    pub fn verdict(&self) -> Option<&RecordVerdict> {
        match self {
            Outcome::Scored(v) => Some(v),
            Outcome::Learning { .. } => None,
        }
    }

    /// Whether the record was scored and a detector flagged it.
    pub fn is_anomaly(&self) -> bool {
        self.verdict().is_some_and(|v| v.is_anomaly)
    }
}

/// Why a key was (re)trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum TrainReason {
    /// Enough records for a first model.
    FirstModel,
    /// `retrain_every` new records since the last training.
    NewRecords,
    /// The history grew to `stale_growth` times the records the model was trained on.
    Stale,
    /// Drift was detected.
    Drift(DriftReport),
    /// Every record of a drift window was flagged, while no drift detector watched the key yet (its model was
    /// trained on fewer than two drift windows): with [`learn_flagged`](super::EngineParams::learn_flagged) off,
    /// the change is learnt as the new normal.
    LastingChange,
    /// The key's sensitivity changed.
    Sensitivity,
    /// The key's pinned field roles changed.
    FieldRoles,
    /// A caller asked for it.
    Requested,
    /// Restored from the persistence (the reason of its training is in the stored version's metrics).
    Restored,
}

impl TrainReason {
    /// Whether the engine decided it by itself (new records, staleness, drift), rather than a caller.
    pub(crate) fn is_automatic(&self) -> bool {
        matches!(
            self,
            TrainReason::NewRecords
                | TrainReason::Drift(_)
                | TrainReason::Stale
                | TrainReason::LastingChange
        )
    }
}

/// One field of a model's schema: its role, and the rule that decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldInfo {
    /// Dotted path.
    pub field: String,
    /// The kind its values had in training.
    pub kind: FieldKind,
    /// What it is for.
    pub role: FieldRole,
    /// The rule that decided the role (`pinned`, `numbers`, `a sequence of distinct whole numbers: …`, …).
    pub rule: String,
    /// Its columns in the model's vectors.
    pub columns: usize,
}

/// A summary of a key's current model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Current version.
    pub version: u64,
    /// Records it was trained on.
    pub trained_on: usize,
    /// When, in seconds since the Unix epoch.
    pub trained_at: f64,
    /// Its input columns.
    pub features: Vec<String>,
    /// The fields of its schema, in path order, with their roles.
    pub fields: Vec<FieldInfo>,
    /// Fields of the training records left out of the schema by its column cap.
    pub left_out_fields: usize,
    /// The threshold its scores are compared with.
    pub threshold: f64,
    /// Why it was trained.
    pub reason: TrainReason,
}

/// Counters of one key, since it was last restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyStats {
    /// Records in the history sample.
    pub history: usize,
    /// Records seen since the key was restored (its stored history counts as seen).
    pub seen: u64,
    /// Records scored.
    pub scored: u64,
    /// Records found anomalous.
    pub anomalies: u64,
    /// Trainings.
    pub trainings: u64,
    /// Persistence calls that failed (the engine carried on in memory).
    pub persistence_failures: u64,
}

/// Counters of the whole engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineTotals {
    /// Keys held in memory now.
    pub keys_in_memory: usize,
    /// Keys restored from the persistence (a key's first use in this process, or its first use after eviction).
    pub restored: u64,
    /// Keys evicted to stay within `max_keys_in_memory`.
    pub evicted: u64,
    /// Trainings of every key.
    pub trainings: u64,
}

/// What [`Engine::observe_batch`](super::Engine::observe_batch) found in one batch of a key's records.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchReport {
    /// One outcome per record, in order.
    pub outcomes: Vec<Outcome>,
    /// The explanation of every flagged record, by index.
    pub explanations: BTreeMap<usize, RecordExplanation>,
    /// Statistics of the batch.
    pub statistics: DatasetStats,
    /// How the batch differs from the key's baseline; `None` while the baseline is empty.
    pub comparison: Option<Comparison>,
    /// The key's model after the batch (a training the batch triggered in the caller included).
    pub model: Option<ModelInfo>,
    /// Persistence calls that failed during the batch (model versions that could not be written; history goes
    /// through the persistence's own buffering), as counted in [`KeyStats::persistence_failures`].
    pub persistence_failures: u64,
}

impl BatchReport {
    /// Indices of the records a detector flagged.
    pub fn flagged(&self) -> impl Iterator<Item = usize> + '_ {
        self.outcomes
            .iter()
            .enumerate()
            .filter(|(_, o)| o.is_anomaly())
            .map(|(i, _)| i)
    }

    /// `(seen, needed)` when the batch ended with the key still learning (no model).
    pub fn learning(&self) -> Option<(usize, usize)> {
        match (self.outcomes.last(), &self.model) {
            (Some(Outcome::Learning { seen, needed }), None) => Some((*seen, *needed)),
            _ => None,
        }
    }
}
