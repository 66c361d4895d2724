//! Custom plugins as an operator makes them: `gantry plugin new` in an empty directory with
//! only the installed binary, the project's own test and build commands, `gantry plugin
//! check`, and the components dropped into a running daemon's plugin directory. Also the
//! examples under `examples/plugins/`, which must pass their own tests and load.
//!
//! These tests need the Wasm toolchain (`scripts/setup-wasm-toolchain.sh`) and componentize-py
//! (`scripts/setup-componentize-py.sh`). Where one is missing they say so and stop, except under
//! `CI=true`, where a missing tool is a failure.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::daemon::{EXEC_GRANT, Site};

/// Compiling a Python component takes a while with a cold cache on a busy machine.
const LOAD_WITHIN: Duration = Duration::from_secs(600);

/// True when `program` runs; otherwise false, or a panic under CI.
fn have(program: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let message = format!("`{program}` is not available; {install}");
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{message}");
        }
        eprintln!("skipping: {message}");
    }
    ok
}

fn have_toolchains(python: bool) -> bool {
    let rust = have(
        "cargo",
        &["--version"],
        "install Rust, then scripts/setup-wasm-toolchain.sh",
    );
    let py = !python
        || (have("python3", &["--version"], "install Python 3")
            && have(
                "componentize-py",
                &["--version"],
                "run scripts/setup-componentize-py.sh",
            ));
    rust && py
}

/// Runs `program` in `dir`; panics with everything it printed unless it succeeds.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {program} in {}: {e}", dir.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} in {} failed:\n{text}",
        dir.display()
    );
    text
}

/// One build directory for every Rust plugin these tests build, kept between runs so a
/// second run is incremental.
fn cargo_target() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-builds")
}

