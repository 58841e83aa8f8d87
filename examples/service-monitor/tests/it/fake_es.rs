//! An in-process stand-in for Elasticsearch 8 (or OpenSearch 2) that implements what the monitor uses: `GET /`,
//! point in time open and close, `_search` with `pit`, `sort`, `search_after` and a `range` query, `_bulk` with
//! per-item results, and index creation. It refuses what the real API refuses, with the real error bodies (the
//! recorded fixtures, or the documented messages): a PIT search with an index in the path, `search_after` that does
//! not match the sort, a page above 10,000, an unknown or closed point in time, a `_bulk` body without its final
//! newline or of another content type, an index that already exists, missing credentials. Failures can be injected.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde_json::{Value, json};

/// A recorded answer of the real API.
pub(crate) fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/es8/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Which API the fake speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    Elasticsearch,
    OpenSearch,
}

/// One stored document.
#[derive(Debug, Clone)]
pub(crate) struct Doc {
    pub(crate) id: String,
    pub(crate) source: Value,
    pub(crate) version: u64,
    /// Its place in the index, as `_shard_doc` sorts.
    pub(crate) seq: i64,
}

#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) indices: BTreeMap<String, Vec<Doc>>,
    /// Open points in time: their snapshot of `(id, hit)`, and once searched its hits in sort order by field.
    pits: HashMap<String, Pit>,
    /// Where each id is in its index.
    positions: HashMap<(String, String), usize>,
    next_pit: u64,
    next_seq: i64,
    /// Answers to give instead of the next requests (status, body), oldest first.
    pub(crate) failures: VecDeque<(u16, Value)>,
    /// `_bulk` items to refuse with 429 before taking any.
    pub(crate) reject_items: usize,
    /// Expire the point in time after this many more pages.
    pub(crate) expire_pit_after: Option<usize>,
    /// Requests seen: method and path.
    pub(crate) requests: Vec<(String, String)>,
    /// Pages served per point in time.
    pub(crate) pages: u64,
}

/// A point in time: the documents when it was opened, sorted by the first search's field.
#[derive(Default)]
struct Pit {
    docs: Vec<(String, Value)>,
    sorted: Option<(String, Vec<Hit>)>,
}

/// A hit in sort order: timestamp millis, the tiebreaker's sort value and its key, the hit.
type Hit = (i64, Value, (i64, String), Value);

/// The fake cluster's state, shared with the test.
#[derive(Clone)]
pub(crate) struct Fake {
    pub(crate) inner: Arc<Mutex<Inner>>,
    pub(crate) flavor: Flavor,
    pub(crate) api_key: Option<String>,
}

