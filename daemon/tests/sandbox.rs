//! Hostile plugins are contained: each attack fails its own task with a specific error while
//! a well-behaved task running at the same time completes, and the process goes on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use gantry::host::log::MemorySink;
use gantry::wasm::bindings::types::{Deployment, TaskError};
use gantry::wasm::limits::Limits;
use gantry::wasm::{CallError, CallOptions, Called, PluginHost};

use common::*;

fn test_limits() -> Limits {
    Limits {
        memory_mib: 64,
        cpu_time: Duration::from_millis(1500),
        call_timeout: Duration::from_secs(4),
        max_log_bytes: 64 * 1024,
        max_output_bytes: 256 * 1024,
        ..Limits::default()
    }
}

struct Harness {
    host: PluginHost,
    hostile: Arc<gantry::wasm::Plugin>,
    exec: Arc<gantry::wasm::Plugin>,
    dirs: Dirs,
}

async fn harness(grant_sh_to_hostile: bool) -> Harness {
    let host = host(test_limits());
    let hostile_grant: &[&str] = if grant_sh_to_hostile {
        &["sh", "sleep"]
    } else {
        &[]
    };
    let g = grants(&[("hostile", hostile_grant), ("exec", common::SHELL)]);
    let hostile = load(&host, "fixtures/hostile.wasm", &g).await;
    let exec = load(&host, "exec.wasm", &g).await;
    Harness {
        host,
        hostile,
        exec,
        dirs: task_dirs(),
    }
}

impl Harness {
    fn opts(&self, sink: Arc<MemorySink>) -> CallOptions {
        CallOptions {
            dirs: Some(self.dirs.dirs.clone()),
            log: sink,
            ..CallOptions::detached()
        }
    }

    /// Runs the attack and a well-behaved exec task side by side; the latter must succeed.
    async fn attack(&self, kind: &str) -> (Result<Called<Deployment>, CallError>, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        let good = self.exec.apply(
            self.opts(Arc::new(MemorySink::default())),
            context(
                "exec",
                serde_json::json!({
                    "command": ["sh", "-c", "sleep 0.3; echo ::gantry-outputs::; echo healthy=yes"]
                }),
            ),
        );
        let bad = self.hostile.apply(
            self.opts(sink.clone()),
            context(kind, serde_json::json!({})),
        );
        let (good, bad) = tokio::join!(good, bad);
        let good =
            good.unwrap_or_else(|e| panic!("well-behaved task failed next to `{kind}`: {e}"));
        assert_eq!(good.value.outputs[0].key, "healthy");
        assert_eq!(good.value.outputs[0].value, "yes");
        assert!(self.host.engine().ticking(), "epoch thread died");
        (bad, sink)
    }
}

