//! Query analysis: a GraphQL query, its caller and the records the detectors flagged → findings per record, an
//! analysis of the query pattern and security concerns.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use anomaly_core::engine::{BatchReport, RecordExplanation, RecordVerdict};
use anomaly_core::stats::{Comparison, DatasetStats};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{debug, warn};

use crate::error::{LlmError, Result};
use crate::prompt;
use crate::provider::Provider;
use crate::request::{CompletionRequest, OutputSchema, SkippedLink, Task, Usage};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Worth a look.
    Low,
    /// Should be reviewed.
    Medium,
    /// Act on it.
    High,
}

/// What kind of problem a record finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCategory {
    /// Values that are each plausible but unusual together.
    UnusualCombination,
    /// A record or result far larger than usual.
    SizeAnomaly,
    /// A value outside its field's normal or valid range.
    RangeViolation,
    /// Data leakage, injection, privilege problems.
    SecurityConcern,
    /// A violation of what the data means (negative amounts, impossible dates, …).
    BusinessLogic,
}

/// One record's finding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecordFinding {
    /// The record's index in the caller's result (as given in [`FlaggedRecord::index`]).
    pub record_index: usize,
    /// Why, in a sentence.
    pub reason: String,
    /// How serious.
    pub risk_level: RiskLevel,
    /// What kind.
    pub category: FindingCategory,
}

/// What the query's shape says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryPatternAnalysis {
    /// Whether the query looks like ordinary use.
    pub typical: bool,
    /// What is unusual about it (data leakage, excessive retrieval, obfuscated names, …).
    pub concerns: Vec<String>,
    /// What to do about it.
    pub recommendations: Vec<String>,
}

/// A security concern about the query or its results.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecurityConcern {
    /// A short label (`sql_injection`, `introspection`, `sensitive_data_exposure`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// How serious.
    pub severity: RiskLevel,
    /// What was seen.
    pub detail: String,
}

/// The answer of one query-analysis request: the JSON shape every provider returns (see [`query_schema`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryAnalysis {
    /// Whether anything anomalous was found.
    pub anomalies_detected: bool,
    /// Findings per record.
    pub findings: Vec<RecordFinding>,
    /// The query pattern.
    pub query_pattern_analysis: QueryPatternAnalysis,
    /// Security concerns.
    pub security_concerns: Vec<SecurityConcern>,
}

/// The schema of [`QueryAnalysis`], strict-mode compatible (every property required, no extra properties).
pub fn query_schema() -> OutputSchema {
    let risk = json!({"type": "string", "enum": ["low", "medium", "high"]});
    let strings = json!({"type": "array", "items": {"type": "string"}});
    OutputSchema {
        name: "report_query_analysis".into(),
        description: "Report the anomalies found in this batch of query results.".into(),
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["anomalies_detected", "findings", "query_pattern_analysis", "security_concerns"],
            "properties": {
                "anomalies_detected": {"type": "boolean"},
                "findings": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["record_index", "reason", "risk_level", "category"],
                    "properties": {
                        "record_index": {"type": "integer", "minimum": 0},
                        "reason": {"type": "string"},
                        "risk_level": risk,
                        "category": {"type": "string", "enum": [
                            "unusual_combination", "size_anomaly", "range_violation",
                            "security_concern", "business_logic"
                        ]}
                    }
                }},
                "query_pattern_analysis": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["typical", "concerns", "recommendations"],
                    "properties": {
                        "typical": {"type": "boolean"},
                        "concerns": strings,
                        "recommendations": strings
                    }
                },
                "security_concerns": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["type", "severity", "detail"],
                    "properties": {
                        "type": {"type": "string"},
                        "severity": risk,
                        "detail": {"type": "string"}
                    }
                }}
            }
        }),
    }
}

