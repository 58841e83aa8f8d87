//! An engine of per-key record models that train, score and retrain by themselves.
//!
//! One [`Engine`] holds a model per key (a query, a data source, a series, a tenant). For each key it keeps a
//! bounded uniform sample of the history ([`EngineParams::max_history`], reservoir sampling), reports
//! [`Outcome::Learning`] until [`EngineParams::min_training_records`] records are in, then trains a
//! [`RecordModel`] and scores every record with it. It retrains after [`EngineParams::retrain_every`] new records,
//! when drift is detected on the vectors or the scores, and when the key's sensitivity changes; each training makes
//! a new model version.
//!
//! Concurrency: scoring reads the current model through an atomic pointer (`arc-swap`), so readers never wait,
//! not even while a retrain runs; the new model is swapped in whole when it is ready. One retrain runs per key at a
//! time, outside every lock. Many threads may score the same or different keys at once.

mod model;
mod persistence;
mod reservoir;
mod write_behind;

pub use model::{RecordExplanation, RecordModel, RecordVerdict};
pub use persistence::{InMemoryPersistence, ModelMeta, Persistence, StoredModel};
pub use write_behind::{WriteBehind, WriteBehindStats};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use arc_swap::ArcSwapOption;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::drift::{DriftDetector, DriftParams, DriftReport};
use crate::error::{Error, Result};
use crate::forest::{Contamination, IsolationForestParams};
use crate::records::flatten::{Limits, flatten};
use crate::records::hashing::murmur3_32;
use crate::records::vectorizer::{RecordNotes, VectorizerParams};
use reservoir::Reservoir;

/// Parameters of an [`Engine`].
///
/// | parameter | default | meaning |
/// | --- | --- | --- |
/// | `min_training_records` | 100 | records before the first model |
/// | `max_history` | 100,000 | history kept per key (a uniform sample once exceeded) |
/// | `retrain_every` | 1,000 | new records between retrains |
/// | `train_in_background` | false | automatic retrains (new records, drift) run on the rayon pool instead of in the call that made them due; the first model and requested retrains stay in the caller |
/// | `retrain_growth` | 0 | retrain only once the new records also reach this multiple of the records the current model was trained on (1 = when the history has doubled), so a busy key retrains less often as its model matures |
/// | `min_retrain_interval` | 0 | automatic retrains (new records, drift) of a key at least this long after its last training started, so a key flooded with records does not retrain (and store a model version) many times a second |
/// | `sensitivity` | `Auto` | default contamination of every key |
/// | `forest` | 100 trees, seed 0 | the forest trained per key |
/// | `vectorizer` | defaults | how records become vectors |
/// | `drift` | on, defaults | drift detection that triggers a retrain (`None` turns it off); active for models trained on at least two drift windows of records |
/// | `seed` | 0 | seeds the history samples |
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineParams {
    min_training_records: usize,
    max_history: usize,
    retrain_every: usize,
    #[serde(default)]
    retrain_growth: f64,
    #[serde(default)]
    train_in_background: bool,
    #[serde(default)]
    min_retrain_interval: std::time::Duration,
    sensitivity: Contamination,
    forest: IsolationForestParams,
    vectorizer: VectorizerParams,
    drift: Option<DriftParams>,
    seed: u64,
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
            retrain_every: 1_000,
            retrain_growth: 0.0,
            train_in_background: false,
            min_retrain_interval: std::time::Duration::ZERO,
            sensitivity: Contamination::Auto,
            forest: IsolationForestParams::new(),
            vectorizer: VectorizerParams::new(),
            drift: Some(DriftParams::default()),
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

    /// The shortest time between the start of a key's training and an automatic retrain (after new records or
    /// drift) of that key (default zero: no limit). A retrain that comes due sooner waits until the interval has
    /// passed and the key sees its next record; drift found meanwhile is kept for it. The first model,
    /// [`Engine::train`] and [`Engine::set_sensitivity`] are not limited.
    pub fn min_retrain_interval(mut self, interval: std::time::Duration) -> Self {
        self.min_retrain_interval = interval;
        self
    }

    /// Runs automatic retrains (after new records or drift) on the rayon pool instead of in the `observe` call that
    /// made them due (default false), so no caller waits for a retrain; scoring uses the current model until the new
    /// one is swapped in. The first model of a key, [`Engine::train`] and [`Engine::set_sensitivity`] still train
    /// in the caller. A failed background retrain is logged and the current model stays.
    pub fn train_in_background(mut self, yes: bool) -> Self {
        self.train_in_background = yes;
        self
    }

    /// Default contamination of every key (default `Auto`).
    pub fn sensitivity(mut self, c: Contamination) -> Self {
        self.sensitivity = c;
        self
    }

    /// The forest trained per key (its contamination is replaced by the key's sensitivity).
    pub fn forest(mut self, p: IsolationForestParams) -> Self {
        self.forest = p;
        self
    }

    /// How records become vectors.
    pub fn vectorizer(mut self, p: VectorizerParams) -> Self {
        self.vectorizer = p;
        self
    }

    /// Drift detection that triggers retraining; `None` turns it off.
    pub fn drift(mut self, p: Option<DriftParams>) -> Self {
        self.drift = p;
        self
    }

    /// Seed of the history samples (default 0).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.min_training_records < 2 {
            return Err(Error::invalid("min_training_records", "must be at least 2"));
        }
        if self.max_history < self.min_training_records {
            return Err(Error::invalid(
                "max_history",
                "must be at least min_training_records",
            ));
        }
        if self.retrain_every == 0 {
            return Err(Error::invalid("retrain_every", "must be at least 1"));
        }
        if !(self.retrain_growth.is_finite() && self.retrain_growth >= 0.0) {
            return Err(Error::invalid(
                "retrain_growth",
                "must be a finite number, 0 or more",
            ));
        }
        self.forest
            .clone()
            .contamination(self.sensitivity)
            .validate()
    }
}

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
    /// Scored by the key's current model.
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

    /// Whether the record was scored and found anomalous.
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
    /// Drift was detected.
    Drift(DriftReport),
    /// The key's sensitivity changed.
    Sensitivity,
    /// A caller asked for it.
    Requested,
}

