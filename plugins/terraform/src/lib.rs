//! The built-in `terraform` task kind: runs the real Terraform (or OpenTofu, which takes the
//! same commands) on a module, with its state and working data in the task's workspace.
//!
//! Every run works on a copy of the module in the workspace, so that what was last applied
//! can still be destroyed, or re-applied on rollback, after the module was edited or deleted:
//!
//! ```text
//! /workspace/state/      local state (terraform.tfstate, terraform.tfstate.d/ for workspaces)
//! /workspace/work/       the module as it is now: plan and apply run here
//! /workspace/deployed/   what was last applied successfully (destroy runs here)
//! /workspace/previous/   what was applied before that (rollback = "reapply_previous")
//! /workspace/plan-RUN/   a plan only shown (`gantry diff`), removed afterwards
//! ```
//!
//! Each copy carries its variables (`gantry.auto.tfvars.json`), its own `.terraform` data
//! directory, and `gantry-snapshot.json`, the settings it ran with. All three sit at the same
//! depth, so the relative state path written into them stays right when a copy is renamed.

mod files;
pub mod lock;
pub mod outputs;
pub mod plan_json;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_sdk::host::{self, Command, CommandOutput};
use gantry_sdk::{
    Capability, Deployment, ParamSpec, ParamsExt, PlannedChange, PluginInfo, RollbackOutcome,
    TaskContext, TaskError, ToolFailure, ValidateContext, ValidationIssue, parse_duration,
    validate_params,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use lock::{Interrupted, parse_lock_error};

/// Sub-directories of the workspace (see the module documentation).
const STATE: &str = "state";
const WORK: &str = "work";
const DEPLOYED: &str = "deployed";
const PREVIOUS: &str = "previous";
/// Marks a Terraform command that may still hold the state lock (see [`lock::Interrupted`]).
const INTERRUPTED: &str = "interrupted.json";

/// Files gantry writes into each copy of the module.
const VARS_FILE: &str = "gantry.auto.tfvars.json";
const BACKEND_FILE: &str = "gantry_backend_override.tf";
const SNAPSHOT_FILE: &str = "gantry-snapshot.json";
const PLAN_FILE: &str = "gantry.tfplan";

/// The host's limit on the grace a program gets between SIGTERM and SIGKILL.
const MAX_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// The module directory, relative to the task's source directory.
    #[serde(default = "default_path")]
    path: String,
    /// Input variables, written as JSON so numbers, lists and maps keep their types.
    #[serde(default)]
    vars: serde_json::Map<String, Value>,
    /// Variable files, relative to the module directory.
    #[serde(default)]
    var_files: Vec<String>,
    /// The Terraform workspace; "default" when absent.
    workspace: Option<String>,
    /// `-backend-config` settings for a backend the module declares.
    #[serde(default)]
    backend_config: BTreeMap<String, String>,
    /// The program to run: "terraform", or "tofu".
    #[serde(default = "default_program")]
    program: String,
    /// A provider directory or filesystem mirror on the daemon's host (`-plugin-dir`).
    plugin_dir: Option<String>,
    /// How long to wait for the state lock.
    #[serde(default = "default_lock_timeout")]
    lock_timeout: String,
    /// Time Terraform gets after SIGTERM (on timeout or cancellation) to release its lock.
    #[serde(default = "default_stop_grace")]
    stop_grace: String,
    /// Extra environment for Terraform and its providers (credentials, `TF_LOG`, ...).
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// "unsupported" or "reapply_previous"; a string so a wrong value is reported on this
    /// field (serde would name the value).
    #[serde(default = "default_rollback")]
    rollback: String,
    /// Release a lock left by an interrupted gantry run of this task.
    #[serde(default)]
    force_unlock: bool,
}

/// `rollback = "unsupported"`: infrastructure changes are not undone by applying something
/// else; the run records why.
const ROLLBACK_UNSUPPORTED: &str = "unsupported";
/// `rollback = "reapply_previous"`: apply the configuration deployed before this run again.
const ROLLBACK_REAPPLY: &str = "reapply_previous";

fn default_rollback() -> String {
    ROLLBACK_UNSUPPORTED.into()
}

fn default_path() -> String {
    ".".into()
}
fn default_program() -> String {
    "terraform".into()
}
fn default_lock_timeout() -> String {
    "30s".into()
}
fn default_stop_grace() -> String {
    "20s".into()
}

/// How one copy of the module was set up: kept beside it so destroy and rollback run it the
/// way it was applied, whatever the task's parameters say now (or if the task is gone).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Snapshot {
    program: String,
    plugin_dir: Option<String>,
    workspace: Option<String>,
    backend_config: BTreeMap<String, String>,
    var_files: Vec<String>,
    env: BTreeMap<String, String>,
    lock_timeout_secs: u64,
}

struct Terraform;

