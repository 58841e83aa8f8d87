//! [`SeaOrmStore`]: the store on SQLite, PostgreSQL or MySQL/MariaDB, through sea-orm.

mod bulk;
mod entities;
mod migration;
mod nul;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectOptions, Database, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde_json::Value;

use crate::error::{Result, StoreError, check_key, check_source};
use crate::store::Store;
use crate::types::{
    Anomaly, AnomalyPage, AnomalyQuery, CleanupReport, DataSource, HistoryRecord, ModelMetadata,
    ModelVersion, QueryPattern, RetentionPolicy, SavedModel, SourceStatus, StoredAnomaly,
    to_micros,
};
use entities::{data_source, detection, history, model, query_pattern};
use nul::NulCheck;

/// Rows per multi-row `INSERT` (12 columns × 1,000 stays under every backend's limit of bound parameters).
const INSERT_CHUNK: usize = 1_000;
/// Rows per trimming `DELETE`.
const TRIM_CHUNK: u64 = 10_000;
/// Attempts of an operation that lost a race (a duplicate version, a deadlock, a busy SQLite file).
const ATTEMPTS: u32 = 10;

/// Serialises schema migrations of the stores of one process (several may connect to one database at once).
static MIGRATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a [`SeaOrmStore`] waits on its database server before an operation fails with the reason
/// ([`StoreError::is_unreachable`] tells such a failure). Every wait on the server is bounded: none of these can be
/// switched off.
///
/// ```
/// use std::time::Duration;
/// let timeouts = anomaly_store::Timeouts::default().connect(Duration::from_secs(2));
/// assert_eq!(timeouts.connect_timeout(), Duration::from_secs(2));
/// assert_eq!(timeouts.acquire_timeout(), anomaly_store::Timeouts::DEFAULT_ACQUIRE);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    connect: Duration,
    acquire: Duration,
}

impl Timeouts {
    /// Default of [`connect`](Timeouts::connect): 5 s.
    pub const DEFAULT_CONNECT: Duration = Duration::from_secs(5);
    /// Default of [`acquire`](Timeouts::acquire): 10 s.
    pub const DEFAULT_ACQUIRE: Duration = Duration::from_secs(10);

    /// Both waits bounded by `timeout` (what [`SeaOrmStore::connect_with_timeout`] uses).
    pub fn uniform(timeout: Duration) -> Self {
        Timeouts {
            connect: timeout,
            acquire: timeout,
        }
    }

    /// How long connecting may take, from the first attempt to an open connection, including the attempts the
    /// driver repeats while the server refuses connections (default [`DEFAULT_CONNECT`](Self::DEFAULT_CONNECT)).
    /// Migrations run after it, each statement within the acquire timeout.
    pub fn connect(mut self, timeout: Duration) -> Self {
        self.connect = timeout;
        self
    }

    /// How long an operation may wait for a connection of the pool, opening a new one included (default
    /// [`DEFAULT_ACQUIRE`](Self::DEFAULT_ACQUIRE)).
    pub fn acquire(mut self, timeout: Duration) -> Self {
        self.acquire = timeout;
        self
    }

    /// See [`connect`](Timeouts::connect).
    pub fn connect_timeout(&self) -> Duration {
        self.connect
    }

    /// See [`acquire`](Timeouts::acquire).
    pub fn acquire_timeout(&self) -> Duration {
        self.acquire
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Self::DEFAULT_CONNECT,
            acquire: Self::DEFAULT_ACQUIRE,
        }
    }
}

/// A [`Store`] on a database: `sqlite://path?mode=rwc` (the embedded default), `sqlite::memory:`,
/// `postgres://user:password@host/db` or `mysql://user:password@host/db` (MariaDB too).
///
/// [`connect`](SeaOrmStore::connect) creates or upgrades the schema (tables prefixed `anomaly_`, migrations
/// recorded in `anomaly_store_migrations`). Timestamps keep microseconds on every backend.
///
/// Clones share the connection pool.
#[derive(Clone)]
pub struct SeaOrmStore {
    db: DatabaseConnection,
    backend: &'static str,
    max_history: u64,
}

impl std::fmt::Debug for SeaOrmStore {
    // Never the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaOrmStore")
            .field("backend", &self.backend)
            .field("max_history", &self.max_history)
            .finish_non_exhaustive()
    }
}

fn backend_of(url: &str) -> Result<&'static str> {
    let scheme = url
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match scheme.as_str() {
        "sqlite" => Ok("sqlite"),
        "postgres" | "postgresql" => Ok("postgres"),
        "mysql" => Ok("mysql"),
        _ => Err(StoreError::UnsupportedUrl { scheme }),
    }
}

