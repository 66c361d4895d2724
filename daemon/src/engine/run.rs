//! Executing a plan: start every task as soon as its dependencies allow, under the
//! per-workflow and per-run caps, longest remaining path first; apply failure policies,
//! barriers, retries, timeouts, hooks, rollback and cleanup; emit an event for every change.
//!
//! Choices worth knowing:
//! - A halting failure starts nothing new in that workflow; tasks already running finish (a
//!   half-applied release is worse than a finished one) and are then part of any rollback.
//! - Without a halt, failed tasks are recorded and the run ends `succeeded_with_errors`.
//! - A task skipped by a `pre_deploy` hook counts as done for what depends on it.
//! - A barrier breaks when a participant has a failed task before it, whatever that
//!   workflow's `on_failure`: the others were waiting for it to arrive whole. (Under
//!   `continue` the culprit itself goes on with what does not need the barrier.)
//! - Cleanup of tasks removed from a workflow runs beside the deploy, each under its own
//!   timeout; its failure is reported and does not fail the run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventKind, EventSink, RunState, TaskState};
use super::plan::{Edge, NodeId, NodeKind, Plan};
use super::redact::Redactor;
use super::runner::{
    Deployed, DeploymentRecord, History, HookCall, HookVerdict, Phase, RollbackResult, TaskCall,
    TaskFailure, TaskRunner,
};
use crate::config::template::{Reference, substitute};
use crate::config::workflow::{HookSpec, OnFailure, Retries, TaskSpec, Workflow};
use crate::secrets::SecretStore;

/// Settings of one run.
#[derive(Clone)]
pub struct RunOptions {
    pub run: String,
    /// Tasks running at once across all workflows of the run. Unlimited by default: each
    /// workflow's own `parallelism` is the cap, and a cap nobody configured must not lower it.
    pub max_parallel: usize,
    /// Bound on destroying one removed task.
    pub cleanup_timeout: Duration,
    /// Values for `${env.NAME}` (only names a workflow allows are read).
    pub env: BTreeMap<String, String>,
    /// Base for tasks' `source` directories.
    pub config_dir: Option<PathBuf>,
    /// Masks the run's secrets in events and task logs; sensitive outputs join it as tasks
    /// produce them.
    pub redactor: Arc<Redactor>,
    /// Where `${secrets.NAME}` values come from.
    pub secrets: Arc<SecretStore>,
}

impl RunOptions {
    pub fn new(run: impl Into<String>) -> Self {
        RunOptions {
            run: run.into(),
            max_parallel: usize::MAX,
            cleanup_timeout: Duration::from_secs(300),
            env: BTreeMap::new(),
            config_dir: None,
            redactor: Arc::new(Redactor::default()),
            secrets: Arc::new(SecretStore::default()),
        }
    }

    /// A run of the configuration in `config_dir`: its task sources, the process's
    /// environment for `${env.NAME}`, the configured secrets and cleanup timeout.
    pub fn for_config(
        run: impl Into<String>,
        config_dir: &std::path::Path,
        settings: &crate::config::daemon::DaemonSettings,
    ) -> Self {
        RunOptions {
            config_dir: Some(config_dir.to_path_buf()),
            env: std::env::vars().collect(),
            secrets: Arc::new(SecretStore::new(
                config_dir,
                settings.secrets_dir.as_deref(),
            )),
            cleanup_timeout: settings.cleanup_timeout,
            ..RunOptions::new(run)
        }
    }

    /// A secret's value, masked from now on wherever the run's redactor reaches.
    fn secret(&self, name: &str) -> Result<String, String> {
        self.secrets
            .reveal(name, &self.redactor)
            .map_err(|e| e.to_string())
    }
}

/// How one task ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded(DeploymentRecord),
    /// A `pre_deploy` hook skipped it; counts as done.
    SkippedByHook(String),
    Failed(String),
    /// Never started: a dependency failed, its workflow halted, or a barrier broke.
    NotRun(String),
    Cancelled,
}

impl Outcome {
    fn satisfies(&self) -> bool {
        matches!(self, Outcome::Succeeded(_) | Outcome::SkippedByHook(_))
    }

