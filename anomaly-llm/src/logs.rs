//! Log analysis: batches of log lines, with their templates and the templates' history, → an anomaly score in
//! `[0, 1]`, a category and a reason per line.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::warn;

use crate::error::{LlmError, Result};
use crate::prompt;
use crate::provider::Provider;
use crate::query::{AnalyzerSettings, BatchInfo, RejectedFinding};
use crate::request::{CompletionRequest, OutputSchema, Task, Usage};

/// What is known of a template's past.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TemplateHistory {
    /// Lines of this template seen before.
    pub occurrences: u64,
    /// Share of them at error severity or worse, in `[0, 1]`.
    pub error_share: f64,
}

/// The template a line belongs to (from a log parser such as Drain), when known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogTemplate {
    /// The template's id.
    pub id: String,
    /// The template text with its variables masked (`Connection to <*> refused`), if known.
    pub pattern: Option<String>,
    /// Its history, if known.
    pub history: Option<TemplateHistory>,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// The line as logged.
    pub text: String,
    /// Its template, if known.
    pub template: Option<LogTemplate>,
}

impl LogLine {
    /// A line without template.
    pub fn new(text: impl Into<String>) -> Self {
        LogLine {
            text: text.into(),
            template: None,
        }
    }

    /// Sets the template.
    pub fn with_template(mut self, template: LogTemplate) -> Self {
        self.template = Some(template);
        self
    }
}

/// What kind of line it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogCategory {
    /// Routine.
    Normal,
    /// A failure.
    Error,
    /// Authentication, authorisation, injection, tampering.
    Security,
    /// Slowness, timeouts.
    Performance,
    /// Memory, disk, file handles, quotas.
    Resource,
    /// A template never (or hardly ever) seen.
    Novel,
}

/// One line's assessment: the JSON shape every provider returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineAssessment {
    /// The line's index in the caller's slice.
    pub line_index: usize,
    /// Anomaly score in `[0, 1]`; higher is more anomalous.
    pub score: f64,
    /// What kind of line.
    pub category: LogCategory,
    /// Why, in a sentence.
    pub reason: String,
}

/// The answer of one log-analysis request (see [`log_schema`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogAnalysis {
    /// One entry per line.
    pub lines: Vec<LineAssessment>,
}

/// The schema of [`LogAnalysis`], strict-mode compatible.
pub fn log_schema() -> OutputSchema {
    OutputSchema {
        name: "report_log_analysis".into(),
        description:
            "Report an anomaly score, category and reason for every log line of the batch.".into(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["lines"],
            "properties": {
                "lines": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["line_index", "score", "category", "reason"],
                    "properties": {
                        "line_index": {"type": "integer", "minimum": 0},
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "category": {"type": "string", "enum": [
                            "normal", "error", "security", "performance", "resource", "novel"
                        ]},
                        "reason": {"type": "string"}
                    }
                }}
            }
        }),
    }
}

/// A line with its index in the caller's slice.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexedLine {
    /// Index in the caller's slice.
    pub index: usize,
    /// The line.
    pub line: LogLine,
}

/// One batch of a log analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogBatch {
    /// This batch's lines.
    pub lines: Vec<IndexedLine>,
    /// 0-based batch number.
    pub batch: usize,
    /// Number of batches.
    pub batches: usize,
}

/// One line's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineVerdict {
    /// The line's index.
    pub line_index: usize,
    /// The provider's assessment. Validation makes an answer that leaves a line out invalid (repair, then the
    /// next provider), so this is `None` only after a provider whose own `complete_validated` skips that check.
    pub assessment: Option<LineAssessment>,
    /// The provider that assessed it.
    pub provider: String,
}

/// A log analysis over all batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogReport {
    /// One verdict per input line, in input order.
    pub lines: Vec<LineVerdict>,
    /// Per batch: lines, provider, fallbacks, cache, usage.
    pub batches: Vec<BatchInfo>,
    /// Assessments dropped (an index outside the batch, or a second one for the same line).
    pub rejected: Vec<RejectedFinding>,
    /// Tokens used over all batches.
    pub usage: Usage,
}

/// Runs log analyses on a provider.
///
/// ```
/// use anomaly_llm::logs::{LogAnalyzer, LogCategory, LogLine, LogTemplate, TemplateHistory};
/// use anomaly_llm::OfflineProvider;
///
/// let usual_error = LogTemplate {
///     id: "t1".into(),
///     pattern: Some("ERROR cache miss for <*>".into()),
///     history: Some(TemplateHistory { occurrences: 5_000, error_share: 1.0 }),
/// };
/// let lines = vec![
///     LogLine::new("ERROR cache miss for user:42").with_template(usual_error),
///     LogLine::new("FATAL out of memory: killed process 1234 (api)"),
/// ];
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let report = LogAnalyzer::new(OfflineProvider::new()).analyze(&lines).await?;
/// let score = |i: usize| report.lines[i].assessment.as_ref().unwrap().score;
/// assert!(score(0) < 0.2, "an error template that always says error is routine");
/// assert!(score(1) > 0.8);
/// assert_eq!(report.lines[1].assessment.as_ref().unwrap().category, LogCategory::Resource);
/// # Ok::<(), anomaly_llm::LlmError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LogAnalyzer<P> {
    provider: P,
    settings: AnalyzerSettings,
}

