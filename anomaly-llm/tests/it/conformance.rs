//! One suite for every HTTP provider: the same behaviour on each wire format.

use std::collections::BTreeSet;
use std::time::Duration;

use anomaly_llm::query::{QueryAnalyzer, query_schema};
use anomaly_llm::{
    CompletionRequest, FallbackChain, LlmError, OfflineProvider, Provider, Retrying,
};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::common::{KEY, Wire, answer_for, bodies, fast_retry, orders_context, prompt_reader};

/// The request of the first batch of a three-record query analysis.
fn query_request() -> CompletionRequest {
    let analyzer = QueryAnalyzer::new(prompt_reader());
    analyzer.request(&analyzer.batches(&orders_context(3, "analyst"))[0])
}

async fn server_answering<W: Wire>(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(W::PATH))
        .respond_with(template)
        .mount(&server)
        .await;
    server
}

/// Mounts `first` for the first `n` requests, then `then`.
async fn server_answering_first<W: Wire>(
    first: ResponseTemplate,
    n: u64,
    then: ResponseTemplate,
) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(W::PATH))
        .respond_with(first)
        .up_to_n_times(n)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(W::PATH))
        .respond_with(then)
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

fn ok<W: Wire>(json: &Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(W::success(json))
}

fn error<W: Wire>(status: u16, kind: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(W::error(kind, message))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap()
}

pub(crate) async fn success_is_validated_and_the_request_carries_model_schema_and_headers<
    W: Wire,
>() {
    let answer = answer_for(&[0, 2]);
    let server = server_answering::<W>(ok::<W>(&answer)).await;
    let provider = W::provider(&server.uri());
    let response = provider.complete_validated(&query_request()).await.unwrap();
    assert_eq!(response.json, Some(answer));
    assert_eq!(response.provider, W::NAME);
    assert_eq!(response.model, W::MODEL);
    assert!(response.usage.output_tokens > 0 && response.usage.input_tokens > 0);
    assert!(!response.cached && response.fallback_from.is_empty());

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    W::check_headers(&received[0]);
    let body: Value = received[0].body_json().unwrap();
    assert_eq!(W::model_sent(&body), W::MODEL);
    assert_eq!(W::schema_sent(&body), query_schema().schema);
    assert_eq!(body["temperature"], json!(0.0));
    let prompt = W::prompt_sent(&body);
    assert!(
        prompt.contains("The record_index values of this batch are: 0, 1, 2."),
        "{prompt}"
    );
    assert!(prompt.contains("<records>") && prompt.contains("</records>"));
}

pub(crate) async fn client_errors_are_typed_and_not_retried<W: Wire>() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
    ] {
        let server = server_answering::<W>(error::<W>(status, kind, "nope")).await;
        let provider = Retrying::new(W::provider(&server.uri()), fast_retry(3));
        let err = provider
            .complete_validated(&query_request())
            .await
            .unwrap_err();
        match &err {
            LlmError::Api {
                status: s,
                kind: k,
                retryable,
                provider,
                ..
            } => {
                assert_eq!(
                    (*s, k.as_str(), *retryable, provider.as_str()),
                    (status, kind, false, W::NAME)
                );
            }
            other => panic!("{status}: {other:?}"),
        }
        assert_eq!(
            requests(&server).await.len(),
            1,
            "{status} must not be retried"
        );
    }
}

pub(crate) async fn rate_limit_is_retried_after_the_servers_wait<W: Wire>() {
    let limited = error::<W>(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
    )
    .insert_header("retry-after", "1");
    let server = server_answering_first::<W>(limited, 1, ok::<W>(&answer_for(&[1]))).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(2));
    let response = provider.complete_validated(&query_request()).await.unwrap();
    assert_eq!(response.json, Some(answer_for(&[1])));
    assert_eq!(requests(&server).await.len(), 2);
}

pub(crate) async fn a_retry_after_longer_than_the_policy_allows_gives_up_at_once<W: Wire>() {
    let limited =
        error::<W>(429, "rate_limit_error", "slow down").insert_header("retry-after", "3600");
    let server = server_answering::<W>(limited).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(5));
    let err = provider
        .complete_validated(&query_request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(3600)),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

