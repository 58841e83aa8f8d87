//! The HTTP endpoints, thin over [`Plugin`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anomaly_store::{AnomalyCursor, AnomalyQuery};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::PluginError;
use crate::plugin::{Plugin, blocking, dataset_key};
use crate::protocol::HookRequest;

type Shared = State<Arc<Plugin>>;

/// The plugin's endpoints. The service kit adds `/metrics`, authentication (`PLUGIN_SECRET` on every route but
/// `/health` and `/ready`), limits and timeouts around them ([`crate::serve`]). The routes that take a body want
/// it declared as JSON (415 otherwise): a web page cannot post to them cross-site without a CORS preflight, which
/// the plugin never grants.
pub fn router(plugin: Arc<Plugin>) -> Router {
    Router::new()
        .route("/anomalies", post(hook).get(list_anomalies))
        .route("/history/{query_id}", get(history).delete(delete_history))
        .route("/model/{query_id}", get(model))
        .route("/analyze/{query_id}", post(analyze_one))
        .route("/stats/{query_id}", get(stats))
        .route_layer(middleware::from_fn(service_kit::require_json))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(plugin)
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, PluginError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        PluginError::BadRequest(format!(
            "the body is larger than the limit of {limit} bytes (MAX_REQUEST_BYTES)"
        ))
    })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /anomalies`: the pre-response hook.
async fn hook(State(plugin): Shared, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let bytes = read_body(body, plugin.config().serve.max_body_bytes).await?;
        let req = HookRequest::parse(
            &bytes,
            header(&headers, "x-hasura-role"),
            header(&headers, "x-hasura-user"),
        )?;
        plugin.analyze_hook(req).await
    }
    .await;
    let metrics = plugin.metrics();
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => {
            metrics.rejected.fetch_add(1, Ordering::Relaxed);
            e.into_response()
        }
    }
}

/// `GET /health`.
async fn health(State(plugin): Shared) -> Json<Value> {
    let reachable = plugin.store_reachable().await;
    let queue = plugin.queue().stats();
    let status = plugin.history_writer().availability();
    Json(json!({
        "status": if reachable { "ok" } else { "degraded" },
        "version": env!("CARGO_PKG_VERSION"),
        "store": {
            "reachable": reachable,
            "queue_depth": queue.depth,
            "history_pending": plugin.history_writer().stats().pending,
            "outages": status.outages(),
            "last_error": status.last_error().or(queue.last_error),
        },
        "llm_provider": plugin.provider_chain(),
        "excluded_datasets": plugin.config().excluded_datasets.iter().map(|r| {
            let s = r.as_str();
            s.strip_prefix("^(?:").and_then(|s| s.strip_suffix(")$")).unwrap_or(s).to_string()
        }).collect::<Vec<_>>(),
    }))
}

/// `GET /ready`: 200 once the store answers, 503 with the reason before (a load balancer sends no traffic then).
async fn ready(State(plugin): Shared) -> Response {
    service_kit::ready_response(if plugin.store_reachable().await {
        Ok(())
    } else {
        Err("the store does not answer".into())
    })
}

async fn known_datasets(plugin: &Plugin, query_id: &str) -> Result<Vec<String>, PluginError> {
    let datasets: Vec<String> = plugin.datasets_of(query_id).await?.into_iter().collect();
    if datasets.is_empty() {
        return Err(PluginError::NotFound(format!(
            "no query with id `{query_id}`"
        )));
    }
    Ok(datasets)
}

/// `GET /history/{query_id}`: the history kept per dataset.
async fn history(
    State(plugin): Shared,
    Path(query_id): Path<String>,
) -> Result<Json<Value>, PluginError> {
    let mut out = serde_json::Map::new();
    for dataset in known_datasets(&plugin, &query_id).await? {
        let engine = plugin.engine().clone();
        let key = dataset_key(&query_id, &dataset);
        let records = blocking(move || engine.history(&key)).await?;
        out.insert(dataset, json!({"count": records.len(), "records": records}));
    }
    Ok(Json(json!({"query_id": query_id, "datasets": out})))
}

/// `DELETE /history/{query_id}`: forgets the history (models and detections stay).
async fn delete_history(
    State(plugin): Shared,
    Path(query_id): Path<String>,
) -> Result<Json<Value>, PluginError> {
    // Every dataset or none: while the store is known to be down, nothing is forgotten.
    if !plugin.store_available() {
        return Err(PluginError::Engine(anomaly_core::Error::Persistence {
            reason: "the store is unavailable: history can be forgotten only once it is back"
                .into(),
        }));
    }
    let mut removed = serde_json::Map::new();
    for dataset in known_datasets(&plugin, &query_id).await? {
        let engine = plugin.engine().clone();
        let key = dataset_key(&query_id, &dataset);
        let n = blocking(move || engine.clear(&key)).await?;
        removed.insert(dataset, json!(n));
    }
    Ok(Json(json!({"query_id": query_id, "removed": removed})))
}

/// `GET /model/{query_id}`: every model version per dataset.
async fn model(
    State(plugin): Shared,
    Path(query_id): Path<String>,
) -> Result<Json<Value>, PluginError> {
    let mut out = serde_json::Map::new();
    for dataset in known_datasets(&plugin, &query_id).await? {
        let key = dataset_key(&query_id, &dataset);
        let versions = plugin.store().model_versions(&key).await?;
        let engine = plugin.engine().clone();
        let current = blocking(move || engine.model_info(&key)).await?;
        out.insert(
            dataset,
            json!({
                "status": if current.is_some() || !versions.is_empty() { "active" } else { "learning" },
                "current": current,
                "versions": versions.iter().map(|v| json!({
                    "version": v.version,
                    "kind": v.kind,
                    "features": v.metadata.features,
                    "trained_at": v.metadata.trained_at,
                    "records": v.metadata.records_trained_on,
                    "saved_at": v.saved_at,
                })).collect::<Vec<_>>(),
            }),
        );
    }
    Ok(Json(json!({"query_id": query_id, "datasets": out})))
}

/// `POST /analyze/{query_id}`: one record (`{"dataset": …, "record": {…}}`, or the bare record when the query has
/// one dataset) scored and explained against the query's model, without learning it.
async fn analyze_one(
    State(plugin): Shared,
    Path(query_id): Path<String>,
    body: Body,
) -> Result<Json<Value>, PluginError> {
    let bytes = read_body(body, plugin.config().serve.max_body_bytes).await?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| PluginError::BadRequest(format!("the body is not JSON: {e}")))?;
    let datasets = known_datasets(&plugin, &query_id).await?;
    let (dataset, record) = match (value.get("record"), value.get("dataset")) {
        (Some(record), dataset) => (
            dataset.and_then(Value::as_str).map(str::to_string),
            record.clone(),
        ),
        (None, _) => (None, value),
    };
    let dataset = match dataset {
        Some(d) if datasets.contains(&d) => d,
        Some(d) => {
            return Err(PluginError::NotFound(format!(
                "query `{query_id}` has no dataset `{d}`"
            )));
        }
        None if datasets.len() == 1 => datasets[0].clone(),
        None => {
            return Err(PluginError::BadRequest(format!(
                "the query has several datasets ({}); name one in `dataset`",
                datasets.join(", ")
            )));
        }
    };
    if !record.is_object() {
        return Err(PluginError::BadRequest(
            "`record` must be a JSON object".into(),
        ));
    }
    let engine = plugin.engine().clone();
    let key = dataset_key(&query_id, &dataset);
    let explained = blocking(move || engine.explain(&key, &record)).await?;
    Ok(Json(match explained {
        Some(e) => {
            let v = e.verdict;
            json!({
                "query_id": query_id,
                "dataset": dataset,
                "status": "active",
                "is_anomaly": v.is_anomaly,
                "detector": v.flagged_by.primary().map_or("isolation_forest", |d| d.as_str()),
                "flagged_by": v.flagged_by,
                "score": v.score,
                "threshold": v.threshold,
                "model_version": v.model_version,
                "explanation": e.rationale,
                "fields": e.fields,
                "range_violations": e.range_violations,
            })
        }
        None => json!({"query_id": query_id, "dataset": dataset, "status": "learning"}),
    }))
}

/// `GET /stats/{query_id}`: statistics of each dataset's history.
async fn stats(
    State(plugin): Shared,
    Path(query_id): Path<String>,
) -> Result<Json<Value>, PluginError> {
    let mut out = serde_json::Map::new();
    for dataset in known_datasets(&plugin, &query_id).await? {
        let engine = plugin.engine().clone();
        let key = dataset_key(&query_id, &dataset);
        let (counters, stats) =
            blocking(move || Ok((engine.stats(&key)?, engine.statistics(&key)?))).await?;
        out.insert(
            dataset,
            json!({"history_size": counters.history, "counters": counters, "statistics": stats.to_prompt_json()}),
        );
    }
    Ok(Json(json!({"query_id": query_id, "datasets": out})))
}

/// Filters of `GET /anomalies`.
#[derive(Debug, Deserialize)]
struct AnomalyFilters {
    query_id: Option<String>,
    dataset: Option<String>,
    min_score: Option<f64>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    limit: Option<u64>,
    cursor: Option<String>,
}

/// `GET /anomalies?query_id=&dataset=&min_score=&since=&until=&limit=&cursor=`: stored detections, newest first.
async fn list_anomalies(
    State(plugin): Shared,
    filters: Result<Query<AnomalyFilters>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, PluginError> {
    let Query(f) = filters.map_err(|e| PluginError::BadRequest(e.body_text()))?;
    let mut q = AnomalyQuery::new().limit(f.limit.unwrap_or(50).clamp(1, 1_000));
    if let Some(qid) = &f.query_id {
        let dataset = match &f.dataset {
            Some(d) => d.clone(),
            None => {
                let datasets = known_datasets(&plugin, qid).await?;
                if datasets.len() > 1 {
                    return Err(PluginError::BadRequest(format!(
                        "the query has several datasets ({}); name one in `dataset`",
                        datasets.join(", ")
                    )));
                }
                datasets[0].clone()
            }
        };
        q = q.key(dataset_key(qid, &dataset));
    }
    if let Some(s) = f.min_score {
        q = q.min_score(s);
    }
    q.since = f.since;
    q.until = f.until;
    if let Some(c) = &f.cursor {
        q = q.after(Some(parse_cursor(c)?));
    }
    let page = plugin.store().query_anomalies(&q).await?;
    let next = page
        .next
        .map(|c| format!("{}.{}", c.created_at.timestamp_micros(), c.id));
    Ok(Json(json!({"items": page.items, "next_cursor": next})))
}

fn parse_cursor(c: &str) -> Result<AnomalyCursor, PluginError> {
    let bad =
        || PluginError::BadRequest(format!("`cursor` {c:?} is not one this service returned"));
    let (micros, id) = c.split_once('.').ok_or_else(bad)?;
    let created_at =
        DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok(AnomalyCursor {
        created_at,
        id: id.parse().map_err(|_| bad())?,
    })
}
