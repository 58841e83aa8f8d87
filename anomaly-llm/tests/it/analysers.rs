//! The analysers with the offline rules and with scripted answers.

use std::sync::Arc;

use anomaly_core::Verdict;
use anomaly_core::records::flatten::Limits;
use anomaly_core::stats::{CompareThresholds, DatasetStats};
use anomaly_llm::hybrid::{HybridReport, Source, merge_logs};
use anomaly_llm::logs::{LogAnalyzer, LogCategory, LogLine, LogTemplate, TemplateHistory};
use anomaly_llm::query::{
    AnalysisMode, FindingCategory, FlaggedRecord, QueryAnalyzer, QueryContext, RiskLevel,
    StatisticalVerdict,
};
use anomaly_llm::{FallbackChain, LlmError, OfflineProvider, Provider};
use serde_json::{Value, json};

use crate::common::{Scripted, answer_for, order, orders_context};

fn stats(rows: &[Value]) -> DatasetStats {
    DatasetStats::from_records(rows, &Limits::default()).unwrap()
}

fn flagged(index: usize, record: Value) -> FlaggedRecord {
    FlaggedRecord {
        index,
        record,
        verdict: None,
    }
}

async fn offline(ctx: &QueryContext) -> anomaly_llm::query::QueryReport {
    QueryAnalyzer::new(OfflineProvider::new())
        .analyze(ctx)
        .await
        .unwrap()
}

fn kinds(report: &anomaly_llm::query::QueryReport) -> Vec<&str> {
    report
        .analysis
        .security_concerns
        .iter()
        .map(|c| c.kind.as_str())
        .collect()
}

#[tokio::test]
async fn offline_rules_find_injection_introspection_and_leaked_secrets() {
    let rows = vec![
        json!({"id": 1, "email": "a@example.com", "password": "hunter2", "card": "4111 1111 1111 1111"}),
        json!({"id": 2, "email": "b@example.com", "password": null, "card": null}),
    ];
    let mut ctx = QueryContext::new(
        "query Search($q: String) { __schema { types { name } } users(filter: $q) { id email password card } }",
        stats(&rows),
    );
    ctx.operation_name = Some("Search".into());
    ctx.variables = json!({"q": "x' OR 1=1 --"});
    ctx.role = Some("viewer".into());
    ctx.flagged = vec![flagged(0, rows[0].clone()), flagged(1, rows[1].clone())];
    let report = offline(&ctx).await;
    assert_eq!(report.mode, AnalysisMode::Baseline);
    let k = kinds(&report);
    for expected in ["sql_injection", "introspection", "sensitive_data_exposure"] {
        assert!(k.contains(&expected), "{expected} missing from {k:?}");
    }
    let leak = report
        .analysis
        .security_concerns
        .iter()
        .find(|c| c.kind == "sensitive_data_exposure")
        .unwrap();
    assert_eq!(leak.severity, RiskLevel::High);
    assert!(leak.detail.contains("viewer"));
    let record0: Vec<_> = report
        .analysis
        .findings
        .iter()
        .filter(|f| f.record_index == 0)
        .collect();
    assert!(record0.iter().any(
        |f| f.category == FindingCategory::SecurityConcern && f.reason.contains("card number")
    ));
    assert!(record0.iter().any(|f| f.reason.contains("`password`")));
    assert!(
        report.analysis.findings.iter().all(|f| f.record_index == 0),
        "record 1 holds no secret values"
    );
    assert!(report.analysis.anomalies_detected);
    assert!(!report.analysis.query_pattern_analysis.typical);
    assert_eq!(report.batches[0].provider, "offline");
}

#[tokio::test]
async fn an_admin_may_read_sensitive_fields() {
    let rows = vec![json!({"id": 1, "password_hash": "$2b$12$abc"})];
    let mut ctx = QueryContext::new("query Users { users { id password_hash } }", stats(&rows));
    ctx.operation_name = Some("Users".into());
    ctx.flagged = vec![flagged(0, rows[0].clone())];
    ctx.role = Some("admin".into());
    assert!(!kinds(&offline(&ctx).await).contains(&"sensitive_data_exposure"));
    ctx.role = None;
    let unknown = offline(&ctx).await;
    let leak = unknown
        .analysis
        .security_concerns
        .iter()
        .find(|c| c.kind == "sensitive_data_exposure")
        .unwrap();
    assert_eq!(
        leak.severity,
        RiskLevel::Medium,
        "an unknown role is a medium risk"
    );
}

