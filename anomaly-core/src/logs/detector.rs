//! The online log detector: each line is mined into its template, scored against what the system has logged so
//! far, then learned.
//!
//! # The score
//! Each signal is a surprise `s` in `0..=1` with a weight `w` ([`LogWeights`]); the score is their noisy-OR,
//! `1 − Π(1 − w·s)`, so it stays in `0..=1`, never falls when a signal is added, and a single signal cannot exceed
//! its weight. The signals:
//! - **level**: the line's own severity ([`Severity`]): `w` per level (FATAL 0.7, CRITICAL 0.6, ERROR 0.55,
//!   WARNING 0.3, NOTICE 0.1, others 0), `s = 1`;
//! - **new template** (weight 0.35): the line starts a template; `s = 1 − r`, where `r` is the share of recent
//!   lines (about the last 100) that started one, so novelty counts once the system's templates have settled. A
//!   new ERROR template in a settled system scores 0.71, above the default threshold of 0.7; a FATAL line alone
//!   scores 0.7;
//! - **rare template** (0.3): `s = 1 / (1 + c)`, `c` the template's count decayed with a half-life of
//!   `half_life_lines` lines, once the template is known for that many lines (before, it is new rather than rare:
//!   on BGL, where alerts repeat and one-off lines are normal, rarity among recent templates ranks alerts down);
//! - **parameter** (0.4): a numeric parameter outside the range its slot has held (`s = 1 − e^(−excess/spread)`), or a
//!   value never seen in a slot whose values repeat (`s = 1 − distinct/count`); after `min_history` lines of the
//!   template;
//! - **level for the template** (0.4): the line's level is one the template rarely has: `s = 1 − 20·p`, `p` the share
//!   of the template's lines at this level or above; after `min_history` lines;
//! - **burst** (0.3): `k` lines of the template in the last `window_seconds` (the line included, `k ≥ 3`) against `λ`
//!   expected at its rate over everything seen so far: `s = (P(X < k) − 0.9) / 0.1` for `X ~ Poisson(λ)`, so a
//!   count within the usual 90 % of windows counts for nothing;
//! - **silence** (0.3): the template returns after a gap it had less than a 1 % chance to leave at its own mean
//!   gap: `s = 1 − P(gap)/0.01`, `P(gap) = e^(−gap/mean gap)`; after `min_history` lines.
//!
//! Templates are mined from the message: what follows the level in the line's header (the whole line when it
//! names no level), so timestamps, hosts and levels do not blur templates together.
//!
//! Time is the line's own (its header's epoch or date, [`time_in_line`]) when it has one, otherwise the time the
//! caller gives. Everything kept is bounded: templates by the miner's cap, parameter slots and values per template
//! by `max_parameters` and `max_values`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::drain::{Drain, DrainParams, TemplateChange, TemplateId};
use super::line::{Severity, time_in_line};
use crate::error::{Error, Result};

/// The weight of each signal in the score (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogWeights {
    /// FATAL (also PANIC, EMERG, ALERT, FAILURE).
    pub fatal: f64,
    /// CRITICAL, SEVERE.
    pub critical: f64,
    /// ERROR.
    pub error: f64,
    /// WARNING.
    pub warning: f64,
    /// NOTICE.
    pub notice: f64,
    /// A template never seen.
    pub new_template: f64,
    /// A rare template.
    pub rare_template: f64,
    /// A parameter unlike the template's history.
    pub parameter: f64,
    /// A level the template rarely has.
    pub level_for_template: f64,
    /// A burst of the template.
    pub burst: f64,
    /// The template back after an unusual silence.
    pub silence: f64,
}

impl Default for LogWeights {
    fn default() -> Self {
        LogWeights {
            fatal: 0.7,
            critical: 0.6,
            error: 0.55,
            warning: 0.3,
            notice: 0.1,
            new_template: 0.35,
            rare_template: 0.3,
            parameter: 0.4,
            level_for_template: 0.4,
            burst: 0.3,
            silence: 0.3,
        }
    }
}

