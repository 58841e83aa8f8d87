//! End to end over a real socket: the plugin started as the binary starts it, called as the DDN engine calls it.

mod lifecycle;
mod outage;
mod process;

use std::collections::HashMap;
use std::time::Duration;

use ddn_plugin::Config;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running plugin on a loopback port.
struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ddn_plugin::PluginError>>>,
}

impl Server {
    async fn start(vars: &[(&str, &str)]) -> Server {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let config = Config::from_lookup(|k| map.get(k).cloned()).expect("config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ddn_plugin::serve(config, listener, async {
            let _ = stopped.await;
        }));
        let server = Server {
            base,
            stop: Some(stop),
            task: Some(task),
        };
        for _ in 0..100 {
            if reqwest::get(format!("{}/health", server.base))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the plugin did not start");
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

const ORDERS_QUERY: &str = "query RecentOrders($limit: Int!) { orders(limit: $limit) { id amount quantity country status } }";

/// A uniform number in [0, 1) from `k` and `salt` (SplitMix64): deterministic, independent across salts.
fn unit(k: usize, salt: u64) -> f64 {
    let mut z = (k as u64).wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Normal orders: ids 0–999, amounts 20–200, quantities 1–5, three countries, two statuses; deterministic.
fn normal_orders(batch: usize, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let k = batch * 1_000 + i;
            let country = ["US", "FR", "DE"][(unit(k, 3) * 3.0) as usize];
            let status = if unit(k, 4) < 0.5 {
                "shipped"
            } else {
                "pending"
            };
            json!({
                "id": (unit(k, 5) * 1_000.0) as u64,
                "amount": (2_000.0 + unit(k, 1) * 18_000.0).round() / 100.0,
                "quantity": 1 + (unit(k, 2) * 5.0) as u64,
                "country": country,
                "status": status,
            })
        })
        .collect()
}

fn hook_body(query: &str, role: &str, orders: Vec<Value>) -> Value {
    json!({
        "session": {"role": role, "variables": {"x-hasura-user-id": "u-1"}},
        "rawRequest": {"query": query, "variables": {"limit": orders.len()}, "operationName": "RecentOrders"},
        "response": {"data": {"orders": orders}}
    })
}

async fn post_hook(server: &Server, body: &Value) -> Value {
    let r = client()
        .post(server.url("/anomalies"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    r.json().await.unwrap()
}

/// The `/metrics` exposition text.
/// The `/metrics` exposition text, checked by `promtool check metrics`.
#[allow(clippy::print_stderr)]
async fn metrics_text(server: &Server) -> String {
    let r = client().get(server.url("/metrics")).send().await.unwrap();
    assert!(r.status().is_success(), "/metrics: {}", r.status());
    let text = r.text().await.unwrap();
    match service_kit::testing::promtool_check(&text) {
        Ok(true) => {}
        Ok(false) => eprintln!(
            "SKIPPED promtool check: promtool is not installed (scripts/test installs it)"
        ),
        Err(e) => panic!("{e}"),
    }
    text
}

fn base_vars(db: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.to_string()),
        ("MINIMUM_TRAINING_RECORDS", "100".into()),
        ("HOST", "127.0.0.1".into()),
    ]
}

fn vars<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, s)| (*k, s.as_str())).collect()
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("plugin.db").display()
    )
}

/// Trains the orders query on 8 calls of 25 normal records; returns the query id.
async fn train(server: &Server, query: &str) -> String {
    let mut qid = String::new();
    for batch in 0..8 {
        let out = post_hook(server, &hook_body(query, "user", normal_orders(batch, 25))).await;
        qid = out["metadata"]["query_hash"].as_str().unwrap().to_string();
        let status = &out["results"]["orders"]["model_details"]["status"];
        assert_eq!(
            status,
            if batch < 3 { "learning" } else { "active" },
            "batch {batch}: {out}"
        );
    }
    qid
}