/// A statistical detector's verdict on a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatisticalVerdict {
    /// Which detector (`isolation_forest`, …).
    pub detector: String,
    /// Its score; higher is more anomalous.
    pub score: f64,
    /// The threshold the score was compared with.
    pub threshold: f64,
    /// `score > threshold`.
    pub is_anomaly: bool,
    /// Its explanation, when there is one.
    pub rationale: Option<String>,
}

/// The detector name given to the engine's verdicts that no detector flagged (the forest scored them).
pub const RECORD_MODEL_DETECTOR: &str = "isolation_forest";

/// A [`RecordVerdict`] is the engine's: its detector is the one that flagged it (the forest first, else the range
/// rule), or the forest that scored it. A verdict from any other detector is built as a `StatisticalVerdict`
/// directly, with its own name.
impl From<RecordVerdict> for StatisticalVerdict {
    fn from(v: RecordVerdict) -> Self {
        StatisticalVerdict {
            detector: v
                .flagged_by
                .primary()
                .map_or(RECORD_MODEL_DETECTOR, |d| d.as_str())
                .into(),
            score: v.score,
            threshold: v.threshold,
            is_anomaly: v.is_anomaly,
            rationale: None,
        }
    }
}

impl From<&RecordExplanation> for StatisticalVerdict {
    fn from(e: &RecordExplanation) -> Self {
        StatisticalVerdict {
            rationale: Some(e.rationale.clone()),
            ..StatisticalVerdict::from(e.verdict)
        }
    }
}

/// A record of the result, with the detectors' verdict on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlaggedRecord {
    /// Its index in the caller's result; findings refer to it.
    pub index: usize,
    /// The record.
    pub record: Value,
    /// The statistical verdict, if a detector scored it.
    pub verdict: Option<StatisticalVerdict>,
}

/// Everything a query analysis looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryContext {
    /// The GraphQL query text.
    pub query: String,
    /// The operation name, if the caller gave one.
    pub operation_name: Option<String>,
    /// The query's variables (`Value::Null` when none).
    pub variables: Value,
    /// The caller's role (`admin`, `user`, …), if known.
    pub role: Option<String>,
    /// Statistics of the whole result.
    pub stats: DatasetStats,
    /// How the result differs from the query's history; `None` (or an empty history) means baseline mode.
    pub comparison: Option<Comparison>,
    /// The records the detectors flagged (or all records worth a look), with their indices in the result.
    pub flagged: Vec<FlaggedRecord>,
}

impl QueryContext {
    /// A context with the query and the result's statistics; no operation name, variables, role, history or
    /// flagged records yet.
    pub fn new(query: impl Into<String>, stats: DatasetStats) -> Self {
        QueryContext {
            query: query.into(),
            operation_name: None,
            variables: Value::Null,
            role: None,
            stats,
            comparison: None,
            flagged: Vec::new(),
        }
    }

    /// A context for one batch the record engine observed ([`Engine::observe_batch`](anomaly_core::engine::Engine::observe_batch)):
    /// the batch's statistics and its comparison with the key's baseline, and as records to look at every flagged
    /// one (with its verdict and explanation) and the first `sample` of the others.
    pub fn from_batch(
        query: impl Into<String>,
        records: &[Value],
        report: &BatchReport,
        sample: usize,
    ) -> Self {
        let mut ctx = QueryContext::new(query, report.statistics.clone());
        ctx.comparison = report.comparison.clone();
        ctx.flagged = records
            .iter()
            .zip(&report.outcomes)
            .enumerate()
            .filter(|(i, (_, o))| o.is_anomaly() || *i < sample)
            .map(|(i, (record, o))| FlaggedRecord {
                index: i,
                record: record.clone(),
                verdict: o.verdict().map(|v| StatisticalVerdict {
                    rationale: report.explanations.get(&i).map(|e| e.rationale.clone()),
                    ..StatisticalVerdict::from(*v)
                }),
            })
            .collect();
        ctx
    }

