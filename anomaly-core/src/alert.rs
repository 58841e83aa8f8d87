//! Turning per-point verdicts into alerts: a minimum streak, then one alert per incident.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When a run of anomalous verdicts becomes an alert, and when the incident is over.
///
/// An alert is raised when `min_consecutive` anomalous points come in a row. The incident then stays open, raising
/// nothing more, until `cooldown` normal points in a row close it (hysteresis), so one incident raises one alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Anomalous points in a row that raise an alert (at least 1).
    pub min_consecutive: usize,
    /// Normal points in a row that close an open incident (0: the first normal point closes it).
    pub cooldown: usize,
}

impl Default for AlertRule {
    /// Three in a row; five quiet points close the incident.
    fn default() -> Self {
        AlertRule {
            min_consecutive: 3,
            cooldown: 5,
        }
    }
}

/// What one verdict did to the alert state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertTransition {
    /// Nothing changed that anyone needs to hear about.
    None,
    /// A new incident: raise one alert.
    Raised,
    /// The open incident is over.
    Resolved,
}

/// The state of an [`AlertRule`] over one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    rule: AlertRule,
    streak: usize,
    quiet: usize,
    open: bool,
    raised: u64,
}

impl AlertRule {
    /// Checks the rule and starts its state.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `min_consecutive` is 0.
    pub fn start(self) -> Result<AlertState> {
        if self.min_consecutive == 0 {
            return Err(Error::invalid("min_consecutive", "must be at least 1"));
        }
        Ok(AlertState {
            rule: self,
            streak: 0,
            quiet: 0,
            open: false,
            raised: 0,
        })
    }
}

impl AlertState {
    /// Feeds one verdict (`true` = anomalous).
    pub fn observe(&mut self, anomalous: bool) -> AlertTransition {
        if anomalous {
            self.streak += 1;
            self.quiet = 0;
            if !self.open && self.streak >= self.rule.min_consecutive {
                self.open = true;
                self.raised += 1;
                return AlertTransition::Raised;
            }
            AlertTransition::None
        } else {
            self.streak = 0;
            if self.open {
                self.quiet += 1;
                if self.quiet >= self.rule.cooldown.max(1) {
                    self.open = false;
                    self.quiet = 0;
                    return AlertTransition::Resolved;
                }
            }
            AlertTransition::None
        }
    }

    /// Whether an incident is open.
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Alerts raised so far.
    pub fn raised(&self) -> u64 {
        self.raised
    }

    /// The rule.
    pub fn rule(&self) -> AlertRule {
        self.rule
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rule: AlertRule, pattern: &str) -> Vec<AlertTransition> {
        let mut s = rule.start().unwrap();
        pattern.chars().map(|c| s.observe(c == 'x')).collect()
    }

    #[test]
    fn needs_a_streak_and_raises_once_per_incident() {
        let rule = AlertRule {
            min_consecutive: 3,
            cooldown: 2,
        };
        let t = run(rule, "xx.xxx.x.xxxx..xxx");
        let raised: Vec<usize> = t
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == AlertTransition::Raised)
            .map(|(i, _)| i)
            .collect();
        // Raised at the third x of "xxx"; the flicker after it stays in the incident; two quiet points close it.
        assert_eq!(raised, vec![5, 17]);
        assert_eq!(t[14], AlertTransition::Resolved);
    }

    #[test]
    fn zero_streak_is_rejected() {
        assert!(
            AlertRule {
                min_consecutive: 0,
                cooldown: 0
            }
            .start()
            .is_err()
        );
    }
}
