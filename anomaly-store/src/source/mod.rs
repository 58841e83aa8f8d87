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
//! Safety: [`check_read_only_select`] refuses anything but one read-only `SELECT`; every connection of the source
//! is then put in a read-only session (`default_transaction_read_only` on PostgreSQL, `SET SESSION TRANSACTION
//! READ ONLY` on MySQL/MariaDB, `PRAGMA query_only` on SQLite). Connect with an account that may only read anyway:
//! defence in depth, and the only protection against functions with side effects the guard does not know.

mod decode;
mod guard;
mod watermark;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::{
    self, Executor,
    mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions},
    postgres::{PgConnectOptions, PgPool, PgPoolOptions},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};
use serde_json::Value;

pub use guard::check_read_only_select;
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

/// A row of a [`SqlSource`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceRow {
    /// The values of the series columns, in their order (empty when the source has none).
    pub series: Vec<Value>,
    /// The value of the timestamp column.
    pub timestamp: Watermark,
    /// The whole row as a JSON object, column name → value (timestamps as ISO-8601 strings, `DECIMAL` as numbers,
    /// binary data as `0x…` hex strings).
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

/// One fetch of a [`SqlSource`].
#[derive(Debug, Clone, PartialEq)]
pub struct SourceBatch {
    /// The rows, in timestamp order.
    pub rows: Vec<SourceRow>,
    /// Where the next fetch starts: the last row's timestamp, or the watermark given when there were no rows.
    pub watermark: Option<Watermark>,
    /// Whether the batch was full, so more rows may be waiting.
    pub more: bool,
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
    MySql(MySqlPool),
    Sqlite(SqlitePool),
}

/// A user's `SELECT` on SQLite, PostgreSQL or MySQL/MariaDB, read incrementally (see the [module docs](self)).
///
/// ```no_run
/// use anomaly_store::SqlSource;
///
/// # async fn f() -> anomaly_store::Result<()> {
/// let source = SqlSource::connect(
///     "postgres://reader@db/shop",
///     "SELECT created_at, region, amount, items FROM orders",
///     "created_at",
///     &["region".to_string()],
/// )
/// .await?;
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
            .finish_non_exhaustive()
    }
}

