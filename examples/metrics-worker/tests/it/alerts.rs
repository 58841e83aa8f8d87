//! Alerts: every stored detection on `<prefix>-alerts.<series>`, and a Slack-compatible webhook with retries and a
//! cool-down per series.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use futures_util::StreamExt;
use metrics_worker::TestHooks;
use serde_json::Value;

use crate::common::{Harness, nats_url, stationary};

/// A Slack-like receiver: answers 503 to its first call, 200 after; keeps every body.
async fn flaky_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = bodies.clone();
    let app = Router::new().route(
        "/services/T0/B0/secret",
        post(move |axum::Json(body): axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                let mut b = kept.lock().unwrap();
                b.push(body);
                if b.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/services/T0/B0/secret"), bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detections_are_announced_on_nats_and_to_the_webhook_once_per_cooldown() {
    let Some(url) = nats_url("alerts") else {
        return;
    };
    let h = Harness::new(&url, "alerts", None).await;
    let (hook, bodies) = flaky_receiver().await;
    let mut alerts = h
        .client
        .subscribe(format!("{}-alerts.>", h.prefix))
        .await
        .unwrap();
    h.client.flush().await.unwrap();
    let w = h
        .start(
            h.config(&[
                ("ALERT_WEBHOOK_URL", hook.as_str()),
                ("ALERT_COOLDOWN_SECONDS", "3600"),
                ("PUBLIC_URL", "https://worker.example.com/"),
                ("IF_MIN_ANOMALY_CONSEC", "1000"),
            ]),
            TestHooks::default(),
        )
        .await;
    // Two spikes far apart in one series: at least two detections, so two alerts on NATS, one webhook message.
    let mut values = stationary(60, 9);
    values[20] = 400.0;
    values[45] = -300.0;
    h.publish("db.primary", &values).await;
    // Every point processed first: the moving average may flag points after a spike too, so the count is final.
    let points = values.len() as f64;
    w.wait_until(
        Duration::from_secs(20),
        "every point is processed",
        |w| async move { w.metric("metrics_processed_total").await == points },
    )
    .await;
    let stored = w.anomalies("db.primary").await.len();
    assert!(stored >= 2, "both spikes detected: {stored}");
    let mut received = Vec::new();
    while received.len() < stored {
        let m = tokio::time::timeout(Duration::from_secs(10), alerts.next())
            .await
            .expect("an alert for every detection")
            .unwrap();
        assert_eq!(
            m.subject.as_str(),
            format!("{}-alerts.db.primary", h.prefix)
        );
        received.push(serde_json::from_slice::<Value>(&m.payload).unwrap());
    }
    for a in &received {
        assert_eq!(a["series"], "db.primary");
        assert_eq!(a["method"], "moving_average");
        assert!(
            a["score"].as_f64().unwrap() > 0.0 && a["rationale"].as_str().unwrap().len() > 10,
            "{a}"
        );
        assert_eq!(
            a["dashboard"],
            "https://worker.example.com/ui?series=db.primary"
        );
    }
    assert!(received.iter().any(|a| a["value"] == 400.0), "{received:?}");
    // The webhook: one message for the series (the others cooled down), delivered on the second attempt.
    w.wait_until(
        Duration::from_secs(15),
        "the webhook message is retried and delivered",
        |w| async move {
            w.metric("metrics_alerts_total{channel=\"webhook\",outcome=\"delivered\"}")
                .await
                == 1.0
        },
    )
    .await;
    let bodies = bodies.lock().unwrap().clone();
    assert_eq!(
        bodies.len(),
        2,
        "one failed attempt, one delivery: {bodies:?}"
    );
    assert_eq!(bodies[0], bodies[1]);
    let text = bodies[0]["text"].as_str().unwrap();
    assert!(
        text.contains("db.primary") && text.contains("moving_average"),
        "{text}"
    );
    assert!(
        bodies[0]["blocks"]
            .to_string()
            .contains("https://worker.example.com/ui?series=db.primary")
    );
    assert_eq!(
        w.metric("metrics_alerts_total{channel=\"webhook\",outcome=\"retried\"}")
            .await,
        1.0
    );
    w.wait_until(
        Duration::from_secs(10),
        "every other detection's webhook message is suppressed",
        |w| async move {
            w.metric("metrics_alerts_total{channel=\"webhook\",outcome=\"suppressed\"}")
                .await
                == (stored - 1) as f64
        },
    )
    .await;
    assert_eq!(
        w.metric("metrics_alerts_total{channel=\"nats\",outcome=\"published\"}")
            .await,
        stored as f64
    );
    w.stop().await;
    h.cleanup().await;
}
