//! Where a streaming forest's time goes across 1,000 series: points per second scoring only (`score`, nothing
//! learnt) and scoring and learning (`score_and_update`, refits included), the best of five passes each over
//! forests past their warm-up, fed round robin as the metric worker feeds them. With `update` as argument, only
//! `update` passes run (for a profiler). On Linux it also prints the process's resident memory after the warm-up.
//!
//! `cargo run --release -p anomaly-benches --example stream_split [update]`

#![allow(missing_docs, clippy::print_stdout)]

use std::time::Instant;

use anomaly_benches::sine_series;
use anomaly_core::{StreamingDetector, StreamingIsolationForestParams};

const SERIES: usize = 1_000;
const POINTS: usize = 1_000;
const PASSES: usize = 5;

fn main() {
    let update_only = std::env::args().any(|a| a == "update");
    let points: Vec<Vec<f64>> = (0..SERIES)
        .map(|s| sine_series(POINTS, 7 + s as u64))
        .collect();
    let params = StreamingIsolationForestParams::new();
    let mut detectors: Vec<_> = (0..SERIES)
        .map(|_| params.clone().build().expect("default parameters"))
        .collect();
    for i in 0..POINTS {
        for (d, s) in detectors.iter_mut().zip(&points) {
            d.update(&[s[i]]).expect("finite point");
        }
    }
    if let Some(kib) = resident_kib() {
        println!(
            "resident after warm-up: {} MiB, about {} KiB per series",
            kib / 1024,
            kib / SERIES as u64
        );
    }
    let (mut best_score, mut best_learn) = (f64::MAX, f64::MAX);
    let mut flagged = 0usize;
    for _ in 0..PASSES {
        if update_only {
            for i in 0..POINTS {
                for (d, s) in detectors.iter_mut().zip(&points) {
                    d.update(&[s[i]]).expect("finite point");
                }
            }
            continue;
        }
        let t = Instant::now();
        for i in 0..POINTS {
            for (d, s) in detectors.iter().zip(&points) {
                let v = d.score(&[s[i] + 0.5]).expect("finite point");
                flagged += usize::from(v.is_some_and(|v| v.is_anomaly));
            }
        }
        best_score = best_score.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        for i in 0..POINTS {
            for (d, s) in detectors.iter_mut().zip(&points) {
                let v = d.score_and_update(&[s[i]]).expect("finite point");
                flagged += usize::from(v.is_some_and(|v| v.is_anomaly));
            }
        }
        best_learn = best_learn.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(flagged);
    if !update_only {
        let total = (SERIES * POINTS) as f64;
        println!(
            "score only: {:.0}k points/s; score and learn: {:.0}k points/s",
            total / best_score / 1e3,
            total / best_learn / 1e3
        );
    }
}

/// Resident memory of this process in KiB, where `/proc` tells it.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