pub(crate) async fn server_errors_are_retried_with_backoff<W: Wire>() {
    let server = server_answering_first::<W>(
        error::<W>(500, "api_error", "Internal server error"),
        2,
        ok::<W>(&answer_for(&[])),
    )
    .await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(3));
    let response = provider.complete_validated(&query_request()).await.unwrap();
    assert_eq!(response.json, Some(answer_for(&[])));
    assert_eq!(requests(&server).await.len(), 3);

    // With fewer retries than failures, the last error comes back.
    let server = server_answering::<W>(error::<W>(500, "api_error", "Internal server error")).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(1));
    let err = provider
        .complete_validated(&query_request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Api {
                status: 500,
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 2);
}

pub(crate) async fn overload_is_retried_then_reported<W: Wire>() {
    let overloaded = || error::<W>(529, "overloaded_error", "Overloaded");
    let server = server_answering_first::<W>(overloaded(), 1, ok::<W>(&answer_for(&[0]))).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(2));
    assert!(provider.complete_validated(&query_request()).await.is_ok());
    assert_eq!(requests(&server).await.len(), 2);

    let server = server_answering::<W>(overloaded()).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(2));
    let err = provider
        .complete_validated(&query_request())
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Overloaded { status: 529, .. }),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 3);
}

pub(crate) async fn a_slow_answer_times_out<W: Wire>() {
    let slow = ok::<W>(&answer_for(&[])).set_delay(Duration::from_secs(10));
    let server = server_answering::<W>(slow).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(1));
    let request = query_request().with_timeout(Duration::from_millis(150));
    let err = provider.complete_validated(&request).await.unwrap_err();
    assert!(
        matches!(&err, LlmError::Timeout { timeout, .. } if *timeout == Duration::from_millis(150)),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 2, "a timeout is retried");
}

pub(crate) async fn truncated_output_is_a_typed_error_and_not_retried<W: Wire>() {
    let server =
        server_answering::<W>(ResponseTemplate::new(200).set_body_json(W::truncated())).await;
    let provider = Retrying::new(W::provider(&server.uri()), fast_retry(3));
    let err = provider
        .complete_validated(&query_request())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::Truncated {
                max_tokens: 4096,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(requests(&server).await.len(), 1);
}

pub(crate) async fn malformed_json_gets_one_repair_attempt<W: Wire>() {
    let malformed = ResponseTemplate::new(200).set_body_json(W::text(
        "Sure! Here is the analysis: {\"anomalies_detected\": true, \"findings\": [",
    ));
    let server = server_answering_first::<W>(malformed, 1, ok::<W>(&answer_for(&[2]))).await;
    let provider = W::provider(&server.uri());
    let response = provider.complete_validated(&query_request()).await.unwrap();
    assert_eq!(response.json, Some(answer_for(&[2])));
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 2);
    let repair = W::prompt_sent(&sent[1]);
    assert!(
        repair.contains("does not match the required JSON schema"),
        "{repair}"
    );
    assert!(repair.contains("the answer is not JSON"));
    assert!(
        repair.contains("Sure! Here is the analysis"),
        "the repair quotes the previous answer"
    );
    assert_eq!(
        W::schema_sent(&sent[1]),
        query_schema().schema,
        "the repair keeps the schema"
    );
}

