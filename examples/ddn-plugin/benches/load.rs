#![allow(missing_docs, clippy::print_stdout)]
//! Load generator on loopback: requests per second and p50/p99 latency of `POST /anomalies` for a 100-record
//! dataset with a trained model and the offline analyser, at a fixed arrival rate (open loop: requests are sent on
//! schedule whether or not earlier ones have answered, so a slow server shows up as latency, not as a lower rate).
//!
//! `cargo bench -p ddn-plugin --bench load` runs 500 requests/s for 10 s (`LOAD_RPS`, `LOAD_SECONDS` change that);
//! under `cargo test --benches` it runs a short smoke round. The report is printed; nothing is asserted on time.
//! The plugin runs with its defaults but for the database (an SQLite file of the run's own) and
//! `MINIMUM_TRAINING_RECORDS=100`; any other setting can be given in the environment.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ddn_plugin::Config;
use serde_json::{Value, json};

/// The allocator the `ddn-plugin` binary runs with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn full_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// 100 orders, deterministic, varied by `seed`.
fn orders(seed: u64) -> Vec<Value> {
    (0..100u64)
        .map(|i| {
            let k = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(i.wrapping_mul(1442695040888963407));
            let countries = ["US", "FR", "DE"];
            json!({
                "id": k % 1000,
                "amount": 20.0 + (k % 18_000) as f64 / 100.0,
                "quantity": 1 + (k >> 20) % 5,
                "country": countries[((k >> 30) % 3) as usize],
                "status": if (k >> 40).is_multiple_of(2) { "shipped" } else { "pending" },
            })
        })
        .collect()
}

fn body(seed: u64) -> String {
    json!({
        "session": {"role": "user", "variables": {"x-hasura-user-id": "42"}},
        "rawRequest": {"query": "query RecentOrders { orders(limit: 100) { id amount quantity country status } }", "operationName": "RecentOrders"},
        "response": {"data": {"orders": orders(seed)}}
    })
    .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let (rps, seconds) = if full_run() {
        (env_or("LOAD_RPS", 500), env_or("LOAD_SECONDS", 10))
    } else {
        (50, 1)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let vars: HashMap<&str, String> = HashMap::from([
            ("DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("load.db").display())),
            ("MINIMUM_TRAINING_RECORDS", "100".to_string()),
        ]);
        // Any other setting of the plugin (for example `MIN_RETRAIN_INTERVAL_SECONDS`) comes from the environment.
        let config = Config::from_lookup(|k| vars.get(k).cloned().or_else(|| std::env::var(k).ok()))
            .expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/anomalies", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(ddn_plugin::serve(config, listener, async {
            let _ = stopped.await;
        }));
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .expect("client");
        // Train: three calls of 100 records (the model exists after the first).
        for seed in 0..3 {
            let r = client.post(&url).header("content-type", "application/json").body(body(seed)).send().await;
            assert!(r.expect("training call").status().is_success());
        }
        let total = rps * seconds;
        let interval = Duration::from_secs_f64(1.0 / rps as f64);
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(total as usize);
        for n in 0..total {
            let due = started + interval * n as u32;
            tokio::time::sleep_until(due.into()).await;
            let (client, url, payload) = (client.clone(), url.clone(), body(100 + n));
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let answer = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(payload)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.text().await.ok(),
                    _ => None,
                };
                let elapsed = t.elapsed();
                // Degraded: answered, but with the store marked unavailable or a step skipped.
                let degraded = answer
                    .as_deref()
                    .is_some_and(|a| !a.contains(r#""store":"ok""#) || !a.contains(r#""skipped":[]"#));
                (elapsed, answer.is_some(), degraded)
            }));
        }
        let mut latencies = Vec::with_capacity(tasks.len());
        let (mut failed, mut degraded) = (0, 0);
        for t in tasks {
            let (d, ok, was_degraded) = t.await.expect("request task");
            degraded += usize::from(was_degraded);
            if ok {
                latencies.push(d);
            } else {
                failed += 1;
            }
        }
        let wall = started.elapsed();
        latencies.sort();
        println!(
            "ddn-plugin load: {} requests of 100 records at {rps}/s offered: {:.0} answered/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, {failed} failed, {degraded} degraded",
            total,
            latencies.len() as f64 / wall.as_secs_f64(),
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
        let _ = stop.send(());
        let _ = server.await;
    });
}
