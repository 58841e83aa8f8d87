//! The values each service has shown in its category fields, for the share of new values per window.

use std::collections::{BTreeMap, HashMap};

use super::accumulate::Accumulator;

/// Values learnt from another aggregator count as seen long ago.
const LONG_AGO: i64 = i64::MIN;

/// One service's values per category field with the window each first appeared in, each map bounded, and how many
/// windows with events have been seen (the warm-up).
#[derive(Debug, Clone, Default)]
pub(super) struct Vocabulary {
    values: Vec<HashMap<String, i64>>,
    windows: u64,
}

impl Vocabulary {
    /// The share of the events of window `index` whose value of each field is new (first seen in this window or
    /// in the `new_windows - 1` before it), per field name; then learns the values (up to `max_values` per field:
    /// further values count as seen and are not kept). The first `warmup` windows with events only learn: their
    /// shares are 0.
    pub(super) fn observe(
        &mut self,
        fields: &[String],
        index: i64,
        window: Option<&Accumulator>,
        (max_values, new_windows, warmup): (usize, u64, u64),
    ) -> BTreeMap<String, f64> {
        if self.values.len() < fields.len() {
            self.values.resize_with(fields.len(), HashMap::new);
        }
        let mut shares = BTreeMap::new();
        let count = window.map_or(0, Accumulator::count);
        for (i, field) in fields.iter().enumerate() {
            let known = &mut self.values[i];
            let mut new = 0;
            if let Some(w) = window {
                for (value, n) in w.values(i) {
                    // Values of the warm-up are the service's vocabulary, not new ones.
                    let seen_at = if self.windows < warmup {
                        LONG_AGO
                    } else {
                        index
                    };
                    let first = match known.get(value) {
                        Some(&first) => first,
                        None if known.len() < max_values => {
                            known.insert(value.clone(), seen_at);
                            seen_at
                        }
                        None => LONG_AGO,
                    };
                    if index.abs_diff(first) < new_windows {
                        new += n;
                    }
                }
            }
            let share = if self.windows >= warmup && count > 0 {
                new as f64 / count as f64
            } else {
                0.0
            };
            shares.insert(field.clone(), share);
        }
        self.windows = self.windows.saturating_add(u64::from(count > 0));
        shares
    }

    /// The values per field, sorted.
    pub(super) fn export(&self, fields: &[String]) -> BTreeMap<String, Vec<String>> {
        fields
            .iter()
            .zip(&self.values)
            .map(|(f, values)| {
                let mut v: Vec<String> = values.keys().cloned().collect();
                v.sort_unstable();
                (f.clone(), v)
            })
            .collect()
    }

    /// Adds the values of `learnt` (per field name; unknown fields are ignored), up to `max_values` per field, and
    /// counts the service's warm-up as done.
    pub(super) fn learn(
        &mut self,
        fields: &[String],
        learnt: &BTreeMap<String, Vec<String>>,
        max_values: usize,
    ) {
        if self.values.len() < fields.len() {
            self.values.resize_with(fields.len(), HashMap::new);
        }
        for (i, field) in fields.iter().enumerate() {
            for value in learnt.get(field).into_iter().flatten() {
                if self.values[i].len() >= max_values {
                    break;
                }
                self.values[i].entry(value.clone()).or_insert(LONG_AGO);
            }
        }
        self.windows = u64::MAX;
    }
}
