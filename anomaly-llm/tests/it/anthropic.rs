//! What only the Anthropic Messages API does.

use anomaly_llm::{
    AnthropicProvider, CompletionRequest, LlmError, Provider, Retrying, Secret, StopReason,
};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{AnthropicWire, KEY, Wire, bodies, fast_retry};

async fn server(status: u16, body: serde_json::Value) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/messages"))
        .and(header("anthropic-version", "2023-06-01"))
        .and(header("x-api-key", KEY))
        .respond_with(ResponseTemplate::new(status).set_body_json(body))
        .mount(&server)
        .await;
    server
}

fn claude(base: &str) -> AnthropicProvider {
    AnthropicProvider::new(Secret::new(KEY), "claude-test-model")
        .unwrap()
        .with_base_url(format!("{base}/"))
}

#[tokio::test]
async fn free_text_answers_keep_their_content_blocks() {
    let s = server(200, AnthropicWire::text("Hello! How can I help?")).await;
    let r = claude(&s.uri())
        .complete(&CompletionRequest::new("", "hi").with_temperature(None))
        .await
        .unwrap();
    assert_eq!(r.text, "Hello! How can I help?");
    assert_eq!(r.json, None);
    assert_eq!(r.stop_reason, StopReason::EndTurn);
    let sent = &bodies(&s).await[0];
    assert!(
        sent.get("system").is_none()
            && sent.get("tools").is_none()
            && sent.get("temperature").is_none()
    );
    assert_eq!(
        sent["messages"],
        json!([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    );
}

#[tokio::test]
async fn an_overloaded_error_type_on_429_is_overload() {
    let s = server(429, AnthropicWire::error("overloaded_error", "Overloaded")).await;
    let err = claude(&s.uri())
        .complete(&CompletionRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Overloaded { status: 429, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_refusal_is_typed() {
    let mut body = AnthropicWire::text("I can't help with that.");
    body["stop_reason"] = json!("refusal");
    let s = server(200, body).await;
    let err = claude(&s.uri())
        .complete(&CompletionRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn x_should_retry_false_stops_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("x-should-retry", "false")
                .set_body_json(AnthropicWire::error("api_error", "Internal server error")),
        )
        .mount(&server)
        .await;
    let err = Retrying::new(claude(&server.uri()), fast_retry(3))
        .complete(&CompletionRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
    assert_eq!(bodies(&server).await.len(), 1);
}

#[tokio::test]
async fn a_non_json_error_page_is_still_a_typed_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(502).set_body_string("<html><body>Bad gateway</body></html>"),
        )
        .mount(&server)
        .await;
    let err = claude(&server.uri())
        .complete(&CompletionRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LlmError::Api { status: 502, retryable: true, kind, .. } if kind == "unknown"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_body_that_is_not_a_message_is_a_protocol_error() {
    let s = server(200, json!({"unexpected": true, "content": "not a list"})).await;
    let err = claude(&s.uri())
        .complete(&CompletionRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Protocol { .. }), "{err:?}");
}

#[test]
fn debug_and_errors_never_show_the_key() {
    let p = claude("http://127.0.0.1:1");
    let shown = format!("{p:?}");
    assert!(!shown.contains(KEY) && shown.contains("***"), "{shown}");
    let err = AnthropicProvider::new(Secret::new(KEY), " ").unwrap_err();
    assert!(err.to_string().contains("CLAUDE_MODEL"));
}
