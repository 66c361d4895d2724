//! `gantry plan` and `gantry graph`: the DAG of one or more workflows run together (barriers
//! joining them), from the configuration directory alone, with no daemon and no plugin.
//! Nodes get ids of their own (`n0`, `n1`, ...), so no two task names can collide in a
//! diagram; steps are drawn as groups inside their workflow, and a legend tells the edges
//! apart.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use super::exit;
use super::output::Output;
use crate::config::workflow;
use crate::engine::plan::{self, Edge, NodeKind, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Diagram {
    Mermaid,
    Dot,
}

/// The plan of `names` run together, or why there is none (the exit code is in the error).
fn compile(config_dir: &Path, names: &[String]) -> anyhow::Result<Plan> {
    let (mut all, errors) = workflow::load_dir(config_dir);
    let mut selected = Vec::new();
    for name in names {
        match all.remove(name) {
            Some(wf) => selected.push(wf),
            None if !errors.is_empty() => {
                let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::bail!(
                    "no valid workflow `{name}`; the configuration has errors:\n{}",
                    listed.join("\n")
                );
            }
            None => {
                let (known, _) = workflow::load_dir(config_dir);
                let known: Vec<&str> = known.keys().map(String::as_str).collect();
                return Err(exit::NotFound(format!(
                    "no workflow `{name}` in {} (workflows: {})",
                    config_dir.display(),
                    known.join(", ")
                ))
                .into());
            }
        }
    }
    plan::compile(selected).map_err(|errs| {
        let lines: Vec<String> = errs
            .iter()
            .map(|e| format!("{}:{}: {}", e.at.line, e.at.column, e.message))
            .collect();
        anyhow::anyhow!("the workflows do not compile:\n{}", lines.join("\n"))
    })
}

/// Each node: its id, what it is, its workflow and step, and what it runs after.
fn nodes(plan: &Plan) -> Vec<Value> {
    let steps = step_of(plan);
    (0..plan.nodes.len())
        .map(|n| {
            let after: Vec<Value> = plan.nodes[n]
                .deps
                .iter()
                .map(|(d, e)| json!({"id": format!("n{d}"), "node": plan.describe(*d), "requires_success": *e == Edge::Requires}))
                .collect();
            let mut v = json!({"id": format!("n{n}"), "node": plan.describe(n), "after": after});
            if let NodeKind::Task { workflow, task } = plan.nodes[n].kind {
                v["workflow"] = json!(plan.workflows[workflow].name);
                v["task"] = json!(plan.workflows[workflow].tasks[task].id);
                if let Some(step) = steps.get(&n) {
                    v["step"] = json!(step);
                }
            }
            v
        })
        .collect()
}

/// The step each task node belongs to, by name.
fn step_of(plan: &Plan) -> BTreeMap<usize, String> {
    let mut steps = BTreeMap::new();
    for (w, wf) in plan.workflows.iter().enumerate() {
        for step in &wf.steps {
            for (task, _) in &step.tasks {
                if let Some(t) = wf.tasks.iter().position(|x| &x.id == task) {
                    steps.insert(plan.task_nodes[w][t], step.name.clone());
                }
            }
        }
    }
    steps
}

pub fn plan(config_dir: &Path, names: &[String], out: &Output) -> anyhow::Result<i32> {
    let plan = compile(config_dir, names)?;
    let nodes = nodes(&plan);
    if out.structured(&json!({"workflows": names, "nodes": nodes})) {
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let after: Vec<String> = n["after"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|d| {
                    let name = d["node"].as_str().unwrap_or_default();
                    match d["requires_success"].as_bool() {
                        Some(true) => format!("{name} (must succeed)"),
                        _ => name.to_string(),
                    }
                })
                .collect();
            let mut row = vec![n["node"].as_str().unwrap_or_default().to_string()];
            if out.wide() {
                row.push(n["step"].as_str().unwrap_or("-").to_string());
            }
            row.push(if after.is_empty() {
                "-".into()
            } else {
                after.join(", ")
            });
            row
        })
        .collect();
    let header: &[&str] = if out.wide() {
        &["NODE", "STEP", "AFTER"]
    } else {
        &["NODE", "AFTER"]
    };
    print!("{}", super::output::table(header, &rows));
    Ok(exit::OK)
}

pub fn graph(config_dir: &Path, names: &[String], diagram: Diagram) -> anyhow::Result<i32> {
    let plan = compile(config_dir, names)?;
    print!("{}", draw(&plan, diagram));
    Ok(exit::OK)
}

