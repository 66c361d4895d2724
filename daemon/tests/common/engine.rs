//! A scripted task runner and a timeline of what it was asked to do, for engine tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry::config::workflow::{self, Workflow};
use gantry::engine::events::MemoryEvents;
use gantry::engine::plan::{self, Plan};
use gantry::engine::run::{RunOptions, RunReport, execute};
use gantry::engine::runner::{
    Deployed, DeploymentRecord, History, HookCall, HookVerdict, RollbackResult, TaskCall,
    TaskFailure, TaskRunner,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
pub enum Mark {
    Start,
    End { ok: bool },
    RolledBack,
    Destroyed,
}

/// What one task does when applied.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub millis: u64,
    /// Fail this many attempts before succeeding (u32::MAX: always).
    pub failures: u32,
    pub outputs: BTreeMap<String, String>,
    pub no_rollback: bool,
}

#[derive(Default)]
pub struct FakeRunner {
    pub scripts: Mutex<BTreeMap<String, Script>>,
    pub timeline: Mutex<Vec<(tokio::time::Instant, String, Mark)>>,
    pub attempts: Mutex<BTreeMap<String, u32>>,
    pub params_seen: Mutex<BTreeMap<String, serde_json::Value>>,
    pub destroy_millis: u64,
}

impl FakeRunner {
    pub fn script(&self, key: &str, s: Script) {
        self.scripts.lock().unwrap().insert(key.to_string(), s);
    }

    fn mark(&self, key: &str, m: Mark) {
        self.timeline
            .lock()
            .unwrap()
            .push((tokio::time::Instant::now(), key.to_string(), m));
    }

    pub fn timeline(&self) -> Vec<(tokio::time::Instant, String, Mark)> {
        self.timeline.lock().unwrap().clone()
    }

    pub fn index_of(&self, key: &str, m: &Mark) -> Option<usize> {
        self.timeline()
            .iter()
            .position(|(_, k, mark)| k == key && mark == m)
    }
}

pub fn key(call: &TaskCall) -> String {
    format!("{}/{}", call.workflow, call.task)
}

impl TaskRunner for FakeRunner {
    async fn apply(&self, call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        let k = key(&call);
        let script = self
            .scripts
            .lock()
            .unwrap()
            .get(&k)
            .cloned()
            .unwrap_or(Script {
                millis: 10,
                ..Script::default()
            });
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let e = a.entry(k.clone()).or_default();
            *e += 1;
            *e
        };
        self.params_seen
            .lock()
            .unwrap()
            .insert(k.clone(), call.params.clone());
        self.mark(&k, Mark::Start);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(script.millis)) => {}
            _ = call.cancel.cancelled() => {
                self.mark(&k, Mark::End { ok: false });
                return Err(TaskFailure::new("cancelled"));
            }
        }
        let ok = attempt > script.failures;
        self.mark(&k, Mark::End { ok });
        if ok {
            Ok(DeploymentRecord {
                outputs: script.outputs.clone(),
                ..DeploymentRecord::default()
            })
        } else {
            Err(TaskFailure::new(format!("{k} failed (attempt {attempt})")))
        }
    }

    async fn rollback(&self, call: TaskCall) -> Result<RollbackResult, TaskFailure> {
        let k = key(&call);
        let script = self
            .scripts
            .lock()
            .unwrap()
            .get(&k)
            .cloned()
            .unwrap_or_default();
        if script.no_rollback {
            return Ok(RollbackResult::Unsupported("cannot roll back".into()));
        }
        self.mark(&k, Mark::RolledBack);
        Ok(RollbackResult::RolledBack(DeploymentRecord::default()))
    }

    async fn destroy(&self, call: TaskCall) -> Result<(), TaskFailure> {
        tokio::time::sleep(Duration::from_millis(self.destroy_millis)).await;
        self.mark(&key(&call), Mark::Destroyed);
        Ok(())
    }

    async fn hook(&self, call: HookCall) -> Result<HookVerdict, TaskFailure> {
        let decision = call
            .hook
            .params
            .get("decision")
            .and_then(|v| v.as_str())
            .unwrap_or("proceed");
        Ok(match decision {
            "skip" => HookVerdict::Skip("skipped by test".into()),
            "fail" => HookVerdict::Fail("failed by test".into()),
            _ => HookVerdict::Proceed,
        })
    }
}

/// History with previously deployed tasks.
#[derive(Default, Clone)]
pub struct FakeHistory {
    pub deployed: BTreeMap<String, BTreeMap<String, Deployed>>,
}

impl History for FakeHistory {
    fn deployed(&self, workflow: &str) -> BTreeMap<String, Deployed> {
        self.deployed.get(workflow).cloned().unwrap_or_default()
    }
}

pub fn workflow(name: &str, toml: &str) -> Workflow {
    workflow::parse(Path::new(&format!("workflows/{name}.toml")), toml)
        .unwrap_or_else(|e| panic!("workflow {name}: {e:?}"))
}

pub fn compile(workflows: Vec<Workflow>) -> Plan {
    plan::compile(workflows).unwrap_or_else(|e| panic!("plan: {e:?}"))
}

pub async fn run(
    plan: Plan,
    runner: Arc<FakeRunner>,
    history: &FakeHistory,
    opts: RunOptions,
) -> (RunReport, Arc<MemoryEvents>) {
    let events = Arc::new(MemoryEvents::default());
    let report = execute(
        plan,
        runner,
        Arc::new(history.clone()),
        events.clone(),
        opts,
        CancellationToken::new(),
    )
    .await;
    (report, events)
}
