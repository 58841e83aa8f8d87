//! The plugin's own metrics: counters the handlers update lock-free ([`Metrics`]), and a
//! [`Collector`] that reads them, with the engine's, the history writer's, the detection queue's and the
//! pattern book's figures, at every scrape. The request-latency histogram per route comes from the service kit.

use std::sync::atomic::{AtomicU64, Ordering};

use anomaly_core::engine::{EngineTotals, WriteBehindStats};
use service_kit::prometheus_client::collector::Collector;
use service_kit::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use service_kit::prometheus_client::metrics::counter::ConstCounter;
use service_kit::prometheus_client::metrics::gauge::ConstGauge;

use crate::patterns::PatternStats;

/// Counters, updated lock-free by the handlers.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Hook requests answered (any status).
    pub requests: AtomicU64,
    /// Hook requests refused (4xx).
    pub rejected: AtomicU64,
    /// Records scored.
    pub records: AtomicU64,
    /// Records flagged.
    pub anomalies: AtomicU64,
    /// LLM analyses asked for.
    pub llm_calls: AtomicU64,
    /// LLM analyses that failed or fell back to the offline rules.
    pub llm_failures: AtomicU64,
    /// LLM analyses that missed the response budget (reported on the next call).
    pub llm_late: AtomicU64,
}

/// Everything the plugin reports at one scrape.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Hook requests answered.
    pub requests: u64,
    /// Hook requests refused.
    pub rejected: u64,
    /// Records scored.
    pub records: u64,
    /// Records flagged.
    pub anomalies: u64,
    /// LLM analyses asked for.
    pub llm_calls: u64,
    /// LLM analyses that failed or fell back.
    pub llm_failures: u64,
    /// LLM analyses that missed the response budget.
    pub llm_late: u64,
    /// Detections waiting for the database.
    pub queue_depth: usize,
    /// Failed attempts to write detections.
    pub queue_failures: u64,
    /// Detections set aside because the database refused them.
    pub queue_set_aside: u64,
    /// The engine's history writer.
    pub history: WriteBehindStats,
    /// Whether the store answers, as last seen.
    pub store_available: bool,
    /// Times the store was found unavailable.
    pub store_outages: u64,
    /// The engine's keys and trainings.
    pub engine: EngineTotals,
    /// Query-pattern counts.
    pub patterns: PatternStats,
}

impl Metrics {
    /// The handlers' counters, into `snapshot`.
    pub fn read_into(&self, snapshot: &mut Snapshot) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        snapshot.requests = get(&self.requests);
        snapshot.rejected = get(&self.rejected);
        snapshot.records = get(&self.records);
        snapshot.anomalies = get(&self.anomalies);
        snapshot.llm_calls = get(&self.llm_calls);
        snapshot.llm_failures = get(&self.llm_failures);
        snapshot.llm_late = get(&self.llm_late);
    }
}

/// Reads a [`Snapshot`] at each scrape.
type Read = Box<dyn Fn() -> Snapshot + Send + Sync>;

/// The plugin's metrics as a `prometheus-client` collector (names under the registry's `ddn_plugin` prefix).
pub struct PluginCollector {
    read: Read,
}

impl std::fmt::Debug for PluginCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCollector").finish_non_exhaustive()
    }
}