fn db_err(operation: &'static str) -> impl FnOnce(DbErr) -> StoreError {
    move |e| crate::error::from_db(operation, e)
}

/// Whether an error means "lost a race, try again": a duplicate key, a deadlock, a serialisation failure, a busy
/// SQLite file.
fn retryable(e: &DbErr) -> bool {
    if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
        return true;
    }
    let msg = e.to_string().to_ascii_lowercase();
    [
        "deadlock",
        "database is locked",
        "busy",
        "could not serialize",
        "lock wait timeout",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// Runs `$attempt` (an expression giving `Result<T, DbErr>`) until it succeeds, fails for good, or loses
/// [`ATTEMPTS`] races; the error becomes [`StoreError::Database`] for `$operation`.
macro_rules! with_retries {
    ($operation:expr, $attempt:expr) => {{
        let mut attempt = 0u32;
        loop {
            match $attempt {
                Ok(v) => break Ok(v),
                Err(e) if attempt + 1 < ATTEMPTS && retryable(&e) => {
                    attempt += 1;
                    tracing::debug!(operation = $operation, attempt, error = %e, "retrying after a lost race");
                    tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
                }
                Err(e) => break Err(db_err($operation)(e)),
            }
        }
    }};
}

/// `column IN keys`, or no condition when `keys` is `None`.
fn in_keys(column: impl ColumnTrait, keys: Option<&[String]>) -> Condition {
    let mut cond = Condition::all();
    if let Some(keys) = keys {
        cond = cond.add(column.is_in(keys.iter().map(String::as_str)));
    }
    cond
}

fn to_i64(field: &'static str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| StoreError::InvalidInput {
        field,
        reason: format!("{v} exceeds the largest storable value {}", i64::MAX),
    })
}

fn to_u64(what: &'static str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what,
        reason: format!("negative count or version {v}"),
    })
}

