//! The domain types every store reads and writes.
//!
//! Timestamps are UTC with microsecond precision: stores truncate finer values on write, so what is read back
//! equals what was written on every backend.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Truncates a timestamp to the microsecond, the precision every backend keeps.
pub fn to_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// One record of a key's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The key (a query, a data source, a series).
    pub key: String,
    /// The record itself.
    pub payload: Value,
    /// When it was seen.
    pub timestamp: DateTime<Utc>,
}

impl HistoryRecord {
    /// A record seen now.
    pub fn now(key: impl Into<String>, payload: Value) -> Self {
        HistoryRecord {
            key: key.into(),
            payload,
            timestamp: to_micros(Utc::now()),
        }
    }
}

/// One detection, with everything needed to answer "why was this flagged, by which model, on what data".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// The key the record belongs to.
    pub key: String,
    /// The detector that scored it (`isolation_forest`, `ema`, …).
    pub detector: String,
    /// Its score (higher = more anomalous).
    pub score: f64,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// The decision: `true` when flagged.
    pub is_anomaly: bool,
    /// The human-readable rationale.
    pub rationale: String,
    /// The structured explanation.
    pub explanation: Value,
    /// Context: the query, role, user, buffer, the raw record.
    pub context: Value,
    /// The detector's configuration at the time.
    pub config: Value,
    /// The model version that scored it, when a versioned model did.
    pub model_version: Option<u64>,
    /// When it was detected.
    pub created_at: DateTime<Utc>,
}

impl Anomaly {
    /// A flagged detection (`is_anomaly`) made now, with an empty rationale and `null` explanation, context and
    /// config, to be filled in by struct update.
    ///
    /// ```
    /// use anomaly_store::Anomaly;
    ///
    /// let a = Anomaly {
    ///     rationale: "`amount` far above the typical range".into(),
    ///     ..Anomaly::flagged("orders", "isolation_forest", 0.82, 0.6)
    /// };
    /// assert!(a.is_anomaly);
    /// ```
    pub fn flagged(
        key: impl Into<String>,
        detector: impl Into<String>,
        score: f64,
        threshold: f64,
    ) -> Self {
        Anomaly {
            key: key.into(),
            detector: detector.into(),
            score,
            threshold,
            is_anomaly: true,
            rationale: String::new(),
            explanation: Value::Null,
            context: Value::Null,
            config: Value::Null,
            model_version: None,
            created_at: to_micros(Utc::now()),
        }
    }
}

/// A stored [`Anomaly`] with its id (increasing in insertion order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnomaly {
    /// Its id.
    pub id: i64,
    /// The detection.
    #[serde(flatten)]
    pub anomaly: Anomaly,
}

/// Filters and page size of an anomaly query. Results come newest first (`created_at`, then id, descending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyQuery {
    /// Only this key.
    pub key: Option<String>,
    /// Only this detector.
    pub detector: Option<String>,
    /// Only detections at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only detections strictly before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only scores at or above this.
    pub min_score: Option<f64>,
    /// Page size (default 100; 0 is treated as 1).
    pub limit: u64,
    /// Where the previous page ended ([`AnomalyPage::next`]); `None` for the first page.
    pub after: Option<AnomalyCursor>,
    /// Matching detections to skip before the page (after the cursor, if any): numbered pages for an API that
    /// shows them. The database still reads the skipped rows, so prefer the cursor for deep paging.
    #[serde(default)]
    pub offset: u64,
}

impl Default for AnomalyQuery {
    fn default() -> Self {
        AnomalyQuery {
            key: None,
            detector: None,
            since: None,
            until: None,
            min_score: None,
            limit: 100,
            after: None,
            offset: 0,
        }
    }
}

impl AnomalyQuery {
    /// Every detection, 100 per page.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only this key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Only this detector.
    pub fn detector(mut self, detector: impl Into<String>) -> Self {
        self.detector = Some(detector.into());
        self
    }

