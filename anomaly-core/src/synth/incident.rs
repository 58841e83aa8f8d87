//! Incidents planted in synthetic traffic, and their labels.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::USER_AGENTS;
use super::params::TrafficParams;
use crate::error::{Error, Result};

/// The kind of an [`Incident`]: the label of the events it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    /// Latency multiplied for a short time.
    LatencySpike,
    /// Error rate raised: many 5xx statuses.
    ErrorBurst,
    /// Latency raised by a constant.
    LevelShift,
    /// Latency raised by an amount growing linearly with time.
    SlowDrift,
    /// A value never seen in normal traffic appears in a categorical field.
    RareCategory,
    /// Request rate cut to a fraction.
    TrafficDrop,
}

impl IncidentKind {
    /// Every kind, in declaration order.
    pub const ALL: [IncidentKind; 6] = [
        IncidentKind::LatencySpike,
        IncidentKind::ErrorBurst,
        IncidentKind::LevelShift,
        IncidentKind::SlowDrift,
        IncidentKind::RareCategory,
        IncidentKind::TrafficDrop,
    ];

    /// The snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::LatencySpike => "latency_spike",
            IncidentKind::ErrorBurst => "error_burst",
            IncidentKind::LevelShift => "level_shift",
            IncidentKind::SlowDrift => "slow_drift",
            IncidentKind::RareCategory => "rare_category",
            IncidentKind::TrafficDrop => "traffic_drop",
        }
    }
}

impl fmt::Display for IncidentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The categorical field a [`Incident::RareCategory`] puts its value in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RareField {
    /// [`Event::endpoint`](super::Event::endpoint).
    Endpoint,
    /// [`Event::region`](super::Event::region).
    Region,
    /// [`Event::user_agent`](super::Event::user_agent).
    UserAgent,
}

/// Something unusual happening to one service during `[start, start + duration_seconds)`.
///
/// Effects apply exactly within that interval, and the events of that service within it (all of them, including
/// those an incident left unchanged, such as the 2xx responses of an [`ErrorBurst`](Incident::ErrorBurst)) carry
/// the incident's kind as their label. `duration_seconds` may be `f64::INFINITY` for an incident that never ends
/// (a permanent [`LevelShift`](Incident::LevelShift)); JSON cannot carry infinity, so serialise such an incident
/// with a duration longer than the traffic instead. Where incidents overlap, all their effects apply and an event
/// is labelled with the first of them in the list given to [`generate`](super::generate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Incident {
    /// Latency multiplied by `factor`.
    LatencySpike {
        /// The service affected.
        service: String,
        /// First instant, epoch seconds.
        start: f64,
        /// Length in seconds.
        duration_seconds: f64,
        /// Multiplier of the latency, finite and positive.
        factor: f64,
    },
    /// A share `error_rate` of the requests fail with a 5xx status (instead of the baseline share).
    ErrorBurst {
        /// The service affected.
        service: String,
        /// First instant, epoch seconds.
        start: f64,
        /// Length in seconds.
        duration_seconds: f64,
        /// Share of 5xx responses, in `[0, 1]`.
        error_rate: f64,
    },
    /// Latency raised by `added_ms` (negative lowers it; latency never goes below 0.1 ms).
    LevelShift {
        /// The service affected.
        service: String,
        /// First instant, epoch seconds.
        start: f64,
        /// Length in seconds; `f64::INFINITY` for a permanent shift.
        duration_seconds: f64,
        /// Milliseconds added to every latency, finite.
        added_ms: f64,
    },
    /// Latency raised by `ms_per_minute × minutes since start`.
    SlowDrift {
        /// The service affected.
        service: String,
        /// First instant, epoch seconds.
        start: f64,
        /// Length in seconds.
        duration_seconds: f64,
        /// Growth of the added latency per minute, finite.
        ms_per_minute: f64,
    },
    /// A share `share` of the requests carry `value` in `field`, a value normal traffic never has.
    RareCategory {
        /// The service affected.
        service: String,
        /// First instant, epoch seconds.
        start: f64,
        /// Length in seconds.
        duration_seconds: f64,
        /// The field that takes the rare value.
        field: RareField,
        /// The rare value; must not be one normal traffic uses.
        value: String,
        /// Share of the requests with the rare value, in `(0, 1]`.
        share: f64,
    },
    /// The request rate multiplied by `fraction`.
    TrafficDrop {
        /// The service affected.
        service: String,
        /// First instant, epoch seconds.
        start: f64,
        /// Length in seconds.
        duration_seconds: f64,
        /// Remaining share of the traffic, in `[0, 1]`.
        fraction: f64,
    },
}

