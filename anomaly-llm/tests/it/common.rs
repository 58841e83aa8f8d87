//! Shared test helpers: the two wire formats, a scripted provider, query contexts.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use anomaly_core::records::flatten::Limits;
use anomaly_core::stats::{CompareThresholds, DatasetStats};
use anomaly_llm::query::{FlaggedRecord, QueryContext, StatisticalVerdict};
use anomaly_llm::{
    AnthropicProvider, CompletionRequest, CompletionResponse, LlmError, OpenAiProvider, Provider,
    Result, RetryPolicy, Secret, StopReason, async_trait,
};
use serde_json::{Value, json};
use wiremock::Request;

/// The key the HTTP providers are built with.
pub(crate) const KEY: &str = "sk-test-0123456789abcdef";

/// A fast retry policy: tests never wait long, and never assert on timing.
pub(crate) fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(2),
        seed: Some(7),
    }
}

/// What differs between the HTTP providers' wire formats.
pub(crate) trait Wire: Send + Sync + 'static {
    /// The provider's name.
    const NAME: &'static str;
    /// The path requests go to.
    const PATH: &'static str;
    /// The model the provider is built with.
    const MODEL: &'static str;
    /// A provider at `base`.
    fn provider(base: &str) -> Box<dyn Provider>;
    /// A successful structured answer holding `json`.
    fn success(json: &Value) -> Value;
    /// A successful answer of plain text (no structured part).
    fn text(text: &str) -> Value;
    /// An answer cut at the token limit.
    fn truncated() -> Value;
    /// An error body.
    fn error(kind: &str, message: &str) -> Value;
    /// The answer schema a request carried.
    fn schema_sent(body: &Value) -> Value;
    /// The model a request named.
    fn model_sent(body: &Value) -> String {
        body["model"].as_str().unwrap_or_default().to_string()
    }
    /// The text of every message of a request (system prompt included), concatenated.
    fn prompt_sent(body: &Value) -> String;
    /// Checks the authentication and version headers.
    fn check_headers(request: &Request);
}

/// Anthropic's Messages API.
pub(crate) struct AnthropicWire;

impl Wire for AnthropicWire {
    const NAME: &'static str = "anthropic";
    const PATH: &'static str = "/v1/messages";
    const MODEL: &'static str = "claude-test-model";

    fn provider(base: &str) -> Box<dyn Provider> {
        Box::new(
            AnthropicProvider::new(Secret::new(KEY), "claude-test-model")
                .unwrap()
                .with_base_url(base),
        )
    }

    fn success(json: &Value) -> Value {
        json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": "claude-test-model",
            "content": [{"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "report_query_analysis",
                         "input": json}],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 2095, "output_tokens": 503}
        })
    }

    fn text(text: &str) -> Value {
        json!({
            "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-test-model",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 20}
        })
    }

    fn truncated() -> Value {
        json!({
            "id": "msg_03", "type": "message", "role": "assistant", "model": "claude-test-model",
            "content": [{"type": "tool_use", "id": "toolu_02", "name": "report_query_analysis",
                         "input": {"anomalies_detected": true}}],
            "stop_reason": "max_tokens", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 4096}
        })
    }

    fn error(kind: &str, message: &str) -> Value {
        json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
    }

    fn schema_sent(body: &Value) -> Value {
        assert_eq!(body["tool_choice"]["type"], "tool");
        assert_eq!(body["tool_choice"]["name"], body["tools"][0]["name"]);
        body["tools"][0]["input_schema"].clone()
    }

    fn prompt_sent(body: &Value) -> String {
        let mut out = body["system"].as_str().unwrap_or_default().to_string();
        for m in body["messages"].as_array().unwrap() {
            for block in m["content"].as_array().unwrap() {
                out.push('\n');
                out.push_str(block["text"].as_str().unwrap_or_default());
            }
        }
        out
    }

    fn check_headers(request: &Request) {
        assert_eq!(request.headers.get("x-api-key").unwrap(), KEY);
        assert_eq!(
            request.headers.get("anthropic-version").unwrap(),
            "2023-06-01"
        );
        assert!(
            request
                .headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        assert!(request.headers.get("authorization").is_none());
    }
}

/// OpenAI-compatible chat completions.
pub(crate) struct OpenAiWire;

impl Wire for OpenAiWire {
    const NAME: &'static str = "openai";
    const PATH: &'static str = "/v1/chat/completions";
    const MODEL: &'static str = "gpt-test-model";

    fn provider(base: &str) -> Box<dyn Provider> {
        Box::new(
            OpenAiProvider::new("gpt-test-model", Some(Secret::new(KEY)))
                .unwrap()
                .with_base_url(format!("{base}/v1")),
        )
    }

    fn success(json: &Value) -> Value {
        Self::completion(&json.to_string(), "stop")
    }

    fn text(text: &str) -> Value {
        Self::completion(text, "stop")
    }

