//! Arbitrary bytes that parse as JSON, as records: scored and explained by an engine trained on synthetic orders,
//! then learnt by a fresh engine with a small model (an array is a batch of records, anything else one record).
//! Every call returns `Ok` or `Err`, never panics, aborts or hangs.
#![no_main]

use std::sync::LazyLock;

use anomaly_core::IsolationForestParams;
use anomaly_core::engine::{Engine, EngineParams};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

/// Records of one input, at most.
const MAX_RECORDS: usize = 64;

fn params() -> EngineParams {
    EngineParams::new()
        .min_training_records(8)
        .retrain_every(8)
        .forest(
            IsolationForestParams::new()
                .n_estimators(5)
                .n_threads(Some(1)),
        )
}

static TRAINED: LazyLock<Engine> = LazyLock::new(|| {
    let engine = Engine::in_memory(params()).expect("valid parameters");
    const COUNTRIES: [&str; 3] = ["FR", "DE", "ES"];
    let orders: Vec<Value> = (0..40)
        .map(|i| {
            json!({
                "amount": 10.0 + (i % 13) as f64,
                "country": COUNTRIES[i % 3],
                "paid": i % 5 != 0,
                "created_at": format!("2024-05-{:02}T10:00:00Z", 1 + i % 28),
                "customer": {"id": format!("c{i}"), "age_days": i * 7},
                "items": [1, 2, i],
            })
        })
        .collect();
    engine.observe_batch("orders", &orders).expect("training");
    engine
});

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let records: Vec<Value> = match value {
        Value::Array(items) => items.into_iter().take(MAX_RECORDS).collect(),
        other => vec![other],
    };
    for record in &records {
        let _ = TRAINED.score("orders", record);
        let _ = TRAINED.explain("orders", record);
    }
    let fresh = Engine::in_memory(params()).expect("valid parameters");
    let _ = fresh.observe_batch("k", &records);
    for record in &records {
        let _ = fresh.observe("k", record);
        let _ = fresh.explain("k", record);
    }
    let _ = fresh.train("k");
    let _ = fresh.model_info("k");
    let _ = fresh.statistics("k");
});
