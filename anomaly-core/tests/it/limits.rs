//! Hostile sizes (in parameters or in snapshot bytes) reach a typed error or cost memory only as data arrives:
//! never an allocation abort, an overflow or a stack overflow.

use anomaly_core::engine::RecordModel;
use anomaly_core::forest::{MAX_ESTIMATORS, MAX_THREADS};
use anomaly_core::records::flatten::{Limits, MAX_DEPTH, flatten};
use anomaly_core::records::vectorizer::{MAX_HASH_WIDTH, VectorizerParams};
use anomaly_core::{
    Error, IsolationForest, IsolationForestParams, MovingAverage, MovingAverageParams,
    StreamingDetector, StreamingIsolationForest, StreamingIsolationForestParams,
};
use serde_json::{Value, json};

/// 2⁴⁰: far more elements than the machine has memory for.
const HUGE: usize = 1 << 40;

fn is_invalid(r: Result<impl std::fmt::Debug, Error>, parameter: &str) -> bool {
    match r {
        Err(Error::InvalidParameter { name, .. }) => name == parameter,
        other => panic!("expected InvalidParameter({parameter}), got {other:?}"),
    }
}

fn is_unsupported<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    match r {
        Err(Error::UnsupportedSnapshot { .. }) => true,
        other => panic!("expected UnsupportedSnapshot, got {other:?}"),
    }
}

/// A snapshot's JSON with `edit` applied to its model.
fn edited(bytes: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(bytes).unwrap();
    edit(&mut value["model"]);
    serde_json::to_vec(&value).unwrap()
}

fn trained_streaming_forest() -> StreamingIsolationForest {
    let mut s = StreamingIsolationForestParams::new()
        .warmup(20)
        .window_size(64)
        .n_estimators(8)
        .batch_size(5)
        .threshold_window(10)
        .build()
        .unwrap();
    for i in 0..80 {
        s.update(&[(i % 7) as f64, (i % 3) as f64]).unwrap();
    }
    s
}

#[test]
fn a_moving_average_window_of_2_pow_40_grows_with_the_data() {
    let mut d = MovingAverageParams::new().window(HUGE).build().unwrap();
    for i in 0..100 {
        assert_eq!(d.score_and_update(&[i as f64, 1.0]).unwrap(), None);
    }
    let restored = MovingAverage::from_snapshot_bytes(&d.to_snapshot_bytes()).unwrap();
    assert_eq!(restored, d);
}

#[test]
fn streaming_forest_buffers_of_2_pow_40_grow_with_the_data() {
    for params in [
        StreamingIsolationForestParams::new().window_size(HUGE),
        StreamingIsolationForestParams::new().threshold_window(HUGE),
        StreamingIsolationForestParams::new().batch_size(HUGE),
    ] {
        let mut s = params.warmup(20).n_estimators(4).build().unwrap();
        for i in 0..60 {
            s.score_and_update(&[(i % 5) as f64]).unwrap();
        }
        assert_eq!(s.seen(), 60);
        let restored =
            StreamingIsolationForest::from_snapshot_bytes(&s.to_snapshot_bytes()).unwrap();
        assert_eq!(restored, s);
    }
    assert!(is_invalid(
        StreamingIsolationForestParams::new()
            .n_estimators(MAX_ESTIMATORS + 1)
            .build(),
        "n_estimators"
    ));
}

#[test]
fn a_streaming_forest_stays_bit_identical_across_the_ring_filling_and_wrapping() {
    // Learnt straight through, or saved and restored at every step of the filling and wrapping ring: the same state.
    let params = StreamingIsolationForestParams::new()
        .warmup(10)
        .window_size(16)
        .n_estimators(4)
        .batch_size(3)
        .threshold_window(8);
    let mut straight = params.clone().build().unwrap();
    let mut restored = params.build().unwrap();
    for i in 0..50 {
        let x = [((i * 7) % 11) as f64, (i % 4) as f64];
        let a = straight.score_and_update(&x).unwrap();
        let b = restored.score_and_update(&x).unwrap();
        assert_eq!(a, b, "point {i}");
        restored =
            StreamingIsolationForest::from_snapshot_bytes(&restored.to_snapshot_bytes()).unwrap();
    }
    assert_eq!(restored, straight);
}

#[test]
fn streaming_forest_snapshots_with_sizes_of_2_pow_40_load_or_are_refused() {
    let bytes = trained_streaming_forest().to_snapshot_bytes();
    // Buffers that grow as data arrives: a huge bound is harmless.
    for field in ["threshold_window", "batch_size"] {
        let hostile = edited(&bytes, |m| m["params"][field] = json!(HUGE));
        let mut s = StreamingIsolationForest::from_snapshot_bytes(&hostile).unwrap();
        for i in 0..30 {
            s.score_and_update(&[i as f64, 0.0]).unwrap();
        }
    }
    // The ring of this snapshot is full at 64 rows: another window_size no longer describes it.
    let hostile = edited(&bytes, |m| m["params"]["window_size"] = json!(HUGE));
    assert!(is_unsupported(
        StreamingIsolationForest::from_snapshot_bytes(&hostile)
    ));
    // Trees are grown in one go: too many are refused.
    let hostile = edited(&bytes, |m| m["params"]["n_estimators"] = json!(HUGE));
    assert!(is_unsupported(
        StreamingIsolationForest::from_snapshot_bytes(&hostile)
    ));
    // A window size whose product with the width overflows.
    let hostile = edited(&bytes, |m| {
        m["params"]["window_size"] = json!(usize::MAX / 2 + 1)
    });
    assert!(is_unsupported(
        StreamingIsolationForest::from_snapshot_bytes(&hostile)
    ));
    // A state that claims rows its ring does not hold.
    let fresh = StreamingIsolationForestParams::new()
        .build()
        .unwrap()
        .to_snapshot_bytes();
    let hostile = edited(&fresh, |m| {
        m["window_len"] = json!(5);
        m["window_head"] = json!(5);
    });
    assert!(is_unsupported(
        StreamingIsolationForest::from_snapshot_bytes(&hostile)
    ));
}

