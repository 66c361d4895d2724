//! `gantry run` end to end: real plugins in the sandbox, real programs, history on disk.

use std::path::{Path, PathBuf};

mod common;

use common::gantry;

/// A grant of every program the exec tasks of these tests run.
const EXEC_TOOLS: &str = "[plugins.exec]\nexec = [\"sh\", \"sleep\", \"cat\", \"env\", \"id\", \"setsid\", \"timeout\", \"touch\", \"rm\", \"mkdir\", \"date\", \"sha256sum\", \"ln\", \"mkfifo\"]\n";

/// A config directory under `root` with `gantry.toml` and one workflow, and the state
/// directory beside it.
fn config(root: &Path, gantry_toml: &str, workflow: &str, text: &str) -> (PathBuf, PathBuf) {
    let cfg = root.join("config");
    std::fs::create_dir_all(cfg.join("workflows")).unwrap();
    std::fs::write(cfg.join("gantry.toml"), gantry_toml).unwrap();
    std::fs::write(cfg.join("workflows").join(format!("{workflow}.toml")), text).unwrap();
    (cfg, root.join("state"))
}

/// Installs the hostile test plugin, whose kinds attack the sandbox.
fn add_hostile_plugin(cfg: &Path) {
    std::fs::create_dir_all(cfg.join("plugins")).unwrap();
    std::fs::write(
        cfg.join("plugins/hostile.wasm"),
        common::built_plugin("fixtures/hostile.wasm"),
    )
    .unwrap();
}

/// `gantry run WORKFLOW` in the background, its output piped to the test.
fn start_run(cfg: &Path, state: &Path, workflow: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["--config", cfg.to_str().unwrap()])
        .args(["--state", state.to_str().unwrap(), "run", workflow])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gantry")
}

#[test]
fn the_releasehub_example_deploys_to_the_simulator_with_outputs_flowing_to_the_backend() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/releasehub");
    let state = tempfile::tempdir().unwrap();
    let (code, out) = gantry(&example, state.path(), &["run", "--sim", "release"]);
    assert_eq!(code, 0, "{out}");
    for task in [
        "services.frontend",
        "jobs.migrate",
        "jobs.scrub",
        "services.backend",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(task) && l.contains("succeeded")),
            "{task} did not succeed:\n{out}"
        );
    }
    assert!(out.contains("output sessions=17"), "{out}");
    let run = common::run_id(&out);
    let read = |task: &str| common::task_log(state.path(), run, "release", task);
    let frontend = read("services.frontend");
    assert!(
        frontend.contains("applied Deployment releasehub/frontend"),
        "{frontend}"
    );
    assert!(frontend.contains("all objects are ready"), "{frontend}");
    assert!(read("jobs.migrate").contains("applied Job releasehub/migrate-schema-42"));
    assert!(read("services.backend").contains("applied ConfigMap releasehub/backend-config"));
    assert!(state.path().join("gantry.db").exists());
}

#[test]
fn a_halting_failure_rolls_back_and_hooks_decide() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        EXEC_TOOLS,
        "app",
        r#"
on_failure = "rollback"

[infra.db]
kind = "exec"
command = ["sh", "-c", "echo ::gantry-outputs::; echo host=db.local"]
rollback = ["sh", "-c", "echo undoing the db"]

[jobs.frozen]
kind = "exec"
command = ["sh", "-c", "exit 9"]
hooks.pre_deploy = { kind = "gate", decision = "skip", reason = "change freeze" }

[services.api]
kind = "exec"
command = ["sh", "-c", "echo connecting to \"$DB_HOST\" >&2; exit 4"]
env = { DB_HOST = "${tasks.infra.db.outputs.host}" }

[[steps]]
name = "infra"
tasks = ["infra.db", "jobs.frozen"]

[[steps]]
name = "apps"
tasks = ["services.api"]
"#,
    );
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.lines().any(|l| l.contains("jobs.frozen")
            && l.contains("skipped")
            && l.contains("change freeze")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("services.api")
            && l.contains("FAILED")
            && l.contains("exit code 4")
            && l.contains("connecting to db.local")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains("infra.db") && l.contains("rolled back")),
        "{out}"
    );
    assert!(
        out.contains("run r") && out.contains(" failed in "),
        "{out}"
    );
    let db_log = common::task_log(&state, common::run_id(&out), "app", "infra.db");
    assert!(db_log.contains("undoing the db"), "{db_log}");
    // Scratch space lives for one call: nothing of it is left behind but empty directories
    // and the pool's mark that the run closed it.
    let left: Vec<_> = walk(&state.join("scratch"));
    assert!(
        left.iter()
            .all(|p| p.is_dir() || p.ends_with("scratch/pool/.closed")),
        "{left:?}"
    );
}

