//! The `process` capability: run a granted program, resolved to an absolute path at load,
//! with only the environment its grant allows, a working directory inside the task's
//! directories, stdin, bounded stdout/stderr (optionally copied line by line into the task log
//! as it is printed), SIGTERM then SIGKILL on timeout or cancellation, confined (`confine`)
//! and killed with everything it started when it ends (`cgroup`).

mod cgroup;
pub mod confine;
pub mod descriptors;
#[cfg(target_arch = "x86_64")]
mod fd_slots;
pub mod grant;
mod opened;
mod rulesets;
mod spawn;
mod startup;
#[cfg(test)]
mod test_task;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use tokio_util::sync::CancellationToken;

use wasmtime::component::HasSelf;

use super::capability::{CallBuilder, Capability, GrantRequest, Resolution};
use super::{
    CallState, GUEST_SCRATCH_DIR, GUEST_SOURCE_DIR, GUEST_WORKSPACE_DIR, LogSink, TaskDirs,
};
use crate::wasm::bindings::log::Level;
use crate::wasm::bindings::process::{Command, CommandOutput, Host};
use crate::wasm::bindings::types::{Capability as Requested, TaskError};
use crate::wasm::bindings::{Linkers, v1, v2};
use crate::wasm::grants::Programs;
use grant::ProgramGrant;

pub use cgroup::{in_program_cgroup, release_idle as release_idle_cgroups};

/// The capability's name, under which its grant is filed.
pub const NAME: &str = "exec";

pub struct ProcessCapability;

