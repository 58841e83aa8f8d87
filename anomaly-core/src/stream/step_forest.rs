//! A one-feature streaming forest as step functions, so a score costs a few cache lines instead of a walk of every
//! tree.
//!
//! Over one feature an isolation tree is a step function: its thresholds, sorted, cut the line into intervals, and
//! every value in an interval reaches the same leaf. The sum over trees of the in-box terms (path length over the
//! normaliser, for trees whose sample box holds the value) is then a step function too, over the union of their
//! thresholds and box edges. [`StepForest`] keeps that sum for groups of [`GROUP`] trees: the sorted keys in units of
//! eight, each unit holding the prefix sums of the keys' changes beside its keys; the last key of every unit in a
//! fence array; and, inside the group itself, a coarse index of eight fences that says which run of fences to scan.
//! A value costs three dependent loads per group (the group, a run of fences, a unit), with the groups searched
//! side by side, against about eight loads per tree for a walk. Trees whose box does not hold the value (its range
//! extension depends on the value, not only on its interval) are added one by one, which only happens near or
//! beyond the edges of the window.
//!
//! Terms are summed in fixed point (2^-56), so a sum does not depend on the order of its terms and every group's
//! prefix sums are exact; the score differs from the tree walk's only by that rounding, far below anything a
//! threshold can see. The streaming forest regrows its trees a group at a time, so a group is only ever built
//! whole: its trees' runs of keys, each sorted, merged pairwise. (Replacing one tree of a group in place would
//! cost a read and a rewrite of the whole group for every tree: most of a refit, and cold memory every time.)
//!
//! Memory: about 17 bytes per key (a tree of 256 samples has up to 257), so up to about 220 KB for the default 50
//! trees, beside the trees themselves.

use crate::forest::Tree;

/// Trees per group: a rebuild costs one group's keys, a score one search per group.
pub(super) const GROUP: usize = 8;

/// Fixed-point scale of the terms.
const SCALE: f64 = (1u64 << 56) as f64;

/// Largest term (path length over normaliser) kept in fixed point: `GROUP` of them stay well inside an `i64`.
/// Isolation trees on at most 256 rows give terms below 2; a restored tree beyond this falls back to the walk.
const MAX_TERM: f64 = 8.0;

const _: () = assert!(GROUP as f64 * MAX_TERM * SCALE < i64::MAX as f64);

/// Groups searched side by side.
const LANES: usize = 8;

/// Runs of fences a group's coarse index divides them into: one cache line.
const COARSE: usize = 8;

/// Keys per unit: one cache line of `f64`.
const BLOCK: usize = 8;

/// Eight keys and, beside them, the prefix sum of a value with each number of them below it: two adjacent cache
/// lines, which the processor fetches together.
#[repr(C, align(128))]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    keys: [f64; BLOCK],
    /// `prefix[c]`: the in-box terms, in fixed point, of a value with `c` keys of this unit (and all keys of the
    /// units before) below it.
    prefix: [i64; BLOCK],
}

impl Unit {
    const EMPTY: Unit = Unit {
        keys: [f64::INFINITY; BLOCK],
        prefix: [0; BLOCK],
    };
}

/// What a tree contributes outside its sample box.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Edge {
    lo: f64,
    hi: f64,
    /// Path length of values at or below every threshold.
    first: f64,
    /// Path length of values above every threshold.
    last: f64,
    normaliser: f64,
}

/// One tree as the step forest reads it.
pub(super) struct StepTree<'a> {
    /// The tree, which must have passed [`Tree::check`] for one feature.
    pub tree: &'a Tree,
    /// Smallest value of its sample.
    pub lo: f64,
    /// Largest value of its sample.
    pub hi: f64,
    /// c(m) of its sample size.
    pub normaliser: f64,
}

/// The step function of a group of trees.
///
/// Laid out so that what a score reads of the group itself (the coarse index, where the fences and units are, and the
/// box bounds) is the first 128 bytes, one pair of cache lines that the processor fetches together.
#[derive(Debug, Clone, PartialEq, Default)]
#[repr(C, align(128))]
struct Group {
    /// The last fence of every run of [`Group::run`] fences, padded with `+∞`: the number below a value is the run
    /// to scan. It sits in the group itself, so finding the run costs no load of its own.
    coarse: [f64; COARSE],
    /// The sorted keys followed by a `+∞` sentinel (whose prefix sum is the total after every key), in units.
    units: Vec<Unit>,
    /// The last key of every unit: the number below a value is the unit to read.
    fences: Vec<f64>,
    /// Largest `lo` and smallest `hi`: a value above the one and not above the other is in every tree's box.
    max_lo: f64,
    min_hi: f64,
    /// The group's trees by slot (read only for a value outside some tree's box).
    edges: Vec<Edge>,
}

/// The in-box term of a path length in fixed point, or `None` beyond [`MAX_TERM`].
fn fixed(path: f64, normaliser: f64) -> Option<i64> {
    let term = path / normaliser;
    (term.is_finite() && term.abs() <= MAX_TERM).then(|| (term * SCALE).round() as i64)
}

