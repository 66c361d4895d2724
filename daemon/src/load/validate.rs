//! Checking a whole configuration directory before anything runs: every file parses, every
//! reference resolves, the DAG has no cycle (barriers included), every kind exists and every
//! plugin accepts its parameters. All errors are reported at once, each with file:line:col.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::config::workflow::{self, HookSpec, Workflow};
use crate::config::{ConfigError, DaemonConfig};
use crate::engine::plan::{self, PlanError};
use crate::wasm::bindings::types::{ValidateContext, ValidationIssue};
use crate::wasm::{Registry, World};

/// A configuration that passed validation.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub daemon: DaemonConfig,
    pub workflows: BTreeMap<String, Workflow>,
}

/// Everything wrong with the workflows of `config_dir`, given the plugins in `registry`.
pub async fn validate_workflows(
    config_dir: &Path,
    daemon: DaemonConfig,
    registry: &Registry,
) -> Result<ValidConfig, Vec<ConfigError>> {
    let (workflows, mut errors) = workflow::load_dir(config_dir);
    let mut sound = Vec::new();
    for wf in workflows.values() {
        match plan::compile(vec![wf.clone()]) {
            Ok(_) => sound.push(wf.clone()),
            Err(errs) => errors.extend(errs.into_iter().map(|e| located(wf, e))),
        }
    }
    if sound.len() > 1 {
        // Barriers couple workflows: a cycle may only show when they run together.
        if let Err(errs) = plan::compile(sound.clone()) {
            errors.extend(errs.into_iter().map(|e| located(&sound[e.workflow], e)));
        }
    }
    let guard = SourceGuard::new(config_dir, &daemon);
    for wf in workflows.values() {
        errors.extend(check_plugins(config_dir, &guard, wf, registry).await);
    }
    let mut seen = BTreeSet::new();
    errors.retain(|e| seen.insert((e.file.clone(), e.line, e.column, e.message.clone())));
    if errors.is_empty() {
        Ok(ValidConfig { daemon, workflows })
    } else {
        Err(errors)
    }
}

fn located(wf: &Workflow, e: PlanError) -> ConfigError {
    ConfigError {
        file: wf.file.clone(),
        line: e.at.line,
        column: e.at.column,
        message: e.message,
    }
}

async fn check_plugins(
    config_dir: &Path,
    guard: &SourceGuard,
    wf: &Workflow,
    registry: &Registry,
) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let err = |at: crate::config::toml_walk::Loc, message: String| ConfigError {
        file: wf.file.clone(),
        line: at.line,
        column: at.column,
        message,
    };
    // Each task's source: checked first, then mounted for its plugin's verdict.
    let mut sources = Vec::with_capacity(wf.tasks.len());
    for task in &wf.tasks {
        let source = task.source_dir(config_dir);
        match guard.unsafe_source(task, &source) {
            Some(problem) => {
                errors.push(err(task.at, problem));
                sources.push(Err(()));
            }
            None => sources.push(Ok(source.is_dir().then_some(source))),
        }
    }
    let verdicts = validate_params(wf, &sources, registry).await;
    for ((task, verdict), source) in wf.tasks.iter().zip(verdicts).zip(&sources) {
        let Ok(source) = source else {
            continue;
        };
        match verdict {
            None => errors.push(err(task.kind_at, format!(
                "task `{}`: unknown kind `{}`; the loaded task kinds are {} (add a plugin to the plugin directory for others)",
                task.id,
                task.kind,
                registry.kinds(World::Task).join(", ")
            ))),
            Some(Ok(issues)) => errors.extend(issues.into_iter().map(|i| {
                let field = if i.field.is_empty() { String::new() } else { format!("parameter `{}`: ", i.field) };
                let message = format!("task `{}` ({}): {field}{}", task.id, task.kind, i.message);
                // An issue in one of the task's files points there.
                if let (Some(loc), Some(dir)) = (&i.location, source) {
                    return ConfigError {
                        file: dir.join(&loc.file),
                        line: loc.line as usize,
                        column: loc.column as usize,
                        message,
                    };
                }
                // A nested field (`a.b`) is located at its top-level key.
                let top = i.field.split(['.', '[']).next().unwrap_or_default();
                let at = task.param_at.get(top).copied().unwrap_or(task.at);
                err(at, message)
            })),
            Some(Err(e)) => errors.push(err(task.at, format!("task `{}`: the {} plugin could not validate it: {e}", task.id, task.kind))),
        }
        if let Some(plugin) = registry.task(&task.kind) {
            for (key, problem) in ungranted_programs(plugin, &task.params) {
                let at = task.param_at.get(&key).copied().unwrap_or(task.at);
                errors.push(err(
                    at,
                    format!("task `{}` ({}): {problem}", task.id, task.kind),
                ));
            }
        }
        for hook in task.hooks.all().chain(wf.hooks.all()) {
            if let Some(e) = check_hook(hook, registry).await {
                errors.push(err(hook.at, format!("task `{}`: {e}", task.id)));
            }
            if let Some(plugin) = registry.hook(&hook.kind) {
                for (_, problem) in ungranted_programs(plugin, &hook.params) {
                    errors.push(err(
                        hook.at,
                        format!("task `{}`: hook `{}`: {problem}", task.id, hook.kind),
                    ));
                }
            }
        }
    }
    errors
}

