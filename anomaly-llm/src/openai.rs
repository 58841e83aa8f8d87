//! OpenAI-compatible chat completions (`POST {base}/chat/completions`): OpenAI itself, Ollama, vLLM, llama.cpp's
//! server, LM Studio and the many gateways that speak the same wire format.
//!
//! Structured output is asked with `response_format: {"type": "json_schema", "json_schema": {"name", "schema",
//! "strict": true}}`. A server that says it does not support it (HTTP 400/422 naming `response_format`,
//! `json_schema` or `json_object` *and* saying "not supported", "unsupported", "unknown", "unrecognized", "not
//! permitted" or "not allowed") is asked again at once with `{"type": "json_object"}`, then with no
//! `response_format`; in both the schema is spelled out in the system prompt. The step that worked is remembered
//! for the provider instance's lifetime and logged at `warn`. A server that *supports* the format but refuses this
//! schema (OpenAI's "Invalid schema for response_format …") is not stepped down from: that is a bug in the schema,
//! reported as the [`LlmError::Api`] it is, rather than a silent loss of structured output for the whole process.
//!
//! This is the one exception to "one attempt per [`complete`](Provider::complete) call": a call that steps down
//! sends up to three requests, each within the request's timeout.

use std::sync::atomic::{AtomicU8, Ordering};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::error::{LlmError, Result};
use crate::http;
use crate::provider::Provider;
use crate::request::{CompletionRequest, CompletionResponse, Role, StopReason, Usage};
use crate::secret::Secret;

/// OpenAI's address, the default base URL.
pub const OPENAI_DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// How structured output is asked of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum JsonMode {
    /// `response_format: {"type": "json_schema", …, "strict": true}` (OpenAI, recent vLLM, llama.cpp, Ollama).
    JsonSchema = 0,
    /// `response_format: {"type": "json_object"}` and the schema in the system prompt.
    JsonObject = 1,
    /// No `response_format`; the schema and "answer with JSON only" in the system prompt.
    PromptOnly = 2,
}

impl JsonMode {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => JsonMode::JsonSchema,
            1 => JsonMode::JsonObject,
            _ => JsonMode::PromptOnly,
        }
    }

    fn weaker(self) -> Option<Self> {
        match self {
            JsonMode::JsonSchema => Some(JsonMode::JsonObject),
            JsonMode::JsonObject => Some(JsonMode::PromptOnly),
            JsonMode::PromptOnly => None,
        }
    }
}

/// Which body field carries the answer's token limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenLimitField {
    /// `max_tokens`: local servers and older OpenAI models.
    MaxTokens,
    /// `max_completion_tokens`: OpenAI's current name (its reasoning models reject `max_tokens`).
    MaxCompletionTokens,
}

/// A chat-completions server.
///
/// ```
/// use anomaly_llm::{JsonMode, OpenAiProvider, Secret};
///
/// // A local Ollama: no key, and its base URL.
/// let local = OpenAiProvider::new("llama3.1:8b", None)?.with_base_url("http://localhost:11434/v1");
/// assert_eq!(local.json_mode(), JsonMode::JsonSchema);
/// // OpenAI itself.
/// let openai = OpenAiProvider::new("gpt-4o-mini", Some(Secret::new("sk-…")))?;
/// assert!(!format!("{openai:?}").contains("sk-"));
/// # Ok::<(), anomaly_llm::LlmError>(())
/// ```
#[derive(Debug)]
pub struct OpenAiProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: Option<Secret>,
    model: String,
    name: String,
    mode: AtomicU8,
    token_field: Option<TokenLimitField>,
}

impl OpenAiProvider {
    /// A provider for `model` at [`OPENAI_DEFAULT_BASE_URL`]; `api_key` is sent as `Authorization: Bearer` when
    /// given (local servers need none).
    ///
    /// # Errors
    /// [`LlmError::Config`] for an empty model; [`LlmError::Transport`] when the HTTP client cannot be built.
    pub fn new(model: impl Into<String>, api_key: Option<Secret>) -> Result<Self> {
        let model = model.into();
        if model.trim().is_empty() {
            return Err(LlmError::Config {
                setting: "LLM_MODEL".into(),
                reason: "the model name is empty".into(),
            });
        }
        Ok(OpenAiProvider {
            client: http::client("openai")?,
            base_url: OPENAI_DEFAULT_BASE_URL.to_string(),
            api_key: api_key.filter(|k| !k.expose().trim().is_empty()),
            model,
            name: "openai".to_string(),
            mode: AtomicU8::new(JsonMode::JsonSchema as u8),
            token_field: None,
        })
    }

