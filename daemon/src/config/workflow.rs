//! Workflow files (`workflows/*.toml`): tasks in named groups, steps, and the failure,
//! retry, timeout and hook settings, parsed with every error located.
//!
//! ```toml
//! parallelism = 7
//! on_failure = "continue"          # continue | halt | rollback
//!
//! [services.frontend]
//! kind = "exec"                    # the plugin kind; other keys are its parameters
//! command = ["sh", "-c", "./deploy.sh"]
//! needs = ["jobs.migrate"]         # optional, beyond the step order
//!
//! [[steps]]
//! name = "frontend"
//! tasks = ["services.frontend"]
//! wait_for_finish = false
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::de::{DeTable, DeValue};

use super::ConfigError;
use super::toml_walk::{Doc, Loc, Value, to_json, type_name};

pub const DEFAULT_PARALLELISM: usize = 7;

/// What happens to a workflow when one of its tasks fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Record the failure and go on with what does not depend on the task.
    #[default]
    Continue,
    /// Start nothing more in this workflow; running tasks finish.
    Halt,
    /// Halt, then roll back this run's completed tasks of the workflow, newest first.
    Rollback,
}

/// Attempts after the first, with exponential backoff and jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retries {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Retries {
            attempts: 0,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// A hook call: its kind (a hook plugin's) and parameters.
#[derive(Debug, Clone, Serialize)]
pub struct HookSpec {
    pub kind: String,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub at: Loc,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Hooks {
    pub pre_deploy: Vec<HookSpec>,
    pub post_deploy: Vec<HookSpec>,
    pub on_failure: Vec<HookSpec>,
    pub pre_destroy: Vec<HookSpec>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre_deploy.is_empty()
            && self.post_deploy.is_empty()
            && self.on_failure.is_empty()
            && self.pre_destroy.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &HookSpec> {
        self.pre_deploy
            .iter()
            .chain(&self.post_deploy)
            .chain(&self.on_failure)
            .chain(&self.pre_destroy)
    }
}

/// One task: `[GROUP.NAME]`, e.g. `[services.frontend]` is task `services.frontend`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskSpec {
    pub id: String,
    pub kind: String,
    pub kind_at: Loc,
    /// The plugin's parameters: every key gantry does not reserve.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Where each parameter's key is, so a plugin's complaint about one points at it.
    pub param_at: BTreeMap<String, Loc>,
    pub needs: Vec<(String, Loc)>,
    /// While this task runs, at most this many tasks of its workflow run, itself included
    /// (1: it runs alone, e.g. a migration that wants the database quiet).
    pub parallelism: Option<usize>,
    pub timeout: Option<Duration>,
    pub retries: Option<Retries>,
    pub on_failure: Option<OnFailure>,
    pub hooks: Hooks,
    /// The directory mounted read-only at `/src` for the task's plugin, relative to the
    /// config directory: `files/` by default, never the config directory itself (plugins must
    /// not read gantry.toml, workflows or kubeconfigs).
    pub source: Option<PathBuf>,
    pub at: Loc,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub tasks: Vec<(String, Loc)>,
    pub halt_on_error: bool,
    pub wait_for_finish: bool,
    pub barrier: Option<(String, Loc)>,
    pub at: Loc,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub name: String,
    pub file: PathBuf,
    /// SHA-256 of the file, to tell whether it changed.
    pub digest: String,
    pub description: String,
    pub parallelism: usize,
    pub on_failure: OnFailure,
    pub timeout: Option<Duration>,
    /// How long destroying a task removed from the workflow may take; `[daemon]
    /// cleanup_timeout` when not given.
    pub cleanup_timeout: Option<Duration>,
    pub retries: Retries,
    pub auto_deploy: bool,
    /// Environment variables `${env.NAME}` may read.
    pub env: Vec<String>,
    pub hooks: Hooks,
    /// In declaration order.
    pub tasks: Vec<TaskSpec>,
    pub steps: Vec<Step>,
}

/// The directory beside `gantry.toml` that holds what tasks read (manifests, charts,
/// modules, compose files), unless a task names its own `source`.
pub const DEFAULT_SOURCE: &str = "files";

impl TaskSpec {
    /// Where the task's files are on the host.
    pub fn source_dir(&self, config_dir: &Path) -> PathBuf {
        config_dir.join(self.source.as_deref().unwrap_or(Path::new(DEFAULT_SOURCE)))
    }
}