type Verdict = Result<Vec<ValidationIssue>, crate::wasm::CallError>;

/// Each task's plugin's verdict on its parameters (and files), in task order; None for a kind
/// no plugin serves (or a source refused before). Every verdict is a call in a fresh
/// instance, so with thousands of tasks they run side by side, as many at once as there are
/// cores.
async fn validate_params(
    wf: &Workflow,
    sources: &[Result<Option<std::path::PathBuf>, ()>],
    registry: &Registry,
) -> Vec<Option<Verdict>> {
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(wf.tasks.len());
    let mut calls = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        while calls.len() < width && next < wf.tasks.len() {
            let task = &wf.tasks[next];
            verdicts.push(None);
            if let (Some(plugin), Ok(source)) = (registry.task(&task.kind).cloned(), &sources[next])
            {
                // Stays if the call never reports back.
                verdicts[next] = Some(Err(crate::wasm::CallError::Host {
                    plugin: plugin.info.name.clone(),
                    message: "the validation did not finish".into(),
                }));
                let ctx = ValidateContext {
                    kind: task.kind.clone(),
                    params: serde_json::Value::Object(task.params.clone()).to_string(),
                    source_dir: source
                        .as_ref()
                        .map(|_| crate::host::GUEST_SOURCE_DIR.into()),
                };
                let source = source.clone();
                let i = next;
                calls.spawn(async move { (i, plugin.validate(ctx, source).await) });
            }
            next += 1;
        }
        match calls.join_next().await {
            Some(Ok((i, verdict))) => verdicts[i] = Some(verdict),
            Some(Err(e)) => tracing::error!(error = %e, "a parameter validation panicked"),
            None if next >= wf.tasks.len() => break,
            None => {}
        }
    }
    verdicts
}

/// Parameters naming a program to run: the first word of `command`, `rollback` and
/// `destroy`, and `program`, as the built-in kinds spell them.
const PROGRAM_PARAMS: &[&str] = &["command", "rollback", "destroy", "program"];