#[tokio::test]
async fn results_far_above_history_are_excessive_retrieval() {
    let mut history = DatasetStats::new();
    for b in 0..10 {
        let rows: Vec<Value> = (0..20).map(|i| order(b * 20 + i, 30.0)).collect();
        history.merge(&stats(&rows));
    }
    let rows: Vec<Value> = (0..400).map(|i| order(i, 30.0)).collect();
    let batch = stats(&rows);
    let mut ctx = QueryContext::new(
        "query Orders { orders(first: 5000) { id amount } }",
        batch.clone(),
    );
    ctx.operation_name = Some("Orders".into());
    ctx.role = Some("analyst".into());
    ctx.comparison = Some(history.compare(&batch, &CompareThresholds::default()));
    let report = offline(&ctx).await;
    assert_eq!(report.mode, AnalysisMode::Compared);
    let size = report
        .analysis
        .security_concerns
        .iter()
        .find(|c| c.kind == "excessive_data_retrieval")
        .unwrap();
    assert_eq!(size.severity, RiskLevel::High, "{size:?}");
    assert!(
        size.detail.contains("400 records, 20.0× the typical 20"),
        "{}",
        size.detail
    );
    let concerns = report.analysis.query_pattern_analysis.concerns.join("\n");
    assert!(concerns.contains("`first` = 5000"), "{concerns}");

    // Without history the same result is judged on its own.
    ctx.comparison = None;
    let baseline = offline(&ctx).await;
    assert_eq!(baseline.mode, AnalysisMode::Baseline);
    assert!(!kinds(&baseline).contains(&"excessive_data_retrieval"));
    assert!(
        baseline
            .analysis
            .query_pattern_analysis
            .recommendations
            .iter()
            .any(|r| r.contains("baseline"))
    );
}

#[tokio::test]
async fn range_violations_and_impossible_values_per_record() {
    let mut ctx = orders_context(3, "analyst");
    ctx.flagged[2].record["amount"] = json!(-40.0);
    let report = offline(&ctx).await;
    let by = |i: usize, c: FindingCategory| {
        report
            .analysis
            .findings
            .iter()
            .find(|f| f.record_index == i && f.category == c)
            .cloned()
    };
    let r0 = by(0, FindingCategory::RangeViolation).unwrap();
    assert_eq!(
        r0.risk_level,
        RiskLevel::High,
        "5,000 is far beyond the history's 20–69"
    );
    assert!(r0.reason.contains("amount"));
    assert!(
        by(2, FindingCategory::BusinessLogic)
            .unwrap()
            .reason
            .contains("negative")
    );
}

#[tokio::test]
async fn obfuscated_operation_names_are_a_pattern_concern() {
    let mut ctx = orders_context(0, "analyst");
    ctx.operation_name = Some("q8x7z2k9".into());
    let report = offline(&ctx).await;
    let concerns = report.analysis.query_pattern_analysis.concerns.join("\n");
    assert!(concerns.contains("obfuscated operation name"), "{concerns}");
    assert!(!report.analysis.query_pattern_analysis.typical);
}

#[tokio::test]
async fn an_ordinary_query_is_typical() {
    let rows: Vec<Value> = (0..20).map(|i| order(i, 30.0 + i as f64)).collect();
    let mut history = DatasetStats::new();
    for _ in 0..5 {
        history.merge(&stats(&rows));
    }
    let mut ctx = QueryContext::new(
        "query RecentOrders { orders(first: 20) { id amount country status } }",
        stats(&rows),
    );
    ctx.operation_name = Some("RecentOrders".into());
    ctx.role = Some("analyst".into());
    ctx.comparison = Some(history.compare(&stats(&rows), &CompareThresholds::default()));
    let report = offline(&ctx).await;
    assert!(
        report.analysis.query_pattern_analysis.typical,
        "{:?}",
        report.analysis
    );
    assert!(!report.analysis.anomalies_detected);
    assert_eq!(
        report.batches.len(),
        1,
        "no records still analyses the query pattern once"
    );
}