impl SqlSource {
    /// Checks the query ([`check_read_only_select`]) and connects, every connection in a read-only session.
    ///
    /// # Errors
    /// [`StoreError::NotReadOnly`] for a query that is not one read-only `SELECT`, [`StoreError::InvalidInput`] for
    /// a column name that is empty or too long, [`StoreError::UnsupportedUrl`] for another scheme than `sqlite:`,
    /// `postgres://` or `mysql://`, [`StoreError::Connect`] when the database does not answer.
    pub async fn connect(
        url: &str,
        query: &str,
        timestamp_column: &str,
        series_columns: &[String],
    ) -> Result<Self> {
        let query = check_read_only_select(query)?.to_string();
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
        let pool = connect_read_only(url).await?;
        Ok(SqlSource {
            pool,
            query,
            timestamp_column: timestamp_column.to_string(),
            series_columns: series_columns.to_vec(),
            batch_size: DEFAULT_BATCH_SIZE,
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

    /// At most `batch_size` rows per fetch (at least 1), plus the rest of a run of equal timestamps the limit cut.
    pub fn with_batch_size(mut self, batch_size: u64) -> Self {
        self.batch_size = batch_size.max(1);
        self
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
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::MySql(_) => "mysql",
            Pool::Sqlite(_) => "sqlite",
        }
    }

    /// The next rows after `after` (all rows from the start when `None`), in timestamp order.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the query fails (a syntax error, a missing table or column, a lost
    /// connection); [`StoreError::SourceColumn`] when the timestamp column is missing from the result or of a type
    /// that cannot order rows, or a series column is missing.
    pub async fn fetch(&self, after: Option<&Watermark>) -> Result<SourceBatch> {
        let mut rows = self.query_rows(after, Bound::After).await?;
        let more = rows.len() as u64 >= self.batch_size;
        if more && let Some(last) = rows.last().map(|r| r.timestamp.clone()) {
            // The limit may have cut a run of equal timestamps: replace the run's tail with all of it.
            rows.retain(|r| r.timestamp != last);
            rows.extend(self.query_rows(Some(&last), Bound::Equal).await?);
        }
        let watermark = rows
            .last()
            .map(|r| r.timestamp.clone())
            .or_else(|| after.cloned());
        tracing::debug!(rows = rows.len(), more, "sql source fetched");
        Ok(SourceBatch {
            rows,
            watermark,
            more,
        })
    }

    async fn query_rows(&self, at: Option<&Watermark>, bound: Bound) -> Result<Vec<SourceRow>> {
        let sql = self.sql(at.is_some(), bound);
        let decoded = match &self.pool {
            Pool::Postgres(pool) => {
                let q = bind!(sqlx::query(&sql), at);
                let rows = q.fetch_all(pool).await.map_err(fetch_error)?;
                rows.iter()
                    .map(|r| decode::postgres_row(r, &self.timestamp_column))
                    .collect::<Result<Vec<_>>>()?
            }
            Pool::MySql(pool) => {
                let q = bind!(sqlx::query(&sql), at);
                let rows = q.fetch_all(pool).await.map_err(fetch_error)?;
                rows.iter()
                    .map(|r| decode::mysql_row(r, &self.timestamp_column))
                    .collect::<Result<Vec<_>>>()?
            }
            Pool::Sqlite(pool) => {
                let q = bind!(sqlx::query(&sql), at);
                let rows = q.fetch_all(pool).await.map_err(fetch_error)?;
                rows.iter()
                    .map(|r| decode::sqlite_row(r, &self.timestamp_column))
                    .collect::<Result<Vec<_>>>()?
            }
        };
        decoded
            .into_iter()
            .map(|(record, timestamp)| {
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
    fn sql(&self, bound_param: bool, bound: Bound) -> String {
        let (ts, param) = match self.pool {
            Pool::Postgres(_) => (quote(&self.timestamp_column, '"'), "$1"),
            Pool::MySql(_) => (quote(&self.timestamp_column, '`'), "?"),
            Pool::Sqlite(_) => (quote(&self.timestamp_column, '"'), "?"),
        };
        let select = match self.pool {
            Pool::Postgres(_) => format!(
                "SELECT row_to_json(src)::text AS {}, src.{ts} AS {}",
                decode::ROW_COLUMN,
                decode::TS_COLUMN
            ),
            _ => "SELECT src.*".to_string(),
        };
        let filter = match (bound_param, bound) {
            (false, _) => format!("src.{ts} IS NOT NULL"),
            (true, Bound::After) => format!("src.{ts} > {param}"),
            (true, Bound::Equal) => format!("src.{ts} = {param}"),
        };
        let tail = match bound {
            Bound::After => format!(" ORDER BY src.{ts} LIMIT {}", self.batch_size),
            Bound::Equal => String::new(),
        };
        format!("{select} FROM ({}) AS src WHERE {filter}{tail}", self.query)
    }
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    After,
    Equal,
}

fn quote(identifier: &str, q: char) -> String {
    let doubled = identifier.replace(q, &format!("{q}{q}"));
    format!("{q}{doubled}{q}")
}

fn fetch_error(e: sqlx::Error) -> StoreError {
    StoreError::Database {
        operation: "read the source's rows",
        source: Box::new(e),
    }
}

async fn connect_read_only(url: &str) -> Result<Pool> {
    let connect_error = |backend: &'static str| {
        move |e: sqlx::Error| StoreError::Connect {
            backend,
            source: Box::new(e),
        }
    };
    let timeout = Duration::from_secs(10);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let options = PgConnectOptions::from_str(url).map_err(connect_error("postgres"))?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
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
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let url = url.replacen("mariadb://", "mysql://", 1);
        let options = MySqlConnectOptions::from_str(&url).map_err(connect_error("mysql"))?;
        let pool = MySqlPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(timeout)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("SET SESSION TRANSACTION READ ONLY")
                        .await
                        .map(drop)
                })
            })
            .connect_with(options)
            .await
            .map_err(connect_error("mysql"))?;
        Ok(Pool::MySql(pool))
    } else if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url).map_err(connect_error("sqlite"))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(timeout)
            .after_connect(|conn, _| {
                Box::pin(async move { conn.execute("PRAGMA query_only = ON").await.map(drop) })
            })
            .connect_with(options)
            .await
            .map_err(connect_error("sqlite"))?;
        Ok(Pool::Sqlite(pool))
    } else {
        Err(StoreError::UnsupportedUrl {
            scheme: url.split(':').next().unwrap_or_default().to_string(),
        })
    }
}
