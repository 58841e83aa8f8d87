//! The HTTP endpoints: probes, the stored detections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anomaly_store::{AnomalyQuery, Store, StoredAnomaly};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use service_kit::{error_response, ready_response};

/// Default `page_size` of `/anomalies`.
pub(crate) const DEFAULT_PAGE_SIZE: u64 = 50;
/// Largest `page_size` of `/anomalies`.
pub(crate) const MAX_PAGE_SIZE: u64 = 500;

/// What the endpoints read.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) store: Arc<dyn Store>,
    /// Whether the consumer is attached to the stream (false once it stops).
    pub(crate) consuming: Arc<AtomicBool>,
}

pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/anomalies", get(list))
        .route("/anomalies/{id}", get(one))
        .with_state(state)
}

async fn ready(State(state): State<ApiState>) -> Response {
    let readiness = if !state.consuming.load(Ordering::Relaxed) {
        Err("not consuming from the stream".to_string())
    } else {
        state
            .store
            .ping()
            .await
            .map_err(|e| format!("database: {e}"))
    };
    ready_response(readiness)
}

/// One detection as the API shows it.
fn result(a: &StoredAnomaly) -> Value {
    let x = &a.anomaly;
    json!({
        "id": a.id,
        "detected_at": x.created_at.to_rfc3339(),
        "series": x.key,
        "timestamp": x.context.get("timestamp").cloned().unwrap_or(Value::Null),
        "value": x.context.get("value").cloned().unwrap_or(Value::Null),
        "method": x.detector,
        "score": x.score,
        "threshold": x.threshold,
        "context": x.context,
        "config": x.config,
        "rationale": x.rationale,
        "explanation": x.explanation,
    })
}

fn bad_request(message: impl Into<String>) -> Response {
    error_response(StatusCode::BAD_REQUEST, message)
}

fn parse_time(name: &str, v: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("`{name}`: `{v}` is not an RFC 3339 time ({e})"))
}

fn parse_number(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, String> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "`{name}`: `{v}` is not a whole number between 1 and {max}"
            )),
        },
    }
}

const FILTERS: [&str; 4] = ["series", "method", "since", "until"];

/// `GET /anomalies?series=&method=&since=&until=&page=&page_size=`: newest first, as
/// `{"count", "next", "previous", "results"}`. `since`/`until` bound the detection time (`detected_at`,
/// `[since, until)`).
async fn list(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    for name in params.keys() {
        if !FILTERS.contains(&name.as_str()) && name != "page" && name != "page_size" {
            return bad_request(format!(
                "unknown parameter `{name}`: use series, method, since, until, page, page_size"
            ));
        }
    }
    let page = match parse_number(&params, "page", 1, u64::from(u32::MAX)) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let page_size = match parse_number(&params, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE) {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let mut query = AnomalyQuery::new().limit(page_size);
    query.key = params.get("series").cloned();
    query.detector = params.get("method").cloned();
    for (name, slot) in [("since", &mut query.since), ("until", &mut query.until)] {
        if let Some(v) = params.get(name) {
            match parse_time(name, v) {
                Ok(t) => *slot = Some(t),
                Err(e) => return bad_request(e),
            }
        }
    }
    let skip = (page - 1).saturating_mul(page_size);
    let query = query.offset(skip);
    let (count, batch) = match tokio::try_join!(
        state.store.count_anomalies(&query),
        state.store.query_anomalies(&query)
    ) {
        Ok(v) => v,
        Err(e) => {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"));
        }
    };
    let results: Vec<Value> = batch.items.iter().map(result).collect();
    let link = |p: u64| {
        let mut pairs: Vec<(&str, String)> = FILTERS
            .iter()
            .filter_map(|f| params.get(*f).map(|v| (*f, v.clone())))
            .collect();
        pairs.push(("page", p.to_string()));
        pairs.push(("page_size", page_size.to_string()));
        format!(
            "/anomalies?{}",
            serde_urlencoded::to_string(pairs).unwrap_or_default()
        )
    };
    let next = (skip + page_size < count).then(|| link(page + 1));
    let previous = (page > 1).then(|| link(page - 1));
    Json(json!({"count": count, "next": next, "previous": previous, "results": results}))
        .into_response()
}

/// `GET /anomalies/{id}`.
async fn one(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return bad_request(format!("`{id}` is not a detection id (a whole number)"));
    };
    match state.store.anomaly(id).await {
        Ok(Some(a)) => Json(result(&a)).into_response(),
        Ok(None) => error_response(StatusCode::NOT_FOUND, format!("no detection {id}")),
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")),
    }
}
