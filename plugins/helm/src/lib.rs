//! The built-in `helm` task kind: renders a chart with the real `helm template` and applies
//! what it rendered through gantry's kube capability with the shared apply engine, as Argo
//! CD deploys charts.
//!
//! Helm never gets cluster credentials and keeps no release storage: the namespace grant is
//! enforced by gantry on every object, there is no release that a killed client could leave
//! `pending-upgrade`, and rollback, pruning and readiness are the engine's (rollback puts back
//! the previous objects and removes only objects the failed deploy created, never ones that
//! existed before it).

pub mod chart;
pub mod hooks;
pub mod render;

use std::collections::BTreeMap;
use std::path::Path;

use gantry_kube_apply::engine::{self, Settings};
use gantry_kube_apply::kube::{self, Kube};
use gantry_kube_apply::params::{self, default_namespace, yes};
use gantry_kube_apply::yaml::Manifest;
use gantry_kube_apply::{ObjectKey, State, Strategy};
use gantry_sdk::host;
use gantry_sdk::{
    Capability, ChangeAction, Deployment, Output, ParamSpec, ParamsExt, PlannedChange, PluginInfo,
    RollbackOutcome, TaskContext, TaskError, ValidateContext, ValidationIssue, parse_duration,
    validate_params,
};
use serde::Deserialize;
use serde_json::{Value, json};

use render::{Hook, Rendered};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A chart directory or `.tgz` under the task's directory, a chart name in `repo`, or an
    /// `oci://` reference.
    pub chart: String,
    /// Chart repository URL (HTTP or HTTPS) when `chart` is a name in it.
    pub repo: Option<String>,
    /// Chart version (or constraint) for repository and OCI charts.
    pub version: Option<String>,
    /// Release name; the task's name when absent.
    pub release: Option<String>,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub create_namespace: bool,
    /// Values files under the task's directory, in order (later ones win).
    #[serde(default)]
    pub values_files: Vec<String>,
    /// Inline values (a TOML table; may hold `${tasks...}` outputs); win over the files.
    pub values: Option<Value>,
    /// Single values by dotted path; win over everything else.
    #[serde(default)]
    pub set: BTreeMap<String, Value>,
    /// Apply the CRDs of the chart's `crds/` directory first.
    #[serde(default = "yes")]
    pub include_crds: bool,
    /// Leave out the chart's test hooks (they are never run).
    #[serde(default = "yes")]
    pub skip_tests: bool,
    /// Delete the chart's `crds/` CRDs on destroy (and everything of their kinds).
    #[serde(default)]
    pub delete_crds: bool,
    /// Take over a release installed with the helm CLI: force field ownership and remove its
    /// `sh.helm.release.v1.*` Secrets.
    #[serde(default)]
    pub adopt: bool,
    pub cluster: Option<String>,
    #[serde(default = "yes")]
    pub wait: bool,
    pub wait_timeout: Option<String>,
    #[serde(default = "yes")]
    pub prune: bool,
    pub strategy: Option<String>,
    pub max_surge: Option<Value>,
    pub max_unavailable: Option<Value>,
    #[serde(default)]
    pub force_conflicts: bool,
    /// Put the previous objects back when a deploy does not become ready.
    #[serde(default = "yes")]
    pub rollback_on_failure: bool,
    /// Delete and re-create an object whose immutable fields changed (a Job's template).
    #[serde(default)]
    pub recreate_on_immutable: bool,
    /// Outputs picked from rendered objects: name → "KIND/NAME:PATH" (PATH dotted, e.g.
    /// `spec.ports.0.port`, or a JSON pointer).
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// Accept templates whose output changes on every render (`randAlphaNum`, `lookup`, ...);
    /// without it `validate` reports each such template line.
    #[serde(default)]
    pub allow_unstable: bool,
}

impl Params {
    fn timeout_ms(&self) -> Result<u64, TaskError> {
        params::wait_timeout_ms(self.wait_timeout.as_deref())
    }

