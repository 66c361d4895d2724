//! `gantry validate` on a directory holding each kind of error prints each at its
//! file:line:col, says how to fix it, and exits 1; a valid directory exits 0.

use std::path::Path;

mod common;

use common::gantry;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join("workflows").join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn every_kind_of_error_is_reported_at_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("gantry.toml"), "[plugins.exec]\nexec = [\"sh\", \"sleep\", \"cat\", \"env\", \"id\", \"setsid\", \"timeout\", \"touch\", \"rm\", \"mkdir\", \"date\", \"sha256sum\", \"ln\", \"mkfifo\"]\n").unwrap();
    write(&cfg, "syntax.toml", "[services.a]\nkind = \"exec\n");
    write(
        &cfg,
        "keys.toml",
        "parallelism = 3\nparalelism = 4\n[services.a]\nkind = \"exec\"\ncommand = [\"true\"]\n[[steps]]\nname = \"one\"\ntasks = [\"services.a\"]\nhalt_on_eror = true\n",
    );
    write(
        &cfg,
        "kinds.toml",
        "[services.a]\nkind = \"helmm\"\n[jobs.b]\nkind = \"exec\"\ncomand = [\"true\"]\n",
    );
    write(
        &cfg,
        "refs.toml",
        concat!(
            "[jobs.a]\nkind = \"exec\"\ncommand = [\"true\"]\n",
            "[jobs.b]\nkind = \"exec\"\ncommand = [\"echo\", \"${tasks.jobs.c.outputs.x}\", \"${env.HOME}\"]\n",
            "[jobs.c]\nkind = \"exec\"\ncommand = [\"true\"]\n",
            "[jobs.d]\nkind = \"exec\"\ncommand = [\"echo\", \"${tasks.jobs.nope.outputs.x}\"]\n",
            "[[steps]]\nname = \"first\"\ntasks = [\"jobs.a\", \"jobs.b\", \"jobs.d\"]\n",
            "[[steps]]\nname = \"second\"\ntasks = [\"jobs.c\", \"jobs.a\", \"jobs.missing\"]\n",
        ),
    );
    write(
        &cfg,
        "cycle.toml",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"true\"]\nneeds = [\"jobs.b\"]\n[jobs.b]\nkind = \"exec\"\ncommand = [\"true\"]\nneeds = [\"jobs.a\"]\n",
    );
    write(
        &cfg,
        "durations.toml",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"true\"]\ntimeout = \"soon\"\n",
    );
    write(
        &cfg,
        "hooks.toml",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"true\"]\nhooks.pre_deploy = { kind = \"no-such-hook\" }\n",
    );
    let barrier_wf = |first: &str, second: &str| {
        format!(
            "[jobs.a]\nkind = \"exec\"\ncommand = [\"true\"]\n[jobs.b]\nkind = \"exec\"\ncommand = [\"true\"]\n[[steps]]\nname = \"s1\"\nbarrier = \"{first}\"\ntasks = [\"jobs.a\"]\n[[steps]]\nname = \"s2\"\nbarrier = \"{second}\"\ntasks = [\"jobs.b\"]\n"
        )
    };
    write(&cfg, "ping.toml", &barrier_wf("x", "y"));
    write(&cfg, "pong.toml", &barrier_wf("y", "x"));

    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 1, "{out}");
    let expect = [
        ("syntax.toml:2:", "string"),
        ("keys.toml:2:1:", "unknown setting `paralelism`"),
        ("keys.toml:9:1:", "unknown step setting `halt_on_eror`"),
        (
            "kinds.toml:2:8:",
            "unknown kind `helmm`; the loaded task kinds are compose, exec, helm",
        ),
        (
            "kinds.toml:5:1:",
            "parameter `comand`: unknown field `comand`",
        ),
        (
            "refs.toml:4:7:",
            "uses outputs of `jobs.c`, which does not run before it",
        ),
        (
            "refs.toml:4:7:",
            "${env.HOME}, which is not allowed; add \"HOME\" to `env = [...]`",
        ),
        (
            "refs.toml:10:7:",
            "references outputs of unknown task `jobs.nope`",
        ),
        (
            "refs.toml:18:20:",
            "task `jobs.a` is already in step `first`",
        ),
        ("refs.toml:18:30:", "unknown task `jobs.missing`"),
        (
            "cycle.toml:1:7:",
            "dependency cycle: cycle/jobs.a → cycle/jobs.b → cycle/jobs.a",
        ),
        ("durations.toml:4:11:", "`soon` is not a duration"),
        ("hooks.toml:4:20:", "unknown hook kind `no-such-hook`"),
        (
            "ping.toml:1:7:",
            "dependency cycle: ping/jobs.a → barrier `y` → pong/jobs.a → barrier `x` → ping/jobs.a",
        ),
    ];
    for (place, text) in expect {
        assert!(
            out.lines().any(|l| l.contains(place) && l.contains(text)),
            "no line with `{place}` and `{text}` in:\n{out}"
        );
    }
}

