//! Runs in flight: starting them, their cancel handles, and the live event feed the API
//! streams from (events are numbered by the store, so a client can resume with `since`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::engine::events::{Event, EventKind, EventSink};
use crate::engine::plan;
use crate::engine::run::{RunOptions, execute};
use crate::store::Store;
use crate::store::logs::FileLogs;
use crate::wasm::task_runner::PluginRunner;

/// One stored event as the API sends it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub seq: i64,
    pub run: String,
    pub json: String,
    pub last: bool,
}

pub struct RunManager {
    store: Arc<Store>,
    state_dir: PathBuf,
    running: Mutex<HashMap<String, CancellationToken>>,
    idle: Notify,
    feed: broadcast::Sender<Stored>,
}

/// Records each event, then publishes it with its sequence number.
struct Recorder {
    store: Arc<Store>,
    feed: broadcast::Sender<Stored>,
}

impl EventSink for Recorder {
    fn emit(&self, event: Event) {
        match self.store.record(&event) {
            Ok(seq) => {
                let last = matches!(event.kind, EventKind::RunFinished { .. });
                let json = serde_json::to_string(&event).unwrap_or_default();
                let _ = self.feed.send(Stored {
                    seq,
                    run: event.run.clone(),
                    json,
                    last,
                });
            }
            Err(e) => tracing::error!(error = %e, run = %event.run, "could not record an event"),
        }
    }
}

impl RunManager {
    pub fn new(store: Arc<Store>, state_dir: &Path) -> Self {
        let (feed, _) = broadcast::channel(4096);
        RunManager {
            store,
            state_dir: state_dir.to_path_buf(),
            running: Mutex::new(HashMap::new()),
            idle: Notify::new(),
            feed,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Stored> {
        self.feed.subscribe()
    }

    pub fn running(&self) -> Vec<String> {
        self.running
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts a run of `plan` in the background and returns at once.
    pub fn start(
        self: &Arc<Self>,
        id: String,
        plan: plan::Plan,
        registry: Arc<crate::wasm::Registry>,
        mut opts: RunOptions,
    ) {
        let cancel = CancellationToken::new();
        if let Ok(mut running) = self.running.lock() {
            running.insert(id.clone(), cancel.clone());
        }
        let runner = Arc::new(PluginRunner::new(
            registry,
            self.state_dir.join("scratch"),
            Arc::new(FileLogs {
                dir: self.state_dir.join("logs"),
            }),
        ));
        let sink = Arc::new(Recorder {
            store: self.store.clone(),
            feed: self.feed.clone(),
        });
        opts.run = id.clone();
        let store = self.store.clone();
        let manager = self.clone();
        tokio::spawn(async move {
            let report = execute(plan, runner, store, sink, opts, cancel).await;
            tracing::info!(run = %id, state = report.state.as_str(), "run finished");
            if let Ok(mut running) = manager.running.lock() {
                running.remove(&id);
            }
            manager.idle.notify_waiters();
        });
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
