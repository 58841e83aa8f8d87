//! The performance figures of the closing note, against a real MariaDB (or PostgreSQL) server:
//!
//! 1. one fetch-and-score run of 100,000 new rows (10 series), rows stored in the application's database (SQLite
//!    by default), timed end to end through `POST …/fetch/`; then an incremental run of 10,000 more;
//! 2. 100 sources on a short interval with the scheduler on, while a writer adds a row to each every second:
//!    every source must be fetched once per interval (the gaps between a source's runs are reported).
//!
//! ```sh
//! cargo run --release -p sql-watcher --example bench -- mysql://root@127.0.0.1:3306/test [interval_s] [seconds]
//! ```

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};

const ROWS: u64 = 100_000;
const SERIES: u64 = 10;
const SOURCES: u64 = 100;

fn noise(i: u64) -> f64 {
    let mut z = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

fn ts(i: u64) -> String {
    DateTime::from_timestamp(1_790_000_000 + i as i64, 0)
        .unwrap()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

async fn insert_rows(db: &DatabaseConnection, table: &str, from: u64, to: u64) {
    let ids: Vec<u64> = (from..to).collect();
    for chunk in ids.chunks(2_000) {
        let values: Vec<String> = chunk
            .iter()
            .map(|&i| {
                let spike = i % 997 == 0;
                format!(
                    "({i}, '{}', 'host-{}', {}, {}, {}, '{}')",
                    ts(i),
                    i % SERIES,
                    if spike { 0.99 } else { 0.4 + 0.05 * noise(i) },
                    if spike {
                        900.0
                    } else {
                        100.0 + 10.0 * noise(i + 7)
                    },
                    (i * 7) % 500,
                    if i % 3 == 0 { "GET" } else { "POST" }
                )
            })
            .collect();
        db.execute_unprepared(&format!(
            "INSERT INTO {table} (id, ts, host, cpu, latency, bytes, method) VALUES {}",
            values.join(",")
        ))
        .await
        .unwrap();
    }
}

async fn create_table(db: &DatabaseConnection, table: &str, mysql: bool) {
    db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
        .await
        .unwrap();
    let (ts_type, text) = if mysql {
        ("DATETIME(6)", "VARCHAR(32)")
    } else {
        ("TIMESTAMP", "TEXT")
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE {table} (id BIGINT PRIMARY KEY, ts {ts_type} NOT NULL, host {text} NOT NULL, \
         cpu DOUBLE PRECISION NOT NULL, latency DOUBLE PRECISION NOT NULL, bytes BIGINT NOT NULL, method {text} NOT NULL)"
    ))
    .await
    .unwrap();
    db.execute_unprepared(&format!("CREATE INDEX {table}_ts ON {table} (ts)"))
        .await
        .unwrap();
}

struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Token {}", self.token));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

fn fields(url: &str) -> Value {
    let rest = url.split_once("://").unwrap().1;
    let (auth, hostpath) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, name) = hostpath.split_once('/').unwrap_or((hostpath, ""));
    let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, ""));
    json!({"host": host, "port": port, "name": name, "user": user, "password": password})
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "mysql://root@127.0.0.1:3306/test".into());
    let interval: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let seconds: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(60);
    let mysql = url.starts_with("mysql");
    let engine = if mysql { "mysql" } else { "postgres" };
    let watched = Database::connect(&url).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("SQL_WATCHER_DATA", dir.path().display().to_string()),
        ("SCHEDULER", "true".to_string()),
        ("MIN_FETCH_INTERVAL_SECONDS", "1".to_string()),
        ("LOG_LEVEL", "warn".to_string()),
    ];
    let config = sql_watcher::Config::from_lookup(|n| {
        vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = tokio::spawn(sql_watcher::serve(config.clone(), listener, async move {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let db = sql_watcher::db::Db::connect(&config.database_url, Duration::from_secs(5))
        .await
        .unwrap();
    let (_, token) = sql_watcher::accounts::create_user(&db, "bench", "a long password", 20)
        .await
        .unwrap();
    let c = Client {
        base,
        token,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap(),
    };

    // 1. 100,000 new rows in one run.
    let big = "sw_bench_rows";
    create_table(&watched, big, mysql).await;
    insert_rows(&watched, big, 0, ROWS).await;
    let mut body = fields(&url);
    body["alias"] = json!("big");
    body["engine"] = json!(engine);
    body["sql"] = json!(format!("SELECT * FROM {big}"));
    body["timestamp_column"] = json!("ts");
    body["series_columns"] = json!(["host"]);
    body["sensitivity"] = json!(0.001);
    body["fetch_interval_seconds"] = json!(86_400);
    let src = c
        .call(
            reqwest::Method::POST,
            "/detect/api/datasources/",
            Some(body),
        )
        .await;
    let id = src["id"].as_i64().unwrap();
    let clock = Instant::now();
    let run = c
        .call(
            reqwest::Method::POST,
            &format!("/detect/api/datasources/{id}/fetch/"),
            None,
        )
        .await;
    let took = clock.elapsed();
    println!(
        "backfill: {} rows, {} anomalies, {:.2} s end to end ({} ms in the run), {:.0} rows/s",
        run["rows"],
        run["anomalies"],
        took.as_secs_f64(),
        run["duration_ms"],
        run["rows"].as_f64().unwrap() / took.as_secs_f64()
    );
    insert_rows(&watched, big, ROWS, ROWS + 10_000).await;
    let clock = Instant::now();
    let run = c
        .call(
            reqwest::Method::POST,
            &format!("/detect/api/datasources/{id}/fetch/"),
            None,
        )
        .await;
    println!(
        "incremental: {} rows, {} anomalies, {:.2} s",
        run["rows"],
        run["anomalies"],
        clock.elapsed().as_secs_f64()
    );
    let anomalies = c
        .call(
            reqwest::Method::GET,
            "/detect/api/anomalies/?page_size=1",
            None,
        )
        .await;
    println!("flagged so far: {}", anomalies["count"]);

    // 2. 100 sources on an interval, a row each per second.
    let small = "sw_bench_small";
    create_table(&watched, small, mysql).await;
    let mut ids = Vec::new();
    for k in 0..SOURCES {
        let mut body = fields(&url);
        body["alias"] = json!(format!("s{k}"));
        body["engine"] = json!(engine);
        body["sql"] = json!(format!(
            "SELECT * FROM {small} WHERE bytes % {SOURCES} = {k}"
        ));
        body["timestamp_column"] = json!("ts");
        body["fetch_interval_seconds"] = json!(interval);
        let s = c
            .call(
                reqwest::Method::POST,
                "/detect/api/datasources/",
                Some(body),
            )
            .await;
        ids.push(s["id"].as_i64().unwrap());
    }
    let started = Utc::now();
    let writer = {
        let watched = watched.clone();
        tokio::spawn(async move {
            let mut next = 1_000_000u64;
            loop {
                // bytes = (i * 7) % 500: 100 consecutive ids touch every source's `bytes % 100`.
                insert_rows(&watched, small, next, next + SOURCES * 5).await;
                next += SOURCES * 5;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    writer.abort();
    let mut gaps = Vec::new();
    let mut runs_per_source = Vec::new();
    let mut durations = Vec::new();
    for id in &ids {
        let runs = c
            .call(
                reqwest::Method::GET,
                &format!("/detect/api/datasources/{id}/runs/"),
                None,
            )
            .await;
        let mut times: Vec<DateTime<Utc>> = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["started_at"]
                    .as_str()
                    .unwrap()
                    .parse::<DateTime<Utc>>()
                    .unwrap()
                    >= started
            })
            .map(|r| {
                durations.push(r["duration_ms"].as_u64().unwrap());
                assert!(r["error"].is_null(), "{r}");
                r["started_at"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        times.sort();
        runs_per_source.push(times.len());
        gaps.extend(
            times
                .windows(2)
                .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0),
        );
    }
    gaps.sort_by(f64::total_cmp);
    durations.sort_unstable();
    let q = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p) as usize];
    println!(
        "{SOURCES} sources every {interval} s for {seconds} s: runs per source min {} max {} (expected about {}); \
         gap between a source's runs p50 {:.2} s, p99 {:.2} s, max {:.2} s; run duration p50 {} ms, p99 {} ms",
        runs_per_source.iter().min().unwrap(),
        runs_per_source.iter().max().unwrap(),
        seconds / interval,
        q(&gaps, 0.5),
        q(&gaps, 0.99),
        gaps.last().unwrap(),
        durations[durations.len() / 2],
        durations[(durations.len() - 1) * 99 / 100],
    );
    for t in [big, small] {
        let _ = watched
            .execute_unprepared(&format!("DROP TABLE IF EXISTS {t}"))
            .await;
    }
    let _ = stop_tx.send(());
    let _ = app.await;
}