impl Fake {
    pub(crate) fn new(flavor: Flavor) -> Self {
        Fake {
            inner: Arc::default(),
            flavor,
            api_key: None,
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Stores documents with generated ids.
    pub(crate) fn load(&self, index: &str, docs: impl IntoIterator<Item = Value>) {
        let mut inner = self.lock();
        let mut seq = inner.next_seq;
        for source in docs {
            seq += 1;
            let id = format!("doc-{seq}");
            let list = inner.indices.entry(index.to_string()).or_default();
            list.push(Doc {
                id: id.clone(),
                source,
                version: 1,
                seq,
            });
            let at = list.len() - 1;
            inner.positions.insert((index.to_string(), id), at);
        }
        inner.next_seq = seq;
    }

    /// The documents of an index.
    pub(crate) fn docs(&self, index: &str) -> Vec<Doc> {
        self.lock().indices.get(index).cloned().unwrap_or_default()
    }

    /// Serves on a loopback port; the base URL.
    pub(crate) async fn start(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/", get(root))
            .route("/_search", post(search))
            .route("/_pit", delete(close_pit))
            .route("/_search/point_in_time", delete(close_pit_opensearch))
            .route("/_bulk", post(bulk))
            .route("/{index}", put(create_index))
            .route("/{index}/_pit", post(open_pit))
            .route("/{index}/_search/point_in_time", post(open_pit_opensearch))
            .route("/{index}/_search", post(search_with_index))
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate))
            .with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

fn error(status: u16, kind: &str, reason: &str) -> Response {
    let body = json!({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason}, "status": status});
    (StatusCode::from_u16(status).unwrap(), Json(body)).into_response()
}

/// Records the request, checks credentials, and answers an injected failure if one is queued.
async fn gate(
    State(fake): State<Fake>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    fake.lock().requests.push((
        request.method().to_string(),
        request.uri().path().to_string(),
    ));
    if let Some(key) = &fake.api_key {
        let sent = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if sent != Some(&format!("ApiKey {key}")) {
            let mut r = (
                StatusCode::UNAUTHORIZED,
                Json(fixture("error_unauthorized.json")),
            )
                .into_response();
            r.headers_mut()
                .insert("www-authenticate", "ApiKey".parse().unwrap());
            return r;
        }
    }
    let failure = fake.lock().failures.pop_front();
    if let Some((status, body)) = failure {
        return (StatusCode::from_u16(status).unwrap(), Json(body)).into_response();
    }
    next.run(request).await
}

async fn root(State(fake): State<Fake>) -> Json<Value> {
    Json(match fake.flavor {
        Flavor::Elasticsearch => fixture("root_elasticsearch.json"),
        Flavor::OpenSearch => fixture("root_opensearch.json"),
    })
}

/// The indices an expression names: comma-separated names or `*` patterns.
fn resolve(inner: &Inner, expression: &str) -> Result<Vec<String>, Box<Response>> {
    let mut out = Vec::new();
    for part in expression.split(',') {
        if let Some(prefix) = part.strip_suffix('*') {
            out.extend(
                inner
                    .indices
                    .keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned(),
            );
        } else if inner.indices.contains_key(part) {
            out.push(part.to_string());
        } else {
            let mut body = fixture("error_index_not_found.json");
            body["error"]["index"] = part.into();
            body["error"]["resource.id"] = part.into();
            return Err(Box::new(
                (StatusCode::NOT_FOUND, Json(body)).into_response(),
            ));
        }
    }
    Ok(out)
}

fn open(
    fake: &Fake,
    index: &str,
    params: &HashMap<String, String>,
) -> Result<String, Box<Response>> {
    if !params.contains_key("keep_alive") {
        return Err(Box::new(error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: [keep_alive] is not specified;",
        )));
    }
    let mut inner = fake.lock();
    let names = resolve(&inner, index)?;
    let mut docs = Vec::new();
    for name in names {
        for d in &inner.indices[&name] {
            docs.push((
                d.id.clone(),
                json!({"_index": name, "_id": d.id, "_source": d.source, "seq": d.seq}),
            ));
        }
    }
    inner.next_pit += 1;
    let id = format!("pit-{}-{}", inner.next_pit, docs.len());
    inner.pits.insert(id.clone(), Pit { docs, sorted: None });
    Ok(id)
}

async fn open_pit(
    State(fake): State<Fake>,
    Path(index): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if fake.flavor != Flavor::Elasticsearch {
        return error(
            400,
            "illegal_argument_exception",
            "request [/_pit] contains unrecognized parameter",
        );
    }
    match open(&fake, &index, &params) {
        Ok(id) => Json(
            json!({"id": id, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0}}),
        )
        .into_response(),
        Err(r) => *r,
    }
}

async fn open_pit_opensearch(
    State(fake): State<Fake>,
    Path(index): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    match open(&fake, &index, &params) {
        Ok(id) => {
            let mut body = fixture("opensearch/pit_create.json");
            body["pit_id"] = id.into();
            Json(body).into_response()
        }
        Err(r) => *r,
    }
}

async fn close_pit(State(fake): State<Fake>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(id) = body["id"].as_str() else {
        return error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: point in time id is required;",
        );
    };
    let freed = fake.lock().pits.remove(id).is_some();
    if !freed {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"succeeded": true, "num_freed": 0})),
        )
            .into_response();
    }
    Json(fixture("pit_close.json")).into_response()
}

async fn close_pit_opensearch(State(fake): State<Fake>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(ids) = body["pit_id"].as_array() else {
        return error(400, "illegal_argument_exception", "pit_id is required");
    };
    let mut inner = fake.lock();
    for id in ids {
        inner.pits.remove(id.as_str().unwrap_or_default());
    }
    Json(fixture("opensearch/pit_delete.json")).into_response()
}

async fn search_with_index(Path(_index): Path<String>, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if body.get("pit").is_some() {
        return error(
            400,
            "action_request_validation_exception",
            "Validation Failed: 1: [indices] cannot be used with point in time. Do not specify any index with point in time.;",
        );
    }
    error(
        400,
        "illegal_argument_exception",
        "the fake serves point-in-time searches only",
    )
}

