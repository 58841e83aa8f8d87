//! `AnomalyQueue` when writes fail for other reasons than an outage: a detection that fails every time is set
//! aside after a bounded number of attempts (never blocking the queue's head), a store that cannot be reached is
//! waited for without end, and the set-aside list is bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use anomaly_store::{
    Anomaly, AnomalyPage, AnomalyQuery, AnomalyQueue, CleanupReport, DataSource, HistoryRecord,
    InMemoryStore, ModelMetadata, ModelVersion, QueryPattern, QueueConfig, RetentionPolicy,
    SavedModel, SeaOrmStore, SourceStatus, Store, StoreError,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

fn fast() -> QueueConfig {
    QueueConfig {
        capacity: 10_000,
        batch_size: 50,
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(500),
        ..QueueConfig::default()
    }
}

fn detection(key: &str, i: usize) -> Anomaly {
    Anomaly {
        rationale: format!("n={i}"),
        ..Anomaly::flagged(key, "queue_test", 0.9, 0.5)
    }
}

/// The `n=` numbers of `key`'s detections in `store`, sorted.
async fn landed(store: &dyn Store, key: &str) -> Vec<usize> {
    let page = store
        .query_anomalies(&AnomalyQuery::new().key(key).limit(10_000))
        .await
        .unwrap();
    let mut numbers: Vec<usize> = page
        .items
        .iter()
        .map(|a| a.anomaly.rationale[2..].parse().unwrap())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// How [`Faulty`] fails.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// A statement error the server answers with (as MariaDB's for a packet over `max_allowed_packet`).
    Statement,
    /// The connection cut by the server (looks unreachable), while the server still answers a ping.
    Reset,
}

/// An in-memory store whose batch writes fail, with `fault`, whenever they hold a detection with the rationale
/// `poison`, or all of them while `down` (when its ping fails too, as for a server that cannot be reached).
struct Faulty {
    inner: InMemoryStore,
    fault: Fault,
    down: AtomicBool,
    poison_attempts: AtomicU32,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Faulty {
            inner: InMemoryStore::default(),
            fault,
            down: AtomicBool::new(false),
            poison_attempts: AtomicU32::new(0),
        }
    }

    fn unreachable() -> StoreError {
        StoreError::Database {
            operation: "insert anomalies",
            source: Box::new(sea_orm::sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ))),
        }
    }

    fn check(&self, anomalies: &[Anomaly]) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Self::unreachable());
        }
        if anomalies.iter().any(|a| a.rationale == "poison") {
            if anomalies.len() == 1 {
                self.poison_attempts.fetch_add(1, Ordering::SeqCst);
            }
            return Err(match self.fault {
                Fault::Statement => StoreError::Database {
                    operation: "insert anomalies",
                    source: "Got a packet bigger than 'max_allowed_packet' bytes".into(),
                },
                Fault::Reset => StoreError::Database {
                    operation: "insert anomalies",
                    source: Box::new(sea_orm::sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "connection reset by peer",
                    ))),
                },
            });
        }
        Ok(())
    }
}

