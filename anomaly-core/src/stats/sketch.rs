//! The mergeable state behind a field's statistics: exact moments, a bounded uniform sample of the numeric values,
//! the smallest hashes of the distinct values, and the most frequent category values.
//!
//! Every part is deterministic: hashes are fixed (FNV-1a with a SplitMix64 finaliser, the same in every process),
//! and the random choices of the sample are drawn from ChaCha8 seeded by the field's path and the counts involved.

use std::collections::{BTreeMap, BTreeSet};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Numeric values kept per field for quantiles; below this many values the quantiles are exact.
pub(crate) const SAMPLE_CAP: usize = 2048;
/// Distinct values counted exactly per field.
pub(crate) const DISTINCT_CAP: usize = 10_000;
/// Category values whose counts are kept per field (the 10 most frequent are reported).
pub(crate) const TRACKED_CAP: usize = 64;
/// Characters of a category value kept in reports; longer values are cut and end with `…`.
pub(crate) const MAX_LABEL_CHARS: usize = 200;

const SEED: u64 = 0x05ee_d5a7_57a7_5001;

/// A 64-bit hash fixed across processes and platforms.
pub(crate) fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// SplitMix64's finaliser: spreads every input bit over the output.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random stream of a field's sample, seeded by its path.
pub(crate) fn field_rng(path: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(SEED ^ hash64(path.as_bytes()))
}

/// Count, extremes, mean and sum of squared deviations (Welford), combinable exactly (Chan et al.).
///
/// Values beyond about 1e154 in magnitude make the squared deviations overflow; the sum saturates at `f64::MAX`
/// so the state stays finite (the standard deviation is then bounded by half the range instead).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Moments {
    pub(crate) count: u64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
    pub(crate) m2: f64,
}

impl Moments {
    pub(crate) fn new() -> Self {
        Moments {
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            mean: 0.0,
            m2: 0.0,
        }
    }

    /// Adds one finite value.
    pub(crate) fn push(&mut self, x: f64) {
        self.count += 1;
        let n = self.count as f64;
        self.min = self.min.min(x);
        self.max = self.max.max(x);
        let delta = x - self.mean;
        let step = if delta.is_finite() {
            delta / n
        } else {
            x / n - self.mean / n
        };
        self.mean = within(self.mean + step, self.min, self.max);
        self.m2 = (self.m2 + delta * (x - self.mean)).min(f64::MAX);
        if self.m2.is_nan() {
            self.m2 = f64::MAX;
        }
    }

    /// The moments of both sets of values together (Chan, Golub & LeVeque's pairwise update).
    pub(crate) fn combine(a: &Moments, b: &Moments) -> Moments {
        if a.count == 0 {
            return *b;
        }
        if b.count == 0 {
            return *a;
        }
        let count = a.count.saturating_add(b.count);
        let (na, nb, n) = (a.count as f64, b.count as f64, count as f64);
        let (min, max) = (a.min.min(b.min), a.max.max(b.max));
        let delta = b.mean - a.mean;
        let mean = if delta.is_finite() {
            a.mean + delta * (nb / n)
        } else {
            a.mean * (na / n) + b.mean * (nb / n)
        };
        let m2 = a.m2 + b.m2 + delta * delta * (na / n) * nb;
        Moments {
            count,
            min,
            max,
            mean: within(mean, min, max),
            m2: if m2.is_nan() {
                f64::MAX
            } else {
                m2.min(f64::MAX)
            },
        }
    }

    /// Population standard deviation, finite.
    pub(crate) fn std(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let s = (self.m2.max(0.0) / self.count as f64).sqrt();
        let half_range = self.max / 2.0 - self.min / 2.0;
        if s.is_finite() && self.m2 < f64::MAX {
            s
        } else {
            s.min(half_range)
        }
    }
}

/// `v` moved into `[lo, hi]`; unlike `f64::clamp`, never panics (restored state may have `lo > hi`).
fn within(v: f64, lo: f64, hi: f64) -> f64 {
    v.max(lo).min(hi)
}

/// Algorithm R: keeps a uniform sample of at most [`SAMPLE_CAP`] of the values pushed so far.
///
/// `seen_before` is how many values were pushed before `x`.
pub(crate) fn reservoir_push(
    sample: &mut Vec<f64>,
    seen_before: u64,
    x: f64,
    rng: &mut ChaCha8Rng,
) {
    if sample.len() < SAMPLE_CAP {
        sample.push(x);
    } else {
        let j = rng.random_range(0..=seen_before);
        if let Some(slot) = usize::try_from(j).ok().and_then(|j| sample.get_mut(j)) {
            *slot = x;
        }
    }
}

