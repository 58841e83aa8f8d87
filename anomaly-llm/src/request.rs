//! What a provider is asked ([`CompletionRequest`]) and what it answers ([`CompletionResponse`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{LlmError, Result, SkipReason};
use crate::logs::LogBatch;
use crate::query::QueryBatch;

/// Who wrote a message of the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The caller.
    User,
    /// The model (earlier answers, for example the one a repair request quotes).
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

impl Message {
    /// A message from the caller.
    pub fn user(content: impl Into<String>) -> Self {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    /// A message from the model.
    pub fn assistant(content: impl Into<String>) -> Self {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

/// The JSON shape the answer must have: sent to the model (a forced tool's `input_schema` for Anthropic,
/// `response_format.json_schema` for OpenAI-compatible servers) and checked by [`validate`](crate::validate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSchema {
    /// A name of letters, digits, `_` and `-` (1 to 64): the tool's or the `json_schema`'s name. The HTTP
    /// providers refuse another with [`LlmError::InvalidInput`](crate::LlmError::InvalidInput) before sending.
    pub name: String,
    /// What the answer is, for the model.
    pub description: String,
    /// A JSON Schema of an object (the subset [`validate::validate`](crate::validate::validate) checks).
    pub schema: Value,
}

/// Whether `name` is a valid `json_schema` (and tool) name: 1 to 64 of `a-z`, `A-Z`, `0-9`, `_` and `-`.
pub(crate) fn valid_schema_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// [`LlmError::InvalidInput`] for a schema whose name the APIs refuse.
pub(crate) fn check_schema_name(request: &CompletionRequest) -> Result<()> {
    match &request.schema {
        Some(schema) if !valid_schema_name(&schema.name) => Err(LlmError::InvalidInput {
            field: "schema.name",
            reason: format!(
                "{:?} is not 1 to 64 letters, digits, `_` or `-`",
                schema.name.chars().take(80).collect::<String>()
            ),
        }),
        _ => Ok(()),
    }
}

/// The temperature as sent: `None` for a missing or non-finite one, else rounded to four decimals as an `f64`
/// (so `0.7f32` goes out as `0.7`, not `0.699999988079071`) and clamped to `[0, max]`.
pub(crate) fn wire_temperature(temperature: Option<f32>, max: f64) -> Option<f64> {
    let t = f64::from(temperature?);
    t.is_finite()
        .then(|| ((t * 1e4).round() / 1e4).clamp(0.0, max))
}

/// The structured input behind a request, for providers that answer from data rather than from the prompt
/// (the [`OfflineProvider`](crate::OfflineProvider)). HTTP providers ignore it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "task", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Task {
    /// One batch of a query analysis.
    Query(Box<QueryBatch>),
    /// One batch of a log analysis.
    Logs(Box<LogBatch>),
}

/// A completion request: system prompt, messages, the expected answer schema and limits.
///
/// ```
/// use std::time::Duration;
/// use anomaly_llm::{CompletionRequest, OutputSchema};
/// use serde_json::json;
///
/// let request = CompletionRequest::new("You classify log lines.", "Classify: disk full")
///     .with_schema(OutputSchema {
///         name: "verdict".into(),
///         description: "the classification".into(),
///         schema: json!({"type": "object", "properties": {"label": {"type": "string"}},
///                        "required": ["label"], "additionalProperties": false}),
///     })
///     .with_max_tokens(256)
///     .with_timeout(Duration::from_secs(20));
/// assert_eq!(request.max_tokens, 256);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CompletionRequest {
    /// Instructions; never holds untrusted data (that goes into the user message's delimited blocks).
    pub system: String,
    /// The conversation, starting with the caller's message.
    pub messages: Vec<Message>,
    /// The answer's JSON schema; `None` for free text.
    pub schema: Option<OutputSchema>,
    /// Most tokens the answer may use (default 4,096).
    pub max_tokens: u32,
    /// Sampling temperature; `None` leaves the provider's default (default `Some(0.0)`).
    pub temperature: Option<f32>,
    /// How long one HTTP attempt may take, headers and body (default 60 s).
    pub timeout: Duration,
    /// The structured input, for providers that do not read prompts.
    pub task: Option<Task>,
    /// Whether providers may log the prompt and the answer at `debug` level (default `false`: only sizes,
    /// statuses and timings are logged).
    pub log_contents: bool,
}

impl CompletionRequest {
    /// A request of one user message, with the defaults above.
    pub fn new(system: impl Into<String>, user: impl Into<String>) -> Self {
        CompletionRequest {
            system: system.into(),
            messages: vec![Message::user(user)],
            schema: None,
            max_tokens: 4096,
            temperature: Some(0.0),
            timeout: Duration::from_secs(60),
            task: None,
            log_contents: false,
        }
    }

