//! The cluster's wire format, against the in-process fake (and a real cluster when `TEST_ES_URL` is set):
//! pagination with a point in time, retries as documented, credentials, `_bulk`, and a whole monitor run writing
//! each anomaly once.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use service_monitor::elastic::{Elastic, ElasticError, ElasticSettings, Flavor as ClientFlavor};

use crate::fake_es::{Fake, Flavor, fixture};

fn settings(url: &str, page_size: usize) -> ElasticSettings {
    ElasticSettings {
        page_size,
        first_retry: Duration::from_millis(5),
        attempts: 4,
        ..ElasticSettings::new(url)
    }
}

/// Events `n` with timestamps 0.5 s apart from 2026-11-01T00:00:00Z, every tenth sharing its neighbour's.
fn events(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let t = 1_793_491_200_000_i64 + (i as i64 / 2 * 2 + i64::from(i % 10 == 1)) * 500;
            let ts = chrono::DateTime::from_timestamp_millis(t).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({"@timestamp": ts, "service": "api", "n": i, "status": 200, "response_time_ms": 10})
        })
        .collect()
}

async fn scan_all(client: &Elastic, pattern: &str) -> Vec<Value> {
    let mut got = Vec::new();
    client
        .scan::<ElasticError>(pattern, "@timestamp", (0, i64::MAX), |e| {
            got.push(e);
            Ok(())
        })
        .await
        .unwrap();
    got
}

fn check_once_in_order(got: &[Value], n: usize) {
    let seen: BTreeSet<u64> = got.iter().map(|e| e["n"].as_u64().unwrap()).collect();
    assert_eq!(got.len(), n, "every event once");
    assert_eq!(seen.len(), n);
    let times: Vec<&str> = got
        .iter()
        .map(|e| e["@timestamp"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
}

#[tokio::test]
async fn pages_cover_every_event_once_through_a_point_in_time() {
    for flavor in [Flavor::Elasticsearch, Flavor::OpenSearch] {
        let fake = Fake::new(flavor);
        let all = events(2_345);
        fake.load("api-logs-2026.11.01", all[..1_000].to_vec());
        fake.load("api-logs-2026.11.02", all[1_000..].to_vec());
        fake.load("other", events(10));
        let url = fake.clone().start().await;
        let client = Elastic::connect(settings(&url, 100)).await.unwrap();
        assert_eq!(
            client.flavor(),
            if flavor == Flavor::Elasticsearch {
                ClientFlavor::Elasticsearch
            } else {
                ClientFlavor::OpenSearch
            }
        );
        check_once_in_order(&scan_all(&client, "api-logs-*").await, 2_345);
        // A point in time that expires mid-read is opened again; the read goes on where it was.
        fake.lock().expire_pit_after = Some(5);
        check_once_in_order(&scan_all(&client, "api-logs-*").await, 2_345);
        // A time range reads only its events.
        let mut some = 0;
        client
            .scan::<ElasticError>(
                "api-logs-*",
                "@timestamp",
                (1_793_491_200_000, 1_793_491_250_000),
                |_| {
                    some += 1;
                    Ok(())
                },
            )
            .await
            .unwrap();
        assert_eq!(some, 100);
        let requests = fake.lock().requests.clone();
        let opened = requests
            .iter()
            .filter(|(m, p)| m == "POST" && (p.ends_with("/_pit") || p.ends_with("/point_in_time")))
            .count();
        let closed = requests.iter().filter(|(m, _)| m == "DELETE").count();
        assert_eq!(opened, 4, "{requests:?}");
        assert_eq!(
            closed, 3,
            "every point in time is closed (the expired one is gone)"
        );
        assert!(
            requests
                .iter()
                .filter(|(_, p)| p.contains("_search") && !p.contains("point_in_time"))
                .all(|(_, p)| p == "/_search")
        );
        // A name that does not exist is the cluster's 404, typed.
        let err = client
            .scan::<ElasticError>("missing-index", "@timestamp", (0, 1), |_| Ok(()))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ElasticError::Refused { refusal, .. } if refusal.status == 404 && refusal.kind == "index_not_found_exception"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn busy_answers_are_retried_and_refusals_are_typed() {
    let fake = Fake::new(Flavor::Elasticsearch);
    fake.load("api-logs-a", events(50));
    let url = fake.clone().start().await;
    let client = Elastic::connect(settings(&url, 20)).await.unwrap();
    // Two transient breaker trips and a 503, then the answers: the read succeeds.
    {
        let mut inner = fake.lock();
        inner
            .failures
            .push_back((429, fixture("error_too_many_requests.json")));
        inner
            .failures
            .push_back((429, fixture("error_too_many_requests.json")));
        inner
            .failures
            .push_back((503, json!({"error": "unavailable"})));
    }
    check_once_in_order(&scan_all(&client, "api-logs-*").await, 50);
    // A permanent breaker is not retried.
    let mut permanent = fixture("error_too_many_requests.json");
    permanent["error"]["durability"] = "PERMANENT".into();
    fake.lock().failures.push_back((429, permanent));
    let err = client
        .scan::<ElasticError>("api-logs-*", "@timestamp", (0, i64::MAX), |_| Ok(()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ElasticError::Refused { refusal, .. } if !refusal.retryable && refusal.kind == "circuit_breaking_exception"),
        "{err}"
    );
    // A bad gateway beyond the attempts.
    for _ in 0..4 {
        fake.lock()
            .failures
            .push_back((502, json!({"error": "bad gateway"})));
    }
    let err = client
        .bulk_index("x", &[("1".into(), json!({"a": 1}))])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ElasticError::Refused { refusal, .. } if refusal.status == 502),
        "{err}"
    );
    // Items refused with 429 are sent again; a document the mapping refuses is reported, not retried.
    fake.lock().reject_items = 2;
    let docs = vec![
        ("a".to_string(), json!({"v": 1})),
        ("b".to_string(), json!({"v": 2})),
        ("c".to_string(), json!({"status": "NONE"})),
    ];
    let report = client.bulk_index("api-anomalies", &docs).await.unwrap();
    assert_eq!(report.written, 2);
    assert_eq!(report.refused.len(), 1);
    assert_eq!(report.refused[0].0, "c");
    assert_eq!(report.refused[0].1.kind, "document_parsing_exception");
    // Written again: replaced, not added.
    let report = client
        .bulk_index("api-anomalies", &docs[..2])
        .await
        .unwrap();
    assert_eq!(report.written, 2);
    let stored = fake.docs("api-anomalies");
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|d| d.version == 2));
    // Creating an index twice is fine.
    client.ensure_index("made", &json!({})).await.unwrap();
    client.ensure_index("made", &json!({})).await.unwrap();
    // Nothing listens: unreachable after the attempts.
    let err = Elastic::connect(settings("http://127.0.0.1:9", 10))
        .await
        .unwrap_err();
    assert!(matches!(err, ElasticError::Unreachable { .. }), "{err}");
}

