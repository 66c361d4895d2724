//! The built-in `compose` task kind: a compose file translated into Kubernetes objects inside
//! the sandbox (no host tool, nothing to grant but kube) and applied into the task's
//! namespace with the shared apply engine, as Bunnyshell bundles an environment's compose
//! components into one manifest. Services are applied in `depends_on` order, waiting where a
//! condition asks for it; inventory, pruning, readiness, rollback, destroy and diff are the
//! engine's.

pub mod env;
pub mod node;
pub mod translate;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path};

use gantry_kube_apply::engine::{self, Applied, Prepared, Previous, Settings};
use gantry_kube_apply::params::{self, default_namespace, yes};
use gantry_kube_apply::shape::label_value;
use gantry_kube_apply::{Catalog, Manifest, ObjectKey, Origin, Strategy, kube};
use gantry_sdk::host::{self, ObjectRef};
use gantry_sdk::{
    Capability, Deployment, Output, ParamSpec, ParamsExt, PlannedChange, PluginInfo,
    RollbackOutcome, TaskContext, TaskError, ValidateContext, ValidationIssue, parse_duration,
    validate_params,
};
use serde::Deserialize;
use serde_json::Value;

use translate::{Condition, Input, Issue, Translation};

/// The names compose looks for when no file is given, in its order.
const DEFAULT_FILES: &[&str] = &[
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The compose file, relative to the task's source directory.
    file: Option<String>,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    create_namespace: bool,
    cluster: Option<String>,
    /// Interpolation variables; they win over `.env`. Values may hold outputs of earlier
    /// tasks (an image tag from a build task).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Profiles to enable; services without `profiles` are always enabled.
    #[serde(default)]
    profiles: Vec<String>,
    /// Services whose Service is a NodePort (published ports in 30000-32767 become the
    /// node ports); the others are ClusterIP.
    #[serde(default)]
    node_ports: Vec<String>,
    /// Size of each PersistentVolumeClaim made from a named volume.
    #[serde(default = "default_size")]
    volume_size: String,
    #[serde(default)]
    volume_sizes: BTreeMap<String, String>,
    storage_class: Option<String>,
    #[serde(default = "yes")]
    wait: bool,
    wait_timeout: Option<String>,
    #[serde(default = "yes")]
    prune: bool,
    strategy: Option<String>,
    max_surge: Option<Value>,
    max_unavailable: Option<Value>,
    #[serde(default)]
    force_conflicts: bool,
    #[serde(default = "yes")]
    rollback_on_failure: bool,
}

fn default_size() -> String {
    "1Gi".into()
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

    fn settings(&self, workflow: &str, task: &str) -> Result<Settings, TaskError> {
        Ok(Settings {
            workflow: workflow.into(),
            task: task.into(),
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
            // One-shot services are Jobs named by their content, so a changed one is a new
            // object; nothing this kind applies needs deleting to change.
            recreate_on_immutable: false,
        })
    }
}

/// A path inside the task's source: relative, without `..`.
fn inside(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(format!("`{path}` must stay inside the task's directory"));
    }
    Ok(())
}

/// The compose file (relative to the source) and its text.
fn compose_file(root: &Path, p: &Params) -> Result<(String, String), Issue> {
    let whole = |file: &str, message: String| Issue {
        file: file.to_string(),
        line: 0,
        column: 0,
        message,
    };
    let file = match &p.file {
        Some(f) => {
            inside(f).map_err(|m| whole(f, m))?;
            f.clone()
        }
        None => DEFAULT_FILES
            .iter()
            .find(|f| root.join(f).is_file())
            .map(|f| f.to_string())
            .ok_or_else(|| {
                whole(
                    ".",
                    format!(
                        "no compose file: set `file` or add one of {}",
                        DEFAULT_FILES.join(", ")
                    ),
                )
            })?,
    };
    let text =
        std::fs::read_to_string(root.join(&file)).map_err(|e| whole(&file, e.to_string()))?;
    Ok((file, text))
}

