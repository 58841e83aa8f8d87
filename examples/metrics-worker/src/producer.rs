//! Synthetic metric series with labelled incidents, and the loop that publishes them.

use std::time::Duration;

use async_nats::jetstream;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tokio::sync::watch;

/// The kind of an incident planted in a synthetic series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// A few points far above the level.
    Spike,
    /// The level jumps and stays up for a while.
    LevelShift,
    /// The level climbs steadily, then falls back.
    Drift,
}

impl IncidentKind {
    /// `spike`, `level_shift` or `drift`.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Spike => "spike",
            IncidentKind::LevelShift => "level_shift",
            IncidentKind::Drift => "drift",
        }
    }
}

/// One generated point and the incident it belongs to, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledPoint {
    /// The series name.
    pub series: String,
    /// The value.
    pub value: f64,
    /// The incident this point is part of.
    pub incident: Option<IncidentKind>,
}

/// How a [`SyntheticSeries`] behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesShape {
    /// The normal level.
    pub level: f64,
    /// Half-width of the uniform noise around it.
    pub noise: f64,
    /// Normal points before each incident (0: never any incident).
    pub quiet_points: u64,
}

/// One series: noise around a level, and every `quiet_points` points an incident (spike, level shift, drift in
/// turn).
#[derive(Debug, Clone)]
pub struct SyntheticSeries {
    name: String,
    shape: SeriesShape,
    rng: ChaCha8Rng,
    step: u64,
    next_kind: usize,
    incident: Option<(IncidentKind, u64)>,
}

const KINDS: [IncidentKind; 3] = [
    IncidentKind::Spike,
    IncidentKind::LevelShift,
    IncidentKind::Drift,
];

/// Length in points of each incident kind.
fn incident_len(kind: IncidentKind) -> u64 {
    match kind {
        IncidentKind::Spike => 3,
        IncidentKind::LevelShift => 40,
        IncidentKind::Drift => 60,
    }
}

impl SyntheticSeries {
    /// A series named `name` (seeded by `seed`).
    pub fn new(name: impl Into<String>, shape: SeriesShape, seed: u64) -> Self {
        SyntheticSeries {
            name: name.into(),
            shape,
            rng: ChaCha8Rng::seed_from_u64(seed),
            step: 0,
            next_kind: 0,
            incident: None,
        }
    }

    /// The series' name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next point.
    pub fn next_point(&mut self) -> LabelledPoint {
        self.step += 1;
        let s = self.shape;
        if self.incident.is_none() && s.quiet_points > 0 && self.step.is_multiple_of(s.quiet_points)
        {
            let kind = KINDS[self.next_kind % KINDS.len()];
            self.next_kind += 1;
            self.incident = Some((kind, 0));
        }
        let noise = if s.noise > 0.0 {
            self.rng.random_range(-s.noise..s.noise)
        } else {
            0.0
        };
        let scale = s.level.abs().max(10.0);
        let (value, label) = match self.incident {
            None => (s.level + noise, None),
            Some((kind, i)) => {
                let extra = match kind {
                    IncidentKind::Spike => 8.0 * scale,
                    IncidentKind::LevelShift => 3.0 * scale,
                    IncidentKind::Drift => {
                        4.0 * scale * (i as f64 + 1.0) / incident_len(kind) as f64
                    }
                };
                self.incident = (i + 1 < incident_len(kind)).then_some((kind, i + 1));
                (s.level + noise + extra, Some(kind))
            }
        };
        LabelledPoint {
            series: self.name.clone(),
            value,
            incident: label,
        }
    }
}

/// What [`publish`] sends.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// Subject prefix (`<prefix>.<series>`).
    pub prefix: String,
    /// Number of series, named `<series_prefix>-<i>`.
    pub series: usize,
    /// Series name prefix (default `cpu.host`).
    pub series_prefix: String,
    /// Messages per second over all series.
    pub rate: f64,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Normal points per series between incidents.
    pub quiet_points: u64,
    /// Seed.
    pub seed: u64,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            prefix: "metrics".into(),
            series: 5,
            series_prefix: "cpu.host".into(),
            rate: 50.0,
            count: None,
            duration: None,
            quiet_points: 50,
            seed: 1,
        }
    }
}

