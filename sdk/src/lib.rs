//! The gantry plugin SDK: write a task kind or a hook as a WebAssembly component in a
//! few lines, and unit-test its logic natively.
//!
//! A task plugin implements [`Task`] and exports it with [`export_task!`]; a hook plugin
//! implements [`Hook`] and uses [`export_hook!`]. Calls into the host go through [`host`],
//! which talks to gantry inside the sandbox and to a scriptable fake in native tests
//! (see [`testing`]).

// Lets the generated bindings name this crate the same way from inside and outside it.
extern crate self as gantry_sdk;

pub mod bindings;
pub mod host;
mod params;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use bindings::types::{
    Capability, ChangeAction, Deployment, HookContext, HookDecision, Output, ParamSpec, Phase,
    PlannedChange, PluginInfo, RollbackOutcome, TaskContext, TaskError, ToolFailure,
    ValidationIssue,
};
pub use params::{ParamsExt, parse_duration, validate_params};

#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// A task kind. Only `describe` and `apply` are required; the defaults say "nothing to do"
/// or "not supported" so the host can record it.
pub trait Task {
    fn describe() -> PluginInfo;

    /// Checks parameters before any run starts. One issue per problem.
    fn validate(_kind: &str, _params: &str) -> Vec<ValidationIssue> {
        Vec::new()
    }

    fn plan(_ctx: &TaskContext) -> Result<Vec<PlannedChange>, TaskError> {
        Ok(Vec::new())
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError>;

    fn rollback(_ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        Ok(RollbackOutcome::Unsupported(
            "this plugin does not implement rollback".to_string(),
        ))
    }

    fn destroy(_ctx: &TaskContext) -> Result<(), TaskError> {
        Ok(())
    }
}

/// A hook run around a task.
pub trait Hook {
    fn describe() -> PluginInfo;

    fn validate(_kind: &str, _params: &str) -> Vec<ValidationIssue> {
        Vec::new()
    }

    fn on_phase(ctx: &HookContext) -> HookDecision;
}

impl ParamSpec {
    /// One parameter for `describe()`: its name, a type hint for humans, whether it is
    /// required, and what it does.
    pub fn new(name: &str, type_hint: &str, required: bool, description: &str) -> Self {
        ParamSpec {
            name: name.into(),
            description: description.into(),
            required,
            type_hint: type_hint.into(),
        }
    }
}

impl Deployment {
    /// A deployment that only produced outputs.
    pub fn with_outputs<K: Into<String>, V: Into<String>>(
        outputs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Deployment {
            outputs: outputs
                .into_iter()
                .map(|(k, v)| Output {
                    key: k.into(),
                    value: v.into(),
                })
                .collect(),
            inventory: Vec::new(),
            state: None,
        }
    }
}

impl TaskError {
    /// Short constructor for the most common plugin failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        TaskError::InvalidConfig(message.into())
    }
}

/// Exports a [`Task`] implementation as the component's `task-plugin` world.
#[macro_export]
macro_rules! export_task {
    ($task:ty) => {
        #[doc(hidden)]
        pub struct __GantryTaskExport;

        impl $crate::bindings::task::Guest for __GantryTaskExport {
            fn describe() -> $crate::PluginInfo {
                <$task as $crate::Task>::describe()
            }
            fn validate(kind: String, params: String) -> Vec<$crate::ValidationIssue> {
                <$task as $crate::Task>::validate(&kind, &params)
            }
            fn plan(
                ctx: $crate::TaskContext,
            ) -> Result<Vec<$crate::PlannedChange>, $crate::TaskError> {
                <$task as $crate::Task>::plan(&ctx)
            }
            fn apply(ctx: $crate::TaskContext) -> Result<$crate::Deployment, $crate::TaskError> {
                <$task as $crate::Task>::apply(&ctx)
            }
            fn rollback(
                ctx: $crate::TaskContext,
            ) -> Result<$crate::RollbackOutcome, $crate::TaskError> {
                <$task as $crate::Task>::rollback(&ctx)
            }
            fn destroy(ctx: $crate::TaskContext) -> Result<(), $crate::TaskError> {
                <$task as $crate::Task>::destroy(&ctx)
            }
        }

        $crate::bindings::task::__export_task_plugin!(__GantryTaskExport);
    };
}

/// Exports a [`Hook`] implementation as the component's `hook-plugin` world.
#[macro_export]
macro_rules! export_hook {
    ($hook:ty) => {
        #[doc(hidden)]
        pub struct __GantryHookExport;

        impl $crate::bindings::hook::Guest for __GantryHookExport {
            fn describe() -> $crate::PluginInfo {
                <$hook as $crate::Hook>::describe()
            }
            fn validate(kind: String, params: String) -> Vec<$crate::ValidationIssue> {
                <$hook as $crate::Hook>::validate(&kind, &params)
            }
            fn on_phase(ctx: $crate::HookContext) -> $crate::HookDecision {
                <$hook as $crate::Hook>::on_phase(&ctx)
            }
        }

        $crate::bindings::hook::__export_hook_plugin!(__GantryHookExport);
    };
}
