//! The systems gantry is modelled on, reproduced against a scripted runner on a paused clock.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gantry::engine::events::{EventKind, RunState};
use gantry::engine::run::{Outcome, RunOptions};
use gantry::engine::runner::Deployed;

use common::engine::*;

const RELEASEHUB: &str = include_str!("../../examples/releasehub/workflows/release.toml");

#[tokio::test(start_paused = true)]
async fn releasehub_failing_migrate_halts_before_backend_while_frontend_keeps_running() {
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "release/services.frontend",
        Script {
            millis: 5_000,
            ..Script::default()
        },
    );
    runner.script(
        "release/jobs.migrate",
        Script {
            millis: 100,
            failures: u32::MAX,
            ..Script::default()
        },
    );
    runner.script(
        "release/jobs.scrub",
        Script {
            millis: 300,
            ..Script::default()
        },
    );
    let plan = compile(vec![workflow("release", RELEASEHUB)]);
    let (report, _) = run(
        plan,
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r1"),
    )
    .await;

    assert_eq!(report.state, RunState::Failed);
    let frontend = report.task("release", "services.frontend").unwrap();
    assert!(
        matches!(frontend.outcome, Outcome::Succeeded(_)),
        "frontend kept running: {:?}",
        frontend.outcome
    );
    assert!(matches!(
        report.task("release", "jobs.migrate").unwrap().outcome,
        Outcome::Failed(_)
    ));
    assert!(
        matches!(
            report.task("release", "jobs.scrub").unwrap().outcome,
            Outcome::Succeeded(_)
        ),
        "scrub was already running"
    );
    assert!(matches!(
        report.task("release", "services.backend").unwrap().outcome,
        Outcome::NotRun(_)
    ));
    assert_eq!(
        runner.index_of("release/services.backend", &Mark::Start),
        None
    );
    // frontend finished after migrate failed: the run awaited it.
    let migrate_end = runner
        .index_of("release/jobs.migrate", &Mark::End { ok: false })
        .unwrap();
    let frontend_end = runner
        .index_of("release/services.frontend", &Mark::End { ok: true })
        .unwrap();
    assert!(frontend_end > migrate_end);
}

#[tokio::test(start_paused = true)]
async fn releasehub_success_runs_steps_in_order_without_waiting_for_frontend() {
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "release/services.frontend",
        Script {
            millis: 5_000,
            ..Script::default()
        },
    );
    let sessions = BTreeMap::from([("sessions".to_string(), "17".to_string())]);
    runner.script(
        "release/jobs.scrub",
        Script {
            millis: 100,
            outputs: sessions,
            ..Script::default()
        },
    );
    let plan = compile(vec![workflow("release", RELEASEHUB)]);
    let (report, _) = run(
        plan,
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r1"),
    )
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    let backend = runner.params_seen.lock().unwrap()["release/services.backend"].clone();
    assert_eq!(backend["vars"]["scrubbed"], "17", "{backend}");
    let backend_start = runner
        .index_of("release/services.backend", &Mark::Start)
        .unwrap();
    let frontend_end = runner
        .index_of("release/services.frontend", &Mark::End { ok: true })
        .unwrap();
    let migrate_end = runner
        .index_of("release/jobs.migrate", &Mark::End { ok: true })
        .unwrap();
    assert!(
        backend_start < frontend_end,
        "backend did not wait for the frontend"
    );
    assert!(backend_start > migrate_end, "backend waited for migrate");
}

#[tokio::test(start_paused = true)]
async fn ten_services_under_parallelism_seven() {
    let mut toml = String::from("parallelism = 7\n");
    for i in 0..10 {
        toml.push_str(&format!("[services.s{i}]\nkind = \"exec\"\n"));
    }
    let runner = Arc::new(FakeRunner::default());
    for i in 0..10 {
        runner.script(
            &format!("ten/services.s{i}"),
            Script {
                millis: 100 + 10 * i,
                ..Script::default()
            },
        );
    }
    let (report, _) = run(
        compile(vec![workflow("ten", &toml)]),
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r"),
    )
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    let timeline = runner.timeline();
    let mut running = 0;
    let mut peak = 0;
    for (_, _, m) in &timeline {
        match m {
            Mark::Start => running += 1,
            Mark::End { .. } => running -= 1,
            _ => {}
        }
        peak = peak.max(running);
    }
    assert_eq!(peak, 7);
    let starts: Vec<_> = timeline
        .iter()
        .filter(|(_, _, m)| *m == Mark::Start)
        .map(|(t, _, _)| *t)
        .collect();
    let first_end = timeline
        .iter()
        .find(|(_, _, m)| matches!(m, Mark::End { .. }))
        .map(|(t, _, _)| *t)
        .unwrap();
    assert_eq!(
        starts[7], first_end,
        "the 8th started the moment the first finished"
    );
}

