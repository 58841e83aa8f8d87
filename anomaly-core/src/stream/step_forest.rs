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
//! threshold can see. A group is rebuilt when one of its trees is replaced (one tree per batch): a merge of the
//! other trees' keys, already sorted, with the new tree's.
//!
//! Memory: about 18 bytes per key (a tree of 256 samples has about 100), so about 90 KB for the default 50 trees,
//! beside the trees themselves.

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
#[derive(Debug, Clone, PartialEq, Default)]
struct Group {
    /// The sorted keys followed by a `+∞` sentinel (whose prefix sum is the total after every key), in units.
    units: Vec<Unit>,
    /// The last key of every unit: the number below a value is the unit to read.
    fences: Vec<f64>,
    /// The last fence of every run of `run` fences, padded with `+∞`: the number below a value is the run to scan.
    /// It sits in the group itself, so finding the run costs no load of its own.
    coarse: [f64; COARSE],
    run: usize,
    /// Slot in the group of the tree each key belongs to.
    owner: Vec<u8>,
    /// The group's trees by slot.
    edges: Vec<Edge>,
    /// Largest `lo` and smallest `hi`: a value above the one and not above the other is in every tree's box.
    max_lo: f64,
    min_hi: f64,
}

/// The in-box term of a path length in fixed point, or `None` beyond [`MAX_TERM`].
fn fixed(path: f64, normaliser: f64) -> Option<i64> {
    let term = path / normaliser;
    (term.is_finite() && term.abs() <= MAX_TERM).then(|| (term * SCALE).round() as i64)
}

