//! Commands that talk to the running daemon over its socket.

use std::collections::HashMap;
use std::path::Path;

use hyper::Method;
use serde_json::{Value, json};

use super::exit;
use super::output::{self, Output};
use super::progress::Progress;
use crate::client::Client;
use crate::protocol::{Status, TriggerRequest, TriggerResponse};
use crate::store::logs::LogLine;

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
    for warning in &created.warnings {
        eprintln!("warning: {warning}");
    }
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
    let Some(state) = follow_run(
        &client,
        &id,
        &Progress::new(),
        json_out,
        None,
        &Shown::default(),
    )
    .await?
    else {
        return Ok(INTERRUPTED);
    };
    if !json_out {
        println!("run {id} {state}");
    }
    Ok(exit_code(&state))
}

pub async fn runs(socket: &Path, query: &str, out: &Output) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::GET, &format!("/v1/runs?{query}"), None)
        .await?;
    if out.structured(&v) {
        return Ok(exit::OK);
    }
    let now = crate::store::now_millis();
    let rows: Vec<Vec<String>> = v["runs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let wfs: Vec<&str> = r["workflows"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let created = r["created_at"].as_i64().unwrap_or(0);
            // A run still going shows how long it has been going.
            let took = r["finished_at"].as_i64().unwrap_or(now) - created;
            let mut row = vec![
                r["id"].as_str().unwrap_or("").to_string(),
                r["state"].as_str().unwrap_or("").to_string(),
                output::moment(created),
                output::duration(took),
                r["trigger"].as_str().unwrap_or("").to_string(),
            ];
            if out.wide() {
                row.push(r["finished_at"].as_i64().map_or("-".into(), output::moment));
            }
            row.push(wfs.join(","));
            row
        })
        .collect();
    let header: &[&str] = if out.wide() {
        &[
            "RUN",
            "STATE",
            "STARTED",
            "DURATION",
            "TRIGGER",
            "FINISHED",
            "WORKFLOWS",
        ]
    } else {
        &[
            "RUN",
            "STATE",
            "STARTED",
            "DURATION",
            "TRIGGER",
            "WORKFLOWS",
        ]
    };
    print!("{}", output::table(header, &rows));
    Ok(exit::OK)
}

