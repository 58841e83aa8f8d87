use serde_json::{Value, json};

use super::*;
use crate::synth::{self, Incident, TrafficParams};

fn ev(service: &str, t: f64, status: u16, latency: f64) -> Value {
    json!({"service": service, "timestamp": t, "status": status, "response_time_ms": latency})
}

fn counts(rows: &[WindowRow], service: &str) -> Vec<(f64, u64)> {
    rows.iter()
        .filter(|r| r.service == service)
        .map(|r| (r.window_start, r.count))
        .collect()
}

/// Every row a streaming aggregator emits, pushes then flush.
fn stream(params: WindowParams, events: &[Value]) -> (Vec<WindowRow>, WindowAggregator) {
    let mut windows = params.build().unwrap();
    let mut rows = Vec::new();
    for e in events {
        rows.extend(windows.push(e).unwrap());
    }
    rows.extend(windows.flush());
    (rows, windows)
}

#[test]
fn hand_computed_window() {
    let events: Vec<Value> = [
        (10.0, 200, 10.0),
        (20.0, 500, 20.0),
        (30.0, 200, 30.0),
        (40.0, 503, 40.0),
        (50.0, 404, 100.0),
    ]
    .iter()
    .map(|&(t, s, l)| {
        let mut e = ev("api", t, s, l);
        e["bytes"] = json!(t * 10.0);
        e
    })
    .collect();
    let rows = aggregate(&WindowParams::new(), &events).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.service.as_str(), r.window_start, r.count),
        ("api", 0.0, 5)
    );
    assert_eq!(
        r.error_rate,
        Some(0.4),
        "500 and 503 are errors, 404 is not"
    );
    assert_eq!(r.latency_p50, Some(30.0));
    // np.percentile([10, 20, 30, 40, 100], 95) = 40 + 0.8 × 60
    assert!((r.latency_p95.unwrap() - 88.0).abs() < 1e-9);
    assert_eq!(r.latency_max, Some(100.0));
    assert_eq!(r.latency_mean, Some(40.0));
    assert_eq!(r.extra.len(), 1);
    assert!((r.extra["bytes"] - 300.0).abs() < 1e-9);
    // 1970-01-01T00:00Z: hour 0 of a Thursday.
    assert_eq!((r.hour_sin, r.hour_cos), (0.0, 1.0));
    let thursday = 3.0 / 7.0 * std::f64::consts::TAU;
    assert_eq!(
        (r.weekday_sin, r.weekday_cos),
        (thursday.sin(), thursday.cos())
    );

    let p = WindowParams::new().error_status_at_least(400.0);
    assert_eq!(aggregate(&p, &events).unwrap()[0].error_rate, Some(0.6));
}

#[test]
fn boundary_events_go_to_the_later_window() {
    let events = [
        ev("a", 59.999, 200, 1.0),
        ev("a", 60.0, 200, 2.0),
        ev("a", 120.0, 200, 3.0),
    ];
    let rows = aggregate(&WindowParams::new(), &events).unwrap();
    assert_eq!(counts(&rows, "a"), [(0.0, 1), (60.0, 1), (120.0, 1)]);
    assert_eq!(rows[1].latency_max, Some(2.0));
    // Streaming: the event at 60 closes [0, 60) at once.
    let mut windows = WindowParams::new().build().unwrap();
    assert!(windows.push(&events[0]).unwrap().is_empty());
    assert_eq!(windows.push(&events[1]).unwrap().len(), 1);
}

#[test]
fn out_of_order_within_lateness_is_counted() {
    let p = WindowParams::new().allowed_lateness_seconds(30.0);
    let mut windows = p.build().unwrap();
    assert!(windows.push(&ev("a", 10.0, 200, 1.0)).unwrap().is_empty());
    // Watermark 35: [0, 60) stays open.
    assert!(windows.push(&ev("a", 65.0, 200, 1.0)).unwrap().is_empty());
    assert!(windows.push(&ev("a", 50.0, 200, 5.0)).unwrap().is_empty());
    assert_eq!(windows.watermark(), Some(35.0));
    // Watermark 65: [0, 60) closes with both of its events.
    let closed = windows.push(&ev("a", 95.0, 200, 1.0)).unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!((closed[0].count, closed[0].latency_max), (2, Some(5.0)));
    assert_eq!(windows.late_events(), 0);
    assert_eq!(windows.open_windows(), 1);
}

