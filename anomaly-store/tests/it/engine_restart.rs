//! The engine over a SQLite file survives a restart: models and history come back.

use std::sync::Arc;

use anomaly_core::engine::{Engine, EngineParams, Outcome, Persistence};
use anomaly_store::SeaOrmStore;
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
        let store = Arc::new(SeaOrmStore::connect_blocking(&url, 1_000).unwrap());
        let engine = Engine::new(params(), store.clone()).unwrap();
        for i in 0..60 {
            engine.observe("orders", &order(i)).unwrap();
        }
        let info = engine
            .model_info("orders")
            .unwrap()
            .expect("trained after 40 records");
        assert_eq!(engine.stats("orders").unwrap().persistence_failures, 0);
        assert_eq!(
            Persistence::model_versions(store.as_ref(), "orders")
                .unwrap()
                .len() as u64,
            info.version
        );
        (info.version, engine.history("orders").unwrap())
    };

    // A new process: a new store on the same file, a new engine.
    let store = Arc::new(SeaOrmStore::connect_blocking(&url, 1_000).unwrap());
    let engine = Engine::new(params(), store.clone()).unwrap();
    assert!(matches!(
        engine.score("orders", &order(3)).unwrap(),
        Outcome::Scored(_)
    ));
    assert_eq!(
        engine.model_info("orders").unwrap().unwrap().version,
        version
    );
    let mut restored = engine.history("orders").unwrap();
    let mut before = history;
    let sort = |v: &mut Vec<serde_json::Value>| v.sort_by_key(|r| r.to_string());
    sort(&mut restored);
    sort(&mut before);
    assert_eq!(restored, before);
    assert_eq!(
        Persistence::keys(store.as_ref()).unwrap(),
        vec!["orders".to_string()]
    );
    let odd = json!({"amount": 99_812, "country": "KP", "express": false});
    assert!(engine.score("orders", &odd).unwrap().is_anomaly());
}
