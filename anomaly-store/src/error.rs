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
