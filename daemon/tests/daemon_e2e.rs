//! The daemon end to end: the real binary on temporary directories, driven through its CLI
//! and raw HTTP on its socket, with its files edited and its process signalled.

mod common;

use std::time::Duration;

use common::daemon::{EXEC_GRANT, Site, http};

const TWO_TASKS: &str = r#"
[infra.db]
kind = "exec"
command = ["sh", "-c", "echo creating db; echo ::gantry-outputs::; echo host=db.internal"]

[services.api]
kind = "exec"
command = ["sh", "-c", "echo api talks to \"$DB_HOST\""]
env = { DB_HOST = "${tasks.infra.db.outputs.host}" }

[[steps]]
name = "infra"
tasks = ["infra.db"]

[[steps]]
name = "services"
tasks = ["services.api"]
"#;

fn versioned(version: &str) -> String {
    format!(
        "[services.web]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo web {version}\"]\n\n[[steps]]\nname = \"web\"\ntasks = [\"services.web\"]\n"
    )
}

fn sleeper(seconds: u32) -> String {
    format!(
        "[jobs.slow]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo begin; sleep {seconds}; echo end\"]\ntimeout = \"10m\"\n\n[[steps]]\nname = \"slow\"\ntasks = [\"jobs.slow\"]\n"
    )
}

#[test]
fn deploys_through_the_cli_and_raw_http_and_streams_events_to_the_end() {
    let site = Site::new(EXEC_GRANT, &[("app", TWO_TASKS)]);
    let daemon = site.start();

    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("infra.db") && l.contains("succeeded")),
        "{out}"
    );
    assert!(out.contains("output host=db.internal"), "{out}");
    assert!(out.trim_end().ends_with("succeeded"), "{out}");

    let id = daemon.trigger(&["app"]);
    // Live task log lines carry no `seq` (they live in the log files); the stored events do.
    let events: Vec<_> = daemon
        .events(&id, 0)
        .into_iter()
        .filter(|e| e["type"] != "task_log")
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"run_started"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"run_finished"), "{kinds:?}");
    assert_eq!(events.last().unwrap()["state"], "succeeded");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // Resuming after an event gives exactly the ones after it.
    let mid = seqs[seqs.len() / 2];
    let resumed = daemon.events(&id, mid);
    let resumed_seqs: Vec<i64> = resumed.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        resumed_seqs,
        seqs.iter()
            .copied()
            .filter(|s| *s > mid)
            .collect::<Vec<_>>()
    );

    let shown = daemon.get(&format!("/v1/runs/{id}"));
    let api = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "services.api")
        .unwrap();
    assert_eq!(api["state"], "succeeded");
    let db = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "infra.db")
        .unwrap();
    assert_eq!(db["outputs"]["host"], "db.internal");
    let (status, log) =
        daemon.request("GET", &format!("/v1/runs/{id}/logs/app/services.api"), None);
    assert_eq!(status, 200);
    assert!(log.contains("api talks to db.internal"), "{log}");
    assert!(!log.contains("app/"), "one task's lines, untagged: {log}");
    let (status, whole) = daemon.request("GET", &format!("/v1/runs/{id}/logs"), None);
    assert_eq!(status, 200);
    assert!(
        whole
            .lines()
            .any(|l| l.contains(" app/services.api api talks to db.internal")),
        "{whole}"
    );
    assert!(whole.contains(" app/infra.db "), "{whole}");
    let (status, body) = daemon.request("GET", &format!("/v1/runs/{id}/logs/app/nope"), None);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no task app/nope"), "{body}");

    let (code, out) = site.cli(&["runs", "--workflow", "app", "--json"]);
    assert_eq!(code, 0, "{out}");
    let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "{runs}");
    let (code, out) = site.cli(&["graph", "app", "--format", "dot"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("digraph"), "{out}");
}

