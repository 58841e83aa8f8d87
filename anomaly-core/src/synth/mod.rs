//! Synthetic traffic with labelled incidents, for tests, benches and example services.
//!
//! Two generators, both reproducible bit for bit for a seed:
//!
//! - [`generate`]: HTTP request events for a few services ([`TrafficParams`]), with a daily cycle in traffic and
//!   latency, and [`Incident`]s planted on top (latency spikes, error bursts, level shifts, slow drifts, rare
//!   categories, traffic drops). Each [`Event`] carries the kind of incident it falls in as a label, kept out of its
//!   JSON form so that a detector never sees it.
//! - [`orders()`]: e-commerce order records (nested JSON) with a few clearly unusual ones, labelled.
//!
//! Incidents are applied to the same random draws as the incident-free traffic: each candidate request consumes a
//! fixed number of draws whatever happens to it, so the events of a run with incidents are the events of the run
//! without them, changed only where and how the incidents say (a [`Incident::TrafficDrop`] removes some; nothing else
//! moves). Tests can therefore compare the two runs event by event.
//!
//! ```
//! use anomaly_core::synth::{generate, Incident, IncidentKind, TrafficParams};
//!
//! let params = TrafficParams::new().seed(7).duration_seconds(600.0);
//! let spike = Incident::latency_spike("api", params.start_epoch() + 300.0, 60.0, 5.0);
//! let events = generate(&params, &[spike])?;
//! let labelled = events.iter().filter(|e| e.label == Some(IncidentKind::LatencySpike)).count();
//! assert!(labelled > 0 && labelled < events.len());
//! assert!(events.iter().all(|e| e.to_json().get("label").is_none()));
//! # Ok::<(), anomaly_core::Error>(())
//! ```

mod event;
mod incident;
mod orders;
mod params;
mod sample;
mod traffic;

pub use event::Event;
pub(crate) use event::rfc3339_millis;
pub use incident::{Incident, IncidentKind, RareField};
pub use orders::orders;
pub use params::TrafficParams;
pub use traffic::generate;

/// The user agents of normal traffic, with their shares.
pub(crate) const USER_AGENTS: &[(&str, f64)] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", 0.40),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4)", 0.25),
    ("okhttp/4.12.0", 0.15),
    ("python-requests/2.31.0", 0.12),
    ("curl/8.5.0", 0.08),
];
