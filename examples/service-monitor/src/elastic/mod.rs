//! A client of the Elasticsearch (and OpenSearch) REST API, for what the monitor does: read a time range of
//! events with a point in time and `search_after`, write anomalies with `_bulk`, create an index.
//!
//! - **Reading** ([`Elastic::scan`]): a point in time is opened on the index pattern, pages of `ES_PAGE_SIZE`
//!   are read in `(timestamp, tiebreaker)` order with `search_after` (the tiebreaker is `_shard_doc` on
//!   Elasticsearch, `_id` on OpenSearch, which has no `_shard_doc` before 3.3), the newest `pit_id` is sent with
//!   each next page, and the point in time is closed at the end, error or not. One that expired between two pages
//!   (`search_context_missing_exception`) is opened again and the read goes on from the last timestamp delivered,
//!   skipping as many events at it as were delivered (a new point in time has other tiebreaker values). This is
//!   Elastic's recommended deep
//!   pagination: a consistent view, no `from + size` limit, no scroll context left behind.
//! - **Writing** ([`Elastic::bulk_index`]): NDJSON `index` actions with the caller's document ids, so writing the
//!   same anomaly twice replaces it; items refused with 429 are sent again, other refused items are reported.
//! - **Errors and retries**: 429, 502, 503, 504, transient circuit breakers and network errors are retried up to
//!   `ES_ATTEMPTS` times, `ES_FIRST_RETRY_MS` apart and doubling, or as `Retry-After` asks (at most 30 s); any
//!   other refusal is returned at once with Elastic's error `type` and `reason`.
//! - **Authentication**: `ES_API_KEY` (the encoded key, or `id:key`) as `Authorization: ApiKey …`, or
//!   `ES_USERNAME`/`ES_PASSWORD` as basic authentication; `ES_CA_CERT` adds a PEM certificate authority for a
//!   cluster with its own.

mod wire;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};

pub use wire::Refusal;

/// Longest pause between two attempts, whatever `Retry-After` asks.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// How long a point in time is kept between two pages.
const KEEP_ALIVE: &str = "2m";

/// How to reach the cluster.
#[derive(Clone)]
pub struct ElasticSettings {
    /// `ES_URL`, e.g. `https://es.example.com:9200`.
    pub url: String,
    /// `ES_API_KEY`: the encoded API key Elasticsearch gives (base64 of `id:key`), or `id:key` itself.
    pub api_key: Option<String>,
    /// `ES_USERNAME`, with `ES_PASSWORD`.
    pub username: Option<String>,
    /// `ES_PASSWORD`.
    pub password: Option<String>,
    /// `ES_CA_CERT`: a PEM file with the certificate authority of the cluster's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// `ES_TIMEOUT_SECONDS` (default 30): longest wait for one answer.
    pub timeout: Duration,
    /// `ES_ATTEMPTS` (default 5): attempts per request when the cluster is busy or unreachable.
    pub attempts: u32,
    /// `ES_PAGE_SIZE` (default 5,000, at most 10,000): events per page.
    pub page_size: usize,
    /// `ES_FIRST_RETRY_MS` (default 500): the pause before the first retry, doubling after.
    pub first_retry: Duration,
}

impl std::fmt::Debug for ElasticSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticSettings")
            .field("url", &anomaly_store::redact_url(&self.url))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("username", &self.username)
            .field("ca_cert", &self.ca_cert)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl ElasticSettings {
    /// Settings for `url` with the defaults above and no credentials.
    pub fn new(url: impl Into<String>) -> Self {
        ElasticSettings {
            url: url.into(),
            api_key: None,
            username: None,
            password: None,
            ca_cert: None,
            timeout: Duration::from_secs(30),
            attempts: 5,
            page_size: 5_000,
            first_retry: Duration::from_millis(500),
        }
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
            Ok(u) => Err(format!("`{}` URLs are not supported", u.scheme())),
            Err(e) => Err(format!("not a URL: {e}")),
        }
    }
}

/// Which API the cluster speaks, from its `GET /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Elasticsearch: `POST /<index>/_pit`, `_shard_doc` tiebreaker.
    Elasticsearch,
    /// OpenSearch: `POST /<index>/_search/point_in_time`, `_id` tiebreaker.
    OpenSearch,
}

/// What can go wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElasticError {
    /// The settings cannot make a client (a CA file that cannot be read, a header that cannot be sent).
    #[error("settings: {0}")]
    Settings(String),
    /// The cluster could not be reached, or did not answer in time, through every attempt.
    #[error("{method} {path}: {reason}")]
    Unreachable {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// The last failure.
        reason: String,
    },
    /// The cluster refused the request (after every attempt, when the refusal was one that passes).
    #[error("{method} {path}: {refusal}")]
    Refused {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// What the cluster answered.
        refusal: Box<Refusal>,
    },
    /// The answer is not what the API documents.
    #[error("{method} {path}: unexpected answer: {reason}")]
    Unexpected {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// What a `_bulk` write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BulkReport {
    /// Documents written (created or replaced).
    pub written: u64,
    /// Documents refused for good: their id and the refusal.
    pub refused: Vec<(String, Refusal)>,
}

