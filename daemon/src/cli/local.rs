//! `gantry validate` and `gantry run`: the configuration checked offline, and a deployment
//! run in this process (no daemon), with live progress and the same history the daemon keeps.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use crate::config::template;
use crate::engine::events::{Event, EventSink, RunState};
use crate::engine::plan;
use crate::engine::run::{RunOptions, execute};
use crate::load::{Loaded, Loader};
use crate::store::Store;
use crate::store::logs::FileLogs;
use crate::store::writer::EventWriter;
use crate::wasm::task_runner::PluginRunner;

pub async fn validate(config_dir: &Path, state_dir: &Path) -> anyhow::Result<i32> {
    match Loader::open(config_dir, state_dir)?.load().await {
        Ok(Loaded {
            config: valid,
            registry,
        }) => {
            for warning in unset_env(&valid) {
                println!("{warning}");
            }
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

/// Warnings for each `${env.NAME}` a task or hook reads that is not set here: a run started
/// from this environment would fail at that task. Only a warning, because the daemon's
/// environment, where runs happen, may well differ from the shell `validate` runs in.
fn unset_env(valid: &crate::load::ValidConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    for wf in valid.workflows.values() {
        for task in &wf.tasks {
            let hooks = task.hooks.all().chain(wf.hooks.all());
            let places = task
                .params
                .iter()
                .map(|(key, value)| (value, task.param_at.get(key).copied().unwrap_or(task.at)))
                .chain(hooks.flat_map(|h| h.params.values().map(move |v| (v, h.at))));
            for (value, at) in places {
                let mut texts = Vec::new();
                plan::strings_in(value, &mut texts);
                let names = texts
                    .iter()
                    .filter_map(|t| template::references(t).ok())
                    .flatten()
                    .filter_map(|r| match r {
                        template::Reference::Env(name) => Some(name),
                        _ => None,
                    });
                for name in names.filter(|n| std::env::var_os(n).is_none()) {
                    warnings.push(format!(
                        "{}:{}:{}: warning: task `{}`: ${{env.{name}}} is not set in this environment; a run started here would fail at this task",
                        wf.file.display(),
                        at.line,
                        at.column,
                        task.id
                    ));
                }
            }
        }
    }
    warnings.dedup();
    warnings
}

pub async fn run(
    config_dir: &Path,
    state_dir: &Path,
    names: &[String],
    sim: bool,
) -> anyhow::Result<i32> {
    let _lock = crate::service::lock::StateLock::acquire(state_dir)?;
    // The loader owns the Wasm engine, whose ticker enforces CPU budgets and lets Ctrl-C
    // stop a spinning plugin: it lives until the run ends.
    let loader = Loader::open(config_dir, state_dir)?;
    let Loaded {
        config: valid,
        registry,
    } = match loader.load().await {
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
    let (_simulator, clusters) =
        crate::sim::clusters(sim, state_dir, &valid.daemon.clusters, config_dir).await?;
    // Before the run exists: a signal from then on cancels it, however late the task that
    // waits for one is first polled.
    let stop =
        StopSignals::register().context("installing the handlers of Ctrl-C, SIGTERM and SIGHUP")?;
    let store = Arc::new(Store::open(state_dir)?);
    let run_id = crate::store::new_run_id();
    store.create_run(&run_id, names, "cli")?;
    let roots = crate::wasm::task_runner::TaskRoots::in_state_dir(state_dir);
    let scratch = roots.scratch_pool().with_context(|| {
        format!(
            "opening the scratch directories under {}",
            roots.scratch.display()
        )
    })?;
    let runner = Arc::new(PluginRunner::new(
        registry,
        roots,
        scratch.clone(),
        Arc::new(FileLogs::new(state_dir.join("logs"))),
        clusters,
    ));
    let started = std::time::Instant::now();
    let progress = Arc::new(Progress::new());
    let writer = Arc::new(EventWriter::start(store.clone(), Box::new(|_, _, _| {}))?);
    let sink = Arc::new(Tee(vec![writer.clone(), progress.clone()]));
    let opts = RunOptions::for_config(run_id.clone(), config_dir, &valid.daemon.daemon);
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        stop.requested().await;
        // Stderr may be a terminal that is gone (SIGHUP): a failed write is no reason to
        // stop cancelling.
        let _ = writeln!(std::io::stderr(), "cancelling the run…");
        on_signal.cancel();
    });
    let _ = writeln!(std::io::stdout(), "run {run_id}: {}", names.join(", "));
    let report = execute(plan, runner, store.clone(), sink, opts, cancel).await;
    scratch.close();
    writer.flush().await;
    crate::service::history::prune(&store, state_dir, &valid.daemon.history);
    let _ = writeln!(
        std::io::stdout(),
        "run {run_id} {} in {:.1}s; logs in {}",
        report.state.as_str(),
        started.elapsed().as_secs_f64(),
        FileLogs::run_path(&state_dir.join("logs"), &run_id).display()
    );
    Ok(match report.state {
        RunState::Succeeded => 0,
        RunState::SucceededWithErrors => 3,
        _ => 1,
    })
}

/// Ctrl-C, SIGTERM and SIGHUP (the terminal closed): a local run is cancelled by any of
/// them, so its programs are stopped rather than left running without it. Each is caught
/// from `register` on, not from when `requested` is first polled.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn requested(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
            _ = self.hangup.recv() => {}
        }
    }
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
