//! Run history survives restarts: committed runs stay, runs left running are marked
//! interrupted, and deployments are there for the next run's rollback and cleanup.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use gantry::engine::events::{Event, EventKind, EventSink, RunState};
use gantry::engine::run::{RunOptions, execute};
use gantry::engine::runner::{
    DeploymentRecord, History, HookCall, HookVerdict, RollbackResult, TaskCall, TaskFailure,
    TaskRunner,
};
use gantry::store::Store;
use tokio_util::sync::CancellationToken;

use common::engine::*;

fn event(run: &str, task: Option<&str>, kind: EventKind) -> Event {
    Event {
        at: SystemTime::now(),
        run: run.into(),
        workflow: task.map(|_| "w".into()),
        task: task.map(str::to_string),
        kind,
        message: String::new(),
    }
}

#[test]
fn runs_left_running_are_interrupted_on_reopen_and_finished_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_run("done", &["w".into()], "test").unwrap();
        store.emit(event("done", None, EventKind::RunStarted));
        store.emit(event(
            "done",
            None,
            EventKind::RunFinished {
                state: RunState::Succeeded,
            },
        ));
        store.create_run("live", &["w".into()], "test").unwrap();
        store.emit(event("live", None, EventKind::RunStarted));
        store.emit(event("live", Some("jobs.a"), EventKind::TaskQueued));
        store.emit(event(
            "live",
            Some("jobs.a"),
            EventKind::TaskStarted { attempt: 1 },
        ));
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.run("done").unwrap().unwrap().state, "succeeded");
    assert_eq!(store.run("live").unwrap().unwrap().state, "interrupted");
    assert_eq!(store.tasks("live").unwrap()[0].state, "interrupted");
    assert_eq!(store.events(Some("live"), 0).unwrap().len(), 3);
    let runs = store.runs(10, &Default::default()).unwrap();
    assert_eq!(
        runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec!["live", "done"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_run_records_tasks_outputs_and_deployments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let toml = "[infra.db]\nkind = \"exec\"\n[jobs.gone]\nkind = \"exec\"\n";
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "w/infra.db",
        Script {
            millis: 5,
            outputs: [("host".to_string(), "db".to_string())].into(),
            ..Script::default()
        },
    );
    store.create_run("r1", &["w".into()], "test").unwrap();
    let report = execute(
        compile(vec![workflow("w", toml)]),
        runner.clone(),
        store.clone(),
        store.clone(),
        RunOptions::new("r1"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    let tasks = store.tasks("r1").unwrap();
    assert_eq!(tasks.len(), 2);
    let db = tasks.iter().find(|t| t.task == "infra.db").unwrap();
    assert_eq!((db.state.as_str(), db.attempts), ("succeeded", 1));
    assert_eq!(db.outputs["host"], "db");
    assert_eq!(store.deployed("w")["infra.db"].record.outputs["host"], "db");

    // The next run no longer declares jobs.gone: cleanup destroys it and the store forgets it.
    store.create_run("r2", &["w".into()], "test").unwrap();
    let toml = "[infra.db]\nkind = \"exec\"\n";
    let report = execute(
        compile(vec![workflow("w", toml)]),
        runner.clone(),
        store.clone(),
        store.clone(),
        RunOptions::new("r2"),
        CancellationToken::new(),
    )
    .await;
    assert_eq!(report.cleaned_up.len(), 1);
    assert!(!store.deployed("w").contains_key("jobs.gone"));
    assert_eq!(store.run("r2").unwrap().unwrap().state, "succeeded");
}

/// Deploys version `v` of every task, fails `fail` if set, and rolls back to what it was
/// handed as `previous`; it remembers the `previous` each apply was given.
struct Versioned {
    version: String,
    fail: Option<String>,
    previous_seen: std::sync::Mutex<Vec<(String, Option<String>)>>,
}

impl TaskRunner for Versioned {
    async fn apply(&self, call: TaskCall) -> Result<DeploymentRecord, TaskFailure> {
        self.previous_seen.lock().unwrap().push((
            call.task.clone(),
            call.previous
                .as_ref()
                .and_then(|p| p.outputs.get("version").cloned()),
        ));
        if self.fail.as_deref() == Some(call.task.as_str()) {
            return Err(TaskFailure::permanent("broken"));
        }
        Ok(DeploymentRecord {
            outputs: [("version".to_string(), self.version.clone())].into(),
            ..DeploymentRecord::default()
        })
    }

    async fn rollback(&self, call: TaskCall) -> Result<RollbackResult, TaskFailure> {
        let mut back = call.previous.unwrap_or_default();
        back.outputs.insert("rolled_back".into(), "yes".into());
        Ok(RollbackResult::RolledBack(back))
    }

    async fn destroy(&self, _call: TaskCall) -> Result<(), TaskFailure> {
        Ok(())
    }

    async fn hook(&self, _call: HookCall) -> Result<HookVerdict, TaskFailure> {
        Ok(HookVerdict::Proceed)
    }
}

#[tokio::test]
async fn after_a_rollback_history_holds_what_the_rollback_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let toml = "on_failure = \"rollback\"\n[a.first]\nkind = \"exec\"\n[b.second]\nkind = \"exec\"\n[[steps]]\nname = \"1\"\ntasks = [\"a.first\"]\n[[steps]]\nname = \"2\"\ntasks = [\"b.second\"]\n";
    let run = |id: &'static str, runner: Arc<Versioned>| {
        let store = store.clone();
        async move {
            store.create_run(id, &["w".into()], "test").unwrap();
            execute(
                compile(vec![workflow("w", toml)]),
                runner,
                store.clone(),
                store.clone(),
                RunOptions::new(id),
                CancellationToken::new(),
            )
            .await
        }
    };
    let versioned = |version: &str, fail: Option<&str>| {
        Arc::new(Versioned {
            version: version.into(),
            fail: fail.map(str::to_string),
            previous_seen: Default::default(),
        })
    };
    let report = run("r1", versioned("v1", None)).await;
    assert_eq!(report.state, RunState::Succeeded);
    assert_eq!(
        store.deployed("w")["a.first"].record.outputs["version"],
        "v1"
    );

    // v2 of a.first deploys, then b.second fails: a.first rolls back to v1.
    let report = run("r2", versioned("v2", Some("b.second"))).await;
    assert_eq!(report.state, RunState::Failed);
    assert_eq!(report.rolled_back, vec![("w".into(), "a.first".into())]);
    let current = store.deployed("w")["a.first"].record.clone();
    assert_eq!(current.outputs["version"], "v1", "not the rolled-back v2");
    assert_eq!(current.outputs["rolled_back"], "yes");
    assert_eq!(store.deployed("w")["a.first"].kind, "exec");

    // The next run's `previous` is what the rollback left.
    let third = versioned("v3", None);
    run("r3", third.clone()).await;
    let seen = third.previous_seen.lock().unwrap().clone();
    assert!(
        seen.contains(&("a.first".to_string(), Some("v1".to_string()))),
        "{seen:?}"
    );
}

