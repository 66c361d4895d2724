//! Live progress: one line per task state change with the time since the task started;
//! colour only on a terminal. Works on the JSON form of events, so it serves both local
//! runs and runs followed over the API.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::engine::events::{Event, EventSink};

pub struct Progress {
    pub started: Instant,
    task_started: Mutex<BTreeMap<(String, String), Instant>>,
    color: bool,
    /// Also print the tasks' log lines (`gantry logs -f`).
    pub logs: bool,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            started: Instant::now(),
            task_started: Mutex::new(BTreeMap::new()),
            color: std::io::stdout().is_terminal(),
            logs: false,
        }
    }

    /// Prints the line for one event, if it is one people follow.
    pub fn show(&self, e: &Value) {
        // What tasks and plugins wrote reaches the terminal escaped.
        let text = |k: &str| {
            crate::logging::escape_control(e[k].as_str().unwrap_or_default()).into_owned()
        };
        let (kind, message) = (text("type"), text("message"));
        let at = self.started.elapsed().as_secs_f64();
        let (wf, task) = (text("workflow"), text("task"));
        if task.is_empty() {
            match kind.as_str() {
                "barrier_reached" => println!(
                    "{at:>7.1}s  barrier {} reached by every workflow",
                    text("barrier")
                ),
                "barrier_broken" => println!("{at:>7.1}s  {wf}: {message}"),
                "run_started" => println!("{at:>7.1}s  run started"),
                "run_superseded" => println!("{at:>7.1}s  {message}"),
                "run_finished" if message.is_empty() => {
                    println!("{at:>7.1}s  run {}", text("state"))
                }
                "run_finished" => println!("{at:>7.1}s  run {}: {message}", text("state")),
                _ => {}
            }
            return;
        }
        if kind == "task_log" {
            if self.logs {
                println!("{at:>7.1}s  {wf} {task:<24} | {message}");
            }
            return;
        }
        let key = (wf.clone(), task.clone());
        let mut started = self.task_started.lock().unwrap_or_else(|p| p.into_inner());
        let (word, colour) = match kind.as_str() {
            "task_started" => {
                started.insert(key.clone(), Instant::now());
                let attempt = e["attempt"].as_u64().unwrap_or(1);
                (
                    if attempt > 1 {
                        format!("started (attempt {attempt})")
                    } else {
                        "started".into()
                    },
                    "36",
                )
            }
            "task_succeeded" => ("succeeded".into(), "32"),
            "task_failed" => ("FAILED".into(), "31"),
            "task_skipped" => ("skipped".into(), "33"),
            "task_cancelled" => ("cancelled".into(), "33"),
            "task_retrying" => (
                format!(
                    "retrying in {:.1}s",
                    e["delay_ms"].as_f64().unwrap_or(0.0) / 1000.0
                ),
                "33",
            ),
            "task_rolled_back" => ("rolled back".into(), "35"),
            "rollback_unsupported" => ("cannot roll back".into(), "33"),
            "rollback_failed" => ("ROLLBACK FAILED".into(), "31"),
            "cleanup_destroyed" => ("removed from the workflow: destroyed".into(), "35"),
            "cleanup_failed" => ("cleanup FAILED".into(), "31"),
            "task_output" => (format!("output {}={}", text("key"), text("value")), "0"),
            _ => return,
        };
        let elapsed = match kind.as_str() {
            "task_started" | "task_output" => String::new(),
            _ => started
                .get(&key)
                .map(|s| format!(" ({:.1}s)", s.elapsed().as_secs_f64()))
                .unwrap_or_default(),
        };
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        let word = if self.color {
            format!("\x1b[{colour}m{word}\x1b[0m")
        } else {
            word
        };
        println!("{at:>7.1}s  {wf} {task:<24} {word}{elapsed}{detail}");
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        if let Ok(v) = serde_json::to_value(&event) {
            self.show(&v);
        }
    }
}
