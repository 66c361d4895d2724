//! The plugin contract as the host sees it: one binding module per major version of
//! `gantry:plugin` (`v1`, `v2`), both linked side by side, and the dispatch of each export to
//! whichever major a component implements. The newest major's types are the host's own; older
//! majors convert to them in their own module, so nothing else knows versions exist.

pub mod v1;
pub mod v2;

pub use v2::{kube, log, process, types};

use std::fmt;

use serde::Serialize;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store};

use crate::host::CallState;
use types::{
    Deployment, HookContext, HookDecision, PlannedChange, PluginInfo, RollbackOutcome, TaskContext,
    TaskError, ValidateContext, ValidationIssue,
};

/// Which world a plugin implements.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Task,
    Hook,
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            World::Task => "task",
            World::Hook => "hook",
        })
    }
}

/// The majors of the contract this host links, oldest first.
pub const CONTRACTS: &[u32] = &[1, 2];

/// Every import of every supported major, for the two worlds; each host capability links
/// its own interfaces (see `host::capabilities`).
pub struct Linkers {
    task: Linker<CallState>,
    hook: Linker<CallState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> anyhow::Result<Self> {
        let mut linkers = Linkers {
            task: Linker::new(engine),
            hook: Linker::new(engine),
        };
        for capability in crate::host::capabilities() {
            capability.link(&mut linkers)?;
        }
        Ok(linkers)
    }

    /// Both worlds' linkers, for interfaces both worlds import.
    pub fn each(&mut self) -> [&mut Linker<CallState>; 2] {
        [&mut self.task, &mut self.hook]
    }

    /// The task world's linker, for interfaces only tasks import.
    pub fn task(&mut self) -> &mut Linker<CallState> {
        &mut self.task
    }

    /// Links a component against the world its exports name, newest major first. The error
    /// says why neither major fits.
    pub(crate) fn prepare(&self, engine: &Engine, component: &Component) -> Result<Pre, String> {
        let world = detect_world(engine, component).ok_or_else(|| {
            "exports neither the task-plugin nor the hook-plugin world of gantry:plugin".to_string()
        })?;
        let linker = match world {
            World::Task => &self.task,
            World::Hook => &self.hook,
        };
        let instance = linker
            .instantiate_pre(component)
            .map_err(|e| format!("cannot be linked: {e:#}"))?;
        let newest = match world {
            World::Task => v2::task::TaskPluginPre::new(instance.clone()).map(Pre::TaskV2),
            World::Hook => v2::hook::HookPluginPre::new(instance.clone()).map(Pre::HookV2),
        };
        let newest_error = match newest {
            Ok(pre) => return Ok(pre),
            Err(e) => e,
        };
        let oldest = match world {
            World::Task => v1::task::TaskPluginPre::new(instance).map(Pre::TaskV1),
            World::Hook => v1::hook::HookPluginPre::new(instance).map(Pre::HookV1),
        };
        oldest.map_err(|old| {
            format!(
                "its {world}-plugin exports match no supported major of gantry:plugin (2.x: {newest_error:#}; 1.x: {old:#})"
            )
        })
    }
}

fn detect_world(engine: &Engine, component: &Component) -> Option<World> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let has = |n: &str| exports.iter().any(|e| e == n);
    if has("on-phase") && has("describe") {
        Some(World::Hook)
    } else if has("apply") && has("describe") {
        Some(World::Task)
    } else {
        None
    }
}

/// A linked component, ready to instantiate in a fresh store per call.
pub(crate) enum Pre {
    TaskV1(v1::task::TaskPluginPre<CallState>),
    TaskV2(v2::task::TaskPluginPre<CallState>),
    HookV1(v1::hook::HookPluginPre<CallState>),
    HookV2(v2::hook::HookPluginPre<CallState>),
}

impl Pre {
    pub fn world(&self) -> World {
        match self {
            Pre::TaskV1(_) | Pre::TaskV2(_) => World::Task,
            Pre::HookV1(_) | Pre::HookV2(_) => World::Hook,
        }
    }

    /// The major of the contract the plugin was built against.
    pub fn contract(&self) -> u32 {
        match self {
            Pre::TaskV1(_) | Pre::HookV1(_) => 1,
            Pre::TaskV2(_) | Pre::HookV2(_) => 2,
        }
    }

    pub fn engine(&self) -> &Engine {
        match self {
            Pre::TaskV1(p) => p.engine(),
            Pre::TaskV2(p) => p.engine(),
            Pre::HookV1(p) => p.engine(),
            Pre::HookV2(p) => p.engine(),
        }
    }

