//! A fitted forest compiled for batch scoring on rank-coded values.
//!
//! Every split compares one value with one threshold: `x > t`. Both sides can be replaced by their rank among the
//! distinct thresholds of the feature (its *cuts*): with `cuts` sorted and `pos(t)` the index of `t` in them,
//! `x > t` holds exactly when `rank(x) = #{c ∈ cuts : c < x}` exceeds `pos(t)`. So the comparison is unchanged bit
//! for bit, and a node (feature and threshold rank) fits in 32 bits. A row is ranked once per block (one binary
//! search per value) and then walked through every tree; the walk is the SIMD kernel of [`simd`](super::simd),
//! eight trees at a time.
//!
//! The compiled forest puts every tree in one arena at one depth (the deepest tree's): a shallower tree is extended
//! with pass-through nodes (rank [`PASS_RANK`], which no value exceeds) down to the bottom level, and each of its
//! leaves moves to the slot its leftmost descendant would take. Scores are the per-tree path lengths summed in tree
//! order, exactly as the other kernels sum them.

use super::simd::{self, TOP_NODES};
use super::tree::{DENSE_MAX_DEPTH, DenseParts, KERNEL_MAX_FEATURES, Tree, dense_parts};

/// Rank of a pass-through node: above the rank of every value (a feature has fewer cuts than this).
const PASS_RANK: u32 = (1 << 24) - 1;
/// Bits of a node that hold its feature (the rest hold the threshold's rank).
const FEATURE_BITS: u32 = 8;
/// Trees the kernel walks at once (the lanes of one AVX2 register).
pub(super) const GROUP: usize = 8;
/// Most binary-search steps ranking one row may take for single rows to go through the rank kernel. Measured with
/// 100 trees: 10 features of 2,500 distinct thresholds (120 steps) score a row in 0.86 µs against the scalar walk's
/// 1.78 µs; 100 features of 250 (800 steps) in 2.0 µs against 1.74 µs.
const SINGLE_ROW_SEARCH_STEPS: usize = 500;
/// Slots a compiled forest may take beyond twice its trees' own (768 KiB), so small forests of mixed depths compile.
const SPARE_SLOTS: usize = 1 << 16;
/// Ranked values a thread buffers per sub-block (32 KiB): 128 rows of up to 64 features, fewer rows when wider.
const RANK_BUFFER: usize = 8192;

/// The forest as the rank kernel reads it. Built only from trees whose structure is valid for the given width.
#[derive(Debug)]
pub(crate) struct RankedForest {
    /// Levels of every tree (the deepest tree's depth).
    depth: u32,
    n_trees: usize,
    n_features: usize,
    /// Row stride of a ranked block: the width rounded up to a power of two (at least 8).
    stride: usize,
    /// Sorted distinct thresholds of every feature, one after another; feature `f`'s are
    /// `cuts[starts[f]..starts[f + 1]]`.
    cuts: Vec<f64>,
    starts: Vec<usize>,
    /// The features with cuts, the only ones a node compares (a constant column in training has none): the others
    /// are not ranked.
    split_features: Vec<usize>,
    /// `2^depth` nodes per tree (the last is a pad, never read), trees padded to a multiple of [`GROUP`] with
    /// pass-through trees: `rank << 8 | feature`.
    nodes: Vec<u32>,
    /// `2^depth` leaf path lengths per tree, padded as `nodes`.
    leaves: Vec<f64>,
    /// The top levels of every group of [`GROUP`] trees, node by node, one lane per tree (see [`simd::Arena`]).
    tops: Vec<u32>,
    /// Binary-search steps ranking one row takes: `ceil(log2(cuts + 1))` summed over the features.
    search_steps: usize,
}

