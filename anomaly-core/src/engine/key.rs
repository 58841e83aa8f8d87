//! One key's state in memory, how it is restored from the persistence, and how it is trained.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::baseline::Baseline;
use super::model::{self, RecordModel};
use super::outcome::{FieldInfo, KeyStats, ModelInfo, TrainReason};
use super::params::EngineParams;
use super::persistence::{ModelMetadata, Persistence};
use super::range_rule::RangeRule;
use super::reservoir::Reservoir;
use crate::drift::{DriftDetector, DriftReport};
use crate::error::{Error, Result};
use crate::forest::Contamination;
use crate::records::hashing::murmur3_32;
use crate::records::role::{FieldRole, FieldRoles};
use crate::records::vectorizer::RecordNotes;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data half-updated in a way that matters more than
    // losing the engine, so recover the guard.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What training needs besides the key: shared by the engine and its background trainings.
pub(crate) struct Trainer {
    pub(crate) params: Arc<EngineParams>,
    pub(crate) persistence: Arc<dyn Persistence>,
    /// Trainings of every key.
    pub(crate) trainings: AtomicU64,
}

/// A model and the range rule built for its columns, swapped in together: a vector is never checked against the
/// columns of another model.
pub(crate) struct Current {
    pub(crate) model: Arc<RecordModel>,
    pub(crate) rule: RangeRule,
}

/// Everything the engine holds for one key.
pub(crate) struct KeyState {
    pub(crate) current: ArcSwapOption<Current>,
    pub(crate) reason: Mutex<Option<TrainReason>>,
    pub(crate) history: Mutex<Reservoir>,
    /// Flagged records held out of the history while `learn_flagged` is off, oldest first (at most
    /// [`EngineParams::held_limit`]); a drift retrain learns them.
    pub(crate) held: Mutex<VecDeque<Value>>,
    /// Records flagged in a row since the last one learnt.
    pub(crate) flagged_in_a_row: AtomicUsize,
    pub(crate) baseline: Mutex<Baseline>,
    pub(crate) since_train: AtomicU64,
    pub(crate) training: AtomicBool,
    /// A training asked for while another ran: it runs when that one ends.
    pub(crate) training_asked: Mutex<Option<TrainReason>>,
    /// When the last training started, in this process.
    pub(crate) last_trained: Mutex<Option<Instant>>,
    /// History length from which a first model is tried again, after records with nothing to score.
    pub(crate) first_model_at: AtomicUsize,
    /// Whether the current model could not be written to the persistence (the key is then not evicted).
    pub(crate) unsaved: AtomicBool,
    pub(crate) sensitivity: Mutex<Contamination>,
    /// Roles pinned for this key (over the engine's).
    pub(crate) roles: Mutex<FieldRoles>,
    pub(crate) drift: Mutex<Option<DriftDetector>>,
    pub(crate) pending_drift: Mutex<Option<DriftReport>>,
    /// The engine's clock at the key's last use, for eviction.
    pub(crate) last_used: AtomicU64,
    pub(crate) scored: AtomicU64,
    pub(crate) anomalies: AtomicU64,
    pub(crate) trainings: AtomicU64,
    pub(crate) persistence_failures: AtomicU64,
}

