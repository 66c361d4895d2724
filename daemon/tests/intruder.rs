//! A third-party plugin granted only `kubectl` and one namespace, trying every way out of
//! that grant, under the daemon and under `gantry run`: it must not read a kubeconfig or
//! gantry's configuration, run another program, reach the network, leave a process behind
//! or exceed its limits.

mod common;

use std::path::PathBuf;

use common::daemon::Site;

/// The admin token in the kubeconfig beside gantry.toml; it must show up nowhere.
const ADMIN_TOKEN: &str = "admin-token-7f3c9e1d";
/// A comment in gantry.toml; a plugin that read the file would show it.
const CONFIG_CANARY: &str = "config-canary-5b2e";

fn kubectl() -> PathBuf {
    let path = common::repo_root().join("target/tools/kubectl");
    assert!(
        path.is_file(),
        "kubectl is installed by scripts/setup-kube-tools.sh (the README's test command runs it)"
    );
    path
}

struct Attack {
    site: Site,
    marker: PathBuf,
    listener: common::LoopbackListener,
}

fn attack() -> Attack {
    let kubectl = kubectl();
    let gantry_toml = format!(
        "# {CONFIG_CANARY}\n[limits]\ncpu_time = \"2s\"\n\n[clusters.prod]\nkubeconfig = \"kubeconfig\"\n\n\
         [plugins.intruder]\nexec = [{:?}]\nkube_namespaces = [\"team-a\"]\n",
        kubectl.display().to_string()
    );
    let site = Site::new(&gantry_toml, &[]);
    std::fs::write(
        site.config.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://127.0.0.1:6443\n\
             contexts:\n- name: prod\n  context:\n    cluster: prod\n    user: admin\ncurrent-context: prod\n\
             users:\n- name: admin\n  user:\n    token: {ADMIN_TOKEN}\n"
        ),
    )
    .expect("kubeconfig");
    std::fs::copy(
        common::repo_root().join("target/plugins/fixtures/intruder.wasm"),
        site.config.join("plugins/intruder.wasm"),
    )
    .expect("the intruder fixture is built by scripts/build-plugins.sh");
    let marker = site.tmp.path().join("pwned");
    let listener = common::LoopbackListener::start();
    let workflow = format!(
        "[break.in]\nkind = \"intrude\"\nconfig_dir = {:?}\nmarker = {:?}\nserver = {:?}\nnamespace = \"team-a\"\n\n\
         [break.spin]\nkind = \"spin\"\n\n[break.hoard]\nkind = \"hoard\"\n\n\
         [[steps]]\nname = \"all\"\ntasks = [\"break.in\", \"break.spin\", \"break.hoard\"]\n",
        site.config.display().to_string(),
        marker.display().to_string(),
        listener.url,
    );
    site.write_workflow("attack", &workflow);
    Attack {
        site,
        marker,
        listener,
    }
}

impl Attack {
    /// Everything a person or a later process could read: the task logs and the state
    /// directory's files, and what the CLI printed.
    fn everything_written(&self, printed: &str) -> String {
        format!("{printed}{}", common::text_under(&self.site.state))
    }

    fn check(&self, printed: &str, intrude_log: &str) {
        let all = self.everything_written(printed);
        assert!(
            !all.contains(ADMIN_TOKEN),
            "the admin token leaked:\n{intrude_log}"
        );
        assert!(
            !intrude_log.contains(CONFIG_CANARY),
            "gantry's configuration was read:\n{intrude_log}"
        );
        for trick in [
            "plugin-read",
            "kubectl-read",
            "kubectl-env",
            "exec-credential",
            "network",
            "other-namespace",
        ] {
            assert!(
                intrude_log.contains(&format!("trick {trick}:")),
                "trick {trick} did not run:\n{intrude_log}"
            );
        }
        assert!(
            intrude_log.contains("may not set environment variable `KUBECONFIG`"),
            "{intrude_log}"
        );
        assert!(
            intrude_log.contains("may not set environment variable `HOME`"),
            "{intrude_log}"
        );
        assert!(
            !self.marker.exists(),
            "kubectl ran another program:\n{intrude_log}"
        );
        assert_eq!(
            self.listener.accepted(),
            0,
            "the program reached the network:\n{intrude_log}"
        );
        assert!(
            !intrude_log.contains("listed "),
            "another namespace was read:\n{intrude_log}"
        );
        assert!(
            printed.contains("cpu") || printed.contains("CPU"),
            "the spinning task was not stopped by its CPU limit:\n{printed}"
        );
        assert!(
            printed.contains("max_state_bytes"),
            "the hoarding task was not refused:\n{printed}"
        );
        assert!(
            leftover_processes(&self.site.tmp.path().display().to_string()).is_empty(),
            "processes were left behind"
        );
    }
}

/// Processes whose command line mentions `needle` (programs started for the attack).
fn leftover_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.contains("gantry") {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn a_plugin_granted_kubectl_gets_nothing_more_under_gantry_run() {
    let attack = attack();
    let (code, out) = common::gantry(
        &attack.site.config,
        &attack.site.state,
        &["run", "--sim", "attack"],
    );
    assert_ne!(code, 0, "{out}");
    let log = common::task_log(
        &attack.site.state,
        common::run_id(&out),
        "attack",
        "break.in",
    );
    attack.check(&out, &log);
}

#[test]
fn a_plugin_granted_kubectl_gets_nothing_more_under_the_daemon() {
    let attack = attack();
    let daemon = attack.site.start_sim();
    let run = daemon.trigger(&["attack"]);
    let finished = daemon.wait_run(&run);
    let (_, shown) = attack.site.cli(&["show", &run]);
    let (_, logs) = attack.site.cli(&["logs", &run]);
    let printed = format!("{finished}\n{shown}\n{logs}");
    let intrude_log = common::task_log(&attack.site.state, &run, "attack", "break.in");
    attack.check(&printed, &intrude_log);
    drop(daemon);
}

/// A program run for a task runs as the daemon's user, which the API otherwise trusts: it
/// must still not be able to drive the daemon (start runs, read history).
#[test]
fn a_tasks_program_cannot_use_the_daemons_api() {
    let gantry = env!("CARGO_BIN_EXE_gantry");
    let site = Site::new(&format!("[plugins.exec]\nexec = [{gantry:?}]\n"), &[]);
    let socket = site.socket.display().to_string();
    site.write_workflow(
        "inside",
        &format!(
            "[jobs.call]\nkind = \"exec\"\ncommand = [{gantry:?}, \"runs\"]\nenv = {{ GANTRY_SOCKET = {socket:?} }}\n\n\
             [[steps]]\nname = \"s\"\ntasks = [\"jobs.call\"]\n"
        ),
    );
    let daemon = site.start();
    let run = daemon.trigger(&["inside"]);
    daemon.wait_run(&run);
    let (_, logs) = site.cli(&["logs", &run]);
    assert!(
        logs.contains("may not use its API"),
        "the task's program reached the API:\n{logs}"
    );
    let (code, _) = site.cli(&["runs"]);
    assert_eq!(code, 0, "the operator still can");
}
