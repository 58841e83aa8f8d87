//! Hybrid results: the statistical detectors' verdicts and the LLM's findings in one structure, each item saying
//! where it came from.
//!
//! Invariants, whatever the LLM answered:
//! - every record a detector flagged stays flagged, with its verdict, and its risk is never lowered by the LLM;
//! - every difference the comparison with history reported stays reported;
//! - an LLM finding for a record that was not given to it is dropped and listed in `rejected`.

use std::collections::BTreeMap;

use anomaly_core::Verdict;
use anomaly_core::stats::Comparison;
use serde::{Deserialize, Serialize};

use crate::logs::{LineAssessment, LogReport};
use crate::query::{
    AnalysisMode, QueryContext, QueryPatternAnalysis, QueryReport, RecordFinding, RejectedFinding,
    RiskLevel, SecurityConcern, StatisticalVerdict,
};

/// Where an item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Only the statistical detectors.
    Statistical,
    /// Only the LLM (or the offline rules standing in for it).
    Llm,
    /// Both.
    Both,
}

/// An LLM finding with the provider that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmFinding {
    /// The finding.
    #[serde(flatten)]
    pub finding: RecordFinding,
    /// The provider that answered its batch.
    pub provider: String,
}

/// One record in the hybrid result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridRecord {
    /// The record's index in the caller's result.
    pub record_index: usize,
    /// The detectors' verdict, if a detector scored it.
    pub statistical: Option<StatisticalVerdict>,
    /// The LLM's findings on it.
    pub llm: Vec<LlmFinding>,
    /// Which side flagged it.
    pub source: Source,
    /// The higher of the statistical risk (medium when flagged, high when the score passes the threshold by
    /// [`HIGH_MARGIN`] or more) and the LLM findings' risks.
    pub risk_level: RiskLevel,
}

/// Score above threshold from which a statistical flag is high risk.
pub const HIGH_MARGIN: f64 = 0.15;

/// A difference of the whole result against history, from [`Comparison`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetFinding {
    /// `result_size`, `new_fields`, `missing_fields`, `type_changes`, `null_increases`, `range_expansions`,
    /// `mean_shifts`, `distribution_changes` or `category_changes`.
    pub kind: String,
    /// The fields concerned (empty for the result size).
    pub fields: Vec<String>,
}

/// The query analysis, statistical and LLM sides merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridReport {
    /// Baseline or compared.
    pub mode: AnalysisMode,
    /// Whether either side found anything.
    pub anomalies_detected: bool,
    /// Records flagged by either side, by index.
    pub records: Vec<HybridRecord>,
    /// Differences against history (statistical).
    pub dataset_findings: Vec<DatasetFinding>,
    /// The comparison's one-line summary (`"no changes"` without differences or history).
    pub dataset_summary: String,
    /// The query pattern (LLM).
    pub query_pattern_analysis: QueryPatternAnalysis,
    /// Security concerns (LLM).
    pub security_concerns: Vec<SecurityConcern>,
    /// LLM findings dropped, by the analyser or here.
    pub rejected: Vec<RejectedFinding>,
    /// The providers that answered, without repeats, in order.
    pub providers: Vec<String>,
}

fn statistical_risk(v: &StatisticalVerdict) -> Option<RiskLevel> {
    let risk = if v.score - v.threshold >= HIGH_MARGIN {
        RiskLevel::High
    } else {
        RiskLevel::Medium
    };
    v.is_anomaly.then_some(risk)
}

/// The comparison's reported differences, one entry per kind.
pub fn dataset_findings(c: &Comparison) -> Vec<DatasetFinding> {
    let mut out = Vec::new();
    if c.result_size.as_ref().is_some_and(|r| r.flagged) {
        out.push(DatasetFinding {
            kind: "result_size".into(),
            fields: Vec::new(),
        });
    }
    let lists: [(&str, Vec<String>); 8] = [
        ("new_fields", c.new_fields.clone()),
        ("missing_fields", c.missing_fields.clone()),
        (
            "type_changes",
            c.type_changes.iter().map(|t| t.field.clone()).collect(),
        ),
        (
            "null_increases",
            c.null_increases.iter().map(|t| t.field.clone()).collect(),
        ),
        (
            "range_expansions",
            c.range_expansions.iter().map(|t| t.field.clone()).collect(),
        ),
        (
            "mean_shifts",
            c.mean_shifts.iter().map(|t| t.field.clone()).collect(),
        ),
        (
            "distribution_changes",
            c.distribution_changes
                .iter()
                .map(|t| t.field.clone())
                .collect(),
        ),
        (
            "category_changes",
            c.category_changes.iter().map(|t| t.field.clone()).collect(),
        ),
    ];
    for (kind, fields) in lists {
        if !fields.is_empty() {
            out.push(DatasetFinding {
                kind: kind.to_string(),
                fields,
            });
        }
    }
    out
}

