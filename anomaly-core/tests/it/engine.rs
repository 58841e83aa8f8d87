//! The record engine: learning, training, retraining, versioning, persistence and concurrency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use anomaly_core::drift::DriftParams;
use anomaly_core::engine::{
    Engine, EngineParams, InMemoryPersistence, ModelMetadata, ModelVersion, Outcome, Persistence,
    SavedModel, TrainReason,
};
use anomaly_core::records::role::{FieldRole, FieldRoles};
use anomaly_core::{Contamination, Error, IsolationForestParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// Orders with a stable shape: amount ~ 100 ± 10, a few countries, an express flag.
fn orders(n: usize, seed: u64, amount_mean: f64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let z = crate::normals(&mut rng, n);
    (0..n)
        .map(|i| {
            let country = ["FR", "DE", "ES", "IT"][rng.random_range(0..4)];
            json!({
                "amount": (amount_mean + 10.0 * z[i]).round(),
                "country": country,
                "express": rng.random::<f64>() < 0.3,
                "items": rng.random_range(1..5),
            })
        })
        .collect()
}

fn params() -> EngineParams {
    EngineParams::new()
        .min_training_records(100)
        .retrain_every(10_000)
        .forest(IsolationForestParams::new().n_estimators(50))
}

#[test]
fn learns_then_trains_then_scores() {
    let engine = Engine::in_memory(params()).unwrap();
    let data = orders(150, 1, 100.0);
    for (i, r) in data.iter().enumerate().take(99) {
        assert_eq!(
            engine.observe("q", r).unwrap(),
            Outcome::Learning {
                seen: i + 1,
                needed: 100
            }
        );
    }
    engine.observe("q", &data[99]).unwrap();
    let info = engine.model_info("q").unwrap().unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(info.trained_on, 100);
    assert_eq!(info.reason, TrainReason::FirstModel);
    assert!(info.features.contains(&"amount".to_string()));
    let outcome = engine.observe("q", &data[100]).unwrap();
    assert_eq!(outcome.verdict().unwrap().model_version, 1);
    // Another key is independent.
    assert!(matches!(
        engine.score("other", &data[0]).unwrap(),
        Outcome::Learning { seen: 0, .. }
    ));
}

#[test]
fn flags_and_explains_in_field_names() {
    let engine = Engine::in_memory(params()).unwrap();
    engine.observe_many("q", &orders(400, 2, 100.0)).unwrap();
    let odd = json!({"amount": 99_812, "country": "KP", "express": false, "items": 2, "debug_token": "x"});
    assert!(engine.score("q", &odd).unwrap().is_anomaly());
    let normal = json!({"amount": 101, "country": "FR", "express": false, "items": 2});
    assert!(!engine.score("q", &normal).unwrap().is_anomaly());
    let why = engine.explain("q", &odd).unwrap().unwrap();
    assert!(why.verdict.is_anomaly);
    assert!(
        why.rationale
            .contains("`amount` = 99,812 is above the typical"),
        "{}",
        why.rationale
    );
    assert!(
        why.rationale.contains("`country` = 'KP' was never seen"),
        "{}",
        why.rationale
    );
    assert!(
        why.rationale.contains("new field `debug_token`"),
        "{}",
        why.rationale
    );
}

#[test]
fn score_many_gives_score_one_by_one_and_learns_nothing() {
    let engine = Engine::in_memory(params()).unwrap();
    let mut probe = orders(333, 9, 100.0);
    probe.push(json!({"amount": 99_812, "country": "KP", "express": false, "items": 2}));
    probe.push(json!({"amount": 100, "note": "a field never seen", "items": [1, 2, 3]}));
    // While learning: every record checked, each outcome says how far learning is, and nothing is learnt.
    let learning = engine.score_many("q", &probe).unwrap();
    assert!(learning.iter().all(|o| *o
        == Outcome::Learning {
            seen: 0,
            needed: 100
        }));
    let err = engine
        .score_many("q", &[json!({"a": 1}), json!([1, 2])])
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRecord { reason } if reason.starts_with("record 1:")),
        "{err}"
    );

    engine.observe_many("q", &orders(400, 2, 100.0)).unwrap();
    let scored_before = engine.stats("q").unwrap();
    let many = engine.score_many("q", &probe).unwrap();
    assert_eq!(many.len(), probe.len());
    for (record, outcome) in probe.iter().zip(&many) {
        let one = engine.score("q", record).unwrap();
        let (a, b) = (outcome.verdict().unwrap(), one.verdict().unwrap());
        assert_eq!(a.score.to_bits(), b.score.to_bits(), "{record}");
        assert_eq!(outcome, &one, "{record}");
    }
    assert!(many[333].is_anomaly());
    assert_eq!(
        engine.stats("q").unwrap(),
        scored_before,
        "score_many counts nothing"
    );
    assert!(engine.score_many("q", &[]).unwrap().is_empty());
    // A bad record fails the call, naming it.
    let mut bad = probe.clone();
    bad[7] = json!("not an object");
    let err = engine.score_many("q", &bad).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRecord { reason } if reason.starts_with("record 7:")),
        "{err}"
    );
}

