//! The production [`TaskRunner`]: each task call goes to the plugin that serves its kind, in
//! a fresh sandbox, with the task's source directory, a scratch directory of its own (emptied
//! after the call, see `scratch`) and, when the plugin asks for one, the task's workspace
//! (kept between runs, removed when the task is destroyed). Everything the plugin logs passes
//! through the run's redactor.

use std::path::PathBuf;
use std::sync::Arc;

use super::bindings::log::Level;
use super::bindings::types::{
    Deployment, HookContext, HookDecision, Output, Phase as WitPhase, PlannedChange,
    RollbackOutcome, TaskContext, TaskError,
};
use super::scratch::ScratchPool;
use super::{CallError, CallOptions, Plugin, Registry};
use crate::engine::redact::Redactor;
use crate::engine::runner::{
    DeploymentRecord, HookCall, HookVerdict, Phase, RollbackResult, TaskCall, TaskFailure,
    TaskRunner,
};
use crate::host::kube::Clusters;
use crate::host::{
    GUEST_SCRATCH_DIR, GUEST_SOURCE_DIR, GUEST_WORKSPACE_DIR, LogSink, TaskDirs, TracingSink,
};

/// Makes the log sink of one task call (the run's log files, tracing, ...).
pub trait LogFactory: Send + Sync {
    fn for_task(&self, run: &str, workflow: &str, task: &str) -> Arc<dyn LogSink>;
}

/// Logs through `tracing` only.
pub struct TracingLogs;

impl LogFactory for TracingLogs {
    fn for_task(&self, run: &str, workflow: &str, task: &str) -> Arc<dyn LogSink> {
        Arc::new(TracingSink {
            run_id: run.to_string(),
            task: format!("{workflow}/{task}"),
        })
    }
}

/// Where a runner keeps the directories it gives tasks.
#[derive(Debug, Clone)]
pub struct TaskRoots {
    /// Scratch directories: `<scratch>/pool/<n>`, emptied after each call (see `scratch`).
    pub scratch: PathBuf,
    /// Workspaces: `<workspaces>/<workflow>/<task>`, kept until the task is destroyed.
    pub workspaces: PathBuf,
}

impl TaskRoots {
    /// The pool of scratch directories under `scratch`, one per state directory, to be
    /// opened while holding its lock (it takes over what a previous process left).
    pub fn scratch_pool(&self) -> std::io::Result<Arc<ScratchPool>> {
        ScratchPool::open(
            &self.scratch,
            crate::host::process::confine::probe().cgroups_killed_whole,
        )
        .map(Arc::new)
    }

    /// The usual layout under a state directory.
    pub fn in_state_dir(state_dir: &std::path::Path) -> Self {
        TaskRoots {
            scratch: state_dir.join("scratch"),
            workspaces: state_dir.join("workspaces"),
        }
    }

    pub fn workspace(&self, workflow: &str, task: &str) -> PathBuf {
        self.workspaces.join(workflow).join(task)
    }
}

pub struct PluginRunner {
    registry: Arc<Registry>,
    roots: TaskRoots,
    scratch: Arc<ScratchPool>,
    logs: Arc<dyn LogFactory>,
    clusters: Arc<Clusters>,
}

/// One call's directories; the scratch directory goes back to the pool when this is dropped,
/// to be reused only if the call ended by itself and the host did not spoil it.
struct Prepared {
    opts: CallOptions,
    ctx: TaskContext,
    scratch: PathBuf,
    pool: Arc<ScratchPool>,
    /// The plugin's call returned without being stopped mid-way. Stays false when the
    /// caller drops the call (a task's timeout).
    ended: bool,
}

impl Prepared {
    /// Notes how the plugin's call ended, and passes its result on.
    fn settle<T>(&mut self, result: Result<T, CallError>) -> Result<T, CallError> {
        self.ended = !matches!(&result, Err(e) if e.stopped_mid_call());
        result
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        let dir = std::mem::take(&mut self.scratch);
        let spoiled = self
            .opts
            .dirs
            .as_ref()
            .is_some_and(|d| d.spoiled.is_raised());
        if self.ended && !spoiled {
            self.pool.give_back(dir);
        } else {
            self.pool.discard(dir);
        }
    }
}

impl PluginRunner {
    /// `scratch`: the state directory's pool (`TaskRoots::scratch_pool`), shared by runs.
    pub fn new(
        registry: Arc<Registry>,
        roots: TaskRoots,
        scratch: Arc<ScratchPool>,
        logs: Arc<dyn LogFactory>,
        clusters: Arc<Clusters>,
    ) -> Self {
        PluginRunner {
            scratch,
            registry,
            roots,
            logs,
            clusters,
        }
    }

