//! Strict checking of a model's JSON against the expected schema, and the one repair attempt.
//!
//! [`validate`] checks the subset of JSON Schema this crate's schemas use: `type` (one or a list), `properties`,
//! `required`, `additionalProperties: false`, `items`, `enum`, `const`, `minimum`, `maximum`, `minItems`,
//! `maxItems`, `minLength`, `maxLength`. Other keywords are ignored. [`extract_json`] finds the JSON in a text
//! answer (bare, in a Markdown fence, or after a sentence). [`complete_validated`] puts them together: ask,
//! check, ask once more quoting the problems, check, else [`LlmError::InvalidOutput`].
//!
//! When the request carries an analyser's [`Task`], the check goes beyond the schema: the answer must also parse
//! into the analyser's typed answer, and a log analysis must assess every line of its batch. A failure there is
//! a validation problem like any other — one repair, then [`LlmError::InvalidOutput`], so a fallback chain moves
//! on — rather than an error after the chain has already accepted the answer.

use std::collections::BTreeSet;

use serde_json::Value;
use tracing::{debug, warn};

use crate::error::{LlmError, Result};
use crate::logs::LogAnalysis;
use crate::provider::Provider;
use crate::query::QueryAnalysis;
use crate::request::{CompletionRequest, CompletionResponse, Message, Task};

/// Most problems reported per answer.
const MAX_ERRORS: usize = 10;

/// One problem of an answer, in two spellings: `full` quotes the offending value (for the repair prompt, and for
/// errors when the request allows logging contents); `redacted` names the place and the rule only, because an
/// answer's values can be copies of record data.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    full: String,
    redacted: String,
}

impl Problem {
    /// A problem that quotes no value of the answer.
    fn plain(text: String) -> Self {
        Problem {
            full: text.clone(),
            redacted: text,
        }
    }
}

/// The problems of `value` against `schema`, each `"<JSON pointer>: <reason>"`; empty when it matches.
///
/// ```
/// use anomaly_llm::validate::validate;
/// use serde_json::json;
///
/// let schema = json!({"type": "object", "required": ["score"], "additionalProperties": false,
///                     "properties": {"score": {"type": "number", "minimum": 0, "maximum": 1}}});
/// assert!(validate(&json!({"score": 0.5}), &schema).is_empty());
/// assert_eq!(validate(&json!({"score": 1.5}), &schema), ["/score: 1.5 is above the maximum 1"]);
/// ```
pub fn validate(value: &Value, schema: &Value) -> Vec<String> {
    problems(value, schema)
        .into_iter()
        .map(|p| p.full)
        .collect()
}

fn problems(value: &Value, schema: &Value) -> Vec<Problem> {
    let mut errors = Vec::new();
    check(value, schema, &mut String::new(), &mut errors);
    errors.truncate(MAX_ERRORS);
    errors
}

fn type_matches(value: &Value, ty: &str) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        // `3.0` and `-0.0` are numbers, not integers: the typed answer reads indices as `usize`, which refuses
        // them, so accepting them here would only move the failure past validation, repair and fallback.
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() { "/" } else { path }
}

fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn check(value: &Value, schema: &Value, path: &mut String, errors: &mut Vec<Problem>) {
    if errors.len() >= MAX_ERRORS {
        return;
    }
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(ty) = schema.get("type") {
        let ok = match ty {
            Value::String(t) => type_matches(value, t),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(value, t)),
            _ => true,
        };
        if !ok {
            errors.push(Problem::plain(format!(
                "{}: expected {}, got {}",
                at(path),
                short(ty),
                type_name(value)
            )));
            return;
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        let allowed = options.iter().map(short).collect::<Vec<_>>().join(", ");
        errors.push(Problem {
            full: format!("{}: {} is not one of {allowed}", at(path), short(value)),
            redacted: format!("{}: the value is not one of {allowed}", at(path)),
        });
    }
    if let Some(c) = schema.get("const")
        && c != value
    {
        errors.push(Problem::plain(format!(
            "{}: expected {}",
            at(path),
            short(c)
        )));
    }
    if let Some(x) = value.as_f64() {
        let min = schema.get("minimum").and_then(Value::as_f64);
        let max = schema.get("maximum").and_then(Value::as_f64);
        for (keyword, word, outside) in [
            ("minimum", "below", min.is_some_and(|m| x < m)),
            ("maximum", "above", max.is_some_and(|m| x > m)),
        ] {
            if outside {
                let limit = short(&schema[keyword]);
                errors.push(Problem {
                    full: format!(
                        "{}: {} is {word} the {keyword} {limit}",
                        at(path),
                        short(value)
                    ),
                    redacted: format!("{}: the value is {word} the {keyword} {limit}", at(path)),
                });
            }
        }
    }
    if let Some(s) = value.as_str() {
        let n = s.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
            && n < min
        {
            errors.push(Problem::plain(format!(
                "{}: shorter than {min} characters",
                at(path)
            )));
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
            && n > max
        {
            errors.push(Problem::plain(format!(
                "{}: longer than {max} characters",
                at(path)
            )));
        }
    }
    if let Some(items) = value.as_array() {
        let n = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            errors.push(Problem::plain(format!(
                "{}: fewer than {min} items",
                at(path)
            )));
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            errors.push(Problem::plain(format!(
                "{}: more than {max} items",
                at(path)
            )));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                check(item, item_schema, path, errors);
                path.truncate(len);
            }
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(name) {
                    errors.push(Problem::plain(format!(
                        "{}: missing property `{name}`",
                        at(path)
                    )));
                }
            }
        }
        for (key, v) in obj {
            let len = path.len();
            path.push('/');
            path.push_str(&key.replace('~', "~0").replace('/', "~1"));
            match props.and_then(|p| p.get(key)) {
                Some(sub) => check(v, sub, path, errors),
                None => match schema.get("additionalProperties") {
                    // The property's name is the model's choice, so it may be record data.
                    Some(Value::Bool(false)) => errors.push(Problem {
                        full: format!("{path}: unexpected property"),
                        redacted: format!("{}: unexpected property", at(&path[..len])),
                    }),
                    Some(sub @ Value::Object(_)) => check(v, sub, path, errors),
                    _ => {}
                },
            }
            path.truncate(len);
        }
    }
}

/// The JSON value in a model's text answer: the whole text, else the content of a Markdown code fence, else the
/// first balanced `{…}` or `[…]` that parses. `None` when there is none.
///
/// ```
/// use anomaly_llm::validate::extract_json;
/// use serde_json::json;
///
/// assert_eq!(extract_json("Here you go:\n```json\n{\"a\": 1}\n```"), Some(json!({"a": 1})));
/// assert_eq!(extract_json("The answer is {\"a\": [1, 2]}. Done."), Some(json!({"a": [1, 2]})));
/// assert_eq!(extract_json("no json here"), None);
/// ```
pub fn extract_json(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if let Ok(v) = serde_json::from_str::<Value>(trimmed)
        && (v.is_object() || v.is_array())
    {
        return Some(v);
    }
    // A fenced block: ```json … ``` or ``` … ```.
    let mut rest = trimmed;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let body_start = after.find('\n').map_or(0, |i| i + 1);
        let body = &after[body_start..];
        let Some(end) = body.find("```") else { break };
        if let Ok(v) = serde_json::from_str::<Value>(body[..end].trim()) {
            return Some(v);
        }
        rest = &body[end + 3..];
    }
    // The first balanced object or array that parses.
    for (start, open) in trimmed
        .char_indices()
        .filter(|(_, c)| *c == '{' || *c == '[')
    {
        if let Some(end) = balanced_end(&trimmed[start..], open)
            && let Ok(v) = serde_json::from_str::<Value>(&trimmed[start..start + end])
        {
            return Some(v);
        }
    }
    None
}

/// Byte length of the balanced bracket group at the start of `s` (which starts with `open`), strings respected.
fn balanced_end(s: &str, open: char) -> Option<usize> {
    let close = if open == '{' { '}' } else { ']' };
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in s.char_indices() {
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
            '"' => in_string = true,
            c if c == open => depth += 1,
            c if c == close => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + c.len_utf8());
                }
            }
            _ => {}
        }
    }
    None
}

/// What an analyser needs of an answer beyond its schema: that it parses into the typed answer, and for a log
/// analysis, one assessment for every line of the batch (so a line that talks the model into leaving it — or
/// every line — out cannot silence the LLM side of its batch).
fn task_problems(task: &Task, value: &Value) -> Vec<Problem> {
    fn unparsable(e: serde_json::Error, what: &str) -> Vec<Problem> {
        vec![Problem {
            full: format!("/: does not read as {what}: {e}"),
            redacted: format!("/: does not read as {what}"),
        }]
    }
    match task {
        Task::Query(_) => match serde_json::from_value::<QueryAnalysis>(value.clone()) {
            Ok(_) => Vec::new(),
            Err(e) => unparsable(e, "a query analysis"),
        },
        Task::Logs(batch) => match serde_json::from_value::<LogAnalysis>(value.clone()) {
            Ok(answer) => {
                let given: BTreeSet<usize> = answer.lines.iter().map(|l| l.line_index).collect();
                batch
                    .lines
                    .iter()
                    .filter(|l| !given.contains(&l.index))
                    .take(MAX_ERRORS)
                    .map(|l| {
                        Problem::plain(format!(
                            "/lines: no entry for line_index {}; every line of the batch needs one",
                            l.index
                        ))
                    })
                    .collect()
            }
            Err(e) => unparsable(e, "a log analysis"),
        },
    }
}

