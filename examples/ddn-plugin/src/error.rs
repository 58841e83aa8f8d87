//! The service's one error type, and how each variant answers over HTTP.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What can go wrong in the plugin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// An environment variable holds an unusable value.
    #[error("configuration: {variable}: {reason}")]
    Config {
        /// The variable.
        variable: String,
        /// Why its value is refused.
        reason: String,
    },
    /// The request is malformed (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Nothing known under this id (404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The detection engine refused the input (400), or could not reach the store (503).
    #[error("engine: {0}")]
    Engine(#[from] anomaly_core::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] anomaly_store::StoreError),
    /// A background task failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<service_kit::KitError> for PluginError {
    fn from(e: service_kit::KitError) -> Self {
        match e {
            service_kit::KitError::Config { variable, reason } => {
                PluginError::Config { variable, reason }
            }
            other => PluginError::Config {
                variable: "HOST".into(),
                reason: other.to_string(),
            },
        }
    }
}

impl IntoResponse for PluginError {
    fn into_response(self) -> Response {
        let status = match &self {
            PluginError::Engine(anomaly_core::Error::Persistence { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            PluginError::BadRequest(_) | PluginError::Engine(_) => StatusCode::BAD_REQUEST,
            PluginError::NotFound(_) => StatusCode::NOT_FOUND,
            PluginError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            PluginError::Config { .. } | PluginError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "request failed");
        }
        (status, Json(json!({"error": self.to_string()}))).into_response()
    }
}