/// A task with `parallelism = 1` runs alone: it waits for the running ones to finish, and
/// nothing else of its workflow starts while it runs.
#[tokio::test(start_paused = true)]
async fn a_task_level_parallelism_of_one_runs_alone() {
    let mut toml = String::from("[jobs.migrate]\nkind = \"exec\"\nparallelism = 1\n");
    for i in 0..4 {
        toml.push_str(&format!("[services.s{i}]\nkind = \"exec\"\n"));
    }
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "solo/jobs.migrate",
        Script {
            millis: 500,
            ..Script::default()
        },
    );
    for i in 0..4 {
        runner.script(
            &format!("solo/services.s{i}"),
            Script {
                millis: 100,
                ..Script::default()
            },
        );
    }
    let (report, _) = run(
        compile(vec![workflow("solo", &toml)]),
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r"),
    )
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    let timeline = runner.timeline();
    let mut running = std::collections::BTreeSet::new();
    for (_, key, m) in &timeline {
        match m {
            Mark::Start => {
                running.insert(key.clone());
            }
            Mark::End { .. } => {
                running.remove(key);
            }
            _ => {}
        }
        if running.contains("solo/jobs.migrate") {
            assert_eq!(running.len(), 1, "alongside the migration: {running:?}");
        }
    }
    assert_eq!(
        timeline
            .iter()
            .filter(|(_, _, m)| *m == Mark::Start)
            .count(),
        5
    );
}

const FRONTEND: &str = r#"
on_failure = "rollback"
[services.frontend]
kind = "exec"
[tests.smoke]
kind = "exec"
[[steps]]
name = "deploy"
tasks = ["services.frontend"]
[[steps]]
name = "verify"
barrier = "services-ready"
tasks = ["tests.smoke"]
"#;

const BACKEND: &str = r#"
on_failure = "rollback"
[infra.cache]
kind = "exec"
[services.backend]
kind = "exec"
[tests.integration]
kind = "exec"
[[steps]]
name = "cache"
tasks = ["infra.cache"]
[[steps]]
name = "deploy"
tasks = ["services.backend"]
[[steps]]
name = "verify"
barrier = "services-ready"
tasks = ["tests.integration"]
"#;

/// Frontend and backend workflows run together, with the given frontend script.
async fn harness(
    frontend: Script,
) -> (
    gantry::engine::run::RunReport,
    Arc<gantry::engine::events::MemoryEvents>,
    Arc<FakeRunner>,
) {
    let runner = Arc::new(FakeRunner::default());
    runner.script("frontend/services.frontend", frontend);
    runner.script(
        "backend/infra.cache",
        Script {
            millis: 10,
            ..Script::default()
        },
    );
    runner.script(
        "backend/services.backend",
        Script {
            millis: 2_000,
            ..Script::default()
        },
    );
    let plan = compile(vec![
        workflow("frontend", FRONTEND),
        workflow("backend", BACKEND),
    ]);
    let (report, events) = run(
        plan,
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r"),
    )
    .await;
    (report, events, runner)
}

#[tokio::test(start_paused = true)]
async fn harness_barrier_holds_both_workflows_until_both_arrive() {
    let (report, events, runner) = harness(Script {
        millis: 50,
        ..Script::default()
    })
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    let smoke = runner
        .index_of("frontend/tests.smoke", &Mark::Start)
        .unwrap();
    let backend_done = runner
        .index_of("backend/services.backend", &Mark::End { ok: true })
        .unwrap();
    assert!(
        smoke > backend_done,
        "frontend's tests waited at the barrier for the backend"
    );
    assert!(events.events().iter().any(|e| e.kind
        == EventKind::BarrierReached {
            barrier: "services-ready".into()
        }));
}

#[tokio::test(start_paused = true)]
async fn harness_backend_is_rolled_back_when_frontend_fails_before_the_barrier() {
    let (report, events, runner) = harness(Script {
        millis: 2_500,
        failures: u32::MAX,
        ..Script::default()
    })
    .await;
    assert_eq!(report.state, RunState::Failed);
    assert_eq!(
        runner.index_of("backend/tests.integration", &Mark::Start),
        None
    );
    assert_eq!(runner.index_of("frontend/tests.smoke", &Mark::Start), None);
    assert_eq!(
        report.rolled_back,
        vec![
            ("backend".to_string(), "services.backend".to_string()),
            ("backend".to_string(), "infra.cache".to_string())
        ],
        "backend rolled back newest first"
    );
    assert!(events.events().iter().any(
        |e| matches!(&e.kind, EventKind::BarrierBroken { barrier } if barrier == "services-ready")
            && e.workflow.as_deref() == Some("backend")
    ));
}

