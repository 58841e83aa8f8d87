//! What only OpenAI-compatible servers do: optional bearer token, and the step down from `json_schema`.

use anomaly_llm::query::{QueryAnalyzer, query_schema};
use anomaly_llm::{
    CompletionRequest, JsonMode, LlmError, OpenAiProvider, Provider, Secret, TokenLimitField,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{OpenAiWire, answer_for, bodies, orders_context, prompt_reader};

fn query_request() -> CompletionRequest {
    let analyzer = QueryAnalyzer::new(prompt_reader());
    analyzer.request(&analyzer.batches(&orders_context(2, "analyst"))[0])
}

/// A local server (llama.cpp-like) that rejects `response_format` types it lacks with a 400.
async fn server_without(unsupported: &'static [&'static str]) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(move |request: &Request| {
            let body: Value = request.body_json().unwrap();
            let kind = body["response_format"]["type"].as_str().unwrap_or("none");
            if unsupported.contains(&kind) {
                ResponseTemplate::new(400).set_body_json(json!({"error": {
                    "code": 400,
                    "message": format!("response_format type '{kind}' is not supported"),
                    "type": "invalid_request_error"
                }}))
            } else {
                ResponseTemplate::new(200).set_body_json(OpenAiWire::completion(
                    &format!("```json\n{}\n```", answer_for(&[1])),
                    "stop",
                ))
            }
        })
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn local_servers_need_no_key_and_get_max_tokens() {
    let server = server_without(&[]).await;
    let local = OpenAiProvider::new("llama3.1:8b", None)
        .unwrap()
        .with_base_url(format!("{}/v1", server.uri()));
    let r = local.complete_validated(&query_request()).await.unwrap();
    assert_eq!(r.json, Some(answer_for(&[1])));
    let received = server.received_requests().await.unwrap();
    assert!(received[0].headers.get("authorization").is_none());
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(body["max_tokens"], 4096);
    assert!(body.get("max_completion_tokens").is_none());
    assert_eq!(body["model"], "llama3.1:8b");
    assert_eq!(body["messages"][0]["role"], "system");
}

#[tokio::test]
async fn a_server_without_json_schema_steps_down_once_and_remembers() {
    let server = server_without(&["json_schema"]).await;
    let p = OpenAiProvider::new("m", None)
        .unwrap()
        .with_base_url(format!("{}/v1", server.uri()));
    assert!(p.complete_validated(&query_request()).await.is_ok());
    assert_eq!(p.json_mode(), JsonMode::JsonObject);
    assert!(p.complete_validated(&query_request()).await.is_ok());
    let sent = bodies(&server).await;
    let kinds: Vec<&str> = sent
        .iter()
        .map(|b| b["response_format"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["json_schema", "json_object", "json_object"],
        "the step down is remembered"
    );
    let system = sent[1]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains(&query_schema().schema.to_string()),
        "the schema moves into the prompt"
    );
}

#[tokio::test]
async fn a_server_without_any_response_format_gets_prompt_only_requests() {
    let server = server_without(&["json_schema", "json_object"]).await;
    let p = OpenAiProvider::new("m", None)
        .unwrap()
        .with_base_url(format!("{}/v1", server.uri()));
    let r = p.complete_validated(&query_request()).await.unwrap();
    assert_eq!(
        r.json,
        Some(answer_for(&[1])),
        "JSON is found inside a Markdown fence"
    );
    assert_eq!(p.json_mode(), JsonMode::PromptOnly);
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 3);
    assert!(sent[2].get("response_format").is_none());
}

#[tokio::test]
async fn other_400s_do_not_step_down() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": {"message": "model 'nope' not found", "type": "invalid_request_error"}}),
        ))
        .mount(&server)
        .await;
    let p = OpenAiProvider::new("nope", None)
        .unwrap()
        .with_base_url(server.uri());
    let err = p.complete_validated(&query_request()).await.unwrap_err();
    assert!(matches!(err, LlmError::Api { status: 400, .. }), "{err:?}");
    assert_eq!(p.json_mode(), JsonMode::JsonSchema);
    assert_eq!(bodies(&server).await.len(), 1);
}