    /// Another server (for example `http://localhost:11434/v1` for Ollama, `http://localhost:8000/v1` for vLLM,
    /// `http://localhost:8080/v1` for llama.cpp); a trailing `/` is ignored.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_string();
        self
    }

    /// Renames the provider in logs, errors and provenance (default `openai`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Starts at another structured-output mode (for a server known to lack `json_schema`).
    pub fn with_json_mode(self, mode: JsonMode) -> Self {
        self.mode.store(mode as u8, Ordering::Relaxed);
        self
    }

    /// Chooses the token-limit field; by default `max_completion_tokens` for `api.openai.com` and `max_tokens`
    /// for every other server.
    pub fn with_token_limit_field(mut self, field: TokenLimitField) -> Self {
        self.token_field = Some(field);
        self
    }

    /// The structured-output mode the next request uses.
    pub fn json_mode(&self) -> JsonMode {
        JsonMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// The model asked.
    pub fn model(&self) -> &str {
        &self.model
    }

    fn token_field(&self) -> TokenLimitField {
        self.token_field
            .unwrap_or(if self.base_url.contains("api.openai.com") {
                TokenLimitField::MaxCompletionTokens
            } else {
                TokenLimitField::MaxTokens
            })
    }

    /// The request body for `request` in `mode` (pure; what [`complete`](Provider::complete) sends).
    pub fn request_body(&self, request: &CompletionRequest, mode: JsonMode) -> Value {
        let mut system = request.system.clone();
        if let Some(schema) = &request.schema
            && mode != JsonMode::JsonSchema
        {
            system.push_str(&format!(
                "\n\nAnswer with one JSON object and nothing else: no prose, no Markdown fence. It must match this \
                 JSON schema ({}: {}):\n{}",
                schema.name, schema.description, schema.schema
            ));
        }
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in &request.messages {
            messages.push(json!({
                "role": match m.role { Role::User => "user", Role::Assistant => "assistant" },
                "content": m.content,
            }));
        }
        let mut body = json!({"model": self.model, "messages": messages});
        let limit = match self.token_field() {
            TokenLimitField::MaxTokens => "max_tokens",
            TokenLimitField::MaxCompletionTokens => "max_completion_tokens",
        };
        body[limit] = json!(request.max_tokens);
        if let Some(t) = crate::request::wire_temperature(request.temperature, 2.0) {
            body["temperature"] = json!(t);
        }
        if let Some(schema) = &request.schema {
            match mode {
                JsonMode::JsonSchema => {
                    body["response_format"] = json!({
                        "type": "json_schema",
                        "json_schema": {
                            "name": schema.name,
                            "description": schema.description,
                            "schema": schema.schema,
                            "strict": true,
                        }
                    });
                }
                JsonMode::JsonObject => body["response_format"] = json!({"type": "json_object"}),
                JsonMode::PromptOnly => {}
            }
        }
        body
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

/// The error body: OpenAI's `{"error": {"message", "type", "code", "param"}}` or a server's `{"error": "…"}`.
fn error_parts(body: &str) -> (String, String, bool) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let (kind, message) = match v.get("error") {
        Some(Value::Object(e)) => {
            let kind = e
                .get("code")
                .and_then(Value::as_str)
                .filter(|c| *c == "insufficient_quota")
                .or_else(|| e.get("type").and_then(Value::as_str))
                .or_else(|| e.get("code").and_then(Value::as_str))
                .unwrap_or("unknown")
                .to_string();
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            (kind, message)
        }
        Some(Value::String(s)) => ("unknown".to_string(), s.clone()),
        _ => ("unknown".to_string(), body.to_string()),
    };
    (kind, message, rejects_format(body))
}

/// Whether an error body says the server does not support the structured-output format asked (so a weaker one
/// may work), as opposed to refusing this particular schema.
fn rejects_format(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    let about_format = [
        "response_format",
        "json_schema",
        "json_object",
        "structured output",
    ]
    .iter()
    .any(|w| lower.contains(w));
    let not_supported = [
        "not supported",
        "unsupported",
        "does not support",
        "unknown",
        "unrecognized",
        "unrecognised",
        "not recognized",
        "not permitted",
        "not allowed",
    ]
    .iter()
    .any(|w| lower.contains(w));
    // OpenAI's strict mode: "Invalid schema for response_format '…': … 'minimum' is not permitted." The format is
    // supported; the schema is wrong, and a weaker format would only hide that.
    let schema_refused = lower.contains("invalid schema");
    about_format && not_supported && !schema_refused
}

/// Reads a successful chat-completions body into a response (pure).
///
/// # Errors
/// [`LlmError::Protocol`] for a body that is not a completion or has no choice; [`LlmError::Truncated`] when a
/// schema was asked and the answer stopped at `length`; [`LlmError::Refused`] for a refusal or `content_filter`.
pub(crate) fn parse_response(
    provider: &str,
    request: &CompletionRequest,
    body: &str,
) -> Result<CompletionResponse> {
    let wire: WireResponse = serde_json::from_str(body).map_err(|e| LlmError::Protocol {
        provider: provider.to_string(),
        reason: format!("not a chat completion: {e}"),
    })?;
    let Some(choice) = wire.choices.into_iter().next() else {
        return Err(LlmError::Protocol {
            provider: provider.to_string(),
            reason: "no choices in the answer".into(),
        });
    };
    let stop_reason = choice
        .finish_reason
        .as_deref()
        .map_or(StopReason::Other("none".into()), StopReason::from_openai);
    if choice
        .message
        .refusal
        .as_deref()
        .is_some_and(|r| !r.is_empty())
        || stop_reason.is_refusal()
    {
        return Err(LlmError::Refused {
            provider: provider.to_string(),
            stop_reason: if stop_reason.is_refusal() {
                "content_filter"
            } else {
                "refusal"
            }
            .into(),
        });
    }
    if stop_reason.is_truncation() && request.schema.is_some() {
        return Err(LlmError::Truncated {
            provider: provider.to_string(),
            max_tokens: request.max_tokens,
        });
    }
    let text = choice.message.content.unwrap_or_default();
    let json = request
        .schema
        .as_ref()
        .and_then(|_| crate::validate::extract_json(&text));
    let usage = wire.usage.map_or(Usage::default(), |u| Usage {
        input_tokens: u.prompt_tokens,
        output_tokens: u.completion_tokens,
    });
    Ok(CompletionResponse::new(provider, wire.model, json, text, stop_reason).with_usage(usage))
}

#[async_trait]
impl Provider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
    }

    /// # Errors
    /// As [`Provider::complete`], and [`LlmError::InvalidInput`] for a schema name that is not 1 to 64 letters,
    /// digits, `_` or `-` (checked before anything is sent).
    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        crate::request::check_schema_name(request)?;
        let url = format!("{}/chat/completions", self.base_url);
        loop {
            let mode = self.json_mode();
            let body = self.request_body(request, mode);
            debug!(provider = %self.name, model = %self.model, mode = ?mode, messages = request.messages.len(),
                   max_tokens = request.max_tokens, "sending request");
            if request.log_contents {
                debug!(provider = %self.name, body = %body, "request contents");
            }
            let mut headers = vec![("content-type", "application/json".to_string())];
            if let Some(key) = &self.api_key {
                headers.push(("authorization", format!("Bearer {}", key.expose())));
            }
            let started = std::time::Instant::now();
            let reply = http::post_json(
                &self.client,
                &self.name,
                &url,
                headers,
                &body,
                request.timeout,
            )
            .await?;
            debug!(provider = %self.name, status = reply.status, bytes = reply.body.len(),
                   elapsed_ms = started.elapsed().as_millis() as u64, "answer received");
            if request.log_contents {
                debug!(provider = %self.name, body = %reply.body, "answer contents");
            }
            if (200..300).contains(&reply.status) {
                return parse_response(&self.name, request, &reply.body);
            }
            let (kind, message, rejects_format) = error_parts(&reply.body);
            if matches!(reply.status, 400 | 422)
                && rejects_format
                && request.schema.is_some()
                && let Some(weaker) = mode.weaker()
            {
                // Another request may have stepped down already; only step from the mode this one used.
                let _ = self.mode.compare_exchange(
                    mode as u8,
                    weaker as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                warn!(provider = %self.name, from = ?mode, to = ?weaker,
                      "server does not support the structured-output format; asking with a weaker one from now on");
                continue;
            }
            let message = match &self.api_key {
                Some(key) => key.scrub(&message),
                None => message,
            };
            return Err(http::status_error(
                &self.name,
                &reply,
                kind,
                http::clip(&message),
            ));
        }
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
    fn bodies_per_mode() {
        let p = OpenAiProvider::new("m", None).unwrap();
        let strict = p.request_body(&request(), JsonMode::JsonSchema);
        assert_eq!(strict["response_format"]["type"], "json_schema");
        assert_eq!(strict["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            strict["response_format"]["json_schema"]["schema"],
            json!({"type": "object"})
        );
        assert_eq!(
            strict["messages"][0],
            json!({"role": "system", "content": "sys"})
        );
        assert_eq!(strict["max_completion_tokens"], 4096);
        let warm = p.request_body(&request().with_temperature(Some(0.7)), JsonMode::JsonSchema);
        assert_eq!(warm["temperature"].to_string(), "0.7");
        let mut nan = request();
        nan.temperature = Some(f32::NAN);
        assert!(
            p.request_body(&nan, JsonMode::JsonSchema)
                .get("temperature")
                .is_none()
        );
        let object = p.request_body(&request(), JsonMode::JsonObject);
        assert_eq!(object["response_format"], json!({"type": "json_object"}));
        assert!(
            object["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains("JSON schema")
        );
        let plain = p.request_body(&request(), JsonMode::PromptOnly);
        assert!(plain.get("response_format").is_none());
        let local = OpenAiProvider::new("m", None)
            .unwrap()
            .with_base_url("http://127.0.0.1:1/v1/");
        assert_eq!(
            local.request_body(&request(), JsonMode::JsonSchema)["max_tokens"],
            4096
        );
    }

    #[test]
    fn parses_content_truncation_refusal() {
        let ok = r#"{"id":"c","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":"{\"a\":1}","refusal":null},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let r = parse_response("openai", &request(), ok).unwrap();
        assert_eq!(r.json, Some(json!({"a": 1})));
        assert_eq!(r.usage.output_tokens, 4);
        let cut = ok.replace("\"stop\"", "\"length\"");
        assert!(matches!(
            parse_response("openai", &request(), &cut),
            Err(LlmError::Truncated { .. })
        ));
        let filtered = ok.replace("\"stop\"", "\"content_filter\"");
        assert!(matches!(
            parse_response("openai", &request(), &filtered),
            Err(LlmError::Refused { .. })
        ));
        let refusal = ok.replace("\"refusal\":null", "\"refusal\":\"I can't\"");
        assert!(matches!(
            parse_response("openai", &request(), &refusal),
            Err(LlmError::Refused { .. })
        ));
        assert!(matches!(
            parse_response("openai", &request(), r#"{"choices":[]}"#),
            Err(LlmError::Protocol { .. })
        ));
    }

    #[test]
    fn error_bodies_of_openai_and_local_servers() {
        let (kind, message, about) = error_parts(
            r#"{"error":{"message":"Invalid parameter: 'response_format' of type 'json_schema' is not supported","type":"invalid_request_error","param":"response_format","code":null}}"#,
        );
        assert_eq!(kind, "invalid_request_error");
        assert!(message.contains("not supported"));
        assert!(about);
        let (kind, _, _) = error_parts(
            r#"{"error":{"message":"quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
        );
        assert_eq!(kind, "insufficient_quota");
        let (kind, message, about) = error_parts(r#"{"error":"model 'x' not found"}"#);
        assert_eq!(
            (kind.as_str(), message.as_str(), about),
            ("unknown", "model 'x' not found", false)
        );
    }

    #[test]
    fn only_an_unsupported_format_steps_down() {
        for body in [
            r#"{"error":{"message":"Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.","type":"invalid_request_error","param":"response_format","code":null}}"#,
            r#"{"error":{"code":400,"message":"Unsupported response_format type: json_schema","type":"invalid_request_error"}}"#,
            r#"{"error":"unknown field `response_format`"}"#,
            r#"{"object":"error","message":"[{'type': 'extra_forbidden', 'loc': ('body', 'response_format'), 'msg': 'Extra inputs are not permitted'}]","type":"BadRequestError","code":400}"#,
        ] {
            assert!(rejects_format(body), "{body}");
        }
        for body in [
            // OpenAI strict mode refusing this schema: the format is supported, the schema is wrong.
            r#"{"error":{"message":"Invalid schema for response_format 'report_query_analysis': In context=('properties', 'score'), 'minimum' is not permitted.","type":"invalid_request_error","param":"response_format","code":null}}"#,
            r#"{"error":{"message":"Invalid schema for response_format 'x': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'.","type":"invalid_request_error","param":"response_format","code":null}}"#,
            r#"{"error":{"message":"'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.","type":"invalid_request_error","param":"messages","code":null}}"#,
            r#"{"error":{"message":"model not found","type":"invalid_request_error"}}"#,
        ] {
            assert!(!rejects_format(body), "{body}");
        }
    }

    /// A JSON value of a few levels: what a broken or hostile server might put anywhere in a body.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Chat-completion bodies: mostly well-formed `choices`, with each part sometimes replaced by anything.
    fn completion_body() -> impl Strategy<Value = Value> {
        let content = prop_oneof![
            ".{0,80}".prop_map(Value::from),
            any_json().prop_map(|v| Value::from(v.to_string())),
            any_json(),
        ];
        let finish = prop_oneof![
            Just(json!("stop")),
            Just(json!("length")),
            Just(json!("content_filter")),
            Just(json!("tool_calls")),
            Just(Value::Null),
            any_json(),
        ];
        let refusal = prop_oneof![
            Just(Value::Null),
            ".{0,20}".prop_map(Value::from),
            any_json()
        ];
        let usage = prop_oneof![
            Just(json!({"prompt_tokens": 3, "completion_tokens": 4})),
            (any::<i64>(), any::<f64>())
                .prop_map(|(p, c)| json!({"prompt_tokens": p, "completion_tokens": c})),
            any_json(),
        ];
        let choice = (content, finish, refusal).prop_map(|(content, finish, refusal)| {
            json!({"index": 0, "message": {"role": "assistant", "content": content, "refusal": refusal},
                   "finish_reason": finish})
        });
        let choices = prop_oneof![
            proptest::collection::vec(choice, 0..3).prop_map(Value::from),
            any_json(),
        ];
        (choices, usage, any_json()).prop_map(|(choices, usage, model)| {
            json!({"id": "c", "object": "chat.completion", "model": model, "choices": choices,
                   "usage": usage})
        })
    }

    proptest! {
        #[test]
        fn parsing_never_panics(body in ".{0,300}") {
            let _ = parse_response("openai", &request(), &body);
            let _ = error_parts(&body);
        }

        #[test]
        fn structured_bodies_parse_or_fail_typed(body in completion_body()) {
            let text = body.to_string();
            let _ = error_parts(&text);
            match parse_response("openai", &request(), &text) {
                Ok(r) => {
                    // A well-formed first choice: its text is the content, and JSON is found only in it.
                    let content = body["choices"][0]["message"]["content"].as_str().unwrap_or_default();
                    prop_assert_eq!(&r.text, content);
                    prop_assert_eq!(r.json, crate::validate::extract_json(content));
                }
                Err(e) => prop_assert!(
                    matches!(e, LlmError::Protocol { .. } | LlmError::Truncated { .. } | LlmError::Refused { .. }),
                    "{e:?}"
                ),
            }
        }
    }
}
