#![allow(missing_docs)]
//! Anomaly inserts per second: `insert_anomalies` batches into a SQLite file and, when `TEST_PG_URL` is set, into
//! PostgreSQL.
//!
//! Each detection carries the context an audit needs (explanation, a buffer of 16 values, the raw record, the
//! config), a few hundred bytes of JSON, as the engine writes them. A batch is 10,000 detections under
//! `cargo bench` (the store writes them in one transaction, as multi-row `INSERT`s of 1,000), 100 under
//! `cargo test --benches` (criterion's test mode, which runs each benchmark once). Rows written to PostgreSQL go
//! under keys of this run's own and are removed afterwards with `cleanup_keys`.
//!
//! The detections are spread over [`KEYS`] keys (the queries or series a service watches) and are stamped like a
//! live service's: each batch is newer than the rows already written.

use std::hint::black_box;
use std::time::Duration;

use anomaly_store::{Anomaly, RetentionPolicy, SeaOrmStore, Store};
use chrono::{TimeZone, Utc};
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use serde_json::json;

/// Whether the binary measures (`cargo bench` passes `--bench`) rather than runs each benchmark once as a test;
/// criterion 0.8 picks its mode the same way.
fn full_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn batch_size() -> usize {
    if full_run() { 10_000 } else { 100 }
}

/// How many keys the detections are spread over.
const KEYS: usize = 16;

/// [`KEYS`] keys no other run uses.
fn unique_keys() -> Vec<String> {
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    (0..KEYS)
        .map(|k| format!("bench-inserts-{}-{nanos}-{k}", std::process::id()))
        .collect()
}

/// `n` detections, deterministic, round-robin over `keys`, one millisecond apart from `start` (the `start`-th
/// detection of the run) on: like a live store's, every batch is newer than the rows already written, so index
/// entries go to the end of each key's range instead of between the rows of earlier batches.
fn batch(keys: &[String], start: usize, n: usize) -> Vec<Anomaly> {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
        + chrono::Duration::milliseconds(start as i64);
    (0..n)
        .map(|i| {
            let amount = 100.0 + (i % 97) as f64 * 3.25;
            let score = 0.4 + (i % 50) as f64 / 100.0;
            Anomaly {
                key: keys[i % keys.len()].clone(),
                detector: "isolation_forest".into(),
                score,
                threshold: 0.6,
                is_anomaly: score > 0.6,
                rationale: format!("`amount` = {amount} is above the typical range [80, 250]"),
                explanation: json!({"attributions": [
                    {"feature": "amount", "weight": 0.71},
                    {"feature": "country=FR", "weight": 0.18},
                    {"feature": "express", "weight": 0.11},
                ]}),
                context: json!({
                    "query": "{ orders(last: 10) { id amount country } }",
                    "role": "analyst",
                    "user": format!("user-{}", i % 13),
                    "buffer": (0..16).map(|j| ((i + j) % 31) as f64 * 0.5).collect::<Vec<_>>(),
                    "record": {"amount": amount, "country": "FR", "express": i % 3 == 0},
                }),
                config: json!({"contamination": "auto", "trees": 100, "max_samples": 256}),
                model_version: Some(3),
                created_at: t0 + chrono::Duration::milliseconds(i as i64),
            }
        })
        .collect()
}

fn bench_store(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    name: &str,
    store: &dyn Store,
    keys: &[String],
) {
    let n = batch_size();
    let mut written = 0;
    let mut group = c.benchmark_group("anomaly_inserts");
    group
        .throughput(Throughput::Elements(n as u64))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function(BenchmarkId::new(name, n), |b| {
        // By reference: building and dropping the batch (its JSON trees) is the caller's cost, not the store's,
        // and stays outside the measured time.
        b.iter_batched_ref(
            || {
                written += n;
                batch(keys, written - n, n)
            },
            |rows| {
                rt.block_on(store.insert_anomalies(black_box(rows)))
                    .expect("insert anomalies")
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Removes every row of `keys`: limits of zero at a `now` after every timestamp written.
fn remove_keys(rt: &tokio::runtime::Runtime, store: &dyn Store, keys: &[String]) {
    let zero = RetentionPolicy {
        history: Duration::ZERO,
        anomalies: Duration::ZERO,
        models: Duration::ZERO,
    };
    let far = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    rt.block_on(store.cleanup_keys(&zero, far, Some(keys)))
        .expect("remove the benchmark's rows");
}

#[allow(clippy::print_stderr)]
fn bench_inserts(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let sqlite = rt
        .block_on(SeaOrmStore::connect(&url))
        .expect("sqlite file");
    bench_store(c, &rt, "sqlite_file", &sqlite, &unique_keys());

    match std::env::var("TEST_PG_URL") {
        Ok(url) => {
            let pg = rt
                .block_on(SeaOrmStore::connect(&url))
                .expect("TEST_PG_URL is set but the store cannot connect");
            let keys = unique_keys();
            bench_store(c, &rt, "postgres", &pg, &keys);
            remove_keys(&rt, &pg, &keys);
        }
        Err(_) => {
            eprintln!("SKIPPED anomaly_inserts/postgres: no database server (set TEST_PG_URL)")
        }
    }
}

criterion_group!(benches, bench_inserts);
criterion_main!(benches);