impl Workflow {
    pub fn task(&self, id: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.id == id)
    }

    /// The policy a failure of `task` triggers: the task's own, else a halting step's, else
    /// the workflow's.
    pub fn failure_policy(&self, task: &TaskSpec) -> OnFailure {
        let halting_step = self
            .steps
            .iter()
            .any(|s| s.halt_on_error && s.tasks.iter().any(|(t, _)| *t == task.id));
        self.policy_given(task, halting_step)
    }

    /// [`Workflow::failure_policy`] when the caller already knows whether a step with
    /// `halt_on_error` holds the task (the scheduler works that out once for every task).
    pub fn policy_given(&self, task: &TaskSpec, halting_step: bool) -> OnFailure {
        if let Some(p) = task.on_failure {
            return p;
        }
        if halting_step && self.on_failure == OnFailure::Continue {
            OnFailure::Halt
        } else {
            self.on_failure
        }
    }
}

const HOOK_PHASES: &[&str] = &["pre_deploy", "post_deploy", "on_failure", "pre_destroy"];

/// Parses one workflow file. The workflow is named after the file.
pub fn parse(path: &Path, source: &str) -> Result<Workflow, Vec<ConfigError>> {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let mut doc = Doc::new(path, source);
    if !valid_name(&name) {
        doc.errors.push(ConfigError::whole_file(path, format!(
            "workflow name `{name}` (from the file name) must be letters, digits, `-` or `_`; rename the file"
        )));
    }
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(e) => return Err(vec![ConfigError::from_toml(path, source, &e)]),
    };
    let mut wf = Workflow {
        name,
        file: path.to_path_buf(),
        digest: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(source.as_bytes())),
        description: String::new(),
        parallelism: DEFAULT_PARALLELISM,
        on_failure: OnFailure::Continue,
        timeout: None,
        cleanup_timeout: None,
        retries: Retries::default(),
        auto_deploy: false,
        env: Vec::new(),
        hooks: Hooks::default(),
        tasks: Vec::new(),
        steps: Vec::new(),
    };
    for (key, value) in root.get_ref() {
        let k = key.get_ref().as_ref();
        match k {
            "description" => wf.description = doc.string(k, value).unwrap_or_default(),
            "parallelism" => {
                if let Some(n) = doc.integer(k, value, 1, 10_000) {
                    wf.parallelism = n as usize;
                }
            }
            "on_failure" => wf.on_failure = on_failure(&mut doc, value).unwrap_or_default(),
            "timeout" => wf.timeout = doc.duration(k, value),
            "cleanup_timeout" => wf.cleanup_timeout = doc.duration(k, value),
            "retries" => wf.retries = retries(&mut doc, value).unwrap_or_default(),
            "auto_deploy" => wf.auto_deploy = doc.bool(k, value).unwrap_or(false),
            "env" => wf.env = doc.strings(k, value).into_iter().map(|(s, _)| s).collect(),
            "hooks" => wf.hooks = hooks(&mut doc, value),
            "steps" => wf.steps = steps(&mut doc, value),
            group => match value.get_ref() {
                DeValue::Table(tasks) if valid_name(group) => {
                    for (task_key, task_value) in tasks {
                        let id = format!("{group}.{}", task_key.get_ref());
                        if !valid_name(task_key.get_ref()) {
                            doc.error(task_key.span(), format!("task name `{id}` must be letters, digits, `-` or `_`"));
                            continue;
                        }
                        if let Some(t) = task(&mut doc, id, task_key.span(), task_value) {
                            wf.tasks.push(t);
                        }
                    }
                }
                other => doc.error(key.span(), format!(
                    "unknown setting `{group}` ({}); workflow settings are description, parallelism, on_failure, timeout, cleanup_timeout, retries, auto_deploy, env, hooks and steps, and tasks go in tables like [services.NAME]",
                    type_name(other)
                )),
            },
        }
    }
    wf.tasks.sort_by_key(|t| (t.at.line, t.at.column));
    if doc.errors.is_empty() {
        Ok(wf)
    } else {
        Err(doc.errors)
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn on_failure(doc: &mut Doc<'_>, v: &Value<'_>) -> Option<OnFailure> {
    match doc.string("on_failure", v)?.as_str() {
        "continue" => Some(OnFailure::Continue),
        "halt" => Some(OnFailure::Halt),
        "rollback" => Some(OnFailure::Rollback),
        other => {
            doc.error(v.span(), format!("`on_failure = \"{other}\"` is not a policy; use \"continue\", \"halt\" or \"rollback\""));
            None
        }
    }
}

/// `retries = 3` or `retries = { attempts = 3, backoff = "2s", max_backoff = "1m" }`.
fn retries(doc: &mut Doc<'_>, v: &Value<'_>) -> Option<Retries> {
    let mut r = Retries::default();
    match v.get_ref() {
        DeValue::Integer(_) => r.attempts = doc.integer("retries", v, 0, 100)? as u32,
        DeValue::Table(t) => {
            for (key, value) in t {
                match key.get_ref().as_ref() {
                    "attempts" => r.attempts = doc.integer("attempts", value, 0, 100)? as u32,
                    "backoff" => r.backoff = doc.duration("backoff", value)?,
                    "max_backoff" => r.max_backoff = doc.duration("max_backoff", value)?,
                    other => doc.error(key.span(), format!("unknown key `{other}` in retries; use attempts, backoff and max_backoff")),
                }
            }
        }
        other => {
            doc.error(
                v.span(),
                format!(
                    "`retries` must be a number or a table, not {}",
                    type_name(other)
                ),
            );
            return None;
        }
    }
    Some(r)
}

fn hooks(doc: &mut Doc<'_>, v: &Value<'_>) -> Hooks {
    let mut hooks = Hooks::default();
    let Some(table) = doc.table("hooks", v) else {
        return hooks;
    };
    for (key, value) in table {
        let phase = key.get_ref().as_ref();
        let list = match phase {
            "pre_deploy" => &mut hooks.pre_deploy,
            "post_deploy" => &mut hooks.post_deploy,
            "on_failure" => &mut hooks.on_failure,
            "pre_destroy" => &mut hooks.pre_destroy,
            other => {
                doc.error(
                    key.span(),
                    format!(
                        "unknown hook phase `{other}`; use {}",
                        HOOK_PHASES.join(", ")
                    ),
                );
                continue;
            }
        };
        let items: Vec<&Value<'_>> = match value.get_ref() {
            DeValue::Array(items) => items.iter().collect(),
            DeValue::Table(_) => vec![value],
            other => {
                doc.error(
                    value.span(),
                    format!(
                        "hooks.{phase} must be a hook table or a list of them, not {}",
                        type_name(other)
                    ),
                );
                continue;
            }
        };
        for item in items {
            if let Some(h) = hook(doc, phase, item) {
                list.push(h);
            }
        }
    }
    hooks
}