/// A summary of a key's model.
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
    /// The threshold its scores are compared with.
    pub threshold: f64,
    /// Why it was trained.
    pub reason: TrainReason,
}

/// Counters of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyStats {
    /// Records in the history sample.
    pub history: usize,
    /// Records seen since the engine started or the history was loaded.
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

struct KeyState {
    model: ArcSwapOption<RecordModel>,
    reason: Mutex<Option<TrainReason>>,
    history: Mutex<Reservoir>,
    since_train: AtomicU64,
    training: AtomicBool,
    /// When the last training started, in this process.
    last_trained: Mutex<Option<std::time::Instant>>,
    sensitivity: Mutex<Contamination>,
    drift: Mutex<Option<DriftDetector>>,
    pending_drift: Mutex<Option<DriftReport>>,
    scored: AtomicU64,
    anomalies: AtomicU64,
    trainings: AtomicU64,
    persistence_failures: AtomicU64,
}

/// Per-key models over JSON records; see the [module documentation](self).
pub struct Engine {
    params: Arc<EngineParams>,
    keys: RwLock<HashMap<String, Arc<KeyState>>>,
    /// Serialise restores of one key (by a hash of it) without holding `keys` while the store is read: a slow
    /// store must not stall every other key, nor callers that only look keys up.
    restoring: [Mutex<()>; RESTORE_STRIPES],
    persistence: Arc<dyn Persistence>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("params", &self.params)
            .field("keys", &self.keys().len())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Each thread's vector and notes for scoring, so a score does not allocate.
    static SCRATCH: std::cell::RefCell<(Vec<f64>, RecordNotes)> = std::cell::RefCell::new(Default::default());
}

