//! The `process` capability: run a granted program, resolved to an absolute path at load,
//! with a scrubbed environment, a working directory inside the task's directories, stdin, a
//! timeout that kills the whole process group, and bounded stdout/stderr.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{GUEST_SCRATCH_DIR, GUEST_SOURCE_DIR, TaskDirs};
use crate::wasm::bindings::process::{Command, CommandOutput, Host};
use crate::wasm::bindings::types::TaskError;
use crate::wasm::grants::Effective;

/// The PATH programs see; plugins cannot change it.
const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct ProcessHost {
    pub plugin: String,
    pub caps: Arc<Effective>,
    pub dirs: Option<TaskDirs>,
    pub max_output: usize,
    /// The call's wall-clock deadline; no program outlives it.
    pub deadline: Instant,
}

impl Host for super::CallState {
    async fn run(&mut self, cmd: Command) -> wasmtime::Result<Result<CommandOutput, TaskError>> {
        let started = Instant::now();
        let result = self.process.run(cmd).await;
        self.cpu.add_host_time(started.elapsed());
        if let Err(e) = &result {
            self.log.write(
                crate::wasm::bindings::log::Level::Warn,
                &super::describe_task_error(e),
                &[],
            );
        }
        Ok(result)
    }
}

impl ProcessHost {
    async fn run(&self, cmd: Command) -> Result<CommandOutput, TaskError> {
        let program = self
            .caps
            .program(&self.plugin, &cmd.program)
            .map_err(TaskError::CapabilityDenied)?
            .to_path_buf();
        let dirs = self.dirs.as_ref().ok_or_else(|| {
            TaskError::CapabilityDenied("programs cannot run during describe or validate".into())
        })?;
        for (name, _) in &cmd.env {
            check_env_name(name)?;
        }
        let cwd = match &cmd.cwd {
            Some(guest) => map_guest_dir(dirs, guest)?,
            None => dirs.scratch.clone(),
        };
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let timeout = cmd
            .timeout_ms
            .map_or(remaining, |ms| Duration::from_millis(ms).min(remaining));

        let mut child = tokio::process::Command::new(&program);
        child
            .args(&cmd.args)
            .env_clear()
            .env("PATH", SAFE_PATH)
            .env("HOME", &dirs.scratch)
            .env("LANG", "C.UTF-8")
            .envs(cmd.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&cwd)
            .stdin(if cmd.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = child
            .spawn()
            .map_err(|e| TaskError::Internal(format!("starting {}: {e}", program.display())))?;
        let group = GroupKiller(child.id());

        let stdin_task = match (child.stdin.take(), cmd.stdin) {
            (Some(mut pipe), Some(data)) => Some(tokio::spawn(async move {
                let _ = pipe.write_all(&data).await;
            })),
            _ => None,
        };
        let stdout = child
            .stdout
            .take()
            .map(|s| read_capped(s, self.max_output, Keep::Head));
        let stderr = child
            .stderr
            .take()
            .map(|s| read_capped(s, self.max_output, Keep::Tail));
        let io = async {
            let out = match stdout {
                Some(f) => f.await,
                None => (Vec::new(), false),
            };
            let err = match stderr {
                Some(f) => f.await,
                None => (Vec::new(), false),
            };
            (out, err)
        };
        let finished = tokio::time::timeout(timeout, async {
            let ((out, err), status) = tokio::join!(io, child.wait());
            (out, err, status)
        })
        .await;
        if let Some(task) = stdin_task {
            task.abort();
        }
        match finished {
            Err(_) => {
                drop(group);
                Err(TaskError::TimedOut(format!(
                    "{} ran longer than {}",
                    cmd.program,
                    humantime::format_duration(timeout)
                )))
            }
            Ok((out, err, status)) => {
                group.disarm();
                let status = status.map_err(|e| {
                    TaskError::Internal(format!("waiting for {}: {e}", cmd.program))
                })?;
                Ok(CommandOutput {
                    exit_code: status.code(),
                    stdout: out.0,
                    stderr: err.0,
                    truncated: out.1 || err.1,
                })
            }
        }
    }
}

/// Variables that would let a plugin inject code into the programs it runs.
fn check_env_name(name: &str) -> Result<(), TaskError> {
    let forbidden = name.starts_with("LD_")
        || name.starts_with("DYLD_")
        || matches!(
            name,
            "PATH" | "BASH_ENV" | "ENV" | "GCONV_PATH" | "HOSTALIASES"
        )
        || name.is_empty()
        || name.contains('=')
        || name.contains('\0');
    if forbidden {
        return Err(TaskError::CapabilityDenied(format!(
            "environment variable `{name}` may not be set by a plugin"
        )));
    }
    Ok(())
}

/// Maps a guest directory ("/src/app", "/scratch") to the host, refusing anything that
/// leaves the task's directories, by `..` or through a symlink.
fn map_guest_dir(dirs: &TaskDirs, guest: &str) -> Result<PathBuf, TaskError> {
    let denied = || {
        TaskError::CapabilityDenied(format!(
            "working directory `{guest}` is outside the task's directories ({GUEST_SOURCE_DIR}, {GUEST_SCRATCH_DIR})"
        ))
    };
    let path = Path::new(guest);
    let (root, rest) = [
        (GUEST_SOURCE_DIR, &dirs.source),
        (GUEST_SCRATCH_DIR, &dirs.scratch),
    ]
    .into_iter()
    .find_map(|(g, host)| path.strip_prefix(g).ok().map(|rest| (host, rest)))
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

/// Reads a stream to its end, keeping at most `cap` bytes (the first or the last ones).
async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    cap: usize,
    keep: Keep,
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
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
    (kept, truncated)
}

/// Kills the program's whole process group unless disarmed, so a timeout or a cancelled call
/// leaves nothing running behind it.
struct GroupKiller(Option<u32>);

impl GroupKiller {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a negative pid signals the process group we created with
            // process_group(0) for this child; it has no memory-safety preconditions.
            unsafe {
                libc::kill(-pid, libc::SIGKILL);
            }
        }
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
            scratch: tmp.path().join("scratch"),
        };
        std::fs::create_dir_all(dirs.source.join("app")).unwrap();
        std::fs::create_dir_all(&dirs.scratch).unwrap();
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

    #[test]
    fn code_injection_variables_are_refused() {
        for bad in ["LD_PRELOAD", "PATH", "BASH_ENV", "A=B", ""] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
        assert!(check_env_name("KUBECONFIG").is_ok());
    }
}
