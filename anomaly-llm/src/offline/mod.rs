//! [`OfflineProvider`]: deterministic rules that answer the analysers' requests without a network.
//!
//! It reads the request's [`Task`] (the structured input every analyser attaches) rather than the prompt, and
//! answers with the same JSON shape an LLM must return, so its answers go through the same validation and typed
//! parsing. Rules for queries: injection patterns in the query, operation name and variables (SQL, NoSQL, XSS,
//! path traversal, command and prompt injection); schema introspection; page sizes and nesting depth; result sizes
//! far above history; sensitive fields and values (passwords, tokens, secrets, SSNs, Luhn-valid card numbers, API
//! keys) returned to non-admin roles; random-looking operation names; range violations and new fields against
//! the comparison with history; impossible negative quantities. For logs, see the log rules' module docs.

mod log_rules;
mod patterns;
mod query_rules;

use async_trait::async_trait;

use crate::error::{LlmError, Result};
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse, StopReason, Task};

/// The model name the offline provider reports.
pub const OFFLINE_MODEL: &str = "offline-rules-1";

/// Deterministic rules; no network. Always the last link of a chain built by [`LlmSettings`](crate::LlmSettings).
///
/// ```
/// use anomaly_llm::{CompletionRequest, OfflineProvider, Provider};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// // Without a task (a free-form prompt) it has nothing to go on.
/// let err = OfflineProvider::new().complete(&CompletionRequest::new("sys", "hello")).await.unwrap_err();
/// assert!(err.to_string().contains("unsupported"));
/// # });
/// ```
#[derive(Debug, Clone, Default)]
pub struct OfflineProvider {
    _private: (),
}

impl OfflineProvider {
    /// The rules.
    pub fn new() -> Self {
        OfflineProvider { _private: () }
    }
}

#[async_trait]
impl Provider for OfflineProvider {
    fn name(&self) -> &str {
        "offline"
    }

    /// The rules read the task, never the prompt.
    fn reads_prompt(&self) -> bool {
        false
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        let json = match &request.task {
            Some(Task::Query(batch)) => serde_json::to_value(query_rules::analyze(batch)),
            Some(Task::Logs(batch)) => serde_json::to_value(log_rules::analyze(batch)),
            None => {
                return Err(LlmError::Unsupported {
                    provider: "offline".into(),
                    reason: "the offline rules answer analyser tasks only, not free-form prompts"
                        .into(),
                });
            }
        }
        .map_err(|e| LlmError::Protocol {
            provider: "offline".into(),
            reason: e.to_string(),
        })?;
        let text = json.to_string();
        Ok(CompletionResponse::new(
            "offline",
            OFFLINE_MODEL,
            Some(json),
            text,
            StopReason::EndTurn,
        ))
    }
}
