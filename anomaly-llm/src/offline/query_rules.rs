//! The offline query analysis: deterministic rules over the same input an LLM gets.

use std::collections::BTreeMap;

use anomaly_core::records::flatten::{self, Leaf, Limits};
use serde_json::Value;

use super::patterns::{
    for_each_string, injection_hits, random_name_reason, sensitive_field, sensitive_value,
};
use crate::query::{
    AnalysisMode, FindingCategory, QueryAnalysis, QueryBatch, QueryPatternAnalysis, RecordFinding,
    RiskLevel, SecurityConcern,
};

/// Roles that may see sensitive fields.
const PRIVILEGED_ROLES: &[&str] = &[
    "admin",
    "administrator",
    "superuser",
    "root",
    "owner",
    "system",
];

/// Pagination arguments whose value at or above [`LARGE_PAGE`] is excessive retrieval.
const PAGE_ARGUMENTS: &[&str] = &[
    "first",
    "last",
    "limit",
    "take",
    "pagesize",
    "page_size",
    "perpage",
    "per_page",
    "count",
    "size",
];
/// A page size that is excessive retrieval.
const LARGE_PAGE: f64 = 1_000.0;
/// Deepest selection nesting considered ordinary.
const MAX_ORDINARY_DEPTH: usize = 8;
/// A result ratio to the typical size at which excessive retrieval is high risk.
const HIGH_SIZE_RATIO: f64 = 10.0;
/// Records in a result without history that are worth a note.
const LARGE_BASELINE_RESULT: u64 = 10_000;
/// Strings of a record or of the variables scanned.
const MAX_STRINGS: usize = 2_000;

/// Field-name fragments of quantities that cannot be negative.
const NON_NEGATIVE: &[&str] = &[
    "amount", "price", "total", "quantity", "qty", "balance", "cost", "fee", "age", "count",
    "stock",
];

fn privileged(role: Option<&str>) -> Option<bool> {
    role.map(|r| PRIVILEGED_ROLES.contains(&r.trim().to_ascii_lowercase().as_str()))
}

fn concern(out: &mut Vec<SecurityConcern>, kind: &str, severity: RiskLevel, detail: String) {
    let c = SecurityConcern {
        kind: kind.to_string(),
        severity,
        detail,
    };
    if !out.contains(&c) {
        out.push(c);
    }
}

fn note(out: &mut Vec<String>, text: String) {
    if !out.contains(&text) {
        out.push(text);
    }
}

