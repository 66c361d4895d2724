//! The production [`TaskRunner`]: each task call goes to the plugin that serves its kind, in
//! a fresh sandbox, with the task's source directory and a scratch directory of its own.

use std::path::PathBuf;
use std::sync::Arc;

use super::bindings::types::{
    Deployment, HookContext, HookDecision, Output, Phase as WitPhase, PlannedChange,
    RollbackOutcome, TaskContext, TaskError,
};
use super::{CallError, CallOptions, Registry};
use crate::engine::runner::{
    DeploymentRecord, HookCall, HookVerdict, Phase, RollbackResult, TaskCall, TaskFailure,
    TaskRunner,
};
use crate::host::kube::Clusters;
use crate::host::{GUEST_SCRATCH_DIR, GUEST_SOURCE_DIR, LogSink, TaskDirs, TracingSink};

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

pub struct PluginRunner {
    registry: Arc<Registry>,
    /// Scratch directories go under `<scratch_root>/<run>/<workflow>/<task>`.
    scratch_root: PathBuf,
    logs: Arc<dyn LogFactory>,
    clusters: Arc<Clusters>,
}

impl PluginRunner {
    pub fn new(
        registry: Arc<Registry>,
        scratch_root: PathBuf,
        logs: Arc<dyn LogFactory>,
        clusters: Arc<Clusters>,
    ) -> Self {
        PluginRunner {
            registry,
            scratch_root,
            logs,
            clusters,
        }
    }

    fn prepare(&self, call: &TaskCall) -> Result<(CallOptions, TaskContext), TaskFailure> {
        let scratch = self
            .scratch_root
            .join(&call.run)
            .join(&call.workflow)
            .join(&call.task);
        std::fs::create_dir_all(&scratch)
            .map_err(|e| TaskFailure::permanent(format!("creating {}: {e}", scratch.display())))?;
        let source = call.source_dir.clone().unwrap_or_else(|| scratch.clone());
        if !source.is_dir() {
            return Err(TaskFailure::permanent(format!(
                "source directory {} does not exist",
                source.display()
            )));
        }
        let opts = CallOptions {
            dirs: Some(TaskDirs { source, scratch }),
            log: self.logs.for_task(&call.run, &call.workflow, &call.task),
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
            previous: call.previous.as_ref().map(to_wit),
        };
        Ok((opts, ctx))
    }

    /// What applying the task would change, as its plugin sees it.
    pub async fn plan(&self, call: TaskCall) -> Result<Vec<PlannedChange>, TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let (opts, ctx) = self.prepare(&call)?;
        let called = plugin.plan(opts.clone(), ctx).await.map_err(failure)?;
        note(&opts, &called.notes);
        Ok(called.value)
    }

    fn plugin(&self, kind: &str) -> Result<&Arc<super::Plugin>, TaskFailure> {
        self.registry
            .task(kind)
            .ok_or_else(|| TaskFailure::permanent(format!("no plugin serves task kind `{kind}`")))
    }
}

fn to_wit_outputs(outputs: &std::collections::BTreeMap<String, String>) -> Vec<Output> {
    outputs
        .iter()
        .map(|(k, v)| Output {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

fn to_wit(rec: &DeploymentRecord) -> Deployment {
    Deployment {
        outputs: to_wit_outputs(&rec.outputs),
        inventory: rec.inventory.clone(),
        state: rec.state.clone(),
    }
}

fn from_wit(d: Deployment) -> DeploymentRecord {
    DeploymentRecord {
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
        opts.log.line(super::bindings::log::Level::Warn, n, &[]);
    }
}

impl TaskRunner for PluginRunner {
    async fn apply(&self, call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let (opts, ctx) = self.prepare(&call)?;
        let called = plugin.apply(opts.clone(), ctx).await.map_err(failure)?;
        note(&opts, &called.notes);
        Ok(from_wit(called.value))
    }

    async fn rollback(&self, call: TaskCall) -> Result<RollbackResult, TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let (opts, ctx) = self.prepare(&call)?;
        let called = plugin.rollback(opts.clone(), ctx).await.map_err(failure)?;
        note(&opts, &called.notes);
        Ok(match called.value {
            RollbackOutcome::RolledBack(_) => RollbackResult::RolledBack,
            RollbackOutcome::Unsupported(reason) => RollbackResult::Unsupported(reason),
        })
    }

    async fn destroy(&self, call: TaskCall) -> Result<(), TaskFailure> {
        let plugin = self.plugin(&call.kind)?.clone();
        let (opts, ctx) = self.prepare(&call)?;
        let called = plugin.destroy(opts.clone(), ctx).await.map_err(failure)?;
        note(&opts, &called.notes);
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
        let (opts, _) = self.prepare(&call.task)?;
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
            outputs: to_wit_outputs(&call.outputs),
            error: call.error.clone(),
        };
        let called = plugin.on_phase(opts, ctx).await.map_err(failure)?;
        Ok(match called.value {
            HookDecision::Proceed => HookVerdict::Proceed,
            HookDecision::Skip(r) => HookVerdict::Skip(r),
            HookDecision::Fail(r) => HookVerdict::Fail(r),
        })
    }
}