impl KeyState {
    /// Reads a key's history and latest model from the persistence. A stored model that cannot be restored (a
    /// snapshot this build does not read) is not an error: the key keeps its history and retrains. The baseline is
    /// rebuilt from the history less the rare outliers the range rule finds in it (see [`without_outliers`]), in
    /// batches of the size the key's batches had when the model was trained.
    ///
    /// # Errors
    /// [`Error::Persistence`] when the history or the model cannot be read: the key is not started empty, which
    /// would have its next model supersede the stored one.
    pub(crate) fn restore(
        params: &EngineParams,
        persistence: &dyn Persistence,
        key: &str,
        policy: Option<FieldRoles>,
    ) -> Result<KeyState> {
        let records = persistence.load_history(key, params.max_history)?;
        let stored = persistence.load_model(key, None)?;
        let mut failures = 0;
        let mut batch = 100;
        let model = stored.and_then(|saved| {
            if let Some(size) = saved.info.metadata.metrics["typical_batch_size"].as_f64() {
                batch = (size.round() as usize).max(1);
            }
            match model::restore(&saved.snapshot) {
                Ok(m) => Some(Arc::new(m.with_version(saved.info.version))),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(key, error = %e, "could not restore the latest model; it will be retrained");
                    None
                }
            }
        });
        let seed = params.seed ^ (murmur3_32(key.as_bytes(), 0) as u32 as u64);
        let limits = *params.vectorizer.get_limits();
        let max_fields = params.vectorizer.get_max_columns();
        let mut baseline = Baseline::of(&records, batch, limits, max_fields);
        if let (Some(m), Some(t)) = (&model, params.range_tolerance) {
            baseline = without_outliers(m, &records, baseline, t, batch, limits, max_fields);
        }
        let mut history = Reservoir::new(params.max_history, seed);
        records.into_iter().for_each(|r| history.push(r));
        let sensitivity = model
            .as_ref()
            .map_or(params.sensitivity, |m| m.forest().params().contamination);
        // The key's own pins when its model was trained, with the application's policy over them.
        let mut roles = model
            .as_ref()
            .map(|m| m.pinned().clone())
            .unwrap_or_default();
        roles.extend(policy.unwrap_or_default());
        let mut state = KeyState::empty(params, seed);
        state.history = Mutex::new(history);
        state.baseline = Mutex::new(baseline);
        state.sensitivity = Mutex::new(sensitivity);
        state.roles = Mutex::new(roles);
        state.persistence_failures = AtomicU64::new(failures);
        if let Some(m) = model {
            *lock(&state.drift) = drift_detector(params, &m, lock(&state.history).records());
            *lock(&state.reason) = Some(TrainReason::Restored);
            let rule = state.rule_for(params, &m);
            state.current = ArcSwapOption::from_pointee(Current { model: m, rule });
        }
        Ok(state)
    }

    fn empty(params: &EngineParams, seed: u64) -> KeyState {
        KeyState {
            current: ArcSwapOption::empty(),
            reason: Mutex::new(None),
            history: Mutex::new(Reservoir::new(params.max_history, seed)),
            held: Mutex::new(VecDeque::new()),
            flagged_in_a_row: AtomicUsize::new(0),
            baseline: Mutex::new(Baseline::new(
                *params.vectorizer.get_limits(),
                params.vectorizer.get_max_columns(),
            )),
            since_train: AtomicU64::new(0),
            training: AtomicBool::new(false),
            training_asked: Mutex::new(None),
            last_trained: Mutex::new(None),
            first_model_at: AtomicUsize::new(0),
            unsaved: AtomicBool::new(false),
            sensitivity: Mutex::new(params.sensitivity),
            roles: Mutex::new(FieldRoles::new()),
            drift: Mutex::new(None),
            pending_drift: Mutex::new(None),
            last_used: AtomicU64::new(0),
            scored: AtomicU64::new(0),
            anomalies: AtomicU64::new(0),
            trainings: AtomicU64::new(0),
            persistence_failures: AtomicU64::new(0),
        }
    }

    /// The current model, if any.
    pub(crate) fn model(&self) -> Option<Arc<RecordModel>> {
        self.current.load().as_ref().map(|c| Arc::clone(&c.model))
    }

    /// The range rule of `model` over the current baseline.
    fn rule_for(&self, params: &EngineParams, model: &RecordModel) -> RangeRule {
        match params.range_tolerance {
            Some(t) => RangeRule::new(model, lock(&self.baseline).stats(), t),
            None => RangeRule::default(),
        }
    }

    /// Rebuilds the current model's range rule over the baseline; a model swapped in meanwhile keeps its own.
    pub(crate) fn refresh_rule(&self, params: &EngineParams) {
        let Some(model) = self.model() else {
            return;
        };
        let rule = self.rule_for(params, &model);
        self.current.rcu(|current| match current {
            Some(c) if Arc::ptr_eq(&c.model, &model) => Some(Arc::new(Current {
                model: Arc::clone(&model),
                rule: rule.clone(),
            })),
            other => other.clone(),
        });
    }

    /// A summary of the current model.
    pub(crate) fn model_info(&self) -> Option<ModelInfo> {
        let m = self.model()?;
        let v = m.vectorizer();
        Some(ModelInfo {
            version: m.version(),
            trained_on: m.trained_on(),
            trained_at: m.trained_at(),
            features: v.feature_names(),
            fields: v
                .fields()
                .iter()
                .map(|f| FieldInfo {
                    field: f.path.clone(),
                    kind: f.kind,
                    role: f.role,
                    rule: f.rule.clone(),
                    columns: f.width,
                })
                .collect(),
            left_out_fields: v.left_out().total,
            threshold: m.forest().threshold(),
            reason: lock(&self.reason).clone().unwrap_or(TrainReason::Requested),
        })
    }

    pub(crate) fn stats(&self) -> KeyStats {
        let h = lock(&self.history);
        KeyStats {
            history: h.len(),
            seen: h.seen(),
            scored: self.scored.load(Ordering::Relaxed),
            anomalies: self.anomalies.load(Ordering::Relaxed),
            trainings: self.trainings.load(Ordering::Relaxed),
            persistence_failures: self.persistence_failures.load(Ordering::Relaxed),
        }
    }

    /// Forgets the history and the baseline (after the persistence forgot the history). The model stays, as its
    /// stored versions do: the next training learns from what comes after.
    pub(crate) fn clear(&self, params: &EngineParams) {
        lock(&self.history).clear();
        lock(&self.held).clear();
        self.flagged_in_a_row.store(0, Ordering::Release);
        lock(&self.baseline).clear();
        self.since_train.store(0, Ordering::Release);
        lock(&self.pending_drift).take();
        self.refresh_rule(params);
    }
}

