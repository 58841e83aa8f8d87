//! `AnomalyQueue` through database outages: detections queue while the database is unreachable and every one lands
//! exactly once when it is back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anomaly_store::{
    Anomaly, AnomalyQuery, AnomalyQueue, InMemoryStore, QueueConfig, RetentionPolicy, SeaOrmStore,
    Store, StoreError,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

fn fast() -> QueueConfig {
    QueueConfig {
        capacity: 10_000,
        batch_size: 50,
        retry_initial: Duration::from_millis(10),
        retry_max: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(200),
        ..QueueConfig::default()
    }
}

fn detection(key: &str, i: usize) -> Anomaly {
    Anomaly {
        rationale: format!("n={i}"),
        ..Anomaly::flagged(key, "queue_test", 0.9, 0.5)
    }
}

fn unique_key(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// Every detection of `key`, as the set of its `n=` numbers; panics on a duplicate.
async fn landed(store: &dyn Store, key: &str) -> BTreeSet<usize> {
    let page = store
        .query_anomalies(&AnomalyQuery::new().key(key).limit(10_000))
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    for a in &page.items {
        let n: usize = a.anomaly.rationale[2..].parse().unwrap();
        assert!(seen.insert(n), "detection {n} landed twice");
    }
    seen
}

/// A TCP port that refuses connections until [`Proxy::start`] forwards it to the real server, and refuses again
/// after [`Proxy::stop`] (which also cuts the open connections).
struct Proxy {
    port: u16,
    upstream: String,
    task: Option<JoinHandle<()>>,
}

impl Proxy {
    async fn refusing(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        Proxy {
            port,
            upstream,
            task: None,
        }
    }

    async fn start(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("the proxy port is free again");
        let upstream = self.upstream.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        }));
    }

    async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
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

