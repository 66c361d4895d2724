//! Defaulting done at creation, as the API server's admission and defaulting would.

use serde_json::{Value, json};

use crate::resources::ResourceType;

pub fn on_create(t: &ResourceType, obj: &mut Value, services_so_far: usize) {
    match (t.group.as_str(), t.kind.as_str()) {
        ("", "Namespace") => {
            obj["spec"]["finalizers"] = json!(["kubernetes"]);
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "Service") => {
            let spec = &mut obj["spec"];
            if spec.get("type").is_none() {
                spec["type"] = json!("ClusterIP");
            }
            if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
                let n = services_so_far + 10;
                let ip = format!("10.96.{}.{}", (n / 250) % 250, n % 250 + 1);
                spec["clusterIP"] = json!(ip);
                spec["clusterIPs"] = json!([ip]);
            }
            if spec["type"] == "LoadBalancer" {
                obj["status"] = json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}});
            }
        }
        ("", "Pod") => {
            obj["status"] = json!({"phase": "Pending"});
        }
        ("apps", "Deployment") => {
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "revisionHistoryLimit", json!(10));
            if spec.get("strategy").is_none() {
                spec["strategy"] = json!({"type": "RollingUpdate"});
            }
            if spec["strategy"]["type"] == "RollingUpdate"
                && spec["strategy"].get("rollingUpdate").is_none()
            {
                spec["strategy"]["rollingUpdate"] =
                    json!({"maxSurge": "25%", "maxUnavailable": "25%"});
            }
        }
        ("apps", "StatefulSet") | ("apps", "ReplicaSet") => {
            default(&mut obj["spec"], "replicas", json!(1));
        }
        ("batch", "Job") => {
            let spec = &mut obj["spec"];
            default(spec, "backoffLimit", json!(6));
            default(spec, "completions", json!(1));
            default(spec, "parallelism", json!(1));
        }
        _ => {}
    }
}

fn default(obj: &mut Value, key: &str, value: Value) {
    if obj.get(key).is_none_or(Value::is_null) {
        obj[key] = value;
    }
}

/// A CustomResourceDefinition is served the moment it is created.
pub fn crd_established(obj: &mut Value) {
    let names = obj["spec"]["names"].clone();
    obj["status"] = json!({
        "acceptedNames": names,
        "storedVersions": obj["spec"]["versions"].as_array().map(|vs| vs.iter()
            .filter(|v| v["storage"] == true).map(|v| v["name"].clone()).collect::<Vec<_>>())
            .unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
        ],
    });
}
