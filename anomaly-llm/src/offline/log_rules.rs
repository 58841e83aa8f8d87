//! The offline log analysis: severity and failure vocabulary, weighed against the template's history.
//!
//! A line's *badness* is the larger of its severity (FATAL/CRITICAL/PANIC 1, ERROR 0.8, WARN 0.45, else 0) and
//! its failure vocabulary (0.35 per distinct failure word, at most 1). What counts is the surprise against the
//! template's history: the badness less the template's usual error share (shrunk towards 0 while the template has
//! fewer than [`SETTLED`] occurrences), plus a rarity term `0.3 / (1 + occurrences)` for a template seldom or
//! never seen. A template that normally says "error" is therefore not anomalous for saying error; a normally quiet
//! one that starts failing is. Without template information the score is the badness itself.
//!
//! Hostile markers (injection patterns, 0.9) are weighed the same way: in a settled template (at least
//! [`SETTLED`] occurrences) whose pattern is known, a marker counts only when it sits in the pattern's variable
//! part — a template that always logs `DROP TABLE` or `$(` describes itself, and the line is as routine as its
//! history. In a rare or new template, or when the pattern is unknown, every marker counts.

use super::patterns::{Hit, first_per_kind, marker_counts};
use crate::logs::{LineAssessment, LogAnalysis, LogBatch, LogCategory, LogLine};

/// Occurrences after which a template's error share is taken at face value.
pub(crate) const SETTLED: u64 = 20;

const FAILURE: &[&str] = &[
    "exception",
    "failed",
    "failure",
    "error",
    "refused",
    "unreachable",
    "crash",
    "panic",
    "segfault",
    "segmentation fault",
    "traceback",
    "stack trace",
    "corrupt",
    "abort",
    "fatal",
    "unavailable",
    "denied",
    "cannot",
    "could not",
    "unable to",
];
const PERFORMANCE: &[&str] = &[
    "timeout",
    "timed out",
    "deadline exceeded",
    "slow",
    "latency",
    "took too long",
];
const RESOURCE: &[&str] = &[
    "out of memory",
    "oom",
    "killed process",
    "no space left",
    "disk full",
    "too many open files",
    "quota exceeded",
    "memory limit",
    "resource exhausted",
];
const SECURITY: &[&str] = &[
    "unauthorized",
    "forbidden",
    "authentication failed",
    "invalid password",
    "login failed",
    "brute force",
    "permission denied",
    "access denied",
    "invalid token",
    "csrf",
    "privilege",
    "sudo",
];