/// Share of a history's records beyond a field's robust limits up to which they are taken for outliers (more are
/// how the field is).
const OUTLIER_SHARE: f64 = 0.01;

/// A restored baseline less the outliers the range rule had flagged: the stored history holds them too, and as its
/// extremes they would widen the rule's range. Found against the history's percentiles, and only when rare (at most
/// [`OUTLIER_SHARE`] of the records per field): a field whose values are 1 in 98 % of records and 5 in 2 % keeps
/// its 5s.
fn without_outliers(
    model: &RecordModel,
    records: &[Value],
    baseline: Baseline,
    tolerance: f64,
    batch: usize,
    limits: crate::records::flatten::Limits,
    max_fields: usize,
) -> Baseline {
    let mut baseline = baseline;
    let rule = RangeRule::robust(model, baseline.stats(), tolerance);
    let (mut x, mut notes) = (Vec::new(), RecordNotes::default());
    let firing: Vec<Vec<usize>> = records
        .iter()
        .map(
            |r| match model.vectorizer().transform_into(r, &mut x, &mut notes) {
                Ok(()) => rule.firing(&x).collect(),
                Err(_) => Vec::new(),
            },
        )
        .collect();
    let mut counts = std::collections::HashMap::<usize, usize>::new();
    for f in firing.iter().flatten() {
        *counts.entry(*f).or_default() += 1;
    }
    let rare = |limit: &usize| counts[limit] as f64 <= OUTLIER_SHARE * records.len() as f64;
    let normal: Vec<&Value> = records
        .iter()
        .zip(&firing)
        .filter(|(_, f)| !f.iter().any(rare))
        .map(|(r, _)| r)
        .collect();
    if normal.len() < records.len() {
        baseline = Baseline::of(&normal, batch, limits, max_fields);
    }
    baseline
}

/// Where a training runs: in the caller (on every core the forest's parameters allow), or in the background (on one
/// core, leaving the others to the callers it runs beside).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Caller,
    Background,
}

/// Trains `key` with `reason`, then with any reason asked for while it ran, until none is; clears the key's
/// training flag (which the caller set) whatever happens, a panic included.
pub(crate) fn run_training(
    trainer: &Trainer,
    key: &str,
    state: &KeyState,
    mut reason: TrainReason,
    place: Place,
) -> Result<()> {
    loop {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            train_now(trainer, key, state, reason, place)
        }))
        .unwrap_or_else(|_| {
            tracing::error!(key, "training panicked; the current model stays");
            Ok(())
        });
        state.training.store(false, Ordering::Release);
        match lock(&state.training_asked).take() {
            // Asked while this one ran (a new sensitivity, pinned roles, a request): it reads the new settings.
            Some(next) if !state.training.swap(true, Ordering::AcqRel) => {
                if let Err(e) = result {
                    tracing::warn!(key, error = %e, "training failed; training again as asked");
                }
                reason = next;
            }
            _ => return result,
        }
    }
}