#[async_trait]
impl Store for Faulty {
    async fn append_history(&self, records: &[HistoryRecord]) -> anomaly_store::Result<()> {
        self.inner.append_history(records).await
    }
    async fn load_history(
        &self,
        key: &str,
        limit: u64,
    ) -> anomaly_store::Result<Vec<HistoryRecord>> {
        self.inner.load_history(key, limit).await
    }
    async fn clear_history(&self, key: &str) -> anomaly_store::Result<u64> {
        self.inner.clear_history(key).await
    }
    async fn count_anomalies(&self, query: &AnomalyQuery) -> anomaly_store::Result<u64> {
        self.inner.count_anomalies(query).await
    }
    async fn anomaly(
        &self,
        id: i64,
    ) -> anomaly_store::Result<Option<anomaly_store::StoredAnomaly>> {
        self.inner.anomaly(id).await
    }
    async fn insert_anomaly(&self, anomaly: &Anomaly) -> anomaly_store::Result<i64> {
        self.check(std::slice::from_ref(anomaly))?;
        self.inner.insert_anomaly(anomaly).await
    }
    async fn insert_anomalies(&self, anomalies: &[Anomaly]) -> anomaly_store::Result<u64> {
        self.check(anomalies)?;
        self.inner.insert_anomalies(anomalies).await
    }
    async fn query_anomalies(&self, query: &AnomalyQuery) -> anomaly_store::Result<AnomalyPage> {
        self.inner.query_anomalies(query).await
    }
    async fn save_model(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
    ) -> anomaly_store::Result<u64> {
        self.inner.save_model(key, kind, metadata, snapshot).await
    }
    async fn save_model_at(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
        saved_at: DateTime<Utc>,
    ) -> anomaly_store::Result<u64> {
        self.inner
            .save_model_at(key, kind, metadata, snapshot, saved_at)
            .await
    }
    async fn load_model(
        &self,
        key: &str,
        version: Option<u64>,
    ) -> anomaly_store::Result<Option<SavedModel>> {
        self.inner.load_model(key, version).await
    }
    async fn model_versions(&self, key: &str) -> anomaly_store::Result<Vec<ModelVersion>> {
        self.inner.model_versions(key).await
    }
    async fn keys(&self) -> anomaly_store::Result<Vec<String>> {
        self.inner.keys().await
    }
    async fn ping(&self) -> anomaly_store::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Self::unreachable());
        }
        Ok(())
    }
    async fn cleanup_keys(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        keys: Option<&[String]>,
    ) -> anomaly_store::Result<CleanupReport> {
        self.inner.cleanup_keys(policy, now, keys).await
    }
    async fn upsert_query_pattern(&self, pattern: &QueryPattern) -> anomaly_store::Result<()> {
        self.inner.upsert_query_pattern(pattern).await
    }
    async fn query_pattern(&self, query_hash: &str) -> anomaly_store::Result<Option<QueryPattern>> {
        self.inner.query_pattern(query_hash).await
    }
    async fn upsert_data_source(&self, source: &DataSource) -> anomaly_store::Result<()> {
        self.inner.upsert_data_source(source).await
    }
    async fn data_source(&self, name: &str) -> anomaly_store::Result<Option<DataSource>> {
        self.inner.data_source(name).await
    }
    async fn data_sources(&self) -> anomaly_store::Result<Vec<DataSource>> {
        self.inner.data_sources().await
    }
    async fn update_data_source_state(
        &self,
        name: &str,
        watermark: &Value,
        status: SourceStatus,
        last_error: Option<&str>,
    ) -> anomaly_store::Result<bool> {
        self.inner
            .update_data_source_state(name, watermark, status, last_error)
            .await
    }
    async fn delete_data_source(&self, name: &str) -> anomaly_store::Result<bool> {
        self.inner.delete_data_source(name).await
    }
}

