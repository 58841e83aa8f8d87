//! A bounded, uniform sample of a key's history (Vitter's algorithm R), seeded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Keeps a uniform random sample of at most `cap` of the records seen: when full, the n-th record replaces a
/// random slot with probability `cap / n`, so old and new records are equally likely to be kept.
#[derive(Debug, Clone)]
pub(crate) struct Reservoir {
    records: Vec<Value>,
    seen: u64,
    cap: usize,
    rng: ChaCha8Rng,
}

impl Reservoir {
    pub(crate) fn new(cap: usize, seed: u64) -> Self {
        Reservoir {
            records: Vec::new(),
            seen: 0,
            cap: cap.max(1),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub(crate) fn push(&mut self, record: Value) {
        self.push_with(|| record);
    }

    /// Offers the record `make` gives, calling it only if the record is kept (once the sample is full, most are not).
    pub(crate) fn push_with(&mut self, make: impl FnOnce() -> Value) {
        self.seen += 1;
        if self.records.len() < self.cap {
            self.records.push(make());
        } else {
            let j = self.rng.random_range(0..self.seen);
            if (j as usize) < self.cap {
                self.records[j as usize] = make();
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn seen(&self) -> u64 {
        self.seen
    }

    pub(crate) fn records(&self) -> &[Value] {
        &self.records
    }

    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.seen = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn caps_and_samples_uniformly() {
        // 100 records into a reservoir of 10, many times: every record is kept about 10% of the time.
        let mut kept = [0u32; 100];
        for seed in 0..2_000 {
            let mut r = Reservoir::new(10, seed);
            for i in 0..100 {
                r.push(json!(i));
            }
            assert_eq!(r.len(), 10);
            assert_eq!(r.seen(), 100);
            for v in r.records() {
                kept[v.as_u64().unwrap() as usize] += 1;
            }
        }
        // Expected 200 each; binomial sd ≈ 13.4, allow 5 sd.
        for (i, &k) in kept.iter().enumerate() {
            assert!((133..=267).contains(&k), "record {i} kept {k} times");
        }
        let early: u32 = kept[..50].iter().sum();
        let late: u32 = kept[50..].iter().sum();
        assert!(
            (early as f64 / late as f64 - 1.0).abs() < 0.1,
            "{early} vs {late}"
        );
    }
}
