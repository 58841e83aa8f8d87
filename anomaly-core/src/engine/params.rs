//! [`EngineParams`]: everything an [`Engine`](super::Engine) is configured with, and its bounds.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drift::DriftParams;
use crate::error::{Error, Result};
use crate::forest::{Contamination, IsolationForestParams};
use crate::records::vectorizer::VectorizerParams;

/// Parameters of an [`Engine`](super::Engine).
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `min_training_records` | 100 | records before the first model |
/// | `max_history` | 100,000 | history kept per key (a uniform sample once exceeded) |
/// | `max_keys_in_memory` | 10,000 | keys held in memory; beyond it the least recently used idle key is evicted, and restored from the persistence on its next use |
/// | `retrain_every` | 1,000 | new records between retrains |
/// | `retrain_growth` | 0 | retrain only once the new records also reach this multiple of the records the current model was trained on (1 = when the history has doubled), so a busy key retrains less often as its model matures |
/// | `stale_growth` | 4 | a model is stale once the key's history holds this many times the records it was trained on: it is retrained at once, whatever `retrain_every`, `retrain_growth` and `min_retrain_interval` say (0 turns it off) |
/// | `min_retrain_interval` | 0 | automatic retrains (new records, drift) of a key at least this long after its last training started, so a key flooded with records does not retrain (and store a model version) many times a second |
/// | `train_in_background` | false | automatic retrains (new records, drift, staleness) run on the rayon pool instead of in the call that made them due; the first model and requested retrains stay in the caller |
/// | `sensitivity` | `Auto` | default contamination of every key |
/// | `range_tolerance` | 3 | the range rule flags a number further than this many widths of the history's 5–95 % range beyond everything the history holds (`None` turns the rule off) |
/// | `forest` | 100 trees, seed 0 | the forest trained per key |
/// | `vectorizer` | defaults (1,000 columns at most) | how records become vectors, with roles pinned for every key |
/// | `drift` | on, defaults | drift detection that triggers a retrain (`None` turns it off); active for models trained on at least two drift windows of records |
/// | `learn_flagged` | true | flagged records join the history; `false` holds them apart and learns them only when drift retrains (see [`learn_flagged`](Self::learn_flagged)) |
/// | `seed` | 0 | seeds the history samples |
///
/// What a key holds in memory is bounded by `max_history` records, one model of at most the vectoriser's
/// `max_columns` columns, and baseline statistics whose sketches are bounded per field; the keys held are bounded
/// by `max_keys_in_memory`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineParams {
    pub(crate) min_training_records: usize,
    pub(crate) max_history: usize,
    #[serde(default = "default_max_keys")]
    pub(crate) max_keys_in_memory: usize,
    pub(crate) retrain_every: usize,
    #[serde(default)]
    pub(crate) retrain_growth: f64,
    #[serde(default = "default_stale_growth")]
    pub(crate) stale_growth: f64,
    #[serde(default)]
    pub(crate) train_in_background: bool,
    #[serde(default)]
    pub(crate) min_retrain_interval: Duration,
    pub(crate) sensitivity: Contamination,
    #[serde(default = "default_range_tolerance")]
    pub(crate) range_tolerance: Option<f64>,
    pub(crate) forest: IsolationForestParams,
    pub(crate) vectorizer: VectorizerParams,
    pub(crate) drift: Option<DriftParams>,
    #[serde(default = "default_learn_flagged")]
    pub(crate) learn_flagged: bool,
    pub(crate) seed: u64,
}

fn default_learn_flagged() -> bool {
    true
}

fn default_max_keys() -> usize {
    10_000
}

fn default_stale_growth() -> f64 {
    4.0
}

fn default_range_tolerance() -> Option<f64> {
    Some(3.0)
}

