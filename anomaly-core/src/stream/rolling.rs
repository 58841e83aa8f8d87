//! Mean and variance over a sliding window, updated in O(1) and numerically stable.

use serde::{Deserialize, Serialize};

/// Sliding-window mean and population variance of one series.
///
/// Each update uses the stable sliding form of Welford's recurrence; to keep rounding from accumulating, the sums are
/// recomputed exactly from the window every [`RESYNC`] updates. The window grows as values arrive (nothing is
/// allocated for the capacity up front), so a huge capacity costs only the values actually pushed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RollingStats {
    window: Vec<f64>,
    capacity: usize,
    head: usize,
    mean: f64,
    m2: f64,
    since_resync: u32,
}

const RESYNC: u32 = 4096;

impl RollingStats {
    pub(crate) fn new(capacity: usize) -> Self {
        RollingStats {
            window: Vec::new(),
            capacity,
            head: 0,
            mean: 0.0,
            m2: 0.0,
            since_resync: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.window.len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.window.len() == self.capacity
    }

    pub(crate) fn mean(&self) -> f64 {
        self.mean
    }

    /// Population standard deviation of the window.
    pub(crate) fn std(&self) -> f64 {
        if self.window.is_empty() {
            0.0
        } else {
            (self.m2.max(0.0) / self.window.len() as f64).sqrt()
        }
    }

    /// The window's values, oldest first.
    pub(crate) fn values(&self) -> impl Iterator<Item = f64> + '_ {
        let (a, b) = self.window.split_at(self.head.min(self.window.len()));
        b.iter().chain(a).copied()
    }

    pub(crate) fn push(&mut self, x: f64) {
        if self.window.len() < self.capacity {
            self.window.push(x);
            let n = self.window.len() as f64;
            let delta = x - self.mean;
            self.mean += delta / n;
            self.m2 += delta * (x - self.mean);
            self.head = self.window.len() % self.capacity;
        } else {
            let old = std::mem::replace(&mut self.window[self.head], x);
            self.head = (self.head + 1) % self.capacity;
            let old_mean = self.mean;
            self.mean += (x - old) / self.capacity as f64;
            self.m2 += (x - old) * (x - self.mean + old - old_mean);
        }
        self.since_resync += 1;
        if self.since_resync >= RESYNC {
            self.resync();
        }
    }

    fn resync(&mut self) {
        let n = self.window.len() as f64;
        self.mean = self.window.iter().sum::<f64>() / n;
        self.m2 = self.window.iter().map(|v| (v - self.mean).powi(2)).sum();
        self.since_resync = 0;
    }

    /// Checks a state restored from bytes.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.capacity == 0 || self.window.len() > self.capacity || self.head >= self.capacity {
            return Err("rolling window of inconsistent size".into());
        }
        if !(self.mean.is_finite() && self.m2.is_finite())
            || self.window.iter().any(|v| !v.is_finite())
        {
            return Err("non-finite rolling statistics".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_direct_computation() {
        let mut r = RollingStats::new(5);
        let data: Vec<f64> = (0..10_000).map(|i| 1e6 + ((i * 37) % 101) as f64).collect();
        for (i, &x) in data.iter().enumerate() {
            r.push(x);
            let lo = (i + 1).saturating_sub(5);
            let w = &data[lo..=i];
            let mean = w.iter().sum::<f64>() / w.len() as f64;
            let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / w.len() as f64;
            assert!((r.mean() - mean).abs() < 1e-6, "mean at {i}");
            assert!((r.std() - var.sqrt()).abs() < 1e-6, "std at {i}");
        }
        assert_eq!(
            r.values().collect::<Vec<_>>(),
            data[data.len() - 5..].to_vec()
        );
    }
}