/// Under the default policy (`continue`) too, a frontend that failed before the barrier
/// never arrives whole: the backend fails at the barrier and applies its own `rollback`,
/// and the frontend's tasks after the barrier do not run.
#[tokio::test(start_paused = true)]
async fn a_failure_under_the_default_policy_breaks_the_barrier_too() {
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "frontend/services.frontend",
        Script {
            millis: 50,
            failures: u32::MAX,
            ..Script::default()
        },
    );
    runner.script(
        "backend/services.backend",
        Script {
            millis: 2_000,
            ..Script::default()
        },
    );
    let continuing = FRONTEND.replace("on_failure = \"rollback\"\n", "");
    let plan = compile(vec![
        workflow("frontend", &continuing),
        workflow("backend", BACKEND),
    ]);
    let (report, events) = run(
        plan,
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r"),
    )
    .await;
    assert_eq!(report.state, RunState::Failed);
    assert_eq!(runner.index_of("frontend/tests.smoke", &Mark::Start), None);
    assert_eq!(
        runner.index_of("backend/tests.integration", &Mark::Start),
        None
    );
    assert_eq!(
        report.rolled_back,
        vec![
            ("backend".to_string(), "services.backend".to_string()),
            ("backend".to_string(), "infra.cache".to_string())
        ]
    );
    assert!(events.events().iter().any(
        |e| matches!(&e.kind, EventKind::BarrierBroken { barrier } if barrier == "services-ready")
            && e.workflow.as_deref() == Some("backend")
            && e.message.contains("`frontend` failed before arriving")
    ));
}

