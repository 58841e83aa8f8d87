//! One log line in, one answer out: the request's checks, the detector (shared, behind a lock), the answer's
//! shape, the second opinion, and the detections handed to the store.

use std::sync::{Arc, Mutex, MutexGuard};

use anomaly_core::logs::{LogDetector, LogVerdict, Severity, TemplateSummary};
use anomaly_core::records::flatten::type_name;
use anomaly_llm::logs::{LogAnalyzer as LlmLogAnalyzer, LogLine, LogTemplate, TemplateHistory};
use anomaly_llm::{Cached, FallbackChain};
use anomaly_store::{Anomaly, AnomalyQueue};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::metrics::Metrics;

/// The `model_name` every answer carries.
pub const MODEL_NAME: &str = "drain-template-history";

/// Characters of a flagged line kept in its stored detection.
const STORED_LINE_CHARS: usize = 4_096;

/// Lines analyzed under one hold of the detector's lock: a long batch lets other requests in between chunks.
const LINES_PER_LOCK: usize = 256;

/// One request item, as the original's backend sends it (`timestamp` is an extension).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct LogRequest {
    /// Any JSON value; echoed back.
    #[serde(default)]
    pub log_id: Value,
    /// The line.
    #[serde(default)]
    pub log_text: Value,
    /// The line's time (RFC 3339), when its header has none; the arrival time otherwise.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// An assessment through `anomaly-llm`, for a line above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecondOpinion {
    /// The provider that answered (`offline` for the deterministic rules).
    pub provider: String,
    /// Its score in `0..=1`.
    pub score: f64,
    /// Its category (`error`, `security`, `performance`, `resource`, `novel`, `normal`).
    pub category: String,
    /// Its reason.
    pub reason: String,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogAnswer {
    /// The request's `log_id`.
    pub log_id: Value,
    /// The score in `0..=1`.
    pub anomaly_score: f64,
    /// `anomaly_score > ANOMALY_THRESHOLD`.
    pub is_anomaly: bool,
    /// [`MODEL_NAME`].
    pub model_name: &'static str,
    /// The line's template.
    pub template_id: Option<u64>,
    /// The template's text.
    pub template: String,
    /// Why, in words, strongest first.
    pub reasons: Vec<String>,
    /// The level its header names (`ERROR`), if any.
    pub severity: Option<&'static str>,
    /// Whether the line started its template.
    pub new_template: bool,
    /// The line's time as used (RFC 3339).
    pub time: String,
    /// The second opinion, for flagged lines when enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub second_opinion: Option<SecondOpinion>,
}

/// A refused line: its `log_id` and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    /// The request's `log_id`.
    pub log_id: Value,
    /// Why, naming the limit when one was crossed.
    pub error: String,
    /// The metric label.
    #[serde(skip)]
    pub reason: &'static str,
}

/// The shared analysis state of the service (and of the `train` and `score` commands).
pub struct Analysis {
    detector: Mutex<LogDetector>,
    threshold: f64,
    max_line_bytes: usize,
    state_key: String,
    second_opinion: Option<(LlmLogAnalyzer<Cached<FallbackChain>>, std::time::Duration)>,
    queue: Mutex<Option<AnomalyQueue>>,
    metrics: Metrics,
}

impl Analysis {
    /// The analysis around `detector`.
    pub fn new(
        detector: LogDetector,
        threshold: f64,
        max_line_bytes: usize,
        state_key: String,
        metrics: Metrics,
    ) -> Self {
        Analysis {
            detector: Mutex::new(detector),
            threshold,
            max_line_bytes,
            state_key,
            second_opinion: None,
            queue: Mutex::new(None),
            metrics,
        }
    }

    /// Flagged lines also get an assessment from `analyzer`, waiting at most `timeout` for it.
    pub fn with_second_opinion(
        mut self,
        analyzer: LlmLogAnalyzer<Cached<FallbackChain>>,
        timeout: std::time::Duration,
    ) -> Self {
        self.second_opinion = Some((analyzer, timeout));
        self
    }

    /// Flagged lines are stored through `queue`.
    pub fn with_queue(self, queue: AnomalyQueue) -> Self {
        *self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(queue);
        self
    }