/// Publishes synthetic points through JetStream (each acknowledged by the server, so none is lost) until the
/// count or duration is reached or `stop` turns true; incidents are labelled in the `Metrics-Incident` header and
/// logged. Returns how many were published.
///
/// # Errors
/// The publication's error text.
pub async fn publish(
    js: &jetstream::Context,
    options: &ProducerOptions,
    mut stop: watch::Receiver<bool>,
) -> Result<u64, String> {
    let mut series: Vec<SyntheticSeries> = (0..options.series.max(1))
        .map(|i| {
            SyntheticSeries::new(
                format!("{}-{i}", options.series_prefix),
                SeriesShape {
                    level: 50.0 + 10.0 * i as f64,
                    noise: 2.0,
                    quiet_points: options.quiet_points,
                },
                options.seed.wrapping_add(i as u64),
            )
        })
        .collect();
    let period = Duration::from_secs_f64(1.0 / options.rate.max(0.001));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut pending = Vec::new();
    while options.count.is_none_or(|c| sent < c)
        && options.duration.is_none_or(|d| started.elapsed() < d)
    {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = ticker.tick() => {}
        }
        let n = sent as usize % series.len();
        let point = series[n].next_point();
        let body = serde_json::json!({
            "series": point.series,
            "value": point.value,
            "timestamp": chrono::Utc::now().to_rfc3339(),
        });
        let mut headers = async_nats::HeaderMap::new();
        if let Some(kind) = point.incident {
            headers.insert("Metrics-Incident", kind.as_str());
            tracing::info!(series = %point.series, incident = kind.as_str(), value = point.value, "incident point");
        }
        let ack = js
            .publish_with_headers(
                format!("{}.{}", options.prefix, point.series),
                headers,
                body.to_string().into(),
            )
            .await
            .map_err(|e| e.to_string())?;
        pending.push(ack);
        sent += 1;
        if pending.len() >= 256 {
            for ack in pending.drain(..) {
                ack.await.map_err(|e| e.to_string())?;
            }
        }
    }
    for ack in pending {
        ack.await.map_err(|e| e.to_string())?;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incidents_come_in_turn_and_are_labelled() {
        let shape = SeriesShape {
            level: 50.0,
            noise: 1.0,
            quiet_points: 100,
        };
        let mut s = SyntheticSeries::new("cpu", shape, 3);
        let points: Vec<LabelledPoint> = (0..350).map(|_| s.next_point()).collect();
        let kinds: Vec<IncidentKind> = points
            .windows(2)
            .filter(|w| w[1].incident.is_some() && w[1].incident != w[0].incident)
            .map(|w| w[1].incident.unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                IncidentKind::Spike,
                IncidentKind::LevelShift,
                IncidentKind::Drift
            ]
        );
        assert!(
            points[..99]
                .iter()
                .all(|p| p.incident.is_none() && (p.value - 50.0).abs() <= 1.0)
        );
        assert!(points[99].value > 400.0, "{}", points[99].value);
    }
}

/// What a worker's `/metrics` says about its progress, for the producer's `--report`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkerProgress {
    /// `metrics_processed_total` plus `metrics_foreign_total` and `metrics_dead_letters_total`: every message the
    /// worker has acknowledged.
    pub acknowledged: f64,
    /// `metrics_end_to_end_seconds` buckets: (upper bound, cumulative count).
    pub end_to_end: Vec<(f64, f64)>,
}

impl WorkerProgress {
    /// Reads the figures from a Prometheus text exposition.
    pub fn parse(exposition: &str) -> WorkerProgress {
        let mut p = WorkerProgress::default();
        for line in exposition.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if name == "metrics_processed_total"
                || name == "metrics_foreign_total"
                || name.starts_with("metrics_dead_letters_total{")
            {
                p.acknowledged += value;
            } else if let Some(rest) = name.strip_prefix("metrics_end_to_end_seconds_bucket{le=\"")
            {
                let le = rest.trim_end_matches("\"}");
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::NAN)
                };
                p.end_to_end.push((bound, value));
            }
        }
        p
    }

    /// The upper bound of the bucket holding the `q` quantile of the observations made between `before` and
    /// `self` (`None` when there were none).
    pub fn end_to_end_quantile(&self, before: &WorkerProgress, q: f64) -> Option<f64> {
        let earlier = |bound: f64| {
            before
                .end_to_end
                .iter()
                .find(|(b, _)| *b == bound)
                .map_or(0.0, |(_, c)| *c)
        };
        let total = self.end_to_end.last().map(|(b, c)| c - earlier(*b))?;
        if total <= 0.0 {
            return None;
        }
        self.end_to_end
            .iter()
            .find(|(b, c)| c - earlier(*b) >= q * total)
            .map(|(b, _)| *b)
    }
}

#[cfg(test)]
mod progress_tests {
    use super::WorkerProgress;

    #[test]
    fn progress_reads_acknowledgements_and_latency_buckets() {
        let text = "# TYPE x counter\nmetrics_processed_total 90\nmetrics_foreign_total 5\n\
            metrics_dead_letters_total{reason=\"malformed\"} 5\n\
            metrics_end_to_end_seconds_bucket{le=\"0.01\"} 50\n\
            metrics_end_to_end_seconds_bucket{le=\"0.1\"} 99\n\
            metrics_end_to_end_seconds_bucket{le=\"+Inf\"} 100\n";
        let p = WorkerProgress::parse(text);
        assert_eq!(p.acknowledged, 100.0);
        let none = WorkerProgress::default();
        assert_eq!(p.end_to_end_quantile(&none, 0.5), Some(0.01));
        assert_eq!(p.end_to_end_quantile(&none, 0.99), Some(0.1));
        assert_eq!(p.end_to_end_quantile(&none, 1.0), Some(f64::INFINITY));
        assert_eq!(p.end_to_end_quantile(&p, 0.5), None);
    }
}