#[tokio::test(start_paused = true)]
async fn bunnyshell_cleanup_times_out_without_blocking_and_outputs_feed_later_tasks() {
    let toml = r#"
env = ["REGION"]
[infra.db]
kind = "exec"
[services.api]
kind = "exec"
database_url = "postgres://${tasks.infra.db.outputs.host}:${tasks.infra.db.outputs.port}/app"
region = "${env.REGION}"
[[steps]]
name = "infra"
tasks = ["infra.db"]
[[steps]]
name = "apps"
tasks = ["services.api"]
"#;
    let runner = Arc::new(FakeRunner {
        destroy_millis: 60_000,
        ..FakeRunner::default()
    });
    runner.script(
        "env/infra.db",
        Script {
            millis: 20,
            outputs: BTreeMap::from([
                ("host".to_string(), "db.internal".to_string()),
                ("port".to_string(), "5432".to_string()),
            ]),
            ..Script::default()
        },
    );
    let mut history = FakeHistory::default();
    history.deployed.insert(
        "env".into(),
        BTreeMap::from([(
            "services.legacy".to_string(),
            Deployed {
                kind: "exec".to_string(),
                ..Deployed::default()
            },
        )]),
    );
    let mut opts = RunOptions::new("r");
    opts.cleanup_timeout = Duration::from_secs(5);
    opts.env.insert("REGION".into(), "eu-west".into());
    let started = tokio::time::Instant::now();
    let (report, events) = run(
        compile(vec![workflow("env", toml)]),
        runner.clone(),
        &history,
        opts,
    )
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    assert_eq!(report.cleaned_up.len(), 1);
    let (_, task, result) = &report.cleaned_up[0];
    assert_eq!(task, "services.legacy");
    assert!(
        result
            .as_ref()
            .unwrap_err()
            .contains("did not finish within 5s"),
        "{result:?}"
    );
    let api_end = runner
        .index_of("env/services.api", &Mark::End { ok: true })
        .unwrap();
    assert!(
        runner.timeline()[api_end].0 - started < Duration::from_secs(1),
        "the deploy did not wait for cleanup"
    );
    let params = runner.params_seen.lock().unwrap()["env/services.api"].clone();
    assert_eq!(params["database_url"], "postgres://db.internal:5432/app");
    assert_eq!(params["region"], "eu-west");
    assert!(
        events
            .events()
            .iter()
            .any(|e| e.kind == EventKind::CleanupPending)
    );
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_then_succeed_and_timeouts_fail() {
    let toml = r#"
[jobs.flaky]
kind = "exec"
retries = { attempts = 3, backoff = "1s" }
[jobs.slow]
kind = "exec"
timeout = "2s"
"#;
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "w/jobs.flaky",
        Script {
            millis: 10,
            failures: 2,
            ..Script::default()
        },
    );
    runner.script(
        "w/jobs.slow",
        Script {
            millis: 10_000,
            ..Script::default()
        },
    );
    let (report, events) = run(
        compile(vec![workflow("w", toml)]),
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r"),
    )
    .await;
    let flaky = report.task("w", "jobs.flaky").unwrap();
    assert!(matches!(flaky.outcome, Outcome::Succeeded(_)));
    assert_eq!(flaky.attempts, 3);
    assert_eq!(
        events
            .events()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::TaskRetrying { .. }))
            .count(),
        2
    );
    match &report.task("w", "jobs.slow").unwrap().outcome {
        Outcome::Failed(e) => assert!(e.contains("timed out after 2s"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(report.state, RunState::SucceededWithErrors);
}

#[tokio::test(start_paused = true)]
async fn hooks_can_skip_or_fail_a_task() {
    let toml = r#"
[jobs.frozen]
kind = "exec"
hooks.pre_deploy = [{ kind = "gate", decision = "skip" }]
[jobs.after]
kind = "exec"
needs = ["jobs.frozen"]
[jobs.vetoed]
kind = "exec"
hooks.post_deploy = { kind = "gate", decision = "fail" }
"#;
    let runner = Arc::new(FakeRunner::default());
    let (report, _) = run(
        compile(vec![workflow("h", toml)]),
        runner.clone(),
        &FakeHistory::default(),
        RunOptions::new("r"),
    )
    .await;
    assert!(matches!(
        report.task("h", "jobs.frozen").unwrap().outcome,
        Outcome::SkippedByHook(_)
    ));
    assert_eq!(runner.index_of("h/jobs.frozen", &Mark::Start), None);
    assert!(matches!(
        report.task("h", "jobs.after").unwrap().outcome,
        Outcome::Succeeded(_)
    ));
    assert!(
        matches!(&report.task("h", "jobs.vetoed").unwrap().outcome, Outcome::Failed(e) if e.contains("post_deploy"))
    );
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_run_stops_running_tasks_and_starts_nothing() {
    let toml = "[jobs.a]\nkind = \"exec\"\n[jobs.b]\nkind = \"exec\"\nneeds = [\"jobs.a\"]\n";
    let runner = Arc::new(FakeRunner::default());
    runner.script(
        "c/jobs.a",
        Script {
            millis: 10_000,
            ..Script::default()
        },
    );
    let cancel = tokio_util::sync::CancellationToken::new();
    let events = Arc::new(gantry::engine::events::MemoryEvents::default());
    let trigger = cancel.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        trigger.cancel();
    });
    let report = gantry::engine::run::execute(
        compile(vec![workflow("c", toml)]),
        runner.clone(),
        Arc::new(FakeHistory::default()),
        events,
        RunOptions::new("r"),
        cancel,
    )
    .await;
    stopper.await.unwrap();
    assert_eq!(report.state, RunState::Cancelled);
    assert_eq!(
        report.task("c", "jobs.a").unwrap().outcome,
        Outcome::Cancelled
    );
    assert_eq!(
        report.task("c", "jobs.b").unwrap().outcome,
        Outcome::Cancelled
    );
    assert_eq!(runner.index_of("c/jobs.b", &Mark::Start), None);
}

#[tokio::test(start_paused = true)]
async fn a_pre_destroy_hook_can_keep_a_removed_task() {
    let toml =
        "hooks.pre_destroy = { kind = \"gate\", decision = \"skip\" }\n[jobs.a]\nkind = \"exec\"\n";
    let mut history = FakeHistory::default();
    history.deployed.insert(
        "keep".into(),
        BTreeMap::from([(
            "jobs.old".to_string(),
            Deployed {
                kind: "exec".to_string(),
                ..Deployed::default()
            },
        )]),
    );
    let runner = Arc::new(FakeRunner::default());
    let (report, _) = run(
        compile(vec![workflow("keep", toml)]),
        runner.clone(),
        &history,
        RunOptions::new("r"),
    )
    .await;
    assert_eq!(report.state, RunState::Succeeded);
    assert!(
        report.cleaned_up[0]
            .2
            .as_ref()
            .unwrap_err()
            .contains("pre_destroy hook `gate` declined")
    );
    assert_eq!(runner.index_of("keep/jobs.old", &Mark::Destroyed), None);
}
