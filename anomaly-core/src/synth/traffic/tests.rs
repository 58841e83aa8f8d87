use std::collections::BTreeSet;

use super::*;
use crate::error::Error;
use crate::synth::IncidentKind;

/// The label an event at `ts` of `service` gets from `incidents`: the first one covering it.
fn expected_label(incidents: &[Incident], service: &str, ts: f64) -> Option<IncidentKind> {
    incidents
        .iter()
        .find(|i| i.covers(service, ts))
        .map(Incident::kind)
}

fn params() -> TrafficParams {
    TrafficParams::new().seed(11).duration_seconds(1800.0)
}

/// `start + s`.
fn at(s: f64) -> f64 {
    params().start_epoch() + s
}

fn of<'a>(events: &'a [Event], service: &'a str) -> impl Iterator<Item = &'a Event> + 'a {
    events.iter().filter(move |e| e.service == service)
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    assert!(n > 0, "mean of nothing");
    sum / n as f64
}

fn inside(e: &Event, incident: &Incident) -> bool {
    incident.covers(&e.service, e.timestamp)
}

#[test]
fn deterministic_per_seed() {
    let a = generate(&params(), &[]).unwrap();
    let b = generate(&params(), &[]).unwrap();
    assert_eq!(a, b);
    let c = generate(&params().seed(12), &[]).unwrap();
    assert_ne!(a, c);
}

