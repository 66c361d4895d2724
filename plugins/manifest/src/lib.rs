//! The built-in `manifest` task kind: applies Kubernetes manifests with server-side apply,
//! waits for them to become ready, labels and records what it applied as the task's
//! inventory, prunes what left the manifests, and rolls back or destroys by inventory.

mod cluster;
pub mod objects;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use gantry_sdk::host::{self, ObjectRef, ReadinessState};
use gantry_sdk::{
    Capability, ChangeAction, Deployment, KubeError, ParamSpec, ParamsExt, PlannedChange,
    PluginInfo, RollbackOutcome, TaskContext, TaskError, ValidateContext, ValidationIssue,
    parse_duration, validate_params,
};
use serde::Deserialize;
use serde_json::Value;

use cluster::{Cluster, object_ref};
use objects::{Manifest, Shaping, Strategy, TASK_LABEL, parse_id};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// A file or directory of YAML/JSON manifests, relative to the workflow's directory.
    path: String,
    /// Namespace for objects that name none.
    #[serde(default = "default_namespace")]
    namespace: String,
    /// Cluster from gantry.toml; the default one when absent.
    cluster: Option<String>,
    /// Wait for readiness after applying.
    #[serde(default = "yes")]
    wait: bool,
    /// How long to wait for readiness, e.g. "5m". (`timeout` is the engine's limit on the
    /// whole task and should be longer.)
    wait_timeout: Option<String>,
    /// Delete objects of the previous deployment that left the manifests.
    #[serde(default = "yes")]
    prune: bool,
    /// "RollingUpdate" (default) or "Recreate" for Deployments.
    strategy: Option<String>,
    /// RollingUpdate surge: a count or a percentage ("25%").
    max_surge: Option<Value>,
    /// RollingUpdate unavailability: a count or a percentage ("25%").
    max_unavailable: Option<Value>,
    /// Values for `${vars.NAME}` in the manifests; may hold `${tasks...}` outputs.
    #[serde(default)]
    vars: BTreeMap<String, String>,
    /// Take over fields another field manager owns instead of failing on the conflict.
    #[serde(default)]
    force_conflicts: bool,
    /// Create `namespace` if it is missing. It is not part of the inventory, so it is never
    /// pruned or destroyed with the task.
    #[serde(default)]
    create_namespace: bool,
}

fn default_namespace() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

const DEFAULT_TIMEOUT_MS: u64 = 5 * 60 * 1000;

impl Params {
    fn timeout_ms(&self) -> Result<u64, TaskError> {
        match &self.wait_timeout {
            None => Ok(DEFAULT_TIMEOUT_MS),
            Some(t) => parse_duration(t)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .map_err(TaskError::InvalidConfig),
        }
    }

