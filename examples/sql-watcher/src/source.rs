//! A user's data source: what they register ([`SourceSpec`], the original form's field names), how it is checked,
//! the connection URL built from it, and what the API answers about it ([`SourceView`], never the password).

use anomaly_core::forest::Contamination;
use anomaly_store::{SqlDialect, Watermark, check_read_only_select};
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::WatcherError;

/// Bytes of a source's `SELECT` at most.
pub const MAX_SQL_BYTES: usize = 64 * 1024;
/// Series columns at most.
pub const MAX_SERIES_COLUMNS: usize = 8;

/// The database engine of a source, as the original's form names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbEngine {
    /// MySQL or MariaDB.
    Mysql,
    /// PostgreSQL.
    Postgres,
    /// A SQLite file on the application's machine (`name` is its path).
    Sqlite,
}

impl DbEngine {
    /// `mysql`, `postgres` or `sqlite`.
    pub fn as_str(self) -> &'static str {
        match self {
            DbEngine::Mysql => "mysql",
            DbEngine::Postgres => "postgres",
            DbEngine::Sqlite => "sqlite",
        }
    }

    /// The engine named `name`.
    ///
    /// # Errors
    /// [`WatcherError::Invalid`] for another name.
    pub fn parse(name: &str) -> Result<Self, WatcherError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "mysql" | "mariadb" => Ok(DbEngine::Mysql),
            "postgres" | "postgresql" => Ok(DbEngine::Postgres),
            "sqlite" => Ok(DbEngine::Sqlite),
            other => Err(WatcherError::invalid(
                "engine",
                format!("{other:?} is not one of mysql, postgres, sqlite"),
            )),
        }
    }

    fn dialect(self) -> SqlDialect {
        match self {
            DbEngine::Mysql => SqlDialect::MySql,
            DbEngine::Postgres => SqlDialect::Postgres,
            DbEngine::Sqlite => SqlDialect::Sqlite,
        }
    }

    fn default_port(self) -> Option<u16> {
        match self {
            DbEngine::Mysql => Some(3306),
            DbEngine::Postgres => Some(5432),
            DbEngine::Sqlite => None,
        }
    }
}

/// How many anomalies a source's models expect: `"auto"` (the isolation forest's own threshold) or a share of
/// rows in `(0, 0.5]`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Sensitivity {
    /// The paper's threshold (score 0.5).
    #[default]
    Auto,
    /// The share of rows to flag.
    Share(f64),
}

impl Sensitivity {
    /// The engine's contamination for it.
    pub fn contamination(self) -> Contamination {
        match self {
            Sensitivity::Auto => Contamination::Auto,
            Sensitivity::Share(s) => Contamination::Fraction(s),
        }
    }

    /// As stored: `None` for auto.
    pub fn share(self) -> Option<f64> {
        match self {
            Sensitivity::Auto => None,
            Sensitivity::Share(s) => Some(s),
        }
    }

    /// Reads `"auto"`, a number, or a number in a string (a form's field).
    ///
    /// # Errors
    /// [`WatcherError::Invalid`] for anything else, or a share outside `(0, 0.5]`.
    pub fn from_json(value: &Value) -> Result<Self, WatcherError> {
        let bad = |why: String| WatcherError::invalid("sensitivity", why);
        let share = match value {
            Value::Null => return Ok(Sensitivity::Auto),
            Value::String(s) if s.trim().eq_ignore_ascii_case("auto") || s.trim().is_empty() => {
                return Ok(Sensitivity::Auto);
            }
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| bad(format!("{s:?} is neither \"auto\" nor a number")))?,
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            other => return Err(bad(format!("{other} is neither \"auto\" nor a number"))),
        };
        if share.is_finite() && share > 0.0 && share <= 0.5 {
            Ok(Sensitivity::Share(share))
        } else {
            Err(bad(format!(
                "{share} is not a share of rows in (0, 0.5] (or \"auto\")"
            )))
        }
    }

    /// `"auto"` or the share, as the API answers it.
    pub fn to_json(self) -> Value {
        match self {
            Sensitivity::Auto => Value::String("auto".into()),
            Sensitivity::Share(s) => serde_json::json!(s),
        }
    }
}