#[test]
fn a_valid_directory_passes_with_a_summary() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/releasehub");
    let tmp = tempfile::tempdir().unwrap();
    let (code, out) = gantry(&example, tmp.path(), &["validate"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        format!(
            "ok: 1 workflows, 4 tasks, checked against {} plugins",
            gantry::builtin::BUILTIN_PLUGINS.len()
        )
    );
}

#[test]
fn a_grant_no_capability_reads_is_an_error_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(cfg.join("workflows")).unwrap();
    std::fs::write(
        cfg.join("gantry.toml"),
        "[limits]\ncpu_time = \"5s\"\n\n[plugins.exec]\nexec = [\"sh\", \"sleep\", \"cat\", \"env\", \"id\", \"setsid\", \"timeout\", \"touch\", \"rm\", \"mkdir\", \"date\", \"sha256sum\", \"ln\", \"mkfifo\"]\n  exce = [\"bash\"]\n",
    )
    .unwrap();
    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "gantry.toml:6:3: [plugins.exec]: unknown key `exce`; grants are exec, exec_env, exec_network, exec_paths, exec_workspace, kube_namespaces"
        ),
        "{out}"
    );
}

/// Plugins read their task's source directory: it may not be the configuration directory
/// (gantry.toml, the workflows) nor hold a cluster's kubeconfig.
#[test]
fn a_task_source_may_not_expose_gantrys_configuration_or_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(cfg.join("workflows")).unwrap();
    std::fs::create_dir_all(cfg.join("files/creds")).unwrap();
    std::fs::write(cfg.join("files/creds/admin.kubeconfig"), "apiVersion: v1\n").unwrap();
    std::fs::write(
        cfg.join("gantry.toml"),
        "[plugins.exec]\nexec = [\"sh\", \"sleep\", \"cat\", \"env\", \"id\", \"setsid\", \"timeout\", \"touch\", \"rm\", \"mkdir\", \"date\", \"sha256sum\", \"ln\", \"mkfifo\"]\n[clusters.prod]\nkubeconfig = \"files/creds/admin.kubeconfig\"\n",
    )
    .unwrap();
    std::fs::write(
        cfg.join("workflows/app.toml"),
        concat!(
            "[jobs.root]\nkind = \"exec\"\ncommand = [\"true\"]\nsource = \".\"\n",
            "[jobs.up]\nkind = \"exec\"\ncommand = [\"true\"]\nsource = \"..\"\n",
            "[jobs.default]\nkind = \"exec\"\ncommand = [\"true\"]\n",
            "[jobs.missing]\nkind = \"exec\"\ncommand = [\"true\"]\nsource = \"nope\"\n",
        ),
    )
    .unwrap();
    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("app.toml:1:7: task `jobs.root`: source `.` must be a directory inside the configuration directory"),
        "{out}"
    );
    assert!(
        out.contains("task `jobs.up`: source `..` must be a directory inside"),
        "{out}"
    );
    assert!(
        out.contains("task `jobs.default`: source `files` contains")
            && out.contains("admin.kubeconfig"),
        "{out}"
    );
    assert!(
        out.contains("task `jobs.missing`: source directory `nope` does not exist"),
        "{out}"
    );
}

#[test]
fn a_missing_directory_missing_workflows_or_a_stray_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let nowhere = tmp.path().join("nowhere");
    let (code, out) = gantry(&nowhere, &state, &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("nowhere: the configuration directory does not exist"),
        "{out}"
    );

    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("gantry.toml"), "[plugins.exec]\nexec = [\"sh\"]\n").unwrap();
    let (code, out) = gantry(&cfg, &state, &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("workflows: missing"), "{out}");

    write(
        &cfg,
        "app.toml",
        "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
    );
    write(&cfg, "web.yaml", "[jobs.a]\nkind = \"exec\"\n");
    // Editors' swap and backup files are not workflows, nor errors.
    write(&cfg, ".app.toml.swp", "x");
    write(&cfg, "app.toml~", "x");
    let (code, out) = gantry(&cfg, &state, &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("web.yaml: not a workflow: workflow files are named NAME.toml"),
        "{out}"
    );
    assert!(out.contains("1 error in"), "{out}");
}