#[test]
fn bad_requests_get_one_error_shape_with_the_right_status() {
    let site = Site::new(EXEC_GRANT, &[("app", TWO_TASKS)]);
    let daemon = site.start();
    let cases: [(&str, &str, Option<String>, u16, &str); 7] = [
        (
            "POST",
            "/v1/runs",
            Some("{not json".into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workflows": ["app"], "extra": 1}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workflows": ["nope"]}"#.into()),
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/runs",
            Some(r#"{"workflows": []}"#.into()),
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/runs",
            Some(format!(r#"{{"workflows": ["{}"]}}"#, "a".repeat(100_000))),
            413,
            "payload_too_large",
        ),
        ("GET", "/v1/runs?limit=many", None, 400, "bad_request"),
        ("GET", "/v1/runs/r-missing", None, 404, "not_found"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, v) = daemon.json(method, path, body.as_deref());
        assert_eq!(got, status, "{method} {path}: {v}");
        assert_eq!(v["code"], code, "{method} {path}: {v}");
        assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    }
    let (status, v) = daemon.json("GET", "/v1/nothing-here", None);
    assert_eq!((status, v["code"].as_str()), (404, Some("not_found")));
    let id = daemon.trigger(&["app"]);
    daemon.wait_run(&id);
    let (status, v) = daemon.json("POST", &format!("/v1/runs/{id}/cancel"), None);
    assert_eq!(
        (status, v["code"].as_str()),
        (409, Some("not_running")),
        "{v}"
    );
}

#[test]
fn a_broken_change_keeps_the_last_good_config_and_a_fix_is_picked_up() {
    let site = Site::new(EXEC_GRANT, &[("web", &versioned("v1"))]);
    let daemon = site.start();
    let first = daemon.get("/v1/status")["generation"].as_i64().unwrap();

    site.write_workflow(
        "web",
        &versioned("v2").replace("kind = \"exec\"", "kind = \"exec\"\nreplicas = 3"),
    );
    let status = daemon.poll("/v1/status", Duration::from_secs(30), |s| {
        s["last_reload"]["ok"] == false
    });
    let errors = status["last_reload"]["errors"].to_string();
    assert!(errors.contains("web.toml:3:1"), "{errors}");
    assert!(errors.contains("replicas"), "{errors}");
    assert_eq!(status["generation"].as_i64().unwrap(), first);
    let (_, metrics) = daemon.request("GET", "/metrics", None);
    assert!(
        metrics.contains("gantry_config_last_reload_success 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gantry_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );

    // The previous version still deploys.
    let id = daemon.trigger(&["web"]);
    assert_eq!(daemon.wait_run(&id)["run"]["state"], "succeeded");
    let (_, log) = daemon.request("GET", &format!("/v1/runs/{id}/logs/web/services.web"), None);
    assert!(log.contains("web v1"), "{log}");

    site.write_workflow("web", &versioned("v3"));
    let status = daemon.poll("/v1/status", Duration::from_secs(30), |s| {
        s["last_reload"]["ok"] == true
    });
    assert_eq!(status["generation"].as_i64().unwrap(), first + 1);
    let id = daemon.trigger(&["web"]);
    daemon.wait_run(&id);
    let (_, log) = daemon.request("GET", &format!("/v1/runs/{id}/logs/web/services.web"), None);
    assert!(log.contains("web v3"), "{log}");

    // Reload on request: a no-op change is fine, and SIGHUP does the same.
    let (code, out) = site.cli(&["reload"]);
    assert_eq!(code, 0, "{out}");
    daemon.signal(libc::SIGHUP);
    daemon.poll("/v1/status", Duration::from_secs(30), |s| {
        s["generation"].as_i64() == Some(first + 3)
    });
}

#[test]
fn a_plugin_dropped_into_the_plugin_directory_serves_its_kind() {
    let site = Site::new(EXEC_GRANT, &[("app", TWO_TASKS)]);
    let daemon = site.start();
    let plugins = daemon.get("/v1/plugins");
    assert!(!plugins.to_string().contains("exec-requested"), "{plugins}");

    std::fs::write(
        site.config.join("gantry.toml"),
        format!("{EXEC_GRANT}[plugins.hostile]\nexec = [\"sh\"]\n"),
    )
    .unwrap();
    std::fs::copy(
        common::repo_root().join("target/plugins/fixtures/hostile.wasm"),
        site.config.join("plugins/hostile.wasm"),
    )
    .expect("the hostile fixture is built by scripts/build-plugins.sh");
    site.write_workflow(
        "shell",
        "[jobs.hello]\nkind = \"exec-requested\"\n\n[[steps]]\nname = \"hello\"\ntasks = [\"jobs.hello\"]\n",
    );
    daemon.poll("/v1/workflows", Duration::from_secs(60), |w| {
        w["workflows"].to_string().contains("\"shell\"")
    });
    let plugins = daemon.get("/v1/plugins");
    assert!(plugins.to_string().contains("exec-requested"), "{plugins}");

    let (code, out) = site.cli(&["deploy", "shell", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("output stdout=pwned"), "{out}");
}

#[test]
fn auto_deploy_runs_when_its_workflow_file_changes() {
    let auto = versioned("v1").replace("[services.web]", "auto_deploy = true\n\n[services.web]");
    let site = Site::new(EXEC_GRANT, &[("web", &auto), ("other", TWO_TASKS)]);
    let daemon = site.start();
    assert_eq!(daemon.get("/v1/runs")["runs"].as_array().unwrap().len(), 0);

    site.write_workflow("web", &auto.replace("v1", "v2"));
    let runs = daemon.poll("/v1/runs", Duration::from_secs(30), |r| {
        !r["runs"].as_array().unwrap().is_empty()
    });
    let run = &runs["runs"][0];
    assert_eq!(run["trigger"], "auto_deploy");
    assert_eq!(run["workflows"], serde_json::json!(["web"]));
    let id = run["id"].as_str().unwrap();
    daemon.wait_run(id);
    let (_, log) = daemon.request("GET", &format!("/v1/runs/{id}/logs/web/services.web"), None);
    assert!(log.contains("web v2"), "{log}");

    // A change to another workflow does not deploy this one.
    site.write_workflow(
        "other",
        &TWO_TASKS.replace("creating db", "creating the db"),
    );
    daemon.poll("/v1/status", Duration::from_secs(30), |s| {
        s["generation"].as_i64() == Some(3)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(daemon.get("/v1/runs")["runs"].as_array().unwrap().len(), 1);
}

#[test]
fn runs_of_the_same_workflow_queue_and_can_be_cancelled_while_waiting() {
    let site = Site::new(EXEC_GRANT, &[("slow", &sleeper(2))]);
    let daemon = site.start();
    let first = daemon.trigger(&["slow"]);
    let second = daemon.trigger(&["slow"]);
    let third = daemon.trigger(&["slow"]);
    assert_eq!(daemon.run_state(&second), "queued");
    let (code, out) = site.cli(&["cancel", &second]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(daemon.wait_run(&second)["run"]["state"], "cancelled");
    assert_eq!(daemon.wait_run(&first)["run"]["state"], "succeeded");
    let third_run = daemon.wait_run(&third);
    assert_eq!(third_run["run"]["state"], "succeeded");
    let first_end = daemon.get(&format!("/v1/runs/{first}"))["tasks"][0]["finished_at"]
        .as_i64()
        .unwrap();
    let third_start = third_run["tasks"][0]["started_at"].as_i64().unwrap();
    assert!(third_start >= first_end, "{third_start} < {first_end}");
}

#[test]
fn sigterm_lets_a_running_deployment_finish_and_refuses_new_runs() {
    let site = Site::new(
        &format!("{EXEC_GRANT}[daemon]\nshutdown_grace = \"60s\"\n"),
        &[("slow", &sleeper(2))],
    );
    let mut daemon = site.start();
    let id = daemon.trigger(&["slow"]);
    daemon.poll(&format!("/v1/runs/{id}"), Duration::from_secs(30), |r| {
        r["tasks"][0]["state"] == "running"
    });
    daemon.signal(libc::SIGTERM);
    let status = loop {
        let (status, _) = http(
            &daemon.socket,
            "POST",
            "/v1/runs",
            Some(r#"{"workflows": ["slow"]}"#),
        );
        if status != 202 {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status, 503);
    assert_eq!(daemon.wait_exit(Duration::from_secs(60)), Some(0));
    // With every call over, the scratch pool is left for the next start to take over.
    let closed = site.state.join("scratch/pool/.closed");
    assert!(closed.exists());
    let daemon = site.start();
    assert_eq!(daemon.run_state(&id), "succeeded");
    assert!(!closed.exists());
}

#[test]
fn sigterm_past_the_grace_period_cancels_and_records_it() {
    let site = Site::new(
        &format!("{EXEC_GRANT}[daemon]\nshutdown_grace = \"500ms\"\n"),
        &[("slow", &sleeper(60))],
    );
    let mut daemon = site.start();
    let id = daemon.trigger(&["slow"]);
    daemon.poll(&format!("/v1/runs/{id}"), Duration::from_secs(30), |r| {
        r["tasks"][0]["state"] == "running"
    });
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    let daemon = site.start();
    let run = daemon.get(&format!("/v1/runs/{id}"));
    assert_eq!(run["run"]["state"], "cancelled", "{run}");
    assert_eq!(run["tasks"][0]["state"], "cancelled", "{run}");
}

#[test]
fn a_second_daemon_or_a_local_run_on_the_same_state_is_refused() {
    let site = Site::new(EXEC_GRANT, &[("app", TWO_TASKS)]);
    let _daemon = site.start();
    let out = site
        .daemon_command(&[], &site.tmp.path().join("other.sock"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    // Exit code 7: an error without a code of its own (the README lists them).
    assert_eq!(out.status.code(), Some(7), "{err}");
    assert!(err.contains("another gantry daemon or local run"), "{err}");
    assert!(!site.tmp.path().join("other.sock").exists());

    // A local run on the daemon's state would mark its runs interrupted: refused too.
    let (code, out) = site.cli(&["run", "app"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("gantry deploy"), "{out}");
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "the daemon's history is intact: {out}");
}

#[test]
fn the_cli_says_in_one_sentence_when_no_daemon_runs() {
    let site = Site::new(EXEC_GRANT, &[]);
    let (code, out) = site.cli(&["status"]);
    assert_ne!(code, 0);
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(out.contains("daemon is not running"), "{out}");
}

/// SIGKILL at 20 points of runs in flight: every restart opens the store, keeps every run
/// that had finished as it was, and marks the ones that were in flight `interrupted`.
#[test]
fn sigkill_at_random_points_loses_no_finished_run() {
    let wide = (0..6)
        .map(|i| {
            format!("[jobs.j{i}]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep 0.{i}\"]\n")
        })
        .collect::<String>()
        + "[[steps]]\nname = \"all\"\ntasks = [\"jobs.j0\", \"jobs.j1\", \"jobs.j2\", \"jobs.j3\", \"jobs.j4\", \"jobs.j5\"]\n";
    let site = Site::new(
        EXEC_GRANT,
        &[("app", TWO_TASKS), ("slow", &sleeper(1)), ("wide", &wide)],
    );
    let seed = std::env::var("GANTRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("GANTRY_TEST_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut finished: std::collections::BTreeMap<String, String> = Default::default();
    let mut in_flight: Vec<String> = Vec::new();
    let mut interrupted = 0;
    for round in 0..20 {
        let mut daemon = site.start();
        let listed = daemon.get("/v1/runs?limit=500");
        let listed = listed["runs"].as_array().unwrap();
        let state_of = |id: &str| {
            listed
                .iter()
                .find(|r| r["id"] == id)
                .and_then(|r| r["state"].as_str())
                .map(str::to_string)
        };
        for run in listed {
            assert!(
                !matches!(run["state"].as_str(), Some("queued" | "running")),
                "round {round}: {run} left in flight (seed {seed})"
            );
        }
        for (id, state) in &finished {
            assert_eq!(
                state_of(id).as_deref(),
                Some(state.as_str()),
                "round {round}: run {id} changed (seed {seed})"
            );
        }
        // A run seen in flight just before the kill either finished in between or was
        // marked interrupted by this start.
        for id in in_flight.drain(..) {
            let state = state_of(&id).unwrap_or_else(|| panic!("run {id} lost (seed {seed})"));
            interrupted += usize::from(state == "interrupted");
            finished.insert(id, state);
        }
        let mut ids = Vec::new();
        for _ in 0..rng.usize(1..=3) {
            let wf = ["app", "slow", "wide"][rng.usize(..3)];
            ids.push(daemon.trigger(&[wf]));
        }
        std::thread::sleep(Duration::from_millis(rng.u64(0..1500)));
        for id in ids {
            let state = daemon.run_state(&id);
            if matches!(state.as_str(), "queued" | "running") {
                in_flight.push(id);
            } else {
                finished.insert(id, state);
            }
        }
        daemon.signal(libc::SIGKILL);
        daemon.wait_exit(Duration::from_secs(30));
    }
    println!(
        "{} runs, {interrupted} interrupted by a kill",
        finished.len() + in_flight.len()
    );
    assert!(interrupted > 0, "no kill landed during a run (seed {seed})");
}

/// Connects as `nobody` (65534) through a world-connectable socket: refused with 403 until
/// `[api]` allows its uid or its group.
#[test]
fn a_user_the_config_does_not_allow_gets_403() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert!(
            std::env::var("CI").is_err(),
            "this test switches users and must run as root in CI"
        );
        eprintln!("not root: cannot connect as another user; this check runs in CI");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new(EXEC_GRANT, &[("app", TWO_TASKS)]);
    let open = |p: &std::path::Path, mode| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let daemon = site.start();
    open(site.tmp.path(), 0o755);
    open(&site.tmp.path().join("run"), 0o755);
    open(&site.socket, 0o666);
    let binary = site.tmp.path().join("gantry");
    std::fs::copy(env!("CARGO_BIN_EXE_gantry"), &binary).unwrap();
    open(&binary, 0o755);
    // nobody, with one supplementary group (4242) or none.
    let as_nobody_in = |groups: &str| {
        let groups = if groups.is_empty() {
            "--clear-groups".to_string()
        } else {
            format!("--groups={groups}")
        };
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", &groups])
            .arg(&binary)
            .arg("--socket")
            .arg(&site.socket)
            .args(["status", "--json"])
            .output()
            .expect("setpriv (util-linux) runs the client as nobody");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), text)
    };

    let as_nobody = || as_nobody_in("");
    let (code, out) = as_nobody();
    assert_ne!(code, Some(0), "{out}");
    assert!(out.contains("uid 65534 is not allowed"), "{out}");

    let generation = daemon.get("/v1/status")["generation"].as_i64().unwrap();
    for (n, (access, groups)) in [
        ("allow_uids = [65534]", ""),
        ("allow_uids = [\"nobody\"]", ""),
        ("allow_gids = [65534]", ""),
        // A user added to the group, as the README tells: a supplementary group counts.
        ("allow_gids = [4242]", "4242"),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(
            site.config.join("gantry.toml"),
            format!("{EXEC_GRANT}[api]\n{access}\n"),
        )
        .unwrap();
        let (code, _) = site.cli(&["reload"]);
        assert_eq!(code, 0);
        daemon.poll("/v1/status", Duration::from_secs(30), |s| {
            s["generation"].as_i64() > Some(generation + n as i64)
        });
        let (code, out) = as_nobody_in(groups);
        assert_eq!(code, Some(0), "{access}: {out}");
        assert!(out.contains("\"generation\""), "{out}");
    }
}

#[test]
fn logs_follow_shows_task_log_lines_live_and_logs_prints_them_after() {
    // The first line comes a second in, once the follower is listening.
    let slow = "[jobs.slow]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep 1; echo begin; sleep 2; echo end\"]\n";
    let site = Site::new(EXEC_GRANT, &[("slow", slow)]);
    let daemon = site.start();
    let id = daemon.trigger(&["slow"]);
    let (code, out) = site.cli(&["logs", &id, "-f"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("jobs.slow") && l.contains("| end")),
        "{out}"
    );
    assert!(out.contains("run succeeded"), "{out}");
    // Printed as the program printed it, not replayed when it ended.
    let at = |word: &str| -> f64 {
        out.lines()
            .find(|l| l.contains("jobs.slow") && l.contains(&format!("| {word}")))
            .and_then(|l| l.trim_start().split('s').next())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no time on the `{word}` line:\n{out}"))
    };
    assert!(at("end") - at("begin") >= 1.5, "{out}");
    let (code, out) = site.cli(&["logs", &id, "--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["tasks"][0]["log"].as_str().unwrap().contains("end"),
        "{v}"
    );
}

/// Auto-deploys queue behind the running one, and a newer change replaces the one still
/// waiting: only the newest configuration is deployed next.
#[test]
fn a_newer_change_supersedes_a_queued_auto_deploy() {
    let auto = |version: &str| {
        format!(
            "auto_deploy = true\n{}",
            // Long enough that the first run still holds the workflow while two more
            // changes are picked up, even on a loaded machine.
            sleeper(8).replace("echo begin", &format!("echo begin {version}"))
        )
    };
    let site = Site::new(EXEC_GRANT, &[("slow", &auto("v1"))]);
    let daemon = site.start();
    let runs = |n: usize| {
        daemon.poll("/v1/runs", Duration::from_secs(90), move |r| {
            r["runs"].as_array().unwrap().len() >= n
        })["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    site.write_workflow("slow", &auto("v2"));
    let first = runs(1)[0].clone();
    site.write_workflow("slow", &auto("v3"));
    let queued = runs(2)[0].clone();
    assert_eq!(daemon.run_state(&queued), "queued");
    site.write_workflow("slow", &auto("v4"));
    let newest = runs(3)[0].clone();

    assert_eq!(daemon.wait_run(&queued)["run"]["state"], "cancelled");
    let events = daemon.events(&queued, 0);
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "run_superseded" && e["by"] == newest.as_str()),
        "{events:?}"
    );
    assert_eq!(daemon.wait_run(&first)["run"]["state"], "succeeded");
    assert_eq!(daemon.wait_run(&newest)["run"]["state"], "succeeded");
    let (_, log) = daemon.request(
        "GET",
        &format!("/v1/runs/{newest}/logs/slow/jobs.slow"),
        None,
    );
    assert!(log.contains("begin v4"), "{log}");
}

#[test]
fn a_daemon_with_an_embedded_simulator_deploys_the_releasehub_example() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/releasehub");
    let read = |rel: &str| std::fs::read_to_string(example.join(rel)).unwrap();
    let site = Site::new(
        &read("gantry.toml"),
        &[("release", &read("workflows/release.toml"))],
    );
    std::fs::create_dir_all(site.config.join("files/k8s")).unwrap();
    for file in ["frontend.yaml", "migrate.yaml", "backend.yaml"] {
        std::fs::write(
            site.config.join("files/k8s").join(file),
            read(&format!("files/k8s/{file}")),
        )
        .unwrap();
    }
    let daemon = site.start_with(&[("GANTRY_SIM", "true")]);
    let (code, out) = site.cli(&["deploy", "release", "--wait"]);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    assert!(
        out.lines()
            .any(|l| l.contains("services.backend") && l.contains("succeeded")),
        "{out}"
    );
    assert!(site.state.join("kubesim/kubeconfig").is_file());
    assert!(
        daemon
            .log_text()
            .contains("embedded Kubernetes simulator serving")
    );
}

/// `[limits]` follow the active configuration from the next plugin call on; a setting the
/// running engine cannot change says it waits for a restart, in the reload's result and in
/// `gantry status`.
#[test]
fn reloaded_limits_apply_to_the_next_call_and_engine_settings_wait_for_a_restart() {
    let site = Site::new(
        "[limits]\ncpu_time = \"60s\"\n",
        &[("spin", "[jobs.spin]\nkind = \"spin\"\n")],
    );
    std::fs::write(
        site.config.join("plugins/hostile.wasm"),
        common::built_plugin("fixtures/hostile.wasm"),
    )
    .unwrap();
    let daemon = site.start();
    std::fs::write(
        site.config.join("gantry.toml"),
        "[limits]\ncpu_time = \"1s\"\n\n[wasm]\npooling = false\n",
    )
    .unwrap();
    let (code, body) = daemon.request("POST", "/v1/reload", None);
    assert_eq!(code, 200, "{body}");
    let reload: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        reload["restart_needed"]
            .to_string()
            .contains("[wasm] pooling = false takes effect after a restart"),
        "{reload}"
    );
    let id = daemon.trigger(&["spin"]);
    let run = daemon.wait_run(&id);
    let error = run["tasks"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(error.contains("used more than its 1s of CPU time"), "{run}");
    let (code, out) = site.cli(&["status"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("settings waiting for a restart"), "{out}");
}

#[test]
fn a_socket_path_naming_a_regular_file_is_refused_and_the_file_kept() {
    let site = Site::new(EXEC_GRANT, &[("app", TWO_TASKS)]);
    std::fs::create_dir_all(site.socket.parent().unwrap()).unwrap();
    std::fs::write(&site.socket, "precious").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .arg("--config")
        .arg(&site.config)
        .arg("--state")
        .arg(&site.state)
        .arg("--socket")
        .arg(&site.socket)
        .arg("daemon")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("is not a socket; refusing to replace it"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&site.socket).unwrap(), "precious");
}

/// Idle connections are closed after `[api] header_timeout`, at most `max_connections` are
/// kept, and a flood of them does not keep a run from deploying.
#[test]
fn idle_api_connections_are_bounded_and_closed_and_runs_go_on() {
    use std::io::Read;
    let site = Site::new(
        &format!("{EXEC_GRANT}[api]\nheader_timeout = \"1s\"\nmax_connections = 20\n"),
        &[("app", TWO_TASKS)],
    );
    let daemon = site.start();
    let idle: Vec<std::os::unix::net::UnixStream> = (0..200)
        .filter_map(|_| std::os::unix::net::UnixStream::connect(&site.socket).ok())
        .collect();
    assert!(idle.len() >= 20, "connections refused outright");
    // The API answers again once the flood is cut, and a run then goes on unharmed.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !answers_status(&site.socket) {
        assert!(
            std::time::Instant::now() < deadline,
            "the API did not answer again after its idle connections timed out"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = daemon.trigger(&["app"]);
    assert_eq!(daemon.wait_run(&id)["run"]["state"], "succeeded");
    // Every idle connection has been closed by now: reading gets end of file.
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = c
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("an idle connection is still open: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
}

/// Whether the daemon answers a status request on a new connection now; false while it
/// drops new connections for being at `max_connections`.
fn answers_status(socket: &std::path::Path) -> bool {
    use std::io::{BufRead, Write};
    let Ok(mut stream) = std::os::unix::net::UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /v1/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut status_line = String::new();
    let _ = std::io::BufReader::new(stream).read_line(&mut status_line);
    status_line.starts_with("HTTP/1.1 200")
}

/// Runs the CLI against `site` in the background, its stdout read line by line as printed,
/// each line with the time it arrived.
fn cli_live(
    site: &Site,
    args: &[&str],
) -> (
    std::process::Child,
    std::sync::mpsc::Receiver<(std::time::Instant, String)>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(args)
        .env("GANTRY_SOCKET", &site.socket)
        .env("GANTRY_CONFIG", &site.config)
        .env("GANTRY_STATE", &site.state)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send((std::time::Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    (child, rx)
}

#[test]
fn logs_follow_prints_lines_as_printed_with_run_times_and_exits_with_the_result() {
    // The task fails under the default policy: the run ends succeeded_with_errors (exit 3).
    // `end` comes 4 s after `begin`, so a follower that attaches late (a loaded machine)
    // still sees the two arrive well apart.
    let slow = "[jobs.slow]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep 1; echo begin; sleep 4; echo end; exit 4\"]\n";
    let site = Site::new(EXEC_GRANT, &[("slow", slow)]);
    let daemon = site.start();
    let id = daemon.trigger(&["slow"]);
    let (mut child, lines) = cli_live(&site, &["logs", &id, "-f"]);
    let mut seen = Vec::new();
    while let Ok((at, line)) = lines.recv_timeout(Duration::from_secs(60)) {
        seen.push((at, line));
    }
    let code = child.wait().unwrap().code();
    let text: Vec<&str> = seen.iter().map(|(_, l)| l.as_str()).collect();
    let out = text.join("\n");
    assert_eq!(code, Some(3), "{out}");
    let arrived = |word: &str| {
        seen.iter()
            .find(|(_, l)| l.contains(&format!("| {word}")))
            .unwrap_or_else(|| panic!("no `{word}` line:\n{out}"))
            .0
    };
    // `begin` reached the terminal while the task still ran, not when it ended.
    assert!(
        arrived("end").duration_since(arrived("begin")) >= Duration::from_millis(1500),
        "{out}"
    );
    assert!(out.contains("run succeeded_with_errors"), "{out}");

    // Replayed after the end, times are the run's own, not the replay's.
    let (code, out) = site.cli(&["logs", &id, "-f"]);
    assert_eq!(code, 3, "{out}");
    let failed = out
        .lines()
        .find(|l| l.contains("jobs.slow") && l.contains("FAILED"))
        .unwrap_or_else(|| panic!("{out}"));
    let at: f64 = failed
        .trim_start()
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(at >= 2.5, "{failed}");
    let took: f64 = failed
        .split("FAILED (")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{failed}"));
    assert!(took >= 2.5, "{failed}");
    // The tasks' lines are replayed too, from the log files, at the times they were printed.
    let at = |word: &str| -> f64 {
        out.lines()
            .find(|l| l.contains("jobs.slow") && l.contains(&format!("| {word}")))
            .and_then(|l| l.trim_start().split('s').next())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{word}` line:\n{out}"))
    };
    assert!(
        at("begin") >= 0.9 && at("end") - at("begin") >= 1.5,
        "{out}"
    );

    // One task's log, by WORKFLOW.TASK.
    let (code, out) = site.cli(&["logs", &id, "slow.jobs.slow"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("begin") && out.contains("end"), "{out}");
    assert!(!out.contains("==>"), "{out}");
    let (code, out) = site.cli(&["logs", &id, "slow.jobs.nope"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("slow.jobs.slow"), "{out}");
}

#[test]
fn ctrl_c_on_deploy_wait_leaves_the_run_going_and_says_how_to_cancel_it() {
    let site = Site::new(EXEC_GRANT, &[("slow", &sleeper(3))]);
    let daemon = site.start();
    let (child, lines) = cli_live(&site, &["deploy", "slow", "--wait"]);
    let mut id = String::new();
    while let Ok((_, line)) = lines.recv_timeout(Duration::from_secs(60)) {
        if let Some(rest) = line.strip_prefix("run ") {
            id = rest.split(':').next().unwrap_or_default().to_string();
        }
        if line.contains("jobs.slow") && line.contains("started") {
            break;
        }
    }
    assert!(!id.is_empty());
    // SAFETY: kill(2) on our own child's pid with a valid signal number.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("goes on"), "{stderr}");
    assert!(stderr.contains(&format!("gantry cancel {id}")), "{stderr}");
    assert_eq!(daemon.wait_run(&id)["run"]["state"], "succeeded");
}

#[test]
fn hook_output_and_decisions_and_cleanup_show_in_progress_show_and_logs() {
    let grant = "[plugins.exec]\nexec = [\"sh\"]\n[plugins.hooks]\nexec = [\"sh\"]\n";
    let before = "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo a\"]\n\n[jobs.old]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo old\"]\ndestroy = [\"sh\", \"-c\", \"echo tearing down old\"]\n";
    let after = "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo a\"]\nhooks.pre_deploy = [{ kind = \"command\", command = [\"sh\", \"-c\", \"echo checking the window\"] }]\n";
    let site = Site::new(grant, &[("app", before)]);
    let _daemon = site.start();
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    site.write_workflow("app", after);
    let (code, out) = site.cli(&["reload"]);
    assert_eq!(code, 0, "{out}");

    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    let id = out
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("run "))
        .and_then(|l| l.split(':').next())
        .unwrap()
        .to_string();
    for (task, what) in [
        ("jobs.old", "cleanup started"),
        ("jobs.old", "cleanup: destroyed"),
        ("jobs.a", "pre_deploy hook `command`: proceed"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(task) && l.contains(what)),
            "{what}:\n{out}"
        );
    }

    let (code, out) = site.cli(&["show", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("jobs.old") && l.contains("destroyed")),
        "{out}"
    );
    assert!(out.contains("pre_deploy hook `command`: proceed"), "{out}");

    let (code, out) = site.cli(&["logs", &id]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("==> app/jobs.old <=="), "{out}");
    assert!(out.contains("tearing down old"), "{out}");
    let (code, out) = site.cli(&["logs", &id, "app.jobs.a"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("checking the window"), "{out}");
}

#[test]
fn a_destroy_that_times_out_stays_pending_until_forgotten() {
    // The daemon allows 5 minutes; the workflow's own cleanup_timeout wins.
    let grant = "[plugins.exec]\nexec = [\"sh\", \"sleep\"]\n[daemon]\ncleanup_timeout = \"5m\"\n";
    let before = "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo a\"]\n\n[jobs.old]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo old\"]\ndestroy = [\"sh\", \"-c\", \"sleep 30\"]\n";
    let after = "cleanup_timeout = \"1s\"\n[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo a\"]\n";
    let site = Site::new(grant, &[("app", before)]);
    let _daemon = site.start();
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    site.write_workflow("app", after);
    let (code, out) = site.cli(&["reload"]);
    assert_eq!(code, 0, "{out}");

    let started = std::time::Instant::now();
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    // The destroy sleeps 30 s: anything under that was cut at the 1 s timeout.
    assert!(started.elapsed() < Duration::from_secs(28), "{out}");
    assert!(
        out.lines().any(|l| l.contains("jobs.old")
            && l.contains("cleanup PENDING")
            && l.contains("gantry forget app jobs.old")),
        "{out}"
    );
    let (code, out) = site.cli(&["show", "latest"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("jobs.old") && l.contains("cleanup_pending")),
        "{out}"
    );

    // Later deploys report it and do not run the same destroy again.
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("still pending, not destroyed again"), "{out}");
    assert!(!out.contains("cleanup started"), "{out}");

    let (code, out) = site.cli(&["forget", "app", "jobs.a"]);
    assert_ne!(code, 0, "a declared task is not forgotten: {out}");
    let (code, out) = site.cli(&["forget", "app", "jobs.old"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = site.cli(&["forget", "app", "jobs.old"]);
    assert_eq!(code, 4, "{out}");
    let (code, out) = site.cli(&["deploy", "app", "--wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("jobs.old"), "{out}");
}

/// `[metrics] listen` serves Prometheus on loopback TCP with per-workflow series; task log
/// events carry clean levels; the text log has no colour codes off a terminal and names each
/// run's workflows and trigger.
#[test]
fn metrics_on_loopback_tcp_clean_levels_and_a_plain_text_log() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let grant = format!("{EXEC_GRANT}[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let app = "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"sleep 1; echo hello\"]\n";
    let site = Site::new(&grant, &[("app", app)]);
    let log = site.tmp.path().join("text.log");
    let child = site
        .daemon_command(&[], &site.socket)
        .args(["--log-format", "text"])
        .env("GANTRY_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::options().append(true).open(&log).unwrap())
        .spawn()
        .unwrap();
    let daemon = common::daemon::Daemon::adopt(child, site.socket.clone(), log.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while std::os::unix::net::UnixStream::connect(&site.socket).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let id = daemon.trigger(&["app"]);
    let (code, out) = site.cli(&["logs", &id, "-f", "--json"]);
    assert_eq!(code, 0, "{out}");
    let levels: Vec<String> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "task_log")
        .map(|e| e["level"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(!levels.is_empty(), "{out}");
    assert!(levels.iter().all(|l| l == "info"), "{levels:?}");

    let scrape = {
        use std::io::{Read, Write};
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        tcp.read_to_string(&mut text).unwrap();
        text
    };
    for series in [
        format!(
            "gantry_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "gantry_workflow_runs_total{workflow=\"app\",state=\"succeeded\"} 1".to_string(),
        "gantry_workflow_last_success_timestamp_seconds{workflow=\"app\"} ".to_string(),
        "gantry_runs_total{state=\"succeeded\"} 1".to_string(),
    ] {
        assert!(scrape.contains(&series), "{series}:\n{scrape}");
    }

    // The daemon logs the run's end just after recording it: wait for the line.
    let finished_line = |text: &str| {
        text.lines().any(|l| {
            l.contains("run finished")
                && l.contains(&id)
                && l.contains("workflows=app")
                && l.contains("trigger=api")
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if finished_line(&text) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(finished_line(&text), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");

    std::fs::write(
        site.config.join("gantry.toml"),
        format!("{EXEC_GRANT}[metrics]\nlisten = \"0.0.0.0:{port}\"\n"),
    )
    .unwrap();
    let (code, out) = site.cli(&["validate"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("is not a loopback address"), "{out}");
}

/// Following a run that is already under way shows what its tasks printed before, once,
/// then what they print next.
#[test]
fn logs_follow_attached_late_shows_earlier_lines_once_then_live_ones() {
    let slow = "[jobs.slow]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"echo early-line; sleep 3; echo late-line\"]\n";
    let site = Site::new(EXEC_GRANT, &[("slow", slow)]);
    let daemon = site.start();
    let id = daemon.trigger(&["slow"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, log) = daemon.request("GET", &format!("/v1/runs/{id}/logs/slow/jobs.slow"), None);
        if log.contains("early-line") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the task never printed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(daemon.run_state(&id), "running");
    let (code, out) = site.cli(&["logs", &id, "-f"]);
    assert_eq!(code, 0, "{out}");
    // (`| running sh -c echo early-line ...` names both words once more.)
    assert_eq!(out.matches("| early-line").count(), 1, "{out}");
    assert_eq!(out.matches("| late-line").count(), 1, "{out}");
    assert_eq!(out.matches("run started").count(), 1, "{out}");
    assert!(out.find("early-line") < out.find("late-line"), "{out}");
}