/// What a user registers: the original form's fields.
#[derive(Clone, PartialEq)]
pub struct SourceSpec {
    /// The user's name for it (unique per user).
    pub alias: String,
    /// Its database engine.
    pub engine: DbEngine,
    /// Host name or address (unused for SQLite).
    pub host: String,
    /// Port (the engine's default when absent; unused for SQLite).
    pub port: Option<u16>,
    /// The database name (the file's path for SQLite).
    pub name: String,
    /// The account (use a read-only one: see `sql-watcher import-dump`).
    pub user: String,
    /// Its password: stored, never answered, shown or logged.
    pub password: String,
    /// One read-only `SELECT`.
    pub sql: String,
    /// The column that orders rows in time (the watermark).
    pub timestamp_column: String,
    /// Columns whose values name a series; a model per series.
    pub series_columns: Vec<String>,
    /// Share of anomalies to expect.
    pub sensitivity: Sensitivity,
    /// Seconds between fetches.
    pub fetch_interval_seconds: u64,
}

impl std::fmt::Debug for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceSpec")
            .field("alias", &self.alias)
            .field("engine", &self.engine)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("name", &self.name)
            .field("user", &self.user)
            .field("sql", &self.sql)
            .field("timestamp_column", &self.timestamp_column)
            .field("series_columns", &self.series_columns)
            .field("sensitivity", &self.sensitivity)
            .field("fetch_interval_seconds", &self.fetch_interval_seconds)
            .finish_non_exhaustive()
    }
}

/// Limits a spec is checked against (from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct SpecLimits {
    /// Interval when the user gives none.
    pub default_interval: u64,
    /// Shortest interval allowed.
    pub min_interval: u64,
}

const USERINFO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

