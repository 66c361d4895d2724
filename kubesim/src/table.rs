//! The server-side tables `kubectl get` prints: the columns the API server gives the common
//! kinds, a CustomResourceDefinition's `additionalPrinterColumns`, and Name/Age otherwise.

use serde_json::{Value, json};

use crate::resources::{Registry, ResourceType};

/// One column: its name, type, priority (above 0 shows with `-o wide` only) and how a cell
/// reads; a custom resource's columns also carry their format and description.
struct Column {
    name: String,
    ty: &'static str,
    priority: i64,
    format: String,
    description: Option<String>,
    cell: Box<dyn Fn(&Value) -> Value>,
}

fn col(
    name: &str,
    ty: &'static str,
    priority: i64,
    f: impl Fn(&Value) -> Value + 'static,
) -> Column {
    Column {
        name: name.to_string(),
        ty,
        priority,
        format: if name == "Name" {
            "name".into()
        } else {
            String::new()
        },
        description: None,
        cell: Box::new(f),
    }
}

fn text<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn int(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn count(o: &Value, ptr: &str) -> usize {
    match o.pointer(ptr) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// "5s", "3m", "2h", "4d", as kubectl shows durations.
pub fn age(created: &str) -> String {
    let Ok(at) = humantime::parse_rfc3339(created) else {
        return "<unknown>".to_string();
    };
    let secs = std::time::SystemTime::now()
        .duration_since(at)
        .unwrap_or_default()
        .as_secs();
    short_duration(secs)
}

fn short_duration(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

fn none_if_empty(s: String) -> Value {
    json!(if s.is_empty() {
        "<none>".to_string()
    } else {
        s
    })
}

fn pod_status(p: &Value) -> String {
    if p.pointer("/metadata/deletionTimestamp").is_some() {
        return "Terminating".into();
    }
    for c in p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = c.pointer("/state/waiting/reason").and_then(Value::as_str) {
            return r.to_string();
        }
        if let Some(r) = c
            .pointer("/state/terminated/reason")
            .and_then(Value::as_str)
        {
            return r.to_string();
        }
    }
    text(p, "/status/phase").to_string()
}

fn service_ports(s: &Value) -> String {
    let ports: Vec<String> = s
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p["nodePort"].as_i64() {
                        Some(n) => format!("{}:{n}/{proto}", p["port"]),
                        None => format!("{}/{proto}", p["port"]),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    ports.join(",")
}

fn job_status(j: &Value) -> String {
    let has = |t: &str| {
        j.pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
    };
    if has("Complete") {
        "Complete".into()
    } else if has("Failed") {
        "Failed".into()
    } else if j.pointer("/spec/suspend") == Some(&json!(true)) {
        "Suspended".into()
    } else {
        "Running".into()
    }
}

fn job_duration(j: &Value) -> String {
    let at = |p: &str| humantime::parse_rfc3339(text(j, p)).ok();
    match (at("/status/startTime"), at("/status/completionTime")) {
        (Some(s), Some(e)) => short_duration(e.duration_since(s).unwrap_or_default().as_secs()),
        (Some(s), None) => short_duration(
            std::time::SystemTime::now()
                .duration_since(s)
                .unwrap_or_default()
                .as_secs(),
        ),
        _ => String::new(),
    }
}

/// A `.a.b[0].c` JSONPath of the simple kind printer columns use, read from an object.
fn json_path<'a>(o: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = o;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        if !key.is_empty() {
            cur = cur.get(key)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn columns(t: &ResourceType, items: &[Value]) -> Vec<Column> {
    let name = col("Name", "string", 0, |o| o["metadata"]["name"].clone());
    let age_col = || {
        col("Age", "string", 0, |o| {
            json!(age(text(o, "/metadata/creationTimestamp")))
        })
    };
    let mut cols = vec![name];
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Pod") => {
            cols.push(col("Ready", "string", 0, |p| {
                let total = count(p, "/spec/containers");
                let ready = p
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .map_or(0, |cs| cs.iter().filter(|c| c["ready"] == true).count());
                json!(format!("{ready}/{total}"))
            }));
            cols.push(col("Status", "string", 0, |p| json!(pod_status(p))));
            cols.push(col("Restarts", "string", 0, |p| {
                let n: i64 = p
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .map_or(0, |cs| {
                        cs.iter().filter_map(|c| c["restartCount"].as_i64()).sum()
                    });
                json!(n.to_string())
            }));
            cols.push(age_col());
            cols.push(col("IP", "string", 1, |p| {
                none_if_empty(text(p, "/status/podIP").into())
            }));
            cols.push(col("Node", "string", 1, |p| {
                none_if_empty(text(p, "/spec/nodeName").into())
            }));
            return cols;
        }
        ("apps", "Deployment") => {
            cols.push(col("Ready", "string", 0, |d| {
                json!(format!(
                    "{}/{}",
                    int(d, "/status/readyReplicas"),
                    int(d, "/spec/replicas")
                ))
            }));
            cols.push(col("Up-to-date", "integer", 0, |d| {
                json!(int(d, "/status/updatedReplicas"))
            }));
            cols.push(col("Available", "integer", 0, |d| {
                json!(int(d, "/status/availableReplicas"))
            }));
        }
        ("apps", "ReplicaSet") | ("", "ReplicationController") => {
            cols.push(col("Desired", "integer", 0, |r| {
                json!(int(r, "/spec/replicas"))
            }));
            cols.push(col("Current", "integer", 0, |r| {
                json!(int(r, "/status/replicas"))
            }));
            cols.push(col("Ready", "integer", 0, |r| {
                json!(int(r, "/status/readyReplicas"))
            }));
        }
        ("apps", "StatefulSet") => {
            cols.push(col("Ready", "string", 0, |s| {
                json!(format!(
                    "{}/{}",
                    int(s, "/status/readyReplicas"),
                    int(s, "/spec/replicas")
                ))
            }));
        }
        ("apps", "DaemonSet") => {
            for (n, p) in [
                ("Desired", "/status/desiredNumberScheduled"),
                ("Current", "/status/currentNumberScheduled"),
                ("Ready", "/status/numberReady"),
                ("Up-to-date", "/status/updatedNumberScheduled"),
                ("Available", "/status/numberAvailable"),
            ] {
                cols.push(col(n, "integer", 0, move |d| json!(int(d, p))));
            }
        }
        ("batch", "Job") => {
            cols.push(col("Status", "string", 0, |j| json!(job_status(j))));
            cols.push(col("Completions", "string", 0, |j| {
                json!(format!(
                    "{}/{}",
                    int(j, "/status/succeeded"),
                    j.pointer("/spec/completions")
                        .and_then(Value::as_i64)
                        .unwrap_or(1)
                ))
            }));
            cols.push(col("Duration", "string", 0, |j| json!(job_duration(j))));
        }
        ("batch", "CronJob") => {
            cols.push(col("Schedule", "string", 0, |c| {
                json!(text(c, "/spec/schedule"))
            }));
            cols.push(col("Suspend", "boolean", 0, |c| {
                json!(c.pointer("/spec/suspend") == Some(&json!(true)))
            }));
            cols.push(col("Active", "integer", 0, |c| {
                json!(count(c, "/status/active"))
            }));
        }
        ("", "Service") => {
            cols.push(col("Type", "string", 0, |s| json!(text(s, "/spec/type"))));
            cols.push(col("Cluster-IP", "string", 0, |s| {
                none_if_empty(text(s, "/spec/clusterIP").into())
            }));
            cols.push(col("External-IP", "string", 0, |s| {
                let ips: Vec<&str> = s
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .map(|i| i.iter().filter_map(|x| x["ip"].as_str()).collect())
                    .unwrap_or_default();
                none_if_empty(ips.join(","))
            }));
            cols.push(col("Port(s)", "string", 0, |s| {
                none_if_empty(service_ports(s))
            }));
        }
        ("", "ConfigMap") => {
            cols.push(col("Data", "integer", 0, |c| {
                json!(count(c, "/data") + count(c, "/binaryData"))
            }));
        }
        ("", "Secret") => {
            cols.push(col("Type", "string", 0, |s| json!(text(s, "/type"))));
            cols.push(col("Data", "integer", 0, |s| json!(count(s, "/data"))));
        }
        ("", "Namespace") => {
            cols.push(col("Status", "string", 0, |n| {
                json!(text(n, "/status/phase"))
            }));
        }
        ("", "PersistentVolumeClaim") => {
            cols.push(col("Status", "string", 0, |p| {
                json!(text(p, "/status/phase"))
            }));
            cols.push(col("Volume", "string", 0, |p| {
                json!(text(p, "/spec/volumeName"))
            }));
            cols.push(col("Capacity", "string", 0, |p| {
                json!(text(p, "/status/capacity/storage"))
            }));
            cols.push(col("Access Modes", "string", 0, |p| {
                let modes: Vec<&str> = p
                    .pointer("/status/accessModes")
                    .and_then(Value::as_array)
                    .map(|m| {
                        m.iter()
                            .filter_map(Value::as_str)
                            .map(|m| match m {
                                "ReadWriteOnce" => "RWO",
                                "ReadOnlyMany" => "ROX",
                                "ReadWriteMany" => "RWX",
                                "ReadWriteOncePod" => "RWOP",
                                other => other,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                json!(modes.join(","))
            }));
            cols.push(col("StorageClass", "string", 0, |p| {
                none_if_empty(text(p, "/spec/storageClassName").into())
            }));
        }
        ("", "ServiceAccount") => {
            cols.push(col("Secrets", "integer", 0, |s| {
                json!(count(s, "/secrets"))
            }));
        }
        ("networking.k8s.io", "Ingress") => {
            cols.push(col("Class", "string", 0, |i| {
                none_if_empty(text(i, "/spec/ingressClassName").into())
            }));
            cols.push(col("Hosts", "string", 0, |i| {
                let hosts: Vec<&str> = i
                    .pointer("/spec/rules")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(|r| r["host"].as_str()).collect())
                    .unwrap_or_default();
                json!(if hosts.is_empty() {
                    "*".to_string()
                } else {
                    hosts.join(",")
                })
            }));
            cols.push(col("Address", "string", 0, |i| {
                let ips: Vec<&str> = i
                    .pointer("/status/loadBalancer/ingress")
                    .and_then(Value::as_array)
                    .map(|x| x.iter().filter_map(|x| x["ip"].as_str()).collect())
                    .unwrap_or_default();
                json!(ips.join(","))
            }));
            cols.push(col("Ports", "string", 0, |i| {
                json!(if count(i, "/spec/tls") > 0 {
                    "80, 443"
                } else {
                    "80"
                })
            }));
        }
        ("", "Event") => {
            return vec![
                col("Last Seen", "string", 0, |e| {
                    json!(age(text(e, "/lastTimestamp")))
                }),
                col("Type", "string", 0, |e| json!(text(e, "/type"))),
                col("Reason", "string", 0, |e| json!(text(e, "/reason"))),
                col("Object", "string", 0, |e| {
                    json!(format!(
                        "{}/{}",
                        text(e, "/involvedObject/kind").to_ascii_lowercase(),
                        text(e, "/involvedObject/name")
                    ))
                }),
                col("Message", "string", 0, |e| json!(text(e, "/message"))),
            ];
        }
        _ if !Registry::is_builtin_group(&t.group) => {
            cols.extend(custom_columns(&t.printer_columns));
            return cols;
        }
        _ => {
            if items.iter().any(|o| o.pointer("/status/phase").is_some()) {
                cols.push(col("Status", "string", 0, |o| {
                    json!(text(o, "/status/phase"))
                }));
            }
        }
    }
    cols.push(age_col());
    cols
}

/// A custom resource's columns after Name: its version's `additionalPrinterColumns` as
/// declared (no Age is added to them), or Age alone when it declares none. A cell whose
/// path is missing, or holds a value of another type, is null (an empty cell).
fn custom_columns(declared: &[Value]) -> Vec<Column> {
    let age_only = [
        json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
        "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}),
    ];
    let declared = if declared.is_empty() {
        &age_only[..]
    } else {
        declared
    };
    declared
        .iter()
        .map(|c| {
            let path = c["jsonPath"].as_str().unwrap_or_default().to_string();
            let ty: &'static str = match c["type"].as_str().unwrap_or("string") {
                "integer" => "integer",
                "number" => "number",
                "boolean" => "boolean",
                "date" => "date",
                _ => "string",
            };
            let mut column = col(
                c["name"].as_str().unwrap_or_default(),
                ty,
                c["priority"].as_i64().unwrap_or(0),
                move |o| json_path(o, &path).map_or(Value::Null, |v| custom_cell(ty, v)),
            );
            column.format = c["format"].as_str().unwrap_or_default().to_string();
            column.description = Some(match c["description"].as_str() {
                Some(d) if !d.is_empty() => d.to_string(),
                _ => format!(
                    "Custom resource definition column (in JSONPath format): {}",
                    c["jsonPath"].as_str().unwrap_or_default()
                ),
            });
            column
        })
        .collect()
}

/// One custom column's cell, converted as the API server converts it by the column type.
fn custom_cell(ty: &str, v: &Value) -> Value {
    match (ty, v) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(_)) => v.clone(),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, |i| json!(i)),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        ("boolean", Value::Bool(_)) => v.clone(),
        ("date", Value::String(s)) => match humantime::parse_rfc3339(s) {
            Ok(_) => json!(age(s)),
            Err(_) => json!("<invalid>"),
        },
        _ => Value::Null,
    }
}

/// The `meta.k8s.io/v1` Table for a list (or one object) of one type.
pub fn table(t: &ResourceType, items: &[Value], rv: u64) -> Value {
    let cols = columns(t, items);
    let defs: Vec<Value> = cols
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.ty, "format": c.format,
                   "description": c.description.as_deref().unwrap_or(&c.name),
                   "priority": c.priority})
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols.iter().map(|c| (c.cell)(o)).collect();
            json!({"cells": cells, "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": o["metadata"]}})
        })
        .collect();
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": defs, "rows": rows,
    })
}
