//! The monitor's HTTP routes while it runs: `/health`, `/anomalies`, and (through the service kit) `/metrics`.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::anomalies::RECENT_ANOMALIES;
use crate::commands::Shared;

/// `GET /anomalies` query.
#[derive(Debug, Deserialize)]
struct AnomalyFilter {
    /// Only this service.
    service: Option<String>,
    /// At most this many (default 100, at most 1,000).
    limit: Option<usize>,
}

/// The routes (the kit adds `/metrics`, limits, timeouts and authentication).
pub fn routes(shared: Shared) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/anomalies", get(anomalies))
        .with_state(shared)
}

async fn health(State(shared): State<Shared>) -> Json<Value> {
    let through = f64::from_bits(shared.scored_through.load(Ordering::Relaxed));
    let lag = crate::commands::unix_now() - through;
    Json(json!({
        "status": "ok",
        "scored_through": (through > 0.0).then_some(through),
        "lag_seconds": (through > 0.0).then_some(lag),
    }))
}

/// The newest anomalies first (those of this run, at most 1,000 kept), optionally of one service.
async fn anomalies(
    State(shared): State<Shared>,
    Query(filter): Query<AnomalyFilter>,
) -> Json<Value> {
    let limit = filter.limit.unwrap_or(100).clamp(1, RECENT_ANOMALIES);
    let results = shared.recent.list(filter.service.as_deref(), limit);
    Json(json!({"count": results.len(), "results": results}))
}