#[tokio::test]
async fn duplicate_indices_are_refused() {
    let mut ctx = orders_context(2, "analyst");
    ctx.flagged[1].index = 0;
    let err = QueryAnalyzer::new(OfflineProvider::new())
        .analyze(&ctx)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::InvalidInput {
                field: "flagged",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn hybrid_keeps_provenance_and_the_higher_risk() {
    let mut ctx = orders_context(3, "analyst");
    // Record 2 was given to the analysis but the detector did not flag it.
    ctx.flagged[2].verdict = Some(StatisticalVerdict {
        score: 0.4,
        is_anomaly: false,
        ..ctx.flagged[2].verdict.clone().unwrap()
    });
    ctx.flagged[0].verdict.as_mut().unwrap().score = 0.9;
    let mut answer = answer_for(&[1, 2]);
    answer["findings"][0]["risk_level"] = json!("high");
    answer["findings"][1]["risk_level"] = json!("low");
    let llm = Scripted::new("claude", vec![Ok(answer)]);
    let report = QueryAnalyzer::new(&llm).analyze(&ctx).await.unwrap();
    let hybrid = HybridReport::merge(&ctx, &report);
    let rec = |i: usize| hybrid.records.iter().find(|r| r.record_index == i).unwrap();
    assert_eq!(
        (rec(0).source, rec(0).risk_level),
        (Source::Statistical, RiskLevel::High),
        "score 0.9 vs 0.6"
    );
    assert_eq!(
        (rec(1).source, rec(1).risk_level),
        (Source::Both, RiskLevel::High)
    );
    assert_eq!(
        (rec(2).source, rec(2).risk_level),
        (Source::Llm, RiskLevel::Low)
    );
    assert_eq!(rec(1).llm[0].provider, "claude");
    assert!(
        hybrid
            .dataset_findings
            .iter()
            .any(|d| d.kind == "range_expansions" && d.fields == ["amount"])
    );
    assert!(hybrid.dataset_summary.contains("amount"));
    assert_eq!(hybrid.providers, ["claude"]);
    assert!(hybrid.anomalies_detected);
}

fn template(id: &str, occurrences: u64, error_share: f64) -> LogTemplate {
    LogTemplate {
        id: id.into(),
        pattern: None,
        history: Some(TemplateHistory {
            occurrences,
            error_share,
        }),
    }
}

#[tokio::test]
async fn offline_log_analysis_weighs_each_template_history() {
    let lines = vec![
        LogLine::new("ERROR upstream timeout talking to payments")
            .with_template(template("t1", 900, 0.97)),
        LogLine::new("ERROR upstream timeout talking to payments")
            .with_template(template("t2", 900, 0.0)),
        LogLine::new("INFO GET /health 200 1ms").with_template(template("t3", 100_000, 0.0)),
        LogLine::new("WARN authentication failed for user root from 203.0.113.9"),
    ];
    let report = LogAnalyzer::new(OfflineProvider::new())
        .analyze(&lines)
        .await
        .unwrap();
    let a = |i: usize| report.lines[i].assessment.clone().unwrap();
    assert!(a(0).score < 0.2, "{:?}", a(0));
    assert!(a(1).score > 0.7, "{:?}", a(1));
    assert_eq!(a(1).category, LogCategory::Performance);
    assert!(a(2).score < 0.05);
    assert_eq!(a(2).category, LogCategory::Normal);
    assert_eq!(a(3).category, LogCategory::Security);
    assert!(report.lines.iter().all(|l| l.provider == "offline"));
    assert!(
        LogAnalyzer::new(OfflineProvider::new())
            .analyze(&[])
            .await
            .unwrap()
            .lines
            .is_empty()
    );
}

#[tokio::test]
async fn scripted_log_answers_are_checked_line_by_line() {
    let lines: Vec<LogLine> = (0..3)
        .map(|i| LogLine::new(format!("INFO line {i}")))
        .collect();
    let out_of_range = json!({"lines": [
        {"line_index": 0, "score": 1.5, "category": "error", "reason": "r"}
    ]});
    let repaired = json!({"lines": [
        {"line_index": 0, "score": 0.9, "category": "error", "reason": "spike"},
        {"line_index": 0, "score": 0.1, "category": "normal", "reason": "again"},
        {"line_index": 7, "score": 0.2, "category": "normal", "reason": "not in batch"},
        {"line_index": 1, "score": 0.1, "category": "normal", "reason": "routine"},
        {"line_index": 2, "score": 0.0, "category": "normal", "reason": "routine"}
    ]});
    let llm = Scripted::new("local", vec![Ok(out_of_range), Ok(repaired)]);
    let report = LogAnalyzer::new(&llm).analyze(&lines).await.unwrap();
    let requests = llm.requests();
    assert_eq!(requests.len(), 2, "one repair for the score of 1.5");
    assert!(
        requests[1]
            .messages
            .last()
            .unwrap()
            .content
            .contains("/lines/0/score: 1.5 is above the maximum 1")
    );
    assert_eq!(report.lines[0].assessment.as_ref().unwrap().score, 0.9);
    assert!(report.lines.iter().all(|l| l.assessment.is_some()));
    let reasons: Vec<&str> = report.rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "a second assessment of line 0",
            "line_index 7 is not in this batch"
        ]
    );

    let merged = merge_logs(&[None, Some(Verdict::new(0.9, 0.5))], &report, 0.5);
    assert_eq!(merged[0].source, Some(Source::Llm));
    assert_eq!(
        merged[1].source,
        Some(Source::Statistical),
        "the detector's flag stands whatever the LLM scored"
    );
    assert!(!merged[2].is_anomaly);
}