impl Default for EngineParams {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineParams {
    /// The defaults in the table above.
    pub fn new() -> Self {
        EngineParams {
            min_training_records: 100,
            max_history: 100_000,
            max_keys_in_memory: default_max_keys(),
            retrain_every: 1_000,
            retrain_growth: 0.0,
            stale_growth: default_stale_growth(),
            train_in_background: false,
            min_retrain_interval: Duration::ZERO,
            sensitivity: Contamination::Auto,
            range_tolerance: default_range_tolerance(),
            forest: IsolationForestParams::new(),
            vectorizer: VectorizerParams::new(),
            drift: Some(DriftParams::default()),
            learn_flagged: default_learn_flagged(),
            seed: 0,
        }
    }

    /// Records before the first model (default 100, at least 2).
    pub fn min_training_records(mut self, n: usize) -> Self {
        self.min_training_records = n;
        self
    }

    /// History kept per key (default 100,000).
    pub fn max_history(mut self, n: usize) -> Self {
        self.max_history = n;
        self
    }

    /// Keys held in memory (default 10,000, at least 1). When a key is restored beyond it, the least recently used
    /// keys that no call is using are evicted: their history and models are in the persistence, and they are
    /// restored from it on their next use. Counters and sensitivities set at run time go with them (a key's model
    /// keeps its contamination and pinned roles). With [`InMemoryPersistence`](super::InMemoryPersistence) an
    /// evicted key's history stays in that persistence's memory.
    pub fn max_keys_in_memory(mut self, n: usize) -> Self {
        self.max_keys_in_memory = n;
        self
    }

    /// New records between retrains (default 1,000).
    pub fn retrain_every(mut self, n: usize) -> Self {
        self.retrain_every = n;
        self
    }

    /// Retrain only once the new records also reach `factor` times the records the current model was trained on
    /// (default 0: `retrain_every` alone decides). With `retrain_every(1_000)` and `retrain_growth(1.0)` a key
    /// retrains at 1,000 new records while its model knows fewer than 1,000, then each time its history doubles,
    /// then every `max_history` records once the history is full; drift still retrains at once. Training cost per
    /// record then stays flat however busy the key is.
    pub fn retrain_growth(mut self, factor: f64) -> Self {
        self.retrain_growth = factor;
        self
    }

    /// A model is stale once the key's history holds `factor` times the records it was trained on (default 4; 0
    /// turns it off): it is retrained at once, however recently the last training ran. A burst of records cannot
    /// keep a model trained on a small part of the history in use; the retrains this forces come at geometrically
    /// growing history sizes, so there are few of them.
    pub fn stale_growth(mut self, factor: f64) -> Self {
        self.stale_growth = factor;
        self
    }

    /// The shortest time between the start of a key's training and an automatic retrain (after new records or
    /// drift) of that key (default zero: no limit). A retrain that comes due sooner waits until the interval has
    /// passed and the key sees its next record; drift found meanwhile is kept for it. The first model, a stale
    /// model (see [`stale_growth`](Self::stale_growth)), [`Engine::train`](super::Engine::train) and
    /// [`Engine::set_sensitivity`](super::Engine::set_sensitivity) are not limited.
    pub fn min_retrain_interval(mut self, interval: Duration) -> Self {
        self.min_retrain_interval = interval;
        self
    }

    /// Runs automatic retrains (after new records, drift or staleness) on the rayon pool instead of in the call
    /// that made them due (default false), so no caller waits for a retrain; scoring uses the current model until
    /// the new one is swapped in. A background retrain fits its forest on one thread, leaving the other cores to
    /// the callers. The first model of a key, [`Engine::train`](super::Engine::train) and
    /// [`Engine::set_sensitivity`](super::Engine::set_sensitivity) still train in the caller. A failed background
    /// retrain is logged and the current model stays.
    pub fn train_in_background(mut self, yes: bool) -> Self {
        self.train_in_background = yes;
        self
    }

    /// Default contamination of every key (default `Auto`).
    pub fn sensitivity(mut self, c: Contamination) -> Self {
        self.sensitivity = c;
        self
    }

