//! The conformance suite: every function takes a fresh store and must pass on every backend.
//!
//! Backends on a server share one database between runs and between the tests of a run, so every test works
//! under keys of its own ([`unique`]) and never counts rows it did not write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anomaly_store::{
    Anomaly, AnomalyQuery, DataSource, HistoryRecord, MAX_KEY_CHARS, ModelMetadata, QueryPattern,
    SourceStatus, Store, StoreError, to_micros,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};

use crate::backends::MAX_HISTORY;

/// A key prefix no other test, run or process uses.
pub(crate) fn unique(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!(
        "{test}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A time with a sub-second part that needs all six digits.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 15, 9, 26).unwrap() + Duration::microseconds(535_897)
}

pub(crate) fn anomaly(key: &str, detector: &str, score: f64, created_at: DateTime<Utc>) -> Anomaly {
    Anomaly {
        key: key.to_string(),
        detector: detector.to_string(),
        score,
        threshold: 0.6,
        is_anomaly: score > 0.6,
        rationale: format!("score {score} against 0.6"),
        explanation: json!({"attributions": [{"feature": "amount", "weight": 0.75}]}),
        context: json!({"query": "{ orders { id } }", "role": "admin", "buffer": [1.5, 2.25, -3.0]}),
        config: json!({"contamination": "auto", "trees": 100}),
        model_version: Some(7),
        created_at,
    }
}

pub(crate) fn metadata(records: u64) -> ModelMetadata {
    ModelMetadata {
        records_trained_on: records,
        features: vec!["amount".into(), "country=FR".into(), "ünïcödé".into()],
        trained_at: t0() + Duration::nanoseconds(123),
        metrics: json!({"threshold": 0.5123456789012345, "auc": null}),
    }
}

pub(crate) async fn history_round_trip_and_cap(s: Arc<dyn Store>) {
    let key = unique("history");
    let other = unique("history-other");
    let records: Vec<HistoryRecord> = (0..15)
        .map(|i| HistoryRecord {
            key: key.clone(),
            payload: json!({"i": i, "amount": 10.5 * f64::from(i), "tags": ["a", "b"], "nested": {"ok": true}}),
            timestamp: t0() + Duration::microseconds(i64::from(i) * 1_001),
        })
        .collect();
    s.append_history(&records[..5]).await.unwrap();
    s.append_history(&[HistoryRecord::now(&other, json!({"x": 1}))])
        .await
        .unwrap();

    let last3 = s.load_history(&key, 3).await.unwrap();
    assert_eq!(last3, records[2..5].to_vec(), "most recent 3, oldest first");

    // The cap keeps the most recent MAX_HISTORY records of each key, whatever the batch size.
    s.append_history(&records[5..]).await.unwrap();
    let all = s.load_history(&key, 1_000).await.unwrap();
    assert_eq!(all.len() as u64, MAX_HISTORY);
    assert_eq!(all, records[15 - MAX_HISTORY as usize..].to_vec());
    assert_eq!(s.load_history(&other, 10).await.unwrap().len(), 1);

    let keys = s.keys().await.unwrap();
    assert!(keys.contains(&key) && keys.contains(&other));

    assert_eq!(s.clear_history(&key).await.unwrap(), MAX_HISTORY);
    assert!(s.load_history(&key, 10).await.unwrap().is_empty());
    assert_eq!(s.clear_history(&key).await.unwrap(), 0);
    assert_eq!(s.load_history(&other, 10).await.unwrap().len(), 1);
    assert!(
        s.load_history(&unique("never"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub(crate) async fn anomaly_round_trip(s: Arc<dyn Store>) {
    let key = unique("anomaly");
    let mut a = anomaly(&key, "isolation_forest", 0.812_345_678_901_234_5, t0());
    a.created_at = t0() + Duration::nanoseconds(999); // finer than a microsecond: truncated
    a.explanation = json!({"big": 12345678901234_i64, "neg": -0.000001, "unicode": "café ✓ 日本"});
    let id = s.insert_anomaly(&a).await.unwrap();
    let mut b = anomaly(&key, "ema", 0.1, t0());
    b.model_version = None;
    b.is_anomaly = false;
    let id_b = s.insert_anomaly(&b).await.unwrap();
    assert!(id_b > id, "ids increase");

    let page = s
        .query_anomalies(&AnomalyQuery::new().key(&key))
        .await
        .unwrap();
    assert!(page.next.is_none());
    assert_eq!(page.items.len(), 2);
    // Equal created_at: the later id comes first.
    assert_eq!(page.items[0].id, id_b);
    assert_eq!(page.items[0].anomaly, b);
    assert_eq!(page.items[1].id, id);
    let expected = Anomaly {
        created_at: to_micros(a.created_at),
        ..a
    };
    assert_eq!(page.items[1].anomaly, expected);
    assert_eq!(
        page.items[1].anomaly.score.to_bits(),
        expected.score.to_bits()
    );
}

/// A batch through `insert_anomalies` (PostgreSQL's `COPY`, SQLite's multi-row `INSERT`) with every character a
/// text format escapes, text that looks like an escape or a null, and floats at the edges of the double range:
/// everything reads back exactly.
pub(crate) async fn anomaly_batch_round_trip(s: Arc<dyn Store>) {
    let key = unique("batch-text");
    let texts = [
        "tab\there",
        "line\nbreak\r\nand return",
        "back\\slash \\N \\t \\\\",
        "\\N",
        "",
        "quote ' and \" and ; -- and $1",
        "unicode café ✓ 日本 🦀",
        "controls \u{c} \u{b} \u{8} \u{7f} \u{2028} \u{1}",
    ];
    let floats = [
        0.1 + 0.2,
        -0.0,
        1e-300,
        f64::MIN_POSITIVE,
        5e-324,
        f64::MAX,
        -f64::MAX,
        0.812_345_678_901_234_5,
    ];
    let batch: Vec<Anomaly> = (0..texts.len().max(floats.len()))
        .map(|i| {
            let text = texts[i % texts.len()];
            let mut a = anomaly(
                &key,
                text,
                floats[i % floats.len()],
                t0() + Duration::milliseconds(i as i64),
            );
            a.threshold = floats[(i + 3) % floats.len()];
            a.rationale = format!("{text} / {i}");
            a.explanation = json!({"text": text, "weights": [floats[i % floats.len()], -1.5e-7]});
            a.context = json!({text: [text, null, true, 12345678901234_i64]});
            a.model_version = (i % 2 == 0).then_some(i as u64 * 1_000_000_007);
            a.created_at = t0() + Duration::milliseconds(i as i64) + Duration::nanoseconds(123_456);
            a
        })
        .collect();
    assert_eq!(
        s.insert_anomalies(&batch).await.unwrap(),
        batch.len() as u64
    );
    let page = s
        .query_anomalies(&AnomalyQuery::new().key(&key).limit(100))
        .await
        .unwrap();
    assert_eq!(page.items.len(), batch.len());
    for (stored, sent) in page.items.iter().rev().zip(&batch) {
        let expected = Anomaly {
            created_at: to_micros(sent.created_at),
            ..sent.clone()
        };
        assert_eq!(stored.anomaly, expected);
        // Bit for bit, but for the sign of zero, which SQLite and MariaDB do not keep (−0.0 reads back as 0.0).
        for (got, want) in [
            (stored.anomaly.score, sent.score),
            (stored.anomaly.threshold, sent.threshold),
        ] {
            if want != 0.0 {
                assert_eq!(got.to_bits(), want.to_bits(), "{want:e}");
            }
        }
    }
}

pub(crate) async fn anomaly_pagination_and_filters(s: Arc<dyn Store>) {
    let key = unique("pages");
    let other = unique("pages-other");
    // 25 detections; every third pair shares a timestamp, so the id breaks ties.
    let batch: Vec<Anomaly> = (0..25)
        .map(|i| {
            let at = t0() + Duration::milliseconds(i64::from(i / 2) * 10);
            let detector = if i % 2 == 0 { "forest" } else { "ema" };
            anomaly(&key, detector, f64::from(i) / 25.0, at)
        })
        .collect();
    assert_eq!(s.insert_anomalies(&batch).await.unwrap(), 25);
    s.insert_anomalies(&[anomaly(&other, "forest", 0.99, t0())])
        .await
        .unwrap();
    assert_eq!(s.insert_anomalies(&[]).await.unwrap(), 0);

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s
            .query_anomalies(&AnomalyQuery::new().key(&key).limit(7).after(cursor))
            .await
            .unwrap();
        pages += 1;
        assert!(page.items.len() <= 7);
        seen.extend(page.items);
        cursor = page.next;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(pages, 4);
    assert_eq!(seen.len(), 25, "every detection once");
    for w in seen.windows(2) {
        assert!(
            (w[0].anomaly.created_at, w[0].id) > (w[1].anomaly.created_at, w[1].id),
            "newest first, no repeats"
        );
    }
    let mut scores: Vec<u64> = seen
        .iter()
        .map(|a| (a.anomaly.score * 25.0).round() as u64)
        .collect();
    scores.sort_unstable();
    assert_eq!(scores, (0..25).collect::<Vec<_>>());

    let q = |q: AnomalyQuery| {
        let s = s.clone();
        async move { s.query_anomalies(&q.limit(1_000)).await.unwrap().items }
    };
    let high = q(AnomalyQuery::new().key(&key).min_score(0.8)).await;
    assert_eq!(high.len(), 5); // 20..=24 of 25
    assert!(high.iter().all(|a| a.anomaly.score >= 0.8));
    let ema = q(AnomalyQuery::new().key(&key).detector("ema")).await;
    assert_eq!(ema.len(), 12);
    assert!(ema.iter().all(|a| a.anomaly.detector == "ema"));
    // [t0 + 20 ms, t0 + 50 ms): timestamps of i/2 in 2..=4, i in 4..=9.
    let window = q(AnomalyQuery::new().key(&key).between(
        t0() + Duration::milliseconds(20),
        t0() + Duration::milliseconds(50),
    ))
    .await;
    assert_eq!(window.len(), 6);
    let combined = q(AnomalyQuery::new()
        .key(&key)
        .detector("forest")
        .min_score(0.2)
        .between(t0(), t0() + Duration::milliseconds(100)))
    .await;
    // forest = even i; score >= 0.2 means i >= 5; i/2 < 10 means i <= 19: 6, 8, …, 18.
    assert_eq!(combined.len(), 7);
    let by_other = q(AnomalyQuery::new().key(&other)).await;
    assert_eq!(by_other.len(), 1);

    // Counting takes the filters and ignores page size, offset and cursor.
    let count = |q: AnomalyQuery| {
        let s = s.clone();
        async move { s.count_anomalies(&q).await.unwrap() }
    };
    assert_eq!(count(AnomalyQuery::new().key(&key)).await, 25);
    assert_eq!(
        count(AnomalyQuery::new().key(&key).limit(3).offset(20)).await,
        25
    );
    assert_eq!(
        count(AnomalyQuery::new().key(&key).detector("ema")).await,
        12
    );
    assert_eq!(count(AnomalyQuery::new().key(&key).min_score(0.8)).await, 5);
    assert_eq!(count(AnomalyQuery::new().key(unique("none"))).await, 0);
    // Numbered pages by offset are the same rows, in the same order, as the cursor's pages.
    for (offset, expected) in [(0, 7), (7, 7), (21, 4), (25, 0), (1_000, 0)] {
        let page = s
            .query_anomalies(&AnomalyQuery::new().key(&key).limit(7).offset(offset))
            .await
            .unwrap();
        assert_eq!(page.items.len(), expected, "offset {offset}");
        let from = offset.min(25) as usize;
        assert_eq!(page.items, seen[from..from + expected], "offset {offset}");
        assert_eq!(page.next.is_some(), offset + 7 < 25, "offset {offset}");
    }
    // Lookup by id.
    let third = &seen[2];
    assert_eq!(s.anomaly(third.id).await.unwrap().as_ref(), Some(third));
    let missing = seen.iter().map(|a| a.id).max().unwrap() + 1_000_000;
    assert_eq!(s.anomaly(missing).await.unwrap(), None);
}

pub(crate) async fn model_versions_round_trip(s: Arc<dyn Store>) {
    let key = unique("model");
    assert!(s.load_model(&key, None).await.unwrap().is_none());
    assert!(s.model_versions(&key).await.unwrap().is_empty());
    for v in 1..=3u64 {
        let snapshot = format!("{{\"version\":{v}}}").into_bytes();
        let got = s
            .save_model(&key, "record_model", &metadata(100 * v), &snapshot)
            .await
            .unwrap();
        assert_eq!(got, v);
    }
    let latest = s.load_model(&key, None).await.unwrap().unwrap();
    assert_eq!(latest.info.version, 3);
    assert_eq!(latest.info.key, key);
    assert_eq!(latest.info.kind, "record_model");
    assert_eq!(latest.snapshot, b"{\"version\":3}");
    let expected = ModelMetadata {
        trained_at: to_micros(metadata(300).trained_at),
        ..metadata(300)
    };
    assert_eq!(latest.info.metadata, expected);

    let second = s.load_model(&key, Some(2)).await.unwrap().unwrap();
    assert_eq!(second.info.version, 2);
    assert_eq!(second.info.metadata.records_trained_on, 200);
    assert!(s.load_model(&key, Some(4)).await.unwrap().is_none());
    assert!(s.load_model(&key, Some(u64::MAX)).await.unwrap().is_none());

    let versions = s.model_versions(&key).await.unwrap();
    assert_eq!(
        versions.iter().map(|m| m.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(versions[2], latest.info);
    assert!(versions.windows(2).all(|w| w[0].saved_at <= w[1].saved_at));
    assert!(s.keys().await.unwrap().contains(&key));

    // Rolling back to version 1 makes a version 4 equal to it; nothing is lost.
    assert_eq!(s.rollback_model(&key, 1).await.unwrap(), Some(4));
    let rolled = s.load_model(&key, None).await.unwrap().unwrap();
    let first = s.load_model(&key, Some(1)).await.unwrap().unwrap();
    assert_eq!(rolled.info.version, 4);
    assert_eq!(rolled.snapshot, first.snapshot);
    assert_eq!(rolled.info.metadata, first.info.metadata);
    assert_eq!(s.rollback_model(&key, 9).await.unwrap(), None);
    assert_eq!(s.model_versions(&key).await.unwrap().len(), 4);
}

pub(crate) async fn large_snapshot(s: Arc<dyn Store>) {
    let key = unique("large");
    // 3 MiB of every byte value (zeros included), far past MySQL's 64 KiB BLOB.
    let snapshot: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let v = s
        .save_model(&key, "isolation_forest", &metadata(1), &snapshot)
        .await
        .unwrap();
    let back = s.load_model(&key, Some(v)).await.unwrap().unwrap();
    assert_eq!(back.snapshot.len(), snapshot.len());
    assert!(back.snapshot == snapshot);
}

pub(crate) async fn concurrent_version_race(s: Arc<dyn Store>) {
    let key = unique("race");
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let s = s.clone();
            let key = key.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for i in 0..8u8 {
                    got.push(
                        s.save_model(&key, "record_model", &metadata(1), &[w, i])
                            .await
                            .unwrap(),
                    );
                }
                got
            })
        })
        .collect();
    let mut versions = Vec::new();
    for w in writers {
        versions.extend(w.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        (1..=16).collect::<Vec<u64>>(),
        "distinct, gap-free versions"
    );
    let listed = s.model_versions(&key).await.unwrap();
    assert_eq!(listed.len(), 16);
}

fn pattern(hash: &str, first_seen: DateTime<Utc>) -> QueryPattern {
    QueryPattern {
        query_hash: hash.to_string(),
        text: "query Orders($id: ID!) { order(id: $id) { id total } }".into(),
        operation_name: Some("Orders".into()),
        variables: json!({"id": "42"}),
        role: Some("analyst".into()),
        count: 1,
        anomaly_count: 0,
        anomalous: false,
        first_seen,
        last_seen: first_seen,
    }
}

pub(crate) async fn query_pattern_upsert(s: Arc<dyn Store>) {
    let hash = unique("pattern");
    assert!(s.query_pattern(&hash).await.unwrap().is_none());
    let first = pattern(&hash, t0());
    s.upsert_query_pattern(&first).await.unwrap();
    assert_eq!(s.query_pattern(&hash).await.unwrap().unwrap(), first);

    // A later sighting: counts and last_seen move, first_seen stays the earliest.
    let later = QueryPattern {
        count: 5,
        anomaly_count: 2,
        anomalous: true,
        operation_name: None,
        role: None,
        variables: Value::Null,
        first_seen: t0() + Duration::hours(1),
        last_seen: t0() + Duration::hours(2) + Duration::microseconds(1),
        ..first.clone()
    };
    s.upsert_query_pattern(&later).await.unwrap();
    let got = s.query_pattern(&hash).await.unwrap().unwrap();
    assert_eq!(
        got,
        QueryPattern {
            first_seen: t0(),
            ..later
        }
    );
}

/// Strings that break naive SQL, JSON or encodings.
const HOSTILE: [&str; 6] = [
    "'; DROP TABLE anomaly_history; --",
    "\"; DROP TABLE anomaly_models; --",
    "Robert'); DELETE FROM anomaly_detections WHERE ('1'='1",
    "back\\slash `tick` %wild_card%",
    "日本語 ✓ émoji 🚀 Ωmega",
    "line\nbreak\ttab",
];

pub(crate) async fn hostile_and_unicode_strings(s: Arc<dyn Store>) {
    for (i, hostile) in HOSTILE.iter().enumerate() {
        let key = format!("{}{hostile}", unique(&format!("hostile{i}")));
        let payload = json!({"text": hostile, hostile.to_string(): [hostile]});
        s.append_history(&[HistoryRecord {
            key: key.clone(),
            payload: payload.clone(),
            timestamp: t0(),
        }])
        .await
        .unwrap();
        let back = s.load_history(&key, 10).await.unwrap();
        assert_eq!(back.len(), 1, "{hostile}");
        assert_eq!(back[0].payload, payload);

        let mut a = anomaly(&key, hostile, 0.9, t0());
        a.rationale = hostile.to_string();
        a.context = json!({"user": hostile});
        s.insert_anomaly(&a).await.unwrap();
        let page = s
            .query_anomalies(&AnomalyQuery::new().key(&key).detector(*hostile))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1, "{hostile}");
        assert_eq!(page.items[0].anomaly, a);

        let v = s
            .save_model(&key, hostile, &metadata(3), hostile.as_bytes())
            .await
            .unwrap();
        assert_eq!(v, 1);
        let m = s.load_model(&key, None).await.unwrap().unwrap();
        assert_eq!(m.info.kind, *hostile);
        assert_eq!(m.snapshot, hostile.as_bytes());

        let mut p = pattern(&key, t0());
        p.text = hostile.to_string();
        p.operation_name = Some(hostile.to_string());
        s.upsert_query_pattern(&p).await.unwrap();
        assert_eq!(s.query_pattern(&key).await.unwrap().unwrap(), p);
        assert!(s.keys().await.unwrap().contains(&key));
    }
}

/// A NUL character (U+0000) either round-trips exactly or, where the database cannot hold it (PostgreSQL), is
/// refused as invalid input naming the field, before anything is written: never a database error (which the
/// callers would retry for ever), never a silently altered value. Every write path: history, detections, query
/// patterns, model metadata.
pub(crate) async fn nul_characters(s: Arc<dyn Store>) {
    let refusals = nul_writes(s).await;
    assert!(
        refusals == 0 || refusals == 4,
        "a backend stores NUL everywhere or nowhere ({refusals} of 4 refused)"
    );
}

/// On PostgreSQL every write of a NUL character is refused as invalid input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_are_invalid_input_on_postgres() {
    let Some(s) = crate::backends::from_env(
        "TEST_PG_URL",
        "nul_characters_are_invalid_input_on_postgres",
    )
    .await
    else {
        return;
    };
    assert_eq!(nul_writes(s).await, 4);
}

/// On PostgreSQL, a batch holding a time outside the years 1 to 9999 (which `COPY`'s text format would spell
/// differently) goes in through the `UNNEST` statement instead, and reads back the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_times_round_trip_on_postgres() {
    let Some(s) =
        crate::backends::from_env("TEST_PG_URL", "far_times_round_trip_on_postgres").await
    else {
        return;
    };
    let key = unique("far-times");
    let far = Utc.with_ymd_and_hms(12_345, 6, 7, 8, 9, 10).unwrap();
    let batch = [
        anomaly(&key, "forest", 0.9, t0()),
        anomaly(&key, "forest\ttab", 0.7, far),
    ];
    assert_eq!(s.insert_anomalies(&batch).await.unwrap(), 2);
    let page = s
        .query_anomalies(&AnomalyQuery::new().key(&key))
        .await
        .unwrap();
    let stored: Vec<Anomaly> = page.items.into_iter().rev().map(|i| i.anomaly).collect();
    assert_eq!(stored, batch);
}

/// Writes a NUL character through every write path; returns how many were refused (each refusal checked to be
/// [`StoreError::InvalidInput`], each success to round-trip).
async fn nul_writes(s: Arc<dyn Store>) -> usize {
    let key = unique("nul");
    let mut refusals = 0;
    let mut refused = |e: StoreError| {
        assert!(
            matches!(&e, StoreError::InvalidInput { reason, .. } if reason.contains("NUL")),
            "{e:?}"
        );
        refusals += 1;
    };
    let payload = json!({"line": "a\u{0}b", "k\u{0}": 1});
    match s
        .append_history(&[HistoryRecord {
            key: key.clone(),
            payload: payload.clone(),
            timestamp: t0(),
        }])
        .await
    {
        Ok(()) => assert_eq!(s.load_history(&key, 10).await.unwrap()[0].payload, payload),
        Err(e) => refused(e),
    }
    let mut a = anomaly(&key, "nul", 0.9, t0());
    a.rationale = "before\u{0}after".into();
    a.context = json!({"record": {"note": "\u{0}"}});
    let good = anomaly(&key, "nul", 0.8, t0());
    match s.insert_anomalies(&[good.clone(), a.clone()]).await {
        Ok(2) => {
            let page = s
                .query_anomalies(&AnomalyQuery::new().key(&key))
                .await
                .unwrap();
            assert!(page.items.iter().any(|i| i.anomaly == a));
        }
        Ok(n) => panic!("{n} of 2 stored"),
        Err(e) => {
            refused(e);
            // All or none: the valid detection of the batch was not written either.
            let page = s
                .query_anomalies(&AnomalyQuery::new().key(&key))
                .await
                .unwrap();
            assert!(page.items.is_empty());
        }
    }
    let mut p = pattern(&key, t0());
    p.text = "query { a(x: \"\u{0}\") }".into();
    p.variables = json!({"x": "\u{0}"});
    match s.upsert_query_pattern(&p).await {
        Ok(()) => assert_eq!(s.query_pattern(&key).await.unwrap().unwrap(), p),
        Err(e) => {
            refused(e);
            assert!(s.query_pattern(&key).await.unwrap().is_none());
        }
    }
    let mut m = metadata(3);
    m.features.push("a\u{0}b".into());
    m.metrics = json!({"note": "\u{0}"});
    match s.save_model(&key, "nul", &m, b"snapshot").await {
        Ok(v) => {
            let saved = s.load_model(&key, Some(v)).await.unwrap().unwrap();
            assert_eq!(saved.info.metadata.features, m.features);
            assert_eq!(saved.info.metadata.metrics, m.metrics);
        }
        Err(e) => {
            refused(e);
            assert!(s.model_versions(&key).await.unwrap().is_empty());
        }
    }
    refusals
}

pub(crate) async fn overlong_key_refused(s: Arc<dyn Store>) {
    let long = "k".repeat(MAX_KEY_CHARS + 1);
    let fits = "é".repeat(MAX_KEY_CHARS); // characters, not bytes
    let e = s
        .append_history(&[HistoryRecord::now(&long, json!({}))])
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::InvalidInput { field: "key", .. }),
        "{e:?}"
    );
    let e = s
        .save_model(&long, "k", &metadata(1), b"")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput { .. }), "{e:?}");
    let e = s
        .insert_anomaly(&anomaly(&long, "d", 0.5, t0()))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidInput { .. }), "{e:?}");
    let key = format!("{}{}", unique("fits"), &fits[..fits.len() - 200]);
    let key: String = key.chars().take(MAX_KEY_CHARS).collect();
    s.save_model(&key, "k", &metadata(1), b"x").await.unwrap();
    assert_eq!(s.model_versions(&key).await.unwrap().len(), 1);
}

