//! The application's settings, from environment variables.

use std::time::Duration;

use service_kit::{Env, ServeSettings};

use crate::error::WatcherError;

/// Everything the application is configured with. [`Config::from_env`] reads the process environment;
/// [`Config::from_lookup`] takes any lookup (tests).
#[derive(Debug, Clone)]
pub struct Config {
    /// What every service reads: `HOST` (default `127.0.0.1`), `PORT` (default 8000, the original's),
    /// `MAX_REQUEST_BYTES`, `REQUEST_TIMEOUT_SECONDS`, `SHUTDOWN_TIMEOUT_SECONDS`, … : see [`ServeSettings`]. Every
    /// page and API call but the landing page, `/login`, `/register`, `/health` and `/ready` needs a signed-in
    /// user or an API token, so the application may listen beyond loopback.
    pub serve: ServeSettings,
    /// `DATABASE_URL` (default `sqlite://<SQL_WATCHER_DATA>/sql_watcher.db?mode=rwc`, `SQL_WATCHER_DATA` default
    /// `./tmp`): the application's own database (users, sources, runs, scored rows) and the engine's models and
    /// history. SQLite, PostgreSQL or MariaDB.
    pub database_url: String,
    /// `STORE_TIMEOUT_MS` (default 5,000): how long connecting to the application's database may take.
    pub store_timeout: Duration,
    /// `FETCH_INTERVAL_SECONDS` (default 300, the original's): a new source's interval when it names none.
    pub fetch_interval_seconds: u64,
    /// `MIN_FETCH_INTERVAL_SECONDS` (default 10): the shortest interval a source may ask for.
    pub min_fetch_interval_seconds: u64,
    /// `MAX_ROWS_PER_RUN` (default 100,000): the most rows one run fetches; the rest wait for the next run, which
    /// starts at once.
    pub max_rows_per_run: u64,
    /// `FETCH_PAGE_ROWS` (default 5,000): rows per query of a run (each page is scored and stored, and the
    /// watermark moved, in one transaction).
    pub fetch_page_rows: u64,
    /// `MAX_ROW_BYTES` (default 1 MiB): a row larger than this as JSON fails the run with the reason (select
    /// fewer or shorter columns).
    pub max_row_bytes: usize,
    /// `MAX_RUN_BYTES` (default 256 MiB): a run stops fetching pages once its rows reach this much JSON (the
    /// next run starts at once); with `MAX_ROW_BYTES` and `FETCH_PAGE_ROWS` it bounds a run's memory.
    pub max_run_bytes: usize,
    /// `SQLITE_SOURCE_DIR` (default unset: SQLite sources refused): the directory SQLite sources must be in. A
    /// SQLite source reads a file on this server, so users may only name files under it (never the application's
    /// own database).
    pub sqlite_source_dir: Option<std::path::PathBuf>,
    /// `SOURCE_STATEMENT_TIMEOUT_SECONDS` (default 30): how long a source's query may run.
    pub statement_timeout: Duration,
    /// `SOURCE_CONNECT_TIMEOUT_SECONDS` (default 10): how long connecting to a source may take.
    pub connect_timeout: Duration,
    /// `SCHEDULER` (default `true`): whether sources are fetched on their schedule (off: only on request).
    pub scheduler: bool,
    /// `SCHEDULER_CONCURRENCY` (default 4): runs at the same time.
    pub scheduler_concurrency: usize,
    /// `RETRY_BASE_SECONDS` (default 30): a failing source is retried after this, doubled after each further
    /// failure, up to `MAX_BACKOFF_SECONDS` (default 3,600).
    pub retry_base: Duration,
    /// See [`retry_base`](Config::retry_base).
    pub max_backoff: Duration,
    /// `MAX_ROWS_PER_SOURCE` (default 1,000,000): scored rows kept per source; older ones are deleted after each
    /// run.
    pub max_rows_per_source: u64,
    /// `MAX_RUNS_PER_SOURCE` (default 1,000): runs kept per source.
    pub max_runs_per_source: u64,
    /// `MAX_SOURCES_PER_USER` (default 1,000).
    pub max_sources_per_user: u64,
    /// `MAX_TOKENS_PER_USER` (default 20): API tokens per user; a new one beyond it replaces the oldest.
    pub max_tokens_per_user: u64,
    /// `MAX_SESSIONS_PER_USER` (default 20): signed-in browsers per user; a new one beyond it signs out the
    /// oldest.
    pub max_sessions_per_user: u64,
    /// `ALLOW_REGISTRATION` (default `true`): whether anyone may register on the web UI (`create-user` always
    /// can).
    pub allow_registration: bool,
    /// `SESSION_HOURS` (default 336, two weeks): how long a sign-in lasts.
    pub session_ttl: Duration,
    /// `SECURE_COOKIES` (default `false`): mark the session cookie `Secure` (set it behind HTTPS).
    pub secure_cookies: bool,
    /// `MIN_TRAINING_ROWS` (default 100): rows of a series before its first model.
    pub min_training_rows: usize,
    /// `RETRAIN_EVERY_ROWS` (default 5,000): new rows of a series after which its model is retrained (drift
    /// retrains sooner).
    pub retrain_every_rows: usize,
    /// `MAX_HISTORY_ROWS` (default 20,000): rows a series' model may train on (a uniform sample of its past).
    pub max_history_rows: usize,
    /// `MAX_KEYS_IN_MEMORY` (default 10,000): series held in memory; the least recently used are evicted and
    /// restored from the database when needed again.
    pub max_keys_in_memory: usize,
    /// `MAX_SCHEMA_COLUMNS` (default 256): a model's input columns at most.
    pub max_schema_columns: usize,
}