fn hook(doc: &mut Doc<'_>, phase: &str, v: &Value<'_>) -> Option<HookSpec> {
    let table = doc.table(phase, v)?;
    let mut kind = None;
    let mut params = serde_json::Map::new();
    for (key, value) in table {
        if key.get_ref() == "kind" {
            kind = doc.string("kind", value);
        } else {
            params.insert(key.get_ref().to_string(), to_json(value.get_ref()));
        }
    }
    let at = doc.loc(v.span());
    match kind {
        Some(kind) => Some(HookSpec { kind, params, at }),
        None => {
            doc.error(
                v.span(),
                format!("a {phase} hook needs `kind`, e.g. kind = \"command\""),
            );
            None
        }
    }
}

fn steps(doc: &mut Doc<'_>, v: &Value<'_>) -> Vec<Step> {
    let DeValue::Array(items) = v.get_ref() else {
        doc.error(v.span(), "`steps` must be a list of [[steps]] tables");
        return Vec::new();
    };
    let mut steps = Vec::new();
    for item in items {
        let Some(table) = doc.table("steps", item) else {
            continue;
        };
        let mut step = Step {
            name: String::new(),
            tasks: Vec::new(),
            halt_on_error: false,
            wait_for_finish: true,
            barrier: None,
            at: doc.loc(item.span()),
        };
        let mut has_tasks = false;
        for (key, value) in table {
            let k = key.get_ref().as_ref();
            match k {
                "name" => step.name = doc.string(k, value).unwrap_or_default(),
                "tasks" => {
                    has_tasks = true;
                    step.tasks = doc.strings(k, value).into_iter().map(|(s, span)| (s, doc.loc(span))).collect();
                }
                "halt_on_error" => step.halt_on_error = doc.bool(k, value).unwrap_or(false),
                "wait_for_finish" => step.wait_for_finish = doc.bool(k, value).unwrap_or(true),
                "barrier" => step.barrier = doc.string(k, value).map(|b| (b, doc.loc(value.span()))),
                other => doc.error(key.span(), format!(
                    "unknown step setting `{other}`; steps take name, tasks, halt_on_error, wait_for_finish and barrier"
                )),
            }
        }
        if step.name.is_empty() {
            doc.error(item.span(), "every step needs a `name`");
        }
        if !has_tasks {
            doc.error(
                item.span(),
                format!("step `{}` needs `tasks = [...]`", step.name),
            );
        }
        steps.push(step);
    }
    steps
}