    /// How long one helm command may take.
    pub fn render_timeout_ms(&self) -> u64 {
        120_000
    }

    fn strategy(&self) -> Result<Strategy, (String, String)> {
        Strategy::from_params(
            self.strategy.as_deref(),
            self.max_surge.as_ref(),
            self.max_unavailable.as_ref(),
        )
    }

    fn release(&self, task: &str) -> String {
        match &self.release {
            Some(r) => r.clone(),
            None => release_name(task),
        }
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
            force_conflicts: self.force_conflicts || self.adopt,
            prune: self.prune,
            wait: self.wait,
            timeout_ms: self.timeout_ms()?,
            rollback_on_failure: self.rollback_on_failure,
            recreate_on_immutable: self.recreate_on_immutable,
        })
    }
}

/// The task's name (its last part, `web` for `apps.web`) as a release name Helm accepts.
fn release_name(task: &str) -> String {
    let last = task.rsplit('.').next().unwrap_or(task);
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(53)
        .collect();
    let trimmed = cleaned.trim_matches('-').to_string();
    if trimmed.is_empty() {
        "release".into()
    } else {
        trimmed
    }
}

/// What a deployment records besides its objects.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize)]
struct Extra {
    chart: String,
    chart_version: String,
    app_version: String,
    digest: String,
    /// pre-delete and post-delete hooks, run on destroy without rendering again.
    #[serde(default)]
    delete_hooks: Vec<StoredHook>,
}

#[derive(Debug, Clone, serde::Serialize, Deserialize)]
struct StoredHook {
    events: Vec<String>,
    weight: i64,
    delete_policies: Vec<String>,
    object: Value,
}

fn previous_extra(d: Option<&Deployment>) -> Extra {
    d.and_then(|d| d.state.as_deref())
        .and_then(|s| State::decode(s).ok())
        .and_then(|s| serde_json::from_value(s.extra).ok())
        .unwrap_or_default()
}

/// Everything a deploy, plan or rollback needs from one render.
struct Release {
    rendered: Rendered,
    prepared: engine::Prepared,
    hooks: Vec<Hook>,
}

fn render_release(
    ctx: &TaskContext,
    p: &Params,
    kube: &dyn Kube,
    s: &Settings,
) -> Result<Release, TaskError> {
    let caps = render::capabilities(kube)?;
    let is_upgrade = ctx.previous.is_some();
    let rendered = render::render(
        &ctx.source_dir,
        &ctx.scratch_dir,
        p,
        &p.release(&ctx.task),
        &caps,
        is_upgrade,
    )?;
    let mut objects: Vec<Manifest> = rendered.crds.clone();
    objects.extend(rendered.objects.iter().cloned());
    let catalog = engine::catalog(kube, &objects)?;
    let prepared = engine::prepare(objects, catalog.clone(), s)?;
    let hook_objects: Vec<Manifest> = rendered.hooks.iter().map(|h| h.manifest.clone()).collect();
    let shaped = engine::prepare(hook_objects, catalog, s)?;
    // `prepare` sorts; put the shaped objects back with their hooks by identity.
    let by_key: BTreeMap<ObjectKey, Manifest> = shaped
        .objects
        .into_iter()
        .map(|m| (ObjectKey::of(&m.object), m))
        .collect();
    let hooks = rendered
        .hooks
        .iter()
        .map(|h| {
            let mut h = h.clone();
            let mut probe = h.manifest.object.clone();
            if probe["metadata"]["namespace"].is_null() {
                probe["metadata"]["namespace"] = json!(s.namespace);
            }
            if let Some(m) = by_key
                .get(&ObjectKey::of(&probe))
                .or_else(|| by_key.get(&ObjectKey::of(&h.manifest.object)))
            {
                h.manifest = m.clone();
            }
            h
        })
        .collect();
    Ok(Release {
        rendered,
        prepared,
        hooks,
    })
}