impl SourceSpec {
    /// Reads a spec from the API's JSON object (or a form's fields as strings). `previous` is the stored source
    /// when updating: a field left out keeps its value (so `PUT` without `password` keeps the password).
    ///
    /// # Errors
    /// [`WatcherError::Invalid`] naming the first field that is missing or unusable.
    pub fn from_json(
        body: &Value,
        previous: Option<&SourceSpec>,
        limits: SpecLimits,
    ) -> Result<Self, WatcherError> {
        let Some(obj) = body.as_object() else {
            return Err(WatcherError::invalid("body", "expected a JSON object"));
        };
        let text = |field: &'static str, max: usize| -> Result<Option<String>, WatcherError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.len() > max => Err(WatcherError::invalid(
                    field,
                    format!("{} bytes, at most {max}", s.len()),
                )),
                Some(Value::String(s)) if s.contains('\0') => {
                    Err(WatcherError::invalid(field, "contains a NUL character"))
                }
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(WatcherError::invalid(
                    field,
                    format!("expected a string, got {other}"),
                )),
            }
        };
        let required = |field: &'static str,
                        max: usize,
                        old: Option<&String>|
         -> Result<String, WatcherError> {
            match text(field, max)?.map(|s| s.trim().to_string()) {
                Some(s) if !s.is_empty() => Ok(s),
                Some(_) | None => old
                    .cloned()
                    .ok_or_else(|| WatcherError::invalid(field, "this field is required")),
            }
        };
        let alias = required("alias", 255, previous.map(|p| &p.alias))?;
        let engine = match text("engine", 32)? {
            Some(e) if !e.trim().is_empty() => DbEngine::parse(&e)?,
            _ => previous
                .map(|p| p.engine)
                .ok_or_else(|| WatcherError::invalid("engine", "this field is required"))?,
        };
        let sqlite = engine == DbEngine::Sqlite;
        let host = match text("host", 255)? {
            Some(h) => h.trim().to_string(),
            None => previous.map(|p| p.host.clone()).unwrap_or_default(),
        };
        if !sqlite && host.is_empty() {
            return Err(WatcherError::invalid("host", "this field is required"));
        }
        let port = match obj.get("port") {
            None => previous.and_then(|p| p.port),
            Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match n {
                    Some(p @ 1..=65_535) => Some(p as u16),
                    _ => return Err(WatcherError::invalid("port", format!("{v} is not a port"))),
                }
            }
        };
        let name = required("name", 4096, previous.map(|p| &p.name))?;
        let user = match text("user", 255)? {
            Some(u) => u.trim().to_string(),
            None => previous.map(|p| p.user.clone()).unwrap_or_default(),
        };
        if !sqlite && user.is_empty() {
            return Err(WatcherError::invalid("user", "this field is required"));
        }
        // An empty password on an update keeps the stored one (the form never shows it).
        let password = match text("password", 1024)? {
            Some(p) if !p.is_empty() => p,
            _ => previous.map(|p| p.password.clone()).unwrap_or_default(),
        };
        let sql = required("sql", MAX_SQL_BYTES, previous.map(|p| &p.sql))?;
        check_read_only_select(&sql, engine.dialect())
            .map_err(|e| WatcherError::invalid("sql", e.to_string()))?;
        let timestamp_column = required(
            "timestamp_column",
            255,
            previous.map(|p| &p.timestamp_column),
        )?;
        let series_columns = match obj.get("series_columns") {
            None => previous
                .map(|p| p.series_columns.clone())
                .unwrap_or_default(),
            Some(v) => series_columns(v)?,
        };
        if series_columns.contains(&timestamp_column) {
            return Err(WatcherError::invalid(
                "series_columns",
                format!("{timestamp_column:?} is the timestamp column"),
            ));
        }
        let sensitivity = match obj.get("sensitivity") {
            None => previous.map(|p| p.sensitivity).unwrap_or_default(),
            Some(v) => Sensitivity::from_json(v)?,
        };
        let fetch_interval_seconds = match obj.get("fetch_interval_seconds") {
            None | Some(Value::Null) => previous
                .map(|p| p.fetch_interval_seconds)
                .unwrap_or(limits.default_interval),
            Some(Value::String(s)) if s.trim().is_empty() => previous
                .map(|p| p.fetch_interval_seconds)
                .unwrap_or(limits.default_interval),
            Some(v) => {
                let n = match v {
                    Value::Number(n) => n.as_u64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if n >= limits.min_interval && n <= 30 * 86_400 => n,
                    _ => {
                        return Err(WatcherError::invalid(
                            "fetch_interval_seconds",
                            format!(
                                "{v} is not a whole number of seconds from {} to 2592000",
                                limits.min_interval
                            ),
                        ));
                    }
                }
            }
        };
        Ok(SourceSpec {
            alias,
            engine,
            host,
            port,
            name,
            user,
            password,
            sql,
            timestamp_column,
            series_columns,
            sensitivity,
            fetch_interval_seconds,
        })
    }

    /// The connection URL for [`anomaly_store::SqlSource`]: user and password percent-encoded. Contains the
    /// password: never log it ([`anomaly_store::redact_url`]).
    pub fn url(&self) -> String {
        match self.engine {
            DbEngine::Sqlite => {
                let path = self.name.strip_prefix("sqlite://").unwrap_or(&self.name);
                format!("sqlite://{path}?mode=ro")
            }
            engine => {
                let scheme = engine.as_str();
                let user = utf8_percent_encode(&self.user, USERINFO);
                let port = self.port.or(engine.default_port()).unwrap_or_default();
                let host = if self.host.contains(':') && !self.host.starts_with('[') {
                    format!("[{}]", self.host)
                } else {
                    self.host.clone()
                };
                let db = utf8_percent_encode(&self.name, USERINFO);
                if self.password.is_empty() {
                    format!("{scheme}://{user}@{host}:{port}/{db}")
                } else {
                    let password = utf8_percent_encode(&self.password, USERINFO);
                    format!("{scheme}://{user}:{password}@{host}:{port}/{db}")
                }
            }
        }
    }

    /// Whether a change from `self` to `next` changes which rows the source reads (connection, query, columns):
    /// then its watermark, rows and models start over.
    pub fn reads_differently(&self, next: &SourceSpec) -> bool {
        self.engine != next.engine
            || self.host != next.host
            || self.port != next.port
            || self.name != next.name
            || self.sql != next.sql
            || self.timestamp_column != next.timestamp_column
            || self.series_columns != next.series_columns
    }
}

