//! The streaming aggregator: event-time windows closed by a watermark.

use std::collections::BTreeMap;

use serde_json::Value;

use super::accumulate::Accumulator;
use super::extract::observe;
use super::vocabulary::Vocabulary;
use super::{WindowParams, WindowRow};
use crate::error::{Error, Result};

/// Turns a stream of JSON events into one [`WindowRow`] per service per window, in event time.
///
/// The *watermark* is the newest timestamp seen minus the allowed lateness. A window closes, and its rows are
/// returned, once the watermark reaches its end; an event exactly on a boundary belongs to the later window.
/// Events may arrive out of order as long as their window is still open. An event whose window has already closed
/// is *late*: it is not counted in any row, and [`late_events`](Self::late_events) records it, so a lateness
/// set too tight shows up instead of passing silently.
///
/// Every service gets a row for every window from its first event's window on, including windows in which it had
/// no event (`count` 0, statistics `None`), so a service that falls silent keeps producing rows and its traffic
/// drop is visible. Rows come out sorted by `(window_start, service)`.
///
/// ```
/// use anomaly_core::window::WindowParams;
/// use serde_json::json;
///
/// let mut windows = WindowParams::new().width_seconds(60.0).build()?;
/// assert!(windows.push(&json!({"service": "api", "timestamp": 10, "status": 200, "response_time_ms": 12}))?.is_empty());
/// assert!(windows.push(&json!({"service": "api", "timestamp": 20, "status": 503, "response_time_ms": 30}))?.is_empty());
/// let closed = windows.push(&json!({"service": "api", "timestamp": 130, "status": 200}))?;
/// assert_eq!(closed.len(), 2); // [0, 60) with two events, [60, 120) with none
/// assert_eq!((closed[0].count, closed[0].error_rate, closed[0].latency_max), (2, Some(0.5), Some(30.0)));
/// assert_eq!(closed[1].count, 0);
/// assert!(windows.push(&json!({"service": "api", "timestamp": 50}))?.is_empty());
/// assert_eq!(windows.late_events(), 1);
/// assert_eq!(windows.flush().len(), 1); // [120, 180)
/// # Ok::<(), anomaly_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct WindowAggregator {
    params: WindowParams,
    services: BTreeMap<String, ServiceWindows>,
    newest: Option<f64>,
    /// Every window with an index up to this one is closed.
    closed_through: Option<i64>,
    lowest: Option<i64>,
    highest: Option<i64>,
    late_events: u64,
    /// Vocabularies learnt for services not seen yet: each is taken by its service's first event.
    pending_vocabulary: BTreeMap<String, Vocabulary>,
    /// `false` for batch aggregation: nothing closes before [`flush`](Self::flush).
    closes_on_watermark: bool,
}

#[derive(Debug, Clone)]
struct ServiceWindows {
    open: BTreeMap<i64, Accumulator>,
    /// The first window index not yet emitted.
    next: i64,
    vocabulary: Vocabulary,
}

/// The values each service has shown in each category field: service → field → values, sorted. See
/// [`WindowAggregator::vocabulary`].
pub type Vocabularies = BTreeMap<String, BTreeMap<String, Vec<String>>>;

impl WindowAggregator {
    pub(super) fn new(params: WindowParams) -> Result<Self> {
        params.validate()?;
        Ok(WindowAggregator {
            params,
            services: BTreeMap::new(),
            newest: None,
            closed_through: None,
            lowest: None,
            highest: None,
            late_events: 0,
            pending_vocabulary: BTreeMap::new(),
            closes_on_watermark: true,
        })
    }

    /// An aggregator that closes nothing before [`flush`](Self::flush), so no event is ever late.
    pub(super) fn batch(params: WindowParams) -> Result<Self> {
        Ok(WindowAggregator {
            closes_on_watermark: false,
            ..Self::new(params)?
        })
    }

    /// The parameters.
    pub fn params(&self) -> &WindowParams {
        &self.params
    }

    /// Events that arrived after their window had closed, and so are in no row.
    pub fn late_events(&self) -> u64 {
        self.late_events
    }

    /// The newest timestamp seen minus the allowed lateness; `None` before the first event.
    pub fn watermark(&self) -> Option<f64> {
        self.newest
            .map(|t| t - self.params.allowed_lateness_seconds)
    }