    pub fn state(&self) -> TaskState {
        match self {
            Outcome::Succeeded(_) => TaskState::Succeeded,
            Outcome::SkippedByHook(_) | Outcome::NotRun(_) => TaskState::Skipped,
            Outcome::Failed(_) => TaskState::Failed,
            Outcome::Cancelled => TaskState::Cancelled,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TaskReport {
    pub workflow: String,
    pub task: String,
    pub outcome: Outcome,
    pub attempts: u32,
    pub rolled_back: bool,
    pub started: Option<Instant>,
    pub finished: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub state: RunState,
    pub tasks: Vec<TaskReport>,
    /// Succeeded tasks as (workflow, task), in the order they completed.
    pub completed: Vec<(String, String)>,
    /// Tasks rolled back, in the order rollback reached them.
    pub rolled_back: Vec<(String, String)>,
    /// Removed tasks destroyed by cleanup, and the failures.
    pub cleaned_up: Vec<(String, String, Result<(), String>)>,
}

impl RunReport {
    pub fn task(&self, workflow: &str, task: &str) -> Option<&TaskReport> {
        self.tasks
            .iter()
            .find(|t| t.workflow == workflow && t.task == task)
    }
}

/// Emits events stamped with the run's id, secrets masked.
#[derive(Clone)]
struct Emitter {
    sink: Arc<dyn EventSink>,
    run: String,
    redactor: Arc<Redactor>,
}

impl Emitter {
    fn emit(
        &self,
        workflow: Option<&str>,
        task: Option<&str>,
        kind: EventKind,
        message: impl Into<String>,
    ) {
        let message: String = message.into();
        self.sink.emit(Event {
            at: SystemTime::now(),
            run: self.run.clone(),
            workflow: workflow.map(str::to_string),
            task: task.map(str::to_string),
            kind: self.redact(kind),
            message: self.redactor.apply(&message).into_owned(),
        });
    }

    /// Output values pass the redactor too: a task may repeat an earlier task's secret in
    /// an output of its own. (Plugin state is kept as it is; rollback needs it whole.)
    fn redact(&self, kind: EventKind) -> EventKind {
        let mask = |v: &mut String| {
            if let std::borrow::Cow::Owned(masked) = self.redactor.apply(v) {
                *v = masked;
            }
        };
        match kind {
            EventKind::TaskOutput {
                key,
                mut value,
                sensitive,
            } => {
                mask(&mut value);
                EventKind::TaskOutput {
                    key,
                    value,
                    sensitive,
                }
            }
            EventKind::TaskDeployed { mut deployed } => {
                deployed.record.outputs.values_mut().for_each(mask);
                mask_strings(&mut deployed.params, &mask);
                EventKind::TaskDeployed { deployed }
            }
            EventKind::TaskRolledBack { now: Some(mut now) } => {
                now.record.outputs.values_mut().for_each(mask);
                EventKind::TaskRolledBack { now: Some(now) }
            }
            other => other,
        }
    }
}

/// Whether resolved parameters carry secret values or the references to them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrets {
    /// For the plugin: it needs the values.
    Values,
    /// For history, which must never hold a secret.
    References,
}

enum Done {
    Task {
        node: NodeId,
        outcome: Outcome,
        attempts: u32,
        params: serde_json::Value,
    },
    Rollback {
        rolled_back: Vec<NodeId>,
    },
    Cleanup {
        workflow: String,
        task: String,
        result: Result<(), String>,
    },
}

/// A ready task's place in line: higher priority first, then the lower node id.
type Ready = (u64, Reverse<NodeId>);

/// One workflow's ready tasks and what its running tasks allow.
///
/// The workflow's cap is its `parallelism` lowered by the task-level `parallelism` of every
/// running task; a ready task with its own limit may start only while fewer tasks than that
/// limit run. Keeping ready tasks by limit and the running limits as a multiset makes both
/// questions cost a look at a few heads (one per distinct task-level limit in use) instead of
/// a scan of the workflow's tasks.
#[derive(Default)]
struct Lane {
    /// Ready tasks without a task-level limit.
    free: BinaryHeap<Ready>,
    /// Ready tasks with a task-level limit, by that limit; no empty heap is kept.
    limited: BTreeMap<usize, BinaryHeap<Ready>>,
    running: usize,
    /// Task-level limits of the running tasks: limit → how many of them run.
    running_limits: BTreeMap<usize, usize>,
}

impl Lane {
    fn is_empty(&self) -> bool {
        self.free.is_empty() && self.limited.is_empty()
    }

    fn push(&mut self, entry: Ready, limit: Option<usize>) {
        match limit {
            None => self.free.push(entry),
            Some(l) => self.limited.entry(l).or_default().push(entry),
        }
    }

    /// The best ready task that may start now, and the queue it is in.
    fn best(&self, parallelism: usize) -> Option<(Ready, Option<usize>)> {
        let cap = self
            .running_limits
            .keys()
            .next()
            .map_or(parallelism, |&l| l.min(parallelism));
        if self.running >= cap {
            return None;
        }
        let mut best = self.free.peek().map(|&e| (e, None));
        // A task limited to `l` may start only while fewer than `l` tasks run.
        for (&l, heap) in self.limited.range(self.running + 1..) {
            if let Some(&e) = heap.peek()
                && best.is_none_or(|(b, _)| e > b)
            {
                best = Some((e, Some(l)));
            }
        }
        best
    }

    fn pop(&mut self, limit: Option<usize>) -> Option<Ready> {
        match limit {
            None => self.free.pop(),
            Some(l) => {
                let heap = self.limited.get_mut(&l)?;
                let entry = heap.pop();
                if heap.is_empty() {
                    self.limited.remove(&l);
                }
                entry
            }
        }
    }

    fn drain(&mut self) -> Vec<Ready> {
        let mut all: Vec<Ready> = self.free.drain().collect();
        for (_, heap) in std::mem::take(&mut self.limited) {
            all.extend(heap);
        }
        all
    }

    fn started(&mut self, limit: Option<usize>) {
        self.running += 1;
        if let Some(l) = limit {
            *self.running_limits.entry(l).or_default() += 1;
        }
    }

    fn ended(&mut self, limit: Option<usize>) {
        self.running = self.running.saturating_sub(1);
        if let Some(l) = limit
            && let Some(count) = self.running_limits.get_mut(&l)
        {
            *count -= 1;
            if *count == 0 {
                self.running_limits.remove(&l);
            }
        }
    }
}

/// For each task of `wf`, whether a step with `halt_on_error` holds it (one pass over the
/// steps, instead of one per failed task).
fn in_halting_step(wf: &Workflow) -> Vec<bool> {
    let index: HashMap<&str, usize> = wf
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut halting = vec![false; wf.tasks.len()];
    for step in wf.steps.iter().filter(|s| s.halt_on_error) {
        for (id, _) in &step.tasks {
            if let Some(&t) = index.get(id.as_str()) {
                halting[t] = true;
            }
        }
    }
    halting
}

struct Sched<R: TaskRunner> {
    plan: Arc<Plan>,
    runner: Arc<R>,
    emit: Emitter,
    opts: RunOptions,
    cancel: CancellationToken,
    cancelled: bool,
    remaining: Vec<usize>,
    outcome: Vec<Option<Outcome>>,
    attempts: Vec<u32>,
    started: Vec<Option<Instant>>,
    finished: Vec<Option<Instant>>,
    priority: Vec<u64>,
    /// Ready tasks and running tasks' limits, per workflow.
    lanes: Vec<Lane>,
    running_total: usize,
    /// Each workflow's task ids, to resolve output references without a scan.
    task_index: Vec<HashMap<String, usize>>,
    /// Whether each task (`[w][t]`) belongs to a step with `halt_on_error`.
    in_halting_step: Vec<Vec<bool>>,
    halted: Vec<bool>,
    /// Tasks that failed, per workflow, for the barriers after them.
    failed: Vec<Vec<NodeId>>,
    rollback_wanted: Vec<bool>,
    rollback_started: Vec<bool>,
    completed: Vec<NodeId>,
    rolled_back: Vec<NodeId>,
    previous: Vec<BTreeMap<String, Deployed>>,
    cleaned_up: Vec<(String, String, Result<(), String>)>,
    jobs: JoinSet<Done>,
}

/// Runs `plan` to the end (or until `cancel`), and reports what happened.
pub async fn execute<R: TaskRunner>(
    plan: Plan,
    runner: Arc<R>,
    history: Arc<dyn History>,
    events: Arc<dyn EventSink>,
    opts: RunOptions,
    cancel: CancellationToken,
) -> RunReport {
    let plan = Arc::new(plan);
    let n = plan.nodes.len();
    let w = plan.workflows.len();
    let emit = Emitter {
        sink: events,
        run: opts.run.clone(),
        redactor: opts.redactor.clone(),
    };
    let mut s = Sched {
        priority: priorities(&plan, history.as_ref()),
        plan: plan.clone(),
        runner,
        emit,
        opts,
        cancel,
        cancelled: false,
        remaining: plan.nodes.iter().map(|node| node.deps.len()).collect(),
        outcome: vec![None; n],
        attempts: vec![0; n],
        started: vec![None; n],
        finished: vec![None; n],
        lanes: (0..w).map(|_| Lane::default()).collect(),
        running_total: 0,
        task_index: plan
            .workflows
            .iter()
            .map(|wf| {
                wf.tasks
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (t.id.clone(), i))
                    .collect()
            })
            .collect(),
        in_halting_step: plan.workflows.iter().map(in_halting_step).collect(),
        halted: vec![false; w],
        failed: vec![Vec::new(); w],
        rollback_wanted: vec![false; w],
        rollback_started: vec![false; w],
        completed: Vec::new(),
        rolled_back: Vec::new(),
        previous: Vec::with_capacity(w),
        cleaned_up: Vec::new(),
        jobs: JoinSet::new(),
    };
    s.emit.emit(None, None, EventKind::RunStarted, "");
    for (wi, wf) in plan.workflows.iter().enumerate() {
        let deployed = history.deployed(&wf.name);
        let pending = history.cleanup_pending(&wf.name);
        let removed: Vec<(String, Deployed)> = deployed
            .iter()
            .filter(|(task, _)| !s.task_index[wi].contains_key(*task))
            .map(|(task, d)| (task.clone(), d.clone()))
            .collect();
        for (task, d) in removed {
            match pending.get(&task) {
                Some(earlier) => s.emit.emit(
                    Some(&wf.name),
                    Some(&task),
                    EventKind::CleanupPending,
                    format!(
                        "still pending, not destroyed again ({earlier}); once what it left is dealt with, run `gantry forget {} {task}`",
                        wf.name
                    ),
                ),
                None => s.start_cleanup(wi, task, d),
            }
        }
        s.previous.push(deployed);
        for t in &wf.tasks {
            s.emit
                .emit(Some(&wf.name), Some(&t.id), EventKind::TaskQueued, "");
        }
    }
    let roots: Vec<NodeId> = (0..n).filter(|&i| s.remaining[i] == 0).collect();
    for r in roots {
        s.evaluate(r);
    }
    s.drive().await;
    s.report()
}

/// Longest remaining path (in estimated milliseconds) from each node to the end of the plan.
fn priorities(plan: &Plan, history: &dyn History) -> Vec<u64> {
    let n = plan.nodes.len();
    // One read of the history per workflow, not one per task.
    let typical: Vec<HashMap<String, f64>> = plan
        .workflows
        .iter()
        .map(|wf| history.typical_durations(&wf.name))
        .collect();
    let weight: Vec<u64> = plan
        .nodes
        .iter()
        .map(|node| match &node.kind {
            NodeKind::Task { workflow, task } => {
                let wf = &plan.workflows[*workflow];
                let secs = typical[*workflow]
                    .get(&wf.tasks[*task].id)
                    .copied()
                    .unwrap_or(1.0);
                (secs.max(0.0) * 1000.0) as u64 + 1
            }
            NodeKind::Barrier { .. } => 0,
        })
        .collect();
    // Reverse topological order via repeated relaxation over a Kahn ordering.
    let mut indegree: Vec<usize> = plan.nodes.iter().map(|node| node.deps.len()).collect();
    let mut order = Vec::with_capacity(n);
    let mut queue: Vec<NodeId> = (0..n).filter(|&i| indegree[i] == 0).collect();
    while let Some(i) = queue.pop() {
        order.push(i);
        for &d in &plan.nodes[i].dependents {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                queue.push(d);
            }
        }
    }
    let mut best = weight.clone();
    for &i in order.iter().rev() {
        let tail = plan.nodes[i]
            .dependents
            .iter()
            .map(|&d| best[d])
            .max()
            .unwrap_or(0);
        best[i] = weight[i] + tail;
    }
    best
}

