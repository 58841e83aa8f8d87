//! The HTTP endpoints: the original's `/analyze-log`, `/analyze-batch` and `/health`, plus `/ready`,
//! `/templates`, `/openapi.json` and the docs page `/docs`.

use std::sync::Arc;

use anomaly_store::Store;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use service_kit::{error_response, ready_response};

use crate::analysis::{Analysis, LogAnswer, LogRequest, MODEL_NAME};

/// The OpenAPI document.
const OPENAPI: &str = include_str!("../assets/openapi.json");
/// The docs page: renders the OpenAPI document, no outside assets.
const DOCS: &str = include_str!("../assets/docs.html");
/// Default `page_size` of `/templates`.
const DEFAULT_PAGE_SIZE: usize = 50;
/// Largest `page_size` of `/templates`.
const MAX_PAGE_SIZE: usize = 1_000;

/// What the endpoints use.
#[derive(Clone)]
pub(crate) struct ApiState {
    pub(crate) analysis: Arc<Analysis>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) max_batch_lines: usize,
}

pub(crate) fn router(state: ApiState) -> Router {
    let json_routes = Router::new()
        .route("/analyze-log", post(analyze_log))
        .route("/analyze-batch", post(analyze_batch))
        .route_layer(middleware::from_fn(service_kit::require_json));
    Router::new()
        .merge(json_routes)
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/templates", get(templates))
        .route("/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route(
            "/docs",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                        (header::CONTENT_SECURITY_POLICY, "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"),
                    ],
                    DOCS,
                )
            }),
        )
        .with_state(state)
}

async fn health(State(state): State<ApiState>) -> Json<Value> {
    let (lines, templates) = state.analysis.totals();
    Json(json!({
        "status": "ok",
        "model_loaded": true,
        "model_name": MODEL_NAME,
        "threshold": state.analysis.threshold(),
        "templates": templates,
        "lines_seen": lines,
    }))
}

async fn ready(State(state): State<ApiState>) -> Response {
    ready_response(
        state
            .store
            .ping()
            .await
            .map_err(|e| format!("database: {e}")),
    )
}

/// The body as JSON, or why not (answered with a 400).
fn parse_body(body: &Bytes) -> Result<Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))
}

fn request_of(v: Value) -> Result<LogRequest, String> {
    if !v.is_object() {
        return Err("each item must be an object with log_id and log_text".into());
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}

async fn analyze_log(State(state): State<ApiState>, body: Bytes) -> Response {
    let value = match parse_body(&body) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let request = match request_of(value) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let mut answers = state
        .analysis
        .analyze(std::slice::from_ref(&request), true)
        .await;
    match answers.pop() {
        Some(Ok(a)) => Json(a).into_response(),
        Some(Err(refusal)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"log_id": refusal.log_id, "error": refusal.error})),
        )
            .into_response(),
        None => error_response(StatusCode::INTERNAL_SERVER_ERROR, "no answer"),
    }
}

/// One item of a batch as read: an object (a request, whatever its fields hold), or anything else.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum BatchItem {
    Request(LogRequest),
    Other(serde::de::IgnoredAny),
}

/// One item of a batch's answer.
#[derive(serde::Serialize)]
#[serde(untagged)]
enum BatchAnswer {
    Answer(LogAnswer),
    Refused { log_id: Value, error: String },
}

async fn analyze_batch(State(state): State<ApiState>, body: Bytes) -> Response {
    let items: Vec<BatchItem> = match serde_json::from_slice(&body) {
        Ok(items) => items,
        Err(e) if e.is_data() => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "the body must be a JSON array of {log_id, log_text} objects",
            );
        }
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                format!("the body is not valid JSON: {e}"),
            );
        }
    };
    if items.len() > state.max_batch_lines {
        return error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} lines, over MAX_BATCH_LINES ({})",
                items.len(),
                state.max_batch_lines
            ),
        );
    }
    // An item that is not an object is refused in its place; the others are analyzed in order.
    let mut malformed = Vec::with_capacity(items.len());
    let requests: Vec<LogRequest> = items
        .into_iter()
        .map(|item| match item {
            BatchItem::Request(r) => {
                malformed.push(false);
                r
            }
            BatchItem::Other(_) => {
                malformed.push(true);
                LogRequest::default()
            }
        })
        .collect();
    let answers = state.analysis.analyze(&requests, true).await;
    let out: Vec<BatchAnswer> = answers
        .into_iter()
        .zip(malformed)
        .map(|(a, bad)| match (bad, a) {
            (true, _) => BatchAnswer::Refused {
                log_id: Value::Null,
                error: "each item must be an object with log_id and log_text".into(),
            },
            (false, Ok(a)) => BatchAnswer::Answer(a),
            (false, Err(r)) => BatchAnswer::Refused {
                log_id: r.log_id,
                error: r.error,
            },
        })
        .collect();
    Json(out).into_response()
}

#[derive(serde::Deserialize)]
struct Page {
    page: Option<usize>,
    page_size: Option<usize>,
}

async fn templates(State(state): State<ApiState>, Query(p): Query<Page>) -> Response {
    let page = p.page.unwrap_or(1).max(1);
    let size = p.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("page_size must be between 1 and {MAX_PAGE_SIZE}"),
        );
    }
    let all = state.analysis.templates();
    let total = all.len();
    let time = |t: f64| {
        DateTime::<Utc>::from_timestamp_micros((t * 1e6) as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    };
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .map(|t| {
            let severities: serde_json::Map<String, Value> = t
                .severities
                .iter()
                .map(|(k, n)| ((*k).to_string(), json!(n)))
                .collect();
            json!({
                "id": t.id,
                "template": t.template,
                "count": t.count,
                "first_seen": time(t.first_seen),
                "last_seen": time(t.last_seen),
                "severities": severities,
            })
        })
        .collect();
    Json(json!({"templates": items, "page": page, "page_size": size, "total": total}))
        .into_response()
}