    /// Sets the expected answer schema.
    pub fn with_schema(mut self, schema: OutputSchema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Sets `max_tokens`.
    pub fn with_max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets the temperature (`None`: the provider's default). A NaN or infinite temperature is taken as `None`,
    /// and a finite one is clamped to `[0, 2]` (OpenAI's range; the Anthropic provider clamps further to its
    /// `[0, 1]` when it sends the request).
    ///
    /// ```
    /// use anomaly_llm::CompletionRequest;
    ///
    /// let r = CompletionRequest::new("s", "u");
    /// assert_eq!(r.clone().with_temperature(Some(0.7)).temperature, Some(0.7));
    /// assert_eq!(r.clone().with_temperature(Some(5.0)).temperature, Some(2.0));
    /// assert_eq!(r.clone().with_temperature(Some(-1.0)).temperature, Some(0.0));
    /// assert_eq!(r.with_temperature(Some(f32::NAN)).temperature, None);
    /// ```
    pub fn with_temperature(mut self, temperature: Option<f32>) -> Self {
        self.temperature = temperature
            .filter(|t| t.is_finite())
            .map(|t| t.clamp(0.0, 2.0));
        self
    }

    /// Sets the per-attempt timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Attaches the structured input.
    pub fn with_task(mut self, task: Task) -> Self {
        self.task = Some(task);
        self
    }

    /// Allows providers to log prompt and answer contents at `debug` level.
    pub fn with_log_contents(mut self, log_contents: bool) -> Self {
        self.log_contents = log_contents;
        self
    }

    /// SHA-256 of everything that decides the answer: system prompt, messages, schema, `max_tokens`,
    /// temperature and task, serialised with sorted object keys. Timeout and logging do not count.
    pub fn cache_key(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut feed = |label: &str, v: &Value| {
            h.update(label.as_bytes());
            h.update([0]);
            let mut s = String::new();
            canonical_json(v, &mut s);
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        feed("system", &Value::String(self.system.clone()));
        feed(
            "messages",
            &serde_json::to_value(&self.messages).unwrap_or_default(),
        );
        feed(
            "schema",
            &serde_json::to_value(&self.schema).unwrap_or_default(),
        );
        feed("max_tokens", &Value::from(self.max_tokens));
        feed(
            "temperature",
            &self
                .temperature
                .map_or(Value::Null, |t| Value::from(f64::from(t))),
        );
        feed(
            "task",
            &serde_json::to_value(&self.task).unwrap_or_default(),
        );
        h.finalize().into()
    }
}

/// Writes `v` as JSON with object keys sorted, whatever the map type's order.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It finished (Anthropic `end_turn`, OpenAI `stop`).
    EndTurn,
    /// It reached `max_tokens` (Anthropic `max_tokens`, OpenAI `length`).
    MaxTokens,
    /// It reached the context window (Anthropic `model_context_window_exceeded`).
    ContextWindowExceeded,
    /// It emitted a stop sequence.
    StopSequence,
    /// It called a tool (Anthropic `tool_use`, OpenAI `tool_calls`); the forced answer tool ends this way.
    ToolUse,
    /// It declined (Anthropic `refusal`).
    Refusal,
    /// A server-tool loop paused (Anthropic `pause_turn`).
    PauseTurn,
    /// The provider's content filter cut the answer (OpenAI `content_filter`).
    ContentFilter,
    /// A value this crate does not know, as the provider spelled it.
    Other(String),
}

impl StopReason {
    /// Maps Anthropic's `stop_reason`.
    pub fn from_anthropic(s: &str) -> Self {
        match s {
            "end_turn" => StopReason::EndTurn,
            "max_tokens" => StopReason::MaxTokens,
            "model_context_window_exceeded" => StopReason::ContextWindowExceeded,
            "stop_sequence" => StopReason::StopSequence,
            "tool_use" => StopReason::ToolUse,
            "refusal" => StopReason::Refusal,
            "pause_turn" => StopReason::PauseTurn,
            other => StopReason::Other(other.to_string()),
        }
    }

    /// Maps an OpenAI-compatible `finish_reason`.
    pub fn from_openai(s: &str) -> Self {
        match s {
            "stop" => StopReason::EndTurn,
            "length" => StopReason::MaxTokens,
            "content_filter" => StopReason::ContentFilter,
            "tool_calls" | "function_call" => StopReason::ToolUse,
            other => StopReason::Other(other.to_string()),
        }
    }

    /// Whether the answer was cut by a token limit.
    pub fn is_truncation(&self) -> bool {
        matches!(
            self,
            StopReason::MaxTokens | StopReason::ContextWindowExceeded
        )
    }

    /// Whether the model declined to answer.
    pub fn is_refusal(&self) -> bool {
        matches!(self, StopReason::Refusal | StopReason::ContentFilter)
    }
}

/// Tokens used, as the provider counted them (zero for the offline provider and cached answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Answer tokens.
    pub output_tokens: u64,
}

impl Usage {
    /// Adds another request's usage.
    pub fn add(&mut self, other: Usage) {
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }
}

/// A provider's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompletionResponse {
    /// The answer as JSON: the forced tool's input, or the text parsed as JSON; `None` when the text is not JSON.
    /// After [`complete_validated`](crate::validate::complete_validated) it is present and matches the schema.
    pub json: Option<Value>,
    /// The answer's text blocks, concatenated (empty for a pure tool answer).
    pub text: String,
    /// The model that answered, as the provider named it.
    pub model: String,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Tokens used (summed over a repair attempt).
    pub usage: Usage,
    /// The provider that answered.
    pub provider: String,
    /// Providers of a fallback chain passed over before this one answered, in order: those tried that failed and
    /// those [`skipped`](Self::skipped) without being asked. Non-empty means the answer is a degraded one.
    pub fallback_from: Vec<String>,
    /// The providers of [`fallback_from`](Self::fallback_from) that were not asked at all (circuit open, or no
    /// free call slot), in order, with why. A provider in `fallback_from` and not here was tried and failed.
    #[serde(default)]
    pub skipped: Vec<SkippedLink>,
    /// Whether the answer came from a [`Cached`](crate::Cached) provider's cache.
    pub cached: bool,
}