impl<P: Provider> LogAnalyzer<P> {
    /// An analyser with the default settings.
    pub fn new(provider: P) -> Self {
        Self::with_settings(provider, AnalyzerSettings::default())
    }

    /// An analyser with explicit settings.
    pub fn with_settings(provider: P, settings: AnalyzerSettings) -> Self {
        LogAnalyzer { provider, settings }
    }

    /// The batches `lines` would be sent in (pure).
    pub fn batches(&self, lines: &[LogLine]) -> Vec<LogBatch> {
        if lines.is_empty() {
            return Vec::new();
        }
        let plan = self
            .settings
            .plan_for(self.provider.reads_prompt(), lines.len(), || {
                let sizes = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| {
                        prompt::estimate_tokens(&prompt::render_log_line(i, l))
                            + (i.to_string().len() + 3).div_ceil(4)
                    })
                    .collect();
                let fixed = prompt::estimate_tokens(&prompt::render_log_prompt(&LogBatch {
                    lines: Vec::new(),
                    batch: 0,
                    batches: 1,
                })) + 16;
                (sizes, fixed)
            });
        let batches = plan.len();
        plan.into_iter()
            .enumerate()
            .map(|(batch, range)| LogBatch {
                lines: range
                    .map(|index| IndexedLine {
                        index,
                        line: lines[index].clone(),
                    })
                    .collect(),
                batch,
                batches,
            })
            .collect()
    }

    /// The request for one batch (pure).
    pub fn request(&self, batch: &LogBatch) -> CompletionRequest {
        let text = prompt::user_text(self.provider.reads_prompt(), || {
            prompt::render_log_prompt(batch)
        });
        CompletionRequest::new(prompt::LOG_SYSTEM_PROMPT, text)
            .with_schema(log_schema())
            .with_max_tokens(self.settings.max_tokens)
            .with_temperature(self.settings.temperature)
            .with_timeout(self.settings.timeout)
            .with_log_contents(self.settings.log_contents)
            .with_task(Task::Logs(Box::new(batch.clone())))
    }

    /// Analyses `lines` batch by batch, in order. No lines give an empty report without asking the provider.
    ///
    /// # Errors
    /// [`LlmError::Config`] for invalid settings, and the provider's error when a batch gets no valid answer.
    pub async fn analyze(&self, lines: &[LogLine]) -> Result<LogReport> {
        self.settings.validate()?;
        let mut report = LogReport {
            lines: (0..lines.len())
                .map(|line_index| LineVerdict {
                    line_index,
                    assessment: None,
                    provider: String::new(),
                })
                .collect(),
            batches: Vec::new(),
            rejected: Vec::new(),
            usage: Usage::default(),
        };
        for batch in self.batches(lines) {
            let request = self.request(&batch);
            let response = self.provider.complete_validated(&request).await?;
            let raw = response.json.clone().unwrap_or(Value::Null);
            // Validation already read it as a `LogAnalysis` with an entry for every line of the batch; this
            // fails only for a provider whose own `complete_validated` skips those checks.
            let answer: LogAnalysis =
                serde_json::from_value(raw.clone()).map_err(|_| LlmError::InvalidOutput {
                    provider: response.provider.clone(),
                    schema: log_schema().name,
                    errors: vec!["/: does not read as a log analysis".into()],
                })?;
            let allowed: BTreeSet<usize> = batch.lines.iter().map(|l| l.index).collect();
            for (i, assessment) in answer.lines.into_iter().enumerate() {
                let reject = |reason: String| RejectedFinding {
                    finding: raw["lines"][i].clone(),
                    reason,
                    provider: response.provider.clone(),
                };
                let index = assessment.line_index;
                if !allowed.contains(&index) {
                    warn!(provider = %response.provider, line_index = index, "dropping an assessment outside the batch");
                    report
                        .rejected
                        .push(reject(format!("line_index {index} is not in this batch")));
                    continue;
                }
                let slot = &mut report.lines[index];
                if slot.assessment.is_some() {
                    report
                        .rejected
                        .push(reject(format!("a second assessment of line {index}")));
                    continue;
                }
                slot.assessment = Some(assessment);
                slot.provider = response.provider.clone();
            }
            let indices: Vec<usize> = batch.lines.iter().map(|l| l.index).collect();
            for &i in &indices {
                if report.lines[i].assessment.is_none() {
                    warn!(provider = %response.provider, line_index = i, "the answer left a line out");
                    report.lines[i].provider = response.provider.clone();
                }
            }
            report.usage.add(response.usage);
            report.batches.push(BatchInfo {
                indices,
                provider: response.provider,
                fallback_from: response.fallback_from,
                skipped: response.skipped,
                cached: response.cached,
                usage: response.usage,
            });
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_rejects_scores_outside_the_unit_interval() {
        let ok =
            json!({"lines": [{"line_index": 0, "score": 0.3, "category": "error", "reason": "r"}]});
        assert!(crate::validate::validate(&ok, &log_schema().schema).is_empty());
        let mut bad = ok.clone();
        bad["lines"][0]["score"] = json!(1.5);
        assert!(!crate::validate::validate(&bad, &log_schema().schema).is_empty());
    }
}