/// The answer's JSON if it matches the request's schema (and its task's needs), or the problems.
fn checked(
    response: &CompletionResponse,
    request: &CompletionRequest,
    schema: &Value,
) -> std::result::Result<Value, Vec<Problem>> {
    let json = response
        .json
        .clone()
        .or_else(|| extract_json(&response.text));
    let Some(v) = json else {
        return Err(vec![Problem::plain(
            "/: the answer is not JSON".to_string(),
        )]);
    };
    let mut errors = problems(&v, schema);
    if errors.is_empty()
        && let Some(task) = &request.task
    {
        errors = task_problems(task, &v);
    }
    if errors.is_empty() {
        Ok(v)
    } else {
        Err(errors)
    }
}

/// The request that asks the model to correct its answer: the original conversation, the answer, and the
/// problems found.
pub fn repair_request(
    request: &CompletionRequest,
    answer: &CompletionResponse,
    errors: &[String],
) -> CompletionRequest {
    let mut repair = request.clone();
    let previous = match &answer.json {
        Some(v) => v.to_string(),
        None => answer.text.clone(),
    };
    repair
        .messages
        .push(Message::assistant(if previous.is_empty() {
            "(empty answer)".to_string()
        } else {
            previous
        }));
    repair.messages.push(Message::user(format!(
        "Your previous answer does not match the required JSON schema:\n- {}\nAnswer again with only the corrected \
         JSON object, matching the schema exactly. Do not add any text.",
        errors.join("\n- ")
    )));
    repair
}

