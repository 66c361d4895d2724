//! Commands that talk to the running daemon over its socket.

use std::path::Path;

use hyper::Method;
use serde_json::{Value, json};

use super::progress::Progress;
use crate::client::Client;
use crate::protocol::{Status, TriggerRequest, TriggerResponse};

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Exit code for a run's final state: 0 succeeded, 3 succeeded with errors, 1 otherwise.
fn exit_code(state: &str) -> i32 {
    match state {
        "succeeded" => 0,
        "succeeded_with_errors" => 3,
        _ => 1,
    }
}

pub async fn deploy(
    socket: &Path,
    workflows: &[String],
    wait: bool,
    json_out: bool,
) -> anyhow::Result<i32> {
    let client = Client::new(socket);
    let request = TriggerRequest {
        workflows: workflows.to_vec(),
    };
    let created: TriggerResponse = client
        .typed(Method::POST, "/v1/runs", Some(&request))
        .await?;
    let id = created.id.clone();
    if !wait {
        if json_out {
            print_json(&serde_json::to_value(&created)?)
        } else {
            println!("{id}")
        }
        return Ok(0);
    }
    if !json_out {
        println!("run {id}: {}", workflows.join(", "));
    }
    let Some(state) = follow_run(&client, &id, &Progress::new(), json_out, None).await? else {
        return Ok(INTERRUPTED);
    };
    if !json_out {
        println!("run {id} {state}");
    }
    Ok(exit_code(&state))
}

pub async fn runs(socket: &Path, query: &str, json_out: bool) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::GET, &format!("/v1/runs?{query}"), None)
        .await?;
    if json_out {
        print_json(&v);
        return Ok(0);
    }
    println!("{:<24} {:<22} {:<8} WORKFLOWS", "RUN", "STATE", "TRIGGER");
    for r in v["runs"].as_array().into_iter().flatten() {
        let wfs: Vec<&str> = r["workflows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        println!(
            "{:<24} {:<22} {:<8} {}",
            r["id"].as_str().unwrap_or(""),
            r["state"].as_str().unwrap_or(""),
            r["trigger"].as_str().unwrap_or(""),
            wfs.join(",")
        );
    }
    Ok(0)
}

pub async fn show(socket: &Path, id: &str, json_out: bool) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::GET, &format!("/v1/runs/{id}"), None)
        .await?;
    if json_out {
        print_json(&v);
        return Ok(0);
    }
    println!(
        "run {} {} ({})",
        v["run"]["id"].as_str().unwrap_or(""),
        v["run"]["state"].as_str().unwrap_or(""),
        v["run"]["trigger"].as_str().unwrap_or("")
    );
    for t in v["tasks"].as_array().into_iter().flatten() {
        let secs = match (t["started_at"].as_i64(), t["finished_at"].as_i64()) {
            (Some(s), Some(f)) => format!("{:.1}s", (f - s) as f64 / 1000.0),
            _ => "-".into(),
        };
        let err = t["error"]
            .as_str()
            .map(|e| format!("  {e}"))
            .unwrap_or_default();
        println!(
            "  {:<10} {:<28} {:<12} {:>7} attempts={}{err}",
            t["workflow"].as_str().unwrap_or(""),
            t["task"].as_str().unwrap_or(""),
            t["state"].as_str().unwrap_or(""),
            secs,
            t["attempts"]
        );
        for h in t["hooks"].as_array().into_iter().flatten() {
            let reason = h["message"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!(
                "      {} hook `{}`: {}{reason}",
                h["phase"].as_str().unwrap_or(""),
                h["hook"].as_str().unwrap_or(""),
                h["decision"].as_str().unwrap_or("")
            );
        }
        for (k, val) in t["outputs"].as_object().into_iter().flatten() {
            println!("      {k} = {}", val.as_str().unwrap_or(""));
        }
    }
    Ok(0)
}

