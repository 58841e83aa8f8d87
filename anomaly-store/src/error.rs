//! The crate's one error type.

/// A boxed foreign error (the database driver's), kept as a source and never part of the API.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL is not one this crate speaks (`sqlite:`, `postgres://`, `mysql://`).
    #[error(
        "unsupported database url scheme `{scheme}` (expected sqlite:, postgres:// or mysql://)"
    )]
    UnsupportedUrl {
        /// The scheme found (never the whole URL, which may hold a password).
        scheme: String,
    },
    /// Connecting to the database failed.
    #[error("cannot connect to the {backend} database")]
    Connect {
        /// `sqlite`, `postgres` or `mysql`.
        backend: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// Creating or upgrading the schema failed.
    #[error("schema migration failed")]
    Migration {
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A database operation failed.
    #[error("database error while trying to {operation}")]
    Database {
        /// What the store was doing (`insert anomaly`, `save model`, …).
        operation: &'static str,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// A value read back could not be turned into a domain type (a corrupted or foreign row).
    #[error("corrupt {what} row: {reason}")]
    Corrupt {
        /// Which record type.
        what: &'static str,
        /// Why it is unreadable.
        reason: String,
    },
    /// A [`SqlSource`](crate::SqlSource) query that is not one read-only `SELECT`.
    #[error("refused query: {reason}; only one read-only SELECT is accepted")]
    NotReadOnly {
        /// What was refused.
        reason: String,
    },
    /// A [`SqlSource`](crate::SqlSource) statement ran longer than the source's statement timeout
    /// ([`SqlSource::with_statement_timeout`](crate::SqlSource::with_statement_timeout)) and was cancelled.
    #[error(
        "the source's query ran longer than its statement timeout of {} ms and was cancelled",
        timeout.as_millis()
    )]
    StatementTimeout {
        /// The statement timeout in force.
        timeout: std::time::Duration,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// More rows of a [`SqlSource`](crate::SqlSource) share one timestamp than a fetch completes a run with (see
    /// [`SqlSource::run_limit`](crate::SqlSource::run_limit)): the watermark cannot move past them without
    /// loading them all at once.
    #[error(
        "{rows} rows share the timestamp {timestamp}, more than the {limit} a fetch reads for one run of equal \
         timestamps; give the query a finer timestamp column or raise the batch size"
    )]
    TimestampRunTooLong {
        /// The timestamp value shared by the run.
        timestamp: String,
        /// How many rows share it.
        rows: u64,
        /// The most rows a fetch reads for one run.
        limit: u64,
    },
    /// A column of a [`SqlSource`](crate::SqlSource) result that cannot be read as asked.
    #[error("source column `{column}`: {reason}")]
    SourceColumn {
        /// The column.
        column: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// An [`AnomalyQueue`](crate::AnomalyQueue) holds as many detections as it may; the one offered was not queued.
    #[error("the anomaly queue is full ({capacity} detections waiting for the database)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// The [`AnomalyQueue`](crate::AnomalyQueue) is closing and accepts no more detections.
    #[error("the anomaly queue is closed")]
    QueueClosed,
    /// An input the store cannot hold.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// Which field.
        field: &'static str,
        /// Why it is refused.
        reason: String,
    },
}

impl StoreError {
    /// Whether this is a failure to reach the database server at all (refused, reset, timed out, host not found,
    /// no connection free in time), which may pass by itself, rather than one it answered with (wrong
    /// credentials, an unknown database, a failed statement) or one of the input.
    pub fn is_unreachable(&self) -> bool {
        use sea_orm::{DbErr, RuntimeErr, sqlx};
        let source = match self {
            StoreError::Connect { source, .. } | StoreError::Database { source, .. } => source,
            _ => return false,
        };
        let sqlx_unreachable = |e: &sqlx::Error| {
            matches!(
                e,
                sqlx::Error::Io(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::WorkerCrashed
            )
        };
        match source.downcast_ref::<DbErr>() {
            Some(DbErr::ConnectionAcquire(_)) => true,
            Some(DbErr::Conn(RuntimeErr::SqlxError(e)))
            | Some(DbErr::Exec(RuntimeErr::SqlxError(e)))
            | Some(DbErr::Query(RuntimeErr::SqlxError(e))) => sqlx_unreachable(e),
            _ => source
                .downcast_ref::<sqlx::Error>()
                .is_some_and(sqlx_unreachable),
        }
    }

    /// Whether the server answered with an error that reports its own state rather than anything about the data:
    /// it is read-only (a standby, a failover under way), out of space or memory, out of connections, shutting
    /// down, or a transaction lost a race (deadlock, serialisation failure, lock wait timeout). Such a failure
    /// passes by itself and says nothing against the data written, like [`is_unreachable`](Self::is_unreachable)
    /// (which it does not include).
    pub fn is_transient(&self) -> bool {
        database_error(self).is_some_and(server_condition)
    }

    /// The message with the messages of its sources, on one line (`cannot connect to the postgres database:
    /// connection refused`). Never holds a URL or a password: the store's errors do not carry them.
    pub fn chain(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        message
    }
}

/// The error the server answered with (an SQLSTATE and a message), when there is one.
fn database_error(e: &StoreError) -> Option<&dyn sea_orm::sqlx::error::DatabaseError> {
    let source = match e {
        StoreError::Connect { source, .. } | StoreError::Database { source, .. } => source,
        _ => return None,
    };
    let sqlx_error = match source.downcast_ref::<sea_orm::DbErr>() {
        Some(db) => runtime_sqlx_error(db),
        None => source.downcast_ref::<sea_orm::sqlx::Error>(),
    };
    match sqlx_error {
        Some(sea_orm::sqlx::Error::Database(e)) => Some(e.as_ref()),
        _ => None,
    }
}

fn runtime_sqlx_error(e: &sea_orm::DbErr) -> Option<&sea_orm::sqlx::Error> {
    use sea_orm::{DbErr, RuntimeErr};
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    }
}

