//! The crate's one module with `unsafe` code: the AVX2 walk of a rank-coded forest (see
//! [`ranked`](super::ranked)), eight trees at a time for one row.
//!
//! Why `unsafe`: the walk is a chain of dependent loads at indices that differ per tree, which only a gather
//! instruction loads into SIMD lanes at once; the portable kernels walk one tree per lane of a scalar loop and run
//! at about half the speed. Gathers are `unsafe` intrinsics, and a function compiled for AVX2 is `unsafe` to call.
//! The instructions are chosen at run time ([`available`]), so the crate still runs on every x86-64 CPU (and on
//! other architectures, where this module reports itself unavailable).
//!
//! Soundness does not depend on the arena's contents, only on its length, which [`accumulate`] checks before any
//! gather: a lane's node index starts at 0 and becomes `2i + 1` or `2i + 2` at each of `depth` levels, so it stays
//! below `2^depth − 1` while nodes are read and ends in `[2^depth − 1, 2^(depth+1) − 2]`, one leaf of the lane's own
//! tree; feature indices are masked to the row stride (a power of two) before a row's value is gathered.

use super::ranked::GROUP;

/// A rank-coded forest as the kernel reads it, its lengths checked: `2^depth` nodes and leaves per tree, trees
/// padded to a multiple of [`GROUP`], and the top [`TOP_LEVELS`] levels of every group with node `j` of group `g`'s
/// lane `k` at `tops[(g · TOP_NODES + j) · 8 + k]`.
pub(super) struct Arena<'a> {
    depth: u32,
    n_trees: usize,
    nodes: &'a [u32],
    leaves: &'a [f64],
    tops: &'a [u32],
}

/// Levels of a tree read from registers instead of gathered.
pub(super) const TOP_LEVELS: u32 = 4;
/// Nodes in the top levels.
pub(super) const TOP_NODES: usize = (1 << TOP_LEVELS) - 1;
/// Deepest tree the kernel walks.
const MAX_DEPTH: u32 = 16;

impl<'a> Arena<'a> {
    /// The arena of `n_trees ≥ 1` trees of `depth ≤ 16` levels, or `None` when a slice is shorter than that needs
    /// or the slots do not fit the kernel's 32-bit indices.
    pub(super) fn new(
        depth: u32,
        n_trees: usize,
        nodes: &'a [u32],
        leaves: &'a [f64],
        tops: &'a [u32],
    ) -> Option<Arena<'a>> {
        if n_trees == 0 || depth > MAX_DEPTH {
            return None;
        }
        let padded = n_trees.div_ceil(GROUP).checked_mul(GROUP)?;
        let slots = padded.checked_mul(1 << depth)?;
        let top_slots = padded.checked_mul(TOP_NODES)?;
        let fits = slots <= i32::MAX as usize
            && nodes.len() >= slots
            && leaves.len() >= slots
            && tops.len() >= top_slots;
        fits.then_some(Arena {
            depth,
            n_trees,
            nodes,
            leaves,
            tops,
        })
    }
}

/// Whether this CPU runs the kernel (checked once, then a cached load).
pub(super) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether [`accumulate`] takes rows `stride` values apart: a power of two from 8 to 256.
pub(super) fn stride_fits(stride: usize) -> bool {
    stride.is_power_of_two() && (8..=256).contains(&stride)
}