fn denied_message(result: Result<Called<Deployment>, CallError>) -> String {
    match result {
        Err(CallError::Task {
            error: TaskError::CapabilityDenied(m),
            ..
        }) => m,
        other => panic!("expected capability-denied, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_is_stopped_by_the_cpu_deadline() {
    let h = harness(false).await;
    let (r, _) = h.attack("spin").await;
    let err = r.expect_err("spin must not finish");
    assert!(matches!(err, CallError::CpuExceeded { .. }), "{err:?}");
    assert!(err.to_string().contains("CPU time"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let h = harness(false).await;
    let (r, _) = h.attack("memory-bomb").await;
    let err = r.expect_err("memory bomb must not finish");
    assert!(
        matches!(err, CallError::MemoryExceeded { limit_mib: 64, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_recursion_is_a_stack_overflow() {
    let h = harness(false).await;
    let (r, _) = h.attack("recursion").await;
    let err = r.expect_err("recursion must not finish");
    assert!(matches!(err, CallError::StackOverflow { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_outside_the_task_directories_cannot_be_read() {
    let h = harness(false).await;
    for (kind, path) in [
        ("read-passwd", "/etc/passwd"),
        ("escape-dotdot", "/src/../../../../etc/passwd"),
        ("escape-absolute", "/etc/hostname"),
        ("escape-symlink", "/src/link-out/passwd"),
    ] {
        let (r, _) = h.attack(kind).await;
        let message = denied_message(r);
        assert!(
            message.starts_with(&format!("reading {path}: ")),
            "{kind}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_the_plugin_did_not_request_is_refused() {
    let h = harness(true).await;
    let (r, _) = h.attack("exec-unrequested").await;
    let message = denied_message(r);
    assert!(
        message.contains("may not run `bash`: it did not request it"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_program_needs_the_operators_grant() {
    let h = harness(false).await;
    let (r, _) = h.attack("exec-requested").await;
    let message = denied_message(r);
    assert!(
        message.contains("add exec = [\"sh\"] under [plugins.hostile]"),
        "{message}"
    );

    let granted = harness(true).await;
    let (r, _) = granted.attack("exec-requested").await;
    let out = r.expect("with the grant, sh runs");
    assert_eq!(out.value.outputs[0].value.trim(), "pwned");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_cut_at_the_budget_with_a_note() {
    let h = harness(false).await;
    let (r, sink) = h.attack("log-flood").await;
    let out = r.expect("log flood completes");
    assert!(
        out.notes
            .iter()
            .any(|n| n.contains("log lines dropped after the 65536-byte log limit")),
        "{:?}",
        out.notes
    );
    let lines = sink.lines();
    let logged: usize = lines.iter().map(|(_, m)| m.len()).sum();
    assert!(logged < 70 * 1024, "{logged} bytes logged");
    assert!(
        lines
            .iter()
            .any(|(_, m)| m.contains("further lines are dropped"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_outputs_are_truncated_with_a_note() {
    let h = harness(false).await;
    let (r, _) = h.attack("huge-output").await;
    let out = r.expect("huge output completes");
    let total: usize = out
        .value
        .outputs
        .iter()
        .map(|o| o.key.len() + o.value.len())
        .sum();
    assert!(total <= 256 * 1024, "{total}");
    assert!(
        out.notes.iter().any(|n| n.contains("outputs dropped")),
        "{:?}",
        out.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_state_fails_the_call_instead_of_filling_history() {
    let h = harness(false).await;
    let (r, _) = h.attack("huge-state").await;
    let err = r.expect_err("a 10 MiB state is refused").to_string();
    assert!(
        err.contains("state is 10485760 bytes, over the limit") && err.contains("max_state_bytes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_becomes_a_task_error_with_its_message() {
    let h = harness(false).await;
    let (r, _) = h.attack("panic").await;
    match r {
        Err(CallError::Panicked { message, .. }) => {
            assert!(
                message.contains("hostile plugin gave up: invariant violated"),
                "{message}"
            )
        }
        other => panic!("expected a panic error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_outliving_the_call_is_killed_at_the_wall_clock_limit() {
    let h = harness(true).await;
    let started = std::time::Instant::now();
    let (r, _) = h.attack("sleep-in-host").await;
    match r {
        Err(CallError::Task {
            error: TaskError::TimedOut(m),
            ..
        }) => assert!(m.contains("sh ran longer than"), "{m}"),
        Err(CallError::WallTimeout { .. }) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(28),
        "the 30 s sleep was not cut short"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_stops_promptly() {
    let h = harness(false).await;
    let opts = h.opts(Arc::new(MemorySink::default()));
    let cancel = opts.cancel.clone();
    let call = h
        .hostile
        .apply(opts, context("spin", serde_json::json!({})));
    let (r, ()) = tokio::join!(call, async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    assert!(matches!(r, Err(CallError::Cancelled { .. })), "{r:?}");
}

/// More calls at once than the pool has instance slots: they wait for a slot, none fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_pool_wait_for_a_slot() {
    let host = gantry::wasm::PluginHost::with_pool(test_limits(), true, 2, shared_cache())
        .expect("wasm engine");
    if !host.engine().pooling() {
        eprintln!("pooling allocator unavailable here; nothing to check");
        return;
    }
    let exec = load(&host, "exec.wasm", &grants(&[("exec", common::SHELL)])).await;
    let dirs = task_dirs();
    let started = std::time::Instant::now();
    let calls: Vec<_> = (0..6)
        .map(|i| {
            let exec = exec.clone();
            let opts = CallOptions {
                dirs: Some(dirs.dirs.clone()),
                ..CallOptions::detached()
            };
            tokio::spawn(async move {
                let command = format!("sleep 0.2; echo ::gantry-outputs::; echo n={i}");
                exec.apply(
                    opts,
                    context(
                        "exec",
                        serde_json::json!({ "command": ["sh", "-c", command] }),
                    ),
                )
                .await
            })
        })
        .collect();
    for call in calls {
        let result = call.await.expect("join");
        assert!(result.is_ok(), "{:?}", result.err());
    }
    // Two slots, six calls of 0.2 s: three waves.
    assert!(
        started.elapsed() >= Duration::from_millis(550),
        "{:?}",
        started.elapsed()
    );
}

/// A plugin whose `describe` spins is given up on after loading's own short CPU budget, not
/// the task budget, and the other plugins load.
#[test]
fn a_plugin_spinning_in_describe_is_given_up_on_within_the_loading_budget() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(cfg.join("workflows")).expect("workflows");
    std::fs::create_dir_all(cfg.join("plugins")).expect("plugins");
    std::fs::write(cfg.join("gantry.toml"), "[limits]\ncpu_time = \"10m\"\n").expect("toml");
    std::fs::copy(
        common::repo_root().join("target/plugins/fixtures/spin-describe.wasm"),
        cfg.join("plugins/spin-describe.wasm"),
    )
    .expect("the spin-describe fixture is built by scripts/build-plugins.sh");
    let (code, out) = common::gantry(&cfg, &tmp.path().join("state"), &["plugins"]);
    assert!(out.contains("spin-describe.wasm"), "{code}: {out}");
    assert!(out.contains("describe() failed"), "{code}: {out}");
    assert!(
        out.contains("2s") || out.contains("2 s"),
        "the loading budget, not the 10 min task budget, should have stopped it: {out}"
    );
    assert!(
        out.contains("exec"),
        "the built-in plugins still load: {out}"
    );
}
