//! The HTTP face of the simulator: routes Kubernetes REST paths to the store, serves
//! discovery, streams watches, answers in Kubernetes' error shape, and applies injected faults.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::discovery;
use crate::error::ApiError;
use crate::faults::{FaultRule, Faults};
use crate::resources::{Registry, ResourceType};
use crate::schema::FieldValidation;
use crate::selector::Selector;
use crate::store::{EventType, PatchType, Propagation, Store, WriteOptions};

/// Requests larger than this are refused, as the API server does (3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Shared by every request.
pub struct Sim {
    pub store: Arc<Store>,
    pub faults: Faults,
    /// host:port, for `serverAddressByClientCIDRs`.
    pub address: String,
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new().fallback(handle).with_state(sim)
}

fn json_response(code: u16, body: &Value) -> Response {
    json_with_type(code, body, "application/json")
}

fn json_with_type(code: u16, body: &Value, content_type: &'static str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.status_json());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

fn not_found() -> Response {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

async fn handle(State(sim): State<Arc<Sim>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().trim_end_matches('/').to_string();
    let headers = req.headers().clone();
    tracing::debug!(%method, %uri, content_type = ?headers.get(header::CONTENT_TYPE), accept = ?headers.get(header::ACCEPT), "request");
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::new(
                413,
                "RequestEntityTooLarge",
                "the request body is too large",
            ));
        }
    };
    if let Some(admin) = path.strip_prefix("/kubesim") {
        return admin_request(&sim, &method, admin, &body);
    }
    if let Some(inj) = sim.faults.check(method.as_str(), &path) {
        tokio::time::sleep(inj.delay).await;
        if let Some(code) = inj.status {
            return error_response(&fault_error(code));
        }
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let reg = sim.store.registry();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => json_response(200, &discovery::version()),
        ["healthz"] | ["readyz"] | ["livez"] => "ok".into_response(),
        ["api"] if discovery::wants_aggregated(&accept) => json_with_type(
            200,
            &discovery::aggregated(&reg, true),
            discovery::AGGREGATED,
        ),
        ["api"] => json_response(200, &discovery::core_versions(&sim.address)),
        ["apis"] if discovery::wants_aggregated(&accept) => json_with_type(
            200,
            &discovery::aggregated(&reg, false),
            discovery::AGGREGATED,
        ),
        ["apis"] => json_response(200, &discovery::group_list(&reg)),
        ["apis", g] => discovery::group(&reg, g).map_or_else(not_found, |v| json_response(200, &v)),
        ["api", v] => {
            discovery::resource_list(&reg, "", v).map_or_else(not_found, |d| json_response(200, &d))
        }
        ["apis", g, v] => {
            discovery::resource_list(&reg, g, v).map_or_else(not_found, |d| json_response(200, &d))
        }
        ["openapi", "v3"] => json_response(
            200,
            &discovery::openapi_root(&reg, sim.store.resource_version()),
        ),
        ["openapi", "v3", "api", v] => discovery::openapi_group_version(&reg, "", v)
            .map_or_else(not_found, |d| json_response(200, &d)),
        ["openapi", "v3", "apis", g, v] => discovery::openapi_group_version(&reg, g, v)
            .map_or_else(not_found, |d| json_response(200, &d)),
        ["api", v, rest @ ..] => {
            let Some(target) = Target::parse("", v, rest) else {
                return not_found();
            };
            resource_request(&sim, &method, target, &query, &headers, &accept, body).await
        }
        ["apis", g, v, rest @ ..] => {
            let Some(target) = Target::parse(g, v, rest) else {
                return not_found();
            };
            resource_request(&sim, &method, target, &query, &headers, &accept, body).await
        }
        _ => not_found(),
    }
}

fn fault_error(code: u16) -> ApiError {
    let (reason, message) = match code {
        409 => (
            "Conflict",
            "injected conflict: the object has been modified",
        ),
        429 => (
            "TooManyRequests",
            "injected: too many requests, please try again later",
        ),
        504 => (
            "Timeout",
            "injected: the server was unable to return a response in the time allotted",
        ),
        503 => (
            "ServiceUnavailable",
            "injected: the server is currently unable to handle the request",
        ),
        _ => (
            "InternalError",
            "injected: an error on the server has prevented the request from succeeding",
        ),
    };
    ApiError::new(code, reason, message)
}