/// The millisecond value of a `range` bound (`epoch_millis` format).
fn millis(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// A document's timestamp in epoch milliseconds.
fn doc_millis(source: &Value, field: &str) -> Option<i64> {
    match source.get(field)? {
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        Value::Number(n) => n.as_f64().map(|s| (s * 1000.0) as i64),
        _ => None,
    }
}

async fn search(State(fake): State<Fake>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, Json(fixture("error_parsing.json"))).into_response();
    };
    let Some(pit) = body["pit"]["id"].as_str() else {
        return error(
            400,
            "illegal_argument_exception",
            "the fake serves point-in-time searches only",
        );
    };
    let size = body["size"].as_u64().unwrap_or(10);
    if size > 10_000 {
        return error(
            400,
            "illegal_argument_exception",
            "Result window is too large, from + size must be less than or equal to: [10000] but was [20000].",
        );
    }
    let Some(sort) = body["sort"].as_array().filter(|s| s.len() == 2) else {
        return error(
            400,
            "illegal_argument_exception",
            "the fake sorts by a date field and a tiebreaker",
        );
    };
    let field = sort[0]
        .as_object()
        .and_then(|o| o.keys().next())
        .cloned()
        .unwrap_or_default();
    let tiebreaker = sort[1]
        .as_object()
        .and_then(|o| o.keys().next())
        .cloned()
        .unwrap_or_default();
    let expected = match fake.flavor {
        Flavor::Elasticsearch => "_shard_doc",
        Flavor::OpenSearch => "_id",
    };
    if tiebreaker != expected {
        return error(
            400,
            "query_shard_exception",
            &format!("No mapping found for [{tiebreaker}] in order to sort on"),
        );
    }
    let after = match body.get("search_after") {
        None => None,
        Some(Value::Array(a)) if a.len() == 2 => Some(a.clone()),
        Some(Value::Array(a)) => {
            return error(
                400,
                "illegal_argument_exception",
                &format!("search_after has {} value(s) but sort has 2.", a.len()),
            );
        }
        Some(_) => {
            return (StatusCode::BAD_REQUEST, Json(fixture("error_parsing.json"))).into_response();
        }
    };
    let range = &body["query"]["range"][&field];
    let (gte, lt) = (millis(&range["gte"]), millis(&range["lt"]));
    let mut inner = fake.lock();
    if let Some(n) = inner.expire_pit_after {
        if n == 0 {
            inner.expire_pit_after = None;
            inner.pits.remove(pit);
        } else {
            inner.expire_pit_after = Some(n - 1);
        }
    }
    let flavor = fake.flavor;
    let Some(state) = inner.pits.get_mut(pit) else {
        return (
            StatusCode::NOT_FOUND,
            Json(fixture("error_pit_expired.json")),
        )
            .into_response();
    };
    if state.sorted.as_ref().is_none_or(|(f, _)| *f != field) {
        let mut hits: Vec<Hit> = state
            .docs
            .iter()
            .filter_map(|(id, d)| {
                let t = doc_millis(&d["_source"], &field)?;
                let (tie, key) = match flavor {
                    Flavor::Elasticsearch => {
                        let v = d["seq"].as_i64().unwrap() + (1_i64 << 32);
                        (json!(v), (v, String::new()))
                    }
                    Flavor::OpenSearch => (json!(id), (0, id.clone())),
                };
                Some((t, tie, key, d.clone()))
            })
            .collect();
        hits.sort_by(|a, b| (a.0, &a.2).cmp(&(b.0, &b.2)));
        state.sorted = Some((field.clone(), hits));
    }
    let hits = &state.sorted.as_ref().unwrap().1;
    let from = match &after {
        None => hits.partition_point(|h| gte.is_some_and(|g| h.0 < g)),
        Some(after) => {
            let t = after[0].as_i64().unwrap_or(i64::MIN);
            let key = match flavor {
                Flavor::Elasticsearch => (after[1].as_i64().unwrap_or(i64::MIN), String::new()),
                Flavor::OpenSearch => (0, after[1].as_str().unwrap_or_default().to_string()),
            };
            hits.partition_point(|h| (h.0, &h.2) <= (t, &key))
                .max(hits.partition_point(|h| gte.is_some_and(|g| h.0 < g)))
        }
    };
    let page: Vec<Value> = hits[from..]
        .iter()
        .take_while(|h| lt.is_none_or(|l| h.0 < l))
        .take(size as usize)
        .map(|(t, tie, _, d)| {
            json!({"_index": d["_index"], "_id": d["_id"], "_score": null, "_source": d["_source"], "sort": [t, tie]})
        })
        .collect();
    inner.pages += 1;
    // Elasticsearch may hand out a new id for the same point in time: the client must send the newest.
    let snapshot = inner.pits.remove(pit).unwrap_or_default();
    inner.next_pit += 1;
    let new_id = format!("{pit}~{}", inner.next_pit);
    inner.pits.insert(new_id.clone(), snapshot);
    let mut answer = json!({
        "pit_id": new_id,
        "took": 3,
        "timed_out": false,
        "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
        "hits": {"max_score": null, "hits": page},
    });
    if body["track_total_hits"] != false {
        answer["hits"]["total"] = json!({"value": page.len(), "relation": "eq"});
    }
    Json(answer).into_response()
}

