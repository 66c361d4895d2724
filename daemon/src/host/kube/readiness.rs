//! When an object counts as ready, in the spirit of kstatus: a rollout is complete when the
//! controller has seen the newest generation and every replica is updated and available; a
//! Job is ready when complete and failed when it failed; other objects are ready once they
//! exist, unless their status says they are still reconciling.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Still converging; the message says what is missing.
    InProgress(String),
    /// Will not become ready without a change (deadline exceeded, Job failed).
    Failed(String),
}

fn int(v: &Value, ptr: &str) -> i64 {
    v.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn condition<'a>(v: &'a Value, kind: &str) -> Option<&'a Value> {
    v.pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
}

fn condition_true(v: &Value, kind: &str) -> bool {
    condition(v, kind).is_some_and(|c| c["status"] == "True")
}

fn observed(v: &Value) -> Option<Readiness> {
    let generation = int(v, "/metadata/generation");
    let seen = v
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64);
    match seen {
        Some(seen) if seen < generation => Some(Readiness::InProgress(format!(
            "waiting for the controller to observe generation {generation} (seen {seen})"
        ))),
        None if generation > 0 && v.get("status").is_none() => Some(Readiness::InProgress(
            "waiting for the controller to report status".to_string(),
        )),
        _ => None,
    }
}

pub fn readiness(v: &Value) -> Readiness {
    let kind = v["kind"].as_str().unwrap_or_default();
    let group = v["apiVersion"]
        .as_str()
        .and_then(|a| a.rsplit_once('/'))
        .map_or("", |(g, _)| g);
    match (group, kind) {
        ("apps", "Deployment") => deployment(v),
        ("apps", "StatefulSet") => stateful_set(v),
        ("apps", "DaemonSet") => daemon_set(v),
        ("apps", "ReplicaSet") => replicas_ready(v, "/status/readyReplicas"),
        ("batch", "Job") => job(v),
        ("", "Pod") => pod(v),
        ("", "PersistentVolumeClaim") => match v.pointer("/status/phase").and_then(Value::as_str) {
            Some("Bound") => Readiness::Ready,
            phase => Readiness::InProgress(format!("claim is {}", phase.unwrap_or("pending"))),
        },
        ("", "Namespace") => match v.pointer("/status/phase").and_then(Value::as_str) {
            Some("Terminating") => Readiness::InProgress("namespace is terminating".into()),
            _ => Readiness::Ready,
        },
        ("", "Service")
            if v.pointer("/spec/type").and_then(Value::as_str) == Some("LoadBalancer") =>
        {
            if v.pointer("/status/loadBalancer/ingress/0").is_some() {
                Readiness::Ready
            } else {
                Readiness::InProgress("waiting for a load balancer address".into())
            }
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if condition_true(v, "Established") {
                Readiness::Ready
            } else {
                Readiness::InProgress("waiting for the definition to be established".into())
            }
        }
        _ => generic(v),
    }
}

fn generic(v: &Value) -> Readiness {
    if let Some(seen) = v
        .pointer("/status/observedGeneration")
        .and_then(Value::as_i64)
        && seen < int(v, "/metadata/generation")
    {
        return Readiness::InProgress("waiting for the controller to observe the change".into());
    }
    if condition_true(v, "Stalled") {
        return Readiness::Failed("the controller reports Stalled".into());
    }
    if condition_true(v, "Reconciling") {
        return Readiness::InProgress("the controller reports Reconciling".into());
    }
    match condition(v, "Ready") {
        Some(c) if c["status"] != "True" => Readiness::InProgress(format!(
            "Ready is {}: {}",
            c["status"].as_str().unwrap_or("Unknown"),
            c["message"].as_str().unwrap_or_default()
        )),
        _ => Readiness::Ready,
    }
}