impl Capability for ProcessCapability {
    fn name(&self) -> &'static str {
        NAME
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        grant::KEYS
    }

    fn link(&self, linkers: &mut Linkers) -> anyhow::Result<()> {
        for linker in linkers.each() {
            v1::task::gantry::plugin::process::add_to_linker::<_, HasSelf<CallState>>(
                linker,
                |s| s,
            )?;
            v2::process::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
        }
        Ok(())
    }

    fn resolve(&self, request: &GrantRequest<'_>) -> Resolution {
        let requested: Vec<String> = request
            .requested
            .iter()
            .filter_map(|c| match c {
                Requested::Exec(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        if requested.is_empty() {
            return Resolution::default();
        }
        let granted = match request.grant.strings("exec") {
            Ok(g) => g,
            Err(e) => {
                return Resolution {
                    refusals: vec![format!("[plugins.{}] {e}", request.plugin)],
                    ..Resolution::default()
                };
            }
        };
        let (programs, mut refusals) = Programs::resolve(
            request.plugin,
            requested.clone(),
            &granted,
            request.search_path,
        );
        let grant = match ProgramGrant::read(
            request.plugin,
            programs,
            request.grant,
            request.search_path,
            request.builtin,
        ) {
            Ok(grant) => Some(grant),
            Err(errors) => {
                refusals.extend(errors);
                None
            }
        };
        let named: Vec<&str> = requested
            .iter()
            .map(String::as_str)
            .filter(|p| *p != "*")
            .collect();
        Resolution {
            requested: requested.iter().map(|p| format!("exec:{p}")).collect(),
            granted: grant
                .iter()
                .flat_map(|g| g.programs.named())
                .map(|(name, path)| format!("exec:{name}={}", path.display()))
                .collect(),
            refusals,
            suggested: if named.is_empty() {
                vec!["exec = [\"PROGRAM\", ...]   # the programs its tasks may run".into()]
            } else {
                vec![format!(
                    "exec = [{}]",
                    named
                        .iter()
                        .map(|p| format!("\"{p}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                )]
            },
            grant: grant.map(|g| Arc::new(g) as Arc<dyn std::any::Any + Send + Sync>),
        }
    }

    fn prepare(&self, call: &mut CallBuilder<'_>) -> anyhow::Result<()> {
        let setup = call.setup;
        call.parts.insert(ProcessHost {
            plugin: setup.plugin.clone(),
            grant: call.grant::<ProgramGrant>(NAME).unwrap_or_default(),
            dirs: setup.dirs.clone(),
            max_output: setup.limits.max_process_output_bytes,
            max_scratch: setup.limits.max_scratch_bytes,
            deadline: call.deadline,
            log: setup.log.clone(),
            max_streamed: setup.limits.max_log_bytes,
            cancel: setup.cancel.clone(),
        });
        Ok(())
    }
}

/// The PATH programs see; plugins cannot change it.
pub(crate) const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a program may take to exit after SIGTERM when the call sets no grace.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// The longest grace a plugin may ask for; a cancelled call waits at most this long (and a
/// little more) for its programs to stop (see `wasm::call`).
pub const MAX_GRACE: Duration = Duration::from_secs(30);
/// After a program exits, how long its output pipes may stay open (held by something it
/// left behind, now killed) before the rest of its output is given up.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

pub struct ProcessHost {
    pub plugin: String,
    pub grant: Arc<ProgramGrant>,
    pub dirs: Option<TaskDirs>,
    pub max_output: usize,
    /// Bytes the scratch directory may hold after a program run.
    pub max_scratch: u64,
    /// The call's wall-clock deadline; no program outlives it.
    pub deadline: Instant,
    /// Where streamed lines go.
    pub log: Arc<dyn LogSink>,
    /// Bytes of streamed lines one program run may write to the log.
    pub max_streamed: usize,
    /// The task's cancellation: programs get SIGTERM, then SIGKILL after their grace.
    pub cancel: CancellationToken,
}

impl Host for CallState {
    async fn run(&mut self, cmd: Command) -> wasmtime::Result<Result<CommandOutput, TaskError>> {
        Ok(self.run_program(cmd).await)
    }
}

impl CallState {
    /// Runs a program for the plugin; the time it takes is the host's, not the guest's.
    pub(crate) async fn run_program(&mut self, cmd: Command) -> Result<CommandOutput, TaskError> {
        let started = Instant::now();
        let result = match self.parts.get::<ProcessHost>() {
            Some(process) => process.run(cmd).await,
            None => Err(TaskError::CapabilityDenied(
                "programs cannot run in this call".into(),
            )),
        };
        self.cpu.add_host_time(started.elapsed());
        if let Err(e) = &result {
            self.log.write(
                crate::wasm::bindings::log::Level::Warn,
                &super::describe_task_error(e),
                &[],
            );
        }
        result
    }
}

/// Why a program stopped before it exited by itself.
enum Stop {
    TimedOut(Duration),
    Cancelled,
}

impl ProcessHost {
    async fn run(&self, cmd: Command) -> Result<CommandOutput, TaskError> {
        let program = self
            .grant
            .programs
            .program(&self.plugin, &cmd.program)
            .map_err(TaskError::CapabilityDenied)?
            .to_path_buf();
        let Some((dirs, scratch)) = self
            .dirs
            .as_ref()
            .and_then(|d| d.scratch.clone().map(|s| (d, s)))
        else {
            return Err(TaskError::CapabilityDenied(
                "programs cannot run during describe or validate".into(),
            ));
        };
        for (name, _) in &cmd.env {
            self.grant.env.check(&self.plugin, name)?;
        }
        let cwd = match &cmd.cwd {
            Some(guest) => map_guest_dir(dirs, guest)?,
            None => scratch.clone(),
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = cmd
            .timeout_ms
            .map_or(remaining, |ms| Duration::from_millis(ms).min(remaining));
        let grace = cmd
            .grace_ms
            .map_or(DEFAULT_GRACE, Duration::from_millis)
            .min(MAX_GRACE);

        let confinement = confine::Confinement::prepare(
            &self.grant,
            dirs,
            self.max_scratch.min(confine::DEFAULT_MAX_FILE_BYTES),
        )
        .map_err(|e| TaskError::Internal(format!("{}: {e}", cmd.program)))?;
        // The plugin's variables (already checked against the grant) over the defaults.
        let mut env: BTreeMap<&OsStr, &OsStr> = BTreeMap::from([
            ("PATH".as_ref(), SAFE_PATH.as_ref()),
            ("HOME".as_ref(), scratch.as_os_str()),
            ("TMPDIR".as_ref(), scratch.as_os_str()),
            ("LANG".as_ref(), "C.UTF-8".as_ref()),
        ]);
        env.extend(
            cmd.env
                .iter()
                .map(|(k, v)| (OsStr::new(k.as_str()), OsStr::new(v.as_str()))),
        );
        let prepared = spawn::Program::new(
            &program,
            cmd.args.iter().map(String::as_str),
            env,
            &cwd,
            cmd.stdin.is_some(),
        )
        .map_err(|e| TaskError::InvalidConfig(format!("{}: {e}", cmd.program)))?;
        let (mut child, cgroup) = spawn::start(&prepared, confinement)
            .map_err(|e| TaskError::Internal(format!("starting {}: {e}", program.display())))?;
        // Whatever happens next, nothing the program started outlives this call.
        let group = GroupKiller(Some(child.pid));
        let ended = Ended { cgroup };

        let stdin_task = match (child.stdin.take(), cmd.stdin) {
            (Some(mut pipe), Some(data)) => Some(tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
            })),
            _ => None,
        };
        let streamed = Arc::new(StreamBudget::new(self.max_streamed));
        let stream = |level| {
            cmd.stream_output.then(|| LineSink {
                log: self.log.clone(),
                level,
                budget: streamed.clone(),
                program: cmd.program.clone(),
            })
        };
        let stdout = child.stdout.take().map(|s| {
            tokio::spawn(read_capped(
                s,
                self.max_output,
                Keep::Head,
                stream(Level::Info),
            ))
        });
        let stderr = child.stderr.take().map(|s| {
            tokio::spawn(read_capped(
                s,
                self.max_output,
                Keep::Tail,
                stream(Level::Warn),
            ))
        });

        let stop = tokio::select! {
            status = child.wait() => Ok(status),
            () = tokio::time::sleep(timeout) => Err(Stop::TimedOut(timeout)),
            () = self.cancel.cancelled() => Err(Stop::Cancelled),
        };
        if let Some(task) = stdin_task {
            task.abort();
        }
        let status = match stop {
            Ok(status) => status,
            Err(why) => {
                group.terminate();
                let exited = tokio::time::timeout(grace, child.wait()).await.is_ok();
                drop(group);
                ended.end(dirs).await;
                let how = if exited {
                    "stopped with SIGTERM".to_string()
                } else {
                    format!(
                        "killed after not exiting within {} of SIGTERM",
                        humantime::format_duration(grace)
                    )
                };
                return Err(match why {
                    Stop::TimedOut(limit) => TaskError::TimedOut(format!(
                        "{} ran longer than {} and was {how}",
                        cmd.program,
                        humantime::format_duration(limit)
                    )),
                    Stop::Cancelled => TaskError::Cancelled,
                });
            }
        };
        // The program has exited: whatever it left running goes with it.
        drop(group);
        ended.end(dirs).await;
        let status =
            status.map_err(|e| TaskError::Internal(format!("waiting for {}: {e}", cmd.program)))?;
        let out = drain(stdout).await;
        let err = drain(stderr).await;
        if let Some(note) = streamed.summary() {
            self.log.line(Level::Warn, &note, &[]);
        }
        let used = dir_bytes(&scratch);
        if used > self.max_scratch {
            return Err(TaskError::Internal(format!(
                "{} left {used} bytes in the scratch directory, over [limits] max_scratch_bytes = {}",
                cmd.program, self.max_scratch
            )));
        }
        Ok(CommandOutput {
            exit_code: status.code(),
            stdout: out.0,
            stderr: err.0,
            truncated: out.1 || err.1,
        })
    }
}

/// The rest of a stream's output, unless something still holds the pipe open.
async fn drain(reader: Option<tokio::task::JoinHandle<(Vec<u8>, bool)>>) -> (Vec<u8>, bool) {
    let Some(mut handle) = reader else {
        return (Vec::new(), false);
    };
    match tokio::time::timeout(DRAIN_AFTER_EXIT, &mut handle).await {
        Ok(Ok(read)) => read,
        _ => {
            handle.abort();
            (Vec::new(), true)
        }
    }
}

/// Streamed lines of one program run share one byte budget.
struct StreamBudget {
    max: usize,
    used: AtomicUsize,
    dropped: AtomicUsize,
}

impl StreamBudget {
    fn new(max: usize) -> Self {
        StreamBudget {
            max,
            used: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
        }
    }

    fn take(&self, n: usize) -> bool {
        if self.used.fetch_add(n, Ordering::Relaxed) + n > self.max {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn summary(&self) -> Option<String> {
        let dropped = self.dropped.load(Ordering::Relaxed);
        (dropped > 0).then(|| {
            format!(
                "{dropped} lines of program output were not copied to the log (over {} bytes)",
                self.max
            )
        })
    }
}

/// Copies a program's lines into the task log as they are printed.
struct LineSink {
    log: Arc<dyn LogSink>,
    level: Level,
    budget: Arc<StreamBudget>,
    program: String,
}

impl LineSink {
    fn line(&self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let text = crate::logging::escape_control(text.trim_end_matches(['\n', '\r']));
        let text = text.as_ref();
        if self.budget.take(text.len()) {
            self.log.line(
                self.level,
                text,
                &[("program".to_string(), self.program.clone())],
            );
        }
    }
}

/// Maps a guest directory ("/src/app", "/scratch") to the host, refusing anything that
/// leaves the task's directories, by `..` or through a symlink.
fn map_guest_dir(dirs: &TaskDirs, guest: &str) -> Result<PathBuf, TaskError> {
    let denied = || {
        TaskError::CapabilityDenied(format!(
            "working directory `{guest}` is outside the task's directories ({GUEST_SOURCE_DIR}, {GUEST_SCRATCH_DIR}, {GUEST_WORKSPACE_DIR})"
        ))
    };
    let path = Path::new(guest);
    let (root, rest) = dirs
        .mounts()
        .into_iter()
        .find_map(|(g, host, _)| path.strip_prefix(g).ok().map(|rest| (host, rest)))
        .ok_or_else(denied)?;
    if rest
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(denied());
    }
    let joined = root.join(rest);
    let real = joined
        .canonicalize()
        .map_err(|e| TaskError::InvalidConfig(format!("working directory `{guest}`: {e}")))?;
    let real_root = root
        .canonicalize()
        .map_err(|e| TaskError::Internal(e.to_string()))?;
    if !real.starts_with(&real_root) {
        return Err(denied());
    }
    Ok(real)
}

enum Keep {
    Head,
    Tail,
}

/// Reads a stream to its end, keeping at most `cap` bytes (the first or the last ones), and
/// hands each complete line to `lines` as it arrives.
async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
    keep: Keep,
    lines: Option<LineSink>,
) -> (Vec<u8>, bool) {
    /// A line longer than this is passed on in pieces.
    const MAX_LINE: usize = 16 * 1024;
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(sink) = &lines {
            partial.extend_from_slice(&chunk[..n]);
            while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
                sink.line(&partial[..=pos]);
                partial.drain(..=pos);
            }
            if partial.len() > MAX_LINE {
                sink.line(&partial);
                partial.clear();
            }
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > cap {
            truncated = true;
            match keep {
                Keep::Head => kept.truncate(cap),
                Keep::Tail => {
                    kept.drain(..kept.len() - cap);
                }
            }
        }
    }
    if let Some(sink) = &lines
        && !partial.is_empty()
    {
        sink.line(&partial);
    }
    (kept, truncated)
}

/// What the program leaves behind in its cgroup, ended once it has exited or been stopped.
struct Ended {
    cgroup: Option<cgroup::ProgramGroup>,
}

impl Ended {
    /// Ends the program's cgroup once nothing in it runs. Should a killed process outlast
    /// the wait, the scratch directory is spoiled: removed rather than handed to another call
    /// while that process may still write to it.
    async fn end(self, dirs: &TaskDirs) {
        let Some(group) = self.cgroup else {
            return;
        };
        if !group.end_emptied().await {
            dirs.spoiled.raise();
            tracing::warn!(
                scratch = ?dirs.scratch,
                "a killed program did not end in time; its scratch directory will not be reused"
            );
        }
    }
}

/// Bytes of the files under `dir` (links not followed), for the scratch quota.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => pending.push(entry.path()),
                Ok(m) => total = total.saturating_add(m.len()),
                Err(_) => {}
            }
        }
    }
    total
}

