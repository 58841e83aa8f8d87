//! The application's database: users, API tokens, sessions, data sources, runs and scored rows, on SQLite,
//! PostgreSQL or MariaDB through sea-orm (the engine's models and history live beside them, in
//! [`anomaly_store::SeaOrmStore`]'s tables). Every query goes through [`Db`]; the entities stay private.

mod entities;
mod migration;

use std::collections::HashMap;
use std::time::Duration;

use anomaly_store::{SeaOrmStore, Watermark};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, DbBackend, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use serde_json::Value;

use crate::error::WatcherError;
use crate::source::{DbEngine, Sensitivity, Source, SourceSpec, SourceStatus};
use entities::{row, run, session, source, token, user};

type Result<T> = std::result::Result<T, WatcherError>;

/// A user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id.
    pub id: i64,
    /// Name.
    pub username: String,
}

/// A scored row to store.
#[derive(Debug, Clone)]
pub struct NewRow {
    /// The source row as JSON.
    pub row: Value,
    /// The timestamp column's value, as text.
    pub row_timestamp: String,
    /// The timestamp as a time, when the column holds one (for the `since`/`until` filters).
    pub row_time: Option<DateTime<Utc>>,
    /// The series (`column=value` pairs; empty without series columns).
    pub series: String,
    /// The forest's score; `None` while the series has no model yet.
    pub score: Option<f64>,
    /// Whether a detector flagged it.
    pub is_anomaly: bool,
    /// Why, for flagged rows.
    pub explanation: Option<Value>,
}

/// A stored scored row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredRow {
    /// Id.
    pub id: i64,
    /// Its source.
    pub datasource: i64,
    /// The source row as JSON.
    pub row: Value,
    /// The timestamp column's value.
    pub row_timestamp: String,
    /// The series.
    pub series: String,
    /// The forest's score (`null` while the series was learning).
    pub score: Option<f64>,
    /// Whether a detector flagged it.
    pub is_anomaly: bool,
    /// Why, for flagged rows.
    pub explanation: Option<Value>,
}

/// A run of a source: one fetch-and-score.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    /// Id.
    pub id: i64,
    /// Its source.
    pub datasource: i64,
    /// `schedule` or `request`.
    pub trigger: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Rows fetched and stored.
    pub rows: u64,
    /// Of which flagged.
    pub anomalies: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// Filters of the anomalies across a user's sources.
#[derive(Debug, Clone, Default)]
pub struct AnomalyFilter {
    /// Only this source.
    pub datasource: Option<i64>,
    /// Rows whose timestamp is at or after.
    pub since: Option<DateTime<Utc>>,
    /// Rows whose timestamp is before.
    pub until: Option<DateTime<Utc>>,
}

/// The application's database.
#[derive(Debug, Clone)]
pub struct Db {
    conn: DatabaseConnection,
}

fn unique_violation(e: &DbErr) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unique") || text.contains("duplicate")
}

