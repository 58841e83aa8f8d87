//! Growing one isolation tree, with scikit-learn's random splitter semantics.
//!
//! A node is split on a feature drawn uniformly among those that are not constant in the node, at a threshold drawn
//! uniformly in `[min, max)` of that feature in the node; rows with `x <= threshold` go left. A node becomes a leaf
//! when it holds one row, when it reaches the depth limit, or when every feature is constant in it.

use ndarray::ArrayView2;
use rand::Rng;

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
pub(crate) fn grow_tree<R: Rng>(
    x: ArrayView2<'_, f64>,
    rows: &[usize],
    features: &[usize],
    max_depth: u32,
    rng: &mut R,
) -> Vec<GrowNode> {
    let m = rows.len();
    let k = features.len();
    // Column-major copy of the sample: partitioning then scans contiguous memory.
    let mut data = vec![0.0; m * k];
    for (fi, &f) in features.iter().enumerate() {
        let col = x.column(f);
        let dst = &mut data[fi * m..(fi + 1) * m];
        for (d, &r) in dst.iter_mut().zip(rows) {
            *d = col[r];
        }
    }
    let mut order: Vec<u32> = (0..m as u32).collect();
    let mut feature_draw: Vec<usize> = (0..k).collect();
    let mut nodes = vec![GrowNode {
        feature: None,
        threshold: 0.0,
        left: 0,
        right: 0,
        n_samples: m as u32,
        depth: 0,
    }];
    // (node id, start, end) of nodes still to split.
    let mut stack = vec![(0usize, 0usize, m)];
    while let Some((id, start, end)) = stack.pop() {
        let depth = nodes[id].depth;
        if end - start <= 1 || depth >= max_depth {
            continue;
        }
        let Some((fi, threshold)) =
            draw_split(&data, m, &order[start..end], &mut feature_draw, rng)
        else {
            continue;
        };
        let column = &data[fi * m..(fi + 1) * m];
        let mid = partition(&mut order[start..end], |j| column[j as usize] <= threshold) + start;
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
        node.feature = Some(features[fi] as u32);
        node.threshold = threshold;
        node.left = left;
        node.right = left + 1;
        stack.push((left as usize + 1, mid, end));
        stack.push((left as usize, start, mid));
    }
    nodes
}

/// Draws a feature uniformly among the non-constant ones and a threshold in `[min, max)`.
fn draw_split<R: Rng>(
    data: &[f64],
    m: usize,
    samples: &[u32],
    feature_draw: &mut [usize],
    rng: &mut R,
) -> Option<(usize, f64)> {
    let k = feature_draw.len();
    for i in 0..k {
        let j = rng.random_range(i..k);
        feature_draw.swap(i, j);
        let fi = feature_draw[i];
        let column = &data[fi * m..(fi + 1) * m];
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
            let u: f64 = rng.random();
            let span = hi - lo;
            let mut t = if span.is_finite() {
                lo + span * u
            } else {
                lo * (1.0 - u) + hi * u
            };
            // As scikit-learn: a threshold that rounds up to the maximum falls back to the minimum.
            if !(t >= lo && t < hi) {
                t = lo;
            }
            return Some((fi, t));
        }
    }
    None
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