impl SeaOrmStore {
    /// Connects and creates or upgrades the schema, with the default [`Timeouts`] (connecting within 5 s, a pooled
    /// connection within 10 s). History is capped at 100,000 records per key (see
    /// [`with_max_history`](SeaOrmStore::with_max_history)).
    ///
    /// ```no_run
    /// # async fn f() -> anomaly_store::Result<()> {
    /// let store = anomaly_store::SeaOrmStore::connect("sqlite://anomaly.db?mode=rwc").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for another scheme, [`StoreError::Connect`] when the database does not
    /// answer in time ([`StoreError::is_unreachable`]) or refuses the connection, [`StoreError::Migration`] when the
    /// schema cannot be created.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_timeouts(url, Timeouts::default()).await
    }

    /// Creates the directory of the SQLite file `url` names (`sqlite://DIR/FILE?…`) when it is missing, so a
    /// service's default database works from a fresh checkout; nothing for other URLs and `:memory:`.
    ///
    /// # Errors
    /// The directory cannot be created; the error names it.
    pub fn create_sqlite_dir(url: &str) -> std::io::Result<()> {
        let Some(rest) = url.strip_prefix("sqlite://") else {
            return Ok(());
        };
        let path = rest.split('?').next().unwrap_or(rest);
        match std::path::Path::new(path).parent() {
            Some(dir) if !dir.as_os_str().is_empty() && path != ":memory:" => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("creating {}: {e}", dir.display()))
                })
            }
            _ => Ok(()),
        }
    }

    /// As [`connect`](SeaOrmStore::connect), with one bound for connecting and for later waiting for a pooled
    /// connection ([`Timeouts::uniform`]). A short timeout suits a caller that retries by itself, such as
    /// [`AnomalyQueue`](crate::AnomalyQueue).
    ///
    /// # Errors
    /// As [`connect`](SeaOrmStore::connect).
    pub async fn connect_with_timeout(url: &str, timeout: Duration) -> Result<Self> {
        Self::connect_with_timeouts(url, Timeouts::uniform(timeout)).await
    }

    /// As [`connect`](SeaOrmStore::connect), with the given [`Timeouts`].
    ///
    /// # Errors
    /// As [`connect`](SeaOrmStore::connect).
    pub async fn connect_with_timeouts(url: &str, timeouts: Timeouts) -> Result<Self> {
        let backend = backend_of(url)?;
        let mut options = ConnectOptions::new(url.to_string());
        // sea-orm hands both settings to the pool's acquire timeout (the later wins); the connect timeout bounds
        // the first connection below.
        options
            .sqlx_logging(false)
            .connect_timeout(timeouts.acquire)
            .acquire_timeout(timeouts.acquire);
        if backend == "sqlite" && !url.contains(":memory:") && !url.contains("mode=memory") {
            // A write-ahead log instead of the rollback journal: a commit appends the new pages once instead of
            // copying every page it changes to the journal first, and readers no longer block the writer. With
            // `synchronous` left at FULL, a commit is still on disk when it returns. A 64 MiB page cache keeps
            // the indexes of a busy detections table in memory.
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .pragma("cache_size", "-65536")
            });
        }
        // The driver repeats a refused connection until its acquire timeout and then reports only that it timed
        // out; the connect timeout cuts it short with the reason.
        let db = match tokio::time::timeout(timeouts.connect, Database::connect(options)).await {
            Ok(connected) => connected.map_err(|e| StoreError::Connect {
                backend,
                source: Box::new(e),
            })?,
            Err(_) => {
                return Err(StoreError::Connect {
                    backend,
                    source: Box::new(sea_orm::sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "no connection within {:?} (the server refuses connections or does not answer)",
                            timeouts.connect
                        ),
                    ))),
                });
            }
        };
        let store = SeaOrmStore {
            db,
            backend,
            max_history: 100_000,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// A [`LazyStore`](crate::LazyStore) over `url`: nothing is connected now; the first call connects (as
    /// [`connect_with_timeout`](SeaOrmStore::connect_with_timeout), migrations included, keeping `max_history`
    /// records per key), and while that fails, calls fail with the connection's error and a new attempt is made
    /// at most once per `retry_after`. For a service that must start while its database is down.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] at once for a URL of no supported database.
    pub fn lazy(
        url: &str,
        timeout: Duration,
        max_history: u64,
        retry_after: Duration,
    ) -> Result<crate::LazyStore> {
        let backend = backend_of(url)?;
        let url = url.to_string();
        Ok(crate::LazyStore::new(
            backend,
            retry_after,
            Box::new(move || {
                let url = url.clone();
                Box::pin(async move {
                    let store = SeaOrmStore::connect_with_timeout(&url, timeout).await?;
                    Ok(Arc::new(store.with_max_history(max_history)) as Arc<dyn Store>)
                })
            }),
        ))
    }

    /// Connects to `url` now if its database answers, else later: a [`LazyStore`](crate::LazyStore) either way,
    /// with the reason the database did not answer. Only a server that cannot be reached (refused, timed out, host
    /// not found) is connected later, at most once per `retry_after`; a bad URL, a server that answers with an error
    /// (wrong credentials, an unknown database), a failed migration or an SQLite file that cannot be opened is an
    /// error now. For a service that must start while its database server is down.
    ///
    /// # Errors
    /// As [`connect`](SeaOrmStore::connect), but for a server that cannot be reached.
    pub async fn connect_or_lazy(
        url: &str,
        timeout: Duration,
        max_history: u64,
        retry_after: Duration,
    ) -> Result<(crate::LazyStore, Option<String>)> {
        let backend = backend_of(url)?;
        match SeaOrmStore::connect_with_timeout(url, timeout).await {
            Ok(store) => {
                let store: Arc<dyn Store> = Arc::new(store.with_max_history(max_history));
                Ok((crate::LazyStore::ready(backend, store), None))
            }
            Err(e @ StoreError::Connect { .. }) if e.is_unreachable() && backend != "sqlite" => {
                let reason = e.chain();
                tracing::warn!(error = %reason, "the database does not answer: connecting when it does");
                let lazy = SeaOrmStore::lazy(url, timeout, max_history, retry_after)?;
                Ok((lazy, Some(reason)))
            }
            Err(e) => Err(e),
        }
    }

    /// Keeps at most `max_history` history records per key (the oldest are dropped first on append).
    pub fn with_max_history(mut self, max_history: u64) -> Self {
        self.max_history = max_history;
        self
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    fn nul_check(&self) -> NulCheck {
        NulCheck {
            active: self.backend == "postgres",
        }
    }

    /// Creates or upgrades the schema (done by [`connect`](SeaOrmStore::connect); idempotent).
    ///
    /// # Errors
    /// [`StoreError::Migration`] when the schema cannot be created.
    pub async fn migrate(&self) -> Result<()> {
        let _guard = MIGRATING.lock().await;
        // Another process may be migrating the same database: its tables appear under our feet, so try twice.
        let mut result = migration::Migrator::up(&self.db, None).await;
        if result.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            result = migration::Migrator::up(&self.db, None).await;
        }
        result.map_err(|e| StoreError::Migration {
            source: Box::new(e),
        })
    }
}

fn history_from(m: history::Model) -> HistoryRecord {
    HistoryRecord {
        key: m.key,
        payload: m.payload,
        timestamp: m.ts,
    }
}

