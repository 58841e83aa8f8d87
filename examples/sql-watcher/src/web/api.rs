//! The REST API, as the original's: `/detect/api/datasources/` (list, create), `…/{id}/` (read, change,
//! delete), `…/{id}/fetch/` (run now), `…/{id}/rows/`, `…/{id}/runs/`, `/detect/api/anomalies/`, and
//! `/detect/api/tokens/` to make an API token from a signed-in session.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use super::auth::ApiUser;
use super::{AppState, PageQuery, api_error, not_found, paginated};
use crate::WatcherError;
use crate::db::AnomalyFilter;
use crate::watcher::Trigger;

type St = State<Arc<AppState>>;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/detect/api/datasources/", get(list).post(create))
        .route(
            "/detect/api/datasources/{id}/",
            get(read).put(change).patch(change).delete(remove),
        )
        .route("/detect/api/datasources/{id}/fetch/", post(fetch))
        .route("/detect/api/datasources/{id}/rows/", get(rows))
        .route("/detect/api/datasources/{id}/runs/", get(runs))
        .route("/detect/api/anomalies/", get(anomalies))
        .route("/detect/api/tokens/", get(tokens).post(new_token))
        .route(
            "/detect/api/tokens/{id}/",
            axum::routing::delete(revoke_token),
        )
}

fn pairs(raw: &Option<String>) -> Vec<(String, String)> {
    raw.as_deref()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

fn page_query(pairs: &[(String, String)]) -> PageQuery {
    let text = serde_urlencoded::to_string(pairs).unwrap_or_default();
    serde_urlencoded::from_str(&text).unwrap_or_default()
}

fn get_param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn body(bytes: &axum::body::Bytes, headers: &HeaderMap) -> Result<Value, Box<Response>> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    let refuse = |status: StatusCode, detail: String| {
        Box::new((status, Json(json!({ "detail": detail }))).into_response())
    };
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported media type \"{content_type}\" in request."),
        ));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| refuse(StatusCode::BAD_REQUEST, format!("JSON parse error - {e}")))
}

async fn list(
    State(s): St,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = pairs(&raw);
    let page = match page_query(&q).page() {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let db = s.watcher.db();
    let (count, sources) = match db.sources_of(user.id, page.offset(), page.size).await {
        Ok(x) => x,
        Err(e) => return api_error(&e),
    };
    let ids: Vec<i64> = sources.iter().map(|s| s.id).collect();
    let counts = match db.anomaly_counts(&ids).await {
        Ok(c) => c,
        Err(e) => return api_error(&e),
    };
    let results = sources
        .iter()
        .map(|src| json!(src.view(counts.get(&src.id).copied().unwrap_or(0))))
        .collect();
    paginated(&headers, uri.path(), &q, page, count, results)
}

async fn create(
    State(s): St,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let body = match body(&bytes, &headers) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match s.watcher.register(&user, &body).await {
        Ok(src) => (StatusCode::CREATED, Json(json!(src.view(0)))).into_response(),
        Err(e) => api_error(&e),
    }
}

async fn read(State(s): St, ApiUser(user): ApiUser, Path(id): Path<i64>) -> Response {
    let db = s.watcher.db();
    match db.user_source(user.id, id).await {
        Ok(Some(src)) => {
            let n = db
                .anomaly_counts(&[id])
                .await
                .map(|c| c.get(&id).copied().unwrap_or(0));
            match n {
                Ok(n) => Json(json!(src.view(n))).into_response(),
                Err(e) => api_error(&e),
            }
        }
        Ok(None) => not_found(),
        Err(e) => api_error(&e),
    }
}

async fn change(
    State(s): St,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
    headers: HeaderMap,
    bytes: axum::body::Bytes,
) -> Response {
    let body = match body(&bytes, &headers) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    match s.watcher.update(&user, id, &body).await {
        Ok(Some(src)) => read(State(s), ApiUser(user), Path(src.id)).await,
        Ok(None) => not_found(),
        Err(e) => api_error(&e),
    }
}

async fn remove(State(s): St, ApiUser(user): ApiUser, Path(id): Path<i64>) -> Response {
    match s.watcher.delete(&user, id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => not_found(),
        Err(e) => api_error(&e),
    }
}

async fn fetch(State(s): St, ApiUser(user): ApiUser, Path(id): Path<i64>) -> Response {
    match s.watcher.db().user_source(user.id, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(e) => return api_error(&e),
    }
    match s.watcher.run_detached(id, Trigger::Request).await {
        Ok(Some(run)) => {
            let status = if run.error.is_none() { "ok" } else { "error" };
            let mut v = json!(run);
            v["status"] = json!(status);
            Json(v).into_response()
        }
        Ok(None) => not_found(),
        Err(e) => api_error(&e),
    }
}

async fn rows(
    State(s): St,
    ApiUser(user): ApiUser,
    Path(id): Path<i64>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = pairs(&raw);
    let page = match page_query(&q).page() {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let db = s.watcher.db();
    match db.user_source(user.id, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(e) => return api_error(&e),
    }
    let only = matches!(get_param(&q, "is_anomaly"), Some("true" | "1" | "True"));
    match db.rows(id, only, page.offset(), page.size).await {
        Ok((count, rows)) => {
            let results = rows
                .into_iter()
                .map(|r| {
                    let mut v = json!(r);
                    if let Some(o) = v.as_object_mut() {
                        o.remove("datasource");
                    }
                    v
                })
                .collect();
            paginated(&headers, uri.path(), &q, page, count, results)
        }
        Err(e) => api_error(&e),
    }
}

async fn runs(State(s): St, ApiUser(user): ApiUser, Path(id): Path<i64>) -> Response {
    let db = s.watcher.db();
    match db.user_source(user.id, id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(),
        Err(e) => return api_error(&e),
    }
    match db.runs(id, 100).await {
        Ok(runs) => Json(json!(runs)).into_response(),
        Err(e) => api_error(&e),
    }
}

/// A `since`/`until` value: RFC 3339, or a date (midnight UTC).
fn parse_time(field: &'static str, v: &str) -> Result<DateTime<Utc>, WatcherError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .map_err(|_| {
            WatcherError::invalid(
                field,
                format!("{v:?} is neither an RFC 3339 time nor a date"),
            )
        })
}

