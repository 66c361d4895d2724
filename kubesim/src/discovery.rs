//! Discovery documents: `/version`, legacy and aggregated (`apidiscovery.k8s.io/v2`)
//! group and resource lists, and OpenAPI v3 documents that tell clients the server validates
//! fields itself (so kubectl and helm send `fieldValidation` instead of downloading schemas).

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceType, gvk_json};

pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn wants_aggregated(accept: &str) -> bool {
    accept
        .split(',')
        .any(|a| a.contains("as=APIGroupDiscoveryList") && a.contains("v=v2;"))
}

pub fn version() -> Value {
    json!({
        "major": "1", "minor": "35", "emulationMajor": "1", "emulationMinor": "35",
        "gitVersion": "v1.35.0-kubesim", "gitCommit": "kubesim", "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc",
        "platform": "linux/amd64",
    })
}

pub fn core_versions(server: &str) -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server}],
    })
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup", "apiVersion": "v1", "name": group,
        "versions": vs, "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

pub fn group(reg: &Registry, name: &str) -> Option<Value> {
    reg.groups()
        .into_iter()
        .find(|(g, _)| g == name && !g.is_empty())
        .map(|(g, vs)| group_json(&g, &vs))
}

pub fn group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_json(&g, &vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn resource_json(t: &ResourceType) -> Vec<Value> {
    let mut out = vec![json!({
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
        "kind": t.kind, "verbs": t.verbs(), "shortNames": t.short_names,
        "categories": t.categories, "storageVersionHash": "",
    })];
    if t.status_subresource {
        out.push(json!({
            "name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
            "kind": t.kind, "verbs": ["get", "patch", "update"],
        }));
    }
    if t.has_scale() {
        out.push(json!({
            "name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced,
            "group": "autoscaling", "version": "v1", "kind": "Scale",
            "verbs": ["get", "patch", "update"],
        }));
    }
    if t.group.is_empty() && t.kind == "Pod" {
        out.push(json!({
            "name": "pods/log", "singularName": "", "namespaced": true,
            "kind": "Pod", "verbs": ["get"],
        }));
    }
    out
}

const SCALE_KIND: &str = "Scale";

pub fn resource_list(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let resources: Vec<Value> = types.into_iter().flat_map(resource_json).collect();
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// The aggregated document for the core group (`core = true`, served at `/api`) or for every
/// named group (served at `/apis`).
pub fn aggregated(reg: &Registry, core: bool) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .in_group_version(&g, v)
                        .into_iter()
                        .map(|t| {
                            let mut r = json!({
                                "resource": t.plural, "responseKind": gvk_json(t),
                                "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                                "singularResource": t.singular, "verbs": t.verbs(),
                                "shortNames": t.short_names, "categories": t.categories,
                            });
                            let mut subs = Vec::new();
                            if t.status_subresource {
                                subs.push(json!({
                                    "subresource": "status", "responseKind": gvk_json(t),
                                    "verbs": ["get", "patch", "update"],
                                }));
                            }
                            if t.has_scale() {
                                subs.push(json!({
                                    "subresource": "scale",
                                    "responseKind": {"group": "autoscaling", "version": "v1", "kind": SCALE_KIND},
                                    "verbs": ["get", "patch", "update"],
                                }));
                            }
                            if t.group.is_empty() && t.kind == "Pod" {
                                subs.push(json!({
                                    "subresource": "log",
                                    "responseKind": {"group": "", "version": "v1", "kind": "Pod"},
                                    "verbs": ["get"],
                                }));
                            }
                            if !subs.is_empty() {
                                r["subresources"] = Value::Array(subs);
                            }
                            r
                        })
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut meta = json!({"creationTimestamp": null});
            if !g.is_empty() {
                meta["name"] = json!(g);
            }
            json!({"metadata": meta, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {}, "items": items,
    })
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A definition from the schema bundle in the OpenAPI v3 form the API server publishes:
/// one type per schema (no `null`), references into `components/schemas`, wrapped in
/// `allOf` when the reference has siblings, int-or-string marked as such.
fn openapi_schema(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("type", Value::Array(ts)) => {
                        if let Some(t) = ts.iter().find(|t| t.as_str() != Some("null")) {
                            out.insert("type".into(), t.clone());
                        }
                    }
                    ("$ref", Value::String(r)) => {
                        let r = r.replace("#/$defs/", "#/components/schemas/");
                        out.insert("$ref".into(), Value::String(r));
                    }
                    ("properties", Value::Object(props)) => {
                        let props: serde_json::Map<String, Value> = props
                            .iter()
                            .map(|(k, p)| (k.clone(), openapi_schema(p)))
                            .collect();
                        out.insert(k.clone(), Value::Object(props));
                    }
                    ("enum", _) if m.contains_key("x-kubernetes-group-version-kind") => {}
                    _ => {
                        out.insert(k.clone(), openapi_schema(x));
                    }
                }
            }
            if let Some(alts) = out.get("oneOf").and_then(Value::as_array) {
                let types: Vec<&str> = alts.iter().filter_map(|a| a["type"].as_str()).collect();
                if types == ["string", "integer"] {
                    out.remove("oneOf");
                    out.insert("x-kubernetes-int-or-string".into(), json!(true));
                }
            }
            if out.len() > 1
                && let Some(r) = out.remove("$ref")
            {
                out.insert("allOf".into(), json!([{"$ref": r}]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(openapi_schema).collect()),
        other => other.clone(),
    }
}

pub fn openapi_root(reg: &Registry, hash: u64) -> Value {
    let mut paths = serde_json::Map::new();
    for (g, versions) in reg.groups() {
        for v in versions {
            let p = gv_path(&g, &v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash:016X}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// An OpenAPI v3 document for one group/version: the operations with their query
/// parameters and an open schema per kind.
pub fn openapi_group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    let types = reg.in_group_version(group, version);
    if types.is_empty() {
        return None;
    }
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let write_params = json!([
        query("dryRun"),
        query("fieldManager"),
        query("fieldValidation")
    ]);
    let mut patch_params = write_params.clone();
    if let Some(a) = patch_params.as_array_mut() {
        a.push(query("force"));
    }
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    for t in types {
        let base = format!("/{}", gv_path(group, version));
        let collection = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{base}/{}", t.plural)
        };
        let gvk = gvk_json(t);
        let op = |action: &str, params: &Value| {
            json!({"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk, "parameters": params,
                   "responses": {"200": {"description": "OK"}}})
        };
        let mut patch = op("patch", &patch_params);
        patch["requestBody"] = json!({"content": {
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
        }});
        paths.insert(
            collection.clone(),
            json!({"post": op("post", &write_params), "get": op("list", &json!([]))}),
        );
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op("get", &json!([])), "put": op("put", &write_params),
                   "patch": patch, "delete": op("delete", &json!([query("dryRun")]))}),
        );
        let schema_group = if group.is_empty() {
            "core"
        } else {
            group.split('.').next().unwrap_or(group)
        };
        let real = crate::schema::schemas().and_then(|s| {
            s.kind_definition(&t.group, &t.version, &t.kind)
                .map(|d| (s, d))
        });
        match real {
            Some((bundle, def)) => {
                for name in bundle.closure(&[def]) {
                    if let Some(d) = bundle.definition(&name) {
                        schemas.insert(name.clone(), openapi_schema(d));
                    }
                }
            }
            None => {
                schemas.insert(
                    format!("io.k8s.api.{schema_group}.{version}.{}", t.kind),
                    json!({"type": "object", "x-kubernetes-group-version-kind": [gvk],
                           "x-kubernetes-preserve-unknown-fields": true}),
                );
            }
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.35.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
