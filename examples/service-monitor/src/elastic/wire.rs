//! Elasticsearch's answers as the client reads them: the error envelope, what is worth retrying, `_search` hits
//! and `_bulk` items.

use serde_json::Value;

/// Statuses the API documents as passing: too many requests, bad gateway, unavailable, gateway timeout.
const RETRYABLE_STATUSES: [u16; 4] = [429, 502, 503, 504];

/// What a failed request answered: its status, and the error's `type` and `reason` when the body is Elastic's
/// error envelope (`{"error": {"type", "reason", …}, "status"}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// `error.type`, e.g. `index_not_found_exception`; empty when the body was not an envelope.
    pub kind: String,
    /// `error.reason`, or the start of the body.
    pub reason: String,
    /// The type of the error's first cause (`error.caused_by` or `error.root_cause[0]`), when it names one:
    /// `search_context_missing_exception` says a point in time expired.
    pub cause: String,
    /// Whether the API documents the failure as passing (429, 502, 503, 504; a circuit breaker only when its
    /// `durability` is `TRANSIENT`).
    pub retryable: bool,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.is_empty() {
            write!(f, "HTTP {}: {}", self.status, self.reason)
        } else {
            write!(f, "HTTP {} {}: {}", self.status, self.kind, self.reason)
        }
    }
}

/// Reads a failed answer's status and body.
pub(super) fn refusal(status: u16, body: &str) -> Refusal {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let (kind, reason, durability, cause) = match error {
        Some(Value::Object(e)) => (
            text(e.get("type")),
            text(e.get("reason")),
            e.get("durability")
                .and_then(Value::as_str)
                .map(str::to_string),
            text(e.get("caused_by").and_then(|c| c.get("type")).or_else(|| {
                e.get("root_cause")
                    .and_then(|r| r.get(0))
                    .and_then(|c| c.get("type"))
            })),
        ),
        // Some proxies and old versions answer `{"error": "text"}`.
        Some(Value::String(s)) => (String::new(), s.clone(), None, String::new()),
        _ => (String::new(), clip(body), None, String::new()),
    };
    let retryable = if kind == "circuit_breaking_exception" {
        durability.as_deref() == Some("TRANSIENT")
    } else {
        RETRYABLE_STATUSES.contains(&status)
    };
    Refusal {
        status,
        kind,
        reason,
        cause,
        retryable,
    }
}

/// The first 300 characters of a body that is not an error envelope.
fn clip(body: &str) -> String {
    let mut s: String = body.chars().take(300).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    s
}

/// One page of a `_search`: the documents' sources with their sort values, and the point in time to ask next.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Page {
    /// `(_source, sort)` of each hit, in order.
    pub(super) hits: Vec<(Value, Value)>,
    /// The `pit_id` to send with the next page (Elasticsearch may change it from page to page).
    pub(super) pit_id: Option<String>,
}