/// A uniform sample of the union of two populations from uniform samples of each.
///
/// When both samples hold their whole population and the union fits, the result is their union (exact). Samples are
/// kept sorted, so the quantiles are read without sorting again.
/// Otherwise [`SAMPLE_CAP`] slots are split between the two sides by sequential draws without replacement from the
/// populations (a hypergeometric split), and each side's share is drawn uniformly from its sample.
pub(crate) fn merge_samples(a: &[f64], n_a: u64, b: &[f64], n_b: u64, path: &str) -> Vec<f64> {
    let complete = a.len() as u64 == n_a && b.len() as u64 == n_b;
    if complete && a.len() + b.len() <= SAMPLE_CAP {
        return merge_sorted(a, b);
    }
    let seed = SEED ^ hash64(path.as_bytes()) ^ mix(n_a) ^ mix(n_b.rotate_left(17) ^ 0x9e37);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rem_a, mut rem_b) = (n_a.max(a.len() as u64), n_b.max(b.len() as u64));
    let (mut take_a, mut take_b) = (0usize, 0usize);
    while take_a + take_b < SAMPLE_CAP && rem_a.saturating_add(rem_b) > 0 {
        let pick_a = rng.random_range(0..rem_a.saturating_add(rem_b)) < rem_a;
        if (pick_a && take_a < a.len()) || take_b >= b.len() {
            if take_a >= a.len() {
                break;
            }
            take_a += 1;
            rem_a -= 1;
        } else {
            take_b += 1;
            rem_b -= 1;
        }
    }
    let mut out = choose(a, take_a, &mut rng);
    out.extend(choose(b, take_b, &mut rng));
    out.sort_by(f64::total_cmp);
    out
}

/// The values of two samples in one sorted sample (each sorted already, or sorted here).
fn merge_sorted(a: &[f64], b: &[f64]) -> Vec<f64> {
    let sorted = |v: &[f64]| v.is_sorted_by(|x, y| x.total_cmp(y).is_le());
    let mut out = Vec::with_capacity(a.len() + b.len());
    if !(sorted(a) && sorted(b)) {
        out.extend_from_slice(a);
        out.extend_from_slice(b);
        out.sort_by(f64::total_cmp);
        return out;
    }
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].total_cmp(&b[j]).is_le() {
            out.push(a[i]);
            i += 1;
        } else {
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// `k` elements of `values` chosen uniformly without replacement (a partial Fisher–Yates shuffle).
fn choose(values: &[f64], k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut v = values.to_vec();
    let k = k.min(v.len());
    for i in 0..k {
        let j = rng.random_range(i..v.len());
        v.swap(i, j);
    }
    v.truncate(k);
    v
}

/// The smallest [`DISTINCT_CAP`] hashes of a field's distinct values: an exact distinct count up to the cap, and a
/// k-minimum-values estimate beyond it (Bar-Yossef et al., 2002). Mergeable by union.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct DistinctSet {
    hashes: BTreeSet<u64>,
    overflowed: bool,
}

impl DistinctSet {
    pub(crate) fn insert(&mut self, h: u64) {
        if self.hashes.len() >= DISTINCT_CAP && self.hashes.last().is_some_and(|&last| h > last) {
            self.overflowed = true;
            return;
        }
        if self.hashes.insert(h) && self.hashes.len() > DISTINCT_CAP {
            self.hashes.pop_last();
            self.overflowed = true;
        }
    }

    pub(crate) fn merge(&mut self, other: &DistinctSet) {
        self.overflowed |= other.overflowed;
        self.hashes.extend(other.hashes.iter().copied());
        while self.hashes.len() > DISTINCT_CAP {
            self.hashes.pop_last();
            self.overflowed = true;
        }
    }

    pub(crate) fn contains(&self, h: u64) -> bool {
        self.hashes.contains(&h)
    }

    /// Exact count of distinct values, or the cap when there are more.
    pub(crate) fn count(&self) -> u64 {
        self.hashes.len() as u64
    }

    /// Whether there were more distinct values than the cap.
    pub(crate) fn capped(&self) -> bool {
        self.overflowed
    }

    /// The exact count below the cap; beyond it, the k-minimum-values estimate `(k − 1) / u_k`, where `u_k` is the
    /// k-th smallest hash as a fraction of the hash space (relative standard error about `1 / √(k − 2)`, 1 %).
    pub(crate) fn estimate(&self) -> u64 {
        match self.hashes.last() {
            Some(&last) if self.overflowed && self.hashes.len() > 1 => {
                let u = (last as f64 + 1.0) / 18_446_744_073_709_551_616.0;
                let e = (self.hashes.len() as f64 - 1.0) / u;
                (e.round() as u64).max(self.count())
            }
            _ => self.count(),
        }
    }
}

/// One category or boolean value with its count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Tracked {
    /// [`hash64`] of the whole value.
    pub(crate) hash: u64,
    /// The value, cut to [`MAX_LABEL_CHARS`].
    pub(crate) value: String,
    pub(crate) count: u64,
}

