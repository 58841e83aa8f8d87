//! The database goes down under a running plugin: a TCP proxy between the plugin and PostgreSQL stops (open
//! connections cut, new ones refused) and later starts again on the same port. Detection keeps answering within
//! the response budget, the response says what was skipped, `/health` and `/metrics` say the store is down and
//! detections and history are waiting, and once the database is back every queued detection and every history
//! record of the outage lands exactly once and model writes resume.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anomaly_store::{AnomalyQuery, RetentionPolicy, SeaOrmStore, Store};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::{Server, client, hook_body, metrics_text, normal_orders, vars};

/// How long the plugin may take to answer a hook call: its `RESPONSE_BUDGET_MS`. Generous on purpose: the point is
/// that a request does not wait for the database (30 s by the pool's default), not how fast it is.
const BUDGET: Duration = Duration::from_secs(5);

/// A loopback port forwarding to the database server. [`stop`](Proxy::stop) closes the listener and cuts every
/// open connection before it returns, so the port refuses connections; [`start`](Proxy::start) listens on the same
/// port again.
struct Proxy {
    port: u16,
    upstream: String,
    running: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl Proxy {
    async fn new(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut proxy = Proxy {
            port,
            upstream,
            running: None,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { break };
                        let upstream = upstream.clone();
                        connections.spawn(async move {
                            if let Ok(mut server) = TcpStream::connect(&upstream).await {
                                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            }
                        });
                    }
                }
            }
            drop(listener);
            // Aborts every connection and waits until each has dropped its sockets.
            connections.shutdown().await;
        });
        self.running = Some((stop, task));
    }

    async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    async fn start(&mut self) {
        assert!(self.running.is_none(), "the proxy is running");
        let mut attempts = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) if attempts < 50 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the proxy port {} is not free again: {e}", self.port),
            }
        };
        self.serve(listener);
    }
}

/// `scheme://user@host:port/db` → (`host:port`, the same URL through `127.0.0.1:proxy_port`).
fn through_proxy(url: &str, proxy_port: u16) -> (String, String) {
    let after_at = url
        .rfind('@')
        .map_or(url.find("://").unwrap() + 3, |i| i + 1);
    let end = url[after_at..]
        .find('/')
        .map_or(url.len(), |i| after_at + i);
    let upstream = url[after_at..end].to_string();
    let proxied = format!("{}127.0.0.1:{proxy_port}{}", &url[..after_at], &url[end..]);
    (upstream, proxied)
}

/// Sends one hook call marked `call` (in its variables, which the stored detections keep); asserts a 2xx within
/// the budget. Returns the answer and the flagged record indices.
async fn call(server: &Server, query: &str, call: u64, orders: Vec<Value>) -> (Value, Vec<u64>) {
    let mut body = hook_body(query, "user", orders);
    body["rawRequest"]["variables"]["call"] = json!(call);
    let started = Instant::now();
    let r = client()
        .post(server.url("/anomalies"))
        .timeout(BUDGET * 4)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("call {call}: no answer: {e}"));
    let elapsed = started.elapsed();
    assert!(
        r.status().is_success(),
        "call {call}: {} {}",
        r.status(),
        r.text().await.unwrap_or_default()
    );
    assert!(
        elapsed < BUDGET,
        "call {call} took {elapsed:?}, over the response budget {BUDGET:?}"
    );
    let out: Value = r.json().await.unwrap();
    let flagged = out["results"]["orders"]["anomalous_records"]
        .as_array()
        .unwrap_or_else(|| panic!("call {call}: {out}"))
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    (out, flagged)
}

