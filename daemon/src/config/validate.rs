//! Checking a whole configuration directory before anything runs: every file parses, every
//! reference resolves, the DAG has no cycle (barriers included), every kind exists and every
//! plugin accepts its parameters. All errors are reported at once, each with file:line:col.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::workflow::{self, HookSpec, Workflow};
use super::{ConfigError, DaemonConfig};
use crate::engine::plan::{self, PlanError};
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
    for wf in workflows.values() {
        errors.extend(check_plugins(wf, registry).await);
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

async fn check_plugins(wf: &Workflow, registry: &Registry) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let err = |at: super::toml_walk::Loc, message: String| ConfigError {
        file: wf.file.clone(),
        line: at.line,
        column: at.column,
        message,
    };
    let verdicts = validate_params(wf, registry).await;
    for (task, verdict) in wf.tasks.iter().zip(verdicts) {
        match verdict {
            None => errors.push(err(task.kind_at, format!(
                "task `{}`: unknown kind `{}`; the loaded task kinds are {} (add a plugin to the plugin directory for others)",
                task.id,
                task.kind,
                registry.kinds(World::Task).join(", ")
            ))),
            Some(verdict) => {
                match verdict {
                    Ok(issues) => errors.extend(issues.into_iter().map(|i| {
                        let field = if i.field.is_empty() { String::new() } else { format!("parameter `{}`: ", i.field) };
                        // A nested field (`a.b`) is located at its top-level key.
                        let top = i.field.split(['.', '[']).next().unwrap_or_default();
                        let at = task.param_at.get(top).copied().unwrap_or(task.at);
                        err(at, format!("task `{}` ({}): {field}{}", task.id, task.kind, i.message))
                    })),
                    Err(e) => errors.push(err(task.at, format!("task `{}`: the {} plugin could not validate it: {e}", task.id, task.kind))),
                }
            }
        }
        for hook in task.hooks.all().chain(wf.hooks.all()) {
            if let Some(e) = check_hook(hook, registry).await {
                errors.push(err(hook.at, format!("task `{}`: {e}", task.id)));
            }
        }
    }
    errors
}

type Verdict = Result<Vec<crate::wasm::bindings::types::ValidationIssue>, crate::wasm::CallError>;

/// Each task's plugin's verdict on its parameters, in task order; None for a kind no plugin
/// serves. Every verdict is a call in a fresh instance, so with thousands of tasks they run
/// side by side, as many at once as there are cores.
async fn validate_params(wf: &Workflow, registry: &Registry) -> Vec<Option<Verdict>> {
    let width = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut verdicts: Vec<Option<Verdict>> = Vec::with_capacity(wf.tasks.len());
    let mut calls = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        while calls.len() < width && next < wf.tasks.len() {
            let task = &wf.tasks[next];
            verdicts.push(None);
            if let Some(plugin) = registry.task(&task.kind).cloned() {
                // Stays if the call never reports back.
                verdicts[next] = Some(Err(crate::wasm::CallError::Host {
                    plugin: plugin.info.name.clone(),
                    message: "the validation did not finish".into(),
                }));
                let kind = task.kind.clone();
                let params = serde_json::Value::Object(task.params.clone()).to_string();
                let i = next;
                calls.spawn(async move { (i, plugin.validate(&kind, &params).await) });
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

async fn check_hook(hook: &HookSpec, registry: &Registry) -> Option<String> {
    let Some(plugin) = registry.hook(&hook.kind) else {
        return Some(format!(
            "unknown hook kind `{}`; the loaded hook kinds are {}",
            hook.kind,
            registry.kinds(World::Hook).join(", ")
        ));
    };
    let params = serde_json::Value::Object(hook.params.clone()).to_string();
    match plugin.validate(&hook.kind, &params).await {
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
