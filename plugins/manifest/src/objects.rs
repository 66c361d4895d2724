//! Reading a task's manifests: files and directories of multi-document YAML, `${vars.NAME}`
//! substituted, the default namespace filled in, inventory labels added, and the Deployment
//! strategy decided.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

/// Labels gantry puts on everything a manifest task applies.
pub const WORKFLOW_LABEL: &str = "gantry.dev/workflow";
pub const TASK_LABEL: &str = "gantry.dev/task";

/// Kinds that live outside namespaces.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "IngressClass",
    "PriorityClass",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "APIService",
    "CSIDriver",
];

/// One object to apply, with where it came from for messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub origin: String,
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object["apiVersion"].as_str().unwrap_or_default()
    }
    pub fn kind(&self) -> &str {
        self.object["kind"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.object["metadata"]["name"].as_str().unwrap_or_default()
    }
    pub fn namespace(&self) -> Option<&str> {
        self.object["metadata"]["namespace"].as_str()
    }
    /// `apps/v1/Deployment/web/frontend`; the namespace is empty for cluster-scoped objects.
    pub fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.api_version(),
            self.kind(),
            self.namespace().unwrap_or_default(),
            self.name()
        )
    }
    /// Namespaces and definitions go first so what lives in them can follow.
    fn apply_rank(&self) -> u8 {
        match self.kind() {
            "Namespace" => 0,
            "CustomResourceDefinition" => 1,
            _ => 2,
        }
    }
}

/// An inventory entry split back into its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

pub fn parse_id(id: &str) -> Option<ObjectId> {
    let mut parts = id.rsplitn(4, '/');
    let name = parts.next()?.to_string();
    let namespace = parts.next()?.to_string();
    let kind = parts.next()?.to_string();
    let api_version = parts.next()?.to_string();
    if name.is_empty() || kind.is_empty() || api_version.is_empty() {
        return None;
    }
    Some(ObjectId {
        api_version,
        kind,
        namespace: (!namespace.is_empty()).then_some(namespace),
        name,
    })
}

/// How Deployments roll out, from the task's parameters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Strategy {
    pub recreate: bool,
    pub max_surge: Option<Value>,
    pub max_unavailable: Option<Value>,
}

/// What shapes the objects besides their files.
pub struct Shaping<'a> {
    pub namespace: &'a str,
    pub workflow: &'a str,
    pub task: &'a str,
    pub vars: &'a BTreeMap<String, String>,
    pub strategy: &'a Strategy,
}

