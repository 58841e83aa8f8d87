//! The dashboard at `/ui`: a server-rendered page (askama templates, checked when the crate compiles) of the
//! newest detections, with each one's context and configuration as expandable JSON and a small chart of the
//! series' values around it. It updates itself: `/ui/events` (server-sent events) says when this worker stored
//! detections, and the page fetches the new rows, rendered by the same template, from `/ui/rows`; it also looks
//! every 10 seconds, for detections other workers stored in a shared database. The script and the style are the
//! project's own, served from the binary: no CDN.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anomaly_store::{AnomalyQuery, Store, StoredAnomaly};
use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::Value;
use service_kit::error_response;
use tokio::sync::watch;

use crate::message::check_series_name;

/// Rows the page shows when it loads.
const PAGE_ROWS: u64 = 100;
/// Most rows `/ui/rows` sends at once (the page keeps as many).
const MAX_NEW_ROWS: u64 = 500;
/// How far before the newest row shown `/ui/rows` looks again, for detections committed out of order by
/// another worker sharing the database (the page skips the ids it already has).
const OVERLAP: chrono::Duration = chrono::Duration::seconds(5);
const CHART_WIDTH: f64 = 120.0;
const CHART_HEIGHT: f64 = 32.0;

/// What the dashboard reads.
#[derive(Clone)]
pub(crate) struct UiState {
    pub(crate) store: Arc<dyn Store>,
    /// Counts this worker's stored detections.
    pub(crate) changes: watch::Receiver<u64>,
    /// Turns true at shutdown, which ends the event streams.
    pub(crate) stop: watch::Receiver<bool>,
    /// Whether browsers sign in (`API_TOKEN` is set): the page then offers to sign out.
    pub(crate) signed_in: bool,
}

pub(crate) fn router(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/rows", get(rows))
        .route("/ui/events", get(events))
        .route(
            "/ui/dashboard.js",
            get(|| {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../assets/dashboard.js"),
                )
            }),
        )
        .route(
            "/ui/dashboard.css",
            get(|| {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../assets/dashboard.css"),
                )
            }),
        )
        .with_state(state)
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The filters the page and its rows take.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filters {
    series: Option<String>,
    method: Option<String>,
    since: Option<String>,
}

impl Filters {
    fn query(&self) -> Result<AnomalyQuery, String> {
        let mut q = AnomalyQuery::new().limit(PAGE_ROWS);
        if let Some(s) = self.series.as_deref().filter(|s| !s.is_empty()) {
            check_series_name(s).map_err(|e| format!("`series`: {e}"))?;
            q.key = Some(s.to_string());
        }
        if let Some(m) = self.method.as_deref().filter(|m| !m.is_empty()) {
            if !matches!(m, "moving_average" | "isolation_forest") {
                return Err(format!(
                    "`method`: `{m}` is not moving_average or isolation_forest"
                ));
            }
            q.detector = Some(m.to_string());
        }
        if let Some(since) = self.since.as_deref().filter(|s| !s.is_empty()) {
            let t = DateTime::parse_from_rfc3339(since)
                .map_err(|e| format!("`since`: `{since}` is not an RFC 3339 time ({e})"))?;
            q.since = Some(t.with_timezone(&Utc) - OVERLAP);
        }
        Ok(q)
    }
}

/// One detection as a table row.
struct Row {
    id: i64,
    detected_at: String,
    detected_at_exact: String,
    series: String,
    value: String,
    method: String,
    score: String,
    threshold: String,
    rationale: String,
    context: String,
    config: String,
    chart: Option<Chart>,
}

/// A sparkline of the input buffer, the detection's point last.
struct Chart {
    points: String,
    last_x: String,
    last_y: String,
    min: String,
    max: String,
}

fn number(v: Option<&Value>) -> String {
    match v.and_then(Value::as_f64) {
        Some(x) => format_number(x),
        None => "–".into(),
    }
}

fn format_number(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 0.01 && x.abs() < 1e6 {
        format!("{x:.3}")
    } else {
        format!("{x:.3e}")
    }
}

fn chart(buffer: Option<&Value>) -> Option<Chart> {
    let values: Vec<f64> = buffer?
        .as_array()?
        .iter()
        .filter_map(Value::as_f64)
        .filter(|v| v.is_finite())
        .collect();
    if values.len() < 2 {
        return None;
    }
    let (lo, hi) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let span = if hi > lo { hi - lo } else { 1.0 };
    let step = CHART_WIDTH / (values.len() - 1) as f64;
    let pad = 2.0;
    let y = |v: f64| pad + (CHART_HEIGHT - 2.0 * pad) * (1.0 - (v - lo) / span);
    let mut points = String::new();
    for (i, &v) in values.iter().enumerate() {
        let _ = write!(points, "{:.1},{:.1} ", i as f64 * step, y(v));
    }
    let last = values[values.len() - 1];
    Some(Chart {
        points: points.trim_end().to_string(),
        last_x: format!("{:.1}", (values.len() - 1) as f64 * step),
        last_y: format!("{:.1}", y(last)),
        min: format_number(lo),
        max: format_number(hi),
    })
}

fn row(a: &StoredAnomaly) -> Row {
    let x = &a.anomaly;
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    Row {
        id: a.id,
        detected_at: x.created_at.format("%Y-%m-%d %H:%M:%S").to_string(),
        detected_at_exact: x.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        series: x.key.clone(),
        value: number(x.context.get("value")),
        method: x.detector.clone(),
        score: format_number(x.score),
        threshold: format_number(x.threshold),
        rationale: x.rationale.clone(),
        context: pretty(&x.context),
        config: pretty(&x.config),
        chart: chart(x.context.get("input_buffer")),
    }
}