impl Config {
    /// The configuration in the process environment.
    ///
    /// # Errors
    /// As [`from_lookup`](Self::from_lookup).
    pub fn from_env() -> Result<Self, WatcherError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The configuration `lookup` describes (empty values count as unset).
    ///
    /// # Errors
    /// [`WatcherError::Config`] naming the variable whose value is unusable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, WatcherError> {
        let env = Env::from_lookup(lookup);
        let serve = ServeSettings::from_env(&env, 8000)?;
        let data_dir = env
            .get("SQL_WATCHER_DATA")
            .unwrap_or_else(|| "./tmp".into());
        let min_interval = env.number("MIN_FETCH_INTERVAL_SECONDS", 10, 1, 86_400)?;
        let fetch_interval = env.number("FETCH_INTERVAL_SECONDS", 300, 1, 30 * 86_400)?;
        if fetch_interval < min_interval {
            return Err(WatcherError::Config {
                variable: "FETCH_INTERVAL_SECONDS".into(),
                reason: format!(
                    "{fetch_interval} is below MIN_FETCH_INTERVAL_SECONDS ({min_interval})"
                ),
            });
        }
        let secs = |s: u64| Duration::from_secs(s);
        Ok(Config {
            serve,
            database_url: env
                .get("DATABASE_URL")
                .unwrap_or_else(|| format!("sqlite://{data_dir}/sql_watcher.db?mode=rwc")),
            store_timeout: Duration::from_millis(env.number(
                "STORE_TIMEOUT_MS",
                5_000,
                1,
                600_000,
            )?),
            fetch_interval_seconds: fetch_interval,
            min_fetch_interval_seconds: min_interval,
            max_rows_per_run: env.number("MAX_ROWS_PER_RUN", 100_000, 1, 100_000_000)?,
            fetch_page_rows: env.number("FETCH_PAGE_ROWS", 5_000, 1, 1_000_000)?,
            max_row_bytes: env.number("MAX_ROW_BYTES", 1 << 20, 1_024, 1 << 30)?,
            max_run_bytes: env.number("MAX_RUN_BYTES", 256 << 20, 1 << 20, 1 << 40)?,
            sqlite_source_dir: env.get("SQLITE_SOURCE_DIR").map(std::path::PathBuf::from),
            statement_timeout: secs(env.number(
                "SOURCE_STATEMENT_TIMEOUT_SECONDS",
                30,
                1,
                86_400,
            )?),
            connect_timeout: secs(env.number("SOURCE_CONNECT_TIMEOUT_SECONDS", 10, 1, 600)?),
            scheduler: env.flag_or("SCHEDULER", true)?,
            scheduler_concurrency: env.number("SCHEDULER_CONCURRENCY", 4, 1, 256)?,
            retry_base: secs(env.number("RETRY_BASE_SECONDS", 30, 1, 86_400)?),
            max_backoff: secs(env.number("MAX_BACKOFF_SECONDS", 3_600, 1, 7 * 86_400)?),
            max_rows_per_source: env.number("MAX_ROWS_PER_SOURCE", 1_000_000, 1, 1_000_000_000)?,
            max_runs_per_source: env.number("MAX_RUNS_PER_SOURCE", 1_000, 1, 1_000_000)?,
            max_sources_per_user: env.number("MAX_SOURCES_PER_USER", 1_000, 1, 1_000_000)?,
            max_tokens_per_user: env.number("MAX_TOKENS_PER_USER", 20, 1, 10_000)?,
            max_sessions_per_user: env.number("MAX_SESSIONS_PER_USER", 20, 1, 10_000)?,
            allow_registration: env.flag_or("ALLOW_REGISTRATION", true)?,
            session_ttl: secs(3_600 * env.number("SESSION_HOURS", 336, 1, 24 * 365)?),
            secure_cookies: env.flag_or("SECURE_COOKIES", false)?,
            min_training_rows: env.number("MIN_TRAINING_ROWS", 100, 2, 1_000_000)?,
            retrain_every_rows: env.number("RETRAIN_EVERY_ROWS", 5_000, 1, 100_000_000)?,
            max_history_rows: env.number("MAX_HISTORY_ROWS", 20_000, 2, 10_000_000)?,
            max_keys_in_memory: env.number("MAX_KEYS_IN_MEMORY", 10_000, 1, 10_000_000)?,
            max_schema_columns: env.number("MAX_SCHEMA_COLUMNS", 256, 1, 100_000)?,
        })
    }
}