/// Reads a `_search` answer.
///
/// # Errors
/// A description when `hits.hits` is missing or a hit has no `_source` or `sort`, or shards failed (a page with
/// failed shards would silently miss events).
pub(super) fn page(body: &Value) -> Result<Page, String> {
    let failed = body["_shards"]["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        let why = body["_shards"]["failures"][0]["reason"]["reason"]
            .as_str()
            .unwrap_or("no reason given");
        return Err(format!("{failed} shard(s) failed: {why}"));
    }
    if body["timed_out"] == Value::Bool(true) {
        return Err("the search timed out on the cluster: its page may be incomplete".into());
    }
    let hits = body["hits"]["hits"]
        .as_array()
        .ok_or("the answer has no `hits.hits`")?;
    let hits = hits
        .iter()
        .map(|h| match (h.get("_source"), h.get("sort")) {
            (Some(source), Some(sort @ Value::Array(_))) => Ok((source.clone(), sort.clone())),
            _ => Err(format!(
                "hit {} has no `_source` or no `sort`",
                h["_id"].as_str().unwrap_or("?")
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page {
        hits,
        pit_id: body["pit_id"].as_str().map(str::to_string),
    })
}

/// What became of each action of a `_bulk` request, in order: `Ok(())` or the item's refusal.
///
/// # Errors
/// A description when the answer has no `items` or not one per action.
pub(super) fn bulk_items(body: &Value, actions: usize) -> Result<Vec<Result<(), Refusal>>, String> {
    let items = body["items"]
        .as_array()
        .ok_or("the answer has no `items`")?;
    if items.len() != actions {
        return Err(format!("{} items answer {actions} actions", items.len()));
    }
    Ok(items
        .iter()
        .map(|item| {
            // Each item is `{"<action>": {...}}`.
            let result = item
                .as_object()
                .and_then(|o| o.values().next())
                .cloned()
                .unwrap_or(Value::Null);
            let status = result["status"].as_u64().unwrap_or(0) as u16;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                let envelope = serde_json::json!({"error": result["error"]});
                Err(refusal(status, &envelope.to_string()))
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    //! The parser against recorded answers of Elasticsearch 8 and OpenSearch 2 (see `tests/fixtures/es8/SOURCES.md`).

    use super::*;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/tests/fixtures/es8/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn search_pages_give_sources_sort_values_and_the_newest_pit() {
        let p1 = page(&fixture("search_page_1.json")).unwrap();
        assert_eq!(p1.hits.len(), 3);
        assert_eq!(p1.hits[0].0["service"], "checkout");
        assert_eq!(
            p1.hits[2].1,
            serde_json::json!([1_793_534_401_457_i64, 4_294_967_339_i64])
        );
        let p2 = page(&fixture("search_page_2.json")).unwrap();
        assert_eq!(p2.hits.len(), 1);
        assert_ne!(
            p1.pit_id, p2.pit_id,
            "the point in time changes between pages"
        );
        assert!(
            page(&fixture("search_page_empty.json"))
                .unwrap()
                .hits
                .is_empty()
        );
        assert!(page(&serde_json::json!({"_shards": {"failed": 1, "failures": [{"reason": {"reason": "boom"}}]}, "hits": {"hits": []}})).unwrap_err().contains("boom"));
    }

    #[test]
    fn bulk_items_tell_written_from_refused() {
        let items = bulk_items(&fixture("bulk_ok.json"), 2).unwrap();
        assert!(items.iter().all(Result::is_ok));
        let items = bulk_items(&fixture("bulk_partial.json"), 3).unwrap();
        assert!(items[0].is_ok());
        let r = items[1].as_ref().unwrap_err();
        assert_eq!(
            (r.status, r.kind.as_str(), r.retryable),
            (400, "document_parsing_exception", false)
        );
        let r = items[2].as_ref().unwrap_err();
        assert_eq!(
            (r.status, r.kind.as_str(), r.retryable),
            (429, "es_rejected_execution_exception", true)
        );
        let items = bulk_items(&fixture("bulk_partial_mapper_parsing.json"), 3).unwrap();
        assert_eq!(
            items[1].as_ref().unwrap_err().kind,
            "mapper_parsing_exception"
        );
        assert!(bulk_items(&fixture("bulk_ok.json"), 3).is_err());
    }

    #[test]
    fn error_envelopes_say_what_to_retry() {
        let r = |name: &str, status| refusal(status, &fixture(name).to_string());
        let busy = r("error_too_many_requests.json", 429);
        assert_eq!(busy.kind, "circuit_breaking_exception");
        assert!(busy.retryable, "a transient breaker passes");
        let missing = r("error_index_not_found.json", 404);
        assert_eq!(missing.kind, "index_not_found_exception");
        assert!(!missing.retryable);
        let expired = r("error_pit_expired.json", 404);
        assert!(!expired.retryable);
        assert_eq!(expired.cause, "search_context_missing_exception");
        assert!(!r("error_parsing.json", 400).retryable);
        let denied = r("error_unauthorized.json", 401);
        assert_eq!(denied.kind, "security_exception");
        assert!(!denied.retryable);
        assert_eq!(
            r("error_resource_exists.json", 400).kind,
            "resource_already_exists_exception"
        );
        let mut permanent = fixture("error_too_many_requests.json");
        permanent["error"]["durability"] = "PERMANENT".into();
        assert!(!refusal(429, &permanent.to_string()).retryable);
        let proxy = refusal(502, "<html>Bad Gateway</html>");
        assert!(proxy.retryable && proxy.kind.is_empty() && proxy.reason.contains("Bad Gateway"));
    }

    #[test]
    fn points_in_time_are_read_from_both_apis() {
        assert!(fixture("pit_open.json")["id"].is_string());
        assert!(fixture("opensearch/pit_create.json")["pit_id"].is_string());
        assert_eq!(
            fixture("root_opensearch.json")["version"]["distribution"],
            "opensearch"
        );
        assert!(
            fixture("root_elasticsearch.json")["version"]["distribution"].is_null()
                || fixture("root_elasticsearch.json")["version"]["distribution"] == "default"
        );
    }
}
