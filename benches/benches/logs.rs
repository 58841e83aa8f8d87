#![allow(missing_docs)]
//! Log lines: template matching plus scoring, per second, one thread, on the loghub 2k sets' raw lines.
//!
//! For each set the detector first learns the set's 2,000 raw lines (as a service warmed with `train` would), then
//! the benchmark runs `LogDetector::analyze` over the same lines again: header (level, time), masks, Drain's tree
//! and similarity, then every signal and the learning step. `drain` isolates the template miner (Drain3's
//! defaults, on the `Content` column, which is what Drain3 is timed on in `compare_drain3.py`). The sets are read
//! from `../shared/data` (or `ANOMALY_SHARED_DATA`); without it the benchmark says so and measures nothing.

use std::hint::black_box;

use anomaly_benches::{loghub_raw_lines, shared_data};
use anomaly_core::logs::{Drain, DrainParams, LogDetector, LogDetectorParams};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const SETS: [&str; 6] = ["HDFS", "BGL", "Spark", "Apache", "OpenSSH", "Linux"];

fn bench_logs(c: &mut Criterion) {
    let Some(dir) = shared_data() else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "logs bench: no shared data folder (set ANOMALY_SHARED_DATA); nothing measured"
            );
        }
        return;
    };
    let mut group = c.benchmark_group("logs");
    for set in SETS {
        let lines = loghub_raw_lines(&dir, set);
        let mut warm = LogDetector::new(LogDetectorParams::default()).expect("detector");
        for l in &lines {
            warm.analyze(l, 1e9).expect("finite time");
        }
        group.throughput(Throughput::Elements(lines.len() as u64));
        group.bench_function(BenchmarkId::new("analyze", set), |b| {
            b.iter_batched_ref(
                || warm.clone(),
                |d| {
                    for l in &lines {
                        black_box(d.analyze(l, 1e9).expect("finite time"));
                    }
                },
                BatchSize::LargeInput,
            )
        });
        let contents = anomaly_benches::loghub_contents(&dir, set);
        group.bench_function(BenchmarkId::new("drain", set), |b| {
            b.iter_batched_ref(
                || Drain::new(DrainParams::drain3()).expect("miner"),
                |d| {
                    for l in contents.iter().map(String::as_str) {
                        black_box(d.add(l).template);
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench_logs);
criterion_main!(benches);