fn series_columns(v: &Value) -> Result<Vec<String>, WatcherError> {
    let bad = |why: String| WatcherError::invalid("series_columns", why);
    let names: Vec<String> = match v {
        Value::Null => Vec::new(),
        // A form's field: names separated by commas.
        Value::String(s) => s
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                other => Err(bad(format!("{other} is not a column name"))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(bad(format!("expected a list of column names, got {other}"))),
    };
    if names.len() > MAX_SERIES_COLUMNS {
        return Err(bad(format!(
            "{} columns, at most {MAX_SERIES_COLUMNS}",
            names.len()
        )));
    }
    if let Some(long) = names.iter().find(|n| n.len() > 255) {
        return Err(bad(format!(
            "{} bytes in a column name, at most 255",
            long.len()
        )));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
        return Err(bad(format!("{dup:?} is named twice")));
    }
    Ok(names)
}

/// What is known of a source's fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceStatus {
    /// Registered, not fetched yet.
    Pending,
    /// The last run succeeded.
    Ok,
    /// The last run failed; it is retried with backoff.
    Error,
}

impl SourceStatus {
    /// As stored and answered.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Pending => "pending",
            SourceStatus::Ok => "ok",
            SourceStatus::Error => "error",
        }
    }

    /// The status stored as `s` (unknown text reads as pending).
    pub fn parse(s: &str) -> Self {
        match s {
            "ok" => SourceStatus::Ok,
            "error" => SourceStatus::Error,
            _ => SourceStatus::Pending,
        }
    }
}

/// A registered source, as stored.
#[derive(Debug, Clone)]
pub struct Source {
    /// Its id.
    pub id: i64,
    /// Its owner.
    pub user_id: i64,
    /// What the user registered.
    pub spec: SourceSpec,
    /// How the last run went.
    pub status: SourceStatus,
    /// When the last run ended.
    pub last_run: Option<DateTime<Utc>>,
    /// The last run's error.
    pub last_error: Option<String>,
    /// Where fetching got to.
    pub watermark: Option<Watermark>,
    /// Failed runs in a row.
    pub failures: u64,
    /// When the scheduler fetches it next.
    pub next_run_at: DateTime<Utc>,
    /// Bumped whenever the rows it reads change (connection, query, columns): runs of an older revision do not
    /// store what they fetched.
    pub revision: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
}

/// What the API answers about a source: its fields but the password, plus `id`, `status`, `last_run`.
#[derive(Debug, Clone, Serialize)]
pub struct SourceView {
    /// Id.
    pub id: i64,
    /// Alias.
    pub alias: String,
    /// Engine.
    pub engine: DbEngine,
    /// Host.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// Database name.
    pub name: String,
    /// Account.
    pub user: String,
    /// Query.
    pub sql: String,
    /// Timestamp column.
    pub timestamp_column: String,
    /// Series columns.
    pub series_columns: Vec<String>,
    /// `"auto"` or a share.
    pub sensitivity: Value,
    /// Seconds between fetches.
    pub fetch_interval_seconds: u64,
    /// `pending`, `ok` or `error`.
    pub status: SourceStatus,
    /// When the last run ended.
    pub last_run: Option<DateTime<Utc>>,
    /// The last run's error.
    pub last_error: Option<String>,
    /// When the next run is due.
    pub next_run_at: DateTime<Utc>,
    /// Where fetching got to (the timestamp column's last value), if anywhere.
    pub watermark: Option<String>,
    /// Anomalies found so far.
    pub anomaly_count: u64,
}

