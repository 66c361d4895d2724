//! Every state change of a run is an event with a timestamp; the store persists them and the
//! API streams them.

use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

use super::runner::Deployed;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    /// Some tasks failed under `on_failure = "continue"`; nothing halted.
    SucceededWithErrors,
    /// A halting failure (halt, rollback, or a broken barrier).
    Failed,
    Cancelled,
    /// The daemon stopped while the run was running.
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::SucceededWithErrors => "succeeded_with_errors",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Skipped,
    Cancelled,
    RolledBack,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunQueued,
    RunStarted,
    /// A queued run was replaced by a newer one of the same workflows before it started.
    RunSuperseded {
        by: String,
    },
    RunFinished {
        state: RunState,
    },
    TaskQueued,
    TaskStarted {
        attempt: u32,
    },
    TaskLog {
        level: String,
    },
    TaskOutput {
        key: String,
        /// `***` when the output is sensitive.
        value: String,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        sensitive: bool,
    },
    /// The task's deployment is now this one: the store records it as the task's current
    /// deployment (the only way history learns of it). Its content never leaves the process.
    TaskDeployed {
        #[serde(skip)]
        deployed: Box<Deployed>,
    },
    TaskRetrying {
        attempt: u32,
        delay_ms: u64,
    },
    TaskSucceeded,
    TaskFailed,
    TaskSkipped,
    TaskCancelled,
    /// Rolled back; `now` is what is deployed after it (none: nothing is), which the store
    /// records in place of what the failed run deployed.
    TaskRolledBack {
        #[serde(skip)]
        now: Option<Box<Deployed>>,
    },
    RollbackUnsupported,
    RollbackFailed,
    HookDecision {
        phase: String,
        hook: String,
        decision: String,
    },
    BarrierReached {
        barrier: String,
    },
    BarrierBroken {
        barrier: String,
    },
    /// A task removed from its workflow is being destroyed (beside the deploy).
    CleanupStarted,
    CleanupDestroyed,
    CleanupFailed,
    /// The destroy did not finish in time: what it left is unknown, so it is not run again
    /// by later deploys (each reports it) until `gantry forget` drops the task.
    CleanupPending,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
    pub run: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

mod unix_millis {
    use serde::Serializer;
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        s.serialize_u64(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// Where events go: the store, the API's subscribers, a test's buffer.
pub trait EventSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Keeps events in memory, in order.
#[derive(Default)]
pub struct MemoryEvents {
    events: Mutex<Vec<Event>>,
}

impl MemoryEvents {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl EventSink for MemoryEvents {
    fn emit(&self, event: Event) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}