/// Run ids made as fast as possible, from several threads, never repeat, and each thread's
/// come out in increasing order.
#[test]
fn run_ids_do_not_collide() {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(|| {
                (0..50_000)
                    .map(|_| gantry::store::new_run_id())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all = std::collections::HashSet::new();
    for t in threads {
        let ids = t.join().unwrap();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids of one thread out of order"
        );
        for id in ids {
            assert!(id.starts_with('r') && id.len() == 30, "{id}");
            assert!(all.insert(id.clone()), "duplicate run id {id}");
        }
    }
    assert_eq!(all.len(), 200_000);
}

/// Typical durations: the median of each task's recent successful runs, read in one query
/// that looks only at the newest rows. (Real time: the store stamps events with the clock.)
#[tokio::test]
async fn typical_durations_are_medians_of_recent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let toml = "[jobs.a]\nkind = \"exec\"\n[jobs.b]\nkind = \"exec\"\n";
    let runner = Arc::new(FakeRunner::default());
    for (i, ms) in [80u64, 20, 40, 60].into_iter().enumerate() {
        runner.script(
            "w/jobs.a",
            Script {
                millis: ms,
                ..Script::default()
            },
        );
        runner.script(
            "w/jobs.b",
            Script {
                millis: 10,
                failures: if i == 3 { u32::MAX } else { 0 },
                ..Script::default()
            },
        );
        let run = format!("r{i}");
        store.create_run(&run, &["w".into()], "test").unwrap();
        execute(
            compile(vec![workflow("w", toml)]),
            runner.clone(),
            store.clone(),
            store.clone(),
            RunOptions::new(run),
            CancellationToken::new(),
        )
        .await;
    }
    let typical = store.typical_durations("w");
    // a: 80, 20, 40, 60 ms → the upper middle of the sorted four: 60 ms.
    let a = typical["jobs.a"];
    assert!((0.055..0.075).contains(&a), "{typical:?}");
    // b failed last time; its successful runs took 10 ms.
    let b = typical["jobs.b"];
    assert!((0.008..0.025).contains(&b), "{typical:?}");
    assert!(store.typical_durations("other").is_empty());
}