    /// How far outside everything the key's history holds a measured number must lie for the range rule to flag
    /// its record, in widths of the history's 5–95 % range (default 3; `None` turns the rule off). See
    /// [`RangeViolation`](super::RangeViolation).
    pub fn range_tolerance(mut self, widths: Option<f64>) -> Self {
        self.range_tolerance = widths;
        self
    }

    /// The forest trained per key (its contamination is replaced by the key's sensitivity).
    pub fn forest(mut self, p: IsolationForestParams) -> Self {
        self.forest = p;
        self
    }

    /// How records become vectors; its pinned roles apply to every key.
    pub fn vectorizer(mut self, p: VectorizerParams) -> Self {
        self.vectorizer = p;
        self
    }

    /// Drift detection that triggers retraining; `None` turns it off.
    pub fn drift(mut self, p: Option<DriftParams>) -> Self {
        self.drift = p;
        self
    }

    /// Whether records that either detector flagged join the key's history, and so the next training (default
    /// true). With `false`, an incident does not teach the model that it is normal: a flagged record is held apart,
    /// out of the history and the persistence. Only a drift retrain learns the held records (the newest, at most
    /// the drift window's length; older ones are forgotten), first adding them to the history: a change that lasts
    /// long enough to be drift is the new normal, and its first records were flagged before it was known to last.
    /// While a key has no drift detector yet (its model was trained on fewer than two drift windows), a drift
    /// window of records all flagged in a row counts as such a change ([`TrainReason::LastingChange`](super::TrainReason::LastingChange)).
    /// Without drift detection, flagged records are never learnt. Held records are kept in memory only.
    pub fn learn_flagged(mut self, yes: bool) -> Self {
        self.learn_flagged = yes;
        self
    }

    /// The most flagged records a key holds apart while `learn_flagged` is off: the drift window, or none
    /// without drift detection.
    pub(crate) fn held_limit(&self) -> usize {
        match (&self.drift, self.learn_flagged) {
            (Some(d), false) => d.get_window(),
            _ => 0,
        }
    }

    /// Seed of the history samples (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Records before the first model.
    pub fn get_min_training_records(&self) -> usize {
        self.min_training_records
    }

    /// History kept per key.
    pub fn get_max_history(&self) -> usize {
        self.max_history
    }

    /// Keys held in memory.
    pub fn get_max_keys_in_memory(&self) -> usize {
        self.max_keys_in_memory
    }

    /// How records become vectors.
    pub fn get_vectorizer(&self) -> &VectorizerParams {
        &self.vectorizer
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.min_training_records < 2 {
            return Err(Error::invalid("min_training_records", "must be at least 2"));
        }
        if self.max_history < self.min_training_records {
            return Err(Error::invalid(
                "max_history",
                "must be at least min_training_records",
            ));
        }
        if self.max_keys_in_memory == 0 {
            return Err(Error::invalid("max_keys_in_memory", "must be at least 1"));
        }
        if self.retrain_every == 0 {
            return Err(Error::invalid("retrain_every", "must be at least 1"));
        }
        for (name, v) in [
            ("retrain_growth", self.retrain_growth),
            ("stale_growth", self.stale_growth),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::invalid(name, "must be a finite number, 0 or more"));
            }
        }
        if self.stale_growth > 0.0 && self.stale_growth <= 1.0 {
            return Err(Error::invalid(
                "stale_growth",
                "must be more than 1 (or 0 to turn it off)",
            ));
        }
        if let Some(t) = self.range_tolerance
            && !(t.is_finite() && t >= 0.0)
        {
            return Err(Error::invalid(
                "range_tolerance",
                "must be a finite number, 0 or more",
            ));
        }
        self.vectorizer.validate()?;
        self.forest
            .clone()
            .contamination(self.sensitivity)
            .validate()
    }
}