/// `gantry plugin check` on `site`'s configuration and state (so the daemon finds the
/// component already compiled).
fn check(gantry: &Path, site: &Site, wasm: &Path) -> String {
    let out = Command::new(gantry)
        .arg("--config")
        .arg(&site.config)
        .arg("--state")
        .arg(&site.state)
        .args(["plugin", "check"])
        .arg(wasm)
        .output()
        .expect("run gantry plugin check");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "check {}:\n{text}{}",
        wasm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

const RELEASE: &str = r#"
[jobs.greet]
kind = "greet"
name = "operators"

[jobs.frozen]
kind = "greet"
name = "nobody"
hooks.pre_deploy = [{ kind = "freeze", allow = false, reason = "frozen for the test" }]

[jobs.after]
kind = "exec"
command = ["sh", "-c", "echo got \"$GREETING\""]
env = { GREETING = "${tasks.jobs.greet.outputs.greeting}" }
hooks.pre_deploy = [{ kind = "freeze" }]

[[steps]]
name = "greet"
tasks = ["jobs.greet", "jobs.frozen"]

[[steps]]
name = "after"
tasks = ["jobs.after"]
"#;

#[test]
fn scaffolded_rust_task_and_python_hook_deploy_in_a_running_daemon() {
    if !have_toolchains(true) {
        return;
    }
    // Only the installed binary, in a directory that has nothing to do with a checkout.
    let home = tempfile::tempdir().expect("tempdir");
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    let gantry = bin.join("gantry");
    std::fs::copy(env!("CARGO_BIN_EXE_gantry"), &gantry).expect("install gantry");
    let work = home.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");

    let printed = run(
        &work,
        gantry.to_str().expect("utf-8 path"),
        &["plugin", "new", "greet", "--kind", "task"],
        &[],
    );
    assert!(printed.contains("cd greet\n"), "{printed}");
    assert!(printed.contains("./build.sh"), "{printed}");
    run(
        &work,
        gantry.to_str().expect("utf-8 path"),
        &[
            "plugin", "new", "freeze", "--kind", "hook", "--lang", "python",
        ],
        &[],
    );

    let target = cargo_target();
    let greet = work.join("greet");
    let tested = run(&greet, "cargo", &["test"], &[("CARGO_TARGET_DIR", &target)]);
    assert!(tested.contains("2 passed"), "{tested}");
    run(&greet, "./build.sh", &[], &[("CARGO_TARGET_DIR", &target)]);
    let freeze = work.join("freeze");
    run(&freeze, "./test.sh", &[], &[]);
    run(&freeze, "./build.sh", &[], &[]);

    let site = Site::new(EXEC_GRANT, &[]);
    let daemon = site.start();

    let greet_wasm = greet.join("greet.wasm");
    let freeze_wasm = freeze.join("freeze.wasm");
    let report = check(&gantry, &site, &greet_wasm);
    assert!(report.contains("kinds:     greet"), "{report}");
    assert!(
        report.contains("who to greet (string, required)"),
        "{report}"
    );
    let report = check(&gantry, &site, &freeze_wasm);
    assert!(report.contains("(hook plugin)"), "{report}");
    assert!(report.contains("why the task is skipped"), "{report}");

    for wasm in [&greet_wasm, &freeze_wasm] {
        let name = wasm.file_name().expect("file name");
        std::fs::copy(wasm, site.config.join("plugins").join(name)).expect("drop in");
    }
    site.write_workflow("release", RELEASE);
    daemon.poll("/v1/workflows", LOAD_WITHIN, |w| {
        w["workflows"].to_string().contains("\"release\"")
    });

    let (code, out) = site.cli(&["deploy", "release", "--wait"]);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    let runs = daemon.get("/v1/runs?workflow=release");
    let id = runs["runs"][0]["id"].as_str().expect("run id").to_string();
    let run = daemon.get(&format!("/v1/runs/{id}"));
    let text = run.to_string();
    assert!(
        text.contains("HELLO, OPERATORS") || text.contains("hello, operators"),
        "{run}"
    );
    let (_, log) = daemon.request(
        "GET",
        &format!("/v1/runs/{id}/logs/release/jobs.after"),
        None,
    );
    assert!(log.contains("got hello, operators"), "{log}");
    assert!(text.contains("frozen for the test"), "{run}");
}

fn example(name: &str) -> PathBuf {
    common::repo_root().join("examples/plugins").join(name)
}

#[test]
fn the_freeze_window_example_passes_its_tests_and_loads() {
    if !have_toolchains(true) {
        return;
    }
    let dir = example("freeze-window");
    let out = run(&dir, "./test.sh", &[], &[]);
    assert!(out.contains("OK"), "{out}");
    let built = tempfile::tempdir().expect("tempdir");
    run(&dir, "./build.sh", &[], &[]);
    let wasm = built.path().join("freeze-window.wasm");
    std::fs::rename(dir.join("freeze-window.wasm"), &wasm).expect("move the component");
    let site = Site::new("", &[]);
    let report = check(Path::new(env!("CARGO_BIN_EXE_gantry")), &site, &wasm);
    assert!(report.contains("kinds:     freeze-window"), "{report}");
    assert!(report.contains("windows"), "{report}");
}

const WAIT_FOR_JOB: &str = r#"
[jobs.migrate]
kind = "manifest"
path = "k8s/migrate.yaml"
namespace = "shop"
create_namespace = true

[checks.migrated]
kind = "wait-for"
api_version = "batch/v1"
object_kind = "Job"
name = "migrate"
namespace = "shop"
condition = "Complete"
fail_on = ["Failed"]
interval = "200ms"
timeout = "2m"

[[steps]]
name = "migrate"
tasks = ["jobs.migrate", "checks.migrated"]
"#;

const MIGRATE_JOB: &str = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {kubesim.gantry.dev/ready-after: \"1s\"}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: migrate}]\n";

#[test]
fn the_wait_for_example_passes_its_tests_and_waits_for_a_job() {
    if !have_toolchains(false) {
        return;
    }
    let dir = example("wait-for");
    let target = cargo_target();
    let out = run(&dir, "cargo", &["test"], &[("CARGO_TARGET_DIR", &target)]);
    assert!(out.contains("test result: ok"), "{out}");
    run(&dir, "./build.sh", &[], &[("CARGO_TARGET_DIR", &target)]);
    let built = tempfile::tempdir().expect("tempdir");
    let wasm = built.path().join("wait-for.wasm");
    std::fs::rename(dir.join("wait-for.wasm"), &wasm).expect("move the component");

    let site = Site::new(
        "[plugins.manifest]\nkube_namespaces = [\"shop\"]\n",
        &[("migrate", WAIT_FOR_JOB)],
    );
    let report = check(Path::new(env!("CARGO_BIN_EXE_gantry")), &site, &wasm);
    assert!(report.contains("requests:  kube"), "{report}");
    assert!(
        report.contains("    [plugins.wait-for]\n    kube_namespaces = "),
        "{report}"
    );
    assert!(report.contains("object_kind"), "{report}");

    // Granted as `plugin check` says, the task waits for a Job another task creates.
    std::fs::write(
        site.config.join("gantry.toml"),
        "[plugins.manifest]\nkube_namespaces = [\"shop\"]\n\n[plugins.wait-for]\nkube_namespaces = [\"shop\"]\n",
    )
    .expect("gantry.toml");
    // Tasks read their files from `files/` beside gantry.toml.
    std::fs::create_dir_all(site.config.join("files/k8s")).expect("k8s dir");
    std::fs::write(site.config.join("files/k8s/migrate.yaml"), MIGRATE_JOB).expect("job");
    std::fs::copy(&wasm, site.config.join("plugins/wait-for.wasm")).expect("drop in");
    let daemon = site.start_with(&[("GANTRY_SIM", "true")]);
    let (code, out) = site.cli(&["deploy", "migrate", "--wait"]);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    let runs = daemon.get("/v1/runs?workflow=migrate");
    let id = runs["runs"][0]["id"].as_str().expect("run id").to_string();
    let (_, log) = daemon.request(
        "GET",
        &format!("/v1/runs/{id}/logs/migrate/checks.migrated"),
        None,
    );
    assert!(log.contains("batch/v1 Job shop/migrate: Complete"), "{log}");
}

/// The example carries the helper module a Python scaffold gets, unchanged.
#[test]
fn the_python_example_uses_the_scaffolds_helper() {
    let example =
        std::fs::read_to_string(example("freeze-window/gantry_plugin.py")).expect("example helper");
    let scaffold = include_str!("../src/cli/scaffold/python/gantry_plugin.py");
    assert!(
        example == scaffold,
        "examples/plugins/freeze-window/gantry_plugin.py differs from the scaffold's; copy daemon/src/cli/scaffold/python/gantry_plugin.py over it"
    );
}

/// The README's "Writing a plugin" section shows exactly what the scaffold prints.
#[test]
fn the_readme_shows_what_the_scaffold_prints() {
    let readme = std::fs::read_to_string(common::repo_root().join("README.md")).expect("README");
    let dir = tempfile::tempdir().expect("tempdir");
    for args in [
        &["plugin", "new", "hello", "--kind", "task"][..],
        &[
            "plugin", "new", "freeze", "--kind", "hook", "--lang", "python",
        ][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(args)
            .args(["--config", "/etc/gantry"])
            .current_dir(dir.path())
            .output()
            .expect("run gantry plugin new");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let shown = format!(
            "$ gantry {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(readme.contains(&shown), "README.md lacks:\n{shown}");
    }
}

#[test]
fn plugin_new_refuses_bad_names_and_existing_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let new = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_gantry"))
            .args(["plugin", "new", name, "--kind", "task"])
            .current_dir(dir.path())
            .output()
            .expect("run gantry plugin new")
    };
    let out = new("Bad_Name");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a plugin name"));
    assert!(new("ok").status.success());
    let out = new("ok");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
