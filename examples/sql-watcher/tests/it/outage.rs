//! A source whose server goes down: the run fails with the reason, the source shows it and is retried with
//! backoff; the other sources go on; once the server is back the source recovers where it stopped.

use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::table::{ROWS, Watched};
use crate::{App, server};

/// How many proxy ports this process has tried, so that no two proxies try the same one.
static NEXT_CANDIDATE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A TCP port forwarding to a real server until [`Proxy::stop`] (which also cuts open connections).
struct Proxy {
    port: u16,
    upstream: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on `port`, or (`None`) on a free port below Linux's ephemeral range (32768 and up): an
    /// ephemeral port can be taken by an outbound connection while the proxy is down, and its restart would fail.
    async fn start(upstream: String, port: Option<u16>) -> Proxy {
        let listener = match port {
            Some(port) => TcpListener::bind(("127.0.0.1", port)).await.unwrap(),
            None => {
                // Each call takes candidates no other proxy of this process was offered: the tests run
                // in parallel, and one starting while another is down must not take the other's port.
                let seed = std::process::id() as usize;
                let mut found = None;
                for _ in 0..2_000 {
                    let i = NEXT_CANDIDATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let candidate = 20_000 + ((seed + i * 7_919) % 12_000) as u16;
                    if let Ok(l) = TcpListener::bind(("127.0.0.1", candidate)).await {
                        found = Some(l);
                        break;
                    }
                }
                found.expect("a free port between 20000 and 32000")
            }
        };
        let port = listener.local_addr().unwrap().port();
        let up = upstream.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let up = up.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&up).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy {
            port,
            upstream,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        *self = Proxy::start(self.upstream.clone(), Some(self.port)).await;
    }
}

async fn outage(engine: &'static str, url: &str) {
    let app = App::start(&[
        ("RETRY_BASE_SECONDS", "5"),
        ("SOURCE_CONNECT_TIMEOUT_SECONDS", "3"),
    ])
    .await;
    let token = app.user("ops").await;
    let w = Watched::create(engine, Some(url), "sw_outage").await;
    let other = Watched::create("sqlite", None, "sw_steady").await;
    let upstream = format!(
        "{}:{}",
        w.fields["host"].as_str().unwrap(),
        w.fields["port"].as_str().unwrap()
    );
    let mut proxy = Proxy::start(upstream, None).await;
    let mut body = w.source("flaky");
    body["host"] = json!("127.0.0.1");
    body["port"] = json!(proxy.port);
    let (status, src) = app.post(&token, "/detect/api/datasources/", &body).await;
    assert_eq!(status, 201, "{src}");
    let id = src["id"].as_i64().unwrap();
    let (_, steady) = app
        .post(&token, "/detect/api/datasources/", &other.source("steady"))
        .await;
    let steady = steady["id"].as_i64().unwrap();

    proxy.stop().await;
    let (status, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "error", "{run}");
    assert_eq!(run["rows"], 0);
    let reason = run["error"].as_str().unwrap();
    assert!(
        reason.contains("connect") || reason.contains("refused"),
        "{reason}"
    );
    let (_, view) = app
        .get(&token, &format!("/detect/api/datasources/{id}/"))
        .await;
    assert_eq!(view["status"], "error", "{view}");
    assert_eq!(view["last_error"], run["error"]);
    let next: chrono::DateTime<chrono::Utc> =
        view["next_run_at"].as_str().unwrap().parse().unwrap();
    let wait = next - chrono::Utc::now();
    assert!(
        wait > chrono::Duration::seconds(2),
        "retried after a backoff, not at once: {view}"
    );
    // A second failure in a row waits longer.
    let (_, run2) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(run2["status"], "error");
    let (_, view2) = app
        .get(&token, &format!("/detect/api/datasources/{id}/"))
        .await;
    let next2: chrono::DateTime<chrono::Utc> =
        view2["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next2 - chrono::Utc::now() > chrono::Duration::seconds(7),
        "{view2}"
    );

    // The other source goes on.
    let (_, ok) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{steady}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(ok["status"], "ok", "{ok}");

    proxy.restart().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, run) = app
        .post(
            &token,
            &format!("/detect/api/datasources/{id}/fetch/"),
            &json!({}),
        )
        .await;
    assert_eq!(run["status"], "ok", "{run}");
    assert_eq!(run["rows"], ROWS);
    let (_, view) = app
        .get(&token, &format!("/detect/api/datasources/{id}/"))
        .await;
    assert_eq!(view["status"], "ok");
    assert_eq!(view["last_error"], serde_json::Value::Null);
    proxy.stop().await;
    w.drop_table().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_source_that_goes_down_shows_the_error_and_recovers() {
    if let Some(url) = server("TEST_MYSQL_URL", "MariaDB outage test") {
        outage("mysql", &url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_source_that_goes_down_shows_the_error_and_recovers() {
    if let Some(url) = server("TEST_PG_URL", "PostgreSQL outage test") {
        outage("postgres", &url).await;
    }
}