impl PluginCollector {
    /// A collector that calls `read` at each scrape.
    pub fn new(read: impl Fn() -> Snapshot + Send + Sync + 'static) -> Self {
        PluginCollector {
            read: Box::new(read),
        }
    }
}

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c: ConstCounter<u64> = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g: ConstGauge<i64> = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for PluginCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let s = (self.read)();
        let n = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        counter(&mut e, "requests", "Hook requests answered.", s.requests)?;
        counter(
            &mut e,
            "rejected_requests",
            "Hook requests refused (4xx).",
            s.rejected,
        )?;
        counter(&mut e, "records", "Records scored.", s.records)?;
        counter(
            &mut e,
            "anomalies",
            "Records flagged as anomalous.",
            s.anomalies,
        )?;
        counter(
            &mut e,
            "model_trainings",
            "Model trainings.",
            s.engine.trainings,
        )?;
        counter(
            &mut e,
            "keys_restored",
            "Datasets restored from the database (first use in this process, or after eviction).",
            s.engine.restored,
        )?;
        counter(
            &mut e,
            "keys_evicted",
            "Idle datasets evicted to stay within MAX_KEYS_IN_MEMORY.",
            s.engine.evicted,
        )?;
        counter(&mut e, "llm_calls", "LLM analyses asked for.", s.llm_calls)?;
        counter(
            &mut e,
            "llm_failures",
            "LLM analyses that failed or fell back to the offline rules.",
            s.llm_failures,
        )?;
        counter(
            &mut e,
            "llm_late",
            "LLM analyses that missed the response budget.",
            s.llm_late,
        )?;
        counter(
            &mut e,
            "store_failures",
            "Failed attempts to write detections.",
            s.queue_failures,
        )?;
        counter(
            &mut e,
            "detections_set_aside",
            "Detections the database refused (set aside, not retried).",
            s.queue_set_aside,
        )?;
        counter(
            &mut e,
            "history_written",
            "History records written to the database.",
            s.history.written,
        )?;
        counter(
            &mut e,
            "history_superseded",
            "Pending history records dropped because newer ones of the same dataset exceeded MAX_HISTORICAL_RECORDS before they were written.",
            s.history.superseded,
        )?;
        counter(
            &mut e,
            "history_refused",
            "History records the database refused as invalid.",
            s.history.refused,
        )?;
        counter(
            &mut e,
            "store_outages",
            "Times the store was found unavailable.",
            s.store_outages,
        )?;
        counter(
            &mut e,
            "patterns_written",
            "Query-pattern updates written to the database.",
            s.patterns.written,
        )?;
        counter(
            &mut e,
            "patterns_dropped",
            "Query-pattern counts dropped: the database refused them, or MAX_KEYS_IN_MEMORY queries were already waiting.",
            s.patterns.dropped,
        )?;
        gauge(
            &mut e,
            "store_available",
            "Whether the store answers, as last seen (1) or not (0).",
            i64::from(s.store_available),
        )?;
        gauge(
            &mut e,
            "keys_in_memory",
            "Datasets held in memory (at most MAX_KEYS_IN_MEMORY while idle ones can be evicted).",
            n(s.engine.keys_in_memory),
        )?;
        gauge(
            &mut e,
            "store_queue_depth",
            "Detections waiting for the database.",
            n(s.queue_depth),
        )?;
        gauge(
            &mut e,
            "history_pending",
            "History records waiting to be written (once a second).",
            i64::try_from(s.history.pending).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut e,
            "patterns_pending",
            "Queries whose pattern counts wait to be written.",
            n(s.patterns.pending),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::Telemetry;

    #[test]
    #[allow(clippy::print_stderr)]
    fn every_figure_is_exposed_under_its_name_and_passes_promtool() {
        let mut telemetry = Telemetry::new("ddn_plugin");
        telemetry
            .registry()
            .register_collector(Box::new(PluginCollector::new(|| Snapshot {
                requests: 2,
                queue_depth: 3,
                history: WriteBehindStats {
                    pending: 7,
                    written: 40,
                    superseded: 2,
                    refused: 1,
                    failed_flushes: 0,
                },
                store_outages: 1,
                engine: EngineTotals {
                    keys_in_memory: 5,
                    restored: 9,
                    evicted: 4,
                    trainings: 3,
                },
                patterns: PatternStats {
                    pending: 6,
                    written: 8,
                    dropped: 1,
                },
                ..Snapshot::default()
            })));
        let (_, text) = telemetry.render("");
        for line in [
            "ddn_plugin_requests_total 2",
            "ddn_plugin_keys_in_memory 5",
            "ddn_plugin_keys_evicted_total 4",
            "ddn_plugin_model_trainings_total 3",
            "ddn_plugin_store_queue_depth 3",
            "ddn_plugin_history_pending 7",
            "ddn_plugin_store_available 0",
            "ddn_plugin_store_outages_total 1",
            "ddn_plugin_history_written_total 40",
            "ddn_plugin_history_superseded_total 2",
            "ddn_plugin_history_refused_total 1",
            "ddn_plugin_patterns_pending 6",
            "ddn_plugin_patterns_dropped_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        match service_kit::testing::promtool_check(&text) {
            Ok(true) => {}
            Ok(false) => eprintln!(
                "SKIPPED promtool check: promtool is not installed (scripts/test installs it)"
            ),
            Err(e) => panic!("{e}"),
        }
    }
}