#[test]
fn every_error_in_gantry_toml_is_reported_at_once_with_its_place() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(cfg.join("workflows")).unwrap();
    std::fs::write(
        cfg.join("gantry.toml"),
        "plugin_dir = [\"x\"]\n[limits]\nmemory_mib = \"lots\"\n\n[daemon]\nshutdown_grace = \"soon\"\n[wasm]\npoolng = true\n",
    )
    .unwrap();
    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 1, "{out}");
    for place in [
        "gantry.toml:1:1: unknown field `plugin_dir`",
        "gantry.toml:3:14: invalid type",
        "gantry.toml:6:18: `soon` is not a duration",
        "gantry.toml:8:1: unknown field `poolng`",
    ] {
        assert!(out.contains(place), "{place}:\n{out}");
    }
    assert!(out.contains("4 errors in"), "{out}");
}

#[test]
fn an_env_reference_unset_here_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(cfg.join("gantry.toml"), "[plugins.exec]\nexec = [\"sh\"]\n").unwrap();
    write(
        &cfg,
        "app.toml",
        "env = [\"GANTRY_TEST_SURELY_UNSET\", \"HOME\"]\n[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo \\\"$H\\\"\"]\nenv = { X = \"${env.GANTRY_TEST_SURELY_UNSET}\", H = \"${env.HOME}\" }\n",
    );
    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "app.toml:5:1: warning: task `jobs.a`: ${env.GANTRY_TEST_SURELY_UNSET} is not set"
        ),
        "{out}"
    );
    assert!(!out.contains("${env.HOME} is not set"), "{out}");
    assert!(out.contains("ok: 1 workflows"), "{out}");
}

#[test]
fn a_program_the_plugin_may_not_run_is_an_error_before_running() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("gantry.toml"),
        "[plugins.exec]\nexec = [\"sh\"]\n[plugins.hooks]\nexec = [\"sh\"]\n",
    )
    .unwrap();
    write(
        &cfg,
        "app.toml",
        concat!(
            "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n",
            "destroy = [\"curl\", \"-X\", \"DELETE\", \"http://x\"]\n",
            "hooks.pre_deploy = [{ kind = \"command\", command = [\"psql\", \"-c\", \"select 1\"] }]\n",
        ),
    );
    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("app.toml:4:1: task `jobs.a` (exec): parameter `destroy`: plugin `exec` may not run `curl`: the operator has not granted it; add exec = [\"curl\"] under [plugins.exec]"),
        "{out}"
    );
    assert!(
        out.contains("hook `command`: parameter `command`: plugin `hooks` may not run `psql`"),
        "{out}"
    );
    assert!(!out.contains("`sh`"), "{out}");
}

/// A workflow's own hooks are checked once, not once for each task; and tasks repeating the
/// same parameters each still get their verdict at their own line.
#[test]
fn a_workflow_hook_is_reported_once_and_repeated_tasks_each_at_their_line() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(&cfg).unwrap();
    std::fs::write(
        cfg.join("gantry.toml"),
        "[plugins.exec]\nexec = [\"true\"]\n",
    )
    .unwrap();
    let mut text = String::from("hooks.pre_deploy = { kind = \"no-such-hook\" }\n");
    for i in 0..5 {
        text.push_str(&format!(
            "[jobs.t{i}]\nkind = \"exec\"\ncomand = [\"true\"]\n"
        ));
    }
    write(&cfg, "many.toml", &text);
    let (code, out) = gantry(&cfg, &tmp.path().join("state"), &["validate"]);
    assert_eq!(code, 1, "{out}");
    let hook_lines: Vec<_> = out
        .lines()
        .filter(|l| l.contains("unknown hook kind `no-such-hook`"))
        .collect();
    assert_eq!(hook_lines.len(), 1, "{out}");
    assert!(hook_lines[0].contains("many.toml:1:"), "{out}");
    for i in 0..5 {
        let line = 4 + 3 * i;
        assert!(
            out.lines()
                .any(|l| l.contains(&format!("many.toml:{line}:"))
                    && l.contains(&format!("task `jobs.t{i}`"))
                    && l.contains("comand")),
            "no verdict for jobs.t{i} at line {line}:\n{out}"
        );
    }
}