async fn bulk(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-ndjson")
        && !content_type.starts_with("application/json")
    {
        return error(
            406,
            "illegal_argument_exception",
            &format!("Content-Type header [{content_type}] is not supported"),
        );
    }
    if !body.ends_with(b"\n") {
        return error(
            400,
            "illegal_argument_exception",
            "The bulk request must be terminated by a newline [\\n]",
        );
    }
    let text = String::from_utf8_lossy(&body);
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut errors = false;
    let mut inner = fake.lock();
    let mut i = 0;
    while i < lines.len() {
        let Ok(action) = serde_json::from_str::<Value>(lines[i]) else {
            return error(
                400,
                "x_content_parse_exception",
                "[1:1] Unexpected character in bulk action",
            );
        };
        let Some(meta) = action.get("index") else {
            return error(
                400,
                "illegal_argument_exception",
                "the fake takes index actions only",
            );
        };
        let Some(source) = lines
            .get(i + 1)
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
        else {
            return error(
                400,
                "illegal_argument_exception",
                "The bulk request must be terminated by a newline [\\n]",
            );
        };
        i += 2;
        let index = meta["_index"].as_str().unwrap_or_default().to_string();
        let id = meta["_id"].as_str().map(str::to_string);
        if inner.reject_items > 0 {
            inner.reject_items -= 1;
            errors = true;
            items.push(json!({"index": {"_index": index, "_id": id, "status": 429,
                "error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of coordinating operation"}}}));
            continue;
        }
        if source.get("status").is_some_and(|s| s.is_string()) {
            errors = true;
            items.push(json!({"index": {"_index": index, "_id": id, "status": 400,
                "error": {"type": "document_parsing_exception", "reason": "[1:87] failed to parse field [status] of type [integer]"}}}));
            continue;
        }
        inner.next_seq += 1;
        let seq = inner.next_seq;
        let id = id.unwrap_or_else(|| format!("auto-{seq}"));
        let at = inner.positions.get(&(index.clone(), id.clone())).copied();
        let list = inner.indices.entry(index.clone()).or_default();
        let (result, status, version) = match at {
            Some(at) => {
                let d = &mut list[at];
                d.source = source;
                d.version += 1;
                ("updated", 200, d.version)
            }
            None => {
                list.push(Doc {
                    id: id.clone(),
                    source,
                    version: 1,
                    seq,
                });
                let at = list.len() - 1;
                inner.positions.insert((index.clone(), id.clone()), at);
                ("created", 201, 1)
            }
        };
        items.push(json!({"index": {"_index": index, "_id": id, "_version": version, "result": result,
            "_shards": {"total": 2, "successful": 1, "failed": 0}, "_seq_no": seq, "_primary_term": 1, "status": status}}));
    }
    Json(json!({"took": 5, "errors": errors, "items": items})).into_response()
}

async fn create_index(State(fake): State<Fake>, Path(index): Path<String>) -> Response {
    let mut inner = fake.lock();
    if inner.indices.contains_key(&index) {
        let mut body = fixture("error_resource_exists.json");
        body["error"]["index"] = index.clone().into();
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    inner.indices.insert(index.clone(), Vec::new());
    let mut body = fixture("index_created.json");
    body["index"] = index.into();
    Json(body).into_response()
}