impl LogWeights {
    fn level(&self, s: Option<Severity>) -> f64 {
        match s {
            Some(Severity::Fatal) => self.fatal,
            Some(Severity::Critical) => self.critical,
            Some(Severity::Error) => self.error,
            Some(Severity::Warning) => self.warning,
            Some(Severity::Notice) => self.notice,
            _ => 0.0,
        }
    }

    fn all(&self) -> [(&'static str, f64); 11] {
        [
            ("weights.fatal", self.fatal),
            ("weights.critical", self.critical),
            ("weights.error", self.error),
            ("weights.warning", self.warning),
            ("weights.notice", self.notice),
            ("weights.new_template", self.new_template),
            ("weights.rare_template", self.rare_template),
            ("weights.parameter", self.parameter),
            ("weights.level_for_template", self.level_for_template),
            ("weights.burst", self.burst),
            ("weights.silence", self.silence),
        ]
    }
}

/// The detector's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogDetectorParams {
    /// The template miner's settings (by default at most 10,000 templates).
    pub drain: DrainParams,
    /// The signals' weights.
    pub weights: LogWeights,
    /// Half-life, in lines, of a template's decayed count.
    pub half_life_lines: f64,
    /// The window, in seconds, in which bursts are counted.
    pub window_seconds: f64,
    /// Lines of a template before its parameters, levels and silences are judged.
    pub min_history: u64,
    /// Parameter slots followed per template.
    pub max_parameters: usize,
    /// Distinct values remembered per parameter slot; a slot with more is not judged by its values.
    pub max_values: usize,
}

impl Default for LogDetectorParams {
    fn default() -> Self {
        LogDetectorParams {
            drain: DrainParams::default(),
            weights: LogWeights::default(),
            half_life_lines: 10_000.0,
            window_seconds: 3_600.0,
            min_history: 20,
            max_parameters: 8,
            max_values: 16,
        }
    }
}

impl LogDetectorParams {
    fn check(&self) -> Result<()> {
        for (name, w) in self.weights.all() {
            if !(0.0..=1.0).contains(&w) {
                return Err(Error::invalid(name, format!("must be in 0..=1, got {w}")));
            }
        }
        if !(self.half_life_lines.is_finite() && self.half_life_lines >= 1.0) {
            return Err(Error::invalid(
                "half_life_lines",
                "must be a finite number ≥ 1",
            ));
        }
        if !(self.window_seconds.is_finite() && self.window_seconds > 0.0) {
            return Err(Error::invalid(
                "window_seconds",
                "must be a finite number > 0",
            ));
        }
        if self.max_parameters > 64 || self.max_values > 1024 {
            return Err(Error::invalid(
                "max_parameters",
                "at most 64 slots of at most 1024 values",
            ));
        }
        Ok(())
    }
}

/// One line's analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogVerdict {
    /// The line's template (`None` only from [`LogDetector::score`] for a line no template would take).
    pub template_id: Option<TemplateId>,
    /// The template's text (the masked line itself when it has none yet).
    pub template: String,
    /// The score in `0..=1` (see the [module docs](self)).
    pub score: f64,
    /// The line's level, when its header names one.
    pub severity: Option<Severity>,
    /// The time used, in seconds since the Unix epoch.
    pub time: f64,
    /// Whether the line started its template.
    pub new_template: bool,
    /// Why, in words, strongest first: one sentence per signal that contributed at least 0.05.
    pub reasons: Vec<String>,
}

