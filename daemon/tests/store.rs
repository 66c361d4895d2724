//! Run history survives restarts: committed runs stay, runs left running are marked
//! interrupted, and deployments are there for the next run's rollback and cleanup.

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use gantry::engine::events::{Event, EventKind, EventSink, RunState};
use gantry::engine::run::{RunOptions, execute};
use gantry::engine::runner::History;
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
