//! The worker's own figures in `/metrics`: every name under the kit's `metrics_` prefix but
//! `anomaly_events_total`, which keeps the original pipeline's name.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use service_kit::Telemetry;
use service_kit::prometheus_client::collector::Collector;
use service_kit::prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use service_kit::prometheus_client::metrics::counter::{ConstCounter, Counter};
use service_kit::prometheus_client::metrics::family::Family;
use service_kit::prometheus_client::metrics::gauge::ConstGauge;
use service_kit::prometheus_client::metrics::histogram::Histogram;

/// Upper bounds of the processing-latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Label of `anomaly_events_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabel {
    pub(crate) method: String,
}

/// Labels of `alerts_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AlertLabels {
    pub(crate) channel: String,
    pub(crate) outcome: String,
}

/// Upper bounds of the publication-to-acknowledgement buckets, in seconds.
const END_TO_END_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The consumer's backlog as the server last reported it.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    pending: AtomicU64,
    ack_pending: AtomicU64,
    redelivered: AtomicU64,
    read: std::sync::atomic::AtomicBool,
}

/// Label of `dead_letters_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    pub(crate) reason: String,
}

/// Every figure the worker counts; cheap to clone (shared handles).
#[derive(Debug, Clone)]
pub(crate) struct WorkerMetrics {
    pub(crate) processed: Counter,
    pub(crate) redelivered: Counter,
    pub(crate) anomalies: Family<MethodLabel, Counter>,
    pub(crate) dead_letters: Family<ReasonLabel, Counter>,
    pub(crate) processing: Histogram,
    pub(crate) end_to_end: Histogram,
    pub(crate) store_failures: Counter,
    pub(crate) foreign: Counter,
    pub(crate) alerts: Family<AlertLabels, Counter>,
    pub(crate) backlog: Arc<Backlog>,
    pub(crate) series_in_memory: Arc<AtomicU64>,
    pub(crate) series_evicted: Arc<AtomicU64>,
}

impl WorkerMetrics {
    /// Registers every figure in `telemetry`'s registry.
    pub(crate) fn register(telemetry: &mut Telemetry) -> Self {
        let m = WorkerMetrics {
            processed: Counter::default(),
            redelivered: Counter::default(),
            anomalies: Family::default(),
            dead_letters: Family::default(),
            processing: Histogram::new(LATENCY_BUCKETS),
            end_to_end: Histogram::new(END_TO_END_BUCKETS),
            store_failures: Counter::default(),
            foreign: Counter::default(),
            alerts: Family::default(),
            backlog: Arc::default(),
            series_in_memory: Arc::default(),
            series_evicted: Arc::default(),
        };
        telemetry.unprefixed_registry().register(
            "anomaly_events",
            "Detections stored, by method (the original pipeline's name, without the metrics_ prefix)",
            m.anomalies.clone(),
        );
        let r = telemetry.registry();
        r.register(
            "processed",
            "Metric messages processed (each once, redeliveries excluded)",
            m.processed.clone(),
        );
        r.register(
            "redelivered",
            "Redelivered messages this worker had already processed, acknowledged again and skipped",
            m.redelivered.clone(),
        );
        r.register(
            "dead_letters",
            "Messages refused (malformed, non-finite value, bad series name) and sent to the dead-letter subject",
            m.dead_letters.clone(),
        );
        r.register(
            "processing_seconds",
            "Time from a message's receipt to its acknowledgement (detection and persistence included)",
            m.processing.clone(),
        );
        r.register(
            "end_to_end_seconds",
            "Time from a message's publication (the server's clock) to its acknowledgement",
            m.end_to_end.clone(),
        );
        r.register(
            "foreign",
            "Messages of series another worker owns (WORKER_COUNT above 1), acknowledged unread",
            m.foreign.clone(),
        );
        r.register(
            "alerts",
            "Detections announced, by channel (nats, webhook) and outcome",
            m.alerts.clone(),
        );
        r.register(
            "store_failures",
            "Failed attempts to persist a message's detections (each retried)",
            m.store_failures.clone(),
        );
        r.register_collector(Box::new(Live {
            backlog: m.backlog.clone(),
            started: Instant::now(),
            in_memory: m.series_in_memory.clone(),
            evicted: m.series_evicted.clone(),
        }));
        m
    }

    /// Counts one announcement.
    pub(crate) fn alert(&self, channel: &str, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                channel: channel.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Records the consumer's backlog as the server reports it.
    pub(crate) fn backlog(&self, info: &async_nats::jetstream::consumer::Info) {
        let b = &self.backlog;
        b.pending.store(info.num_pending, Ordering::Relaxed);
        b.ack_pending
            .store(info.num_ack_pending as u64, Ordering::Relaxed);
        b.redelivered
            .store(info.num_redelivered as u64, Ordering::Relaxed);
        b.read.store(true, Ordering::Relaxed);
    }

    /// Records the detector state's figures.
    pub(crate) fn series(&self, stats: anomaly_core::stream::SeriesStats) {
        self.series_in_memory
            .store(stats.in_memory as u64, Ordering::Relaxed);
        self.series_evicted.store(stats.evicted, Ordering::Relaxed);
    }
}

/// The figures read at scrape time.
#[derive(Debug)]
struct Live {
    backlog: Arc<Backlog>,
    started: Instant,
    in_memory: Arc<AtomicU64>,
    evicted: Arc<AtomicU64>,
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> std::fmt::Result {
        let n = |v: &AtomicU64| i64::try_from(v.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        let g: ConstGauge<i64> = ConstGauge::new(n(&self.in_memory));
        g.encode(e.encode_descriptor(
            "series_in_memory",
            "Series whose detector state is in memory",
            None,
            g.metric_type(),
        )?)?;
        let c: ConstCounter<u64> = ConstCounter::new(self.evicted.load(Ordering::Relaxed));
        c.encode(e.encode_descriptor(
            "series_evicted",
            "Series evicted from memory (least recently seen beyond MAX_SERIES)",
            None,
            c.metric_type(),
        )?)?;
        if self.backlog.read.load(Ordering::Relaxed) {
            for (name, help, v) in [
                (
                    "consumer_pending_messages",
                    "Messages of the stream this worker's consumer has not delivered yet (its lag), as the server last said",
                    &self.backlog.pending,
                ),
                (
                    "consumer_ack_pending_messages",
                    "Messages delivered to this worker's consumer and not acknowledged yet",
                    &self.backlog.ack_pending,
                ),
                (
                    "consumer_redelivered_messages",
                    "Messages delivered more than once and not acknowledged yet",
                    &self.backlog.redelivered,
                ),
            ] {
                let g: ConstGauge<i64> = ConstGauge::new(n(v));
                g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)?;
            }
        }
        let u: ConstGauge<f64> = ConstGauge::new(self.started.elapsed().as_secs_f64());
        u.encode(e.encode_descriptor(
            "uptime_seconds",
            "Seconds since the worker started",
            None,
            u.metric_type(),
        )?)
    }
}