fn admin_request(sim: &Sim, method: &Method, path: &str, body: &Bytes) -> Response {
    match (method.as_str(), path.trim_end_matches('/')) {
        ("GET", "/faults") => {
            let rules: Vec<Value> = sim
                .faults
                .list()
                .into_iter()
                .map(|(id, r)| json!({"id": id, "rule": r}))
                .collect();
            json_response(200, &json!({"rules": rules}))
        }
        ("POST", "/faults") => match serde_json::from_slice::<FaultRule>(body) {
            Ok(rule) => json_response(201, &json!({"id": sim.faults.add(rule)})),
            Err(e) => error_response(&ApiError::bad_request(format!("invalid fault rule: {e}"))),
        },
        ("DELETE", "/faults") => {
            sim.faults.clear();
            json_response(200, &json!({"cleared": true}))
        }
        ("POST", "/drop-watches") => {
            sim.faults.drop_watches();
            json_response(200, &json!({"dropped": true}))
        }
        _ => not_found(),
    }
}

/// Which objects a resource path names.
#[derive(Debug)]
struct Target {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    fn parse(group: &str, version: &str, rest: &[&str]) -> Option<Target> {
        let mk = |ns: Option<&str>, plural: &str, name: Option<&&str>, sub: Option<&&str>| Target {
            group: group.to_string(),
            version: version.to_string(),
            namespace: ns.map(str::to_string),
            plural: plural.to_string(),
            name: name.map(|s| s.to_string()),
            subresource: sub.map(|s| s.to_string()),
        };
        match rest {
            ["namespaces", ns, plural, more @ ..]
                if !matches!(*plural, "status" | "finalize") && more.len() <= 2 =>
            {
                Some(mk(Some(ns), plural, more.first(), more.get(1)))
            }
            [plural, more @ ..] if more.len() <= 2 => {
                Some(mk(None, plural, more.first(), more.get(1)))
            }
            _ => None,
        }
    }
}

fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if ct.starts_with("application/vnd.kubernetes.protobuf") {
        return crate::proto::decode(body)
            .map_err(|e| ApiError::new(415, "UnsupportedMediaType", e));
    }
    if ct.contains("yaml") {
        let text = std::str::from_utf8(body)
            .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
        return serde_saphyr::from_str::<Value>(text)
            .map_err(|e| ApiError::bad_request(format!("the YAML body does not parse: {e}")));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the JSON body does not parse: {e}")))
}

fn manager_from(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager") {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .unwrap_or("unknown")
        .to_string()
}