fn task(doc: &mut Doc<'_>, id: String, key_span: Range<usize>, v: &Value<'_>) -> Option<TaskSpec> {
    let table = doc.table(&id, v)?;
    let at = doc.loc(key_span.clone());
    let mut spec = TaskSpec {
        id,
        kind: String::new(),
        kind_at: at,
        params: serde_json::Map::new(),
        param_at: BTreeMap::new(),
        needs: Vec::new(),
        parallelism: None,
        timeout: None,
        retries: None,
        on_failure: None,
        hooks: Hooks::default(),
        source: None,
        at,
    };
    for (key, value) in table {
        let k = key.get_ref().as_ref();
        match k {
            "kind" => {
                spec.kind = doc.string(k, value).unwrap_or_default();
                spec.kind_at = doc.loc(value.span());
            }
            "needs" => {
                spec.needs = doc
                    .strings(k, value)
                    .into_iter()
                    .map(|(s, span)| (s, doc.loc(span)))
                    .collect()
            }
            "parallelism" => {
                spec.parallelism = doc.integer(k, value, 1, 10_000).map(|n| n as usize)
            }
            "timeout" => spec.timeout = doc.duration(k, value),
            "retries" => spec.retries = retries(doc, value),
            "on_failure" => spec.on_failure = on_failure(doc, value),
            "hooks" => spec.hooks = hooks(doc, value),
            "source" => spec.source = doc.string(k, value).map(PathBuf::from),
            _ => {
                spec.params.insert(k.to_string(), to_json(value.get_ref()));
                spec.param_at.insert(k.to_string(), doc.loc(key.span()));
            }
        }
    }
    if spec.kind.is_empty() && !table.contains_key("kind") {
        doc.error(
            key_span,
            format!("task `{}` needs `kind = \"...\"` (e.g. \"exec\")", spec.id),
        );
        return None;
    }
    Some(spec)
}

/// Every workflow in `DIR/workflows/*.toml`, or every error found in them.
pub fn load_dir(config_dir: &Path) -> (BTreeMap<String, Workflow>, Vec<ConfigError>) {
    let dir = config_dir.join("workflows");
    let mut workflows = BTreeMap::new();
    let mut errors = Vec::new();
    // A mistyped --config or a directory missing its workflows would otherwise validate as
    // "0 workflows" and deploy nothing.
    if !config_dir.is_dir() {
        errors.push(ConfigError::whole_file(
            config_dir,
            "the configuration directory does not exist (give it with --config or GANTRY_CONFIG)",
        ));
        return (workflows, errors);
    }
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            errors.push(ConfigError::whole_file(
                &dir,
                "missing: a configuration directory holds gantry.toml and workflows/*.toml (an empty workflows/ is fine)",
            ));
            return (workflows, errors);
        }
        Err(e) => {
            errors.push(ConfigError::whole_file(&dir, format!("cannot read: {e}")));
            return (workflows, errors);
        }
    };
    let mut files: Vec<PathBuf> = Vec::new();
    for path in entries.filter_map(Result::ok).map(|e| e.path()) {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Editors' swap, backup and temporary files come and go beside the workflows.
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        if path.extension().is_some_and(|x| x == "toml") {
            files.push(path);
        } else if !path.is_dir() {
            errors.push(ConfigError::whole_file(
                &path,
                "not a workflow: workflow files are named NAME.toml (rename it, or move it out of workflows/)",
            ));
        }
    }
    files.sort();
    for path in files {
        let source = match super::read_file(&path) {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match parse(&path, &source) {
            Ok(wf) => {
                workflows.insert(wf.name.clone(), wf);
            }
            Err(mut errs) => errors.append(&mut errs),
        }
    }
    (workflows, errors)
}
