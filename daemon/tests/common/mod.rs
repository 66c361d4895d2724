//! Shared set-up for the daemon's integration tests.
#![allow(dead_code)]

pub mod daemon;
pub mod engine;
pub mod sim;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gantry::host::TaskDirs;
use gantry::wasm::bindings::types::TaskContext;
use gantry::wasm::cache::ComponentCache;
use gantry::wasm::grants::Grant;
use gantry::wasm::limits::Limits;
use gantry::wasm::{Plugin, PluginHost, PluginSource};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A component built by scripts/build-plugins.sh; a missing one fails the test with the fix.
pub fn built_plugin(relative: &str) -> Vec<u8> {
    let path = repo_root().join("target/plugins").join(relative);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first with scripts/build-plugins.sh",
            path.display()
        )
    })
}

/// A compiled-component cache shared by the tests of one checkout, so each component is
/// compiled once rather than once per test.
pub fn shared_cache() -> ComponentCache {
    let dir = repo_root().join("target/test-state");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    ComponentCache::in_state_dir(&dir)
}

pub fn host(limits: Limits) -> PluginHost {
    PluginHost::new(limits, true, shared_cache()).expect("wasm engine")
}

pub async fn load(
    host: &PluginHost,
    relative: &str,
    grants: &BTreeMap<String, Grant>,
) -> Arc<Plugin> {
    let wasm = built_plugin(relative);
    let plugin = host
        .load(PluginSource::File(PathBuf::from(relative)), &wasm, grants)
        .await
        .unwrap_or_else(|e| panic!("loading {relative}: {e}"));
    Arc::new(plugin)
}

/// The programs the tests' shell tasks use, granted to the exec kind with `sh`.
pub const SHELL: &[&str] = &[
    "sh",
    "sleep",
    "cat",
    "env",
    "id",
    "setsid",
    "timeout",
    "touch",
    "rm",
    "mkdir",
    "date",
    "sha256sum",
    "ln",
    "mkfifo",
];

pub fn grants(entries: &[(&str, &[&str])]) -> BTreeMap<String, Grant> {
    entries
        .iter()
        .map(|(name, programs)| (name.to_string(), Grant::default().with("exec", programs)))
        .collect()
}

/// Source and scratch directories for one task, with a symlink pointing out of the source.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
    pub dirs: TaskDirs,
}

pub fn task_dirs() -> Dirs {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dirs = TaskDirs {
        source: tmp.path().join("src"),
        scratch: Some(tmp.path().join("scratch")),
        workspace: None,
        spoiled: Default::default(),
    };
    std::fs::create_dir_all(&dirs.source).expect("src");
    std::fs::create_dir_all(tmp.path().join("scratch")).expect("scratch");
    std::os::unix::fs::symlink("/etc", dirs.source.join("link-out")).expect("symlink");
    Dirs { tmp, dirs }
}

pub fn context(kind: &str, params: serde_json::Value) -> TaskContext {
    TaskContext {
        run_id: "run-1".into(),
        workflow: "test".into(),
        task: format!("jobs.{kind}"),
        kind: kind.into(),
        params: params.to_string(),
        source_dir: gantry::host::GUEST_SOURCE_DIR.into(),
        scratch_dir: gantry::host::GUEST_SCRATCH_DIR.into(),
        workspace_dir: None,
        previous: None,
    }
}

/// Runs the gantry binary on a config and state directory; exit code and all it printed.
pub fn gantry(config: &Path, state: &Path, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--state",
            state.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .expect("run gantry");
    daemon::code_and_text(&out)
}

/// Every file under `dir`, at any depth.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The text of every file under `dir`, concatenated (bytes that are not UTF-8 replaced).
pub fn text_under(dir: &Path) -> String {
    files_under(dir)
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

/// Every task log under a state directory, concatenated.
pub fn read_logs(state: &Path) -> String {
    text_under(&state.join("logs"))
}

/// The id of the run that `gantry run` printed in `out` (`run ID: WORKFLOW...`).
pub fn run_id(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split([':', ' ']).next())
        .unwrap_or_else(|| panic!("no run id in:\n{out}"))
}

/// What `workflow`/`task` logged in `run`, as `TIME LEVEL message` lines.
pub fn task_log(state: &Path, run: &str, workflow: &str, task: &str) -> String {
    gantry::store::logs::task_log(&state.join("logs"), run, workflow, task)
        .unwrap_or_else(|e| panic!("reading the log of run {run} in {}: {e}", state.display()))
}

/// A loopback TCP port that counts the connections made to it, for tests that programs
/// cannot reach the network.
pub struct LoopbackListener {
    pub url: String,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl LoopbackListener {
    pub fn start() -> LoopbackListener {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let url = format!("http://{}", socket.local_addr().expect("local addr"));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for stream in socket.incoming().flatten() {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                drop(stream);
            }
        });
        LoopbackListener { url, accepted }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}