/// Analyses one batch.
pub(crate) fn analyze(batch: &QueryBatch) -> QueryAnalysis {
    let mut security = Vec::new();
    let mut pattern = QueryPatternAnalysis::default();
    let role = batch.role.as_deref();
    let privileged = privileged(role);

    // Injection in the query text and in the variables.
    for hit in injection_hits(&batch.query) {
        concern(
            &mut security,
            hit.kind,
            RiskLevel::High,
            format!("the query text contains `{}`", hit.marker),
        );
    }
    for_each_string(&batch.variables, MAX_STRINGS, &mut |path, s| {
        for hit in injection_hits(s) {
            concern(
                &mut security,
                hit.kind,
                RiskLevel::High,
                format!("variable `{path}` contains `{}`", hit.marker),
            );
        }
    });
    if let Some(name) = &batch.operation_name {
        for hit in injection_hits(name) {
            concern(
                &mut security,
                hit.kind,
                RiskLevel::High,
                format!("the operation name contains `{}`", hit.marker),
            );
        }
    }
    if !security.is_empty() {
        note(
            &mut pattern.concerns,
            "injection patterns in the query or its variables".into(),
        );
        note(
            &mut pattern.recommendations,
            "reject or sanitise the request; pass values only as typed variables".into(),
        );
    }

    // Introspection.
    if introspection(&batch.query) {
        let severity = if privileged == Some(true) {
            RiskLevel::Low
        } else {
            RiskLevel::Medium
        };
        concern(
            &mut security,
            "introspection",
            severity,
            "the query reads the schema (`__schema` / `__type`)".into(),
        );
        note(&mut pattern.concerns, "schema introspection".into());
        if privileged != Some(true) {
            note(
                &mut pattern.recommendations,
                "disable introspection for non-admin roles in production".into(),
            );
        }
    }

    // Operation name.
    match &batch.operation_name {
        Some(name) => {
            if let Some(reason) = random_name_reason(name) {
                note(
                    &mut pattern.concerns,
                    format!("obfuscated operation name: {reason}"),
                );
                note(
                    &mut pattern.recommendations,
                    "require registered (persisted) operation names".into(),
                );
            }
        }
        None => note(
            &mut pattern.recommendations,
            "name operations so that their history can be tracked".into(),
        ),
    }

    // Excessive retrieval: page sizes, depth, result size.
    for (arg, value) in page_arguments(&batch.query, &batch.variables) {
        note(
            &mut pattern.concerns,
            format!("excessive retrieval: `{arg}` = {value}"),
        );
        note(
            &mut pattern.recommendations,
            format!("cap page sizes below {LARGE_PAGE}"),
        );
    }
    let depth = selection_depth(&batch.query);
    if depth > MAX_ORDINARY_DEPTH {
        note(
            &mut pattern.concerns,
            format!("deeply nested selection (depth {depth})"),
        );
        note(
            &mut pattern.recommendations,
            "enforce a query depth limit".into(),
        );
    }
    let n_records = batch
        .stats
        .get("n_records")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    match (batch.mode, &batch.comparison) {
        (AnalysisMode::Compared, Some(c)) => {
            if let Some(size) = c.result_size.as_ref().filter(|r| r.flagged)
                && let Some(ratio) = size.ratio.filter(|r| *r > 1.0)
            {
                let severity = if ratio >= HIGH_SIZE_RATIO {
                    RiskLevel::High
                } else {
                    RiskLevel::Medium
                };
                let detail = format!(
                    "the result holds {} records, {:.1}× the typical {:.0}",
                    c.batch_records, ratio, size.typical_records
                );
                concern(
                    &mut security,
                    "excessive_data_retrieval",
                    severity,
                    detail.clone(),
                );
                note(
                    &mut pattern.concerns,
                    format!("excessive retrieval: {detail}"),
                );
                note(
                    &mut pattern.recommendations,
                    "paginate and rate-limit this operation".into(),
                );
            }
        }
        _ => {
            if n_records >= LARGE_BASELINE_RESULT {
                note(
                    &mut pattern.concerns,
                    format!("large result ({n_records} records) with no history to compare"),
                );
            }
            note(
                &mut pattern.recommendations,
                "baseline mode: keep the statistics of this result as history".into(),
            );
        }
    }

    // Sensitive fields in the result.
    let mut sensitive: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    if let Some(Value::Object(fields)) = batch.stats.get("fields") {
        for (path, f) in fields {
            let present = f.get("present").and_then(Value::as_u64).unwrap_or(1);
            let nulls = f.get("null_count").and_then(Value::as_u64).unwrap_or(0);
            if present > nulls
                && let Some(what) = sensitive_field(path)
            {
                sensitive.entry(what).or_default().push(path.clone());
            }
            if let Some(Value::Array(top)) = f.get("top_values") {
                for v in top
                    .iter()
                    .filter_map(|t| t.get("value").and_then(Value::as_str))
                {
                    if let Some(what) = sensitive_value(v) {
                        let label = format!("{path} (values)");
                        let paths = sensitive.entry(what).or_default();
                        if !paths.contains(&label) {
                            paths.push(label);
                        }
                    }
                }
            }
        }
    }
    if !sensitive.is_empty() && privileged != Some(true) {
        let severity = if privileged == Some(false) {
            RiskLevel::High
        } else {
            RiskLevel::Medium
        };
        for (what, paths) in &sensitive {
            concern(
                &mut security,
                "sensitive_data_exposure",
                severity,
                format!(
                    "{what} returned to role `{}`: {}",
                    role.unwrap_or("unknown"),
                    paths.join(", ")
                ),
            );
        }
        note(
            &mut pattern.concerns,
            "data leakage: sensitive fields in the result".into(),
        );
        note(
            &mut pattern.recommendations,
            "remove sensitive fields from selections allowed to this role".into(),
        );
    }

    // Findings per record.
    let mut findings = Vec::new();
    for r in &batch.records {
        record_findings(batch, r.index, &r.record, privileged, &mut findings);
    }

    pattern.typical = pattern.concerns.is_empty() && security.is_empty();
    QueryAnalysis {
        anomalies_detected: !findings.is_empty() || !security.is_empty(),
        findings,
        query_pattern_analysis: pattern,
        security_concerns: security,
    }
}

