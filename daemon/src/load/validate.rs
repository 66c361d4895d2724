//! Checking a whole configuration directory before anything runs: every file parses, every
//! reference resolves, the DAG has no cycle (barriers included), every kind exists and every
//! plugin accepts its parameters. All errors are reported at once, each with file:line:col.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::workflow::{self, HookSpec, Workflow};
use crate::config::{ConfigError, DaemonConfig};
use crate::engine::plan::{self, PlanError};
use crate::wasm::bindings::types::{ValidateContext, ValidationIssue};
use crate::wasm::plugin::Plugin;
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
    // Every plugin verdict the workflow needs, asked for at once: each task's parameters
    // (and files), each task's hooks, and the workflow's hooks (once, not once per task).
    let mut asks = Verdicts::default();
    let task_asks: Vec<Option<usize>> = wf
        .tasks
        .iter()
        .zip(&sources)
        .map(|(task, source)| {
            let plugin = registry.task(&task.kind)?;
            let source = source.as_ref().ok()?;
            Some(asks.ask(plugin, &task.kind, &task.params, source.clone()))
        })
        .collect();
    let hook_ask = |asks: &mut Verdicts, hook: &HookSpec| {
        registry
            .hook(&hook.kind)
            .map(|plugin| asks.ask(plugin, &hook.kind, &hook.params, None))
    };
    // A task whose source was refused gets no verdict, on its hooks either.
    let task_hook_asks: Vec<Vec<Option<usize>>> = wf
        .tasks
        .iter()
        .zip(&sources)
        .map(|(task, source)| match source {
            Ok(_) => task.hooks.all().map(|h| hook_ask(&mut asks, h)).collect(),
            Err(()) => Vec::new(),
        })
        .collect();
    let wf_hook_asks: Vec<Option<usize>> = wf.hooks.all().map(|h| hook_ask(&mut asks, h)).collect();
    let verdicts = asks.answer().await;

    for (i, (task, source)) in wf.tasks.iter().zip(&sources).enumerate() {
        let Ok(source) = source else {
            continue;
        };
        match task_asks[i].map(|ask| verdicts[ask].as_ref()) {
            None => errors.push(err(task.kind_at, format!(
                "task `{}`: unknown kind `{}`; the loaded task kinds are {} (add a plugin to the plugin directory for others)",
                task.id,
                task.kind,
                registry.kinds(World::Task).join(", ")
            ))),
            Some(Ok(issues)) => errors.extend(issues.iter().map(|i| {
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
        for (hook, ask) in task.hooks.all().zip(&task_hook_asks[i]) {
            for problem in hook_problems(hook, *ask, &verdicts, registry) {
                errors.push(err(hook.at, format!("task `{}`: {problem}", task.id)));
            }
        }
    }
    for (hook, ask) in wf.hooks.all().zip(&wf_hook_asks) {
        for problem in hook_problems(hook, *ask, &verdicts, registry) {
            errors.push(err(hook.at, format!("workflow hook: {problem}")));
        }
    }
    errors
}

type Verdict = Result<Vec<ValidationIssue>, crate::wasm::CallError>;

/// Plugin verdicts to ask for, each distinct question once: a generated workflow repeats the
/// same kind and parameters across thousands of tasks, and every verdict is a call in a
/// fresh instance.
#[derive(Default)]
struct Verdicts {
    asked: Vec<(Arc<Plugin>, ValidateContext, Option<PathBuf>)>,
    index: HashMap<(String, String, String, Option<PathBuf>), usize>,
}

impl Verdicts {
    /// Which answer will be `plugin`'s verdict on `params` of `kind` (and the files under
    /// `source`, mounted read-only as during a run).
    fn ask(
        &mut self,
        plugin: &Arc<Plugin>,
        kind: &str,
        params: &serde_json::Map<String, serde_json::Value>,
        source: Option<PathBuf>,
    ) -> usize {
        let params = serde_json::Value::Object(params.clone()).to_string();
        let key = (plugin.info.name.clone(), kind.to_string(), params, source);
        if let Some(&at) = self.index.get(&key) {
            return at;
        }
        let at = self.asked.len();
        let ctx = ValidateContext {
            kind: key.1.clone(),
            params: key.2.clone(),
            source_dir: key.3.as_ref().map(|_| crate::host::GUEST_SOURCE_DIR.into()),
        };
        self.asked.push((plugin.clone(), ctx, key.3.clone()));
        self.index.insert(key, at);
        at
    }

    /// Every verdict, in the order asked. The calls run side by side, as many at once as
    /// there are cores.
    async fn answer(self) -> Vec<Verdict> {
        let width = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut verdicts: Vec<Verdict> = self
            .asked
            .iter()
            .map(|(plugin, _, _)| {
                // Stays if the call never reports back.
                Err(crate::wasm::CallError::Host {
                    plugin: plugin.info.name.clone(),
                    message: "the validation did not finish".into(),
                })
            })
            .collect();
        let mut asked = self.asked.into_iter().enumerate();
        let mut calls = tokio::task::JoinSet::new();
        loop {
            while calls.len() < width {
                let Some((i, (plugin, ctx, source))) = asked.next() else {
                    break;
                };
                calls.spawn(async move { (i, plugin.validate(ctx, source).await) });
            }
            match calls.join_next().await {
                Some(Ok((i, verdict))) => verdicts[i] = verdict,
                Some(Err(e)) => tracing::error!(error = %e, "a parameter validation panicked"),
                None => break,
            }
        }
        verdicts
    }
}

/// What is wrong with a hook: an unknown kind, or its plugin's objections.
fn hook_problems(
    hook: &HookSpec,
    ask: Option<usize>,
    verdicts: &[Verdict],
    registry: &Registry,
) -> Vec<String> {
    let Some(ask) = ask else {
        return vec![format!(
            "unknown hook kind `{}`; the loaded hook kinds are {}",
            hook.kind,
            registry.kinds(World::Hook).join(", ")
        )];
    };
    let mut problems = match &verdicts[ask] {
        Ok(issues) if issues.is_empty() => Vec::new(),
        Ok(issues) => vec![
            issues
                .iter()
                .map(|i| format!("hook `{}`: {} {}", hook.kind, i.field, i.message))
                .collect::<Vec<_>>()
                .join("; "),
        ],
        Err(e) => vec![format!("hook `{}` could not be validated: {e}", hook.kind)],
    };
    if let Some(plugin) = registry.hook(&hook.kind) {
        problems.extend(
            ungranted_programs(plugin, &hook.params)
                .into_iter()
                .map(|(_, problem)| format!("hook `{}`: {problem}", hook.kind)),
        );
    }
    problems
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