/// Unstable template functions of a local chart (remote charts are not scanned).
fn warn_unstable(ctx_source: &str, p: &Params) -> Vec<String> {
    match render::source(p) {
        Ok(chart::Source::Dir(dir)) => {
            chart::unstable_functions(Path::new(ctx_source), Path::new(&dir))
                .iter()
                .map(ToString::to_string)
                .collect()
        }
        _ => Vec::new(),
    }
}

/// Values picked from rendered objects, by "KIND/NAME:PATH".
fn picked_outputs(p: &Params, objects: &[Manifest]) -> Result<Vec<Output>, TaskError> {
    let mut out = Vec::new();
    for (key, spec) in &p.outputs {
        let (target, path) = spec.split_once(':').ok_or_else(|| {
            TaskError::InvalidConfig(format!(
                "outputs.{key}: `{spec}` should be KIND/NAME:PATH, e.g. Service/web:spec.ports.0.port"
            ))
        })?;
        let (kind, name) = target.split_once('/').ok_or_else(|| {
            TaskError::InvalidConfig(format!("outputs.{key}: `{target}` should be KIND/NAME"))
        })?;
        let pointer = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{}", path.replace('.', "/"))
        };
        let object = objects
            .iter()
            .find(|m| m.object["kind"] == kind && m.object["metadata"]["name"] == name)
            .ok_or_else(|| {
                TaskError::InvalidConfig(format!(
                    "outputs.{key}: the chart renders no {kind} {name}"
                ))
            })?;
        let value = object.object.pointer(&pointer).ok_or_else(|| {
            TaskError::InvalidConfig(format!(
                "outputs.{key}: {kind} {name} has nothing at `{path}`"
            ))
        })?;
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.push(Output::new(key.clone(), text));
    }
    Ok(out)
}

/// Reports the Secrets a helm CLI release keeps in the namespace, and removes them with
/// `adopt = true`, so that helm no longer believes it manages the objects gantry now owns.
fn release_secrets(kube: &dyn Kube, p: &Params, release: &str) -> Result<(), TaskError> {
    let selector = format!("owner=helm,name={release}");
    let found = kube.list("v1", "Secret", Some(&p.namespace), &selector)?;
    for text in found {
        let v: Value =
            serde_json::from_str(&text).map_err(|e| TaskError::Internal(e.to_string()))?;
        let name = v["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !name.starts_with("sh.helm.release.v1.") {
            continue;
        }
        if p.adopt {
            let target = gantry_sdk::host::ObjectRef {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some(p.namespace.clone()),
                name: name.clone(),
            };
            kube.delete(&target)?;
            host::info(&format!(
                "removed the helm release record {}/{name}",
                p.namespace
            ));
        } else {
            host::warn(&format!(
                "the helm release record {}/{name} is left over from the helm CLI: gantry now manages the release's objects; set adopt = true to remove it",
                p.namespace
            ));
        }
    }
    Ok(())
}

fn stored_hooks(hooks: &[Hook]) -> Vec<StoredHook> {
    hooks
        .iter()
        .filter(|h| {
            h.events
                .iter()
                .any(|e| e == "pre-delete" || e == "post-delete")
        })
        .map(|h| StoredHook {
            events: h.events.clone(),
            weight: h.weight,
            delete_policies: h.delete_policies.clone(),
            object: h.manifest.object.clone(),
        })
        .collect()
}

fn load_hooks(stored: &[StoredHook]) -> Vec<Hook> {
    stored
        .iter()
        .map(|h| Hook {
            events: h.events.clone(),
            weight: h.weight,
            delete_policies: h.delete_policies.clone(),
            manifest: Manifest {
                origin: gantry_kube_apply::Origin {
                    file: "previous deployment".into(),
                    line: 0,
                },
                object: h.object.clone(),
            },
        })
        .collect()
}

struct HelmTask;

