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
        ("batch", "Job") if obj["spec"]["manualSelector"] != true => {
            // The Job's own selector: its uid, carried by the template's labels.
            let uid = obj["metadata"]["uid"].clone();
            let name = obj["metadata"]["name"].clone();
            obj["spec"]["selector"] =
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
            let template = &obj["spec"]["template"];
            let shaped = |v: &Value| v.is_object() || v.is_null();
            if template.is_object()
                && shaped(&template["metadata"])
                && shaped(&template["metadata"]["labels"])
            {
                let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
                for (k, v) in [
                    ("batch.kubernetes.io/controller-uid", &uid),
                    ("batch.kubernetes.io/job-name", &name),
                    ("controller-uid", &uid),
                    ("job-name", &name),
                ] {
                    labels[k] = v.clone();
                }
            }
        }
        _ => {}
    }
    on_write(t, obj);
}

/// Defaults the API server fills in on every write (create or update) when a field is unset.
pub fn on_write(t: &ResourceType, obj: &mut Value) {
    if !obj.is_object() {
        return;
    }
    match (t.group.as_str(), t.kind.as_str()) {
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
        ("apps", "ReplicaSet") => {
            default(&mut obj["spec"], "replicas", json!(1));
        }
        ("apps", "StatefulSet") => {
            let spec = &mut obj["spec"];
            default(spec, "replicas", json!(1));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
            );
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        ("apps", "DaemonSet") => {
            let spec = &mut obj["spec"];
            default(spec, "revisionHistoryLimit", json!(10));
            default(
                spec,
                "updateStrategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
            );
        }
        ("batch", "Job") => {
            let spec = &mut obj["spec"];
            default(spec, "backoffLimit", json!(6));
            default(spec, "completions", json!(1));
            default(spec, "parallelism", json!(1));
            default(spec, "completionMode", json!("NonIndexed"));
            default(spec, "suspend", json!(false));
            default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
        }
        _ => {}
    }
}

fn default(obj: &mut Value, key: &str, value: Value) {
    if !(obj.is_object() || obj.is_null()) {
        return;
    }
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