/// Normal results, then results with planted anomalies: the planted records are flagged, the normal ones mostly
/// not; every endpoint answers; the detections are stored with their context; a restart keeps everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learns_flags_stores_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let v = base_vars(&sqlite_url(&dir));
    let server = Server::start(&vars(&v)).await;
    let qid = train(&server, ORDERS_QUERY).await;

    let mut orders = normal_orders(50, 20);
    orders[3] =
        json!({"id": 3, "amount": 99_999.0, "quantity": 500, "country": "KP", "status": "shipped"});
    orders[11] =
        json!({"id": 11, "amount": -4_000.0, "quantity": 0, "country": "US", "status": "refunded"});
    let out = post_hook(&server, &hook_body(ORDERS_QUERY, "user", orders)).await;
    let result = &out["results"]["orders"];
    assert_eq!(result["is_anomaly"], true, "{out}");
    let flagged: Vec<u64> = result["anomalous_records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert!(flagged.contains(&3) && flagged.contains(&11), "{flagged:?}");
    assert!(
        flagged.len() <= 5,
        "too many normal records flagged: {flagged:?}"
    );
    let planted = result["anomalous_records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["index"] == 3)
        .unwrap();
    assert!(
        planted["explanation"].as_str().unwrap().contains("amount"),
        "{planted}"
    );
    assert_eq!(out["metadata"]["query_hash"], qid.as_str());
    assert_eq!(out["metadata"]["total_records"], 20);
    assert!(
        result["llm_analysis"]["providers"]
            .to_string()
            .contains("offline"),
        "{result}"
    );

    // Every endpoint.
    let get = |path: String| {
        let url = server.url(&path);
        async move {
            let r = client().get(url).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, health) = get("/health".into()).await;
    assert_eq!(s, 200);
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["llm_provider"].as_str().unwrap().contains("offline"));
    let (s, history) = get(format!("/history/{qid}")).await;
    assert_eq!(s, 200);
    assert_eq!(history["datasets"]["orders"]["count"], 220);
    let (s, model) = get(format!("/model/{qid}")).await;
    assert_eq!(s, 200);
    let versions = model["datasets"]["orders"]["versions"].as_array().unwrap();
    assert!(!versions.is_empty(), "{model}");
    assert!(versions[0]["features"].to_string().contains("amount"));
    let (s, stats) = get(format!("/stats/{qid}")).await;
    assert_eq!(s, 200);
    assert_eq!(stats["datasets"]["orders"]["history_size"], 220);
    let (s, _) = get("/model/0000000000000000".into()).await;
    assert_eq!(s, 404);

    let r = client()
        .post(server.url(&format!("/analyze/{qid}")))
        .json(&json!({"id": 1, "amount": 75_000.0, "quantity": 300, "country": "US", "status": "shipped"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let one: Value = r.json().await.unwrap();
    assert_eq!(one["is_anomaly"], true, "{one}");

    // Detections land in the store with their context.
    let mut stored = Value::Null;
    for _ in 0..100 {
        let (_, page) = get(format!("/anomalies?query_id={qid}&limit=100")).await;
        if page["items"]
            .as_array()
            .is_some_and(|i| i.len() >= flagged.len())
        {
            stored = page;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let items = stored["items"].as_array().expect("detections stored");
    let planted = items
        .iter()
        .find(|i| i["context"]["record_index"] == 3)
        .expect("the planted record is stored");
    assert_eq!(planted["context"]["role"], "user");
    assert_eq!(planted["context"]["user"], "u-1");
    assert_eq!(planted["context"]["record"]["amount"], 99_999.0);
    assert!(planted["model_version"].as_u64().is_some());

    let text = metrics_text(&server).await;
    assert!(text.contains("ddn_plugin_requests_total 9"), "{text}");
    assert!(text.contains("ddn_plugin_store_queue_depth 0"));

    // Restart on the same file: models, history and detections are still there; no new learning phase.
    server.stop().await;
    let server = Server::start(&vars(&v)).await;
    let out = post_hook(
        &server,
        &hook_body(ORDERS_QUERY, "user", normal_orders(60, 10)),
    )
    .await;
    assert_eq!(
        out["results"]["orders"]["model_details"]["status"], "active",
        "{out}"
    );
    let r = client()
        .get(server.url(&format!("/anomalies?query_id={qid}")))
        .send()
        .await
        .unwrap();
    let page: Value = r.json().await.unwrap();
    assert!(page["items"].as_array().unwrap().len() >= flagged.len());

    // DELETE /history forgets the history only.
    let r = client()
        .delete(server.url(&format!("/history/{qid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, history) = {
        let r = client()
            .get(server.url(&format!("/history/{qid}")))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(history["datasets"]["orders"]["count"], 0);
    server.stop().await;
}

/// A suspicious query (introspection, sensitive fields to a non-admin role) is reported by the query analysis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspicious_queries_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let v = base_vars(&sqlite_url(&dir));
    let server = Server::start(&vars(&v)).await;
    let users: Vec<Value> = (0..5)
        .map(|i| json!({"id": i, "email": format!("u{i}@example.com"), "password_hash": "$2b$12$abcdefghijklmnopqrstuv", "ssn": "123-45-6789"}))
        .collect();
    let body = json!({
        "session": {"role": "viewer", "variables": {}},
        "rawRequest": {"query": "query x9q2zt { users { id email password_hash ssn } __schema { types { name } } }", "operationName": "x9q2zt"},
        "response": {"data": {"users": users}}
    });
    let out = post_hook(&server, &body).await;
    let concerns = out["results"]["users"]["security_concerns"].to_string();
    assert!(concerns.contains("sensitive"), "{out}");
    assert_eq!(out["results"]["users"]["is_anomaly"], true);
    server.stop().await;
}

/// Bad requests get a 400 naming the problem; `PLUGIN_SECRET` is enforced on every route but the probes; a body not
/// declared as JSON gets a 415 (a web page cannot post one cross-site without a preflight); excluded datasets are
/// skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_auth_and_exclusions() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = base_vars(&sqlite_url(&dir));
    v.push(("PLUGIN_SECRET", "s3cret".into()));
    v.push(("MAX_REQUEST_BYTES", "2000".into()));
    v.push(("EXCLUDED_DATASETS", "audit_.*".into()));
    let server = Server::start(&vars(&v)).await;
    let send = |body: String, secret: Option<&'static str>| {
        let mut r = client()
            .post(server.url("/anomalies"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = secret {
            r = r.header("hasura-m-auth", s);
        }
        async move {
            let r = r.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let ok_body =
        json!({"rawRequest": {"query": "{ a }"}, "response": {"data": {"audit_log": [{"x": 1}]}}})
            .to_string();
    assert_eq!(send(ok_body.clone(), None).await.0, 401);
    assert_eq!(send(ok_body.clone(), Some("wrong")).await.0, 401);
    // What a cross-site form or `fetch` without a preflight can send: text/plain.
    let plain = client()
        .post(server.url("/anomalies"))
        .header("hasura-m-auth", "s3cret")
        .header("content-type", "text/plain")
        .body(ok_body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 415);
    // Every route but /health and /ready needs the secret (the stored detections above all).
    for path in [
        "/anomalies",
        "/metrics",
        "/model/x",
        "/history/x",
        "/stats/x",
    ] {
        let r = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = client()
        .delete(server.url("/history/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .get(server.url("/metrics"))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "Prometheus sends the secret as a bearer token"
    );
    let (status, out) = send(ok_body, Some("s3cret")).await;
    assert_eq!(status, 200);
    assert_eq!(
        out["metadata"]["datasets_skipped"][0]["dataset"], "audit_log",
        "{out}"
    );
    // A root field (alias) too long to store is skipped with the reason, not scored and then refused by the store.
    let long = "a".repeat(300);
    let (status, out) = send(
        json!({"rawRequest": {"query": "{ a }"}, "response": {"data": {long.clone(): [{"x": 1}]}}})
            .to_string(),
        Some("s3cret"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        out["metadata"]["datasets_skipped"][0]["dataset"], long,
        "{out}"
    );
    assert!(
        out["metadata"]["datasets_skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("too long"),
        "{out}"
    );
    for (body, says) in [
        ("not json".to_string(), "not JSON"),
        ("{}".to_string(), "rawRequest"),
        (
            r#"{"rawRequest": {"query": 7}}"#.to_string(),
            "must be a string",
        ),
        (
            json!({"rawRequest": {"query": "q"}, "response": {"data": {"xs": [1, 2]}}}).to_string(),
            "xs[0]",
        ),
        (
            format!(r#"{{"rawRequest": {{"query": "{}"}}}}"#, "x".repeat(3000)),
            "limit of 2000 bytes",
        ),
    ] {
        let (status, out) = send(body.clone(), Some("s3cret")).await;
        assert_eq!(status, 400, "{body:.60}");
        assert!(out["error"].as_str().unwrap().contains(says), "{out}");
    }
    // /health and /ready stay open for probes.
    let r = client().get(server.url("/health")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client().get(server.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ready");
    server.stop().await;
}

/// 64 clients at once: every call answered, every record counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_clients() {
    let dir = tempfile::tempdir().unwrap();
    let v = base_vars(&sqlite_url(&dir));
    let server = Server::start(&vars(&v)).await;
    let url = server.url("/anomalies");
    let mut tasks = Vec::new();
    for c in 0..64 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            for call in 0..3 {
                let body = hook_body(ORDERS_QUERY, "user", normal_orders(c * 10 + call, 10));
                let r = client.post(&url).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let text = metrics_text(&server).await;
    assert!(text.contains("ddn_plugin_requests_total 192"), "{text}");
    assert!(text.contains("ddn_plugin_records_total 1920"), "{text}");
    server.stop().await;
}

/// The LLM path against a local server speaking the Anthropic Messages API: the request has the documented
/// shape; when the server fails, the analysis falls back to the offline rules and the call still succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_is_asked_and_its_failure_falls_back_to_offline() {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let mock = MockServer::start().await;
    let tool = anomaly_llm::query::query_schema().name;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("x-api-key", "sk-test"))
        .and(header("anthropic-version", "2023-06-01"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {
                "anomalies_detected": true,
                "findings": [{"record_index": 0, "reason": "amount far above the usual", "risk_level": "medium", "category": "size_anomaly"}],
                "query_pattern_analysis": {"typical": true, "concerns": [], "recommendations": []},
                "security_concerns": []
            }}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 100, "output_tokens": 50}
        })))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500).set_body_json(
            json!({"type": "error", "error": {"type": "api_error", "message": "boom"}}),
        ))
        .mount(&mock)
        .await;

    let dir = tempfile::tempdir().unwrap();
    let mut v = base_vars(&sqlite_url(&dir));
    v.push(("ANTHROPIC_API_KEY", "sk-test".into()));
    v.push(("CLAUDE_MODEL", "claude-test".into()));
    v.push(("ANTHROPIC_BASE_URL", mock.uri()));
    // Three retries wait at least 0.25 + 0.5 + 1 s (equal jitter), so a failing Claude always outlasts a 1 s budget
    // (the default 2 s budget was outlasted only when the jitter drew long waits); a local answer fits it easily.
    v.push(("RESPONSE_BUDGET_MS", "1000".into()));
    let server = Server::start(&vars(&v)).await;
    let health: Value = client()
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["llm_provider"]
            .as_str()
            .unwrap()
            .starts_with("anthropic"),
        "{health}"
    );

    let out = post_hook(
        &server,
        &hook_body(ORDERS_QUERY, "user", normal_orders(0, 5)),
    )
    .await;
    let llm = &out["results"]["orders"]["llm_analysis"];
    let requests = mock.received_requests().await.unwrap();
    assert!(
        llm["providers"].to_string().contains("anthropic"),
        "{llm} {:?}",
        requests
            .iter()
            .map(|r| (
                r.headers.clone(),
                String::from_utf8_lossy(&r.body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ))
            .collect::<Vec<_>>()
    );
    assert!(
        llm.to_string().contains("amount far above the usual"),
        "{llm}"
    );
    let sent: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(sent["model"], "claude-test");
    assert_eq!(sent["tool_choice"]["name"], tool.as_str());
    assert!(sent["messages"].to_string().contains("RecentOrders"));

    // Claude now fails (500, retried with backoff, then given up): the offline rules answer instead. The retries
    // take longer than the response budget, so this call answers without waiting and the next one reports it.
    let out = post_hook(
        &server,
        &hook_body(ORDERS_QUERY, "user", normal_orders(1, 5)),
    )
    .await;
    assert_eq!(
        out["results"]["orders"]["llm_analysis"]["status"], "pending",
        "{out}"
    );
    let mut reported = Value::Null;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let text = metrics_text(&server).await;
        if text.contains("ddn_plugin_llm_failures_total 1") {
            let out = post_hook(
                &server,
                &hook_body(ORDERS_QUERY, "user", normal_orders(2, 5)),
            )
            .await;
            reported = out["results"]["orders"]["previous_llm_analysis"].clone();
            break;
        }
    }
    assert!(
        reported["providers"].to_string().contains("offline"),
        "{reported}"
    );
    let text = metrics_text(&server).await;
    assert!(text.contains("ddn_plugin_llm_late_total"), "{text}");
    server.stop().await;
}

/// An LLM answer that misses its response budget is kept for the query's next call; when the plugin stops before
/// that call, the answer is stored as an `llm_analysis` detection instead of being lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_llm_answer_outlives_a_stop() {
    use anomaly_store::{AnomalyQuery, SeaOrmStore, Store};
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let mock = MockServer::start().await;
    let tool = anomaly_llm::query::query_schema().name;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {
                        "anomalies_detected": true,
                        "findings": [{"record_index": 0, "reason": "late but right", "risk_level": "medium", "category": "size_anomaly"}],
                        "query_pattern_analysis": {"typical": true, "concerns": [], "recommendations": []},
                        "security_concerns": []
                    }}],
                    "stop_reason": "tool_use",
                    "usage": {"input_tokens": 100, "output_tokens": 50}
                }))
                // Well past the response budget, well within the shutdown deadline.
                .set_delay(Duration::from_millis(1_500)),
        )
        .mount(&mock)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut v = base_vars(&sqlite_url(&dir));
    v.push(("ANTHROPIC_API_KEY", "sk-test".into()));
    v.push(("CLAUDE_MODEL", "claude-test".into()));
    v.push(("ANTHROPIC_BASE_URL", mock.uri()));
    v.push(("RESPONSE_BUDGET_MS", "200".into()));
    v.push(("SHUTDOWN_TIMEOUT_SECONDS", "20".into()));
    let server = Server::start(&vars(&v)).await;
    let out = post_hook(
        &server,
        &hook_body(ORDERS_QUERY, "user", normal_orders(0, 5)),
    )
    .await;
    assert_eq!(
        out["results"]["orders"]["llm_analysis"]["status"], "pending",
        "{out}"
    );
    let qid = out["metadata"]["query_hash"].as_str().unwrap().to_string();
    server.stop().await;
    let store = SeaOrmStore::connect(&sqlite_url(&dir)).await.unwrap();
    let page = store
        .query_anomalies(&AnomalyQuery::new().detector("llm_analysis"))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "{:?}", page.items);
    let stored = &page.items[0].anomaly;
    assert_eq!(stored.key, format!("{qid}:orders"));
    assert!(stored.is_anomaly);
    assert!(
        stored.explanation.to_string().contains("late but right"),
        "{:?}",
        stored.explanation
    );
    assert_eq!(stored.context["late"], true);
}

/// The same flow on PostgreSQL when `TEST_PG_URL` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn on_postgres() {
    let Ok(url) = std::env::var("TEST_PG_URL") else {
        eprintln!("SKIPPED on_postgres: no database server (set TEST_PG_URL)");
        return;
    };
    let v = base_vars(&url);
    let server = Server::start(&vars(&v)).await;
    // A query text of this run's own, so earlier runs' models in the shared database do not interfere.
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let query = format!(
        "query RecentOrders {{ orders(tag: \"{nanos}\") {{ id amount quantity country status }} }}"
    );
    let qid = train(&server, &query).await;
    let r = client()
        .get(server.url(&format!("/model/{qid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}
