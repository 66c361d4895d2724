//! The built-in `manifest` task kind: applies Kubernetes manifests with server-side apply,
//! waits for them to become ready, labels and records what it applied as the task's
//! inventory, prunes what left the manifests, and rolls back or destroys by inventory.

pub mod objects;

use std::collections::BTreeMap;
use std::path::Path;

use gantry_kube_apply::engine::{self, Settings};
use gantry_kube_apply::params::{self, default_namespace, yes};
use gantry_kube_apply::{Catalog, ObjectKey, Strategy, kube};
use gantry_sdk::{
    Capability, Deployment, ParamSpec, ParamsExt, PlannedChange, PluginInfo, RollbackOutcome,
    TaskContext, TaskError, ValidateContext, ValidationIssue, parse_duration, validate_params,
};
use serde::Deserialize;
use serde_json::Value;

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
    /// When the objects do not become ready, put the previous ones back before failing.
    #[serde(default)]
    rollback_on_failure: bool,
    /// Delete and re-create an object whose immutable fields changed (a Job's template).
    #[serde(default)]
    recreate_on_immutable: bool,
}

impl Params {
    fn timeout_ms(&self) -> Result<u64, TaskError> {
        params::wait_timeout_ms(self.wait_timeout.as_deref())
    }

    fn strategy(&self) -> Result<Strategy, (String, String)> {
        Strategy::from_params(
            self.strategy.as_deref(),
            self.max_surge.as_ref(),
            self.max_unavailable.as_ref(),
        )
    }

    fn settings(&self, ctx: &TaskContext) -> Result<Settings, TaskError> {
        Ok(Settings {
            workflow: ctx.workflow.clone(),
            task: ctx.task.clone(),
            namespace: self.namespace.clone(),
            create_namespace: self.create_namespace,
            strategy: self
                .strategy()
                .map_err(|(_, m)| TaskError::InvalidConfig(m))?,
            force_conflicts: self.force_conflicts,
            prune: self.prune,
            wait: self.wait,
            timeout_ms: self.timeout_ms()?,
            rollback_on_failure: self.rollback_on_failure,
            recreate_on_immutable: self.recreate_on_immutable,
        })
    }
}

/// The task's manifests read, checked against the cluster and shaped, nothing applied yet.
fn load(
    ctx: &TaskContext,
    p: &Params,
    kube: &dyn kube::Kube,
    s: &Settings,
) -> Result<engine::Prepared, TaskError> {
    let all = objects::read_all(Path::new(&ctx.source_dir), &p.path, Some(&p.vars))
        .map_err(|e| TaskError::InvalidConfig(e.to_string()))?;
    let catalog = engine::catalog(kube, &all)?;
    engine::prepare(all, catalog, s)
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
                param("rollback_on_failure", "bool", false, "put the previous objects back when the new ones do not become ready (default false)"),
                param("recreate_on_immutable", "bool", false, "delete and re-create an object whose immutable fields changed, e.g. a Job's template (default false)"),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        let params = ctx.params.as_str();
        let mut issues = validate_params::<Params>(params);
        let Ok(p) = serde_json::from_str::<Params>(params) else {
            return issues;
        };
        if let Some(Err(e)) = p.wait_timeout.as_deref().map(parse_duration) {
            issues.push(ValidationIssue::new("wait_timeout", e));
        }
        if let Err((field, e)) = p.strategy() {
            issues.push(ValidationIssue::new(&field, e));
        }
        if p.path.trim().is_empty() {
            issues.push(ValidationIssue::new(
                "path",
                "must name a file or directory of manifests",
            ));
        } else if let Some(src) = &ctx.source_dir {
            // The manifests are read as a deploy reads them, so a file that would fail the
            // deploy fails validation, at its line. `${vars...}` may hold outputs of other
            // tasks, unknown yet, so they stand for placeholders here.
            match objects::read_all(Path::new(src), &p.path, None) {
                Ok(all) => {
                    let s = Settings {
                        workflow: String::new(),
                        task: String::new(),
                        namespace: p.namespace.clone(),
                        create_namespace: false,
                        strategy: Strategy::default(),
                        force_conflicts: false,
                        prune: false,
                        wait: false,
                        timeout_ms: 0,
                        rollback_on_failure: false,
                        recreate_on_immutable: false,
                    };
                    if let Err(TaskError::InvalidConfig(m)) =
                        engine::prepare(all, Catalog::open(), &s)
                    {
                        issues.push(ValidationIssue::new("path", m));
                    }
                }
                Err(e) => issues.push(
                    ValidationIssue::new("path", e.message.clone()).at(&e.file, e.line, e.column),
                ),
            }
        }
        issues
    }

    fn plan(ctx: &TaskContext) -> Result<Vec<PlannedChange>, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let prepared = load(ctx, &p, kube.as_ref(), &s)?;
        engine::plan(kube.as_ref(), &prepared, ctx.previous.as_ref(), &s)
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let prepared = load(ctx, &p, kube.as_ref(), &s)?;
        let applied = engine::deploy(kube.as_ref(), &prepared, ctx.previous.as_ref(), &s)?;
        applied.deployment(
            vec![
                gantry_sdk::Output::new("objects", prepared.objects.len().to_string()),
                gantry_sdk::Output::new("namespace", p.namespace.clone()),
            ],
            Value::Null,
        )
    }

    fn rollback(ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let current: Vec<ObjectKey> = load(ctx, &p, kube.as_ref(), &s)?.keys();
        engine::rollback(kube.as_ref(), &current, ctx.previous.as_ref(), &s)?;
        Ok(params::rolled_back(ctx.previous.as_ref()))
    }

    fn destroy(ctx: &TaskContext) -> Result<(), TaskError> {
        let p: Params = ctx.params()?;
        if ctx.previous.is_none() {
            return Ok(());
        }
        let kube = kube::open(p.cluster.as_deref())?;
        engine::destroy(kube.as_ref(), ctx.previous.as_ref(), &ctx.task)
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
}