impl<R: TaskRunner> Sched<R> {
    fn wf(&self, w: usize) -> &Workflow {
        &self.plan.workflows[w]
    }

    fn names(&self, node: NodeId) -> (String, String) {
        match &self.plan.nodes[node].kind {
            NodeKind::Task { workflow, task } => {
                let wf = &self.plan.workflows[*workflow];
                (wf.name.clone(), wf.tasks[*task].id.clone())
            }
            NodeKind::Barrier { name } => (String::new(), name.clone()),
        }
    }

    async fn drive(&mut self) {
        loop {
            if self.cancel.is_cancelled() && !self.cancelled {
                self.on_cancel();
            }
            if !self.cancelled {
                self.start_ready();
                self.start_rollbacks();
            }
            if self.jobs.is_empty() {
                break;
            }
            tokio::select! {
                done = self.jobs.join_next() => {
                    let Some(done) = done else { break };
                    self.on_joined(done);
                    // Observe every job that has already finished before starting anything new,
                    // so a failure that happened at the same moment halts what it should.
                    while let Some(done) = self.jobs.try_join_next() {
                        self.on_joined(done);
                    }
                }
                _ = self.cancel.cancelled(), if !self.cancelled => self.on_cancel(),
            }
        }
        for node in 0..self.plan.nodes.len() {
            if self.outcome[node].is_none() {
                let outcome = if self.cancelled {
                    Outcome::Cancelled
                } else {
                    Outcome::NotRun("never reached".into())
                };
                self.finish(node, outcome);
            }
        }
    }

