//! [`SqlSource`]: a user's `SELECT`, read incrementally by its timestamp column, as JSON records per series.
//!
//! Each [`fetch`](SqlSource::fetch) wraps the query as a sub-query and asks for the rows strictly after the
//! [`Watermark`], ordered by the timestamp column, at most `batch_size` of them; when a batch is cut inside a run of
//! equal timestamps, the rest of that run is fetched too, so a run is never split between two batches. The next
//! watermark is the last row's timestamp. Together this gives: no row twice, none skipped, whatever the number of
//! rows sharing a timestamp, provided rows are not inserted later with a timestamp at or below one already read
//! (late arrivals are the one thing a timestamp watermark cannot see: give the query a column that grows on insert,
//! or poll a view that lags behind the writers). Rows whose timestamp is `NULL` never compare greater than a
//! watermark and are never returned.
//!
//! Each fetch reads at most `batch_size` rows plus the rest of a cut run; a run of equal timestamps longer than
//! [`SqlSource::run_limit`] (`max(10 × batch_size, 10 000)` rows) is not loaded: the fetch fails with
//! [`StoreError::TimestampRunTooLong`], naming the timestamp and the number of rows, rather than reading an
//! unbounded result into memory.
//!
//! A value that JSON cannot hold (a `NUMERIC`/`DECIMAL` beyond an `f64`, such as PostgreSQL's `1e309`) becomes
//! `null` in its record and is listed in [`SourceBatch::dropped_values`] (and logged), so the rows keep flowing and
//! the watermark moves; the timestamp column itself must be readable, or the fetch fails with
//! [`StoreError::SourceColumn`].
//!
//! Safety: the database account's read-only grant is the real boundary. Connect with an account that may only
//! `SELECT` what the query reads: everything below is defence in depth, and the only protection against a function
//! with side effects that the guard does not know (a user-defined one can do whatever its owner may).
//! - [`check_read_only_select`] parses the query in the source's [`SqlDialect`] and refuses anything but one
//!   read-only query: no second statement, no data-modifying CTE, no `INTO`, no locking clause, no call of a
//!   function on its deny list (sleeps, `set_config`, file access, `dblink`, locks, …).
//! - Every fetch runs in its own read-only transaction with a statement timeout
//!   ([`with_statement_timeout`](SqlSource::with_statement_timeout), [`DEFAULT_STATEMENT_TIMEOUT`]), ended by a
//!   rollback, so that nothing a query does can change the settings of the next one: PostgreSQL `BEGIN READ ONLY`
//!   with `SET LOCAL statement_timeout` (and `standard_conforming_strings`, so the server reads literals as the
//!   guard did); MySQL `START TRANSACTION READ ONLY` with `max_execution_time`, MariaDB with `max_statement_time`;
//!   SQLite a transaction on a connection under `PRAGMA query_only`, with a progress handler that interrupts a
//!   statement past the timeout (SQLite has no statement timeout of its own). Sessions also default to read-only,
//!   and MySQL sessions get a fixed `sql_mode` without `ANSI_QUOTES` and `NO_BACKSLASH_ESCAPES`, again so that the
//!   server reads the text as the guard did. On PostgreSQL the timeout is set again before each statement of a
//!   fetch, so a `set_config` in the query cannot lift it for the statements after.
//! - A statement past the timeout fails with [`StoreError::StatementTimeout`].

mod decode;
mod guard;
mod watermark;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::sqlx::{
    self, Executor, Row,
    mysql::{
        MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions,
    },
    postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool, SqlitePoolOptions},
};
use serde_json::Value;

pub use guard::{SqlDialect, check_read_only_select};
pub use watermark::Watermark;

use crate::error::{Result, StoreError, check_key};
use crate::types::DataSource;

/// Binds an optional watermark as the SQL type it came from.
macro_rules! bind {
    ($q:expr, $at:expr) => {{
        let q = $q;
        match $at {
            None => q,
            Some(Watermark::Integer(v)) => q.bind(*v),
            Some(Watermark::Float(v)) => q.bind(*v),
            Some(Watermark::Timestamp(v)) => q.bind(*v),
            Some(Watermark::DateTime(v)) => q.bind(*v),
            Some(Watermark::Date(v)) => q.bind(*v),
            Some(Watermark::Text(v)) => q.bind(v.as_str()),
        }
    }};
}

