//! The record engine: learning, training, retraining, versioning, persistence and concurrency.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use anomaly_core::drift::DriftParams;
use anomaly_core::engine::{
    Engine, EngineParams, InMemoryPersistence, ModelMeta, Outcome, Persistence, StoredModel,
    TrainReason,
};
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
    let info = engine.model_info("q").unwrap();
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
fn retrains_after_new_records_with_a_new_version() {
    let engine = Engine::in_memory(params().retrain_every(200)).unwrap();
    engine.observe_many("q", &orders(100, 3, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().version, 1);
    engine.observe_many("q", &orders(199, 4, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().version, 1);
    engine.observe("q", &orders(1, 5, 100.0)[0]).unwrap();
    let info = engine.model_info("q").unwrap();
    assert_eq!(
        (info.version, info.trained_on, info.reason),
        (2, 300, TrainReason::NewRecords)
    );
    let versions = engine.persistence().model_versions("q").unwrap();
    assert_eq!(
        versions.iter().map(|m| m.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(engine.stats("q").trainings, 2);
}

#[test]
fn automatic_retrains_wait_for_the_minimum_interval() {
    let engine = Engine::in_memory(
        params()
            .retrain_every(100)
            .min_retrain_interval(std::time::Duration::from_secs(2)),
    )
    .unwrap();
    engine.observe_many("q", &orders(100, 3, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().version,
        1,
        "the first model is not held back"
    );
    // Ten retrains' worth of records at once: none before the interval has passed.
    engine.observe_many("q", &orders(1_000, 4, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().version, 1);
    std::thread::sleep(std::time::Duration::from_millis(2_100));
    engine.observe("q", &orders(1, 5, 100.0)[0]).unwrap();
    let info = engine.model_info("q").unwrap();
    assert_eq!((info.version, info.reason), (2, TrainReason::NewRecords));
    engine.observe_many("q", &orders(500, 6, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().version,
        2,
        "the interval starts again"
    );
    // A requested retrain is not limited.
    engine.train("q").unwrap();
    assert_eq!(engine.model_info("q").unwrap().version, 3);
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
    let stats = engine.stats("q");
    assert_eq!((stats.history, stats.seen), (500, 5_000));
    let kept: Vec<i64> = engine
        .history("q")
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
    assert_eq!(
        second.score("q", &probe).unwrap(),
        before,
        "same model version, same bits"
    );
    assert_eq!(second.stats("q").history, 300);
    assert_eq!(second.model_info("q").unwrap().version, 1);
}

#[test]
fn scoring_continues_on_the_old_model_during_a_retrain() {
    let engine = Arc::new(
        Engine::in_memory(
            params()
                .forest(IsolationForestParams::new().n_estimators(300))
                .max_history(200_000)
                .retrain_every(1_000_000)
                .drift(None),
        )
        .unwrap(),
    );
    engine.observe_many("q", &orders(30_000, 7, 100.0)).unwrap();
    assert_eq!(engine.model_info("q").unwrap().version, 1);
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
        let s = engine.stats(key);
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
    let engine = Engine::in_memory(params()).unwrap();
    let data = orders(400, 8, 100.0);
    engine.observe_many("a", &data).unwrap();
    engine.observe_many("b", &data).unwrap();
    engine
        .set_sensitivity("a", Contamination::Fraction(0.1))
        .unwrap();
    let (a, b) = (
        engine.model_info("a").unwrap(),
        engine.model_info("b").unwrap(),
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
    assert_eq!(engine.model_info("q").unwrap().version, 1);
    // The same distribution: no retrain.
    engine.observe_many("q", &orders(1_000, 10, 100.0)).unwrap();
    assert_eq!(
        engine.model_info("q").unwrap().version,
        1,
        "no drift on the same distribution"
    );
    // A level shift of amounts: drift, and a retrain that says why.
    engine.observe_many("q", &orders(1_000, 11, 160.0)).unwrap();
    let info = engine.model_info("q").unwrap();
    assert!(info.version >= 2);
    let versions = engine.persistence().model_versions("q").unwrap();
    assert!(
        versions
            .iter()
            .any(|m| m.metrics["reason"]["reason"] == "drift"),
        "{:?}",
        versions.iter().map(|m| &m.metrics).collect::<Vec<_>>()
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
    assert_eq!(engine.stats("q").history, 0);
}

/// Persistence that always fails, as a database that is down.
struct Down;

impl Persistence for Down {
    fn append_history(&self, _: &str, _: &Value) -> anomaly_core::Result<()> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
    fn load_history(&self, _: &str, _: usize) -> anomaly_core::Result<Vec<Value>> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
    fn clear_history(&self, _: &str) -> anomaly_core::Result<usize> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
    fn save_model(&self, _: &str, _: &ModelMeta, _: &[u8]) -> anomaly_core::Result<u64> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
    fn load_model(&self, _: &str, _: Option<u64>) -> anomaly_core::Result<Option<StoredModel>> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
    fn model_versions(&self, _: &str) -> anomaly_core::Result<Vec<ModelMeta>> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
    fn keys(&self) -> anomaly_core::Result<Vec<String>> {
        Err(Error::Persistence {
            reason: "connection refused".into(),
        })
    }
}

#[test]
fn a_failing_store_does_not_stop_detection() {
    let engine = Engine::new(params(), Arc::new(Down)).unwrap();
    let outcomes = engine.observe_many("q", &orders(150, 12, 100.0)).unwrap();
    assert!(
        outcomes.last().unwrap().verdict().is_some(),
        "trained and scoring in memory"
    );
    let s = engine.stats("q");
    assert!(s.persistence_failures >= 150, "{s:?}");
    assert_eq!(engine.model_info("q").unwrap().version, 1);
}

#[test]
fn load_keeps_no_key_it_cannot_read_and_loads_stored_keys() {
    let down = Engine::new(params(), Arc::new(Down)).unwrap();
    assert!(matches!(down.load("q"), Err(Error::Persistence { .. })));
    assert!(
        down.keys().is_empty(),
        "the key is not kept: the next call tries again"
    );

    let store = Arc::new(InMemoryPersistence::new(10_000));
    let first = Engine::new(params(), store.clone()).unwrap();
    first.observe_many("q", &orders(150, 12, 100.0)).unwrap();
    let second = Engine::new(params(), store).unwrap();
    assert!(second.load("q").unwrap(), "loaded now");
    assert!(!second.load("q").unwrap(), "held already");
    assert_eq!(second.model_info("q").unwrap().version, 1);
    assert_eq!(second.stats("q").history, 150);
}

/// In-memory persistence that counts how history reaches it.
#[derive(Default)]
struct Counting {
    inner: InMemoryPersistence,
    single: AtomicUsize,
    batched: AtomicUsize,
}

impl Persistence for Counting {
    fn append_history(&self, key: &str, record: &Value) -> anomaly_core::Result<()> {
        self.single.fetch_add(1, Ordering::Relaxed);
        self.inner.append_history(key, record)
    }
    fn append_history_many(&self, key: &str, records: &[Value]) -> anomaly_core::Result<()> {
        self.batched.fetch_add(1, Ordering::Relaxed);
        records
            .iter()
            .try_for_each(|r| self.inner.append_history(key, r))
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
        meta: &ModelMeta,
        snapshot: &[u8],
    ) -> anomaly_core::Result<u64> {
        self.inner.save_model(key, meta, snapshot)
    }
    fn load_model(
        &self,
        key: &str,
        version: Option<u64>,
    ) -> anomaly_core::Result<Option<StoredModel>> {
        self.inner.load_model(key, version)
    }
    fn model_versions(&self, key: &str) -> anomaly_core::Result<Vec<ModelMeta>> {
        self.inner.model_versions(key)
    }
    fn keys(&self) -> anomaly_core::Result<Vec<String>> {
        self.inner.keys()
    }
}

#[test]
fn observe_many_persists_its_records_in_one_call() {
    // The engine holds an `Arc<dyn Persistence>`; the batched call must reach the store's own implementation, not
    // the trait's one-by-one default through the `Arc` forwarding impl.
    let store = Arc::new(Counting::default());
    let engine = Engine::new(params(), store.clone()).unwrap();
    engine.observe_many("q", &orders(250, 7, 100.0)).unwrap();
    engine.observe("q", &orders(1, 8, 100.0)[0]).unwrap();
    assert_eq!(store.batched.load(Ordering::Relaxed), 2);
    assert_eq!(store.single.load(Ordering::Relaxed), 0);
    assert_eq!(store.load_history("q", 1_000).unwrap().len(), 251);
    // Through a second `Arc` layer as well.
    let layered: Arc<dyn Persistence> = Arc::new(store.clone() as Arc<dyn Persistence>);
    layered
        .append_history_many("r", &orders(3, 9, 100.0))
        .unwrap();
    assert_eq!(store.batched.load(Ordering::Relaxed), 3);
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
        if let Some(info) = engine.model_info("q")
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
    assert_eq!(engine.model_info("q").unwrap().version, 1);
    // The retrain that the next hundred make due runs on the pool; scoring goes on meanwhile.
    let outcomes = engine.observe_many("q", &records[100..]).unwrap();
    assert!(outcomes.iter().all(|o| o.verdict().is_some()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while engine.model_info("q").unwrap().version < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the background retrain never finished"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let info = engine.model_info("q").unwrap();
    assert_eq!(
        (info.version, info.trained_on, info.reason),
        (2, 200, TrainReason::NewRecords)
    );
    assert_eq!(engine.persistence().model_versions("q").unwrap().len(), 2);
}