/// Translates the task's compose file. `.env` beside it gives interpolation variables,
/// the task's `env` overrides them.
fn load(root: &Path, p: &Params, project: &str) -> Result<Translation, Vec<Issue>> {
    let (file, text) = compose_file(root, p).map_err(|i| vec![i])?;
    let dir = match file.rsplit_once('/') {
        Some((d, _)) => root.join(d),
        None => root.to_path_buf(),
    };
    let mut vars = BTreeMap::new();
    let dotenv = dir.join(".env");
    if dotenv.is_file() {
        let name = match file.rsplit_once('/') {
            Some((d, _)) => format!("{d}/.env"),
            None => ".env".into(),
        };
        let text = std::fs::read_to_string(&dotenv).map_err(|e| {
            vec![Issue {
                file: name.clone(),
                line: 0,
                column: 0,
                message: e.to_string(),
            }]
        })?;
        let pairs = env::parse_dotenv(&text).map_err(|(line, message)| {
            vec![Issue {
                file: name.clone(),
                line,
                column: 0,
                message,
            }]
        })?;
        // `.env` values may refer to variables defined above them.
        let mut interp = env::Interpolator::new(p.env.clone());
        for (k, v, line) in pairs {
            let v = interp.interpolate(&v).map_err(|message| {
                vec![Issue {
                    file: name.clone(),
                    line,
                    column: 0,
                    message,
                }]
            })?;
            interp.vars.entry(k.clone()).or_insert(v.clone());
            vars.insert(k, v);
        }
    }
    vars.extend(p.env.clone());
    let read = |rel: &str| -> Result<String, String> {
        inside(rel)?;
        std::fs::read_to_string(dir.join(rel)).map_err(|e| format!("`{rel}`: {e}"))
    };
    translate::translate(&Input {
        file: &file,
        text: &text,
        read: &read,
        vars,
        profiles: p.profiles.clone(),
        project: project.to_string(),
        node_ports: p.node_ports.clone(),
        volume_size: p.volume_size.clone(),
        volume_sizes: p.volume_sizes.clone(),
        storage_class: p.storage_class.clone(),
    })
}

fn issues_error(issues: Vec<Issue>) -> TaskError {
    let text: Vec<String> = issues.iter().map(Issue::to_string).collect();
    TaskError::InvalidConfig(format!("nothing was applied: {}", text.join("; ")))
}

/// The translation shaped by the engine: shared objects, then each service with its own
/// rollout strategy (its `deploy.update_config`, or the task's).
struct Staged {
    file: String,
    shared: Vec<Manifest>,
    services: Vec<(translate::Service, Vec<Manifest>)>,
    catalog: Catalog,
}

impl Staged {
    fn all(&self) -> Prepared {
        let mut objects: Vec<Manifest> = self.shared.clone();
        for (_, ms) in &self.services {
            objects.extend(ms.iter().cloned());
        }
        objects.sort_by_key(|m| {
            gantry_kube_apply::kinds::rank(m.object["kind"].as_str().unwrap_or_default())
        });
        Prepared {
            objects,
            catalog: self.catalog.clone(),
        }
    }

    fn workload(&self, service: &str) -> Option<ObjectRef> {
        self.services
            .iter()
            .find(|(s, _)| s.name == service)
            .and_then(|(_, ms)| {
                ms.iter()
                    .find(|m| matches!(m.object["kind"].as_str(), Some("Deployment" | "Job")))
            })
            .map(|m| engine::object_ref(&m.object))
    }
}