    /// Whether the analysis runs in baseline mode (no history to compare with).
    pub fn mode(&self) -> AnalysisMode {
        match &self.comparison {
            Some(c) if c.history_batches > 0 => AnalysisMode::Compared,
            _ => AnalysisMode::Baseline,
        }
    }
}

/// With or without a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisMode {
    /// No history yet: records are judged against the query and the result alone.
    Baseline,
    /// A history exists and the comparison with it is part of the input.
    Compared,
}

/// One batch of a query analysis: what a provider is given (rendered for HTTP providers, as data for the offline
/// one).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryBatch {
    /// Baseline or compared.
    pub mode: AnalysisMode,
    /// The query text.
    pub query: String,
    /// The operation name.
    pub operation_name: Option<String>,
    /// The variables.
    pub variables: Value,
    /// The caller's role.
    pub role: Option<String>,
    /// The result's statistics ([`DatasetStats::to_prompt_json`]).
    pub stats: Value,
    /// The comparison with history (compared mode only).
    pub comparison: Option<Comparison>,
    /// This batch's records.
    pub records: Vec<FlaggedRecord>,
    /// 0-based batch number.
    pub batch: usize,
    /// Number of batches.
    pub batches: usize,
}

/// How the analysers talk to their provider.
///
/// | setting | default | environment |
/// | --- | --- | --- |
/// | `max_records_per_batch` | 50 | `MAX_RECORDS_PER_BATCH` |
/// | `max_tokens` | 4,096 | `MAX_TOKENS` |
/// | `max_input_tokens` | 30,000 | |
/// | `temperature` | `Some(0.0)` | |
/// | `timeout` | 60 s | |
/// | `log_contents` | `false` | |
///
/// A batch holds at most `max_records_per_batch` records (log lines), and fewer when the user message — the
/// query, statistics and comparison every batch repeats, plus the rendered records — would pass
/// `max_input_tokens` (estimated at four characters a token) or when a worst-case answer — one finding per record,
/// [`ANSWER_TOKENS_PER_ITEM`] tokens each plus [`ANSWER_BASE_TOKENS`] — would not fit in `max_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzerSettings {
    /// Most records (or log lines) per request.
    pub max_records_per_batch: usize,
    /// Most answer tokens per request (the request's `max_tokens`).
    pub max_tokens: u32,
    /// Most estimated tokens of the user message per request: the query, its statistics and comparison, and the
    /// rendered records (or log lines).
    pub max_input_tokens: usize,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Whether providers may log prompt and answer contents (at `debug`).
    pub log_contents: bool,
}

impl Default for AnalyzerSettings {
    fn default() -> Self {
        AnalyzerSettings {
            max_records_per_batch: 50,
            max_tokens: 4096,
            max_input_tokens: 30_000,
            temperature: Some(0.0),
            timeout: Duration::from_secs(60),
            log_contents: false,
        }
    }
}

/// Answer tokens budgeted per record (or log line) of a batch.
pub const ANSWER_TOKENS_PER_ITEM: usize = 60;
/// Answer tokens budgeted for the fixed part of an answer.
pub const ANSWER_BASE_TOKENS: usize = 400;

