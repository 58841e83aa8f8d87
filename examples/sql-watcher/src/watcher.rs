//! [`Watcher`]: the application's logic between the web layer and the libraries. It registers, changes and
//! deletes sources (each registration checked and dry-run), and runs a source: fetch its new rows by watermark in
//! pages, score them per series with the record engine, store them with the watermark, record the run, and set
//! the next one (backoff after a failure).
//!
//! A series is an engine key `sql-watcher/<source id>/r<revision>/<series>`: a source whose query or connection
//! changes starts new keys, so no model trained on other rows is restored for it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anomaly_core::engine::{
    Engine, EngineParams, Outcome, Persistence, RecordExplanation, WriteBehind,
};
use anomaly_core::records::role::{FieldRole, FieldRoles};
use anomaly_core::records::vectorizer::VectorizerParams;
use anomaly_store::{SeaOrmStore, SourceBatch, SqlSource, StoreError, Watermark};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Value, json};

use crate::config::Config;
use crate::db::{Db, NewRow, Run, User};
use crate::error::WatcherError;
use crate::metrics::Metrics;
use crate::source::{Source, SourceSpec, SourceStatus, SpecLimits};

type Result<T> = std::result::Result<T, WatcherError>;

/// How often pending engine history is written.
const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Rows a registration's dry run reads.
const DRY_RUN_ROWS: u64 = 5;
/// Attributions kept in a stored explanation.
const EXPLANATION_FIELDS: usize = 5;

/// Who asked for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The scheduler, when the source was due.
    Schedule,
    /// A user (`POST …/fetch/`).
    Request,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Request => "request",
        }
    }
}