impl Incident {
    /// A [`LatencySpike`](Incident::LatencySpike).
    pub fn latency_spike(
        service: impl Into<String>,
        start: f64,
        duration_seconds: f64,
        factor: f64,
    ) -> Self {
        Incident::LatencySpike {
            service: service.into(),
            start,
            duration_seconds,
            factor,
        }
    }

    /// An [`ErrorBurst`](Incident::ErrorBurst).
    pub fn error_burst(
        service: impl Into<String>,
        start: f64,
        duration_seconds: f64,
        error_rate: f64,
    ) -> Self {
        Incident::ErrorBurst {
            service: service.into(),
            start,
            duration_seconds,
            error_rate,
        }
    }

    /// A permanent [`LevelShift`](Incident::LevelShift) from `start` on.
    pub fn level_shift(service: impl Into<String>, start: f64, added_ms: f64) -> Self {
        Incident::LevelShift {
            service: service.into(),
            start,
            duration_seconds: f64::INFINITY,
            added_ms,
        }
    }

    /// A [`SlowDrift`](Incident::SlowDrift).
    pub fn slow_drift(
        service: impl Into<String>,
        start: f64,
        duration_seconds: f64,
        ms_per_minute: f64,
    ) -> Self {
        Incident::SlowDrift {
            service: service.into(),
            start,
            duration_seconds,
            ms_per_minute,
        }
    }

    /// A [`RareCategory`](Incident::RareCategory) on a quarter of the requests.
    pub fn rare_category(
        service: impl Into<String>,
        start: f64,
        duration_seconds: f64,
        field: RareField,
        value: impl Into<String>,
    ) -> Self {
        Incident::RareCategory {
            service: service.into(),
            start,
            duration_seconds,
            field,
            value: value.into(),
            share: 0.25,
        }
    }

    /// A [`TrafficDrop`](Incident::TrafficDrop).
    pub fn traffic_drop(
        service: impl Into<String>,
        start: f64,
        duration_seconds: f64,
        fraction: f64,
    ) -> Self {
        Incident::TrafficDrop {
            service: service.into(),
            start,
            duration_seconds,
            fraction,
        }
    }

    /// The kind, used as the label of the events it covers.
    pub fn kind(&self) -> IncidentKind {
        match self {
            Incident::LatencySpike { .. } => IncidentKind::LatencySpike,
            Incident::ErrorBurst { .. } => IncidentKind::ErrorBurst,
            Incident::LevelShift { .. } => IncidentKind::LevelShift,
            Incident::SlowDrift { .. } => IncidentKind::SlowDrift,
            Incident::RareCategory { .. } => IncidentKind::RareCategory,
            Incident::TrafficDrop { .. } => IncidentKind::TrafficDrop,
        }
    }

    /// The service affected.
    pub fn service(&self) -> &str {
        match self {
            Incident::LatencySpike { service, .. }
            | Incident::ErrorBurst { service, .. }
            | Incident::LevelShift { service, .. }
            | Incident::SlowDrift { service, .. }
            | Incident::RareCategory { service, .. }
            | Incident::TrafficDrop { service, .. } => service,
        }
    }

    /// The first instant, epoch seconds.
    pub fn start(&self) -> f64 {
        self.span().0
    }

    /// The length in seconds.
    pub fn duration_seconds(&self) -> f64 {
        self.span().1
    }

    /// The end (exclusive), epoch seconds.
    pub fn end(&self) -> f64 {
        let (start, duration) = self.span();
        start + duration
    }

    /// Whether the incident covers `service` at epoch second `t`.
    pub fn covers(&self, service: &str, t: f64) -> bool {
        self.service() == service && self.is_active(t)
    }

    pub(crate) fn is_active(&self, t: f64) -> bool {
        t >= self.start() && t < self.end()
    }

    fn span(&self) -> (f64, f64) {
        match *self {
            Incident::LatencySpike {
                start,
                duration_seconds,
                ..
            }
            | Incident::ErrorBurst {
                start,
                duration_seconds,
                ..
            }
            | Incident::LevelShift {
                start,
                duration_seconds,
                ..
            }
            | Incident::SlowDrift {
                start,
                duration_seconds,
                ..
            }
            | Incident::RareCategory {
                start,
                duration_seconds,
                ..
            }
            | Incident::TrafficDrop {
                start,
                duration_seconds,
                ..
            } => (start, duration_seconds),
        }
    }

