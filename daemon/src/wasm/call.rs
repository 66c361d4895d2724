//! One sandboxed plugin call: a fresh `Store` from the plugin's `InstancePre`, with the
//! memory limit, CPU budget (epoch interruption), wall-clock timeout, hostcall fuel,
//! resource-table cap and log/output caps, and the outcome classified into an error the
//! operator can act on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::Bound;
use super::bindings::types::{
    Deployment, HookContext, HookDecision, Output, PlannedChange, PluginInfo, RollbackOutcome,
    TaskContext, TaskError, ValidateContext, ValidationIssue,
};
use super::grants::Effective;
use super::limits::Limits;
use super::plugin::Plugin;
use crate::host::kube::Clusters;
use crate::host::log::MemorySink;
use crate::host::{CallSetup, CallState, LogSink, TaskDirs, describe_task_error};

/// How one call is run: the task's directories, where its log goes, the clusters its kube
/// sessions may reach, and how to cancel it.
#[derive(Clone)]
pub struct CallOptions {
    pub dirs: Option<TaskDirs>,
    pub log: Arc<dyn LogSink>,
    pub clusters: Arc<Clusters>,
    pub cancel: CancellationToken,
}

impl CallOptions {
    /// A call with no directories that keeps its log in memory.
    pub fn detached() -> Self {
        CallOptions {
            dirs: None,
            log: Arc::new(MemorySink::default()),
            clusters: Arc::new(Clusters::none()),
            cancel: CancellationToken::new(),
        }
    }
}

/// A call's result plus what the host had to cut or drop, for the task's record.
#[derive(Debug)]
pub struct Called<T> {
    pub value: T,
    pub notes: Vec<String>,
}

/// Why a call failed; each says which limit or rule stopped it.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("plugin `{plugin}` used more than its {budget} of CPU time and was stopped")]
    CpuExceeded { plugin: String, budget: String },
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_mib} MiB and was stopped")]
    MemoryExceeded { plugin: String, limit_mib: u64 },
    #[error("plugin `{plugin}` overflowed its stack (unbounded recursion?) and was stopped")]
    StackOverflow { plugin: String },
    #[error("plugin `{plugin}` did not finish within {timeout} and was stopped")]
    WallTimeout { plugin: String, timeout: String },
    #[error(
        "plugin `{plugin}` tried to pass more than {limit} bytes to the host in one call and was stopped"
    )]
    HostcallFuel { plugin: String, limit: usize },
    #[error("plugin `{plugin}` panicked: {message}")]
    Panicked { plugin: String, message: String },
    #[error("plugin `{plugin}` trapped: {message}")]
    Trapped { plugin: String, message: String },
    #[error("plugin `{plugin}` call was cancelled")]
    Cancelled { plugin: String },
    #[error("plugin `{plugin}` failed: {}", describe_task_error(.error))]
    Task { plugin: String, error: TaskError },
    #[error("plugin `{plugin}` does not implement `{function}` (it is a {world} plugin)")]
    WrongWorld {
        plugin: String,
        function: &'static str,
        world: super::World,
    },
    #[error("plugin `{plugin}`: {message}")]
    Host { plugin: String, message: String },
}