    fn on_joined(&mut self, joined: Result<Done, tokio::task::JoinError>) {
        match joined {
            Ok(done) => self.on_done(done),
            Err(e) => tracing::error!(error = %e, "a task job panicked"),
        }
    }

    fn on_cancel(&mut self) {
        self.cancelled = true;
        let mut ready: Vec<Ready> = self.lanes.iter_mut().flat_map(Lane::drain).collect();
        ready.sort_unstable_by(|a, b| b.cmp(a));
        for (_, Reverse(node)) in ready {
            self.finish(node, Outcome::Cancelled);
        }
    }

    /// Starts ready tasks, best first, while the caps allow. Each start looks only at the
    /// head of each workflow's queues, so a workflow at its cap costs nothing per start.
    fn start_ready(&mut self) {
        for w in 0..self.lanes.len() {
            if self.halted[w] && !self.lanes[w].is_empty() {
                let dropped = self.lanes[w].drain();
                let reason = format!("workflow `{}` halted", self.wf(w).name);
                for (_, Reverse(node)) in dropped {
                    self.finish(node, Outcome::NotRun(reason.clone()));
                }
            }
        }
        while self.running_total < self.opts.max_parallel {
            let mut best: Option<(Ready, usize, Option<usize>)> = None;
            for (w, lane) in self.lanes.iter().enumerate() {
                if self.halted[w] {
                    continue;
                }
                if let Some((entry, limit)) = lane.best(self.plan.workflows[w].parallelism)
                    && best.as_ref().is_none_or(|(b, ..)| entry > *b)
                {
                    best = Some((entry, w, limit));
                }
            }
            let Some((_, w, limit)) = best else {
                break;
            };
            if let Some((_, Reverse(node))) = self.lanes[w].pop(limit) {
                self.start_task(node);
            }
        }
    }

    /// The task-level `parallelism` of a task node.
    fn limit(&self, node: NodeId) -> Option<usize> {
        match self.plan.nodes[node].kind {
            NodeKind::Task { workflow, task } => self.wf(workflow).tasks[task].parallelism,
            NodeKind::Barrier { .. } => None,
        }
    }

    fn start_task(&mut self, node: NodeId) {
        let NodeKind::Task { workflow, task } = self.plan.nodes[node].kind else {
            return;
        };
        let plan = self.plan.clone();
        let wf = &plan.workflows[workflow];
        let spec = wf.tasks[task].clone();
        let (wname, tname) = (wf.name.clone(), spec.id.clone());
        self.lanes[workflow].started(spec.parallelism);
        self.running_total += 1;
        self.started[node] = Some(Instant::now());
        let resolved = self
            .resolve(workflow, &spec, Secrets::Values)
            .and_then(|p| Ok((p, self.resolve(workflow, &spec, Secrets::References)?)));
        let (params, recorded) = match resolved {
            Ok(p) => p,
            Err(e) => {
                self.jobs.spawn(async move {
                    Done::Task {
                        node,
                        outcome: Outcome::Failed(e),
                        attempts: 0,
                        params: serde_json::Value::Null,
                    }
                });
                return;
            }
        };
        let call = TaskCall {
            run: self.opts.run.clone(),
            workflow: wname,
            task: tname.clone(),
            kind: spec.kind.clone(),
            params,
            attempt: 0,
            previous: self.previous[workflow]
                .get(&tname)
                .map(|d| d.record.clone()),
            source_dir: self.source_dir(&spec),
            cancel: self.cancel.child_token(),
            redactor: self.opts.redactor.clone(),
        };
        let job = TaskJob {
            runner: self.runner.clone(),
            emit: self.emit.clone(),
            retries: spec.retries.unwrap_or(wf.retries),
            timeout: spec.timeout.or(wf.timeout),
            hooks: merged_hooks(wf, &spec),
            call,
        };
        self.jobs.spawn(async move {
            let (outcome, attempts) = job.run().await;
            Done::Task {
                node,
                outcome,
                attempts,
                params: recorded,
            }
        });
    }

    /// The task's source directory; none when it uses the default and there is none, so it
    /// sees an empty one.
    fn source_dir(&self, spec: &TaskSpec) -> Option<PathBuf> {
        let dir = spec.source_dir(self.opts.config_dir.as_deref()?);
        (spec.source.is_some() || dir.is_dir()).then_some(dir)
    }

    /// Parameters with `${tasks...outputs...}` and `${env...}` replaced; with
    /// `Secrets::References`, sensitive outputs stay references, as history records them.
    fn resolve(
        &self,
        workflow: usize,
        spec: &TaskSpec,
        secrets: Secrets,
    ) -> Result<serde_json::Value, String> {
        let lookup = |r: &Reference| -> Result<String, String> {
            match r {
                Reference::Env(name) => self.opts.env.get(name).cloned().ok_or_else(|| {
                    format!("${{env.{name}}} is not set in the daemon's environment")
                }),
                Reference::Secret(name) if secrets == Secrets::References => {
                    Ok(format!("${{secrets.{name}}}"))
                }
                Reference::Secret(name) => self.opts.secret(name),
                Reference::Output { task, key } => {
                    let t = *self.task_index[workflow]
                        .get(task)
                        .ok_or_else(|| format!("unknown task `{task}`"))?;
                    let node = self.plan.task_nodes[workflow][t];
                    match &self.outcome[node] {
                        Some(Outcome::Succeeded(rec))
                            if secrets == Secrets::References && rec.sensitive.contains(key) =>
                        {
                            Ok(format!("${{tasks.{task}.outputs.{key}}}"))
                        }
                        Some(Outcome::Succeeded(rec)) => {
                            rec.outputs.get(key).cloned().ok_or_else(|| {
                                let have: Vec<&str> =
                                    rec.outputs.keys().map(String::as_str).collect();
                                format!(
                                    "task `{task}` produced no output `{key}` (it produced: {})",
                                    if have.is_empty() {
                                        "none".into()
                                    } else {
                                        have.join(", ")
                                    }
                                )
                            })
                        }
                        _ => Err(format!(
                            "outputs of `{task}` are not available: it did not succeed"
                        )),
                    }
                }
            }
        };
        let mut value = serde_json::Value::Object(spec.params.clone());
        substitute(&mut value, &lookup)?;
        Ok(value)
    }