    pub async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Bound> {
        Ok(match self {
            Pre::TaskV1(p) => Bound::TaskV1(p.instantiate_async(store).await?),
            Pre::TaskV2(p) => Bound::TaskV2(p.instantiate_async(store).await?),
            Pre::HookV1(p) => Bound::HookV1(p.instantiate_async(store).await?),
            Pre::HookV2(p) => Bound::HookV2(p.instantiate_async(store).await?),
        })
    }
}

/// One instance. Each export returns `None` when the plugin's world lacks it.
pub(crate) enum Bound {
    TaskV1(v1::task::TaskPlugin),
    TaskV2(v2::task::TaskPlugin),
    HookV1(v1::hook::HookPlugin),
    HookV2(v2::hook::HookPlugin),
}

type Guest<T> = wasmtime::Result<Option<Result<T, TaskError>>>;

impl Bound {
    pub async fn describe(&self, s: &mut Store<CallState>) -> wasmtime::Result<PluginInfo> {
        Ok(match self {
            Bound::TaskV1(p) => v1::plugin_info(p.call_describe(s).await?),
            Bound::TaskV2(p) => p.call_describe(s).await?,
            Bound::HookV1(p) => v1::plugin_info(p.call_describe(s).await?),
            Bound::HookV2(p) => p.call_describe(s).await?,
        })
    }

    pub async fn validate(
        &self,
        s: &mut Store<CallState>,
        ctx: &ValidateContext,
    ) -> wasmtime::Result<Vec<ValidationIssue>> {
        Ok(match self {
            Bound::TaskV1(p) => {
                v1::validation_issues(p.call_validate(s, &ctx.kind, &ctx.params).await?)
            }
            Bound::TaskV2(p) => p.call_validate(s, ctx).await?,
            Bound::HookV1(p) => {
                v1::validation_issues(p.call_validate(s, &ctx.kind, &ctx.params).await?)
            }
            Bound::HookV2(p) => p.call_validate(s, ctx).await?,
        })
    }

    pub async fn plan(
        &self,
        s: &mut Store<CallState>,
        ctx: &TaskContext,
    ) -> Guest<Vec<PlannedChange>> {
        Ok(match self {
            Bound::TaskV1(p) => Some(
                p.call_plan(s, &v1::task_context(ctx))
                    .await?
                    .map(v1::planned_changes)
                    .map_err(v1::task_error),
            ),
            Bound::TaskV2(p) => Some(p.call_plan(s, ctx).await?),
            Bound::HookV1(_) | Bound::HookV2(_) => None,
        })
    }

    pub async fn apply(&self, s: &mut Store<CallState>, ctx: &TaskContext) -> Guest<Deployment> {
        Ok(match self {
            Bound::TaskV1(p) => Some(
                p.call_apply(s, &v1::task_context(ctx))
                    .await?
                    .map(v1::deployment)
                    .map_err(v1::task_error),
            ),
            Bound::TaskV2(p) => Some(p.call_apply(s, ctx).await?),
            Bound::HookV1(_) | Bound::HookV2(_) => None,
        })
    }

    pub async fn rollback(
        &self,
        s: &mut Store<CallState>,
        ctx: &TaskContext,
    ) -> Guest<RollbackOutcome> {
        Ok(match self {
            Bound::TaskV1(p) => Some(
                p.call_rollback(s, &v1::task_context(ctx))
                    .await?
                    .map(v1::rollback_outcome)
                    .map_err(v1::task_error),
            ),
            Bound::TaskV2(p) => Some(p.call_rollback(s, ctx).await?),
            Bound::HookV1(_) | Bound::HookV2(_) => None,
        })
    }

    pub async fn destroy(&self, s: &mut Store<CallState>, ctx: &TaskContext) -> Guest<()> {
        Ok(match self {
            Bound::TaskV1(p) => Some(
                p.call_destroy(s, &v1::task_context(ctx))
                    .await?
                    .map_err(v1::task_error),
            ),
            Bound::TaskV2(p) => Some(p.call_destroy(s, ctx).await?),
            Bound::HookV1(_) | Bound::HookV2(_) => None,
        })
    }

    pub async fn on_phase(
        &self,
        s: &mut Store<CallState>,
        ctx: &HookContext,
    ) -> wasmtime::Result<Option<HookDecision>> {
        Ok(match self {
            Bound::HookV1(p) => Some(v1::hook_decision(
                p.call_on_phase(s, &v1::hook_context(ctx)).await?,
            )),
            Bound::HookV2(p) => Some(p.call_on_phase(s, ctx).await?),
            Bound::TaskV1(_) | Bound::TaskV2(_) => None,
        })
    }
}