    /// The threshold on `anomaly_score`.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Takes the detections' queue out (at shutdown, to close it); later flagged lines are not stored.
    pub fn take_queue(&self) -> Option<AnomalyQueue> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// The detector, locked. A poisoned lock (a panic while it was held) is recovered: the detector's updates
    /// are single assignments that leave it consistent.
    pub fn detector(&self) -> MutexGuard<'_, LogDetector> {
        self.detector
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `(lines seen, templates)`.
    pub fn totals(&self) -> (u64, usize) {
        let d = self.detector();
        (d.lines_seen(), d.template_count())
    }

    /// Scores then learns each request in order; a refused item gets its reason instead of an answer.
    pub async fn analyze(
        &self,
        requests: &[LogRequest],
        learn: bool,
    ) -> Vec<Result<LogAnswer, Refusal>> {
        let now = Utc::now();
        let mut out: Vec<Result<LogAnswer, Refusal>> = Vec::with_capacity(requests.len());
        for chunk in requests.chunks(LINES_PER_LOCK) {
            let mut detector = self.detector();
            for r in chunk {
                out.push(self.one(&mut detector, r, now, learn));
            }
            self.metrics
                .templates(detector.template_count() as u64, detector.lines_seen());
        }
        self.second_opinions(requests, &mut out).await;
        for (a, r) in out.iter().zip(requests) {
            match a {
                Ok(a) => {
                    self.metrics.line(a.is_anomaly);
                    if a.is_anomaly {
                        self.store(a, r.log_text.as_str().unwrap_or_default());
                    }
                }
                Err(r) => self.metrics.refused(r.reason),
            }
        }
        out
    }

    fn one(
        &self,
        detector: &mut LogDetector,
        r: &LogRequest,
        now: DateTime<Utc>,
        learn: bool,
    ) -> Result<LogAnswer, Refusal> {
        let refuse = |reason: &'static str, error: String| Refusal {
            log_id: r.log_id.clone(),
            error,
            reason,
        };
        let text = match &r.log_text {
            Value::String(s) => s.as_str(),
            Value::Null => return Err(refuse("missing", "log_text is missing".into())),
            other => {
                return Err(refuse(
                    "not_text",
                    format!("log_text must be a string, not {}", type_name(other)),
                ));
            }
        };
        check_line(text, self.max_line_bytes).map_err(|(reason, e)| refuse(reason, e))?;
        let fallback = match &r.timestamp {
            None => now,
            Some(t) => {
                let at = DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        refuse(
                            "bad_timestamp",
                            format!("timestamp `{t}` is not RFC 3339: {e}"),
                        )
                    })?;
                if !(2000..2100).contains(&chrono::Datelike::year(&at)) {
                    return Err(refuse(
                        "bad_timestamp",
                        format!("timestamp `{t}` is not between 2000 and 2100"),
                    ));
                }
                at
            }
        };
        let seconds = fallback.timestamp_micros() as f64 / 1e6;
        let verdict = if learn {
            detector.analyze(text, seconds)
        } else {
            detector.score(text, seconds)
        }
        .map_err(|e| refuse("invalid", e.to_string()))?;
        Ok(self.answer(r.log_id.clone(), verdict))
    }

    fn answer(&self, log_id: Value, v: LogVerdict) -> LogAnswer {
        let time = DateTime::<Utc>::from_timestamp_micros((v.time * 1e6) as i64)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
            .unwrap_or_default();
        LogAnswer {
            log_id,
            anomaly_score: v.score,
            is_anomaly: v.score > self.threshold,
            model_name: MODEL_NAME,
            template_id: v.template_id,
            template: v.template,
            reasons: v.reasons,
            severity: v.severity.map(Severity::name),
            new_template: v.new_template,
            time,
            second_opinion: None,
        }
    }

    /// Asks for a second opinion on the flagged lines, all in one call, within the timeout.
    async fn second_opinions(
        &self,
        requests: &[LogRequest],
        out: &mut [Result<LogAnswer, Refusal>],
    ) {
        let Some((analyzer, timeout)) = &self.second_opinion else {
            return;
        };
        let flagged: Vec<usize> = (0..out.len())
            .filter(|&i| matches!(&out[i], Ok(a) if a.is_anomaly))
            .collect();
        if flagged.is_empty() {
            return;
        }
        let lines: Vec<LogLine> = {
            let detector = self.detector();
            flagged
                .iter()
                .map(|&i| {
                    let text = requests[i].log_text.as_str().unwrap_or_default();
                    let mut line = LogLine::new(text);
                    if let Ok(a) = &out[i]
                        && let Some(id) = a.template_id
                    {
                        let history = detector.template_summary(id).map(|s| history(&s));
                        line = line.with_template(LogTemplate {
                            id: id.to_string(),
                            pattern: Some(a.template.clone()),
                            history,
                        });
                    }
                    line
                })
                .collect()
        };
        match tokio::time::timeout(*timeout, analyzer.analyze(&lines)).await {
            Ok(Ok(report)) => {
                for (verdict, &i) in report.lines.iter().zip(&flagged) {
                    if let (Ok(a), Some(x)) = (&mut out[i], &verdict.assessment) {
                        a.second_opinion = Some(SecondOpinion {
                            provider: verdict.provider.clone(),
                            score: x.score,
                            category: serde_json::to_value(x.category)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default(),
                            reason: x.reason.clone(),
                        });
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "second opinion failed; answering without it");
                self.metrics.second_opinion_failed();
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "second opinion timed out; answering without it"
                );
                self.metrics.second_opinion_failed();
            }
        }
    }

    fn store(&self, a: &LogAnswer, text: &str) {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(queue) = queue.as_ref() else {
            return;
        };
        let mut anomaly = Anomaly::flagged(
            self.state_key.clone(),
            "log_detector",
            a.anomaly_score,
            self.threshold,
        );
        anomaly.rationale = a.reasons.join("; ");
        anomaly.explanation = json!({
            "reasons": a.reasons,
            "template_id": a.template_id,
            "template": a.template,
            "severity": a.severity,
            "new_template": a.new_template,
            "second_opinion": a.second_opinion,
        });
        anomaly.context = json!({
            "log_id": a.log_id,
            "log_text": text.chars().take(STORED_LINE_CHARS).collect::<String>(),
            "time": a.time,
        });
        anomaly.config = json!({"model_name": MODEL_NAME, "threshold": self.threshold});
        if let Err(e) = queue.try_push(anomaly) {
            tracing::warn!(error = %e, "a flagged line could not be queued for the database");
            self.metrics.store_failed();
        }
    }

    /// Every template, most frequent first.
    pub fn templates(&self) -> Vec<TemplateSummary> {
        self.detector().templates()
    }
}