/// Adds each tree's path length (trees in order) of every ranked row to `acc`: row `r`'s rank of feature `f` is
/// `ranks[r * stride + f]`. Returns `false`, adding nothing, when the CPU lacks AVX2, `stride` does not fit
/// ([`stride_fits`]) or `ranks` is shorter than `acc.len()` rows.
pub(super) fn accumulate(arena: &Arena<'_>, ranks: &[u32], stride: usize, acc: &mut [f64]) -> bool {
    let rows_fit = acc
        .len()
        .checked_mul(stride)
        .is_some_and(|n| ranks.len() >= n);
    if !stride_fits(stride) || !rows_fit || !available() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: AVX2 is available (checked above); the arena's lengths were checked by `Arena::new`, the stride
        // and the rows here, as `x86::walk` requires.
        unsafe {
            match stride {
                8 => x86::walk::<1>(arena, ranks, stride, acc),
                16 => x86::walk::<2>(arena, ranks, stride, acc),
                _ => x86::walk::<0>(arena, ranks, stride, acc),
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{Arena, GROUP, TOP_LEVELS, TOP_NODES};

    /// Rows walked in lockstep through a group of trees, so that as many independent chains of loads are in flight.
    const ROWS: usize = 4;

    /// The walk. `V` picks how a lane reads its row's value: 1 permutes one register of 8 ranks (`stride` 8), 2
    /// blends two permuted registers (`stride` 16), 0 gathers from the row (any `stride`). Blocks of rows go
    /// through each group of trees [`ROWS`] rows at a time; a single row (or the last few) goes through [`ROWS`]
    /// groups at a time. Either way each row's path lengths are added in tree order.
    ///
    /// # Safety
    /// AVX2 must be available, the arena built by [`Arena::new`], `stride` a power of two from 8 to 256 (8 for
    /// `V = 1`, 16 for `V = 2`), and `ranks` at least `acc.len() · stride` values.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn walk<const V: u8>(
        arena: &Arena<'_>,
        ranks: &[u32],
        stride: usize,
        acc: &mut [f64],
    ) {
        let n = 1i32 << arena.depth;
        let lane_offsets = _mm256_setr_epi32(0, n, 2 * n, 3 * n, 4 * n, 5 * n, 6 * n, 7 * n);
        let walker = Walker {
            depth: arena.depth,
            nodes: arena.nodes.as_ptr() as *const i32,
            leaves: arena.leaves.as_ptr(),
            stride_mask: _mm256_set1_epi32(stride as i32 - 1),
            last_internal: _mm256_set1_epi32(n - 1),
        };
        let n_groups = arena.n_trees.div_ceil(GROUP);
        let group = |g: usize| Group {
            // At most `i32::MAX` slots (checked by `Arena::new`), so no product overflows.
            base: _mm256_add_epi32(_mm256_set1_epi32(g as i32 * GROUP as i32 * n), lane_offsets),
            // SAFETY: the group's top nodes are inside `tops` (checked by `Arena::new`).
            top: unsafe { arena.tops.as_ptr().add(g * TOP_NODES * GROUP) },
            valid: (arena.n_trees - g * GROUP).min(GROUP),
        };
        // SAFETY: row `r < acc.len()` is inside `ranks`, as `walk`'s contract says.
        let row = |r: usize| unsafe { ranks.as_ptr().add(r * stride) };
        let full = acc.len() - acc.len() % ROWS;
        for g in 0..n_groups {
            let group = group(g);
            for first in (0..full).step_by(ROWS) {
                // SAFETY: as `walk`'s contract, passed on.
                let h = unsafe {
                    walker.lanes::<V, ROWS>(std::array::from_fn(|k| row(first + k)), [&group; ROWS])
                };
                for (a, h) in acc[first..first + ROWS].iter_mut().zip(&h) {
                    for &v in &h[..group.valid] {
                        *a += v;
                    }
                }
            }
        }
        for (r, a) in acc.iter_mut().enumerate().skip(full) {
            let whole = n_groups - n_groups % ROWS;
            for first in (0..whole).step_by(ROWS) {
                let groups: [Group; ROWS] = std::array::from_fn(|k| group(first + k));
                // SAFETY: as `walk`'s contract, passed on.
                let h = unsafe { walker.lanes::<V, ROWS>([row(r); ROWS], groups.each_ref()) };
                for (h, group) in h.iter().zip(&groups) {
                    for &v in &h[..group.valid] {
                        *a += v;
                    }
                }
            }
            for g in whole..n_groups {
                let group = group(g);
                // SAFETY: as `walk`'s contract, passed on.
                let h = unsafe { walker.lanes::<V, 1>([row(r)], [&group]) };
                for &v in &h[0][..group.valid] {
                    *a += v;
                }
            }
        }
    }

    /// What every group's walk shares.
    struct Walker {
        depth: u32,
        nodes: *const i32,
        leaves: *const f64,
        stride_mask: __m256i,
        last_internal: __m256i,
    }

    /// A group of eight trees: their first slots in the arena, and their top levels (node `j` of lane `k` at
    /// `top[j · 8 + k]`).
    struct Group {
        base: __m256i,
        top: *const u32,
        /// Trees of the group that exist (the last group may be padded).
        valid: usize,
    }

    impl Walker {
        /// Path lengths of `K` (row, group of eight trees) pairs, walked in lockstep.
        ///
        /// # Safety
        /// As [`walk`]: AVX2, each group inside the arena, each row `stride` values (8 for `V = 1`, 16 for `V = 2`).
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn lanes<const V: u8, const K: usize>(
            &self,
            row: [*const u32; K],
            group: [&Group; K],
        ) -> [[f64; GROUP]; K] {
            let one = _mm256_set1_epi32(1);
            let mut low = [_mm256_setzero_si256(); K];
            let mut high = [_mm256_setzero_si256(); K];
            for k in 0..K {
                // SAFETY: row `k` holds `stride` values: 8 for `V = 1`, 16 for `V = 2`.
                unsafe {
                    if V >= 1 {
                        low[k] = _mm256_loadu_si256(row[k] as *const __m256i);
                    }
                    if V == 2 {
                        high[k] = _mm256_loadu_si256(row[k].add(8) as *const __m256i);
                    }
                }
            }
            // SAFETY: node `j < TOP_NODES` of a group's eight lanes.
            let top = |k: usize, j: usize| unsafe {
                _mm256_loadu_si256(group[k].top.add(j * GROUP) as *const __m256i)
            };
            let levels = self.depth.min(TOP_LEVELS);
            let mut idx = [_mm256_setzero_si256(); K];
            // The top levels come from the group's table: a lane's node is picked by the turns taken above it
            // (−1 where a lane went right). Level by level, unrolled.
            let mut turn = [[_mm256_setzero_si256(); K]; 3];
            macro_rules! level {
                ($level:literal, $node:expr) => {
                    if levels > $level {
                        for k in 0..K {
                            let [r0, r1, r2] = [turn[0][k], turn[1][k], turn[2][k]];
                            let _ = (r0, r1, r2);
                            let node = $node(k, r0, r1, r2);
                            // SAFETY: as this function's contract.
                            let right =
                                unsafe { self.go_right::<V>(node, low[k], high[k], row[k]) };
                            if $level < 3 {
                                turn[$level.min(2)][k] = right;
                            }
                            idx[k] = _mm256_sub_epi32(
                                _mm256_add_epi32(_mm256_add_epi32(idx[k], idx[k]), one),
                                right,
                            );
                        }
                    }
                };
            }
            level!(0, |k, _, _, _| top(k, 0));
            level!(1, |k, r0, _, _| pick(top(k, 1), top(k, 2), r0));
            level!(2, |k, r0, r1, _| pick(
                pick(top(k, 3), top(k, 4), r1),
                pick(top(k, 5), top(k, 6), r1),
                r0
            ));
            level!(3, |k, r0, r1, r2| pick(
                pick(
                    pick(top(k, 7), top(k, 8), r2),
                    pick(top(k, 9), top(k, 10), r2),
                    r1
                ),
                pick(
                    pick(top(k, 11), top(k, 12), r2),
                    pick(top(k, 13), top(k, 14), r2),
                    r1
                ),
                r0,
            ));
            for _ in levels..self.depth {
                for k in 0..K {
                    // SAFETY: every lane reads node `base + idx` with `idx < 2^depth − 1` (see the module docs).
                    let node = unsafe {
                        _mm256_i32gather_epi32::<4>(
                            self.nodes,
                            _mm256_add_epi32(group[k].base, idx[k]),
                        )
                    };
                    // SAFETY: as this function's contract.
                    let right = unsafe { self.go_right::<V>(node, low[k], high[k], row[k]) };
                    idx[k] = _mm256_sub_epi32(
                        _mm256_add_epi32(_mm256_add_epi32(idx[k], idx[k]), one),
                        right,
                    );
                }
            }
            let mut h = [[0.0; GROUP]; K];
            for k in 0..K {
                let leaf =
                    _mm256_add_epi32(group[k].base, _mm256_sub_epi32(idx[k], self.last_internal));
                // SAFETY: each lane's leaf index is in `[0, 2^depth)` of its own tree's slots; `h[k]` holds eight
                // values.
                unsafe {
                    let h_low = _mm256_i32gather_pd::<8>(self.leaves, _mm256_castsi256_si128(leaf));
                    let h_high =
                        _mm256_i32gather_pd::<8>(self.leaves, _mm256_extracti128_si256::<1>(leaf));
                    _mm256_storeu_pd(h[k].as_mut_ptr(), h_low);
                    _mm256_storeu_pd(h[k].as_mut_ptr().add(4), h_high);
                }
            }
            h
        }

        /// Whether each lane's node sends its row right (−1) or left (0). `low` and `high` hold the row's first 16
        /// ranks for `V` = 1 and 2; `V = 0` gathers them from `row`.
        ///
        /// # Safety
        /// AVX2; `row` holds `stride` values.
        #[target_feature(enable = "avx2")]
        #[inline]
        unsafe fn go_right<const V: u8>(
            &self,
            node: __m256i,
            low: __m256i,
            high: __m256i,
            row: *const u32,
        ) -> __m256i {
            let feature = _mm256_and_si256(node, _mm256_set1_epi32(0xff));
            let threshold = _mm256_srli_epi32::<8>(node);
            let value = match V {
                1 => _mm256_permutevar8x32_epi32(low, feature),
                2 => _mm256_blendv_epi8(
                    _mm256_permutevar8x32_epi32(low, feature),
                    _mm256_permutevar8x32_epi32(high, feature),
                    _mm256_cmpgt_epi32(feature, _mm256_set1_epi32(7)),
                ),
                // SAFETY: the index is masked below `stride`, and the row holds `stride` values.
                _ => unsafe {
                    _mm256_i32gather_epi32::<4>(
                        row as *const i32,
                        _mm256_and_si256(feature, self.stride_mask),
                    )
                },
            };
            // Ranks are below 2^24, so the signed comparison is the unsigned one.
            _mm256_cmpgt_epi32(value, threshold)
        }
    }

    /// `b` in the lanes where `right` is −1, `a` elsewhere.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn pick(a: __m256i, b: __m256i, right: __m256i) -> __m256i {
        _mm256_blendv_epi8(a, b, right)
    }
}