/// The exit code after Ctrl-C stopped the CLI following a run (128 + SIGINT, as shells do).
const INTERRUPTED: i32 = 130;

/// Prints a run's events until it ends (NDJSON with `json_out`, else progress lines), only
/// those of `only` (workflow, task) when given; the run's final state, or `None` when Ctrl-C
/// stopped the following (the run itself goes on in the daemon, and the message says how
/// to cancel it).
async fn follow_run(
    client: &Client,
    id: &str,
    progress: &Progress,
    json_out: bool,
    only: Option<(&str, &str)>,
) -> anyhow::Result<Option<String>> {
    let mut finished = None;
    let path = format!("/v1/runs/{id}/events");
    let stream = client.lines(&path, |e| {
        if let Some((wf, task)) = only
            && (e["workflow"] != wf || e["task"] != task)
            && e["type"] != "run_finished"
        {
            return;
        }
        if e["type"] == "run_finished" {
            finished = e["state"].as_str().map(str::to_string);
        }
        if json_out {
            println!("{e}")
        } else {
            progress.show(&e)
        }
    });
    tokio::select! {
        result = stream => result?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "\nstopped following run {id}; it goes on in the daemon. Follow it again with `gantry logs -f {id}`, cancel it with `gantry cancel {id}`."
            );
            return Ok(None);
        }
    }
    // A stream cut short (the daemon stopped) has no `run_finished`: ask for the state.
    Ok(Some(match finished {
        Some(state) => state,
        None => run_state(client, id).await?,
    }))
}

async fn run_state(client: &Client, id: &str) -> anyhow::Result<String> {
    let shown = client
        .json(Method::GET, &format!("/v1/runs/{id}"), None)
        .await?;
    Ok(shown["run"]["state"]
        .as_str()
        .unwrap_or("unknown")
        .to_string())
}

/// With `follow`, the run's events and its tasks' log lines as they happen (NDJSON with
/// `json`), until the run ends, exiting with the run's result; otherwise each task's log so
/// far. `task` (`WORKFLOW.TASK`) keeps to one task.
pub async fn logs(
    socket: &Path,
    id: &str,
    task: Option<&str>,
    follow: bool,
    json_out: bool,
) -> anyhow::Result<i32> {
    let client = Client::new(socket);
    let v = client
        .json(Method::GET, &format!("/v1/runs/{id}"), None)
        .await?;
    let tasks: Vec<(String, String)> = v["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            (
                t["workflow"].as_str().unwrap_or("").to_string(),
                t["task"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let only = match task {
        None => None,
        Some(name) => match tasks.iter().find(|(wf, t)| format!("{wf}.{t}") == name) {
            Some((wf, t)) => Some((wf.as_str(), t.as_str())),
            None => {
                let known: Vec<String> = tasks.iter().map(|(wf, t)| format!("{wf}.{t}")).collect();
                anyhow::bail!(
                    "run `{id}` has no task `{name}` (WORKFLOW.TASK); its tasks: {}",
                    known.join(", ")
                );
            }
        },
    };
    if follow {
        let mut progress = Progress::new();
        progress.logs = true;
        return Ok(
            match follow_run(&client, id, &progress, json_out, only).await? {
                Some(state) => exit_code(&state),
                None => INTERRUPTED,
            },
        );
    }
    let mut all = Vec::new();
    for (wf, task) in &tasks {
        if only.is_some_and(|o| o != (wf.as_str(), task.as_str())) {
            continue;
        }
        let Ok(text) = client
            .text(&format!("/v1/runs/{id}/logs/{wf}/{task}"))
            .await
        else {
            continue;
        };
        if json_out {
            all.push(json!({ "workflow": wf, "task": task, "log": text }));
        } else if only.is_some() {
            print!("{text}");
        } else {
            println!("==> {wf}/{task} <==");
            print!("{text}");
        }
    }
    if json_out {
        print_json(&json!({ "run": id, "tasks": all }));
    }
    Ok(0)
}

pub async fn cancel(socket: &Path, id: &str) -> anyhow::Result<i32> {
    Client::new(socket)
        .json(Method::POST, &format!("/v1/runs/{id}/cancel"), None)
        .await?;
    println!("cancelling {id}");
    Ok(0)
}

pub async fn status(socket: &Path, json_out: bool) -> anyhow::Result<i32> {
    let status: Status = Client::new(socket)
        .typed(Method::GET, "/v1/status", None::<&()>)
        .await?;
    if json_out {
        print_json(&serde_json::to_value(&status)?);
        return Ok(0);
    }
    let reload = &status.last_reload;
    println!(
        "gantry {} · configuration generation {} · {} runs running, {} queued",
        status.version,
        status.generation,
        status.running_runs.len(),
        status.queued_runs
    );
    if !reload.ok {
        println!("last reload FAILED; the previous configuration is active:");
        for e in &reload.errors {
            println!("  {e}");
        }
    }
    if !reload.restart_needed.is_empty() {
        println!("settings waiting for a restart:");
        for p in &reload.restart_needed {
            println!("  {p}");
        }
    }
    Ok(0)
}

pub async fn reload(socket: &Path) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::POST, "/v1/reload", None)
        .await?;
    if v["ok"].as_bool() == Some(true) {
        println!("reloaded: configuration generation {}", v["generation"]);
        Ok(0)
    } else {
        println!("rejected; generation {} stays active:", v["generation"]);
        for e in v["errors"].as_array().into_iter().flatten() {
            println!("  {}", e.as_str().unwrap_or(""));
        }
        Ok(1)
    }
}