#[test]
fn a_sensitive_output_is_used_downstream_and_shown_nowhere() {
    const SECRET: &str = "tok-s3cr3t-value";
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        EXEC_TOOLS,
        "app",
        r#"
[infra.secret]
kind = "secret-output"

[services.api]
kind = "exec"
command = ["sh", "-c", "echo \"using $TOKEN as $USER_NAME\"; test \"$TOKEN\" = tok-s3cr3t-value && echo token-matches; echo ::gantry-outputs::; echo echoed=$TOKEN"]
env = { TOKEN = "${tasks.infra.secret.outputs.token}", USER_NAME = "${tasks.infra.secret.outputs.user}" }

[[steps]]
name = "infra"
tasks = ["infra.secret"]

[[steps]]
name = "apps"
tasks = ["services.api"]
"#,
    );
    add_hostile_plugin(&cfg);
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("output token=***"), "{out}");
    assert!(out.contains("output user=deployer"), "{out}");
    assert!(!out.contains(SECRET), "the CLI shows the secret:\n{out}");
    let mut seen_match = false;
    // Compiled plugins hold the fixture's own constant; everything else must not.
    let cache = state.join("cache");
    for path in walk(&state) {
        if !path.is_file() || path.starts_with(&cache) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET),
            "{} holds the secret",
            path.display()
        );
        seen_match |= text.contains("token-matches");
    }
    assert!(seen_match, "the later task did not receive the real value");
}

/// Every path under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// Under `gantry run` the engine's epoch ticker lives as long as the run: the CPU budget from
/// `[limits]` stops a spinning plugin.
#[test]
fn a_spinning_plugin_is_stopped_by_its_cpu_budget_in_a_local_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        "[limits]\ncpu_time = \"1s\"\n",
        "app",
        "[jobs.spin]\nkind = \"spin\"\n",
    );
    add_hostile_plugin(&cfg);
    let started = std::time::Instant::now();
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("used more than its 1s of CPU time"), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{out}"
    );
}

/// Whatever `gantry run` writes is the invoking user's alone, and a FIFO named like a
/// workflow is an error rather than a hang.
#[test]
fn a_local_run_keeps_its_state_private_and_a_fifo_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        EXEC_TOOLS,
        "app",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo hi\"]\n",
    );
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 0, "{out}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state), 0o700);
    for path in walk(&state) {
        assert_eq!(
            mode(&path) & 0o077,
            0,
            "{} is readable by others",
            path.display()
        );
    }

    let fifo = std::ffi::CString::new(cfg.join("workflows/pipe.toml").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let (code, out) = gantry(&cfg, &state, &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("pipe.toml: not a regular file"), "{out}");
}

#[test]
fn the_daemon_settings_cleanup_timeout_bounds_a_local_runs_destroy() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        "[plugins.exec]\nexec = [\"sh\", \"sleep\"]\n[daemon]\ncleanup_timeout = \"1s\"\n",
        "app",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n[jobs.old]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\ndestroy = [\"sh\", \"-c\", \"sleep 30\"]\n",
    );
    let wf = cfg.join("workflows/app.toml");
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 0, "{out}");
    std::fs::write(
        &wf,
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 0, "{out}");
    // The destroy sleeps 30 s: anything under that was cut at the 1 s timeout.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(28),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.contains("jobs.old")
            && l.contains("cleanup PENDING")
            && l.contains("within 1s")),
        "{out}"
    );
}

