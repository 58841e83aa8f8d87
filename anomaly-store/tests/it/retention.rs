//! Retention: [`Store::cleanup`] and [`Store::cleanup_keys`] at an explicit `now`.
//!
//! Every record is written with a timestamp in 2001 (history and anomalies carry theirs; models through
//! `save_model_at`), so the clock never matters. The conformance function cleans up only its own keys
//! (`cleanup_keys`): the server databases are shared with other tests and runs. [`global_cleanup`] runs the same
//! fixture through the global `cleanup` on stores nobody else uses.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use anomaly_store::{CleanupReport, HistoryRecord, RetentionPolicy, Store};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use crate::conformance::{anomaly, metadata, unique};

/// The `now` of every cleanup here.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2001, 2, 3, 4, 5, 6).unwrap() + Duration::microseconds(789_012)
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

fn micro() -> Duration {
    Duration::microseconds(1)
}

/// The keys of one fixture.
struct Keys {
    history: String,
    anomalies: String,
    /// Versions 1 and 2 older than the limit, 3 exactly at it, 4 (latest) recent.
    models: String,
    /// Versions 1 and 2 both older than the limit; 2 is the latest.
    old_latest: String,
    /// One ancient version.
    only_model: String,
    /// Ancient history, a detection and two models, outside the scope of a scoped cleanup.
    outside: String,
}

impl Keys {
    fn scope(&self) -> Vec<String> {
        vec![
            self.history.clone(),
            self.anomalies.clone(),
            self.models.clone(),
            self.old_latest.clone(),
            self.only_model.clone(),
        ]
    }
}

async fn save_at(s: &dyn Store, key: &str, saved_at: DateTime<Utc>) -> u64 {
    s.save_model_at(key, "record_model", &metadata(10), b"{}", saved_at)
        .await
        .unwrap()
}

async fn write_fixture(s: &dyn Store) -> Keys {
    let keys = Keys {
        history: unique("retention-history"),
        anomalies: unique("retention-anomalies"),
        models: unique("retention-models"),
        old_latest: unique("retention-old-latest"),
        only_model: unique("retention-only-model"),
        outside: unique("retention-outside"),
    };
    let p = RetentionPolicy::default();
    let (h, a, m) = (
        Duration::from_std(p.history).unwrap(),
        Duration::from_std(p.anomalies).unwrap(),
        Duration::from_std(p.models).unwrap(),
    );
    let n = now();

    let history_at = |t: DateTime<Utc>, i: u32| HistoryRecord {
        key: keys.history.clone(),
        payload: json!({"i": i}),
        timestamp: t,
    };
    s.append_history(&[
        history_at(n - days(20), 0),
        history_at(n - h - micro(), 1),
        history_at(n - h, 2),
        history_at(n - h + micro(), 3),
        history_at(n, 4),
        HistoryRecord {
            key: keys.outside.clone(),
            payload: json!({}),
            timestamp: n - days(1_000),
        },
    ])
    .await
    .unwrap();

    s.insert_anomalies(&[
        anomaly(&keys.anomalies, "ema", 0.9, n - days(365)),
        anomaly(&keys.anomalies, "ema", 0.9, n - a - micro()),
        anomaly(&keys.anomalies, "ema", 0.9, n - a),
        anomaly(&keys.anomalies, "ema", 0.9, n - days(1)),
        anomaly(&keys.outside, "ema", 0.9, n - days(1_000)),
    ])
    .await
    .unwrap();

    assert_eq!(save_at(s, &keys.models, n - days(2_000)).await, 1);
    assert_eq!(save_at(s, &keys.models, n - m - micro()).await, 2);
    assert_eq!(save_at(s, &keys.models, n - m).await, 3);
    assert_eq!(save_at(s, &keys.models, n - days(10)).await, 4);
    assert_eq!(save_at(s, &keys.old_latest, n - days(800)).await, 1);
    assert_eq!(save_at(s, &keys.old_latest, n - days(700)).await, 2);
    assert_eq!(save_at(s, &keys.only_model, n - days(1_000)).await, 1);
    assert_eq!(save_at(s, &keys.outside, n - days(1_000)).await, 1);
    assert_eq!(save_at(s, &keys.outside, n - days(999)).await, 2);
    keys
}

async fn history_of(s: &dyn Store, key: &str) -> Vec<i64> {
    s.load_history(key, 100)
        .await
        .unwrap()
        .iter()
        .map(|r| r.payload.get("i").and_then(|i| i.as_i64()).unwrap_or(-1))
        .collect()
}

async fn anomaly_times(s: &dyn Store, key: &str) -> Vec<DateTime<Utc>> {
    let page = s
        .query_anomalies(&anomaly_store::AnomalyQuery::new().key(key))
        .await
        .unwrap();
    page.items.iter().map(|a| a.anomaly.created_at).collect()
}

async fn versions(s: &dyn Store, key: &str) -> Vec<u64> {
    s.model_versions(key)
        .await
        .unwrap()
        .iter()
        .map(|m| m.version)
        .collect()
}