/// Trains `key` on its history now; swaps the new model in with its range rule, and stores it as a new version.
fn train_now(
    trainer: &Trainer,
    key: &str,
    state: &KeyState,
    reason: TrainReason,
    place: Place,
) -> Result<()> {
    let params = &trainer.params;
    // Records that arrive while this training runs are not in it: they count toward the next one.
    let consumed = state.since_train.load(Ordering::Acquire);
    let records: Vec<Value> = lock(&state.history).records().to_vec();
    if records.len() < 2 {
        return Ok(());
    }
    let contamination = *lock(&state.sensitivity);
    let mut forest = params.forest.clone().contamination(contamination);
    if place == Place::Background {
        forest = forest.n_threads(Some(1));
    }
    let pinned = lock(&state.roles).clone();
    let mut roles = params.vectorizer.get_field_roles().clone();
    roles.extend(pinned.clone());
    let vectorizer = params.vectorizer.clone().field_roles(roles);
    let previous = state.model().map_or(0, |m| m.version());
    let model = match RecordModel::fit(&records, &vectorizer, &forest, previous + 1) {
        Ok(m) => m.with_pinned(pinned),
        // Records without a field to score (`{}`, or identifiers only) give nothing to learn: the key keeps learning,
        // and tries again once its history has doubled.
        Err(Error::EmptyInput { what }) => {
            state
                .first_model_at
                .store(records.len().saturating_mul(2), Ordering::Release);
            tracing::warn!(
                key,
                records = records.len(),
                what,
                "nothing to train on yet; trying again when the history has doubled"
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let typical_batch = lock(&state.baseline).folded().typical_batch_size();
    let metadata = ModelMetadata {
        records_trained_on: records.len() as u64,
        features: model.vectorizer().feature_names(),
        trained_at: time_of(model.trained_at()),
        metrics: serde_json::json!({
            "threshold": model.forest().threshold(),
            "contamination": contamination,
            "reason": &reason,
            "left_out_fields": model.vectorizer().left_out().total,
            "typical_batch_size": typical_batch,
        }),
    };
    let version = match trainer.persistence.save_model(
        key,
        "record_model",
        &metadata,
        &model.to_snapshot_bytes(),
    ) {
        Ok(v) => {
            state.unsaved.store(false, Ordering::Release);
            v
        }
        Err(e) => {
            state.persistence_failures.fetch_add(1, Ordering::Relaxed);
            state.unsaved.store(true, Ordering::Release);
            tracing::warn!(key, error = %e, "could not persist the model; keeping it in memory");
            previous + 1
        }
    };
    let model = Arc::new(model.with_version(version));
    *lock(&state.drift) = drift_detector(params, &model, &records);
    lock(&state.pending_drift).take();
    *lock(&state.reason) = Some(reason);
    let rule = state.rule_for(params, &model);
    state.current.store(Some(Arc::new(Current { model, rule })));
    // Saturating: a `clear` during the training may have reset the counter already.
    let _ = state
        .since_train
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
            Some(v.saturating_sub(consumed))
        });
    state.trainings.fetch_add(1, Ordering::Relaxed);
    trainer.trainings.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(key, version, records = records.len(), "trained");
    Ok(())
}

fn time_of(seconds: f64) -> DateTime<Utc> {
    let micros = (seconds * 1e6).round();
    if micros.is_finite() && micros.abs() < 9.0e15 {
        DateTime::from_timestamp_micros(micros as i64).unwrap_or_default()
    } else {
        DateTime::default()
    }
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
        // A timestamp's hour and weekday cycles move within any window shorter than a week: not drift.
        let calendar = model
            .vectorizer()
            .fields()
            .iter()
            .filter(|f| f.role == FieldRole::Timestamp)
            .flat_map(|f| f.offset..f.offset + f.width)
            .collect::<Vec<_>>();
        Ok(DriftDetector::new(
            params,
            x.view(),
            scores.as_slice().unwrap_or(&[]),
            Some(model.vectorizer().feature_names()),
        )?
        .ignore_columns(calendar))
    };
    match build() {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::warn!(error = %e, "drift detection is off for this model");
            None
        }
    }
}