#[derive(Template)]
#[template(path = "ui.html")]
struct Page {
    rows: Vec<Row>,
    count: u64,
    signed_in: bool,
    series: String,
    method: String,
}

#[derive(Template)]
#[template(path = "rows.html")]
struct Rows {
    rows: Vec<Row>,
}

fn rendered(t: impl Template) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => error_response(StatusCode::INTERNAL_SERVER_ERROR, format!("rendering: {e}")),
    }
}

/// Reads the query's filters and the store query they make (the reason when they are unusable, for a 400).
fn filters(
    raw: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Result<(Filters, AnomalyQuery), String> {
    let Query(f) = raw.map_err(|e| e.body_text())?;
    let query = f.query()?;
    Ok((f, query))
}

/// `GET /ui?series=&method=`.
async fn page(
    State(state): State<UiState>,
    raw: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let (f, query) = match filters(raw) {
        Ok(v) => v,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let (page, count) = match tokio::try_join!(
        state.store.query_anomalies(&query),
        state.store.count_anomalies(&query)
    ) {
        Ok(v) => v,
        Err(e) => {
            return error_response(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}"));
        }
    };
    rendered(Page {
        rows: page.items.iter().map(row).collect(),
        count,
        signed_in: state.signed_in,
        series: f.series.unwrap_or_default(),
        method: f.method.unwrap_or_default(),
    })
}

/// `GET /ui/rows?series=&method=&since=`: the rows detected since `since` (less a few seconds of overlap), newest
/// first, at most 500, as the page's table rows; the header `X-Detections` gives the total the filters match.
async fn rows(
    State(state): State<UiState>,
    raw: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut query = match filters(raw) {
        Ok((_, q)) => q,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, e),
    };
    let read = async {
        let all = AnomalyQuery {
            since: None,
            ..query.clone()
        };
        let count = state.store.count_anomalies(&all).await?;
        let mut items = Vec::new();
        loop {
            let page = state.store.query_anomalies(&query).await?;
            items.extend(page.items);
            match page.next {
                Some(cursor) if query.since.is_some() && (items.len() as u64) < MAX_NEW_ROWS => {
                    query = query.after(Some(cursor));
                }
                _ => break,
            }
        }
        items.truncate(MAX_NEW_ROWS as usize);
        Ok::<_, anomaly_store::StoreError>((count, items))
    };
    match read.await {
        Ok((count, items)) => {
            let mut r = rendered(Rows {
                rows: items.iter().map(row).collect(),
            });
            if let Ok(v) = axum::http::HeaderValue::from_str(&count.to_string()) {
                r.headers_mut().insert("x-detections", v);
            }
            r
        }
        Err(e) => error_response(StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")),
    }
}

/// `GET /ui/events`: an event `changed` each time this worker stores detections (coalesced), a comment every 15
/// seconds to keep proxies from closing the stream, and the end of the stream at shutdown.
async fn events(
    State(state): State<UiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut changes = state.changes.clone();
    changes.mark_unchanged();
    let stop = state.stop.clone();
    let stream =
        futures_util::stream::unfold((changes, stop), |(mut changes, mut stop)| async move {
            let changed = tokio::select! {
                () = async { let _ = stop.wait_for(|s| *s).await; } => false,
                changed = changes.changed() => changed.is_ok(),
            };
            if !changed {
                return None;
            }
            // Coalesce a burst into one event.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = *changes.borrow_and_update();
            Some((
                Ok(Event::default().event("changed").data(n.to_string())),
                (changes, stop),
            ))
        });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_chart_spans_the_buffer_and_marks_the_last_point() {
        let c = chart(Some(&json!([1.0, 2.0, 3.0, 10.0]))).unwrap();
        assert_eq!(c.points.split(' ').count(), 4);
        assert_eq!((c.last_x.as_str(), c.last_y.as_str()), ("120.0", "2.0"));
        assert_eq!((c.min.as_str(), c.max.as_str()), ("1", "10"));
        let flat = chart(Some(&json!([5.0, 5.0]))).unwrap();
        assert!(
            flat.points.split(' ').all(|p| p.ends_with(",30.0")),
            "{}",
            flat.points
        );
        assert!(chart(Some(&json!([5.0]))).is_none());
        assert!(chart(Some(&json!("x"))).is_none());
        assert!(chart(None).is_none());
    }

    #[test]
    fn rows_escape_what_the_producer_sent() {
        let mut a = anomaly_store::Anomaly::flagged("cpu.a", "moving_average", 2.5, 1.0);
        a.rationale = "<script>alert(1)</script>".into();
        a.context =
            json!({"value": 93.5, "note": "</pre><b>x</b>", "input_buffer": [1.0, 2.0, 93.5]});
        let html = Rows {
            rows: vec![row(&StoredAnomaly { id: 7, anomaly: a })],
        }
        .render()
        .unwrap();
        assert!(
            !html.contains("<script>") && !html.contains("</pre><b>"),
            "{html}"
        );
        assert!(
            html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
            "{html}"
        );
        assert!(html.contains("id=\"row-7\"") && html.contains("93.500") && html.contains("<svg"));
    }

    #[test]
    fn filters_are_checked() {
        let f = |series: &str, method: &str, since: &str| Filters {
            series: Some(series.into()),
            method: Some(method.into()),
            since: Some(since.into()),
        };
        assert!(
            f("cpu.a", "moving_average", "2026-01-01T00:00:00Z")
                .query()
                .is_ok()
        );
        assert!(f("", "", "").query().is_ok());
        assert!(f("a b", "", "").query().unwrap_err().contains("series"));
        assert!(f("", "forest", "").query().unwrap_err().contains("method"));
        assert!(
            f("", "", "yesterday")
                .query()
                .unwrap_err()
                .contains("since")
        );
    }
}