impl Source {
    /// The API's view, with `anomaly_count`.
    pub fn view(&self, anomaly_count: u64) -> SourceView {
        let s = &self.spec;
        SourceView {
            id: self.id,
            alias: s.alias.clone(),
            engine: s.engine,
            host: s.host.clone(),
            port: s.port,
            name: s.name.clone(),
            user: s.user.clone(),
            sql: s.sql.clone(),
            timestamp_column: s.timestamp_column.clone(),
            series_columns: s.series_columns.clone(),
            sensitivity: s.sensitivity.to_json(),
            fetch_interval_seconds: s.fetch_interval_seconds,
            status: self.status,
            last_run: self.last_run,
            last_error: self.last_error.clone(),
            next_run_at: self.next_run_at,
            watermark: self.watermark.as_ref().map(ToString::to_string),
            anomaly_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMITS: SpecLimits = SpecLimits {
        default_interval: 300,
        min_interval: 10,
    };

    fn body() -> Value {
        json!({"alias": "orders", "engine": "mysql", "host": "db", "name": "shop", "user": "ro",
               "password": "p@ss:w/rd", "sql": "SELECT * FROM orders", "timestamp_column": "created_at",
               "series_columns": ["region"], "sensitivity": 0.02})
    }

    #[test]
    fn a_spec_reads_the_original_fields_and_builds_an_encoded_url() {
        let s = SourceSpec::from_json(&body(), None, LIMITS).unwrap();
        assert_eq!(s.fetch_interval_seconds, 300);
        assert_eq!(s.sensitivity, Sensitivity::Share(0.02));
        assert_eq!(s.url(), "mysql://ro:p%40ss%3Aw%2Frd@db:3306/shop");
        assert!(!format!("{s:?}").contains("p@ss"));
    }

    #[test]
    fn an_update_keeps_what_it_leaves_out_and_the_password_when_blank() {
        let s = SourceSpec::from_json(&body(), None, LIMITS).unwrap();
        let next = SourceSpec::from_json(
            &json!({"password": "", "sensitivity": "auto"}),
            Some(&s),
            LIMITS,
        )
        .unwrap();
        assert_eq!(next.password, "p@ss:w/rd");
        assert_eq!(next.sensitivity, Sensitivity::Auto);
        assert!(!s.reads_differently(&next));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (json!({"sql": "DELETE FROM orders"}), "sql"),
            (json!({"sql": "SELECT 1; DROP TABLE orders"}), "sql"),
            (json!({"sensitivity": 0.9}), "sensitivity"),
            (json!({"engine": "oracle"}), "engine"),
            (json!({"port": 70000}), "port"),
            (
                json!({"fetch_interval_seconds": 1}),
                "fetch_interval_seconds",
            ),
            (json!({"series_columns": ["created_at"]}), "series_columns"),
        ];
        for (change, field) in cases {
            let mut b = body();
            for (k, v) in change.as_object().unwrap() {
                b[k] = v.clone();
            }
            match SourceSpec::from_json(&b, None, LIMITS) {
                Err(WatcherError::Invalid { field: f, .. }) => assert_eq!(f, field, "{change}"),
                other => panic!("{change}: {other:?}"),
            }
        }
        let mut b = body();
        b.as_object_mut().unwrap().remove("alias");
        assert!(matches!(
            SourceSpec::from_json(&b, None, LIMITS),
            Err(WatcherError::Invalid { field: "alias", .. })
        ));
    }
}