    fn start_rollbacks(&mut self) {
        for w in 0..self.plan.workflows.len() {
            if !self.rollback_wanted[w] || self.rollback_started[w] || self.lanes[w].running > 0 {
                continue;
            }
            self.rollback_started[w] = true;
            let order: Vec<NodeId> = self
                .completed
                .iter()
                .rev()
                .copied()
                .filter(|&n| matches!(self.plan.nodes[n].kind, NodeKind::Task { workflow, .. } if workflow == w))
                .filter(|&n| matches!(self.outcome[n], Some(Outcome::Succeeded(_))))
                .collect();
            let calls: Vec<(NodeId, Option<Deployed>, TaskCall)> = order
                .into_iter()
                .filter_map(|n| {
                    let NodeKind::Task { task, .. } = self.plan.nodes[n].kind else {
                        return None;
                    };
                    let spec = &self.wf(w).tasks[task];
                    let previous = self.previous[w].get(&spec.id).cloned();
                    Some((
                        n,
                        previous.clone(),
                        TaskCall {
                            run: self.opts.run.clone(),
                            workflow: self.wf(w).name.clone(),
                            task: spec.id.clone(),
                            kind: spec.kind.clone(),
                            params: self
                                .resolve(w, spec, Secrets::Values)
                                .unwrap_or_else(|_| serde_json::Value::Object(spec.params.clone())),
                            attempt: 0,
                            previous: previous.map(|d| d.record),
                            source_dir: self.source_dir(spec),
                            cancel: CancellationToken::new(),
                            redactor: self.opts.redactor.clone(),
                        },
                    ))
                })
                .collect();
            let runner = self.runner.clone();
            let emit = self.emit.clone();
            self.jobs.spawn(async move {
                let mut rolled_back = Vec::new();
                for (node, previous, call) in calls {
                    let (wf, task) = (call.workflow.clone(), call.task.clone());
                    match runner.rollback(call).await {
                        Ok(RollbackResult::RolledBack(record)) => {
                            // What was deployed before this run is deployed again; with
                            // nothing before it, nothing is.
                            let now = previous.map(|p| Box::new(Deployed { record, ..p }));
                            emit.emit(
                                Some(&wf),
                                Some(&task),
                                EventKind::TaskRolledBack { now },
                                "",
                            );
                            rolled_back.push(node);
                        }
                        Ok(RollbackResult::Unsupported(reason)) => emit.emit(
                            Some(&wf),
                            Some(&task),
                            EventKind::RollbackUnsupported,
                            reason,
                        ),
                        Err(e) => {
                            emit.emit(Some(&wf), Some(&task), EventKind::RollbackFailed, e.message)
                        }
                    }
                }
                Done::Rollback { rolled_back }
            });
        }
    }

