//! The Hasura DDN pre-response plugin request, parsed with errors that name the problem, and the query id.

use anomaly_core::records::flatten::type_name;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::PluginError;

/// One call of the pre-response hook.
#[derive(Debug, Clone, PartialEq)]
pub struct HookRequest {
    /// The GraphQL query text.
    pub query: String,
    /// Its operation name.
    pub operation_name: Option<String>,
    /// Its variables (`{}` when absent).
    pub variables: Value,
    /// The caller's role: the session's, else the `X-Hasura-Role` header.
    pub role: Option<String>,
    /// The caller: the session's `x-hasura-user-id`, else the `X-Hasura-User` header.
    pub user: Option<String>,
    /// The root fields of the response's `data`, by name, with their values.
    pub datasets: Vec<(String, Value)>,
    /// The response's GraphQL `errors`, if any.
    pub errors: Option<Value>,
}

fn bad(reason: impl Into<String>) -> PluginError {
    PluginError::BadRequest(reason.into())
}

fn optional_string(
    obj: &Map<String, Value>,
    field: &str,
    at: &str,
) -> Result<Option<String>, PluginError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(format!(
            "`{at}.{field}` must be a string, not {}",
            type_name(other)
        ))),
    }
}

impl HookRequest {
    /// Parses a request body; `header_role` and `header_user` are the `X-Hasura-Role` / `X-Hasura-User` headers,
    /// used when the session does not say.
    ///
    /// # Errors
    /// [`PluginError::BadRequest`] naming the problem: not JSON, not an object, `rawRequest` missing or not an
    /// object, `rawRequest.query` missing or not a string, fields of the wrong type.
    pub fn parse(
        body: &[u8],
        header_role: Option<&str>,
        header_user: Option<&str>,
    ) -> Result<Self, PluginError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
        let Value::Object(root) = value else {
            return Err(bad(format!(
                "the body must be a JSON object, not {}",
                type_name(&value)
            )));
        };
        let raw = match root.get("rawRequest") {
            Some(Value::Object(raw)) => raw,
            None | Some(Value::Null) => return Err(bad("`rawRequest` is missing")),
            Some(other) => {
                return Err(bad(format!(
                    "`rawRequest` must be an object, not {}",
                    type_name(other)
                )));
            }
        };
        let query = optional_string(raw, "query", "rawRequest")?
            .ok_or_else(|| bad("`rawRequest.query` is missing"))?;
        let operation_name = optional_string(raw, "operationName", "rawRequest")?;
        let variables = match raw.get("variables") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => {
                return Err(bad(format!(
                    "`rawRequest.variables` must be an object, not {}",
                    type_name(other)
                )));
            }
        };
        let (mut role, mut user) = (None, None);
        match root.get("session") {
            None | Some(Value::Null) => {}
            Some(Value::Object(session)) => {
                role = optional_string(session, "role", "session")?;
                if let Some(Value::Object(vars)) = session.get("variables") {
                    let lookup = |name: &str| {
                        vars.iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case(name))
                            .and_then(|(_, v)| v.as_str().map(str::to_string))
                    };
                    role = role.or_else(|| lookup("x-hasura-role"));
                    user = lookup("x-hasura-user-id").or_else(|| lookup("x-hasura-user"));
                }
            }
            Some(other) => {
                return Err(bad(format!(
                    "`session` must be an object, not {}",
                    type_name(other)
                )));
            }
        }
        let role = role.or_else(|| header_role.map(str::to_string));
        let user = user.or_else(|| header_user.map(str::to_string));
        let (datasets, errors) = match root.get("response") {
            None | Some(Value::Null) => (Vec::new(), None),
            Some(Value::Object(response)) => {
                let datasets = match response.get("data") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Object(data)) => {
                        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
                    }
                    Some(other) => {
                        return Err(bad(format!(
                            "`response.data` must be an object, not {}",
                            type_name(other)
                        )));
                    }
                };
                (
                    datasets,
                    response.get("errors").filter(|e| !e.is_null()).cloned(),
                )
            }
            Some(other) => {
                return Err(bad(format!(
                    "`response` must be an object, not {}",
                    type_name(other)
                )));
            }
        };
        Ok(HookRequest {
            query,
            operation_name,
            variables,
            role,
            user,
            datasets,
            errors,
        })
    }
}