/// The program's process group: asked to stop with SIGTERM, and killed with SIGKILL when
/// dropped, so neither a timeout, a cancelled call nor a finished program leaves anything it
/// started in its group running behind it.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn signal(&self, signal: i32) {
        if let Some(pid) = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
        {
            // SAFETY: kill(2) with a negative pid signals the process group we created with
            // process_group(0) for this child; it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pid, signal);
            }
        }
    }

    fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.signal(libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directories_stay_inside_the_task() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = TaskDirs {
            source: tmp.path().join("src"),
            scratch: Some(tmp.path().join("scratch")),
            workspace: None,
            spoiled: Default::default(),
        };
        std::fs::create_dir_all(dirs.source.join("app")).unwrap();
        std::fs::create_dir_all(tmp.path().join("scratch")).unwrap();
        std::os::unix::fs::symlink("/etc", dirs.source.join("out")).unwrap();
        assert!(
            map_guest_dir(&dirs, "/src/app")
                .unwrap()
                .ends_with("src/app")
        );
        assert!(map_guest_dir(&dirs, "/scratch").is_ok());
        for bad in ["/src/../scratch", "/etc", "/src/out", "src/app", "/srcx"] {
            assert!(
                map_guest_dir(&dirs, bad).is_err(),
                "{bad} should be refused"
            );
        }
    }
}