    /// Only detections in `[since, until)`.
    pub fn between(mut self, since: DateTime<Utc>, until: DateTime<Utc>) -> Self {
        self.since = Some(since);
        self.until = Some(until);
        self
    }

    /// Only scores at or above `score`.
    pub fn min_score(mut self, score: f64) -> Self {
        self.min_score = Some(score);
        self
    }

    /// Page size.
    pub fn limit(mut self, limit: u64) -> Self {
        self.limit = limit;
        self
    }

    /// The page after `cursor`.
    pub fn after(mut self, cursor: Option<AnomalyCursor>) -> Self {
        self.after = cursor;
        self
    }

    /// Skips `offset` matching detections before the page.
    pub fn offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }

    pub(crate) fn page_size(&self) -> u64 {
        self.limit.max(1)
    }

    /// Whether `a` passes the filters and comes after the cursor (the in-memory store's reference semantics).
    pub(crate) fn matches(&self, a: &StoredAnomaly) -> bool {
        let x = &a.anomaly;
        self.key.as_ref().is_none_or(|k| *k == x.key)
            && self.detector.as_ref().is_none_or(|d| *d == x.detector)
            && self.since.is_none_or(|s| x.created_at >= to_micros(s))
            && self.until.is_none_or(|u| x.created_at < to_micros(u))
            && self.min_score.is_none_or(|m| x.score >= m)
            && self
                .after
                .as_ref()
                .is_none_or(|c| (x.created_at, a.id) < (c.created_at, c.id))
    }
}

/// Where a page of anomalies ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyCursor {
    /// `created_at` of the last item.
    pub created_at: DateTime<Utc>,
    /// Id of the last item.
    pub id: i64,
}

/// One page of anomalies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyPage {
    /// The items, newest first.
    pub items: Vec<StoredAnomaly>,
    /// The cursor of the next page, `None` when this is the last.
    pub next: Option<AnomalyCursor>,
}

impl AnomalyPage {
    pub(crate) fn from_items(mut items: Vec<StoredAnomaly>, limit: u64) -> Self {
        // Stores fetch one item more than the page size to know whether a next page exists.
        let more = items.len() as u64 > limit;
        items.truncate(limit as usize);
        let next = if more {
            items.last().map(|a| AnomalyCursor {
                created_at: a.anomaly.created_at,
                id: a.id,
            })
        } else {
            None
        };
        AnomalyPage { items, next }
    }
}

/// Model versions are the engine's own types: one name per concept from the engine to the database.
pub use anomaly_core::engine::{ModelMetadata, ModelVersion, SavedModel};

/// How long each kind of record is kept; what [`Store::cleanup`](crate::Store::cleanup) enforces.
///
/// A record is removed when it is strictly older than its limit: one stamped exactly `now - limit` is kept. The
/// latest version of each key's model is never removed, however old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// History records, by their timestamp (default 14 days).
    pub history: std::time::Duration,
    /// Detections, by `created_at` (default 90 days).
    pub anomalies: std::time::Duration,
    /// Model versions other than each key's latest, by `saved_at` (default 360 days).
    pub models: std::time::Duration,
}

impl Default for RetentionPolicy {
    /// History 14 days, anomalies 90 days, models 360 days.
    fn default() -> Self {
        const DAY: u64 = 24 * 60 * 60;
        RetentionPolicy {
            history: std::time::Duration::from_secs(14 * DAY),
            anomalies: std::time::Duration::from_secs(90 * DAY),
            models: std::time::Duration::from_secs(360 * DAY),
        }
    }
}

impl RetentionPolicy {
    /// The cut-offs at `now` for history, anomalies and models: records strictly before them go. A limit too large
    /// to subtract keeps everything.
    pub(crate) fn cutoffs(&self, now: DateTime<Utc>) -> [DateTime<Utc>; 3] {
        let cut = |limit: std::time::Duration| {
            chrono::TimeDelta::from_std(limit)
                .ok()
                .and_then(|d| now.checked_sub_signed(d))
                .map_or(DateTime::<Utc>::MIN_UTC, to_micros)
        };
        [cut(self.history), cut(self.anomalies), cut(self.models)]
    }
}