async fn anomalies(
    State(s): St,
    ApiUser(user): ApiUser,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = pairs(&raw);
    let page = match page_query(&q).page() {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let mut filter = AnomalyFilter::default();
    if let Some(d) = get_param(&q, "datasource") {
        match d.parse() {
            Ok(id) => filter.datasource = Some(id),
            Err(_) => {
                return api_error(&WatcherError::invalid(
                    "datasource",
                    format!("{d:?} is not a data source id"),
                ));
            }
        }
    }
    for (name, slot) in [("since", &mut filter.since), ("until", &mut filter.until)] {
        if let Some(v) = get_param(&q, name) {
            match parse_time(if name == "since" { "since" } else { "until" }, v) {
                Ok(t) => *slot = Some(t),
                Err(e) => return api_error(&e),
            }
        }
    }
    match s
        .watcher
        .db()
        .anomalies(user.id, &filter, page.offset(), page.size)
        .await
    {
        Ok((count, rows)) => {
            let results = rows.into_iter().map(|r| json!(r)).collect();
            paginated(&headers, uri.path(), &q, page, count, results)
        }
        Err(e) => api_error(&e),
    }
}

async fn new_token(State(s): St, ApiUser(user): ApiUser) -> Response {
    let token = match crate::accounts::new_token() {
        Ok(t) => t,
        Err(e) => return api_error(&e),
    };
    let config = s.watcher.config();
    match s
        .watcher
        .db()
        .add_token(
            user.id,
            &crate::accounts::digest(&token),
            "api",
            config.max_tokens_per_user,
        )
        .await
    {
        Ok(()) => (StatusCode::CREATED, Json(json!({"token": token}))).into_response(),
        Err(e) => api_error(&e),
    }
}

async fn tokens(State(s): St, ApiUser(user): ApiUser) -> Response {
    match s.watcher.db().tokens(user.id).await {
        Ok(list) => Json(json!(
            list.into_iter()
                .map(|(id, label, created_at)| json!({"id": id, "label": label, "created_at": created_at}))
                .collect::<Vec<_>>()
        ))
        .into_response(),
        Err(e) => api_error(&e),
    }
}

async fn revoke_token(State(s): St, ApiUser(user): ApiUser, Path(id): Path<i64>) -> Response {
    match s.watcher.db().delete_token(user.id, id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => not_found(),
        Err(e) => api_error(&e),
    }
}
