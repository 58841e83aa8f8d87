//! The scoring layout of one isolation tree.
//!
//! Trees up to [`DENSE_MAX_DEPTH`] levels (every tree with the default 256 samples per tree has 8) are stored as a
//! complete binary tree in flat arrays: node `i` has children `2i + 1` and `2i + 2`, a leaf above the bottom level is
//! reached through pass-through nodes whose threshold is `f64::MAX` (every finite value goes left), and the leaf's
//! path length sits at the bottom. Traversal is then a fixed number of branch-free steps, which lets the CPU overlap
//! several rows. Deeper trees fall back to a sparse node array.

use serde::{Deserialize, Serialize};

use super::grow::GrowNode;
use super::path_length::average_path_length;

/// Deepest tree stored in the dense layout (4095 internal nodes, 4096 leaves).
pub(crate) const DENSE_MAX_DEPTH: u32 = 12;

/// Threshold of a pass-through node: every finite value goes left.
const PASS: f64 = f64::MAX;

/// Widest model the column kernel handles: split features are masked to 8 bits.
pub(crate) const KERNEL_MAX_FEATURES: usize = 256;
/// Size of the column-major block the kernel reads: 256 features × at most 128 rows.
pub(crate) const COLUMN_BUFFER: usize = KERNEL_MAX_FEATURES * 128;

/// One fitted isolation tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub(crate) enum Tree {
    /// Complete binary tree of `depth` levels of internal nodes. Node arrays are padded to `N = 2^depth` entries
    /// (the last is never visited), so indices masked with `N − 1` are provably in bounds.
    Dense {
        depth: u32,
        /// Split feature of each internal node (`2^depth − 1`, plus one pad).
        features: Vec<u32>,
        /// Split threshold of each internal node; `f64::MAX` for pass-through nodes (plus one pad).
        thresholds: Vec<f64>,
        /// Path length (depth + c(leaf size)) of each bottom-level slot (`2^depth`).
        leaves: Vec<f64>,
        /// Training rows that reached each node, internal nodes then leaves (for attributions).
        counts: Vec<u32>,
    },
    /// Node array for deep trees: children of node `i` are `left[i]` and `left[i] + 1`; `left[i] == 0` marks a leaf
    /// whose path length is stored in `values[i]`.
    Sparse {
        features: Vec<u32>,
        values: Vec<f64>,
        left: Vec<u32>,
        counts: Vec<u32>,
    },
}

