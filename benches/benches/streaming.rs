#![allow(missing_docs)]
//! Streaming detectors: points per second through `score_many_values` on a univariate series.
//!
//! The series is a sine (period 1000 points, amplitude 10) plus N(0, 1) noise, seeded: 1M points under
//! `cargo bench`, 10k under `cargo test --benches` (criterion's test mode, which runs each benchmark once). Every
//! iteration starts from a fresh detector, so warm-up and (for the forest) the first fit are included, as they would
//! be for a new stream.

use std::hint::black_box;
use std::time::Duration;

use anomaly_benches::{full_run, sine_series};
use anomaly_core::{
    EmaParams, MovingAverageParams, StreamingDetector, StreamingIsolationForestParams, Verdict,
};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// Seed of the generated series.
const SERIES_SEED: u64 = 7;

fn series_len() -> usize {
    if full_run() { 1_000_000 } else { 10_000 }
}

/// Runs a fresh detector over the whole series and returns its verdicts.
fn run<D: StreamingDetector>(mut detector: D, series: &[f64]) -> Vec<Option<Verdict>> {
    detector
        .score_many_values(series)
        .expect("score_many_values")
}

fn bench_streaming(c: &mut Criterion) {
    let series = sine_series(series_len(), SERIES_SEED);
    let mut group = c.benchmark_group("streaming");
    group
        .throughput(Throughput::Elements(series.len() as u64))
        .warm_up_time(Duration::from_secs(1));
    let id = |name: &str| BenchmarkId::new(name, series.len());

    // O(1) per point: a ring of 5 values and sliding Welford sums; ~20 ms per 1M-point iteration.
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    group.bench_function(id("moving_average_w5"), |b| {
        let params = MovingAverageParams::new().window(5);
        b.iter(|| run(params.clone().build().expect("build"), black_box(&series)));
    });
    group.bench_function(id("ema"), |b| {
        let params = EmaParams::new();
        b.iter(|| run(params.clone().build().expect("build"), black_box(&series)));
    });

    // 50 trees scored per point and 4 trees regrown every 20 points: several seconds per 1M-point iteration, so
    // the 10 samples take about a minute.
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(Duration::from_secs(10));
    group.bench_function(id("streaming_isolation_forest"), |b| {
        let params = StreamingIsolationForestParams::new();
        b.iter(|| run(params.clone().build().expect("build"), black_box(&series)));
    });
    group.finish();
}

criterion_group!(benches, bench_streaming);
criterion_main!(benches);