/// The second opinion's view of a template's history.
fn history(s: &TemplateSummary) -> TemplateHistory {
    let errors: u64 = s
        .severities
        .iter()
        .filter(|(name, _)| matches!(*name, "ERROR" | "CRITICAL" | "FATAL"))
        .map(|(_, n)| n)
        .sum();
    TemplateHistory {
        occurrences: s.count,
        error_share: if s.count == 0 {
            0.0
        } else {
            errors as f64 / s.count as f64
        },
    }
}

/// Refuses empty, oversized and binary lines, with the metric label and the reason.
pub(crate) fn check_line(text: &str, max_bytes: usize) -> Result<(), (&'static str, String)> {
    if text.trim().is_empty() {
        return Err(("empty", "log_text is empty".into()));
    }
    if text.len() > max_bytes {
        return Err((
            "too_long",
            format!(
                "log_text is {} bytes, over MAX_LINE_BYTES ({max_bytes})",
                text.len()
            ),
        ));
    }
    let control = text
        .chars()
        .filter(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        .count();
    if text.contains('\0') || control * 10 > text.chars().count() {
        return Err((
            "binary",
            "log_text looks binary (NUL or many control characters)".into(),
        ));
    }
    Ok(())
}

/// A shared analysis.
pub type SharedAnalysis = Arc<Analysis>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(check_line("", 10).unwrap_err().0, "empty");
        assert_eq!(check_line("   \n", 10).unwrap_err().0, "empty");
        assert!(
            check_line("x".repeat(11).as_str(), 10)
                .unwrap_err()
                .1
                .contains("MAX_LINE_BYTES (10)")
        );
        assert_eq!(check_line("a\0b", 10).unwrap_err().0, "binary");
        assert_eq!(check_line("\u{1}\u{2}\u{3}ab", 10).unwrap_err().0, "binary");
        assert!(check_line("GET /x 200\tok", 100).is_ok());
    }
}
