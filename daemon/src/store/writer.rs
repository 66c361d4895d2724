//! Writing events off the scheduler's thread. The scheduler emits an event per state change
//! of every task; committing each one on its own, before the next task may start, made the
//! store the slowest part of starting a task and put all N `task_queued` commits before the
//! first task of a run. A writer thread instead takes whatever has queued up since its last
//! commit, and what comes in the next few milliseconds, and writes it in one transaction.
//!
//! What stays true: an event is published (handed to `on_commit`, which the daemon uses to
//! stream it with its sequence number) only after it is committed, in the order emitted, so a
//! client that resumes from the store after a gap sees the same numbers. `flush` waits until
//! everything emitted before it is committed; a run flushes before it is reported finished,
//! and dropping the writer commits what is queued, so an orderly stop loses nothing. A crash
//! can lose the events of the last few milliseconds, which the next start's `interrupted`
//! marking covers as it covers a task that was running.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Store;
use crate::engine::events::{Event, EventSink};

/// Events committed in one transaction at most; bounds the latency of the first ones.
const MAX_BATCH: usize = 4096;
/// How long after the first event of a batch the writer waits for more before committing,
/// unless a flush is asked for: short tasks emit an event every few hundred microseconds,
/// and a few milliseconds of delay in the live stream buys far fewer transactions.
const GATHER: Duration = Duration::from_millis(3);

/// Called for each event once it is committed, with its sequence number and JSON form.
pub type OnCommit = Box<dyn Fn(&Event, i64, &str) + Send>;

enum Msg {
    Event(Event),
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Queues events for the writer thread; see the module's documentation.
pub struct EventWriter {
    queue: Mutex<Option<Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EventWriter {
    /// Starts the writer thread for `store`.
    pub fn start(store: Arc<Store>, on_commit: OnCommit) -> std::io::Result<EventWriter> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("gantry-events".into())
            .spawn(move || write_loop(&store, &rx, &on_commit))?;
        Ok(EventWriter {
            queue: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn send(&self, msg: Msg) -> bool {
        let queue = self
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        queue.as_ref().is_some_and(|q| q.send(msg).is_ok())
    }

    /// Resolves once every event emitted before this call is committed (or the writer has
    /// stopped, in which case nothing more can be).
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.send(Msg::Flush(done)) {
            let _ = wait.await;
        }
    }

    /// Commits what is queued and stops the thread; later events are dropped with an error.
    pub fn close(&self) {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the event writer thread panicked");
        }
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        self.close();
    }
}

impl EventSink for EventWriter {
    fn emit(&self, event: Event) {
        let run = event.run.clone();
        if !self.send(Msg::Event(event)) {
            tracing::error!(run = %run, "could not record an event: the event writer has stopped");
        }
    }
}

fn write_loop(store: &Store, rx: &Receiver<Msg>, on_commit: &OnCommit) {
    while let Ok(first) = rx.recv() {
        let mut events = Vec::new();
        let mut flushes = Vec::new();
        let gathered_until = Instant::now() + GATHER;
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Event(e) => {
                    let body = serde_json::to_string(&e).unwrap_or_default();
                    events.push((e, body));
                }
                Msg::Flush(done) => flushes.push(done),
            }
            next = if events.len() >= MAX_BATCH || !flushes.is_empty() {
                None
            } else {
                // What has queued, then what comes within the gathering window.
                rx.try_recv().ok().or_else(|| {
                    let left = gathered_until.saturating_duration_since(Instant::now());
                    rx.recv_timeout(left).ok()
                })
            };
        }
        commit(store, &events, on_commit);
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Commits `events` in one transaction; if that fails, one by one, so that one bad event
/// costs only itself.
fn commit(store: &Store, events: &[(Event, String)], on_commit: &OnCommit) {
    if events.is_empty() {
        return;
    }
    match store.record_all(events) {
        Ok(seqs) => {
            for ((e, body), seq) in events.iter().zip(seqs) {
                on_commit(e, seq, body);
            }
        }
        Err(batch_error) => {
            tracing::warn!(error = %batch_error, events = events.len(), "could not record a batch of events; recording them one by one");
            for one in events {
                let (e, body) = one;
                match store.record_all(std::slice::from_ref(one)) {
                    Ok(seqs) => {
                        if let Some(&seq) = seqs.first() {
                            on_commit(e, seq, body);
                        }
                    }
                    Err(err) => {
                        tracing::error!(error = %err, run = %e.run, "could not record an event")
                    }
                }
            }
        }
    }
}