    fn strategy(&self) -> Result<Strategy, String> {
        let recreate = match self.strategy.as_deref() {
            None | Some("RollingUpdate") => false,
            Some("Recreate") => true,
            Some(other) => {
                return Err(format!(
                    "`{other}` is not a strategy; use \"RollingUpdate\" or \"Recreate\""
                ));
            }
        };
        for (field, v) in [
            ("max_surge", &self.max_surge),
            ("max_unavailable", &self.max_unavailable),
        ] {
            if let Some(v) = v
                && !valid_int_or_percent(v)
            {
                return Err(format!(
                    "`{field}` must be a count (1) or a percentage (\"25%\"), not {v}"
                ));
            }
        }
        Ok(Strategy {
            recreate,
            max_surge: self.max_surge.clone(),
            max_unavailable: self.max_unavailable.clone(),
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

fn issue(field: &str, message: String) -> ValidationIssue {
    ValidationIssue::new(field, message)
}

/// The task's manifests, read and shaped; notes are logged.
fn load(ctx: &TaskContext, p: &Params) -> Result<Vec<Manifest>, TaskError> {
    let root = Path::new(&ctx.source_dir);
    let mut all = Vec::new();
    for file in objects::files(root, &p.path).map_err(TaskError::InvalidConfig)? {
        let origin = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| TaskError::InvalidConfig(format!("{origin}: {e}")))?;
        let text = objects::substitute(&text, &p.vars)
            .map_err(|e| TaskError::InvalidConfig(format!("{origin}: {e}")))?;
        all.extend(objects::parse(&origin, &text).map_err(TaskError::InvalidConfig)?);
    }
    let strategy = p.strategy().map_err(TaskError::InvalidConfig)?;
    let notes = objects::shape(
        &mut all,
        &Shaping {
            namespace: &p.namespace,
            workflow: &ctx.workflow,
            task: &ctx.task,
            vars: &p.vars,
            strategy: &strategy,
        },
    );
    for note in notes {
        host::warn(&note);
    }
    let mut seen = BTreeSet::new();
    for m in &all {
        if !seen.insert(m.id()) {
            return Err(TaskError::InvalidConfig(format!(
                "{}: {} is defined twice",
                m.origin,
                m.id()
            )));
        }
    }
    Ok(all)
}

fn object_text(m: &Manifest) -> Result<String, TaskError> {
    serde_json::to_string(&m.object).map_err(|e| TaskError::Internal(e.to_string()))
}

fn apply_all(cluster: &Cluster, ms: &[Manifest], force: bool) -> Result<(), TaskError> {
    for m in ms {
        cluster
            .apply(&object_text(m)?, false, force)
            .map_err(|e| match e {
                TaskError::Kube(mut k) if k.status == 409 && k.reason == "Conflict" => {
                    k.message = format!(
                        "{}; another field manager owns these fields: set force_conflicts = true to take them over",
                        k.message
                    );
                    TaskError::Kube(k)
                }
                other => other,
            })?;
        host::log(
            host::Level::Info,
            &format!("applied {}", describe(m)),
            &[("object", &m.id())],
        );
    }
    Ok(())
}

fn ensure_namespace(cluster: &Cluster, name: &str) -> Result<(), TaskError> {
    let target = ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: name.into(),
    };
    if cluster.get(&target)?.is_none() {
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        cluster.apply(&ns.to_string(), false, false)?;
        host::info(&format!("created namespace {name}"));
    }
    Ok(())
}

fn describe(m: &Manifest) -> String {
    match m.namespace() {
        Some(ns) => format!("{} {ns}/{}", m.kind(), m.name()),
        None => format!("{} {}", m.kind(), m.name()),
    }
}

/// Deletes inventory entries, newest-applied first, skipping objects another task took over.
fn delete_ids(cluster: &Cluster, ids: &[String], task: &str, verb: &str) -> Result<(), TaskError> {
    for id in ids.iter().rev() {
        let Some(oid) = parse_id(id) else {
            host::warn(&format!("ignoring malformed inventory entry {id:?}"));
            continue;
        };
        let target = object_ref(&oid);
        if let Some(live) = cluster.get(&target)? {
            let owner = serde_json::from_str::<Value>(&live).ok().and_then(|v| {
                v.pointer(&format!(
                    "/metadata/labels/{}",
                    TASK_LABEL.replace('/', "~1")
                ))
                .cloned()
            });
            if owner.as_ref().and_then(Value::as_str) != Some(objects::label_value(task).as_str()) {
                host::warn(&format!(
                    "not deleting {id}: it now belongs to {}",
                    owner.map_or("nobody".to_string(), |o| o.to_string())
                ));
                continue;
            }
            if cluster.delete(&target)? {
                host::info(&format!("{verb} {id}"));
            }
        }
    }
    Ok(())
}

fn wait(cluster: &Cluster, ms: &[Manifest], timeout_ms: u64) -> Result<(), TaskError> {
    let targets: Vec<ObjectRef> = ms
        .iter()
        .filter_map(|m| parse_id(&m.id()))
        .map(|id| object_ref(&id))
        .collect();
    host::info(&format!(
        "waiting up to {} s for {} objects to become ready",
        timeout_ms / 1000,
        targets.len()
    ));
    let states = cluster.wait_ready(&targets, timeout_ms)?;
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    for s in &states {
        let ns = s
            .target
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let what = format!("{} {ns}{}", s.target.kind, s.target.name);
        match &s.state {
            ReadinessState::Ready => {}
            ReadinessState::Failed(m) => failed.push(format!("{what}: {m}")),
            ReadinessState::Progressing(m) => waiting.push(format!("{what}: {m}")),
        }
    }
    if !failed.is_empty() {
        return Err(TaskError::Kube(KubeError {
            status: 0,
            reason: "NotReady".into(),
            message: format!("failed: {}", failed.join("; ")),
        }));
    }
    if waiting.is_empty() {
        host::info("all objects are ready");
        return Ok(());
    }
    Err(TaskError::TimedOut(format!(
        "not ready after {} s: {}",
        timeout_ms / 1000,
        waiting.join("; ")
    )))
}

fn deployment(ms: &[Manifest], p: &Params) -> Result<Deployment, TaskError> {
    let objects: Vec<&Value> = ms.iter().map(|m| &m.object).collect();
    let state = serde_json::to_string(&objects).map_err(|e| TaskError::Internal(e.to_string()))?;
    let mut d = Deployment::with_outputs([
        ("objects", ms.len().to_string()),
        ("namespace", p.namespace.clone()),
    ]);
    d.inventory = ms.iter().map(Manifest::id).collect();
    d.state = Some(state);
    Ok(d)
}

fn previous_manifests(d: &Deployment) -> Result<Vec<Manifest>, TaskError> {
    let Some(state) = &d.state else {
        return Ok(Vec::new());
    };
    let objects: Vec<Value> = serde_json::from_str(state)
        .map_err(|e| TaskError::Internal(format!("the recorded state does not parse: {e}")))?;
    Ok(objects
        .into_iter()
        .map(|object| Manifest {
            origin: "previous deployment".into(),
            object,
        })
        .collect())
}

struct ManifestTask;

impl gantry_sdk::Task for ManifestTask {
    fn describe() -> PluginInfo {
        let param = ParamSpec::new;
        PluginInfo {
            name: "manifest".into(),
            kinds: vec!["manifest".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Applies Kubernetes manifests server-side, waits for readiness, prunes and rolls back by inventory".into(),
            capabilities: vec![Capability::Kube],
            parameters: vec![
                param("path", "string", true, "file or directory of manifests, relative to the workflow directory"),
                param("namespace", "string", false, "namespace for objects that name none (default \"default\")"),
                param("cluster", "string", false, "cluster from gantry.toml (default: the default cluster)"),
                param("wait", "bool", false, "wait for readiness (default true)"),
                param("wait_timeout", "duration", false, "how long to wait for readiness (default 5m)"),
                param("prune", "bool", false, "delete objects that left the manifests (default true)"),
                param("strategy", "string", false, "Deployment strategy: RollingUpdate (default) or Recreate"),
                param("max_surge", "int|percent", false, "RollingUpdate maxSurge (default 25%)"),
                param("max_unavailable", "int|percent", false, "RollingUpdate maxUnavailable (default 25%)"),
                param("vars", "table<string>", false, "values for ${vars.NAME} in the manifests"),
                param("force_conflicts", "bool", false, "take over fields other managers own"),
                param("create_namespace", "bool", false, "create the namespace if missing (never pruned)"),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        let params = ctx.params.as_str();
        let mut issues = validate_params::<Params>(params);
        if let Ok(p) = serde_json::from_str::<Params>(params) {
            if let Some(Err(e)) = p.wait_timeout.as_deref().map(parse_duration) {
                issues.push(issue("wait_timeout", e));
            }
            if let Err(e) = p.strategy() {
                let field = if e.contains("max_surge") {
                    "max_surge"
                } else if e.contains("max_unavailable") {
                    "max_unavailable"
                } else {
                    "strategy"
                };
                issues.push(issue(field, e));
            }
            if p.path.trim().is_empty() {
                issues.push(issue(
                    "path",
                    "must name a file or directory of manifests".into(),
                ));
            }
        }
        issues
    }

    fn plan(ctx: &TaskContext) -> Result<Vec<PlannedChange>, TaskError> {
        let p: Params = ctx.params()?;
        let ms = load(ctx, &p)?;
        let cluster = Cluster::open(p.cluster.as_deref())?;
        let mut changes = Vec::new();
        let mut new_namespaces = BTreeSet::new();
        for m in &ms {
            let id = parse_id(&m.id())
                .ok_or_else(|| TaskError::Internal(format!("bad id {}", m.id())))?;
            let live = cluster.get(&object_ref(&id))?;
            let (action, detail) = match live {
                None => {
                    if m.kind() == "Namespace" {
                        new_namespaces.insert(m.name().to_string());
                    }
                    (ChangeAction::Create, String::new())
                }
                Some(_) if m.namespace().is_some_and(|ns| new_namespaces.contains(ns)) => {
                    (ChangeAction::Create, String::new())
                }
                Some(live) => {
                    let after = cluster.apply(&object_text(m)?, true, p.force_conflicts)?;
                    let diff = plan_diff(&live, &after);
                    if diff.is_empty() {
                        (ChangeAction::Unchanged, String::new())
                    } else {
                        (ChangeAction::Update, diff.join(", "))
                    }
                }
            };
            changes.push(PlannedChange {
                action,
                target: m.id(),
                detail,
                before: None,
                after: None,
            });
        }
        if p.prune {
            let now: BTreeSet<String> = ms.iter().map(Manifest::id).collect();
            for id in ctx.previous.iter().flat_map(|d| &d.inventory) {
                if !now.contains(id) {
                    changes.push(PlannedChange {
                        action: ChangeAction::Delete,
                        target: id.clone(),
                        detail: "pruned: no longer in the manifests".into(),
                        before: None,
                        after: None,
                    });
                }
            }
        }
        Ok(changes)
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let timeout = p.timeout_ms()?;
        let ms = load(ctx, &p)?;
        let cluster = Cluster::open(p.cluster.as_deref())?;
        if p.create_namespace {
            ensure_namespace(&cluster, &p.namespace)?;
        }
        apply_all(&cluster, &ms, p.force_conflicts)?;
        if p.prune
            && let Some(prev) = &ctx.previous
        {
            let now: BTreeSet<String> = ms.iter().map(Manifest::id).collect();
            let gone: Vec<String> = prev
                .inventory
                .iter()
                .filter(|id| !now.contains(*id))
                .cloned()
                .collect();
            delete_ids(&cluster, &gone, &ctx.task, "pruned")?;
        }
        if p.wait {
            wait(&cluster, &ms, timeout)?;
        }
        deployment(&ms, &p)
    }

    fn rollback(ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        let p: Params = ctx.params()?;
        let timeout = p.timeout_ms()?;
        let current = load(ctx, &p)?;
        let cluster = Cluster::open(p.cluster.as_deref())?;
        let previous = ctx
            .previous
            .as_ref()
            .map(previous_manifests)
            .transpose()?
            .unwrap_or_default();
        let keep: BTreeSet<String> = previous.iter().map(Manifest::id).collect();
        if previous.is_empty() {
            host::info("no earlier deployment: rolling back removes what this run applied");
        } else {
            host::info(&format!(
                "re-applying the {} objects of the previous deployment",
                previous.len()
            ));
            apply_all(&cluster, &previous, true)?;
        }
        let added: Vec<String> = current
            .iter()
            .map(Manifest::id)
            .filter(|id| !keep.contains(id))
            .collect();
        delete_ids(&cluster, &added, &ctx.task, "removed")?;
        if p.wait && !previous.is_empty() {
            wait(&cluster, &previous, timeout)?;
        }
        Ok(RollbackOutcome::RolledBack(match &ctx.previous {
            Some(d) => d.clone(),
            None => Deployment::with_outputs(Vec::<(String, String)>::new()),
        }))
    }

    fn destroy(ctx: &TaskContext) -> Result<(), TaskError> {
        let p: Params = ctx.params()?;
        let Some(prev) = &ctx.previous else {
            return Ok(());
        };
        let cluster = Cluster::open(p.cluster.as_deref())?;
        delete_ids(&cluster, &prev.inventory, &ctx.task, "deleted")
    }
}

/// Leaves that differ between the live object and its dry-run result, ignoring what the
/// server maintains.
fn plan_diff(live: &str, after: &str) -> Vec<String> {
    let (Ok(a), Ok(b)) = (
        serde_json::from_str::<Value>(live),
        serde_json::from_str::<Value>(after),
    ) else {
        return vec!["changed".into()];
    };
    let mut out = Vec::new();
    diff(&strip(a), &strip(b), String::new(), &mut out);
    out.truncate(8);
    out
}

fn strip(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "resourceVersion",
                "managedFields",
                "generation",
                "creationTimestamp",
                "uid",
            ] {
                md.remove(k);
            }
        }
    }
    v
}

fn diff(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff(l, r, path, out),
                    (None, Some(r)) => out.push(format!("{path}: + {}", short(r))),
                    (Some(_), None) => out.push(format!("{path}: removed")),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => out.push(format!("{at}: {} → {}", short(a), short(b))),
        _ => {}
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(57).map_or(s.len(), |(i, _)| i)]
        )
    } else {
        s
    }
}