#[tokio::test]
async fn refusals_and_content_filters_are_typed() {
    for (content_refusal, finish) in [
        (Some("I can't assist with that."), "stop"),
        (None, "content_filter"),
    ] {
        let mut body = OpenAiWire::completion("", finish);
        if let Some(r) = content_refusal {
            body["choices"][0]["message"]["refusal"] = json!(r);
            body["choices"][0]["message"]["content"] = Value::Null;
        }
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&server)
            .await;
        let p = OpenAiProvider::new("m", Some(Secret::new("k")))
            .unwrap()
            .with_base_url(server.uri());
        let err = p.complete(&query_request()).await.unwrap_err();
        assert!(matches!(err, LlmError::Refused { .. }), "{finish}: {err:?}");
    }
}

#[tokio::test]
async fn insufficient_quota_is_not_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({"error": {
            "message": "You exceeded your current quota", "type": "insufficient_quota", "param": null,
            "code": "insufficient_quota"}})))
        .mount(&server)
        .await;
    let p = OpenAiProvider::new("m", None)
        .unwrap()
        .with_base_url(server.uri());
    let err = p
        .complete(&CompletionRequest::new("", "hi"))
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err:?}");
}

#[test]
fn openai_itself_gets_max_completion_tokens_unless_told_otherwise() {
    let p = OpenAiProvider::new("gpt-x", None).unwrap();
    let body = p.request_body(&CompletionRequest::new("", "hi"), JsonMode::JsonSchema);
    assert_eq!(body["max_completion_tokens"], 4096);
    let p = p.with_token_limit_field(TokenLimitField::MaxTokens);
    let body = p.request_body(&CompletionRequest::new("", "hi"), JsonMode::JsonSchema);
    assert_eq!(body["max_tokens"], 4096);
}

#[tokio::test]
async fn a_refused_schema_is_an_error_and_not_a_step_down() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "Invalid schema for response_format 'report_query_analysis': In context=('properties', \
                        'score'), 'minimum' is not permitted.",
            "type": "invalid_request_error",
            "param": "response_format",
            "code": null
        }})))
        .mount(&server)
        .await;
    let p = OpenAiProvider::new("m", Some(Secret::new("sk-x")))
        .unwrap()
        .with_base_url(format!("{}/v1", server.uri()));
    let err = p.complete(&query_request()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Api { status: 400, message, .. } if message.contains("Invalid schema")),
        "{err:?}"
    );
    assert_eq!(
        p.json_mode(),
        JsonMode::JsonSchema,
        "the provider keeps json_schema"
    );
    assert_eq!(bodies(&server).await.len(), 1);
}

#[tokio::test]
async fn a_schema_name_the_apis_refuse_is_not_sent() {
    let server = server_without(&[]).await;
    let p = OpenAiProvider::new("m", None)
        .unwrap()
        .with_base_url(format!("{}/v1", server.uri()));
    let mut request = query_request();
    request.schema.as_mut().unwrap().name = "report query analysis".into();
    let err = p.complete(&request).await.unwrap_err();
    assert!(
        matches!(
            &err,
            LlmError::InvalidInput {
                field: "schema.name",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(bodies(&server).await.is_empty());
}

#[tokio::test]
async fn an_answer_body_past_the_cap_is_a_protocol_error() {
    let server = MockServer::start().await;
    let huge = format!(
        "{{\"choices\": [], \"padding\": \"{}\"}}",
        "x".repeat(16 * 1024 * 1024)
    );
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(huge, "application/json"))
        .mount(&server)
        .await;
    let p = OpenAiProvider::new("m", None)
        .unwrap()
        .with_base_url(format!("{}/v1", server.uri()));
    let err = p.complete(&query_request()).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Protocol { reason, .. } if reason.contains("larger than 16 MiB")),
        "{err:?}"
    );
}