impl Tree {
    /// A tree without nodes or buffers: a placeholder while a tree is rebuilt in its slot, never scored.
    pub(crate) fn empty() -> Tree {
        Tree::Dense {
            depth: 0,
            features: Vec::new(),
            thresholds: Vec::new(),
            leaves: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// Converts a grown tree into its scoring layout.
    pub(crate) fn from_grown(nodes: &[GrowNode]) -> Tree {
        Self::from_grown_reusing(nodes, None)
    }

    /// As [`Tree::from_grown`], reusing the buffers of `recycled` (a tree being replaced) when it is dense.
    pub(crate) fn from_grown_reusing(nodes: &[GrowNode], recycled: Option<Tree>) -> Tree {
        let depth = nodes.iter().map(|n| n.depth).max().unwrap_or(0);
        let leaf_value = |n: &GrowNode| n.depth as f64 + average_path_length(n.n_samples as f64);
        if depth <= DENSE_MAX_DEPTH {
            let n_internal = (1usize << depth) - 1;
            let (mut features, mut thresholds, mut leaves, mut counts) = match recycled {
                Some(Tree::Dense {
                    features,
                    thresholds,
                    leaves,
                    counts,
                    ..
                }) => (features, thresholds, leaves, counts),
                _ => Default::default(),
            };
            fn refill<T: Copy>(v: &mut Vec<T>, len: usize, value: T) {
                v.clear();
                v.resize(len, value);
            }
            refill(&mut features, n_internal + 1, 0u32);
            refill(&mut thresholds, n_internal + 1, PASS);
            refill(&mut leaves, n_internal + 1, 0.0);
            refill(&mut counts, 2 * n_internal + 1, 0u32);
            let mut stack = vec![(0usize, 0usize)];
            while let Some((g, d)) = stack.pop() {
                let node = &nodes[g];
                counts[d] = node.n_samples;
                match node.feature {
                    Some(f) => {
                        features[d] = f;
                        thresholds[d] = node.threshold;
                        stack.push((node.left as usize, 2 * d + 1));
                        stack.push((node.right as usize, 2 * d + 2));
                    }
                    None => {
                        let mut slot = d;
                        while slot < n_internal {
                            counts[slot] = node.n_samples;
                            slot = 2 * slot + 1;
                        }
                        counts[slot] = node.n_samples;
                        leaves[slot - n_internal] = leaf_value(node);
                    }
                }
            }
            Tree::Dense {
                depth,
                features,
                thresholds,
                leaves,
                counts,
            }
        } else {
            let n = nodes.len();
            let mut features = vec![0u32; n];
            let mut values = vec![0.0; n];
            let mut left = vec![0u32; n];
            let counts = nodes.iter().map(|n| n.n_samples).collect();
            for (i, node) in nodes.iter().enumerate() {
                match node.feature {
                    Some(f) => {
                        features[i] = f;
                        values[i] = node.threshold;
                        left[i] = node.left;
                    }
                    None => values[i] = leaf_value(node),
                }
            }
            Tree::Sparse {
                features,
                values,
                left,
                counts,
            }
        }
    }

    /// Path length h(x) of one row. The row must have been validated against the model's width.
    #[inline]
    pub(crate) fn path_length(&self, row: &[f64]) -> f64 {
        match self {
            Tree::Dense {
                depth,
                features,
                thresholds,
                leaves,
                ..
            } => {
                let mut i = 0usize;
                for _ in 0..*depth {
                    let go_right = row[features[i] as usize] > thresholds[i];
                    i = 2 * i + 1 + go_right as usize;
                }
                leaves[i + 1 - features.len()]
            }
            Tree::Sparse {
                features,
                values,
                left,
                ..
            } => {
                let mut i = 0usize;
                while left[i] != 0 {
                    let go_right = row[features[i] as usize] > values[i];
                    i = left[i] as usize + go_right as usize;
                }
                values[i]
            }
        }
    }

    /// Adds h(x) of each row of a row-major block (`width` values a row) to `acc`.
    ///
    /// Rows are walked in groups of eight in lockstep so their independent loads overlap.
    #[inline]
    pub(crate) fn accumulate(&self, block: &[f64], width: usize, acc: &mut [f64]) {
        match self {
            Tree::Dense {
                depth,
                features,
                thresholds,
                leaves,
                ..
            } => {
                const LANES: usize = 8;
                let n_internal = features.len() - 1;
                let rows = acc.len();
                let full = rows - rows % LANES;
                for base in (0..full).step_by(LANES) {
                    let mut idx = [0usize; LANES];
                    let offs: [usize; LANES] = std::array::from_fn(|k| (base + k) * width);
                    for _ in 0..*depth {
                        for k in 0..LANES {
                            let i = idx[k];
                            let go_right = block[offs[k] + features[i] as usize] > thresholds[i];
                            idx[k] = 2 * i + 1 + go_right as usize;
                        }
                    }
                    for k in 0..LANES {
                        acc[base + k] += leaves[idx[k] - n_internal];
                    }
                }
                for r in full..rows {
                    acc[r] += self.path_length(&block[r * width..(r + 1) * width]);
                }
            }
            Tree::Sparse { .. } => {
                for (r, a) in acc.iter_mut().enumerate() {
                    *a += self.path_length(&block[r * width..(r + 1) * width]);
                }
            }
        }
    }

    /// Adds h(x) of each row of a column-major block to `acc`: the value of feature `f` of row `r` is
    /// `cols[(f << log2(B)) | r]`. Every split feature must be below [`KERNEL_MAX_FEATURES`] (the caller checks the
    /// model's width). Returns `false`, adding nothing, for a sparse tree.
    ///
    /// The tree is walked one level at a time over all `B` rows: the steps of the inner loop are independent, so
    /// the CPU overlaps many rows' loads, and with fixed-size arrays and masked indices the compiler removes every
    /// bounds check.
    #[inline]
    pub(crate) fn accumulate_columns<const B: usize>(
        &self,
        cols: &[f64; COLUMN_BUFFER],
        acc: &mut [f64; B],
    ) -> bool {
        let Tree::Dense {
            depth,
            features,
            thresholds,
            leaves,
            ..
        } = self
        else {
            return false;
        };
        macro_rules! dispatch {
            ($($d:literal => $n:literal),*) => {
                match *depth {
                    $($d => column_kernel::<$n, B>($d, features, thresholds, leaves, cols, acc),)*
                    _ => false,
                }
            };
        }
        dispatch!(0 => 1, 1 => 2, 2 => 4, 3 => 8, 4 => 16, 5 => 32, 6 => 64, 7 => 128, 8 => 256, 9 => 512,
            10 => 1024, 11 => 2048, 12 => 4096)
    }

    /// A one-feature dense tree as a step function: its split thresholds in increasing order into `keys`, and the
    /// path length of each interval into `values` (one more than `keys`), so that a value `x` has the path length
    /// `values[j]`, `j` the number of keys below `x`. Splits send `x > threshold` right and a node's thresholds
    /// come from its own rows, so an in-order walk yields the thresholds sorted. Returns `false`, leaving both
    /// empty, for a sparse tree. The tree must have passed [`Tree::check`].
    pub(crate) fn one_feature_steps(&self, keys: &mut Vec<f64>, values: &mut Vec<f64>) -> bool {
        keys.clear();
        values.clear();
        let Tree::Dense {
            depth,
            thresholds,
            leaves,
            ..
        } = self
        else {
            return false;
        };
        /// In-order walk of node `i` on `level`: a pass-through node sends every finite value left, as the walk
        /// does, and adds no key.
        fn visit(
            (thresholds, leaves, depth): (&[f64], &[f64], u32),
            i: usize,
            level: u32,
            out: &mut (&mut Vec<f64>, &mut Vec<f64>),
        ) {
            let tree = (thresholds, leaves, depth);
            if level == depth {
                out.1.push(leaves[i + 1 - (1usize << depth)]);
            } else if thresholds[i] == PASS {
                visit(tree, 2 * i + 1, level + 1, out);
            } else {
                visit(tree, 2 * i + 1, level + 1, out);
                out.0.push(thresholds[i]);
                visit(tree, 2 * i + 2, level + 1, out);
            }
        }
        keys.reserve(1 << *depth);
        values.reserve(1 << *depth);
        visit((thresholds, leaves, *depth), 0, 0, &mut (keys, values));
        true
    }

    /// Walks a row's path and calls `visit(feature, node_count, child_count)` for every real split on it; returns
    /// the path length.
    pub(crate) fn walk(&self, row: &[f64], mut visit: impl FnMut(usize, u32, u32)) -> f64 {
        match self {
            Tree::Dense {
                depth,
                features,
                thresholds,
                leaves,
                counts,
            } => {
                let mut i = 0usize;
                for _ in 0..*depth {
                    let go_right = row[features[i] as usize] > thresholds[i];
                    let child = 2 * i + 1 + go_right as usize;
                    if thresholds[i] != PASS {
                        visit(features[i] as usize, counts[i], counts[child]);
                    }
                    i = child;
                }
                leaves[i + 1 - features.len()]
            }
            Tree::Sparse {
                features,
                values,
                left,
                counts,
            } => {
                let mut i = 0usize;
                while left[i] != 0 {
                    let go_right = row[features[i] as usize] > values[i];
                    let child = left[i] as usize + go_right as usize;
                    visit(features[i] as usize, counts[i], counts[child]);
                    i = child;
                }
                values[i]
            }
        }
    }

    /// Checks the structure of a tree restored from bytes, so scoring cannot index out of bounds.
    pub(crate) fn check(&self, width: usize) -> Result<(), String> {
        let feature_ok = |f: &u32| (*f as usize) < width;
        match self {
            Tree::Dense {
                depth,
                features,
                thresholds,
                leaves,
                counts,
            } => {
                if *depth > DENSE_MAX_DEPTH {
                    return Err(format!("dense tree of depth {depth}"));
                }
                let n_internal = (1usize << depth) - 1;
                if features.len() != n_internal + 1
                    || thresholds.len() != n_internal + 1
                    || leaves.len() != n_internal + 1
                    || counts.len() != 2 * n_internal + 1
                {
                    return Err("dense tree arrays of the wrong length".into());
                }
                if !features.iter().all(feature_ok) {
                    return Err("tree splits on a feature the model does not have".into());
                }
                if !thresholds.iter().chain(leaves).all(|v| !v.is_nan()) {
                    return Err("NaN in a tree".into());
                }
                Ok(())
            }
            Tree::Sparse {
                features,
                values,
                left,
                counts,
            } => {
                let n = features.len();
                if n == 0 || values.len() != n || left.len() != n || counts.len() != n {
                    return Err("sparse tree arrays of the wrong length".into());
                }
                for i in 0..n {
                    let l = left[i] as usize;
                    // Children come after their parent, so every walk terminates.
                    if l != 0 && (l <= i || l + 1 >= n || !feature_ok(&features[i])) {
                        return Err("sparse tree with an invalid node".into());
                    }
                    if values[i].is_nan() {
                        return Err("NaN in a tree".into());
                    }
                }
                Ok(())
            }
        }
    }
}

/// Path lengths of one row in four dense trees of the same depth, walked in lockstep so their dependent load
/// chains overlap; `None` when the four are not all dense of one depth.
#[inline]
pub(crate) fn path_lengths4(trees: [&Tree; 4], row: &[f64]) -> Option<[f64; 4]> {
    let [a, b, c, d] = trees;
    let p = [
        dense_parts(a)?,
        dense_parts(b)?,
        dense_parts(c)?,
        dense_parts(d)?,
    ];
    let depth = p[0].0;
    if p.iter().any(|q| q.0 != depth) {
        return None;
    }
    let mut idx = [0usize; 4];
    for _ in 0..depth {
        for (k, i) in idx.iter_mut().enumerate() {
            let (_, f, t, _) = p[k];
            let go_right = row[f[*i] as usize] > t[*i];
            *i = 2 * *i + 1 + go_right as usize;
        }
    }
    Some(std::array::from_fn(|k| p[k].3[idx[k] + 1 - p[k].1.len()]))
}

/// Trees [`path_lengths_lanes`] walks at once.
pub(crate) const LANES: usize = 16;

/// Path lengths of one row in up to [`LANES`] dense trees (of any depths) into `out`, walked level by level so the
/// trees' dependent load chains overlap: a walk is bound by memory latency when the trees are not in cache (one
/// forest per series, thousands of series), and this keeps up to `LANES` loads in flight instead of one. A row of
/// one feature skips the feature array (every split reads column 0), which halves the cache lines read. Returns
/// `false`, with `out` unspecified, when a tree is sparse or there are more than `LANES`.
#[inline]
pub(crate) fn path_lengths_lanes(trees: &[&Tree], row: &[f64], out: &mut [f64]) -> bool {
    let n = trees.len();
    if n > LANES || out.len() < n || row.is_empty() {
        return false;
    }
    let mut parts: [DenseParts<'_>; LANES] = [(0, &[], &[], &[]); LANES];
    let mut max_depth = 0;
    for (p, t) in parts.iter_mut().zip(trees) {
        let Some(d) = dense_parts(t) else {
            return false;
        };
        max_depth = max_depth.max(d.0);
        *p = d;
    }
    let parts = &parts[..n];
    let mut idx = [0usize; LANES];
    let idx = &mut idx[..n];
    if row.len() == 1 {
        let x = row[0];
        for level in 0..max_depth {
            for (i, p) in idx.iter_mut().zip(parts) {
                if level < p.0 {
                    *i = 2 * *i + 1 + usize::from(x > p.2[*i]);
                }
            }
        }
    } else {
        for level in 0..max_depth {
            for (i, p) in idx.iter_mut().zip(parts) {
                if level < p.0 {
                    *i = 2 * *i + 1 + usize::from(row[p.1[*i] as usize] > p.2[*i]);
                }
            }
        }
    }
    for ((o, i), p) in out.iter_mut().zip(idx.iter()).zip(parts) {
        *o = p.3[*i + 1 - p.1.len()];
    }
    true
}

/// Depth, features, thresholds and leaves of a dense tree.
pub(super) type DenseParts<'a> = (u32, &'a [u32], &'a [f64], &'a [f64]);

/// The arrays of a dense tree, or `None` for a sparse one.
pub(super) fn dense_parts(t: &Tree) -> Option<DenseParts<'_>> {
    match t {
        Tree::Dense {
            depth,
            features,
            thresholds,
            leaves,
            ..
        } => Some((*depth, features, thresholds, leaves)),
        Tree::Sparse { .. } => None,
    }
}

/// The column kernel for a dense tree of `N = 2^depth` slots over a block of `B` rows (`B` a power of two ≤ 128).
#[inline]
fn column_kernel<const N: usize, const B: usize>(
    depth: u32,
    features: &[u32],
    thresholds: &[f64],
    leaves: &[f64],
    cols: &[f64; COLUMN_BUFFER],
    acc: &mut [f64; B],
) -> bool {
    let (Ok(f), Ok(t), Ok(l)) = (
        <&[u32; N]>::try_from(features),
        <&[f64; N]>::try_from(thresholds),
        <&[f64; N]>::try_from(leaves),
    ) else {
        return false;
    };
    let shift = B.trailing_zeros();
    let mut idx = [0usize; B];
    for _ in 0..depth {
        for (r, i) in idx.iter_mut().enumerate() {
            let j = *i & (N - 1);
            let column = ((f[j] as usize) & (KERNEL_MAX_FEATURES - 1)) << shift;
            let go_right = cols[column | (r & (B - 1))] > t[j];
            *i = 2 * j + 1 + go_right as usize;
        }
    }
    // After `depth` steps the slot is in [N − 1, 2N − 2]; its leaf is slot − (N − 1).
    for (a, &i) in acc.iter_mut().zip(&idx) {
        *a += l[(i + 1) & (N - 1)];
    }
    true
}