    /// Checks the incident against the traffic it is planted in; `index` is its position in the list, for messages.
    pub(crate) fn validate(&self, index: usize, params: &TrafficParams) -> Result<()> {
        let fail = |reason: String| {
            Error::invalid(
                "incidents",
                format!("incident {index} ({}): {reason}", self.kind()),
            )
        };
        let Some(service_index) = params
            .service_names()
            .iter()
            .position(|s| s == self.service())
        else {
            return Err(fail(format!("unknown service `{}`", self.service())));
        };
        let (start, duration) = self.span();
        if !start.is_finite() {
            return Err(fail(format!("start must be finite, got {start}")));
        }
        if duration.is_nan() || duration <= 0.0 {
            return Err(fail(format!(
                "duration_seconds must be positive, got {duration}"
            )));
        }
        let in_range = |name: &str, v: f64, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(fail(format!("{name} out of range: {v}")))
            }
        };
        match self {
            Incident::LatencySpike { factor, .. } => in_range(
                "factor (finite, positive)",
                *factor,
                factor.is_finite() && *factor > 0.0,
            ),
            Incident::ErrorBurst { error_rate, .. } => in_range(
                "error_rate (in [0, 1])",
                *error_rate,
                (0.0..=1.0).contains(error_rate),
            ),
            Incident::LevelShift { added_ms, .. } => {
                in_range("added_ms (finite)", *added_ms, added_ms.is_finite())
            }
            Incident::SlowDrift { ms_per_minute, .. } => in_range(
                "ms_per_minute (finite)",
                *ms_per_minute,
                ms_per_minute.is_finite(),
            ),
            Incident::TrafficDrop { fraction, .. } => in_range(
                "fraction (in [0, 1])",
                *fraction,
                (0.0..=1.0).contains(fraction),
            ),
            Incident::RareCategory {
                field,
                value,
                share,
                ..
            } => {
                in_range("share (in (0, 1])", *share, *share > 0.0 && *share <= 1.0)?;
                if value.is_empty() {
                    return Err(fail("the rare value must not be empty".into()));
                }
                let normal = match field {
                    RareField::Endpoint => params.endpoints(service_index).contains(value),
                    RareField::Region => params.region_names().contains(value),
                    RareField::UserAgent => USER_AGENTS.iter().any(|(ua, _)| ua == value),
                };
                if normal {
                    return Err(fail(format!(
                        "`{value}` is a value of normal traffic, not a rare one"
                    )));
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_and_labels() {
        let i = Incident::latency_spike("api", 100.0, 50.0, 3.0);
        assert_eq!(i.kind(), IncidentKind::LatencySpike);
        assert_eq!(
            (i.service(), i.start(), i.duration_seconds(), i.end()),
            ("api", 100.0, 50.0, 150.0)
        );
        assert!(i.covers("api", 100.0) && i.covers("api", 149.999));
        assert!(!i.covers("api", 150.0) && !i.covers("auth", 120.0) && !i.covers("api", 99.9));
        let shift = Incident::level_shift("api", 10.0, 5.0);
        assert!(shift.covers("api", 1e12));
        for k in IncidentKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn serde_is_tagged() {
        let i = Incident::traffic_drop("auth", 1.0, 2.0, 0.1);
        let v = serde_json::to_value(&i).unwrap();
        assert_eq!(v["kind"], "traffic_drop");
        assert_eq!(serde_json::from_value::<Incident>(v).unwrap(), i);
    }

    #[test]
    fn validation_names_the_incident() {
        let p = TrafficParams::new();
        let t = p.start_epoch();
        let bad = [
            Incident::latency_spike("nope", t, 1.0, 2.0),
            Incident::latency_spike("api", f64::NAN, 1.0, 2.0),
            Incident::latency_spike("api", t, 0.0, 2.0),
            Incident::latency_spike("api", t, f64::NAN, 2.0),
            Incident::latency_spike("api", t, 1.0, 0.0),
            Incident::error_burst("api", t, 1.0, 1.5),
            Incident::level_shift("api", t, f64::INFINITY),
            Incident::slow_drift("api", t, 1.0, f64::NAN),
            Incident::traffic_drop("api", t, 1.0, -0.5),
            Incident::rare_category("api", t, 1.0, RareField::Region, "eu-west"),
            Incident::rare_category(
                "api",
                t,
                1.0,
                RareField::Endpoint,
                p.endpoints(0)[0].clone(),
            ),
            Incident::rare_category("api", t, 1.0, RareField::UserAgent, "curl/8.5.0"),
            Incident::rare_category("api", t, 1.0, RareField::UserAgent, ""),
        ];
        for (i, incident) in bad.iter().enumerate() {
            match incident.validate(i, &p) {
                Err(Error::InvalidParameter {
                    name: "incidents",
                    reason,
                }) => {
                    assert!(reason.starts_with(&format!("incident {i} (")), "{reason}")
                }
                other => panic!("{incident:?}: {other:?}"),
            }
        }
        Incident::rare_category("api", t, 1.0, RareField::Region, "antarctica")
            .validate(0, &p)
            .unwrap();
    }
}