impl gantry_sdk::Task for Terraform {
    fn describe() -> PluginInfo {
        let param = ParamSpec::new;
        PluginInfo {
            name: "terraform".into(),
            kinds: vec!["terraform".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Applies a Terraform module with the real terraform (or tofu) binary; its outputs become the task's, sensitive ones marked".into(),
            // The program is a parameter ("terraform" or "tofu"), so any granted program may
            // be asked for; the operator's grant decides which exist.
            capabilities: vec![Capability::Exec("*".into()), Capability::Workspace],
            parameters: vec![
                param("path", "string", false, "module directory, relative to the task's source directory").default("\".\""),
                param("vars", "table", false, "input variables (templated with outputs), written as *.auto.tfvars.json so types are kept"),
                param("var_files", "list<string>", false, "variable files, relative to the module directory"),
                param("workspace", "string", false, "Terraform workspace (selected, or created)").default("\"default\""),
                param("backend_config", "table<string>", false, "-backend-config settings for a backend the module declares; without a backend, state is local in the task's workspace"),
                param("program", "string", false, "the program to run (granted under [plugins.terraform])").default("\"terraform\""),
                param("plugin_dir", "string", false, "provider directory or filesystem mirror on the daemon's host, for offline installs (-plugin-dir)"),
                param("lock_timeout", "duration", false, "how long to wait for the state lock").default("\"30s\""),
                param("stop_grace", "duration", false, "time Terraform gets after SIGTERM to release its lock (at most 30s)").default("\"20s\""),
                param("env", "table<string>", false, "extra environment for Terraform and its providers"),
                param("rollback", "string", false, "\"unsupported\" or \"reapply_previous\"").default("\"unsupported\""),
                param("force_unlock", "bool", false, "release a state lock left by an interrupted gantry run of this task").default("false"),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        let mut issues = validate_params::<Params>(&ctx.params);
        if let Ok(p) = serde_json::from_str::<Params>(&ctx.params) {
            issues.extend(check_params(&p));
            if let Some(src) = &ctx.source_dir {
                issues.extend(check_module(&p, Path::new(src)));
            }
        }
        issues
    }

    fn plan(ctx: &TaskContext) -> Result<Vec<PlannedChange>, TaskError> {
        let p: Params = ctx.params()?;
        let run = Run::new(ctx, &p)?;
        // A copy of its own, so a diff never disturbs a deploy working in `work/` meanwhile.
        let dir = preview_dir(&ctx.run_id);
        let snapshot = run.prepare_copy(ctx, &p, &dir)?;
        let plan = run.plan(&dir, &snapshot, Lock::No);
        if let Err(e) = run.remove(&dir) {
            host::warn(&message_of(&e));
        }
        plan_json::planned_changes(&plan?).map_err(|e| internal(format!("reading the plan: {e}")))
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let run = Run::new(ctx, &p)?;
        let snapshot = run.prepare_copy(ctx, &p, WORK)?;
        let plan = run.plan(WORK, &snapshot, Lock::Yes)?;
        run.apply_plan(WORK, &snapshot)?;
        let deployment = run.deployment(WORK, &snapshot, &plan)?;
        run.promote(WORK)?;
        Ok(deployment)
    }

    fn rollback(ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        let p: Params = ctx.params()?;
        if p.rollback != ROLLBACK_REAPPLY {
            return Ok(RollbackOutcome::Unsupported(
                "terraform tasks are not rolled back unless rollback = \"reapply_previous\" is set; the infrastructure stays as this run applied it".into(),
            ));
        }
        let run = Run::new(ctx, &p)?;
        let Some(snapshot) = run.snapshot(PREVIOUS)? else {
            return Ok(RollbackOutcome::Unsupported(
                "no earlier configuration of this task was kept to re-apply (this was its first deploy)".into(),
            ));
        };
        host::info("re-applying the configuration deployed before this run");
        let plan = run.plan(PREVIOUS, &snapshot, Lock::Yes)?;
        run.apply_plan(PREVIOUS, &snapshot)?;
        let deployment = run.deployment(PREVIOUS, &snapshot, &plan)?;
        // What was re-applied is what is deployed now; the configuration it replaced goes.
        let _ = std::fs::remove_file(run.dir(PREVIOUS).join(PLAN_FILE));
        run.remove(DEPLOYED)?;
        run.rename(PREVIOUS, DEPLOYED)?;
        Ok(RollbackOutcome::RolledBack(deployment))
    }

    fn destroy(ctx: &TaskContext) -> Result<(), TaskError> {
        // The parameters recorded for a removed task may no longer parse (or may hold
        // references to secrets rather than their values): destroy runs from the snapshot,
        // and takes only how to stop and whether to unlock from them.
        let p: Option<Params> = ctx.params().ok();
        let run = Run::for_destroy(ctx, p.as_ref())?;
        let Some(snapshot) = run.snapshot(DEPLOYED)? else {
            if ctx.previous.is_some() {
                return Err(internal(
                    "the configuration this task last deployed is not in its workspace, so it cannot be destroyed with it; destroy its resources by hand",
                ));
            }
            host::info("nothing was deployed by this task; nothing to destroy");
            return Ok(());
        };
        host::info("destroying with the configuration last deployed");
        run.init(DEPLOYED, &snapshot)?;
        let mut args = vec![
            "destroy".to_string(),
            "-input=false".into(),
            "-no-color".into(),
            "-auto-approve".into(),
            format!("-lock-timeout={}s", snapshot.lock_timeout_secs),
        ];
        args.extend(snapshot.var_files.iter().map(|f| format!("-var-file={f}")));
        run.locking(DEPLOYED, "destroy", &snapshot, args)?;
        let left = run.terraform(DEPLOYED, &snapshot, ["state", "list"], false)?;
        let left = run.checked(DEPLOYED, &snapshot, "state list", left)?;
        let left = String::from_utf8_lossy(&left.stdout);
        let left: Vec<&str> = left.lines().filter(|l| !l.trim().is_empty()).collect();
        if !left.is_empty() {
            return Err(internal(format!(
                "destroy finished but the state still holds {}",
                left.join(", ")
            )));
        }
        host::info("the state holds no resources any more");
        Ok(())
    }
}

/// Checks of the parameters alone.
fn check_params(p: &Params) -> Vec<ValidationIssue> {
    let mut issues = Vec::new();
    if let Err(why) = relative_inside(&p.path) {
        issues.push(ValidationIssue::new("path", why));
    }
    for (i, f) in p.var_files.iter().enumerate() {
        if let Err(why) = relative_inside(f) {
            issues.push(ValidationIssue::new(&format!("var_files.{i}"), why));
        }
    }
    for (field, text) in [
        ("lock_timeout", &p.lock_timeout),
        ("stop_grace", &p.stop_grace),
    ] {
        match parse_duration(text) {
            Err(e) => issues.push(ValidationIssue::new(field, e)),
            Ok(d) if field == "stop_grace" && d > MAX_GRACE => issues.push(ValidationIssue::new(
                field,
                "may be at most 30s: the host stops a program for good after that",
            )),
            Ok(_) => {}
        }
    }
    if let Some(ws) = &p.workspace
        && !valid_workspace(ws)
    {
        issues.push(ValidationIssue::new(
            "workspace",
            format!("`{ws}` is not a workspace name: use letters, digits, `-` and `_`"),
        ));
    }
    if p.rollback != ROLLBACK_UNSUPPORTED && p.rollback != ROLLBACK_REAPPLY {
        issues.push(ValidationIssue::new(
            "rollback",
            format!(
                "`{}` is not a rollback mode: use \"{ROLLBACK_UNSUPPORTED}\" or \"{ROLLBACK_REAPPLY}\"",
                p.rollback
            ),
        ));
    }
    if p.program.is_empty() || p.program.contains(char::is_whitespace) {
        issues.push(ValidationIssue::new(
            "program",
            "must name one program, e.g. \"terraform\" or \"tofu\"",
        ));
    }
    for name in p.env.keys() {
        if name.starts_with("TF_DATA_DIR")
            || name == "TF_WORKSPACE"
            || name == "TF_CLI_ARGS"
            || name.starts_with("TF_CLI_ARGS_")
        {
            issues.push(ValidationIssue::new(
                &format!("env.{name}"),
                "is gantry's to decide: it sets Terraform's working data, workspace and arguments itself",
            ));
        }
    }
    issues
}

/// Checks of the module's files, when the source directory is at hand.
fn check_module(p: &Params, source: &Path) -> Vec<ValidationIssue> {
    let mut issues = Vec::new();
    if relative_inside(&p.path).is_err() {
        return issues;
    }
    let module = source.join(&p.path);
    if !module.is_dir() {
        issues.push(ValidationIssue::new(
            "path",
            format!(
                "module directory `{}` does not exist in the task's source directory",
                p.path
            ),
        ));
        return issues;
    }
    match files::module_facts(&module) {
        Err(e) => issues.push(ValidationIssue::new(
            "path",
            format!("cannot read module directory `{}`: {e}", p.path),
        )),
        Ok(facts) => {
            if !facts.has_config {
                issues.push(ValidationIssue::new(
                    "path",
                    format!("`{}` holds no *.tf or *.tf.json file", p.path),
                ));
            }
            if !p.backend_config.is_empty() && !facts.declares_backend {
                issues.push(ValidationIssue::new(
                    "backend_config",
                    "the module declares no backend to configure; add e.g. `terraform { backend \"s3\" {} }` to it, or remove backend_config to keep state in the task's workspace",
                ));
            }
            for f in facts.escaping_sources {
                let file = Path::new(&p.path).join(&f.file);
                let file = file.strip_prefix(".").unwrap_or(&file);
                issues.push(ValidationIssue::new("path", f.message).at(
                    &file.display().to_string(),
                    f.line,
                    f.column,
                ));
            }
        }
    }
    for (i, f) in p.var_files.iter().enumerate() {
        if relative_inside(f).is_ok() && !module.join(f).is_file() {
            issues.push(ValidationIssue::new(
                &format!("var_files.{i}"),
                format!("`{f}` is not a file in the module directory"),
            ));
        }
    }
    issues
}

/// A path that stays inside the directory it is relative to.
fn relative_inside(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(format!("`{path}` must be relative"));
    }
    if p.components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!("`{path}` must not leave its directory with `..`"));
    }
    Ok(())
}

