//! The log analyzer as its users reach it: over HTTP, in-process, on a SQLite file of its own (and PostgreSQL or
//! MariaDB when `TEST_PG_URL` / `TEST_MYSQL_URL` are set).

// Tests report measured figures and skips on stderr.
#![allow(clippy::print_stderr)]

mod accuracy;
mod api;
mod browser;
mod node;

use std::time::Duration;

use log_analyzer::Config;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running service.
pub(crate) struct Service {
    pub(crate) url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), log_analyzer::AnalyzerError>>,
    pub(crate) client: reqwest::Client,
}

impl Service {
    /// Starts the service with `vars` (on a loopback port of its own).
    pub(crate) async fn start(vars: &[(&str, &str)]) -> Service {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config =
            Config::from_lookup(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(log_analyzer::serve(config, listener, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let s = Service {
            url,
            stop: Some(tx),
            task,
            client,
        };
        for _ in 0..200 {
            if s.client
                .get(format!("{}/health", s.url))
                .send()
                .await
                .is_ok()
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the service did not start");
    }

    /// As SIGTERM: stops and waits for the state to be saved.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A SQLite database URL in a fresh directory (kept alive by the returned guard).
pub(crate) fn sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/state.db?mode=rwc", dir.path().display());
    (dir, url)
}

/// The shared data folder beside the checkout, or `ANOMALY_SHARED_DATA`.
pub(crate) fn shared_data() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("ANOMALY_SHARED_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
        });
    dir.is_dir().then_some(dir)
}
