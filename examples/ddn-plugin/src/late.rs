//! LLM analyses that missed the response budget, kept for the query's next call: at most one entry per query for
//! at most `cap` queries (`MAX_KEYS_IN_MEMORY`); beyond it the oldest is dropped (and its query's next call simply
//! reports no previous analysis).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::Value;

/// Late answers by query id, then dataset, oldest dropped first beyond the cap.
#[derive(Debug)]
pub struct LateAnswers {
    by_query: HashMap<String, BTreeMap<String, Value>>,
    /// Query ids in the order their first pending answer arrived.
    order: VecDeque<String>,
    cap: usize,
}

impl LateAnswers {
    /// Keeps answers of at most `cap` queries (at least one).
    pub fn new(cap: usize) -> Self {
        LateAnswers {
            by_query: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Keeps `answer` for the next call of `query_id`.
    pub fn put(&mut self, query_id: String, dataset: String, answer: Value) {
        if !self.by_query.contains_key(&query_id) {
            while self.by_query.len() >= self.cap {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                self.by_query.remove(&oldest);
            }
            self.order.push_back(query_id.clone());
        }
        self.by_query
            .entry(query_id)
            .or_default()
            .insert(dataset, answer);
    }

    /// The answers waiting for `query_id`, removed.
    pub fn take(&mut self, query_id: &str) -> Option<BTreeMap<String, Value>> {
        let answers = self.by_query.remove(query_id)?;
        self.order.retain(|q| q != query_id);
        Some(answers)
    }

    /// Every answer still waiting, as (query id, dataset, answer), removed (at shutdown).
    pub fn drain(&mut self) -> Vec<(String, String, Value)> {
        self.order.clear();
        self.by_query
            .drain()
            .flat_map(|(query, answers)| {
                answers
                    .into_iter()
                    .map(move |(dataset, answer)| (query.clone(), dataset, answer))
            })
            .collect()
    }

    /// Queries with answers waiting.
    pub fn len(&self) -> usize {
        self.by_query.len()
    }

    /// Whether no answer waits.
    pub fn is_empty(&self) -> bool {
        self.by_query.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::LateAnswers;
    use serde_json::json;

    #[test]
    fn bounded_oldest_first() {
        let mut late = LateAnswers::new(2);
        late.put("q1".into(), "a".into(), json!(1));
        late.put("q1".into(), "b".into(), json!(2));
        late.put("q2".into(), "a".into(), json!(3));
        late.put("q3".into(), "a".into(), json!(4));
        assert_eq!(late.len(), 2);
        assert!(late.take("q1").is_none(), "the oldest query went first");
        assert_eq!(late.take("q2").unwrap()["a"], json!(3));
        assert_eq!(late.take("q3").unwrap()["a"], json!(4));
        assert!(late.is_empty());
    }
}
