//! What gantry changes in objects before applying them: the namespace of namespaced objects
//! that name none (and none on cluster-scoped ones), the ownership labels, and the rollout
//! strategy of Deployments.

use serde_json::{Value, json};

use crate::key::group_of;
use crate::kinds::Catalog;
use crate::yaml::Manifest;

/// Labels gantry puts on everything a task applies; pruning and destroy delete only objects
/// that still carry the task's label.
pub const WORKFLOW_LABEL: &str = "gantry.dev/workflow";
pub const TASK_LABEL: &str = "gantry.dev/task";

/// How Deployments roll out, from the task's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Strategy {
    pub recreate: bool,
    pub max_surge: Option<Value>,
    pub max_unavailable: Option<Value>,
}

impl Strategy {
    /// Checks the values a task wrote; the message names the parameter.
    pub fn from_params(
        strategy: Option<&str>,
        max_surge: Option<&Value>,
        max_unavailable: Option<&Value>,
    ) -> Result<Strategy, (String, String)> {
        let recreate = match strategy {
            None | Some("RollingUpdate") => false,
            Some("Recreate") => true,
            Some(other) => {
                return Err((
                    "strategy".into(),
                    format!("`{other}` is not a strategy; use \"RollingUpdate\" or \"Recreate\""),
                ));
            }
        };
        for (field, v) in [
            ("max_surge", max_surge),
            ("max_unavailable", max_unavailable),
        ] {
            if let Some(v) = v
                && !valid_int_or_percent(v)
            {
                return Err((
                    field.into(),
                    format!("`{field}` must be a count (1) or a percentage (\"25%\"), not {v}"),
                ));
            }
        }
        Ok(Strategy {
            recreate,
            max_surge: max_surge.cloned(),
            max_unavailable: max_unavailable.cloned(),
        })
    }
}

fn valid_int_or_percent(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_u64().is_some(),
        Value::String(s) => s
            .strip_suffix('%')
            .is_some_and(|p| p.parse::<u32>().is_ok_and(|p| p <= 100)),
        _ => false,
    }
}

/// What shapes the objects besides their files.
pub struct Shaping<'a> {
    pub namespace: &'a str,
    pub workflow: &'a str,
    pub task: &'a str,
    pub strategy: &'a Strategy,
}

/// A label value Kubernetes accepts: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
pub fn label_value(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// Fills in namespaces and labels and sets the Deployment strategy. Returns a note for every
/// Deployment forced to Recreate because it mounts a claim.
pub fn shape(manifests: &mut [Manifest], catalog: &Catalog, how: &Shaping) -> Vec<String> {
    let mut notes = Vec::new();
    for m in manifests.iter_mut() {
        let kind = m.object["kind"].as_str().unwrap_or_default().to_string();
        let group = group_of(m.object["apiVersion"].as_str().unwrap_or_default()).to_string();
        let namespaced = catalog.namespaced(&group, &kind);
        let Some(md) = m.object.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        if namespaced {
            if md
                .get("namespace")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                md.insert("namespace".into(), json!(how.namespace));
            }
        } else {
            md.remove("namespace");
        }
        if !md.get("labels").is_some_and(Value::is_object) {
            md.insert("labels".into(), json!({}));
        }
        if let Some(labels) = md.get_mut("labels").and_then(Value::as_object_mut) {
            labels.insert(WORKFLOW_LABEL.into(), json!(label_value(how.workflow)));
            labels.insert(TASK_LABEL.into(), json!(label_value(how.task)));
        }
        if group == "apps"
            && kind == "Deployment"
            && let Some(note) = set_strategy(m, how.strategy)
        {
            notes.push(note);
        }
    }
    notes
}