    fn start_cleanup(&mut self, w: usize, task: String, mut deployed: Deployed) {
        // History keeps secrets as references; the destroy gets their values.
        let mut params = std::mem::take(&mut deployed.params);
        let resolved = substitute(&mut params, &|r| match r {
            Reference::Secret(name) => self.opts.secret(name),
            Reference::Env(name) => Ok(format!("${{env.{name}}}")),
            Reference::Output { task, key } => Ok(format!("${{tasks.{task}.outputs.{key}}}")),
        });
        if let Err(e) = resolved {
            let workflow = self.wf(w).name.clone();
            self.emit.emit(
                Some(&workflow),
                Some(&task),
                EventKind::CleanupFailed,
                format!("kept: cannot destroy it: {e}"),
            );
            self.jobs.spawn(async move {
                Done::Cleanup {
                    workflow,
                    task,
                    result: Err(e),
                }
            });
            return;
        }
        deployed.params = params;
        let call = TaskCall {
            run: self.opts.run.clone(),
            workflow: self.wf(w).name.clone(),
            task,
            kind: deployed.kind,
            params: deployed.params,
            attempt: 0,
            previous: Some(deployed.record),
            // A removed task's own `source` is gone with its declaration: it gets the default.
            source_dir: self
                .opts
                .config_dir
                .as_ref()
                .map(|c| c.join(crate::config::workflow::DEFAULT_SOURCE))
                .filter(|d| d.is_dir()),
            cancel: self.cancel.child_token(),
            redactor: self.opts.redactor.clone(),
        };
        let job = TaskJob {
            runner: self.runner.clone(),
            emit: self.emit.clone(),
            retries: Retries::default(),
            timeout: None,
            hooks: self.wf(w).hooks.clone(),
            call,
        };
        let limit = self
            .wf(w)
            .cleanup_timeout
            .unwrap_or(self.opts.cleanup_timeout);
        self.jobs.spawn(job.cleanup(limit));
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Task {
                node,
                outcome,
                attempts,
                params,
            } => {
                if self.cancel.is_cancelled() && !self.cancelled {
                    self.on_cancel();
                }
                if let NodeKind::Task { workflow, .. } = self.plan.nodes[node].kind {
                    let limit = self.limit(node);
                    self.lanes[workflow].ended(limit);
                    self.running_total -= 1;
                }
                self.attempts[node] = attempts;
                let outcome = match outcome {
                    Outcome::Failed(_) if self.cancelled => Outcome::Cancelled,
                    other => other,
                };
                // The policy takes effect before dependents are released, so a barrier
                // this task was the last to reach breaks instead of opening.
                let mut halting = None;
                if let (Outcome::Failed(_), NodeKind::Task { workflow, task }) =
                    (&outcome, &self.plan.nodes[node].kind)
                {
                    let wf = self.wf(*workflow);
                    let halting_step = self.in_halting_step[*workflow][*task];
                    match wf.policy_given(&wf.tasks[*task], halting_step) {
                        OnFailure::Continue => {}
                        OnFailure::Halt => halting = Some(*workflow),
                        OnFailure::Rollback => {
                            self.rollback_wanted[*workflow] = true;
                            halting = Some(*workflow);
                        }
                    }
                }
                if let Some(w) = halting {
                    self.halted[w] = true;
                }
                let failed_in = match (&outcome, &self.plan.nodes[node].kind) {
                    (Outcome::Failed(_), NodeKind::Task { workflow, .. }) => {
                        self.failed[*workflow].push(node);
                        Some(*workflow)
                    }
                    _ => None,
                };
                if let (Outcome::Succeeded(record), NodeKind::Task { workflow, task }) =
                    (&outcome, &self.plan.nodes[node].kind)
                {
                    for key in &record.sensitive {
                        if let Some(value) = record.outputs.get(key) {
                            self.opts.redactor.add(value);
                        }
                    }
                    let wf = &self.plan.workflows[*workflow];
                    let spec = &wf.tasks[*task];
                    let deployed = Box::new(Deployed {
                        kind: spec.kind.clone(),
                        params,
                        record: record.clone(),
                    });
                    self.emit.emit(
                        Some(&wf.name),
                        Some(&spec.id),
                        EventKind::TaskDeployed { deployed },
                        "",
                    );
                }
                self.finish(node, outcome);
                if let Some(w) = halting {
                    self.break_open_barriers(w);
                } else if let Some(w) = failed_in {
                    self.break_barriers_after(node, w);
                }
            }
            Done::Rollback { rolled_back, .. } => self.rolled_back.extend(rolled_back),
            Done::Cleanup {
                workflow,
                task,
                result,
            } => self.cleaned_up.push((workflow, task, result)),
        }
    }

    /// Records a node's outcome and lets its dependents go on (or not).
    fn finish(&mut self, node: NodeId, outcome: Outcome) {
        let mut work = vec![(node, outcome)];
        while let Some((node, outcome)) = work.pop() {
            if self.outcome[node].is_some() {
                continue;
            }
            self.finished[node] = Some(Instant::now());
            let (wf, task) = self.names(node);
            if let NodeKind::Task { .. } = self.plan.nodes[node].kind {
                let (kind, message) = match &outcome {
                    Outcome::Succeeded(rec) => {
                        for k in rec.outputs.keys() {
                            self.emit.emit(
                                Some(&wf),
                                Some(&task),
                                EventKind::TaskOutput {
                                    key: k.clone(),
                                    value: rec.shown(k).unwrap_or_default().to_string(),
                                    sensitive: rec.sensitive.contains(k),
                                },
                                "",
                            );
                        }
                        self.completed.push(node);
                        (EventKind::TaskSucceeded, String::new())
                    }
                    Outcome::SkippedByHook(r) | Outcome::NotRun(r) => {
                        (EventKind::TaskSkipped, r.clone())
                    }
                    Outcome::Failed(e) => (EventKind::TaskFailed, e.clone()),
                    Outcome::Cancelled => (EventKind::TaskCancelled, String::new()),
                };
                self.emit.emit(Some(&wf), Some(&task), kind, message);
            }
            self.outcome[node] = Some(outcome);
            let plan = self.plan.clone();
            for &d in &plan.nodes[node].dependents {
                self.remaining[d] -= 1;
                if self.remaining[d] == 0 && self.outcome[d].is_none() {
                    if let Some(o) = self.blocked(d) {
                        work.push((d, o));
                    } else {
                        self.admit(d);
                    }
                }
            }
        }
    }

    /// A node whose dependencies have all finished: ready, or the reason it cannot run.
    fn blocked(&self, node: NodeId) -> Option<Outcome> {
        if self.cancelled {
            return Some(Outcome::Cancelled);
        }
        match &self.plan.nodes[node].kind {
            NodeKind::Task { workflow, .. } => {
                if self.halted[*workflow] {
                    return Some(Outcome::NotRun(format!(
                        "workflow `{}` halted",
                        self.wf(*workflow).name
                    )));
                }
                for &(dep, edge) in &self.plan.nodes[node].deps {
                    let ok = self.outcome[dep].as_ref().is_some_and(Outcome::satisfies);
                    if edge == Edge::Requires && !ok {
                        return Some(Outcome::NotRun(match &self.plan.nodes[dep].kind {
                            NodeKind::Barrier { name } => format!("barrier `{name}` broke"),
                            NodeKind::Task { .. } => {
                                format!("needs `{}`, which did not succeed", self.names(dep).1)
                            }
                        }));
                    }
                }
                None
            }
            NodeKind::Barrier { .. } => None,
        }
    }

    fn evaluate(&mut self, node: NodeId) {
        match self.blocked(node) {
            Some(o) => self.finish(node, o),
            None => self.admit(node),
        }
    }

    fn admit(&mut self, node: NodeId) {
        match &self.plan.nodes[node].kind {
            NodeKind::Task { workflow, .. } => {
                let limit = self.limit(node);
                self.lanes[*workflow].push((self.priority[node], Reverse(node)), limit);
            }
            NodeKind::Barrier { name } => {
                let name = name.clone();
                let participants = self.plan.barrier_participants(node);
                let culprit = participants
                    .iter()
                    .copied()
                    .find(|&p| self.halted[p])
                    .or_else(|| self.failed_before(node));
                if let Some(culprit) = culprit {
                    self.break_barrier(node, culprit);
                } else {
                    self.emit
                        .emit(None, None, EventKind::BarrierReached { barrier: name }, "");
                    self.finish(node, Outcome::Succeeded(DeploymentRecord::default()));
                }
            }
        }
    }

    fn halt(&mut self, w: usize) {
        if self.halted[w] {
            return;
        }
        self.halted[w] = true;
        self.break_open_barriers(w);
    }

    fn break_open_barriers(&mut self, w: usize) {
        let open_barriers: Vec<NodeId> = (0..self.plan.nodes.len())
            .filter(|&n| matches!(self.plan.nodes[n].kind, NodeKind::Barrier { .. }))
            .filter(|&n| {
                self.outcome[n].is_none() && self.plan.barrier_participants(n).contains(&w)
            })
            .collect();
        for b in open_barriers {
            self.break_barrier(b, w);
        }
    }

    /// Breaks the open barriers that failed task `node` (of workflow `w`) comes before.
    fn break_barriers_after(&mut self, node: NodeId, w: usize) {
        let open: Vec<NodeId> = (0..self.plan.nodes.len())
            .filter(|&n| matches!(self.plan.nodes[n].kind, NodeKind::Barrier { .. }))
            .filter(|&n| self.outcome[n].is_none() && self.ancestors(n).contains(&node))
            .collect();
        for b in open {
            self.break_barrier(b, w);
        }
    }

    /// The workflow of a failed task that comes before `barrier`, if there is one.
    fn failed_before(&self, barrier: NodeId) -> Option<usize> {
        if self.failed.iter().all(Vec::is_empty) {
            return None;
        }
        let before = self.ancestors(barrier);
        self.failed
            .iter()
            .position(|nodes| nodes.iter().any(|n| before.contains(n)))
    }

    /// Every node `node` waits for, directly or not.
    fn ancestors(&self, node: NodeId) -> HashSet<NodeId> {
        let mut seen = HashSet::new();
        let mut todo: Vec<NodeId> = self.plan.nodes[node].deps.iter().map(|d| d.0).collect();
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(self.plan.nodes[n].deps.iter().map(|d| d.0));
            }
        }
        seen
    }

    /// Workflow `culprit` failed before arriving: every other participant fails at the
    /// barrier and applies its own failure policy.
    fn break_barrier(&mut self, barrier: NodeId, culprit: usize) {
        if self.outcome[barrier].is_some() {
            return;
        }
        let NodeKind::Barrier { name } = &self.plan.nodes[barrier].kind else {
            return;
        };
        let name = name.clone();
        let culprit_name = self.wf(culprit).name.clone();
        self.finish(
            barrier,
            Outcome::Failed(format!("workflow `{culprit_name}` failed before arriving")),
        );
        for p in self.plan.barrier_participants(barrier) {
            if p == culprit || self.halted[p] {
                continue;
            }
            let wf_name = self.wf(p).name.clone();
            self.emit.emit(
                Some(&wf_name),
                None,
                EventKind::BarrierBroken { barrier: name.clone() },
                format!("workflow `{wf_name}` failed at barrier `{name}`: workflow `{culprit_name}` failed before arriving"),
            );
            if self.wf(p).on_failure == OnFailure::Rollback {
                self.rollback_wanted[p] = true;
            }
            self.halt(p);
        }
    }

    fn report(&self) -> RunReport {
        let rolled_back: HashSet<NodeId> = self.rolled_back.iter().copied().collect();
        let mut tasks = Vec::new();
        for (node, n) in self.plan.nodes.iter().enumerate() {
            if let NodeKind::Task { .. } = n.kind {
                let (workflow, task) = self.names(node);
                tasks.push(TaskReport {
                    workflow,
                    task,
                    outcome: self.outcome[node].clone().unwrap_or(Outcome::Cancelled),
                    attempts: self.attempts[node],
                    rolled_back: rolled_back.contains(&node),
                    started: self.started[node],
                    finished: self.finished[node],
                });
            }
        }
        let any_failed = tasks
            .iter()
            .any(|t| matches!(t.outcome, Outcome::Failed(_)));
        let state = if self.cancelled {
            RunState::Cancelled
        } else if self.halted.iter().any(|h| *h) {
            RunState::Failed
        } else if any_failed {
            RunState::SucceededWithErrors
        } else {
            RunState::Succeeded
        };
        self.emit
            .emit(None, None, EventKind::RunFinished { state }, "");
        RunReport {
            state,
            tasks,
            completed: self
                .completed
                .iter()
                .filter(|&&n| matches!(self.plan.nodes[n].kind, NodeKind::Task { .. }))
                .map(|&n| self.names(n))
                .collect(),
            rolled_back: self.rolled_back.iter().map(|&n| self.names(n)).collect(),
            cleaned_up: self.cleaned_up.clone(),
        }
    }
}

