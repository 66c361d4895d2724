//! Live progress: one line per task state change. Times come from the events themselves
//! (relative to the run's start), so a run followed live and one replayed from history read
//! the same. Colour only on a terminal. Works on the JSON form of events, so it serves both
//! local runs and runs followed over the API.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use serde_json::Value;

use crate::engine::events::{Event, EventSink};

pub struct Progress {
    clock: Mutex<Clock>,
    color: bool,
    /// Also print the tasks' log lines (`gantry logs -f`).
    pub logs: bool,
}

/// When the run and each task started, in the events' milliseconds since the epoch.
#[derive(Default)]
struct Clock {
    run_started: Option<i64>,
    task_started: BTreeMap<(String, String), i64>,
    /// The final state, once `run_finished` has been seen.
    finished: Option<String>,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        Progress {
            clock: Mutex::new(Clock::default()),
            color: std::io::stdout().is_terminal(),
            logs: false,
        }
    }

    /// The run's final state, if its `run_finished` event was shown.
    pub fn finished(&self) -> Option<String> {
        self.clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .finished
            .clone()
    }

    /// Prints the line for one event, if it is one people follow. A reader that went away
    /// (a closed pipe) is no reason to stop a run, nor to panic.
    pub fn show(&self, e: &Value) {
        if let Some(line) = self.line(e) {
            let _ = writeln!(std::io::stdout().lock(), "{line}");
        }
    }

    /// The line for one event, if it is one people follow.
    pub fn line(&self, e: &Value) -> Option<String> {
        // What tasks and plugins wrote reaches the terminal escaped.
        let text = |k: &str| {
            crate::logging::escape_control(e[k].as_str().unwrap_or_default()).into_owned()
        };
        let (kind, message) = (text("type"), text("message"));
        let (wf, task) = (text("workflow"), text("task"));
        let now = e["at"].as_i64().unwrap_or_else(crate::store::now_millis);
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        if kind == "run_started" {
            clock.run_started = Some(now);
        }
        let origin = *clock.run_started.get_or_insert(now);
        let at = (now - origin) as f64 / 1000.0;
        if task.is_empty() {
            return match kind.as_str() {
                "barrier_reached" => Some(format!(
                    "{at:>7.1}s  barrier {} reached by every workflow",
                    text("barrier")
                )),
                "barrier_broken" => Some(format!("{at:>7.1}s  {wf}: {message}")),
                "run_started" => Some(format!("{at:>7.1}s  run started")),
                "run_superseded" => Some(format!("{at:>7.1}s  {message}")),
                "run_finished" => {
                    let state = text("state");
                    clock.finished = Some(state.clone());
                    Some(match message.is_empty() {
                        true => format!("{at:>7.1}s  run {state}"),
                        false => format!("{at:>7.1}s  run {state}: {message}"),
                    })
                }
                _ => None,
            };
        }
        if kind == "task_log" {
            return self
                .logs
                .then(|| format!("{at:>7.1}s  {wf} {task:<24} | {message}"));
        }
        let key = (wf.clone(), task.clone());
        let (word, colour) = match kind.as_str() {
            "task_started" => {
                clock.task_started.insert(key.clone(), now);
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
            "hook_decision" => (
                format!(
                    "{} hook `{}`: {}",
                    text("phase"),
                    text("hook"),
                    text("decision")
                ),
                "0",
            ),
            "cleanup_started" => {
                clock.task_started.insert(key.clone(), now);
                ("removed from the workflow: cleanup started".into(), "35")
            }
            "cleanup_destroyed" => ("cleanup: destroyed".into(), "35"),
            "cleanup_failed" => ("cleanup FAILED".into(), "31"),
            "cleanup_pending" => ("cleanup PENDING".into(), "33"),
            "task_output" => (format!("output {}={}", text("key"), text("value")), "0"),
            _ => return None,
        };
        let elapsed = match kind.as_str() {
            "task_started" | "cleanup_started" | "task_output" | "hook_decision" => String::new(),
            _ => clock
                .task_started
                .get(&key)
                .map(|s| format!(" ({:.1}s)", (now - s) as f64 / 1000.0))
                .unwrap_or_default(),
        };
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        let word = if self.color && colour != "0" {
            format!("\x1b[{colour}m{word}\x1b[0m")
        } else {
            word
        };
        Some(format!(
            "{at:>7.1}s  {wf} {task:<24} {word}{elapsed}{detail}"
        ))
    }
}

impl EventSink for Progress {
    fn emit(&self, event: Event) {
        if let Ok(v) = serde_json::to_value(&event) {
            self.show(&v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_come_from_the_events_relative_to_the_run_start() {
        let p = Progress {
            logs: true,
            ..Progress::new()
        };
        let ev = |at: i64, kind: &str| json!({"at": at, "run": "r", "workflow": "w", "task": "t", "type": kind});
        assert_eq!(
            p.line(&json!({"at": 10_000, "run": "r", "type": "run_started"}))
                .as_deref(),
            Some("    0.0s  run started")
        );
        assert!(
            p.line(&ev(10_500, "task_started"))
                .unwrap()
                .starts_with("    0.5s  w t")
        );
        let mut log = ev(12_000, "task_log");
        log["message"] = json!("hello");
        assert!(
            p.line(&log).unwrap().starts_with("    2.0s  w t"),
            "{:?}",
            p.line(&log)
        );
        let done = p.line(&ev(13_500, "task_succeeded")).unwrap();
        assert!(
            done.starts_with("    3.5s") && done.ends_with("succeeded (3.0s)"),
            "{done}"
        );
        let mut cleanup = ev(14_000, "cleanup_started");
        cleanup["task"] = json!("old");
        assert!(p.line(&cleanup).unwrap().contains("cleanup started"));
        cleanup["type"] = json!("cleanup_failed");
        cleanup["at"] = json!(15_000);
        cleanup["message"] = json!("boom");
        let failed = p.line(&cleanup).unwrap();
        assert!(failed.ends_with("cleanup FAILED (1.0s): boom"), "{failed}");
        assert_eq!(p.finished(), None);
        p.line(&json!({"at": 16_000, "run": "r", "type": "run_finished", "state": "failed"}));
        assert_eq!(p.finished().as_deref(), Some("failed"));
    }
}
