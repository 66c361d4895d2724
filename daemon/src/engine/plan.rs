//! Compiling the workflows of one run into a single DAG: steps give order, `needs` and
//! output references give hard dependencies, and barriers are shared nodes that every
//! participating workflow must reach.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::template::{Reference, references};
use crate::config::toml_walk::Loc;
use crate::config::workflow::Workflow;

pub type NodeId = usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// Task `task` (index into the workflow's tasks) of workflow `workflow` (index into the plan's).
    Task { workflow: usize, task: usize },
    /// A barrier shared by the workflows that name it.
    Barrier { name: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edge {
    /// Run after the dependency has finished, whatever its outcome (step order).
    After,
    /// Run only if the dependency succeeded (`needs`, output references, barriers).
    Requires,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: NodeKind,
    pub deps: Vec<(NodeId, Edge)>,
    pub dependents: Vec<NodeId>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub workflows: Vec<Workflow>,
    pub nodes: Vec<Node>,
    /// Node of each task: `task_nodes[w][t]`.
    pub task_nodes: Vec<Vec<NodeId>>,
}

/// A dependency problem found while compiling, located in the file that causes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub workflow: usize,
    pub at: Loc,
    pub message: String,
}

/// Every string inside a JSON value.
pub fn strings_in(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| strings_in(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// Builds the DAG of `workflows` run together. Errors name what to fix; a plan is returned
/// only when there are none.
pub fn compile(workflows: Vec<Workflow>) -> Result<Plan, Vec<PlanError>> {
    let mut errors = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut task_nodes = Vec::new();
    let mut barriers: BTreeMap<String, NodeId> = BTreeMap::new();

    for (w, wf) in workflows.iter().enumerate() {
        let ids: Vec<NodeId> = (0..wf.tasks.len())
            .map(|t| {
                nodes.push(Node {
                    kind: NodeKind::Task {
                        workflow: w,
                        task: t,
                    },
                    deps: Vec::new(),
                    dependents: Vec::new(),
                });
                nodes.len() - 1
            })
            .collect();
        let index: BTreeMap<&str, usize> = wf
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut err = |at: Loc, message: String| {
            errors.push(PlanError {
                workflow: w,
                at,
                message,
            })
        };

        // Steps: order, membership, barriers.
        let mut step_of: BTreeMap<usize, usize> = BTreeMap::new();
        let mut step_names = BTreeSet::new();
        let mut own_barriers = BTreeSet::new();
        let mut waited: Vec<NodeId> = Vec::new();
        for (s, step) in wf.steps.iter().enumerate() {
            if !step.name.is_empty() && !step_names.insert(step.name.as_str()) {
                err(
                    step.at,
                    format!(
                        "step name `{}` is used twice; step names must be unique",
                        step.name
                    ),
                );
            }
            let mut members = Vec::new();
            for (task, at) in &step.tasks {
                match index.get(task.as_str()) {
                    None => err(*at, unknown_task(wf, task)),
                    Some(&t) => {
                        if let Some(&other) = step_of.get(&t) {
                            err(
                                *at,
                                format!(
                                    "task `{task}` is already in step `{}`; a task belongs to one step",
                                    wf.steps[other].name
                                ),
                            );
                        } else {
                            step_of.insert(t, s);
                            members.push(ids[t]);
                        }
                    }
                }
            }
            let gate: Vec<(NodeId, Edge)> = match &step.barrier {
                Some((name, at)) => {
                    if !own_barriers.insert(name.clone()) {
                        err(
                            *at,
                            format!(
                                "barrier `{name}` is named by two steps of this workflow; a workflow reaches a barrier once"
                            ),
                        );
                        waited.iter().map(|&n| (n, Edge::After)).collect()
                    } else {
                        let b = *barriers.entry(name.clone()).or_insert_with(|| {
                            nodes.push(Node {
                                kind: NodeKind::Barrier { name: name.clone() },
                                deps: Vec::new(),
                                dependents: Vec::new(),
                            });
                            nodes.len() - 1
                        });
                        let arrival: Vec<(NodeId, Edge)> =
                            waited.iter().map(|&n| (n, Edge::After)).collect();
                        nodes[b].deps.extend(arrival);
                        vec![(b, Edge::Requires)]
                    }
                }
                None => waited.iter().map(|&n| (n, Edge::After)).collect(),
            };
            for &m in &members {
                nodes[m].deps.extend(gate.iter().copied());
            }
            if step.wait_for_finish {
                waited = members;
            } else {
                // Later steps go on without these; they still depend on what this step waited for.
                let carried: Vec<NodeId> = gate.iter().map(|(n, _)| *n).collect();
                waited.retain(|n| !members.contains(n));
                for c in carried {
                    if !waited.contains(&c) {
                        waited.push(c);
                    }
                }
            }
        }
        if !wf.steps.is_empty() {
            for (t, task) in wf.tasks.iter().enumerate() {
                if !step_of.contains_key(&t) {
                    err(
                        task.at,
                        format!(
                            "task `{}` is in no step; add it to a step's `tasks`",
                            task.id
                        ),
                    );
                }
            }
        }

        // needs and output references.
        for (t, task) in wf.tasks.iter().enumerate() {
            for (need, at) in &task.needs {
                match index.get(need.as_str()) {
                    None => err(*at, unknown_task(wf, need)),
                    Some(&d) if d == t => {
                        err(*at, format!("task `{}` cannot need itself", task.id))
                    }
                    Some(&d) => nodes[ids[t]].deps.push((ids[d], Edge::Requires)),
                }
            }
            let mut texts = Vec::new();
            for v in task.params.values() {
                strings_in(v, &mut texts);
            }
            for text in texts {
                match references(&text) {
                    Err(e) => err(task.at, format!("task `{}`: {e}", task.id)),
                    Ok(refs) => {
                        for r in refs {
                            match r {
                                Reference::Env(name) if !wf.env.contains(&name) => err(
                                    task.at,
                                    format!(
                                        "task `{}` reads ${{env.{name}}}, which is not allowed; add \"{name}\" to `env = [...]` at the top of the workflow",
                                        task.id
                                    ),
                                ),
                                Reference::Env(_) | Reference::Secret(_) => {}
                                Reference::Output { task: source, .. } => match index
                                    .get(source.as_str())
                                {
                                    None => err(
                                        task.at,
                                        format!(
                                            "task `{}` references outputs of {}",
                                            task.id,
                                            unknown_task(wf, &source)
                                        ),
                                    ),
                                    Some(&d) if d == t => err(
                                        task.at,
                                        format!("task `{}` references its own outputs", task.id),
                                    ),
                                    Some(&d) => {
                                        let later = match (step_of.get(&d), step_of.get(&t)) {
                                            (Some(ds), Some(ts)) => ds >= ts,
                                            _ => false,
                                        };
                                        if later {
                                            err(
                                                task.at,
                                                format!(
                                                    "task `{}` uses outputs of `{source}`, which does not run before it (same or later step); move `{source}` to an earlier step",
                                                    task.id
                                                ),
                                            );
                                        } else {
                                            nodes[ids[t]].deps.push((ids[d], Edge::Requires));
                                        }
                                    }
                                },
                            }
                        }
                    }
                }
            }
        }
        task_nodes.push(ids);
    }

    for n in 0..nodes.len() {
        // One edge per dependency; where a step orders it and `needs` also requires it,
        // the stronger `Requires` wins.
        let mut merged: BTreeMap<NodeId, Edge> = BTreeMap::new();
        for &(d, edge) in &nodes[n].deps {
            let e = merged.entry(d).or_insert(edge);
            if edge == Edge::Requires {
                *e = Edge::Requires;
            }
        }
        nodes[n].deps = merged.into_iter().collect();
        for (d, _) in nodes[n].deps.clone() {
            nodes[d].dependents.push(n);
        }
    }
    let plan = Plan {
        workflows,
        nodes,
        task_nodes,
    };
    if let Some(cycle) = find_cycle(&plan.nodes) {
        let (w, at) = cycle
            .iter()
            .find_map(|&n| match &plan.nodes[n].kind {
                NodeKind::Task { workflow, task } => {
                    Some((*workflow, plan.workflows[*workflow].tasks[*task].at))
                }
                NodeKind::Barrier { .. } => None,
            })
            .unwrap_or_default();
        let path: Vec<String> = cycle.iter().map(|&n| plan.describe(n)).collect();
        errors.push(PlanError {
            workflow: w,
            at,
            message: format!(
                "dependency cycle: {} (steps, needs, output references and barriers must all point forward; barriers must be reached in the same order by every workflow)",
                path.join(" → ")
            ),
        });
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

fn unknown_task(wf: &Workflow, name: &str) -> String {
    let known: Vec<&str> = wf.tasks.iter().map(|t| t.id.as_str()).collect();
    format!(
        "unknown task `{name}` (tasks of workflow `{}`: {})",
        wf.name,
        known.join(", ")
    )
}

/// A cycle as a list of nodes (first repeated at the end), if there is one.
fn find_cycle(nodes: &[Node]) -> Option<Vec<NodeId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; nodes.len()];
    let mut stack: Vec<(NodeId, usize)> = Vec::new();
    for root in 0..nodes.len() {
        if mark[root] != Mark::New {
            continue;
        }
        stack.push((root, 0));
        mark[root] = Mark::Active;
        while let Some(&mut (n, ref mut i)) = stack.last_mut() {
            if let Some(&(d, _)) = nodes[n].deps.get(*i) {
                *i += 1;
                match mark[d] {
                    Mark::New => {
                        mark[d] = Mark::Active;
                        stack.push((d, 0));
                    }
                    Mark::Active => {
                        let start = stack.iter().position(|(s, _)| *s == d).unwrap_or(0);
                        let mut cycle: Vec<NodeId> =
                            stack[start..].iter().map(|(s, _)| *s).collect();
                        cycle.reverse();
                        cycle.insert(0, d);
                        return Some(cycle);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[n] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

impl Plan {
    /// "workflow/task" or "barrier NAME", for messages.
    pub fn describe(&self, n: NodeId) -> String {
        match &self.nodes[n].kind {
            NodeKind::Task { workflow, task } => {
                format!(
                    "{}/{}",
                    self.workflows[*workflow].name, self.workflows[*workflow].tasks[*task].id
                )
            }
            NodeKind::Barrier { name } => format!("barrier `{name}`"),
        }
    }

    /// Workflows that reach barrier node `n`.
    pub fn barrier_participants(&self, n: NodeId) -> BTreeSet<usize> {
        self.nodes[n]
            .dependents
            .iter()
            .filter_map(|&d| match self.nodes[d].kind {
                NodeKind::Task { workflow, .. } => Some(workflow),
                NodeKind::Barrier { .. } => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_both_ordered_and_needed_must_succeed() {
        let wf = crate::config::workflow::parse(
            std::path::Path::new("w.toml"),
            "[a.x]\nkind = \"exec\"\n[b.y]\nkind = \"exec\"\nneeds = [\"a.x\"]\n[[steps]]\nname = \"1\"\ntasks = [\"a.x\"]\n[[steps]]\nname = \"2\"\ntasks = [\"b.y\"]\n",
        )
        .unwrap();
        let plan = compile(vec![wf]).unwrap();
        assert_eq!(plan.nodes[1].deps, vec![(0, Edge::Requires)]);
        assert_eq!(plan.nodes[0].dependents, vec![1]);
    }
}