gantry_sdk::export_task!(ManifestTask);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Task;
    use gantry_sdk::testing::validate_context;

    #[test]
    fn validation_names_the_field() {
        let v = |p: &str| ManifestTask::validate(&validate_context("manifest", p));
        let issues = v(r#"{"path": "k8s", "max_surge": "150%"}"#);
        assert_eq!(issues[0].field, "max_surge");
        let issues = v(r#"{"path": "k8s", "strategy": "BlueGreen"}"#);
        assert_eq!(issues[0].field, "strategy");
        let issues = v(r#"{"path": "k8s", "wait_timeout": "soon"}"#);
        assert_eq!(issues[0].field, "wait_timeout");
        assert!(v(r#"{"path": "k8s", "max_unavailable": 1}"#).is_empty());
        assert_eq!(v(r#"{}"#)[0].field, "path");
    }

    #[test]
    fn plan_diff_ignores_server_fields() {
        let live = r#"{"metadata": {"resourceVersion": "1", "name": "a"}, "spec": {"replicas": 1}, "status": {"x": 1}}"#;
        let after = r#"{"metadata": {"resourceVersion": "2", "name": "a"}, "spec": {"replicas": 3}, "status": {"x": 2}}"#;
        assert_eq!(plan_diff(live, after), vec!["spec.replicas: 1 → 3"]);
        assert!(plan_diff(live, live).is_empty());
    }
}
