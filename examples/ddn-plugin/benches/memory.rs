#![allow(missing_docs, clippy::print_stdout)]
//! Resident memory of the `ddn-plugin` process (its own binary, started here) under what used to grow it without
//! bound: many distinct queries (each a dataset of its own), and records with thousands of distinct field names.
//!
//! `cargo bench -p ddn-plugin --bench memory` sends 10,000 distinct queries of 20 records each (`MEMORY_QUERIES`
//! changes that) and, to a fresh process, two calls of 50 records with 9,999 distinct keys each; it prints the
//! plugin's resident memory (VmRSS) before and after, and how many datasets it holds. Under `cargo test --benches`
//! it runs a short smoke round. `DDN_PLUGIN_BIN` runs another build of the plugin; any plugin setting (such as
//! `MAX_KEYS_IN_MEMORY`) comes from the environment. Nothing is asserted on memory.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn full_run() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// The plugin process, killed on drop.
struct Plugin {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start() -> Plugin {
    let bin = std::env::var("DDN_PLUGIN_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_ddn-plugin").to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let child = Command::new(bin)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display()),
        )
        .env("LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the plugin starts");
    let plugin = Plugin {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let until = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("{}/health", plugin.base))
        .await
        .is_err()
    {
        assert!(Instant::now() < until, "the plugin did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    plugin
}

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn metric(plugin: &Plugin, name: &str) -> String {
    let text = reqwest::get(format!("{}/metrics", plugin.base))
        .await
        .and_then(|r| r.error_for_status())
        .expect("metrics")
        .text()
        .await
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or("n/a")
        .to_string()
}

fn orders(q: usize, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "id": q * 100 + i,
                "amount": 20.0 + ((q * 31 + i * 17) % 180) as f64,
                "quantity": 1 + (q + i) % 5,
                "country": (["US", "FR", "DE"][(q + i) % 3]),
                "status": if (q + i).is_multiple_of(2) { "shipped" } else { "pending" },
            })
        })
        .collect()
}

async fn post(client: &reqwest::Client, plugin: &Plugin, body: &Value) -> bool {
    client
        .post(format!("{}/anomalies", plugin.base))
        .json(body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn many_queries(queries: usize) {
    let plugin = start().await;
    let pid = plugin.child.id();
    let before = rss_mib(pid);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut failed = 0;
    let workers = 8;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (client, base) = (client.clone(), plugin.base.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for q in (w..queries).step_by(workers) {
                let body = json!({
                    "session": {"role": "user", "variables": {}},
                    "rawRequest": {"query": format!("query Q {{ orders(where: {{id: {{_eq: {q}}}}}) {{ id amount quantity country status }} }}")},
                    "response": {"data": {"orders": orders(q, 20)}}
                });
                let ok = client
                    .post(format!("{base}/anomalies"))
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                failed += usize::from(!ok);
            }
            failed
        }));
    }
    for t in tasks {
        failed += t.await.unwrap_or(1);
    }
    let after = rss_mib(pid);
    println!(
        "ddn-plugin memory, {queries} distinct queries of 20 records: RSS {before:.1} MiB at start, {after:.1} MiB after ({:.1} s, {failed} failed); datasets held {}, evicted {}",
        started.elapsed().as_secs_f64(),
        metric(&plugin, "ddn_plugin_keys_in_memory").await,
        metric(&plugin, "ddn_plugin_keys_evicted_total").await,
    );
}

async fn wide_records(keys: usize) {
    let plugin = start().await;
    let pid = plugin.child.id();
    let before = rss_mib(pid);
    let client = reqwest::Client::new();
    let mut next = 0usize;
    let mut answered = Vec::new();
    for _ in 0..2 {
        let records: Vec<Value> = (0..50)
            .map(|_| {
                let mut m = serde_json::Map::new();
                for _ in 0..keys {
                    m.insert(format!("k{next}"), json!(1));
                    next += 1;
                }
                Value::Object(m)
            })
            .collect();
        let body = json!({"rawRequest": {"query": "query Wide { events { payload } }"}, "response": {"data": {"events": records}}});
        answered.push(post(&client, &plugin, &body).await);
    }
    let alive = plugin_alive(&plugin).await;
    println!(
        "ddn-plugin memory, 2 calls of 50 records with {keys} distinct keys each: answered {answered:?}, alive after: {alive}, RSS {before:.1} MiB at start, {:.1} MiB after",
        rss_mib(pid)
    );
}

async fn plugin_alive(plugin: &Plugin) -> bool {
    reqwest::get(format!("{}/health", plugin.base))
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn main() {
    let (queries, keys) = if full_run() {
        let queries = std::env::var("MEMORY_QUERIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        (queries, 9_999)
    } else {
        (100, 500)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        many_queries(queries).await;
        wide_records(keys).await;
    });
}