fn record_findings(
    batch: &QueryBatch,
    index: usize,
    record: &Value,
    privileged: Option<bool>,
    out: &mut Vec<RecordFinding>,
) {
    let mut push = |category, risk_level, reason: String| {
        out.push(RecordFinding {
            record_index: index,
            reason,
            risk_level,
            category,
        })
    };
    // Strings: hostile content, secrets by value, sensitive fields by name.
    let mut hostile = Vec::new();
    let mut secrets = Vec::new();
    for_each_string(record, MAX_STRINGS, &mut |path, s| {
        for hit in injection_hits(s) {
            hostile.push(format!(
                "`{path}` holds {} (`{}`)",
                hit.kind.replace('_', " "),
                hit.marker
            ));
        }
        if let Some(what) = sensitive_value(s) {
            secrets.push(format!("`{path}` holds a {what}"));
        }
    });
    if !hostile.is_empty() {
        push(
            FindingCategory::SecurityConcern,
            RiskLevel::Medium,
            format!("stored hostile content: {}", hostile.join("; ")),
        );
    }
    if !secrets.is_empty() && privileged != Some(true) {
        push(
            FindingCategory::SecurityConcern,
            RiskLevel::High,
            format!("sensitive value returned: {}", secrets.join("; ")),
        );
    }
    let mut named = Vec::new();
    if let Value::Object(map) = record {
        collect_named(map, "", &mut named, 0);
    }
    if !named.is_empty() && privileged != Some(true) {
        push(
            FindingCategory::SecurityConcern,
            if privileged == Some(false) {
                RiskLevel::High
            } else {
                RiskLevel::Medium
            },
            format!("sensitive fields with values: {}", named.join(", ")),
        );
    }

    // Numbers: range violations against history, impossible negatives.
    let Ok(leaves) = flatten::flatten(record, &Limits::default()) else {
        return;
    };
    let comparison = batch
        .comparison
        .as_ref()
        .filter(|_| batch.mode == AnalysisMode::Compared);
    for (path, leaf) in &leaves {
        let path: &str = path;
        match leaf {
            Leaf::Number(x) => {
                let x = *x;
                if let Some(r) =
                    comparison.and_then(|c| c.range_expansions.iter().find(|r| r.field == path))
                    && (x < r.history_min || x > r.history_max)
                {
                    let span = (r.history_max - r.history_min).abs().max(f64::EPSILON);
                    let beyond = if x > r.history_max {
                        x - r.history_max
                    } else {
                        r.history_min - x
                    };
                    let risk = if beyond > span {
                        RiskLevel::High
                    } else {
                        RiskLevel::Medium
                    };
                    push(
                        FindingCategory::RangeViolation,
                        risk,
                        format!(
                            "`{path}` = {x} is outside the history's range [{}, {}]",
                            r.history_min, r.history_max
                        ),
                    );
                }
                let last = path.rsplit('.').next().unwrap_or(path).to_ascii_lowercase();
                if x < 0.0
                    && !last.ends_with("len")
                    && NON_NEGATIVE.iter().any(|k| last.contains(k))
                {
                    push(
                        FindingCategory::BusinessLogic,
                        RiskLevel::Medium,
                        format!("`{path}` = {x} is negative, which a {last} should never be"),
                    );
                }
            }
            Leaf::String(s) => {
                if let Some(c) =
                    comparison.and_then(|c| c.category_changes.iter().find(|c| c.field == path))
                    && c.examples.iter().any(|e| e == s)
                {
                    push(
                        FindingCategory::UnusualCombination,
                        RiskLevel::Low,
                        format!(
                            "`{path}` = '{}' was never seen in the history",
                            crate::prompt::truncate_strings(&Value::String(s.to_string()), 60)
                                .as_str()
                                .unwrap_or_default()
                        ),
                    );
                }
            }
            _ => {}
        }
    }
    if let Some(c) = comparison {
        let new: Vec<&str> = leaves
            .iter()
            .map(|(p, _)| p.as_ref())
            .filter(|p| c.new_fields.iter().any(|f| f == p))
            .collect();
        if !new.is_empty() {
            push(
                FindingCategory::UnusualCombination,
                RiskLevel::Low,
                format!("fields never seen in the history: {}", new.join(", ")),
            );
        }
    }
}