#[test]
fn streaming_forest_snapshots_holding_the_whole_ring_up_front_still_load() {
    // Before the ring grew lazily, a snapshot held `window_size` rows from the first point, zeros beyond the data.
    let s = trained_streaming_forest();
    let mut straight = StreamingIsolationForestParams::new()
        .warmup(20)
        .window_size(64)
        .n_estimators(8)
        .batch_size(5)
        .threshold_window(10)
        .build()
        .unwrap();
    for i in 0..30 {
        straight.update(&[(i % 7) as f64, (i % 3) as f64]).unwrap();
    }
    let old_layout = edited(&straight.to_snapshot_bytes(), |m| {
        let window = m["window"].as_array_mut().unwrap();
        window.resize(64 * 2, json!(0.0));
    });
    let mut old = StreamingIsolationForest::from_snapshot_bytes(&old_layout).unwrap();
    for i in 30..80 {
        let x = [(i % 7) as f64, (i % 3) as f64];
        assert_eq!(
            old.score_and_update(&x).unwrap(),
            straight.score_and_update(&x).unwrap()
        );
    }
    assert_eq!(straight, s);
}

#[test]
fn forest_sizes_beyond_the_limits_are_refused() {
    let x = crate::gaussian(20, 2, 3);
    assert!(is_invalid(
        IsolationForestParams::new()
            .n_estimators(HUGE)
            .fit(x.view()),
        "n_estimators"
    ));
    assert!(is_invalid(
        IsolationForestParams::new()
            .n_threads(Some(MAX_THREADS + 1))
            .fit(x.view()),
        "n_threads"
    ));
    let model = IsolationForestParams::new()
        .n_estimators(5)
        .fit(x.view())
        .unwrap();
    assert!(is_invalid(model.grow(x.view(), usize::MAX), "additional"));
    assert!(is_invalid(
        model.grow(x.view(), MAX_ESTIMATORS),
        "additional"
    ));
    let bytes = model.to_snapshot_bytes();
    for (field, value) in [
        ("n_threads", json!(HUGE)),
        ("n_estimators", json!(HUGE)),
        ("n_estimators", json!(0)),
    ] {
        let hostile = edited(&bytes, |m| m["params"][field] = value);
        assert!(is_unsupported(IsolationForest::from_snapshot_bytes(
            &hostile
        )));
    }
}

#[test]
fn record_model_snapshots_with_huge_hash_widths_are_refused() {
    const COUNTRIES: [&str; 3] = ["fr", "de", "it"];
    let records: Vec<Value> = (0..40)
        .map(|i| json!({"amount": i, "country": COUNTRIES[i % 3], "ok": i % 2 == 0}))
        .collect();
    assert!(is_invalid(
        VectorizerParams::new()
            .hash_width(MAX_HASH_WIDTH + 1)
            .fit(&records),
        "hash_width"
    ));
    let model = RecordModel::fit(
        &records,
        &VectorizerParams::new(),
        &IsolationForestParams::new().n_estimators(5),
        1,
    )
    .unwrap();
    let bytes = model.to_snapshot_bytes();
    for width in [HUGE, usize::MAX, usize::MAX - 1] {
        let hostile = edited(&bytes, |m| {
            m["vectorizer"]["params"]["hash_width"] = json!(width)
        });
        assert!(is_unsupported(RecordModel::from_snapshot_bytes(&hostile)));
    }
}

#[test]
fn deeply_nested_snapshot_json_is_refused() {
    for depth in [200, 100_000] {
        let bytes = "[".repeat(depth);
        assert!(is_unsupported(IsolationForest::from_snapshot_bytes(
            bytes.as_bytes()
        )));
        // Nested inside a well-formed header.
        let nested = format!(
            "{{\"format\":\"anomaly-snapshot\",\"version\":2,\"model\":{{\"kind\":\"ema\",\"x\":{}{}}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        assert!(is_unsupported(anomaly_core::Snapshot::from_bytes(
            nested.as_bytes()
        )));
    }
}

#[test]
fn nesting_beyond_max_depth_is_refused_whatever_the_limits_say() {
    let mut record = json!({"leaf": 1});
    for _ in 0..MAX_DEPTH + 10 {
        record = json!({ "a": record });
    }
    let limits = Limits {
        max_depth: usize::MAX,
        max_fields: usize::MAX,
    };
    match flatten(&record, &limits) {
        Err(Error::InvalidRecord { reason }) => {
            assert!(reason.contains(&MAX_DEPTH.to_string()), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}