#[tokio::test]
async fn an_index_written_as_a_float_is_repaired_then_falls_back() {
    // `1.0` is a number, not an integer: accepted by the schema check it would fail later when read as `usize`,
    // after the chain had taken the answer, and the analysis would fail with the offline rules still unasked.
    let mut floaty = answer_for(&[1]);
    floaty["findings"][0]["record_index"] = json!(1.0);
    let llm = Arc::new(Scripted::new(
        "claude",
        vec![Ok(floaty.clone()), Ok(floaty)],
    ));
    let chain = FallbackChain::new(vec![
        llm.clone() as Arc<dyn Provider>,
        Arc::new(OfflineProvider::new()),
    ]);
    let ctx = orders_context(3, "analyst");
    let report = QueryAnalyzer::new(chain).analyze(&ctx).await.unwrap();
    let requests = llm.requests();
    assert_eq!(requests.len(), 2, "the answer and its repair");
    assert!(
        requests[1]
            .messages
            .last()
            .unwrap()
            .content
            .contains("/findings/0/record_index: expected \"integer\", got number")
    );
    assert_eq!(report.batches[0].provider, "offline");
    assert_eq!(report.batches[0].fallback_from, ["claude"]);
}

#[tokio::test]
async fn a_log_answer_that_leaves_lines_out_is_repaired_then_refused() {
    let lines: Vec<LogLine> = (0..3)
        .map(|i| LogLine::new(format!("INFO line {i}")))
        .collect();
    let partial = json!({"lines": [
        {"line_index": 0, "score": 0.2, "category": "normal", "reason": "r"}
    ]});
    let llm = Scripted::new("local", vec![Ok(partial.clone()), Ok(partial)]);
    let err = LogAnalyzer::new(&llm).analyze(&lines).await.unwrap_err();
    let repair = &llm.requests()[1];
    assert!(
        repair
            .messages
            .last()
            .unwrap()
            .content
            .contains("/lines: no entry for line_index 1")
    );
    match err {
        LlmError::InvalidOutput {
            provider, errors, ..
        } => {
            assert_eq!(provider, "local");
            assert_eq!(errors.len(), 2, "{errors:?}");
            assert!(errors[1].contains("line_index 2"), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
}