/// Restore gates (a key's restores are serialised by a hash of it).
const RESTORE_STRIPES: usize = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way that matters more than
    // losing the engine, so recover the guard.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    /// An engine that keeps everything in memory.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for bad parameters.
    pub fn in_memory(params: EngineParams) -> Result<Engine> {
        let persistence = Arc::new(InMemoryPersistence::new(params.max_history));
        Engine::new(params, persistence)
    }

    /// An engine over the given persistence. Keys found there are restored on first use.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for bad parameters.
    pub fn new(params: EngineParams, persistence: Arc<dyn Persistence>) -> Result<Engine> {
        params.validate()?;
        Ok(Engine {
            params: Arc::new(params),
            keys: RwLock::new(HashMap::new()),
            restoring: std::array::from_fn(|_| Mutex::new(())),
            persistence,
        })
    }

    /// The parameters.
    pub fn params(&self) -> &EngineParams {
        &self.params
    }

    /// Keys the engine holds in memory.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        k.sort();
        k
    }

    fn held(&self, key: &str) -> Option<Arc<KeyState>> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The restore gate of `key`.
    fn restoring(&self, key: &str) -> MutexGuard<'_, ()> {
        lock(&self.restoring[murmur3_32(key.as_bytes(), 1) as usize % RESTORE_STRIPES])
    }

    fn state(&self, key: &str) -> Arc<KeyState> {
        if let Some(s) = self.held(key) {
            return s;
        }
        let _gate = self.restoring(key);
        if let Some(s) = self.held(key) {
            return s;
        }
        let state = Arc::new(self.restore(key).0);
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), Arc::clone(&state));
        state
    }

    /// Whether the engine holds the key in memory (it has been used or loaded in this process).
    pub fn holds(&self, key: &str) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(key)
    }

    /// Loads a key from persistence (its history and latest model) unless the engine holds it already; returns
    /// whether it was loaded now. Unlike the restore on a key's first use, which starts the key empty when the
    /// store cannot be read, a key whose stored history or model cannot be read is not kept: the error is returned
    /// and the next call tries again. (A stored model that can be read but not restored is not an error: the key
    /// is kept and retrains.)
    ///
    /// # Errors
    /// [`Error::Persistence`] when the stored history or model cannot be read.
    pub fn load(&self, key: &str) -> Result<bool> {
        if self.holds(key) {
            return Ok(false);
        }
        let _gate = self.restoring(key);
        if self.holds(key) {
            return Ok(false);
        }
        match self.restore(key) {
            (_, Some(unreadable)) => Err(unreadable),
            (state, None) => {
                self.keys
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(key.to_string(), Arc::new(state));
                Ok(true)
            }
        }
    }

    /// Builds a key's state from persistence (history and latest model), or empty; with the first error reading
    /// the store, if any.
    fn restore(&self, key: &str) -> (KeyState, Option<Error>) {
        let seed = self.params.seed ^ (murmur3_32(key.as_bytes(), 0) as u32 as u64);
        let mut history = Reservoir::new(self.params.max_history, seed);
        let mut failures = 0;
        let mut unreadable = None;
        match self.persistence.load_history(key, self.params.max_history) {
            Ok(records) => records.into_iter().for_each(|r| history.push(r)),
            Err(e) => {
                failures += 1;
                tracing::warn!(key, error = %e, "could not load history; starting empty");
                unreadable = Some(e);
            }
        }
        let model = match self.persistence.load_model(key, None) {
            Ok(Some(stored)) => match model::restore(&stored.snapshot) {
                Ok(m) => Some(Arc::new(m.with_version(stored.meta.version))),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(key, error = %e, "could not restore the latest model; it will be retrained");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                failures += 1;
                tracing::warn!(key, error = %e, "could not load the latest model");
                unreadable.get_or_insert(e);
                None
            }
        };
        let state = KeyState {
            model: ArcSwapOption::new(model.clone()),
            reason: Mutex::new(model.as_ref().map(|_| TrainReason::Requested)),
            history: Mutex::new(history),
            since_train: AtomicU64::new(0),
            training: AtomicBool::new(false),
            last_trained: Mutex::new(None),
            sensitivity: Mutex::new(self.params.sensitivity),
            drift: Mutex::new(None),
            pending_drift: Mutex::new(None),
            scored: AtomicU64::new(0),
            anomalies: AtomicU64::new(0),
            trainings: AtomicU64::new(0),
            persistence_failures: AtomicU64::new(failures),
        };
        if let Some(m) = &model {
            *lock(&state.drift) = drift_detector(&self.params, m, lock(&state.history).records());
        }
        (state, unreadable)
    }

    /// Scores `record` with the key's model (if there is one), adds it to the history, and trains or retrains when
    /// due. Training runs in the calling thread, outside every lock; other threads keep scoring with the previous
    /// model meanwhile.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits (it is not learnt);
    /// training errors. Persistence failures are logged and counted, not returned: the engine carries on in memory.
    pub fn observe(&self, key: &str, record: &Value) -> Result<Outcome> {
        let state = self.state(key);
        let outcome = self.observe_state(key, &state, record)?;
        self.persist_history(key, &state, std::slice::from_ref(record));
        Ok(outcome)
    }

    /// [`observe`](Self::observe) for each record in order, with their history persisted in one call
    /// ([`Persistence::append_history_many`]) rather than one per record.
    ///
    /// # Errors
    /// As [`observe`](Self::observe); records before the failing one have been observed and persisted.
    pub fn observe_many(&self, key: &str, records: &[Value]) -> Result<Vec<Outcome>> {
        let state = self.state(key);
        let mut outcomes = Vec::with_capacity(records.len());
        let mut result = Ok(());
        for record in records {
            match self.observe_state(key, &state, record) {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.persist_history(key, &state, &records[..outcomes.len()]);
        result.map(|()| outcomes)
    }

    fn persist_history(&self, key: &str, state: &KeyState, records: &[Value]) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.persistence.append_history_many(key, records) {
            state
                .persistence_failures
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            tracing::warn!(key, error = %e, records = records.len(), "could not persist history records");
        }
    }

    /// Scores and learns one record (everything [`observe`](Self::observe) does but persisting it).
    fn observe_state(&self, key: &str, state: &Arc<KeyState>, record: &Value) -> Result<Outcome> {
        let outcome = self.score_state(state, record, true)?;
        let len = {
            let mut h = lock(&state.history);
            h.push(record.clone());
            h.len()
        };
        let since = state.since_train.fetch_add(1, Ordering::AcqRel) + 1;
        let outcome = match outcome {
            Outcome::Learning { needed, .. } => Outcome::Learning { seen: len, needed },
            scored => scored,
        };
        let reason = match &*state.model.load() {
            None => (len >= self.params.min_training_records).then_some(TrainReason::FirstModel),
            Some(_) if !self.rested(state) => None,
            Some(model) => {
                if let Some(report) = lock(&state.pending_drift).take() {
                    Some(TrainReason::Drift(report))
                } else {
                    (since >= self.retrain_due(model)).then_some(TrainReason::NewRecords)
                }
            }
        };
        if let Some(reason) = reason {
            self.train_state(key, state, reason)?;
        }
        Ok(outcome)
    }

    /// Whether `min_retrain_interval` has passed since the key's last training started.
    fn rested(&self, state: &KeyState) -> bool {
        let interval = self.params.min_retrain_interval;
        interval.is_zero() || lock(&state.last_trained).is_none_or(|t| t.elapsed() >= interval)
    }

    /// New records after which a key with `model` retrains: `retrain_every`, or more with `retrain_growth`.
    fn retrain_due(&self, model: &RecordModel) -> u64 {
        let grown = (self.params.retrain_growth * model.trained_on() as f64).ceil();
        (self.params.retrain_every as u64).max(grown as u64)
    }

    /// Scores `record` without learning it.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits.
    pub fn score(&self, key: &str, record: &Value) -> Result<Outcome> {
        let state = self.state(key);
        self.score_state(&state, record, false)
    }

    fn score_state(&self, state: &KeyState, record: &Value, track: bool) -> Result<Outcome> {
        let Some(model) = state.model.load_full() else {
            // Validate the record even while learning, so bad input never enters the history.
            flatten(record, &self.vectorizer_limits())?;
            return Ok(Outcome::Learning {
                seen: lock(&state.history).len(),
                needed: self.params.min_training_records,
            });
        };
        SCRATCH.with_borrow_mut(|(buf, notes)| {
            self.score_model(state, &model, record, track, buf, notes)
        })
    }

    fn score_model(
        &self,
        state: &KeyState,
        model: &RecordModel,
        record: &Value,
        track: bool,
        buf: &mut Vec<f64>,
        notes: &mut RecordNotes,
    ) -> Result<Outcome> {
        let verdict = model.score_with(record, buf, notes)?;
        if track {
            state.scored.fetch_add(1, Ordering::Relaxed);
            if verdict.is_anomaly {
                state.anomalies.fetch_add(1, Ordering::Relaxed);
            }
            let mut drift = lock(&state.drift);
            if let Some(d) = drift.as_mut()
                && let Some(report) = d.observe(buf, verdict.score)?
                && report.drifted
            {
                tracing::info!(max_psi = report.max_psi, "drift detected; retraining");
                *lock(&state.pending_drift) = Some(report);
            }
        }
        Ok(Outcome::Scored(verdict))
    }

    fn vectorizer_limits(&self) -> Limits {
        Limits::default()
    }

    /// Scores and explains `record` in field names with the key's model; `None` while the key is learning.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    pub fn explain(&self, key: &str, record: &Value) -> Result<Option<RecordExplanation>> {
        let state = self.state(key);
        match state.model.load_full() {
            Some(m) => Ok(Some(m.explain(record)?)),
            None => {
                flatten(record, &self.vectorizer_limits())?;
                Ok(None)
            }
        }
    }

    /// Trains the key now, whatever the counters say; returns the new version.
    ///
    /// # Errors
    /// [`Error::NotEnoughSamples`] with fewer than two records; training errors.
    pub fn train(&self, key: &str) -> Result<u64> {
        let state = self.state(key);
        self.train_state(key, &state, TrainReason::Requested)?;
        state
            .model
            .load()
            .as_ref()
            .map(|m| m.version())
            .ok_or(Error::NotEnoughSamples {
                needed: 2,
                got: lock(&state.history).len(),
            })
    }

    /// Trains a key unless a training of it is already running: in the caller, or on the rayon pool for an
    /// automatic retrain with `train_in_background`.
    fn train_state(&self, key: &str, state: &Arc<KeyState>, reason: TrainReason) -> Result<()> {
        if state.training.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        *lock(&state.last_trained) = Some(std::time::Instant::now());
        let automatic = matches!(reason, TrainReason::NewRecords | TrainReason::Drift(_));
        if self.params.train_in_background && automatic && state.model.load().is_some() {
            let (params, persistence) = (Arc::clone(&self.params), Arc::clone(&self.persistence));
            let (state, key) = (Arc::clone(state), key.to_string());
            rayon::spawn(move || {
                if let Err(e) = train_now(&params, persistence.as_ref(), &key, &state, reason) {
                    tracing::warn!(key, error = %e, "background retraining failed; the current model stays");
                }
                state.training.store(false, Ordering::Release);
            });
            return Ok(());
        }
        let result = train_now(&self.params, self.persistence.as_ref(), key, state, reason);
        state.training.store(false, Ordering::Release);
        result
    }

    /// Sets how many anomalies to expect for a key (its contamination) and retrains it if it has a model.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a contamination outside `(0, 0.5]`; training errors.
    pub fn set_sensitivity(&self, key: &str, contamination: Contamination) -> Result<()> {
        self.params
            .forest
            .clone()
            .contamination(contamination)
            .validate()?;
        let state = self.state(key);
        *lock(&state.sensitivity) = contamination;
        if state.model.load().is_some() {
            self.train_state(key, &state, TrainReason::Sensitivity)?;
        }
        Ok(())
    }

    /// The key's current model, if any.
    pub fn model(&self, key: &str) -> Option<Arc<RecordModel>> {
        self.state(key).model.load_full()
    }

    /// A summary of the key's current model, if any.
    pub fn model_info(&self, key: &str) -> Option<ModelInfo> {
        let state = self.state(key);
        let m = state.model.load_full()?;
        Some(ModelInfo {
            version: m.version(),
            trained_on: m.trained_on(),
            trained_at: m.trained_at(),
            features: m.vectorizer().feature_names(),
            threshold: m.forest().threshold(),
            reason: lock(&state.reason)
                .clone()
                .unwrap_or(TrainReason::Requested),
        })
    }

    /// The key's counters.
    pub fn stats(&self, key: &str) -> KeyStats {
        let s = self.state(key);
        let h = lock(&s.history);
        KeyStats {
            history: h.len(),
            seen: h.seen(),
            scored: s.scored.load(Ordering::Relaxed),
            anomalies: s.anomalies.load(Ordering::Relaxed),
            trainings: s.trainings.load(Ordering::Relaxed),
            persistence_failures: s.persistence_failures.load(Ordering::Relaxed),
        }
    }

    /// A copy of the key's history sample.
    pub fn history(&self, key: &str) -> Vec<Value> {
        lock(&self.state(key).history).records().to_vec()
    }

    /// Forgets a key's history (persistence, then memory) and its current model; stored model versions stay.
    ///
    /// # Errors
    /// [`Error::Persistence`] if the stored history cannot be removed; the key is then left as it was.
    pub fn clear(&self, key: &str) -> Result<usize> {
        let state = self.state(key);
        let removed = self.persistence.clear_history(key)?;
        lock(&state.history).clear();
        state.model.store(None);
        state.since_train.store(0, Ordering::Release);
        *lock(&state.drift) = None;
        Ok(removed)
    }

    /// The persistence the engine writes to.
    pub fn persistence(&self) -> &Arc<dyn Persistence> {
        &self.persistence
    }
}

