//! Scheduler invariants over random workflows, durations, failures and caps, checked on the
//! timeline a scripted runner records (paused clock, so each case takes microseconds):
//! - no task starts before what it depends on has finished (or succeeded, for `needs`);
//! - the per-workflow and per-run caps are never exceeded;
//! - nothing starts in a workflow after its halting failure;
//! - every task that started is awaited before the run ends (`wait_for_finish = false` too);
//! - rollback runs in reverse completion order;
//! - a barrier opens only when every participant arrived, and never after one halted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gantry::config::workflow::OnFailure;
use gantry::engine::events::RunState;
use gantry::engine::plan::{Edge, NodeId, NodeKind, Plan};
use gantry::engine::run::{Outcome, RunOptions};
use proptest::prelude::*;

use common::engine::*;

#[derive(Debug, Clone)]
struct TaskGen {
    millis: u64,
    fails: bool,
    needs: Vec<usize>,
}

#[derive(Debug, Clone)]
struct WorkflowGen {
    tasks: Vec<TaskGen>,
    /// Step index of each task (non-decreasing).
    step_of: Vec<usize>,
    steps: Vec<(bool, bool)>,
    parallelism: usize,
    policy: OnFailure,
    barrier_step: Option<usize>,
}

fn workflow_gen() -> impl Strategy<Value = WorkflowGen> {
    (1usize..10, 1usize..4, 1usize..5, 0u8..3, any::<bool>()).prop_flat_map(
        |(n, nsteps, parallelism, policy, barrier)| {
            let tasks = prop::collection::vec(
                (
                    1u64..60,
                    prop::bool::weighted(0.15),
                    prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                ),
                n,
            );
            let cuts = prop::collection::vec(0usize..nsteps, n);
            let steps = prop::collection::vec((any::<bool>(), prop::bool::weighted(0.3)), nsteps);
            let barrier_step = if barrier {
                prop::option::of(0..nsteps).boxed()
            } else {
                Just(None).boxed()
            };
            (tasks, cuts, steps, barrier_step).prop_map(
                move |(tasks, mut cuts, steps, barrier_step)| {
                    cuts.sort();
                    let tasks = tasks
                        .into_iter()
                        .enumerate()
                        .map(|(i, (millis, fails, needs))| TaskGen {
                            millis,
                            fails,
                            needs: if i == 0 {
                                Vec::new()
                            } else {
                                needs.iter().map(|ix| ix.index(i)).collect()
                            },
                        })
                        .collect();
                    let policy = [OnFailure::Continue, OnFailure::Halt, OnFailure::Rollback]
                        [policy as usize];
                    WorkflowGen {
                        tasks,
                        step_of: cuts,
                        steps,
                        parallelism,
                        policy,
                        barrier_step,
                    }
                },
            )
        },
    )
}

impl WorkflowGen {
    fn toml(&self) -> String {
        let policy = match self.policy {
            OnFailure::Continue => "continue",
            OnFailure::Halt => "halt",
            OnFailure::Rollback => "rollback",
        };
        let mut t = format!(
            "parallelism = {}\non_failure = \"{policy}\"\n",
            self.parallelism
        );
        for (i, task) in self.tasks.iter().enumerate() {
            t.push_str(&format!("[jobs.t{i}]\nkind = \"exec\"\n"));
            let needs: BTreeSet<usize> = task
                .needs
                .iter()
                .copied()
                .filter(|&j| self.step_of[j] <= self.step_of[i])
                .collect();
            if !needs.is_empty() {
                let list: Vec<String> = needs.iter().map(|j| format!("\"jobs.t{j}\"")).collect();
                t.push_str(&format!("needs = [{}]\n", list.join(", ")));
            }
        }
        for (s, (wait, halt)) in self.steps.iter().enumerate() {
            let members: Vec<String> = (0..self.tasks.len())
                .filter(|&i| self.step_of[i] == s)
                .map(|i| format!("\"jobs.t{i}\""))
                .collect();
            if members.is_empty() {
                continue;
            }
            t.push_str(&format!("[[steps]]\nname = \"s{s}\"\ntasks = [{}]\nwait_for_finish = {wait}\nhalt_on_error = {halt}\n", members.join(", ")));
            if self.barrier_step == Some(s) {
                t.push_str("barrier = \"sync\"\n");
            }
        }
        t
    }
}

fn node_key(plan: &Plan, n: NodeId) -> Option<String> {
    match &plan.nodes[n].kind {
        NodeKind::Task { workflow, task } => Some(format!(
            "{}/{}",
            plan.workflows[*workflow].name, plan.workflows[*workflow].tasks[*task].id
        )),
        NodeKind::Barrier { .. } => None,
    }
}