    fn truncated() -> Value {
        Self::completion("{\"anomalies_detected\": true, \"findings\": [", "length")
    }

    fn error(kind: &str, message: &str) -> Value {
        json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
    }

    fn schema_sent(body: &Value) -> Value {
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        body["response_format"]["json_schema"]["schema"].clone()
    }

    fn prompt_sent(body: &Value) -> String {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn check_headers(request: &Request) {
        assert_eq!(
            request.headers.get("authorization").unwrap(),
            &format!("Bearer {KEY}")
        );
        assert!(request.headers.get("x-api-key").is_none());
    }
}

impl OpenAiWire {
    pub(crate) fn completion(content: &str, finish_reason: &str) -> Value {
        json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-test-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null},
                         "logprobs": null, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29}
        })
    }
}

/// A provider that replays scripted answers and records the requests it got.
pub(crate) struct Scripted {
    name: String,
    answers: Mutex<VecDeque<Result<Value>>>,
    requests: Mutex<Vec<CompletionRequest>>,
}

/// A provider that reads prompts as a model does (and answers nothing), for tests of what a model is sent: the
/// offline rules skip rendering.
pub(crate) fn prompt_reader() -> Scripted {
    Scripted::new("model", Vec::new())
}

impl Scripted {
    /// Answers `answers` in order (JSON, or an error), then fails with `Unsupported`.
    pub(crate) fn new(name: &str, answers: Vec<Result<Value>>) -> Self {
        Scripted {
            name: name.to_string(),
            answers: Mutex::new(answers.into()),
            requests: Mutex::new(Vec::new()),
        }
    }

    /// The requests received.
    pub(crate) fn requests(&self) -> Vec<CompletionRequest> {
        self.requests.lock().unwrap().clone()
    }
}

#[async_trait]
impl Provider for Scripted {
    fn name(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: &CompletionRequest) -> Result<CompletionResponse> {
        self.requests.lock().unwrap().push(request.clone());
        match self.answers.lock().unwrap().pop_front() {
            Some(Ok(json)) => {
                let text = json.to_string();
                Ok(CompletionResponse::new(
                    &self.name,
                    "scripted",
                    Some(json),
                    text,
                    StopReason::EndTurn,
                ))
            }
            Some(Err(e)) => Err(e),
            None => Err(LlmError::Unsupported {
                provider: self.name.clone(),
                reason: "script exhausted".into(),
            }),
        }
    }
}

/// A valid query-analysis answer with one finding per index.
pub(crate) fn answer_for(indices: &[usize]) -> Value {
    json!({
        "anomalies_detected": !indices.is_empty(),
        "findings": indices.iter().map(|i| json!({
            "record_index": i, "reason": "amount far above the customer's usual", "risk_level": "medium",
            "category": "range_violation"
        })).collect::<Vec<_>>(),
        "query_pattern_analysis": {"typical": true, "concerns": [], "recommendations": []},
        "security_concerns": []
    })
}

/// An order record.
pub(crate) fn order(i: usize, amount: f64) -> Value {
    json!({"id": i, "amount": amount, "country": "FR", "status": "paid"})
}

/// A query context over orders, with a history of typical orders, `n_flagged` flagged records (indices 0..) and
/// the given role.
pub(crate) fn orders_context(n_flagged: usize, role: &str) -> QueryContext {
    let history_rows: Vec<Value> = (0..200).map(|i| order(i, 20.0 + (i % 50) as f64)).collect();
    let mut history = DatasetStats::new();
    for chunk in history_rows.chunks(20) {
        history.merge(&DatasetStats::from_records(chunk, &Limits::default()).unwrap());
    }
    let rows: Vec<Value> = (0..n_flagged.max(20))
        .map(|i| {
            order(
                i,
                if i < n_flagged {
                    5_000.0 + i as f64
                } else {
                    30.0
                },
            )
        })
        .collect();
    let stats = DatasetStats::from_records(&rows, &Limits::default()).unwrap();
    let comparison = history.compare(&stats, &CompareThresholds::default());
    let mut ctx = QueryContext::new(
        "query RecentOrders { orders(first: 20) { id amount country status } }",
        stats,
    );
    ctx.operation_name = Some("RecentOrders".into());
    ctx.role = Some(role.into());
    ctx.variables = json!({});
    ctx.comparison = Some(comparison);
    ctx.flagged = rows[..n_flagged]
        .iter()
        .enumerate()
        .map(|(i, r)| FlaggedRecord {
            index: i,
            record: r.clone(),
            verdict: Some(StatisticalVerdict {
                detector: "isolation_forest".into(),
                score: 0.72,
                threshold: 0.6,
                is_anomaly: true,
                rationale: Some("`amount` is above the typical 20–69".into()),
            }),
        })
        .collect();
    ctx
}

/// The request bodies a mock server received, as JSON.
pub(crate) async fn bodies(server: &wiremock::MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.body_json::<Value>().unwrap())
        .collect()
}