impl Tracked {
    pub(crate) fn new(value: &str, count: u64) -> Self {
        Tracked {
            hash: hash64(value.as_bytes()),
            value: label(value),
            count,
        }
    }
}

/// `value`, cut to [`MAX_LABEL_CHARS`] characters.
pub(crate) fn label(value: &str) -> String {
    match value.char_indices().nth(MAX_LABEL_CHARS) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_string(),
    }
}

/// Most frequent first, then by value, so the order never depends on hashing or insertion.
pub(crate) fn sort_tracked(v: &mut [Tracked]) {
    v.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.value.cmp(&b.value))
            .then_with(|| a.hash.cmp(&b.hash))
    });
}

/// Adds the counts of both lists value by value and keeps the [`TRACKED_CAP`] most frequent. A value outside one
/// side's list counts zero there, so merged counts are lower bounds once a side had more than [`TRACKED_CAP`]
/// distinct values.
pub(crate) fn merge_tracked(a: &[Tracked], b: &[Tracked]) -> Vec<Tracked> {
    let mut by_hash: BTreeMap<u64, Tracked> = BTreeMap::new();
    for t in a.iter().chain(b) {
        by_hash
            .entry(t.hash)
            .and_modify(|e| e.count = e.count.saturating_add(t.count))
            .or_insert_with(|| t.clone());
    }
    let mut out: Vec<Tracked> = by_hash.into_values().collect();
    sort_tracked(&mut out);
    out.truncate(TRACKED_CAP);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_combine_like_one_pass() {
        let xs = [1.0, 4.0, -2.0, 8.5, 3.25, 0.0, 11.0];
        let mut all = Moments::new();
        xs.iter().for_each(|&x| all.push(x));
        let (mut a, mut b) = (Moments::new(), Moments::new());
        xs[..3].iter().for_each(|&x| a.push(x));
        xs[3..].iter().for_each(|&x| b.push(x));
        let c = Moments::combine(&a, &b);
        assert_eq!(c.count, all.count);
        assert_eq!((c.min, c.max), (all.min, all.max));
        assert!((c.mean - all.mean).abs() < 1e-12);
        assert!((c.std() - all.std()).abs() < 1e-12);
    }

    #[test]
    fn huge_values_stay_finite() {
        let mut m = Moments::new();
        for x in [1e308, -1e308, 1e308, -1e308] {
            m.push(x);
        }
        assert!(m.mean.is_finite() && m.m2.is_finite() && m.std().is_finite());
        assert!(m.std() <= 1e308);
    }

    #[test]
    fn merged_sample_is_uniform_over_the_union() {
        // 10,000 values of 0 and 30,000 values of 1: the merged sample holds about 25 % zeros.
        let mut rng = field_rng("x");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for i in 0..10_000u64 {
            reservoir_push(&mut a, i, 0.0, &mut rng);
        }
        for i in 0..30_000u64 {
            reservoir_push(&mut b, i, 1.0, &mut rng);
        }
        let m = merge_samples(&a, 10_000, &b, 30_000, "x");
        assert_eq!(m.len(), SAMPLE_CAP);
        let zeros = m.iter().filter(|&&v| v == 0.0).count() as f64 / SAMPLE_CAP as f64;
        // Hypergeometric standard deviation ≈ 0.0095; allow five.
        assert!((zeros - 0.25).abs() < 0.05, "{zeros}");
    }

    #[test]
    fn distinct_set_is_exact_below_the_cap_and_estimates_above() {
        let mut s = DistinctSet::default();
        for i in 0..100u64 {
            s.insert(hash64(&i.to_le_bytes()));
            s.insert(hash64(&i.to_le_bytes()));
        }
        assert_eq!((s.count(), s.capped(), s.estimate()), (100, false, 100));
        let mut big = DistinctSet::default();
        for i in 0..50_000u64 {
            big.insert(hash64(&i.to_le_bytes()));
        }
        assert!(big.capped());
        assert_eq!(big.count(), DISTINCT_CAP as u64);
        let e = big.estimate() as f64;
        assert!((e / 50_000.0 - 1.0).abs() < 0.05, "{e}");
        // Union of two halves equals the whole.
        let (mut lo, mut hi) = (DistinctSet::default(), DistinctSet::default());
        for i in 0..50_000u64 {
            let t = if i % 2 == 0 { &mut lo } else { &mut hi };
            t.insert(hash64(&i.to_le_bytes()));
        }
        lo.merge(&hi);
        assert_eq!(lo, big);
    }

    #[test]
    fn labels_are_cut_on_character_boundaries() {
        let long = "é".repeat(300);
        let l = label(&long);
        assert_eq!(l.chars().count(), MAX_LABEL_CHARS + 1);
        assert!(l.ends_with('…'));
        assert_eq!(label("short"), "short");
    }
}