fn mask_strings(value: &mut serde_json::Value, mask: &dyn Fn(&mut String)) {
    match value {
        serde_json::Value::String(s) => mask(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|i| mask_strings(i, mask)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| mask_strings(v, mask)),
        _ => {}
    }
}

/// Workflow-level hooks run before the task's own, phase by phase.
fn merged_hooks(wf: &Workflow, task: &TaskSpec) -> crate::config::workflow::Hooks {
    let join = |a: &[HookSpec], b: &[HookSpec]| a.iter().chain(b).cloned().collect();
    crate::config::workflow::Hooks {
        pre_deploy: join(&wf.hooks.pre_deploy, &task.hooks.pre_deploy),
        post_deploy: join(&wf.hooks.post_deploy, &task.hooks.post_deploy),
        on_failure: join(&wf.hooks.on_failure, &task.hooks.on_failure),
        pre_destroy: join(&wf.hooks.pre_destroy, &task.hooks.pre_destroy),
    }
}

/// One task from hooks to final outcome, with retries and the timeout.
struct TaskJob<R: TaskRunner> {
    runner: Arc<R>,
    emit: Emitter,
    retries: Retries,
    timeout: Option<Duration>,
    hooks: crate::config::workflow::Hooks,
    call: TaskCall,
}

impl<R: TaskRunner> TaskJob<R> {
    async fn run(self) -> (Outcome, u32) {
        let (wf, task) = (self.call.workflow.clone(), self.call.task.clone());
        for hook in &self.hooks.pre_deploy {
            match self
                .hook(Phase::PreDeploy, hook, BTreeMap::new(), None)
                .await
            {
                HookVerdict::Proceed => {}
                HookVerdict::Skip(reason) => {
                    return (
                        Outcome::SkippedByHook(format!(
                            "pre_deploy hook `{}`: {reason}",
                            hook.kind
                        )),
                        0,
                    );
                }
                HookVerdict::Fail(reason) => {
                    return self
                        .failed(
                            format!("pre_deploy hook `{}` failed the task: {reason}", hook.kind),
                            0,
                        )
                        .await;
                }
            }
        }
        let max = self.retries.attempts + 1;
        let mut attempt = 0;
        let record = loop {
            attempt += 1;
            self.emit.emit(
                Some(&wf),
                Some(&task),
                EventKind::TaskStarted { attempt },
                "",
            );
            let call = TaskCall {
                attempt,
                ..self.call.clone()
            };
            let result = match self.timeout {
                Some(limit) => tokio::time::timeout(limit, self.runner.apply(call))
                    .await
                    .unwrap_or_else(|_| {
                        Err(TaskFailure::new(format!(
                            "timed out after {}",
                            humantime::format_duration(limit)
                        )))
                    }),
                None => self.runner.apply(call).await,
            };
            match result {
                Ok(record) => {
                    // Masked from here on, the task's own post_deploy hooks included.
                    for key in &record.sensitive {
                        if let Some(value) = record.outputs.get(key) {
                            self.call.redactor.add(value);
                        }
                    }
                    break record;
                }
                Err(_) if self.call.cancel.is_cancelled() => return (Outcome::Cancelled, attempt),
                Err(e) if !e.retryable || attempt >= max => {
                    return self.failed(e.message, attempt).await;
                }
                Err(e) => {
                    let delay = backoff(&self.retries, attempt);
                    self.emit.emit(
                        Some(&wf),
                        Some(&task),
                        EventKind::TaskRetrying {
                            attempt: attempt + 1,
                            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        },
                        e.message,
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.call.cancel.cancelled() => return (Outcome::Cancelled, attempt),
                    }
                }
            }
        };
        for hook in &self.hooks.post_deploy {
            if let HookVerdict::Fail(reason) = self
                .hook(Phase::PostDeploy, hook, record.outputs.clone(), None)
                .await
            {
                return self
                    .failed(
                        format!("post_deploy hook `{}` failed the task: {reason}", hook.kind),
                        attempt,
                    )
                    .await;
            }
        }
        (Outcome::Succeeded(record), attempt)
    }