#[test]
fn score_many_names_an_overflowing_record_by_its_place_in_the_batch() {
    use anomaly_core::records::vectorizer::{Scaler, VectorizerParams};
    let scaled = params().vectorizer(VectorizerParams::new().scaler(Scaler::Standard));
    let engine = Engine::in_memory(scaled).unwrap();
    let tight = |i: usize| json!({"ratio": 0.5 + (i % 7) as f64 * 0.001, "items": i % 5});
    engine
        .observe_many("q", &(0..200).map(tight).collect::<Vec<_>>())
        .unwrap();
    let mut probe: Vec<Value> = (0..1500).map(tight).collect();
    // Scaled by a standard deviation of about 0.002, this value overflows to infinity.
    probe[1200] = json!({"ratio": 1e308, "items": 1});
    let one = engine.score("q", &probe[1200]).unwrap_err();
    assert!(matches!(one, Error::NonFinite { .. }), "{one}");
    let err = engine.score_many("q", &probe).unwrap_err();
    assert!(matches!(err, Error::NonFinite { row: 1200, .. }), "{err}");
}

#[test]
fn retrains_after_new_records_with_a_new_version() {
    let engine = Engine::in_memory(params().retrain_every(200)).unwrap();
    engine.observe_many("q", &orders(100, 3, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
    engine.observe_many("q", &orders(199, 4, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
    engine.observe("q", &orders(1, 5, 100.0)[0]).unwrap();
    let info = engine.model_info("q").unwrap().unwrap();
    assert_eq!(
        (info.version, info.trained_on, info.reason),
        (2, 300, TrainReason::NewRecords)
    );
    let versions = engine.persistence().model_versions("q").unwrap();
    assert_eq!(
        versions.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(engine.stats("q").unwrap().trainings, 2);
}

#[test]
fn automatic_retrains_wait_for_the_minimum_interval() {
    let engine = Engine::in_memory(
        params()
            .retrain_every(100)
            .stale_growth(0.0)
            .min_retrain_interval(std::time::Duration::from_secs(2)),
    )
    .unwrap();
    engine.observe_many("q", &orders(100, 3, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().unwrap().version,
        1,
        "the first model is not held back"
    );
    // Ten retrains' worth of records at once: none before the interval has passed.
    engine.observe_many("q", &orders(1_000, 4, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    engine.observe("q", &orders(1, 5, 100.0)[0]).unwrap();
    let info = engine.model_info("q").unwrap().unwrap();
    assert_eq!((info.version, info.reason), (2, TrainReason::NewRecords));
    engine.observe_many("q", &orders(500, 6, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().unwrap().version,
        2,
        "the interval starts again"
    );
    // A requested retrain is not limited.
    engine.train("q").unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 3);
}

#[test]
fn history_is_capped_by_reservoir_sampling() {
    let engine = Engine::in_memory(
        params()
            .max_history(500)
            .min_training_records(100)
            .retrain_every(1_000_000),
    )
    .unwrap();
    // Amounts encode arrival order; a uniform sample keeps early and late records alike.
    let records: Vec<Value> = (0..5_000).map(|i| json!({"amount": i})).collect();
    engine.observe_many("q", &records).unwrap();
    let stats = engine.stats("q").unwrap();
    assert_eq!((stats.history, stats.seen), (500, 5_000));
    let kept: Vec<i64> = engine
        .history("q")
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    let first_half = kept.iter().filter(|&&a| a < 2_500).count();
    // Binomial(500, 0.5): sd ≈ 11; allow 5 sd.
    assert!(
        (195..=305).contains(&first_half),
        "{first_half} of 500 from the first half"
    );
}

#[test]
fn a_restart_keeps_models_and_history() {
    let store = Arc::new(InMemoryPersistence::default());
    let first = Engine::new(params(), store.clone()).unwrap();
    let data = orders(300, 6, 100.0);
    first.observe_many("q", &data).unwrap();
    let probe = json!({"amount": 180, "country": "FR", "express": true, "items": 1});
    let before = first.score("q", &probe).unwrap();
    drop(first);
    let second = Engine::new(params(), store).unwrap();
    // The forest's verdict is the same bits; the range rule reads a baseline rebuilt from the stored history.
    let after = *second.score("q", &probe).unwrap().verdict().unwrap();
    let before = *before.verdict().unwrap();
    assert_eq!(
        (
            after.score.to_bits(),
            after.threshold.to_bits(),
            after.model_version,
            after.flagged_by.isolation_forest
        ),
        (
            before.score.to_bits(),
            before.threshold.to_bits(),
            before.model_version,
            before.flagged_by.isolation_forest
        ),
        "same model version, same bits"
    );
    assert_eq!(second.stats("q").unwrap().history, 300);
    assert_eq!(second.model_info("q").unwrap().unwrap().version, 1);
}

#[test]
fn scoring_continues_on_the_old_model_during_a_retrain() {
    let engine = Arc::new(
        Engine::in_memory(
            params()
                .forest(IsolationForestParams::new().n_estimators(300))
                .max_history(200_000)
                .retrain_every(1_000_000)
                .stale_growth(0.0)
                .drift(None),
        )
        .unwrap(),
    );
    engine.observe_many("q", &orders(30_000, 7, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
    let training = Arc::new(AtomicBool::new(true));
    let during = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(4));
    let probe = json!({"amount": 100, "country": "DE", "express": false, "items": 3});
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (engine, training, during, start, probe) = (
                engine.clone(),
                training.clone(),
                during.clone(),
                start.clone(),
                probe.clone(),
            );
            std::thread::spawn(move || {
                start.wait();
                let mut last_version = 0;
                while training.load(Ordering::Acquire) {
                    let v = *engine.score("q", &probe).unwrap().verdict().unwrap();
                    assert!(v.model_version >= last_version, "versions never go back");
                    last_version = v.model_version;
                    if v.model_version == 1 {
                        during.fetch_add(1, Ordering::Relaxed);
                    }
                }
                last_version
            })
        })
        .collect();
    start.wait();
    let version = engine.train("q").unwrap();
    training.store(false, Ordering::Release);
    assert_eq!(version, 2);
    for r in readers {
        assert!(r.join().unwrap() >= 1);
    }
    assert!(
        during.load(Ordering::Relaxed) > 0,
        "readers scored with version 1 while version 2 trained"
    );
    assert_eq!(
        engine
            .score("q", &probe)
            .unwrap()
            .verdict()
            .unwrap()
            .model_version,
        2
    );
}

#[test]
fn many_threads_observe_many_keys() {
    let engine = Arc::new(Engine::in_memory(params().retrain_every(150)).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for (i, r) in orders(400, 10 + t, 100.0).iter().enumerate() {
                    // Two threads per key, so keys are shared too.
                    engine
                        .observe(&format!("key{}", (t + i as u64) % 2), r)
                        .unwrap();
                }
            })
        })
        .collect();
    handles.into_iter().for_each(|h| h.join().unwrap());
    // However slow the first training was, records observed during it count toward the next: one more record
    // after the threads are done retrains every key.
    for key in ["key0", "key1"] {
        engine.observe(key, &orders(1, 99, 100.0)[0]).unwrap();
    }
    for key in ["key0", "key1"] {
        let s = engine.stats(key).unwrap();
        assert_eq!(s.seen, 801);
        assert!(s.trainings >= 2, "{key}: {s:?}");
        let versions = engine.persistence().model_versions(key).unwrap();
        let numbers: Vec<u64> = versions.iter().map(|m| m.version).collect();
        assert_eq!(
            numbers,
            (1..=numbers.len() as u64).collect::<Vec<_>>(),
            "versions are 1, 2, … without gaps"
        );
    }
}

#[test]
fn sensitivity_is_per_key_and_retrains() {
    let engine = Engine::in_memory(params().stale_growth(0.0)).unwrap();
    let data = orders(400, 8, 100.0);
    engine.observe_many("a", &data).unwrap();
    engine.observe_many("b", &data).unwrap();
    engine
        .set_sensitivity("a", Contamination::Fraction(0.1))
        .unwrap();
    let (a, b) = (
        engine.model_info("a").unwrap().unwrap(),
        engine.model_info("b").unwrap().unwrap(),
    );
    assert_eq!((a.version, a.reason.clone()), (2, TrainReason::Sensitivity));
    assert_eq!(b.threshold, 0.5, "key b keeps the default");
    assert_ne!(a.threshold, 0.5);
    let flagged = data
        .iter()
        .filter(|r| engine.score("a", r).unwrap().is_anomaly())
        .count();
    assert!(
        (30..=50).contains(&flagged),
        "{flagged} of 400 flagged at 10%"
    );
    assert!(matches!(
        engine.set_sensitivity("a", Contamination::Fraction(0.9)),
        Err(Error::InvalidParameter {
            name: "contamination",
            ..
        })
    ));
}

#[test]
fn drift_triggers_a_retrain() {
    // Drift is watched once a model's reference holds two windows (2 × 200 records here).
    let engine = Engine::in_memory(
        params()
            .min_training_records(1_000)
            .drift(Some(DriftParams::new().window(200).check_every(50))),
    )
    .unwrap();
    engine.observe_many("q", &orders(1_000, 9, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
    // The same distribution: no retrain.
    engine.observe_many("q", &orders(1_000, 10, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().unwrap().version,
        1,
        "no drift on the same distribution"
    );
    // A level shift of amounts: drift, and a retrain that says why.
    engine.observe_many("q", &orders(1_000, 11, 160.0)).unwrap();
    let info = engine.model_info("q").unwrap().unwrap();
    assert!(info.version >= 2);
    let versions = engine.persistence().model_versions("q").unwrap();
    assert!(
        versions
            .iter()
            .any(|m| m.metadata.metrics["reason"]["reason"] == "drift"),
        "{:?}",
        versions
            .iter()
            .map(|m| &m.metadata.metrics)
            .collect::<Vec<_>>()
    );
}

#[test]
fn hostile_records_are_refused_and_not_learnt() {
    let engine = Engine::in_memory(params()).unwrap();
    for bad in [json!([1, 2, 3]), json!("text"), json!(null), json!(42)] {
        assert!(matches!(
            engine.observe("q", &bad),
            Err(Error::InvalidRecord { .. })
        ));
    }
    let mut deep = json!({"x": 1});
    for _ in 0..100 {
        deep = json!({ "n": deep });
    }
    assert!(matches!(
        engine.observe("q", &deep),
        Err(Error::InvalidRecord { .. })
    ));
    assert_eq!(engine.stats("q").unwrap().history, 0);
}

fn refused() -> Error {
    Error::Persistence {
        reason: "connection refused".into(),
    }
}

/// Persistence that fails every call, as a database that is down; with `reads`, it answers reads (empty) and fails
/// only writes.
struct Down {
    reads: bool,
}

impl Persistence for Down {
    fn append_history(&self, _: &str, _: &[Value]) -> anomaly_core::Result<()> {
        Err(refused())
    }
    fn load_history(&self, _: &str, _: usize) -> anomaly_core::Result<Vec<Value>> {
        if self.reads {
            Ok(Vec::new())
        } else {
            Err(refused())
        }
    }
    fn clear_history(&self, _: &str) -> anomaly_core::Result<usize> {
        Err(refused())
    }
    fn save_model(
        &self,
        _: &str,
        _: &str,
        _: &ModelMetadata,
        _: &[u8],
    ) -> anomaly_core::Result<u64> {
        Err(refused())
    }
    fn load_model(&self, _: &str, _: Option<u64>) -> anomaly_core::Result<Option<SavedModel>> {
        if self.reads { Ok(None) } else { Err(refused()) }
    }
    fn model_versions(&self, _: &str) -> anomaly_core::Result<Vec<ModelVersion>> {
        Err(refused())
    }
    fn keys(&self) -> anomaly_core::Result<Vec<String>> {
        Err(refused())
    }
}

#[test]
fn failing_writes_do_not_stop_detection() {
    let engine = Engine::new(params(), Arc::new(Down { reads: true })).unwrap();
    let outcomes = engine.observe_many("q", &orders(150, 12, 100.0)).unwrap();
    assert!(
        outcomes.last().unwrap().verdict().is_some(),
        "trained and scoring in memory"
    );
    let s = engine.stats("q").unwrap();
    assert!(s.persistence_failures >= 150, "{s:?}");
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
}

/// A key whose store cannot be read is never started empty, whichever call comes first: its next model would
/// supersede the stored one.
#[test]
fn an_unreadable_store_is_an_error_for_every_entry_point() {
    let down = Engine::new(params(), Arc::new(Down { reads: false })).unwrap();
    let record = orders(1, 1, 100.0).remove(0);
    assert!(matches!(down.load("q"), Err(Error::Persistence { .. })));
    assert!(matches!(
        down.observe("q", &record),
        Err(Error::Persistence { .. })
    ));
    assert!(matches!(
        down.observe_batch("q", std::slice::from_ref(&record)),
        Err(Error::Persistence { .. })
    ));
    assert!(matches!(
        down.score("q", &record),
        Err(Error::Persistence { .. })
    ));
    assert!(matches!(
        down.explain("q", &record),
        Err(Error::Persistence { .. })
    ));
    assert!(matches!(
        down.model_info("q"),
        Err(Error::Persistence { .. })
    ));
    assert!(matches!(
        down.statistics("q"),
        Err(Error::Persistence { .. })
    ));
    assert!(matches!(down.history("q"), Err(Error::Persistence { .. })));
    assert!(matches!(down.stats("q"), Err(Error::Persistence { .. })));
    assert!(matches!(down.clear("q"), Err(Error::Persistence { .. })));
    assert!(
        down.keys().is_empty(),
        "the key is not kept: the next call tries again"
    );
}

#[test]
fn load_and_every_entry_point_restore_stored_keys() {
    let store = Arc::new(InMemoryPersistence::new(10_000));
    let first = Engine::new(params(), store.clone()).unwrap();
    first.observe_many("q", &orders(150, 12, 100.0)).unwrap();
    let second = Engine::new(params(), store.clone()).unwrap();
    assert!(second.load("q").unwrap(), "loaded now");
    assert!(!second.load("q").unwrap(), "held already");
    assert_eq!(second.model_info("q").unwrap().unwrap().version, 1);
    assert_eq!(second.stats("q").unwrap().history, 150);
    // Whichever call comes first after a restart, the key resumes with its model, history and baseline.
    let probe = orders(1, 13, 100.0).remove(0);
    for first_call in ["model_info", "statistics", "history", "score", "explain"] {
        let engine = Engine::new(params(), store.clone()).unwrap();
        match first_call {
            "model_info" => assert!(engine.model_info("q").unwrap().is_some()),
            // The stored history less what the restored detectors flag.
            "statistics" => {
                let n = engine.statistics("q").unwrap().n_records();
                assert!(n >= 100, "{n}");
            }
            "history" => assert!(engine.history("q").unwrap().len() >= 150),
            "score" => assert!(engine.score("q", &probe).unwrap().verdict().is_some()),
            _ => assert!(engine.explain("q", &probe).unwrap().is_some()),
        }
        let outcome = engine.observe("q", &probe).unwrap();
        assert_eq!(
            outcome.verdict().map(|v| v.model_version),
            Some(1),
            "after {first_call}"
        );
        assert_eq!(engine.totals().restored, 1);
    }
}

/// In-memory persistence that counts the calls that append history.
#[derive(Default)]
struct Counting {
    inner: InMemoryPersistence,
    appends: AtomicUsize,
}

impl Persistence for Counting {
    fn append_history(&self, key: &str, records: &[Value]) -> anomaly_core::Result<()> {
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.inner.append_history(key, records)
    }
    fn load_history(&self, key: &str, limit: usize) -> anomaly_core::Result<Vec<Value>> {
        self.inner.load_history(key, limit)
    }
    fn clear_history(&self, key: &str) -> anomaly_core::Result<usize> {
        self.inner.clear_history(key)
    }
    fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> anomaly_core::Result<u64> {
        self.inner.save_model(key, kind, metadata, snapshot)
    }
    fn load_model(
        &self,
        key: &str,
        version: Option<u64>,
    ) -> anomaly_core::Result<Option<SavedModel>> {
        self.inner.load_model(key, version)
    }
    fn model_versions(&self, key: &str) -> anomaly_core::Result<Vec<ModelVersion>> {
        self.inner.model_versions(key)
    }
    fn keys(&self) -> anomaly_core::Result<Vec<String>> {
        self.inner.keys()
    }
}

#[test]
fn observe_many_persists_its_records_in_one_call() {
    let store = Arc::new(Counting::default());
    let engine = Engine::new(params(), store.clone()).unwrap();
    engine.observe_many("q", &orders(250, 7, 100.0)).unwrap();
    engine.observe("q", &orders(1, 8, 100.0)[0]).unwrap();
    assert_eq!(store.appends.load(Ordering::Relaxed), 2);
    assert_eq!(store.load_history("q", 1_000).unwrap().len(), 251);
}

#[test]
fn retrain_growth_retrains_as_the_history_doubles() {
    let engine = Engine::in_memory(
        params()
            .min_training_records(100)
            .retrain_every(100)
            .retrain_growth(1.0)
            .drift(None),
    )
    .unwrap();
    // Each retrain waits for as many new records as the current model was trained on.
    let mut models = Vec::new();
    for r in &orders(1_700, 11, 100.0) {
        engine.observe("q", r).unwrap();
        if let Ok(Some(info)) = engine.model_info("q")
            && models.last() != Some(&(info.version, info.trained_on))
        {
            models.push((info.version, info.trained_on));
        }
    }
    assert_eq!(models, [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1_600)]);
    assert!(
        Engine::in_memory(params().retrain_growth(f64::NAN)).is_err(),
        "NaN growth is refused"
    );
}

#[test]
fn background_retrains_swap_the_model_in_when_done() {
    let engine = Engine::in_memory(
        params()
            .min_training_records(100)
            .retrain_every(100)
            .train_in_background(true)
            .drift(None),
    )
    .unwrap();
    let records = orders(200, 12, 100.0);
    // The first model is trained in the caller: the key is active as soon as the call returns.
    engine.observe_many("q", &records[..100]).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 1);
    // The retrain that the next hundred make due runs on the pool; scoring goes on meanwhile.
    let outcomes = engine.observe_many("q", &records[100..]).unwrap();
    assert!(outcomes.iter().all(|o| o.verdict().is_some()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while engine.model_info("q").unwrap().unwrap().version < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the background retrain never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let info = engine.model_info("q").unwrap().unwrap();
    assert_eq!(
        (info.version, info.trained_on, info.reason),
        (2, 200, TrainReason::NewRecords)
    );
    assert_eq!(engine.persistence().model_versions("q").unwrap().len(), 2);
}

/// The range rule is a second detector: a number far outside the history is flagged even where the forest, which
/// follows its most extreme training point, does not; the verdict says who flagged it and the rationale why.
#[test]
fn the_range_rule_flags_what_the_forest_cannot_see_and_says_so() {
    let engine = Engine::in_memory(params().drift(None)).unwrap();
    engine.observe_many("q", &orders(400, 20, 100.0)).unwrap();
    let far = json!({"amount": 1_000_000, "country": "FR", "express": false, "items": 2});
    let outcome = engine.score("q", &far).unwrap();
    let v = outcome.verdict().unwrap();
    assert!(v.is_anomaly && v.flagged_by.range_rule, "{v:?}");
    let why = engine.explain("q", &far).unwrap().unwrap();
    assert_eq!(why.range_violations.len(), 1);
    assert_eq!(why.range_violations[0].field, "amount");
    assert!(
        why.rationale.contains("far outside everything seen"),
        "{}",
        why.rationale
    );
    // Inside the range: the rule is silent.
    let near = json!({"amount": 105, "country": "FR", "express": false, "items": 2});
    assert!(
        !engine
            .score("q", &near)
            .unwrap()
            .verdict()
            .unwrap()
            .flagged_by
            .range_rule
    );
    // Turned off, it never fires.
    let off = Engine::in_memory(params().drift(None).range_tolerance(None)).unwrap();
    off.observe_many("q", &orders(400, 20, 100.0)).unwrap();
    assert!(
        !off.score("q", &far)
            .unwrap()
            .verdict()
            .unwrap()
            .flagged_by
            .range_rule
    );
}

/// One batch as a service sees it: verdicts, explanations of what was flagged, the batch against the baseline,
/// and the model with the role of each field.
#[test]
fn a_batch_report_has_everything_a_service_answers() {
    let engine = Engine::in_memory(params().drift(None)).unwrap();
    let with_ids = |records: Vec<Value>, from: usize| -> Vec<Value> {
        records
            .into_iter()
            .enumerate()
            .map(|(i, mut r)| {
                r["id"] = json!(from + i + 1);
                r["created_at"] = json!(format!(
                    "2026-03-{:02}T{:02}:00:00Z",
                    1 + (from + i) % 28,
                    (from + i) % 24
                ));
                r
            })
            .collect()
    };
    let first = engine
        .observe_batch("q", &with_ids(orders(50, 21, 100.0), 0))
        .unwrap();
    assert_eq!(first.learning(), Some((50, 100)));
    assert!(
        first.comparison.is_none(),
        "no baseline before the first batch"
    );
    engine
        .observe_batch("q", &with_ids(orders(250, 22, 100.0), 50))
        .unwrap();
    let mut batch = with_ids(orders(20, 23, 100.0), 300);
    batch[7]["amount"] = json!(99_999);
    batch[7]["country"] = json!("KP");
    let report = engine.observe_batch("q", &batch).unwrap();
    assert!(report.learning().is_none());
    let flagged: Vec<usize> = report.flagged().collect();
    assert!(flagged.contains(&7), "{flagged:?}");
    assert!(
        report.explanations[&7].rationale.contains("amount"),
        "{}",
        report.explanations[&7].rationale
    );
    let comparison = report.comparison.as_ref().expect("a baseline by now");
    assert!(
        comparison.summary().contains("amount"),
        "{}",
        comparison.summary()
    );
    let model = report.model.as_ref().unwrap();
    let role = |f: &str| {
        model
            .fields
            .iter()
            .find(|i| i.field == f)
            .map(|i| (i.role, i.rule.clone()))
    };
    assert_eq!(
        role("id").unwrap().0,
        FieldRole::Identifier,
        "{:?}",
        role("id")
    );
    assert_eq!(role("created_at").unwrap().0, FieldRole::Timestamp);
    assert_eq!(role("amount").unwrap().0, FieldRole::Measurement);
    assert!(
        !model
            .features
            .iter()
            .any(|f| f.starts_with("id") || f.ends_with(".epoch")),
        "{:?}",
        model.features
    );
    // The identifier is in the explanation, not scored.
    assert!(
        report.explanations[&7]
            .fields
            .iter()
            .any(|f| f.field == "id" && f.description.contains("identifier")),
        "{:?}",
        report.explanations[&7].fields
    );
    // The anomaly did not widen the baseline.
    let max = engine
        .statistics("q")
        .unwrap()
        .field("amount")
        .unwrap()
        .numeric
        .as_ref()
        .unwrap()
        .max;
    assert!(max < 1_000.0, "{max}");
}

/// A burst of records cannot keep a model trained on a small part of the history in use, whatever the retrain
/// interval: a stale model is retrained at once.
#[test]
fn a_stale_model_is_retrained_despite_the_interval() {
    let engine = Engine::in_memory(
        params()
            .retrain_every(500)
            .retrain_growth(1.0)
            .min_retrain_interval(std::time::Duration::from_secs(3_600))
            .drift(None),
    )
    .unwrap();
    engine.observe_many("q", &orders(100, 24, 100.0)).unwrap();
    engine.observe_many("q", &orders(299, 25, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().unwrap().version,
        1,
        "not stale at 3.99×"
    );
    engine.observe("q", &orders(1, 26, 100.0)[0]).unwrap();
    let info = engine.model_info("q").unwrap().unwrap();
    assert_eq!(
        (info.version, info.trained_on, info.reason),
        (2, 400, TrainReason::Stale)
    );
    // Retrains it forces come at geometrically growing sizes.
    engine.observe_many("q", &orders(1_000, 27, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().unwrap().version, 2);
    assert!(Engine::in_memory(params().stale_growth(0.5)).is_err());
}

/// Keys in memory are bounded: the least recently used idle keys are evicted and come back from the persistence
/// as they were.
#[test]
fn idle_keys_are_evicted_and_restored() {
    let store = Arc::new(InMemoryPersistence::new(10_000));
    let engine = Engine::new(params().max_keys_in_memory(4).drift(None), store).unwrap();
    engine
        .observe_many("first", &orders(150, 30, 100.0))
        .unwrap();
    let probe = orders(1, 31, 100.0).remove(0);
    let before = engine.score("first", &probe).unwrap();
    for k in 0..20 {
        engine
            .observe_many(&format!("k{k}"), &orders(10, 32 + k, 100.0))
            .unwrap();
        assert!(engine.totals().keys_in_memory <= 4, "{:?}", engine.totals());
    }
    assert!(!engine.holds("first"));
    let totals = engine.totals();
    assert!(totals.evicted >= 17, "{totals:?}");
    assert_eq!(
        engine.score("first", &probe).unwrap(),
        before,
        "the same model, the same bits"
    );
    assert_eq!(engine.history("first").unwrap().len(), 150);
    // The most recently used keys stayed.
    assert!(engine.holds("k19") && engine.holds("k18"));
    assert!(Engine::in_memory(params().max_keys_in_memory(0)).is_err());
}

/// Roles pinned per key and by a policy; the model info says which rule decided each role.
#[test]
fn field_roles_are_pinned_per_key_and_by_policy() {
    let engine = Engine::in_memory(params().drift(None))
        .unwrap()
        .with_field_roles(|key| {
            let mut pins = FieldRoles::new();
            if key == "pinned" {
                pins.insert("items".into(), FieldRole::Category);
            }
            pins
        });
    engine
        .observe_many("pinned", &orders(150, 40, 100.0))
        .unwrap();
    engine
        .observe_many("free", &orders(150, 40, 100.0))
        .unwrap();
    let field = |key: &str, f: &str| {
        let info = engine.model_info(key).unwrap().unwrap();
        info.fields.into_iter().find(|i| i.field == f).unwrap()
    };
    assert_eq!(field("pinned", "items").role, FieldRole::Category);
    assert_eq!(field("pinned", "items").rule, "pinned");
    assert_eq!(field("free", "items").role, FieldRole::Measurement);
    let mut pins = FieldRoles::new();
    pins.insert("amount".into(), FieldRole::Ignore);
    engine.set_field_roles("free", pins).unwrap();
    let info = engine.model_info("free").unwrap().unwrap();
    assert_eq!(info.reason, TrainReason::FieldRoles);
    assert!(
        !info.features.iter().any(|f| f.starts_with("amount")),
        "{:?}",
        info.features
    );
}

/// Records with thousands of distinct field names are scored, not an abort: the schema keeps its most frequent
/// fields up to the column cap and counts the rest.
#[test]
fn wide_records_are_capped() {
    let engine =
        Engine::in_memory(params().vectorizer(
            anomaly_core::records::vectorizer::VectorizerParams::new().max_columns(300),
        ))
        .unwrap();
    let mut n = 0;
    let batch = |n: &mut usize| -> Vec<Value> {
        (0..50)
            .map(|_| {
                let mut m = serde_json::Map::new();
                m.insert("kind".into(), json!("click"));
                for _ in 0..2_000 {
                    m.insert(format!("k{n}"), json!(1));
                    *n += 1;
                }
                Value::Object(m)
            })
            .collect()
    };
    engine.observe_batch("wide", &batch(&mut n)).unwrap();
    let report = engine.observe_batch("wide", &batch(&mut n)).unwrap();
    let model = report.model.unwrap();
    assert!(model.features.len() <= 300);
    assert!(model.left_out_fields > 99_000, "{}", model.left_out_fields);
    let outcome = engine.score("wide", &batch(&mut n)[0]).unwrap();
    assert!(outcome.verdict().is_some());
}

/// An outlier the range rule flagged is in the stored history, but a restored key does not take it for normal: the
/// rule still flags it after a restart.
#[test]
fn a_restored_baseline_leaves_the_outliers_out() {
    let store = Arc::new(InMemoryPersistence::new(10_000));
    let params = || params().drift(None).stale_growth(0.0);
    let far = json!({"amount": 1_000_000, "country": "FR", "express": false, "items": 2});
    {
        let engine = Engine::new(params(), store.clone()).unwrap();
        engine.observe_many("q", &orders(300, 50, 100.0)).unwrap();
        let outcome = engine.observe("q", &far).unwrap();
        assert!(outcome.verdict().unwrap().flagged_by.range_rule);
        engine.observe_many("q", &orders(100, 51, 100.0)).unwrap();
    }
    let engine = Engine::new(params(), store).unwrap();
    let after = engine.score("q", &far).unwrap();
    assert!(after.verdict().unwrap().flagged_by.range_rule, "{after:?}");
    let max = engine
        .statistics("q")
        .unwrap()
        .field("amount")
        .unwrap()
        .numeric
        .as_ref()
        .unwrap()
        .max;
    assert!(max < 1_000.0, "{max}");
}

/// Records with nothing to score (identifiers only) keep the key learning without a failed training per record.
#[test]
fn records_with_nothing_to_score_keep_learning() {
    let engine = Engine::in_memory(params()).unwrap();
    let records: Vec<Value> = (0..400)
        .map(|i| json!({"id": i + 1, "ref": format!("{i:08x}-1234-4abc-8def-0123456789ab")}))
        .collect();
    let outcomes = engine.observe_many("ids", &records).unwrap();
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Learning { .. }))
    );
    assert!(engine.model_info("ids").unwrap().is_none());
    assert_eq!(engine.stats("ids").unwrap().trainings, 0);
}

/// A field that is nearly always the same value is not flagged by the range rule for a small change.
#[test]
fn the_range_rule_is_not_fooled_by_a_nearly_constant_field() {
    let engine = Engine::in_memory(params().drift(None)).unwrap();
    let records: Vec<Value> = (0..300)
        .map(|i| json!({"quantity": if i % 50 == 0 { 5 } else { 1 }, "amount": 100 + i % 17}))
        .collect();
    engine.observe_many("q", &records).unwrap();
    let six = engine
        .score("q", &json!({"quantity": 6, "amount": 105}))
        .unwrap();
    assert!(!six.verdict().unwrap().flagged_by.range_rule, "{six:?}");
    let huge = engine
        .score("q", &json!({"quantity": 600, "amount": 105}))
        .unwrap();
    assert!(huge.verdict().unwrap().flagged_by.range_rule, "{huge:?}");
}

/// Roles pinned for one key survive its eviction and a restart, under a policy that pins nothing for it.
#[test]
fn pinned_roles_survive_eviction_and_restarts() {
    let store = Arc::new(InMemoryPersistence::new(10_000));
    let engine = || {
        Engine::new(params().drift(None).max_keys_in_memory(2), store.clone())
            .unwrap()
            .with_field_roles(|_| FieldRoles::new())
    };
    let first = engine();
    first.observe_many("a", &orders(150, 60, 100.0)).unwrap();
    let mut pins = FieldRoles::new();
    pins.insert("items".into(), FieldRole::Category);
    first.set_field_roles("a", pins).unwrap();
    for k in 0..5 {
        first
            .observe_many(&format!("other{k}"), &orders(5, 61, 100.0))
            .unwrap();
    }
    assert!(!first.holds("a"));
    let role = |e: &Engine| {
        e.model_info("a")
            .unwrap()
            .unwrap()
            .fields
            .into_iter()
            .find(|f| f.field == "items")
            .unwrap()
            .role
    };
    assert_eq!(role(&first), FieldRole::Category, "after eviction");
    first.train("a").unwrap();
    assert_eq!(
        role(&first),
        FieldRole::Category,
        "retrained after eviction"
    );
    drop(first);
    let second = engine();
    second.train("a").unwrap();
    assert_eq!(
        role(&second),
        FieldRole::Category,
        "retrained after a restart"
    );
}

#[test]
fn flagged_records_stay_out_of_training_unless_drift_makes_them_the_new_normal() {
    let engine = Engine::in_memory(
        EngineParams::new()
            .min_training_records(200)
            .retrain_every(50)
            .learn_flagged(false)
            .sensitivity(Contamination::Fraction(0.01))
            .forest(IsolationForestParams::new().seed(1))
            .drift(Some(DriftParams::new().window(150).check_every(10))),
    )
    .unwrap();
    let normal = orders(400, 5, 100.0);
    for r in &normal[..300] {
        engine.observe("k", r).unwrap();
    }
    let huge =
        |amount: f64| json!({"amount": amount, "country": "FR", "express": false, "items": 2});
    // An incident: every record flagged, none learnt, and the retrains that follow do not learn them either.
    let outcomes = engine
        .observe_many(
            "k",
            &(0..10)
                .map(|i| huge(5_000.0 + f64::from(i)))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    assert!(outcomes.iter().all(Outcome::is_anomaly));
    for r in &normal[300..] {
        engine.observe("k", r).unwrap();
    }
    let large = |h: &[Value]| {
        h.iter()
            .filter(|r| r["amount"].as_f64().unwrap() > 1_000.0)
            .count()
    };
    assert_eq!(large(&engine.history("k").unwrap()), 0);
    assert!(engine.stats("k").unwrap().trainings >= 3);
    assert!(engine.score("k", &huge(5_000.0)).unwrap().is_anomaly());

    // A change that lasts: flagged at first, then drift retrains on the held records, and the new level is normal.
    let shifted = orders(300, 6, 5_000.0);
    let outcomes: Vec<Outcome> = shifted
        .iter()
        .map(|r| engine.observe("k", r).unwrap())
        .collect();
    assert!(outcomes[0].is_anomaly());
    let versions = engine.persistence().model_versions("k").unwrap();
    assert!(
        versions
            .iter()
            .any(|m| m.metadata.metrics["reason"]["reason"] == "drift"),
        "no drift retrain"
    );
    assert!(large(&engine.history("k").unwrap()) > 150);
    let late = &outcomes[250..];
    assert!(
        late.iter().filter(|o| o.is_anomaly()).count() <= 5,
        "the new level is still flagged"
    );
}

#[test]
fn a_young_model_learns_a_change_that_is_flagged_for_a_whole_drift_window() {
    // 200 records: too few for a drift detector over windows of 150, so only the rule of a window flagged in a row
    // can learn the new level.
    let engine = Engine::in_memory(
        EngineParams::new()
            .min_training_records(200)
            .retrain_every(10_000)
            .learn_flagged(false)
            .sensitivity(Contamination::Fraction(0.01))
            .forest(IsolationForestParams::new().seed(2))
            .drift(Some(DriftParams::new().window(150).check_every(10))),
    )
    .unwrap();
    for r in &orders(200, 7, 100.0) {
        engine.observe("k", r).unwrap();
    }
    let shifted = orders(400, 8, 5_000.0);
    let outcomes: Vec<Outcome> = shifted
        .iter()
        .map(|r| engine.observe("k", r).unwrap())
        .collect();
    assert!(outcomes[..149].iter().all(Outcome::is_anomaly));
    let versions = engine.persistence().model_versions("k").unwrap();
    let reasons: Vec<&Value> = versions
        .iter()
        .map(|m| &m.metadata.metrics["reason"]["reason"])
        .collect();
    assert_eq!(reasons[1], "lasting_change", "{reasons:?}");
    assert!(outcomes[300..].iter().filter(|o| o.is_anomaly()).count() <= 5);

    // replace_history: exactly the records given, none scored.
    let chosen = orders(50, 9, 100.0);
    engine.replace_history("k", &chosen).unwrap();
    assert_eq!(engine.history("k").unwrap(), chosen);
    engine.train("k").unwrap();
    assert_eq!(engine.model_info("k").unwrap().unwrap().trained_on, 50);
    assert!(engine.replace_history("k", &[json!(3)]).is_err());
    assert_eq!(
        engine.history("k").unwrap().len(),
        50,
        "nothing replaced on a bad record"
    );
}
