//! `gantry diff`: what deploying a workflow would change, task by task, as each plugin plans
//! it (for manifests: a server-side dry run per object). Outputs of other tasks come from
//! their last deployment; a task whose inputs do not exist yet is reported, not guessed.
//! Each change is shown whole, as a unified diff of the object before and after (what the
//! plugin reports: YAML for Kubernetes objects), never cut short, in text and JSON.
//!
//! Exit code, as `diff` and `kubectl diff`: 0 nothing would change, 1 something would, other
//! codes when the diff itself could not be made (see [`super::exit`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::template::{Reference, substitute};
use crate::engine::runner::{DeploymentRecord, History, TaskCall};
use crate::store::Store;
use crate::wasm::bindings::types::ChangeAction;
use crate::wasm::task_runner::{PluginRunner, TracingLogs};

use super::exit;

fn action(a: &ChangeAction) -> &'static str {
    match a {
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Replace => "replace",
        ChangeAction::Unchanged => "unchanged",
        ChangeAction::Delete => "delete",
    }
}

pub async fn diff(
    config_dir: &Path,
    state_dir: &Path,
    workflow: &str,
    sim: bool,
    as_json: bool,
) -> anyhow::Result<i32> {
    let loader = crate::load::Loader::open(config_dir, state_dir)?;
    let crate::load::Loaded {
        config: valid,
        registry,
    } = match loader.load().await {
        Ok(v) => v,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return Ok(exit::ERROR);
        }
    };
    let Some(wf) = valid.workflows.get(workflow) else {
        let known: Vec<&str> = valid.workflows.keys().map(String::as_str).collect();
        eprintln!(
            "gantry: no workflow `{workflow}` (workflows: {})",
            known.join(", ")
        );
        return Ok(exit::NOT_FOUND);
    };
    // A diff writes nothing to the state directory, which a running daemon owns: history is
    // read beside it, and scratch space and the simulator's kubeconfig live in a temporary one.
    let work = tempfile::tempdir()?;
    let (_simulator, clusters) =
        crate::sim::clusters(sim, work.path(), &valid.daemon.clusters, config_dir).await?;
    let deployed: BTreeMap<String, DeploymentRecord> = match Store::open_read_only(state_dir)? {
        Some(store) => store
            .deployed(workflow)
            .into_iter()
            .map(|(task, d)| (task, d.record))
            .collect(),
        None => BTreeMap::new(),
    };
    // Plans read the tasks' workspaces (Terraform's state lives there); scratch space is
    // temporary.
    let roots = crate::wasm::task_runner::TaskRoots {
        scratch: work.path().join("scratch"),
        workspaces: crate::wasm::task_runner::TaskRoots::in_state_dir(state_dir).workspaces,
    };
    let scratch = roots.scratch_pool()?;
    let runner = PluginRunner::new(registry, roots, scratch, Arc::new(TracingLogs), clusters);
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let secrets =
        crate::secrets::SecretStore::new(config_dir, valid.daemon.daemon.secrets_dir.as_deref());
    let redactor = Arc::new(crate::engine::redact::Redactor::default());
    let mut report = Vec::new();
    let mut failed = false;
    let mut pending = false;
    for task in &wf.tasks {
        let awaits_inputs = std::cell::Cell::new(false);
        let mut params = serde_json::Value::Object(task.params.clone());
        let lookup = |r: &Reference| -> Result<String, String> {
            match r {
                Reference::Env(name) => env
                    .get(name)
                    .cloned()
                    .ok_or_else(|| format!("${{env.{name}}} is not set")),
                Reference::Secret(name) => {
                    secrets.reveal(name, &redactor).map_err(|e| e.to_string())
                }
                Reference::Output { task, key } => deployed
                    .get(task)
                    .and_then(|rec| rec.outputs.get(key))
                    .cloned()
                    .ok_or_else(|| {
                        awaits_inputs.set(true);
                        format!("needs output `{key}` of `{task}`, which has not been deployed yet")
                    }),
            }
        };
        if let Err(why) = substitute(&mut params, &lookup) {
            // Inputs from tasks not deployed yet: the deploy will change it, the plan is
            // unknowable now. Anything else (an unset variable, a missing secret) is an error.
            if awaits_inputs.get() {
                pending = true;
            } else {
                failed = true;
            }
            report.push(json!({"task": task.id, "kind": task.kind, "error": why}));
            continue;
        }
        let call = TaskCall {
            run: "diff".into(),
            workflow: workflow.to_string(),
            task: task.id.clone(),
            kind: task.kind.clone(),
            params,
            attempt: 0,
            previous: deployed.get(&task.id).cloned(),
            source_dir: Some(task.source_dir(config_dir)).filter(|d| d.is_dir()),
            cancel: CancellationToken::new(),
            redactor: redactor.clone(),
        };
        match runner.plan(call).await {
            Ok(changes) => {
                let changes: Vec<_> = changes
                    .iter()
                    .map(|c| {
                        let diff = match c.action {
                            ChangeAction::Unchanged => String::new(),
                            _ => super::unified::unified(
                                c.before.as_deref().unwrap_or_default(),
                                c.after.as_deref().unwrap_or_default(),
                                &format!("{} (now)", c.target),
                                &format!("{} (after the deploy)", c.target),
                            ),
                        };
                        json!({"action": action(&c.action), "target": c.target, "detail": c.detail, "diff": diff})
                    })
                    .collect();
                report.push(json!({"task": task.id, "kind": task.kind, "changes": changes}));
            }
            Err(e) => {
                failed = true;
                report.push(json!({"task": task.id, "kind": task.kind, "error": e.message}));
            }
        }
    }
    for (task, rec) in &deployed {
        if !wf.tasks.iter().any(|t| &t.id == task) {
            let changes: Vec<_> = rec
                .inventory
                .iter()
                .map(|target| json!({"action": "delete", "target": target, "detail": "task removed from the workflow"}))
                .collect();
            report.push(json!({"task": task, "kind": "removed", "changes": changes}));
        }
    }
    // Planned changes may show a secret's value (a Secret object's data): masked like logs.
    let report: Vec<serde_json::Value> =
        serde_json::from_str(&redactor.apply(&serde_json::Value::Array(report).to_string()))
            .unwrap_or_default();
    let changed = report
        .iter()
        .flat_map(|t| t["changes"].as_array().into_iter().flatten())
        .any(|c| c["action"] != "unchanged");
    if as_json {
        println!(
            "{}",
            json!({"workflow": workflow, "changed": changed, "tasks": report})
        );
    } else {
        print_report(workflow, &report);
    }
    Ok(match (failed, changed || pending) {
        (true, _) => exit::ERROR,
        (false, true) => exit::NO,
        (false, false) => exit::OK,
    })
}

