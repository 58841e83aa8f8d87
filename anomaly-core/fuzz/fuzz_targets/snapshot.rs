//! Arbitrary bytes into every snapshot loader of anomaly-core: each returns `Ok` or `Err`, never panics, aborts or
//! hangs. A model that loads is then used once (scored, explained, updated), so a snapshot that passes the checks
//! cannot make a later call panic either.
#![no_main]

use anomaly_core::engine::RecordModel;
use anomaly_core::logs::LogDetector;
use anomaly_core::{
    Ema, IsolationForest, Model, MovingAverage, Snapshot, StreamingDetector,
    StreamingIsolationForest,
};
use libfuzzer_sys::fuzz_target;
use serde_json::json;

/// Widest observation built to exercise a loaded model (a snapshot may claim any width).
const MAX_PROBE_WIDTH: usize = 4096;

fn probe(width: usize) -> Option<Vec<f64>> {
    (width <= MAX_PROBE_WIDTH).then(|| (0..width).map(|i| i as f64 * 0.5 - 3.0).collect())
}

fn exercise_stream(d: &mut dyn StreamingDetector) {
    let x = probe(d.dims().unwrap_or(2));
    if let Some(x) = x {
        let _ = d.score(&x);
        let _ = d.explain(&x);
        for _ in 0..3 {
            let _ = d.score_and_update(&x);
        }
        let _ = d.explain(&x);
    }
}

fn exercise(model: Model) {
    match model {
        Model::IsolationForest(m) => {
            if let Some(x) = probe(m.n_features()) {
                let _ = m.score_row(&x);
                let _ = m.explain_row(&x);
            }
        }
        Model::MovingAverage(mut m) => exercise_stream(&mut m),
        Model::Ema(mut m) => exercise_stream(&mut m),
        Model::StreamingIsolationForest(mut m) => exercise_stream(&mut m),
        Model::RecordModel(m) => {
            let record =
                json!({"amount": 12.5, "country": "FR", "at": "2024-05-01T10:00:00Z", "n": [1, 2]});
            let _ = m.score(&record);
            let _ = m.explain(&record);
        }
        Model::LogDetector(mut m) => {
            for line in ["2024-05-01 12:00:03 ERROR db: timeout after 30 s", "", "x y z 1"] {
                let _ = m.score(line, 1e9);
                let _ = m.analyze(line, 1e9);
            }
            let _ = m.templates();
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = Snapshot::from_bytes(data) {
        let again = Snapshot::from_bytes(&snapshot.to_bytes());
        assert!(
            again.is_ok(),
            "a loaded snapshot saves to bytes that load: {again:?}"
        );
        exercise(snapshot.model);
    }
    let _ = IsolationForest::from_snapshot_bytes(data);
    let _ = MovingAverage::from_snapshot_bytes(data);
    let _ = Ema::from_snapshot_bytes(data);
    let _ = StreamingIsolationForest::from_snapshot_bytes(data);
    let _ = RecordModel::from_snapshot_bytes(data);
    let _ = LogDetector::from_snapshot_bytes(data);
});