#[test]
fn late_events_are_counted_not_aggregated() {
    let mut windows = WindowParams::new().build().unwrap();
    windows.push(&ev("a", 10.0, 200, 1.0)).unwrap();
    assert_eq!(windows.push(&ev("a", 65.0, 200, 1.0)).unwrap().len(), 1);
    assert!(windows.push(&ev("a", 30.0, 500, 1.0)).unwrap().is_empty());
    // A service never seen before is late too if its window has closed.
    assert!(windows.push(&ev("b", 59.0, 200, 1.0)).unwrap().is_empty());
    assert_eq!(windows.late_events(), 2);
    let rest = windows.flush();
    assert_eq!(counts(&rest, "a"), [(60.0, 1)]);
    assert!(counts(&rest, "b").is_empty());
    // After a flush, the flushed windows are closed too.
    assert!(windows.push(&ev("a", 100.0, 200, 1.0)).unwrap().is_empty());
    assert_eq!(windows.late_events(), 3);
    assert!(windows.flush().is_empty());
}

#[test]
fn empty_windows_produce_zero_count_rows() {
    let events = [
        ev("a", 10.0, 200, 1.0),
        ev("b", 15.0, 200, 1.0),
        ev("a", 200.0, 200, 1.0),
        ev("c", 130.0, 200, 1.0),
    ];
    let rows = aggregate(&WindowParams::new(), &events).unwrap();
    assert_eq!(
        counts(&rows, "a"),
        [(0.0, 1), (60.0, 0), (120.0, 0), (180.0, 1)]
    );
    // A silent service keeps producing rows up to the newest window.
    assert_eq!(
        counts(&rows, "b"),
        [(0.0, 1), (60.0, 0), (120.0, 0), (180.0, 0)]
    );
    // A service starts at its first event's window.
    assert_eq!(counts(&rows, "c"), [(120.0, 1), (180.0, 0)]);
    let empty = rows.iter().find(|r| r.count == 0).unwrap();
    assert_eq!(
        (empty.error_rate, empty.latency_p50, empty.latency_mean),
        (None, None, None)
    );
    assert!(empty.to_json()["latency_p95"].is_null());
    // Sorted by (window_start, service).
    let keys: Vec<(f64, &str)> = rows
        .iter()
        .map(|r| (r.window_start, r.service.as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(y.1)));
    assert_eq!(keys, sorted);
}

#[test]
fn events_without_latency_still_count() {
    let events = [
        json!({"service": "a", "timestamp": 1, "status": 503}),
        json!({"service": "a", "timestamp": 2}),
    ];
    let rows = aggregate(&WindowParams::new(), &events).unwrap();
    assert_eq!(
        (rows[0].count, rows[0].error_rate, rows[0].latency_p50),
        (2, Some(0.5), None)
    );
}

#[test]
fn batch_order_does_not_matter() {
    let events: Vec<Value> = (0..200)
        .map(|i| {
            ev(
                ["a", "b"][i % 2],
                (i * 7 % 200) as f64 * 1.3,
                200 + (i % 7 == 0) as u16 * 300,
                i as f64,
            )
        })
        .collect();
    let mut reversed = events.clone();
    reversed.reverse();
    assert_eq!(
        aggregate(&WindowParams::new(), &events).unwrap(),
        aggregate(&WindowParams::new(), &reversed).unwrap()
    );
}

#[test]
fn invalid_events_are_refused_without_trace() {
    let mut windows = WindowParams::new().build().unwrap();
    windows.push(&ev("a", 10.0, 200, 1.0)).unwrap();
    for bad in [
        json!({"service": "a"}),
        json!({"timestamp": 20}),
        json!({"service": "a", "timestamp": "soon"}),
        json!("text"),
    ] {
        assert!(
            matches!(windows.push(&bad), Err(Error::InvalidRecord { .. })),
            "{bad}"
        );
    }
    assert_eq!((windows.open_windows(), windows.late_events()), (1, 0));
    let err = aggregate(
        &WindowParams::new(),
        &[ev("a", 1.0, 200, 1.0), json!({"service": "a", "ts": 3})],
    )
    .unwrap_err();
    assert_eq!(
        err,
        Error::InvalidRecord {
            reason: "event 1: missing field `timestamp`".into()
        }
    );
    assert!(matches!(
        aggregate(&WindowParams::new().width_seconds(-1.0), &[]),
        Err(Error::InvalidParameter {
            name: "width_seconds",
            ..
        })
    ));
    assert!(aggregate(&WindowParams::new(), &[]).unwrap().is_empty());
}

#[test]
fn far_jumps_are_refused_before_they_flood() {
    let p = WindowParams::new().max_span_windows(1_000);
    let mut windows = p.clone().build().unwrap();
    windows.push(&ev("a", 0.0, 200, 1.0)).unwrap();
    let err = windows.push(&ev("a", 1e9, 200, 1.0)).unwrap_err();
    let Error::InvalidRecord { reason } = err else {
        panic!()
    };
    assert!(reason.contains("max_span_windows"), "{reason}");
    assert_eq!(
        windows.push(&ev("a", 59_000.0, 200, 1.0)).unwrap().len(),
        983
    );
    assert!(aggregate(&p, &[ev("a", 0.0, 200, 1.0), ev("a", -1e8, 200, 1.0)]).is_err());
}

