//! What the scheduler needs from whoever executes tasks: the Wasm plugins in production, a
//! scripted fake in tests. Retries, timeouts, hooks order and failure policy stay in the
//! scheduler, so they are the same for every runner.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::workflow::HookSpec;

/// What a task deployed, kept for rollback, pruning and destroy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRecord {
    pub outputs: BTreeMap<String, String>,
    /// Keys of outputs whose values are secrets: handed to later tasks of the run, shown as
    /// `***` everywhere else, and never stored.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub sensitive: BTreeSet<String>,
    pub inventory: Vec<String>,
    pub state: Option<String>,
}

/// What replaces a sensitive value wherever a person could read it.
pub const MASK: &str = "***";

impl DeploymentRecord {
    /// The record as it may be written down: sensitive values blanked.
    pub fn storable(&self) -> DeploymentRecord {
        let mut record = self.clone();
        for key in &self.sensitive {
            if let Some(v) = record.outputs.get_mut(key) {
                v.clear();
            }
        }
        record
    }

    /// An output's value as a person may see it.
    pub fn shown(&self, key: &str) -> Option<&str> {
        let value = self.outputs.get(key)?;
        Some(if self.sensitive.contains(key) {
            MASK
        } else {
            value
        })
    }
}

/// A task's deployment as history keeps it: the kind and parameters it was deployed with,
/// and what it left behind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deployed {
    pub kind: String,
    pub params: serde_json::Value,
    pub record: DeploymentRecord,
}

/// One call of a task's plugin.
#[derive(Clone)]
pub struct TaskCall {
    pub run: String,
    pub workflow: String,
    pub task: String,
    pub kind: String,
    /// Parameters with references resolved.
    pub params: serde_json::Value,
    pub attempt: u32,
    /// What this task deployed before this run, if anything.
    pub previous: Option<DeploymentRecord>,
    pub source_dir: Option<std::path::PathBuf>,
    pub cancel: CancellationToken,
    /// Secrets of the run so far, to mask in what the task's plugin logs.
    pub redactor: Arc<super::redact::Redactor>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskFailure {
    pub message: String,
    /// False for errors a retry cannot fix (bad configuration, denied capability).
    pub retryable: bool,
}

impl TaskFailure {
    pub fn new(message: impl Into<String>) -> Self {
        TaskFailure {
            message: message.into(),
            retryable: true,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        TaskFailure {
            message: message.into(),
            retryable: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RollbackResult {
    /// What is deployed now; it becomes the task's recorded deployment.
    RolledBack(DeploymentRecord),
    Unsupported(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    PreDeploy,
    PostDeploy,
    OnFailure,
    PreDestroy,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::PreDeploy => "pre_deploy",
            Phase::PostDeploy => "post_deploy",
            Phase::OnFailure => "on_failure",
            Phase::PreDestroy => "pre_destroy",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookVerdict {
    Proceed,
    Skip(String),
    Fail(String),
}

/// One hook call around a task.
#[derive(Clone)]
pub struct HookCall {
    pub phase: Phase,
    pub hook: HookSpec,
    pub task: TaskCall,
    pub outputs: BTreeMap<String, String>,
    pub error: Option<String>,
}

/// Executes tasks. Futures must be `Send`: the scheduler runs them concurrently.
pub trait TaskRunner: Send + Sync + 'static {
    fn apply(
        &self,
        call: TaskCall,
    ) -> impl Future<Output = Result<DeploymentRecord, TaskFailure>> + Send;
    fn rollback(
        &self,
        call: TaskCall,
    ) -> impl Future<Output = Result<RollbackResult, TaskFailure>> + Send;
    fn destroy(&self, call: TaskCall) -> impl Future<Output = Result<(), TaskFailure>> + Send;
    fn hook(&self, call: HookCall)
    -> impl Future<Output = Result<HookVerdict, TaskFailure>> + Send;
}

impl<R: TaskRunner> TaskRunner for Arc<R> {
    fn apply(
        &self,
        call: TaskCall,
    ) -> impl Future<Output = Result<DeploymentRecord, TaskFailure>> + Send {
        (**self).apply(call)
    }
    fn rollback(
        &self,
        call: TaskCall,
    ) -> impl Future<Output = Result<RollbackResult, TaskFailure>> + Send {
        (**self).rollback(call)
    }
    fn destroy(&self, call: TaskCall) -> impl Future<Output = Result<(), TaskFailure>> + Send {
        (**self).destroy(call)
    }
    fn hook(
        &self,
        call: HookCall,
    ) -> impl Future<Output = Result<HookVerdict, TaskFailure>> + Send {
        (**self).hook(call)
    }
}

/// What was deployed by earlier runs: the store in production, a map in tests. History is
/// written from the run's events only (see `store`); the engine only reads it.
pub trait History: Send + Sync {
    /// The current deployment of each task of `workflow`.
    fn deployed(&self, workflow: &str) -> BTreeMap<String, Deployed>;
    /// Typical past durations in seconds of the tasks of `workflow`, by task id, to prefer
    /// long paths first. Read once per workflow and run, so its cost must not grow with
    /// the number of past runs.
    fn typical_durations(&self, _workflow: &str) -> std::collections::HashMap<String, f64> {
        std::collections::HashMap::new()
    }
    /// Removed tasks of `workflow` whose destroy timed out, with what was reported then:
    /// later deploys report them instead of destroying them again.
    fn cleanup_pending(&self, _workflow: &str) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// No history: every task is new.
pub struct NoHistory;

impl History for NoHistory {
    fn deployed(&self, _workflow: &str) -> BTreeMap<String, Deployed> {
        BTreeMap::new()
    }
}