impl AnalyzerSettings {
    /// # Errors
    /// [`LlmError::Config`] for a zero batch size or token limit, or a temperature that is not a number in
    /// `[0, 2]`.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(LlmError::Config {
                setting: "temperature".into(),
                reason: format!("{t} is not in [0, 2]"),
            });
        }
        if self.max_records_per_batch == 0 {
            return Err(LlmError::Config {
                setting: "MAX_RECORDS_PER_BATCH".into(),
                reason: "must be at least 1".into(),
            });
        }
        if (self.max_tokens as usize) < ANSWER_BASE_TOKENS + ANSWER_TOKENS_PER_ITEM {
            return Err(LlmError::Config {
                setting: "MAX_TOKENS".into(),
                reason: format!(
                    "{} leaves no room for an answer; at least {} are needed",
                    self.max_tokens,
                    ANSWER_BASE_TOKENS + ANSWER_TOKENS_PER_ITEM
                ),
            });
        }
        Ok(())
    }

    /// Items per batch allowed by the answer budget and `max_records_per_batch`.
    fn items_per_batch(&self) -> usize {
        let by_answer =
            (self.max_tokens as usize).saturating_sub(ANSWER_BASE_TOKENS) / ANSWER_TOKENS_PER_ITEM;
        self.max_records_per_batch.min(by_answer).max(1)
    }

    /// Splits items of the given estimated token sizes into consecutive batches (pure): at most
    /// `min(max_records_per_batch, (max_tokens − 400) / 60)` each, and within `max_input_tokens` unless a
    /// single item is larger on its own. No items give one empty batch (the query pattern is still analysed).
    pub fn plan_batches(&self, item_tokens: &[usize]) -> Vec<Range<usize>> {
        self.plan_batches_within(item_tokens, 0)
    }

    /// The batches of `count` items for a provider: by the token budgets (`measure` gives each item's tokens
    /// and the tokens every request repeats) when it reads prompts, by `max_records_per_batch` alone when it
    /// does not (see [`Provider::reads_prompt`](crate::Provider::reads_prompt)).
    pub(crate) fn plan_for(
        &self,
        reads_prompt: bool,
        count: usize,
        measure: impl FnOnce() -> (Vec<usize>, usize),
    ) -> Vec<Range<usize>> {
        if reads_prompt {
            let (sizes, fixed) = measure();
            self.plan_batches_within(&sizes, fixed)
        } else {
            self.plan_batches(&vec![0; count])
        }
    }

    /// As [`plan_batches`](Self::plan_batches) when every request also carries `fixed_tokens` of other text
    /// (the query, its statistics, the comparison, the instructions): the items get what is left of
    /// `max_input_tokens`.
    pub fn plan_batches_within(
        &self,
        item_tokens: &[usize],
        fixed_tokens: usize,
    ) -> Vec<Range<usize>> {
        let budget = self.max_input_tokens.saturating_sub(fixed_tokens);
        let cap = self.items_per_batch();
        let mut batches = Vec::new();
        let (mut start, mut tokens) = (0, 0usize);
        for (i, &t) in item_tokens.iter().enumerate() {
            let count = i - start;
            if count > 0 && (count >= cap || tokens.saturating_add(t) > budget) {
                batches.push(start..i);
                start = i;
                tokens = 0;
            }
            tokens = tokens.saturating_add(t);
        }
        if start < item_tokens.len() || batches.is_empty() {
            batches.push(start..item_tokens.len());
        }
        batches
    }
}

/// Where one batch's answer came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInfo {
    /// The indices of the batch's records (or log lines).
    pub indices: Vec<usize>,
    /// The provider that answered.
    pub provider: String,
    /// Providers passed over before it: tried and failed, or skipped without being asked (those are also in
    /// [`skipped`](Self::skipped)).
    pub fallback_from: Vec<String>,
    /// The providers of `fallback_from` that were not asked at all (circuit open, or no free call slot), with why.
    #[serde(default)]
    pub skipped: Vec<SkippedLink>,
    /// Whether the answer came from a cache.
    pub cached: bool,
    /// Tokens used.
    pub usage: Usage,
}

/// A finding the analyser refused, and why (for example an index outside the batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedFinding {
    /// The finding as the provider gave it.
    pub finding: Value,
    /// Why it was dropped.
    pub reason: String,
    /// The provider that gave it.
    pub provider: String,
}