fn train_now(
    params: &EngineParams,
    persistence: &dyn Persistence,
    key: &str,
    state: &KeyState,
    reason: TrainReason,
) -> Result<()> {
    // Records that arrive while this training runs are not in it: they count toward the next one.
    let consumed = state.since_train.load(Ordering::Acquire);
    let records: Vec<Value> = lock(&state.history).records().to_vec();
    if records.len() < 2 {
        return Ok(());
    }
    let contamination = *lock(&state.sensitivity);
    let forest = params.forest.clone().contamination(contamination);
    let previous = state.model.load().as_ref().map_or(0, |m| m.version());
    let model = match RecordModel::fit(&records, &params.vectorizer, &forest, previous + 1) {
        Ok(m) => m,
        // Records without a single field (`{}`) give nothing to learn: the key keeps learning.
        Err(Error::EmptyInput { .. }) => {
            tracing::warn!(
                key,
                records = records.len(),
                "the records have no fields yet; nothing to train on"
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let meta = ModelMeta {
        version: previous + 1,
        kind: "record_model".into(),
        records_trained_on: records.len(),
        features: model.vectorizer().feature_names(),
        trained_at: model.trained_at(),
        metrics: serde_json::json!({
            "threshold": model.forest().threshold(),
            "reason": &reason,
        }),
    };
    let version = match persistence.save_model(key, &meta, &model.to_snapshot_bytes()) {
        Ok(v) => v,
        Err(e) => {
            state.persistence_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(key, error = %e, "could not persist the model; keeping it in memory");
            previous + 1
        }
    };
    let model = Arc::new(model.with_version(version));
    *lock(&state.drift) = drift_detector(params, &model, &records);
    lock(&state.pending_drift).take();
    *lock(&state.reason) = Some(reason);
    state.model.store(Some(model));
    // Saturating: a `clear` during the training may have reset the counter already.
    let _ = state
        .since_train
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(consumed))
        });
    state.trainings.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(key, version, records = records.len(), "trained");
    Ok(())
}

/// A drift detector whose reference is the model's training data and scores.
///
/// Only when the training data holds at least two drift windows: PSI against a small reference is mostly noise
/// (its expected value under no drift is about `(bins − 1)(1/n_reference + 1/n_window)` per feature), so a model
/// trained on fewer records is watched from its next retrain on.
fn drift_detector(
    params: &EngineParams,
    model: &RecordModel,
    records: &[Value],
) -> Option<DriftDetector> {
    let params = params.drift.clone()?;
    if records.len() < 2 * params.get_window() {
        tracing::debug!(
            records = records.len(),
            "too few training records to watch for drift yet"
        );
        return None;
    }
    let build = || -> Result<DriftDetector> {
        let x = model.vectorizer().transform_many(records)?;
        let scores = model.forest().score(x.view())?;
        DriftDetector::new(
            params,
            x.view(),
            scores.as_slice().unwrap_or(&[]),
            Some(model.vectorizer().feature_names()),
        )
    };
    match build() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "drift detection is off for this model");
            None
        }
    }
}
