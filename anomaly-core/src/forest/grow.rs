//! Growing one isolation tree, with scikit-learn's random splitter semantics.
//!
//! A node is split on a feature drawn uniformly among those that are not constant in the node, at a threshold drawn
//! uniformly in `[min, max)` of that feature in the node; rows with `x <= threshold` go left. A node becomes a leaf
//! when it holds one row, when it reaches the depth limit, or when every feature is constant in it.

use rand::Rng;

use super::sparse::{Rows, Sample};

/// A node of a tree while it is being grown.
#[derive(Debug, Clone)]
pub(crate) struct GrowNode {
    /// Global feature index, or `None` for a leaf.
    pub(crate) feature: Option<u32>,
    pub(crate) threshold: f64,
    pub(crate) left: u32,
    pub(crate) right: u32,
    pub(crate) n_samples: u32,
    pub(crate) depth: u32,
}

/// Grows a tree on the given rows of `x`, considering only `features` (global column indices).
pub(crate) fn grow_tree<X: Rows, R: Rng>(
    x: &X,
    rows: &[usize],
    features: &[usize],
    max_depth: u32,
    rng: &mut R,
) -> Vec<GrowNode> {
    let m = rows.len();
    let k = features.len();
    // Column-major copy of the sample: partitioning then scans contiguous memory. A sparse sample leaves out the
    // columns that are zero in every sampled row (no slot): they are constant, so no split can use them.
    let sample = x.copy_sample(rows, features);
    let mut order: Vec<u32> = (0..m as u32).collect();
    let mut feature_draw: Vec<usize> = (0..k).collect();
    let mut nodes = Vec::new();
    grow_nodes(m, max_depth, &mut nodes, |start, end| {
        let (fi, threshold) = draw_split(&sample, &order[start..end], &mut feature_draw, rng)?;
        let column = sample.column(fi)?;
        let mid = partition(&mut order[start..end], |j| column[j as usize] <= threshold) + start;
        Some((features[fi] as u32, threshold, mid))
    });
    nodes
}

/// Grows the nodes of a tree on `m` rows depth first, left before right: `split(start, end)` splits the node
/// holding rows `start..end` (reordered as it likes) into `start..mid` and `mid..end`, returning the feature, the
/// threshold and `mid`, or `None` for a leaf. Nodes of one row or at `max_depth` are leaves without asking. The
/// nodes replace the contents of `nodes`.
fn grow_nodes(
    m: usize,
    max_depth: u32,
    nodes: &mut Vec<GrowNode>,
    mut split: impl FnMut(usize, usize) -> Option<(u32, f64, usize)>,
) {
    nodes.clear();
    nodes.reserve(2 * m.min(1 << max_depth.min(16)));
    nodes.push(GrowNode {
        feature: None,
        threshold: 0.0,
        left: 0,
        right: 0,
        n_samples: m as u32,
        depth: 0,
    });
    // (node id, start, end) of nodes still to split.
    let mut stack = vec![(0usize, 0usize, m)];
    while let Some((id, start, end)) = stack.pop() {
        let depth = nodes[id].depth;
        if end - start <= 1 || depth >= max_depth {
            continue;
        }
        let Some((feature, threshold, mid)) = split(start, end) else {
            continue;
        };
        let left = nodes.len() as u32;
        for (s, e) in [(start, mid), (mid, end)] {
            nodes.push(GrowNode {
                feature: None,
                threshold: 0.0,
                left: 0,
                right: 0,
                n_samples: (e - s) as u32,
                depth: depth + 1,
            });
        }
        let node = &mut nodes[id];
        node.feature = Some(feature);
        node.threshold = threshold;
        node.left = left;
        node.right = left + 1;
        stack.push((left as usize + 1, mid, end));
        stack.push((left as usize, start, mid));
    }
}

/// Grows a tree on one feature whose sampled values are `sorted` (ascending): the same tree as [`grow_tree`] on
/// those values, drawing the same random numbers, but a node is a range of the sorted values, so its minimum and
/// maximum are its ends and a split is a binary search instead of a scan and a partition. The nodes replace the
/// contents of `nodes`, so a caller growing many trees reuses one buffer.
pub(crate) fn grow_tree_sorted<R: Rng>(
    sorted: &[f64],
    feature: u32,
    max_depth: u32,
    rng: &mut R,
    nodes: &mut Vec<GrowNode>,
) {
    grow_nodes(sorted.len(), max_depth, nodes, |start, end| {
        // As `draw_split` with one feature: the feature draw, then a threshold if the node is not constant.
        let _: usize = rng.random_range(0..1);
        let (lo, hi) = (sorted[start], sorted[end - 1]);
        if hi <= lo {
            return None;
        }
        let threshold = split_threshold(lo, hi, rng);
        let mid = start + sorted[start..end].partition_point(|&v| v <= threshold);
        Some((feature, threshold, mid))
    });
}