/// A detection whose write fails every time, although the store works, blocks nothing: it is tried alone
/// `max_attempts` times and set aside with the error as its reason; the detections behind it land.
async fn failing_detection_is_set_aside(fault: Fault) {
    let store = Arc::new(Faulty::new(fault));
    let queue = AnomalyQueue::new(store.clone(), fast());
    let poison = Anomaly {
        rationale: "poison".into(),
        ..Anomaly::flagged("k", "queue_test", 0.9, 0.5)
    };
    queue.push(poison.clone()).await.unwrap();
    for i in 0..20 {
        queue.push(detection("k", i)).await.unwrap();
    }
    assert!(
        queue.flush(Duration::from_secs(10)).await,
        "the head never drained: {:?}",
        queue.stats()
    );
    let stats = queue.stats();
    assert_eq!(
        (stats.written, stats.rejected, stats.depth),
        (20, 1, 0),
        "{stats:?}"
    );
    assert!(stats.healthy, "{stats:?}");
    assert_eq!(
        store.poison_attempts.load(Ordering::SeqCst),
        3,
        "attempts at the detection alone"
    );
    let rejected = queue.take_rejected();
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].0, poison);
    let expected = match fault {
        Fault::Statement => "max_allowed_packet",
        Fault::Reset => "connection reset",
    };
    assert!(rejected[0].1.contains(expected), "{}", rejected[0].1);
    assert_eq!(
        landed(store.as_ref(), "k").await,
        (0..20).collect::<Vec<_>>()
    );
    assert!(queue.close(Duration::from_secs(1)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_failing_with_a_statement_error_is_set_aside() {
    failing_detection_is_set_aside(Fault::Statement).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_whose_write_cuts_the_connection_is_set_aside() {
    failing_detection_is_set_aside(Fault::Reset).await;
}

/// A store that cannot be reached (its ping fails too) is waited for without end: far more failed attempts than
/// `max_attempts`, nothing set aside, everything written once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_is_waited_for() {
    let store = Arc::new(Faulty::new(Fault::Statement));
    store.down.store(true, Ordering::SeqCst);
    let queue = AnomalyQueue::new(store.clone(), fast());
    for i in 0..5 {
        queue.push(detection("k", i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = queue.stats();
    assert!(stats.failures > 5, "{stats:?}");
    assert_eq!(
        (stats.depth, stats.rejected, stats.healthy),
        (5, 0, false),
        "{stats:?}"
    );
    store.down.store(false, Ordering::SeqCst);
    assert!(
        queue.flush(Duration::from_secs(10)).await,
        "{:?}",
        queue.stats()
    );
    assert_eq!(
        landed(store.as_ref(), "k").await,
        (0..5).collect::<Vec<_>>()
    );
    assert!(queue.take_rejected().is_empty());
}

/// The set-aside list keeps at most `rejected_capacity` detections, the most recent; the others are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_aside_detections_are_bounded() {
    let store = Arc::new(InMemoryStore::default());
    let config = QueueConfig {
        rejected_capacity: 3,
        ..fast()
    };
    let queue = AnomalyQueue::new(store.clone(), config);
    let long = "k".repeat(300);
    for i in 0..5 {
        queue.push(detection(&long, i)).await.unwrap();
    }
    queue.push(detection("ok", 5)).await.unwrap();
    assert!(queue.flush(Duration::from_secs(10)).await);
    let stats = queue.stats();
    assert_eq!(
        (stats.written, stats.rejected, stats.rejected_dropped),
        (1, 5, 2),
        "{stats:?}"
    );
    let kept: Vec<String> = queue
        .take_rejected()
        .into_iter()
        .map(|(a, _)| a.rationale)
        .collect();
    assert_eq!(kept, ["n=2", "n=3", "n=4"]);
    assert!(queue.take_rejected().is_empty());
}

/// On MariaDB, a detection larger than the server's `max_allowed_packet` is refused every time: it is set aside
/// with the reason, and the detections queued behind it land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_over_max_allowed_packet_is_set_aside_on_mariadb() {
    let Some(url) = crate::backends::url_from_env(
        "TEST_MYSQL_URL",
        "detection_over_max_allowed_packet_is_set_aside_on_mariadb",
    ) else {
        return;
    };
    let mut options = sea_orm::ConnectOptions::new(url.as_str());
    options.acquire_timeout(Duration::from_secs(5));
    let db = Database::connect(options).await.unwrap();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT @@max_allowed_packet AS p",
        ))
        .await
        .unwrap()
        .unwrap();
    let max_packet: u64 = row.try_get("", "p").unwrap();
    let key = crate::conformance::unique("packet");
    let big = Anomaly {
        rationale: "too big".into(),
        context: json!({"record": {"blob": "x".repeat(max_packet as usize + (1 << 20))}}),
        ..Anomaly::flagged(&key, "queue_test", 0.9, 0.5)
    };
    let queue = AnomalyQueue::connect_lazily(url.clone(), 1_000, fast());
    queue.push(big).await.unwrap();
    for i in 0..10 {
        queue.push(detection(&key, i)).await.unwrap();
    }
    assert!(
        queue.flush(Duration::from_secs(60)).await,
        "the head never drained: {:?}",
        queue.stats()
    );
    let stats = queue.stats();
    assert_eq!((stats.written, stats.rejected), (10, 1), "{stats:?}");
    let rejected = queue.take_rejected();
    assert_eq!(rejected[0].0.rationale, "too big");
    assert!(!rejected[0].1.is_empty());
    let store = SeaOrmStore::connect(&url).await.unwrap();
    assert_eq!(landed(&store, &key).await, (0..10).collect::<Vec<_>>());
    assert!(queue.close(Duration::from_secs(5)).await.is_empty());
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "max_allowed_packet {max_packet}: set aside because {}",
            rejected[0].1
        );
    }
}

/// Connecting to a port where nothing listens fails within the connect timeout (the driver would otherwise repeat
/// the refused connection until its acquire timeout), as a server that cannot be reached, with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_closed_port_fails_within_the_timeout() {
    for url in [
        "postgres://postgres@127.0.0.1:1/test",
        "mysql://root@127.0.0.1:1/test",
    ] {
        let started = std::time::Instant::now();
        let err = SeaOrmStore::connect(url).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            took < anomaly_store::Timeouts::DEFAULT_CONNECT + Duration::from_secs(2),
            "{url}: {took:?}"
        );
        assert!(err.is_unreachable(), "{url}: {}", err.chain());
        assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
        assert!(
            err.chain().contains("no connection within"),
            "{}",
            err.chain()
        );

        let short = anomaly_store::Timeouts::default().connect(Duration::from_millis(300));
        let started = std::time::Instant::now();
        let err = SeaOrmStore::connect_with_timeouts(url, short)
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "{url}");
        assert!(err.is_unreachable(), "{url}: {}", err.chain());
    }
}
