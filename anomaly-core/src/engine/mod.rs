//! The record engine: it owns everything that happens to a key (a query's dataset, a data source, a series, a
//! tenant) over its whole life.
//!
//! ```text
//!   first use of a key through any call (observe, score, explain, model_info, statistics, history, clear, …)
//!     │  restore: history and latest model from the Persistence (an unreadable store is an error, never a
//!     │  fresh start); baseline statistics rebuilt from the history; roles and sensitivity from the model
//!     ▼
//!   held in memory ──────────────── least recently used and idle beyond max_keys_in_memory ──► evicted
//!     │                                                                    (restored on its next use)
//!     │  observe: record ─ vector ─┬─ isolation forest: score > threshold ─┐
//!     │                            └─ range rule over the baseline ────────┴─► verdict (flagged_by) + explanation
//!     │           ├─ history (uniform sample, max_history) ──► Persistence (WriteBehind: buffered, outage-proof)
//!     │           │    (with learn_flagged off, flagged records are held apart, learnt only by a drift retrain)
//!     │           └─ baseline (records neither detector flagged)
//!     │  train: first model at min_training_records; retrain on new records (retrain_every, retrain_growth,
//!     │         at most every min_retrain_interval), at once when stale (history ≥ stale_growth × trained_on),
//!     │         on drift, on a new sensitivity or pinned roles; on the rayon pool when train_in_background
//!     ▼         each training: field roles inferred (or pinned) → vectoriser + forest → a new stored version
//!   clear: history forgotten (stored versions stay)
//! ```
//!
//! For each key the engine keeps a bounded uniform sample of the history ([`EngineParams::max_history`],
//! reservoir sampling), reports [`Outcome::Learning`] until [`EngineParams::min_training_records`] records are in,
//! then trains a [`RecordModel`] and scores every record with it and with the range rule ([`RangeViolation`]);
//! each training makes a new model version. [`Engine::observe_batch`] is the whole of one call of a service: the
//! verdicts, the explanations of what was flagged, the batch's statistics against the key's baseline, and the
//! model's summary with the role of every field ([`ModelInfo`]).
//!
//! Concurrency: scoring reads the current model (with the range rule built for it) through an atomic pointer
//! (`arc-swap`), so readers never wait, not even while a retrain runs; the new model is swapped in whole when it is
//! ready. One training runs per key at a time, outside every lock; one asked for meanwhile (a new sensitivity,
//! pinned roles, a request) follows it. Many threads may score the same or different keys at once. Restores are
//! serialised by a gate per hash of the key (16 gates), without holding the key map: a slow store delays only the
//! restores that share a gate, never calls on held keys.

mod availability;
mod baseline;
mod key;
mod model;
mod outcome;
mod params;
mod persistence;
mod range_rule;
mod reservoir;
mod write_behind;

pub use availability::Availability;
pub use model::{Detector, FlaggedBy, RecordExplanation, RecordModel, RecordVerdict};
pub use outcome::{
    BatchReport, EngineTotals, FieldInfo, KeyStats, ModelInfo, Outcome, TrainReason,
};
pub use params::EngineParams;
pub use persistence::{
    IN_MEMORY_MODEL_VERSIONS, InMemoryPersistence, ModelMetadata, ModelVersion, Persistence,
    SavedModel,
};
pub use range_rule::RangeViolation;
pub use write_behind::{WriteBehind, WriteBehindStats};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::forest::Contamination;
use crate::records::columns::RecordColumns;
use crate::records::flatten::flatten;
use crate::records::role::FieldRoles;
use crate::records::vectorizer::{RecordNotes, at_record};
use crate::stats::{CompareThresholds, DatasetStats};
use key::{KeyState, Place, Trainer, lock, run_training};

/// Roles pinned per key, decided by the application from the key (see [`Engine::with_field_roles`]).
pub type RolePolicy = Arc<dyn Fn(&str) -> FieldRoles + Send + Sync>;

