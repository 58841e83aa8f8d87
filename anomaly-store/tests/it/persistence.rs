//! The engine's persistence conformance suite: every implementation of [`Persistence`] (the engine's in-memory one,
//! the in-memory store, SQLite, PostgreSQL and MariaDB), bare and behind a [`WriteBehind`], keeps the same contract,
//! and an engine over it survives a restart.

use std::sync::Arc;
use std::time::Duration;

use anomaly_core::Error;
use anomaly_core::engine::{
    Engine, EngineParams, InMemoryPersistence, ModelMetadata, Persistence, WriteBehind,
};
use anomaly_store::{InMemoryStore, SeaOrmStore};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::backends::{MAX_HISTORY, url_from_env};

/// A prefix no other run shares (the database servers are shared between runs and tests).
fn run_prefix(test: &str) -> String {
    format!(
        "{test}-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

fn metadata(records: u64) -> ModelMetadata {
    ModelMetadata {
        records_trained_on: records,
        features: vec!["amount".into(), "amount.missing".into()],
        // Microseconds: what every backend keeps.
        trained_at: DateTime::from_timestamp_micros(1_767_225_600_123_456).unwrap(),
        metrics: json!({"threshold": 0.61, "reason": {"reason": "first_model"}}),
    }
}

fn records(from: i64, n: i64) -> Vec<Value> {
    (from..from + n)
        .map(|i| json!({"i": i, "amount": 100.5 + i as f64, "tag": format!("r-{i}")}))
        .collect()
}

/// The contract, on keys under `prefix`.
fn contract(p: &dyn Persistence, prefix: &str) {
    let k = |name: &str| format!("{prefix}:{name}");
    p.probe().expect("a live store answers a probe");

    // History: in order, the most recent `limit`, capped at the store's history size.
    p.append_history(&k("h"), &records(0, 3)).unwrap();
    p.append_history(&k("h"), &[]).unwrap();
    assert_eq!(p.load_history(&k("h"), 100).unwrap(), records(0, 3));
    assert_eq!(p.load_history(&k("h"), 2).unwrap(), records(1, 2));
    p.append_history(&k("h"), &records(3, 12)).unwrap();
    assert_eq!(
        p.load_history(&k("h"), 100).unwrap(),
        records(15 - MAX_HISTORY as i64, MAX_HISTORY as i64),
        "the oldest beyond the cap are dropped"
    );
    assert!(p.load_history(&k("none"), 10).unwrap().is_empty());

    // Clearing one key leaves the others.
    p.append_history(&k("other"), &records(0, 2)).unwrap();
    assert_eq!(p.clear_history(&k("h")).unwrap(), MAX_HISTORY as usize);
    assert!(p.load_history(&k("h"), 100).unwrap().is_empty());
    assert_eq!(p.load_history(&k("other"), 100).unwrap().len(), 2);
    assert_eq!(p.clear_history(&k("none")).unwrap(), 0);

    // Model versions: numbered from 1, the latest by default, metadata and snapshot bytes as written.
    assert!(p.load_model(&k("m"), None).unwrap().is_none());
    assert!(p.model_versions(&k("m")).unwrap().is_empty());
    let snapshot: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    assert_eq!(
        p.save_model(&k("m"), "record_model", &metadata(100), b"first")
            .unwrap(),
        1
    );
    assert_eq!(
        p.save_model(&k("m"), "record_model", &metadata(400), &snapshot)
            .unwrap(),
        2
    );
    let latest = p.load_model(&k("m"), None).unwrap().unwrap();
    assert_eq!(latest.info.version, 2);
    assert_eq!(latest.info.key, k("m"));
    assert_eq!(latest.info.kind, "record_model");
    assert_eq!(latest.info.metadata, metadata(400));
    assert_eq!(latest.snapshot, snapshot);
    let first = p.load_model(&k("m"), Some(1)).unwrap().unwrap();
    assert_eq!(
        (first.info.version, first.snapshot.as_slice()),
        (1, &b"first"[..])
    );
    assert!(p.load_model(&k("m"), Some(9)).unwrap().is_none());
    let versions = p.model_versions(&k("m")).unwrap();
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(versions[0].saved_at <= versions[1].saved_at);

    // Keys: sorted, with history or models.
    let keys: Vec<String> = p
        .keys()
        .unwrap()
        .into_iter()
        .filter(|key| key.starts_with(prefix))
        .collect();
    assert_eq!(keys, [k("m"), k("other")]);

    // What a store will never take is a refusal, not an outage.
    let long = "k".repeat(anomaly_store::MAX_KEY_CHARS + 1);
    if let Err(e) = p.append_history(&long, &records(0, 1)) {
        assert!(matches!(e, Error::PersistenceRefused { .. }), "{e:?}");
    }

    // Writers on several threads: every record lands once.
    std::thread::scope(|s| {
        for t in 0..4 {
            let key = k(&format!("t{t}"));
            s.spawn(move || {
                for i in 0..5 {
                    p.append_history(&key, &records(i * 2, 2)).unwrap();
                }
            });
        }
    });
    for t in 0..4 {
        assert_eq!(
            p.load_history(&k(&format!("t{t}")), 100).unwrap(),
            records(0, 10)
        );
    }
}

/// An engine over the persistence, then another over the same one: the model and history come back, scores too.
fn engine_restart(p: Arc<dyn Persistence>, prefix: &str) {
    let params = || {
        EngineParams::new()
            .min_training_records(8)
            .max_history(MAX_HISTORY as usize)
            .drift(None)
    };
    let key = format!("{prefix}:engine");
    let data: Vec<Value> = (0..MAX_HISTORY as i64)
        .map(|i| json!({"amount": 100 + i % 5, "country": (["FR", "DE"][i as usize % 2])}))
        .collect();
    let probe = json!({"amount": 10_000, "country": "KP"});
    let (version, score) = {
        let engine = Engine::new(params(), p.clone()).unwrap();
        engine.observe_many(&key, &data).unwrap();
        let info = engine.model_info(&key).unwrap().expect("trained");
        assert_eq!(engine.stats(&key).unwrap().persistence_failures, 0);
        (info.version, engine.score(&key, &probe).unwrap())
    };
    let engine = Engine::new(params(), p).unwrap();
    assert_eq!(engine.model_info(&key).unwrap().unwrap().version, version);
    assert_eq!(engine.history(&key).unwrap().len(), data.len());
    assert_eq!(
        engine.score(&key, &probe).unwrap(),
        score,
        "the same model, the same bits"
    );
}

fn run(p: Arc<dyn Persistence>, name: &str) {
    let prefix = run_prefix(name);
    contract(p.as_ref(), &prefix);
    engine_restart(p.clone(), &prefix);
    // The same behind a WriteBehind: reads see pending records, so nothing changes for the engine.
    let buffered: Arc<dyn Persistence> =
        Arc::new(WriteBehind::new(p, MAX_HISTORY as usize, Duration::from_millis(5)).unwrap());
    let prefix = run_prefix(&format!("{name}-buffered"));
    contract(buffered.as_ref(), &prefix);
    engine_restart(buffered, &prefix);
}

#[test]
fn engine_in_memory() {
    run(
        Arc::new(InMemoryPersistence::new(MAX_HISTORY as usize)),
        "engine-in-memory",
    );
}

#[test]
fn in_memory_store() {
    run(Arc::new(InMemoryStore::new(MAX_HISTORY)), "in-memory-store");
}

#[test]
fn sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    run(
        Arc::new(SeaOrmStore::connect_blocking(&url, MAX_HISTORY).unwrap()),
        "sqlite",
    );
}

#[test]
fn postgres() {
    let Some(url) = url_from_env("TEST_PG_URL", "persistence::postgres") else {
        return;
    };
    run(
        Arc::new(SeaOrmStore::connect_blocking(&url, MAX_HISTORY).unwrap()),
        "postgres",
    );
}

#[test]
fn mariadb() {
    let Some(url) = url_from_env("TEST_MYSQL_URL", "persistence::mariadb") else {
        return;
    };
    run(
        Arc::new(SeaOrmStore::connect_blocking(&url, MAX_HISTORY).unwrap()),
        "mariadb",
    );
}

/// A store that cannot be reached at start-up: every call fails with an outage (not a refusal) until it answers.
#[test]
fn a_lazy_store_that_cannot_connect_fails_as_an_outage() {
    let lazy = SeaOrmStore::lazy(
        "postgres://nobody@127.0.0.1:1/none",
        Duration::from_millis(200),
        MAX_HISTORY,
        Duration::from_secs(60),
    )
    .unwrap();
    for result in [
        lazy.probe().map(|_| ()),
        lazy.load_history("k", 1).map(|_| ()),
        lazy.append_history("k", &records(0, 1)),
    ] {
        assert!(
            matches!(result, Err(Error::Persistence { .. })),
            "{result:?}"
        );
    }
}