/// Tasks that must have ended before `n` may start: its task deps, and through barriers theirs.
fn must_end_before(plan: &Plan, n: NodeId, out: &mut Vec<(String, Edge)>) {
    for &(d, edge) in &plan.nodes[n].deps {
        match node_key(plan, d) {
            Some(k) => out.push((k, edge)),
            None => must_end_before(plan, d, out),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, .. ProptestConfig::default() })]

    #[test]
    fn scheduler_invariants(gens in prop::collection::vec(workflow_gen(), 1..4), max_parallel in 1usize..9) {
        let workflows: Vec<_> = gens.iter().enumerate().map(|(i, g)| workflow(&format!("w{i}"), &g.toml())).collect();
        let plan = compile(workflows);
        let runner = Arc::new(FakeRunner::default());
        for (w, g) in gens.iter().enumerate() {
            for (i, t) in g.tasks.iter().enumerate() {
                runner.script(&format!("w{w}/jobs.t{i}"), Script { millis: t.millis, failures: if t.fails { u32::MAX } else { 0 }, ..Script::default() });
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let mut opts = RunOptions::new("prop");
        opts.max_parallel = max_parallel;
        let (report, _) = rt.block_on(run(plan.clone(), runner.clone(), &FakeHistory::default(), opts));
        let timeline = runner.timeline();
        let pos = |key: &str, m: &Mark| timeline.iter().position(|(_, k, mark)| k == key && mark == m);
        let outcome = |key: &str| report.tasks.iter().find(|t| format!("{}/{}", t.workflow, t.task) == key).map(|t| t.outcome.clone());

        // Dependencies.
        for n in 0..plan.nodes.len() {
            let Some(key) = node_key(&plan, n) else { continue };
            let Some(start) = pos(&key, &Mark::Start) else { continue };
            let mut deps = Vec::new();
            must_end_before(&plan, n, &mut deps);
            for (dep, edge) in deps {
                let ended = timeline.iter().position(|(_, k, m)| *k == dep && matches!(m, Mark::End { .. }));
                let skipped = matches!(outcome(&dep), Some(Outcome::NotRun(_)));
                prop_assert!(ended.is_some_and(|e| e < start) || (skipped && edge == Edge::After),
                    "{key} started before {dep} finished");
                if edge == Edge::Requires {
                    prop_assert!(matches!(outcome(&dep), Some(Outcome::Succeeded(_))), "{key} ran though {dep} did not succeed");
                }
            }
        }

        // Caps.
        let mut running: BTreeMap<String, usize> = BTreeMap::new();
        let mut total = 0;
        for (_, key, m) in &timeline {
            let wf = key.split('/').next().unwrap().to_string();
            match m {
                Mark::Start => {
                    *running.entry(wf.clone()).or_default() += 1;
                    total += 1;
                }
                Mark::End { .. } => {
                    *running.entry(wf.clone()).or_default() -= 1;
                    total -= 1;
                }
                _ => {}
            }
            let w: usize = wf[1..].parse().unwrap();
            prop_assert!(running[&wf] <= gens[w].parallelism, "workflow cap exceeded in {wf}");
            prop_assert!(total <= max_parallel, "run cap exceeded");
        }

        // Halting failures, and every started task awaited.
        for (w, wf) in plan.workflows.iter().enumerate() {
            let halting_end = wf.tasks.iter().filter_map(|t| {
                let key = format!("{}/{}", wf.name, t.id);
                let failed = matches!(outcome(&key), Some(Outcome::Failed(_)));
                (failed && wf.failure_policy(t) != OnFailure::Continue).then(|| pos(&key, &Mark::End { ok: false })).flatten()
            }).min();
            for t in &wf.tasks {
                let key = format!("{}/{}", wf.name, t.id);
                if let Some(start) = pos(&key, &Mark::Start) {
                    prop_assert!(pos(&key, &Mark::End { ok: true }).or(pos(&key, &Mark::End { ok: false })).is_some_and(|e| e > start), "{key} was not awaited");
                    if let Some(h) = halting_end {
                        prop_assert!(start < h, "{key} started after workflow w{w} halted");
                    }
                }
            }
            if halting_end.is_some() {
                prop_assert_eq!(report.state, RunState::Failed);
            }
        }

        // Rollback order is the reverse of completion order, per workflow.
        for wf in &plan.workflows {
            let rolled: Vec<&(String, String)> = report.rolled_back.iter().filter(|(w, _)| *w == wf.name).collect();
            if rolled.is_empty() {
                continue;
            }
            let mut completed: Vec<&(String, String)> = report.completed.iter().filter(|(w, _)| *w == wf.name).collect();
            completed.reverse();
            prop_assert_eq!(rolled, completed, "rollback order in {}", wf.name);
        }

        // Barrier: it opens when the last arrival ends; if a participant halted before
        // that, nothing after the barrier starts.
        for n in 0..plan.nodes.len() {
            if !matches!(plan.nodes[n].kind, NodeKind::Barrier { .. }) {
                continue;
            }
            let mut arrivals = Vec::new();
            must_end_before(&plan, n, &mut arrivals);
            let opened = arrivals
                .iter()
                .filter_map(|(k, _)| timeline.iter().position(|(_, key, m)| key == k && matches!(m, Mark::End { .. })))
                .max();
            let halted_before_open = plan.barrier_participants(n).into_iter().any(|p| {
                let wf = &plan.workflows[p];
                wf.tasks.iter().any(|t| {
                    let k = format!("{}/{}", wf.name, t.id);
                    matches!(outcome(&k), Some(Outcome::Failed(_)))
                        && wf.failure_policy(t) != OnFailure::Continue
                        && pos(&k, &Mark::End { ok: false }).zip(opened).is_some_and(|(e, o)| e <= o)
                })
            });
            if halted_before_open {
                for &after in &plan.nodes[n].dependents {
                    if let Some(key) = node_key(&plan, after) {
                        prop_assert!(pos(&key, &Mark::Start).is_none(), "{key} passed a barrier a participant failed before");
                    }
                }
            }
        }
    }
}

/// Replays a timeline and returns, for each workflow, the most tasks that ran at once; fails
/// if a task ran while more tasks of its workflow ran than its own `parallelism` allows.
fn check_task_limits(
    plan: &Plan,
    timeline: &[(tokio::time::Instant, String, Mark)],
) -> Result<BTreeMap<String, usize>, TestCaseError> {
    let limit_of: BTreeMap<String, Option<usize>> = plan
        .workflows
        .iter()
        .flat_map(|wf| {
            wf.tasks
                .iter()
                .map(move |t| (format!("{}/{}", wf.name, t.id), t.parallelism))
        })
        .collect();
    let mut running: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut peak: BTreeMap<String, usize> = BTreeMap::new();
    for (_, key, m) in timeline {
        let wf = key.split('/').next().unwrap_or_default().to_string();
        let set = running.entry(wf.clone()).or_default();
        match m {
            Mark::Start => {
                set.insert(key.clone());
            }
            Mark::End { .. } => {
                set.remove(key);
            }
            _ => continue,
        }
        for k in set.iter() {
            if let Some(Some(l)) = limit_of.get(k) {
                prop_assert!(
                    set.len() <= *l,
                    "{k} (parallelism {l}) ran beside {} tasks of {wf}",
                    set.len() - 1
                );
            }
        }
        let p = peak.entry(wf).or_default();
        *p = (*p).max(set.len());
    }
    Ok(peak)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Task-level `parallelism` holds whatever else is ready, and a workflow's own cap is
    /// reached exactly, above 64 too (no hidden run-wide cap): with independent tasks and no
    /// task-level limit, as many run at once as the workflow allows.
    #[test]
    fn task_level_limits_and_large_caps(
        parallelism in prop_oneof![1usize..8, 60usize..200],
        tasks in prop::collection::vec((1u64..40, prop::option::weighted(0.2, 1usize..5), prop::collection::vec(any::<prop::sample::Index>(), 0..2)), 1..260),
    ) {
        let mut toml = format!("parallelism = {parallelism}\n");
        for (i, (_, limit, needs)) in tasks.iter().enumerate() {
            toml.push_str(&format!("[jobs.t{i}]\nkind = \"exec\"\n"));
            if let Some(l) = limit {
                toml.push_str(&format!("parallelism = {l}\n"));
            }
            let needs: BTreeSet<usize> = if i == 0 { BTreeSet::new() } else { needs.iter().map(|ix| ix.index(i)).collect() };
            if !needs.is_empty() {
                let list: Vec<String> = needs.iter().map(|j| format!("\"jobs.t{j}\"")).collect();
                toml.push_str(&format!("needs = [{}]\n", list.join(", ")));
            }
        }
        let plan = compile(vec![workflow("w", &toml)]);
        let runner = Arc::new(FakeRunner::default());
        for (i, (millis, _, _)) in tasks.iter().enumerate() {
            runner.script(&format!("w/jobs.t{i}"), Script { millis: *millis, ..Script::default() });
        }
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let (report, _) = rt.block_on(run(plan.clone(), runner.clone(), &FakeHistory::default(), RunOptions::new("limits")));
        prop_assert_eq!(report.state, RunState::Succeeded);
        let peak = check_task_limits(&plan, &runner.timeline())?;
        prop_assert!(peak["w"] <= parallelism, "workflow cap exceeded: {} > {parallelism}", peak["w"]);
        let independent = tasks.iter().all(|(_, limit, needs)| limit.is_none() && needs.is_empty());
        if independent {
            prop_assert_eq!(peak["w"], parallelism.min(tasks.len()), "the workflow's cap was not reached");
        }
    }
}

/// A workflow's `parallelism` above 64 is its cap, not 64.
#[test]
fn a_parallelism_above_64_is_reached() {
    let mut toml = String::from("parallelism = 100\n");
    for i in 0..150 {
        toml.push_str(&format!("[jobs.t{i}]\nkind = \"exec\"\n"));
    }
    let plan = compile(vec![workflow("w", &toml)]);
    let runner = Arc::new(FakeRunner::default());
    for i in 0..150 {
        runner.script(
            &format!("w/jobs.t{i}"),
            Script {
                millis: 10,
                ..Script::default()
            },
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let (report, _) = rt.block_on(run(
        plan.clone(),
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("wide"),
    ));
    assert_eq!(report.state, RunState::Succeeded);
    let peak = check_task_limits(&plan, &runner.timeline()).unwrap();
    assert_eq!(peak["w"], 100);
}