/// What one [`Store::cleanup`](crate::Store::cleanup) removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// History records removed.
    pub history_removed: u64,
    /// Detections removed.
    pub anomalies_removed: u64,
    /// Model versions removed.
    pub models_removed: u64,
}

/// A GraphQL query shape and what was seen of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryPattern {
    /// Hash of the normalised query text (the pattern's identity).
    pub query_hash: String,
    /// The query text.
    pub text: String,
    /// Its operation name.
    pub operation_name: Option<String>,
    /// Variables of the latest call (or their shape).
    pub variables: Value,
    /// Role of the latest caller.
    pub role: Option<String>,
    /// Times it was seen.
    pub count: u64,
    /// Times it was flagged.
    pub anomaly_count: u64,
    /// Whether the pattern itself is considered anomalous.
    pub anomalous: bool,
    /// First seen.
    pub first_seen: DateTime<Utc>,
    /// Last seen.
    pub last_seen: DateTime<Utc>,
}

/// Whether the watcher polls a data source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceStatus {
    /// Polled.
    Active,
    /// Not polled, by request.
    Paused,
    /// The last poll failed (see `last_error`); still polled.
    Failing,
}

impl SourceStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SourceStatus::Active => "active",
            SourceStatus::Paused => "paused",
            SourceStatus::Failing => "failing",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(SourceStatus::Active),
            "paused" => Some(SourceStatus::Paused),
            "failing" => Some(SourceStatus::Failing),
            _ => None,
        }
    }
}

/// A SQL data source the watcher polls: a `SELECT`, its timestamp column and series columns, and where it got to.
///
/// The connection URL may hold a password: `Debug` and [`Store::data_sources`](crate::Store::data_sources) show it
/// with the password replaced by `***` ([`redact_url`]); only [`Store::data_source`](crate::Store::data_source)
/// returns it whole, for the poller.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSource {
    /// Its unique name.
    pub name: String,
    /// The connection URL (use a read-only account).
    pub url: String,
    /// The `SELECT` query.
    pub query: String,
    /// The column that orders rows in time.
    pub timestamp_column: String,
    /// Columns whose values name a series (one model per series).
    pub series_columns: Vec<String>,
    /// Seconds between polls.
    pub poll_interval_seconds: u64,
    /// Contamination of its models; `None` for automatic.
    pub sensitivity: Option<f64>,
    /// Where the last poll ended (whatever the poller needs: a timestamp, ids seen at it); `Null` before the first.
    pub watermark: Value,
    /// Whether it is polled.
    pub status: SourceStatus,
    /// The last poll's error, if it failed.
    pub last_error: Option<String>,
}

impl std::fmt::Debug for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataSource")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("query", &self.query)
            .field("timestamp_column", &self.timestamp_column)
            .field("series_columns", &self.series_columns)
            .field("poll_interval_seconds", &self.poll_interval_seconds)
            .field("sensitivity", &self.sensitivity)
            .field("watermark", &self.watermark)
            .field("status", &self.status)
            .field("last_error", &self.last_error)
            .finish()
    }
}

impl DataSource {
    /// The same source with its URL's password replaced by `***`.
    pub fn redacted(&self) -> DataSource {
        DataSource {
            url: redact_url(&self.url),
            ..self.clone()
        }
    }
}

/// A URL with the password of its user part replaced by `***` (`postgres://app:***@db/x`), and the values of
/// `password=` query parameters too; other URLs unchanged.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            let at = rest + at;
            if let Some(colon) = out[rest..at].find(':') {
                out.replace_range(rest + colon + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let redacted: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{head}{}", redacted.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(
            redact_url("mysql://root@127.0.0.1/test"),
            "mysql://root@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("postgres://db/x?user=a&password=p&sslmode=require"),
            "postgres://db/x?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("sqlite://data.db?mode=ro"),
            "sqlite://data.db?mode=ro"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