impl gantry_sdk::Task for HelmTask {
    fn describe() -> PluginInfo {
        let param = ParamSpec::new;
        PluginInfo {
            name: "helm".into(),
            kinds: vec!["helm".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Renders a Helm chart with `helm template` and applies it through gantry's apply engine (no release storage)".into(),
            capabilities: vec![Capability::Exec("helm".into()), Capability::Kube],
            parameters: vec![
                param("chart", "string", true, "chart directory or .tgz under the task's directory, a chart name in `repo`, or an oci:// reference"),
                param("repo", "string", false, "chart repository URL"),
                param("version", "string", false, "chart version for repo and OCI charts"),
                param("release", "string", false, "release name").default("the task's name"),
                param("namespace", "string", false, "namespace of the release").default("\"default\""),
                param("create_namespace", "bool", false, "create the namespace if missing (never pruned)").default("false"),
                param("values_files", "list<string>", false, "values files under the task's directory, in order"),
                param("values", "table", false, "inline values; win over values_files"),
                param("set", "table", false, "values by dotted path; win over everything"),
                param("include_crds", "bool", false, "apply the chart's crds/ first").default("true"),
                param("skip_tests", "bool", false, "leave out test hooks").default("true"),
                param("delete_crds", "bool", false, "delete the crds/ CRDs on destroy").default("false"),
                param("adopt", "bool", false, "take over a helm CLI release and remove its release Secrets").default("false"),
                param("cluster", "string", false, "cluster from gantry.toml"),
                param("wait", "bool", false, "wait for readiness").default("true"),
                param("wait_timeout", "duration", false, "readiness and hook timeout").default("\"5m\""),
                param("prune", "bool", false, "delete objects the chart no longer renders").default("true"),
                param("strategy", "string", false, "Deployment strategy: RollingUpdate or Recreate").default("\"RollingUpdate\""),
                param("max_surge", "int|percent", false, "RollingUpdate maxSurge").default("\"25%\""),
                param("max_unavailable", "int|percent", false, "RollingUpdate maxUnavailable").default("\"25%\""),
                param("force_conflicts", "bool", false, "take over fields other managers own").default("false"),
                param("rollback_on_failure", "bool", false, "restore the previous objects when a deploy does not become ready").default("true"),
                param("recreate_on_immutable", "bool", false, "delete and re-create an object whose immutable fields changed, e.g. a Job's template").default("false"),
                param("outputs", "table<string>", false, "outputs picked from rendered objects: name = \"KIND/NAME:PATH\""),
                param("allow_unstable", "bool", false, "accept templates that render differently every time (lookup, randAlphaNum, ...)").default("false"),
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
        if p.values.as_ref().is_some_and(|v| !v.is_object()) {
            issues.push(ValidationIssue::new("values", "must be a table"));
        }
        if let Some(r) = &p.release
            && (r.is_empty()
                || r.len() > 53
                || !r
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
        {
            issues.push(ValidationIssue::new(
                "release",
                "must be at most 53 of [a-z0-9-] (a DNS label Helm accepts)",
            ));
        }
        for (k, spec) in &p.outputs {
            if !spec.split_once(':').is_some_and(|(t, _)| t.contains('/')) {
                issues.push(ValidationIssue::new(
                    &format!("outputs.{k}"),
                    format!(
                        "`{spec}` should be KIND/NAME:PATH, e.g. Service/web:spec.ports.0.port"
                    ),
                ));
            }
        }
        let source = match render::source(&p) {
            Ok(s) => s,
            Err(e) => {
                issues.push(ValidationIssue::new("chart", e));
                return issues;
            }
        };
        if matches!(source, chart::Source::Repo { .. } | chart::Source::Oci(_))
            && p.version.is_none()
        {
            issues.push(ValidationIssue::new(
                "version",
                "pin the chart version for repository and OCI charts, so a deploy is repeatable",
            ));
        }
        let Some(src) = &ctx.source_dir else {
            return issues;
        };
        let root = Path::new(src);
        match &source {
            chart::Source::Dir(dir) => {
                if let Err(e) = chart::read_chart_yaml(root, Path::new(dir)) {
                    issues.push(located("chart", &e));
                }
                if !p.allow_unstable {
                    for u in chart::unstable_functions(root, Path::new(dir)) {
                        issues.push(
                            ValidationIssue::new(
                                "chart",
                                format!(
                                    "the template uses `{}`, whose output changes on every render, so every plan shows a change; set allow_unstable = true to accept it",
                                    u.function
                                ),
                            )
                            .at(&u.file, u.line, 0),
                        );
                    }
                }
            }
            chart::Source::Archive(file) if !root.join(file).is_file() => {
                issues.push(ValidationIssue::new(
                    "chart",
                    format!("`{file}` does not exist"),
                ));
            }
            _ => {}
        }
        for (i, f) in p.values_files.iter().enumerate() {
            let field = format!("values_files.{i}");
            let rel = match chart::relative(f) {
                Ok(r) => r,
                Err(e) => {
                    issues.push(ValidationIssue::new(&field, e));
                    continue;
                }
            };
            match std::fs::read_to_string(root.join(&rel)) {
                Err(e) => issues.push(ValidationIssue::new(&field, format!("`{f}`: {e}"))),
                Ok(text) => {
                    for doc in gantry_kube_apply::yaml::documents(&text) {
                        if let Err(e) = gantry_kube_apply::yaml::read_document(f, &doc) {
                            issues.push(
                                ValidationIssue::new(&field, e.message.clone())
                                    .at(&e.file, e.line, e.column),
                            );
                        }
                    }
                }
            }
        }
        issues
    }

    fn plan(ctx: &TaskContext) -> Result<Vec<PlannedChange>, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let release = render_release(ctx, &p, kube.as_ref(), &s)?;
        let before = previous_extra(ctx.previous.as_ref());
        let chart = &release.rendered.chart;
        let mut notes = Vec::new();
        if ctx.previous.is_some() && before.chart_version != chart.version {
            notes.push(format!(
                "chart {} {} → {}",
                chart.name, before.chart_version, chart.version
            ));
        }
        let unstable = warn_unstable(&ctx.source_dir, &p);
        if !unstable.is_empty() {
            notes.push(format!(
                "renders differently every time: {}",
                unstable.join("; ")
            ));
        }
        let mut changes = vec![PlannedChange {
            action: if ctx.previous.is_none() {
                ChangeAction::Create
            } else if notes.is_empty() && before.digest == release.rendered.digest {
                ChangeAction::Unchanged
            } else {
                ChangeAction::Update
            },
            target: format!("chart {} {}", chart.name, chart.version),
            detail: notes.join("; "),
            before: None,
            after: None,
        }];
        changes.extend(engine::plan(
            kube.as_ref(),
            &release.prepared,
            ctx.previous.as_ref(),
            &s,
        )?);
        Ok(changes)
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let release = render_release(ctx, &p, kube.as_ref(), &s)?;
        let name = p.release(&ctx.task);
        for u in warn_unstable(&ctx.source_dir, &p) {
            host::warn(&format!("{u}: its output changes on every render"));
        }
        if s.create_namespace {
            engine::ensure_namespace(kube.as_ref(), &s.namespace)?;
        }
        release_secrets(kube.as_ref(), &p, &name)?;
        let upgrade = ctx.previous.is_some();
        let (pre, post) = if upgrade {
            ("pre-upgrade", "post-upgrade")
        } else {
            ("pre-install", "post-install")
        };
        hooks::run(kube.as_ref(), &release.hooks, pre, &s)?;
        let applied = engine::deploy(kube.as_ref(), &release.prepared, ctx.previous.as_ref(), &s)?;
        hooks::run(kube.as_ref(), &release.hooks, post, &s)?;

        let chart = &release.rendered.chart;
        let mut outputs = vec![
            Output::new("release", name),
            Output::new("namespace", p.namespace.clone()),
            Output::new("chart", chart.name.clone()),
            Output::new("chart_version", chart.version.clone()),
            Output::new("app_version", chart.app_version.clone()),
            Output::new("manifest_digest", release.rendered.digest.clone()),
            Output::new("objects", release.prepared.objects.len().to_string()),
        ];
        outputs.extend(picked_outputs(&p, &release.prepared.objects)?);
        let extra = Extra {
            chart: chart.name.clone(),
            chart_version: chart.version.clone(),
            app_version: chart.app_version.clone(),
            digest: release.rendered.digest.clone(),
            delete_hooks: stored_hooks(&release.hooks),
        };
        applied.deployment(
            outputs,
            serde_json::to_value(extra).map_err(|e| TaskError::Internal(e.to_string()))?,
        )
    }

    fn rollback(ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        // What this run applied is what the chart renders now; if it no longer renders, only
        // the previous objects are put back.
        let current = match render_release(ctx, &p, kube.as_ref(), &s) {
            Ok(r) => r.prepared.keys(),
            Err(e) => {
                host::warn(&format!(
                    "the chart does not render ({e:?}); re-applying the previous objects only"
                ));
                Vec::new()
            }
        };
        engine::rollback(kube.as_ref(), &current, ctx.previous.as_ref(), &s)?;
        Ok(params::rolled_back(ctx.previous.as_ref()))
    }

    fn destroy(ctx: &TaskContext) -> Result<(), TaskError> {
        let p: Params = ctx.params()?;
        let Some(previous) = &ctx.previous else {
            return Ok(());
        };
        let s = p.settings(ctx)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let hooks = load_hooks(&previous_extra(Some(previous)).delete_hooks);
        hooks::run(kube.as_ref(), &hooks, "pre-delete", &s)?;
        engine::destroy(kube.as_ref(), Some(previous), &ctx.task)?;
        hooks::run(kube.as_ref(), &hooks, "post-delete", &s)
    }
}

/// A validation issue at the file and line an error message starts with ("file:line: ...").
fn located(field: &str, message: &str) -> ValidationIssue {
    let mut parts = message.splitn(3, ':');
    let (file, line) = (
        parts.next(),
        parts.next().and_then(|l| l.trim().parse::<u32>().ok()),
    );
    match (file, line) {
        (Some(f), Some(l)) => ValidationIssue::new(field, message).at(f, l, 0),
        _ => ValidationIssue::new(field, message),
    }
}

gantry_sdk::export_task!(HelmTask);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Task;
    use gantry_sdk::testing::validate_context;

    #[test]
    fn release_names_come_from_the_task() {
        assert_eq!(release_name("apps.web"), "web");
        assert_eq!(release_name("apps.Web_Front"), "web-front");
    }

    #[test]
    fn validation_names_the_field() {
        let v = |p: &str| HelmTask::validate(&validate_context("helm", p));
        assert_eq!(v("{}")[0].field, "chart");
        assert_eq!(v(r#"{"chart": "../x"}"#)[0].field, "chart");
        assert_eq!(
            v(r#"{"chart": "web", "repo": "http://x"}"#)[0].field,
            "version"
        );
        assert_eq!(
            v(r#"{"chart": "c", "release": "Bad_Name"}"#)[0].field,
            "release"
        );
        assert_eq!(
            v(r#"{"chart": "c", "outputs": {"p": "web"}}"#)[0].field,
            "outputs.p"
        );
        assert!(v(r#"{"chart": "c", "values": {"a": 1}, "set": {"b": "x"}}"#).is_empty());
    }

    #[test]
    fn outputs_are_picked_from_rendered_objects() {
        let ms = gantry_kube_apply::yaml::parse(
            "svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 8080}]}\n",
        )
        .unwrap_or_default();
        let p: Params = serde_json::from_value(json!({"chart": "c", "outputs": {"port": "Service/web:spec.ports.0.port", "name": "Service/web:/metadata/name"}})).unwrap_or_else(|e| panic!("{e}"));
        let out = picked_outputs(&p, &ms).unwrap_or_default();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].value, "web");
        assert_eq!(out[1].value, "8080");
    }
}