/// MySQL/MariaDB error numbers of a value the server will never take: a packet over `max_allowed_packet` (1153,
/// 1301), a string not valid in the column's character set (1366), a value too long for its column (1406).
const MYSQL_REFUSED_INPUT: [u16; 4] = [1153, 1301, 1366, 1406];

/// MySQL/MariaDB error numbers of a server condition (see [`StoreError::is_transient`]): disk full (1021),
/// out of memory (1037, 1041), too many connections (1040, 1203), lock wait timeout (1205), deadlock (1213),
/// read-only (1290, 1792), shutting down (1053).
const MYSQL_SERVER_CONDITION: [u16; 10] =
    [1021, 1037, 1040, 1041, 1053, 1203, 1205, 1213, 1290, 1792];

fn mysql_number(e: &dyn sea_orm::sqlx::error::DatabaseError) -> Option<u16> {
    e.try_downcast_ref::<sea_orm::sqlx::mysql::MySqlDatabaseError>()
        .map(|e| e.number())
}

/// Whether the server refused the data itself, for a reason it will give again for the same data: an SQL "data
/// exception" (SQLSTATE class 22: on PostgreSQL a NUL character in text, `22021`, or in JSONB, `22P05`; a value
/// out of range or too long), a value over a limit of the server's (`54000`, e.g. an index row too large), or on
/// MySQL/MariaDB one of [`MYSQL_REFUSED_INPUT`].
fn refused_input(e: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    if let Some(number) = mysql_number(e) {
        return MYSQL_REFUSED_INPUT.contains(&number)
            || e.code().is_some_and(|c| c.starts_with("22"));
    }
    e.code()
        .is_some_and(|code| code.starts_with("22") || code == "54000")
}

/// Whether the server reported a condition of its own (see [`StoreError::is_transient`]): SQLSTATE classes 08
/// (connection exception), 25 (invalid transaction state: a read-only transaction), 40 (transaction rollback), 53
/// (insufficient resources), 57 (operator intervention), 58 (system error), or on MySQL/MariaDB one of
/// [`MYSQL_SERVER_CONDITION`].
fn server_condition(e: &dyn sea_orm::sqlx::error::DatabaseError) -> bool {
    if refused_input(e) {
        return false;
    }
    if let Some(number) = mysql_number(e) {
        return MYSQL_SERVER_CONDITION.contains(&number)
            || e.code()
                .is_some_and(|c| c.starts_with("40") || c.starts_with("08"));
    }
    e.code().is_some_and(|code| {
        ["08", "25", "40", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class))
    })
}

/// A failed database operation as the store reports it: [`StoreError::InvalidInput`] when the server refused the
/// data itself (see [`refused_input`]), which no retry will change; [`StoreError::Database`] otherwise.
pub(crate) fn from_db(operation: &'static str, e: sea_orm::DbErr) -> StoreError {
    let refused = runtime_sqlx_error(&e).and_then(|e| match e {
        sea_orm::sqlx::Error::Database(db) if refused_input(db.as_ref()) => Some(format!(
            "refused by the database while trying to {operation}: {} (SQLSTATE {})",
            db.message(),
            db.code().unwrap_or_default()
        )),
        _ => None,
    });
    match refused {
        Some(reason) => StoreError::InvalidInput {
            field: "value",
            reason,
        },
        None => StoreError::Database {
            operation,
            source: Box::new(e),
        },
    }
}