    /// The values each service has shown in each [category field](WindowParams::category_fields) in the windows
    /// emitted so far (at most `max_category_values` per field and service), to carry them over to another
    /// aggregator with [`learn_vocabulary`](Self::learn_vocabulary): a monitor that starts where training ended
    /// knows which values are new.
    pub fn vocabulary(&self) -> Vocabularies {
        let fields = &self.params.category_fields;
        let pending = self.pending_vocabulary.iter();
        self.services
            .iter()
            .map(|(service, s)| (service, &s.vocabulary))
            .chain(pending)
            .map(|(service, v)| (service.clone(), v.export(fields)))
            .collect()
    }

    /// Adds values to the services' vocabularies (see [`vocabulary`](Self::vocabulary)); a service named there
    /// has done its warm-up, so its first window's new values count. Services that have no event yet are kept until
    /// their first event, with no rows before it.
    pub fn learn_vocabulary(&mut self, learnt: &Vocabularies) {
        let (fields, max_values) = (
            &self.params.category_fields,
            self.params.max_category_values,
        );
        for (service, values) in learnt {
            match self.services.get_mut(service) {
                Some(s) => s.vocabulary.learn(fields, values, max_values),
                None => {
                    let mut vocabulary = Vocabulary::default();
                    vocabulary.learn(fields, values, max_values);
                    self.pending_vocabulary.insert(service.clone(), vocabulary);
                }
            }
        }
    }

    /// Windows holding at least one event and not yet emitted.
    pub fn open_windows(&self) -> usize {
        self.services.values().map(|s| s.open.len()).sum()
    }

    /// Adds one event and returns the rows of the windows its timestamp closes (often none).
    ///
    /// A late event returns no rows and increments [`late_events`](Self::late_events).
    ///
    /// # Errors
    /// [`Error::InvalidRecord`] naming the field, leaving the aggregator unchanged, if the event is not an object,
    /// its service is missing or not a non-empty string, its timestamp is missing, unparseable or outside the years
    /// 1 to 9999, its latency, status or an extra field is present but not numeric, it would leave more than
    /// `max_span_windows` windows open, or its service would be one more than `max_services`.
    pub fn push(&mut self, event: &Value) -> Result<Vec<WindowRow>> {
        let o = observe(&self.params, event)?;
        let index = self
            .index_of(o.timestamp)
            .ok_or_else(|| Error::InvalidRecord {
                reason: format!(
                    "field `{}`: {} is too far from the epoch for {} s windows",
                    self.params.timestamp_field, o.timestamp, self.params.width_seconds
                ),
            })?;
        if self.closed_through.is_some_and(|c| index <= c) {
            self.late_events += 1;
            tracing::trace!(timestamp = o.timestamp, service = %o.service, "late event");
            return Ok(Vec::new());
        }
        let oldest = self
            .closed_through
            .map(|c| c + 1)
            .or(self.lowest)
            .unwrap_or(index)
            .min(index);
        let newest = self.highest.unwrap_or(index).max(index);
        let span = newest.abs_diff(oldest) + 1;
        if span > self.params.max_span_windows {
            return Err(Error::InvalidRecord {
                reason: format!(
                    "field `{}`: {} would open {span} windows at once, more than max_span_windows = {}",
                    self.params.timestamp_field, o.timestamp, self.params.max_span_windows
                ),
            });
        }

        if !self.services.contains_key(&o.service)
            && self.services.len() >= self.params.max_services
        {
            return Err(Error::InvalidRecord {
                reason: format!(
                    "field `{}`: `{}` would be service number {}, more than max_services = {}",
                    self.params.service_field,
                    o.service,
                    self.services.len() + 1,
                    self.params.max_services
                ),
            });
        }
        self.lowest = Some(self.lowest.map_or(index, |l| l.min(index)));
        self.highest = Some(newest);
        self.newest = Some(self.newest.map_or(o.timestamp, |t| t.max(o.timestamp)));
        let state = self
            .services
            .entry(o.service.clone())
            .or_insert_with(|| ServiceWindows {
                open: BTreeMap::new(),
                next: index,
                vocabulary: self
                    .pending_vocabulary
                    .remove(&o.service)
                    .unwrap_or_default(),
            });
        state.next = state.next.min(index);
        state.open.entry(index).or_default().add(&o);

        if !self.closes_on_watermark {
            return Ok(Vec::new());
        }
        // Windows ending at or before the watermark are closed: all those before the watermark's own window.
        let Some(watermark_index) = self.watermark().and_then(|w| self.index_of(w)) else {
            return Ok(Vec::new());
        };
        let limit = watermark_index - 1;
        if self.closed_through.is_some_and(|c| limit <= c) {
            return Ok(Vec::new());
        }
        Ok(self.close_through(limit))
    }