/// A query analysis over all batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryReport {
    /// Baseline or compared.
    pub mode: AnalysisMode,
    /// The merged answer: findings of every batch (only valid indices), concerns and recommendations without
    /// repeats, `typical` only if every batch said so, `anomalies_detected` if any batch did or any finding or
    /// security concern remains.
    pub analysis: QueryAnalysis,
    /// Per batch: records, provider, fallbacks, cache, usage.
    pub batches: Vec<BatchInfo>,
    /// Findings dropped by the analyser.
    pub rejected: Vec<RejectedFinding>,
    /// Tokens used over all batches.
    pub usage: Usage,
}

/// Runs query analyses on a provider (a single one, a [`FallbackChain`](crate::FallbackChain), a
/// [`Cached`](crate::Cached) one, …).
///
/// ```
/// use anomaly_core::records::flatten::Limits;
/// use anomaly_core::stats::DatasetStats;
/// use anomaly_llm::query::{FlaggedRecord, QueryAnalyzer, QueryContext};
/// use anomaly_llm::OfflineProvider;
/// use serde_json::json;
///
/// let rows = vec![json!({"id": 1, "email": "a@example.com", "password": "hunter2"})];
/// let mut ctx = QueryContext::new(
///     "query { users { id email password } }",
///     DatasetStats::from_records(&rows, &Limits::default()).unwrap(),
/// );
/// ctx.role = Some("viewer".into());
/// ctx.flagged = vec![FlaggedRecord { index: 0, record: rows[0].clone(), verdict: None }];
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let report = QueryAnalyzer::new(OfflineProvider::new()).analyze(&ctx).await?;
/// assert!(report.analysis.anomalies_detected);
/// assert!(report.analysis.security_concerns.iter().any(|c| c.kind == "sensitive_data_exposure"));
/// # Ok::<(), anomaly_llm::LlmError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct QueryAnalyzer<P> {
    provider: P,
    settings: AnalyzerSettings,
}

impl<P: Provider> QueryAnalyzer<P> {
    /// An analyser with the default settings.
    pub fn new(provider: P) -> Self {
        Self::with_settings(provider, AnalyzerSettings::default())
    }

    /// An analyser with explicit settings.
    pub fn with_settings(provider: P, settings: AnalyzerSettings) -> Self {
        QueryAnalyzer { provider, settings }
    }