impl HybridReport {
    /// Merges the detectors' verdicts in `ctx` and the comparison with history with the LLM side's `report`.
    pub fn merge(ctx: &QueryContext, report: &QueryReport) -> Self {
        let mut records: BTreeMap<usize, HybridRecord> = BTreeMap::new();
        for r in &ctx.flagged {
            if let Some(v) = r.verdict.as_ref().filter(|v| v.is_anomaly) {
                records.insert(
                    r.index,
                    HybridRecord {
                        record_index: r.index,
                        statistical: Some(v.clone()),
                        llm: Vec::new(),
                        source: Source::Statistical,
                        risk_level: statistical_risk(v).unwrap_or(RiskLevel::Medium),
                    },
                );
            }
        }
        let given: BTreeMap<usize, &StatisticalVerdict> = ctx
            .flagged
            .iter()
            .filter_map(|r| r.verdict.as_ref().map(|v| (r.index, v)))
            .collect();
        let known: std::collections::BTreeSet<usize> =
            ctx.flagged.iter().map(|r| r.index).collect();
        let provider_of = |index: usize| {
            report
                .batches
                .iter()
                .find(|b| b.indices.contains(&index))
                .map(|b| b.provider.clone())
                .unwrap_or_default()
        };
        let mut rejected = report.rejected.clone();
        for finding in &report.analysis.findings {
            let index = finding.record_index;
            if !known.contains(&index) {
                rejected.push(RejectedFinding {
                    finding: serde_json::to_value(finding).unwrap_or_default(),
                    reason: format!("record_index {index} was not given to the analysis"),
                    provider: String::new(),
                });
                continue;
            }
            let entry = records.entry(index).or_insert_with(|| HybridRecord {
                record_index: index,
                statistical: given.get(&index).map(|v| (*v).clone()),
                llm: Vec::new(),
                source: Source::Llm,
                risk_level: finding.risk_level,
            });
            entry.risk_level = entry.risk_level.max(finding.risk_level);
            if entry.statistical.as_ref().is_some_and(|v| v.is_anomaly) {
                entry.source = Source::Both;
            }
            entry.llm.push(LlmFinding {
                finding: finding.clone(),
                provider: provider_of(index),
            });
        }
        let comparison = ctx
            .comparison
            .as_ref()
            .filter(|_| ctx.mode() == AnalysisMode::Compared);
        let dataset = comparison.map(dataset_findings).unwrap_or_default();
        let mut providers: Vec<String> = Vec::new();
        for b in &report.batches {
            if !providers.contains(&b.provider) {
                providers.push(b.provider.clone());
            }
        }
        let records: Vec<HybridRecord> = records.into_values().collect();
        HybridReport {
            mode: ctx.mode(),
            anomalies_detected: !records.is_empty()
                || !dataset.is_empty()
                || report.analysis.anomalies_detected,
            records,
            dataset_findings: dataset,
            dataset_summary: comparison
                .map_or_else(|| "no changes".to_string(), Comparison::summary),
            query_pattern_analysis: report.analysis.query_pattern_analysis.clone(),
            security_concerns: report.analysis.security_concerns.clone(),
            rejected,
            providers,
        }
    }
}

/// One log line, both sides merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HybridLogLine {
    /// The line's index.
    pub line_index: usize,
    /// The statistical detector's verdict on it, if any.
    pub statistical: Option<Verdict>,
    /// The LLM's assessment, if its answer covered the line.
    pub llm: Option<LineAssessment>,
    /// The provider that assessed it.
    pub provider: String,
    /// Whether either side calls it anomalous: the detector's verdict, or an LLM score at or above the threshold.
    pub is_anomaly: bool,
    /// Which side called it anomalous (`None` when neither did).
    pub source: Option<Source>,
}

/// Merges per-line statistical verdicts (`statistical[i]` for line `i`, shorter slices meaning no verdict) with a
/// log report; an LLM score at or above `llm_threshold` counts as anomalous. A line the detector flagged stays
/// anomalous whatever the LLM scored.
pub fn merge_logs(
    statistical: &[Option<Verdict>],
    report: &LogReport,
    llm_threshold: f64,
) -> Vec<HybridLogLine> {
    report
        .lines
        .iter()
        .map(|l| {
            let stat = statistical.get(l.line_index).copied().flatten();
            let by_stat = stat.is_some_and(|v| v.is_anomaly);
            let by_llm = l
                .assessment
                .as_ref()
                .is_some_and(|a| a.score >= llm_threshold);
            HybridLogLine {
                line_index: l.line_index,
                statistical: stat,
                llm: l.assessment.clone(),
                provider: l.provider.clone(),
                is_anomaly: by_stat || by_llm,
                source: match (by_stat, by_llm) {
                    (true, true) => Some(Source::Both),
                    (true, false) => Some(Source::Statistical),
                    (false, true) => Some(Source::Llm),
                    (false, false) => None,
                },
            }
        })
        .collect()
}
