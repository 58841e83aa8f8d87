//! The Anthropic Messages API (`POST {base}/v1/messages`).
//!
//! Structured output goes through a forced tool: the request declares one tool whose `input_schema` is the answer
//! schema and sets `tool_choice: {"type": "tool", "name": …}`, so the answer is a `tool_use` content block whose
//! `input` is the JSON. Errors have the shape `{"type": "error", "error": {"type": …, "message": …}}`;
//! `overloaded_error` (HTTP 529, or a 429 with that type) and `rate_limit_error` are retryable, and the
//! `retry-after` header is kept on the error.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::debug;

use crate::error::{LlmError, Result};
use crate::http;
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse, Role, StopReason, Usage};
use crate::secret::Secret;

/// The API's default address.
pub const ANTHROPIC_DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The `anthropic-version` header sent.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Claude through the Messages API.
///
/// ```
/// use anomaly_llm::{AnthropicProvider, Secret};
///
/// let claude = AnthropicProvider::new(Secret::new("sk-ant-…"), "claude-sonnet-4-5")?
///     .with_base_url("https://api.anthropic.com");
/// assert!(!format!("{claude:?}").contains("sk-ant"));
/// # Ok::<(), anomaly_llm::LlmError>(())
/// ```
#[derive(Debug, Clone)]
pub struct AnthropicProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Secret,
    model: String,
    name: String,
}

impl AnthropicProvider {
    /// A provider for `model` with `api_key`, at [`ANTHROPIC_DEFAULT_BASE_URL`].
    ///
    /// # Errors
    /// [`LlmError::Config`] for an empty model or key; [`LlmError::Transport`] when the HTTP client cannot be
    /// built (no TLS roots).
    pub fn new(api_key: Secret, model: impl Into<String>) -> Result<Self> {
        let model = model.into();
        if model.trim().is_empty() {
            return Err(LlmError::Config {
                setting: "CLAUDE_MODEL".into(),
                reason: "the model name is empty".into(),
            });
        }
        if api_key.expose().trim().is_empty() {
            return Err(LlmError::Config {
                setting: "ANTHROPIC_API_KEY".into(),
                reason: "the key is empty".into(),
            });
        }
        Ok(AnthropicProvider {
            client: http::client("anthropic")?,
            base_url: ANTHROPIC_DEFAULT_BASE_URL.to_string(),
            api_key,
            model,
            name: "anthropic".to_string(),
        })
    }

    /// Sends requests to another address (a proxy, a gateway, a test server); a trailing `/` is ignored.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_string();
        self
    }

    /// Renames the provider in logs, errors and provenance (default `anthropic`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The model asked.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The request body for `request` (pure; what [`complete`](Provider::complete) sends).
    pub fn request_body(&self, request: &CompletionRequest) -> Value {
        let messages: Vec<Value> = request
            .messages
            .iter()
            .map(|m| {
                json!({
                    "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                    "content": [{"type": "text", "text": m.content}],
                })
            })
            .collect();
        let mut body = json!({
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        });
        if !request.system.is_empty() {
            body["system"] = Value::String(request.system.clone());
        }
        // Anthropic's range is [0, 1].
        if let Some(t) = crate::request::wire_temperature(request.temperature, 1.0) {
            body["temperature"] = json!(t);
        }
        if let Some(schema) = &request.schema {
            body["tools"] = json!([{
                "name": schema.name,
                "description": schema.description,
                "input_schema": schema.schema,
            }]);
            body["tool_choice"] = json!({"type": "tool", "name": schema.name});
        }
        body
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        text: String,
    },
    ToolUse {
        name: String,
        #[serde(default)]
        input: Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Deserialize)]
struct WireError {
    error: WireErrorDetail,
}

#[derive(Deserialize)]
struct WireErrorDetail {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Reads a successful Messages API body into a response (pure).
///
/// # Errors
/// [`LlmError::Protocol`] for a body that is not a message; [`LlmError::Truncated`] when a schema was asked and
/// the answer stopped at `max_tokens`; [`LlmError::Refused`] for a `refusal`.
pub(crate) fn parse_response(
    provider: &str,
    request: &CompletionRequest,
    body: &str,
) -> Result<CompletionResponse> {
    let wire: WireResponse = serde_json::from_str(body).map_err(|e| LlmError::Protocol {
        provider: provider.to_string(),
        reason: format!("not a Messages API response: {e}"),
    })?;
    let stop_reason = wire
        .stop_reason
        .as_deref()
        .map_or(StopReason::Other("none".into()), StopReason::from_anthropic);
    if stop_reason.is_refusal() {
        return Err(LlmError::Refused {
            provider: provider.to_string(),
            stop_reason: "refusal".into(),
        });
    }
    if stop_reason.is_truncation() && request.schema.is_some() {
        return Err(LlmError::Truncated {
            provider: provider.to_string(),
            max_tokens: request.max_tokens,
        });
    }
    let mut text = String::new();
    let mut tool_input = None;
    let wanted = request.schema.as_ref().map(|s| s.name.as_str());
    for block in wire.content {
        match block {
            WireBlock::Text { text: t } => text.push_str(&t),
            WireBlock::ToolUse { name, input } => {
                if wanted.is_none_or(|w| w == name) && tool_input.is_none() {
                    tool_input = Some(input);
                }
            }
            WireBlock::Other => {}
        }
    }
    let json = tool_input.or_else(|| {
        request
            .schema
            .as_ref()
            .and_then(|_| crate::validate::extract_json(&text))
    });
    Ok(
        CompletionResponse::new(provider, wire.model, json, text, stop_reason).with_usage(Usage {
            input_tokens: wire.usage.input_tokens,
            output_tokens: wire.usage.output_tokens,
        }),
    )
}

#[async_trait]
impl Provider for AnthropicProvider {
    fn name(&self) -> &str {
        &self.name
    }