    fn prepare(&self, call: &TaskCall, plugin: &Plugin) -> Result<Prepared, TaskFailure> {
        let create = |dir: &PathBuf| {
            std::fs::create_dir_all(dir)
                .map_err(|e| TaskFailure::permanent(format!("creating {}: {e}", dir.display())))
        };
        let workspace = plugin
            .caps
            .has(crate::host::workspace::NAME)
            .then(|| self.roots.workspace(&call.workflow, &call.task));
        if let Some(w) = &workspace {
            create(w)?;
        }
        if let Some(source) = &call.source_dir
            && !source.is_dir()
        {
            return Err(TaskFailure::permanent(format!(
                "source directory {} does not exist",
                source.display()
            )));
        }
        let scratch = self.scratch.take().map_err(|e| {
            TaskFailure::permanent(format!(
                "creating a scratch directory under {}: {e}",
                self.roots.scratch.display()
            ))
        })?;
        let source = call.source_dir.clone().unwrap_or_else(|| scratch.clone());
        let opts = CallOptions {
            dirs: Some(TaskDirs {
                source,
                scratch: Some(scratch.clone()),
                workspace: workspace.clone(),
                spoiled: Default::default(),
            }),
            log: Arc::new(Redacting {
                inner: self.logs.for_task(&call.run, &call.workflow, &call.task),
                redactor: call.redactor.clone(),
            }),
            clusters: self.clusters.clone(),
            cancel: call.cancel.clone(),
        };
        let ctx = TaskContext {
            run_id: call.run.clone(),
            workflow: call.workflow.clone(),
            task: call.task.clone(),
            kind: call.kind.clone(),
            params: call.params.to_string(),
            source_dir: GUEST_SOURCE_DIR.into(),
            scratch_dir: GUEST_SCRATCH_DIR.into(),
            workspace_dir: workspace.map(|_| GUEST_WORKSPACE_DIR.into()),
            previous: call.previous.as_ref().map(to_wit),
        };
        Ok(Prepared {
            opts,
            ctx,
            scratch,
            pool: self.scratch.clone(),
            ended: false,
        })
    }

    /// What applying the task would change, as its plugin sees it.
    pub async fn plan(&self, call: TaskCall) -> Result<Vec<PlannedChange>, TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let mut p = self.prepare(&call, &plugin)?;
        let called = plugin.plan(p.opts.clone(), p.ctx.clone()).await;
        let called = p.settle(called).map_err(failure)?;
        note(&p.opts, &called.notes);
        Ok(called.value)
    }

    fn plugin(&self, kind: &str) -> Result<&Arc<Plugin>, TaskFailure> {
        self.registry
            .task(kind)
            .ok_or_else(|| TaskFailure::permanent(format!("no plugin serves task kind `{kind}`")))
    }
}

/// Masks the run's secrets in every line a plugin (or a program it runs) logs.
struct Redacting {
    inner: Arc<dyn LogSink>,
    redactor: Arc<Redactor>,
}

impl LogSink for Redacting {
    fn line(&self, level: Level, message: &str, fields: &[(String, String)]) {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), self.redactor.apply(v).into_owned()))
            .collect();
        self.inner
            .line(level, &self.redactor.apply(message), &fields);
    }
}

fn to_wit_outputs(rec: &DeploymentRecord) -> Vec<Output> {
    rec.outputs
        .iter()
        .map(|(k, v)| Output {
            key: k.clone(),
            value: v.clone(),
            sensitive: rec.sensitive.contains(k),
        })
        .collect()
}

fn to_wit(rec: &DeploymentRecord) -> Deployment {
    Deployment {
        outputs: to_wit_outputs(rec),
        inventory: rec.inventory.clone(),
        state: rec.state.clone(),
    }
}

fn from_wit(d: Deployment) -> DeploymentRecord {
    DeploymentRecord {
        sensitive: d
            .outputs
            .iter()
            .filter(|o| o.sensitive)
            .map(|o| o.key.clone())
            .collect(),
        outputs: d.outputs.into_iter().map(|o| (o.key, o.value)).collect(),
        inventory: d.inventory,
        state: d.state,
    }
}

fn failure(e: CallError) -> TaskFailure {
    let permanent = matches!(
        e.task_error(),
        Some(TaskError::InvalidConfig(_) | TaskError::CapabilityDenied(_))
    ) || matches!(e, CallError::WrongWorld { .. });
    let message = e.to_string();
    if permanent {
        TaskFailure::permanent(message)
    } else {
        TaskFailure::new(message)
    }
}

fn note(opts: &CallOptions, notes: &[String]) {
    for n in notes {
        opts.log.line(Level::Warn, n, &[]);
    }
}

impl TaskRunner for PluginRunner {
    async fn apply(&self, call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let mut p = self.prepare(&call, &plugin)?;
        let called = plugin.apply(p.opts.clone(), p.ctx.clone()).await;
        let called = p.settle(called).map_err(failure)?;
        note(&p.opts, &called.notes);
        Ok(from_wit(called.value))
    }