/// `Result` with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Longest key, detector, kind or query hash accepted, in characters (the indexed columns are `VARCHAR(255)`).
pub const MAX_KEY_CHARS: usize = 255;

pub(crate) fn check_key(field: &'static str, value: &str) -> Result<()> {
    let len = value.chars().count();
    if len > MAX_KEY_CHARS {
        return Err(StoreError::InvalidInput {
            field,
            reason: format!("{len} characters, at most {MAX_KEY_CHARS} allowed"),
        });
    }
    Ok(())
}

pub(crate) fn check_source(s: &crate::types::DataSource) -> Result<()> {
    check_key("name", &s.name)?;
    check_key("timestamp_column", &s.timestamp_column)?;
    for c in &s.series_columns {
        check_key("series_columns", c)?;
    }
    if i64::try_from(s.poll_interval_seconds).is_err() {
        return Err(StoreError::InvalidInput {
            field: "poll_interval_seconds",
            reason: format!("{} is too large", s.poll_interval_seconds),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sea_orm::{
        ConnectionTrait, Database, DatabaseConnection, DbErr, Statement, TransactionTrait,
    };

    use super::*;

    #[allow(clippy::print_stderr)]
    async fn server(var: &str, test: &str) -> Option<DatabaseConnection> {
        let Ok(url) = std::env::var(var) else {
            eprintln!("SKIPPED {test}: no database server (set {var})");
            return None;
        };
        // Bounded like the store's own waits: a set URL whose server does not answer fails within seconds.
        let mut options = sea_orm::ConnectOptions::new(url);
        options.acquire_timeout(std::time::Duration::from_secs(5));
        match Database::connect(options).await {
            Ok(db) => Some(db),
            Err(e) => panic!("{var} is set but its server does not answer: {e}"),
        }
    }

    async fn fails(db: &impl ConnectionTrait, sql: &str) -> DbErr {
        db.execute(Statement::from_string(db.get_database_backend(), sql))
            .await
            .expect_err(sql)
    }

    fn assert_refused(e: StoreError, code: &str) {
        assert!(
            matches!(&e, StoreError::InvalidInput { reason, .. } if reason.contains(code)),
            "{e:?}"
        );
        assert!(!e.is_transient() && !e.is_unreachable());
    }

    /// PostgreSQL's own refusals of the data (a NUL character in text and in JSONB: what the store would get for
    /// one its checks missed) are invalid input, which callers set aside; a read-only transaction is a server
    /// condition; a syntax error is neither.
    #[tokio::test]
    async fn postgres_errors_are_classified() {
        let Some(db) = server("TEST_PG_URL", "postgres_errors_are_classified").await else {
            return;
        };
        let e = fails(&db, r#"SELECT '{"a": "x\u0000y"}'::jsonb"#).await;
        assert_refused(from_db("test", e), "22P05");
        let e = fails(&db, r"SELECT convert_from('\x610062'::bytea, 'UTF8')").await;
        assert_refused(from_db("test", e), "22021");

        let txn = db.begin().await.unwrap();
        txn.execute_unprepared("SET TRANSACTION READ ONLY")
            .await
            .unwrap();
        let e = from_db(
            "test",
            fails(&txn, "CREATE TABLE anomaly_never (id INT)").await,
        );
        assert!(
            matches!(e, StoreError::Database { .. }) && e.is_transient(),
            "{e:?}"
        );
        txn.rollback().await.unwrap();

        let e = from_db("test", fails(&db, "SELEKT 1").await);
        assert!(
            matches!(e, StoreError::Database { .. }) && !e.is_transient(),
            "{e:?}"
        );
    }

    /// MariaDB's refusal of a value too long for its column (strict mode) is invalid input.
    #[tokio::test]
    async fn mariadb_errors_are_classified() {
        let Some(db) = server("TEST_MYSQL_URL", "mariadb_errors_are_classified").await else {
            return;
        };
        let txn = db.begin().await.unwrap();
        txn.execute_unprepared("SET SESSION sql_mode = 'STRICT_ALL_TABLES'")
            .await
            .unwrap();
        txn.execute_unprepared("CREATE TEMPORARY TABLE anomaly_short (v VARCHAR(2))")
            .await
            .unwrap();
        let e = fails(&txn, "INSERT INTO anomaly_short VALUES ('abcd')").await;
        assert_refused(from_db("test", e), "22001");
        let e = from_db("test", fails(&txn, "SELEKT 1").await);
        assert!(
            matches!(e, StoreError::Database { .. }) && !e.is_transient(),
            "{e:?}"
        );
        txn.rollback().await.unwrap();
    }
}