/// `plan` and `graph`: the compiled DAG of a workflow.
pub async fn graph(
    socket: &Path,
    workflow: &str,
    format: &str,
    json_out: bool,
) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::GET, &format!("/v1/workflows/{workflow}/plan"), None)
        .await?;
    if json_out {
        print_json(&v);
        return Ok(0);
    }
    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
    let id = |name: &str| name.replace(['/', '.', '-', ' ', '`'], "_");
    // Per format: a node line, and an edge line for "must succeed" and for "runs after".
    let diagram = |node: &dyn Fn(&str, &str) -> String,
                   edge: &dyn Fn(&str, &str, bool) -> String| {
        for n in &nodes {
            let name = n["node"].as_str().unwrap_or("");
            println!("{}", node(&id(name), &name.replace('"', "'")));
            for d in n["after"].as_array().into_iter().flatten() {
                let from = id(d["node"].as_str().unwrap_or(""));
                let required = d["requires_success"].as_bool() == Some(true);
                println!("{}", edge(&from, &id(name), required));
            }
        }
    };
    match format {
        "dot" => {
            println!("digraph \"{workflow}\" {{\n  rankdir=LR;");
            diagram(
                &|id, label| format!("  {id} [label=\"{label}\"];"),
                &|from, to, required| {
                    let style = if required { "solid" } else { "dashed" };
                    format!("  {from} -> {to} [style={style}];")
                },
            );
            println!("}}");
        }
        "mermaid" => {
            println!("flowchart LR");
            diagram(
                &|id, label| format!("  {id}[\"{label}\"]"),
                &|from, to, required| {
                    let arrow = if required { "-->" } else { "-.->" };
                    format!("  {from} {arrow} {to}")
                },
            );
        }
        _ => {
            for n in &nodes {
                let after: Vec<String> = n["after"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|d| {
                        format!(
                            "{}{}",
                            d["node"].as_str().unwrap_or(""),
                            if d["requires_success"].as_bool() == Some(true) {
                                " (must succeed)"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                println!(
                    "{}{}",
                    n["node"].as_str().unwrap_or(""),
                    if after.is_empty() {
                        String::new()
                    } else {
                        format!("  after {}", after.join(", "))
                    }
                );
            }
        }
    }
    Ok(0)
}
