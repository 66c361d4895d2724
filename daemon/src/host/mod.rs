//! The capabilities plugins import, one module each behind [`capability::Capability`]:
//! `log`, `files` (WASI, limited to the task's source and scratch directories), `workspace`,
//! `process` and `kube`. One [`CallState`] lives in the `Store` of one plugin call; each
//! capability adds its part to it.

pub mod capability;
pub mod files;
pub mod kube;
pub mod log;
pub mod process;
pub mod stdio;
pub mod workspace;

use capability::{CallBuilder, Capability, Parts};

/// Every capability the host offers, in the order they are linked and prepared.
pub fn capabilities() -> &'static [&'static dyn Capability] {
    &[
        &log::LogCapability,
        &files::FilesCapability,
        &workspace::WorkspaceCapability,
        &process::ProcessCapability,
        &kube::KubeCapability,
    ]
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::wasm::bindings::types;
use crate::wasm::grants::Effective;
use crate::wasm::limits::{Limits, MemoryLimiter};

pub use log::{LogSink, TracingSink};

/// Guest path of the task's source directory (read-only).
pub const GUEST_SOURCE_DIR: &str = "/src";
/// Guest path of the task's scratch directory (read-write).
pub const GUEST_SCRATCH_DIR: &str = "/scratch";
/// Guest path of the task's workspace (read-write, kept between runs of the task).
pub const GUEST_WORKSPACE_DIR: &str = "/workspace";

/// Host directories a task call may see.
#[derive(Debug, Clone)]
pub struct TaskDirs {
    /// Mounted read-only.
    pub source: PathBuf,
    /// None while validating: nothing may be written then, and no program may run.
    pub scratch: Option<PathBuf>,
    /// Present when the plugin requested the workspace capability.
    pub workspace: Option<PathBuf>,
    /// Set by the host when the scratch directory must not be handed to another call.
    pub spoiled: Spoiled,
}

/// Raised when something the host could not stop may still write to a call's scratch
/// directory (a killed program that outlasted the wait for its cgroup to empty), so the
/// directory is removed rather than reused. Held by the host: a mark inside the directory
/// could be removed, or redirected by a link, by what the call runs.
#[derive(Debug, Clone, Default)]
pub struct Spoiled(Arc<std::sync::atomic::AtomicBool>);

impl Spoiled {
    pub fn raise(&self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_raised(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl TaskDirs {
    /// Only the source directory, read-only: what `validate` sees.
    pub fn source_only(source: PathBuf) -> Self {
        TaskDirs {
            source,
            scratch: None,
            workspace: None,
            spoiled: Spoiled::default(),
        }
    }

    /// Guest and host path of each directory the call mounts, and whether it is writable.
    pub fn mounts(&self) -> Vec<(&'static str, &std::path::Path, bool)> {
        let mut mounts = vec![(GUEST_SOURCE_DIR, self.source.as_path(), false)];
        if let Some(s) = &self.scratch {
            mounts.push((GUEST_SCRATCH_DIR, s.as_path(), true));
        }
        if let Some(w) = &self.workspace {
            mounts.push((GUEST_WORKSPACE_DIR, w.as_path(), true));
        }
        mounts
    }
}

/// Guest time a cancelled call still has to wind down (report what its programs did, save
/// state) once it is back from the host. Waiting for its programs to stop is host time, and
/// is bounded by their SIGTERM grace instead.
pub const GUEST_TIME_AFTER_CANCEL: Duration = Duration::from_secs(1);

/// Guest execution time, excluding time spent inside host calls such as running a program.
#[derive(Debug)]
pub struct CpuClock {
    started: Instant,
    in_host: Duration,
    budget: Duration,
    pub exceeded: bool,
    cancel: tokio_util::sync::CancellationToken,
    /// The budget was cut to `GUEST_TIME_AFTER_CANCEL` past the cancellation.
    cut: bool,
}

impl CpuClock {
    pub fn new(budget: Duration, cancel: tokio_util::sync::CancellationToken) -> Self {
        CpuClock {
            started: Instant::now(),
            in_host: Duration::ZERO,
            budget,
            exceeded: false,
            cancel,
            cut: false,
        }
    }

    pub fn guest_time(&self) -> Duration {
        self.started.elapsed().saturating_sub(self.in_host)
    }

    /// Whether the guest has used its budget, or, once its call is cancelled, its
    /// `GUEST_TIME_AFTER_CANCEL`: a cancelled guest that computes on is stopped then, rather
    /// than when the cancelled call's wait for its programs runs out.
    pub fn over_budget(&mut self) -> bool {
        if !self.cut && self.cancel.is_cancelled() {
            self.cut = true;
            self.budget = self
                .budget
                .min(self.guest_time().saturating_add(GUEST_TIME_AFTER_CANCEL));
        }
        self.guest_time() > self.budget
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    fn add_host_time(&mut self, d: Duration) {
        self.in_host += d;
    }
}

/// Everything one plugin call's `Store` holds.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub cpu: CpuClock,
    pub log: log::LogBudget,
    /// Each capability's own per-call state.
    parts: Parts,
    pub stdio: stdio::TailBuffer,
}

/// What the host needs to build a [`CallState`].
pub struct CallSetup {
    pub plugin: String,
    pub caps: Arc<Effective>,
    pub limits: Limits,
    pub dirs: Option<TaskDirs>,
    pub log: Arc<dyn LogSink>,
    pub clusters: Arc<kube::Clusters>,
    pub cancel: tokio_util::sync::CancellationToken,
}

impl CallState {
    pub fn new(setup: CallSetup) -> anyhow::Result<Self> {
        let stdio = stdio::TailBuffer::new(16 * 1024);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(stdio.clone())
            .stderr(stdio.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut parts = Parts::default();
        let deadline = Instant::now() + setup.limits.call_timeout;
        for capability in capabilities() {
            capability.prepare(&mut CallBuilder {
                setup: &setup,
                wasi: &mut wasi,
                parts: &mut parts,
                deadline,
            })?;
        }
        let mut table = ResourceTable::new();
        table.set_max_capacity(setup.limits.max_resources);
        Ok(CallState {
            wasi: wasi.build(),
            table,
            limiter: MemoryLimiter::new(setup.limits.memory_bytes()),
            cpu: CpuClock::new(setup.limits.cpu_time, setup.cancel.clone()),
            log: log::LogBudget::new(setup.log.clone(), setup.limits.max_log_bytes),
            parts,
            stdio,
        })
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// How a task error reads for an operator.
pub fn describe_task_error(e: &types::TaskError) -> String {
    use types::TaskError as E;
    match e {
        E::InvalidConfig(m) => format!("invalid configuration: {m}"),
        E::CapabilityDenied(m) => format!("capability denied: {m}"),
        E::ToolFailed(t) => {
            let code = t
                .exit_code
                .map_or_else(|| "a signal".to_string(), |c| format!("exit code {c}"));
            format!("{} failed with {code}: {}", t.program, t.stderr_tail)
        }
        E::Kube(k) if k.status == 0 => format!("kubernetes: {}", k.message),
        E::Kube(k) => format!("kubernetes: {} ({} {})", k.message, k.status, k.reason),
        E::TimedOut(m) => format!("timed out: {m}"),
        E::Cancelled => "cancelled".to_string(),
        E::Internal(m) => format!("internal error: {m}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_guest_has_its_budget_cut_to_the_time_after_cancel() {
        let cancel = tokio_util::sync::CancellationToken::new();
        let mut clock = CpuClock::new(Duration::from_secs(3600), cancel.clone());
        assert!(!clock.over_budget());
        assert_eq!(clock.budget(), Duration::from_secs(3600));
        cancel.cancel();
        assert!(!clock.over_budget(), "the guest may still wind down");
        assert!(
            clock.budget() < Duration::from_secs(2),
            "budget after cancel: {:?}",
            clock.budget()
        );
        let mut small = CpuClock::new(Duration::from_millis(5), cancel);
        small.over_budget();
        assert_eq!(
            small.budget(),
            Duration::from_millis(5),
            "a budget smaller than the time after cancel is kept"
        );
    }
}