/// A template's record, as [`LogDetector::templates`] lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TemplateSummary {
    /// Its identifier.
    pub id: TemplateId,
    /// Its text.
    pub template: String,
    /// Lines seen.
    pub count: u64,
    /// First line's time (seconds since the Unix epoch).
    pub first_seen: f64,
    /// Last line's time.
    pub last_seen: f64,
    /// Lines per level name (`"ERROR"`), and `"NONE"` for lines without one.
    pub severities: Vec<(&'static str, u64)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Slot {
    slot: u32,
    count: u64,
    numeric: u64,
    /// Smallest and largest numeric value.
    range: Option<(f64, f64)>,
    /// Distinct values seen, as FNV-1a hashes (a value of any length costs 8 bytes), with their counts.
    values: Vec<(u64, u64)>,
    /// More distinct values than `max_values`: not judged by value.
    overflowed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Stats {
    count: u64,
    /// Decayed count as of line `decayed_at`.
    decayed: f64,
    decayed_at: u64,
    /// The line count when it was first seen.
    first_line: u64,
    first_seen: f64,
    last_seen: f64,
    /// Lines per level, `Severity::ALL` order, then lines without one.
    levels: [u64; 9],
    /// Sliding-window counter: the current window's start and count, and the previous window's count.
    window_start: f64,
    window_count: u64,
    previous_count: u64,
    slots: Vec<Slot>,
}

/// The online log detector: a template miner and each template's history. Serialisable (it is the
/// `log_detector` snapshot kind); a restored detector is checked first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "DetectorState")]
pub struct LogDetector {
    params: LogDetectorParams,
    drain: Drain,
    #[serde(with = "super::pairs")]
    stats: HashMap<TemplateId, Stats>,
    lines_seen: u64,
    /// Share of recent lines that started a template.
    new_rate: f64,
    /// The first line's time.
    origin: Option<f64>,
}

#[derive(Deserialize)]
struct DetectorState {
    params: LogDetectorParams,
    drain: Drain,
    #[serde(with = "super::pairs")]
    stats: HashMap<TemplateId, Stats>,
    lines_seen: u64,
    new_rate: f64,
    origin: Option<f64>,
}

impl TryFrom<DetectorState> for LogDetector {
    type Error = String;

    fn try_from(s: DetectorState) -> std::result::Result<Self, String> {
        s.params.check().map_err(|e| e.to_string())?;
        if s.drain.params() != &s.params.drain {
            return Err("the miner's settings differ from the detector's".into());
        }
        if !(0.0..=1.0).contains(&s.new_rate) || s.origin.is_some_and(|o| !o.is_finite()) {
            return Err("rates or times out of range".into());
        }
        for (id, st) in &s.stats {
            let finite = [st.decayed, st.first_seen, st.last_seen, st.window_start]
                .iter()
                .all(|v| v.is_finite());
            let bounded = st.slots.len() <= s.params.max_parameters
                && st.slots.iter().all(|x| {
                    x.values.len() <= s.params.max_values
                        && x.range
                            .is_none_or(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
                });
            let counted = st.count >= 1
                && st.count <= s.lines_seen
                && st.slots.iter().all(|x| x.count <= st.count)
                && st.decayed >= 0.0
                && st.decayed_at <= s.lines_seen
                && st.first_line <= s.lines_seen
                && st.first_seen <= st.last_seen
                && st.slots.iter().all(|x| x.numeric <= x.count);
            if s.drain.template(*id).is_none() || !finite || !bounded || !counted {
                return Err(format!("template {id}'s statistics are inconsistent"));
            }
        }
        Ok(LogDetector {
            params: s.params,
            drain: s.drain,
            stats: s.stats,
            lines_seen: s.lines_seen,
            new_rate: s.new_rate,
            origin: s.origin,
        })
    }
}

/// Weighted signals of one line, with their reasons.
struct Signals {
    parts: Vec<(f64, String)>,
}

impl Signals {
    fn add(&mut self, weight: f64, surprise: f64, reason: impl FnOnce() -> String) {
        let v = weight * surprise.clamp(0.0, 1.0);
        if v > 0.0 {
            self.parts
                .push((v, if v >= 0.05 { reason() } else { String::new() }));
        }
    }

    fn finish(mut self) -> (f64, Vec<String>) {
        let score = 1.0 - self.parts.iter().map(|(v, _)| 1.0 - v).product::<f64>();
        self.parts.sort_by(|a, b| b.0.total_cmp(&a.0));
        let reasons = self
            .parts
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(_, r)| r)
            .collect();
        (score.clamp(0.0, 1.0), reasons)
    }
}

impl LogDetector {
    /// A detector that has seen nothing.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for settings outside their documented domain.
    pub fn new(params: LogDetectorParams) -> Result<Self> {
        params.check()?;
        Ok(LogDetector {
            drain: Drain::new(params.drain.clone())?,
            params,
            stats: HashMap::new(),
            lines_seen: 0,
            new_rate: 1.0,
            origin: None,
        })
    }

    /// Its settings.
    pub fn params(&self) -> &LogDetectorParams {
        &self.params
    }

    /// Lines learned.
    pub fn lines_seen(&self) -> u64 {
        self.lines_seen
    }

    /// Templates kept.
    pub fn template_count(&self) -> usize {
        self.drain.len()
    }

    /// The template miner.
    pub fn miner(&self) -> &Drain {
        &self.drain
    }

    /// Scores `line`, then learns it. `now` (seconds since the Unix epoch) is its time when its header has none.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when `now` is not finite.
    pub fn analyze(&mut self, line: &str, now: f64) -> Result<LogVerdict> {
        let time = line_time(line, now)?;
        let (severity, message) = Severity::split(line);
        let m = self.drain.add(message);
        if let Some(old) = m.forgotten {
            self.stats.remove(&old);
        }
        let created = m.change == TemplateChange::Created;
        let verdict = self.verdict(Some(m.template), created, &m.parameters, severity, time);
        self.learn(m.template, created, &m.parameters, severity, time);
        Ok(verdict)
    }

    /// Scores `line` as [`analyze`](Self::analyze) would, without learning it.
    ///
    /// # Errors
    /// [`Error::NonFinite`] when `now` is not finite.
    pub fn score(&self, line: &str, now: f64) -> Result<LogVerdict> {
        let time = line_time(line, now)?;
        let (severity, message) = Severity::split(line);
        match self.drain.find(message) {
            Some(id) => {
                let parameters = self.drain.parameters_of(id, message);
                Ok(self.verdict(Some(id), false, &parameters, severity, time))
            }
            None => {
                let mut v = self.verdict(None, true, &[], severity, time);
                v.template = self.drain.masked(message);
                Ok(v)
            }
        }
    }

    /// Every template with its counts, most frequent first.
    pub fn templates(&self) -> Vec<TemplateSummary> {
        let mut out: Vec<TemplateSummary> = self
            .drain
            .templates()
            .filter_map(|t| self.template_summary(t.id()))
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then(a.id.cmp(&b.id)));
        out
    }

    /// One template with its counts (`None` for an unknown or forgotten id).
    pub fn template_summary(&self, id: TemplateId) -> Option<TemplateSummary> {
        let t = self.drain.template(id)?;
        let st = self.stats.get(&id);
        let levels = st.map(|s| s.levels).unwrap_or_default();
        let severities = Severity::ALL
            .iter()
            .map(|s| s.name())
            .chain(["NONE"])
            .zip(levels)
            .filter(|(_, n)| *n > 0)
            .collect();
        Some(TemplateSummary {
            id,
            template: t.text(),
            count: st.map_or(t.size(), |s| s.count),
            first_seen: st.map_or(0.0, |s| s.first_seen),
            last_seen: st.map_or(0.0, |s| s.last_seen),
            severities,
        })
    }

    fn decay(&self) -> f64 {
        0.5_f64.powf(1.0 / self.params.half_life_lines)
    }

    fn verdict(
        &self,
        id: Option<TemplateId>,
        created: bool,
        parameters: &[(u32, &str)],
        severity: Option<Severity>,
        time: f64,
    ) -> LogVerdict {
        let w = &self.params.weights;
        let mut signals = Signals { parts: Vec::new() };
        if let Some(s) = severity {
            signals.add(w.level(Some(s)), 1.0, || format!("level {}", s.name()));
        }
        let stats = id.and_then(|id| self.stats.get(&id)).filter(|_| !created);
        match stats {
            None => {
                let rate = self.new_rate;
                signals.add(w.new_template, 1.0 - rate, || {
                    format!(
                        "template never seen before (lately 1 line in {:.0} starts a template)",
                        1.0 / rate.max(1e-3)
                    )
                });
            }
            Some(st) => self.history_signals(st, parameters, severity, time, &mut signals),
        }
        let (score, reasons) = signals.finish();
        LogVerdict {
            template_id: id,
            template: id
                .and_then(|id| self.drain.template(id))
                .map(|t| t.text())
                .unwrap_or_default(),
            score,
            severity,
            time,
            new_template: created,
            reasons,
        }
    }

    fn history_signals(
        &self,
        st: &Stats,
        parameters: &[(u32, &str)],
        severity: Option<Severity>,
        time: f64,
        signals: &mut Signals,
    ) {
        let w = &self.params.weights;
        let p = &self.params;
        let decayed = st.decayed
            * self
                .decay()
                .powf(self.lines_seen.saturating_sub(st.decayed_at) as f64);
        // Rare for this system: a template it has known for a half-life at least, still seen about once in one.
        let known_for = self.lines_seen.saturating_sub(st.first_line);
        let rare = if (known_for as f64) < p.half_life_lines {
            0.0
        } else {
            1.0 / (1.0 + decayed)
        };
        signals.add(w.rare_template, rare, || {
            format!(
                "rare template: about {decayed:.1} of the last {:.0} lines",
                p.half_life_lines * 1.44
            )
        });
        let mature = st.count >= p.min_history;
        // Parameters: the most surprising one, worded only when it counts.
        if mature {
            let best = parameters
                .iter()
                .filter_map(|(slot, value)| {
                    let s = st.slots.iter().find(|x| x.slot == *slot)?;
                    Some((slot_surprise(s, value), s, *value))
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((surprise, slot, value)) = best {
                signals.add(w.parameter, surprise, || slot_reason(slot, value));
            }
        }
        // Level against the template's history.
        if mature && let Some(sev) = severity {
            let at_or_above: u64 = st.levels[sev as usize..8].iter().sum();
            let share = at_or_above as f64 / st.count as f64;
            let usual = Severity::ALL
                .iter()
                .zip(st.levels)
                .max_by_key(|(_, n)| *n)
                .map_or("none", |(s, _)| s.name());
            signals.add(w.level_for_template, 1.0 - 20.0 * share, || {
                format!(
                    "level {} is unusual for this template (usually {usual})",
                    sev.name()
                )
            });
        }
        // Burst: the window's count against the template's rate over everything seen so far.
        let origin = self.origin.unwrap_or(time);
        let rate = st.count as f64 / (time - origin).max(p.window_seconds);
        let k = window_count(st, time, p.window_seconds) + 1.0;
        if k >= 3.0 {
            let lambda = rate * p.window_seconds;
            // Within the usual 90 % of windows counts for nothing.
            let surprise = (poisson_below(k.floor() as u64, lambda) - 0.9) / 0.1;
            signals.add(w.burst, surprise, || {
                format!(
                    "burst: {k:.0} lines of this template in {} (about {lambda:.1} expected)",
                    duration(p.window_seconds)
                )
            });
        }
        // Silence: the gap since its last line against its own mean gap.
        if mature && time > st.last_seen && st.last_seen > st.first_seen {
            let own_rate = st.count.saturating_sub(1) as f64 / (st.last_seen - st.first_seen);
            let gap = time - st.last_seen;
            let chance = (-own_rate * gap).exp();
            signals.add(w.silence, 1.0 - chance / 0.01, || {
                format!(
                    "back after a silence of {} (usually every {})",
                    duration(gap),
                    duration(1.0 / own_rate)
                )
            });
        }
    }

    fn learn(
        &mut self,
        id: TemplateId,
        created: bool,
        parameters: &[(u32, &str)],
        severity: Option<Severity>,
        time: f64,
    ) {
        let decay = self.decay();
        let lines = self.lines_seen;
        let p = &self.params;
        let st = self.stats.entry(id).or_insert_with(|| Stats {
            count: 0,
            decayed: 0.0,
            decayed_at: lines,
            first_line: lines,
            first_seen: time,
            last_seen: time,
            levels: [0; 9],
            window_start: time,
            window_count: 0,
            previous_count: 0,
            slots: Vec::new(),
        });
        st.count = st.count.saturating_add(1);
        st.decayed = st.decayed * decay.powf(lines.saturating_sub(st.decayed_at) as f64) + 1.0;
        st.decayed_at = lines;
        st.first_seen = st.first_seen.min(time);
        st.last_seen = st.last_seen.max(time);
        let level = &mut st.levels[severity.map_or(8, |s| s as usize)];
        *level = level.saturating_add(1);
        // Sliding-window counter.
        let elapsed = time - st.window_start;
        // A line far older than the window (out of order, or a window started by a line dated ahead) starts over.
        if elapsed >= 2.0 * p.window_seconds || elapsed < -p.window_seconds {
            st.previous_count = 0;
            st.window_count = 0;
            st.window_start = time;
        } else if elapsed >= p.window_seconds {
            st.previous_count = st.window_count;
            st.window_count = 0;
            st.window_start += p.window_seconds;
        }
        st.window_count = st.window_count.saturating_add(1);
        for (slot, value) in parameters {
            let i = match st.slots.iter().position(|x| x.slot == *slot) {
                Some(i) => i,
                None if st.slots.len() < p.max_parameters => {
                    st.slots.push(Slot {
                        slot: *slot,
                        ..Slot::default()
                    });
                    st.slots.len() - 1
                }
                None => continue,
            };
            learn_value(&mut st.slots[i], value, p.max_values);
        }
        self.lines_seen += 1;
        self.new_rate = 0.99 * self.new_rate + if created { 0.01 } else { 0.0 };
        // The first line's time: one line dated far back later cannot stretch every template's history.
        self.origin.get_or_insert(time);
    }
}

fn line_time(line: &str, now: f64) -> Result<f64> {
    if !now.is_finite() {
        return Err(Error::NonFinite {
            row: 0,
            column: 0,
            value: now,
        });
    }
    Ok(time_in_line(line).unwrap_or(now))
}

/// The template's lines in the last `window` seconds before `time` (sliding-window estimate).
fn window_count(st: &Stats, time: f64, window: f64) -> f64 {
    let elapsed = time - st.window_start;
    if elapsed >= 2.0 * window {
        0.0
    } else if elapsed >= window {
        st.window_count as f64 * (1.0 - (elapsed - window) / window)
    } else {
        st.window_count as f64 + st.previous_count as f64 * (1.0 - elapsed.max(0.0) / window)
    }
}

/// `P(X < k)` for `X ~ Poisson(λ)`: summed exactly for `λ ≤ 500` (where `e^(−λ)` does not underflow), by the
/// normal approximation with continuity correction beyond.
fn poisson_below(k: u64, lambda: f64) -> f64 {
    if lambda > 500.0 {
        let z = (k as f64 - 0.5 - lambda) / lambda.sqrt();
        return 0.5 * erfc(-z / std::f64::consts::SQRT_2);
    }
    let mut term = (-lambda).exp();
    let mut sum = 0.0;
    for i in 0..k {
        sum += term;
        term *= lambda / (i + 1) as f64;
        // Past the mode the terms only shrink: stop once they no longer change the sum.
        if i as f64 > lambda && term <= sum * 1e-17 {
            break;
        }
    }
    sum.min(1.0)
}

/// The complementary error function (Numerical Recipes' `erfcc`, relative error under 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// FNV-1a, 64 bits: a stable hash of a parameter value (stored in snapshots, so it must not change).
fn value_hash(value: &str) -> u64 {
    value.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn learn_value(s: &mut Slot, value: &str, max_values: usize) {
    s.count = s.count.saturating_add(1);
    if let Ok(v) = value.parse::<f64>()
        && v.is_finite()
    {
        s.numeric = s.numeric.saturating_add(1);
        s.range = Some(s.range.map_or((v, v), |(lo, hi)| (lo.min(v), hi.max(v))));
    }
    if s.overflowed {
        return;
    }
    let hash = value_hash(value);
    if let Some(e) = s.values.iter_mut().find(|(v, _)| *v == hash) {
        e.1 = e.1.saturating_add(1);
    } else if s.values.len() < max_values {
        s.values.push((hash, 1));
    } else {
        s.overflowed = true;
        s.values = Vec::new();
    }
}

/// Whether the slot holds numbers (nine in ten of its values at least), with their range.
fn numeric_range(s: &Slot) -> Option<(f64, f64)> {
    (u128::from(s.numeric) * 10 >= u128::from(s.count) * 9)
        .then_some(s.range)
        .flatten()
}

/// Whether the slot's values repeat enough for an unseen one to mean something.
fn judged_by_value(s: &Slot) -> bool {
    !s.overflowed && !s.values.is_empty() && (s.values.len() as u64).saturating_mul(4) <= s.count
}

/// How surprising `value` is for the slot.
fn slot_surprise(s: &Slot, value: &str) -> f64 {
    if let Some((lo, hi)) = numeric_range(s)
        && let Ok(v) = value.parse::<f64>()
    {
        let spread = (hi - lo).max(hi.abs().max(lo.abs()) * 0.1).max(1e-9);
        let excess = (lo - v).max(v - hi).max(0.0);
        return 1.0 - (-excess / spread).exp();
    }
    let hash = value_hash(value);
    if !judged_by_value(s) || s.values.iter().any(|(v, _)| *v == hash) {
        return 0.0;
    }
    1.0 - s.values.len() as f64 / s.count as f64
}

/// `value` cut to 64 characters for a reason.
fn short(value: &str) -> String {
    match value.char_indices().nth(64) {
        Some((end, _)) => format!("{}…", &value[..end]),
        None => value.to_string(),
    }
}

/// Why [`slot_surprise`] found `value` surprising.
fn slot_reason(s: &Slot, value: &str) -> String {
    let value = short(value);
    match numeric_range(s) {
        Some((lo, hi)) if value.parse::<f64>().is_ok() => {
            format!("parameter {value} outside this template's range {lo}–{hi}")
        }
        _ => format!(
            "parameter value {value:?} never seen for this template ({} values seen)",
            s.values.len()
        ),
    }
}

fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if !s.is_finite() {
        "never".into()
    } else if s < 120.0 {
        format!("{s:.0} s")
    } else if s < 7_200.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 172_800.0 {
        format!("{:.1} h", s / 3_600.0)
    } else {
        format!("{:.1} days", s / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> LogDetector {
        LogDetector::new(LogDetectorParams::default()).unwrap()
    }

    #[test]
    fn a_new_template_in_a_settled_system_stands_out() {
        let mut a = detector();
        for i in 0..500 {
            a.analyze(
                &format!(
                    "web-1 INFO user u{} logged in from 10.0.0.{}",
                    i % 7,
                    i % 200
                ),
                1e9 + i as f64,
            )
            .unwrap();
        }
        let usual = a
            .analyze("web-1 INFO user u3 logged in from 10.0.0.9", 1e9 + 500.0)
            .unwrap();
        let odd = a
            .analyze("INFO disk sda1 remounted read-only", 1e9 + 501.0)
            .unwrap();
        assert!(odd.new_template && !usual.new_template);
        assert!(odd.score > usual.score + 0.2, "{odd:?} vs {usual:?}");
        assert!(odd.reasons[0].contains("never seen"), "{:?}", odd.reasons);
        let error = a
            .score("web-1 ERROR user u3 logged in from 10.0.0.9", 1e9 + 502.0)
            .unwrap();
        assert!(error.score > usual.score, "{error:?}");
        assert!(
            error
                .reasons
                .iter()
                .any(|r| r.contains("unusual for this template")),
            "{:?}",
            error.reasons
        );
    }

    #[test]
    fn parameters_out_of_their_range_or_unseen_are_reasons() {
        let mut a = detector();
        for i in 0..200 {
            a.analyze(
                &format!("request to disk{} took {} ms", i % 3, 20 + i % 30),
                1e9 + i as f64,
            )
            .unwrap();
        }
        let slow = a
            .score("request to disk1 took 900 ms", 1e9 + 300.0)
            .unwrap();
        assert!(
            slow.reasons
                .iter()
                .any(|r| r.contains("outside this template's range")),
            "{slow:?}"
        );
        let normal = a.score("request to disk1 took 30 ms", 1e9 + 300.0).unwrap();
        assert!(slow.score > normal.score + 0.2);
    }

    #[test]
    fn a_template_known_long_but_seldom_seen_is_rare() {
        let mut a = LogDetector::new(LogDetectorParams {
            half_life_lines: 100.0,
            ..LogDetectorParams::default()
        })
        .unwrap();
        a.analyze("cache flushed by operator", 1e9).unwrap();
        for i in 0..300 {
            a.analyze(
                &format!("served page {} in {} ms", i % 50, i % 40),
                1e9 + i as f64,
            )
            .unwrap();
        }
        let v = a.analyze("cache flushed by operator", 1e9 + 301.0).unwrap();
        assert!(
            v.reasons.iter().any(|r| r.starts_with("rare template")),
            "{v:?}"
        );
    }

    #[test]
    fn a_burst_is_a_reason() {
        let mut a = detector();
        // One line an hour for two days, then ten in a minute.
        for i in 0..48 {
            a.analyze("WARNING fan speed low", 1e9 + 3600.0 * i as f64)
                .unwrap();
        }
        let t = 1e9 + 3600.0 * 48.0;
        let mut last = None;
        for i in 0..10 {
            last = Some(
                a.analyze("WARNING fan speed low", t + 6.0 * i as f64)
                    .unwrap(),
            );
        }
        let last = last.unwrap();
        assert!(
            last.reasons.iter().any(|r| r.starts_with("burst")),
            "{last:?}"
        );
    }

    #[test]
    fn state_survives_serialisation_and_hostile_state_is_refused() {
        let mut a = detector();
        for i in 0..50 {
            a.analyze(&format!("job {i} finished in {} s", i % 9), 1e9 + i as f64)
                .unwrap();
        }
        let json = serde_json::to_string(&a).unwrap();
        let back: LogDetector = serde_json::from_str(&json).unwrap();
        let restored = LogDetector::from_snapshot_bytes(&a.to_snapshot_bytes()).unwrap();
        assert_eq!(restored, a);
        assert_eq!(
            back.score("job 7 finished in 3 s", 2e9).unwrap(),
            a.score("job 7 finished in 3 s", 2e9).unwrap()
        );
        assert_eq!(back.templates(), a.templates());
        let hostile = json.replace("\"new_rate\":", "\"new_rate\":7,\"x\":");
        assert!(serde_json::from_str::<LogDetector>(&hostile).is_err());
        assert!(a.analyze("x", f64::NAN).is_err());
    }

    #[test]
    fn poisson_tails_hold_for_small_and_large_rates() {
        assert!((poisson_below(1, 2.0) - (-2.0f64).exp()).abs() < 1e-12);
        assert!((poisson_below(3, 1.0) - 2.5 * (-1.0f64).exp()).abs() < 1e-12);
        // Beyond e^(-λ)'s range: a count at the mean is about even, far above it certain.
        assert!((poisson_below(1_000, 1_000.0) - 0.5).abs() < 0.02);
        assert!(poisson_below(2_000, 1_000.0) > 0.999_999);
        assert!(poisson_below(900, 1_000.0) < 0.001);
        assert!((poisson_below(u64::MAX, 3.0) - 1.0).abs() < 1e-12);
        assert!((erfc(0.0) - 1.0).abs() < 1e-7 && (erfc(1.0) - 0.157_299_207).abs() < 1e-6);
    }

    #[test]
    fn the_score_stays_in_the_unit_interval() {
        let mut a = detector();
        for line in ["", " ", "FATAL FATAL", "\u{0}\u{1}", &"x ".repeat(10_000)] {
            let v = a.analyze(line, 1e9).unwrap();
            assert!((0.0..=1.0).contains(&v.score));
        }
    }
}