/// The application: its database, the record engine and the sources' connections.
pub struct Watcher {
    config: Config,
    db: Db,
    engine: Arc<Engine>,
    history: Arc<WriteBehind>,
    metrics: Metrics,
    /// Open connections per source, with the revision and URL they were opened for (a new password reconnects).
    /// Bounded by the number of sources.
    pools: Mutex<HashMap<i64, (i64, String, SqlSource)>>,
    running: Mutex<HashSet<i64>>,
    /// Run slots shared by the scheduler and requests (`SCHEDULER_CONCURRENCY`).
    slots: tokio::sync::Semaphore,
    /// Field roles pinned per source: the timestamp column as a timestamp, the series columns ignored (constant
    /// within a series). Bounded by the number of sources.
    roles: Arc<RwLock<HashMap<i64, FieldRoles>>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

/// Marks a source as running until dropped.
struct Claim<'a> {
    watcher: &'a Watcher,
    id: i64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        lock(&self.watcher.running).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The source id in an engine key.
fn source_of_key(key: &str) -> Option<i64> {
    key.strip_prefix("sql-watcher/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// The engine key of a source's series (long series names are hashed to stay within the store's key length).
pub fn engine_key(source: i64, revision: i64, series: &str) -> String {
    let series = if series.is_empty() { "*" } else { series };
    let prefix = format!("sql-watcher/{source}/r{revision}/");
    if prefix.len() + series.len() <= anomaly_store::MAX_KEY_CHARS {
        format!("{prefix}{series}")
    } else {
        // FNV-1a: the same in every process.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in series.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        format!("{prefix}#{h:016x}")
    }
}

/// The time a timestamp column's value stands for, when it is one: a time, a date (midnight UTC), an ISO-8601
/// text, or an integer that reads as epoch seconds or milliseconds between 2000 and 2100.
fn row_time(w: &Watermark) -> Option<DateTime<Utc>> {
    const LOW: i64 = 946_684_800; // 2000-01-01
    const HIGH: i64 = 4_102_444_800; // 2100-01-01
    match w {
        Watermark::Timestamp(t) => Some(*t),
        Watermark::DateTime(t) => Some(t.and_utc()),
        Watermark::Date(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        Watermark::Text(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .or_else(|| {
                [
                    "%Y-%m-%d %H:%M:%S%.f",
                    "%Y-%m-%dT%H:%M:%S%.f",
                    "%Y-%m-%d %H:%M:%S",
                ]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                .map(|t| t.and_utc())
            }),
        Watermark::Integer(v) if (LOW..HIGH).contains(v) => Utc.timestamp_opt(*v, 0).single(),
        Watermark::Integer(v) if (LOW * 1000..HIGH * 1000).contains(v) => {
            Utc.timestamp_millis_opt(*v).single()
        }
        _ => None,
    }
}

/// The error's whole chain of causes, with the source's password masked wherever a driver repeats it.
fn describe(e: &dyn std::error::Error, password: &str) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let s = c.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        cause = c.source();
    }
    if password.len() >= 3 {
        text = text.replace(password, "***");
    }
    text
}

impl Watcher {
    /// Opens the application's database and the engine's store (the same database), and builds the engine.
    ///
    /// # Errors
    /// [`WatcherError::Database`] / [`WatcherError::Store`] when the database cannot be opened or migrated.
    pub async fn open(config: Config, metrics: Metrics) -> Result<Watcher> {
        let db = Db::connect(&config.database_url, config.store_timeout).await?;
        let store = SeaOrmStore::connect_with_timeout(&config.database_url, config.store_timeout)
            .await?
            .with_max_history(config.max_history_rows as u64);
        let persistence: Arc<dyn Persistence> = Arc::new(store);
        // History appends are buffered per series and written once a second, off the run's path.
        let history = Arc::new(WriteBehind::new(
            persistence,
            config.max_history_rows,
            HISTORY_FLUSH_INTERVAL,
        )?);
        let params = EngineParams::new()
            .min_training_records(config.min_training_rows)
            .max_history(config.max_history_rows)
            .max_keys_in_memory(config.max_keys_in_memory)
            .retrain_every(config.retrain_every_rows)
            .vectorizer(VectorizerParams::new().max_columns(config.max_schema_columns));
        let roles: Arc<RwLock<HashMap<i64, FieldRoles>>> = Arc::default();
        let policy = roles.clone();
        let engine = Engine::new(params, history.clone())?.with_field_roles(move |key| {
            source_of_key(key)
                .and_then(|id| {
                    policy
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&id)
                        .cloned()
                })
                .unwrap_or_default()
        });
        let slots = tokio::sync::Semaphore::new(config.scheduler_concurrency);
        Ok(Watcher {
            config,
            db,
            engine: Arc::new(engine),
            history,
            metrics,
            pools: Mutex::default(),
            running: Mutex::default(),
            slots,
            roles,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The application's database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The limits a source's spec is read with.
    pub fn spec_limits(&self) -> SpecLimits {
        SpecLimits {
            default_interval: self.config.fetch_interval_seconds,
            min_interval: self.config.min_fetch_interval_seconds,
        }
    }

    /// Registers a source for `user` from the API's JSON (or a form's fields), after checking its query and
    /// dry-running it.
    ///
    /// # Errors
    /// [`WatcherError::Invalid`] naming the field at fault (a query that is not one read-only `SELECT`, a server
    /// that cannot be reached, a missing column, a taken alias); [`WatcherError::Database`].
    pub async fn register(&self, user: &User, body: &Value) -> Result<Source> {
        let mut spec = SourceSpec::from_json(body, None, self.spec_limits())?;
        self.check_place(&mut spec)?;
        self.dry_run(&spec).await?;
        let source = self
            .db
            .insert_source(user.id, &spec, self.config.max_sources_per_user)
            .await?;
        tracing::info!(source = source.id, user = %user.username, alias = %spec.alias, "data source registered");
        Ok(source)
    }

    /// Changes a user's source (fields left out keep their values); a change of what it reads is dry-run and
    /// starts its rows and models over. `None` when the user has no such source.
    ///
    /// # Errors
    /// As [`register`](Self::register).
    pub async fn update(&self, user: &User, id: i64, body: &Value) -> Result<Option<Source>> {
        let Some(old) = self.db.user_source(user.id, id).await? else {
            return Ok(None);
        };
        let mut spec = SourceSpec::from_json(body, Some(&old.spec), self.spec_limits())?;
        self.check_place(&mut spec)?;
        if old.spec.reads_differently(&spec)
            || old.spec.password != spec.password
            || old.spec.user != spec.user
        {
            self.dry_run(&spec).await?;
        }
        let Some((source, restarted)) = self.db.update_source(user.id, id, &spec).await? else {
            return Ok(None);
        };
        lock(&self.pools).remove(&id);
        if restarted {
            self.forget_series(old.id, Some(old.revision));
        }
        Ok(Some(source))
    }

    /// Deletes a user's source with its rows and runs; whether it existed.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn delete(&self, user: &User, id: i64) -> Result<bool> {
        let deleted = self.db.delete_source(user.id, id).await?;
        if deleted {
            lock(&self.pools).remove(&id);
            self.roles
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            self.forget_series(id, None);
        }
        Ok(deleted)
    }

    /// Clears the engine history of a source's series (of one revision, or all), in the background.
    fn forget_series(&self, id: i64, revision: Option<i64>) {
        let engine = self.engine.clone();
        let prefix = match revision {
            Some(r) => format!("sql-watcher/{id}/r{r}/"),
            None => format!("sql-watcher/{id}/"),
        };
        tokio::task::spawn_blocking(move || {
            for key in engine
                .known_keys()
                .into_iter()
                .filter(|k| k.starts_with(&prefix))
            {
                if let Err(e) = engine.clear(&key) {
                    tracing::warn!(key, error = %e, "could not clear a series' history");
                }
            }
        });
    }

    /// A SQLite source names a file on this server: only a file under `SQLITE_SOURCE_DIR` is accepted (its path
    /// made canonical, so `..` and links cannot leave it), never the application's own database.
    fn check_place(&self, spec: &mut SourceSpec) -> Result<()> {
        if spec.engine != crate::source::DbEngine::Sqlite {
            return Ok(());
        }
        let bad = |why: String| WatcherError::invalid("name", why);
        let Some(dir) = &self.config.sqlite_source_dir else {
            return Err(bad(
                "SQLite sources are off on this server (its operator can allow a directory with SQLITE_SOURCE_DIR)"
                    .into(),
            ));
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| bad(format!("SQLITE_SOURCE_DIR cannot be read: {e}")))?;
        let given = spec.name.strip_prefix("sqlite://").unwrap_or(&spec.name);
        let path = std::path::Path::new(given);
        let path = if path.is_absolute() {
            path.to_path_buf()
        } else {
            dir.join(path)
        };
        let path = path.canonicalize().map_err(|_| {
            bad(format!(
                "no file {given:?} under the SQLite source directory"
            ))
        })?;
        if !path.starts_with(&dir) || !path.is_file() {
            return Err(bad(format!(
                "no file {given:?} under the SQLite source directory"
            )));
        }
        let own = self
            .config
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.config.database_url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or_default())
            .and_then(|p| std::path::Path::new(p).canonicalize().ok());
        if own.as_ref() == Some(&path) {
            return Err(bad("that is the application's own database".into()));
        }
        let text = path.to_string_lossy().into_owned();
        // The driver reads the path as a URL's: `%` would be decoded, `?` and `#` would end it.
        if text.contains(['?', '#', '%']) {
            return Err(bad(
                "a SQLite source's path may not contain ?, # or %".into()
            ));
        }
        spec.name = text;
        Ok(())
    }

    /// Connects to the spec's database and reads a few rows, to refuse a source that cannot work.
    ///
    /// # Errors
    /// [`WatcherError::Invalid`]: `sql` for a query the guard or the database refuses, `host` when the server
    /// cannot be reached, `timestamp_column` / `series_columns` for a column the result lacks.
    pub async fn dry_run(&self, spec: &SourceSpec) -> Result<()> {
        let source = self.connect(spec).await?;
        let source = source.with_batch_size(DRY_RUN_ROWS);
        match source.fetch(None).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.spec_error(spec, &e)),
        }
    }

    fn spec_error(&self, spec: &SourceSpec, e: &StoreError) -> WatcherError {
        let text = describe(e, &spec.password);
        let field = match e {
            StoreError::Connect { .. } => "host",
            StoreError::UnsupportedUrl { .. } => "engine",
            StoreError::SourceColumn { column, .. } if spec.series_columns.contains(column) => {
                "series_columns"
            }
            StoreError::SourceColumn { .. } => "timestamp_column",
            // The wrapping query names the result's columns `src.<column>`: a database that does not know one
            // names it so (SQLite "no such column: src.x", PostgreSQL "column src.x does not exist", MariaDB
            // "Unknown column 'src.x'").
            StoreError::Database { .. }
                if spec
                    .series_columns
                    .iter()
                    .any(|c| text.contains(&format!("src.{c}"))) =>
            {
                "series_columns"
            }
            StoreError::Database { .. }
                if text.contains(&format!("src.{}", spec.timestamp_column)) =>
            {
                "timestamp_column"
            }
            _ => "sql",
        };
        WatcherError::invalid(field, text)
    }

    async fn connect(&self, spec: &SourceSpec) -> Result<SqlSource> {
        let url = spec.url();
        let connecting = SqlSource::connect(
            &url,
            &spec.sql,
            &spec.timestamp_column,
            &spec.series_columns,
        );
        match tokio::time::timeout(self.config.connect_timeout, connecting).await {
            Err(_) => Err(WatcherError::invalid(
                "host",
                format!(
                    "cannot connect to the {} database: no answer within {} s",
                    spec.engine.as_str(),
                    self.config.connect_timeout.as_secs()
                ),
            )),
            Ok(Err(e)) => Err(self.spec_error(spec, &e)),
            Ok(Ok(s)) => Ok(s.with_statement_timeout(self.config.statement_timeout)),
        }
    }

    /// The source's open connection, opened now if needed.
    async fn source_connection(&self, source: &Source) -> Result<SqlSource> {
        // A SQLite source's file is checked at every connection, not only when it was saved: the operator may
        // have changed SQLITE_SOURCE_DIR, or the path may lead elsewhere now.
        let mut spec = source.spec.clone();
        self.check_place(&mut spec)?;
        let url = spec.url();
        if let Some((rev, u, s)) = lock(&self.pools).get(&source.id)
            && *rev == source.revision
            && *u == url
        {
            return Ok(s.clone());
        }
        let s = self
            .connect(&spec)
            .await?
            .with_batch_size(self.config.fetch_page_rows);
        lock(&self.pools).insert(source.id, (source.revision, url, s.clone()));
        Ok(s)
    }

    /// Whether a run of the source is under way.
    pub fn is_running(&self, id: i64) -> bool {
        lock(&self.running).contains(&id)
    }

    /// Runs a source now: fetches its new rows (at most `MAX_ROWS_PER_RUN`), scores and stores them, records the
    /// run and sets the next one. A failing source is marked `error` with the reason and retried with backoff.
    ///
    /// # Errors
    /// [`WatcherError::Busy`] when a run of it is under way; [`WatcherError::Database`] when the application's
    /// database fails. A failure of the source itself is not an error here: it is in the run's `error`.
    pub async fn run(&self, id: i64, trigger: Trigger) -> Result<Option<Run>> {
        if !lock(&self.running).insert(id) {
            return Err(WatcherError::Busy);
        }
        let _claim = Claim { watcher: self, id };
        // A slot of `SCHEDULER_CONCURRENCY`, whoever asked: requests cannot run more at once than the schedule.
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(WatcherError::Source("the application is stopping".into()));
        };
        let Some(source) = self.db.source(id).await? else {
            return Ok(None);
        };
        if trigger == Trigger::Schedule && source.next_run_at > Utc::now() {
            // Run by a request since the scheduler read it as due.
            return Ok(None);
        }
        self.roles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, pinned_roles(&source.spec));
        let started = Utc::now();
        let clock = Instant::now();
        let run_id = self.db.start_run(id, trigger.as_str(), started).await?;
        self.metrics.run_started();
        let outcome = self.fetch_and_score(&source, run_id).await;
        let (rows, anomalies, more, error) = match outcome {
            Ok((rows, anomalies, more)) => (rows, anomalies, more, None),
            Err((rows, anomalies, e)) => (rows, anomalies, false, Some(e)),
        };
        let now = Utc::now();
        let (status, failures, next) = match &error {
            None if more => (SourceStatus::Ok, 0, now),
            None => (
                SourceStatus::Ok,
                0,
                now + chrono::Duration::seconds(source.spec.fetch_interval_seconds as i64),
            ),
            Some(_) => {
                let failures = source.failures + 1;
                (SourceStatus::Error, failures, now + self.backoff(failures))
            }
        };
        let run = Run {
            id: run_id,
            datasource: id,
            trigger: trigger.as_str().into(),
            started_at: started,
            rows,
            anomalies,
            duration_ms: clock.elapsed().as_millis() as u64,
            error,
        };
        let finished = self
            .db
            .finish_run(
                &run,
                source.revision,
                status,
                failures,
                next,
                self.config.max_rows_per_source,
                self.config.max_runs_per_source,
            )
            .await;
        self.metrics.run_finished(
            run.error.is_none(),
            trigger.as_str(),
            rows,
            anomalies,
            clock.elapsed().as_secs_f64(),
        );
        finished?;
        match &run.error {
            None => tracing::info!(
                source = id,
                rows,
                anomalies,
                ms = run.duration_ms,
                more,
                "run done"
            ),
            Some(e) => {
                tracing::warn!(source = id, failures, retry_at = %next, error = %e, "run failed")
            }
        }
        Ok(Some(run))
    }

    /// As [`run`](Self::run), in a task of its own: a caller that stops waiting (a request past its timeout)
    /// does not cut the run off between fetching and storing.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub async fn run_detached(self: &Arc<Self>, id: i64, trigger: Trigger) -> Result<Option<Run>> {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(id, trigger).await })
            .await
            .map_err(|e| WatcherError::Source(format!("the run stopped: {e}")))?
    }

    /// How long after its `failures`-th failure in a row a source is retried: `RETRY_BASE_SECONDS` doubled per
    /// further failure, at most `MAX_BACKOFF_SECONDS`.
    fn backoff(&self, failures: u64) -> chrono::Duration {
        let base = self.config.retry_base.as_secs_f64();
        let wait = (base * 2f64.powi(failures.saturating_sub(1).min(30) as i32))
            .min(self.config.max_backoff.as_secs_f64());
        chrono::Duration::milliseconds((wait * 1000.0) as i64)
    }

    /// Fetches pages until the source has no more rows or the run's row cap is reached, scores them together,
    /// then stores them page by page (each page's rows with its watermark): `(rows, anomalies, more)`, or what
    /// was stored before the failure and its reason. Scoring the run's rows together lets a series that has no
    /// model yet learn from all of them before any is judged (a first fetch of a long history is not judged by
    /// a model of its first hundred rows).
    async fn fetch_and_score(
        &self,
        source: &Source,
        run_id: i64,
    ) -> std::result::Result<(u64, u64, bool), (u64, u64, String)> {
        let fail = |rows, anomalies, e: &dyn std::error::Error| {
            (rows, anomalies, describe(e, &source.spec.password))
        };
        let connection = match self.source_connection(source).await {
            Ok(c) => c,
            Err(e) => return Err(fail(0, 0, &e)),
        };
        let clock = Instant::now();
        let mut watermark = source.watermark.clone();
        let mut pages: Vec<SourceBatch> = Vec::new();
        let (mut fetched, mut bytes) = (0u64, 0usize);
        // A failure after some pages still stores those: the next run goes on after them.
        let mut failure: Option<String> = None;
        let more = loop {
            let batch = match connection.fetch(watermark.as_ref()).await {
                Ok(b) => b,
                Err(e) => {
                    if e.is_unreachable() {
                        // A new connection next time: the server may have moved or restarted.
                        lock(&self.pools).remove(&source.id);
                    }
                    failure = Some(describe(&e, &source.spec.password));
                    break false;
                }
            };
            if batch.rows.is_empty() {
                break false;
            }
            if !batch.dropped_values.is_empty() {
                tracing::warn!(
                    source = source.id,
                    values = batch.dropped_values.len(),
                    first = %batch.dropped_values[0].reason,
                    "values JSON cannot hold were stored as null"
                );
            }
            let mut too_big = None;
            for row in &batch.rows {
                let size = row.record.to_string().len();
                if size > self.config.max_row_bytes {
                    too_big = Some((row.timestamp.to_string(), size));
                    break;
                }
                bytes += size;
            }
            if let Some((at, size)) = too_big {
                failure = Some(format!(
                    "the row at {} = {at} is {size} bytes as JSON, above MAX_ROW_BYTES ({}): select fewer or \
                     shorter columns",
                    source.spec.timestamp_column, self.config.max_row_bytes
                ));
                break false;
            }
            if let Some(Watermark::Float(f)) = &batch.watermark
                && !f.is_finite()
            {
                failure = Some(format!(
                    "the timestamp column {} holds {f}, which cannot order rows: filter it out in the query",
                    source.spec.timestamp_column
                ));
                break false;
            }
            fetched += batch.rows.len() as u64;
            watermark = batch.watermark.clone();
            let more = batch.more;
            pages.push(batch);
            if !more {
                break false;
            }
            if fetched >= self.config.max_rows_per_run || bytes >= self.config.max_run_bytes {
                break true;
            }
        };
        let done = |rows, anomalies| match &failure {
            None => Ok((rows, anomalies, more)),
            Some(e) => Err((rows, anomalies, e.clone())),
        };
        if pages.is_empty() {
            return done(0, 0);
        }
        let fetch_ms = clock.elapsed().as_millis();
        // Each page's size and watermark; its rows move on to scoring (held once, not copied).
        let marks: Vec<(usize, Option<Watermark>)> = pages
            .iter()
            .map(|p| (p.rows.len(), p.watermark.clone()))
            .collect();
        let mut scored = match self.score(source, pages).await {
            Ok(s) => s,
            Err(e) => return Err(fail(0, 0, &e)),
        };
        let score_ms = clock.elapsed().as_millis() - fetch_ms;
        let (mut rows, mut anomalies) = (0u64, 0u64);
        let mut previous = source.watermark.clone();
        for (size, page_watermark) in marks {
            let rest = scored.split_off(size.min(scored.len()));
            let these = std::mem::replace(&mut scored, rest);
            let flagged = these.iter().filter(|r| r.is_anomaly).count() as u64;
            match self
                .db
                .store_page(
                    source.id,
                    source.revision,
                    run_id,
                    &these,
                    previous.as_ref(),
                    page_watermark.as_ref(),
                )
                .await
            {
                Ok(true) => {}
                // Changed, deleted or advanced by another run meanwhile: what this run fetched is not its to store.
                Ok(false) => return Ok((rows, anomalies, false)),
                Err(e) => return Err(fail(rows, anomalies, &e)),
            }
            rows += these.len() as u64;
            anomalies += flagged;
            previous = page_watermark;
        }
        tracing::debug!(
            source = source.id,
            rows,
            fetch_ms,
            score_ms,
            store_ms = clock.elapsed().as_millis() - fetch_ms - score_ms,
            "run's parts"
        );
        done(rows, anomalies)
    }

    /// Scores a run's rows per series with the engine (on the blocking pool): each series' rows observed in
    /// order; a series whose first model comes during the run is trained on all its rows and they are scored by
    /// it.
    async fn score(&self, source: &Source, pages: Vec<SourceBatch>) -> Result<Vec<NewRow>> {
        let engine = self.engine.clone();
        let source = source.clone();
        let rows: Vec<(String, Value, Watermark)> = pages
            .into_iter()
            .flat_map(|p| p.rows)
            .map(|r| {
                (
                    r.series_key(&source.spec.series_columns),
                    r.record,
                    r.timestamp,
                )
            })
            .collect();
        tokio::task::spawn_blocking(move || score_rows(&engine, &source, rows))
            .await
            .map_err(|e| WatcherError::Source(format!("scoring stopped: {e}")))?
    }

    /// Writes the engine's pending history (at shutdown).
    pub fn flush(&self) {
        if let Err(e) = self.history.flush() {
            tracing::warn!(error = %e, "pending history could not be written");
        }
    }

    /// Whether the application's database answers.
    ///
    /// # Errors
    /// The reason, when it does not.
    pub async fn ready(&self) -> std::result::Result<(), String> {
        self.db.ping().await.map_err(|e| e.to_string())
    }
}