pub async fn show(socket: &Path, id: &str, out: &Output) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::GET, &format!("/v1/runs/{id}"), None)
        .await?;
    if out.structured(&v) {
        return Ok(exit::OK);
    }
    println!(
        "run {} {} ({})",
        v["run"]["id"].as_str().unwrap_or(""),
        v["run"]["state"].as_str().unwrap_or(""),
        v["run"]["trigger"].as_str().unwrap_or("")
    );
    let tasks: Vec<&Value> = v["tasks"].as_array().into_iter().flatten().collect();
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let took = match (t["started_at"].as_i64(), t["finished_at"].as_i64()) {
                (Some(s), Some(f)) => output::duration(f - s),
                _ => "-".into(),
            };
            let mut row = vec![
                t["workflow"].as_str().unwrap_or("").to_string(),
                t["task"].as_str().unwrap_or("").to_string(),
                t["state"].as_str().unwrap_or("").to_string(),
                took,
                t["attempts"].to_string(),
            ];
            if out.wide() {
                row.push(t["started_at"].as_i64().map_or("-".into(), output::moment));
            }
            row.push(t["error"].as_str().unwrap_or("").to_string());
            row
        })
        .collect();
    let header: &[&str] = if out.wide() {
        &[
            "WORKFLOW", "TASK", "STATE", "DURATION", "ATTEMPTS", "STARTED", "ERROR",
        ]
    } else {
        &["WORKFLOW", "TASK", "STATE", "DURATION", "ATTEMPTS", "ERROR"]
    };
    print!("{}", output::table(header, &rows));
    for t in tasks {
        let name = format!(
            "{}.{}",
            t["workflow"].as_str().unwrap_or(""),
            t["task"].as_str().unwrap_or("")
        );
        for h in t["hooks"].as_array().into_iter().flatten() {
            let reason = h["message"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            println!(
                "{name}: {} hook `{}`: {}{reason}",
                h["phase"].as_str().unwrap_or(""),
                h["hook"].as_str().unwrap_or(""),
                h["decision"].as_str().unwrap_or("")
            );
        }
        for (k, val) in t["outputs"].as_object().into_iter().flatten() {
            println!("{name}: output {k} = {}", val.as_str().unwrap_or(""));
        }
    }
    Ok(exit::OK)
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
    shown: &Shown,
) -> anyhow::Result<Option<String>> {
    let mut finished = None;
    let path = format!("/v1/runs/{id}/events?since={}", shown.seq);
    let stream = client.lines(&path, |e| {
        if !about(&e, only) || shown.covers(&e) {
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

/// What a follower who attached to a running run has already printed: stored events up to
/// a sequence number (the stream starts after it), and each task's log lines up to a time
/// (live lines have no sequence number, so the stream's are skipped by time).
#[derive(Default)]
struct Shown {
    seq: i64,
    log_lines: HashMap<(String, String), i64>,
}

impl Shown {
    fn covers(&self, e: &Value) -> bool {
        e["type"] == "task_log"
            && self
                .log_lines
                .get(&(
                    e["workflow"].as_str().unwrap_or_default().to_string(),
                    e["task"].as_str().unwrap_or_default().to_string(),
                ))
                .is_some_and(|last| e["at"].as_i64().unwrap_or(0) <= *last)
    }
}

/// A run's stored events and the lines its tasks printed (live lines are not stored as
/// events, so they come from the log files, which keep each line's time), only those of
/// `only` when given, in time order with the end of the run last; and how far that goes.
async fn recorded(
    client: &Client,
    id: &str,
    tasks: &[(String, String)],
    only: Option<(&str, &str)>,
) -> anyhow::Result<(Vec<Value>, Shown)> {
    let mut shown = Shown::default();
    let mut events = Vec::new();
    client
        .lines(&format!("/v1/runs/{id}/events?follow=false"), |e| {
            shown.seq = shown.seq.max(e["seq"].as_i64().unwrap_or(0));
            if about(&e, only) {
                events.push(e);
            }
        })
        .await?;
    let log = run_log(client, id).await?;
    for (wf, task, lines) in by_task(&log, tasks, only) {
        let task_lines: Vec<Value> = lines.iter().filter_map(|l| logged_line(id, l)).collect();
        if let Some(last) = task_lines.iter().filter_map(|e| e["at"].as_i64()).max() {
            shown
                .log_lines
                .insert((wf.to_string(), task.to_string()), last);
        }
        events.extend(task_lines);
    }
    // The end of the run comes last even when a log line shares its millisecond.
    events.sort_by_key(|e| (e["type"] == "run_finished", e["at"].as_i64().unwrap_or(0)));
    Ok((events, shown))
}

fn print_events(events: &[Value], progress: &Progress, structured: bool) {
    for e in events {
        if structured {
            println!("{e}");
        } else {
            progress.show(e);
        }
    }
}

/// The run's whole log, in one request however many tasks it has.
async fn run_log(client: &Client, id: &str) -> anyhow::Result<String> {
    Ok(client.text(&format!("/v1/runs/{id}/logs")).await?)
}

/// The lines of `log` (a run's log) of each of `tasks` (only `only`'s when given), task by
/// task in the order of `tasks`; a task that logged nothing is left out.
fn by_task<'a>(
    log: &'a str,
    tasks: &'a [(String, String)],
    only: Option<(&str, &str)>,
) -> Vec<(&'a str, &'a str, Vec<LogLine<'a>>)> {
    let mut lines: HashMap<(&str, &str), Vec<LogLine<'a>>> = HashMap::new();
    for line in log.lines().filter_map(LogLine::parse) {
        lines
            .entry((line.workflow, line.task))
            .or_default()
            .push(line);
    }
    tasks
        .iter()
        .filter(|(wf, task)| only.is_none_or(|o| o == (wf.as_str(), task.as_str())))
        .filter_map(|(wf, task)| {
            let lines = lines.remove(&(wf.as_str(), task.as_str()))?;
            Some((wf.as_str(), task.as_str(), lines))
        })
        .collect()
}

/// Whether event `e` is one to show when keeping to task `only`.
fn about(e: &Value, only: Option<(&str, &str)>) -> bool {
    match only {
        Some((wf, task)) => {
            (e["workflow"] == wf && e["task"] == task) || e["type"] == "run_finished"
        }
        None => true,
    }
}

/// A finished run's final state: from its recorded end, else as the daemon reports it.
async fn final_state(client: &Client, id: &str, events: &[Value]) -> anyhow::Result<String> {
    let state = events
        .iter()
        .rev()
        .find(|e| e["type"] == "run_finished")
        .and_then(|e| e["state"].as_str().map(str::to_string));
    Ok(match state {
        Some(state) => state,
        None => run_state(client, id).await?,
    })
}

/// A line of the run's log as the `task_log` event it was live.
fn logged_line(run: &str, line: &LogLine<'_>) -> Option<Value> {
    Some(json!({
        "at": line.at_millis()?,
        "run": run,
        "workflow": line.workflow,
        "task": line.task,
        "type": "task_log",
        "level": line.level.to_lowercase(),
        "message": line.message,
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
    out: &Output,
) -> anyhow::Result<i32> {
    let json_out = out.format() == output::Format::Json;
    let client = Client::new(socket);
    let v = client
        .json(Method::GET, &format!("/v1/runs/{id}"), None)
        .await?;
    // `latest` or a prefix, resolved once so every later request is about the same run.
    let id = v["run"]["id"].as_str().unwrap_or(id);
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
                return Err(super::exit::NotFound(format!(
                    "run `{id}` has no task `{name}` (WORKFLOW.TASK); its tasks: {}",
                    known.join(", ")
                ))
                .into());
            }
        },
    };
    if follow {
        let structured = matches!(out.format(), output::Format::Json | output::Format::Yaml);
        let mut progress = Progress::new();
        progress.logs = true;
        let finished = !matches!(v["run"]["state"].as_str(), Some("queued" | "running"));
        // What is recorded so far, shown the way `-f` showed it live; a run still going is
        // then followed from there, without printing any of it again.
        let (events, shown) = recorded(&client, id, &tasks, only).await?;
        print_events(&events, &progress, structured);
        let state = if finished {
            Some(final_state(&client, id, &events).await?)
        } else {
            follow_run(&client, id, &progress, structured, only, &shown).await?
        };
        return Ok(state.map_or(INTERRUPTED, |s| exit_code(&s)));
    }
    let mut all = Vec::new();
    let log = run_log(&client, id).await?;
    for (wf, task, lines) in by_task(&log, &tasks, only) {
        let text: String = lines.iter().map(|l| l.without_task() + "\n").collect();
        if json_out || out.format() == output::Format::Yaml {
            all.push(json!({ "workflow": wf, "task": task, "log": text }));
        } else if only.is_some() {
            print!("{text}");
        } else {
            println!("==> {wf}/{task} <==");
            print!("{text}");
        }
    }
    out.structured(&json!({ "run": id, "tasks": all }));
    Ok(exit::OK)
}

pub async fn cancel(socket: &Path, id: &str) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::POST, &format!("/v1/runs/{id}/cancel"), None)
        .await?;
    println!("cancelling {}", v["id"].as_str().unwrap_or(id));
    Ok(0)
}

pub async fn forget(socket: &Path, workflow: &str, task: &str) -> anyhow::Result<i32> {
    Client::new(socket)
        .json(
            Method::DELETE,
            &format!(
                "/v1/workflows/{}/deployments/{}",
                crate::client::encode(workflow),
                crate::client::encode(task)
            ),
            None,
        )
        .await?;
    println!(
        "forgot {workflow}/{task}: gantry no longer tracks it, and will neither destroy nor roll it back"
    );
    Ok(exit::OK)
}

pub async fn status(socket: &Path, out: &Output) -> anyhow::Result<i32> {
    let status: Status = Client::new(socket)
        .typed(Method::GET, "/v1/status", None::<&()>)
        .await?;
    if out.structured(&serde_json::to_value(&status)?) {
        return Ok(exit::OK);
    }
    let reload = &status.last_reload;
    println!(
        "gantry {} · configuration generation {} · {} running, {} queued",
        status.version,
        status.generation,
        status.running_runs.len(),
        status.queued_runs
    );
    for id in &status.running_runs {
        println!("  running {id}");
    }
    if !reload.ok && status.generation == 0 {
        println!(
            "NO CONFIGURATION IS ACTIVE: it did not load when the daemon started, so nothing can be deployed until it is fixed:"
        );
    } else if !reload.ok {
        println!("last reload FAILED; the previous configuration is active:");
    }
    for e in reload.errors.iter().filter(|_| !reload.ok) {
        println!("  {e}");
    }
    if !reload.restart_needed.is_empty() {
        println!("settings waiting for a restart:");
        for p in &reload.restart_needed {
            println!("  {p}");
        }
    }
    Ok(exit::OK)
}

/// `gantry workflows`: what the daemon has active.
pub async fn workflows(socket: &Path, out: &Output) -> anyhow::Result<i32> {
    let v = Client::new(socket)
        .json(Method::GET, "/v1/workflows", None)
        .await?;
    if out.structured(&v) {
        return Ok(exit::OK);
    }
    let count = |x: &Value| x.as_array().map_or(0, Vec::len).to_string();
    let rows: Vec<Vec<String>> = v["workflows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let mut row = vec![
                w["name"].as_str().unwrap_or("").to_string(),
                count(&w["tasks"]),
                count(&w["steps"]),
                if w["auto_deploy"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                }
                .into(),
            ];
            if out.wide() {
                row.push(w["file"].as_str().unwrap_or("").to_string());
                row.push(
                    w["digest"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(12)
                        .collect(),
                );
            }
            row.push(w["description"].as_str().unwrap_or("").to_string());
            row
        })
        .collect();
    let header: &[&str] = if out.wide() {
        &[
            "WORKFLOW",
            "TASKS",
            "STEPS",
            "AUTO_DEPLOY",
            "FILE",
            "DIGEST",
            "DESCRIPTION",
        ]
    } else {
        &["WORKFLOW", "TASKS", "STEPS", "AUTO_DEPLOY", "DESCRIPTION"]
    };
    print!("{}", output::table(header, &rows));
    Ok(exit::OK)
}

/// `gantry version`: this CLI's version, and the daemon's when one answers.
pub async fn version(socket: &Path, out: &Output) -> anyhow::Result<i32> {
    let client = env!("CARGO_PKG_VERSION");
    let daemon = Client::new(socket)
        .typed::<Status>(Method::GET, "/v1/status", None::<&()>)
        .await
        .map(|s| s.version);
    let v = json!({
        "client": client,
        "daemon": daemon.as_ref().ok(),
        "contract_majors": crate::wasm::bindings::CONTRACTS,
    });
    if out.structured(&v) {
        return Ok(exit::OK);
    }
    println!("gantry {client}");
    match daemon {
        Ok(version) => println!("daemon {version}"),
        Err(e) => println!("daemon: {e}"),
    }
    Ok(exit::OK)
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
