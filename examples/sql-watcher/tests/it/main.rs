//! Anomaly Studio as its users reach it: over HTTP, in-process, with its own database on a SQLite file; the
//! watched tables on SQLite files, and on the local MariaDB and PostgreSQL when `TEST_MYSQL_URL` / `TEST_PG_URL`
//! are set (skipped loudly otherwise).

// Tests report skips on stderr.
#![allow(clippy::print_stderr)]

mod api;
mod browser;
mod cli;
mod outage;
mod table;

use std::time::Duration;

use serde_json::{Value, json};
use sql_watcher::Config;
use sql_watcher::db::Db;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running application.
pub(crate) struct App {
    pub(crate) url: String,
    pub(crate) config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), sql_watcher::WatcherError>>,
    pub(crate) client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl App {
    /// Starts the application with its database in a temporary directory, the scheduler off unless `vars` turn
    /// it on, and `vars`.
    pub(crate) async fn start(vars: &[(&str, &str)]) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut all: Vec<(String, String)> = vec![
            ("SQL_WATCHER_DATA".into(), dir.path().display().to_string()),
            ("SCHEDULER".into(), "false".into()),
            ("FETCH_PAGE_ROWS".into(), "500".into()),
            ("MIN_TRAINING_ROWS".into(), "100".into()),
            // The watched SQLite files of the tests are temporary files.
            (
                "SQLITE_SOURCE_DIR".into(),
                std::env::temp_dir().display().to_string(),
            ),
        ];
        for (k, v) in vars {
            all.retain(|(n, _)| n != k);
            all.push((k.to_string(), v.to_string()));
        }
        let config =
            Config::from_lookup(move |n| all.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(sql_watcher::serve(config.clone(), listener, async move {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let app = App {
            url,
            config,
            stop: Some(tx),
            task,
            client,
            _dir: dir,
        };
        for _ in 0..400 {
            if app
                .client
                .get(format!("{}/health", app.url))
                .send()
                .await
                .is_ok()
            {
                return app;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the application did not start");
    }

    /// Creates a user as `sql-watcher create-user` does; their API token.
    pub(crate) async fn user(&self, name: &str) -> String {
        let db = Db::connect(&self.config.database_url, Duration::from_secs(5))
            .await
            .unwrap();
        sql_watcher::accounts::create_user(&db, name, "a long password", 20)
            .await
            .unwrap()
            .1
    }

    /// As SIGTERM.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await.unwrap().unwrap();
    }

    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut r = self
            .client
            .request(method, format!("{}{path}", self.url))
            .header("authorization", format!("Token {token}"));
        if let Some(b) = body {
            r = r.json(b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(json!(text)))
    }

    pub(crate) async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, token, path, None).await
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, token, path, Some(body))
            .await
    }
}

/// A name no earlier run used (tests on a shared server keep their rows).
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The server URL in `var`, or `None` (said on stderr) when unset.
pub(crate) fn server(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("SKIPPED {what}: {var} is not set");
            None
        }
    }
}