/// Buffers reused from one build to the next on a thread, so a build allocates only what the group keeps. They hold
/// at most one group's entries (8 trees of at most 4,097 keys each, as `Tree::check` bounds a tree's depth).
#[derive(Default)]
struct Scratch {
    keys: Vec<f64>,
    values: Vec<f64>,
    entries: Vec<Entry>,
    merged: Vec<Entry>,
    bounds: Vec<usize>,
    merged_bounds: Vec<usize>,
    edges: Vec<Edge>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Appends a tree's keys with the change of its term at each, in fixed point, to `scratch.entries`; and returns
/// its edge. `None` when the tree cannot be represented.
fn run(t: &StepTree<'_>, scratch: &mut Scratch) -> Option<Edge> {
    let Scratch {
        keys,
        values,
        entries,
        ..
    } = scratch;
    let representable = t.tree.one_feature_steps(keys, values)
        && values.len() == keys.len() + 1
        && t.lo.is_finite()
        && t.hi.is_finite()
        && t.lo <= t.hi
        && t.normaliser > 0.0
        && keys.first().is_none_or(|&k| k >= t.lo)
        && keys.last().is_none_or(|&k| k <= t.hi)
        && keys.windows(2).all(|w| w[0] < w[1]);
    if !representable {
        return None;
    }
    // The tree's term enters at `lo` (a value above it is in the box), changes at each threshold, and leaves at
    // `hi`; the changes telescope, so each prefix sum is exactly the terms of its interval.
    let mut previous = fixed(values[0], t.normaliser)?;
    entries.push((t.lo, previous));
    for (&k, &v) in keys.iter().zip(&values[1..]) {
        let term = fixed(v, t.normaliser)?;
        entries.push((k, term - previous));
        previous = term;
    }
    entries.push((t.hi, -previous));
    Some(Edge {
        lo: t.lo,
        hi: t.hi,
        first: values[0],
        last: values[values.len() - 1],
        normaliser: t.normaliser,
    })
}

/// A key with the change of the in-box sum there.
type Entry = (f64, i64);

/// Appends the merge of two runs of entries sorted by key to `out`, `a`'s first on equal keys (either order gives
/// the same prefix sum after both). Which run an entry comes from is a select, not a branch: the runs interleave
/// at random, so a branch would be mispredicted at nearly every switch.
fn merge(a: &[Entry], b: &[Entry], out: &mut Vec<Entry>) {
    let start = out.len();
    out.resize(start + a.len() + b.len(), (0.0, 0));
    let out = &mut out[start..];
    let (mut i, mut j) = (0, 0);
    for slot in out.iter_mut() {
        let (Some(&x), Some(&y)) = (a.get(i), b.get(j)) else {
            break;
        };
        let take_b = y.0 < x.0;
        *slot = if take_b { y } else { x };
        j += usize::from(take_b);
        i += usize::from(!take_b);
    }
    let done = i + j;
    if i < a.len() {
        out[done..].copy_from_slice(&a[i..]);
    } else {
        out[done..].copy_from_slice(&b[j..]);
    }
}

/// Merges the sorted runs of `scratch.entries` that start at `scratch.bounds` (followed by the end) pairwise until
/// one is left, in `scratch.entries`.
fn merge_runs(scratch: &mut Scratch) {
    let Scratch {
        entries,
        merged,
        bounds,
        merged_bounds,
        ..
    } = scratch;
    bounds.push(entries.len());
    while bounds.len() > 2 {
        merged.clear();
        merged_bounds.clear();
        for pair in bounds.windows(3).step_by(2) {
            merged_bounds.push(merged.len());
            merge(
                &entries[pair[0]..pair[1]],
                &entries[pair[1]..pair[2]],
                merged,
            );
        }
        if bounds.len() % 2 == 0 {
            // An odd number of runs: the last one is carried over as it is.
            merged_bounds.push(merged.len());
            merged.extend_from_slice(&entries[bounds[bounds.len() - 2]..]);
        }
        merged_bounds.push(merged.len());
        std::mem::swap(entries, merged);
        std::mem::swap(bounds, merged_bounds);
    }
}

impl Group {
    /// Rebuilds the group from `trees` (slots in order), reusing its buffers; `false`, changing nothing, when one
    /// cannot be represented.
    fn rebuild(&mut self, trees: &[StepTree<'_>]) -> bool {
        SCRATCH.with_borrow_mut(|scratch| {
            scratch.entries.clear();
            scratch.bounds.clear();
            scratch.edges.clear();
            for t in trees {
                scratch.bounds.push(scratch.entries.len());
                match run(t, scratch) {
                    Some(edge) => scratch.edges.push(edge),
                    None => return false,
                }
            }
            merge_runs(scratch);
            self.fill(&scratch.entries, &scratch.edges);
            true
        })
    }

    /// Refills the group with sorted `entries` of trees whose edges are `edges`.
    fn fill(&mut self, entries: &[Entry], edges: &[Edge]) {
        let n = entries.len();
        self.units.clear();
        // Prefix sums are sums of at most `GROUP` terms within `MAX_TERM` (asserted above), so they cannot
        // overflow; wrapping adds keep the loop free of checks.
        let mut sum = 0i64;
        for chunk in entries.chunks(BLOCK) {
            let mut unit = Unit::EMPTY;
            for (j, &(k, delta)) in chunk.iter().enumerate() {
                unit.keys[j] = k;
                unit.prefix[j] = sum;
                sum = sum.wrapping_add(delta);
            }
            self.units.push(unit);
        }
        // The sentinel: its key is `+∞` (units are made so) and its prefix sum the total after every key.
        if n.is_multiple_of(BLOCK) {
            self.units.push(Unit::EMPTY);
        }
        self.units[n / BLOCK].prefix[n % BLOCK] = sum;
        self.fences.clear();
        self.fences
            .extend(self.units.iter().map(|u| u.keys[BLOCK - 1]));
        let run = self.run();
        self.coarse = [f64::INFINITY; COARSE];
        for (c, chunk) in self.coarse.iter_mut().zip(self.fences.chunks(run)) {
            *c = chunk[chunk.len() - 1];
        }
        self.edges.clear();
        self.edges.extend_from_slice(edges);
        self.max_lo = edges.iter().map(|e| e.lo).fold(f64::NEG_INFINITY, f64::max);
        self.min_hi = edges.iter().map(|e| e.hi).fold(f64::INFINITY, f64::min);
    }

    /// Fences per run of the coarse index.
    fn run(&self) -> usize {
        self.fences.len().div_ceil(COARSE)
    }

    /// Adds the terms of the trees whose box does not hold `x`, computed as the walk computes them.
    fn add_outside(&self, x: f64, sum: &mut f64) {
        if x > self.max_lo && x <= self.min_hi {
            return;
        }
        for e in &self.edges {
            if x <= e.lo || x > e.hi {
                let path = if x <= e.lo { e.first } else { e.last };
                let extension = (e.lo - x).max(0.0) + (x - e.hi).max(0.0);
                *sum +=
                    super::streaming_forest::extended(path, extension, e.hi - e.lo) / e.normaliser;
            }
        }
    }
}

/// A one-feature forest's trees as step functions, grouped by slot: trees `GROUP · g ..` form group `g`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StepForest {
    groups: Vec<Group>,
}

impl StepForest {
    /// Builds the step functions of `trees`, or `None` when one cannot be represented (a term beyond
    /// [`MAX_TERM`], a box that does not hold its thresholds, thresholds out of order: only restored trees): the caller walks the trees instead.
    pub(super) fn build(trees: &[StepTree<'_>]) -> Option<StepForest> {
        let mut forest = StepForest { groups: Vec::new() };
        for (g, group) in trees.chunks(GROUP).enumerate() {
            if !forest.rebuild(g, group) {
                return None;
            }
        }
        Some(forest)
    }

    /// Rebuilds group `g` (an existing one, or the next) from its `trees`, slots in order; `false` when one cannot
    /// be represented (the caller then drops the step functions).
    pub(super) fn rebuild(&mut self, g: usize, trees: &[StepTree<'_>]) -> bool {
        if g > self.groups.len() || trees.is_empty() || trees.len() > GROUP {
            return false;
        }
        if g == self.groups.len() {
            self.groups.push(Group::default());
        }
        self.groups[g].rebuild(trees)
    }

    /// Sum over trees of the extended path length over the normaliser at `x`, a finite value.
    ///
    /// The groups are searched side by side, one step at a time, so their cache misses overlap: the coarse index
    /// gives a run of fences, the run the unit (the sentinel's fence is `+∞`, so it stays in bounds), and the unit's
    /// keys the prefix sum.
    pub(super) fn sum(&self, x: f64) -> f64 {
        let below = |keys: &[f64]| keys.iter().map(|&k| usize::from(k < x)).sum::<usize>();
        let mut fixed_sum = 0i128;
        let mut outside = 0.0;
        for lanes in self.groups.chunks(LANES) {
            let mut at = [0usize; LANES];
            for (a, g) in at.iter_mut().zip(lanes) {
                *a = below(&g.coarse) * g.run();
            }
            let mut touched = 0u64;
            for (&a, g) in at.iter().zip(lanes) {
                let fences = g.fences.get(a..).unwrap_or(&[]);
                for f in fences[..fences.len().min(g.run())].iter().step_by(BLOCK) {
                    touched ^= f.to_bits();
                }
            }
            std::hint::black_box(touched);
            for (a, g) in at.iter_mut().zip(lanes) {
                let fences = g.fences.get(*a..).unwrap_or(&[]);
                *a += below(&fences[..fences.len().min(g.run())]);
            }
            for (&a, g) in at.iter().zip(lanes) {
                if let Some(unit) = g.units.get(a) {
                    touched ^= unit.keys[0].to_bits() ^ unit.prefix[0] as u64;
                }
            }
            std::hint::black_box(touched);
            for (&a, g) in at.iter().zip(lanes) {
                if let Some(unit) = g.units.get(a) {
                    let c = below(&unit.keys).min(BLOCK - 1);
                    fixed_sum += i128::from(unit.prefix[c]);
                }
                g.add_outside(x, &mut outside);
            }
        }
        fixed_sum as f64 / SCALE + outside
    }
}
