//! Runs in flight: starting them, their cancel handles, and the live event feed the API
//! streams from (events are numbered by the store, so a client can resume with `since`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use super::metrics::{Metrics, Timed};
use crate::engine::events::{Event, EventKind, EventSink, RunState};
use crate::engine::plan;
use crate::engine::run::{RunOptions, RunReport, execute};
use crate::host::LogSink;
use crate::store::Store;
use crate::store::logs::FileLogs;
use crate::store::writer::EventWriter;
use crate::wasm::bindings::log::Level;
use crate::wasm::scratch::ScratchPool;
use crate::wasm::task_runner::{LogFactory, PluginRunner, TaskRoots};

/// The trigger of runs started by a configuration change.
pub const AUTO_DEPLOY: &str = "auto_deploy";

/// One event as the API sends it.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The store's sequence number; 0 for a task's log line, which lives in the task's log
    /// file rather than the store, and is only streamed live.
    pub seq: i64,
    pub run: String,
    pub json: String,
    pub last: bool,
}

/// A run waiting for its workflows: runs that share a workflow go one at a time, in order.
struct Waiting {
    ticket: u64,
    id: String,
    workflows: Vec<String>,
    trigger: String,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Queue {
    next_ticket: u64,
    waiting: Vec<Waiting>,
    /// Workflows a run is executing now.
    busy: HashSet<String>,
}

impl Queue {
    /// Takes the workflows of `ticket` if none is busy and no earlier waiting run wants one.
    fn claim(&mut self, ticket: u64) -> bool {
        let Some(pos) = self.waiting.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        let me = &self.waiting[pos];
        let blocked = me.workflows.iter().any(|wf| {
            self.busy.contains(wf)
                || self.waiting[..pos]
                    .iter()
                    .any(|earlier| earlier.workflows.contains(wf))
        });
        if blocked {
            return false;
        }
        let me = self.waiting.remove(pos);
        self.busy.extend(me.workflows);
        true
    }
}

pub struct RunManager {
    store: Arc<Store>,
    state_dir: PathBuf,
    running: Mutex<HashMap<String, CancellationToken>>,
    queue: Mutex<Queue>,
    queue_changed: Notify,
    idle: Notify,
    feed: broadcast::Sender<Stored>,
    /// Records each event off the scheduler's thread, then publishes it with its sequence
    /// number (never before it is committed, so a stream resumed from the store agrees).
    events: Arc<EventWriter>,
    pub metrics: Arc<Metrics>,
    /// Scratch directories, shared by every run (see `wasm::scratch`).
    scratch: Arc<ScratchPool>,
}

/// Task logs to their files and, line by line, to live event streams.
struct LiveLogs {
    files: FileLogs,
    feed: broadcast::Sender<Stored>,
}

struct LiveSink {
    file: Arc<dyn LogSink>,
    feed: broadcast::Sender<Stored>,
    run: String,
    workflow: String,
    task: String,
}

impl LogFactory for LiveLogs {
    fn for_task(&self, run: &str, workflow: &str, task: &str) -> Arc<dyn LogSink> {
        Arc::new(LiveSink {
            file: self.files.for_task(run, workflow, task),
            feed: self.feed.clone(),
            run: run.to_string(),
            workflow: workflow.to_string(),
            task: task.to_string(),
        })
    }
}

impl LogSink for LiveSink {
    fn line(&self, level: Level, message: &str, fields: &[(String, String)]) {
        self.file.line(level, message, fields);
        if self.feed.receiver_count() == 0 {
            return;
        }
        let level = match level {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        let json = serde_json::json!({
            "at": crate::store::now_millis(),
            "run": self.run,
            "workflow": self.workflow,
            "task": self.task,
            "type": "task_log",
            "level": level,
            "message": message,
        });
        let _ = self.feed.send(Stored {
            seq: 0,
            run: self.run.clone(),
            json: json.to_string(),
            last: false,
        });
    }
}

impl RunManager {
    pub fn new(store: Arc<Store>, state_dir: &Path) -> std::io::Result<Self> {
        let (feed, _) = broadcast::channel(4096);
        let publish = feed.clone();
        let events = EventWriter::start(
            store.clone(),
            Box::new(move |event: &Event, seq: i64, json: &str| {
                let _ = publish.send(Stored {
                    seq,
                    run: event.run.clone(),
                    json: json.to_string(),
                    last: matches!(event.kind, EventKind::RunFinished { .. }),
                });
            }),
        )?;
        let scratch = TaskRoots::in_state_dir(state_dir).scratch_pool()?;
        Ok(RunManager {
            scratch,
            store,
            state_dir: state_dir.to_path_buf(),
            running: Mutex::new(HashMap::new()),
            queue: Mutex::new(Queue::default()),
            queue_changed: Notify::new(),
            idle: Notify::new(),
            feed,
            events: Arc::new(events),
            metrics: Arc::new(Metrics::default()),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stored> {
        self.feed.subscribe()
    }

    /// Runs executing now; those waiting for their workflows are [`Self::queued`].
    pub fn running(&self) -> Vec<String> {
        let waiting: HashSet<String> = self
            .queue
            .lock()
            .map(|q| q.waiting.iter().map(|w| w.id.clone()).collect())
            .unwrap_or_default();
        let mut ids: Vec<String> = self
            .running
            .lock()
            .map(|r| {
                r.keys()
                    .filter(|id| !waiting.contains(*id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Runs waiting for a workflow another run is deploying.
    pub fn queued(&self) -> usize {
        self.queue.lock().map(|q| q.waiting.len()).unwrap_or(0)
    }

    fn sink(&self) -> Arc<EventWriter> {
        self.events.clone()
    }

    /// Queues a run of `plan` and returns at once. It starts when no earlier run still holds
    /// one of its workflows. An `auto_deploy` run replaces an auto-deploy of the same
    /// workflows that is still waiting: only the newest configuration needs deploying.
    pub fn start(
        self: &Arc<Self>,
        id: String,
        plan: plan::Plan,
        registry: Arc<crate::wasm::Registry>,
        clusters: Arc<crate::host::kube::Clusters>,
        mut opts: RunOptions,
        trigger: &str,
    ) {
        let cancel = CancellationToken::new();
        let workflows: Vec<String> = plan.workflows.iter().map(|w| w.name.clone()).collect();
        let ticket = {
            let mut queue = self
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if trigger == AUTO_DEPLOY {
                for w in &queue.waiting {
                    if w.trigger == AUTO_DEPLOY && w.workflows == workflows {
                        tracing::info!(run = %w.id, by = %id, "queued auto-deploy superseded");
                        self.supersede(&w.id, &id);
                        w.cancel.cancel();
                    }
                }
            }
            queue.next_ticket += 1;
            let ticket = queue.next_ticket;
            queue.waiting.push(Waiting {
                ticket,
                id: id.clone(),
                workflows: workflows.clone(),
                trigger: trigger.to_string(),
                cancel: cancel.clone(),
            });
            ticket
        };
        if let Ok(mut running) = self.running.lock() {
            running.insert(id.clone(), cancel.clone());
        }
        let runner = Arc::new(Timed {
            inner: PluginRunner::new(
                registry,
                TaskRoots::in_state_dir(&self.state_dir),
                self.scratch.clone(),
                Arc::new(LiveLogs {
                    files: FileLogs::new(self.state_dir.join("logs")),
                    feed: self.feed.clone(),
                }),
                clusters,
            ),
            metrics: self.metrics.clone(),
        });
        opts.run = id.clone();
        let manager = self.clone();
        let trigger = trigger.to_string();
        tokio::spawn(async move {
            let claimed = manager.wait_turn(ticket, &cancel).await;
            if claimed {
                tracing::info!(run = %id, workflows = %workflows.join(","), trigger = %trigger, "run started");
                let started = std::time::Instant::now();
                let report = execute(
                    plan,
                    runner,
                    manager.store.clone(),
                    manager.sink(),
                    opts,
                    cancel,
                )
                .await;
                manager.observe(&report, started.elapsed());
                tracing::info!(
                    run = %id,
                    workflows = %workflows.join(","),
                    trigger = %trigger,
                    state = report.state.as_str(),
                    "run finished"
                );
            } else {
                manager.finish_unstarted(&id);
            }
            // The run's events are in the store before anyone is told it has ended.
            manager.events.flush().await;
            manager.release(&id, if claimed { &workflows } else { &[] });
        });
    }

    /// Waits until the run may start; false if it was cancelled while waiting.
    async fn wait_turn(&self, ticket: u64, cancel: &CancellationToken) -> bool {
        loop {
            let changed = self.queue_changed.notified();
            {
                let mut queue = self
                    .queue
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if cancel.is_cancelled() {
                    queue.waiting.retain(|w| w.ticket != ticket);
                    drop(queue);
                    self.queue_changed.notify_waiters();
                    return false;
                }
                if queue.claim(ticket) {
                    return true;
                }
            }
            tokio::select! {
                () = changed => {}
                () = cancel.cancelled() => {}
            }
        }
    }

    fn supersede(&self, id: &str, by: &str) {
        self.sink().emit(Event {
            at: std::time::SystemTime::now(),
            run: id.to_string(),
            workflow: None,
            task: None,
            kind: EventKind::RunSuperseded { by: by.to_string() },
            message: format!("a newer configuration is queued for deployment in run {by}"),
        });
    }

    /// A run cancelled before it started still ends, as `cancelled`, with an event.
    fn finish_unstarted(&self, id: &str) {
        self.sink().emit(Event {
            at: std::time::SystemTime::now(),
            run: id.to_string(),
            workflow: None,
            task: None,
            kind: EventKind::RunFinished {
                state: RunState::Cancelled,
            },
            message: "cancelled before it started".into(),
        });
    }

    fn observe(&self, report: &RunReport, took: std::time::Duration) {
        self.metrics.run_seconds.observe(took);
        for t in &report.tasks {
            if let (Some(s), Some(f)) = (t.started, t.finished) {
                self.metrics
                    .task_seconds
                    .observe(f.saturating_duration_since(s));
            }
        }
    }

    fn release(&self, id: &str, workflows: &[String]) {
        if let Ok(mut queue) = self.queue.lock() {
            for wf in workflows {
                queue.busy.remove(wf);
            }
        }
        self.queue_changed.notify_waiters();
        if let Ok(mut running) = self.running.lock() {
            running.remove(id);
        }
        self.idle.notify_waiters();
    }

    /// False when the run is not running (finished or unknown).
    pub fn cancel(&self, id: &str) -> bool {
        match self.running.lock().ok().and_then(|r| r.get(id).cloned()) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    pub fn cancel_all(&self) {
        if let Ok(running) = self.running.lock() {
            running.values().for_each(CancellationToken::cancel);
        }
    }

    /// Marks the scratch pool for the next process once no run is left (see
    /// `ScratchPool::close`).
    pub fn close_scratch(&self) {
        self.scratch.close();
    }

    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            if self.running.lock().map(|r| r.is_empty()).unwrap_or(true) {
                return;
            }
            notified.await;
        }
    }
}
