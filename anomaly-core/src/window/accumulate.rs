//! What one open window of one service has gathered so far.

use std::collections::{BTreeMap, HashMap};

use super::WindowRow;
use super::extract::Observation;
use crate::forest::percentile;

/// The events of one open window, summarised as they arrive; latencies are kept for exact quantiles.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Accumulator {
    count: u64,
    errors: u64,
    client_errors: u64,
    latencies: Vec<f64>,
    extra: BTreeMap<String, Mean>,
    /// Per category field, the events of each value (at most `MAX_WINDOW_VALUES` values), and the events of the
    /// values past that bound.
    categories: Vec<(HashMap<String, u64>, u64)>,
}

/// Most distinct values of one category field counted in one window; the events of further values count as
/// values already seen.
const MAX_WINDOW_VALUES: usize = 10_000;

impl Accumulator {
    pub(super) fn add(&mut self, o: &Observation) {
        self.count += 1;
        self.errors += u64::from(o.error);
        self.client_errors += u64::from(o.client_error);
        if self.categories.len() < o.categories.len() {
            self.categories
                .resize_with(o.categories.len(), Default::default);
        }
        for ((values, beyond), value) in self.categories.iter_mut().zip(&o.categories) {
            let Some(value) = value else { continue };
            if let Some(n) = values.get_mut(value.as_str()) {
                *n += 1;
            } else if values.len() < MAX_WINDOW_VALUES {
                values.insert(value.clone(), 1);
            } else {
                *beyond += 1;
            }
        }
        if let Some(latency) = o.latency {
            self.latencies.push(latency);
        }
        for (field, v) in &o.extra {
            match self.extra.get_mut(field) {
                Some(mean) => mean.add(*v),
                None => {
                    self.extra.insert(field.clone(), Mean::new(*v));
                }
            }
        }
    }

    /// The events of each value of category field `i` (values past the window's bound are not listed).
    pub(super) fn values(&self, i: usize) -> impl Iterator<Item = (&String, u64)> {
        self.categories
            .get(i)
            .into_iter()
            .flat_map(|(values, _)| values.iter().map(|(v, &n)| (v, n)))
    }

    /// Events in the window.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    pub(super) fn into_row(mut self, service: &str, window_start: f64) -> WindowRow {
        let mut row = WindowRow::empty(service, window_start);
        row.count = self.count;
        if self.count > 0 {
            row.error_rate = Some(self.errors as f64 / self.count as f64);
            row.client_error_rate = Some(self.client_errors as f64 / self.count as f64);
        }
        if !self.latencies.is_empty() {
            self.latencies.sort_by(f64::total_cmp);
            let sorted = &self.latencies;
            row.latency_p50 = Some(percentile(sorted, 50.0));
            row.latency_p95 = Some(percentile(sorted, 95.0));
            row.latency_p99 = Some(percentile(sorted, 99.0));
            row.latency_max = sorted.last().copied();
            row.latency_mean = Some(mean_of(sorted));
        }
        row.extra = self
            .extra
            .into_iter()
            .map(|(k, m)| (k, m.value()))
            .collect();
        row
    }
}

/// The mean of sorted, finite `values` (non-empty), without overflow.
fn mean_of(sorted: &[f64]) -> f64 {
    let n = sorted.len() as f64;
    let sum: f64 = sorted.iter().sum();
    let mean = if sum.is_finite() {
        sum / n
    } else {
        sorted.iter().map(|v| v / n).sum()
    };
    mean.clamp(sorted[0], sorted[sorted.len() - 1])
}

/// A running mean of finite values as a convex combination, which cannot overflow, kept within the values' range.
#[derive(Debug, Clone, PartialEq)]
struct Mean {
    mean: f64,
    n: u64,
    min: f64,
    max: f64,
}

impl Mean {
    fn new(v: f64) -> Self {
        Mean {
            mean: v,
            n: 1,
            min: v,
            max: v,
        }
    }

    fn add(&mut self, v: f64) {
        self.n += 1;
        let w = 1.0 / self.n as f64;
        self.mean = self.mean * (1.0 - w) + v * w;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn value(&self) -> f64 {
        self.mean.clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_do_not_overflow() {
        assert_eq!(mean_of(&[f64::MAX, f64::MAX]), f64::MAX);
        let mut m = Mean::new(f64::MAX);
        m.add(f64::MAX);
        m.add(f64::MAX);
        assert_eq!(m.value(), f64::MAX);
        let mut m = Mean::new(1.0);
        m.add(2.0);
        m.add(6.0);
        assert!((m.value() - 3.0).abs() < 1e-12);
    }
}
