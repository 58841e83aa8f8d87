//! Arbitrary bytes as log lines (split on newlines, read as UTF-8 with replacement) into the log detector: header
//! parsing, masks, Drain and every signal return, never panic, abort or hang; scores stay in 0..=1, and the state
//! saves to a snapshot that loads and scores the same.
#![no_main]

use anomaly_core::logs::{DrainParams, LogDetector, LogDetectorParams, Severity, time_in_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let params = LogDetectorParams {
        drain: DrainParams {
            max_templates: Some(8),
            max_tokens: 32,
            extra_delimiters: vec!["=".into(), ",".into()],
            ..DrainParams::default()
        },
        min_history: 2,
        ..LogDetectorParams::default()
    };
    let mut d = LogDetector::new(params).expect("valid settings");
    for (i, line) in text.split('\n').enumerate() {
        let _ = Severity::split(line);
        let _ = time_in_line(line);
        let v = d.analyze(line, 1e9 + i as f64).expect("finite time");
        assert!((0.0..=1.0).contains(&v.score), "score {} for {line:?}", v.score);
        let _ = d.score(line, 1e9 + i as f64);
    }
    assert!(d.template_count() <= 8);
    let back = LogDetector::from_snapshot_bytes(&d.to_snapshot_bytes()).expect("a saved state loads");
    let probe = "2024-05-01 12:00:03 ERROR db: timeout after 30 s";
    assert_eq!(back.score(probe, 2e9).expect("finite").score, d.score(probe, 2e9).expect("finite").score);
});