fn valid_workspace(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether a plan takes the state lock: one that will be applied does; one only shown
/// (`gantry diff`) does not.
#[derive(Debug, Clone, Copy)]
enum Lock {
    Yes,
    No,
}

/// The directory a shown-only plan works in, named after the run so two never share one.
fn preview_dir(run_id: &str) -> String {
    let id: String = run_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("plan-{id}")
}

fn message_of(e: &TaskError) -> String {
    match e {
        TaskError::Internal(m) | TaskError::InvalidConfig(m) => m.clone(),
        other => format!("{other:?}"),
    }
}

fn internal(message: impl Into<String>) -> TaskError {
    TaskError::Internal(message.into())
}

fn now_unix() -> Option<i64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One plugin call's view of the task: where its workspace is and how to run Terraform.
struct Run {
    workspace: PathBuf,
    run_id: String,
    /// `workflow/task`, to point the operator at the workspace on the host.
    task_path: String,
    grace: Duration,
    force_unlock: bool,
}

impl Run {
    fn new(ctx: &TaskContext, p: &Params) -> Result<Run, TaskError> {
        let grace = parse_duration(&p.stop_grace).map_err(TaskError::InvalidConfig)?;
        Self::build(ctx, grace.min(MAX_GRACE), p.force_unlock)
    }

    fn for_destroy(ctx: &TaskContext, p: Option<&Params>) -> Result<Run, TaskError> {
        let grace = p
            .and_then(|p| parse_duration(&p.stop_grace).ok())
            .unwrap_or(Duration::from_secs(20));
        Self::build(ctx, grace.min(MAX_GRACE), p.is_some_and(|p| p.force_unlock))
    }

    fn build(ctx: &TaskContext, grace: Duration, force_unlock: bool) -> Result<Run, TaskError> {
        let workspace = ctx.workspace_dir.as_deref().ok_or_else(|| {
            internal("the host gave this task no workspace; the terraform plugin needs one for its state")
        })?;
        let run = Run {
            workspace: PathBuf::from(workspace),
            run_id: ctx.run_id.clone(),
            task_path: format!("{}/{}", ctx.workflow, ctx.task),
            grace,
            force_unlock,
        };
        std::fs::create_dir_all(run.dir(STATE))
            .map_err(|e| internal(format!("creating {}: {e}", run.dir(STATE).display())))?;
        Ok(run)
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.workspace.join(name)
    }

    fn remove(&self, name: &str) -> Result<(), TaskError> {
        let dir = self.dir(name);
        files::remove_tree(&dir).map_err(|e| internal(format!("removing {}: {e}", dir.display())))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), TaskError> {
        std::fs::rename(self.dir(from), self.dir(to)).map_err(|e| {
            internal(format!(
                "moving {} to {}: {e}",
                self.dir(from).display(),
                self.dir(to).display()
            ))
        })
    }

    /// The settings a copy of the module was made with, if that copy exists.
    fn snapshot(&self, name: &str) -> Result<Option<Snapshot>, TaskError> {
        let path = self.dir(name).join(SNAPSHOT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(internal(format!("reading {}: {e}", path.display()))),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| internal(format!("reading {}: {e}", path.display())))
    }

    /// Copies the module as it is now into `work/`, with its variables, the local state
    /// location (unless the module declares a backend) and the settings used.
    fn prepare_copy(
        &self,
        ctx: &TaskContext,
        p: &Params,
        name: &str,
    ) -> Result<Snapshot, TaskError> {
        if let Some(issue) = check_params(p).into_iter().next() {
            return Err(TaskError::InvalidConfig(format!(
                "{}: {}",
                issue.field, issue.message
            )));
        }
        let module = Path::new(&ctx.source_dir).join(&p.path);
        if !module.is_dir() {
            return Err(TaskError::InvalidConfig(format!(
                "path: module directory `{}` does not exist in the task's source directory",
                p.path
            )));
        }
        let facts = files::module_facts(&module)
            .map_err(|e| internal(format!("reading module `{}`: {e}", p.path)))?;
        if !p.backend_config.is_empty() && !facts.declares_backend {
            return Err(TaskError::InvalidConfig(
                "backend_config: the module declares no backend to configure".into(),
            ));
        }
        let work = self.dir(name);
        self.remove(name)?;
        files::copy_tree(&module, &work).map_err(|e| {
            internal(format!(
                "copying module `{}` into the workspace: {e}",
                p.path
            ))
        })?;
        let write = |name: &str, text: &str| {
            std::fs::write(work.join(name), text)
                .map_err(|e| internal(format!("writing {name}: {e}")))
        };
        if !p.vars.is_empty() {
            let text = serde_json::to_string_pretty(&p.vars)
                .map_err(|e| internal(format!("encoding vars: {e}")))?;
            write(VARS_FILE, &text)?;
        }
        if !facts.declares_backend {
            // Relative to the copy, which sits beside `state/` whatever it is called.
            write(
                BACKEND_FILE,
                "# Written by gantry: this task's state lives in its workspace.\nterraform {\n  backend \"local\" {\n    path          = \"../state/terraform.tfstate\"\n    workspace_dir = \"../state/terraform.tfstate.d\"\n  }\n}\n",
            )?;
        }
        let lock_timeout = parse_duration(&p.lock_timeout).map_err(TaskError::InvalidConfig)?;
        let snapshot = Snapshot {
            program: p.program.clone(),
            plugin_dir: p.plugin_dir.clone(),
            workspace: p.workspace.clone(),
            backend_config: p.backend_config.clone(),
            var_files: p.var_files.clone(),
            env: p.env.clone(),
            lock_timeout_secs: lock_timeout.as_secs(),
        };
        let text = serde_json::to_string_pretty(&snapshot)
            .map_err(|e| internal(format!("encoding the snapshot: {e}")))?;
        write(SNAPSHOT_FILE, &text)?;
        Ok(snapshot)
    }

    /// `terraform init`, then the workspace selected (created the first time).
    fn init(&self, dir: &str, s: &Snapshot) -> Result<(), TaskError> {
        // Terraform 1.0's init takes no -lock-timeout.
        let mut args = vec![
            "init".to_string(),
            "-input=false".into(),
            "-no-color".into(),
        ];
        if let Some(plugins) = &s.plugin_dir {
            args.push(format!("-plugin-dir={plugins}"));
        }
        args.extend(
            s.backend_config
                .iter()
                .map(|(k, v)| format!("-backend-config={k}={v}")),
        );
        self.checked(dir, s, "init", self.terraform(dir, s, args, true)?)?;
        if let Some(ws) = s.workspace.as_deref().filter(|w| *w != "default") {
            let selected =
                self.terraform(dir, s, ["workspace", "select", "-no-color", ws], true)?;
            if selected.exit_code != Some(0) {
                host::info(&format!("creating Terraform workspace `{ws}`"));
                let lock = format!("-lock-timeout={}s", s.lock_timeout_secs);
                let created = self.terraform(
                    dir,
                    s,
                    ["workspace", "new", "-no-color", lock.as_str(), ws],
                    true,
                )?;
                self.checked(dir, s, "workspace new", created)?;
            }
        }
        Ok(())
    }

    /// Inits and plans in `dir`, saving the plan there; the plan as Terraform's JSON.
    fn plan(&self, dir: &str, s: &Snapshot, lock: Lock) -> Result<Value, TaskError> {
        self.init(dir, s)?;
        let mut args = vec![
            "plan".to_string(),
            "-input=false".into(),
            "-no-color".into(),
            format!("-out={PLAN_FILE}"),
        ];
        args.extend(s.var_files.iter().map(|f| format!("-var-file={f}")));
        match lock {
            Lock::Yes => {
                args.insert(3, format!("-lock-timeout={}s", s.lock_timeout_secs));
                self.locking(dir, "plan", s, args)?;
            }
            Lock::No => {
                // A plan that is only shown writes no state, so it need not wait for (or
                // block) a deploy holding the lock.
                args.insert(3, "-lock=false".into());
                let out = self.terraform(dir, s, args, true)?;
                self.checked(dir, s, "plan", out)?;
            }
        }
        // Not streamed: the JSON holds sensitive values in clear.
        let shown = self.terraform(dir, s, ["show", "-json", "-no-color", PLAN_FILE], false)?;
        let shown = self.checked(dir, s, "show", shown)?;
        serde_json::from_slice(&shown.stdout).map_err(|e| {
            internal(format!(
                "`{} show -json` did not print JSON: {e}",
                s.program
            ))
        })
    }

    /// Applies exactly the plan saved in `dir`.
    fn apply_plan(&self, dir: &str, s: &Snapshot) -> Result<(), TaskError> {
        let args = vec![
            "apply".to_string(),
            "-input=false".into(),
            "-no-color".into(),
            format!("-lock-timeout={}s", s.lock_timeout_secs),
            PLAN_FILE.into(),
        ];
        self.locking(dir, "apply", s, args).map(drop)
    }

    /// The task's deployment after an apply in `dir`: Terraform's outputs (sensitive ones
    /// marked) and the resources the plan said would exist.
    fn deployment(&self, dir: &str, s: &Snapshot, plan: &Value) -> Result<Deployment, TaskError> {
        // Not streamed: sensitive outputs are printed in clear.
        let out = self.terraform(dir, s, ["output", "-json", "-no-color"], false)?;
        let out = self.checked(dir, s, "output", out)?;
        let outputs =
            outputs::parse_outputs(&String::from_utf8_lossy(&out.stdout)).map_err(internal)?;
        Ok(Deployment {
            outputs,
            inventory: plan_json::resources_after(plan),
            state: None,
        })
    }

    /// Makes the copy just applied the deployed one, keeping the one before for rollback.
    fn promote(&self, from: &str) -> Result<(), TaskError> {
        let _ = std::fs::remove_file(self.dir(from).join(PLAN_FILE));
        if self.dir(DEPLOYED).exists() {
            self.remove(PREVIOUS)?;
            self.rename(DEPLOYED, PREVIOUS)?;
        }
        self.rename(from, DEPLOYED)
    }

    fn command<I, S>(&self, dir: &str, s: &Snapshot, args: I, streamed: bool) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut env: Vec<(String, String)> = vec![
            ("TF_IN_AUTOMATION".into(), "1".into()),
            ("TF_INPUT".into(), "0".into()),
            ("CHECKPOINT_DISABLE".into(), "1".into()),
            // Relative to the copy it runs in: each copy keeps its own working data.
            ("TF_DATA_DIR".into(), ".terraform".into()),
        ];
        env.extend(s.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let command = Command {
            env,
            cwd: Some(self.dir(dir).display().to_string()),
            grace_ms: Some(millis(self.grace)),
            ..Command::new(s.program.clone(), args)
        };
        if streamed {
            command.streamed()
        } else {
            command
        }
    }

    fn terraform<I, S>(
        &self,
        dir: &str,
        s: &Snapshot,
        args: I,
        streamed: bool,
    ) -> Result<CommandOutput, TaskError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let command = self.command(dir, s, args, streamed);
        host::run(&command)
    }

    /// A non-zero exit as a tool failure; a held state lock explained.
    fn checked(
        &self,
        dir: &str,
        s: &Snapshot,
        what: &str,
        out: CommandOutput,
    ) -> Result<CommandOutput, TaskError> {
        if out.exit_code == Some(0) {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr_tail = match parse_lock_error(&stderr) {
            Some(lock) => lock.explain(
                now_unix(),
                &format!(
                    "`workspaces/{}/{dir}` under gantry's state directory",
                    self.task_path
                ),
            ),
            None => host::tail(&out.stderr, 4096),
        };
        Err(TaskError::ToolFailed(ToolFailure {
            program: format!("{} {what}", s.program),
            exit_code: out.exit_code,
            stderr_tail,
        }))
    }

    /// Runs a command that takes the state lock, streamed. While it runs, a marker in the
    /// workspace says so; it is removed once the command has exited by itself and did not
    /// find the lock held, so a marker found later means an interrupted run may have left
    /// its lock behind. With `force_unlock`, exactly such a lock is released and the
    /// command run once more.
    fn locking(
        &self,
        dir: &str,
        name: &str,
        s: &Snapshot,
        args: Vec<String>,
    ) -> Result<CommandOutput, TaskError> {
        let marker = self.dir(INTERRUPTED);
        let earlier: Option<Interrupted> = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if earlier.is_none() {
            let mine = Interrupted {
                run_id: self.run_id.clone(),
                command: name.to_string(),
                started_unix: now_unix().unwrap_or(0),
            };
            let text = serde_json::to_string(&mine)
                .map_err(|e| internal(format!("encoding the lock marker: {e}")))?;
            std::fs::write(&marker, text)
                .map_err(|e| internal(format!("writing {}: {e}", marker.display())))?;
        }
        // Cancelled or timed out: the marker stays, Terraform may not have released the lock.
        let out = self.terraform(dir, s, args.clone(), true)?;
        let lock = (out.exit_code != Some(0))
            .then(|| parse_lock_error(&String::from_utf8_lossy(&out.stderr)))
            .flatten();
        let Some(lock) = lock else {
            let _ = std::fs::remove_file(&marker);
            return self.checked(dir, s, name, out);
        };
        let ours = earlier.as_ref().filter(|i| i.left(&lock));
        match ours {
            Some(interrupted) if self.force_unlock => {
                host::warn(&format!(
                    "releasing state lock {} left by interrupted run {} ({})",
                    lock.id, interrupted.run_id, interrupted.command
                ));
                let unlocked =
                    self.terraform(dir, s, ["force-unlock", "-force", lock.id.as_str()], true)?;
                self.checked(dir, s, "force-unlock", unlocked)?;
                let _ = std::fs::remove_file(&marker);
                let again = self.terraform(dir, s, args, true)?;
                self.checked(dir, s, name, again)
            }
            _ => {
                if ours.is_some() {
                    host::warn(
                        "this lock was taken by an interrupted gantry run of this task; set force_unlock = true to release it",
                    );
                }
                self.checked(dir, s, name, out)
            }
        }
    }
}

gantry_sdk::export_task!(Terraform);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Task;
    use gantry_sdk::testing::{commands, on_run, output, validate_context};

    fn validate(params: &str, source: Option<&Path>) -> Vec<ValidationIssue> {
        let mut ctx = validate_context("terraform", params);
        ctx.source_dir = source.map(|s| s.display().to_string());
        Terraform::validate(&ctx)
    }

    #[test]
    fn validate_reports_parameters_and_module_problems() {
        let fields = |issues: Vec<ValidationIssue>| -> Vec<String> {
            issues.into_iter().map(|i| i.field).collect()
        };
        assert_eq!(
            fields(validate(
                r#"{"path":"../x","lock_timeout":"soon","stop_grace":"2m","workspace":"a b","var_files":["/etc/x"]}"#,
                None
            )),
            vec![
                "path",
                "var_files.0",
                "lock_timeout",
                "stop_grace",
                "workspace"
            ]
        );
        assert_eq!(
            fields(validate(r#"{"rollback":"undo"}"#, None)),
            vec!["rollback"]
        );
        assert_eq!(fields(validate(r#"{"modul":"x"}"#, None)), vec!["modul"]);

        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("infra")).unwrap();
        std::fs::write(
            src.path().join("infra/main.tf"),
            "module \"net\" {\n  source = \"../net\"\n}\n",
        )
        .unwrap();
        let issues = validate(
            r#"{"path":"infra","backend_config":{"bucket":"b"},"var_files":["prod.tfvars"]}"#,
            Some(src.path()),
        );
        assert_eq!(
            fields(issues.clone()),
            vec!["backend_config", "path", "var_files.0"]
        );
        let location = issues[1].location.clone().unwrap();
        assert_eq!(
            (location.file.as_str(), location.line),
            ("infra/main.tf", 2)
        );
        assert_eq!(
            fields(validate(r#"{"path":"nowhere"}"#, Some(src.path()))),
            vec!["path"]
        );
        std::fs::write(
            src.path().join("infra/main.tf"),
            "output \"x\" { value = 1 }\n",
        )
        .unwrap();
        assert!(validate(r#"{"path":"infra"}"#, Some(src.path())).is_empty());
    }

    fn context_in(dir: &Path, params: &str) -> TaskContext {
        let mut ctx = gantry_sdk::testing::context("terraform", params);
        ctx.source_dir = dir.join("src").display().to_string();
        ctx.workspace_dir = Some(dir.join("ws").display().to_string());
        ctx
    }

    const PLAN: &str = r#"{"resource_changes":[{"address":"null_resource.db","mode":"managed","change":{"actions":["create"],"before":null,"after":{"triggers":{"name":"db1"}},"after_unknown":{"id":true}}}],
        "planned_values":{"root_module":{"resources":[{"address":"null_resource.db","mode":"managed"}]}}}"#;

    fn answer(cmd: &Command) -> Result<CommandOutput, TaskError> {
        Ok(match cmd.args.first().map(String::as_str) {
            Some("show") => output(0, PLAN, ""),
            Some("output") => output(
                0,
                r#"{"host":{"sensitive":false,"value":"db1.internal"},"pw":{"sensitive":true,"value":"s3cret"}}"#,
                "",
            ),
            _ => output(0, "", ""),
        })
    }

    #[test]
    fn apply_plans_applies_that_plan_and_keeps_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/infra")).unwrap();
        std::fs::write(dir.path().join("src/infra/main.tf"), "# module\n").unwrap();
        on_run(answer);
        let ctx = context_in(
            dir.path(),
            r#"{"path":"infra","vars":{"port":5432,"tags":["a"]},"plugin_dir":"/opt/mirror","workspace":"staging"}"#,
        );
        let d = Terraform::apply(&ctx).unwrap();
        assert_eq!(d.inventory, vec!["null_resource.db"]);
        let pw = d.outputs.iter().find(|o| o.key == "pw").unwrap();
        assert!(pw.sensitive);
        let host_out = d.outputs.iter().find(|o| o.key == "host").unwrap();
        assert!(!host_out.sensitive);

        let cmds = commands();
        let argv: Vec<String> = cmds.iter().map(|c| c.args.join(" ")).collect();
        assert_eq!(
            argv[0],
            "init -input=false -no-color -plugin-dir=/opt/mirror"
        );
        assert_eq!(argv[1], "workspace select -no-color staging");
        assert!(
            argv[2].starts_with("plan -input=false -no-color -lock-timeout=30s -out=gantry.tfplan"),
            "{argv:?}"
        );
        assert_eq!(argv[3], "show -json -no-color gantry.tfplan");
        assert_eq!(
            argv[4],
            "apply -input=false -no-color -lock-timeout=30s gantry.tfplan"
        );
        assert_eq!(argv[5], "output -json -no-color");
        let ws = dir.path().join("ws");
        for c in &cmds {
            assert_eq!(c.program, "terraform");
            assert_eq!(
                c.cwd.as_deref(),
                Some(ws.join("work").display().to_string().as_str())
            );
            assert!(c.env.contains(&("TF_IN_AUTOMATION".into(), "1".into())));
            assert!(c.env.contains(&("TF_DATA_DIR".into(), ".terraform".into())));
            assert_eq!(c.grace_ms, Some(20_000));
            // What holds secrets in clear is never copied into the log.
            let secret_bearing = matches!(c.args[0].as_str(), "show" | "output");
            assert_eq!(c.stream_output, !secret_bearing, "{:?}", c.args);
        }
        // The applied copy is the deployed one, with its variables keeping their types.
        let vars = std::fs::read_to_string(ws.join("deployed").join(VARS_FILE)).unwrap();
        let vars: Value = serde_json::from_str(&vars).unwrap();
        assert_eq!(vars["port"], 5432);
        assert_eq!(vars["tags"][0], "a");
        assert!(ws.join("deployed").join(BACKEND_FILE).is_file());
        assert!(!ws.join("work").exists());
        assert!(
            !ws.join(INTERRUPTED).exists(),
            "a clean exit leaves no lock marker"
        );

        // A second apply keeps the first as the previous configuration.
        Terraform::apply(&ctx).unwrap();
        assert!(ws.join("previous").join(SNAPSHOT_FILE).is_file());
    }

    #[test]
    fn a_plan_to_show_works_apart_and_takes_no_lock() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.tf"), "# module\n").unwrap();
        std::fs::create_dir_all(dir.path().join("ws/work")).unwrap();
        on_run(answer);
        let ctx = context_in(dir.path(), "{}");
        let changes = Terraform::plan(&ctx).unwrap();
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].target, "null_resource.db");
        let plan = commands()
            .into_iter()
            .find(|c| c.args[0] == "plan")
            .unwrap();
        assert!(
            plan.args.contains(&"-lock=false".to_string()),
            "{:?}",
            plan.args
        );
        let preview = dir.path().join("ws/plan-test-run");
        assert_eq!(
            plan.cwd.as_deref(),
            Some(preview.display().to_string().as_str())
        );
        assert!(!preview.exists(), "the plan's copy is removed");
        assert!(
            dir.path().join("ws/work").exists(),
            "a deploy's copy is left alone"
        );
        assert!(!dir.path().join("ws").join(INTERRUPTED).exists());
    }

    #[test]
    fn a_held_lock_fails_with_its_id_holder_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.tf"), "# module\n").unwrap();
        on_run(|cmd| {
            Ok(if cmd.args[0] == "plan" {
                output(
                    1,
                    "",
                    "Error: Error acquiring the state lock\n\nLock Info:\n  ID:        abc-123\n  Operation: OperationTypeApply\n  Who:       ops@ci\n  Created:   2020-01-01 00:00:00 +0000 UTC\n",
                )
            } else {
                output(0, "", "")
            })
        });
        let ctx = context_in(dir.path(), r#"{"force_unlock":true}"#);
        let err = Terraform::apply(&ctx).unwrap_err();
        let TaskError::ToolFailed(f) = err else {
            panic!("unexpected {err:?}");
        };
        assert!(
            f.stderr_tail.contains("lock ID abc-123"),
            "{}",
            f.stderr_tail
        );
        assert!(
            f.stderr_tail.contains("held by ops@ci"),
            "{}",
            f.stderr_tail
        );
        assert!(
            f.stderr_tail.contains("terraform force-unlock abc-123"),
            "{}",
            f.stderr_tail
        );
        // Someone else's lock, older than this run: force_unlock leaves it alone.
        assert!(!commands().iter().any(|c| c.args[0] == "force-unlock"));
    }

    #[test]
    fn force_unlock_releases_only_a_lock_left_by_an_interrupted_run() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.tf"), "# module\n").unwrap();
        std::fs::create_dir_all(dir.path().join("ws")).unwrap();
        let started = now_unix().unwrap();
        std::fs::write(
            dir.path().join("ws").join(INTERRUPTED),
            serde_json::to_string(&Interrupted {
                run_id: "r-old".into(),
                command: "apply".into(),
                started_unix: started - 100,
            })
            .unwrap(),
        )
        .unwrap();
        let created = started - 90;
        let mut locked = true;
        on_run(move |cmd| {
            Ok(match cmd.args[0].as_str() {
                "plan" | "apply" if locked => output(
                    1,
                    "",
                    &format!(
                        "Error: Error acquiring the state lock\nLock Info:\n  ID:        dead-1\n  Operation: OperationTypeApply\n  Who:       gantry@host\n  Created:   {}\n",
                        format_unix(created)
                    ),
                ),
                "force-unlock" => {
                    locked = false;
                    output(0, "", "")
                }
                _ => answer(cmd)?,
            })
        });
        let ctx = context_in(dir.path(), r#"{"force_unlock":true}"#);
        Terraform::apply(&ctx).unwrap();
        let unlocks: Vec<_> = commands()
            .into_iter()
            .filter(|c| c.args[0] == "force-unlock")
            .collect();
        assert_eq!(unlocks.len(), 1);
        assert_eq!(unlocks[0].args, vec!["force-unlock", "-force", "dead-1"]);
        assert!(!dir.path().join("ws").join(INTERRUPTED).exists());
    }

    /// A Unix time in the format Terraform prints lock times in.
    fn format_unix(t: i64) -> String {
        let days = t.div_euclid(86400);
        let secs = t.rem_euclid(86400);
        // Civil from days (inverse of lock::days_from_civil).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.5 +0000 UTC",
            secs / 3600,
            (secs % 3600) / 60,
            secs % 60
        )
    }

    #[test]
    fn destroy_runs_from_the_deployed_copy_even_without_parameters() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/main.tf"), "# module\n").unwrap();
        on_run(answer);
        let ctx = context_in(dir.path(), r#"{"var_files":[]}"#);
        Terraform::apply(&ctx).unwrap();
        // The module is gone and the recorded parameters no longer parse.
        std::fs::remove_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        let mut gone = context_in(dir.path(), r#"{"path":42}"#);
        gone.previous = Some(Deployment::with_outputs([("host", "db1.internal")]));
        Terraform::destroy(&gone).unwrap();
        let destroy = commands()
            .into_iter()
            .find(|c| c.args[0] == "destroy")
            .unwrap();
        let deployed = dir.path().join("ws/deployed").display().to_string();
        assert_eq!(destroy.cwd.as_deref(), Some(deployed.as_str()));
        assert!(destroy.args.contains(&"-auto-approve".to_string()));
    }

    #[test]
    fn rollback_is_unsupported_unless_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context_in(dir.path(), "{}");
        assert!(matches!(
            Terraform::rollback(&ctx).unwrap(),
            RollbackOutcome::Unsupported(_)
        ));
        let ctx = context_in(dir.path(), r#"{"rollback":"reapply_previous"}"#);
        let RollbackOutcome::Unsupported(why) = Terraform::rollback(&ctx).unwrap() else {
            panic!("nothing to re-apply yet");
        };
        assert!(why.contains("first deploy"), "{why}");
    }
}