#[test]
fn ordered_in_range_and_in_whole_milliseconds() {
    let p = params();
    let events = generate(&p, &[]).unwrap();
    assert!(events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    for e in &events {
        assert!(e.timestamp >= p.start_epoch() && e.timestamp < p.end_epoch());
        assert_eq!((e.timestamp * 1000.0).round() / 1000.0, e.timestamp);
        assert!(e.response_time_ms > 0.0 && e.label.is_none());
    }
    let services: BTreeSet<&str> = events.iter().map(|e| e.service.as_str()).collect();
    assert_eq!(services, BTreeSet::from(["api", "auth", "billing"]));
}

#[test]
fn count_follows_the_rate() {
    for p in [
        params(),
        params().daily_rate_amplitude(0.0).rate_per_second(20.0),
    ] {
        let events = generate(&p, &[]).unwrap();
        let per_service: f64 = (0..1800).map(|s| p.rate_at(at(s as f64 + 0.5))).sum();
        let expected = 3.0 * per_service;
        let n = events.len() as f64;
        assert!(
            (n - expected).abs() < 5.0 * expected.sqrt(),
            "{n} events, {expected} expected"
        );
    }
}

#[test]
fn baseline_statistics_are_plausible() {
    let events = generate(&params(), &[]).unwrap();
    let errors = events.iter().filter(|e| e.is_error()).count() as f64 / events.len() as f64;
    assert!((0.005..0.02).contains(&errors), "{errors}");
    // Medians follow the per-service defaults: auth fastest, billing slowest.
    let median = |s: &str| {
        let mut v: Vec<f64> = of(&events, s).map(|e| e.response_time_ms).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assert!(median("auth") < median("api") && median("api") < median("billing"));
}

#[test]
fn latency_spike_multiplies_latency_in_its_window_only() {
    let spike = Incident::latency_spike("api", at(600.0), 300.0, 4.0);
    let base = generate(&params(), &[]).unwrap();
    let hit = generate(&params(), std::slice::from_ref(&spike)).unwrap();
    assert_eq!(base.len(), hit.len());
    for (b, h) in base.iter().zip(&hit) {
        assert_eq!(
            (b.timestamp, &b.service, &b.endpoint, b.status),
            (h.timestamp, &h.service, &h.endpoint, h.status)
        );
        if inside(b, &spike) {
            assert!(
                (h.response_time_ms - 4.0 * b.response_time_ms).abs() <= 0.03,
                "{b:?} {h:?}"
            );
        } else {
            assert_eq!(b, h);
        }
    }
    let in_window = mean(
        hit.iter()
            .filter(|e| inside(e, &spike))
            .map(|e| e.response_time_ms),
    );
    let baseline = mean(
        base.iter()
            .filter(|e| inside(e, &spike))
            .map(|e| e.response_time_ms),
    );
    let elsewhere = mean(
        of(&hit, "api")
            .filter(|e| !inside(e, &spike))
            .map(|e| e.response_time_ms),
    );
    assert!(
        in_window >= 4.0 * baseline * 0.999,
        "{in_window} vs {baseline}"
    );
    assert!(in_window >= 3.5 * elsewhere, "{in_window} vs {elsewhere}");
}

#[test]
fn error_burst_raises_the_error_rate() {
    let burst = Incident::error_burst("auth", at(300.0), 300.0, 0.6);
    let events = generate(&params(), std::slice::from_ref(&burst)).unwrap();
    let rate = |pred: &dyn Fn(&Event) -> bool| {
        mean(
            of(&events, "auth")
                .filter(|e| pred(e))
                .map(|e| e.is_error() as u8 as f64),
        )
    };
    let during = rate(&|e| inside(e, &burst));
    let outside = rate(&|e| !inside(e, &burst));
    assert!((0.52..0.68).contains(&during), "{during}");
    assert!(outside < 0.03, "{outside}");
    assert!(
        of(&events, "auth")
            .filter(|e| inside(e, &burst) && e.is_error())
            .all(|e| (500..600).contains(&e.status))
    );
}

#[test]
fn level_shift_adds_a_constant_from_its_start() {
    let shift = Incident::level_shift("billing", at(900.0), 200.0);
    let base = generate(&params(), &[]).unwrap();
    let hit = generate(&params(), std::slice::from_ref(&shift)).unwrap();
    for (b, h) in base.iter().zip(&hit) {
        if inside(b, &shift) {
            assert!(
                (h.response_time_ms - b.response_time_ms - 200.0).abs() <= 0.011,
                "{b:?} {h:?}"
            );
            assert_eq!(h.label, Some(IncidentKind::LevelShift));
        } else {
            assert_eq!(b, h);
        }
    }
    assert!(hit.iter().any(|e| inside(e, &shift)));
    assert!(
        of(&hit, "billing")
            .filter(|e| e.timestamp >= at(900.0))
            .all(|e| e.label.is_some())
    );
}

#[test]
fn slow_drift_ramps_linearly() {
    let drift = Incident::slow_drift("api", at(0.0), 1800.0, 10.0);
    let base = generate(&params(), &[]).unwrap();
    let hit = generate(&params(), std::slice::from_ref(&drift)).unwrap();
    for (b, h) in base.iter().zip(&hit).filter(|(b, _)| b.service == "api") {
        let minutes = (b.timestamp - at(0.0)) / 60.0;
        let added = h.response_time_ms - b.response_time_ms;
        assert!(
            (added - 10.0 * minutes).abs() <= 0.011,
            "{added} after {minutes} min"
        );
    }
    let first = mean(
        of(&hit, "api")
            .filter(|e| e.timestamp < at(300.0))
            .map(|e| e.response_time_ms),
    );
    let last = mean(
        of(&hit, "api")
            .filter(|e| e.timestamp >= at(1500.0))
            .map(|e| e.response_time_ms),
    );
    assert!(last > first + 200.0, "{first} → {last}");
}

#[test]
fn rare_category_appears_only_in_its_window() {
    let rare = Incident::RareCategory {
        service: "auth".into(),
        start: at(1200.0),
        duration_seconds: 300.0,
        field: RareField::Region,
        value: "antarctica".into(),
        share: 0.5,
    };
    let events = generate(&params(), std::slice::from_ref(&rare)).unwrap();
    let with_value: Vec<&Event> = events.iter().filter(|e| e.region == "antarctica").collect();
    assert!(!with_value.is_empty());
    assert!(with_value.iter().all(|e| inside(e, &rare)));
    let share = mean(
        events
            .iter()
            .filter(|e| inside(e, &rare))
            .map(|e| (e.region == "antarctica") as u8 as f64),
    );
    assert!((0.4..0.6).contains(&share), "{share}");

    for (field, value) in [
        (RareField::Endpoint, "/admin/debug"),
        (RareField::UserAgent, "sqlmap/1.7"),
    ] {
        let rare = Incident::rare_category("api", at(0.0), 600.0, field, value);
        let events = generate(&params(), std::slice::from_ref(&rare)).unwrap();
        let hits: Vec<&Event> = events
            .iter()
            .filter(|e| e.endpoint == value || e.user_agent == value)
            .collect();
        assert!(
            !hits.is_empty() && hits.iter().all(|e| inside(e, &rare)),
            "{field:?}"
        );
    }
}

#[test]
fn traffic_drop_removes_requests_and_nothing_else() {
    let drop = Incident::traffic_drop("billing", at(600.0), 600.0, 0.1);
    let base = generate(&params(), &[]).unwrap();
    let hit = generate(&params(), std::slice::from_ref(&drop)).unwrap();
    let key = |e: &Event| (e.timestamp.to_bits(), e.service.clone());
    let base_keys: BTreeSet<_> = base.iter().map(key).collect();
    assert!(
        hit.iter().all(|e| base_keys.contains(&key(e))),
        "a drop only removes requests"
    );
    let count = |events: &[Event], inside_window: bool| {
        of(events, "billing")
            .filter(|e| drop.is_active(e.timestamp) == inside_window)
            .count() as f64
    };
    assert_eq!(count(&base, false), count(&hit, false));
    let ratio = count(&hit, true) / count(&base, true);
    assert!((0.06..0.14).contains(&ratio), "{ratio}");
    let others = |events: &[Event]| {
        events
            .iter()
            .filter(|e| e.service != "billing")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(others(&base), others(&hit));
}

#[test]
fn labels_cover_exactly_the_incident_windows() {
    let incidents = [
        Incident::latency_spike("api", at(100.0), 60.0, 5.0),
        Incident::error_burst("auth", at(300.0), 120.0, 0.5),
        Incident::level_shift("billing", at(1500.0), 50.0),
        Incident::slow_drift("api", at(600.0), 300.0, 5.0),
        Incident::rare_category("auth", at(900.0), 60.0, RareField::UserAgent, "zgrab/0.x"),
        Incident::traffic_drop("billing", at(200.0), 300.0, 0.5),
        // Overlaps the spike: the spike is listed first, so it labels the overlap.
        Incident::error_burst("api", at(130.0), 60.0, 0.5),
    ];
    let events = generate(&params(), &incidents).unwrap();
    for e in &events {
        assert_eq!(
            e.label,
            expected_label(&incidents, &e.service, e.timestamp),
            "{e:?}"
        );
        assert_eq!(e.is_anomalous(), e.label.is_some());
    }
    let kinds: BTreeSet<IncidentKind> = events.iter().filter_map(|e| e.label).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    let overlap = events
        .iter()
        .find(|e| e.service == "api" && e.timestamp >= at(130.0) && e.timestamp < at(160.0));
    assert_eq!(overlap.unwrap().label, Some(IncidentKind::LatencySpike));
}

#[test]
fn incidents_on_one_service_leave_the_others_alone() {
    let base = generate(&params(), &[]).unwrap();
    let hit = generate(
        &params(),
        &[Incident::error_burst("auth", at(0.0), 1800.0, 1.0)],
    )
    .unwrap();
    let api = |events: &[Event]| of(events, "api").cloned().collect::<Vec<_>>();
    assert_eq!(api(&base), api(&hit));
}

#[test]
fn bad_incidents_are_refused() {
    let err = generate(
        &params(),
        &[
            Incident::latency_spike("api", at(0.0), 10.0, 2.0),
            Incident::traffic_drop("web", at(0.0), 1.0, 0.5),
        ],
    )
    .unwrap_err();
    let Error::InvalidParameter { name, reason } = err else {
        panic!("{err:?}")
    };
    assert_eq!(name, "incidents");
    assert!(
        reason.contains("incident 1") && reason.contains("`web`"),
        "{reason}"
    );
    assert!(matches!(
        generate(&params().rate_per_second(-1.0), &[]),
        Err(Error::InvalidParameter {
            name: "rate_per_second",
            ..
        })
    ));
}