/// The records of a root field: an array's objects, a single object, or nothing for `null`.
///
/// # Errors
/// [`PluginError::BadRequest`] for an array holding something other than objects, or a scalar.
pub fn records_of(dataset: &str, value: &Value) -> Result<Vec<Value>, PluginError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(_) => Ok(vec![value.clone()]),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(_) => Ok(item.clone()),
                other => Err(bad(format!(
                    "`response.data.{dataset}[{i}]` must be an object, not {}",
                    type_name(other)
                ))),
            })
            .collect(),
        other => Err(bad(format!(
            "`response.data.{dataset}` must be an object or an array of objects, not {}",
            type_name(other)
        ))),
    }
}

/// The query id: the first 16 hex digits of the SHA-256 of the normalised query text (comments removed, runs of
/// whitespace and commas collapsed, outside string literals), so formatting does not change it.
pub fn query_id(query: &str) -> String {
    let normal = normalise(query);
    let digest = Sha256::digest(normal.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn normalise(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.chars().peekable();
    let mut pending_space = false;
    while let Some(c) = chars.next() {
        match c {
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                pending_space = true;
            }
            '"' => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            c if c.is_whitespace() || c == ',' => pending_space = true,
            c => {
                let punct = |c: char| "{}()[]:=!$@|&.".contains(c);
                if pending_space && !out.is_empty() && !punct(c) && !out.ends_with(punct) {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{HookRequest, query_id, records_of};
    use serde_json::json;

    #[test]
    fn the_query_id_ignores_formatting_but_not_content() {
        let a = "query Orders { orders(limit: 10) { id amount } }";
        let b = "query Orders {\n  orders(limit: 10) {\n    id, amount # the total\n  }\n}\n";
        assert_eq!(query_id(a), query_id(b));
        assert_ne!(
            query_id(a),
            query_id("query Orders { orders(limit: 11) { id amount } }")
        );
        assert_ne!(
            query_id(r#"{ f(s: "a  b") }"#),
            query_id(r#"{ f(s: "a b") }"#),
            "whitespace inside strings counts"
        );
        assert_eq!(query_id(a).len(), 16);
    }

    #[test]
    fn requests_parse_and_problems_are_named() {
        let body = json!({
            "session": {"role": "user", "variables": {"x-hasura-user-id": "42"}},
            "rawRequest": {"query": "{ orders { id } }", "variables": null, "operationName": "Orders"},
            "response": {"data": {"orders": [{"id": 1}], "me": {"id": 2}, "gone": null}}
        });
        let r = HookRequest::parse(body.to_string().as_bytes(), Some("admin"), None).unwrap();
        assert_eq!(
            r.role.as_deref(),
            Some("user"),
            "the session wins over headers"
        );
        assert_eq!(r.user.as_deref(), Some("42"));
        assert_eq!(r.datasets.len(), 3);
        let dataset = |name: &str| {
            r.datasets
                .iter()
                .find(|(n, _)| n == name)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(records_of("me", &dataset("me")).unwrap().len(), 1);
        assert!(records_of("gone", &dataset("gone")).unwrap().is_empty());

        let headers_only = json!({"rawRequest": {"query": "{ a }"}});
        let r = HookRequest::parse(
            headers_only.to_string().as_bytes(),
            Some("admin"),
            Some("7"),
        )
        .unwrap();
        assert_eq!(
            (r.role.as_deref(), r.user.as_deref()),
            (Some("admin"), Some("7"))
        );

        for (body, says) in [
            ("not json", "not JSON"),
            ("[1]", "must be a JSON object"),
            ("{}", "`rawRequest` is missing"),
            (r#"{"rawRequest": 3}"#, "`rawRequest` must be an object"),
            (r#"{"rawRequest": {}}"#, "`rawRequest.query` is missing"),
            (
                r#"{"rawRequest": {"query": 1}}"#,
                "`rawRequest.query` must be a string",
            ),
            (
                r#"{"rawRequest": {"query": "q", "variables": []}}"#,
                "variables` must be an object",
            ),
            (
                r#"{"rawRequest": {"query": "q"}, "response": {"data": 1}}"#,
                "`response.data` must",
            ),
        ] {
            let err = HookRequest::parse(body.as_bytes(), None, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{body}: {err}");
        }
        assert!(
            records_of("xs", &json!([1]))
                .unwrap_err()
                .to_string()
                .contains("xs[0]")
        );
    }
}