fn pinned_roles(spec: &SourceSpec) -> FieldRoles {
    let mut roles = FieldRoles::new();
    roles.insert(spec.timestamp_column.clone(), FieldRole::Timestamp);
    for c in &spec.series_columns {
        roles.insert(c.clone(), FieldRole::Ignore);
    }
    roles
}

fn explanation_json(e: &RecordExplanation) -> Value {
    let mut e = e.clone();
    e.fields.truncate(EXPLANATION_FIELDS);
    serde_json::to_value(&e).unwrap_or_else(|_| json!({"rationale": e.rationale}))
}

/// A row's verdict: score, flag, explanation.
type Scored = (f64, bool, Option<Value>);

/// One series of a run: the rows' places in the run and their records.
type Series = (Vec<usize>, Vec<Value>);

/// A series scored: places, records, verdicts (`None` while it had no model).
type ScoredSeries = (Vec<usize>, Vec<Value>, Vec<Option<Scored>>);

fn score_rows(
    engine: &Engine,
    source: &Source,
    rows: Vec<(String, Value, Watermark)>,
) -> Result<Vec<NewRow>> {
    use rayon::prelude::*;

    // Each series' records moved into a list of their own, in order, with their places in the run.
    let mut out: Vec<NewRow> = Vec::with_capacity(rows.len());
    let mut groups: HashMap<String, Series> = HashMap::new();
    for (i, (series, record, ts)) in rows.into_iter().enumerate() {
        let group = groups.entry(series.clone()).or_default();
        group.0.push(i);
        group.1.push(record);
        out.push(NewRow {
            row: Value::Null,
            row_timestamp: ts.to_string(),
            row_time: row_time(&ts),
            series,
            score: None,
            is_anomaly: false,
            explanation: None,
        });
    }
    let contamination = source.spec.sensitivity.contamination();
    // Series are independent keys: scored side by side. (Each key is restored before its series' job
    // starts, one at a time, so no rayon job waits on a restore that another job on its thread holds.)
    let groups: Vec<(String, Series)> = groups.into_iter().collect();
    for (series, _) in &groups {
        engine.load(&engine_key(source.id, source.revision, series))?;
    }
    let scored: Vec<ScoredSeries> = groups
        .into_par_iter()
        .map(|(series, (indices, records))| {
            let key = engine_key(source.id, source.revision, &series);
            let current = engine
                .model(&key)?
                .map(|m| m.forest().params().get_contamination());
            if current != Some(contamination) {
                engine.set_sensitivity(&key, contamination)?;
            }
            let mut outcomes = engine.observe_many(&key, &records)?;
            if current.is_none() && engine.model(&key)?.is_some() {
                // The series' first model came during this run (a backfill): it learnt from the first rows only.
                // Train it on everything fetched, then score every row with it, as the original fitted on a
                // source's first fetch and scored it.
                engine.train(&key)?;
                outcomes = records
                    .iter()
                    .map(|r| engine.score(&key, r))
                    .collect::<anomaly_core::Result<_>>()?;
            }
            let mut verdicts = Vec::with_capacity(records.len());
            for (record, outcome) in records.iter().zip(&outcomes) {
                verdicts.push(match outcome {
                    Outcome::Scored(v) => {
                        let explanation = if v.is_anomaly {
                            engine.explain(&key, record)?.as_ref().map(explanation_json)
                        } else {
                            None
                        };
                        Some((v.score, v.is_anomaly, explanation))
                    }
                    Outcome::Learning { .. } => None,
                });
            }
            Ok((indices, records, verdicts))
        })
        .collect::<Result<_>>()?;
    for (indices, records, verdicts) in scored {
        for ((i, record), verdict) in indices.into_iter().zip(records).zip(verdicts) {
            let row = &mut out[i];
            row.row = record;
            if let Some((score, is_anomaly, explanation)) = verdict {
                row.score = Some(score);
                row.is_anomaly = is_anomaly;
                row.explanation = explanation;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    #[test]
    fn row_times_read_times_dates_text_and_epochs() {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        assert_eq!(row_time(&Watermark::Timestamp(t)), Some(t));
        assert_eq!(row_time(&Watermark::DateTime(t.naive_utc())), Some(t));
        assert_eq!(
            row_time(&Watermark::Text("2026-11-01 12:00:00".into())),
            Some(t)
        );
        assert_eq!(
            row_time(&Watermark::Text("2026-11-01T12:00:00Z".into())),
            Some(t)
        );
        assert_eq!(row_time(&Watermark::Integer(t.timestamp())), Some(t));
        assert_eq!(row_time(&Watermark::Integer(t.timestamp_millis())), Some(t));
        assert_eq!(row_time(&Watermark::Integer(42)), None);
        let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        assert_eq!(
            row_time(&Watermark::Date(day)),
            Some(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap())
        );
    }

    #[test]
    fn errors_never_repeat_the_password() {
        let e = std::io::Error::other("login failed for ro with s3cret!");
        assert_eq!(describe(&e, "s3cret!"), "login failed for ro with ***");
    }

    #[test]
    fn keys_name_source_revision_and_series_within_the_store_limit() {
        let key = engine_key(12, 3, "host=a");
        assert_eq!(key, "sql-watcher/12/r3/host=a");
        assert_eq!(source_of_key(&key), Some(12));
        assert_eq!(source_of_key("other/12"), None);
        assert_eq!(engine_key(12, 3, ""), "sql-watcher/12/r3/*");
        let long = "h".repeat(400);
        let hashed = engine_key(12, 3, &long);
        assert!(hashed.len() <= anomaly_store::MAX_KEY_CHARS, "{hashed}");
        assert_eq!(hashed, engine_key(12, 3, &long));
        assert_ne!(hashed, engine_key(12, 3, &"h".repeat(401)));
    }
}
