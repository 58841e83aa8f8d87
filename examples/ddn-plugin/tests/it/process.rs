//! The binary as an operator runs it: refusing to start open on a network, and stopped by SIGTERM (as `docker
//! stop`, a Kubernetes rollout or systemd send it) without losing what it held.

use std::process::{Command, Stdio};
use std::time::Duration;

use anomaly_store::{SeaOrmStore, Store};
use serde_json::{Value, json};

fn plugin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ddn-plugin"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

#[test]
fn refuses_to_listen_beyond_loopback_without_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let out = plugin()
        .env("HOST", "0.0.0.0")
        .env("PORT", "0")
        .env("ANOMALY_DETECTION_DATA", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("PLUGIN_SECRET")
            && said.contains("0.0.0.0")
            && said.contains("ALLOW_UNAUTHENTICATED"),
        "{said}"
    );
}

/// A free loopback port (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_a_burst_leaves_every_record_and_pattern_in_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = plugin()
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("PLUGIN_SECRET", "s3cret")
        .env("ANOMALY_DETECTION_DATA", dir.path())
        .env("SHUTDOWN_TIMEOUT_SECONDS", "20")
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await
            && r.status().is_success()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the plugin did not become ready");
    // 8 queries × 20 records = 160 history records, each query called twice (pattern count 2).
    let mut query_ids = Vec::new();
    for call in 0..2 {
        for q in 0..8 {
            let orders: Vec<Value> = (0..10)
                .map(|i| json!({"amount": 10.0 + f64::from(i), "status": "paid"}))
                .collect();
            let body = json!({
                "session": {"role": "user", "variables": {}},
                "rawRequest": {"query": format!("query Q{q} {{ orders_{q} {{ amount status }} }}")},
                "response": {"data": {format!("orders_{q}"): orders}},
            });
            let r = http
                .post(format!("{base}/anomalies"))
                .header("hasura-m-auth", "s3cret")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let out: Value = r.json().await.unwrap();
            if call == 0 {
                query_ids.push(out["metadata"]["query_hash"].as_str().unwrap().to_string());
            }
        }
    }
    // At once: history is written once a second, patterns likewise, so most of it is still pending.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut log = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut log)
                    .unwrap();
                return Some((status, log));
            }
            if started.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (status, log) = exited.expect("the plugin exits within its shutdown deadline");
    assert_eq!(status.code(), Some(0), "SIGTERM ends it cleanly: {log}");
    let url = format!(
        "sqlite://{}/anomaly_detection.db?mode=rw",
        dir.path().display()
    );
    let store = SeaOrmStore::connect(&url).await.unwrap();
    let mut history = 0;
    for qid in &query_ids {
        let pattern = store
            .query_pattern(qid)
            .await
            .unwrap()
            .expect("the pattern is stored");
        assert_eq!(pattern.count, 2, "both calls of {qid} counted");
        for key in store.keys().await.unwrap() {
            if key.starts_with(&format!("{qid}:")) {
                history += store.load_history(&key, 1_000).await.unwrap().len();
            }
        }
    }
    assert_eq!(history, 160, "every history record written: {log}");
}