/// Per-key models over JSON records; see the [module documentation](self).
pub struct Engine {
    trainer: Arc<Trainer>,
    keys: RwLock<HashMap<String, Arc<KeyState>>>,
    /// One gate per key being restored: restores of one key are serialised without holding `keys` while the
    /// store is read (a slow store must not stall every other key, nor callers that only look keys up), and a
    /// restore of another key never waits on it. Per key rather than per hash stripe: a restore runs rayon work
    /// (the drift reference is scored), and a rayon thread waiting on it may pick up a job restoring another key;
    /// had that key shared its stripe, the thread would wait on a lock it holds itself. Entries live while a
    /// restore of their key is under way.
    restoring: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    roles: Option<RolePolicy>,
    clock: AtomicU64,
    restored: AtomicU64,
    evicted: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("params", &self.trainer.params)
            .field("totals", &self.totals())
            .finish_non_exhaustive()
    }
}

thread_local! {
    /// Each thread's vector and notes for scoring, so a score does not allocate.
    static SCRATCH: std::cell::RefCell<(Vec<f64>, RecordNotes)> = std::cell::RefCell::new(Default::default());
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

    /// An engine over the given persistence. Keys found there are restored on first use. Put a database behind a
    /// [`WriteBehind`] so that history appends and outages stay off the callers' path.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for bad parameters.
    pub fn new(params: EngineParams, persistence: Arc<dyn Persistence>) -> Result<Engine> {
        params.validate()?;
        Ok(Engine {
            trainer: Arc::new(Trainer {
                params: Arc::new(params),
                persistence,
                trainings: AtomicU64::new(0),
            }),
            keys: RwLock::new(HashMap::new()),
            restoring: Mutex::default(),
            roles: None,
            clock: AtomicU64::new(0),
            restored: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        })
    }

    /// Pins field roles per key: `policy` is asked for a key's roles each time the key is restored (its first use,
    /// or its first use after eviction), and they apply over the engine's own pins (in
    /// [`EngineParams::vectorizer`]). Without a policy a restored key keeps the roles pinned when its model was
    /// trained. [`Engine::set_field_roles`] changes a key's roles while it is held.
    ///
    /// ```
    /// use anomaly_core::engine::{Engine, EngineParams};
    /// use anomaly_core::records::role::parse_field_roles;
    ///
    /// let pins = parse_field_roles("id=identifier, note=ignore")?;
    /// let engine = Engine::in_memory(EngineParams::new())?
    ///     .with_field_roles(move |key| if key.starts_with("orders") { pins.clone() } else { Default::default() });
    /// # Ok::<(), anomaly_core::Error>(())
    /// ```
    pub fn with_field_roles(
        mut self,
        policy: impl Fn(&str) -> FieldRoles + Send + Sync + 'static,
    ) -> Self {
        self.roles = Some(Arc::new(policy));
        self
    }

    /// The parameters.
    pub fn params(&self) -> &EngineParams {
        &self.trainer.params
    }

    /// The persistence the engine reads and writes.
    pub fn persistence(&self) -> &Arc<dyn Persistence> {
        &self.trainer.persistence
    }

    fn read_keys(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<KeyState>>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_keys(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<KeyState>>> {
        self.keys.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Keys the engine holds in memory, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut k: Vec<String> = self.read_keys().keys().cloned().collect();
        k.sort();
        k
    }

    /// Every key known: held in memory, and in the persistence (with a [`WriteBehind`], its pending keys too); only
    /// the held ones when the persistence cannot be read. Sorted.
    pub fn known_keys(&self) -> Vec<String> {
        let mut keys = self.keys();
        match self.trainer.persistence.keys() {
            Ok(stored) => keys.extend(stored),
            Err(e) => tracing::debug!(error = %e, "stored keys unknown; the held ones only"),
        }
        keys.sort();
        keys.dedup();
        keys
    }

    /// Whether the engine holds the key in memory (it was used in this process and not evicted since).
    pub fn holds(&self, key: &str) -> bool {
        self.read_keys().contains_key(key)
    }

    /// Keys held, restored and evicted, and trainings, so far.
    pub fn totals(&self) -> EngineTotals {
        EngineTotals {
            keys_in_memory: self.read_keys().len(),
            restored: self.restored.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
            trainings: self.trainer.trainings.load(Ordering::Relaxed),
        }
    }

    fn held(&self, key: &str) -> Option<Arc<KeyState>> {
        let s = self.read_keys().get(key).cloned()?;
        s.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(s)
    }

    /// The restore gate of `key`, made when no restore of it is under way.
    fn restore_gate(&self, key: &str) -> Arc<Mutex<()>> {
        Arc::clone(lock(&self.restoring).entry(key.to_string()).or_default())
    }

    /// Forgets `key`'s gate once no other caller holds or waits on it.
    fn release_gate(&self, key: &str, gate: Arc<Mutex<()>>) {
        let mut gates = lock(&self.restoring);
        // The map's reference and this one: nobody else.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(key);
        }
    }

    /// The key's state: held, or restored from the persistence now. Every entry point comes through here.
    fn state(&self, key: &str) -> Result<Arc<KeyState>> {
        Ok(self.state_restored(key)?.0)
    }

    /// [`state`](Self::state), and whether it was restored now.
    fn state_restored(&self, key: &str) -> Result<(Arc<KeyState>, bool)> {
        if let Some(s) = self.held(key) {
            return Ok((s, false));
        }
        let gate = self.restore_gate(key);
        let restored = {
            let _restoring = lock(&gate);
            self.restore_now(key)
        };
        self.release_gate(key, gate);
        restored
    }

    /// Restores `key` (under its gate) unless another caller did while this one waited.
    fn restore_now(&self, key: &str) -> Result<(Arc<KeyState>, bool)> {
        if let Some(s) = self.held(key) {
            return Ok((s, false));
        }
        let pins = self.roles.as_ref().map(|policy| policy(key));
        let state = Arc::new(KeyState::restore(
            &self.trainer.params,
            self.trainer.persistence.as_ref(),
            key,
            pins,
        )?);
        state.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut keys = self.write_keys();
        keys.insert(key.to_string(), Arc::clone(&state));
        if keys.len() > self.trainer.params.max_keys_in_memory {
            self.evict(&mut keys);
        }
        drop(keys);
        self.restored.fetch_add(1, Ordering::Relaxed);
        Ok((state, true))
    }

    /// Evicts the least recently used keys that nothing is using, down to `max_keys_in_memory` less a sixty-fourth
    /// (so the scan is paid once per many insertions). Their history and models are in the persistence.
    fn evict(&self, keys: &mut HashMap<String, Arc<KeyState>>) {
        let cap = self.trainer.params.max_keys_in_memory;
        let target = keys.len() - cap + cap / 64;
        // Idle: no call holds it, no training runs, and its model is in the persistence.
        let mut idle: Vec<(u64, &String)> = keys
            .iter()
            .filter(|(_, s)| {
                Arc::strong_count(s) == 1
                    && !s.training.load(Ordering::Acquire)
                    && !s.unsaved.load(Ordering::Acquire)
            })
            .map(|(k, s)| (s.last_used.load(Ordering::Relaxed), k))
            .collect();
        let n = target.min(idle.len());
        if n == 0 {
            return;
        }
        idle.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        let gone: Vec<String> = idle[..n].iter().map(|(_, k)| (*k).clone()).collect();
        for k in &gone {
            keys.remove(k);
        }
        self.evicted.fetch_add(n as u64, Ordering::Relaxed);
        tracing::debug!(evicted = n, held = keys.len(), "idle keys evicted");
    }

    /// Restores a key from the persistence unless the engine holds it already; returns whether it was restored
    /// now. (Every other call restores a key on its first use too; this is for loading ahead of use.)
    ///
    /// # Errors
    /// [`Error::Persistence`] when the stored history or model cannot be read; the key is not held then, and the
    /// next call tries again.
    pub fn load(&self, key: &str) -> Result<bool> {
        Ok(self.state_restored(key)?.1)
    }

    /// Scores `record` with the key's model and the range rule (if there is a model), adds it to the history and the
    /// baseline, and trains or retrains when due. Training runs in the calling thread, outside every lock (or in
    /// the background, see [`EngineParams::train_in_background`]); other threads keep scoring with the previous
    /// model meanwhile.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits (it is not learnt);
    /// [`Error::Persistence`] when the key must be restored and the store cannot be read; training errors.
    /// Failures to write history or models are logged and counted, not returned: the engine carries on in memory.
    pub fn observe(&self, key: &str, record: &Value) -> Result<Outcome> {
        let state = self.state(key)?;
        let (outcome, learnt) = self.observe_record(key, &state, record)?;
        if learnt {
            self.persist_history(key, &state, std::slice::from_ref(record));
        }
        if !outcome.is_anomaly() {
            self.learn_baseline(&state, std::iter::once(record), false);
        }
        Ok(outcome)
    }

    /// [`observe`](Self::observe) for each record in order, with their history persisted in one call and the
    /// records neither detector flagged folded into the baseline as one batch.
    ///
    /// # Errors
    /// As [`observe`](Self::observe); records before the failing one have been observed and persisted.
    pub fn observe_many(&self, key: &str, records: &[Value]) -> Result<Vec<Outcome>> {
        let state = self.state(key)?;
        let (outcomes, result) = self.observe_records(key, &state, records);
        let normal = records
            .iter()
            .zip(&outcomes)
            .filter(|(_, o)| !o.is_anomaly())
            .map(|(r, _)| r);
        self.learn_baseline(&state, normal, true);
        result.map(|()| outcomes)
    }

    /// One batch of a key's records, as a service receives it: each record observed as
    /// [`observe`](Self::observe) does, the flagged ones explained, the batch's statistics compared with the key's
    /// baseline (before the batch), and the model's summary.
    ///
    /// # Errors
    /// As [`observe`](Self::observe); a record that fails stops the batch, and nothing of the batch is reported.
    pub fn observe_batch(&self, key: &str, records: &[Value]) -> Result<BatchReport> {
        let state = self.state(key)?;
        let failures_before = state.persistence_failures.load(Ordering::Relaxed);
        let (outcomes, result) = self.observe_records(key, &state, records);
        result?;
        // The batch's statistics, and those of its normal records (the baseline learns only these, so an anomaly
        // does not widen what counts as normal): one pass each over the normal and the flagged records.
        let v = &self.params().vectorizer;
        let summarise = |records: &[&Value]| {
            DatasetStats::from_records_capped(records, v.get_limits(), v.get_max_columns())
        };
        let (mut normal, mut flagged) = (Vec::with_capacity(records.len()), Vec::new());
        for (r, o) in records.iter().zip(&outcomes) {
            if o.is_anomaly() {
                flagged.push(r);
            } else {
                normal.push(r);
            }
        }
        let normal_stats = summarise(&normal)?;
        let statistics = if flagged.is_empty() {
            None
        } else {
            let mut all = normal_stats.clone();
            all.merge_same_batch(&summarise(&flagged)?);
            Some(all)
        };
        let mut explanations = BTreeMap::new();
        for (i, o) in outcomes.iter().enumerate() {
            if o.is_anomaly()
                && let Some(e) = self.explain_state(&state, &records[i])?
            {
                explanations.insert(i, e);
            }
        }
        let (comparison, folded) = {
            let mut baseline = lock(&state.baseline);
            let history = baseline.folded();
            let batch = statistics.as_ref().unwrap_or(&normal_stats);
            let comparison = (history.n_records() > 0)
                .then(|| history.compare(batch, &CompareThresholds::default()));
            let folded = !normal.is_empty() && baseline.add(&normal_stats);
            (comparison, folded)
        };
        if folded {
            state.refresh_rule(self.params());
        }
        Ok(BatchReport {
            outcomes,
            explanations,
            statistics: statistics.unwrap_or(normal_stats),
            comparison,
            model: state.model_info(),
            persistence_failures: state
                .persistence_failures
                .load(Ordering::Relaxed)
                .saturating_sub(failures_before),
        })
    }

    /// Observes `records` in order, persists those observed; the outcomes so far, and the first error.
    fn observe_records(
        &self,
        key: &str,
        state: &Arc<KeyState>,
        records: &[Value],
    ) -> (Vec<Outcome>, Result<()>) {
        let mut outcomes = Vec::with_capacity(records.len());
        // Records held apart (flagged, with `learn_flagged` off) are not persisted: their positions.
        let mut held = Vec::new();
        let mut result = Ok(());
        for (i, record) in records.iter().enumerate() {
            match self.observe_record(key, state, record) {
                Ok((o, learnt)) => {
                    outcomes.push(o);
                    if !learnt {
                        held.push(i);
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let observed = &records[..outcomes.len()];
        if held.is_empty() {
            self.persist_history(key, state, observed);
        } else {
            let learnt: Vec<Value> = observed
                .iter()
                .enumerate()
                .filter(|(i, _)| held.binary_search(i).is_err())
                .map(|(_, r)| r.clone())
                .collect();
            self.persist_history(key, state, &learnt);
        }
        (outcomes, result)
    }

    /// Adds normal records to the key's baseline; `batch` summarises them now as one batch, else they wait until
    /// enough do.
    fn learn_baseline<'a>(
        &self,
        state: &KeyState,
        records: impl IntoIterator<Item = &'a Value>,
        batch: bool,
    ) {
        let folded = {
            let mut b = lock(&state.baseline);
            let folded = b.learn(records);
            folded | (batch && b.summarise())
        };
        if folded {
            state.refresh_rule(self.params());
        }
    }

    fn persist_history(&self, key: &str, state: &KeyState, records: &[Value]) {
        if records.is_empty() {
            return;
        }
        if let Err(e) = self.trainer.persistence.append_history(key, records) {
            state
                .persistence_failures
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            tracing::warn!(key, error = %e, records = records.len(), "could not persist history records");
        }
    }

    /// Scores and learns one record (everything [`observe`](Self::observe) does but persisting it and the
    /// baseline); whether it joined the history (`false`: flagged and held apart, see
    /// [`EngineParams::learn_flagged`]).
    fn observe_record(
        &self,
        key: &str,
        state: &Arc<KeyState>,
        record: &Value,
    ) -> Result<(Outcome, bool)> {
        let outcome = self.score_state(state, record, true)?;
        let params = self.params();
        let limit = params.held_limit();
        if !params.learn_flagged && outcome.is_anomaly() {
            if limit > 0 {
                let mut held = lock(&state.held);
                if held.len() == limit {
                    held.pop_front();
                }
                held.push_back(record.clone());
            }
            let in_a_row = state.flagged_in_a_row.fetch_add(1, Ordering::AcqRel) + 1;
            // A lasting change is flagged record after record: drift found meanwhile retrains here, on the history
            // and the held records (this one included), or no record would ever be learnt again. Without a drift
            // detector yet (a young model), a whole drift window flagged in a row is taken for the same.
            if state.model().is_some() && self.rested(state) {
                let watched = lock(&state.drift).is_some();
                let reason = match lock(&state.pending_drift).take() {
                    Some(report) => Some(TrainReason::Drift(report)),
                    None if !watched && limit > 0 && in_a_row >= limit => {
                        Some(TrainReason::LastingChange)
                    }
                    None => None,
                };
                if let Some(reason) = reason {
                    self.learn_held(key, state);
                    if let Err(e) = self.train_state(key, state, reason) {
                        tracing::warn!(key, error = %e, "training failed; the current model stays");
                    }
                }
            }
            return Ok((outcome, false));
        }
        state.flagged_in_a_row.store(0, Ordering::Release);
        let len = {
            let mut h = lock(&state.history);
            h.push_with(|| record.clone());
            h.len()
        };
        let since = state.since_train.fetch_add(1, Ordering::AcqRel) + 1;
        let outcome = match outcome {
            Outcome::Learning { needed, .. } => Outcome::Learning { seen: len, needed },
            scored => scored,
        };
        let reason = match state.model() {
            None => (len >= params.min_training_records
                && len >= state.first_model_at.load(Ordering::Acquire))
            .then_some(TrainReason::FirstModel),
            Some(model) => {
                let stale = params.stale_growth > 0.0
                    && len as f64 >= params.stale_growth * model.trained_on() as f64;
                if stale {
                    Some(TrainReason::Stale)
                } else if !self.rested(state) {
                    None
                } else if let Some(report) = lock(&state.pending_drift).take() {
                    self.learn_held(key, state);
                    Some(TrainReason::Drift(report))
                } else {
                    (since >= self.retrain_due(&model)).then_some(TrainReason::NewRecords)
                }
            }
        };
        // The record is learnt whatever the training says: a failed training is logged, and the model stays.
        if let Some(reason) = reason
            && let Err(e) = self.train_state(key, state, reason)
        {
            tracing::warn!(key, error = %e, "training failed; the current model stays");
        }
        Ok((outcome, true))
    }

    /// Adds the records held apart to the history and the baseline and persists them, before a drift retrain.
    fn learn_held(&self, key: &str, state: &KeyState) {
        let held: Vec<Value> = lock(&state.held).drain(..).collect();
        state.flagged_in_a_row.store(0, Ordering::Release);
        if held.is_empty() {
            return;
        }
        tracing::info!(
            key,
            records = held.len(),
            "drift: learning the flagged records held apart"
        );
        {
            let mut h = lock(&state.history);
            for r in &held {
                h.push_with(|| r.clone());
            }
        }
        self.persist_history(key, state, &held);
        // They are normal from now on: the range rule's limits take them in too.
        self.learn_baseline(state, &held, true);
    }

    /// Whether `min_retrain_interval` has passed since the key's last training started.
    fn rested(&self, state: &KeyState) -> bool {
        let interval = self.params().min_retrain_interval;
        interval.is_zero() || lock(&state.last_trained).is_none_or(|t| t.elapsed() >= interval)
    }

    /// New records after which a key with `model` retrains: `retrain_every`, or more with `retrain_growth`.
    fn retrain_due(&self, model: &RecordModel) -> u64 {
        let params = self.params();
        let grown = (params.retrain_growth * model.trained_on() as f64).ceil();
        (params.retrain_every as u64).max(grown as u64)
    }

    /// Scores `record` with the key's model and the range rule, without learning it.
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits; [`Error::Persistence`]
    /// when the key must be restored and the store cannot be read.
    pub fn score(&self, key: &str, record: &Value) -> Result<Outcome> {
        let state = self.state(key)?;
        self.score_state(&state, record, false)
    }

    /// Scores `records` as [`score`](Self::score) does one by one (the same outcomes, bit for bit), without
    /// learning from them or counting them, several times faster per record: chunk by chunk, each chunk's vectors
    /// built and scored in a block by one of the forest's threads. While the key is learning, every record is
    /// checked and each outcome is [`Outcome::Learning`].
    ///
    /// # Errors
    /// As [`score`](Self::score), naming the first record that fails; nothing is scored then.
    pub fn score_many(&self, key: &str, records: &[Value]) -> Result<Vec<Outcome>> {
        let state = self.state(key)?;
        let Some(current) = state.current.load_full() else {
            let limits = self.params().vectorizer.get_limits();
            for (i, record) in records.iter().enumerate() {
                flatten(record, limits).map_err(|e| at_record(i, e))?;
            }
            let seen = lock(&state.history).len();
            let needed = self.params().min_training_records;
            return Ok(records
                .iter()
                .map(|_| Outcome::Learning { seen, needed })
                .collect());
        };
        let verdicts = current
            .model
            .score_many_with(records, |x| current.rule.fires(x), None)?;
        Ok(verdicts.into_iter().map(Outcome::Scored).collect())
    }

    /// Scores records held as columns (a data frame's), as [`score_many`](Self::score_many) scores their
    /// [`RecordColumns::record`]s (the same outcomes, bit for bit), without building a JSON object per record.
    ///
    /// # Errors
    /// As [`score_many`](Self::score_many); [`Error::InvalidRecord`] for more columns than a record may have
    /// fields.
    pub fn score_columns(&self, key: &str, columns: &RecordColumns<'_>) -> Result<Vec<Outcome>> {
        let state = self.state(key)?;
        let Some(current) = state.current.load_full() else {
            let limits = self.params().vectorizer.get_limits();
            columns.check(limits)?;
            for &(i, record) in columns.replaced_rows() {
                flatten(record, limits).map_err(|e| at_record(i, e))?;
            }
            let seen = lock(&state.history).len();
            let needed = self.params().min_training_records;
            return Ok(vec![Outcome::Learning { seen, needed }; columns.rows()]);
        };
        let verdicts =
            current
                .model
                .score_columns_with(columns, |x| current.rule.fires(x), None)?;
        Ok(verdicts.into_iter().map(Outcome::Scored).collect())
    }

    fn score_state(&self, state: &KeyState, record: &Value, track: bool) -> Result<Outcome> {
        let Some(current) = state.current.load_full() else {
            // Validate the record even while learning, so bad input never enters the history.
            flatten(record, self.params().vectorizer.get_limits())?;
            return Ok(Outcome::Learning {
                seen: lock(&state.history).len(),
                needed: self.params().min_training_records,
            });
        };
        SCRATCH.with_borrow_mut(|(buf, notes)| {
            let verdict = current.model.score_with(record, buf, notes)?;
            let verdict = verdict.with_range_rule(current.rule.fires(buf));
            if track {
                state.scored.fetch_add(1, Ordering::Relaxed);
                if verdict.is_anomaly {
                    state.anomalies.fetch_add(1, Ordering::Relaxed);
                }
                let mut drift = lock(&state.drift);
                // A detector of another model (swapped in meanwhile) does not fit this vector: skip it.
                if let Some(d) = drift.as_mut()
                    && let Ok(Some(report)) = d.observe(buf, verdict.score)
                    && report.drifted
                {
                    tracing::info!(max_psi = report.max_psi, "drift detected; retraining");
                    *lock(&state.pending_drift) = Some(report);
                }
            }
            Ok(Outcome::Scored(verdict))
        })
    }

    /// Scores and explains `record` in field names, with the range rule's reasons; `None` while the key is
    /// learning.
    ///
    /// # Errors
    /// As [`score`](Self::score).
    pub fn explain(&self, key: &str, record: &Value) -> Result<Option<RecordExplanation>> {
        let state = self.state(key)?;
        self.explain_state(&state, record)
    }

    fn explain_state(&self, state: &KeyState, record: &Value) -> Result<Option<RecordExplanation>> {
        let Some(current) = state.current.load_full() else {
            flatten(record, self.params().vectorizer.get_limits())?;
            return Ok(None);
        };
        let m = &current.model;
        let (x, notes) = m.vectorizer().transform(record)?;
        let violations = current.rule.violations(m, &x);
        Ok(Some(
            m.explain_vector(record, &x, notes)?
                .with_range_violations(violations),
        ))
    }

    /// Trains the key now, whatever the counters say; returns the new version.
    ///
    /// # Errors
    /// [`Error::NotEnoughSamples`] with fewer than two records; training errors; [`Error::Persistence`] when the
    /// key must be restored and the store cannot be read.
    pub fn train(&self, key: &str) -> Result<u64> {
        let state = self.state(key)?;
        self.train_state(key, &state, TrainReason::Requested)?;
        state
            .model()
            .map(|m| m.version())
            .ok_or(Error::NotEnoughSamples {
                needed: 2,
                got: lock(&state.history).len(),
            })
    }

    /// Trains a key: in the caller, or on the rayon pool for an automatic retrain with `train_in_background`. While
    /// a training of the key runs, the reason is kept and another training follows it (with the settings of then).
    fn train_state(&self, key: &str, state: &Arc<KeyState>, reason: TrainReason) -> Result<()> {
        if state.training.swap(true, Ordering::AcqRel) {
            // An automatic retrain due while one runs is covered by it; a change of settings or a request is not.
            if !reason.is_automatic() {
                *lock(&state.training_asked) = Some(reason);
            }
            return Ok(());
        }
        *lock(&state.last_trained) = Some(std::time::Instant::now());
        if self.params().train_in_background && reason.is_automatic() && state.model().is_some() {
            let trainer = Arc::clone(&self.trainer);
            let (state, key) = (Arc::clone(state), key.to_string());
            rayon::spawn(move || {
                if let Err(e) = run_training(&trainer, &key, &state, reason, Place::Background) {
                    tracing::warn!(key, error = %e, "background retraining failed; the current model stays");
                }
            });
            return Ok(());
        }
        run_training(&self.trainer, key, state, reason, Place::Caller)
    }

    /// Sets how many anomalies to expect for a key (its contamination) and retrains it if it has a model. The
    /// model keeps it, so it survives eviction and restarts once a model is trained with it.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a contamination outside `(0, 0.5]`; training errors; [`Error::Persistence`]
    /// when the key must be restored and the store cannot be read.
    pub fn set_sensitivity(&self, key: &str, contamination: Contamination) -> Result<()> {
        self.params()
            .forest
            .clone()
            .contamination(contamination)
            .validate()?;
        let state = self.state(key)?;
        *lock(&state.sensitivity) = contamination;
        if state.model().is_some() {
            self.train_state(key, &state, TrainReason::Sensitivity)?;
        }
        Ok(())
    }

    /// Pins the roles of a key's fields (replacing its earlier pins; the engine's own pins still apply beneath)
    /// and retrains it if it has a model. The model keeps them, so they survive eviction and restarts once a model
    /// is trained with them.
    ///
    /// # Errors
    /// Training errors; [`Error::Persistence`] when the key must be restored and the store cannot be read.
    pub fn set_field_roles(&self, key: &str, roles: FieldRoles) -> Result<()> {
        let state = self.state(key)?;
        *lock(&state.roles) = roles;
        if state.model().is_some() {
            self.train_state(key, &state, TrainReason::FieldRoles)?;
        }
        Ok(())
    }

    /// The key's current model, if any.
    ///
    /// # Errors
    /// [`Error::Persistence`] when the key must be restored and the store cannot be read.
    pub fn model(&self, key: &str) -> Result<Option<Arc<RecordModel>>> {
        Ok(self.state(key)?.model())
    }

    /// A summary of the key's current model, with the role of each field and the rule that decided it.
    ///
    /// # Errors
    /// [`Error::Persistence`] when the key must be restored and the store cannot be read.
    pub fn model_info(&self, key: &str) -> Result<Option<ModelInfo>> {
        Ok(self.state(key)?.model_info())
    }

    /// The key's counters.
    ///
    /// # Errors
    /// [`Error::Persistence`] when the key must be restored and the store cannot be read.
    pub fn stats(&self, key: &str) -> Result<KeyStats> {
        Ok(self.state(key)?.stats())
    }

    /// The key's baseline: statistics of its records that neither detector flagged (rebuilt from the stored
    /// history when the key is restored).
    ///
    /// # Errors
    /// [`Error::Persistence`] when the key must be restored and the store cannot be read.
    pub fn statistics(&self, key: &str) -> Result<DatasetStats> {
        let state = self.state(key)?;
        let mut b = lock(&state.baseline);
        Ok(b.stats().clone())
    }

    /// A copy of the key's history sample.
    ///
    /// # Errors
    /// [`Error::Persistence`] when the key must be restored and the store cannot be read.
    pub fn history(&self, key: &str) -> Result<Vec<Value>> {
        Ok(lock(&self.state(key)?.history).records().to_vec())
    }

    /// Forgets a key's history (persistence, then memory) and its baseline; returns how many stored history records
    /// were removed. The model stays, as its stored versions do (a restore would bring it back anyway): the key keeps
    /// scoring, and its next training learns from the records that come after.
    ///
    /// # Errors
    /// [`Error::Persistence`] if the key cannot be restored or its stored history cannot be removed; the key is
    /// then left as it was.
    pub fn clear(&self, key: &str) -> Result<usize> {
        let state = self.state(key)?;
        let removed = self.trainer.persistence.clear_history(key)?;
        state.clear(self.params());
        Ok(removed)
    }

    /// Replaces a key's history with `records`, learnt as they are: none is scored, flagged or held apart, and
    /// the baseline is rebuilt from them. The model stays until the next training ([`train`](Self::train)), which
    /// then learns exactly these records: for an application that chose its training set itself (the records a
    /// first model did not flag).
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] for a record that is not an object or exceeds the limits (nothing is replaced);
    /// [`Error::Persistence`] when the store cannot be read or its history cleared.
    pub fn replace_history(&self, key: &str, records: &[Value]) -> Result<()> {
        let limits = self.params().vectorizer.get_limits();
        for r in records {
            flatten(r, limits)?;
        }
        let state = self.state(key)?;
        self.trainer.persistence.clear_history(key)?;
        state.clear(self.params());
        {
            let mut h = lock(&state.history);
            for r in records {
                h.push_with(|| r.clone());
            }
        }
        self.persist_history(key, &state, records);
        self.learn_baseline(&state, records, true);
        Ok(())
    }
}
