//! Records: vectors that do not depend on the process, and arbitrary JSON that never panics.

use anomaly_core::Error;
use anomaly_core::engine::{Engine, EngineParams};
use anomaly_core::records::vectorizer::VectorizerParams;
use anomaly_core::stats::DatasetStats;
use proptest::prelude::*;
use serde_json::{Value, json};

fn training() -> Vec<Value> {
    vec![
        json!({"a": 1, "b": "x", "t": "2024-03-05T14:00:00Z"}),
        json!({"a": 3, "b": "y", "t": "2024-03-06T08:30:00Z", "n": {"d": [1, 2]}}),
        json!({"a": 2, "b": "x", "c": true, "t": "2024-03-07T20:15:00Z"}),
    ]
}

/// The vector of a fixed record under a fixed schema, pinned. The hash bucket of `b=zebra` (bucket 0, sign +1 of
/// 4) is what `sklearn.utils.murmurhash3_32("b=zebra", 0)` = 1771614504 gives; the calendar features are those of
/// Saturday 2024-03-09T00:00:00Z (a timestamp is its hour and weekday, not its place on the time line). Any change
/// here changes every stored model's meaning, and needs a new snapshot version.
#[test]
fn the_same_record_gives_the_same_vector_everywhere() {
    let v = VectorizerParams::new()
        .hash_width(4)
        .fit(&training())
        .unwrap();
    let names = [
        "a",
        "a.missing",
        "b#0",
        "b#1",
        "b#2",
        "b#3",
        "b.freq",
        "b.missing",
        "c",
        "c.missing",
        "n.d.len",
        "n.d.len.missing",
        "n.d.max",
        "n.d.max.missing",
        "n.d.mean",
        "n.d.mean.missing",
        "n.d.min",
        "n.d.min.missing",
        "t.hour_sin",
        "t.hour_cos",
        "t.weekday_sin",
        "t.weekday_cos",
        "t.missing",
    ];
    assert_eq!(v.feature_names(), names);
    let record = json!({"a": 5, "b": "zebra", "c": false, "t": "2024-03-09T00:00:00Z"});
    let (x, notes) = v.transform(&record).unwrap();
    #[rustfmt::skip]
    let pinned: [f64; 23] = [
        5.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 1.0, 2.0, 1.0, 1.5, 1.0, 1.0, 1.0,
        0.0, 1.0, -0.9749279121818236, -0.2225209339563146, 0.0,
    ];
    assert_eq!(x.len(), pinned.len());
    for (i, (a, b)) in x.iter().zip(pinned).enumerate() {
        assert_eq!(a.to_bits(), b.to_bits(), "column {} ({})", i, names[i]);
    }
    assert_eq!(
        notes.unseen_categories,
        [("b".to_string(), "zebra".to_string())]
    );
    // A model restored from its snapshot gives the same vector.
    let restored: anomaly_core::records::vectorizer::Vectorizer =
        serde_json::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap();
    assert_eq!(restored.transform(&record).unwrap().0, x);
}

/// A record model saved by snapshot version 1 (before field roles, with a timestamp's epoch seconds as a column)
/// loads and scores bit for bit as it did: the fixture holds the scores that version gave its probe records.
#[test]
fn version_1_record_models_score_as_they_did() {
    let bytes = include_bytes!("fixtures/record_model_v1.snapshot.json");
    let expected: Value =
        serde_json::from_slice(include_bytes!("fixtures/record_model_v1.scores.json")).unwrap();
    let model = anomaly_core::engine::RecordModel::from_snapshot_bytes(bytes).unwrap();
    assert!(
        model
            .vectorizer()
            .feature_names()
            .contains(&"created_at.epoch".to_string())
    );
    let probes = expected["probes"].as_array().unwrap();
    let scores = expected["scores"].as_array().unwrap();
    assert_eq!(probes.len(), scores.len());
    for (probe, score) in probes.iter().zip(scores) {
        let got = model.score(probe).unwrap().score;
        assert_eq!(got.to_bits(), score.as_f64().unwrap().to_bits(), "{probe}");
    }
    // Saved again, it is a version 2 snapshot that keeps the version 1 layout.
    let again =
        anomaly_core::engine::RecordModel::from_snapshot_bytes(&model.to_snapshot_bytes()).unwrap();
    assert_eq!(again, model);
    for probe in probes {
        assert_eq!(again.score(probe).unwrap(), model.score(probe).unwrap());
    }
}

#[test]
fn invalid_utf8_and_non_finite_numbers_stop_at_parsing() {
    // Records are `serde_json::Value`s, which cannot hold invalid UTF-8 or NaN/Infinity: such input is refused by
    // the JSON parser with an error, before it reaches a detector.
    assert!(serde_json::from_slice::<Value>(b"{\"a\": \"\xff\xfe\"}").is_err());
    assert!(serde_json::from_str::<Value>(r#"{"a": NaN}"#).is_err());
    assert!(serde_json::from_str::<Value>(r#"{"a": Infinity}"#).is_err());
    assert!(serde_json::from_str::<Value>(r#"{"a": 1e999}"#).is_err());
    // Lone surrogates in escapes are refused too.
    assert!(serde_json::from_str::<Value>(r#"{"a": "\ud800"}"#).is_err());
}

/// Arbitrary JSON values, nested up to 6 levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|v| json!(v)),
        (-1e300f64..1e300).prop_map(|v| json!(v)),
        ".{0,40}".prop_map(Value::String),
        prop_oneof![
            Just("2024-03-05T14:00:00Z"),
            Just("12.5"),
            Just("NaN"),
            Just(""),
            Just("-")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z.]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_json_never_panics(training in prop::collection::vec(any_json(), 1..12), probe in any_json()) {
        let all_objects = training.iter().all(Value::is_object);
        match VectorizerParams::new().fit(&training) {
            Ok(v) => {
                prop_assert!(all_objects);
                match v.transform(&probe) {
                    Ok((x, _)) => {
                        prop_assert_eq!(x.len(), v.n_features());
                        prop_assert!(x.iter().all(|f| f.is_finite()));
                    }
                    Err(e) => prop_assert!(matches!(e, Error::InvalidRecord { .. }), "{}", e),
                }
            }
            Err(e) => prop_assert!(matches!(e, Error::InvalidRecord { .. }), "{}", e),
        }
        prop_assert_eq!(DatasetStats::from_records(&training, &Default::default()).is_ok(), all_objects);
        let engine = Engine::in_memory(EngineParams::new().min_training_records(2)).unwrap();
        for r in training.iter().chain([&probe]) {
            match engine.observe("k", r) {
                Ok(_) => prop_assert!(r.is_object()),
                Err(e) => prop_assert!(matches!(e, Error::InvalidRecord { .. }), "{}", e),
            }
        }
    }
}