/// The diagram of `plan`: workflows as groups holding their steps as groups, barriers
/// between them, solid edges for "must succeed" and dashed ones for "runs after".
pub fn draw(plan: &Plan, diagram: Diagram) -> String {
    let steps = step_of(plan);
    let mut out = String::new();
    let label = |text: &str| match diagram {
        Diagram::Mermaid => text.replace('"', "#quot;"),
        Diagram::Dot => text.replace('\\', "\\\\").replace('"', "\\\""),
    };
    match diagram {
        Diagram::Mermaid => out.push_str("flowchart LR\n"),
        Diagram::Dot => out.push_str("digraph gantry {\n  rankdir=LR;\n"),
    }
    for (w, wf) in plan.workflows.iter().enumerate() {
        let open = |id: &str, title: &str, indent: &str| match diagram {
            Diagram::Mermaid => format!("{indent}subgraph {id}[\"{}\"]\n", label(title)),
            Diagram::Dot => format!(
                "{indent}subgraph cluster_{id} {{\n{indent}  label=\"{}\";\n",
                label(title)
            ),
        };
        let close = |indent: &str| match diagram {
            Diagram::Mermaid => format!("{indent}end\n"),
            Diagram::Dot => format!("{indent}}}\n"),
        };
        let node = |n: usize, indent: &str| {
            let NodeKind::Task { task, .. } = plan.nodes[n].kind else {
                return String::new();
            };
            let text = label(&wf.tasks[task].id);
            match diagram {
                Diagram::Mermaid => format!("{indent}n{n}[\"{text}\"]\n"),
                Diagram::Dot => format!("{indent}n{n} [label=\"{text}\"];\n"),
            }
        };
        out.push_str(&open(
            &format!("w{w}"),
            &format!("workflow {}", wf.name),
            "  ",
        ));
        let mut grouped = vec![false; wf.tasks.len()];
        for (s, step) in wf.steps.iter().enumerate() {
            out.push_str(&open(
                &format!("w{w}s{s}"),
                &format!("step {}", step.name),
                "    ",
            ));
            for (done, &n) in grouped.iter_mut().zip(&plan.task_nodes[w]) {
                if steps.get(&n) == Some(&step.name) && !*done {
                    *done = true;
                    out.push_str(&node(n, "      "));
                }
            }
            out.push_str(&close("    "));
        }
        for t in (0..wf.tasks.len()).filter(|&t| !grouped[t]) {
            out.push_str(&node(plan.task_nodes[w][t], "    "));
        }
        out.push_str(&close("  "));
    }
    for (n, node) in plan.nodes.iter().enumerate() {
        if let NodeKind::Barrier { name } = &node.kind {
            let text = label(&format!("barrier {name}"));
            out.push_str(&match diagram {
                Diagram::Mermaid => format!("  n{n}{{{{\"{text}\"}}}}\n"),
                Diagram::Dot => format!("  n{n} [label=\"{text}\", shape=hexagon];\n"),
            });
        }
    }
    for (n, node) in plan.nodes.iter().enumerate() {
        for (d, edge) in &node.deps {
            out.push_str(&match (diagram, edge) {
                (Diagram::Mermaid, Edge::Requires) => format!("  n{d} --> n{n}\n"),
                (Diagram::Mermaid, Edge::After) => format!("  n{d} -.-> n{n}\n"),
                (Diagram::Dot, Edge::Requires) => format!("  n{d} -> n{n} [style=solid];\n"),
                (Diagram::Dot, Edge::After) => format!("  n{d} -> n{n} [style=dashed];\n"),
            });
        }
    }
    out.push_str(match diagram {
        Diagram::Mermaid => concat!(
            "  subgraph legend[\"legend\"]\n",
            "    legend_a[\" \"] -->|must succeed: needs, outputs, barriers| legend_b[\" \"]\n",
            "    legend_c[\" \"] -.->|runs after, whatever its outcome: step order| legend_d[\" \"]\n",
            "  end\n",
        ),
        Diagram::Dot => concat!(
            "  subgraph cluster_legend {\n",
            "    label=\"legend\";\n",
            "    legend_a [label=\"\", shape=point]; legend_b [label=\"\", shape=point];\n",
            "    legend_c [label=\"\", shape=point]; legend_d [label=\"\", shape=point];\n",
            "    legend_a -> legend_b [style=solid, label=\"must succeed: needs, outputs, barriers\"];\n",
            "    legend_c -> legend_d [style=dashed, label=\"runs after, whatever its outcome: step order\"];\n",
            "  }\n",
            "}\n",
        ),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::workflow::Workflow;

    fn wf(name: &str, source: &str) -> Workflow {
        let mut w = workflow::parse(Path::new(&format!("{name}.toml")), source)
            .unwrap_or_else(|e| panic!("{e:?}"));
        w.name = name.to_string();
        w
    }

    #[test]
    fn names_that_flatten_alike_get_their_own_nodes() {
        let w = wf(
            "a",
            "[b.c_d]\nkind = \"exec\"\n[b_c.d]\nkind = \"exec\"\nneeds = [\"b.c_d\"]\n",
        );
        let plan = plan::compile(vec![w]).unwrap();
        for diagram in [Diagram::Mermaid, Diagram::Dot] {
            let d = draw(&plan, diagram);
            assert!(d.contains("n0") && d.contains("n1"), "{d}");
            assert!(d.contains("\"b.c_d\"") && d.contains("\"b_c.d\""), "{d}");
            assert!(d.contains("legend"), "{d}");
        }
        assert!(draw(&plan, Diagram::Mermaid).contains("  n0 --> n1\n"));
    }

    #[test]
    fn several_workflows_show_steps_as_groups_and_their_barrier() {
        let step = |name: &str, task: &str, barrier: &str| {
            format!("[[steps]]\nname = \"{name}\"\ntasks = [\"{task}\"]\n{barrier}")
        };
        let front = wf(
            "front",
            &format!(
                "[web.a]\nkind = \"exec\"\n[web.b]\nkind = \"exec\"\n{}{}",
                step("build", "web.a", "barrier = \"ready\"\n"),
                step("ship", "web.b", "")
            ),
        );
        let back = wf(
            "back",
            &format!(
                "[api.a]\nkind = \"exec\"\n{}",
                step("only", "api.a", "barrier = \"ready\"\n")
            ),
        );
        let plan = plan::compile(vec![front, back]).unwrap();
        let d = draw(&plan, Diagram::Mermaid);
        for part in [
            "subgraph w0[\"workflow front\"]",
            "subgraph w0s0[\"step build\"]",
            "subgraph w0s1[\"step ship\"]",
            "subgraph w1[\"workflow back\"]",
            "{{\"barrier ready\"}}",
        ] {
            assert!(d.contains(part), "{part}:\n{d}");
        }
        let d = draw(&plan, Diagram::Dot);
        assert!(
            d.contains("subgraph cluster_w1s0") && d.contains("shape=hexagon"),
            "{d}"
        );
    }
}