pub(crate) async fn concurrent_writers(s: Arc<dyn Store>) {
    let key = unique("writers");
    // Four writers append history to one key (the cap trims under their feet) and insert detections, singly and
    // in batches, at the same time.
    let tasks: Vec<_> = (0..4i64)
        .map(|w| {
            let s = s.clone();
            let key = key.clone();
            tokio::spawn(async move {
                for j in 0..5i64 {
                    let records: Vec<HistoryRecord> = (0..3)
                        .map(|k| HistoryRecord {
                            key: key.clone(),
                            payload: json!({"writer": w, "j": j, "k": k}),
                            timestamp: t0() + Duration::microseconds(w * 1_000 + j * 10 + k),
                        })
                        .collect();
                    s.append_history(&records).await.unwrap();
                    s.insert_anomaly(&anomaly(&key, "single", 0.5, t0()))
                        .await
                        .unwrap();
                    let batch: Vec<Anomaly> =
                        (0..4).map(|_| anomaly(&key, "batch", 0.7, t0())).collect();
                    s.insert_anomalies(&batch).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let history = s.load_history(&key, 1_000).await.unwrap();
    assert_eq!(
        history.len() as u64,
        MAX_HISTORY,
        "the cap holds under concurrent appends"
    );
    // What is left is what writer 3 appended last: the most recent timestamps.
    assert!(history.iter().all(|r| r.payload["writer"] == 3));
    assert!(history.windows(2).all(|w| w[0].timestamp < w[1].timestamp));
    let all = s
        .query_anomalies(&AnomalyQuery::new().key(&key).limit(1_000))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 4 * 5 * 5);
    let mut ids: Vec<i64> = all.items.iter().map(|a| a.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 100, "distinct ids");
}

pub(crate) async fn data_sources(s: Arc<dyn Store>) {
    let name = unique("source");
    let source = DataSource {
        name: name.clone(),
        url: "postgres://reader:s3cret'; DROP TABLE x; --@db.internal:5432/shop".into(),
        query: "SELECT created_at, region, amount FROM orders WHERE note <> 'x'".into(),
        timestamp_column: "created_at".into(),
        series_columns: vec!["region".into(), "ünï".into()],
        poll_interval_seconds: 30,
        sensitivity: Some(0.01),
        watermark: Value::Null,
        status: SourceStatus::Active,
        last_error: None,
    };
    assert!(s.data_source(&name).await.unwrap().is_none());
    s.upsert_data_source(&source).await.unwrap();
    assert_eq!(s.data_source(&name).await.unwrap().unwrap(), source);

    // Lists and Debug never show the password.
    let listed = s.data_sources().await.unwrap();
    let mine = listed.iter().find(|d| d.name == name).unwrap();
    assert_eq!(mine.url, "postgres://reader:***@db.internal:5432/shop");
    assert!(!format!("{source:?}").contains("s3cret"));

    let watermark = json!({"ts": "2026-03-14T15:09:26.535897Z", "ids_at_ts": [41, 42]});
    assert!(
        s.update_data_source_state(
            &name,
            &watermark,
            SourceStatus::Failing,
            Some("timeout 'x'")
        )
        .await
        .unwrap()
    );
    // The same state again still counts as found.
    assert!(
        s.update_data_source_state(
            &name,
            &watermark,
            SourceStatus::Failing,
            Some("timeout 'x'")
        )
        .await
        .unwrap()
    );
    let got = s.data_source(&name).await.unwrap().unwrap();
    assert_eq!(got.watermark, watermark);
    assert_eq!(got.status, SourceStatus::Failing);
    assert_eq!(got.last_error.as_deref(), Some("timeout 'x'"));
    assert!(
        !s.update_data_source_state(&unique("nope"), &watermark, SourceStatus::Active, None)
            .await
            .unwrap()
    );

    // Replacing by name keeps one row.
    let paused = DataSource {
        status: SourceStatus::Paused,
        sensitivity: None,
        ..got
    };
    s.upsert_data_source(&paused).await.unwrap();
    assert_eq!(s.data_source(&name).await.unwrap().unwrap(), paused);
    let count = s
        .data_sources()
        .await
        .unwrap()
        .iter()
        .filter(|d| d.name == name)
        .count();
    assert_eq!(count, 1);

    assert!(s.delete_data_source(&name).await.unwrap());
    assert!(!s.delete_data_source(&name).await.unwrap());
    assert!(s.data_source(&name).await.unwrap().is_none());
}
