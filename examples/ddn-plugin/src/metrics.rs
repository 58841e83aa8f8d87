//! The service's counters and request-latency histogram, in Prometheus' text exposition format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anomaly_core::engine::{Availability, EngineTotals, WriteBehindStats};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
];

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
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_micros: AtomicU64,
}

impl Metrics {
    /// Records one hook request's latency.
    pub fn observe_latency(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    /// The exposition text; `queue_depth` and `queue_failures` come from the store's detection queue, `history`
    /// and `store` from the engine's history writer, `engine` from the engine.
    pub fn render(
        &self,
        queue_depth: usize,
        queue_failures: u64,
        history: WriteBehindStats,
        store: &Availability,
        engine: EngineTotals,
    ) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "ddn_plugin_requests_total",
            "Hook requests answered.",
            get(&self.requests),
        );
        counter(
            "ddn_plugin_rejected_requests_total",
            "Hook requests refused (4xx).",
            get(&self.rejected),
        );
        counter(
            "ddn_plugin_records_total",
            "Records scored.",
            get(&self.records),
        );
        counter(
            "ddn_plugin_anomalies_total",
            "Records flagged as anomalous.",
            get(&self.anomalies),
        );
        counter(
            "ddn_plugin_model_trainings_total",
            "Model trainings.",
            engine.trainings,
        );
        counter(
            "ddn_plugin_keys_restored_total",
            "Datasets restored from the database (first use in this process, or after eviction).",
            engine.restored,
        );
        counter(
            "ddn_plugin_keys_evicted_total",
            "Idle datasets evicted to stay within MAX_KEYS_IN_MEMORY.",
            engine.evicted,
        );
        counter(
            "ddn_plugin_llm_calls_total",
            "LLM analyses asked for.",
            get(&self.llm_calls),
        );
        counter(
            "ddn_plugin_llm_failures_total",
            "LLM analyses that failed or fell back to the offline rules.",
            get(&self.llm_failures),
        );
        counter(
            "ddn_plugin_llm_late_total",
            "LLM analyses that missed the response budget.",
            get(&self.llm_late),
        );
        counter(
            "ddn_plugin_store_failures_total",
            "Failed attempts to write detections.",
            queue_failures,
        );
        counter(
            "ddn_plugin_history_written_total",
            "History records written to the database.",
            history.written,
        );
        counter(
            "ddn_plugin_history_superseded_total",
            "Pending history records dropped because newer ones of the same dataset exceeded MAX_HISTORICAL_RECORDS before they were written.",
            history.superseded,
        );
        counter(
            "ddn_plugin_history_refused_total",
            "History records the database refused as invalid.",
            history.refused,
        );
        counter(
            "ddn_plugin_store_outages_total",
            "Times the store was found unavailable.",
            store.outages(),
        );
        let _ = writeln!(
            out,
            "# HELP ddn_plugin_store_available Whether the store answers, as last seen (1) or not (0).\n\
             # TYPE ddn_plugin_store_available gauge\nddn_plugin_store_available {}",
            u8::from(store.is_available())
        );
        let _ = writeln!(
            out,
            "# HELP ddn_plugin_keys_in_memory Datasets held in memory (at most MAX_KEYS_IN_MEMORY while idle ones can be evicted).\n\
             # TYPE ddn_plugin_keys_in_memory gauge\nddn_plugin_keys_in_memory {}",
            engine.keys_in_memory
        );
        let _ = writeln!(
            out,
            "# HELP ddn_plugin_store_queue_depth Detections waiting for the database.\n\
             # TYPE ddn_plugin_store_queue_depth gauge\nddn_plugin_store_queue_depth {queue_depth}"
        );
        let _ = writeln!(
            out,
            "# HELP ddn_plugin_history_pending History records waiting to be written (once a second).\n\
             # TYPE ddn_plugin_history_pending gauge\nddn_plugin_history_pending {}",
            history.pending
        );
        let name = "ddn_plugin_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Hook request latency.\n# TYPE {name} histogram"
        );
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", get(bucket));
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {count}",
            get(&self.latency_micros) as f64 / 1e6
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{EngineTotals, Metrics, WriteBehindStats};
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    #[test]
    fn the_histogram_is_cumulative() {
        let m = Metrics::default();
        m.observe_latency(Duration::from_micros(1_500));
        m.observe_latency(Duration::from_millis(30));
        m.requests.fetch_add(2, Ordering::Relaxed);
        let history = WriteBehindStats {
            pending: 7,
            written: 40,
            superseded: 2,
            refused: 1,
            failed_flushes: 0,
        };
        let writer = anomaly_core::engine::WriteBehind::new(
            std::sync::Arc::new(anomaly_core::engine::InMemoryPersistence::new(10)),
            10,
            Duration::from_secs(3600),
        )
        .unwrap();
        writer.mark_unavailable("connection refused");
        let engine = EngineTotals {
            keys_in_memory: 5,
            restored: 9,
            evicted: 4,
            trainings: 3,
        };
        let text = m.render(3, 1, history, writer.availability(), engine);
        assert!(text.contains("ddn_plugin_keys_in_memory 5"));
        assert!(text.contains("ddn_plugin_keys_evicted_total 4"));
        assert!(text.contains("ddn_plugin_model_trainings_total 3"));
        assert!(text.contains("ddn_plugin_requests_total 2"));
        assert!(text.contains("ddn_plugin_store_queue_depth 3"));
        assert!(text.contains("ddn_plugin_history_pending 7"));
        assert!(text.contains("ddn_plugin_store_available 0"));
        assert!(text.contains("ddn_plugin_store_outages_total 1"));
        assert!(text.contains("ddn_plugin_history_written_total 40"));
        assert!(text.contains("ddn_plugin_history_superseded_total 2"));
        assert!(text.contains("ddn_plugin_history_refused_total 1"));
        assert!(text.contains("ddn_plugin_request_duration_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("ddn_plugin_request_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("ddn_plugin_request_duration_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("ddn_plugin_request_duration_seconds_count 2"));
    }
}