/// A link of a fallback chain that was skipped without being asked.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SkippedLink {
    /// The provider's name.
    pub provider: String,
    /// Why it was not asked.
    pub reason: SkipReason,
}

impl CompletionResponse {
    /// A response with the given parts, usage zero, not cached, no fallback.
    pub fn new(
        provider: impl Into<String>,
        model: impl Into<String>,
        json: Option<Value>,
        text: impl Into<String>,
        stop_reason: StopReason,
    ) -> Self {
        CompletionResponse {
            json,
            text: text.into(),
            model: model.into(),
            stop_reason,
            usage: Usage::default(),
            provider: provider.into(),
            fallback_from: Vec::new(),
            skipped: Vec::new(),
            cached: false,
        }
    }

    /// Sets the usage.
    pub fn with_usage(mut self, usage: Usage) -> Self {
        self.usage = usage;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cache_key_ignores_key_order_timeout_and_logging_but_not_content() {
        let schema = |v: Value| OutputSchema {
            name: "s".into(),
            description: "d".into(),
            schema: v,
        };
        let a = CompletionRequest::new("sys", "hello")
            .with_schema(schema(json!({"type": "object", "required": []})));
        let mut b = CompletionRequest::new("sys", "hello")
            .with_schema(schema(json!({"required": [], "type": "object"})))
            .with_timeout(Duration::from_millis(5))
            .with_log_contents(true);
        assert_eq!(a.cache_key(), b.cache_key());
        b.messages[0].content.push('!');
        assert_ne!(a.cache_key(), b.cache_key());
        let c = a.clone().with_max_tokens(10);
        assert_ne!(a.cache_key(), c.cache_key());
        let d = a.clone().with_temperature(None);
        assert_ne!(a.cache_key(), d.cache_key());
    }

    #[test]
    fn schema_names_follow_the_apis_pattern() {
        for ok in ["report_query_analysis", "a", "A-b_9", &"x".repeat(64)] {
            assert!(valid_schema_name(ok), "{ok}");
        }
        for bad in [
            "",
            "report query",
            "report.v1",
            "rapport_é",
            &"x".repeat(65),
        ] {
            assert!(!valid_schema_name(bad), "{bad}");
        }
    }

    #[test]
    fn temperatures_go_out_clean() {
        assert_eq!(wire_temperature(Some(0.7), 2.0), Some(0.7));
        assert_eq!(
            serde_json::json!(wire_temperature(Some(0.7), 2.0)).to_string(),
            "0.7"
        );
        assert_eq!(wire_temperature(Some(0.3), 2.0), Some(0.3));
        assert_eq!(wire_temperature(Some(1.5), 1.0), Some(1.0));
        assert_eq!(wire_temperature(Some(-0.5), 1.0), Some(0.0));
        assert_eq!(wire_temperature(Some(f32::NAN), 1.0), None);
        assert_eq!(wire_temperature(Some(f32::INFINITY), 1.0), None);
        assert_eq!(wire_temperature(None, 1.0), None);
    }

    #[test]
    fn stop_reasons_map_both_wire_spellings() {
        assert_eq!(StopReason::from_anthropic("tool_use"), StopReason::ToolUse);
        assert!(StopReason::from_anthropic("max_tokens").is_truncation());
        assert!(StopReason::from_anthropic("model_context_window_exceeded").is_truncation());
        assert!(StopReason::from_anthropic("refusal").is_refusal());
        assert_eq!(
            StopReason::from_anthropic("pause_turn"),
            StopReason::PauseTurn
        );
        assert_eq!(StopReason::from_openai("stop"), StopReason::EndTurn);
        assert!(StopReason::from_openai("length").is_truncation());
        assert!(StopReason::from_openai("content_filter").is_refusal());
        assert_eq!(
            StopReason::from_openai("weird"),
            StopReason::Other("weird".into())
        );
    }
}
