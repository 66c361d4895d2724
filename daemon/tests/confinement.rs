//! Granted programs are confined: they run only what is granted, reach the network only
//! with `exec_network`, and nothing they start outlives them, whether they exit by themselves
//! or are killed at their timeout.

mod common;

use std::path::Path;

fn site(grant: &str, workflow: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = tmp.path().join("config");
    std::fs::create_dir_all(cfg.join("workflows")).expect("workflows");
    std::fs::write(cfg.join("gantry.toml"), grant).expect("gantry.toml");
    std::fs::write(cfg.join("workflows/app.toml"), workflow).expect("workflow");
    tmp
}

fn run(tmp: &Path) -> (i32, String) {
    common::gantry(&tmp.join("config"), &tmp.join("state"), &["run", "app"])
}

fn one_task(command: &str) -> String {
    format!(
        "[jobs.t]\nkind = \"exec\"\ncommand = {command}\n\n[[steps]]\nname = \"s\"\ntasks = [\"jobs.t\"]\n"
    )
}

/// Processes whose command line contains `needle`.
fn running(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

#[test]
fn a_granted_shell_cannot_run_a_program_that_is_not_granted() {
    let tmp = site(
        "[plugins.exec]\nexec = [\"sh\", \"cat\"]\n",
        &one_task(r#"["sh", "-c", "cat /dev/null && echo cat-ran; id -u || echo id-refused=$?"]"#),
    );
    let (code, out) = run(tmp.path());
    assert_eq!(code, 0, "{out}");
    let log = common::read_logs(&tmp.path().join("state"));
    assert!(log.contains("cat-ran"), "{log}");
    assert!(log.contains("id-refused=126"), "{log}");
}

#[test]
fn nothing_a_program_starts_outlives_it() {
    // setsid leaves the process group; only the program's cgroup still holds it.
    let tmp = site(
        "[plugins.exec]\nexec = [\"sh\", \"setsid\", \"sleep\"]\n",
        &one_task(r#"["sh", "-c", "setsid sleep 4071 & sleep 4072 & echo started"]"#),
    );
    let (code, out) = run(tmp.path());
    assert_eq!(code, 0, "{out}");
    let left = running("sleep 407");
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn nothing_a_timed_out_program_starts_outlives_it() {
    let tmp = site(
        "[plugins.exec]\nexec = [\"sh\", \"setsid\", \"sleep\"]\n",
        "[jobs.t]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"setsid sleep 5073 & sleep 5074\"]\ntimeout = \"1s\"\n\n[[steps]]\nname = \"s\"\ntasks = [\"jobs.t\"]\n",
    );
    let (code, out) = run(tmp.path());
    assert_ne!(code, 0, "{out}");
    let left = running("sleep 507");
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Programs reach the network only when their grant says `exec_network = true`.
#[test]
fn the_network_takes_exec_network() {
    let kubectl = common::repo_root().join("target/tools/kubectl");
    assert!(
        kubectl.is_file(),
        "kubectl is installed by scripts/setup-kube-tools.sh"
    );
    let listener = common::LoopbackListener::start();
    let addr = listener.url.clone();
    let command = format!(
        r#"["kubectl", "get", "namespaces", "--server", "{addr}", "--token", "x", "--request-timeout", "5s"]"#
    );
    for (network, expect_reached) in [(false, false), (true, true)] {
        let before = listener.accepted();
        let tmp = site(
            &format!(
                "[plugins.exec]\nexec = [{:?}]\nexec_network = {network}\n",
                kubectl.display().to_string()
            ),
            &one_task(&command),
        );
        let (code, out) = run(tmp.path());
        // The listener is no API server: kubectl fails either way.
        assert_ne!(code, 0, "{out}");
        let reached = listener.accepted() > before;
        assert_eq!(reached, expect_reached, "exec_network = {network}: {out}");
    }
}

#[test]
fn a_program_cannot_read_outside_the_task_and_its_installation() {
    let tmp = site(
        "[plugins.exec]\nexec = [\"cat\"]\n",
        &one_task(r#"["cat", "../gantry.toml"]"#),
    );
    std::fs::create_dir_all(tmp.path().join("config/files")).expect("files");
    let wf = one_task(&format!(
        r#"["cat", "{}"]"#,
        tmp.path().join("config/gantry.toml").display()
    ));
    std::fs::write(tmp.path().join("config/workflows/app.toml"), wf).expect("workflow");
    let (code, out) = run(tmp.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Permission denied"), "{out}");
}

/// No file a program writes grows past the scratch quota, and a run that leaves more than
/// the quota in scratch fails.
#[test]
fn the_scratch_quota_bounds_what_programs_write() {
    let grant =
        "[limits]\nmax_scratch_bytes = 100000\n\n[plugins.exec]\nexec = [\"sh\", \"head\"]\n";
    let tmp = site(
        grant,
        &one_task(r#"["sh", "-c", "head -c 5000000 /dev/zero > big; echo wrote=$?"]"#),
    );
    let (_, out) = run(tmp.path());
    let log = common::read_logs(&tmp.path().join("state"));
    assert!(log.contains("wrote="), "{out}\n{log}");
    assert!(
        !log.contains("wrote=0"),
        "one file grew past the quota: {log}"
    );

    let tmp = site(
        grant,
        &one_task(
            r#"["sh", "-c", "head -c 80000 /dev/zero > a; head -c 80000 /dev/zero > b; echo ok"]"#,
        ),
    );
    let (code, out) = run(tmp.path());
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("max_scratch_bytes"), "{out}");
}
