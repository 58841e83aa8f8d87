#![allow(missing_docs)]
//! The record engine: JSON records vectorised and scored per second, one thread, with a trained model.
//!
//! Records have 10 fields of every kind the vectoriser handles (numbers, a numeric string, categories, a boolean, a
//! date/time string, a nested object, an array), as a GraphQL result row or a SQL row would. The model is trained
//! on 1,000 such records (100 trees); the benchmark then scores pre-built records through `Engine::score`, which is
//! the whole per-record path: key lookup, atomic model load, flattening, schema lookups, hashing, imputation and
//! 100 tree walks. `engine_score_many` scores the same records in one `Engine::score_many` call (vectors first, then
//! the forest in blocks). `engine_score_columns` scores them held as columns (`Engine::score_columns`, as a data
//! frame reaches the engine from Python: numbers as numbers, strings in Arrow's layout), and `vectorise` isolates
//! the vectoriser's share.

use std::hint::black_box;
use std::time::Duration;

use anomaly_benches::full_run;
use anomaly_core::IsolationForestParams;
use anomaly_core::engine::{Engine, EngineParams};
use anomaly_core::records::columns::{ColumnValues, RecordColumns};
use anomaly_core::records::flatten::{Leaf, Limits, flatten};
use anomaly_core::records::vectorizer::RecordNotes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

fn records(n: usize, seed: u64) -> Vec<Value> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let country = ["FR", "DE", "ES", "IT", "NL"][rng.random_range(0..5)];
            let status = ["paid", "shipped", "pending"][rng.random_range(0..3)];
            let tier = ["gold", "basic"][i % 2];
            json!({
                "amount": 100.0 + 20.0 * rng.random::<f64>(),
                "quantity": rng.random_range(1..10),
                "price": format!("{:.2}", 5.0 + rng.random::<f64>()),
                "country": country,
                "status": status,
                "express": rng.random::<f64>() < 0.2,
                "created_at": format!("2024-03-{:02}T{:02}:{:02}:00Z", 1 + i % 28, rng.random_range(0..24), i % 60),
                "customer": {"tier": tier, "age": rng.random_range(18..80)},
                "discount": rng.random::<f64>() * 5.0,
            })
        })
        .collect()
}

/// The leaves of `records` as one column per path, in first-seen order (null where a record lacks the path).
fn leaf_columns(records: &[Value]) -> Vec<(String, Vec<Leaf<'_>>)> {
    let mut columns: Vec<(String, Vec<Leaf<'_>>)> = Vec::new();
    for (row, r) in records.iter().enumerate() {
        for (path, leaf) in flatten(r, &Limits::default()).expect("flatten") {
            let c = match columns.iter().position(|(p, _)| *p == path) {
                Some(c) => c,
                None => {
                    columns.push((path.to_string(), vec![Leaf::Null; records.len()]));
                    columns.len() - 1
                }
            };
            columns[c].1[row] = leaf;
        }
    }
    columns
}

fn bench_records(c: &mut Criterion) {
    let n = if full_run() { 100_000 } else { 1_000 };
    let params = EngineParams::new()
        .min_training_records(1_000)
        .retrain_every(usize::MAX)
        .drift(None)
        .forest(IsolationForestParams::new().n_threads(Some(1)));
    let engine = Engine::in_memory(params).expect("engine");
    engine
        .observe_many("orders", &records(1_000, 1))
        .expect("train");
    let model = engine.model("orders").expect("readable").expect("trained");
    let probe = records(n, 2);

    let mut group = c.benchmark_group("records");
    group
        .throughput(Throughput::Elements(n as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::new("engine_score", n), |b| {
        b.iter(|| {
            for r in &probe {
                black_box(engine.score("orders", black_box(r)).expect("score"));
            }
        })
    });
    group.bench_function(BenchmarkId::new("engine_score_many", n), |b| {
        b.iter(|| {
            black_box(
                engine
                    .score_many("orders", black_box(&probe))
                    .expect("score many"),
            )
        })
    });
    // As a data frame reaches the engine from Python: numbers as columns of numbers, strings in Arrow's layout,
    // the rest (booleans here) as leaves.
    let leaves = leaf_columns(&probe);
    let number = |v: &Leaf<'_>| match v {
        Leaf::Number(x) => Some(*x),
        Leaf::Null => Some(f64::NAN),
        _ => None,
    };
    let text = |v: &Leaf<'_>| match v {
        Leaf::String(s) => Some(Some(s.to_string())),
        Leaf::Null => Some(None),
        _ => None,
    };
    let numbers: Vec<(&str, Vec<f64>)> = leaves
        .iter()
        .filter_map(|(p, l)| Some((p.as_str(), l.iter().map(number).collect::<Option<_>>()?)))
        .collect();
    let strings: Vec<(&str, String, Vec<i64>, Vec<bool>)> = leaves
        .iter()
        .filter_map(|(p, l)| {
            let values: Vec<Option<String>> = l.iter().map(text).collect::<Option<_>>()?;
            let mut joined = String::new();
            let mut offsets = vec![0_i64];
            for v in &values {
                joined.push_str(v.as_deref().unwrap_or(""));
                offsets.push(joined.len() as i64);
            }
            let nulls = values.iter().map(Option::is_none).collect();
            Some((p.as_str(), joined, offsets, nulls))
        })
        .collect();
    let mut columns = RecordColumns::new(n);
    for (path, values) in &numbers {
        columns
            .push(path, ColumnValues::Numbers(values))
            .expect("column");
    }
    for (path, text, offsets, nulls) in &strings {
        let values = ColumnValues::Strings {
            text,
            offsets,
            nulls,
        };
        columns.push(path, values).expect("column");
    }
    let typed: Vec<&str> = numbers
        .iter()
        .map(|c| c.0)
        .chain(strings.iter().map(|c| c.0))
        .collect();
    for (path, values) in leaves.iter().filter(|(p, _)| !typed.contains(&p.as_str())) {
        columns
            .push(path, ColumnValues::Leaves(values))
            .expect("column");
    }
    assert_eq!(
        engine.score_columns("orders", &columns).expect("columns"),
        engine.score_many("orders", &probe).expect("records"),
        "the columns score as their records"
    );
    group.bench_function(BenchmarkId::new("engine_score_columns", n), |b| {
        b.iter(|| {
            black_box(
                engine
                    .score_columns("orders", black_box(&columns))
                    .expect("score columns"),
            )
        })
    });
    group.bench_function(BenchmarkId::new("vectorise", n), |b| {
        let mut buf = Vec::new();
        let mut notes = RecordNotes::default();
        b.iter(|| {
            for r in &probe {
                model
                    .vectorizer()
                    .transform_into(black_box(r), &mut buf, &mut notes)
                    .expect("vectorise");
                black_box(&buf);
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_records);
criterion_main!(benches);