impl Db {
    /// Connects to `url` (creating a SQLite file's directory) and migrates the application's tables.
    ///
    /// # Errors
    /// [`WatcherError::Database`] when the database does not answer within `timeout` or refuses the migrations.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Db> {
        SeaOrmStore::create_sqlite_dir(url).map_err(|e| WatcherError::Io {
            what: "creating the SQLite file's directory".into(),
            source: e,
        })?;
        let mut options = ConnectOptions::new(url.to_string());
        options
            .sqlx_logging(false)
            .connect_timeout(timeout)
            .acquire_timeout(timeout)
            .max_connections(if url.starts_with("sqlite:") { 4 } else { 10 });
        let conn = tokio::time::timeout(timeout, Database::connect(options))
            .await
            .map_err(|_| {
                DbErr::Conn(sea_orm::RuntimeErr::Internal(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                )))
            })??;
        if conn.get_database_backend() == DbBackend::Sqlite {
            // As the engine's store: a write-ahead log, `synchronous` FULL, and waiting for the writer's lock.
            for pragma in ["PRAGMA journal_mode=WAL", "PRAGMA busy_timeout=10000"] {
                conn.execute_unprepared(pragma).await?;
            }
        }
        migration::Migrator::up(&conn, None).await?;
        Ok(Db { conn })
    }

    /// Whether the database answers.
    ///
    /// # Errors
    /// [`WatcherError::Database`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        self.conn.ping().await.map_err(Into::into)
    }

    // ---- users ----

    /// Creates a user with a password hash.
    ///
    /// # Errors
    /// [`WatcherError::UsernameTaken`]; [`WatcherError::Database`].
    pub async fn create_user(&self, username: &str, password_hash: &str) -> Result<User> {
        let model = user::ActiveModel {
            username: Set(username.to_string()),
            password_hash: Set(password_hash.to_string()),
            created_at: Set(Utc::now()),
            ..Default::default()
        };
        match model.insert(&self.conn).await {
            Ok(m) => Ok(User {
                id: m.id,
                username: m.username,
            }),
            Err(e) if unique_violation(&e) => Err(WatcherError::UsernameTaken(username.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// A user and their password hash, by name.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn user_by_name(&self, username: &str) -> Result<Option<(User, String)>> {
        Ok(user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(&self.conn)
            .await?
            .map(|m| {
                (
                    User {
                        id: m.id,
                        username: m.username,
                    },
                    m.password_hash,
                )
            }))
    }

    async fn user(&self, id: i64) -> Result<Option<User>> {
        Ok(user::Entity::find_by_id(id)
            .one(&self.conn)
            .await?
            .map(|m| User {
                id: m.id,
                username: m.username,
            }))
    }

    /// Stores an API token's digest for a user; beyond `max` tokens the oldest go.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn add_token(&self, user_id: i64, digest: &str, label: &str, max: u64) -> Result<()> {
        token::ActiveModel {
            user_id: Set(user_id),
            digest: Set(digest.to_string()),
            label: Set(label.chars().take(200).collect()),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&self.conn)
        .await?;
        self.keep_newest::<token::Entity>(token::Column::UserId, user_id, token::Column::Id, max)
            .await?;
        Ok(())
    }

    /// The user a token digest belongs to.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn user_by_token(&self, digest: &str) -> Result<Option<User>> {
        let Some(t) = token::Entity::find()
            .filter(token::Column::Digest.eq(digest))
            .one(&self.conn)
            .await?
        else {
            return Ok(None);
        };
        self.user(t.user_id).await
    }

    /// A user's tokens: id, label, created.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn tokens(&self, user_id: i64) -> Result<Vec<(i64, String, DateTime<Utc>)>> {
        Ok(token::Entity::find()
            .filter(token::Column::UserId.eq(user_id))
            .order_by_desc(token::Column::Id)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(|t| (t.id, t.label, t.created_at))
            .collect())
    }

    /// Revokes a user's token; whether it existed.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn delete_token(&self, user_id: i64, id: i64) -> Result<bool> {
        let r = token::Entity::delete_many()
            .filter(token::Column::UserId.eq(user_id))
            .filter(token::Column::Id.eq(id))
            .exec(&self.conn)
            .await?;
        Ok(r.rows_affected > 0)
    }

    /// Stores a session (its cookie's digest, its CSRF token); beyond `max` sessions of the user the oldest go.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn add_session(
        &self,
        user_id: i64,
        digest: &str,
        csrf: &str,
        expires_at: DateTime<Utc>,
        max: u64,
    ) -> Result<()> {
        session::ActiveModel {
            digest: Set(digest.to_string()),
            user_id: Set(user_id),
            csrf: Set(csrf.to_string()),
            expires_at: Set(expires_at),
            created_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&self.conn)
        .await?;
        self.keep_newest::<session::Entity>(
            session::Column::UserId,
            user_id,
            session::Column::Id,
            max,
        )
        .await?;
        Ok(())
    }

    /// The user and CSRF token of a live session.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn session(
        &self,
        digest: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(User, String)>> {
        let Some(s) = session::Entity::find()
            .filter(session::Column::Digest.eq(digest))
            .filter(session::Column::ExpiresAt.gt(now))
            .one(&self.conn)
            .await?
        else {
            return Ok(None);
        };
        Ok(self.user(s.user_id).await?.map(|u| (u, s.csrf)))
    }

    /// Ends a session.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn delete_session(&self, digest: &str) -> Result<()> {
        session::Entity::delete_many()
            .filter(session::Column::Digest.eq(digest))
            .exec(&self.conn)
            .await?;
        Ok(())
    }

    /// Removes expired sessions; how many.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        Ok(session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lte(now))
            .exec(&self.conn)
            .await?
            .rows_affected)
    }

    // ---- sources ----

    /// Registers a source for a user, due at once.
    ///
    /// # Errors
    /// [`WatcherError::Invalid`] for an alias the user already has or a user at `max` sources;
    /// [`WatcherError::Database`].
    pub async fn insert_source(&self, user_id: i64, spec: &SourceSpec, max: u64) -> Result<Source> {
        let count = source::Entity::find()
            .filter(source::Column::UserId.eq(user_id))
            .count(&self.conn)
            .await?;
        if count >= max {
            return Err(WatcherError::invalid(
                "alias",
                format!("you have {count} data sources, the most allowed"),
            ));
        }
        let now = Utc::now();
        let mut model = source::ActiveModel {
            user_id: Set(user_id),
            status: Set(SourceStatus::Pending.as_str().into()),
            last_run: Set(None),
            last_error: Set(None),
            watermark: Set(None),
            failures: Set(0),
            next_run_at: Set(now),
            revision: Set(1),
            created_at: Set(now),
            ..Default::default()
        };
        set_spec(&mut model, spec);
        match model.insert(&self.conn).await {
            Ok(m) => to_source(m),
            Err(e) if unique_violation(&e) => Err(WatcherError::invalid(
                "alias",
                format!("you already have a data source named {:?}", spec.alias),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces a user's source's spec; when it reads differently its watermark and rows start over and its
    /// revision moves on. `None` when the user has no such source.
    ///
    /// # Errors
    /// [`WatcherError::Invalid`] for an alias the user already has; [`WatcherError::Database`].
    pub async fn update_source(
        &self,
        user_id: i64,
        id: i64,
        spec: &SourceSpec,
    ) -> Result<Option<(Source, bool)>> {
        let Some(old) = self.user_source(user_id, id).await? else {
            return Ok(None);
        };
        let restart = old.spec.reads_differently(spec);
        let tx = self.conn.begin().await?;
        let mut model = source::ActiveModel {
            id: Set(id),
            ..Default::default()
        };
        set_spec(&mut model, spec);
        if restart {
            model.watermark = Set(None);
            model.status = Set(SourceStatus::Pending.as_str().into());
            model.failures = Set(0);
            model.last_error = Set(None);
            model.next_run_at = Set(Utc::now());
        }
        // The source's row first: its new revision locks out a run storing rows of the old query, then those
        // rows go.
        match model.update(&tx).await {
            Ok(_) => {}
            Err(e) if unique_violation(&e) => {
                return Err(WatcherError::invalid(
                    "alias",
                    format!("you already have a data source named {:?}", spec.alias),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        if restart {
            // In SQL: two changes at once each move it on.
            source::Entity::update_many()
                .filter(source::Column::Id.eq(id))
                .col_expr(
                    source::Column::Revision,
                    Expr::col(source::Column::Revision).add(1),
                )
                .exec(&tx)
                .await?;
            row::Entity::delete_many()
                .filter(row::Column::SourceId.eq(id))
                .exec(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(self.user_source(user_id, id).await?.map(|s| (s, restart)))
    }

    /// Deletes a user's source with its runs and rows; whether it existed.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn delete_source(&self, user_id: i64, id: i64) -> Result<bool> {
        let tx = self.conn.begin().await?;
        let r = source::Entity::delete_many()
            .filter(source::Column::UserId.eq(user_id))
            .filter(source::Column::Id.eq(id))
            .exec(&tx)
            .await?;
        if r.rows_affected == 0 {
            return Ok(false);
        }
        row::Entity::delete_many()
            .filter(row::Column::SourceId.eq(id))
            .exec(&tx)
            .await?;
        run::Entity::delete_many()
            .filter(run::Column::SourceId.eq(id))
            .exec(&tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A source, whoever owns it (the scheduler's view).
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn source(&self, id: i64) -> Result<Option<Source>> {
        source::Entity::find_by_id(id)
            .one(&self.conn)
            .await?
            .map(to_source)
            .transpose()
    }

    /// A user's source; `None` for another user's.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn user_source(&self, user_id: i64, id: i64) -> Result<Option<Source>> {
        Ok(self.source(id).await?.filter(|s| s.user_id == user_id))
    }

    /// A page of a user's sources by id, and how many they have.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn sources_of(
        &self,
        user_id: i64,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<Source>)> {
        let q = source::Entity::find().filter(source::Column::UserId.eq(user_id));
        let count = q.clone().count(&self.conn).await?;
        let page = q
            .order_by_asc(source::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(to_source)
            .collect::<Result<_>>()?;
        Ok((count, page))
    }

    /// Ids of sources due at `now`, the longest waiting first, at most `limit`.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn due_sources(&self, now: DateTime<Utc>, limit: u64) -> Result<Vec<i64>> {
        Ok(source::Entity::find()
            .select_only()
            .column(source::Column::Id)
            .filter(source::Column::NextRunAt.lte(now))
            .order_by_asc(source::Column::NextRunAt)
            .limit(limit)
            .into_tuple()
            .all(&self.conn)
            .await?)
    }

    /// Starts a run; its id.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn start_run(&self, source_id: i64, trigger: &str, at: DateTime<Utc>) -> Result<i64> {
        Ok(run::ActiveModel {
            source_id: Set(source_id),
            trigger: Set(trigger.to_string()),
            started_at: Set(at),
            rows_fetched: Set(0),
            anomalies: Set(0),
            duration_ms: Set(0),
            error: Set(None),
            ..Default::default()
        }
        .insert(&self.conn)
        .await?
        .id)
    }

    /// Stores one page of a run: its rows, and the source's new watermark, in one transaction, unless the
    /// source changed revision, was deleted, or its watermark is no longer `previous` (another run stored these
    /// rows); whether it was stored.
    ///
    /// # Errors
    /// [`WatcherError::Database`]; nothing of the page is stored then.
    pub async fn store_page(
        &self,
        source_id: i64,
        revision: i64,
        run_id: i64,
        rows: &[NewRow],
        previous: Option<&Watermark>,
        watermark: Option<&Watermark>,
    ) -> Result<bool> {
        let tx = self.conn.begin().await?;
        let mut update = source::Entity::update_many()
            .filter(source::Column::Id.eq(source_id))
            .filter(source::Column::Revision.eq(revision));
        // Only from where this run started: a concurrent run (another process sharing the database) that stored
        // these rows first has moved the watermark on.
        update = match previous {
            None => update.filter(source::Column::Watermark.is_null()),
            Some(p) => update.filter(source::Column::Watermark.eq(p.to_json().to_string())),
        };
        if let Some(w) = watermark {
            update = update.col_expr(
                source::Column::Watermark,
                Expr::value(w.to_json().to_string()),
            );
        } else {
            update = update.col_expr(source::Column::Revision, Expr::value(revision));
        }
        if update.exec(&tx).await?.rows_affected == 0 {
            return Ok(false);
        }
        // Chunks within every backend's bound on bound parameters (SQLite's 32,766; 9 columns a row).
        for chunk in rows.chunks(1_000) {
            let models = chunk.iter().map(|r| row::ActiveModel {
                source_id: Set(source_id),
                run_id: Set(run_id),
                row_json: Set(r.row.to_string()),
                row_timestamp: Set(r.row_timestamp.chars().take(255).collect()),
                row_time: Set(r.row_time),
                series: Set(r.series.chars().take(255).collect()),
                score: Set(r.score),
                is_anomaly: Set(r.is_anomaly),
                explanation: Set(r.explanation.as_ref().map(Value::to_string)),
                ..Default::default()
            });
            row::Entity::insert_many(models)
                .exec_without_returning(&tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Ends a run: its figures, and the source's status and next time (`next_run_at`) unless the source changed
    /// revision meanwhile (it is then due at once, as the change left it); then keeps at most `max_rows` rows and
    /// `max_runs` runs of the source.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_run(
        &self,
        run: &Run,
        revision: i64,
        status: SourceStatus,
        failures: u64,
        next_run_at: DateTime<Utc>,
        max_rows: u64,
        max_runs: u64,
    ) -> Result<()> {
        run::ActiveModel {
            id: Set(run.id),
            rows_fetched: Set(run.rows as i64),
            anomalies: Set(run.anomalies as i64),
            duration_ms: Set(run.duration_ms as i64),
            error: Set(run.error.clone()),
            ..Default::default()
        }
        .update(&self.conn)
        .await?;
        source::Entity::update_many()
            .filter(source::Column::Id.eq(run.datasource))
            .filter(source::Column::Revision.eq(revision))
            .col_expr(source::Column::Status, Expr::value(status.as_str()))
            .col_expr(source::Column::LastRun, Expr::value(Utc::now()))
            .col_expr(source::Column::LastError, Expr::value(run.error.clone()))
            .col_expr(source::Column::Failures, Expr::value(failures as i64))
            .col_expr(source::Column::NextRunAt, Expr::value(next_run_at))
            .exec(&self.conn)
            .await?;
        let removed = self
            .keep_newest::<row::Entity>(
                row::Column::SourceId,
                run.datasource,
                row::Column::Id,
                max_rows,
            )
            .await?;
        if removed > 0 {
            tracing::info!(
                source = run.datasource,
                removed,
                "oldest rows removed (MAX_ROWS_PER_SOURCE)"
            );
        }
        self.keep_newest::<run::Entity>(
            run::Column::SourceId,
            run.datasource,
            run::Column::Id,
            max_runs,
        )
        .await?;
        Ok(())
    }

    /// Keeps the `keep` newest rows (by id) of `E` whose `owner` column is `owner_id`, and deletes the older
    /// ones; how many. One id is read (the first beyond the bound), then one delete.
    async fn keep_newest<E: EntityTrait>(
        &self,
        owner: E::Column,
        owner_id: i64,
        id: E::Column,
        keep: u64,
    ) -> Result<u64> {
        let below: Option<i64> = E::find()
            .select_only()
            .column(id)
            .filter(owner.eq(owner_id))
            .order_by_desc(id)
            .offset(keep)
            .limit(1)
            .into_tuple()
            .one(&self.conn)
            .await?;
        let Some(below) = below else {
            return Ok(0);
        };
        Ok(E::delete_many()
            .filter(owner.eq(owner_id))
            .filter(id.lte(below))
            .exec(&self.conn)
            .await?
            .rows_affected)
    }

    /// A source's newest runs.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn runs(&self, source_id: i64, limit: u64) -> Result<Vec<Run>> {
        Ok(run::Entity::find()
            .filter(run::Column::SourceId.eq(source_id))
            .order_by_desc(run::Column::Id)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(to_run)
            .collect())
    }

    /// A page of a source's rows, newest first (only the flagged ones when `anomalies_only`), and how many.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn rows(
        &self,
        source_id: i64,
        anomalies_only: bool,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<StoredRow>)> {
        let mut q = row::Entity::find().filter(row::Column::SourceId.eq(source_id));
        if anomalies_only {
            q = q.filter(row::Column::IsAnomaly.eq(true));
        }
        let count = q.clone().count(&self.conn).await?;
        let rows = q
            .order_by_desc(row::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(to_row)
            .collect();
        Ok((count, rows))
    }

    /// A page of the flagged rows of a user's sources, most anomalous first, and how many.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn anomalies(
        &self,
        user_id: i64,
        filter: &AnomalyFilter,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<StoredRow>)> {
        let mut sources: Vec<i64> = source::Entity::find()
            .select_only()
            .column(source::Column::Id)
            .filter(source::Column::UserId.eq(user_id))
            .into_tuple()
            .all(&self.conn)
            .await?;
        if let Some(only) = filter.datasource {
            sources.retain(|&s| s == only);
        }
        if sources.is_empty() {
            return Ok((0, Vec::new()));
        }
        let mut q = row::Entity::find()
            .filter(row::Column::SourceId.is_in(sources))
            .filter(row::Column::IsAnomaly.eq(true));
        if let Some(since) = filter.since {
            q = q.filter(row::Column::RowTime.gte(since));
        }
        if let Some(until) = filter.until {
            q = q.filter(row::Column::RowTime.lt(until));
        }
        let count = q.clone().count(&self.conn).await?;
        let rows = q
            .order_by_desc(row::Column::Score)
            .order_by_desc(row::Column::Id)
            .offset(offset)
            .limit(limit)
            .all(&self.conn)
            .await?
            .into_iter()
            .map(to_row)
            .collect();
        Ok((count, rows))
    }

    /// Flagged rows per source of a user.
    ///
    /// # Errors
    /// [`WatcherError::Database`].
    pub async fn anomaly_counts(&self, source_ids: &[i64]) -> Result<HashMap<i64, u64>> {
        if source_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let counts: Vec<(i64, i64)> = row::Entity::find()
            .select_only()
            .column(row::Column::SourceId)
            .column_as(row::Column::Id.count(), "n")
            .filter(row::Column::SourceId.is_in(source_ids.iter().copied()))
            .filter(row::Column::IsAnomaly.eq(true))
            .group_by(row::Column::SourceId)
            .into_tuple()
            .all(&self.conn)
            .await?;
        Ok(counts
            .into_iter()
            .map(|(s, n)| (s, n.max(0) as u64))
            .collect())
    }
}

fn set_spec(m: &mut source::ActiveModel, s: &SourceSpec) {
    m.alias = Set(s.alias.clone());
    m.engine = Set(s.engine.as_str().into());
    m.host = Set(s.host.clone());
    m.port = Set(s.port.map(i32::from));
    m.name = Set(s.name.clone());
    m.db_user = Set(s.user.clone());
    m.password = Set(s.password.clone());
    m.sql_text = Set(s.sql.clone());
    m.timestamp_column = Set(s.timestamp_column.clone());
    m.series_columns = Set(Value::from(s.series_columns.clone()).to_string());
    m.sensitivity = Set(s.sensitivity.share());
    m.fetch_interval_seconds = Set(s.fetch_interval_seconds as i64);
}

fn corrupt(what: &str, why: impl std::fmt::Display) -> WatcherError {
    WatcherError::Database(DbErr::Custom(format!(
        "a stored {what} is unreadable: {why}"
    )))
}

fn to_source(m: source::Model) -> Result<Source> {
    let series_columns: Vec<String> =
        serde_json::from_str(&m.series_columns).map_err(|e| corrupt("series_columns", e))?;
    let watermark = match &m.watermark {
        None => None,
        Some(text) => {
            let v: Value = serde_json::from_str(text).map_err(|e| corrupt("watermark", e))?;
            Watermark::from_json(&v).map_err(|e| corrupt("watermark", e))?
        }
    };
    let sensitivity = match m.sensitivity {
        None => Sensitivity::Auto,
        Some(s) => Sensitivity::Share(s),
    };
    Ok(Source {
        id: m.id,
        user_id: m.user_id,
        spec: SourceSpec {
            alias: m.alias,
            engine: DbEngine::parse(&m.engine).map_err(|e| corrupt("engine", e))?,
            host: m.host,
            port: m.port.and_then(|p| u16::try_from(p).ok()),
            name: m.name,
            user: m.db_user,
            password: m.password,
            sql: m.sql_text,
            timestamp_column: m.timestamp_column,
            series_columns,
            sensitivity,
            fetch_interval_seconds: m.fetch_interval_seconds.max(1) as u64,
        },
        status: SourceStatus::parse(&m.status),
        last_run: m.last_run,
        last_error: m.last_error,
        watermark,
        failures: m.failures.max(0) as u64,
        next_run_at: m.next_run_at,
        revision: m.revision,
        created_at: m.created_at,
    })
}

fn to_run(m: run::Model) -> Run {
    Run {
        id: m.id,
        datasource: m.source_id,
        trigger: m.trigger,
        started_at: m.started_at,
        rows: m.rows_fetched.max(0) as u64,
        anomalies: m.anomalies.max(0) as u64,
        duration_ms: m.duration_ms.max(0) as u64,
        error: m.error,
    }
}

fn to_row(m: row::Model) -> StoredRow {
    StoredRow {
        id: m.id,
        datasource: m.source_id,
        row: serde_json::from_str(&m.row_json).unwrap_or(Value::Null),
        row_timestamp: m.row_timestamp,
        series: m.series,
        score: m.score,
        is_anomaly: m.is_anomaly,
        explanation: m
            .explanation
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok()),
    }
}