#[tokio::test]
async fn credentials_are_sent_as_an_api_key() {
    let mut fake = Fake::new(Flavor::Elasticsearch);
    // The documented example: id `VuaCfGcBCdbkQm-e5aOx`, key `ui2lp2axTNmsyakw9tvNnw`.
    fake.api_key = Some("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".into());
    let url = fake.clone().start().await;
    let err = Elastic::connect(settings(&url, 10)).await.unwrap_err();
    assert!(
        matches!(&err, ElasticError::Refused { refusal, .. } if refusal.status == 401 && refusal.kind == "security_exception"),
        "{err}"
    );
    let mut s = settings(&url, 10);
    s.api_key = Some("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw".into());
    Elastic::connect(s).await.unwrap();
}

/// The same reads against a real cluster, when one is given.
#[tokio::test]
async fn a_real_cluster_when_given() {
    let Ok(url) = std::env::var("TEST_ES_URL") else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "SKIPPED a_real_cluster_when_given: set TEST_ES_URL (e.g. http://127.0.0.1:9200) to run it"
            );
        }
        return;
    };
    let mut s = settings(&url, 100);
    s.api_key = std::env::var("TEST_ES_API_KEY").ok();
    let client = Elastic::connect(s).await.unwrap();
    let index = format!("service-monitor-test-{}", std::process::id());
    let docs: Vec<(String, Value)> = events(345)
        .into_iter()
        .enumerate()
        .map(|(i, e)| (i.to_string(), e))
        .collect();
    client
        .ensure_index(
            &index,
            &json!({"properties": {"@timestamp": {"type": "date"}}}),
        )
        .await
        .unwrap();
    assert_eq!(client.bulk_index(&index, &docs).await.unwrap().written, 345);
    // Searches see what a refresh made visible: wait for it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    check_once_in_order(&scan_all(&client, &index).await, 345);
    assert_eq!(client.bulk_index(&index, &docs).await.unwrap().written, 345);
    tokio::time::sleep(Duration::from_secs(2)).await;
    check_once_in_order(&scan_all(&client, &index).await, 345);
}
