//! End to end: NATS → detectors → store → HTTP.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use metrics_worker::TestHooks;
use serde_json::Value;

use crate::common::{Harness, nats_url, stationary};

const WAIT: Duration = Duration::from_secs(30);

/// (method, stream sequence) of each detection.
fn keys(results: &[Value]) -> Vec<(String, u64)> {
    results
        .iter()
        .map(|a| {
            (
                a["method"].as_str().unwrap().to_string(),
                a["context"]["stream_sequence"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[allow(clippy::print_stderr)]
async fn planted_spikes_on(database_url: Option<&str>, name: &str) {
    let Some(url) = nats_url(name) else { return };
    let h = Harness::new(&url, name, database_url).await;
    let worker = h.start(h.config(&[]), TestHooks::default()).await;
    let series = format!("cpu.{}", crate::common::unique("web"));
    let mut values = stationary(260, 5);
    for v in &mut values[240..250] {
        *v += 200.0;
    }
    let sequences = h.publish(&series, &values).await;
    worker
        .wait_until(WAIT, "all points are processed", |w| async move {
            w.metric("metrics_processed_total").await >= 260.0
        })
        .await;
    let found = worker.anomalies(&series).await;
    let methods: HashSet<&str> = found
        .iter()
        .map(|a| a["method"].as_str().unwrap())
        .collect();
    assert!(
        methods.contains("moving_average") && methods.contains("isolation_forest"),
        "{methods:?}"
    );
    // Nothing before the incident.
    let first_incident = sequences[240];
    for (method, seq) in keys(&found) {
        assert!(
            seq >= first_incident,
            "{method} flagged sequence {seq}, before the incident at {first_incident}"
        );
    }
    // The spike's first point, by the moving average, with its whole context.
    let spike = found
        .iter()
        .find(|a| {
            a["method"] == "moving_average" && a["context"]["stream_sequence"] == first_incident
        })
        .expect("the first spike point is flagged by the moving average");
    assert_eq!(spike["series"], series.as_str());
    assert_eq!(spike["value"], values[240]);
    assert_eq!(spike["timestamp"], "2026-11-01T12:04:00+00:00");
    let c = &spike["context"];
    let buffer = c["input_buffer"].as_array().unwrap();
    assert_eq!(buffer.last().unwrap(), &spike["value"]);
    assert!(buffer.len() >= 5, "{c}");
    assert!(
        c["smoothed_scores"]
            .as_array()
            .is_some_and(|s| !s.is_empty()),
        "{c}"
    );
    assert!(c["z_score"].as_f64().unwrap() > 3.0, "{c}");
    assert_eq!(c["threshold"], 20.0);
    assert!(spike["score"].as_f64().unwrap() > 20.0);
    assert_eq!(spike["config"]["MA_WINDOW_SIZE"], 5);
    assert_eq!(spike["config"]["IF_MIN_ANOMALY_CONSEC"], 3);
    assert!(
        spike["rationale"]
            .as_str()
            .unwrap()
            .starts_with("Anomalous"),
        "{spike}"
    );
    assert!(spike["detected_at"].as_str().is_some());
    // The forest's one detection of the incident explains its streak rule.
    let forest: Vec<&Value> = found
        .iter()
        .filter(|a| a["method"] == "isolation_forest")
        .collect();
    assert_eq!(forest.len(), 1, "one forest detection per incident");
    assert!(
        forest[0]["rationale"]
            .as_str()
            .unwrap()
            .contains("in a row"),
        "{}",
        forest[0]
    );
    assert!(forest[0]["context"]["threshold"].as_f64().is_some());
    // By id.
    let id = spike["id"].as_i64().unwrap();
    let (status, one) = worker.get_json(&format!("/anomalies/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(&one, spike);
    // The exposition passes promtool and counts what happened.
    let text = worker.metrics_text().await;
    match service_kit::testing::promtool_check(&text) {
        Ok(true) => {}
        Ok(false) => eprintln!("SKIPPED promtool check: promtool is not installed"),
        Err(e) => panic!("{e}"),
    }
    for name in [
        "metrics_processed_total 260",
        "\nanomaly_events_total{method=\"moving_average\"}",
        "\nanomaly_events_total{method=\"isolation_forest\"} 1",
        "metrics_end_to_end_seconds_bucket",
        "metrics_consumer_pending_messages",
        "metrics_processing_seconds_bucket",
        "metrics_series_in_memory 1",
        "metrics_series_evicted_total 0",
        "metrics_uptime_seconds",
        "metrics_request_duration_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    worker.stop().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_spikes_are_detected_and_stored_with_full_context_on_sqlite() {
    planted_spikes_on(None, "spikes_sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)]
async fn planted_spikes_are_detected_and_stored_with_full_context_on_postgres() {
    match std::env::var("TEST_PG_URL").ok().filter(|u| !u.is_empty()) {
        Some(pg) => planted_spikes_on(Some(&pg), "spikes_pg").await,
        None => eprintln!("SKIPPED: TEST_PG_URL is not set"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stationary_series_stays_quiet() {
    let Some(url) = nats_url("stationary") else {
        return;
    };
    let h = Harness::new(&url, "quiet", None).await;
    let worker = h.start(h.config(&[]), TestHooks::default()).await;
    h.publish("mem.db-1", &stationary(600, 9)).await;
    worker
        .wait_until(WAIT, "all points are processed", |w| async move {
            w.metric("metrics_processed_total").await >= 600.0
        })
        .await;
    let found = worker.anomalies("mem.db-1").await;
    // No moving-average detection (the noise stays far within MA_THRESHOLD); the forest's streak rule and
    // contamination floor keep it to a rare incident at most.
    assert!(
        found.iter().all(|a| a["method"] == "isolation_forest"),
        "{:?}",
        keys(&found)
    );
    assert!(
        found.len() <= 3,
        "{} forest incidents in 600 stationary points",
        found.len()
    );
    worker.stop().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_reach_the_dead_letter_subject_and_are_acknowledged() {
    let Some(url) = nats_url("dead letters") else {
        return;
    };
    let h = Harness::new(&url, "dead", None).await;
    let mut dead = h
        .client
        .subscribe(format!("{}-dead.>", h.prefix))
        .await
        .unwrap();
    h.client.flush().await.unwrap();
    let worker = h.start(h.config(&[]), TestHooks::default()).await;
    h.publish_raw("x", b"not json").await;
    h.publish_raw("cpu", br#"{"series": "cpu", "value": NaN}"#)
        .await;
    h.publish_raw("x", br#"{"series": "a b", "value": 1}"#)
        .await;
    h.publish_raw("cpu", br#"{"series": "cpu", "value": "high"}"#)
        .await;
    h.publish("cpu", &[1.0]).await;
    let mut subjects = Vec::new();
    for _ in 0..4 {
        let m = tokio::time::timeout(WAIT, dead.next())
            .await
            .expect("a dead letter")
            .unwrap();
        assert!(
            m.headers
                .as_ref()
                .and_then(|h| h.get("Metrics-Refusal"))
                .is_some()
        );
        subjects.push(m.subject.to_string());
    }
    subjects.sort();
    let p = &h.prefix;
    let mut expected = vec![
        format!("{p}-dead.cpu"),
        format!("{p}-dead.unknown"),
        format!("{p}-dead.unknown"),
        format!("{p}-dead.unknown"),
    ];
    expected.sort();
    assert_eq!(subjects, expected);
    worker
        .wait_until(WAIT, "the good point is processed", |w| async move {
            w.metric("metrics_processed_total").await >= 1.0
        })
        .await;
    assert_eq!(
        worker
            .metric("metrics_dead_letters_total{reason=\"malformed\"}")
            .await,
        2.0
    );
    assert_eq!(
        worker
            .metric("metrics_dead_letters_total{reason=\"non_finite\"}")
            .await,
        1.0
    );
    assert_eq!(
        worker
            .metric("metrics_dead_letters_total{reason=\"bad_series\"}")
            .await,
        1.0
    );
    // Acknowledged: after the acknowledgement wait (2 s) nothing comes back.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), dead.next())
            .await
            .is_err(),
        "a dead letter came back"
    );
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        h.js.get_stream(&h.stream)
            .await
            .unwrap()
            .get_consumer("worker")
            .await
            .unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "{info:?}");
    worker.stop().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_message_is_stored_and_counted_once() {
    let Some(url) = nats_url("nak") else { return };
    let h = Harness::new(&url, "nak", None).await;
    let hooks = TestHooks {
        nak_first_delivery_of_detections: true,
        ..TestHooks::default()
    };
    let worker = h.start(h.config(&[]), hooks).await;
    let mut values = vec![10.0; 30];
    values[20] = 200.0;
    h.publish("disk", &values).await;
    worker
        .wait_until(WAIT, "the redeliveries are handled", |w| async move {
            w.metric("metrics_processed_total").await >= 30.0
                && w.metric("metrics_redelivered_total").await >= 1.0
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let found = keys(&worker.anomalies("disk").await);
    let unique: HashSet<_> = found.iter().cloned().collect();
    assert!(!found.is_empty());
    assert_eq!(
        found.len(),
        unique.len(),
        "a detection stored twice: {found:?}"
    );
    assert_eq!(worker.metric("metrics_processed_total").await, 30.0);
    worker.stop().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_dying_between_commit_and_acknowledgement_stores_nothing_twice() {
    let Some(url) = nats_url("restart") else {
        return;
    };
    let h = Harness::new(&url, "restart", None).await;
    let mut values = stationary(40, 3);
    values[30] = 300.0;
    let sequences = h.publish("net.eth0", &values).await;
    // The first worker receives everything, acknowledges nothing (as if every acknowledgement were lost) and dies
    // right after committing its first detection.
    let first = h
        .start(
            h.config(&[]),
            TestHooks {
                never_ack: true,
                die_after_detections: Some(1),
                ..TestHooks::default()
            },
        )
        .await;
    first
        .wait_until(WAIT, "the first worker has died", |w| async move {
            w.http
                .get(w.url("/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 503)
        })
        .await;
    let before = keys(&first.anomalies("net.eth0").await);
    assert_eq!(before, [("moving_average".to_string(), sequences[30])]);
    first.stop().await;
    // The second worker gets every message again, rebuilds the same state, reaches the same detection, and finds
    // it already stored.
    let second = h.start(h.config(&[]), TestHooks::default()).await;
    second
        .wait_until(
            WAIT,
            "every message is redelivered and processed",
            |w| async move { w.metric("metrics_processed_total").await >= 40.0 },
        )
        .await;
    let after = keys(&second.anomalies("net.eth0").await);
    let at_spike: Vec<_> = after
        .iter()
        .filter(|(m, s)| m == "moving_average" && *s == sequences[30])
        .collect();
    assert_eq!(at_spike.len(), 1, "{after:?}");
    let unique: HashSet<_> = after.iter().cloned().collect();
    assert_eq!(after.len(), unique.len(), "{after:?}");
    second.stop().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalies_are_paginated_and_filtered() {
    let Some(url) = nats_url("pagination") else {
        return;
    };
    let h = Harness::new(&url, "pages", None).await;
    let worker = h.start(h.config(&[]), TestHooks::default()).await;
    // Isolated spikes: each flags its own point only (the next, 10, is 18 from the window mean 28: below 20).
    let spiky = |n: usize| {
        let mut v = vec![10.0; 12 * n + 6];
        for i in 0..n {
            v[12 * i + 8] = 100.0;
        }
        v
    };
    h.publish("a", &spiky(3)).await;
    h.publish("b", &spiky(2)).await;
    worker
        .wait_until(WAIT, "all points are processed", |w| async move {
            w.metric("metrics_processed_total").await >= 72.0
        })
        .await;
    let (_, all) = worker.get_json("/anomalies").await;
    let total = all["count"].as_u64().unwrap();
    let (_, only_a) = worker
        .get_json("/anomalies?series=a&method=moving_average")
        .await;
    let count_a = only_a["count"].as_u64().unwrap();
    assert_eq!(count_a, 3, "{only_a}");
    assert_eq!(total, count_a + 2);
    assert!(
        only_a["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["series"] == "a")
    );
    // Pages of 2 over the 5: 2, 2, 1, linked both ways, newest first, together the whole list.
    let mut seen = Vec::new();
    let mut path = "/anomalies?page_size=2".to_string();
    let mut pages = 0;
    loop {
        let (status, page) = worker.get_json(&path).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["count"], total);
        pages += 1;
        if pages > 1 {
            assert!(
                page["previous"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("page={}", pages - 1))
            );
        } else {
            assert!(page["previous"].is_null());
        }
        seen.extend(
            page["results"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => path = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len() as u64, total);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );
    let (_, filtered) = worker
        .get_json("/anomalies?series=b&page=2&page_size=1")
        .await;
    assert_eq!(
        (
            filtered["count"].as_u64(),
            filtered["results"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    assert!(filtered["previous"].as_str().unwrap().contains("series=b"));
    let (_, future) = worker
        .get_json("/anomalies?since=2999-01-01T00:00:00Z")
        .await;
    assert_eq!(future["count"], 0);
    let (_, past) = worker
        .get_json("/anomalies?until=2000-01-01T00:00:00Z")
        .await;
    assert_eq!(past["count"], 0);
    let (_, none) = worker.get_json("/anomalies?method=isolation_forest").await;
    assert_eq!(none["count"], 0);
    for bad in [
        "page=0",
        "page_size=501",
        "page=x",
        "since=yesterday",
        "colour=red",
    ] {
        let (status, body) = worker.get_json(&format!("/anomalies?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().is_some());
    }
    assert_eq!(worker.get_json("/anomalies/999999999").await.0, 404);
    assert_eq!(worker.get_json("/anomalies/abc").await.0, 400);
    worker.stop().await;
    h.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_starting_late_takes_its_whole_share_and_a_new_layout_skips_nothing() {
    let Some(url) = nats_url("late worker") else {
        return;
    };
    let h = Harness::new(&url, "late", None).await;
    let series: Vec<String> = (0..8).map(|i| format!("app.node-{i}")).collect();
    for (i, s) in series.iter().enumerate() {
        h.publish(s, &stationary(10, i as u64)).await;
    }
    // One layout of two workers whose second starts once the first has read everything.
    let layout = |i: &str| h.config(&[("WORKER_COUNT", "2"), ("WORKER_INDEX", i)]);
    let first = h.start(layout("0"), TestHooks::default()).await;
    first
        .wait_until(
            Duration::from_secs(20),
            "the first worker read all 80",
            |w| async move {
                let (p, f) = handled(w).await;
                p + f >= 80.0
            },
        )
        .await;
    let second = h.start(layout("1"), TestHooks::default()).await;
    second
        .wait_until(
            Duration::from_secs(20),
            "the late worker read all 80 too",
            |w| async move {
                let (p, f) = handled(w).await;
                p + f >= 80.0
            },
        )
        .await;
    let (p0, f0) = handled(&first).await;
    let (p1, f1) = handled(&second).await;
    assert_eq!(p0 + p1, 80.0, "every message processed once");
    assert_eq!((f0, f1), (p1, p0));
    assert!(p1 > 0.0, "the late worker took its share");
    first.stop().await;
    second.stop().await;

    // A new layout (one worker) starts after the old layout's acknowledgement floor: the 80 are not processed
    // again, 8 new points are.
    for (i, s) in series.iter().enumerate() {
        h.publish(s, &[50.0 + i as f64]).await;
    }
    let single = h.start(h.config(&[]), TestHooks::default()).await;
    single
        .wait_until(
            Duration::from_secs(20),
            "the new layout read the new points",
            |w| async move { w.metric("metrics_processed_total").await >= 8.0 },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(single.metric("metrics_processed_total").await, 8.0);
    single.stop().await;
    h.cleanup().await;
}

/// Messages a worker processed, and those it left to the other workers.
async fn handled(w: &crate::common::Running) -> (f64, f64) {
    (
        w.metric("metrics_processed_total").await,
        w.metric("metrics_foreign_total").await,
    )
}