fn anomaly_from(m: detection::Model) -> Result<StoredAnomaly> {
    Ok(StoredAnomaly {
        id: m.id,
        anomaly: Anomaly {
            key: m.key,
            detector: m.detector,
            score: m.score,
            threshold: m.threshold,
            is_anomaly: m.is_anomaly,
            rationale: m.rationale,
            explanation: m.explanation,
            context: m.context,
            config: m.config,
            model_version: m.model_version.map(|v| to_u64("anomaly", v)).transpose()?,
            created_at: m.created_at,
        },
    })
}

/// Checks a detection before it is written; returns its model version as stored.
fn check_anomaly(a: &Anomaly, nul: NulCheck) -> Result<Option<i64>> {
    check_key("key", &a.key)?;
    check_key("detector", &a.detector)?;
    nul.text("key", &a.key)?;
    nul.text("detector", &a.detector)?;
    nul.text("rationale", &a.rationale)?;
    nul.json("explanation", &a.explanation)?;
    nul.json("context", &a.context)?;
    nul.json("config", &a.config)?;
    a.model_version
        .map(|v| to_i64("model_version", v))
        .transpose()
}

/// The row of a detection that passed [`check_anomaly`], which gave `model_version`.
fn anomaly_row(a: &Anomaly, model_version: Option<i64>) -> detection::ActiveModel {
    detection::ActiveModel {
        id: NotSet,
        key: Set(a.key.clone()),
        detector: Set(a.detector.clone()),
        score: Set(a.score),
        threshold: Set(a.threshold),
        is_anomaly: Set(a.is_anomaly),
        rationale: Set(a.rationale.clone()),
        explanation: Set(a.explanation.clone()),
        context: Set(a.context.clone()),
        config: Set(a.config.clone()),
        model_version: Set(model_version),
        created_at: Set(to_micros(a.created_at)),
    }
}

type InfoRow = (
    String,
    i64,
    String,
    i64,
    Value,
    chrono::DateTime<Utc>,
    Value,
    chrono::DateTime<Utc>,
);

fn info_from(row: InfoRow) -> Result<ModelVersion> {
    let (key, version, kind, records, features, trained_at, metrics, saved_at) = row;
    let features: Vec<String> =
        serde_json::from_value(features).map_err(|e| StoreError::Corrupt {
            what: "model",
            reason: format!("features are not a list of names: {e}"),
        })?;
    Ok(ModelVersion {
        key,
        version: to_u64("model", version)?,
        kind,
        metadata: ModelMetadata {
            records_trained_on: to_u64("model", records)?,
            features,
            trained_at,
            metrics,
        },
        saved_at,
    })
}

fn source_from(m: data_source::Model) -> Result<DataSource> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: "data source",
        reason,
    };
    Ok(DataSource {
        series_columns: serde_json::from_value(m.series_columns)
            .map_err(|e| corrupt(format!("series columns are not a list of names: {e}")))?,
        poll_interval_seconds: to_u64("data source", m.poll_interval_seconds)?,
        status: SourceStatus::parse(&m.status)
            .ok_or_else(|| corrupt(format!("unknown status {:?}", m.status)))?,
        watermark: m.watermark.unwrap_or(Value::Null),
        name: m.name,
        url: m.url,
        query: m.query,
        timestamp_column: m.timestamp_column,
        sensitivity: m.sensitivity,
        last_error: m.last_error,
    })
}

fn pattern_from(m: query_pattern::Model) -> Result<QueryPattern> {
    Ok(QueryPattern {
        query_hash: m.query_hash,
        text: m.text,
        operation_name: m.operation_name,
        variables: m.variables,
        role: m.role,
        count: to_u64("query pattern", m.count)?,
        anomaly_count: to_u64("query pattern", m.anomaly_count)?,
        anomalous: m.anomalous,
        first_seen: m.first_seen,
        last_seen: m.last_seen,
    })
}

const INFO_COLUMNS: [model::Column; 8] = [
    model::Column::Key,
    model::Column::Version,
    model::Column::Kind,
    model::Column::RecordsTrainedOn,
    model::Column::Features,
    model::Column::TrainedAt,
    model::Column::Metrics,
    model::Column::SavedAt,
];