fn words_in(text: &str, list: &[&'static str]) -> Vec<&'static str> {
    list.iter()
        .copied()
        .filter(|w| {
            text.match_indices(w).any(|(i, _)| {
                let before = text[..i].chars().next_back();
                let after = text[i + w.len()..].chars().next();
                !before.is_some_and(char::is_alphanumeric)
                    && !after.is_some_and(char::is_alphanumeric)
            })
        })
        .collect()
}

/// Severity of a line from its level keyword, in `[0, 1]`.
pub(crate) fn severity(text: &str) -> f64 {
    let upper = text.to_ascii_uppercase();
    let has = |w: &str| {
        upper.match_indices(w).any(|(i, _)| {
            let before = upper[..i].chars().next_back();
            let after = upper[i + w.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_alphanumeric())
                && !after.is_some_and(|c| c.is_ascii_alphanumeric())
        })
    };
    if ["FATAL", "CRITICAL", "CRIT", "PANIC", "EMERG", "ALERT"]
        .iter()
        .any(|w| has(w))
    {
        1.0
    } else if ["ERROR", "ERR", "SEVERE"].iter().any(|w| has(w)) {
        0.8
    } else if ["WARN", "WARNING"].iter().any(|w| has(w)) {
        0.45
    } else {
        0.0
    }
}

/// The pattern's constant text: the masks of its variables (`<*>`, and upper-case ones such as `<NUM>` or
/// `<IP>`) replaced by spaces.
fn constant_text(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut rest = pattern;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let mask_len = after.find('>').filter(|&end| {
            end > 0
                && end <= 16
                && after[..end]
                    .chars()
                    .all(|c| c == '*' || c == '_' || c.is_ascii_uppercase() || c.is_ascii_digit())
        });
        match mask_len {
            Some(end) => {
                out.push_str(&rest[..start]);
                out.push(' ');
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[..=start]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The hostile markers of a line that count (at most one per kind), and those left out because the settled
/// template's constant text holds them.
fn hostile_hits(line: &LogLine) -> (Vec<Hit>, Vec<Hit>) {
    let found = marker_counts(&line.text);
    let fixed = line
        .template
        .as_ref()
        .filter(|t| t.history.is_some_and(|h| h.occurrences >= SETTLED))
        .and_then(|t| t.pattern.as_deref())
        .map(|p| marker_counts(&constant_text(p)))
        .unwrap_or_default();
    let in_template = |hit: &Hit| fixed.iter().find(|(h, _)| h == hit).map_or(0, |(_, n)| *n);
    let (counted, discounted): (Vec<_>, Vec<_>) = found
        .into_iter()
        .partition(|(hit, n)| *n > in_template(hit));
    (
        first_per_kind(counted.into_iter().map(|(h, _)| h)),
        first_per_kind(discounted.into_iter().map(|(h, _)| h)),
    )
}

/// Assesses one line.
pub(crate) fn assess(index: usize, line: &LogLine) -> LineAssessment {
    let lower = line.text.to_lowercase();
    let level = severity(&line.text);
    let failures = words_in(&lower, FAILURE);
    let performance = words_in(&lower, PERFORMANCE);
    let resource = words_in(&lower, RESOURCE);
    let mut security = words_in(&lower, SECURITY);
    let (hostile, routine_markers) = hostile_hits(line);
    let vocab = (0.35 * (failures.len() + performance.len() + resource.len()) as f64).min(1.0);
    let mut badness = level.max(vocab);
    if !hostile.is_empty() {
        badness = badness.max(0.9);
    } else if !security.is_empty() {
        badness = badness.max(0.6);
    }
    let history = line.template.as_ref().and_then(|t| t.history);
    let (baseline, rarity, known) = match history {
        Some(h) => {
            let share = if h.error_share.is_finite() {
                h.error_share.clamp(0.0, 1.0)
            } else {
                0.0
            };
            let weight = (h.occurrences.min(SETTLED) as f64) / SETTLED as f64;
            (share * weight, 0.3 / (1.0 + h.occurrences as f64), true)
        }
        None => (0.0, 0.0, false),
    };
    let score = ((badness - baseline).max(0.0) + rarity).clamp(0.0, 1.0);

    let category = if !hostile.is_empty() || !security.is_empty() {
        LogCategory::Security
    } else if !resource.is_empty() {
        LogCategory::Resource
    } else if !performance.is_empty() {
        LogCategory::Performance
    } else if badness >= 0.5 && score >= 0.3 {
        LogCategory::Error
    } else if known && history.is_some_and(|h| h.occurrences < 3) && score >= 0.2 {
        LogCategory::Novel
    } else {
        LogCategory::Normal
    };

    let mut why = Vec::new();
    if level > 0.0 {
        why.push(format!(
            "severity {}",
            if level >= 1.0 {
                "fatal"
            } else if level >= 0.8 {
                "error"
            } else {
                "warning"
            }
        ));
    }
    let mut vocabulary: Vec<&str> = failures
        .into_iter()
        .chain(performance)
        .chain(resource)
        .collect();
    vocabulary.append(&mut security);
    if !vocabulary.is_empty() {
        vocabulary.truncate(4);
        why.push(format!("failure vocabulary ({})", vocabulary.join(", ")));
    }
    if let Some(h) = hostile.first() {
        why.push(format!(
            "{} pattern (`{}`)",
            h.kind.replace('_', " "),
            h.marker
        ));
    } else if let Some(h) = routine_markers.first() {
        why.push(format!("`{}` is part of the template's own text", h.marker));
    }
    match history {
        Some(h) if h.occurrences == 0 => why.push("template never seen before".into()),
        Some(h) if h.occurrences < SETTLED => {
            why.push(format!("template seen only {} times", h.occurrences))
        }
        Some(h) => why.push(format!(
            "template usually at error level in {:.0}% of {} lines",
            h.error_share.clamp(0.0, 1.0) * 100.0,
            h.occurrences
        )),
        None => {}
    }
    let reason = if why.is_empty() {
        "routine line".to_string()
    } else {
        why.join("; ")
    };
    LineAssessment {
        line_index: index,
        score,
        category,
        reason,
    }
}

/// Analyses one batch.
pub(crate) fn analyze(batch: &LogBatch) -> LogAnalysis {
    LogAnalysis {
        lines: batch
            .lines
            .iter()
            .map(|l| assess(l.index, &l.line))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogTemplate, TemplateHistory};
    use proptest::prelude::*;

    fn with_history(text: &str, occurrences: u64, error_share: f64) -> LogLine {
        LogLine::new(text).with_template(LogTemplate {
            id: "t".into(),
            pattern: None,
            history: Some(TemplateHistory {
                occurrences,
                error_share,
            }),
        })
    }

    #[test]
    fn the_templates_history_decides_what_an_error_means() {
        let usual = assess(
            0,
            &with_history("ERROR connection refused to db-1", 500, 0.95),
        );
        let quiet = assess(
            0,
            &with_history("ERROR connection refused to db-1", 500, 0.01),
        );
        assert!(usual.score < 0.2, "{usual:?}");
        assert!(quiet.score > 0.7, "{quiet:?}");
        assert_eq!(quiet.category, LogCategory::Error);
        assert_eq!(usual.category, LogCategory::Normal);
    }

    #[test]
    fn routine_new_security_and_resource_lines() {
        let routine = assess(0, &with_history("INFO request served in 12ms", 10_000, 0.0));
        assert!(routine.score < 0.05, "{routine:?}");
        let new = assess(0, &with_history("INFO cache warmed", 0, 0.0));
        assert!((new.score - 0.3).abs() < 1e-9);
        let sec = assess(
            0,
            &LogLine::new("WARN login failed for admin from 10.0.0.9"),
        );
        assert_eq!(sec.category, LogCategory::Security);
        let injected = assess(
            0,
            &LogLine::new("GET /search?q=' UNION SELECT password FROM users"),
        );
        assert_eq!(injected.category, LogCategory::Security);
        assert!(injected.score >= 0.9);
        let oom = assess(
            0,
            &LogLine::new("kernel: Out of memory: Killed process 991 (java)"),
        );
        assert_eq!(oom.category, LogCategory::Resource);
        assert!(severity("terror is not an error level") > 0.0);
        assert_eq!(severity("terrors"), 0.0);
    }

    fn templated(text: &str, pattern: &str, occurrences: u64) -> LogLine {
        LogLine::new(text).with_template(LogTemplate {
            id: "t".into(),
            pattern: Some(pattern.into()),
            history: Some(TemplateHistory {
                occurrences,
                error_share: 0.0,
            }),
        })
    }

    #[test]
    fn a_marker_in_a_settled_templates_own_text_is_routine() {
        for (text, pattern) in [
            (
                "DEBUG executing DROP TABLE tmp_import_42 after load",
                "DEBUG executing DROP TABLE <*> after load",
            ),
            (
                "INFO running hook $(date +%s) for job 7",
                "INFO running hook $(date +%s) for job <NUM>",
            ),
            (
                "INFO rendering template <script src=app.js> for /home",
                "INFO rendering template <script src=app.js> for <*>",
            ),
        ] {
            let frequent = assess(0, &templated(text, pattern, 50_000));
            assert!(frequent.score < 0.05, "{frequent:?}");
            assert_eq!(frequent.category, LogCategory::Normal, "{frequent:?}");
            assert!(frequent.reason.contains("part of the template's own text"));
            for occurrences in [0, 3] {
                let rare = assess(0, &templated(text, pattern, occurrences));
                assert!(rare.score >= 0.9, "{occurrences}: {rare:?}");
                assert_eq!(rare.category, LogCategory::Security);
            }
            let untemplated = assess(0, &LogLine::new(text));
            assert!(untemplated.score >= 0.9, "{untemplated:?}");
        }
    }

    #[test]
    fn a_marker_in_a_settled_templates_variable_part_counts() {
        let pattern = "INFO search for <*> served";
        let attack = assess(
            0,
            &templated(
                "INFO search for ' UNION SELECT password FROM users served",
                pattern,
                50_000,
            ),
        );
        assert!(attack.score >= 0.9, "{attack:?}");
        assert_eq!(attack.category, LogCategory::Security);
        // The same marker once in the constant text and once more in the variable part.
        let twice = assess(
            0,
            &templated(
                "DEBUG executing DROP TABLE a; DROP TABLE users after load",
                "DEBUG executing DROP TABLE <*> after load",
                50_000,
            ),
        );
        assert!(twice.score >= 0.9, "{twice:?}");
        assert_eq!(
            constant_text("a <*> b <NUM> c <script> <ip-1>"),
            "a   b   c <script> <ip-1>"
        );
    }

    proptest! {
        #[test]
        fn scores_stay_in_the_unit_interval(text in "\\PC{0,120}", occ in 0u64..1000, share in -1.0f64..2.0) {
            for line in [LogLine::new(text.clone()), with_history(&text, occ, share), with_history(&text, occ, f64::NAN)] {
                let a = assess(0, &line);
                prop_assert!(a.score.is_finite() && (0.0..=1.0).contains(&a.score), "{a:?}");
            }
        }
    }
}