    /// Moves the watermark to `watermark` (epoch seconds) if that is later, as the passing of time does when no
    /// event comes: returns the rows of every window ending at or before it, including the windows of services
    /// that fell silent (`count` 0). A reader that has read every event up to a time closes the windows up to it
    /// this way; later events in those windows are late.
    pub fn advance(&mut self, watermark: f64) -> Vec<WindowRow> {
        let Some(index) = self.index_of(watermark) else {
            return Vec::new();
        };
        let limit = index - 1;
        if self.closed_through.is_some_and(|c| limit <= c) || self.services.is_empty() {
            return Vec::new();
        }
        // Every window up to `limit` may be emitted: keep the span check of `push` for the rows made here.
        let from = self
            .services
            .values()
            .map(|s| s.next)
            .min()
            .unwrap_or(limit);
        let limit = limit.min(from.saturating_add(self.params.max_span_windows as i64 - 1));
        self.highest = Some(self.highest.unwrap_or(limit).max(limit));
        let newest =
            (limit + 1) as f64 * self.params.width_seconds + self.params.allowed_lateness_seconds;
        self.newest = Some(self.newest.map_or(newest, |t| t.max(newest)));
        self.close_through(limit)
    }

    /// Closes every window up to the newest seen and returns their rows; later events in those windows are late.
    pub fn flush(&mut self) -> Vec<WindowRow> {
        match self.highest {
            Some(h) if self.closed_through.is_none_or(|c| h > c) => self.close_through(h),
            _ => Vec::new(),
        }
    }

    /// Emits every service's rows from its first unemitted window through `limit`, window by window.
    fn close_through(&mut self, limit: i64) -> Vec<WindowRow> {
        let mut rows = Vec::new();
        let width = self.params.width_seconds;
        let fields = &self.params.category_fields;
        let novelty = (
            self.params.max_category_values,
            self.params.new_value_windows,
            self.params.new_value_warmup_windows,
        );
        if let Some(from) = self.services.values().map(|s| s.next).min() {
            for index in from..=limit {
                for (service, state) in &mut self.services {
                    if state.next <= index {
                        let start = index as f64 * width;
                        let window = state.open.remove(&index);
                        let shares =
                            state
                                .vocabulary
                                .observe(fields, index, window.as_ref(), novelty);
                        let mut row = match window {
                            Some(acc) => acc.into_row(service, start),
                            None => WindowRow::empty(service, start),
                        };
                        row.new_value_share = shares;
                        rows.push(row);
                    }
                }
            }
        }
        for state in self.services.values_mut() {
            state.next = state.next.max(limit + 1);
        }
        self.closed_through = Some(limit);
        rows
    }

    fn index_of(&self, t: f64) -> Option<i64> {
        window_index(t, self.params.width_seconds)
    }
}

/// The index `k` of the window `[k·width, (k + 1)·width)` holding `t`, as computed in floating point, or `None` if
/// it is beyond ±2⁵³.
pub(super) fn window_index(t: f64, width: f64) -> Option<i64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    let q = (t / width).floor();
    if q.is_nan() || q.abs() >= LIMIT {
        return None;
    }
    let mut k = q as i64;
    // Division rounds; make the index agree with the bounds `k·width <= t < (k + 1)·width` the rows report.
    if k as f64 * width > t {
        k -= 1;
    } else if (k + 1) as f64 * width <= t {
        k += 1;
    }
    Some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_belong_to_the_later_window() {
        assert_eq!(window_index(60.0, 60.0), Some(1));
        assert_eq!(window_index(59.999, 60.0), Some(0));
        assert_eq!(window_index(-0.5, 60.0), Some(-1));
        assert_eq!(window_index(f64::NAN, 60.0), None);
        assert_eq!(window_index(1e300, 1.0), None);
        for i in 0..1000 {
            let t = i as f64 * 0.1;
            let k = window_index(t, 0.1).unwrap();
            assert!(k as f64 * 0.1 <= t && t < (k + 1) as f64 * 0.1, "{t}");
        }
    }
}