#[test]
fn history_keeps_the_newest_runs_and_drops_old_ones_with_their_logs() {
    let tmp = tempfile::tempdir().unwrap();
    let toml = |history: &str| format!("[plugins.exec]\nexec = [\"sh\"]\n[history]\n{history}");
    let (cfg, state) = config(
        tmp.path(),
        &toml("max_runs = 2\n"),
        "app",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo a\"]\n",
    );
    let runs = || {
        let store = gantry::store::Store::open_read_only(&state)
            .unwrap()
            .unwrap();
        let listed = store.runs(100, &Default::default()).unwrap();
        let logs: Vec<String> = std::fs::read_dir(state.join("logs"))
            .unwrap()
            .map(|e| {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                name.strip_suffix(".log").unwrap_or(&name).to_string()
            })
            .collect();
        (listed.into_iter().map(|r| r.id).collect::<Vec<_>>(), logs)
    };
    for _ in 0..4 {
        let (code, out) = gantry(&cfg, &state, &["run", "app"]);
        assert_eq!(code, 0, "{out}");
    }
    let (ids, mut logs) = runs();
    assert_eq!(ids.len(), 2, "{ids:?}");
    logs.sort();
    let mut kept = ids.clone();
    kept.sort();
    assert_eq!(logs, kept, "the logs of pruned runs go with them");

    // Ages count from a run's end: the two kept ended over 2 s ago, the new one just now.
    std::fs::write(cfg.join("gantry.toml"), toml("max_age = \"2s\"\n")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let (code, out) = gantry(&cfg, &state, &["run", "app"]);
    assert_eq!(code, 0, "{out}");
    let (ids, logs) = runs();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(logs, ids);
}

/// A first diff of a workflow whose later tasks read earlier tasks' outputs: those tasks
/// cannot be planned yet, and that is a change to come (exit 1), not an error.
#[test]
fn a_first_diff_counts_tasks_awaiting_inputs_as_changes() {
    let example = common::repo_root().join("examples/releasehub");
    let state = tempfile::tempdir().unwrap();
    let (code, out) = gantry(&example, state.path(), &["diff", "--sim", "release"]);
    assert!(out.contains("has not been deployed yet"), "{out}");
    assert_eq!(code, 1, "{out}");
}

/// Under the soft open-files limit most shells and units start with (1,024), a workflow of
/// 200 programs at once runs them all, and each program gets that limit back.
#[test]
fn two_hundred_programs_run_at_once_under_the_common_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct passed by reference.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0
    );
    assert!(
        limit.rlim_max >= 4096,
        "this test needs a hard open-files limit of at least 4096, not {}",
        limit.rlim_max
    );
    let mut workflow = String::from("parallelism = 200\n");
    for i in 0..199 {
        workflow.push_str(&format!(
            "[jobs.t{i}]\nkind = \"exec\"\ncommand = [\"sleep\", \"1\"]\n"
        ));
    }
    workflow.push_str(
        "[jobs.limit]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo soft $(ulimit -Sn)\"]\n",
    );
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        "[plugins.exec]\nexec = [\"sh\", \"sleep\"]\n",
        "wide",
        &workflow,
    );
    let out = std::process::Command::new("sh")
        .args(["-c", "ulimit -Sn 1024 && exec \"$@\"", "sh"])
        .arg(env!("CARGO_BIN_EXE_gantry"))
        .args(["--config", cfg.to_str().unwrap()])
        .args(["--state", state.to_str().unwrap(), "run", "wide"])
        .output()
        .expect("run gantry");
    let (code, out) = common::daemon::code_and_text(&out);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Too many open files"), "{out}");
    let logged = common::task_log(&state, common::run_id(&out), "wide", "jobs.limit");
    assert!(logged.contains("soft 1024"), "{logged}");
}

/// SIGTERM and SIGHUP (the terminal closed) cancel a local run as Ctrl-C does: its programs
/// are stopped with it instead of left running on their own.
#[test]
fn a_local_run_stopped_by_sigterm_or_sighup_stops_its_programs() {
    use std::io::BufRead;
    for (signal, unique) in [(libc::SIGTERM, "61.25"), (libc::SIGHUP, "61.75")] {
        let tmp = tempfile::tempdir().unwrap();
        let (cfg, state) = config(
            tmp.path(),
            "[plugins.exec]\nexec = [\"sleep\"]\n",
            "app",
            &format!("[jobs.long]\nkind = \"exec\"\ncommand = [\"sleep\", \"{unique}\"]\n"),
        );
        let mut child = start_run(&cfg, &state, "app");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufReader::new(stdout).lines();
        let started = lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("jobs.long") && l.contains("started"));
        assert!(started, "the task never started");
        let running = || {
            std::fs::read_dir("/proc")
                .unwrap()
                .flatten()
                .filter_map(|p| std::fs::read(p.path().join("cmdline")).ok())
                .any(|cmdline| {
                    cmdline
                        .windows(unique.len())
                        .any(|w| w == unique.as_bytes())
                })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !running() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(running(), "the program never ran");
        // SAFETY: kill(2) on our own child's pid with a valid signal number.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}\n{rest:?}");
        assert!(stderr.contains("cancelling the run"), "{stderr}");
        assert!(rest.iter().any(|l| l.contains("cancelled")), "{rest:?}");
        assert!(!running(), "the program outlived the run (signal {signal})");
    }
}

/// `gantry run | head -1`: the reader going away neither kills the run (leaving its programs
/// running without it) nor fails it; the run goes on to its end and is recorded.
#[test]
fn a_local_run_whose_reader_goes_away_runs_to_its_end() {
    use std::io::BufRead;
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, state) = config(
        tmp.path(),
        "[plugins.exec]\nexec = [\"sleep\"]\n",
        "app",
        "[jobs.first]\nkind = \"exec\"\ncommand = [\"sleep\", \"0.5\"]\n\n[jobs.second]\nkind = \"exec\"\nneeds = [\"jobs.first\"]\ncommand = [\"sleep\", \"0.5\"]\n",
    );
    let mut child = start_run(&cfg, &state, "app");
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let id = first
        .strip_prefix("run ")
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no run id in {first:?}"))
        .to_string();
    // The reader is gone (dropped above); the run prints on into a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let second = common::task_log(&state, &id, "app", "jobs.second");
    assert!(second.contains("running sleep 0.5"), "{second}");
}