    /// Destroys a task removed from its workflow, after the workflow's `pre_destroy` hooks.
    async fn cleanup(self, limit: Duration) -> Done {
        let (workflow, task) = (self.call.workflow.clone(), self.call.task.clone());
        self.emit.emit(
            Some(&workflow),
            Some(&task),
            EventKind::CleanupStarted,
            "removed from the workflow; destroying it",
        );
        let mut result = Ok(());
        let mut timed_out = false;
        for hook in &self.hooks.pre_destroy {
            match self
                .hook(Phase::PreDestroy, hook, BTreeMap::new(), None)
                .await
            {
                HookVerdict::Proceed => {}
                HookVerdict::Skip(r) | HookVerdict::Fail(r) => {
                    result = Err(format!(
                        "kept: pre_destroy hook `{}` declined: {r}",
                        hook.kind
                    ));
                    break;
                }
            }
        }
        if result.is_ok() {
            result = match tokio::time::timeout(limit, self.runner.destroy(self.call.clone())).await
            {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.message),
                Err(_) => {
                    timed_out = true;
                    Err(format!(
                        "the destroy did not finish within {} (cleanup_timeout); it may have left things behind, so it is pending: check, then `gantry forget {workflow} {task}`",
                        humantime::format_duration(limit)
                    ))
                }
            };
        }
        match &result {
            Err(e) if timed_out => self.emit.emit(
                Some(&workflow),
                Some(&task),
                EventKind::CleanupPending,
                e.clone(),
            ),
            Ok(()) => self.emit.emit(
                Some(&workflow),
                Some(&task),
                EventKind::CleanupDestroyed,
                "removed from the workflow; destroyed",
            ),
            Err(e) => self.emit.emit(
                Some(&workflow),
                Some(&task),
                EventKind::CleanupFailed,
                e.clone(),
            ),
        }
        Done::Cleanup {
            workflow,
            task,
            result,
        }
    }

    async fn failed(&self, error: String, attempts: u32) -> (Outcome, u32) {
        for hook in &self.hooks.on_failure {
            self.hook(Phase::OnFailure, hook, BTreeMap::new(), Some(error.clone()))
                .await;
        }
        (Outcome::Failed(error), attempts)
    }

    async fn hook(
        &self,
        phase: Phase,
        hook: &HookSpec,
        outputs: BTreeMap<String, String>,
        error: Option<String>,
    ) -> HookVerdict {
        let call = HookCall {
            phase,
            hook: hook.clone(),
            task: self.call.clone(),
            outputs,
            error,
        };
        let verdict = self
            .runner
            .hook(call)
            .await
            .unwrap_or_else(|e| HookVerdict::Fail(e.message));
        let (decision, reason) = match &verdict {
            HookVerdict::Proceed => ("proceed", String::new()),
            HookVerdict::Skip(r) => ("skip", r.clone()),
            HookVerdict::Fail(r) => ("fail", r.clone()),
        };
        self.emit.emit(
            Some(&self.call.workflow),
            Some(&self.call.task),
            EventKind::HookDecision {
                phase: phase.as_str().into(),
                hook: hook.kind.clone(),
                decision: decision.into(),
            },
            reason,
        );
        verdict
    }
}

/// Exponential backoff with jitter: base · 2^(attempt-1), capped, scaled by 50–100 %.
fn backoff(r: &Retries, attempt: u32) -> Duration {
    let exp = r
        .backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(r.max_backoff);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Retries {
            attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(4),
        };
        for _ in 0..50 {
            let b1 = backoff(&r, 1);
            assert!(b1 >= Duration::from_millis(500) && b1 <= Duration::from_secs(1));
            let b3 = backoff(&r, 3);
            assert!(b3 >= Duration::from_secs(2) && b3 <= Duration::from_secs(4));
            assert!(backoff(&r, 10) <= Duration::from_secs(4));
        }
    }
}
