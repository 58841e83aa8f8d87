//! The web layer: the REST API under `/detect/api/` ([`api`]), the server-rendered pages ([`ui`]), and who is
//! asking ([`auth`]). Handlers parse, call the [`Watcher`](crate::Watcher) or the database, and answer.

mod api;
pub mod auth;
mod ui;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::WatcherError;
use crate::watcher::Watcher;

/// What the handlers share.
pub struct AppState {
    /// The application.
    pub watcher: Arc<Watcher>,
}

/// Every route of the application (the kit adds `/metrics` and its layers).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        .with_state(state)
}

/// What a query value keeps as it is: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value (or a path in `?next=`; `/` is encoded too).
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// Rows per page unless `page_size` says otherwise, and its largest value.
const PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 1_000;

/// `?page=N&page_size=M`, as the original's framework reads them (pages from 1).
#[derive(Debug, Clone, Deserialize, Default)]
pub(crate) struct PageQuery {
    page: Option<String>,
    page_size: Option<String>,
}

/// A page asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page {
    pub(crate) number: u64,
    pub(crate) size: u64,
}

impl Page {
    pub(crate) fn offset(self) -> u64 {
        (self.number - 1).saturating_mul(self.size)
    }

    pub(crate) fn last(self, count: u64) -> u64 {
        count.div_ceil(self.size).max(1)
    }
}

impl PageQuery {
    /// The page; a page that is not a positive number is an error (404 "Invalid page." as the framework
    /// answers), a `page_size` beyond the largest is cut to it.
    pub(crate) fn page(&self) -> Result<Page, Box<Response>> {
        let number = match self.page.as_deref() {
            None | Some("") => 1,
            Some(p) => match p.parse::<u64>() {
                // Beyond it, offsets would leave the databases' integer range (and no list is that long).
                Ok(n) if (1..=1_000_000_000).contains(&n) => n,
                _ => return Err(Box::new(invalid_page())),
            },
        };
        let size = match self.page_size.as_deref() {
            None | Some("") => PAGE_SIZE,
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|&n| n >= 1)
                .map_or(PAGE_SIZE, |n| n.min(MAX_PAGE_SIZE)),
        };
        Ok(Page { number, size })
    }
}

fn invalid_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"detail": "Invalid page."})),
    )
        .into_response()
}

/// `{"count", "next", "previous", "results"}` with absolute links built from the request, as the original's
/// framework answers; a page past the last is a 404 (page 1 of nothing is an empty page).
pub(crate) fn paginated(
    headers: &HeaderMap,
    path: &str,
    query: &[(String, String)],
    page: Page,
    count: u64,
    results: Vec<Value>,
) -> Response {
    let last = page.last(count);
    if page.number > last {
        return invalid_page();
    }
    let link = |n: u64| -> Value {
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| *p == "https")
            .unwrap_or("http");
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost");
        let mut pairs: Vec<String> = query
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        if n > 1 {
            pairs.push(format!("page={n}"));
        }
        let q = if pairs.is_empty() {
            String::new()
        } else {
            format!("?{}", pairs.join("&"))
        };
        Value::String(format!("{scheme}://{host}{path}{q}"))
    };
    Json(json!({
        "count": count,
        "next": if page.number < last { link(page.number + 1) } else { Value::Null },
        "previous": if page.number > 1 { link(page.number - 1) } else { Value::Null },
        "results": results,
    }))
    .into_response()
}

/// An error as the API answers it: a field's refusal as `{"field": ["reason"]}` (400), others as
/// `{"detail": …}`.
pub(crate) fn api_error(e: &WatcherError) -> Response {
    let (status, body) = match e {
        WatcherError::Invalid { field, reason } => {
            (StatusCode::BAD_REQUEST, json!({ *field: [reason] }))
        }
        WatcherError::UsernameTaken(_) => (
            StatusCode::BAD_REQUEST,
            json!({"username": [e.to_string()]}),
        ),
        WatcherError::Busy => (StatusCode::CONFLICT, json!({"detail": e.to_string()})),
        other => {
            tracing::error!(error = %other, "request failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"detail": "the application's database failed; try again"}),
            )
        }
    };
    (status, Json(body)).into_response()
}

pub(crate) fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"detail": "Not found."}))).into_response()
}
