//! What the operator types: output formats, run ids by prefix and `latest`, aligned tables,
//! one exit code per outcome, `plan` and `graph` without a daemon, and a daemon whose
//! configuration never loaded saying so.

mod common;

use std::time::Duration;

use common::daemon::{EXEC_GRANT, Site};

const QUICK: &str = "[jobs.quick]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo hi\"]\n";

fn sleeper(seconds: u32) -> String {
    format!(
        "[jobs.slow]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep {seconds}\"]\n\n[[steps]]\nname = \"slow\"\ntasks = [\"jobs.slow\"]\n"
    )
}

#[test]
fn exit_codes_tell_daemon_down_not_found_and_usage_apart() {
    let site = Site::new(EXEC_GRANT, &[("quick", QUICK)]);
    let (code, out) = site.cli(&["status"]);
    assert_eq!(code, 5, "daemon down: {out}");
    let (code, out) = site.cli(&["runs", "--bogus"]);
    assert_eq!(code, 2, "usage: {out}");

    let daemon = site.start();
    let (code, out) = site.cli(&["show", "r-no-such-run"]);
    assert_eq!(code, 4, "not found: {out}");
    let id = daemon.trigger(&["quick"]);
    daemon.wait_run(&id);
    let (code, out) = site.cli(&["logs", &id, "quick.jobs.nope"]);
    assert_eq!(code, 4, "{out}");
    let (code, out) = site.cli(&["deploy", "nope"]);
    assert_eq!(code, 4, "{out}");
}

#[test]
fn runs_are_named_by_prefix_or_latest_and_listed_with_start_and_duration() {
    let site = Site::new(EXEC_GRANT, &[("quick", QUICK)]);
    let daemon = site.start();
    let first = daemon.trigger(&["quick"]);
    daemon.wait_run(&first);
    let second = daemon.trigger(&["quick"]);
    daemon.wait_run(&second);

    let (code, out) = site.cli(&["show", "latest", "-o", "json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["run"]["id"], second.as_str());
    // Without its random tail the id is still unique.
    let prefix = &first[..first.len() - 5];
    let (code, out) = site.cli(&["show", prefix]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with(&format!("run {first} succeeded")), "{out}");
    let (code, out) = site.cli(&["show", "r"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("several runs"), "{out}");
    let (code, out) = site.cli(&["logs", "latest", "quick.jobs.quick"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("hi"), "{out}");

    let (code, out) = site.cli(&["runs"]);
    assert_eq!(code, 0, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("RUN")
            && lines[0].contains("STARTED")
            && lines[0].contains("DURATION"),
        "{out}"
    );
    // Every column starts where its header does.
    for header in ["STATE", "STARTED", "DURATION", "TRIGGER", "WORKFLOWS"] {
        let at = lines[0].find(header).unwrap();
        for row in &lines[1..] {
            let (before, here) = (row.as_bytes()[at - 1], row.as_bytes()[at]);
            assert!(
                before == b' ' && here != b' ',
                "{header} misaligned:\n{out}"
            );
        }
    }
    let (code, out) = site.cli(&["runs", "-o", "wide"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().next().unwrap().contains("FINISHED"), "{out}");
    let (code, out) = site.cli(&["runs", "-o", "yaml"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("runs:") && out.contains(&format!("id: {second}")),
        "{out}"
    );
}

#[test]
fn status_counts_queued_runs_apart_and_workflows_and_version_answer() {
    // Long enough to still run whatever the machine's load; cancelled at the end.
    let site = Site::new(EXEC_GRANT, &[("slow", &sleeper(60)), ("quick", QUICK)]);
    let daemon = site.start();
    let running = daemon.trigger(&["slow"]);
    daemon.poll(
        &format!("/v1/runs/{running}"),
        Duration::from_secs(30),
        |v| v["run"]["state"] == "running",
    );
    let queued = daemon.trigger(&["slow"]);
    let (code, out) = site.cli(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 running, 1 queued"), "{out}");
    assert!(out.contains(&format!("running {running}")), "{out}");
    assert!(!out.contains(&format!("running {queued}")), "{out}");

    let (code, out) = site.cli(&["workflows"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.lines().any(|l| l.starts_with("quick ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("slow ")), "{out}");
    let (code, out) = site.cli(&["version"]);
    assert_eq!(code, 0, "{out}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(out.contains(&format!("gantry {version}")), "{out}");
    assert!(out.contains(&format!("daemon {version}")), "{out}");

    for run in [&queued, &running] {
        let (code, out) = site.cli(&["cancel", run]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(daemon.wait_run(run)["run"]["state"], "cancelled");
    }
}

#[test]
fn plan_and_graph_need_no_daemon_and_draw_workflows_with_their_barrier() {
    let front = "[web.b_c]\nkind = \"exec\"\ncommand = [\"true\"]\n[web_b.c]\nkind = \"exec\"\ncommand = [\"true\"]\nneeds = [\"web.b_c\"]\n[[steps]]\nname = \"build\"\ntasks = [\"web.b_c\"]\nbarrier = \"ready\"\n[[steps]]\nname = \"ship\"\ntasks = [\"web_b.c\"]\n";
    let back = "[api.a]\nkind = \"exec\"\ncommand = [\"true\"]\n[[steps]]\nname = \"only\"\ntasks = [\"api.a\"]\nbarrier = \"ready\"\n";
    let site = Site::new(EXEC_GRANT, &[("front", front), ("back", back)]);
    let (code, out) = site.cli(&["plan", "front", "back"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("front/web_b.c") && l.contains("front/web.b_c (must succeed)")),
        "{out}"
    );
    assert!(out.contains("barrier `ready`"), "{out}");
    let (code, out) = site.cli(&["graph", "front", "back"]);
    assert_eq!(code, 0, "{out}");
    for part in [
        "subgraph w1[\"workflow back\"]",
        "subgraph w0s0[\"step build\"]",
        "[\"web.b_c\"]",
        "[\"web_b.c\"]",
        "{{\"barrier ready\"}}",
        "legend",
    ] {
        assert!(out.contains(part), "{part}:\n{out}");
    }
    let (code, out) = site.cli(&["graph", "nope"]);
    assert_eq!(code, 4, "{out}");
}

#[test]
fn a_daemon_whose_configuration_never_loaded_says_so() {
    let site = Site::new(
        EXEC_GRANT,
        &[(
            "app",
            "[jobs.a]\nkind = \"exec\"\ncommand = \"not a list\"\n",
        )],
    );
    let _daemon = site.start();
    let (code, out) = site.cli(&["deploy", "app"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no configuration is active"), "{out}");
    assert!(out.contains("app.toml:1:7:"), "{out}");
    let (code, out) = site.cli(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("NO CONFIGURATION IS ACTIVE"), "{out}");
    assert!(out.contains("app.toml:1:7:"), "{out}");
}

#[test]
fn deploying_a_workflow_whose_edit_was_rejected_warns_of_the_last_good_version() {
    let site = Site::new(EXEC_GRANT, &[("app", QUICK), ("other", QUICK)]);
    let _daemon = site.start();
    site.write_workflow("app", "[jobs.quick]\nkind = \"exec\"\ncommand = 42\n");
    let (code, out) = site.cli(&["reload"]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "warning: the latest edit of workflow `app` was rejected, so its last good version"
        ),
        "{out}"
    );
    assert!(out.contains("app.toml:1:7:"), "{out}");
    let (code, out) = site.cli(&["deploy", "other", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("warning"), "{out}");
}