    /// # Errors
    /// As [`Provider::complete`], and [`LlmError::InvalidInput`] for a schema (tool) name that is not 1 to 64
    /// letters, digits, `_` or `-` (checked before anything is sent).
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        crate::request::check_schema_name(request)?;
        let body = self.request_body(request);
        let url = format!("{}/v1/messages", self.base_url);
        debug!(provider = %self.name, model = %self.model, messages = request.messages.len(),
               max_tokens = request.max_tokens, "sending request");
        if request.log_contents {
            debug!(provider = %self.name, body = %body, "request contents");
        }
        let started = std::time::Instant::now();
        let reply = http::post_json(
            &self.client,
            &self.name,
            &url,
            vec![
                ("x-api-key", self.api_key.expose().to_string()),
                ("anthropic-version", ANTHROPIC_VERSION.to_string()),
                ("content-type", "application/json".to_string()),
            ],
            &body,
            request.timeout,
        )
        .await?;
        debug!(provider = %self.name, status = reply.status, bytes = reply.body.len(),
               elapsed_ms = started.elapsed().as_millis() as u64, "answer received");
        if request.log_contents {
            debug!(provider = %self.name, body = %reply.body, "answer contents");
        }
        if !(200..300).contains(&reply.status) {
            let (kind, message) = match serde_json::from_str::<WireError>(&reply.body) {
                Ok(e) => (e.error.kind, e.error.message),
                Err(_) => ("unknown".to_string(), reply.body.clone()),
            };
            let message = http::clip(&self.api_key.scrub(&message));
            return Err(http::status_error(&self.name, &reply, kind, message));
        }
        parse_response(&self.name, request, &reply.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::OutputSchema;
    use proptest::prelude::*;

    fn request() -> CompletionRequest {
        CompletionRequest::new("sys", "hi").with_schema(OutputSchema {
            name: "report".into(),
            description: "d".into(),
            schema: json!({"type": "object"}),
        })
    }

    #[test]
    fn body_forces_the_answer_tool() {
        let p = AnthropicProvider::new(Secret::new("k-123456789"), "claude-x").unwrap();
        let body = p.request_body(&request());
        assert_eq!(body["model"], "claude-x");
        assert_eq!(body["system"], "sys");
        assert_eq!(
            body["tool_choice"],
            json!({"type": "tool", "name": "report"})
        );
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(body["messages"][0]["content"][0]["text"], "hi");
        assert_eq!(body["temperature"], json!(0.0));
        let warm = p.request_body(&request().with_temperature(Some(0.7)));
        assert_eq!(warm["temperature"].to_string(), "0.7");
        let hot = p.request_body(&request().with_temperature(Some(1.5)));
        assert_eq!(
            hot["temperature"],
            json!(1.0),
            "Anthropic's range is [0, 1]"
        );
        let mut nan = request();
        nan.temperature = Some(f32::NAN);
        assert!(p.request_body(&nan).get("temperature").is_none());
    }

    #[test]
    fn parses_tool_use_text_truncation_and_refusal() {
        let ok = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x",
            "content":[{"type":"text","text":"Here."},{"type":"tool_use","id":"toolu_1","name":"report","input":{"a":1}}],
            "stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":10,"output_tokens":5}}"#;
        let r = parse_response("anthropic", &request(), ok).unwrap();
        assert_eq!(r.json, Some(json!({"a": 1})));
        assert_eq!(r.text, "Here.");
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(r.usage.input_tokens, 10);
        let cut = ok.replace(
            "\"tool_use\",\"stop_sequence\"",
            "\"max_tokens\",\"stop_sequence\"",
        );
        assert!(matches!(
            parse_response("anthropic", &request(), &cut),
            Err(LlmError::Truncated { .. })
        ));
        let no = ok.replace(
            "\"tool_use\",\"stop_sequence\"",
            "\"refusal\",\"stop_sequence\"",
        );
        assert!(matches!(
            parse_response("anthropic", &request(), &no),
            Err(LlmError::Refused { .. })
        ));
        assert!(matches!(
            parse_response("anthropic", &request(), "<html>"),
            Err(LlmError::Protocol { .. })
        ));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(body in ".{0,300}") {
            let _ = parse_response("anthropic", &request(), &body);
        }

        #[test]
        fn parsing_any_content_block_list_never_panics(
            blocks in proptest::collection::vec(("[a-z_]{1,9}", ".{0,20}"), 0..5),
            stop in "[a-z_]{0,12}",
        ) {
            let content: Vec<Value> = blocks
                .iter()
                .map(|(t, s)| json!({"type": t, "text": s, "name": s, "input": s}))
                .collect();
            let body = json!({"model": "m", "content": content, "stop_reason": stop}).to_string();
            let _ = parse_response("anthropic", &request(), &body);
        }
    }
}
