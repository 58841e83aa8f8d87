//! The integration tests of `anomaly-llm`. No network: HTTP providers talk to a local loopback server
//! (`wiremock`) that replays their documented answers.

mod analysers;
mod anthropic;
mod batching;
mod bounds;
mod cache_and_fallback;
mod common;
mod conformance;
mod injection;
mod openai;
mod retrying;

/// Generates one test per (provider wire format, conformance function) pair.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod anthropic_conformance {
            $(
                #[tokio::test]
                async fn $test() {
                    crate::conformance::$test::<crate::common::AnthropicWire>().await;
                }
            )*
        }
        mod openai_conformance {
            $(
                #[tokio::test]
                async fn $test() {
                    crate::conformance::$test::<crate::common::OpenAiWire>().await;
                }
            )*
        }
    };
}

conformance!(
    success_is_validated_and_the_request_carries_model_schema_and_headers,
    client_errors_are_typed_and_not_retried,
    rate_limit_is_retried_after_the_servers_wait,
    a_retry_after_longer_than_the_policy_allows_gives_up_at_once,
    server_errors_are_retried_with_backoff,
    overload_is_retried_then_reported,
    a_slow_answer_times_out,
    truncated_output_is_a_typed_error_and_not_retried,
    malformed_json_gets_one_repair_attempt,
    schema_violations_end_in_a_typed_error_and_the_fallback,
    the_api_key_never_appears_in_errors,
    batches_of_120_records_make_three_requests,
);