/// Sensitive field names with a non-null value, as dotted paths.
fn collect_named(
    map: &serde_json::Map<String, Value>,
    prefix: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 32 || out.len() >= 20 {
        return;
    }
    for (k, v) in map {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Object(inner) => collect_named(inner, &path, out, depth + 1),
            Value::Null => {}
            _ => {
                if sensitive_field(k).is_some() {
                    out.push(format!("`{path}`"));
                }
            }
        }
    }
}

/// Whether the query reads the schema: `__schema` or `__type` (not `__typename`).
fn introspection(query: &str) -> bool {
    let q = query.to_ascii_lowercase();
    if q.contains("__schema") {
        return true;
    }
    q.match_indices("__type").any(|(i, _)| {
        q[i + 6..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

/// Pagination arguments at or above [`LARGE_PAGE`], in the query text (`first: 5000`) and the variables.
fn page_arguments(query: &str, variables: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let is_page = |name: &str| PAGE_ARGUMENTS.contains(&name.to_ascii_lowercase().as_str());
    let bytes = query.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_alphabetic() || bytes[i] == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let name = &query[start..i];
            let mut j = i;
            while j < bytes.len() && bytes[j] == b' ' {
                j += 1;
            }
            if j < bytes.len() && bytes[j] == b':' && is_page(name) {
                j += 1;
                while j < bytes.len() && bytes[j] == b' ' {
                    j += 1;
                }
                let num_start = j;
                while j < bytes.len() && bytes[j].is_ascii_digit() {
                    j += 1;
                }
                if let Ok(n) = query[num_start..j].parse::<f64>()
                    && n >= LARGE_PAGE
                {
                    out.push((name.to_string(), n));
                }
            }
        } else {
            i += 1;
        }
    }
    if let Value::Object(map) = variables {
        for (k, v) in map {
            if is_page(k)
                && let Some(n) = v.as_f64().filter(|n| *n >= LARGE_PAGE)
            {
                out.push((k.clone(), n));
            }
        }
    }
    out
}

/// Deepest `{` nesting of the query, strings and comments skipped.
fn selection_depth(query: &str) -> usize {
    let (mut depth, mut deepest, mut in_string, mut comment, mut escaped) =
        (0usize, 0usize, false, false, false);
    for c in query.chars() {
        if comment {
            comment = c != '\n';
            continue;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '#' => comment = true,
            '"' => in_string = true,
            '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn introspection_but_not_typename() {
        assert!(introspection("{ __schema { types { name } } }"));
        assert!(introspection(
            "{ __type(name: \"User\") { fields { name } } }"
        ));
        assert!(!introspection("{ users { id __typename } }"));
    }

    #[test]
    fn page_sizes_in_text_and_variables() {
        let found = page_arguments(
            "{ users(first: 50000) { id } orders(limit:10) { id } }",
            &json!({"take": 2000, "x": 9999}),
        );
        assert_eq!(
            found,
            vec![("first".to_string(), 50000.0), ("take".to_string(), 2000.0)]
        );
    }

    #[test]
    fn depth_skips_strings_and_comments() {
        assert_eq!(selection_depth("{ a { b { c } } }"), 3);
        assert_eq!(selection_depth("{ a(s: \"{{{{{{\") # {{{{\n { b } }"), 2);
    }
}