impl RankedForest {
    /// Compiles `trees` (fitted on `n_features` columns), or `None` when the rank kernel cannot take them: a sparse
    /// (deep) tree, a width past [`KERNEL_MAX_FEATURES`], a feature with 2^24 − 1 distinct thresholds or more, an
    /// arena past 2^31 − 1 slots or, beyond a small allowance, twice the trees' own size (depths far apart), or a malformed tree
    /// (wrong lengths, a feature out of range, a NaN), which the reference kernels then handle or refuse. The
    /// compiled copy takes 12 bytes per node slot: about 300 KiB for 100 trees of 256 rows.
    pub(crate) fn new(trees: &[Tree], n_features: usize) -> Option<RankedForest> {
        if trees.is_empty() || n_features == 0 || n_features > KERNEL_MAX_FEATURES {
            return None;
        }
        let mut depth = 0;
        let mut per_feature: Vec<Vec<f64>> = vec![Vec::new(); n_features];
        for tree in trees {
            let (d, features, thresholds, leaves) = dense_arrays(tree)?;
            let n = 1usize << d;
            if features.len() != n || thresholds.len() != n || leaves.len() != n {
                return None;
            }
            if leaves.iter().any(|v| v.is_nan()) {
                return None;
            }
            for (&f, &t) in features.iter().zip(thresholds).take(n - 1) {
                if t.is_nan() || f as usize >= n_features {
                    return None;
                }
                if t != f64::MAX {
                    per_feature[f as usize].push(t);
                }
            }
            depth = depth.max(d);
        }
        let mut cuts = Vec::new();
        let mut starts = Vec::with_capacity(n_features + 1);
        for mut c in per_feature {
            c.sort_unstable_by(f64::total_cmp);
            // −0.0 and 0.0 compare equal, so either stands for both.
            c.dedup_by(|a, b| a == b);
            if c.len() >= PASS_RANK as usize {
                return None;
            }
            starts.push(cuts.len());
            cuts.extend(c);
        }
        starts.push(cuts.len());

        let n = 1usize << depth;
        let padded = trees.len().div_ceil(GROUP) * GROUP;
        let slots = padded.checked_mul(n).filter(|&s| s <= i32::MAX as usize)?;
        // Every tree takes the deepest tree's room: refuse a forest of mixed depths (an edited snapshot with one
        // deep tree among shallow ones) that would take far more memory than its own trees.
        let own: usize = trees
            .iter()
            .filter_map(dense_arrays)
            .map(|(d, ..)| 1usize << d)
            .sum();
        if slots > 2 * own + (GROUP - 1) * n + SPARE_SLOTS {
            return None;
        }
        let pass = PASS_RANK << FEATURE_BITS;
        let mut nodes = vec![pass; slots];
        let mut leaf_slots = vec![0.0; slots];
        for (t, tree) in trees.iter().enumerate() {
            let (d, features, thresholds, leaves) = dense_arrays(tree)?;
            let (nodes, leaf_slots) = (&mut nodes[t * n..][..n], &mut leaf_slots[t * n..][..n]);
            // Node `i` of a complete tree has the same index at any depth; levels below `d` stay pass-through.
            for (i, (&f, &threshold)) in features
                .iter()
                .zip(thresholds)
                .take((1 << d) - 1)
                .enumerate()
            {
                if threshold != f64::MAX {
                    let feature_cuts = &cuts[starts[f as usize]..starts[f as usize + 1]];
                    let rank = feature_cuts.partition_point(|&c| c < threshold) as u32;
                    nodes[i] = rank << FEATURE_BITS | f;
                }
            }
            // A leaf at position p of level d is reached, through pass-through nodes that go left, at p · 2^(D−d).
            for (p, &h) in leaves.iter().enumerate() {
                leaf_slots[p << (depth - d)] = h;
            }
        }
        let mut tops = vec![pass; padded / GROUP * TOP_NODES * GROUP];
        for (t, tree_nodes) in nodes.chunks_exact(n).enumerate() {
            let (g, lane) = (t / GROUP, t % GROUP);
            for (j, &node) in tree_nodes.iter().take(TOP_NODES.min(n - 1)).enumerate() {
                tops[(g * TOP_NODES + j) * GROUP + lane] = node;
            }
        }
        let search_steps = starts
            .windows(2)
            .map(|w| (usize::BITS - (w[1] - w[0]).leading_zeros()) as usize)
            .sum();
        let split_features = (0..n_features)
            .filter(|&f| starts[f + 1] > starts[f])
            .collect();
        Some(RankedForest {
            depth,
            n_trees: trees.len(),
            n_features,
            stride: n_features.next_power_of_two().max(8),
            cuts,
            starts,
            split_features,
            nodes,
            search_steps,
            leaves: leaf_slots,
            tops,
        })
    }

