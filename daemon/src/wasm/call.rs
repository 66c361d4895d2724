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

use super::bindings::types::{
    Deployment, HookContext, HookDecision, Output, PlannedChange, PluginInfo, RollbackOutcome,
    TaskContext, TaskError, ValidationIssue,
};
use super::grants::Effective;
use super::limits::Limits;
use super::plugin::{Bound, Plugin, Pre};
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
}

type CallFn<R> = Box<
    dyn for<'a> FnOnce(
            &'a Bound,
            &'a mut Store<CallState>,
        ) -> Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>
        + Send,
>;

macro_rules! task_call {
    ($self:ident, $opts:ident, $name:literal, |$p:ident, $s:ident| $body:expr) => {
        $self
            .call(
                $opts,
                $name,
                Box::new(move |bound: &Bound, $s: &mut Store<CallState>| {
                    Box::pin(async move {
                        match bound {
                            Bound::Task($p) => Ok(Some($body.await?)),
                            Bound::Hook(_) => Ok(None),
                        }
                    })
                }),
            )
            .await
    };
}

impl Plugin {
    /// Asks the plugin to describe itself (done once at load).
    pub async fn describe(&self) -> Result<PluginInfo, CallError> {
        let called = self
            .call(
                CallOptions::detached(),
                "describe",
                Box::new(|bound: &Bound, store: &mut Store<CallState>| {
                    Box::pin(async move {
                        Ok(Some(match bound {
                            Bound::Task(p) => p.call_describe(store).await?,
                            Bound::Hook(p) => p.call_describe(store).await?,
                        }))
                    })
                }),
            )
            .await?;
        Ok(called.value)
    }

    /// The plugin's verdict on a task's (or hook's) parameters.
    pub async fn validate(
        &self,
        kind: &str,
        params: &str,
    ) -> Result<Vec<ValidationIssue>, CallError> {
        let (kind, params) = (kind.to_string(), params.to_string());
        let called = self
            .call(
                CallOptions::detached(),
                "validate",
                Box::new(move |bound: &Bound, store: &mut Store<CallState>| {
                    Box::pin(async move {
                        Ok(Some(match bound {
                            Bound::Task(p) => p.call_validate(store, &kind, &params).await?,
                            Bound::Hook(p) => p.call_validate(store, &kind, &params).await?,
                        }))
                    })
                }),
            )
            .await?;
        Ok(called.value)
    }

    pub async fn plan(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<Vec<PlannedChange>>, CallError> {
        let called = task_call!(self, opts, "plan", |p, s| p.call_plan(s, &ctx))?;
        self.guest_result(called)
    }

    pub async fn apply(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<Deployment>, CallError> {
        let called = task_call!(self, opts, "apply", |p, s| p.call_apply(s, &ctx))?;
        let mut called = self.guest_result(called)?;
        let notes = cap_outputs(&mut called.value.outputs, &self.limits);
        called.notes.extend(notes);
        Ok(called)
    }

    pub async fn rollback(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<RollbackOutcome>, CallError> {
        let called = task_call!(self, opts, "rollback", |p, s| p.call_rollback(s, &ctx))?;
        self.guest_result(called)
    }

    pub async fn destroy(
        &self,
        opts: CallOptions,
        ctx: TaskContext,
    ) -> Result<Called<()>, CallError> {
        let called = task_call!(self, opts, "destroy", |p, s| p.call_destroy(s, &ctx))?;
        self.guest_result(called)
    }

    pub async fn on_phase(
        &self,
        opts: CallOptions,
        ctx: HookContext,
    ) -> Result<Called<HookDecision>, CallError> {
        self.call(
            opts,
            "on-phase",
            Box::new(move |bound: &Bound, store: &mut Store<CallState>| {
                Box::pin(async move {
                    match bound {
                        Bound::Hook(p) => Ok(Some(p.call_on_phase(store, &ctx).await?)),
                        Bound::Task(_) => Ok(None),
                    }
                })
            }),
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

    fn new_store(&self, opts: &CallOptions) -> Result<Store<CallState>, CallError> {
        let engine = match &self.pre {
            Pre::Task(p) => p.engine().clone(),
            Pre::Hook(p) => p.engine().clone(),
        };
        let caps: Arc<Effective> = self.caps.clone();
        let state = CallState::new(CallSetup {
            plugin: self.name(),
            caps,
            limits: self.limits.clone(),
            dirs: opts.dirs.clone(),
            log: opts.log.clone(),
            clusters: opts.clusters.clone(),
        })
        .map_err(|e| CallError::Host {
            plugin: self.name(),
            message: format!("{e:#}"),
        })?;
        let mut store = Store::new(&engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_hostcall_fuel(self.limits.hostcall_fuel);
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
        let mut store = self.new_store(&opts)?;
        let timeout = self.limits.call_timeout;
        let outcome = {
            let store = &mut store;
            let run = async move {
                let bound = match &self.pre {
                    Pre::Task(p) => Bound::Task(p.instantiate_async(&mut *store).await?),
                    Pre::Hook(p) => Bound::Hook(p.instantiate_async(&mut *store).await?),
                };
                f(&bound, store).await
            };
            tokio::select! {
                r = tokio::time::timeout(timeout, run) => match r {
                    Ok(r) => Outcome::Finished(r),
                    Err(_) => Outcome::TimedOut,
                },
                _ = opts.cancel.cancelled() => Outcome::Cancelled,
            }
        };
        let state = store.data();
        let mut notes: Vec<String> = state.log.summary().into_iter().collect();
        let output = state.stdio.text();
        if !output.trim().is_empty() {
            state.log.sink().line(
                super::bindings::log::Level::Info,
                &format!(
                    "plugin stdout/stderr (last {} bytes):\n{}",
                    output.len(),
                    output.trim_end()
                ),
                &[],
            );
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
            Outcome::Finished(Err(e)) => Err(classify(plugin, state, &self.limits, e)),
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