fn traffic() -> (TrafficParams, Vec<Value>) {
    let p = TrafficParams::new().seed(3).duration_seconds(1800.0);
    let events = synth::generate(&p, &[]).unwrap();
    (p, events.iter().map(synth::Event::to_json).collect())
}

#[test]
fn streaming_equals_batch() {
    let (_, events) = traffic();
    let batch = aggregate(&WindowParams::new(), &events).unwrap();
    let (streamed, windows) = stream(WindowParams::new(), &events);
    assert_eq!(windows.late_events(), 0);
    assert_eq!(streamed, batch);
    assert_eq!(batch.len(), 3 * 30);
    // Within lateness, shuffled neighbours change nothing either.
    let mut shuffled = events.clone();
    for pair in shuffled.chunks_mut(2) {
        pair.reverse();
    }
    let (streamed, windows) = stream(WindowParams::new().allowed_lateness_seconds(5.0), &shuffled);
    assert_eq!(windows.late_events(), 0);
    // Running means of extra fields depend on the order of arrival in their last bits; nothing else does.
    assert_eq!(streamed.len(), batch.len());
    for (s, b) in streamed.iter().zip(&batch) {
        assert_eq!(
            WindowRow {
                extra: b.extra.clone(),
                ..s.clone()
            },
            *b
        );
        for (field, v) in &s.extra {
            assert!(
                (v - b.extra[field]).abs() <= 1e-9 * v.abs(),
                "{field}: {v} vs {}",
                b.extra[field]
            );
        }
    }
    assert!(batch.iter().all(|r| r.extra.keys().eq(["bytes"])));
}

#[test]
fn incidents_show_up_in_their_windows() {
    let p = TrafficParams::new().seed(5).duration_seconds(3600.0);
    let t0 = p.start_epoch();
    let incidents = [
        Incident::latency_spike("api", t0 + 600.0, 300.0, 5.0),
        Incident::error_burst("auth", t0 + 1200.0, 300.0, 0.5),
        Incident::traffic_drop("billing", t0 + 1800.0, 600.0, 0.0),
    ];
    let events: Vec<Value> = synth::generate(&p, &incidents)
        .unwrap()
        .iter()
        .map(synth::Event::to_json)
        .collect();
    let rows = aggregate(&WindowParams::new(), &events).unwrap();
    assert_eq!(rows.len(), 3 * 60);
    let split = |service: &str, incident: &Incident| {
        rows.iter()
            .filter(|r| r.service == service)
            .partition::<Vec<&WindowRow>, _>(|r| {
                r.window_start >= incident.start() && r.window_start < incident.end()
            })
    };

    let (hit, calm) = split("api", &incidents[0]);
    assert_eq!(hit.len(), 5);
    let calm_p50 = calm
        .iter()
        .map(|r| r.latency_p50.unwrap())
        .fold(0.0, f64::max);
    assert!(
        hit.iter().all(|r| r.latency_p50.unwrap() > 3.0 * calm_p50),
        "{hit:?} vs {calm_p50}"
    );

    let (hit, calm) = split("auth", &incidents[1]);
    assert!(hit.iter().all(|r| r.error_rate.unwrap() > 0.3), "{hit:?}");
    assert!(calm.iter().all(|r| r.error_rate.unwrap() < 0.1));

    let (hit, calm) = split("billing", &incidents[2]);
    assert_eq!(hit.len(), 10);
    assert!(
        hit.iter().all(|r| r.count == 0 && r.latency_p50.is_none()),
        "{hit:?}"
    );
    assert!(calm.iter().all(|r| r.count > 60));
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<WindowParams>();
    check::<WindowRow>();
    check::<WindowAggregator>();
    check::<synth::Event>();
    check::<TrafficParams>();
    check::<Incident>();
}