async fn get_json(server: &Server, path: &str) -> Value {
    let r = client().get(server.url(path)).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// `ddn_plugin_store_queue_depth` from `/metrics`.
async fn queue_depth(server: &Server) -> u64 {
    let text = metrics_text(server).await;
    text.lines()
        .find_map(|l| l.strip_prefix("ddn_plugin_store_queue_depth "))
        .unwrap_or_else(|| panic!("no queue depth in {text}"))
        .trim()
        .parse()
        .unwrap()
}

/// Polls `check` every 100 ms until it holds or `deadline` passes; returns whether it held.
async fn eventually<F: Future<Output = bool>>(
    deadline: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let until = Instant::now() + deadline;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check().await
}

/// The stored detections of `key` as `(call, record index)`; panics on a detection stored twice.
async fn stored_detections(store: &SeaOrmStore, key: &str) -> BTreeSet<(u64, u64)> {
    let page = store
        .query_anomalies(&AnomalyQuery::new().key(key).limit(10_000))
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    for a in &page.items {
        let context = &a.anomaly.context;
        let id = (
            context["variables"]["call"].as_u64().unwrap(),
            context["record_index"].as_u64().unwrap(),
        );
        assert!(seen.insert(id), "detection {id:?} stored twice");
    }
    seen
}

/// Orders of one call with two planted anomalies, at indices 3 and 11.
fn planted_orders(batch: usize) -> Vec<Value> {
    let mut orders = normal_orders(batch, 20);
    orders[3] =
        json!({"id": 3, "amount": 99_999.0, "quantity": 500, "country": "KP", "status": "shipped"});
    orders[11] =
        json!({"id": 11, "amount": -4_000.0, "quantity": 0, "country": "US", "status": "refunded"});
    orders
}

/// PostgreSQL goes down under the plugin and comes back (see the module docs). Needs `TEST_PG_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn database_outage_on_postgres() {
    let Ok(url) = std::env::var("TEST_PG_URL") else {
        eprintln!(
            "SKIPPED database_outage_on_postgres: TEST_PG_URL not set (no PostgreSQL server to cut; set it to run the database-outage test)"
        );
        return;
    };
    let (upstream, _) = through_proxy(&url, 0);
    let mut proxy = Proxy::new(upstream).await;
    let (_, proxied) = through_proxy(&url, proxy.port);
    let budget_ms = BUDGET.as_millis().to_string();
    let v = vec![
        ("DATABASE_URL", proxied),
        ("MINIMUM_TRAINING_RECORDS", "100".to_string()),
        ("HOST", "127.0.0.1".to_string()),
        ("RESPONSE_BUDGET_MS", budget_ms),
        ("STORE_TIMEOUT_MS", "500".to_string()),
        // The retrain after the outage is part of what is checked.
        ("MIN_RETRAIN_INTERVAL_SECONDS", "0".to_string()),
    ];
    let server = Server::start(&vars(&v)).await;
    let srv = &server;
    // The database as the test sees it, never through the proxy.
    let store = SeaOrmStore::connect(&url).await.unwrap();

    // A query text of this run's own, so earlier runs' rows in the shared database do not interfere.
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let query = format!(
        "query RecentOrders {{ orders(tag: \"outage-{nanos}\") {{ id amount quantity country status }} }}"
    );
    // Training: 8 calls of 25 normal records; the first model comes with the 100th record.
    let mut flagged_before = BTreeSet::new();
    let mut qid = String::new();
    for c in 0..8u64 {
        let (out, flagged) = call(srv, &query, c, normal_orders(c as usize, 25)).await;
        let status = &out["results"]["orders"]["model_details"]["status"];
        assert_eq!(status, if c < 3 { "learning" } else { "active" }, "{out}");
        assert_eq!(out["metadata"]["store"], "ok", "{out}");
        qid = out["metadata"]["query_hash"].as_str().unwrap().to_string();
        flagged_before.extend(flagged.iter().map(|&i| (c, i)));
    }
    let key = format!("{qid}:orders");
    assert!(
        eventually(Duration::from_secs(30), || async move {
            queue_depth(srv).await == 0
        })
        .await,
        "detections of the training calls are written"
    );
    // History is written once a second.
    let history_len = || async { store.load_history(&key, 100_000).await.unwrap().len() };
    assert!(
        eventually(Duration::from_secs(30), || async {
            history_len().await == 200
        })
        .await,
        "8 training calls of 25 records are written as history"
    );
    let history_before = 200;
    let models_before = store.model_versions(&key).await.unwrap().len();
    assert!(models_before >= 1);
    let detections_before = stored_detections(&store, &key).await;
    assert_eq!(detections_before, flagged_before);

    // The database goes down. A hook call no longer touches the database (history is written in the background),
    // so it is the monitor's probe or a background write that notices; `/health` probes at once.
    proxy.stop().await;
    assert!(
        eventually(Duration::from_secs(30), || async move {
            get_json(srv, "/health").await["store"]["reachable"] == false
        })
        .await,
        "/health sees the outage"
    );
    let mut queued_in_outage = BTreeSet::new();
    for c in 0..4u64 {
        let (out, flagged) = call(&server, &query, 100 + c, planted_orders(100 + c as usize)).await;
        let meta = &out["metadata"];
        assert!(
            flagged.contains(&3) && flagged.contains(&11),
            "call {c}: detection still works: {out}"
        );
        assert_eq!(meta["store"], "unavailable", "call {c}: {meta}");
        let steps: Vec<&str> = meta["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        assert_eq!(
            steps,
            ["query_pattern"],
            "call {c}: the response says what was skipped, and nothing else is: {meta}"
        );
        assert_eq!(meta["detections_queued"], flagged.len(), "{meta}");
        assert_eq!(
            meta["history_pending"],
            20 * (c + 1),
            "call {c}: the outage's history waits for the database: {meta}"
        );
        assert_eq!(
            out["results"]["orders"]["model_details"]["status"], "active",
            "{out}"
        );
        queued_in_outage.extend(flagged.iter().map(|&i| (100 + c, i)));
    }

    // A query this process has not loaded cannot be restored from the store now: skipped, with the reason.
    let other = query.replace("RecentOrders", "OtherOrders");
    let r = client()
        .post(server.url("/anomalies"))
        .json(&hook_body(&other, "user", normal_orders(150, 5)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out: Value = r.json().await.unwrap();
    assert_eq!(out["metadata"]["status"], "skipped", "{out}");
    assert_eq!(out["metadata"]["store"], "unavailable", "{out}");
    assert!(
        out["metadata"]["datasets_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not loaded"),
        "{out}"
    );

    let health = get_json(&server, "/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["reachable"], false, "{health}");
    assert!(health["store"]["last_error"].is_string(), "{health}");
    assert_eq!(
        health["store"]["queue_depth"],
        queued_in_outage.len(),
        "{health}"
    );
    assert_eq!(
        queue_depth(&server).await,
        queued_in_outage.len() as u64,
        "every detection of the outage is waiting in the queue"
    );
    // The history records of the outage are pending (and answered from memory).
    assert_eq!(health["store"]["history_pending"], 80, "{health}");
    let stats = get_json(&server, &format!("/stats/{qid}")).await;
    let counters = &stats["datasets"]["orders"]["counters"];
    assert_eq!(counters["persistence_failures"], 0, "{counters}");
    assert_eq!(stats["datasets"]["orders"]["history_size"], 280, "{stats}");
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("\nddn_plugin_store_available 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nddn_plugin_history_pending 80\n"),
        "{metrics}"
    );
    // Forgetting history needs the database: 503, and nothing is forgotten.
    let r = client()
        .delete(server.url(&format!("/history/{qid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let stats = get_json(&server, &format!("/stats/{qid}")).await;
    assert_eq!(stats["datasets"]["orders"]["history_size"], 280, "{stats}");

    // The database is back.
    proxy.start().await;
    assert!(
        eventually(Duration::from_secs(30), || async move {
            get_json(srv, "/health").await["store"]["reachable"] == true
        })
        .await,
        "/health sees the store again"
    );
    assert!(
        eventually(Duration::from_secs(60), || async move {
            queue_depth(srv).await == 0
        })
        .await,
        "the queue drains once the database is back"
    );
    let after_outage = stored_detections(&store, &key).await;
    let landed: BTreeSet<(u64, u64)> = after_outage
        .difference(&detections_before)
        .copied()
        .collect();
    assert_eq!(
        landed, queued_in_outage,
        "every detection queued during the outage is stored, once"
    );
    assert!(
        eventually(Duration::from_secs(30), || async {
            history_len().await == history_before + 80
        })
        .await,
        "the outage's history is written once the database is back, once"
    );

    // Writes resume: 400 more records are persisted as history and retrain the model (due after 500 records
    // since the first model: 100 of the training calls, 80 of the outage, 400 now), whose version is stored.
    let mut flagged_after = BTreeSet::new();
    for c in 0..4u64 {
        let (out, flagged) = call(
            &server,
            &query,
            200 + c,
            normal_orders(200 + c as usize, 100),
        )
        .await;
        assert_eq!(out["metadata"]["store"], "ok", "{out}");
        assert_eq!(out["metadata"]["skipped"], json!([]), "{out}");
        flagged_after.extend(flagged.iter().map(|&i| (200 + c, i)));
    }
    assert!(
        eventually(Duration::from_secs(30), || async {
            history_len().await == history_before + 80 + 400
        })
        .await,
        "history writes resume"
    );
    // The retrain runs in the background: its version is stored when it is done.
    let versions = &store;
    let key_ref = &key;
    assert!(
        eventually(Duration::from_secs(30), || async move {
            versions.model_versions(key_ref).await.unwrap().len() > models_before
        })
        .await,
        "the retrain after the outage is stored"
    );
    assert!(
        eventually(Duration::from_secs(30), || async move {
            queue_depth(srv).await == 0
        })
        .await,
        "detections after the outage are written"
    );
    let all = stored_detections(&store, &key).await;
    let expected: BTreeSet<(u64, u64)> = detections_before
        .iter()
        .chain(&queued_in_outage)
        .chain(&flagged_after)
        .copied()
        .collect();
    assert_eq!(all, expected, "every detection stored exactly once");
    let health = get_json(&server, "/health").await;
    assert_eq!(health["status"], "ok", "{health}");

    server.stop().await;
    proxy.stop().await;
    // Leave the shared database as it was.
    let policy = RetentionPolicy {
        history: Duration::ZERO,
        anomalies: Duration::ZERO,
        models: Duration::ZERO,
    };
    let now = chrono::Utc::now() + chrono::Duration::seconds(5);
    store
        .cleanup_keys(&policy, now, Some(std::slice::from_ref(&key)))
        .await
        .unwrap();
}

/// The plugin starts while PostgreSQL does not answer: it answers every call (skipping the datasets it cannot load,
/// with the reason), reports itself degraded, and connects once the database answers. Needs `TEST_PG_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn starts_while_postgres_is_down() {
    let Ok(url) = std::env::var("TEST_PG_URL") else {
        eprintln!(
            "SKIPPED starts_while_postgres_is_down: TEST_PG_URL not set (no PostgreSQL server to start without)"
        );
        return;
    };
    let (upstream, _) = through_proxy(&url, 0);
    let mut proxy = Proxy::new(upstream).await;
    proxy.stop().await;
    let (_, proxied) = through_proxy(&url, proxy.port);
    let v = vec![
        ("DATABASE_URL", proxied),
        ("MINIMUM_TRAINING_RECORDS", "100".to_string()),
        ("HOST", "127.0.0.1".to_string()),
        ("STORE_TIMEOUT_MS", "500".to_string()),
    ];
    let server = Server::start(&vars(&v)).await;
    let srv = &server;

    let health = get_json(srv, "/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["store"]["reachable"], false, "{health}");
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let query = format!(
        "query RecentOrders {{ orders(tag: \"cold-start-{nanos}\") {{ id amount quantity country status }} }}"
    );
    let hook = |orders| {
        let body = hook_body(&query, "user", orders);
        async move {
            let r = client()
                .post(srv.url("/anomalies"))
                .timeout(BUDGET)
                .json(&body)
                .send()
                .await
                .expect("an answer while the database is down");
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let out = hook(normal_orders(0, 25)).await;
    assert_eq!(out["metadata"]["store"], "unavailable", "{out}");
    assert_eq!(out["metadata"]["status"], "skipped", "{out}");
    assert!(
        out["metadata"]["datasets_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not loaded"),
        "{out}"
    );

    proxy.start().await;
    assert!(
        eventually(Duration::from_secs(30), || async move {
            get_json(srv, "/health").await["store"]["reachable"] == true
        })
        .await,
        "the plugin connects once the database answers"
    );
    let out = hook(normal_orders(1, 25)).await;
    assert_eq!(out["metadata"]["store"], "ok", "{out}");
    assert_eq!(out["metadata"]["status"], "ok", "{out}");
    assert_eq!(
        out["results"]["orders"]["model_details"]["status"], "learning",
        "{out}"
    );

    server.stop().await;
    proxy.stop().await;
}