async fn resource_request(
    sim: &Arc<Sim>,
    method: &Method,
    target: Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    accept: &str,
    body: Bytes,
) -> Response {
    let reg = sim.store.registry();
    let Some(t) = reg
        .by_plural(&target.group, &target.version, &target.plural)
        .cloned()
    else {
        return not_found();
    };
    if !t.namespaced && target.namespace.is_some() {
        return not_found();
    }
    let ns = target.namespace.clone().unwrap_or_default();
    if t.is_review() {
        return match (method.as_str(), &target.name) {
            ("POST", None) => review(&t, headers, &body),
            _ => error_response(&ApiError::new(
                405,
                "MethodNotAllowed",
                format!(
                    "the server does not allow this method on the requested resource: {method}"
                ),
            )),
        };
    }
    match (target.subresource.as_deref(), &target.name) {
        (Some("scale"), Some(name)) if t.has_scale() => {
            return scale(sim, &t, &ns, name, method, query, headers, &body);
        }
        (Some("log"), Some(name))
            if t.group.is_empty() && t.kind == "Pod" && method == Method::GET =>
        {
            return pod_log(sim, &t, &ns, name, query);
        }
        _ => {}
    }
    if let Some(sub) = &target.subresource
        && !(sub == "status" && t.status_subresource || t.kind == "Namespace" && sub == "finalize")
    {
        return not_found();
    }
    let validation = match FieldValidation::parse(query.get("fieldValidation").map(String::as_str))
    {
        Ok(v) => v,
        Err(e) => return error_response(&ApiError::bad_request(e)),
    };
    let opts = WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        manager: manager_from(query, headers),
        force: query.get("force").is_some_and(|f| f == "true"),
        subresource: target.subresource.clone().filter(|s| s == "status"),
        validation,
        ..Default::default()
    };
    let result: Result<(u16, Value), ApiError> = match (method.as_str(), &target.name) {
        ("GET", None) => {
            let labels = Selector::labels(query.get("labelSelector").map_or("", String::as_str))
                .map_err(ApiError::bad_request);
            let fields = Selector::fields(query.get("fieldSelector").map_or("", String::as_str))
                .map_err(ApiError::bad_request);
            let (labels, fields) = match (labels, fields) {
                (Ok(l), Ok(f)) => (l, f),
                (Err(e), _) | (_, Err(e)) => return error_response(&e),
            };
            let ns_filter = target.namespace.as_deref();
            if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
                return watch(sim, &t, ns_filter, labels, fields, query);
            }
            let (items, rv) = sim.store.list(&t, ns_filter, &labels, &fields);
            if accept.contains("as=Table") {
                return json_response(200, &crate::table::table(&t, &items, rv));
            }
            Ok((
                200,
                json!({
                    "kind": format!("{}List", t.kind), "apiVersion": t.api_version(),
                    "metadata": {"resourceVersion": rv.to_string()}, "items": items,
                }),
            ))
        }
        ("GET", Some(name)) => sim.store.get(&t, &ns, name).map(|o| {
            if accept.contains("as=Table") {
                (
                    200,
                    crate::table::table(&t, std::slice::from_ref(&o), sim.store.resource_version()),
                )
            } else {
                (200, o)
            }
        }),
        ("POST", None) if t.namespaced && target.namespace.is_none() => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "create needs a namespace in the path",
        )),
        ("POST", None) => parse_body(headers, &body)
            .and_then(|obj| sim.store.create(&t, &ns, obj, &opts))
            .map(|o| (201, o)),
        ("PUT", Some(name)) => parse_body(headers, &body)
            .and_then(|obj| sim.store.update(&t, &ns, name, obj, &opts))
            .map(|o| (200, o)),
        ("PATCH", Some(name)) => patch_request(sim, &t, &ns, name, headers, &body, &opts),
        ("DELETE", Some(name)) => {
            let propagation = propagation(query, headers, &body);
            sim.store
                .delete(&t, &ns, name, propagation, opts.dry_run)
                .map(|o| (200, o))
        }
        ("DELETE", None) => {
            delete_collection(sim, &t, target.namespace.as_deref(), query, headers, &body)
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )),
    };
    let mut response = match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    };
    let warnings = opts.warnings.lock().map(|w| w.clone()).unwrap_or_default();
    for w in warnings {
        // RFC 7234 warning: code 299, no agent, the text quoted.
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", crate::validation::go_string(&w)))
        {
            response.headers_mut().append(header::WARNING, v);
        }
    }
    response
}

/// An access review: kubesim authorises every request, so every review says yes. The body
/// (JSON or protobuf) is echoed back only when it reads as JSON.
fn review(t: &ResourceType, headers: &HeaderMap, body: &Bytes) -> Response {
    let mut out = parse_body(headers, body)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    out["apiVersion"] = json!(t.api_version());
    out["kind"] = json!(t.kind);
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    out["metadata"]["creationTimestamp"] = Value::Null;
    out["status"] = if t.kind == "SelfSubjectRulesReview" {
        json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        })
    } else {
        json!({"allowed": true, "reason": "kubesim authorizes every request"})
    };
    json_response(201, &out)
}

