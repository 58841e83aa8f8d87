//! Open-loop load on a running log-analyzer: `--rate` single-line requests per second to `/analyze-log` for
//! `--seconds`, each sent on schedule whatever the previous ones did (so a slow answer shows in the percentiles
//! instead of slowing the load), lines drawn in turn from `--lines FILE` (default: synthetic web-service lines);
//! then `--batches` calls of `/analyze-batch` with `--batch-size` lines each, one after the other. Prints the
//! latency percentiles as JSON.
//!
//! ```sh
//! cargo run --release -p log-analyzer &               # the service on :5000
//! cargo run --release -p log-analyzer --example load -- --rate 1000 --seconds 20
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(default)
}

fn percentiles(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    json!({"count": ms.len(), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0)})
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url: String = arg(&args, "--url", "http://127.0.0.1:5000".to_string());
    let rate: u64 = arg(&args, "--rate", 1_000);
    let seconds: u64 = arg(&args, "--seconds", 10);
    let batches: usize = arg(&args, "--batches", 20);
    let batch_size: usize = arg(&args, "--batch-size", 1_000);
    let lines: Vec<String> = match args.iter().position(|a| a == "--lines").and_then(|i| args.get(i + 1)) {
        Some(path) => std::fs::read_to_string(path).expect("lines file").lines().map(String::from).collect(),
        None => (0..10_000)
            .map(|i| {
                format!(
                    "2026-12-01T12:{:02}:{:02}Z INFO api: GET /orders/{} 200 in {} ms from 10.0.{}.{}",
                    i / 60 % 60,
                    i % 60,
                    i,
                    20 + i % 37,
                    i % 7,
                    i % 200
                )
            })
            .collect(),
    };
    let lines = Arc::new(lines);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(256)
        .build()
        .expect("client");
    let total = rate * seconds;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (client, url, lines) = (client.clone(), url.clone(), lines.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({"log_id": i, "log_text": lines[i as usize % lines.len()]});
            let r = client
                .post(format!("{url}/analyze-log"))
                .json(&body)
                .send()
                .await;
            let ok = matches!(&r, Ok(r) if r.status().is_success());
            // Latency from the scheduled time: a request sent late counts its wait.
            (ok, due.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut single = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (ok, ms) = t.await.expect("task");
        if ok {
            single.push(ms);
        } else {
            failed += 1;
        }
    }
    let achieved = total as f64 / started.elapsed().as_secs_f64();
    let mut batch = Vec::new();
    for b in 0..batches {
        let body: Vec<Value> = (0..batch_size)
            .map(|k| json!({"log_id": k, "log_text": lines[(b * batch_size + k) % lines.len()]}))
            .collect();
        let t = Instant::now();
        let r = client
            .post(format!("{url}/analyze-batch"))
            .json(&body)
            .send()
            .await
            .expect("batch");
        assert!(r.status().is_success(), "batch answered {}", r.status());
        r.bytes().await.expect("batch body");
        batch.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let report = json!({
        "analyze_log": {"rate": rate, "achieved_rate": achieved, "failed": failed, "latency": percentiles(single)},
        "analyze_batch": {"lines": batch_size, "latency": percentiles(batch)},
    });
    println!("{report}");
}
