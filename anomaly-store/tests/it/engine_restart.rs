//! The engine over a SQLite file survives a restart: models and history come back.

use std::sync::Arc;

use anomaly_core::engine::{Engine, EngineParams, Outcome, Persistence};
use anomaly_store::BlockingStore;
use serde_json::json;

fn params() -> EngineParams {
    EngineParams::new()
        .min_training_records(40)
        .retrain_every(10_000)
}

fn order(i: usize) -> serde_json::Value {
    let country = ["FR", "DE"][i % 2];
    json!({"amount": 100 + i % 20, "country": country, "express": i.is_multiple_of(3)})
}

#[test]
fn engine_on_a_sqlite_file_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("engine.db").display()
    );

    let (version, history) = {
        let store = Arc::new(BlockingStore::connect(&url, 1_000).unwrap());
        let engine = Engine::new(params(), store.clone()).unwrap();
        for i in 0..60 {
            engine.observe("orders", &order(i)).unwrap();
        }
        let info = engine
            .model_info("orders")
            .expect("trained after 40 records");
        assert_eq!(engine.stats("orders").persistence_failures, 0);
        assert_eq!(
            store.model_versions("orders").unwrap().len() as u64,
            info.version
        );
        (info.version, engine.history("orders"))
    };

    // A new process: a new store on the same file, a new engine.
    let store = Arc::new(BlockingStore::connect(&url, 1_000).unwrap());
    let engine = Engine::new(params(), store.clone()).unwrap();
    assert!(matches!(
        engine.score("orders", &order(3)).unwrap(),
        Outcome::Scored(_)
    ));
    assert_eq!(engine.model_info("orders").unwrap().version, version);
    let mut restored = engine.history("orders");
    let mut before = history;
    let sort = |v: &mut Vec<serde_json::Value>| v.sort_by_key(|r| r.to_string());
    sort(&mut restored);
    sort(&mut before);
    assert_eq!(restored, before);
    assert_eq!(store.keys().unwrap(), vec!["orders".to_string()]);
    let odd = json!({"amount": 99_812, "country": "KP", "express": false});
    assert!(engine.score("orders", &odd).unwrap().is_anomaly());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_store_from_async_code() {
    // The way async code uses it: spawn_blocking, and drop it there or anywhere (no runtime-in-runtime panic).
    let (store, history) = tokio::task::spawn_blocking(|| {
        let s = BlockingStore::in_memory(10).unwrap();
        s.append_history("k", &json!({"a": 1})).unwrap();
        let h = s.load_history("k", 10).unwrap();
        (s, h)
    })
    .await
    .unwrap();
    assert_eq!(history, vec![json!({"a": 1})]);
    // Called on a worker thread it stalls that worker for the call, but works.
    assert_eq!(store.keys().unwrap(), vec!["k".to_string()]);
    drop(store);
}

#[test]
fn invalid_data_reaches_the_engine_as_a_refusal_not_an_outage() {
    let store = BlockingStore::in_memory(10).unwrap();
    let long_key = "k".repeat(anomaly_store::MAX_KEY_CHARS + 1);
    let err = store
        .append_history_many(&long_key, &[json!({"a": 1})])
        .unwrap_err();
    assert!(
        matches!(err, anomaly_core::Error::PersistenceRefused { .. }),
        "{err:?}"
    );
}