/// Sorts finite `values` into `sorted` (the sample [`grow_tree_sorted`] takes) through `keys`: each value as an
/// integer of the same order (the sign bit set for positive values, every bit flipped for negative ones), which
/// sorts faster than floats.
pub(crate) fn sort_sample(
    values: impl Iterator<Item = f64>,
    keys: &mut Vec<u64>,
    sorted: &mut Vec<f64>,
) {
    const SIGN: u64 = 1 << 63;
    keys.clear();
    keys.extend(values.map(|v| {
        let bits = v.to_bits();
        if bits & SIGN == 0 { bits | SIGN } else { !bits }
    }));
    keys.sort_unstable();
    sorted.clear();
    sorted.extend(
        keys.iter()
            .map(|&k| f64::from_bits(if k & SIGN != 0 { k & !SIGN } else { !k })),
    );
}

/// Draws a feature uniformly among the non-constant ones and a threshold in `[min, max)`.
fn draw_split<R: Rng>(
    sample: &Sample,
    samples: &[u32],
    feature_draw: &mut [usize],
    rng: &mut R,
) -> Option<(usize, f64)> {
    let k = feature_draw.len();
    for i in 0..k {
        let j = rng.random_range(i..k);
        feature_draw.swap(i, j);
        let fi = feature_draw[i];
        // A column left out of the sample is zero in every row: constant.
        let Some(column) = sample.column(fi) else {
            continue;
        };
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for &s in samples {
            let v = column[s as usize];
            // Plain comparisons (values are validated finite): no NaN handling, no spill of the running pair.
            if v < lo {
                lo = v;
            }
            if v > hi {
                hi = v;
            }
        }
        if hi > lo {
            return Some((fi, split_threshold(lo, hi, rng)));
        }
    }
    None
}

/// A threshold drawn uniformly in `[lo, hi)`, `lo < hi`.
fn split_threshold<R: Rng>(lo: f64, hi: f64, rng: &mut R) -> f64 {
    let u: f64 = rng.random();
    let span = hi - lo;
    let t = if span.is_finite() {
        lo + span * u
    } else {
        lo * (1.0 - u) + hi * u
    };
    // As scikit-learn: a threshold that rounds up to the maximum falls back to the minimum.
    if t >= lo && t < hi { t } else { lo }
}

/// Reorders `items` so those satisfying `pred` come first; returns how many do.
///
/// Branch-free Lomuto partition: on a random split the predicate is a coin flip, so a branch on it would be
/// mispredicted half the time. Which items end on each side does not depend on the method, so trees do not either.
fn partition(items: &mut [u32], pred: impl Fn(u32) -> bool) -> usize {
    let mut i = 0;
    for j in 0..items.len() {
        let v = items[j];
        let keep = pred(v);
        items[j] = items[i];
        items[i] = v;
        i += keep as usize;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Growing on sorted values of one feature gives the tree of the general method, node for node, and leaves the
    /// generator in the same state: with ties, constant stretches, a constant sample and two rows.
    #[test]
    fn sorted_growth_is_the_general_growth() {
        let mut data = ChaCha8Rng::seed_from_u64(1);
        for case in 0..200 {
            let m = [2, 3, 17, 100, 256][case % 5];
            let values: Vec<f64> = (0..m)
                .map(|i| match case % 4 {
                    0 => data.random::<f64>(),
                    1 => f64::from(data.random_range(0..5u8)),
                    2 => 7.0,
                    _ => {
                        if i % 9 == 0 {
                            1e300
                        } else {
                            -(i as f64)
                        }
                    }
                })
                .collect();
            let x = Array2::from_shape_vec((m, 1), values.clone()).unwrap();
            let rows: Vec<usize> = (0..m).collect();
            let max_depth = (m as f64).log2().ceil() as u32;
            let (mut a, mut b) = (
                ChaCha8Rng::seed_from_u64(case as u64),
                ChaCha8Rng::seed_from_u64(case as u64),
            );
            let general = grow_tree(&x.view(), &rows, &[0], max_depth, &mut a);
            let mut sorted = values;
            sorted.sort_by(f64::total_cmp);
            let mut fast = Vec::new();
            grow_tree_sorted(&sorted, 0, max_depth, &mut b, &mut fast);
            assert_eq!(general.len(), fast.len(), "case {case}");
            for (g, f) in general.iter().zip(&fast) {
                assert_eq!(
                    (
                        g.feature,
                        g.threshold.to_bits(),
                        g.left,
                        g.right,
                        g.n_samples,
                        g.depth
                    ),
                    (
                        f.feature,
                        f.threshold.to_bits(),
                        f.left,
                        f.right,
                        f.n_samples,
                        f.depth
                    ),
                    "case {case}"
                );
            }
            assert_eq!(
                a.random::<u64>(),
                b.random::<u64>(),
                "case {case}: generator state"
            );
        }
    }
}