/// Programs the parameters would run that the plugin may not, each with the parameter and
/// the runtime's own refusal (naming the grant to add): the same check a run makes, made
/// before anything runs. A program filled in from a template is known only at run time.
fn ungranted_programs(
    plugin: &crate::wasm::plugin::Plugin,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(String, String)> {
    // Only plugins that run programs read these parameters as programs.
    if !plugin.caps.requested.iter().any(|r| r.starts_with("exec")) {
        return Vec::new();
    }
    let grant = plugin
        .caps
        .grant::<crate::host::process::grant::ProgramGrant>(crate::host::process::NAME)
        .unwrap_or_default();
    let programs = &grant.programs;
    let mut problems = Vec::new();
    for key in PROGRAM_PARAMS {
        let program = match params.get(*key) {
            Some(serde_json::Value::Array(words)) => words.first().and_then(|w| w.as_str()),
            Some(serde_json::Value::String(p)) if *key == "program" => Some(p.as_str()),
            _ => None,
        };
        let Some(program) = program.filter(|p| !p.is_empty() && !p.contains("${")) else {
            continue;
        };
        if let Err(why) = programs.program(&plugin.info.name, program) {
            problems.push((key.to_string(), format!("parameter `{key}`: {why}")));
        }
    }
    problems
}

async fn check_hook(hook: &HookSpec, registry: &Registry) -> Option<String> {
    let Some(plugin) = registry.hook(&hook.kind) else {
        return Some(format!(
            "unknown hook kind `{}`; the loaded hook kinds are {}",
            hook.kind,
            registry.kinds(World::Hook).join(", ")
        ));
    };
    let ctx = ValidateContext {
        kind: hook.kind.clone(),
        params: serde_json::Value::Object(hook.params.clone()).to_string(),
        source_dir: None,
    };
    match plugin.validate(ctx, None).await {
        Ok(issues) if issues.is_empty() => None,
        Ok(issues) => Some(
            issues
                .iter()
                .map(|i| format!("hook `{}`: {} {}", hook.kind, i.field, i.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Err(e) => Some(format!("hook `{}` could not be validated: {e}", hook.kind)),
    }
}

/// What no plugin may read: gantry's own configuration, its plugins, the clusters'
/// credentials and the secrets directory.
fn protected_paths(config_dir: &Path, daemon: &DaemonConfig) -> Vec<std::path::PathBuf> {
    let mut paths = vec![
        config_dir.join(crate::config::daemon::FILE_NAME),
        config_dir.join("workflows"),
    ];
    paths.extend(daemon.plugin_dirs(config_dir));
    paths.extend(
        daemon
            .daemon
            .secrets_dir
            .as_ref()
            .map(|d| config_dir.join(d)),
    );
    paths.extend(
        daemon
            .clusters
            .values()
            .filter_map(|c| c.kubeconfig.as_ref())
            .map(|k| config_dir.join(k)),
    );
    paths
}

/// Checks task sources against the configuration directory and the protected paths, each
/// resolved once for the whole load rather than once per task.
struct SourceGuard {
    config_dir: std::path::PathBuf,
    root: std::path::PathBuf,
    protected: Vec<std::path::PathBuf>,
    /// Each source directory as resolved (`None`: it does not exist); tasks share a few.
    resolved:
        std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, Option<std::path::PathBuf>>>,
}

impl SourceGuard {
    fn new(config_dir: &Path, daemon: &DaemonConfig) -> Self {
        SourceGuard {
            config_dir: config_dir.to_path_buf(),
            root: config_dir
                .canonicalize()
                .unwrap_or_else(|_| config_dir.to_path_buf()),
            protected: protected_paths(config_dir, daemon)
                .iter()
                .filter_map(|p| p.canonicalize().ok())
                .collect(),
            resolved: Default::default(),
        }
    }

    fn resolve(&self, source: &Path) -> Option<std::path::PathBuf> {
        let mut resolved = self
            .resolved
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        resolved
            .entry(source.to_path_buf())
            .or_insert_with(|| source.canonicalize().ok())
            .clone()
    }

    /// Why a task's source directory may not be mounted for its plugin, if it may not: it
    /// must exist when named, stay inside the config directory, and hold none of the
    /// protected paths.
    fn unsafe_source(
        &self,
        task: &crate::config::workflow::TaskSpec,
        source: &Path,
    ) -> Option<String> {
        let named = task.source.as_ref().map(|s| s.display().to_string());
        let Some(real) = self.resolve(source) else {
            return named.map(|s| {
                format!(
                    "task `{}`: source directory `{s}` does not exist under {}",
                    task.id,
                    self.config_dir.display()
                )
            });
        };
        let what = named.unwrap_or_else(|| crate::config::workflow::DEFAULT_SOURCE.to_string());
        if !real.starts_with(&self.root) || real == self.root {
            return Some(format!(
                "task `{}`: source `{what}` must be a directory inside the configuration directory, not the directory itself or one outside it (the default is `{}`)",
                task.id,
                crate::config::workflow::DEFAULT_SOURCE
            ));
        }
        self.protected.iter().find(|p| p.starts_with(&real)).map(|p| {
            format!(
                "task `{}`: source `{what}` contains {}, which no plugin may read; keep gantry's configuration, plugins, kubeconfigs and secrets outside task sources",
                task.id,
                p.display()
            )
        })
    }
}