fn print_report(workflow: &str, report: &[serde_json::Value]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    println!("workflow {workflow}");
    for t in report {
        let name = t["task"].as_str().unwrap_or_default();
        if let Some(e) = t["error"].as_str() {
            println!("  {name}: cannot plan: {e}");
            continue;
        }
        let changes = t["changes"].as_array().cloned().unwrap_or_default();
        if changes.is_empty() {
            println!(
                "  {name}: nothing to report ({} tasks plan no changes)",
                t["kind"].as_str().unwrap_or_default()
            );
        }
        for c in changes {
            let a = c["action"].as_str().unwrap_or_default();
            *counts.entry(a.to_string()).or_default() += 1;
            let detail = c["detail"]
                .as_str()
                .filter(|d| !d.is_empty())
                .map(|d| format!("  ({d})"))
                .unwrap_or_default();
            println!(
                "  {name}: {a:<9} {}{detail}",
                c["target"].as_str().unwrap_or_default()
            );
            if let Some(diff) = c["diff"].as_str().filter(|d| !d.is_empty()) {
                for line in diff.lines() {
                    println!("    {line}");
                }
            }
        }
    }
    let summary: Vec<String> = counts.iter().map(|(a, n)| format!("{n} {a}")).collect();
    let changes = counts.keys().any(|a| a != "unchanged");
    println!(
        "{}",
        match (changes, summary.is_empty()) {
            (true, _) => summary.join(", "),
            (false, true) => "no changes planned".to_string(),
            (false, false) => format!("no changes planned ({})", summary.join(", ")),
        }
    );
}
