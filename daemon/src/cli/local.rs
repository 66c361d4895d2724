//! `gantry validate` and `gantry run`: the configuration checked offline, and a deployment
//! run in this process (no daemon), with live progress and the same history the daemon keeps.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::plugins::load_registry;
use crate::config::validate::{ValidConfig, validate_workflows};
use crate::engine::events::{Event, EventKind, EventSink, RunState};
use crate::engine::plan;
use crate::engine::run::{RunOptions, execute};
use crate::store::Store;
use crate::store::logs::FileLogs;
use crate::wasm::Registry;
use crate::wasm::task_runner::PluginRunner;

async fn load_valid(
    config_dir: &Path,
    state_dir: &Path,
) -> anyhow::Result<Result<(ValidConfig, Registry), Vec<String>>> {
    let (daemon, _host, registry) = load_registry(config_dir, state_dir).await?;
    let mut problems: Vec<String> = registry
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.source, p.message))
        .collect();
    match validate_workflows(config_dir, daemon, &registry).await {
        Ok(valid) if problems.is_empty() => Ok(Ok((valid, registry))),
        Ok(_) => Ok(Err(problems)),
        Err(errors) => {
            problems.extend(errors.iter().map(ToString::to_string));
            Ok(Err(problems))
        }
    }
}

pub async fn validate(config_dir: &Path, state_dir: &Path) -> anyhow::Result<i32> {
    match load_valid(config_dir, state_dir).await? {
        Ok((valid, registry)) => {
            let tasks: usize = valid.workflows.values().map(|w| w.tasks.len()).sum();
            println!(
                "ok: {} workflows, {tasks} tasks, checked against {} plugins",
                valid.workflows.len(),
                registry.plugins().len()
            );
            Ok(0)
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            println!(
                "{} error{} in {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                config_dir.display()
            );
            Ok(1)
        }
    }
}

pub async fn run(config_dir: &Path, state_dir: &Path, names: &[String]) -> anyhow::Result<i32> {
    let (valid, registry) = match load_valid(config_dir, state_dir).await? {
        Ok(v) => v,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!(
                "gantry: the configuration in {} is invalid; nothing was deployed",
                config_dir.display()
            );
            return Ok(1);
        }
    };
    let mut selected = Vec::new();
    for name in names {
        match valid.workflows.get(name) {
            Some(wf) => selected.push(wf.clone()),
            None => {
                let known: Vec<&str> = valid.workflows.keys().map(String::as_str).collect();
                eprintln!(
                    "gantry: no workflow `{name}` in {} (workflows: {})",
                    config_dir.display(),
                    known.join(", ")
                );
                return Ok(1);
            }
        }
    }
    let plan = match plan::compile(selected) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                eprintln!("{}:{}: {}", e.at.line, e.at.column, e.message);
            }
            return Ok(1);
        }
    };
    let store = Arc::new(Store::open(state_dir)?);
    let run_id = new_run_id();
    store.create_run(&run_id, names, "cli")?;
    let runner = Arc::new(PluginRunner::new(
        Arc::new(registry),
        state_dir.join("scratch"),
        Arc::new(FileLogs {
            dir: state_dir.join("logs"),
        }),
    ));
    let progress = Arc::new(Progress::new());
    let sink = Arc::new(Tee(vec![store.clone(), progress.clone()]));
    let mut opts = RunOptions::new(run_id.clone());
    opts.config_dir = Some(config_dir.to_path_buf());
    opts.env = std::env::vars().collect();
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("cancelling the run…");
            on_signal.cancel();
        }
    });
    println!("run {run_id}: {}", names.join(", "));
    let report = execute(plan, runner, store.clone(), sink, opts, cancel).await;
    println!(
        "run {run_id} {} in {:.1}s; logs in {}",
        report.state.as_str(),
        progress.started.elapsed().as_secs_f64(),
        state_dir.join("logs").join(&run_id).display()
    );
    Ok(match report.state {
        RunState::Succeeded => 0,
        RunState::SucceededWithErrors => 3,
        _ => 1,
    })
}

fn new_run_id() -> String {
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = stamp.chars().filter(char::is_ascii_digit).collect();
    format!("r{compact}-{:04x}", fastrand::u16(..))
}

/// Sends every event to each sink in turn.
pub struct Tee(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Tee {
    fn emit(&self, event: Event) {
        for sink in &self.0 {
            sink.emit(event.clone());
        }
    }
}

/// One line per task state change, with the time since the task started.
struct Progress {
    started: Instant,
    task_started: Mutex<BTreeMap<(String, String), Instant>>,
    color: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            task_started: Mutex::new(BTreeMap::new()),
            color: std::io::stdout().is_terminal(),
        }
    }
}

impl EventSink for Progress {
    fn emit(&self, e: Event) {
        let (Some(wf), Some(task)) = (e.workflow.clone(), e.task.clone()) else {
            if let EventKind::BarrierReached { barrier } = &e.kind {
                println!(
                    "{:>7.1}s  barrier {barrier} reached by every workflow",
                    self.started.elapsed().as_secs_f64()
                );
            }
            if let (EventKind::BarrierBroken { .. }, Some(wf)) = (&e.kind, &e.workflow) {
                println!(
                    "{:>7.1}s  {wf}: {}",
                    self.started.elapsed().as_secs_f64(),
                    e.message
                );
            }
            return;
        };
        let key = (wf.clone(), task.clone());
        let mut started = self.task_started.lock().unwrap_or_else(|p| p.into_inner());
        let (word, colour) = match &e.kind {
            EventKind::TaskStarted { attempt } => {
                started.insert(key.clone(), Instant::now());
                (
                    if *attempt > 1 {
                        format!("started (attempt {attempt})")
                    } else {
                        "started".into()
                    },
                    "36",
                )
            }
            EventKind::TaskSucceeded => ("succeeded".into(), "32"),
            EventKind::TaskFailed => ("FAILED".into(), "31"),
            EventKind::TaskSkipped => ("skipped".into(), "33"),
            EventKind::TaskCancelled => ("cancelled".into(), "33"),
            EventKind::TaskRetrying { delay_ms, .. } => (
                format!("retrying in {:.1}s", *delay_ms as f64 / 1000.0),
                "33",
            ),
            EventKind::TaskRolledBack => ("rolled back".into(), "35"),
            EventKind::RollbackUnsupported => ("cannot roll back".into(), "33"),
            EventKind::RollbackFailed => ("ROLLBACK FAILED".into(), "31"),
            EventKind::CleanupDestroyed => ("removed from the workflow: destroyed".into(), "35"),
            EventKind::CleanupFailed => ("cleanup FAILED".into(), "31"),
            EventKind::TaskOutput { key: k, value } => (format!("output {k}={value}"), "0"),
            _ => return,
        };
        let elapsed = started
            .get(&key)
            .map(|s| format!(" ({:.1}s)", s.elapsed().as_secs_f64()))
            .unwrap_or_default();
        let elapsed = if matches!(
            e.kind,
            EventKind::TaskStarted { .. } | EventKind::TaskOutput { .. }
        ) {
            String::new()
        } else {
            elapsed
        };
        let detail = if e.message.is_empty() {
            String::new()
        } else {
            format!(": {}", e.message)
        };
        let word = if self.color {
            format!("\x1b[{colour}m{word}\x1b[0m")
        } else {
            word
        };
        println!(
            "{:>7.1}s  {wf} {task:<24} {word}{elapsed}{detail}",
            self.started.elapsed().as_secs_f64()
        );
    }
}