/// `autoscaling/v1` Scale of a workload.
fn scale_of(obj: &Value) -> Value {
    let md = &obj["metadata"];
    let mut status =
        json!({"replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0))});
    if let Some(sel) = crate::controllers::label_selector_string(&obj["spec"]["selector"]) {
        status["selector"] = json!(sel);
    }
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {"name": md["name"], "namespace": md["namespace"], "uid": md["uid"],
                     "resourceVersion": md["resourceVersion"], "creationTimestamp": md["creationTimestamp"]},
        "spec": {"replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": status,
    })
}

/// The `/scale` subresource: reads and writes `spec.replicas` of the workload.
#[allow(clippy::too_many_arguments)]
fn scale(
    sim: &Sim,
    t: &ResourceType,
    ns: &str,
    name: &str,
    method: &Method,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let current = match sim.store.get(t, ns, name) {
        Ok(o) => o,
        Err(e) => return error_response(&e),
    };
    let scale_now = scale_of(&current);
    let wanted = match method.as_str() {
        "GET" => return json_response(200, &scale_now),
        "PUT" => parse_body(headers, body),
        "PATCH" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let patch: Result<Value, ApiError> = if ct.contains("yaml") {
                parse_body(headers, body)
            } else {
                serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("the patch does not parse: {e}")))
            };
            patch.and_then(|p| {
                let mut s = scale_now.clone();
                if ct.starts_with("application/json-patch+json") {
                    crate::patch::json_patch(&mut s, &p).map_err(ApiError::bad_request)?;
                } else {
                    crate::patch::merge_patch(&mut s, &p);
                }
                Ok(s)
            })
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource: {method}"),
        )),
    };
    let wanted = match wanted {
        Ok(w) => w,
        Err(e) => return error_response(&e),
    };
    let Some(replicas) = wanted.pointer("/spec/replicas").and_then(Value::as_i64) else {
        return error_response(&ApiError::invalid(
            t,
            name,
            "spec.replicas",
            "Required value",
        ));
    };
    if replicas < 0 {
        return error_response(&ApiError::new(
            422,
            "Invalid",
            format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"
            ),
        ));
    }
    let mut patch = json!({"spec": {"replicas": replicas}});
    if let Some(rv) = wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
    {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let opts = WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        manager: manager_from(query, headers),
        ..Default::default()
    };
    match sim.store.patch(t, ns, name, PatchType::Merge, patch, &opts) {
        Ok(o) => json_response(200, &scale_of(&o)),
        Err(e) => error_response(&e),
    }
}

/// `pods/log`: a simulated pod has no output, so the log says so.
fn pod_log(
    sim: &Sim,
    t: &ResourceType,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> Response {
    let pod = match sim.store.get(t, ns, name) {
        Ok(p) => p,
        Err(e) => return error_response(&e),
    };
    let containers: Vec<String> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let container = match query.get("container") {
        Some(c) if !containers.contains(c) => {
            return error_response(&ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        Some(c) => c.clone(),
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return error_response(&ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    let text = format!(
        "kubesim: pod {name} is simulated; container {container} runs no process and writes no log\n"
    );
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

fn patch_request(
    sim: &Sim,
    t: &ResourceType,
    ns: &str,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    opts: &WriteOptions,
) -> Result<(u16, Value), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let kind = if ct.starts_with("application/apply-patch") {
        PatchType::Apply
    } else if ct.starts_with("application/strategic-merge-patch+json") {
        if !Registry::is_builtin_group(&t.group) {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources; use a merge patch",
            ));
        }
        PatchType::Strategic
    } else if ct.starts_with("application/merge-patch+json") {
        PatchType::Merge
    } else if ct.starts_with("application/json-patch+json") {
        PatchType::Json
    } else {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"
            ),
        ));
    };
    let patch = if kind == PatchType::Apply {
        parse_body(
            &{
                let mut h = HeaderMap::new();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/yaml"),
                );
                h
            },
            body,
        )?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the patch does not parse: {e}")))?
    };
    let existed = sim.store.get(t, ns, name).is_ok();
    let out = sim.store.patch(t, ns, name, kind, patch, opts)?;
    Ok((if existed { 200 } else { 201 }, out))
}

