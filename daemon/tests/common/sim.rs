//! The harness of the kinds that deploy to a cluster (manifest, helm, compose): a Kubernetes
//! API simulator served by the test, a configuration directory whose only cluster it is, and
//! the gantry binary run against both while the test's runtime keeps serving.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The programs the tests' `exec` tasks run.
pub const EXEC_GRANT: &str = r#"[plugins.exec]
exec = ["sh", "sleep", "cat", "env", "id", "setsid", "timeout", "touch", "rm", "mkdir", "date", "sha256sum", "ln", "mkfifo"]
"#;

/// A simulator whose workloads become ready after 100 ms.
pub async fn start_sim() -> kubesim::RunningSim {
    kubesim::start(kubesim::SimOptions {
        controllers: kubesim::ControllerOptions {
            ready_delay: Duration::from_millis(100),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

pub struct SimSite {
    pub sim: kubesim::RunningSim,
    pub config: tempfile::TempDir,
    pub state: tempfile::TempDir,
}

impl SimSite {
    /// A simulator (`start_sim`), and a configuration naming it as cluster `test`,
    /// granting `exec` the tests' programs, plus `plugins` (more of `gantry.toml`).
    pub async fn new(plugins: &str) -> SimSite {
        let sim = start_sim().await;
        let config = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(&config.path().join("kubeconfig"))
            .unwrap();
        std::fs::write(
            config.path().join("gantry.toml"),
            format!("[clusters.test]\nkubeconfig = \"kubeconfig\"\n\n{EXEC_GRANT}\n{plugins}"),
        )
        .unwrap();
        std::fs::create_dir_all(config.path().join("workflows")).unwrap();
        SimSite { sim, config, state }
    }

    /// Where a test file goes: gantry's own files at the configuration's root, what tasks
    /// read under the default task source `files/`.
    pub fn path(&self, rel: &str) -> PathBuf {
        let own = ["workflows/", "plugins/", "gantry.toml", "kubeconfig"];
        if own.iter().any(|o| rel.starts_with(o)) {
            self.config.path().join(rel)
        } else {
            self.config.path().join("files").join(rel)
        }
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    pub fn edit(&self, rel: &str, from: &str, to: &str) {
        let path = self.path(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{rel} has no {from:?}");
        std::fs::write(path, text.replace(from, to)).unwrap();
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.path(rel)).unwrap();
    }

    /// Runs the gantry binary with `args` while this runtime keeps serving the simulator.
    pub async fn gantry(&self, args: &[&str]) -> (i32, String) {
        let (config, state): (PathBuf, PathBuf) =
            (self.config.path().into(), self.state.path().into());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            super::gantry(&config, &state, &args)
        })
        .await
        .unwrap()
    }

    /// Runs a tool (kubectl, helm) against the simulator while this runtime serves it.
    pub async fn tool(&self, program: &Path, args: &[&str]) -> (i32, String) {
        let kubeconfig = self.config.path().join("kubeconfig");
        let home = self.state.path().join("tool-home");
        let program = program.to_path_buf();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::create_dir_all(&home);
            let out = std::process::Command::new(program)
                .args(&args)
                .env("KUBECONFIG", kubeconfig)
                .env("HOME", &home)
                .output()
                .unwrap();
            (
                out.status.code().unwrap_or(-1),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            )
        })
        .await
        .unwrap()
    }

    /// The object, if the simulator has it. A type it does not know is a mistake in the
    /// test, not an absent object.
    pub fn get(&self, api_version: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let reg = self.sim.store.registry();
        let t = reg
            .by_plural(group, version, plural)
            .unwrap_or_else(|| panic!("the simulator knows no {api_version} {plural}"));
        self.sim.store.get(t, ns, name).ok()
    }

    /// Names of the objects of one type in `ns`.
    pub fn names(&self, api_version: &str, plural: &str, ns: &str) -> Vec<String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let reg = self.sim.store.registry();
        let t = reg.by_plural(group, version, plural).unwrap();
        let (items, _) = self
            .sim
            .store
            .list(t, Some(ns), &Default::default(), &Default::default());
        items
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }

    /// The log of `task` in the run that `out` (what `gantry run` printed) reports.
    pub fn log(&self, out: &str, workflow: &str, task: &str) -> String {
        super::task_log(self.state.path(), super::run_id(out), workflow, task)
    }
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The last line of `gantry`'s output naming `task`: its outcome.
pub fn outcome_line<'a>(out: &'a str, task: &str) -> &'a str {
    out.lines()
        .rev()
        .find(|l| l.contains(task))
        .unwrap_or_default()
}

/// Where in `text` each needle first appears; panics naming the one missing.
pub fn positions(text: &str, needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| {
            text.find(n)
                .unwrap_or_else(|| panic!("{n:?} not found in:\n{text}"))
        })
        .collect()
}

pub fn assert_ordered(text: &str, needles: &[&str]) {
    let at = positions(text, needles);
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "expected in this order {needles:?}:\n{text}"
    );
}