pub(crate) async fn schema_violations_end_in_a_typed_error_and_the_fallback<W: Wire>() {
    let mut wrong = answer_for(&[0]);
    wrong["findings"][0]["risk_level"] = json!("catastrophic");
    wrong["override"] = json!(true);
    let server = server_answering::<W>(ok::<W>(&wrong)).await;
    let err = W::provider(&server.uri())
        .complete_validated(&query_request())
        .await
        .unwrap_err();
    match &err {
        LlmError::InvalidOutput {
            errors,
            schema,
            provider,
        } => {
            assert_eq!(
                (schema.as_str(), provider.as_str()),
                ("report_query_analysis", W::NAME)
            );
            let all = errors.join("\n");
            assert!(
                all.contains("/findings/0/risk_level: the value is not one of")
                    && all.contains("/: unexpected property"),
                "{all}"
            );
            assert!(
                !all.contains("catastrophic") && !all.contains("override"),
                "the answer's values stay out of the error (it is logged): {all}"
            );
        }
        other => panic!("{other:?}"),
    }
    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 2, "one answer and one repair");
    let repair = W::prompt_sent(&sent[1]);
    assert!(
        repair.contains("/findings/0/risk_level: \"catastrophic\" is not one of")
            && repair.contains("/override: unexpected property"),
        "the repair prompt quotes the values: {repair}"
    );

    let chain = FallbackChain::new(vec![
        std::sync::Arc::from(W::provider(&server.uri())),
        std::sync::Arc::new(OfflineProvider::new()),
    ]);
    let response = chain.complete(&query_request()).await.unwrap();
    assert_eq!(response.provider, "offline");
    assert_eq!(response.fallback_from, [W::NAME]);
    let analysis: anomaly_llm::query::QueryAnalysis =
        serde_json::from_value(response.json.unwrap()).unwrap();
    assert!(analysis.findings.iter().all(|f| f.record_index < 3));
}

pub(crate) async fn the_api_key_never_appears_in_errors<W: Wire>() {
    let echo = error::<W>(
        401,
        "authentication_error",
        &format!("invalid x-api-key: {KEY}"),
    );
    let server = server_answering::<W>(echo).await;
    let err = W::provider(&server.uri())
        .complete(&query_request())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");

    // Nor in a transport error (nothing listens on this port).
    let err = W::provider("http://127.0.0.1:9")
        .complete(&query_request())
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(matches!(err, LlmError::Transport { .. }), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
}

/// The record indices a query-analysis prompt lists.
pub(crate) fn listed_indices(prompt: &str) -> Vec<usize> {
    let marker = "The record_index values of this batch are: ";
    let Some(start) = prompt.find(marker) else {
        return Vec::new();
    };
    let rest = &prompt[start + marker.len()..];
    let end = rest.find('.').unwrap();
    rest[..end]
        .split(", ")
        .map(|s| s.parse().unwrap())
        .collect()
}

/// Lines inside the prompt's `<records>` block.
pub(crate) fn record_lines(prompt: &str) -> Vec<Value> {
    let start = prompt.find("<records>\n").unwrap() + "<records>\n".len();
    let end = prompt.find("</records>").unwrap();
    prompt[start..end]
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) async fn batches_of_120_records_make_three_requests<W: Wire>() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(W::PATH))
        .respond_with(|request: &Request| {
            let body: Value = request.body_json().unwrap();
            let indices = listed_indices(&W::prompt_sent(&body));
            ResponseTemplate::new(200).set_body_json(W::success(&answer_for(&indices[..1])))
        })
        .mount(&server)
        .await;
    let ctx = orders_context(120, "analyst");
    let report = QueryAnalyzer::new(W::provider(&server.uri()))
        .analyze(&ctx)
        .await
        .unwrap();

    let sent = bodies(&server).await;
    assert_eq!(sent.len(), 3);
    let mut all = BTreeSet::new();
    for body in &sent {
        let prompt = W::prompt_sent(body);
        let lines = record_lines(&prompt);
        assert!(lines.len() <= 50, "{}", lines.len());
        let in_block: Vec<usize> = lines
            .iter()
            .map(|l| l["record_index"].as_u64().unwrap() as usize)
            .collect();
        assert_eq!(in_block, listed_indices(&prompt));
        all.extend(in_block);
    }
    assert_eq!(all, (0..120).collect());
    let sizes: Vec<usize> = report.batches.iter().map(|b| b.indices.len()).collect();
    assert_eq!(sizes, [50, 50, 20]);
    let found: Vec<usize> = report
        .analysis
        .findings
        .iter()
        .map(|f| f.record_index)
        .collect();
    assert_eq!(found, [0, 50, 100]);
    assert!(report.batches.iter().all(|b| b.provider == W::NAME));
    assert!(report.usage.output_tokens >= 3);
}
