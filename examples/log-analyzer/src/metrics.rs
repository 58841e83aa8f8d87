//! The service's own figures in `/metrics`, under the kit's `log_analyzer_` prefix.

use service_kit::Telemetry;
use service_kit::prometheus_client::encoding::EncodeLabelSet;
use service_kit::prometheus_client::metrics::counter::Counter;
use service_kit::prometheus_client::metrics::family::Family;
use service_kit::prometheus_client::metrics::gauge::Gauge;

/// Label of `lines_total` and `checkpoints_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Label of `refused_lines_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every figure the service counts; cheap to clone (shared handles). [`Metrics::default`] counts without
/// exposing (the command-line modes).
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    lines: Family<ResultLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
    templates: Gauge,
    lines_seen: Gauge,
    checkpoints: Family<ResultLabel, Counter>,
    second_opinion_failures: Counter,
    store_failures: Counter,
}

impl Metrics {
    /// Registers every figure in `telemetry`'s registry.
    pub fn register(telemetry: &mut Telemetry) -> Self {
        let m = Metrics::default();
        let r = telemetry.registry();
        r.register(
            "lines",
            "Lines analyzed, by result (normal, anomaly)",
            m.lines.clone(),
        );
        r.register(
            "refused_lines",
            "Lines refused, by reason (empty, too_long, binary, missing, not_text, bad_timestamp, invalid)",
            m.refused.clone(),
        );
        r.register(
            "templates",
            "Templates kept (at most MAX_TEMPLATES)",
            m.templates.clone(),
        );
        r.register(
            "lines_seen",
            "Lines the detector has learned, restored state included",
            m.lines_seen.clone(),
        );
        r.register(
            "checkpoints",
            "Saves of the detector's state to the database, by result (saved, failed)",
            m.checkpoints.clone(),
        );
        r.register(
            "second_opinion_failures",
            "Second opinions that failed or timed out (the answer went out without one)",
            m.second_opinion_failures.clone(),
        );
        r.register(
            "store_failures",
            "Flagged lines that could not be queued for the database (queue full)",
            m.store_failures.clone(),
        );
        m
    }

    pub(crate) fn line(&self, anomaly: bool) {
        let result = if anomaly { "anomaly" } else { "normal" };
        self.lines.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn templates(&self, templates: u64, lines_seen: u64) {
        self.templates
            .set(i64::try_from(templates).unwrap_or(i64::MAX));
        self.lines_seen
            .set(i64::try_from(lines_seen).unwrap_or(i64::MAX));
    }

    pub(crate) fn checkpoint(&self, saved: bool) {
        let result = if saved { "saved" } else { "failed" };
        self.checkpoints
            .get_or_create(&ResultLabel { result })
            .inc();
    }

    pub(crate) fn second_opinion_failed(&self) {
        self.second_opinion_failures.inc();
    }

    pub(crate) fn store_failed(&self) {
        self.store_failures.inc();
    }
}