/// Buffers reused from one rebuild to the next on a thread, so a rebuild allocates only what it keeps. They hold at
/// most one group's entries (8 trees of at most 4,097 keys each, as `Tree::check` bounds a tree's depth).
#[derive(Default)]
struct Scratch {
    keys: Vec<f64>,
    values: Vec<f64>,
    run: Vec<Entry>,
    merged: Vec<Entry>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// A tree's keys with the change of its term at each, in fixed point, tagged with `tag`, into `out`; and its edge.
fn run(t: &StepTree<'_>, tag: u8, scratch: &mut Scratch) -> Option<Edge> {
    let Scratch {
        keys, values, run, ..
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
    run.clear();
    let mut previous = fixed(values[0], t.normaliser)?;
    run.push((t.lo, previous, tag));
    for (&k, &v) in keys.iter().zip(&values[1..]) {
        let term = fixed(v, t.normaliser)?;
        run.push((k, term - previous, tag));
        previous = term;
    }
    run.push((t.hi, -previous, tag));
    Some(Edge {
        lo: t.lo,
        hi: t.hi,
        first: values[0],
        last: values[values.len() - 1],
        normaliser: t.normaliser,
    })
}

/// A key with the change of the in-box sum there and the slot of its tree in the group.
type Entry = (f64, i64, u8);

/// Merges two runs of entries sorted by key into `out`.
fn merge(a: impl Iterator<Item = Entry>, b: &[Entry], out: &mut Vec<Entry>) {
    out.clear();
    let mut b = b.iter().copied().peekable();
    for e in a {
        while let Some(next) = b.next_if(|n| n.0 < e.0) {
            out.push(next);
        }
        out.push(e);
    }
    out.extend(b);
}

impl Group {
    /// The group of `trees` (slots in order): their runs merged one by one.
    fn of(trees: &[StepTree<'_>]) -> Option<Group> {
        SCRATCH.with_borrow_mut(|scratch| {
            let mut all: Vec<Entry> = Vec::new();
            let mut edges = Vec::with_capacity(trees.len());
            for (slot, t) in trees.iter().enumerate() {
                edges.push(run(t, u8::try_from(slot).ok()?, scratch)?);
                merge(all.iter().copied(), &scratch.run, &mut scratch.merged);
                std::mem::swap(&mut all, &mut scratch.merged);
            }
            Some(Group::filled(&all, edges))
        })
    }

    /// This group with the tree in `slot` (the next slot, or one it has) replaced by `tree`: one merge of the
    /// other trees' keys, already sorted, with the new tree's.
    fn with_tree(&self, slot: usize, tree: &StepTree<'_>) -> Option<Group> {
        if slot > self.edges.len() || slot >= GROUP {
            return None;
        }
        let tag = u8::try_from(slot).ok()?;
        SCRATCH.with_borrow_mut(|scratch| {
            let edge = run(tree, tag, scratch)?;
            let Scratch { run, merged, .. } = scratch;
            // The other trees' entries, their changes read back from the prefix sums.
            let kept = self
                .owner
                .iter()
                .enumerate()
                .filter(|&(_, &o)| o != tag)
                .map(|(i, &o)| {
                    let k = self.units[i / BLOCK].keys[i % BLOCK];
                    (k, self.prefix(i + 1).wrapping_sub(self.prefix(i)), o)
                });
            merged.reserve(self.owner.len() + run.len());
            merge(kept, run, merged);
            let mut edges = self.edges.clone();
            if slot == edges.len() {
                edges.push(edge);
            } else {
                edges[slot] = edge;
            }
            Some(Group::filled(merged, edges))
        })
    }

    /// The group of sorted `entries`.
    fn filled(entries: &[Entry], edges: Vec<Edge>) -> Group {
        let n = entries.len();
        let mut units = vec![Unit::EMPTY; (n + 1).div_ceil(BLOCK)];
        let mut owner = Vec::with_capacity(n);
        // Prefix sums are sums of at most `GROUP` terms within `MAX_TERM` (asserted above), so they cannot
        // overflow; wrapping adds keep the loop free of checks.
        let mut sum = 0i64;
        for (j, &(k, delta, o)) in entries.iter().enumerate() {
            let unit = &mut units[j / BLOCK];
            unit.keys[j % BLOCK] = k;
            unit.prefix[j % BLOCK] = sum;
            sum = sum.wrapping_add(delta);
            owner.push(o);
        }
        // The sentinel: its key is `+∞` (the unit was made so) and its prefix sum the total after every key.
        units[n / BLOCK].prefix[n % BLOCK] = sum;
        let fences: Vec<f64> = units.iter().map(|u| u.keys[BLOCK - 1]).collect();
        let run = fences.len().div_ceil(COARSE);
        let mut coarse = [f64::INFINITY; COARSE];
        for (c, chunk) in coarse.iter_mut().zip(fences.chunks(run)) {
            *c = chunk[chunk.len() - 1];
        }
        Group {
            units,
            fences,
            coarse,
            run,
            owner,
            max_lo: edges.iter().map(|e| e.lo).fold(f64::NEG_INFINITY, f64::max),
            min_hi: edges.iter().map(|e| e.hi).fold(f64::INFINITY, f64::min),
            edges,
        }
    }

    /// The prefix sum of a value with `j` keys below it (`j` at most the number of keys).
    fn prefix(&self, j: usize) -> i64 {
        self.units[j / BLOCK].prefix[j % BLOCK]
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
        let groups = trees
            .chunks(GROUP)
            .map(Group::of)
            .collect::<Option<Vec<_>>>()?;
        Some(StepForest { groups })
    }

    /// Puts `tree` in slot `slot` of the forest (an existing one, or the next); `false`, changing nothing, when it
    /// cannot be represented.
    pub(super) fn set(&mut self, slot: usize, tree: &StepTree<'_>) -> bool {
        let (g, within) = (slot / GROUP, slot % GROUP);
        if g == self.groups.len() && within == 0 {
            self.groups.push(Group::default());
        }
        let Some(group) = self.groups.get_mut(g) else {
            return false;
        };
        match group.with_tree(within, tree) {
            Some(updated) => {
                *group = updated;
                true
            }
            None => false,
        }
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
                *a = below(&g.coarse) * g.run;
            }
            for (a, g) in at.iter_mut().zip(lanes) {
                let fences = g.fences.get(*a..).unwrap_or(&[]);
                *a += below(&fences[..fences.len().min(g.run)]);
            }
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