#[test]
fn client_errors_p99_and_new_values() {
    let event = |t: f64, status: u16, endpoint: &str| json!({"service": "api", "timestamp": t, "status": status, "response_time_ms": t % 60.0, "endpoint": endpoint});
    let mut events = Vec::new();
    for i in 0..100 {
        let status = if i < 10 {
            404
        } else if i < 15 {
            503
        } else {
            200
        };
        events.push(event(
            f64::from(i) * 0.5,
            status,
            ["/a", "/b"][i as usize % 2],
        ));
    }
    // Second window: a quarter of the calls go to an endpoint never seen before.
    for i in 0..100 {
        let endpoint = if i % 4 == 0 { "/admin" } else { "/a" };
        events.push(event(60.0 + f64::from(i) * 0.5, 200, endpoint));
    }
    // Third window: /admin is no longer new.
    events.push(event(120.0, 200, "/admin"));
    let params = WindowParams::new()
        .extra_fields(Vec::<String>::new())
        .category_fields(["endpoint"]);
    let rows = aggregate(&params, &events).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].client_error_rate, Some(0.1));
    assert_eq!(rows[0].error_rate, Some(0.05));
    let mut latencies: Vec<f64> = (0..100).map(|i| (f64::from(i) * 0.5) % 60.0).collect();
    latencies.sort_by(f64::total_cmp);
    assert_eq!(
        rows[0].latency_p99,
        Some(crate::forest::percentile(&latencies, 99.0))
    );
    assert_eq!(
        rows[0].new_value_share["endpoint"], 0.0,
        "the first window starts the vocabulary"
    );
    assert_eq!(rows[1].new_value_share["endpoint"], 0.25);
    assert_eq!(rows[2].new_value_share["endpoint"], 0.0);
    assert_eq!(rows[1].to_json()["new_endpoint_share"], 0.25);
    assert_eq!(rows[1].to_json()["client_error_rate"], 0.0);

    // Carried over: an aggregator that learnt the first window's vocabulary sees /admin as new at once.
    let mut first = params.clone().build().unwrap();
    for e in &events[..100] {
        first.push(e).unwrap();
    }
    first.flush();
    let vocabulary = first.vocabulary();
    assert_eq!(vocabulary["api"]["endpoint"], ["/a", "/b"]);
    let mut second = params.clone().build().unwrap();
    second.learn_vocabulary(&vocabulary);
    for e in &events[100..200] {
        second.push(e).unwrap();
    }
    assert_eq!(second.flush()[0].new_value_share["endpoint"], 0.25);

    // Counted as new for two windows: the third window's /admin call too.
    let rows = aggregate(&params.clone().new_value_windows(2), &events).unwrap();
    assert_eq!(rows[2].new_value_share["endpoint"], 1.0);

    // A warm-up of two windows learns /admin in the second window.
    let rows = aggregate(&params.clone().new_value_warmup_windows(2), &events).unwrap();
    assert_eq!(rows[1].new_value_share["endpoint"], 0.0);
    assert_eq!(rows[2].new_value_share["endpoint"], 0.0);

    // A full vocabulary counts further values as seen.
    let rows = aggregate(&params.clone().max_category_values(2), &events).unwrap();
    assert_eq!(rows[1].new_value_share["endpoint"], 0.0);
}

#[test]
fn advancing_the_watermark_closes_silent_windows() {
    let mut windows = WindowParams::new().build().unwrap();
    windows
        .push(&json!({"service": "api", "timestamp": 10}))
        .unwrap();
    assert!(windows.advance(59.0).is_empty());
    assert_eq!(
        windows.advance(60.0).len(),
        1,
        "[0, 60) ends at the watermark"
    );
    windows
        .push(&json!({"service": "db", "timestamp": 70}))
        .unwrap();
    let rows = windows.advance(180.0);
    let got: Vec<(&str, f64, u64)> = rows
        .iter()
        .map(|r| (r.service.as_str(), r.window_start, r.count))
        .collect();
    assert_eq!(
        got,
        [
            ("api", 60.0, 0),
            ("db", 60.0, 1),
            ("api", 120.0, 0),
            ("db", 120.0, 0)
        ]
    );
    assert!(
        windows.advance(100.0).is_empty(),
        "the watermark never goes back"
    );
    windows
        .push(&json!({"service": "api", "timestamp": 150}))
        .unwrap();
    assert_eq!(windows.late_events(), 1);
    assert_eq!(
        windows
            .push(&json!({"service": "api", "timestamp": 200}))
            .unwrap()
            .len(),
        0
    );
    assert_eq!(windows.flush().len(), 2);
}

#[test]
fn services_are_bounded_and_pending_vocabularies_are_kept() {
    let mut windows = WindowParams::new()
        .max_services(2)
        .category_fields(["endpoint"])
        .build()
        .unwrap();
    let learnt: crate::window::Vocabularies = [(
        "quiet".to_string(),
        [("endpoint".to_string(), vec!["/a".to_string()])].into(),
    )]
    .into();
    windows.learn_vocabulary(&learnt);
    windows
        .push(&json!({"service": "a", "timestamp": 1}))
        .unwrap();
    windows
        .push(&json!({"service": "b", "timestamp": 1}))
        .unwrap();
    let err = windows
        .push(&json!({"service": "c", "timestamp": 1}))
        .unwrap_err();
    assert!(err.to_string().contains("max_services"), "{err}");
    assert_eq!(
        windows.vocabulary()["quiet"]["endpoint"],
        ["/a"],
        "a service yet to speak keeps its vocabulary"
    );
}