#[async_trait]
impl Store for SeaOrmStore {
    async fn append_history(&self, records: &[HistoryRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let nul = self.nul_check();
        for r in records {
            check_key("key", &r.key)?;
            nul.text("key", &r.key)?;
            nul.json("payload", &r.payload)?;
        }
        let keys: BTreeSet<&str> = records.iter().map(|r| r.key.as_str()).collect();
        let max_history = self.max_history;
        if self.backend == "sqlite" {
            let pool = self.db.get_sqlite_connection_pool();
            return with_retries!(
                "append history",
                bulk::append_history(pool, records, &keys, max_history).await
            );
        }
        with_retries!(
            "append history",
            async {
                let txn = self.db.begin().await?;
                for chunk in records.chunks(INSERT_CHUNK) {
                    history::Entity::insert_many(chunk.iter().map(|r| history::ActiveModel {
                        id: NotSet,
                        key: Set(r.key.clone()),
                        payload: Set(r.payload.clone()),
                        ts: Set(to_micros(r.timestamp)),
                    }))
                    .exec_without_returning(&txn)
                    .await?;
                }
                for key in &keys {
                    loop {
                        let excess: Vec<i64> = history::Entity::find()
                            .select_only()
                            .column(history::Column::Id)
                            .filter(history::Column::Key.eq(*key))
                            .order_by_desc(history::Column::Ts)
                            .order_by_desc(history::Column::Id)
                            .offset(max_history)
                            .limit(TRIM_CHUNK)
                            .into_tuple()
                            .all(&txn)
                            .await?;
                        if excess.is_empty() {
                            break;
                        }
                        let n = excess.len() as u64;
                        history::Entity::delete_many()
                            .filter(history::Column::Id.is_in(excess))
                            .exec(&txn)
                            .await?;
                        if n < TRIM_CHUNK {
                            break;
                        }
                    }
                }
                txn.commit().await
            }
            .await
        )
    }

    async fn load_history(&self, key: &str, limit: u64) -> Result<Vec<HistoryRecord>> {
        let mut rows = history::Entity::find()
            .filter(history::Column::Key.eq(key))
            .order_by_desc(history::Column::Ts)
            .order_by_desc(history::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await
            .map_err(db_err("load history"))?;
        rows.reverse();
        Ok(rows.into_iter().map(history_from).collect())
    }

    async fn clear_history(&self, key: &str) -> Result<u64> {
        let r = history::Entity::delete_many()
            .filter(history::Column::Key.eq(key))
            .exec(&self.db)
            .await
            .map_err(db_err("clear history"))?;
        Ok(r.rows_affected)
    }

    async fn insert_anomalies(&self, anomalies: &[Anomaly]) -> Result<u64> {
        if anomalies.is_empty() {
            return Ok(0);
        }
        let versions = anomalies
            .iter()
            .map(|a| check_anomaly(a, self.nul_check()))
            .collect::<Result<Vec<_>>>()?;
        if self.backend == "sqlite" {
            let pool = self.db.get_sqlite_connection_pool();
            with_retries!(
                "insert anomalies",
                bulk::insert_anomalies(pool, anomalies, &versions).await
            )?;
            return Ok(anomalies.len() as u64);
        }
        if self.backend == "postgres" {
            let pool = self.db.get_postgres_connection_pool();
            with_retries!(
                "insert anomalies",
                bulk::insert_anomalies_pg(pool, anomalies, &versions).await
            )?;
            return Ok(anomalies.len() as u64);
        }
        with_retries!(
            "insert anomalies",
            async {
                let txn = self.db.begin().await?;
                // Rows are built chunk by chunk (the JSON values copied once, not kept for a retry).
                for (chunk, versions) in anomalies
                    .chunks(INSERT_CHUNK)
                    .zip(versions.chunks(INSERT_CHUNK))
                {
                    detection::Entity::insert_many(
                        chunk.iter().zip(versions).map(|(a, v)| anomaly_row(a, *v)),
                    )
                    .exec_without_returning(&txn)
                    .await?;
                }
                txn.commit().await
            }
            .await
        )?;
        Ok(anomalies.len() as u64)
    }

    async fn insert_anomaly(&self, anomaly: &Anomaly) -> Result<i64> {
        let row = anomaly_row(anomaly, check_anomaly(anomaly, self.nul_check())?);
        let r = detection::Entity::insert(row)
            .exec(&self.db)
            .await
            .map_err(db_err("insert anomaly"))?;
        Ok(r.last_insert_id)
    }

    async fn query_anomalies(&self, query: &AnomalyQuery) -> Result<AnomalyPage> {
        use detection::Column as C;
        let mut cond = anomaly_filters(query);
        if let Some(c) = &query.after {
            cond = cond.add(
                Condition::any().add(C::CreatedAt.lt(c.created_at)).add(
                    Condition::all()
                        .add(C::CreatedAt.eq(c.created_at))
                        .add(C::Id.lt(c.id)),
                ),
            );
        }
        let limit = query.page_size();
        let mut select = detection::Entity::find()
            .filter(cond)
            .order_by_desc(C::CreatedAt)
            .order_by_desc(C::Id)
            .limit(limit + 1);
        if query.offset > 0 {
            select = select.offset(query.offset);
        }
        let rows = select
            .all(&self.db)
            .await
            .map_err(db_err("query anomalies"))?;
        let items = rows
            .into_iter()
            .map(anomaly_from)
            .collect::<Result<Vec<_>>>()?;
        Ok(AnomalyPage::from_items(items, limit))
    }

    async fn count_anomalies(&self, query: &AnomalyQuery) -> Result<u64> {
        detection::Entity::find()
            .filter(anomaly_filters(query))
            .count(&self.db)
            .await
            .map_err(db_err("count anomalies"))
    }

    async fn anomaly(&self, id: i64) -> Result<Option<StoredAnomaly>> {
        detection::Entity::find_by_id(id)
            .one(&self.db)
            .await
            .map_err(db_err("read an anomaly"))?
            .map(anomaly_from)
            .transpose()
    }

    async fn save_model_at(
        &self,
        key: &str,
        kind: &str,
        metadata: &ModelMetadata,
        snapshot: &[u8],
        saved_at: DateTime<Utc>,
    ) -> Result<u64> {
        check_key("key", key)?;
        check_key("kind", kind)?;
        let nul = self.nul_check();
        nul.text("key", key)?;
        nul.text("kind", kind)?;
        for f in &metadata.features {
            nul.text("features", f)?;
        }
        nul.json("metrics", &metadata.metrics)?;
        let records = to_i64("records_trained_on", metadata.records_trained_on)?;
        let features = serde_json::to_value(&metadata.features).unwrap_or(Value::Null);
        let version: i64 = with_retries!(
            "save model",
            async {
                let txn = self.db.begin().await?;
                let latest: Option<Option<i64>> = model::Entity::find()
                    .select_only()
                    .expr(Func::max(Expr::col(model::Column::Version)))
                    .filter(model::Column::Key.eq(key))
                    .into_tuple()
                    .one(&txn)
                    .await?;
                let version = latest.flatten().unwrap_or(0) + 1;
                model::Entity::insert(model::ActiveModel {
                    id: NotSet,
                    key: Set(key.to_string()),
                    version: Set(version),
                    kind: Set(kind.to_string()),
                    snapshot: Set(snapshot.to_vec()),
                    records_trained_on: Set(records),
                    features: Set(features.clone()),
                    trained_at: Set(to_micros(metadata.trained_at)),
                    metrics: Set(metadata.metrics.clone()),
                    saved_at: Set(to_micros(saved_at)),
                })
                .exec_without_returning(&txn)
                .await?;
                txn.commit().await?;
                Ok::<_, DbErr>(version)
            }
            .await
        )?;
        to_u64("model", version)
    }

    async fn load_model(&self, key: &str, version: Option<u64>) -> Result<Option<SavedModel>> {
        let mut q = model::Entity::find().filter(model::Column::Key.eq(key));
        if let Some(v) = version {
            let Ok(v) = i64::try_from(v) else {
                return Ok(None);
            };
            q = q.filter(model::Column::Version.eq(v));
        }
        let Some(m) = q
            .order_by_desc(model::Column::Version)
            .one(&self.db)
            .await
            .map_err(db_err("load model"))?
        else {
            return Ok(None);
        };
        let info = info_from((
            m.key,
            m.version,
            m.kind,
            m.records_trained_on,
            m.features,
            m.trained_at,
            m.metrics,
            m.saved_at,
        ))?;
        Ok(Some(SavedModel {
            info,
            snapshot: m.snapshot,
        }))
    }

    async fn model_versions(&self, key: &str) -> Result<Vec<ModelVersion>> {
        let rows: Vec<InfoRow> = model::Entity::find()
            .select_only()
            .columns(INFO_COLUMNS)
            .filter(model::Column::Key.eq(key))
            .order_by_asc(model::Column::Version)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err("list model versions"))?;
        rows.into_iter().map(info_from).collect()
    }

    async fn ping(&self) -> Result<()> {
        self.db.ping().await.map_err(db_err("ping the database"))
    }

    async fn keys(&self) -> Result<Vec<String>> {
        let mut keys: Vec<String> = history::Entity::find()
            .select_only()
            .column(history::Column::Key)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err("list keys"))?;
        let models: Vec<String> = model::Entity::find()
            .select_only()
            .column(model::Column::Key)
            .distinct()
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(db_err("list keys"))?;
        keys.extend(models);
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    async fn cleanup_keys(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
        keys: Option<&[String]>,
    ) -> Result<CleanupReport> {
        if keys.is_some_and(<[String]>::is_empty) {
            return Ok(CleanupReport::default());
        }
        let [history_cut, anomaly_cut, model_cut] = policy.cutoffs(now);

        let history_removed = history::Entity::delete_many()
            .filter(history::Column::Ts.lt(history_cut))
            .filter(in_keys(history::Column::Key, keys))
            .exec(&self.db)
            .await
            .map_err(db_err("clean up history"))?
            .rows_affected;
        let anomalies_removed = detection::Entity::delete_many()
            .filter(detection::Column::CreatedAt.lt(anomaly_cut))
            .filter(in_keys(detection::Column::Key, keys))
            .exec(&self.db)
            .await
            .map_err(db_err("clean up anomalies"))?
            .rows_affected;
        let model_scope = in_keys(model::Column::Key, keys);
        let models_removed = with_retries!(
            "clean up models",
            async {
                let txn = self.db.begin().await?;
                // Old versions, then each of their keys' latest version: MySQL cannot delete from a table that a
                // subquery of the same statement reads, so the latest versions are read first.
                let old: Vec<(i64, String, i64)> = model::Entity::find()
                    .select_only()
                    .column(model::Column::Id)
                    .column(model::Column::Key)
                    .column(model::Column::Version)
                    .filter(model::Column::SavedAt.lt(model_cut))
                    .filter(model_scope.clone())
                    .into_tuple()
                    .all(&txn)
                    .await?;
                let old_keys: Vec<&str> = old
                    .iter()
                    .map(|(_, k, _)| k.as_str())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let mut latest: HashMap<String, i64> = HashMap::new();
                for chunk in old_keys.chunks(INSERT_CHUNK) {
                    let rows: Vec<(String, i64)> = model::Entity::find()
                        .select_only()
                        .column(model::Column::Key)
                        .expr(Func::max(Expr::col(model::Column::Version)))
                        .filter(model::Column::Key.is_in(chunk.iter().copied()))
                        .group_by(model::Column::Key)
                        .into_tuple()
                        .all(&txn)
                        .await?;
                    latest.extend(rows);
                }
                let doomed: Vec<i64> = old
                    .iter()
                    .filter(|(_, k, v)| latest.get(k).is_some_and(|l| v < l))
                    .map(|(id, _, _)| *id)
                    .collect();
                let mut removed = 0u64;
                for chunk in doomed.chunks(INSERT_CHUNK) {
                    removed += model::Entity::delete_many()
                        .filter(model::Column::Id.is_in(chunk.iter().copied()))
                        .exec(&txn)
                        .await?
                        .rows_affected;
                }
                txn.commit().await?;
                Ok::<_, DbErr>(removed)
            }
            .await
        )?;
        Ok(CleanupReport {
            history_removed,
            anomalies_removed,
            models_removed,
        })
    }

    async fn upsert_query_pattern(&self, p: &QueryPattern) -> Result<()> {
        check_key("query_hash", &p.query_hash)?;
        if let Some(role) = &p.role {
            check_key("role", role)?;
        }
        let nul = self.nul_check();
        nul.text("query_hash", &p.query_hash)?;
        nul.text("text", &p.text)?;
        nul.opt_text("operation_name", p.operation_name.as_deref())?;
        nul.opt_text("role", p.role.as_deref())?;
        nul.json("variables", &p.variables)?;
        let count = to_i64("count", p.count)?;
        let anomaly_count = to_i64("anomaly_count", p.anomaly_count)?;
        with_retries!(
            "upsert query pattern",
            async {
                let txn = self.db.begin().await?;
                let old = query_pattern::Entity::find()
                    .filter(query_pattern::Column::QueryHash.eq(p.query_hash.as_str()))
                    .one(&txn)
                    .await?;
                let mut row = query_pattern::ActiveModel {
                    id: NotSet,
                    query_hash: Set(p.query_hash.clone()),
                    text: Set(p.text.clone()),
                    operation_name: Set(p.operation_name.clone()),
                    variables: Set(p.variables.clone()),
                    role: Set(p.role.clone()),
                    count: Set(count),
                    anomaly_count: Set(anomaly_count),
                    anomalous: Set(p.anomalous),
                    first_seen: Set(to_micros(p.first_seen)),
                    last_seen: Set(to_micros(p.last_seen)),
                };
                match old {
                    Some(old) => {
                        row.id = Set(old.id);
                        row.first_seen = Set(old.first_seen.min(to_micros(p.first_seen)));
                        query_pattern::Entity::update(row).exec(&txn).await?;
                    }
                    None => {
                        query_pattern::Entity::insert(row)
                            .exec_without_returning(&txn)
                            .await?;
                    }
                }
                txn.commit().await
            }
            .await
        )
    }

    async fn query_pattern(&self, query_hash: &str) -> Result<Option<QueryPattern>> {
        query_pattern::Entity::find()
            .filter(query_pattern::Column::QueryHash.eq(query_hash))
            .one(&self.db)
            .await
            .map_err(db_err("load query pattern"))?
            .map(pattern_from)
            .transpose()
    }

    async fn upsert_data_source(&self, src: &DataSource) -> Result<()> {
        check_source(src)?;
        let nul = self.nul_check();
        for (field, value) in [
            ("name", &src.name),
            ("url", &src.url),
            ("query", &src.query),
            ("timestamp_column", &src.timestamp_column),
        ] {
            nul.text(field, value)?;
        }
        for c in &src.series_columns {
            nul.text("series_columns", c)?;
        }
        nul.opt_text("last_error", src.last_error.as_deref())?;
        nul.json("watermark", &src.watermark)?;
        let interval = to_i64("poll_interval_seconds", src.poll_interval_seconds)?;
        let series = serde_json::to_value(&src.series_columns).unwrap_or(Value::Null);
        with_retries!(
            "upsert data source",
            async {
                let txn = self.db.begin().await?;
                let old = data_source::Entity::find()
                    .filter(data_source::Column::Name.eq(src.name.as_str()))
                    .one(&txn)
                    .await?;
                let mut row = data_source::ActiveModel {
                    id: NotSet,
                    name: Set(src.name.clone()),
                    url: Set(src.url.clone()),
                    query: Set(src.query.clone()),
                    timestamp_column: Set(src.timestamp_column.clone()),
                    series_columns: Set(series.clone()),
                    poll_interval_seconds: Set(interval),
                    sensitivity: Set(src.sensitivity),
                    watermark: Set((!src.watermark.is_null()).then(|| src.watermark.clone())),
                    status: Set(src.status.as_str().to_string()),
                    last_error: Set(src.last_error.clone()),
                };
                match old {
                    Some(old) => {
                        row.id = Set(old.id);
                        data_source::Entity::update(row).exec(&txn).await?;
                    }
                    None => {
                        data_source::Entity::insert(row)
                            .exec_without_returning(&txn)
                            .await?;
                    }
                }
                txn.commit().await
            }
            .await
        )
    }

    async fn data_source(&self, name: &str) -> Result<Option<DataSource>> {
        data_source::Entity::find()
            .filter(data_source::Column::Name.eq(name))
            .one(&self.db)
            .await
            .map_err(db_err("load data source"))?
            .map(source_from)
            .transpose()
    }

    async fn data_sources(&self) -> Result<Vec<DataSource>> {
        let rows = data_source::Entity::find()
            .order_by_asc(data_source::Column::Name)
            .all(&self.db)
            .await
            .map_err(db_err("list data sources"))?;
        rows.into_iter()
            .map(|m| source_from(m).map(|s| s.redacted()))
            .collect()
    }

    async fn update_data_source_state(
        &self,
        name: &str,
        watermark: &Value,
        status: SourceStatus,
        last_error: Option<&str>,
    ) -> Result<bool> {
        let nul = self.nul_check();
        nul.json("watermark", watermark)?;
        nul.opt_text("last_error", last_error)?;
        let r = data_source::Entity::update_many()
            .col_expr(
                data_source::Column::Watermark,
                Expr::value((!watermark.is_null()).then(|| watermark.clone())),
            )
            .col_expr(data_source::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                data_source::Column::LastError,
                Expr::value(last_error.map(str::to_string)),
            )
            .filter(data_source::Column::Name.eq(name))
            .exec(&self.db)
            .await
            .map_err(db_err("update data source state"))?;
        Ok(r.rows_affected > 0)
    }

    async fn delete_data_source(&self, name: &str) -> Result<bool> {
        let r = data_source::Entity::delete_many()
            .filter(data_source::Column::Name.eq(name))
            .exec(&self.db)
            .await
            .map_err(db_err("delete data source"))?;
        Ok(r.rows_affected > 0)
    }
}

/// The conditions of a query's filters (key, detector, time range, score), without its cursor.
fn anomaly_filters(query: &AnomalyQuery) -> Condition {
    use detection::Column as C;
    let mut cond = Condition::all();
    if let Some(k) = &query.key {
        cond = cond.add(C::Key.eq(k.as_str()));
    }
    if let Some(d) = &query.detector {
        cond = cond.add(C::Detector.eq(d.as_str()));
    }
    if let Some(s) = query.since {
        cond = cond.add(C::CreatedAt.gte(to_micros(s)));
    }
    if let Some(u) = query.until {
        cond = cond.add(C::CreatedAt.lt(to_micros(u)));
    }
    if let Some(m) = query.min_score {
        cond = cond.add(C::Score.gte(m));
    }
    cond
}