/// A connection to one cluster; cheap to clone (the clones share it).
#[derive(Debug, Clone)]
pub struct Elastic(std::sync::Arc<Connection>);

#[derive(Debug)]
struct Connection {
    client: reqwest::Client,
    base: reqwest::Url,
    authorization: Option<HeaderValue>,
    flavor: Flavor,
    settings: ElasticSettings,
}

/// A request body.
enum Body<'a> {
    None,
    Json(&'a Value),
    NdJson(&'a str),
}

impl Elastic {
    /// Builds the client and asks the cluster what it is (`GET /`), which also checks the credentials.
    ///
    /// # Errors
    /// [`ElasticError::Settings`] for an unreadable CA file; [`ElasticError::Unreachable`] or
    /// [`ElasticError::Refused`] (a 401 names missing or wrong credentials) from `GET /`.
    pub async fn connect(settings: ElasticSettings) -> Result<Elastic, ElasticError> {
        settings.check().map_err(ElasticError::Settings)?;
        let mut base = reqwest::Url::parse(&settings.url)
            .map_err(|e| ElasticError::Settings(e.to_string()))?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)));
        if let Some(path) = &settings.ca_cert {
            let pem = std::fs::read(path).map_err(|e| {
                ElasticError::Settings(format!("ES_CA_CERT {}: {e}", path.display()))
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ElasticError::Settings(format!("ES_CA_CERT {}: {e}", path.display()))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let client = builder
            .build()
            .map_err(|e| ElasticError::Settings(format!("HTTP client: {e}")))?;
        let authorization = authorization(&settings)?;
        let mut connection = Connection {
            client,
            base,
            authorization,
            flavor: Flavor::Elasticsearch,
            settings,
        };
        // `GET /` needs a cluster privilege (`monitor`) that a key limited to the indices lacks: a 403 is taken
        // for Elasticsearch, the credentials having been accepted.
        let root = match connection.send(Method::GET, "", Body::None).await {
            Err(ElasticError::Refused { refusal, .. }) if refusal.status == 403 => {
                tracing::warn!(
                    "no `monitor` privilege to ask the cluster what it is: taking it for Elasticsearch"
                );
                Value::Null
            }
            other => other?,
        };
        if root["version"]["distribution"] == "opensearch" {
            connection.flavor = Flavor::OpenSearch;
        }
        let elastic = Elastic(std::sync::Arc::new(connection));
        tracing::info!(
            flavor = ?elastic.flavor(),
            version = root["version"]["number"].as_str().unwrap_or("?"),
            "connected to the cluster"
        );
        Ok(elastic)
    }

    /// The API the cluster speaks.
    pub fn flavor(&self) -> Flavor {
        self.0.flavor
    }

    /// Reads every event of `index` (a pattern or list) whose `timestamp_field` lies in `[from, until)` (epoch
    /// milliseconds), in time order, handing each `_source` to `on_event`; returns how many were read. A point in
    /// time keeps the view consistent while the pages are read; it is closed at the end, whatever happens.
    ///
    /// # Errors
    /// As the cluster answers (an index pattern that matches nothing reads nothing); what `on_event` returns.
    pub async fn scan<E: From<ElasticError>>(
        &self,
        index: &str,
        timestamp_field: &str,
        (from, until): (i64, i64),
        mut on_event: impl FnMut(Value) -> Result<(), E>,
    ) -> Result<u64, E> {
        let mut pit = self.open_pit(index).await?;
        let result = async {
            let mut search_after: Option<Value> = None;
            let mut read = 0u64;
            let mut reopened = 0;
            // The newest timestamp delivered and how many events at it: a new point in time has other tiebreaker
            // values, so a read resumed in one starts at that timestamp and skips those already delivered.
            let mut last: Option<(i64, u64)> = None;
            let mut skip = 0u64;
            let mut from = from;
            loop {
                let tiebreaker = match self.0.flavor {
                    Flavor::Elasticsearch => json!({"_shard_doc": "asc"}),
                    Flavor::OpenSearch => json!({"_id": "asc"}),
                };
                let mut body = json!({
                    "size": self.0.settings.page_size,
                    "query": {"range": {timestamp_field: {"gte": from, "lt": until, "format": "epoch_millis"}}},
                    "pit": {"id": pit, "keep_alive": KEEP_ALIVE},
                    "sort": [{timestamp_field: {"order": "asc"}}, tiebreaker],
                    "track_total_hits": false,
                });
                if let Some(after) = &search_after {
                    body["search_after"] = after.clone();
                }
                let answer = match self.0.send(Method::POST, "_search", Body::Json(&body)).await {
                    Err(ElasticError::Refused { refusal, .. })
                        if refusal.cause == "search_context_missing_exception" && reopened < self.0.settings.attempts =>
                    {
                        // The point in time expired between two pages: a new one, and on from the last sort values.
                        reopened += 1;
                        tracing::warn!("the point in time expired; reading on in a new one");
                        pit = self.open_pit(index).await?;
                        if let Some((t, n)) = last {
                            from = t;
                            skip = n;
                        }
                        search_after = None;
                        continue;
                    }
                    other => other?,
                };
                let page = wire::page(&answer).map_err(|reason| self.0.unexpected("POST", "_search", reason))?;
                if let Some(id) = page.pit_id {
                    pit = id;
                }
                let n = page.hits.len();
                for (source, sort) in page.hits {
                    let t = sort.get(0).and_then(Value::as_i64);
                    search_after = Some(sort);
                    if skip > 0 && t.is_some() && t == last.map(|(t, _)| t) {
                        skip -= 1;
                        continue;
                    }
                    skip = 0;
                    last = match (last, t) {
                        (Some((lt, k)), Some(t)) if lt == t => Some((t, k + 1)),
                        (_, Some(t)) => Some((t, 1)),
                        (l, None) => l,
                    };
                    read += 1;
                    on_event(source)?;
                }
                if n < self.0.settings.page_size {
                    return Ok(read);
                }
            }
        }
        .await;
        if let Err(e) = self.close_pit(&pit).await {
            tracing::warn!(error = %e, "could not close the point in time (it expires by itself)");
        }
        result
    }

    async fn open_pit(&self, index: &str) -> Result<String, ElasticError> {
        let index = encode_path(index);
        let (path, key) = match self.0.flavor {
            Flavor::Elasticsearch => (format!("{index}/_pit?keep_alive={KEEP_ALIVE}"), "id"),
            Flavor::OpenSearch => (
                format!("{index}/_search/point_in_time?keep_alive={KEEP_ALIVE}"),
                "pit_id",
            ),
        };
        let answer = self.0.send(Method::POST, &path, Body::None).await?;
        answer[key].as_str().map(str::to_string).ok_or_else(|| {
            self.0
                .unexpected("POST", &path, format!("no `{key}` in {answer}"))
        })
    }

    async fn close_pit(&self, pit: &str) -> Result<(), ElasticError> {
        match self.0.flavor {
            Flavor::Elasticsearch => {
                self.0
                    .send(Method::DELETE, "_pit", Body::Json(&json!({"id": pit})))
                    .await?
            }
            Flavor::OpenSearch => {
                self.0
                    .send(
                        Method::DELETE,
                        "_search/point_in_time",
                        Body::Json(&json!({"pit_id": [pit]})),
                    )
                    .await?
            }
        };
        Ok(())
    }

    /// Writes `docs` (id, document) into `index` with `_bulk` `index` actions: a document with an id already there
    /// is replaced, so writing the same documents again adds nothing. Items refused with 429 are sent again (up to
    /// `ES_ATTEMPTS` rounds); the others refused are returned in the report.
    ///
    /// # Errors
    /// When the request as a whole is refused or the cluster cannot be reached.
    pub async fn bulk_index(
        &self,
        index: &str,
        docs: &[(String, Value)],
    ) -> Result<BulkReport, ElasticError> {
        let mut report = BulkReport::default();
        let mut pending: Vec<&(String, Value)> = docs.iter().collect();
        let mut round = 0;
        while !pending.is_empty() {
            round += 1;
            let mut body = String::new();
            for (id, doc) in &pending {
                body.push_str(&json!({"index": {"_index": index, "_id": id}}).to_string());
                body.push('\n');
                body.push_str(&doc.to_string());
                body.push('\n');
            }
            let answer = self
                .0
                .send(Method::POST, "_bulk", Body::NdJson(&body))
                .await?;
            let items = wire::bulk_items(&answer, pending.len())
                .map_err(|reason| self.0.unexpected("POST", "_bulk", reason))?;
            let mut again = Vec::new();
            for (doc, item) in pending.into_iter().zip(items) {
                match item {
                    Ok(()) => report.written += 1,
                    Err(r) if r.status == 429 && round < self.0.settings.attempts => {
                        again.push(doc)
                    }
                    Err(r) => report.refused.push((doc.0.clone(), r)),
                }
            }
            if !again.is_empty() {
                tokio::time::sleep(self.0.pause(round, None)).await;
            }
            pending = again;
        }
        Ok(report)
    }

    /// Creates `index` with `mappings` unless it exists.
    ///
    /// # Errors
    /// When the cluster refuses for another reason than the index existing.
    pub async fn ensure_index(&self, index: &str, mappings: &Value) -> Result<(), ElasticError> {
        let path = encode_path(index);
        match self
            .0
            .send(
                Method::PUT,
                &path,
                Body::Json(&json!({"mappings": mappings})),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(ElasticError::Refused { refusal, .. })
                if refusal.kind == "resource_already_exists_exception" =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Connection {
    /// Sends one request, retrying what the API documents as passing; the answer's JSON.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Body<'_>,
    ) -> Result<Value, ElasticError> {
        let url = self
            .base
            .join(path)
            .map_err(|e| ElasticError::Settings(format!("{path}: {e}")))?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.request(method.clone(), url.clone());
            if let Some(auth) = &self.authorization {
                request = request.header(AUTHORIZATION, auth.clone());
            }
            request = match &body {
                Body::None => request,
                Body::Json(v) => request.json(v),
                Body::NdJson(s) => request
                    .header(CONTENT_TYPE, "application/x-ndjson")
                    .body(s.to_string()),
            };
            let failure = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let text = response.text().await.unwrap_or_default();
                    if status.is_success() {
                        return serde_json::from_str(&text).map_err(|e| {
                            self.unexpected(method.as_str(), path, format!("not JSON: {e}"))
                        });
                    }
                    let refusal = wire::refusal(status.as_u16(), &text);
                    if !refusal.retryable || attempt >= self.settings.attempts {
                        return Err(ElasticError::Refused {
                            method: method.to_string(),
                            path: path.to_string(),
                            refusal: Box::new(refusal),
                        });
                    }
                    tracing::warn!(%method, path, attempt, %refusal, "the cluster is busy; trying again");
                    retry_after
                }
                Err(e) => {
                    let reason = if e.is_timeout() {
                        format!("no answer within {:?}", self.settings.timeout)
                    } else {
                        error_chain(&e)
                    };
                    if attempt >= self.settings.attempts {
                        return Err(ElasticError::Unreachable {
                            method: method.to_string(),
                            path: path.to_string(),
                            reason,
                        });
                    }
                    tracing::warn!(%method, path, attempt, reason, "cannot reach the cluster; trying again");
                    None
                }
            };
            tokio::time::sleep(self.pause(attempt, failure)).await;
        }
    }

    /// The pause after failed attempt `attempt` (1-based): doubling from `first_retry`, or what the cluster
    /// asked, at most 30 s.
    fn pause(&self, attempt: u32, asked: Option<Duration>) -> Duration {
        asked
            .unwrap_or_else(|| {
                self.settings.first_retry * 2u32.saturating_pow(attempt.saturating_sub(1))
            })
            .min(MAX_RETRY_PAUSE)
    }

    fn unexpected(&self, method: &str, path: &str, reason: impl Into<String>) -> ElasticError {
        ElasticError::Unexpected {
            method: method.into(),
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// The `Authorization` header the settings ask for.
fn authorization(settings: &ElasticSettings) -> Result<Option<HeaderValue>, ElasticError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let value = match (&settings.api_key, &settings.username, &settings.password) {
        (Some(key), _, _) => {
            // The encoded form is what Kibana and the create-API-key call give; `id:key` is encoded here.
            let encoded = if key.contains(':') {
                b64.encode(key)
            } else {
                key.clone()
            };
            format!("ApiKey {encoded}")
        }
        (None, Some(user), Some(password)) => {
            format!("Basic {}", b64.encode(format!("{user}:{password}")))
        }
        _ => return Ok(None),
    };
    let mut header = HeaderValue::from_str(&value).map_err(|_| {
        ElasticError::Settings("credentials hold characters a header cannot carry".into())
    })?;
    header.set_sensitive(true);
    Ok(Some(header))
}

/// An index pattern or list as a path segment: commas and `*` stay (the API reads them), the rest is escaped.
fn encode_path(index: &str) -> String {
    index
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' | '*' | ',' => c.to_string(),
            other => {
                let mut buf = [0u8; 4];
                other
                    .encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_patterns_and_escape_the_rest() {
        assert_eq!(encode_path("api-logs-*,other"), "api-logs-*,other");
        assert_eq!(encode_path("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn api_keys_are_sent_encoded() {
        let mut s = ElasticSettings::new("http://127.0.0.1:9200");
        s.api_key = Some("VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw".into());
        let h = authorization(&s).unwrap().unwrap();
        assert_eq!(
            h.to_str().unwrap(),
            "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        );
        s.api_key = Some("VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==".into());
        assert_eq!(
            authorization(&s).unwrap().unwrap().to_str().unwrap(),
            "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw=="
        );
        s.api_key = None;
        s.username = Some("elastic".into());
        s.password = Some("changeme".into());
        assert_eq!(
            authorization(&s).unwrap().unwrap().to_str().unwrap(),
            "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
        );
    }
}