    async fn rollback(&self, call: TaskCall) -> Result<RollbackResult, TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let mut p = self.prepare(&call, &plugin)?;
        let called = plugin.rollback(p.opts.clone(), p.ctx.clone()).await;
        let called = p.settle(called).map_err(failure)?;
        note(&p.opts, &called.notes);
        Ok(match called.value {
            RollbackOutcome::RolledBack(d) => RollbackResult::RolledBack(from_wit(d)),
            RollbackOutcome::Unsupported(reason) => RollbackResult::Unsupported(reason),
        })
    }

    async fn destroy(&self, call: TaskCall) -> Result<(), TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let mut p = self.prepare(&call, &plugin)?;
        let called = plugin.destroy(p.opts.clone(), p.ctx.clone()).await;
        let called = p.settle(called).map_err(failure)?;
        note(&p.opts, &called.notes);
        // Destroyed: the task's workspace has nothing left to remember.
        let workspace = self.roots.workspace(&call.workflow, &call.task);
        if let Err(e) = std::fs::remove_dir_all(&workspace)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            p.opts.log.line(
                Level::Warn,
                &format!("cannot remove the workspace {}: {e}", workspace.display()),
                &[],
            );
        }
        Ok(())
    }

    async fn hook(&self, call: HookCall) -> Result<HookVerdict, TaskFailure> {
        let plugin = self
            .registry
            .hook(&call.hook.kind)
            .ok_or_else(|| {
                TaskFailure::permanent(format!("no plugin serves hook kind `{}`", call.hook.kind))
            })?
            .clone();
        let mut p = self.prepare(&call.task, &plugin)?;
        let ctx = HookContext {
            phase: match call.phase {
                Phase::PreDeploy => WitPhase::PreDeploy,
                Phase::PostDeploy => WitPhase::PostDeploy,
                Phase::OnFailure => WitPhase::OnFailure,
                Phase::PreDestroy => WitPhase::PreDestroy,
            },
            kind: call.hook.kind.clone(),
            run_id: call.task.run.clone(),
            workflow: call.task.workflow.clone(),
            task: call.task.task.clone(),
            task_kind: call.task.kind.clone(),
            params: serde_json::Value::Object(call.hook.params.clone()).to_string(),
            outputs: call
                .outputs
                .iter()
                .map(|(k, v)| Output {
                    key: k.clone(),
                    value: v.clone(),
                    sensitive: false,
                })
                .collect(),
            error: call.error.clone(),
        };
        let called = plugin.on_phase(p.opts.clone(), ctx).await;
        let called = p.settle(called).map_err(failure)?;
        Ok(match called.value {
            HookDecision::Proceed => HookVerdict::Proceed,
            HookDecision::Skip(r) => HookVerdict::Skip(r),
            HookDecision::Fail(r) => HookVerdict::Fail(r),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(pool: &Arc<ScratchPool>) -> Prepared {
        let scratch = pool.take().unwrap();
        Prepared {
            opts: CallOptions {
                dirs: Some(TaskDirs {
                    source: scratch.clone(),
                    scratch: Some(scratch.clone()),
                    workspace: None,
                    spoiled: Default::default(),
                }),
                ..CallOptions::detached()
            },
            ctx: TaskContext {
                run_id: "r".into(),
                workflow: "w".into(),
                task: "t".into(),
                kind: "exec".into(),
                params: "{}".into(),
                source_dir: GUEST_SOURCE_DIR.into(),
                scratch_dir: GUEST_SCRATCH_DIR.into(),
                workspace_dir: None,
                previous: None,
            },
            scratch,
            pool: pool.clone(),
            ended: false,
        }
    }

    #[test]
    fn a_scratch_directory_is_reused_only_after_a_call_that_ended_unspoiled() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = Arc::new(ScratchPool::open(tmp.path(), true).unwrap());
        let ok: Result<(), CallError> = Ok(());

        let mut p = prepared(&pool);
        let dir = p.scratch.clone();
        p.settle(ok).unwrap();
        drop(p);
        assert!(dir.is_dir(), "a call that ended gives its directory back");

        let mut p = prepared(&pool);
        assert_eq!(p.scratch, dir, "and it is reused");
        p.settle(Err::<(), _>(CallError::WallTimeout {
            plugin: "p".into(),
            timeout: "1s".into(),
        }))
        .unwrap_err();
        drop(p);
        assert!(!dir.exists(), "a timed-out call's directory is removed");

        let p = prepared(&pool);
        let dir = p.scratch.clone();
        drop(p);
        assert!(!dir.exists(), "a call dropped before it ended: removed");

        let mut p = prepared(&pool);
        let dir = p.scratch.clone();
        p.settle(Ok::<(), CallError>(())).unwrap();
        if let Some(dirs) = &p.opts.dirs {
            dirs.spoiled.raise();
        }
        drop(p);
        assert!(!dir.exists(), "a directory the host spoiled is removed");
    }
}
