//! The plugin contract from the host's side: a plugin built against 1.0 (a binary kept as it
//! was built) runs next to 2.0 plugins, and what 2.0 adds works end to end: workspaces that
//! persist per task, program output streamed into the task log while the program runs, and
//! sensitive outputs that reach later tasks but no person.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{context, grants, host, task_dirs};
use gantry::engine::redact::Redactor;
use gantry::engine::runner::{TaskCall, TaskRunner};
use gantry::host::LogSink;
use gantry::host::kube::Clusters;
use gantry::wasm::bindings::log::Level;
use gantry::wasm::bindings::types::ValidateContext;
use gantry::wasm::limits::Limits;
use gantry::wasm::task_runner::{LogFactory, PluginRunner, TaskRoots};
use gantry::wasm::{CallOptions, PluginHost, PluginSource, Registry};
use tokio_util::sync::CancellationToken;

fn v1_asset() -> Vec<u8> {
    let path = common::repo_root().join("tests/fixtures/v1-plugin/v1-plugin.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Log lines of every task, with the moment each arrived.
#[derive(Default)]
struct Captured {
    lines: Mutex<Vec<(Instant, String, String)>>,
}

struct CapturedSink {
    task: String,
    all: Arc<Captured>,
}

impl LogSink for CapturedSink {
    fn line(&self, _level: Level, message: &str, _fields: &[(String, String)]) {
        if let Ok(mut lines) = self.all.lines.lock() {
            lines.push((Instant::now(), self.task.clone(), message.to_string()));
        }
    }
}

struct Logs(Arc<Captured>);

impl LogFactory for Logs {
    fn for_task(&self, _run: &str, _workflow: &str, task: &str) -> Arc<dyn LogSink> {
        Arc::new(CapturedSink {
            task: task.to_string(),
            all: self.0.clone(),
        })
    }
}

impl Captured {
    fn text(&self) -> String {
        self.lines
            .lock()
            .map(|l| {
                l.iter()
                    .map(|(_, t, m)| format!("{t}: {m}\n"))
                    .collect::<String>()
            })
            .unwrap_or_default()
    }
}

async fn registry(
    host: &PluginHost,
    grants: &BTreeMap<String, gantry::wasm::grants::Grant>,
) -> Registry {
    let mut registry = Registry::default();
    for (name, wasm) in gantry::builtin::BUILTIN_PLUGINS {
        let plugin = host
            .load(PluginSource::Builtin(name.to_string()), wasm, grants)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        registry.insert(plugin).unwrap();
    }
    let hostile = common::built_plugin("fixtures/hostile.wasm");
    let plugin = host
        .load(PluginSource::File("hostile.wasm".into()), &hostile, grants)
        .await
        .unwrap();
    registry.insert(plugin).unwrap();
    registry
}

fn call(
    workflow: &str,
    task: &str,
    kind: &str,
    params: serde_json::Value,
    source: PathBuf,
) -> TaskCall {
    TaskCall {
        run: "r1".into(),
        workflow: workflow.into(),
        task: task.into(),
        kind: kind.into(),
        params,
        attempt: 1,
        previous: None,
        source_dir: Some(source),
        cancel: CancellationToken::new(),
        redactor: Arc::new(Redactor::default()),
    }
}

#[tokio::test]
async fn a_1_0_plugin_runs_next_to_2_0_plugins() {
    let host = host(Limits::default());
    let grants = grants(&[("legacy", &["echo"]), ("exec", common::SHELL)]);
    let legacy = host
        .load(
            PluginSource::File("v1-plugin.wasm".into()),
            &v1_asset(),
            &grants,
        )
        .await
        .expect("the 1.0 asset loads");
    assert_eq!(legacy.contract, 1);
    assert_eq!(legacy.info.kinds, vec!["legacy", "legacy-kube"]);
    let exec = host
        .load(
            PluginSource::Builtin("exec".into()),
            gantry::builtin::BUILTIN_PLUGINS
                .iter()
                .find(|(n, _)| *n == "exec")
                .expect("exec is built in")
                .1,
            &grants,
        )
        .await
        .unwrap();
    assert_eq!(exec.contract, 2);

    // Its validate, in 1.0's shape, still reaches the operator.
    let issues = legacy
        .validate(
            ValidateContext {
                kind: "legacy".into(),
                params: r#"{"message":""}"#.into(),
                source_dir: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].field, "message");

    // Its imports (log, process) are served through the 2.0 host.
    let dirs = task_dirs();
    let log = Arc::new(gantry::host::log::MemorySink::default());
    let opts = CallOptions {
        dirs: Some(dirs.dirs.clone()),
        log: log.clone(),
        ..CallOptions::detached()
    };
    let called = legacy
        .apply(
            opts.clone(),
            context("legacy", serde_json::json!({"message": "hello"})),
        )
        .await
        .expect("the 1.0 plugin applies");
    assert_eq!(called.value.outputs[0].key, "said");
    assert_eq!(called.value.outputs[0].value, "hello");
    assert!(!called.value.outputs[0].sensitive);
    assert_eq!(called.value.state.as_deref(), Some("v1-state"));
    assert!(
        log.lines()
            .iter()
            .any(|(_, l)| l == "hello from a 1.0 plugin"),
        "{:?}",
        log.lines()
    );

    // And the 2.0 exec plugin runs in the same host at the same time.
    let called = exec
        .apply(
            opts,
            context(
                "exec",
                serde_json::json!({"command": ["sh", "-c", "echo ::gantry-outputs::; echo v=2"]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(called.value.outputs[0].value, "2");
}

#[tokio::test]
async fn a_1_0_plugin_sees_readiness_in_1_0_terms() {
    let sim = kubesim::start(kubesim::SimOptions::default())
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let host = host(Limits::default());
    let mut grants = grants(&[("legacy", &["echo"])]);
    let legacy_grant = grants.remove("legacy").unwrap_or_default();
    grants.insert(
        "legacy".into(),
        legacy_grant.with("kube_namespaces", &["default"]),
    );
    let legacy = host
        .load(
            PluginSource::File("v1-plugin.wasm".into()),
            &v1_asset(),
            &grants,
        )
        .await
        .unwrap();
    let dirs = task_dirs();
    let opts = CallOptions {
        dirs: Some(dirs.dirs.clone()),
        clusters: Arc::new(Clusters::simulated(kubeconfig)),
        ..CallOptions::detached()
    };
    let called = legacy
        .apply(
            opts,
            context(
                "legacy-kube",
                serde_json::json!({"namespace": "default", "name": "absent"}),
            ),
        )
        .await
        .expect("wait-ready answers in 1.0 form");
    let outputs: BTreeMap<_, _> = called
        .value
        .outputs
        .iter()
        .map(|o| (o.key.as_str(), o.value.as_str()))
        .collect();
    assert_eq!(outputs["ready"], "false");
    assert_eq!(outputs["message"], "does not exist");
}

fn runner(root: &std::path::Path, registry: Registry, logs: Arc<Captured>) -> PluginRunner {
    let roots = TaskRoots::in_state_dir(root);
    let scratch = roots.scratch_pool().expect("scratch pool");
    PluginRunner::new(
        Arc::new(registry),
        roots,
        scratch,
        Arc::new(Logs(logs)),
        Arc::new(Clusters::none()),
    )
}

#[tokio::test]
async fn a_workspace_persists_per_task_until_it_is_destroyed() {
    let host = host(Limits::default());
    let registry = registry(&host, &grants(&[])).await;
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let runner = runner(state.path(), registry, Arc::default());
    let count = |d: gantry::engine::runner::DeploymentRecord| d.outputs["count"].clone();
    let apply = |task: &str| {
        runner.apply(call(
            "w",
            task,
            "workspace-counter",
            serde_json::json!({}),
            source.path().to_path_buf(),
        ))
    };
    assert_eq!(count(apply("jobs.a").await.unwrap()), "1");
    assert_eq!(
        count(apply("jobs.a").await.unwrap()),
        "2",
        "kept from the last run"
    );
    assert_eq!(
        count(apply("jobs.b").await.unwrap()),
        "1",
        "another task's is its own"
    );
    let workspace = TaskRoots::in_state_dir(state.path()).workspace("w", "jobs.a");
    assert!(workspace.join("count").is_file());
    runner
        .destroy(call(
            "w",
            "jobs.a",
            "workspace-counter",
            serde_json::json!({}),
            source.path().to_path_buf(),
        ))
        .await
        .unwrap();
    assert!(!workspace.exists(), "destroy removes the workspace");
    assert_eq!(
        count(apply("jobs.a").await.unwrap()),
        "1",
        "a new task starts afresh"
    );
}

/// A call stopped mid-way (here cancelled) may leave a file operation of its plugin running
/// on a blocking thread, which could write after any check: its scratch directory is
/// removed, never handed to the next task. One that ended by itself is reused. A cancelled
/// guest that computes on is stopped soon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_calls_scratch_directory_is_removed_not_reused() {
    let host = host(Limits::default());
    let registry = registry(&host, &grants(&[("exec", common::SHELL)])).await;
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let runner = runner(state.path(), registry, Arc::default());
    let pool = state.path().join("scratch/pool");
    let in_pool = || {
        let mut names: Vec<String> = std::fs::read_dir(&pool)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        names
    };
    let quick = |task: &str| {
        runner.apply(call(
            "w",
            task,
            "exec",
            serde_json::json!({"command": ["sh", "-c", "true"]}),
            source.path().to_path_buf(),
        ))
    };
    quick("first").await.expect("a quick task succeeds");
    assert_eq!(
        in_pool(),
        ["0"],
        "a call that ended gives its directory back"
    );

    let stopped = call(
        "w",
        "spins",
        "spin",
        serde_json::json!({}),
        source.path().to_path_buf(),
    );
    let cancel = stopped.cancel.clone();
    let started = Instant::now();
    let (r, ()) = tokio::join!(runner.apply(stopped), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let e = r.expect_err("a cancelled call fails");
    assert!(e.message.contains("cancelled"), "{}", e.message);
    // A guest computing on is stopped after its time to wind down (1 s of its own), not when
    // its CPU budget (a minute) or the wait for its programs' SIGTERM grace (over 30 s) ends.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a cancelled spinning plugin ran for {:?}",
        started.elapsed()
    );
    assert!(
        in_pool().is_empty(),
        "the stopped call's directory is still in the pool: {:?}",
        in_pool()
    );

    quick("after").await.expect("a quick task succeeds");
    assert_eq!(in_pool(), ["1"], "the next call gets a new directory");
}

#[tokio::test]
async fn program_output_reaches_the_log_while_the_program_runs() {
    let host = host(Limits::default());
    let registry = registry(&host, &grants(&[("exec", common::SHELL)])).await;
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let logs = Arc::new(Captured::default());
    let runner = runner(state.path(), registry, logs.clone());
    let started = Instant::now();
    runner
        .apply(call(
            "w",
            "jobs.slow",
            "exec",
            serde_json::json!({"command": ["sh", "-c", "echo first; sleep 1; echo second; sleep 1; echo third"]}),
            source.path().to_path_buf(),
        ))
        .await
        .unwrap();
    let finished = Instant::now();
    let lines = logs.lines.lock().unwrap().clone();
    let at = |text: &str| {
        lines
            .iter()
            .find(|(_, _, m)| m == text)
            .map(|(t, _, _)| *t)
            .unwrap_or_else(|| panic!("no line {text:?} in {lines:?}"))
    };
    assert!(
        finished - at("first") >= Duration::from_millis(1500),
        "streamed, not replayed at the end"
    );
    assert!(at("second") - at("first") >= Duration::from_millis(500));
    assert!(at("third") <= finished);
    assert!(finished - started >= Duration::from_secs(2));
}

#[tokio::test]
async fn a_sensitive_output_reaches_a_later_task_and_no_log() {
    let host = host(Limits::default());
    let registry = registry(&host, &grants(&[("exec", common::SHELL)])).await;
    let state = tempfile::tempdir().unwrap();
    let source = tempfile::tempdir().unwrap();
    let logs = Arc::new(Captured::default());
    let runner = runner(state.path(), registry, logs.clone());
    let redactor = Arc::new(Redactor::default());
    let mut first = call(
        "w",
        "infra.secret",
        "secret-output",
        serde_json::json!({}),
        source.path().to_path_buf(),
    );
    first.redactor = redactor.clone();
    let record = runner.apply(first).await.unwrap();
    assert!(record.sensitive.contains("token"));
    assert!(!record.sensitive.contains("user"));
    assert_eq!(record.shown("token"), Some("***"));
    assert_eq!(record.storable().outputs["token"], "");
    // The engine registers sensitive values as it receives them.
    redactor.add(&record.outputs["token"]);
    let mut second = call(
        "w",
        "services.api",
        "exec",
        serde_json::json!({
            "command": ["sh", "-c", "echo \"token is $TOKEN\"; test \"$TOKEN\" = tok-s3cr3t-value && echo matches"],
            "env": {"TOKEN": record.outputs["token"]},
        }),
        source.path().to_path_buf(),
    );
    second.redactor = redactor;
    runner.apply(second).await.unwrap();
    let text = logs.text();
    assert!(text.contains("token is ***"), "{text}");
    assert!(
        text.contains("matches"),
        "the later task got the real value: {text}"
    );
    assert!(!text.contains("tok-s3cr3t-value"), "{text}");
}