    /// Adds every tree's path length of each row of a row-major block (`n_features` values a row, all finite) to
    /// `acc`, in tree order. Returns `false`, adding nothing, when this CPU lacks the SIMD kernel's instructions.
    pub(crate) fn accumulate(&self, block: &[f64], acc: &mut [f64]) -> bool {
        let arena = simd::Arena::new(
            self.depth,
            self.n_trees,
            &self.nodes,
            &self.leaves,
            &self.tops,
        );
        let Some(arena) = arena.filter(|_| simd::available() && simd::stride_fits(self.stride))
        else {
            return false;
        };
        let d = self.n_features;
        let rows_per_pass = (RANK_BUFFER / self.stride).clamp(1, 128);
        RANKS.with_borrow_mut(|ranks| {
            for (rows, out) in block
                .chunks(rows_per_pass * d)
                .zip(acc.chunks_mut(rows_per_pass))
            {
                let ranked = &mut ranks[..out.len() * self.stride];
                self.rank_rows(rows, ranked);
                // Cannot refuse: the CPU, the arena and the stride were checked above, and `ranked` holds the rows.
                let walked = simd::accumulate(&arena, ranked, self.stride, out);
                debug_assert!(walked, "the block is built to the kernel's shape");
            }
        });
        true
    }

    /// Whether a single row is better walked here than by the scalar kernels: when ranking the row (one binary
    /// search per feature with cuts, counted as its steps plus one) costs at most [`SINGLE_ROW_SEARCH_STEPS`]
    /// steps; wider rows spend more on ranking every feature than the walk saves.
    pub(crate) fn suits_single_rows(&self) -> bool {
        self.search_steps + self.split_features.len() <= SINGLE_ROW_SEARCH_STEPS
    }
}

impl RankedForest {
    /// Ranks the values of `rows` (row-major, `n_features` a row) that a node may compare into `ranked` (`stride` a
    /// row): the number of its feature's cuts below it. Features without cuts are skipped: only pass-through nodes
    /// read them, and any rank ever written (or the buffer's initial 0) is below [`PASS_RANK`]. Eight rows are
    /// searched in lockstep, so their chains of loads overlap.
    fn rank_rows(&self, rows: &[f64], ranked: &mut [u32]) {
        const LOCKSTEP: usize = 8;
        let d = self.n_features;
        let n_rows = rows.len() / d;
        let whole = n_rows - n_rows % LOCKSTEP;
        for &f in &self.split_features {
            let cuts = &self.cuts[self.starts[f]..self.starts[f + 1]];
            for r in (0..whole).step_by(LOCKSTEP) {
                let x: [f64; LOCKSTEP] = std::array::from_fn(|k| rows[(r + k) * d + f]);
                // The branch-free lower bound: `base` moves to `mid` while `cuts[mid] < x`.
                let mut base = [0usize; LOCKSTEP];
                let mut size = cuts.len();
                while size > 1 {
                    let half = size / 2;
                    for (b, &x) in base.iter_mut().zip(&x) {
                        let mid = *b + half;
                        *b = std::hint::select_unpredictable(cuts[mid] < x, mid, *b);
                    }
                    size -= half;
                }
                for (k, (&b, &x)) in base.iter().zip(&x).enumerate() {
                    let below = cuts.get(b).is_some_and(|&c| c < x);
                    ranked[(r + k) * self.stride + f] = (b + usize::from(below)) as u32;
                }
            }
        }
        // The last rows (a single row, most often) one value at a time: the features' searches are independent, so
        // they overlap as well.
        for r in whole..n_rows {
            let row = &rows[r * d..(r + 1) * d];
            for &f in &self.split_features {
                ranked[r * self.stride + f] =
                    rank(&self.cuts[self.starts[f]..self.starts[f + 1]], row[f]);
            }
        }
    }
}

/// The number of `cuts` (sorted) below `x`, by a branch-free binary search.
fn rank(cuts: &[f64], x: f64) -> u32 {
    let mut base = 0;
    let mut size = cuts.len();
    while size > 1 {
        let half = size / 2;
        let mid = base + half;
        base = std::hint::select_unpredictable(cuts[mid] < x, mid, base);
        size -= half;
    }
    let below = cuts.get(base).is_some_and(|&c| c < x);
    (base + usize::from(below)) as u32
}