fn deployment(v: &Value) -> Readiness {
    if let Some(r) = observed(v) {
        return r;
    }
    if let Some(c) = condition(v, "Progressing")
        && c["reason"] == "ProgressDeadlineExceeded"
    {
        return Readiness::Failed(format!(
            "rollout exceeded its progress deadline: {}",
            c["message"].as_str().unwrap_or_default()
        ));
    }
    let want = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let updated = int(v, "/status/updatedReplicas");
    let total = int(v, "/status/replicas");
    let available = int(v, "/status/availableReplicas");
    if updated < want {
        return Readiness::InProgress(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Readiness::InProgress(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Readiness::InProgress(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Readiness::Ready
}

fn replicas_ready(v: &Value, ready_ptr: &str) -> Readiness {
    if let Some(r) = observed(v) {
        return r;
    }
    let want = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let ready = int(v, ready_ptr);
    if ready < want {
        Readiness::InProgress(format!("{ready} of {want} replicas ready"))
    } else {
        Readiness::Ready
    }
}

fn stateful_set(v: &Value) -> Readiness {
    let r = replicas_ready(v, "/status/readyReplicas");
    if r != Readiness::Ready {
        return r;
    }
    let want = v
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if int(v, "/status/updatedReplicas") < want {
        return Readiness::InProgress("replicas are being updated".into());
    }
    if v.pointer("/status/currentRevision") != v.pointer("/status/updateRevision") {
        return Readiness::InProgress("waiting for the update revision to become current".into());
    }
    Readiness::Ready
}

fn daemon_set(v: &Value) -> Readiness {
    if let Some(r) = observed(v) {
        return r;
    }
    let desired = int(v, "/status/desiredNumberScheduled");
    let updated = int(v, "/status/updatedNumberScheduled");
    let available = int(v, "/status/numberAvailable");
    if updated < desired {
        Readiness::InProgress(format!("{updated} of {desired} pods updated"))
    } else if available < desired {
        Readiness::InProgress(format!("{available} of {desired} pods available"))
    } else {
        Readiness::Ready
    }
}

fn job(v: &Value) -> Readiness {
    if condition_true(v, "Failed") {
        let c = condition(v, "Failed").cloned().unwrap_or_default();
        return Readiness::Failed(format!(
            "job {}: {}",
            c["reason"].as_str().unwrap_or_default(),
            c["message"].as_str().unwrap_or_default()
        ));
    }
    if condition_true(v, "Complete") {
        Readiness::Ready
    } else {
        Readiness::InProgress(format!(
            "job running: {} succeeded, {} active",
            int(v, "/status/succeeded"),
            int(v, "/status/active")
        ))
    }
}

fn pod(v: &Value) -> Readiness {
    match v.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") => Readiness::Ready,
        Some("Failed") => Readiness::Failed("pod phase is Failed".into()),
        _ if condition_true(v, "Ready") => Readiness::Ready,
        phase => Readiness::InProgress(format!("pod is {}", phase.unwrap_or("Pending"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status})
    }

    #[test]
    fn deployment_rules() {
        let stale = deploy(
            json!({"observedGeneration": 1, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}),
        );
        assert!(matches!(readiness(&stale), Readiness::InProgress(_)));
        let rolling = deploy(
            json!({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3, "availableReplicas": 1}),
        );
        assert!(matches!(readiness(&rolling), Readiness::InProgress(m) if m.contains("1 of 2")));
        let done = deploy(
            json!({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}),
        );
        assert_eq!(readiness(&done), Readiness::Ready);
        let stuck = deploy(json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "x"}]}));
        assert!(matches!(readiness(&stuck), Readiness::Failed(_)));
    }

    #[test]
    fn job_rules() {
        let job = |c: &str| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"generation": 1},
            "status": {"conditions": [{"type": c, "status": "True", "reason": "BackoffLimitExceeded"}]}})
        };
        assert_eq!(readiness(&job("Complete")), Readiness::Ready);
        assert!(
            matches!(readiness(&job("Failed")), Readiness::Failed(m) if m.starts_with("job BackoffLimitExceeded"))
        );
        assert!(matches!(
            readiness(&json!({"apiVersion": "batch/v1", "kind": "Job"})),
            Readiness::InProgress(_)
        ));
    }

    #[test]
    fn plain_objects_are_ready_when_they_exist() {
        assert_eq!(
            readiness(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})),
            Readiness::Ready
        );
    }
}