/// Files under `root/path`: the file itself, or a directory's YAML and JSON files by name.
pub fn files(root: &Path, path: &str) -> Result<Vec<std::path::PathBuf>, String> {
    if path.split('/').any(|c| c == "..") || path.starts_with('/') {
        return Err(format!(
            "path `{path}` must stay inside the task's directory"
        ));
    }
    let full = root.join(path);
    let meta = std::fs::metadata(&full).map_err(|e| format!("`{path}`: {e}"))?;
    if meta.is_file() {
        return Ok(vec![full]);
    }
    let mut out: Vec<_> = std::fs::read_dir(&full)
        .map_err(|e| format!("`{path}`: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("`{path}` holds no .yaml, .yml or .json files"));
    }
    Ok(out)
}

/// Replaces `${vars.NAME}`; an unknown name is an error naming it.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${vars.") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 7..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${vars.` reference".to_string())?;
        let name = &after[..end];
        let value = vars.get(name).ok_or_else(|| {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            format!(
                "`${{vars.{name}}}` is not defined; add it to the task's `vars` (defined: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Parses one file's documents; `List` objects contribute their items.
pub fn parse(origin: &str, text: &str) -> Result<Vec<Manifest>, String> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| format!("{origin}: not valid YAML: {e}"))?;
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        let at = format!("{origin} (document {})", i + 1);
        match doc {
            Value::Null => continue,
            Value::Object(_) if doc["kind"] == "List" => {
                for (j, item) in doc["items"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .enumerate()
                {
                    out.push(check(format!("{at} item {}", j + 1), item)?);
                }
            }
            Value::Object(_) => out.push(check(at, doc)?),
            _ => return Err(format!("{at}: a manifest must be a mapping")),
        }
    }
    Ok(out)
}

fn check(origin: String, object: Value) -> Result<Manifest, String> {
    for (ptr, field) in [
        ("/apiVersion", "apiVersion"),
        ("/kind", "kind"),
        ("/metadata/name", "metadata.name"),
    ] {
        if object
            .pointer(ptr)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(format!("{origin}: `{field}` is required"));
        }
    }
    Ok(Manifest { origin, object })
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

/// Fills in the namespace and inventory labels and sets the Deployment strategy. Returns a
/// note for every Deployment forced to Recreate because it mounts a claim.
pub fn shape(manifests: &mut [Manifest], how: &Shaping) -> Vec<String> {
    let mut notes = Vec::new();
    for m in manifests.iter_mut() {
        let kind = m.kind().to_string();
        let md = &mut m.object["metadata"];
        if !CLUSTER_SCOPED.contains(&kind.as_str())
            && md
                .get("namespace")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            md["namespace"] = json!(how.namespace);
        }
        if !md.get("labels").is_some_and(Value::is_object) {
            md["labels"] = json!({});
        }
        md["labels"][WORKFLOW_LABEL] = json!(label_value(how.workflow));
        md["labels"][TASK_LABEL] = json!(label_value(how.task));
        if kind == "Deployment"
            && let Some(note) = set_strategy(m, how.strategy)
        {
            notes.push(note);
        }
    }
    manifests.sort_by_key(Manifest::apply_rank);
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

fn set_strategy(m: &mut Manifest, s: &Strategy) -> Option<String> {
    let mounted = claims(&m.object);
    let name = format!("{}/{}", m.namespace().unwrap_or_default(), m.name());
    let spec = &mut m.object["spec"];
    if !mounted.is_empty() {
        spec["strategy"] = json!({"type": "Recreate"});
        return Some(format!(
            "Deployment {name} mounts PersistentVolumeClaim {}: using the Recreate strategy so old pods release the volume before new ones start",
            mounted.join(", ")
        ));
    }
    if s.recreate {
        spec["strategy"] = json!({"type": "Recreate"});
        return None;
    }
    let from_manifest = spec.get("strategy").cloned();
    if s.max_surge.is_none() && s.max_unavailable.is_none() && from_manifest.is_some() {
        return None;
    }
    let current = |k: &str| {
        from_manifest
            .as_ref()
            .and_then(|st| st.pointer(&format!("/rollingUpdate/{k}")))
            .cloned()
    };
    let surge = s
        .max_surge
        .clone()
        .or_else(|| current("maxSurge"))
        .unwrap_or(json!("25%"));
    let unavailable = s
        .max_unavailable
        .clone()
        .or_else(|| current("maxUnavailable"))
        .unwrap_or(json!("25%"));
    spec["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}});
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaping<'a>(vars: &'a BTreeMap<String, String>, s: &'a Strategy) -> Shaping<'a> {
        Shaping {
            namespace: "web",
            workflow: "release",
            task: "services.frontend",
            vars,
            strategy: s,
        }
    }

    #[test]
    fn documents_namespaces_labels_and_order() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n";
        let mut ms = parse("app.yaml", text).unwrap();
        assert_eq!(ms.len(), 2);
        let vars = BTreeMap::new();
        shape(&mut ms, &shaping(&vars, &Strategy::default()));
        assert_eq!(ms[0].kind(), "Namespace");
        assert_eq!(ms[0].namespace(), None);
        assert_eq!(ms[1].id(), "v1/ConfigMap/web/a");
        assert_eq!(
            ms[1].object["metadata"]["labels"][TASK_LABEL],
            "services.frontend"
        );
        assert_eq!(parse_id("v1/Namespace//web").unwrap().namespace, None);
        assert_eq!(
            parse_id("apps/v1/Deployment/web/fe").unwrap().api_version,
            "apps/v1"
        );
    }

    #[test]
    fn bad_documents_say_where() {
        let err = parse("x.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n").unwrap_err();
        assert!(
            err.contains("x.yaml (document 1)") && err.contains("metadata.name"),
            "{err}"
        );
        let vars: BTreeMap<String, String> = [("tag".to_string(), "1.2".to_string())].into();
        assert_eq!(
            substitute("image: app:${vars.tag}", &vars).unwrap(),
            "image: app:1.2"
        );
        assert!(
            substitute("${vars.nope}", &vars)
                .unwrap_err()
                .contains("defined: tag")
        );
    }

    #[test]
    fn a_claim_forces_recreate() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: db}\nspec:\n  template:\n    spec:\n      volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]\n";
        let mut ms = parse("db.yaml", text).unwrap();
        let vars = BTreeMap::new();
        let notes = shape(
            &mut ms,
            &shaping(
                &vars,
                &Strategy {
                    max_surge: Some(json!(2)),
                    ..Default::default()
                },
            ),
        );
        assert_eq!(
            ms[0].object["spec"]["strategy"],
            json!({"type": "Recreate"})
        );
        assert!(notes[0].contains("PersistentVolumeClaim data"));

        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: fe}\nspec: {}\n";
        let mut ms = parse("fe.yaml", text).unwrap();
        shape(
            &mut ms,
            &shaping(
                &vars,
                &Strategy {
                    max_surge: Some(json!(1)),
                    ..Default::default()
                },
            ),
        );
        assert_eq!(
            ms[0].object["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 1, "maxUnavailable": "25%"})
        );
    }
}