fn propagation(query: &HashMap<String, String>, headers: &HeaderMap, body: &Bytes) -> Propagation {
    let from_body: Option<Value> = if body.is_empty() {
        None
    } else {
        parse_body(headers, body).ok()
    };
    let policy = query
        .get("propagationPolicy")
        .cloned()
        .or_else(|| {
            from_body
                .as_ref()
                .and_then(|b| b.get("propagationPolicy"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let orphan = from_body
        .as_ref()
        .and_then(|b| b.get("orphanDependents"))
        .and_then(Value::as_bool)
        == Some(true);
    match policy.as_str() {
        "Foreground" => Propagation::Foreground,
        "Orphan" => Propagation::Orphan,
        _ if orphan => Propagation::Orphan,
        _ => Propagation::Background,
    }
}

fn delete_collection(
    sim: &Sim,
    t: &ResourceType,
    ns: Option<&str>,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(u16, Value), ApiError> {
    let labels = Selector::labels(query.get("labelSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let fields = Selector::fields(query.get("fieldSelector").map_or("", String::as_str))
        .map_err(ApiError::bad_request)?;
    let (items, _) = sim.store.list(t, ns, &labels, &fields);
    let propagation = propagation(query, headers, body);
    let mut deleted = Vec::new();
    for o in items {
        let name = o["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let ns = o["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        deleted.push(sim.store.delete(t, &ns, &name, propagation, false)?);
    }
    Ok((
        200,
        json!({"kind": format!("{}List", t.kind), "apiVersion": t.api_version(), "metadata": {}, "items": deleted}),
    ))
}

/// A watch: events as newline-delimited JSON, from the requested resourceVersion (or a
/// synthetic ADDED per current object), with bookmarks when asked, until the timeout, a
/// dropped-watch fault, or the client leaves.
fn watch(
    sim: &Arc<Sim>,
    t: &ResourceType,
    ns: Option<&str>,
    labels: Selector,
    fields: Selector,
    query: &HashMap<String, String>,
) -> Response {
    let from: Option<u64> = query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && v.as_str() != "0")
        .and_then(|v| v.parse().ok());
    let send_initial = query.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let (items, start_rv, mut live) =
        sim.store
            .watch_start(t, ns, &labels, &fields, from.is_none() || send_initial);
    let mut first: Vec<Value> = Vec::new();
    match from {
        Some(rv) if !send_initial => match sim.store.history_since(rv) {
            Some(past) => first.extend(
                past.iter()
                    .filter(|e| e.rv <= start_rv)
                    .filter_map(|e| visible(e, t, ns, &labels, &fields)),
            ),
            None => {
                let gone = ApiError::new(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({start_rv})"),
                );
                first.push(json!({"type": "ERROR", "object": gone.status_json()}));
            }
        },
        _ => first.extend(items.iter().map(|o| event_json(EventType::Added, o, t))),
    }
    if send_initial && bookmarks {
        first.push(json!({"type": "BOOKMARK", "object": {
            "kind": t.kind, "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": start_rv.to_string(),
                         "annotations": {"k8s.io/initial-events-end": "true"}}}}));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let mut drops = sim.faults.watch_drops();
    let (t, ns) = (t.clone(), ns.map(str::to_string));
    let store = sim.store.clone();
    tokio::spawn(async move {
        for ev in first {
            if tx.send(line(&ev)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = drops.recv() => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {"kind": t.kind, "apiVersion": t.api_version(),
                        "metadata": {"resourceVersion": store.resource_version().to_string()}}});
                    if tx.send(line(&bm)).await.is_err() { return; }
                }
                ev = live.recv() => {
                    let Ok(ev) = ev else { return };
                    if let Some(out) = visible(&ev, &t, ns.as_deref(), &labels, &fields)
                        && tx.send(line(&out)).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::convert::Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    r
}

/// The event a watch filtered by namespace and selectors sends for a stored event, as the
/// API server's watch cache does: a modification that makes an object match is ADDED, one
/// that makes it stop matching is DELETED (with the object as it was, at the new version).
fn visible(
    e: &crate::store::WatchEvent,
    t: &ResourceType,
    ns: Option<&str>,
    labels: &Selector,
    fields: &Selector,
) -> Option<Value> {
    if e.storage != t.storage_key() || ns.is_some_and(|n| n != e.namespace) {
        return None;
    }
    let passes = |o: &Value| labels.matches(o) && fields.matches(o);
    let now = passes(&e.object);
    let before = match (&e.kind, &e.previous) {
        (EventType::Modified, Some(previous)) => passes(previous),
        _ => now,
    };
    match (before, now) {
        (true, true) => Some(event_json(e.kind, &e.object, t)),
        (false, true) => Some(event_json(EventType::Added, &e.object, t)),
        (true, false) => {
            let mut gone = e.previous.clone().unwrap_or_else(|| e.object.clone());
            gone["metadata"]["resourceVersion"] = Value::String(e.rv.to_string());
            Some(event_json(EventType::Deleted, &gone, t))
        }
        (false, false) => None,
    }
}

fn event_json(kind: EventType, object: &Value, t: &ResourceType) -> Value {
    let mut o = object.clone();
    o["apiVersion"] = Value::String(t.api_version());
    json!({"type": kind.as_str(), "object": o})
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}