/// Sends `request` to `provider`; when the request has a schema, checks the answer against it, asks once for a
/// repair when it does not match, and returns the answer with [`json`](CompletionResponse::json) set to the
/// matching value. Without a schema the answer is returned as it is.
///
/// # Errors
/// The provider's errors, and [`LlmError::InvalidOutput`] when the repaired answer still does not match.
pub async fn complete_validated<P: Provider + ?Sized>(
    provider: &P,
    request: &CompletionRequest,
) -> Result<CompletionResponse> {
    let Some(schema) = &request.schema else {
        return provider.complete(request).await;
    };
    let mut response = provider.complete(request).await?;
    let errors = match checked(&response, request, &schema.schema) {
        Ok(v) => {
            response.json = Some(v);
            return Ok(response);
        }
        Err(errors) => errors,
    };
    warn!(
        provider = provider.name(),
        schema = %schema.name,
        problems = errors.len(),
        "answer does not match the schema; asking once for a repair"
    );
    let full: Vec<String> = errors.iter().map(|p| p.full.clone()).collect();
    if request.log_contents {
        debug!(provider = provider.name(), problems = ?full, text = %response.text, "invalid answer");
    }
    let repair = repair_request(request, &response, &full);
    let mut repaired = provider.complete(&repair).await?;
    repaired.usage.add(response.usage);
    match checked(&repaired, request, &schema.schema) {
        Ok(v) => {
            repaired.json = Some(v);
            Ok(repaired)
        }
        Err(errors) => Err(LlmError::InvalidOutput {
            provider: provider.name().to_string(),
            schema: schema.name.clone(),
            // The error is displayed and logged (a fallback chain warns with it): the answer's values stay out
            // of it unless the caller allowed logging contents.
            errors: errors
                .into_iter()
                .map(|p| {
                    if request.log_contents {
                        p.full
                    } else {
                        p.redacted
                    }
                })
                .collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["items", "ok"],
            "properties": {
                "ok": {"type": "boolean"},
                "items": {"type": "array", "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["i", "level"],
                    "properties": {
                        "i": {"type": "integer", "minimum": 0},
                        "level": {"type": "string", "enum": ["low", "high"]}
                    }
                }}
            }
        })
    }

    #[test]
    fn reports_each_kind_of_problem_with_its_pointer() {
        assert!(
            validate(
                &json!({"ok": true, "items": [{"i": 1, "level": "low"}]}),
                &schema()
            )
            .is_empty()
        );
        let errors = validate(
            &json!({"ok": "yes", "items": [{"i": -1, "level": "extreme", "x": 1}, {"i": 1.5}], "extra": 0}),
            &schema(),
        );
        let joined = errors.join("\n");
        for expected in [
            "/ok: expected \"boolean\", got string",
            "/items/0/i: -1 is below the minimum 0",
            "/items/0/level: \"extreme\" is not one of \"low\", \"high\"",
            "/items/0/x: unexpected property",
            "/items/1: missing property `level`",
            "/items/1/i: expected \"integer\", got number",
            "/extra: unexpected property",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in\n{joined}"
            );
        }
        assert_eq!(
            validate(&json!([1]), &schema()),
            ["/: expected \"object\", got array"]
        );
    }

    #[test]
    fn integers_written_as_floats_are_not_integers() {
        let integer = json!({"type": "integer"});
        assert!(validate(&json!(3), &integer).is_empty());
        assert!(validate(&json!(u64::MAX), &integer).is_empty());
        for float in [json!(3.0), json!(-0.0), json!(1e20)] {
            assert_eq!(
                validate(&float, &integer),
                ["/: expected \"integer\", got number"],
                "{float}"
            );
        }
        assert!(validate(&json!(null), &json!({"type": ["string", "null"]})).is_empty());
    }

    #[test]
    fn redacted_problems_name_the_place_and_rule_but_not_the_value() {
        let answer =
            json!({"ok": true, "items": [{"i": -7, "level": "secret-value"}], "leaked-key": 1});
        let found = problems(&answer, &schema());
        let full: Vec<&str> = found.iter().map(|p| p.full.as_str()).collect();
        let redacted: Vec<&str> = found.iter().map(|p| p.redacted.as_str()).collect();
        assert!(full.iter().any(|p| p.contains("secret-value")), "{full:?}");
        assert!(full.iter().any(|p| p.contains("leaked-key")), "{full:?}");
        assert!(full.iter().any(|p| p.contains("-7")), "{full:?}");
        for p in &redacted {
            assert!(
                !p.contains("secret-value") && !p.contains("leaked-key") && !p.contains("-7"),
                "{p}"
            );
        }
        assert!(redacted.contains(&"/items/0/i: the value is below the minimum 0"));
        assert!(redacted.contains(&"/: unexpected property"));
    }

    /// Always answers `{"ok": "nope"}`.
    struct Stubborn;

    #[async_trait::async_trait]
    impl Provider for Stubborn {
        fn name(&self) -> &str {
            "stubborn"
        }
        async fn complete(&self, _: &CompletionRequest) -> Result<CompletionResponse> {
            let json = json!({"ok": "nope", "items": [{"i": 1, "level": "card 4111"}]});
            Ok(CompletionResponse::new(
                "stubborn",
                "m",
                Some(json),
                "",
                crate::request::StopReason::EndTurn,
            ))
        }
    }

    #[tokio::test]
    async fn invalid_output_quotes_values_only_when_contents_may_be_logged() {
        let request = CompletionRequest::new("s", "u").with_schema(crate::request::OutputSchema {
            name: "s".into(),
            description: "d".into(),
            schema: schema(),
        });
        let quiet = complete_validated(&Stubborn, &request).await.unwrap_err();
        assert!(!quiet.to_string().contains("4111"), "{quiet}");
        assert!(
            quiet
                .to_string()
                .contains("/items/0/level: the value is not one of"),
            "{quiet}"
        );
        let loud = complete_validated(&Stubborn, &request.with_log_contents(true))
            .await
            .unwrap_err();
        assert!(loud.to_string().contains("card 4111"), "{loud}");
    }

    #[test]
    fn extracts_json_from_prose_and_fences() {
        assert_eq!(extract_json(" {\"a\":1} "), Some(json!({"a": 1})));
        assert_eq!(extract_json("```\n[1,2]\n```"), Some(json!([1, 2])));
        assert_eq!(
            extract_json("text { not json } then {\"b\": \"}\"}"),
            Some(json!({"b": "}"}))
        );
        assert_eq!(extract_json("{\"a\": 1"), None);
        assert_eq!(extract_json("42"), None);
    }

    proptest! {
        #[test]
        fn extraction_never_panics(s in ".{0,200}") {
            let _ = extract_json(&s);
        }

        #[test]
        fn validation_never_panics_on_arbitrary_json(s in "[\\[\\]{}\",:0-9a-z .-]{0,120}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = validate(&v, &schema());
                let _ = validate(&schema(), &v);
            }
        }

        #[test]
        fn a_fenced_object_is_found_after_any_prose(prose in "[^`{\\[]{0,80}", n in 0i64..1000) {
            let text = format!("{prose}\n```json\n{{\"n\": {n}}}\n```\n");
            prop_assert_eq!(extract_json(&text), Some(json!({"n": n})));
        }
    }
}