/// Rows per batch unless [`SqlSource::with_batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: u64 = 1_000;

/// How long one statement of a fetch may run unless [`SqlSource::with_statement_timeout`] says otherwise.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The fewest rows a fetch reads for one run of equal timestamps, whatever the batch size
/// ([`SqlSource::run_limit`]).
const MIN_RUN_LIMIT: u64 = 10_000;

/// How many SQLite virtual-machine instructions run between two looks at the statement's deadline.
const SQLITE_PROGRESS_STEPS: i32 = 1_000;

/// A row of a [`SqlSource`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// The values of the series columns, in their order (empty when the source has none).
    pub series: Vec<Value>,
    /// The value of the timestamp column.
    pub timestamp: Watermark,
    /// The whole row as a JSON object, column name → value (timestamps as ISO-8601 strings, `DECIMAL` as numbers,
    /// binary data as `0x…` hex strings; `null` for a value JSON cannot hold, see [`SourceBatch::dropped_values`]).
    pub record: Value,
}

impl SourceRow {
    /// The series as one string, `column=value` pairs joined by `,` (`host=web-1,region=eu`), usable as a store or
    /// engine key; empty for a source without series columns.
    pub fn series_key(&self, columns: &[String]) -> String {
        columns
            .iter()
            .zip(&self.series)
            .map(|(c, v)| match v {
                Value::String(s) => format!("{c}={s}"),
                other => format!("{c}={other}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A value of a source row that JSON cannot hold (a `NUMERIC` beyond an `f64`, such as `1e309`): the row's record
/// has `null` in its place.
#[derive(Debug, Clone, PartialEq)]
pub struct DroppedValue {
    /// The column.
    pub column: String,
    /// The timestamp of the row.
    pub timestamp: Watermark,
    /// Why it could not be read (with the start of the value).
    pub reason: String,
}

/// One fetch of a [`SqlSource`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceBatch {
    /// The rows, in timestamp order.
    pub rows: Vec<SourceRow>,
    /// Where the next fetch starts: the last row's timestamp, or the watermark given when there were no rows.
    pub watermark: Option<Watermark>,
    /// Whether the batch was full, so more rows may be waiting.
    pub more: bool,
    /// The values replaced by `null` in the records because JSON cannot hold them, one per value.
    pub dropped_values: Vec<DroppedValue>,
}

impl SourceBatch {
    /// The rows grouped by series key ([`SourceRow::series_key`]), each group in timestamp order.
    pub fn by_series(&self, columns: &[String]) -> BTreeMap<String, Vec<&SourceRow>> {
        let mut groups: BTreeMap<String, Vec<&SourceRow>> = BTreeMap::new();
        for row in &self.rows {
            groups.entry(row.series_key(columns)).or_default().push(row);
        }
        groups
    }
}

#[derive(Clone)]
enum Pool {
    Postgres(PgPool),
    MySql { pool: MySqlPool, mariadb: bool },
    Sqlite(SqlitePool),
}

/// The connection of one fetch, inside its transaction.
enum Conn<'a> {
    Postgres(&'a mut PgConnection),
    MySql(&'a mut MySqlConnection),
    Sqlite(&'a mut SqliteConnection),
}

/// A user's `SELECT` on SQLite, PostgreSQL or MySQL/MariaDB, read incrementally by its timestamp column (see the
/// [crate docs](crate)).
///
/// The database account's read-only grant is the real boundary; the query guard ([`check_read_only_select`]) and
/// the read-only transaction with a statement timeout each fetch runs in are defence in depth.
///
/// ```no_run
/// use std::time::Duration;
/// use anomaly_store::SqlSource;
///
/// # async fn f() -> anomaly_store::Result<()> {
/// let source = SqlSource::connect(
///     "postgres://reader@db/shop",
///     "SELECT created_at, region, amount, items FROM orders",
///     "created_at",
///     &["region".to_string()],
/// )
/// .await?
/// .with_statement_timeout(Duration::from_secs(10));
/// let mut watermark = None;
/// loop {
///     let batch = source.fetch(watermark.as_ref()).await?;
///     for (series, rows) in batch.by_series(source.series_columns()) {
///         // score `rows[i].record` with the model of `series`…
///     }
///     watermark = batch.watermark;
///     if !batch.more {
///         break;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlSource {
    pool: Pool,
    query: String,
    timestamp_column: String,
    series_columns: Vec<String>,
    batch_size: u64,
    statement_timeout: Duration,
}

impl std::fmt::Debug for SqlSource {
    // Never the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlSource")
            .field("backend", &self.backend())
            .field("query", &self.query)
            .field("timestamp_column", &self.timestamp_column)
            .field("series_columns", &self.series_columns)
            .field("batch_size", &self.batch_size)
            .field("statement_timeout", &self.statement_timeout)
            .finish_non_exhaustive()
    }
}

impl SqlSource {
    /// Checks the query ([`check_read_only_select`], in the dialect of the URL) and connects, every connection in a
    /// read-only session.
    ///
    /// # Errors
    /// [`StoreError::UnsupportedUrl`] for another scheme than `sqlite:`, `postgres://` or `mysql://`,
    /// [`StoreError::NotReadOnly`] for a query that is not one read-only query, [`StoreError::InvalidInput`] for a
    /// column name that is empty or too long, [`StoreError::Connect`] when the database does not answer.
    pub async fn connect(
        url: &str,
        query: &str,
        timestamp_column: &str,
        series_columns: &[String],
    ) -> Result<Self> {
        let dialect = SqlDialect::from_url(url)?;
        let query = check_read_only_select(query, dialect)?.to_string();
        for c in std::iter::once(timestamp_column).chain(series_columns.iter().map(String::as_str))
        {
            check_key("column", c)?;
            if c.is_empty() {
                return Err(StoreError::InvalidInput {
                    field: "column",
                    reason: "a column name is empty".into(),
                });
            }
        }
        let pool = connect_read_only(url, dialect).await?;
        Ok(SqlSource {
            pool,
            query,
            timestamp_column: timestamp_column.to_string(),
            series_columns: series_columns.to_vec(),
            batch_size: DEFAULT_BATCH_SIZE,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
        })
    }

    /// Connects to a registered [`DataSource`] (its URL, query, timestamp and series columns).
    ///
    /// # Errors
    /// As [`connect`](SqlSource::connect).
    pub async fn for_data_source(source: &DataSource) -> Result<Self> {
        Self::connect(
            &source.url,
            &source.query,
            &source.timestamp_column,
            &source.series_columns,
        )
        .await
    }

    /// At most `batch_size` rows per fetch (at least 1), plus the rest of a run of equal timestamps the limit cut
    /// (at most [`run_limit`](SqlSource::run_limit) rows).
    pub fn with_batch_size(mut self, batch_size: u64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// How long each statement of a fetch may run before the database cancels it and the fetch fails with
    /// [`StoreError::StatementTimeout`]; [`DEFAULT_STATEMENT_TIMEOUT`] (30 s) unless set. Kept between 1 ms and
    /// 24 days (PostgreSQL's largest `statement_timeout`).
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout.clamp(
            Duration::from_millis(1),
            Duration::from_secs(24 * 24 * 3600),
        );
        self
    }

    /// The statement timeout ([`with_statement_timeout`](SqlSource::with_statement_timeout)).
    pub fn statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// The most rows a fetch reads for one run of equal timestamps: `max(10 × batch_size, 10 000)`. A longer run
    /// fails the fetch with [`StoreError::TimestampRunTooLong`].
    pub fn run_limit(&self) -> u64 {
        self.batch_size.saturating_mul(10).max(MIN_RUN_LIMIT)
    }

    /// The query, as checked (without a trailing `;`).
    pub fn query(&self) -> &str {
        &self.query
    }

    /// The series columns.
    pub fn series_columns(&self) -> &[String] {
        &self.series_columns
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn backend(&self) -> &'static str {
        self.dialect().name()
    }

    /// The dialect the query was checked in.
    pub fn dialect(&self) -> SqlDialect {
        match self.pool {
            Pool::Postgres(_) => SqlDialect::Postgres,
            Pool::MySql { .. } => SqlDialect::MySql,
            Pool::Sqlite(_) => SqlDialect::Sqlite,
        }
    }

    /// The next rows after `after` (all rows from the start when `None`), in timestamp order, read in one
    /// read-only transaction.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the query fails (a syntax error, a missing table or column, a lost
    /// connection); [`StoreError::StatementTimeout`] when a statement runs past the statement timeout;
    /// [`StoreError::TimestampRunTooLong`] when more than [`run_limit`](SqlSource::run_limit) rows share the
    /// timestamp a batch ends on; [`StoreError::SourceColumn`] when the timestamp column is missing from the
    /// result, of a type that cannot order rows or holds a value that cannot be read, or a series column is
    /// missing.
    pub async fn fetch(&self, after: Option<&Watermark>) -> Result<SourceBatch> {
        let begin_error = |e| self.fetch_error(e, "begin the source's read-only transaction");
        let timeout_ms = self.statement_timeout.as_millis();
        match &self.pool {
            Pool::Postgres(pool) => {
                let mut tx = pool
                    .begin_with("BEGIN READ ONLY")
                    .await
                    .map_err(begin_error)?;
                let settings = format!(
                    "SET LOCAL statement_timeout = {timeout_ms}; \
                     SET LOCAL standard_conforming_strings = on"
                );
                (&mut *tx)
                    .execute(settings.as_str())
                    .await
                    .map_err(begin_error)?;
                let batch = self.fetch_in(Conn::Postgres(&mut tx), after).await;
                // A rollback undoes whatever the query changed, session settings included.
                let end = tx.rollback().await;
                end_transaction(batch, end, self)
            }
            Pool::MySql { pool, mariadb } => {
                let mut tx = pool
                    .begin_with("START TRANSACTION READ ONLY")
                    .await
                    .map_err(begin_error)?;
                let setting = if *mariadb {
                    format!(
                        "SET SESSION max_statement_time = {:.3}",
                        self.statement_timeout.as_secs_f64()
                    )
                } else {
                    format!("SET SESSION max_execution_time = {timeout_ms}")
                };
                (&mut *tx)
                    .execute(setting.as_str())
                    .await
                    .map_err(begin_error)?;
                let batch = self.fetch_in(Conn::MySql(&mut tx), after).await;
                let end = tx.rollback().await;
                end_transaction(batch, end, self)
            }
            Pool::Sqlite(pool) => {
                let mut tx = pool.begin().await.map_err(begin_error)?;
                let batch = self.fetch_in(Conn::Sqlite(&mut tx), after).await;
                // The last statement's deadline must not interrupt the rollback, nor a later fetch.
                if let Ok(mut handle) = tx.lock_handle().await {
                    handle.remove_progress_handler();
                }
                let end = tx.rollback().await;
                end_transaction(batch, end, self)
            }
        }
    }

    async fn fetch_in(&self, mut conn: Conn<'_>, after: Option<&Watermark>) -> Result<SourceBatch> {
        let mut dropped_values = Vec::new();
        let mut rows = self
            .query_rows(&mut conn, after, Bound::After, &mut dropped_values)
            .await?;
        let more = rows.len() as u64 >= self.batch_size;
        if more && let Some(last) = rows.last().map(|r| r.timestamp.clone()) {
            self.renew_timeout(&mut conn).await?;
            // The limit may have cut a run of equal timestamps: replace the run's tail with all of it, at most
            // `run_limit` rows.
            rows.retain(|r| r.timestamp != last);
            dropped_values.retain(|d| d.timestamp != last);
            let limit = self.run_limit();
            let run = self
                .query_rows(
                    &mut conn,
                    Some(&last),
                    Bound::Equal {
                        limit: limit.saturating_add(1),
                    },
                    &mut dropped_values,
                )
                .await?;
            if run.len() as u64 > limit {
                self.renew_timeout(&mut conn).await?;
                let count = self.count_run(&mut conn, &last).await?;
                return Err(StoreError::TimestampRunTooLong {
                    timestamp: last.to_string(),
                    rows: count,
                    limit,
                });
            }
            rows.extend(run);
        }
        let watermark = rows
            .last()
            .map(|r| r.timestamp.clone())
            .or_else(|| after.cloned());
        if let Some(first) = dropped_values.first() {
            tracing::warn!(
                values = dropped_values.len(),
                column = %first.column,
                reason = %first.reason,
                "sql source: values JSON cannot hold were replaced by null"
            );
        }
        tracing::debug!(rows = rows.len(), more, "sql source fetched");
        Ok(SourceBatch {
            rows,
            watermark,
            more,
            dropped_values,
        })
    }

    /// Sets the statement timeout again on PostgreSQL, where the query's own `set_config('statement_timeout', …,
    /// true)` could have lifted it for the rest of the transaction.
    async fn renew_timeout(&self, conn: &mut Conn<'_>) -> Result<()> {
        if let Conn::Postgres(c) = conn {
            let setting = format!(
                "SET LOCAL statement_timeout = {}",
                self.statement_timeout.as_millis()
            );
            (&mut **c)
                .execute(setting.as_str())
                .await
                .map_err(|e| self.fetch_error(e, "renew the statement timeout"))?;
        }
        Ok(())
    }

    /// How many rows have the timestamp `at`.
    async fn count_run(&self, conn: &mut Conn<'_>, at: &Watermark) -> Result<u64> {
        let sql = self.sql(true, Bound::Count);
        let at = Some(at);
        let count: i64 = match conn {
            Conn::Postgres(c) => {
                let row = bind!(sqlx::query(&sql), at).fetch_one(&mut **c).await;
                row.and_then(|r| r.try_get(0))
            }
            Conn::MySql(c) => {
                let row = bind!(sqlx::query(&sql), at).fetch_one(&mut **c).await;
                row.and_then(|r| r.try_get(0))
            }
            Conn::Sqlite(c) => {
                let row = self
                    .with_sqlite_deadline(c, |c| bind!(sqlx::query(&sql), at).fetch_one(c))
                    .await?;
                row.and_then(|r| r.try_get(0))
            }
        }
        .map_err(|e| self.fetch_error(e, "count the rows of a run of equal timestamps"))?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Runs a SQLite statement under a progress handler that interrupts it past the statement timeout; a statement
    /// so interrupted fails with [`StoreError::StatementTimeout`].
    async fn with_sqlite_deadline<'c, T, F, Fut>(
        &self,
        conn: &'c mut SqliteConnection,
        run: F,
    ) -> Result<std::result::Result<T, sqlx::Error>>
    where
        F: FnOnce(&'c mut SqliteConnection) -> Fut,
        Fut: Future<Output = std::result::Result<T, sqlx::Error>>,
    {
        let handle_error = |e| self.fetch_error(e, "set the source's statement deadline");
        let deadline = Instant::now() + self.statement_timeout;
        let expired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&expired);
        conn.lock_handle()
            .await
            .map_err(handle_error)?
            .set_progress_handler(SQLITE_PROGRESS_STEPS, move || {
                let in_time = Instant::now() < deadline;
                if !in_time {
                    flag.store(true, Ordering::Relaxed);
                }
                in_time
            });
        // The handler stays until the next statement's replaces it; `fetch` removes it before the rollback.
        let result = run(conn).await;
        match result {
            Err(e) if expired.load(Ordering::Relaxed) => Err(StoreError::StatementTimeout {
                timeout: self.statement_timeout,
                source: Box::new(e),
            }),
            other => Ok(other),
        }
    }

    async fn query_rows(
        &self,
        conn: &mut Conn<'_>,
        at: Option<&Watermark>,
        bound: Bound,
        dropped_values: &mut Vec<DroppedValue>,
    ) -> Result<Vec<SourceRow>> {
        let sql = self.sql(at.is_some(), bound);
        let read_error = |e| self.fetch_error(e, "read the source's rows");
        let decoded = match conn {
            Conn::Postgres(c) => {
                let q = bind!(sqlx::query(&sql), at);
                let rows = q.fetch_all(&mut **c).await.map_err(read_error)?;
                rows.iter()
                    .map(|r| decode::postgres_row(r, &self.timestamp_column))
                    .collect::<Result<Vec<_>>>()?
            }
            Conn::MySql(c) => {
                let q = bind!(sqlx::query(&sql), at);
                let rows = q.fetch_all(&mut **c).await.map_err(read_error)?;
                rows.iter()
                    .map(|r| decode::mysql_row(r, &self.timestamp_column))
                    .collect::<Result<Vec<_>>>()?
            }
            Conn::Sqlite(c) => {
                let rows = self
                    .with_sqlite_deadline(c, |c| bind!(sqlx::query(&sql), at).fetch_all(c))
                    .await?
                    .map_err(read_error)?;
                rows.iter()
                    .map(|r| decode::sqlite_row(r, &self.timestamp_column))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        decoded
            .into_iter()
            .map(|decoded| {
                let decode::Decoded {
                    record,
                    timestamp,
                    dropped,
                } = decoded;
                dropped_values.extend(dropped.into_iter().map(|(column, reason)| DroppedValue {
                    column,
                    timestamp: timestamp.clone(),
                    reason,
                }));
                let series = self
                    .series_columns
                    .iter()
                    .map(|c| {
                        record
                            .get(c)
                            .cloned()
                            .ok_or_else(|| StoreError::SourceColumn {
                                column: c.clone(),
                                reason: "the SELECT does not return this series column".into(),
                            })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(SourceRow {
                    series,
                    timestamp,
                    record,
                })
            })
            .collect()
    }

    /// The wrapping query: rows after (or at) the bound parameter, or all rows with a timestamp when there is none.
    /// The user's query stands on lines of its own, so that a comment in it cannot reach the wrapper.
    fn sql(&self, bound_param: bool, bound: Bound) -> String {
        let (ts, param) = match self.pool {
            Pool::Postgres(_) => (quote(&self.timestamp_column, '"'), "$1"),
            Pool::MySql { .. } => (quote(&self.timestamp_column, '`'), "?"),
            Pool::Sqlite(_) => (quote(&self.timestamp_column, '"'), "?"),
        };
        let select = match (&self.pool, bound) {
            (_, Bound::Count) => "SELECT COUNT(*)".to_string(),
            (Pool::Postgres(_), _) => format!(
                "SELECT row_to_json(src)::text AS {}, src.{ts} AS {}",
                decode::ROW_COLUMN,
                decode::TS_COLUMN
            ),
            _ => "SELECT src.*".to_string(),
        };
        let filter = match (bound_param, bound) {
            (false, _) => format!("src.{ts} IS NOT NULL"),
            (true, Bound::After) => format!("src.{ts} > {param}"),
            (true, Bound::Equal { .. } | Bound::Count) => format!("src.{ts} = {param}"),
        };
        let tail = match bound {
            Bound::After => format!(" ORDER BY src.{ts} LIMIT {}", self.batch_size),
            Bound::Equal { limit } => format!(" LIMIT {limit}"),
            Bound::Count => String::new(),
        };
        format!(
            "{select} FROM (\n{}\n) AS src WHERE {filter}{tail}",
            self.query
        )
    }

    /// A driver error of a fetch: [`StoreError::StatementTimeout`] when the database cancelled a statement for
    /// running past the timeout, [`StoreError::Database`] otherwise.
    fn fetch_error(&self, e: sqlx::Error, operation: &'static str) -> StoreError {
        if is_statement_timeout(&e) {
            StoreError::StatementTimeout {
                timeout: self.statement_timeout,
                source: Box::new(e),
            }
        } else {
            StoreError::Database {
                operation,
                source: Box::new(e),
            }
        }
    }
}

/// The fetch's result once its transaction is rolled back: the fetch's own error first, then the rollback's.
fn end_transaction(
    batch: Result<SourceBatch>,
    end: std::result::Result<(), sqlx::Error>,
    source: &SqlSource,
) -> Result<SourceBatch> {
    let batch = batch?;
    end.map_err(|e| source.fetch_error(e, "end the source's read-only transaction"))?;
    Ok(batch)
}

/// Whether the database cancelled a statement for running past its statement timeout.
fn is_statement_timeout(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        // query_canceled, by statement_timeout rather than by a cancel request.
        return pg.code() == "57014" && pg.message().contains("statement timeout");
    }
    if let Some(my) = db.try_downcast_ref::<MySqlDatabaseError>() {
        // MariaDB's ER_STATEMENT_TIMEOUT, MySQL's ER_QUERY_TIMEOUT.
        return matches!(my.number(), 1969 | 3024);
    }
    false
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Rows after the parameter, in timestamp order, at most a batch.
    After,
    /// Rows at the parameter, at most `limit`.
    Equal { limit: u64 },
    /// The number of rows at the parameter.
    Count,
}

fn quote(identifier: &str, q: char) -> String {
    let doubled = identifier.replace(q, &format!("{q}{q}"));
    format!("{q}{doubled}{q}")
}

/// The session's `sql_mode`, set whole: without `ANSI_QUOTES` and `NO_BACKSLASH_ESCAPES` (nor the combination modes
/// that imply them: `ANSI`, `ORACLE`, `MSSQL`, `DB2`, `POSTGRESQL`, `MAXDB`), so that the server reads double-quoted
/// text and backslashes as the guard's MySQL dialect does. The modes kept are those MySQL 8 and MariaDB share.
const MYSQL_SQL_MODE: &str = "SET SESSION sql_mode = 'STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'";

/// Connections a source holds at most: a fetch is one transaction, so fetches of one source run one after the
/// other, and a service watching many sources holds one connection to the server per source, not more.
const POOL_CONNECTIONS: u32 = 1;
/// How long an idle connection stays open: a source fetched every few minutes reconnects, one fetched every minute
/// keeps its connection.
const POOL_IDLE: Duration = Duration::from_secs(90);

async fn connect_read_only(url: &str, dialect: SqlDialect) -> Result<Pool> {
    let connect_error = |backend: &'static str| {
        move |e: sqlx::Error| StoreError::Connect {
            backend,
            source: Box::new(e),
        }
    };
    let timeout = Duration::from_secs(10);
    match dialect {
        SqlDialect::Postgres => {
            let options = PgConnectOptions::from_str(url).map_err(connect_error("postgres"))?;
            let pool = PgPoolOptions::new()
                .max_connections(POOL_CONNECTIONS)
                .idle_timeout(POOL_IDLE)
                .acquire_timeout(timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                            .await
                            .map(drop)
                    })
                })
                .connect_with(options)
                .await
                .map_err(connect_error("postgres"))?;
            Ok(Pool::Postgres(pool))
        }
        SqlDialect::MySql => {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let options = MySqlConnectOptions::from_str(&url).map_err(connect_error("mysql"))?;
            let pool = MySqlPoolOptions::new()
                .max_connections(POOL_CONNECTIONS)
                .idle_timeout(POOL_IDLE)
                .acquire_timeout(timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
                        conn.execute(MYSQL_SQL_MODE).await.map(drop)
                    })
                })
                .connect_with(options)
                .await
                .map_err(connect_error("mysql"))?;
            let version: String = sqlx::query_scalar("SELECT VERSION()")
                .fetch_one(&pool)
                .await
                .map_err(connect_error("mysql"))?;
            let mariadb = version.to_ascii_lowercase().contains("mariadb");
            Ok(Pool::MySql { pool, mariadb })
        }
        SqlDialect::Sqlite => {
            let options = SqliteConnectOptions::from_str(url).map_err(connect_error("sqlite"))?;
            let pool = SqlitePoolOptions::new()
                .max_connections(POOL_CONNECTIONS)
                .idle_timeout(POOL_IDLE)
                .acquire_timeout(timeout)
                .after_connect(|conn, _| {
                    Box::pin(async move { conn.execute("PRAGMA query_only = ON").await.map(drop) })
                })
                .connect_with(options)
                .await
                .map_err(connect_error("sqlite"))?;
            Ok(Pool::Sqlite(pool))
        }
    }
}