/// The outage test on a server: the database is unreachable at start-up, then up, then down again mid-run, then
/// back; every detection lands exactly once.
pub(crate) async fn outage_on_server(url: String) {
    let (upstream, _) = through_proxy(&url, 0);
    let mut proxy = Proxy::refusing(upstream).await;
    let (_, proxied) = through_proxy(&url, proxy.port);
    let key = unique_key("outage");
    let queue = AnomalyQueue::connect_lazily(proxied, 1_000, fast());

    for i in 0..120 {
        queue.push(detection(&key, i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = queue.stats();
    assert_eq!((stats.depth, stats.written), (120, 0), "{stats:?}");
    assert!(stats.failures > 0 && !stats.healthy, "{stats:?}");
    assert!(stats.last_error.is_some());

    proxy.start().await;
    assert!(
        queue.flush(Duration::from_secs(60)).await,
        "{:?}",
        queue.stats()
    );
    assert!(queue.stats().healthy);

    // Down again, with a connected pool whose connections are cut.
    proxy.stop().await;
    for i in 120..200 {
        queue.push(detection(&key, i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(queue.depth(), 80, "{:?}", queue.stats());
    proxy.start().await;
    assert!(
        queue.flush(Duration::from_secs(60)).await,
        "{:?}",
        queue.stats()
    );
    assert!(queue.close(Duration::from_secs(5)).await.is_empty());
    proxy.stop().await;

    let store = SeaOrmStore::connect(&url).await.unwrap();
    assert_eq!(landed(&store, &key).await, (0..200).collect());
    remove(&store, &key).await;
}

/// Removes a test's rows from a shared database.
async fn remove(store: &dyn Store, key: &str) {
    let policy = RetentionPolicy {
        history: Duration::ZERO,
        anomalies: Duration::ZERO,
        models: Duration::ZERO,
    };
    let now = chrono::Utc::now() + chrono::Duration::seconds(5);
    store
        .cleanup_keys(&policy, now, Some(&[key.to_string()]))
        .await
        .unwrap();
}

/// The outage test on SQLite: the file's directory does not exist yet, so the database cannot be opened; once it
/// exists, everything queued lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-yet");
    let url = format!("sqlite://{}?mode=rwc", missing.join("store.db").display());
    let queue = AnomalyQueue::connect_lazily(url.clone(), 1_000, fast());
    for i in 0..75 {
        queue.push(detection("sqlite-outage", i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stats = queue.stats();
    assert_eq!((stats.depth, stats.written), (75, 0), "{stats:?}");
    assert!(stats.failures > 0 && !stats.healthy);

    std::fs::create_dir(&missing).unwrap();
    assert!(
        queue.flush(Duration::from_secs(30)).await,
        "{:?}",
        queue.stats()
    );
    assert_eq!(queue.stats().written, 75);
    assert!(queue.close(Duration::from_secs(5)).await.is_empty());
    let store = SeaOrmStore::connect(&url).await.unwrap();
    assert_eq!(landed(&store, "sqlite-outage").await, (0..75).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_postgres() {
    if let Some(url) = crate::backends::url_from_env("TEST_PG_URL", "outage_on_postgres") {
        outage_on_server(url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_on_mariadb() {
    if let Some(url) = crate::backends::url_from_env("TEST_MYSQL_URL", "outage_on_mariadb") {
        outage_on_server(url).await;
    }
}

/// A full queue pushes back instead of dropping: `try_push` refuses, `push` waits for room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_pushes_back() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("later");
    let url = format!("sqlite://{}?mode=rwc", missing.join("store.db").display());
    let config = QueueConfig {
        capacity: 5,
        ..fast()
    };
    let queue = Arc::new(AnomalyQueue::connect_lazily(url.clone(), 1_000, config));
    for i in 0..5 {
        queue.try_push(detection("full", i)).unwrap();
    }
    let err = queue.try_push(detection("full", 5)).unwrap_err();
    assert!(
        matches!(err, StoreError::QueueFull { capacity: 5 }),
        "{err}"
    );
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move { queue.push(detection("full", 5)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished(), "push waits for room");
    std::fs::create_dir(&missing).unwrap();
    waiting.await.unwrap().unwrap();
    assert!(queue.flush(Duration::from_secs(30)).await);
    let store = SeaOrmStore::connect(&url).await.unwrap();
    assert_eq!(landed(&store, "full").await, (0..6).collect());
}

/// A detection the store refuses is set aside, not retried forever, and does not hold back the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_detections_are_set_aside() {
    let store = Arc::new(InMemoryStore::default());
    let queue = AnomalyQueue::new(store.clone(), fast());
    for i in 0..10 {
        let key = if i == 4 {
            "k".repeat(300)
        } else {
            "ok".to_string()
        };
        queue.push(detection(&key, i)).await.unwrap();
    }
    assert!(queue.flush(Duration::from_secs(10)).await);
    let stats = queue.stats();
    assert_eq!((stats.written, stats.rejected), (9, 1), "{stats:?}");
    let rejected = queue.take_rejected();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].1.contains("at most 255"), "{}", rejected[0].1);
    assert_eq!(landed(store.as_ref(), "ok").await.len(), 9);
    assert!(matches!(
        queue.close(Duration::from_secs(1)).await.as_slice(),
        []
    ));
}

/// The URL with its database name replaced by one that does not exist.
fn unknown_database(url: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let cut = base.rfind('/').expect("a database name");
    let mut unknown = format!("{}/no_such_database_here", &base[..cut]);
    if let Some(q) = query {
        unknown = format!("{unknown}?{q}");
    }
    unknown
}

/// A server that cannot be reached is told apart from one that answers with an error: the first may pass by
/// itself (a service starts without it), the second is a configuration to fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_refusing_servers_are_told_apart() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for url in [
        format!("postgres://postgres@127.0.0.1:{port}/test"),
        format!("mysql://root@127.0.0.1:{port}/test"),
    ] {
        let err = SeaOrmStore::connect_with_timeout(&url, Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(err.is_unreachable(), "{url}: {}", err.chain());
    }
    for (var, test) in [
        ("TEST_PG_URL", "unknown_database_on_postgres"),
        ("TEST_MYSQL_URL", "unknown_database_on_mariadb"),
    ] {
        if let Some(url) = crate::backends::url_from_env(var, test) {
            let err =
                SeaOrmStore::connect_with_timeout(&unknown_database(&url), Duration::from_secs(5))
                    .await
                    .unwrap_err();
            assert!(!err.is_unreachable(), "{var}: {}", err.chain());
        }
    }
}