/// What is left of the fixture after a default-policy cleanup at [`now`]: records exactly at their limit are kept.
async fn assert_default_cleanup_done(s: &dyn Store, keys: &Keys) {
    let p = RetentionPolicy::default();
    let a = Duration::from_std(p.anomalies).unwrap();
    assert_eq!(history_of(s, &keys.history).await, vec![2, 3, 4]);
    assert_eq!(
        anomaly_times(s, &keys.anomalies).await,
        vec![now() - days(1), now() - a],
        "newest first; the one exactly at the limit is kept"
    );
    assert_eq!(versions(s, &keys.models).await, vec![3, 4]);
    assert_eq!(
        versions(s, &keys.old_latest).await,
        vec![2],
        "the latest version is kept, however old"
    );
    assert_eq!(versions(s, &keys.only_model).await, vec![1]);
    let latest = s.load_model(&keys.old_latest, None).await.unwrap().unwrap();
    assert_eq!(latest.info.version, 2);
    assert_eq!(latest.info.saved_at, now() - days(700));
}

pub(crate) async fn retention_cleanup(s: Arc<dyn Store>) {
    let s = &*s;
    let keys = write_fixture(s).await;
    let scope = keys.scope();
    let policy = RetentionPolicy::default();

    let report = s.cleanup_keys(&policy, now(), Some(&scope)).await.unwrap();
    assert_eq!(
        report,
        CleanupReport {
            history_removed: 2,
            anomalies_removed: 2,
            models_removed: 3,
        }
    );
    assert_default_cleanup_done(s, &keys).await;

    // Outside the scope nothing moved.
    assert_eq!(s.load_history(&keys.outside, 10).await.unwrap().len(), 1);
    assert_eq!(anomaly_times(s, &keys.outside).await.len(), 1);
    assert_eq!(versions(s, &keys.outside).await, vec![1, 2]);

    // A second cleanup finds nothing left to remove.
    let again = s.cleanup_keys(&policy, now(), Some(&scope)).await.unwrap();
    assert_eq!(again, CleanupReport::default());
    assert_eq!(
        s.cleanup_keys(&policy, now(), Some(&[])).await.unwrap(),
        CleanupReport::default(),
        "an empty scope removes nothing"
    );

    // A stricter policy: limits of zero keep only what is stamped `now` (at the limit) and each latest model.
    let zero = RetentionPolicy {
        history: StdDuration::ZERO,
        anomalies: StdDuration::ZERO,
        models: StdDuration::ZERO,
    };
    let report = s.cleanup_keys(&zero, now(), Some(&scope)).await.unwrap();
    assert_eq!(
        report,
        CleanupReport {
            history_removed: 2,
            anomalies_removed: 2,
            models_removed: 1,
        }
    );
    assert_eq!(history_of(s, &keys.history).await, vec![4]);
    assert!(anomaly_times(s, &keys.anomalies).await.is_empty());
    assert_eq!(versions(s, &keys.models).await, vec![4]);
    assert_eq!(versions(s, &keys.old_latest).await, vec![2]);
    assert_eq!(versions(s, &keys.only_model).await, vec![1]);

    // Saving after a cleanup continues the numbering.
    assert_eq!(save_at(s, &keys.models, now()).await, 5);
}

/// The global [`Store::cleanup`] on a store of its own: the same fixture, the outside key included.
pub(crate) async fn global_cleanup(s: Arc<dyn Store>) {
    let s = &*s;
    let keys = write_fixture(s).await;
    let report = s.cleanup(&RetentionPolicy::default(), now()).await.unwrap();
    assert_eq!(
        report,
        CleanupReport {
            history_removed: 3,
            anomalies_removed: 3,
            models_removed: 4,
        }
    );
    assert_default_cleanup_done(s, &keys).await;
    assert!(s.load_history(&keys.outside, 10).await.unwrap().is_empty());
    assert!(anomaly_times(s, &keys.outside).await.is_empty());
    assert_eq!(versions(s, &keys.outside).await, vec![2]);
    assert_eq!(
        s.cleanup(&RetentionPolicy::default(), now()).await.unwrap(),
        CleanupReport::default()
    );
    // Ids are not reused after a cleanup.
    let page = s
        .query_anomalies(&anomaly_store::AnomalyQuery::new().key(&keys.anomalies))
        .await
        .unwrap();
    let max_id = page.items.iter().map(|a| a.id).max().unwrap();
    let id = s
        .insert_anomaly(&anomaly(&keys.anomalies, "ema", 0.9, now()))
        .await
        .unwrap();
    assert!(id > max_id);
}

/// The schedule removes what the policy says, on its own, and keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_schedule_removes_old_rows() {
    use anomaly_store::{Anomaly, CleanupSchedule, InMemoryStore, RetentionPolicy, Store};
    use std::sync::Arc;
    use std::time::Duration;

    let store = Arc::new(InMemoryStore::default());
    let old = Anomaly {
        created_at: chrono::Utc::now() - chrono::Duration::days(91),
        ..Anomaly::flagged("k", "d", 1.0, 0.5)
    };
    store.insert_anomaly(&old).await.unwrap();
    store
        .insert_anomaly(&Anomaly::flagged("k", "d", 1.0, 0.5))
        .await
        .unwrap();
    let schedule = CleanupSchedule::start(
        store.clone(),
        RetentionPolicy::default(),
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = schedule.status();
    assert!(status.runs >= 2, "{status:?}");
    assert_eq!(status.removed.anomalies_removed, 1);
    assert_eq!((status.failures, status.last_error), (0, None));
    schedule.stop();
    let left = store
        .query_anomalies(&anomaly_store::AnomalyQuery::new().key("k"))
        .await
        .unwrap();
    assert_eq!(left.items.len(), 1);
}