thread_local! {
    /// Each thread's block of ranked rows (32 KiB, allocated once per thread). Slots past a model's width, and those
    /// of its features without cuts, keep whatever rank an earlier block left there: no split node reads them (every
    /// feature of a compiled node is in range and has cuts), and a pass-through node goes left whatever rank it reads.
    static RANKS: std::cell::RefCell<Vec<u32>> = std::cell::RefCell::new(vec![0; RANK_BUFFER]);
}

/// The arrays of a dense tree no deeper than [`DENSE_MAX_DEPTH`].
fn dense_arrays(tree: &Tree) -> Option<DenseParts<'_>> {
    dense_parts(tree).filter(|(depth, ..)| *depth <= DENSE_MAX_DEPTH)
}

/// A model's [`RankedForest`], compiled on first use and then shared by its clones. It is derived from the trees,
/// so it is never serialized and never part of a model's equality; whoever changes the trees resets it.
#[derive(Default)]
pub(crate) struct CompiledForest(std::sync::OnceLock<Option<std::sync::Arc<RankedForest>>>);

impl CompiledForest {
    /// The compiled forest of `trees`, built on the first call; `None` when the rank kernel cannot take them.
    pub(crate) fn get(&self, trees: &[Tree], n_features: usize) -> Option<&RankedForest> {
        self.0
            .get_or_init(|| RankedForest::new(trees, n_features).map(std::sync::Arc::new))
            .as_deref()
    }
}

impl Clone for CompiledForest {
    fn clone(&self) -> Self {
        let cell = std::sync::OnceLock::new();
        if let Some(compiled) = self.0.get() {
            let _ = cell.set(compiled.clone());
        }
        CompiledForest(cell)
    }
}

impl PartialEq for CompiledForest {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledForest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.0.get() {
            None => "not compiled",
            Some(None) => "not compilable",
            Some(Some(_)) => "compiled",
        };
        f.write_str(state)
    }
}

#[cfg(test)]
#[allow(clippy::print_stderr)]
mod tests {
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::forest::{IsolationForestParams, MaxSamples};