/// Claims a Deployment's pods mount.
fn claims(deployment: &Value) -> Vec<String> {
    deployment
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName"))
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The strategy gantry enforces for a Deployment, whatever the manifest says: Recreate when a
/// claim is mounted or the task asks for it, otherwise RollingUpdate with the task's values
/// or 25% / 25%. The manifest's own values are overwritten, as the task's settings are the
/// ones the operator reviews.
pub fn decided_strategy(deployment: &Value, s: &Strategy) -> Value {
    if s.recreate || !claims(deployment).is_empty() {
        return json!({"type": "Recreate"});
    }
    let surge = s.max_surge.clone().unwrap_or(json!("25%"));
    let unavailable = s.max_unavailable.clone().unwrap_or(json!("25%"));
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn set_strategy(m: &mut Manifest, s: &Strategy) -> Option<String> {
    let strategy = decided_strategy(&m.object, s);
    let mounted = claims(&m.object);
    let name = format!(
        "{}/{}",
        m.object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default(),
        m.object["metadata"]["name"].as_str().unwrap_or_default()
    );
    if let Some(spec) = m.object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("strategy".into(), strategy);
    }
    (!mounted.is_empty()).then(|| {
        format!(
            "Deployment {name} mounts PersistentVolumeClaim {}: using the Recreate strategy so old pods release the volume before new ones start",
            mounted.join(", ")
        )
    })
}

/// The part of a Deployment gantry applies under its own field manager, forcing just these
/// fields, so a value set by a manifest or by `kubectl patch` never wins over the task's.
pub fn strategy_patch(object: &Value) -> Option<Value> {
    if object["kind"] != "Deployment" || group_of(object["apiVersion"].as_str()?) != "apps" {
        return None;
    }
    let strategy = object.pointer("/spec/strategy")?.clone();
    let mut metadata = json!({"name": object["metadata"]["name"]});
    if let Some(ns) = object["metadata"].get("namespace") {
        metadata["namespace"] = ns.clone();
    }
    Some(json!({
        "apiVersion": object["apiVersion"],
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {"strategy": strategy},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse;

    fn shaping(s: &Strategy) -> Shaping<'_> {
        Shaping {
            namespace: "web",
            workflow: "release",
            task: "services.frontend",
            strategy: s,
        }
    }

    #[test]
    fn namespaces_and_labels() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: r, namespace: oops}\n";
        let mut ms = parse("app.yaml", text).unwrap();
        shape(&mut ms, &Catalog::open(), &shaping(&Strategy::default()));
        assert_eq!(ms[0].object["metadata"]["namespace"], "web");
        assert_eq!(
            ms[0].object["metadata"]["labels"][TASK_LABEL],
            "services.frontend"
        );
        assert!(ms[1].object["metadata"].get("namespace").is_none());
    }

    #[test]
    fn the_task_strategy_overwrites_the_manifest() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: fe}\nspec:\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 50%, maxUnavailable: 2}}\n";
        let mut ms = parse("fe.yaml", text).unwrap();
        shape(&mut ms, &Catalog::open(), &shaping(&Strategy::default()));
        assert_eq!(
            ms[0].object["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": "25%", "maxUnavailable": "25%"})
        );
        let patch = strategy_patch(&ms[0].object).unwrap();
        assert_eq!(patch["metadata"], json!({"name": "fe", "namespace": "web"}));
        assert_eq!(patch["spec"].as_object().unwrap().len(), 1);

        let mut ms = parse("fe.yaml", text).unwrap();
        let s = Strategy {
            max_surge: Some(json!(1)),
            ..Default::default()
        };
        shape(&mut ms, &Catalog::open(), &shaping(&s));
        assert_eq!(
            ms[0].object["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 1, "maxUnavailable": "25%"})
        );
    }

    #[test]
    fn a_claim_forces_recreate() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  template:\n    spec:\n      volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]\n";
        let mut ms = parse("db.yaml", text).unwrap();
        let s = Strategy {
            max_surge: Some(json!(2)),
            ..Default::default()
        };
        let notes = shape(&mut ms, &Catalog::open(), &shaping(&s));
        assert_eq!(
            ms[0].object["spec"]["strategy"],
            json!({"type": "Recreate"})
        );
        assert!(notes[0].contains("PersistentVolumeClaim data"));
    }

    #[test]
    fn strategy_values_are_checked() {
        assert!(Strategy::from_params(None, Some(&json!("150%")), None).is_err());
        assert_eq!(
            Strategy::from_params(Some("BlueGreen"), None, None)
                .unwrap_err()
                .0,
            "strategy"
        );
        assert!(Strategy::from_params(Some("Recreate"), None, Some(&json!(1))).is_ok());
        assert_eq!(label_value("app/web!"), "app-web");
    }
}