fn stage(
    ctx: &TaskContext,
    p: &Params,
    kube: &dyn kube::Kube,
    s: &Settings,
) -> Result<Staged, TaskError> {
    let project = label_value(&ctx.task);
    let t = load(Path::new(&ctx.source_dir), p, &project).map_err(issues_error)?;
    for note in &t.notes {
        host::warn(note);
    }
    if !t.unset.is_empty() {
        host::warn(&format!(
            "variables used without a value (empty strings): {}",
            t.unset.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let file = compose_file(Path::new(&ctx.source_dir), p)
        .map(|(f, _)| f)
        .unwrap_or_default();
    let origin = |o: Value| Manifest {
        origin: Origin {
            file: file.clone(),
            line: 0,
        },
        object: o,
    };
    let mut everything: Vec<Manifest> = t.shared.iter().cloned().map(origin).collect();
    for svc in &t.services {
        everything.extend(svc.objects.iter().cloned().map(origin));
    }
    let catalog = engine::catalog(kube, &everything)?;
    let shared = engine::prepare(
        t.shared.iter().cloned().map(origin).collect(),
        catalog.clone(),
        s,
    )?
    .objects;
    let mut services = Vec::new();
    for svc in t.services {
        let mut own = s.clone();
        // A task that asks for Recreate wins over a service's update_config.
        if let Some(st) = &svc.strategy
            && !s.strategy.recreate
        {
            own.strategy = st.clone();
        }
        let objects = engine::prepare(
            svc.objects.iter().cloned().map(origin).collect(),
            catalog.clone(),
            &own,
        )?
        .objects;
        services.push((svc, objects));
    }
    let staged = Staged {
        file,
        shared,
        services,
        catalog,
    };
    let mut seen = BTreeSet::new();
    for key in staged.all().keys() {
        if !seen.insert(key.clone()) {
            return Err(TaskError::InvalidConfig(format!(
                "{}: {} would be defined twice",
                staged.file,
                key.describe()
            )));
        }
    }
    Ok(staged)
}

fn condition_name(c: Condition) -> &'static str {
    match c {
        Condition::Started => "service_started",
        Condition::Healthy => "service_healthy",
        Condition::Completed => "service_completed_successfully",
    }
}

/// Applies shared objects, then the services phase by phase: before a service is applied,
/// the dependencies it waits for (`service_healthy`, `service_completed_successfully`) are
/// awaited; `service_started` only orders. Then prunes and waits for everything.
fn apply_staged(
    kube: &dyn kube::Kube,
    staged: &Staged,
    prev: &Previous,
    existed: &BTreeSet<ObjectKey>,
    s: &Settings,
) -> Result<Applied, TaskError> {
    let mut applied = Applied::default();
    let apply = |m: &Manifest, applied: &mut Applied| -> Result<(), TaskError> {
        let key = ObjectKey::of(&m.object);
        let mut exists = existed.contains(&key);
        if exists && m.object["kind"] == "Job" && rerun_failed_job(kube, &m.object)? {
            exists = false;
        }
        engine::apply_object(kube, &m.object, exists, s.force_conflicts, false)?;
        host::log(
            host::Level::Info,
            &format!("applied {}", key.describe()),
            &[("object", &key.to_string())],
        );
        applied.inventory.push(key.to_string());
        applied.objects.push(m.object.clone());
        Ok(())
    };
    for m in &staged.shared {
        apply(m, &mut applied)?;
    }
    let mut awaited = BTreeSet::new();
    for (svc, objects) in &staged.services {
        let mut targets = Vec::new();
        for (dep, cond) in &svc.depends {
            if *cond == Condition::Started || awaited.contains(dep) {
                continue;
            }
            if let Some(r) = staged.workload(dep) {
                host::info(&format!(
                    "waiting for `{dep}` ({}) before applying `{}`",
                    condition_name(*cond),
                    svc.name
                ));
                awaited.insert(dep.clone());
                targets.push(r);
            }
        }
        engine::wait(kube, &targets, s.timeout_ms)?;
        host::info(&format!("applying service `{}`", svc.name));
        for m in objects {
            apply(m, &mut applied)?;
        }
    }
    let all = staged.all();
    if s.prune {
        let now: BTreeSet<ObjectKey> = all.keys().into_iter().collect();
        let gone: Vec<ObjectKey> = prev
            .keys()
            .into_iter()
            .filter(|k| !now.contains(k))
            .collect();
        let versions: BTreeMap<ObjectKey, String> = prev
            .state
            .objects
            .iter()
            .map(|o| {
                (
                    ObjectKey::of(o),
                    o["apiVersion"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        engine::delete_keys(kube, &all.catalog, &gone, &versions, &s.task, "pruned")?;
    }
    if s.wait {
        let targets: Vec<ObjectRef> = all
            .objects
            .iter()
            .map(|m| engine::object_ref(&m.object))
            .collect();
        engine::wait(kube, &targets, s.timeout_ms)?;
    }
    Ok(applied)
}

/// A one-shot service whose Job (same content, so same name) failed before is run again, as
/// `docker compose up` would: the failed Job is deleted so the apply creates it anew.
/// True when it was deleted.
fn rerun_failed_job(kube: &dyn kube::Kube, job: &Value) -> Result<bool, TaskError> {
    /// Polls for the old Job to be gone, 100 ms apart.
    const ATTEMPTS: u32 = 100;
    let target = engine::object_ref(job);
    let Some(live) = kube.get(&target)? else {
        return Ok(false);
    };
    let live: Value =
        serde_json::from_str(&live).map_err(|e| TaskError::Internal(e.to_string()))?;
    let failed = live
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Failed" && c["status"] == "True")
        });
    if !failed {
        return Ok(false);
    }
    host::info(&format!(
        "Job {} failed last time: deleting it to run it again",
        target.name
    ));
    kube.delete(&target)?;
    for _ in 0..ATTEMPTS {
        if kube.get(&target)?.is_none() {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(TaskError::TimedOut(format!(
        "Job {} was deleted to run again but is still there",
        target.name
    )))
}

fn deploy(
    kube: &dyn kube::Kube,
    staged: &Staged,
    previous: Option<&Deployment>,
    s: &Settings,
) -> Result<Applied, TaskError> {
    let prev = Previous::read(previous)?;
    if s.create_namespace {
        engine::ensure_namespace(kube, &s.namespace)?;
    }
    let all = staged.all();
    let mut existed = BTreeSet::new();
    for m in &all.objects {
        let key = ObjectKey::of(&m.object);
        if all.catalog.served(&key.group, &key.kind)
            && kube.get(&engine::object_ref(&m.object))?.is_some()
        {
            existed.insert(key);
        }
    }
    match apply_staged(kube, staged, &prev, &existed, s) {
        Ok(a) => Ok(a),
        Err(e)
            if s.rollback_on_failure
                && matches!(e, TaskError::TimedOut(_) | TaskError::Kube(_)) =>
        {
            host::warn("the deploy failed; restoring the previous objects");
            let before = prev.keys();
            let created: Vec<ObjectKey> = all
                .keys()
                .into_iter()
                .filter(|k| !existed.contains(k) && !before.contains(k))
                .collect();
            let quiet = Settings {
                wait: false,
                ..s.clone()
            };
            let more = match engine::rollback(kube, &created, previous, &quiet) {
                Ok(()) => "; the previous objects were restored".to_string(),
                Err(r) => format!("; restoring the previous objects failed too: {r:?}"),
            };
            Err(match e {
                TaskError::TimedOut(m) => TaskError::TimedOut(m + &more),
                TaskError::Kube(mut k) => {
                    k.message.push_str(&more);
                    TaskError::Kube(k)
                }
                other => other,
            })
        }
        Err(e) => Err(e),
    }
}

/// Each service's in-cluster address (`web.NAMESPACE.svc:80`), the namespace and the count.
fn outputs(staged: &Staged, namespace: &str) -> Vec<Output> {
    let mut out = vec![
        Output::new("namespace", namespace),
        Output::new("objects", staged.all().objects.len().to_string()),
    ];
    for (svc, _) in &staged.services {
        if let Some((name, port)) = &svc.address {
            out.push(Output::new(
                &svc.name,
                format!("{name}.{namespace}.svc:{port}"),
            ));
        }
    }
    out
}

struct ComposeTask;

impl gantry_sdk::Task for ComposeTask {
    fn describe() -> PluginInfo {
        let param = ParamSpec::new;
        PluginInfo {
            name: "compose".into(),
            kinds: vec!["compose".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Translates a compose file into Kubernetes objects and applies them in depends_on order, waiting for readiness; prunes, rolls back and destroys by inventory".into(),
            capabilities: vec![Capability::Kube],
            parameters: vec![
                param("file", "string", false, "the compose file, relative to the task's directory (default: compose.yaml, compose.yml, docker-compose.yaml or docker-compose.yml)"),
                param("namespace", "string", false, "namespace of every object").default("\"default\""),
                param("create_namespace", "bool", false, "create the namespace when missing (never pruned)").default("false"),
                param("cluster", "string", false, "cluster from gantry.toml (default: the default cluster)"),
                param("env", "table<string>", false, "interpolation variables, over .env; may hold outputs of earlier tasks"),
                param("profiles", "list<string>", false, "profiles to enable"),
                param("node_ports", "list<string>", false, "services whose Service is a NodePort"),
                param("volume_size", "quantity", false, "size of each claim made from a named volume").default("\"1Gi\""),
                param("volume_sizes", "table<quantity>", false, "size per named volume"),
                param("storage_class", "string", false, "storage class of the claims"),
                param("wait", "bool", false, "wait for readiness").default("true"),
                param("wait_timeout", "duration", false, "readiness and each depends_on wait").default("\"5m\""),
                param("prune", "bool", false, "delete objects of services and volumes that left the file").default("true"),
                param("strategy", "string", false, "Deployment strategy: RollingUpdate or Recreate").default("\"RollingUpdate\""),
                param("max_surge", "int|percent", false, "RollingUpdate maxSurge, unless a service sets deploy.update_config").default("\"25%\""),
                param("max_unavailable", "int|percent", false, "RollingUpdate maxUnavailable, unless a service sets deploy.update_config").default("\"25%\""),
                param("force_conflicts", "bool", false, "take over fields other managers own").default("false"),
                param("rollback_on_failure", "bool", false, "put the previous objects back when the new ones do not become ready").default("true"),
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
        for (field, q) in std::iter::once(("volume_size".to_string(), &p.volume_size)).chain(
            p.volume_sizes
                .iter()
                .map(|(k, v)| (format!("volume_sizes.{k}"), v)),
        ) {
            if !q.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                issues.push(ValidationIssue::new(
                    &field,
                    format!("`{q}` is not a size such as \"1Gi\""),
                ));
            }
        }
        // The file is translated as a deploy translates it, so what would fail the deploy
        // fails validation, at its line.
        if let Some(src) = &ctx.source_dir
            && let Err(found) = load(Path::new(src), &p, "validate")
        {
            for i in found {
                issues.push(ValidationIssue::new("file", i.message).at(&i.file, i.line, i.column));
            }
        }
        issues
    }

    fn plan(ctx: &TaskContext) -> Result<Vec<PlannedChange>, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(&ctx.workflow, &ctx.task)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let staged = stage(ctx, &p, kube.as_ref(), &s)?;
        engine::plan(kube.as_ref(), &staged.all(), ctx.previous.as_ref(), &s)
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(&ctx.workflow, &ctx.task)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let staged = stage(ctx, &p, kube.as_ref(), &s)?;
        let applied = deploy(kube.as_ref(), &staged, ctx.previous.as_ref(), &s)?;
        applied.deployment(outputs(&staged, &p.namespace), Value::Null)
    }

    fn rollback(ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        let p: Params = ctx.params()?;
        let s = p.settings(&ctx.workflow, &ctx.task)?;
        let kube = kube::open(p.cluster.as_deref())?;
        let current = stage(ctx, &p, kube.as_ref(), &s)?.all().keys();
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

gantry_sdk::export_task!(ComposeTask);

#[cfg(test)]
mod tests;