    /// Rows with ties, repeated values and ±0, so that ranks meet equal values and shared cuts.
    fn data(rows: usize, width: usize, seed: u64) -> Array2<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, width), |(_, j)| match rng.random_range(0..10) {
            0 => 0.0,
            1 => -0.0,
            2 => j as f64,
            _ => (rng.random::<f64>() - 0.5) * 10f64.powi(j as i32 % 4),
        })
    }

    /// The path-length sums of the rank kernel, or `None` where this CPU has no SIMD kernel.
    fn ranked_sums(trees: &[Tree], x: &Array2<f64>) -> Option<Vec<f64>> {
        let ranked = RankedForest::new(trees, x.ncols()).expect("compilable");
        let mut acc = vec![0.0; x.nrows()];
        ranked
            .accumulate(x.as_slice().expect("standard layout"), &mut acc)
            .then_some(acc)
    }

    /// The reference: each tree's scalar walk, summed in tree order.
    fn walked_sums(trees: &[Tree], x: &Array2<f64>) -> Vec<f64> {
        x.outer_iter()
            .map(|row| {
                let row = row.as_slice().expect("contiguous");
                trees.iter().fold(0.0, |sum, t| sum + t.path_length(row))
            })
            .collect()
    }

    #[test]
    fn rank_kernel_equals_the_walk_bit_for_bit() {
        if !simd::available() {
            eprintln!("SKIPPED: this CPU has no AVX2, so the rank kernel is never used");
            return;
        }
        for (width, trees, samples) in [
            (1, 1, 256),
            (2, 7, 2),
            (3, 8, 3),
            (5, 9, 16),
            (8, 100, 256),
            (9, 13, 64),
            (10, 100, 256),
            (16, 17, 1000),
            (17, 24, 256),
            (40, 5, 4096),
        ] {
            let x = data(3000, width, width as u64);
            let model = IsolationForestParams::new()
                .n_estimators(trees)
                .max_samples(MaxSamples::Count(samples))
                .seed(7)
                .fit(x.view())
                .expect("fit");
            let probe = data(301, width, 99);
            let sums = ranked_sums(&model.trees, &probe).expect("AVX2 is available");
            let expected = walked_sums(&model.trees, &probe);
            for (r, (a, b)) in sums.iter().zip(&expected).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "width {width}, {trees} trees, row {r}"
                );
            }
            // The public path uses it, with the same bits.
            let scores = model.score(probe.view()).expect("score");
            for (r, row) in probe.outer_iter().enumerate() {
                let one = model
                    .score_row(row.as_slice().expect("contiguous"))
                    .expect("score_row");
                assert_eq!(scores[r].to_bits(), one.to_bits(), "width {width}, row {r}");
            }
        }
    }

    #[test]
    fn columns_constant_in_training_are_not_ranked_and_change_nothing() {
        if !simd::available() {
            eprintln!("SKIPPED: this CPU has no AVX2, so the rank kernel is never used");
            return;
        }
        // A model of 6 columns fills this thread's rank buffer first, so the unranked slots below hold its ranks.
        let wide = IsolationForestParams::new()
            .n_estimators(30)
            .seed(3)
            .fit(data(2000, 6, 1).view())
            .expect("fit");
        ranked_sums(&wide.trees, &data(300, 6, 2)).expect("AVX2 is available");
        // Columns 0 and 2 are constant in training, so no node splits on them; probes vary them wildly.
        let mut x = data(2000, 4, 4);
        x.column_mut(0).fill(1.0);
        x.column_mut(2).fill(-3.0);
        let model = IsolationForestParams::new()
            .n_estimators(40)
            .seed(5)
            .fit(x.view())
            .expect("fit");
        let compiled = RankedForest::new(&model.trees, 4).expect("compilable");
        assert_eq!(compiled.split_features, vec![1, 3]);
        let probe = data(203, 4, 6);
        let sums = ranked_sums(&model.trees, &probe).expect("AVX2 is available");
        let expected = walked_sums(&model.trees, &probe);
        for (r, (a, b)) in sums.iter().zip(&expected).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "row {r}");
        }
    }

    #[test]
    fn extreme_thresholds_keep_the_comparison() {
        if !simd::available() {
            eprintln!("SKIPPED: this CPU has no AVX2, so the rank kernel is never used");
            return;
        }
        // Depth 2 and depth 1 trees with infinite, signed-zero and maximal thresholds, and a leaf tree.
        let deep = Tree::Dense {
            depth: 2,
            features: vec![0, 1, 0, 0],
            thresholds: vec![-0.0, f64::INFINITY, f64::NEG_INFINITY, 0.0],
            leaves: vec![1.0, 2.0, 3.0, 4.0],
            counts: vec![9; 7],
        };
        let shallow = Tree::Dense {
            depth: 1,
            features: vec![1, 0],
            thresholds: vec![0.0, f64::MAX],
            leaves: vec![0.5, 0.25],
            counts: vec![9; 3],
        };
        let leaf = Tree::Dense {
            depth: 0,
            features: vec![0],
            thresholds: vec![f64::MAX],
            leaves: vec![0.125],
            counts: vec![9],
        };
        let passing = Tree::Dense {
            depth: 2,
            features: vec![0, 1, 0, 0],
            thresholds: vec![f64::MAX, -1.0, 5.0, f64::MAX],
            leaves: vec![1.5, 2.5, 3.5, 4.5],
            counts: vec![9; 7],
        };
        let trees = vec![deep, shallow, leaf.clone(), passing, leaf];
        let x = Array2::from_shape_vec(
            (6, 2),
            vec![
                0.0,
                0.0,
                -0.0,
                1.0,
                1e300,
                -1e300,
                -5.0,
                f64::MAX,
                f64::MIN,
                3.0,
                1e-300,
                -1e-300,
            ],
        )
        .expect("shape");
        assert_eq!(
            ranked_sums(&trees, &x).expect("AVX2"),
            walked_sums(&trees, &x)
        );
    }

    #[test]
    fn a_deep_tree_among_shallow_ones_is_padded_within_bounds() {
        // One tree of depth 12 and 7 of depth 0: every shallow tree is padded to 4096 slots (within the allowance).
        let x = data(5000, 3, 5);
        let deep = IsolationForestParams::new()
            .n_estimators(1)
            .max_samples(MaxSamples::Count(4096))
            .fit(x.view())
            .expect("fit");
        let mut trees = deep.trees.clone();
        assert!(matches!(trees[0], Tree::Dense { depth: 12, .. }));
        for i in 0..7 {
            trees.push(Tree::Dense {
                depth: 0,
                features: vec![0],
                thresholds: vec![f64::MAX],
                leaves: vec![i as f64],
                counts: vec![1],
            });
        }
        if simd::available() {
            let probe = data(97, 3, 6);
            assert_eq!(
                ranked_sums(&trees, &probe).expect("AVX2"),
                walked_sums(&trees, &probe)
            );
        }
        // 100,000 leaf trees beside it would take 4.9 GB: refused, left to the reference kernels.
        let leaf = trees[1].clone();
        trees.extend(std::iter::repeat_n(leaf, 100_000));
        assert!(RankedForest::new(&trees, 3).is_none());
    }

    #[test]
    fn malformed_trees_are_left_to_the_reference_kernels() {
        let nan = Tree::Dense {
            depth: 1,
            features: vec![0, 0],
            thresholds: vec![f64::NAN, 0.0],
            leaves: vec![1.0, 2.0],
            counts: vec![1; 3],
        };
        assert!(RankedForest::new(&[nan], 1).is_none());
        let out_of_range = Tree::Dense {
            depth: 1,
            features: vec![3, 0],
            thresholds: vec![0.0, 0.0],
            leaves: vec![1.0, 2.0],
            counts: vec![1; 3],
        };
        assert!(RankedForest::new(&[out_of_range], 2).is_none());
        let short = Tree::Dense {
            depth: 2,
            features: vec![0, 0],
            thresholds: vec![0.0, 0.0],
            leaves: vec![1.0, 2.0],
            counts: vec![1; 3],
        };
        assert!(RankedForest::new(&[short], 1).is_none());
        assert!(RankedForest::new(&[], 1).is_none());
    }

    /// A value pool with ties, signed zeros, infinities and the pass-through threshold.
    fn pooled() -> impl proptest::strategy::Strategy<Value = f64> {
        use proptest::prelude::*;
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MAX),
            (-4i32..4).prop_map(f64::from),
            -1e3..1e3f64,
        ]
    }

    /// A dense tree of `depth` levels over `width` features, thresholds and leaves from the pool.
    fn tree(width: u32) -> impl proptest::strategy::Strategy<Value = Tree> {
        use proptest::prelude::*;
        (0u32..9).prop_flat_map(move |depth| {
            let n = 1usize << depth;
            (
                proptest::collection::vec(0..width, n),
                proptest::collection::vec(pooled(), n),
                proptest::collection::vec(0.0..20.0f64, n),
            )
                .prop_map(move |(features, thresholds, leaves)| Tree::Dense {
                    depth,
                    features,
                    thresholds,
                    leaves,
                    counts: vec![1; 2 * n - 1],
                })
        })
    }

    /// A width, a forest over it and 37 rows of finite values.
    fn case() -> impl proptest::strategy::Strategy<Value = (u32, Vec<Tree>, Vec<f64>)> {
        use proptest::prelude::*;
        (1u32..20).prop_flat_map(|width| {
            (
                Just(width),
                proptest::collection::vec(tree(width), 1..41),
                proptest::collection::vec(
                    prop_oneof![
                        pooled().prop_filter("finite", |v| v.is_finite()),
                        -1e3..1e3f64
                    ],
                    width as usize * 37,
                ),
            )
        })
    }

    proptest::proptest! {
        #[test]
        fn any_forest_of_any_depths_scores_as_the_walk((width, trees, values) in case()) {
            let x = Array2::from_shape_vec((37, width as usize), values).expect("shape");
            if let Some(sums) = ranked_sums(&trees, &x) {
                let expected = walked_sums(&trees, &x);
                for (a, b) in sums.iter().zip(&expected) {
                    proptest::prop_assert_eq!(a.to_bits(), b.to_bits());
                }
            }
        }
    }
}
