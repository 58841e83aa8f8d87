//! Batching within the token budgets.

use anomaly_llm::OfflineProvider;
use anomaly_llm::logs::{LogAnalyzer, LogLine};
use anomaly_llm::prompt::estimate_tokens;
use anomaly_llm::query::{AnalyzerSettings, QueryAnalyzer};
use serde_json::json;

use crate::common::{Scripted, orders_context, prompt_reader};
use crate::conformance::record_lines;

#[test]
fn large_records_are_split_by_the_input_budget() {
    let mut ctx = orders_context(10, "analyst");
    for r in &mut ctx.flagged {
        r.record["comment"] = json!("lorem ipsum ".repeat(40)); // ~480 characters each, ~130 tokens
    }
    let settings = AnalyzerSettings {
        max_input_tokens: 400,
        ..AnalyzerSettings::default()
    };
    let analyzer = QueryAnalyzer::with_settings(prompt_reader(), settings);
    let batches = analyzer.batches(&ctx);
    assert!(batches.len() >= 4, "{}", batches.len());
    assert_eq!(batches.iter().map(|b| b.records.len()).sum::<usize>(), 10);
    for b in &batches {
        let request = analyzer.request(b);
        assert_eq!(
            record_lines(&request.messages[0].content).len(),
            b.records.len()
        );
    }
}

#[test]
fn the_query_and_statistics_count_toward_the_input_budget() {
    let mut ctx = orders_context(40, "analyst");
    ctx.query = format!(
        "query RecentOrders {{ orders(first: 20) {{ id }} }} # {}",
        "x".repeat(20_000)
    );
    ctx.operation_name = Some("RecentOrders".repeat(2_000));
    ctx.role = Some("analyst".repeat(3_000));
    for r in &mut ctx.flagged {
        r.record["comment"] = json!("lorem ipsum ".repeat(20)); // ~240 characters each
    }
    let settings = AnalyzerSettings {
        max_input_tokens: 6_000,
        ..AnalyzerSettings::default()
    };
    let analyzer = QueryAnalyzer::with_settings(prompt_reader(), settings);
    let batches = analyzer.batches(&ctx);
    assert!(batches.len() >= 2, "{}", batches.len());
    assert_eq!(batches.iter().map(|b| b.records.len()).sum::<usize>(), 40);
    for b in &batches {
        let user = &analyzer.request(b).messages[0].content;
        assert!(
            estimate_tokens(user) <= 6_000,
            "batch {} of {}: {} tokens",
            b.batch,
            b.batches,
            estimate_tokens(user)
        );
    }
}

#[tokio::test]
async fn log_lines_are_batched_and_each_batch_lists_only_its_lines() {
    let lines: Vec<LogLine> = (0..120)
        .map(|i| LogLine::new(format!("INFO request {i} served")))
        .collect();
    let answers = (0..3)
        .map(|b| {
            Ok(
                json!({"lines": (b * 50..(b * 50 + 50).min(120)).map(|i| json!({
                "line_index": i, "score": 0.0, "category": "normal", "reason": "routine"
            })).collect::<Vec<_>>()}),
            )
        })
        .collect();
    let llm = Scripted::new("local", answers);
    let report = LogAnalyzer::new(&llm).analyze(&lines).await.unwrap();
    let requests = llm.requests();
    assert_eq!(requests.len(), 3);
    assert!(
        requests[2].messages[0]
            .content
            .contains("The line_index values of this batch are: 100, 101")
    );
    assert!(
        report
            .lines
            .iter()
            .all(|l| l.assessment.is_some() && l.provider == "local")
    );
    assert!(report.rejected.is_empty());
}

#[test]
fn the_offline_rules_are_batched_by_count_without_rendering() {
    let mut ctx = orders_context(120, "analyst");
    for r in &mut ctx.flagged {
        r.record["comment"] = json!("lorem ipsum ".repeat(40));
    }
    let settings = AnalyzerSettings {
        max_input_tokens: 400,
        ..AnalyzerSettings::default()
    };
    let analyzer = QueryAnalyzer::with_settings(OfflineProvider::new(), settings);
    let batches = analyzer.batches(&ctx);
    // No token budget for rules that read no text: 50 records per batch, as MAX_RECORDS_PER_BATCH says.
    assert_eq!(
        batches.iter().map(|b| b.records.len()).collect::<Vec<_>>(),
        [50, 50, 20]
    );
    let request = analyzer.request(&batches[0]);
    assert_eq!(
        request.messages[0].content,
        anomaly_llm::prompt::NOT_RENDERED
    );
    assert!(request.task.is_some(), "the data travels in the task");
}