    /// The settings.
    pub fn settings(&self) -> &AnalyzerSettings {
        &self.settings
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The batches `ctx` would be sent in (pure). The budget `max_input_tokens` covers the whole user message:
    /// what every batch repeats (the query, operation name, role, variables, statistics and comparison) is
    /// counted first, and the records share the rest.
    pub fn batches(&self, ctx: &QueryContext) -> Vec<QueryBatch> {
        let mode = ctx.mode();
        let template = QueryBatch {
            mode,
            query: ctx.query.clone(),
            operation_name: ctx.operation_name.clone(),
            variables: ctx.variables.clone(),
            role: ctx.role.clone(),
            stats: ctx.stats.to_prompt_json(),
            comparison: match mode {
                AnalysisMode::Compared => ctx.comparison.clone(),
                AnalysisMode::Baseline => None,
            },
            records: Vec::new(),
            batch: 0,
            batches: 1,
        };
        let plan = self
            .settings
            .plan_for(self.provider.reads_prompt(), ctx.flagged.len(), || {
                // Plus a margin: batch numbers and the sentence around the index list vary a little between batches.
                let fixed = prompt::estimate_tokens(&prompt::render_query_prompt(&template)) + 16;
                // Each record is one line of its block and one entry of the list of allowed indices.
                let sizes = ctx
                    .flagged
                    .iter()
                    .map(|r| {
                        prompt::estimate_tokens(&prompt::render_record(r))
                            + (r.index.to_string().len() + 3).div_ceil(4)
                    })
                    .collect();
                (sizes, fixed)
            });
        let batches = plan.len();
        plan.into_iter()
            .enumerate()
            .map(|(batch, range)| QueryBatch {
                records: ctx.flagged[range].to_vec(),
                batch,
                batches,
                ..template.clone()
            })
            .collect()
    }

    /// The request for one batch (pure).
    pub fn request(&self, batch: &QueryBatch) -> CompletionRequest {
        let text = prompt::user_text(self.provider.reads_prompt(), || {
            prompt::render_query_prompt(batch)
        });
        CompletionRequest::new(prompt::QUERY_SYSTEM_PROMPT, text)
            .with_schema(query_schema())
            .with_max_tokens(self.settings.max_tokens)
            .with_temperature(self.settings.temperature)
            .with_timeout(self.settings.timeout)
            .with_log_contents(self.settings.log_contents)
            .with_task(Task::Query(Box::new(batch.clone())))
    }

    /// Analyses `ctx` batch by batch, in order.
    ///
    /// # Errors
    /// [`LlmError::InvalidInput`] for duplicate record indices, [`LlmError::Config`] for invalid settings, and
    /// the provider's error when a batch gets no valid answer (a chain ending in the offline provider always
    /// answers).
    pub async fn analyze(&self, ctx: &QueryContext) -> Result<QueryReport> {
        self.settings.validate()?;
        let mut seen = BTreeSet::new();
        if let Some(dup) = ctx.flagged.iter().find(|r| !seen.insert(r.index)) {
            return Err(LlmError::InvalidInput {
                field: "flagged",
                reason: format!("record index {} appears twice", dup.index),
            });
        }
        let mut report = QueryReport {
            mode: ctx.mode(),
            analysis: QueryAnalysis {
                query_pattern_analysis: QueryPatternAnalysis {
                    typical: true,
                    ..Default::default()
                },
                ..Default::default()
            },
            batches: Vec::new(),
            rejected: Vec::new(),
            usage: Usage::default(),
        };
        for batch in self.batches(ctx) {
            let request = self.request(&batch);
            debug!(
                batch = batch.batch,
                records = batch.records.len(),
                "query analysis batch"
            );
            let response = self.provider.complete_validated(&request).await?;
            let json = response.json.clone().unwrap_or(Value::Null);
            // Validation already read it as a `QueryAnalysis`; this fails only for a provider whose own
            // `complete_validated` skips that check.
            let answer: QueryAnalysis =
                serde_json::from_value(json.clone()).map_err(|_| LlmError::InvalidOutput {
                    provider: response.provider.clone(),
                    schema: query_schema().name,
                    errors: vec!["/: does not read as a query analysis".into()],
                })?;
            let indices: Vec<usize> = batch.records.iter().map(|r| r.index).collect();
            merge_batch(&mut report, answer, &json, &indices, &response.provider);
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
        let a = &mut report.analysis;
        a.anomalies_detected |= !a.findings.is_empty() || !a.security_concerns.is_empty();
        Ok(report)
    }
}

/// Folds one batch's answer into the report, dropping findings whose index is not in the batch.
fn merge_batch(
    report: &mut QueryReport,
    answer: QueryAnalysis,
    raw: &Value,
    indices: &[usize],
    provider: &str,
) {
    let allowed: BTreeSet<usize> = indices.iter().copied().collect();
    let a = &mut report.analysis;
    a.anomalies_detected |= answer.anomalies_detected;
    for (i, finding) in answer.findings.into_iter().enumerate() {
        if allowed.contains(&finding.record_index) {
            if !a.findings.contains(&finding) {
                a.findings.push(finding);
            }
        } else {
            warn!(
                provider,
                record_index = finding.record_index,
                "dropping a finding for a record outside the batch"
            );
            report.rejected.push(RejectedFinding {
                finding: raw["findings"][i].clone(),
                reason: format!("record_index {} is not in this batch", finding.record_index),
                provider: provider.to_string(),
            });
        }
    }
    let p = &mut a.query_pattern_analysis;
    p.typical &= answer.query_pattern_analysis.typical;
    push_new(&mut p.concerns, answer.query_pattern_analysis.concerns);
    push_new(
        &mut p.recommendations,
        answer.query_pattern_analysis.recommendations,
    );
    push_new(&mut a.security_concerns, answer.security_concerns);
}

fn push_new<T: PartialEq>(into: &mut Vec<T>, items: Vec<T>) {
    for item in items {
        if !into.contains(&item) {
            into.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_context_holds_every_flagged_record_and_a_sample() {
        use anomaly_core::engine::{Engine, EngineParams};
        let engine =
            Engine::in_memory(EngineParams::new().min_training_records(50).drift(None)).unwrap();
        let normal: Vec<Value> = (0..200).map(|i| json!({"amount": 100 + i % 7})).collect();
        engine.observe_batch("q", &normal).unwrap();
        let mut batch: Vec<Value> = (0..10).map(|i| json!({"amount": 100 + i % 7})).collect();
        batch[8] = json!({"amount": 1_000_000});
        let report = engine.observe_batch("q", &batch).unwrap();
        let ctx = QueryContext::from_batch("{ q }", &batch, &report, 3);
        let indices: Vec<usize> = ctx.flagged.iter().map(|f| f.index).collect();
        assert!(
            indices.starts_with(&[0, 1, 2]) && indices.contains(&8),
            "{indices:?}"
        );
        let flagged = ctx.flagged.iter().find(|f| f.index == 8).unwrap();
        let verdict = flagged.verdict.as_ref().unwrap();
        assert!(
            verdict.is_anomaly && verdict.rationale.is_some(),
            "{verdict:?}"
        );
        assert_eq!(ctx.stats.n_records(), 10);
        assert!(ctx.comparison.is_some());
    }

    #[test]
    fn batches_respect_count_input_and_answer_budgets() {
        let s = AnalyzerSettings::default();
        let plan = s.plan_batches(&[10; 120]);
        assert_eq!(plan, vec![0..50, 50..100, 100..120]);
        assert_eq!(s.plan_batches(&[]), vec![0..0]);
        let tight = AnalyzerSettings {
            max_input_tokens: 25,
            ..AnalyzerSettings::default()
        };
        assert_eq!(
            tight.plan_batches(&[10, 10, 10, 100, 1]),
            vec![0..2, 2..3, 3..4, 4..5]
        );
        let small_answer = AnalyzerSettings {
            max_tokens: 1000,
            ..AnalyzerSettings::default()
        };
        // (1000 − 400) / 60 = 10 records per batch.
        assert_eq!(small_answer.plan_batches(&[1; 25]).len(), 3);
        assert!(
            AnalyzerSettings {
                max_tokens: 100,
                ..AnalyzerSettings::default()
            }
            .validate()
            .is_err()
        );
        for t in [f32::NAN, -0.1, 2.5] {
            assert!(
                AnalyzerSettings {
                    temperature: Some(t),
                    ..AnalyzerSettings::default()
                }
                .validate()
                .is_err(),
                "{t}"
            );
        }
        assert!(
            AnalyzerSettings {
                max_records_per_batch: 0,
                ..AnalyzerSettings::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn the_schema_accepts_the_typed_answer_and_is_strict() {
        let answer = QueryAnalysis {
            anomalies_detected: true,
            findings: vec![RecordFinding {
                record_index: 3,
                reason: "r".into(),
                risk_level: RiskLevel::High,
                category: FindingCategory::BusinessLogic,
            }],
            query_pattern_analysis: QueryPatternAnalysis::default(),
            security_concerns: vec![SecurityConcern {
                kind: "x".into(),
                severity: RiskLevel::Low,
                detail: "d".into(),
            }],
        };
        let v = serde_json::to_value(&answer).unwrap();
        assert!(crate::validate::validate(&v, &query_schema().schema).is_empty());
        let mut bad = v.clone();
        bad["findings"][0]["category"] = json!("everything_is_fine");
        assert!(!crate::validate::validate(&bad, &query_schema().schema).is_empty());
    }
}