impl CallError {
    /// The guest's own error, when the plugin returned one (as opposed to being stopped).
    pub fn task_error(&self) -> Option<&TaskError> {
        match self {
            CallError::Task { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether the call was dropped while it may have been waiting on the host (its wall
    /// timeout, a cancellation), rather than ending in the guest: work the host began for it
    /// on a blocking thread may still be under way.
    pub fn stopped_mid_call(&self) -> bool {
        matches!(
            self,
            CallError::WallTimeout { .. } | CallError::Cancelled { .. }
        )
    }
}

type CallFn<R> = Box<
    dyn for<'a> FnOnce(
            &'a Bound,
            &'a mut Store<CallState>,
        ) -> Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send,
>;

/// CPU time `describe` and `validate` may use: they only read their inputs, and a plugin that
/// spins in them must not hold up loading the configuration for the whole task budget.
pub const LOAD_CPU_BUDGET: Duration = Duration::from_secs(2);
/// Wall-clock bound on `describe` and `validate`.
pub const LOAD_WALL_BUDGET: Duration = Duration::from_secs(10);

/// How long a cancelled call may go on so the programs it runs can stop after SIGTERM.
const CANCEL_GRACE: Duration =
    crate::host::process::MAX_GRACE.saturating_add(Duration::from_secs(2));

/// Boxes one export call for [`Plugin::call`].
macro_rules! export {
    (|$b:ident, $s:ident| $body:expr) => {
        Box::new(move |$b: &Bound, $s: &mut Store<CallState>| Box::pin(async move { $body }))
    };
}

impl Plugin {
    /// The limits of `describe` and `validate`: the task limits, with short time budgets.
    fn load_limits(&self) -> Limits {
        Limits {
            cpu_time: self.limits.cpu_time.min(LOAD_CPU_BUDGET),
            call_timeout: self.limits.call_timeout.min(LOAD_WALL_BUDGET),
            ..self.limits.clone()
        }
    }

    /// Asks the plugin to describe itself (done once at load).
    pub async fn describe(&self) -> Result<PluginInfo, CallError> {
        let limits = self.load_limits();
        let called = self
            .call(
                CallOptions::detached(),
                &limits,
                "describe",
                export!(|b, s| b.describe(s).await.map(Some)),
            )
            .await?;
        Ok(called.value)
    }

    /// The plugin's verdict on a task's (or hook's) parameters, and on its files when
    /// `source` is given (mounted read-only, as during a run).
    pub async fn validate(
        &self,
        ctx: ValidateContext,
        source: Option<std::path::PathBuf>,
    ) -> Result<Vec<ValidationIssue>, CallError> {
        let limits = self.load_limits();
        let mut opts = CallOptions::detached();
        opts.dirs = source.map(TaskDirs::source_only);
        let called = self
            .call(
                opts,
                &limits,
                "validate",
                export!(|b, s| b.validate(s, &ctx).await.map(Some)),
            )
            .await?;
        Ok(called.value)
    }

    pub async fn plan(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<Vec<PlannedChange>>, CallError> {
        let called = self
            .call(
                opts,
                &self.limits,
                "plan",
                export!(|b, s| b.plan(s, &ctx).await),
            )
            .await?;
        self.guest_result(called)
    }

    pub async fn apply(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<Deployment>, CallError> {
        let called = self
            .call(
                opts,
                &self.limits,
                "apply",
                export!(|b, s| b.apply(s, &ctx).await),
            )
            .await?;
        let mut called = self.guest_result(called)?;
        self.check_record(&called.value)?;
        let notes = cap_outputs(&mut called.value.outputs, &self.limits);
        called.notes.extend(notes);
        Ok(called)
    }

    /// A deployment is history: its state and inventory must fit their limits whole (cut,
    /// they would roll back or destroy the wrong thing), or the call fails.
    fn check_record(&self, d: &Deployment) -> Result<(), CallError> {
        let state = d.state.as_ref().map_or(0, String::len);
        let inventory: usize = d.inventory.iter().map(|i| i.len() + 1).sum();
        let over = |what: &str, size: usize, limit: usize| CallError::Host {
            plugin: self.name(),
            message: format!(
                "its deployment's {what} is {size} bytes, over the limit of {limit} bytes ([limits] max_{what}_bytes); nothing was recorded"
            ),
        };
        if state > self.limits.max_state_bytes {
            return Err(over("state", state, self.limits.max_state_bytes));
        }
        if inventory > self.limits.max_inventory_bytes {
            return Err(over(
                "inventory",
                inventory,
                self.limits.max_inventory_bytes,
            ));
        }
        Ok(())
    }

    pub async fn rollback(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<RollbackOutcome>, CallError> {
        let called = self
            .call(
                opts,
                &self.limits,
                "rollback",
                export!(|b, s| b.rollback(s, &ctx).await),
            )
            .await?;
        let mut called = self.guest_result(called)?;
        if let RollbackOutcome::RolledBack(d) = &mut called.value {
            self.check_record(d)?;
            let notes = cap_outputs(&mut d.outputs, &self.limits);
            called.notes.extend(notes);
        }
        Ok(called)
    }

    pub async fn destroy(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<()>, CallError> {
        let called = self
            .call(
                opts,
                &self.limits,
                "destroy",
                export!(|b, s| b.destroy(s, &ctx).await),
            )
            .await?;
        self.guest_result(called)
    }

    pub async fn on_phase(
        &self,
        opts: CallOptions,
        ctx: HookContext,
    ) -> Result<Called<HookDecision>, CallError> {
        self.call(
            opts,
            &self.limits,
            "on-phase",
            export!(|b, s| b.on_phase(s, &ctx).await),
        )
        .await
    }

    fn guest_result<T>(
        &self,
        called: Called<Result<T, TaskError>>,
    ) -> Result<Called<T>, CallError> {
        match called.value {
            Ok(value) => Ok(Called {
                value,
                notes: called.notes,
            }),
            Err(error) => Err(CallError::Task {
                plugin: self.info.name.clone(),
                error,
            }),
        }
    }

    fn name(&self) -> String {
        if self.info.name.is_empty() {
            self.source.to_string()
        } else {
            self.info.name.clone()
        }
    }

    fn new_store(
        &self,
        opts: &CallOptions,
        limits: &Limits,
    ) -> Result<Store<CallState>, CallError> {
        let engine = self.pre.engine().clone();
        let caps: Arc<Effective> = self.caps.clone();
        let state = CallState::new(CallSetup {
            plugin: self.name(),
            caps,
            limits: limits.clone(),
            dirs: opts.dirs.clone(),
            log: opts.log.clone(),
            clusters: opts.clusters.clone(),
            cancel: opts.cancel.clone(),
        })
        .map_err(|e| CallError::Host {
            plugin: self.name(),
            message: format!("{e:#}"),
        })?;
        let mut store = Store::new(&engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(limits.hostcall_fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut cx| {
            let state = cx.data_mut();
            if state.cpu.over_budget() {
                state.cpu.exceeded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        Ok(store)
    }

    async fn call<R: Send>(
        &self,
        opts: CallOptions,
        limits: &Limits,
        function: &'static str,
        f: CallFn<Option<R>>,
    ) -> Result<Called<R>, CallError> {
        // Wait for a free instance slot rather than fail for want of one; the permit is
        // dropped after the store (declared later, dropped first), when the slot is free.
        let _slot = match &self.slots {
            Some(slots) => tokio::select! {
                permit = slots.clone().acquire_owned() => permit.ok(),
                _ = opts.cancel.cancelled() => {
                    return Err(CallError::Cancelled { plugin: self.name() });
                }
            },
            None => None,
        };
        let mut store = self.new_store(&opts, limits)?;
        let timeout = limits.call_timeout;
        let outcome = {
            let store = &mut store;
            let run = async move {
                let bound = self.pre.instantiate(&mut *store).await?;
                f(&bound, store).await
            };
            let run = tokio::time::timeout(timeout, run);
            tokio::pin!(run);
            tokio::select! {
                r = &mut run => match r {
                    Ok(r) => Outcome::Finished(r),
                    Err(_) => Outcome::TimedOut,
                },
                _ = opts.cancel.cancelled() => {
                    // Programs the plugin runs see the cancellation too: give them their
                    // SIGTERM grace to release what they hold before the call is dropped.
                    // The guest's own time is cut short (`GUEST_TIME_AFTER_CANCEL`).
                    let _ = tokio::time::timeout(CANCEL_GRACE, &mut run).await;
                    Outcome::Cancelled
                }
            }
        };
        let state = store.data();
        let mut notes: Vec<String> = state.log.summary().into_iter().collect();
        let output = state.stdio.text();
        if !output.trim().is_empty() {
            let sink = state.log.sink();
            let info = super::bindings::log::Level::Info;
            sink.line(
                info,
                &format!("plugin stdout/stderr (last {} bytes):", output.len()),
                &[],
            );
            for line in output.trim_end().lines() {
                sink.line(
                    info,
                    &format!("  | {}", crate::logging::escape_control(line)),
                    &[],
                );
            }
        }
        let plugin = self.name();
        match outcome {
            Outcome::Finished(Ok(Some(value))) => Ok(Called {
                value,
                notes: std::mem::take(&mut notes),
            }),
            Outcome::Finished(Ok(None)) => Err(CallError::WrongWorld {
                plugin,
                function,
                world: self.world,
            }),
            Outcome::Finished(Err(e)) => Err(classify(plugin, state, limits, e)),
            Outcome::TimedOut => Err(CallError::WallTimeout {
                plugin,
                timeout: human(timeout),
            }),
            Outcome::Cancelled => Err(CallError::Cancelled { plugin }),
        }
    }
}

enum Outcome<R> {
    Finished(wasmtime::Result<R>),
    TimedOut,
    Cancelled,
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn classify(plugin: String, state: &CallState, limits: &Limits, e: wasmtime::Error) -> CallError {
    if state.cpu.exceeded {
        return CallError::CpuExceeded {
            plugin,
            budget: human(state.cpu.budget()),
        };
    }
    if state.limiter.hit {
        return CallError::MemoryExceeded {
            plugin,
            limit_mib: limits.memory_mib,
        };
    }
    let trap = e.downcast_ref::<Trap>().copied();
    if trap == Some(Trap::StackOverflow) || shadow_stack_overflow(trap, &e) {
        return CallError::StackOverflow { plugin };
    }
    if format!("{e:#}").contains("fuel allocated for hostcalls has been exhausted") {
        return CallError::HostcallFuel {
            plugin,
            limit: limits.hostcall_fuel,
        };
    }
    if let Some(message) = state.stdio.panic_message() {
        return CallError::Panicked { plugin, message };
    }
    if trap == Some(Trap::Interrupt) {
        return CallError::CpuExceeded {
            plugin,
            budget: human(state.cpu.budget()),
        };
    }
    CallError::Trapped {
        plugin,
        message: format!("{e:#}"),
    }
}

/// Languages that compile to wasm keep their stack in linear memory, below the data; when it
/// overflows the stack pointer wraps around to just under 4 GiB and the next access faults
/// there. wasmtime reports the address only in the message.
fn shadow_stack_overflow(trap: Option<Trap>, e: &wasmtime::Error) -> bool {
    const WRAPPED: u64 = 0xFFF0_0000;
    if trap != Some(Trap::MemoryOutOfBounds) {
        return false;
    }
    let text = format!("{e:#}");
    let Some(start) = text.find("memory fault at wasm address 0x") else {
        return false;
    };
    let hex: String = text[start + "memory fault at wasm address 0x".len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    u64::from_str_radix(&hex, 16)
        .is_ok_and(|address| (WRAPPED..=u64::from(u32::MAX)).contains(&address))
}

/// Longest output key kept.
const MAX_OUTPUT_KEY: usize = 128;

/// Keeps outputs within the byte budget: oversized values are cut and later ones dropped,
/// each with a note, so a plugin cannot flood the store or the next task's parameters.
fn cap_outputs(outputs: &mut Vec<Output>, limits: &Limits) -> Vec<String> {
    let mut notes = Vec::new();
    let mut used = 0usize;
    let total = outputs.len();
    let mut kept = Vec::with_capacity(outputs.len());
    for mut out in outputs.drain(..) {
        if out.key.len() > MAX_OUTPUT_KEY {
            notes.push(format!(
                "output key starting `{}` is longer than {MAX_OUTPUT_KEY} bytes and was dropped",
                truncate(&out.key, 32)
            ));
            continue;
        }
        let room = limits.max_output_bytes.saturating_sub(used + out.key.len());
        if room == 0 {
            break;
        }
        if out.value.len() > room {
            notes.push(format!(
                "output `{}` was truncated from {} to {room} bytes (limit {} bytes for all outputs)",
                out.key,
                out.value.len(),
                limits.max_output_bytes
            ));
            out.value = truncate(&out.value, room).to_string();
        }
        used += out.key.len() + out.value.len();
        kept.push(out);
    }
    if kept.len() < total {
        let dropped = total - kept.len();
        notes.push(format!(
            "{dropped} of {total} outputs dropped: over the {}-byte output limit",
            limits.max_output_bytes
        ));
    }
    *outputs = kept;
    notes
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_capped_with_notes() {
        let limits = Limits {
            max_output_bytes: 100,
            ..Limits::default()
        };
        let mut outs: Vec<Output> = (0..3)
            .map(|i| Output {
                key: format!("k{i}"),
                value: "v".repeat(60),
                sensitive: false,
            })
            .collect();
        let notes = cap_outputs(&mut outs, &limits);
        assert_eq!(outs.len(), 2);
        assert_eq!(outs[1].value.len(), 100 - 62 - 2);
        assert!(notes.iter().any(|n| n.contains("truncated")), "{notes:?}");
        assert!(
            notes.iter().any(|n| n.contains("1 of 3 outputs dropped")),
            "{notes:?}"
        );
    }
}
