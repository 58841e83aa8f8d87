//! The endpoints: shapes, limits, authentication, metrics, persistence across a restart.

use anomaly_store::{AnomalyQuery, SeaOrmStore, Store};
use serde_json::{Value, json};

use crate::{Service, sqlite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_have_the_originals_shape_and_bad_input_gets_a_named_4xx() {
    let (_guard, db) = sqlite();
    let s = Service::start(&[
        ("DATABASE_URL", &db),
        ("MAX_LINE_BYTES", "100"),
        ("MAX_BATCH_LINES", "5"),
    ])
    .await;
    let (status, health) = s.get("/health").await;
    assert_eq!(status, 200);
    for field in [
        "status",
        "model_loaded",
        "model_name",
        "threshold",
        "templates",
        "lines_seen",
    ] {
        assert!(health.get(field).is_some(), "{field} missing from {health}");
    }
    assert_eq!(health["threshold"], json!(0.7));

    let (status, a) = s
        .post(
            "/analyze-log",
            &json!({"log_id": 123, "log_text": "2024-05-01 12:00:03 ERROR db: timeout after 30 s"}),
        )
        .await;
    assert_eq!(status, 200, "{a}");
    for field in [
        "log_id",
        "anomaly_score",
        "is_anomaly",
        "model_name",
        "template_id",
        "template",
        "reasons",
    ] {
        assert!(a.get(field).is_some(), "{field} missing from {a}");
    }
    assert_eq!(a["log_id"], json!(123));
    assert_eq!(a["template"], json!("db: timeout after <NUM> s"));
    assert_eq!(a["severity"], json!("ERROR"));
    assert!(a["reasons"][0].as_str().unwrap().contains("ERROR"), "{a}");

    let bad = [
        (json!({"log_id": 1, "log_text": ""}), "empty"),
        (
            json!({"log_id": 1, "log_text": "x".repeat(101)}),
            "MAX_LINE_BYTES (100)",
        ),
        (json!({"log_id": 1, "log_text": "a\u{0}b"}), "binary"),
        (json!({"log_id": 1}), "missing"),
        (json!({"log_id": 1, "log_text": 5}), "must be a string"),
        (
            json!({"log_id": 1, "log_text": "x", "timestamp": "yesterday"}),
            "RFC 3339",
        ),
        (json!([1]), "object"),
    ];
    for (body, needle) in bad {
        let (status, e) = s.post("/analyze-log", &body).await;
        assert_eq!(status, 422, "{body} → {e}");
        assert!(
            e["error"].as_str().unwrap().contains(needle),
            "{body} → {e}"
        );
    }

    let batch = json!([
        {"log_id": "a", "log_text": "user alice logged in"},
        "not an object",
        {"log_id": "c", "log_text": ""},
        {"log_id": "d", "log_text": "user bob logged in"},
    ]);
    let (status, answers) = s.post("/analyze-batch", &batch).await;
    assert_eq!(status, 200);
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0]["log_id"], json!("a"));
    assert!(answers[1]["error"].is_string() && answers[2]["error"].is_string());
    assert_eq!(answers[3]["template"], json!("user <*> logged in"));
    assert_eq!(answers[0]["template_id"], answers[3]["template_id"]);

    let six: Vec<Value> = (0..6)
        .map(|i| json!({"log_id": i, "log_text": "x"}))
        .collect();
    let (status, e) = s.post("/analyze-batch", &Value::Array(six)).await;
    assert_eq!(status, 413);
    assert!(
        e["error"].as_str().unwrap().contains("MAX_BATCH_LINES (5)"),
        "{e}"
    );
    let (status, _) = s.post("/analyze-batch", &json!({"log_text": "x"})).await;
    assert_eq!(status, 422);

    let raw = |body: Vec<u8>, content_type: &'static str| {
        s.client
            .post(format!("{}/analyze-log", s.url))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    assert_eq!(
        raw(b"{\"log_text\": \"x\"}".to_vec(), "text/plain")
            .await
            .unwrap()
            .status(),
        415
    );
    assert_eq!(
        raw(b"{\"log_text\": ".to_vec(), "application/json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        raw(b"{\"log_text\": \"\xff\xfe\"}".to_vec(), "application/json")
            .await
            .unwrap()
            .status(),
        400
    );

    let (status, page) = s.get("/templates?page=1&page_size=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["templates"].as_array().unwrap().len(), 1);
    assert!(page["total"].as_u64().unwrap() >= 2);
    let t = &page["templates"][0];
    for field in [
        "id",
        "template",
        "count",
        "first_seen",
        "last_seen",
        "severities",
    ] {
        assert!(t.get(field).is_some(), "{field} missing from {t}");
    }
    assert_eq!(s.get("/templates?page_size=0").await.0, 422);
    let (status, doc) = s.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], json!("3.1.0"));
    assert!(doc["paths"]["/analyze-batch"]["post"].is_object());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settled_system_flags_what_it_has_not_seen_and_stores_it() {
    let (_guard, db) = sqlite();
    let s = Service::start(&[("DATABASE_URL", &db)]).await;
    let usual: Vec<Value> = (0..500)
        .map(|i| json!({"log_id": i, "log_text": format!("2024-05-01 12:{:02}:{:02} INFO api: GET /orders/{} 200 in {} ms", i / 60 % 60, i % 60, i, 20 + i % 13)}))
        .collect();
    let (status, _) = s.post("/analyze-batch", &Value::Array(usual)).await;
    assert_eq!(status, 200);
    let (_, normal) = s.post("/analyze-log", &json!({"log_id": "n", "log_text": "2024-05-01 12:08:20 INFO api: GET /orders/7 200 in 25 ms"})).await;
    let (_, odd) = s.post("/analyze-log", &json!({"log_id": "x", "log_text": "2024-05-01 12:08:21 ERROR db: disk /var/lib/pg full, writes refused"})).await;
    assert!(!normal["is_anomaly"].as_bool().unwrap(), "{normal}");
    assert!(odd["is_anomaly"].as_bool().unwrap(), "{odd}");
    assert!(
        odd["anomaly_score"].as_f64().unwrap() > normal["anomaly_score"].as_f64().unwrap() + 0.5,
        "{normal} {odd}"
    );
    let reasons = odd["reasons"].to_string();
    assert!(
        reasons.contains("never seen") && reasons.contains("ERROR"),
        "{reasons}"
    );
    assert_eq!(odd["second_opinion"]["provider"], json!("offline"), "{odd}");
    s.stop().await;
    // The flagged line was written by shutdown.
    let store = SeaOrmStore::connect(&db).await.unwrap();
    let page = store
        .query_anomalies(&AnomalyQuery::new().key("log-analyzer"))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "{:?}", page.items);
    let stored = &page.items[0].anomaly;
    assert_eq!(stored.context["log_id"], json!("x"));
    assert!(stored.rationale.contains("never seen"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_their_history_survive_a_restart() {
    let (_guard, sqlite_url) = sqlite();
    let mut targets = vec![("sqlite", sqlite_url)];
    for (name, var) in [("postgres", "TEST_PG_URL"), ("mysql", "TEST_MYSQL_URL")] {
        match std::env::var(var) {
            Ok(url) => targets.push((name, url)),
            Err(_) => eprintln!("SKIPPED restart on {name}: {var} is not set"),
        }
    }
    // A key of its own per run: the servers' databases are shared.
    let key = format!(
        "log-analyzer-test-{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_micros()
    );
    for (name, url) in targets {
        let vars = [
            ("DATABASE_URL", url.as_str()),
            ("STATE_KEY", key.as_str()),
            ("SECOND_OPINION", "false"),
        ];
        let s = Service::start(&vars).await;
        for i in 0..30 {
            s.post("/analyze-log", &json!({"log_id": i, "log_text": format!("worker {} finished job {i} in {} s", i % 3, i % 7)})).await;
        }
        s.post(
            "/analyze-log",
            &json!({"log_id": 99, "log_text": "cache warmed"}),
        )
        .await;
        let (_, before) = s.get("/templates").await;
        s.stop().await;
        let s = Service::start(&vars).await;
        let (_, health) = s.get("/health").await;
        assert_eq!(health["lines_seen"], json!(31), "{name}: {health}");
        let (_, after) = s.get("/templates").await;
        assert_eq!(after, before, "{name}");
        let (_, again) = s
            .post(
                "/analyze-log",
                &json!({"log_id": 100, "log_text": "worker 1 finished job 100 in 3 s"}),
            )
            .await;
        assert_eq!(again["new_template"], json!(false), "{name}: {again}");
        s.stop().await;
        // Only the latest state is kept.
        let store = SeaOrmStore::connect(&url).await.unwrap();
        assert_eq!(store.model_versions(&key).await.unwrap().len(), 1, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_is_bounded_by_the_template_cap() {
    let (_guard, db) = sqlite();
    let s = Service::start(&[
        ("DATABASE_URL", &db),
        ("MAX_TEMPLATES", "50"),
        ("SECOND_OPINION", "false"),
    ])
    .await;
    let distinct: Vec<Value> = (0..600)
        .map(|i| {
            let words: String = (0..(i % 9 + 1)).map(|k| format!(" w{}x{k}", i * 31 % 997)).collect();
            json!({"log_id": i, "log_text": format!("event{}{}", char::from(b'a' + (i % 26) as u8), words)})
        })
        .collect();
    let (status, _) = s.post("/analyze-batch", &Value::Array(distinct)).await;
    assert_eq!(status, 200);
    let (_, health) = s.get("/health").await;
    assert!(health["templates"].as_u64().unwrap() <= 50, "{health}");
    assert_eq!(health["lines_seen"], json!(600));
    // Long tokens are kept as `<LONG>`, so a template stays small whatever the lines hold.
    let huge: Vec<Value> = (0..20)
        .map(|i| json!({"log_id": i, "log_text": format!("user {} logged in", "q".repeat(60_000 + i))}))
        .collect();
    let (status, answers) = s.post("/analyze-batch", &Value::Array(huge)).await;
    assert_eq!(status, 200, "{answers}");
    assert_eq!(answers[19]["template"], json!("user <LONG> logged in"));
    assert!(
        answers.to_string().len() < 20 * 1_000,
        "answers repeat the long tokens"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_a_token_is_required_and_metrics_pass_promtool() {
    let (_guard, db) = sqlite();
    let s = Service::start(&[("DATABASE_URL", &db), ("API_TOKEN", "s3cret")]).await;
    let (status, _) = s
        .post("/analyze-log", &json!({"log_id": 1, "log_text": "x"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(s.get("/health").await.0, 200);
    let authorised = s
        .client
        .post(format!("{}/analyze-log", s.url))
        .bearer_auth("s3cret")
        .json(&json!({"log_id": 1, "log_text": "FATAL kernel: panic"}))
        .send()
        .await
        .unwrap();
    assert_eq!(authorised.status(), 200);
    s.client
        .post(format!("{}/analyze-log", s.url))
        .bearer_auth("s3cret")
        .json(&json!({"log_id": 2, "log_text": ""}))
        .send()
        .await
        .unwrap();
    let metrics = s
        .client
        .get(format!("{}/metrics", s.url))
        .bearer_auth("s3cret")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "log_analyzer_lines_total",
        "log_analyzer_refused_lines_total",
        "log_analyzer_templates",
        "log_analyzer_lines_seen",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    match service_kit::testing::promtool_check(&metrics) {
        Ok(true) => {}
        Ok(false) => eprintln!("SKIPPED promtool check: promtool is not installed"),
        Err(e) => panic!("promtool: {e}\n{metrics}"),
    }
    s.stop().await;
    let err = log_analyzer::Config::from_lookup(|n| (n == "HOST").then(|| "0.0.0.0".to_string()))
        .unwrap()
        .check_exposure()
        .unwrap_err();
    assert!(err.to_string().contains("API_TOKEN"));
}
