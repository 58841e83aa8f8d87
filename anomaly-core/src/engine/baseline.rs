//! A key's baseline: statistics of the records neither detector flagged, what the range rule and the batch
//! comparison read.
//!
//! Folding a batch into a large baseline costs a pass over its bounded samples whatever the batch's size, so batches
//! are first gathered in a small summary and folded in together, once the summary holds an eighth of the baseline's
//! records (and at least [`FOLD_MIN`]). The baseline a comparison or the range rule reads therefore lags behind by
//! at most that: an eighth of what it summarises.

use std::borrow::Borrow;

use serde_json::Value;

use crate::records::flatten::Limits;
use crate::stats::DatasetStats;

/// Records gathered at least before a fold.
const FOLD_MIN: u64 = 256;

/// Single records held back before they are summarised as one batch (summarising record by record would cost a
/// statistics pass per record).
const SUMMARISE_AT: usize = 256;

/// Statistics of a key's normal records (at most `max_fields` fields): folded, gathered, and records not summarised
/// yet.
#[derive(Debug, Default)]
pub(crate) struct Baseline {
    folded: DatasetStats,
    gathered: DatasetStats,
    records: Vec<Value>,
    limits: Limits,
}

impl Baseline {
    pub(crate) fn new(limits: Limits, max_fields: usize) -> Self {
        Baseline {
            folded: DatasetStats::new().with_max_fields(max_fields),
            gathered: DatasetStats::new().with_max_fields(max_fields),
            records: Vec::new(),
            limits,
        }
    }

    /// A baseline of `records` (a restored history), summarised in batches of `batch`.
    pub(crate) fn of<R: Borrow<Value>>(
        records: &[R],
        batch: usize,
        limits: Limits,
        max_fields: usize,
    ) -> Self {
        let mut b = Baseline::new(limits, max_fields);
        for chunk in records.chunks(batch.max(1)) {
            if let Ok(s) = DatasetStats::from_records_capped(chunk, &limits, max_fields) {
                b.add(&s);
            }
        }
        b.fold();
        b
    }

    fn max_fields(&self) -> usize {
        self.folded.max_fields()
    }

    /// Adds the statistics of one batch of normal records; returns whether the baseline was folded (and changed
    /// what it reads).
    pub(crate) fn add(&mut self, batch: &DatasetStats) -> bool {
        self.gathered.merge(batch);
        // The first batch is folded at once, so a key compares its second batch with something.
        let due = if self.folded.n_records() == 0 {
            0
        } else {
            FOLD_MIN.max(self.folded.n_records() / 8)
        };
        if self.gathered.n_records() >= due {
            self.fold();
            true
        } else {
            false
        }
    }

    /// Holds single normal records back until enough are waiting to summarise them as one batch; returns whether the
    /// baseline was folded.
    pub(crate) fn learn<R: Borrow<Value>>(&mut self, records: impl IntoIterator<Item = R>) -> bool {
        self.records
            .extend(records.into_iter().map(|r| r.borrow().clone()));
        if self.records.len() < SUMMARISE_AT {
            return false;
        }
        self.summarise()
    }

    /// Summarises the records held back as one batch; returns whether the baseline was folded.
    pub(crate) fn summarise(&mut self) -> bool {
        if self.records.is_empty() {
            return false;
        }
        // The records were validated when they were scored: a failure here can only be a record the statistics
        // read differently, and it is left out.
        let stats =
            DatasetStats::from_records_capped(&self.records, &self.limits, self.max_fields());
        self.records.clear();
        stats.is_ok_and(|s| self.add(&s))
    }

    /// Folds everything gathered and held back into the baseline.
    pub(crate) fn fold(&mut self) {
        self.summarise();
        if self.gathered.n_batches() > 0 {
            self.folded.merge(&self.gathered);
            self.gathered = DatasetStats::new().with_max_fields(self.max_fields());
        }
    }

    /// The baseline as folded (what comparisons and the range rule read).
    pub(crate) fn folded(&self) -> &DatasetStats {
        &self.folded
    }

    /// The baseline with everything gathered and held back folded in.
    pub(crate) fn stats(&mut self) -> &DatasetStats {
        self.fold();
        &self.folded
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        *self = Baseline::new(self.limits, self.max_fields());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn batch(from: i64, n: i64) -> DatasetStats {
        let records: Vec<Value> = (from..from + n).map(|i| json!({"x": i})).collect();
        DatasetStats::from_records(&records, &Limits::default()).unwrap()
    }

    #[test]
    fn batches_are_gathered_then_folded_and_counted_as_batches() {
        let mut b = Baseline::new(Limits::default(), 100);
        assert!(b.add(&batch(0, 100)), "the first batch is folded at once");
        assert!(!b.add(&batch(100, 100)));
        assert!(!b.add(&batch(200, 100)));
        assert_eq!(
            b.folded().n_records(),
            100,
            "not folded again before 256 records"
        );
        assert!(b.add(&batch(300, 100)));
        assert_eq!((b.folded().n_records(), b.folded().n_batches()), (400, 4));
        // Later folds wait for an eighth of the baseline.
        for i in 0..29 {
            b.add(&batch(400 + i * 100, 100));
        }
        let folded = b.folded().n_records();
        assert!((2_900..=3_300).contains(&folded), "{folded}");
        let all = b.stats();
        assert_eq!((all.n_records(), all.n_batches()), (3_300, 33));
        assert_eq!(
            all.field("x").unwrap().numeric.as_ref().unwrap().max,
            3_299.0
        );
    }

    #[test]
    fn single_records_are_summarised_in_batches() {
        let mut b = Baseline::new(Limits::default(), 100);
        for i in 0..255 {
            assert!(!b.learn([json!({"x": i})]));
        }
        assert!(b.learn([json!({"x": 255})]));
        assert_eq!((b.folded().n_records(), b.folded().n_batches()), (256, 1));
        b.learn([json!({"x": 256})]);
        assert_eq!(b.folded().n_records(), 256);
        assert_eq!(b.stats().n_records(), 257);
        b.clear();
        assert_eq!(b.stats().n_records(), 0);
    }
}
