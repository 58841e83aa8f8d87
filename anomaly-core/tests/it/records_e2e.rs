//! End to end: synthetic service traffic with labelled incidents → per-service time windows → the record engine.
//!
//! 40 hours of traffic for three services (one request a second each, with a daily cycle), cut into 5-minute
//! windows per service. Each service is a key of the engine, which learns a whole day (288 windows) so that it has
//! seen every hour of the cycle, then flags windows, retraining every 12 hours. Planted after the learning day: a latency spike on `api`, an error burst on `auth`, a traffic drop on
//! `billing` (20 minutes each), and a permanent latency level shift on `api`, after which the engine must retrain
//! because the data drifted.

use anomaly_core::drift::DriftParams;
use anomaly_core::engine::{Engine, EngineParams};
use anomaly_core::synth::{Incident, TrafficParams, generate};
use anomaly_core::window::{WindowParams, aggregate};
use anomaly_core::{Contamination, IsolationForestParams};
use serde_json::Value;

const HOUR: f64 = 3600.0;
const WIDTH: f64 = 300.0;

#[test]
fn engine_flags_incidents_explains_them_and_retrains_on_a_level_shift() {
    let traffic = TrafficParams::new()
        .seed(11)
        .duration_seconds(40.0 * HOUR)
        .rate_per_second(1.0);
    let t0 = traffic.start_epoch();
    let shift_at = t0 + 32.0 * HOUR;
    let incidents = [
        Incident::latency_spike("api", t0 + 26.0 * HOUR, 1_200.0, 5.0),
        Incident::error_burst("auth", t0 + 28.0 * HOUR, 1_200.0, 0.5),
        Incident::traffic_drop("billing", t0 + 30.0 * HOUR, 1_200.0, 0.05),
        Incident::level_shift("api", shift_at, 300.0),
    ];
    let events: Vec<Value> = generate(&traffic, &incidents)
        .unwrap()
        .iter()
        .map(|e| e.to_json())
        .collect();
    let rows = aggregate(&WindowParams::new().width_seconds(WIDTH), &events).unwrap();

    let engine = Engine::in_memory(
        EngineParams::new()
            .min_training_records(288)
            .retrain_every(144)
            .sensitivity(Contamination::Fraction(0.01))
            .forest(IsolationForestParams::new().seed(3))
            .drift(Some(DriftParams::new().window(36).check_every(6))),
    )
    .unwrap();

    let (mut hits, mut incident_windows, mut false_alarms, mut normal_windows) = (0, 0, 0, 0);
    let mut explained = Vec::new();
    for row in &rows {
        let mut record = row.to_json();
        // The window's own timestamp only grows, and one day of history cannot teach the day of the week: keep the
        // hour-of-day features only.
        let fields = record.as_object_mut().unwrap();
        for f in ["window_start", "weekday_sin", "weekday_cos"] {
            fields.remove(f);
        }
        let outcome = engine.observe(&row.service, &record).unwrap();
        let Some(verdict) = outcome.verdict() else {
            continue;
        };
        let (ws, we) = (row.window_start, row.window_start + WIDTH);
        let after_shift = row.service == "api" && we > shift_at;
        let incident = incidents[..3]
            .iter()
            .any(|i| i.service() == row.service && i.start() < we && ws < i.end());
        if after_shift {
            continue; // judged below, by the retrain
        }
        if incident {
            incident_windows += 1;
            if verdict.is_anomaly {
                hits += 1;
                explained.push((
                    row.service.clone(),
                    engine.explain(&row.service, &record).unwrap().unwrap(),
                ));
            }
        } else {
            normal_windows += 1;
            false_alarms += usize::from(verdict.is_anomaly);
        }
    }
    let recall = hits as f64 / incident_windows as f64;
    let fp_rate = false_alarms as f64 / normal_windows as f64;
    eprintln!(
        "recall {hits}/{incident_windows} = {recall:.3}; false alarms {false_alarms}/{normal_windows} = {fp_rate:.4}"
    );
    for (service, why) in &explained {
        eprintln!("{service}: {}", why.rationale);
    }
    assert!(
        incident_windows >= 12,
        "each incident spans at least four windows"
    );
    assert!(recall >= 0.75, "recall {recall}");
    assert!(fp_rate <= 0.03, "false-alarm rate {fp_rate}");
    // Every flag is explained in field names, and the field the incident changed is among those marked unusual.
    for (service, why) in &explained {
        let expected = match service.as_str() {
            "api" => "latency_p95",
            "auth" => "error_rate",
            _ => "count",
        };
        assert!(why.rationale.contains('`'), "{service}: {}", why.rationale);
        assert!(
            why.fields.iter().any(|f| f.unusual && f.field == expected),
            "{service}: `{expected}` not among the unusual fields of {:?}",
            why.fields
                .iter()
                .filter(|f| f.unusual)
                .map(|f| &f.description)
                .collect::<Vec<_>>()
        );
    }
    // The level shift drifted the api's data: it was retrained, and says why.
    let versions = engine.persistence().model_versions("api").unwrap();
    assert!(
        versions
            .iter()
            .any(|m| m.metadata.metrics["reason"]["reason"] == "drift"),
        "{:?}",
        versions
            .iter()
            .map(|m| &m.metadata.metrics["reason"])
            .collect::<Vec<_>>()
    );
}
