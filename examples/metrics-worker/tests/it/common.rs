//! Starting a worker in-process and talking to it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use metrics_worker::{Config, TestHooks};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// `TEST_NATS_URL`, or `None` after printing SKIPPED.
#[allow(clippy::print_stderr)]
pub(crate) fn nats_url(test: &str) -> Option<String> {
    match std::env::var("TEST_NATS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
    {
        Some(u) => Some(u),
        None => {
            eprintln!("SKIPPED {test}: TEST_NATS_URL is not set");
            None
        }
    }
}

/// A unique token for names.
pub(crate) fn unique(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{name}{}x{}x{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's NATS names and database.
pub(crate) struct Harness {
    pub(crate) nats_url: String,
    pub(crate) prefix: String,
    pub(crate) stream: String,
    pub(crate) database_url: String,
    pub(crate) js: jetstream::Context,
    pub(crate) client: async_nats::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    /// Own prefix and stream; SQLite in a temporary directory, or `database_url` when given.
    pub(crate) async fn new(nats_url: &str, name: &str, database_url: Option<&str>) -> Harness {
        let token = unique(name);
        let (dir, database_url) = match database_url {
            Some(url) => (None, url.to_string()),
            None => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}/worker.db?mode=rwc", dir.path().display());
                (Some(dir), url)
            }
        };
        let client = async_nats::connect(nats_url).await.unwrap();
        let h = Harness {
            nats_url: nats_url.into(),
            prefix: format!("mwtest-{token}"),
            stream: format!("MWTEST_{token}"),
            database_url,
            js: jetstream::new(client.clone()),
            client,
            _dir: dir,
        };
        metrics_worker::ensure_stream(&h.js, &h.config(&[]))
            .await
            .unwrap();
        h
    }

    /// The worker's configuration for this test, with `extra` variables.
    pub(crate) fn config(&self, extra: &[(&str, &str)]) -> Config {
        let mut vars: Vec<(String, String)> = vec![
            ("NATS_URL".into(), self.nats_url.clone()),
            ("NATS_SUBJECT_PREFIX".into(), self.prefix.clone()),
            ("NATS_STREAM".into(), self.stream.clone()),
            ("NATS_CONSUMER".into(), "worker".into()),
            ("NATS_ACK_WAIT_SECONDS".into(), "2".into()),
            ("DATABASE_URL".into(), self.database_url.clone()),
            ("PORT".into(), "0".into()),
            ("SHUTDOWN_TIMEOUT_SECONDS".into(), "5".into()),
        ];
        for (k, v) in extra {
            vars.retain(|(name, _)| name != k);
            vars.push((k.to_string(), v.to_string()));
        }
        Config::from_lookup(move |n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
            .unwrap()
    }

    /// Publishes points of `series` (each stored by the server before this returns); returns their stream
    /// sequence numbers.
    pub(crate) async fn publish(&self, series: &str, values: &[f64]) -> Vec<u64> {
        let mut acks = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let body = json!({"series": series, "value": v, "timestamp": format!("2026-11-01T12:{:02}:{:02}Z", (i / 60) % 60, i % 60)});
            acks.push(
                self.js
                    .publish(format!("{}.{series}", self.prefix), body.to_string().into())
                    .await
                    .unwrap(),
            );
        }
        let mut sequences = Vec::new();
        for a in acks {
            sequences.push(a.await.unwrap().sequence);
        }
        sequences
    }

    /// Publishes a raw body on `<prefix>.<tail>`.
    pub(crate) async fn publish_raw(&self, tail: &str, body: &[u8]) {
        self.js
            .publish(format!("{}.{tail}", self.prefix), body.to_vec().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Starts a worker in-process.
    pub(crate) async fn start(&self, config: Config, hooks: TestHooks) -> Running {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(metrics_worker::serve_with_hooks(
            config,
            listener,
            async move {
                let _ = stopped.await;
            },
            hooks,
        ));
        let running = Running {
            addr,
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::new(),
        };
        running
            .wait_until(
                Duration::from_secs(20),
                "the worker answers",
                |r| async move {
                    r.http
                        .get(r.url("/health"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                },
            )
            .await;
        running
    }

    /// Removes the stream.
    pub(crate) async fn cleanup(self) {
        let _ = self.js.delete_stream(&self.stream).await;
    }
}

impl Drop for Harness {
    /// Removes the stream even when the test failed: one JetStream API request over a plain socket (no runtime is
    /// needed in `drop`); errors are ignored, as the stream may already be gone.
    fn drop(&mut self) {
        use std::io::Write;
        let addr = self.nats_url.trim_start_matches("nats://").to_string();
        if let Ok(mut socket) = std::net::TcpStream::connect(addr) {
            let _ = socket.write_all(
                format!(
                    "CONNECT {{\"verbose\":false}}\r\nPUB $JS.API.STREAM.DELETE.{} 0\r\n\r\nPING\r\n",
                    self.stream
                )
                .as_bytes(),
            );
            let _ = socket.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 512];
            let _ = std::io::Read::read(&mut socket, &mut buf);
        }
    }
}

/// A worker running in this process.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), metrics_worker::WorkerError>>>,
    pub(crate) http: reqwest::Client,
}

impl Running {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the sample `name` (with its labels as written) in `/metrics`, 0 when absent.
    pub(crate) async fn metric(&self, sample: &str) -> f64 {
        sample_value(&self.metrics_text().await, sample)
    }

    /// Polls `check` until it holds, or panics after `timeout` naming `what`.
    pub(crate) async fn wait_until<'a, F, Fut>(&'a self, timeout: Duration, what: &str, check: F)
    where
        F: Fn(&'a Running) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = Instant::now();
        while !check(self).await {
            assert!(
                started.elapsed() < timeout,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every detection of `series`, newest first.
    pub(crate) async fn anomalies(&self, series: &str) -> Vec<Value> {
        let (status, body) = self
            .get_json(&format!("/anomalies?series={series}&page_size=500"))
            .await;
        assert_eq!(status, 200, "{body}");
        body["results"].as_array().unwrap().clone()
    }

    /// Stops it as SIGTERM would and checks that it returns in time and without error.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the worker stops within its shutdown timeout")
            .unwrap()
            .unwrap();
    }
}

/// The value of the sample `sample` (with its labels as written) in a Prometheus text exposition, 0 when absent.
pub(crate) fn sample_value(exposition: &str, sample: &str) -> f64 {
    exposition
        .lines()
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// `n` points of noise around 50 (±2), seeded.
pub(crate) fn stationary(n: usize, seed: u64) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| 50.0 + rng.random_range(-2.0..2.0)).collect()
}