/// The writer commits in batches and publishes each event after its commit, in order, with
/// the sequence number the store gave it; flush waits for everything emitted before.
#[tokio::test]
async fn the_event_writer_publishes_committed_events_in_order() {
    use gantry::store::writer::EventWriter;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.create_run("r", &["w".into()], "test").unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let published = seen.clone();
    let writer = EventWriter::start(
        store.clone(),
        Box::new(move |e: &Event, seq: i64, json: &str| {
            assert!(json.contains(&format!("\"run\":\"{}\"", e.run)));
            published.lock().unwrap().push((seq, e.task.clone()));
        }),
    )
    .unwrap();
    writer.emit(event("r", None, EventKind::RunStarted));
    for i in 0..5000 {
        writer.emit(event(
            "r",
            Some(&format!("jobs.t{i}")),
            EventKind::TaskQueued,
        ));
    }
    writer.flush().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5001);
    let stored = store.events(Some("r"), 0).unwrap();
    assert_eq!(stored.len(), 5001);
    for ((seq, task), (stored_seq, body)) in seen.iter().zip(&stored) {
        assert_eq!(seq, stored_seq);
        if let Some(task) = task {
            assert!(body.contains(&format!("\"task\":\"{task}\"")), "{body}");
        }
    }
    assert_eq!(store.tasks("r").unwrap().len(), 5000);
    assert_eq!(store.run("r").unwrap().unwrap().state, "running");
    // Dropping the writer commits what is still queued.
    writer.emit(event(
        "r",
        None,
        EventKind::RunFinished {
            state: RunState::Succeeded,
        },
    ));
    drop(writer);
    assert_eq!(store.run("r").unwrap().unwrap().state, "succeeded");
}

/// A history from before `task_durations` existed: the migration fills it from past runs.
#[test]
fn the_durations_migration_reads_the_history_kept_so_far() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = rusqlite::Connection::open(dir.path().join("gantry.db")).unwrap();
        // Back to the first schema: what later migrations added goes.
        db.execute_batch(
            "DROP TABLE task_durations; ALTER TABLE deployments DROP COLUMN cleanup_pending; PRAGMA user_version = 1;",
        )
        .unwrap();
        for (i, ms) in [500, 100, 300, 200, 400, 900, 800, 700, 600, 1000, 50]
            .into_iter()
            .enumerate()
        {
            db.execute(
                "INSERT INTO runs (id, workflows, state, trigger, created_at) VALUES (?1, '[\"w\"]', 'succeeded', 'test', 0)",
                [format!("r{i}")],
            )
            .unwrap();
            db.execute(
                "INSERT INTO tasks (run_id, workflow, task, state, started_at, finished_at) VALUES (?1, 'w', 'jobs.a', 'succeeded', 1000, 1000 + ?2)",
                rusqlite::params![format!("r{i}"), ms],
            )
            .unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    // The newest nine: 300, 200, 400, 900, 800, 700, 600, 1000, 50 → median 600 ms.
    assert_eq!(store.typical_durations("w")["jobs.a"], 0.6);
}

/// `max_age` counts from when a run ended: a run that lasted longer than `max_age` is kept
/// as it ends, and one that ended long ago goes whenever it began.
#[test]
fn history_ages_runs_from_when_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let finish = |id: &str, at: SystemTime| {
        store.emit(Event {
            at,
            ..event(
                id,
                None,
                EventKind::RunFinished {
                    state: RunState::Succeeded,
                },
            )
        })
    };
    let hours_ago = |h: u64| SystemTime::now() - std::time::Duration::from_secs(h * 3600);
    for id in ["long", "ended-long-ago"] {
        store.create_run(id, &["w".into()], "test").unwrap();
        store.emit(event(id, None, EventKind::RunStarted));
    }
    finish("ended-long-ago", hours_ago(2));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let cutoff = gantry::store::now_millis();
    std::thread::sleep(std::time::Duration::from_millis(5));
    finish("long", SystemTime::now());

    let pruned = store.prune(cutoff, 1000, 500).unwrap();
    assert_eq!(pruned, vec!["ended-long-ago".to_string()]);
    assert!(store.run("long").unwrap().is_some());
}
