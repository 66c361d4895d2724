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
    Capability, ChangeAction, Deployment, HookContext, HookDecision, KubeError, Output, ParamSpec,
    Phase, PlannedChange, PluginInfo, RollbackOutcome, SourceLocation, TaskContext, TaskError,
    ToolFailure, ValidateContext, ValidationIssue,
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

    /// Checks parameters (and the task's files, under `ctx.source_dir` when given) before any
    /// run starts. One issue per problem.
    fn validate(_ctx: &ValidateContext) -> Vec<ValidationIssue> {
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

    fn validate(_ctx: &ValidateContext) -> Vec<ValidationIssue> {
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
            default_value: None,
        }
    }

    /// The value used when the parameter is absent, as written in TOML (`"25%"`, `true`).
    pub fn default(mut self, value: &str) -> Self {
        self.default_value = Some(value.into());
        self
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
                .map(|(k, v)| Output::new(k, v))
                .collect(),
            inventory: Vec::new(),
            state: None,
        }
    }
}

impl Output {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Output {
            key: key.into(),
            value: value.into(),
            sensitive: false,
        }
    }

    /// An output whose value is a secret: later tasks get it, people see `***`.
    pub fn sensitive(key: impl Into<String>, value: impl Into<String>) -> Self {
        Output {
            sensitive: true,
            ..Output::new(key, value)
        }
    }
}

impl ValidationIssue {
    /// A problem with one parameter (dotted path; empty for the whole table).
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        ValidationIssue {
            field: field.into(),
            message: message.into(),
            location: None,
        }
    }

    /// A problem at a place in one of the task's files (path relative to the source directory).
    pub fn at(mut self, file: &str, line: u32, column: u32) -> Self {
        self.location = Some(SourceLocation {
            file: file.into(),
            line,
            column,
        });
        self
    }
}

impl TaskError {
    /// Short constructor for the most common plugin failure.
    pub fn invalid(message: impl Into<String>) -> Self {
        TaskError::InvalidConfig(message.into())
    }

    /// The API server's status when a Kubernetes request failed with an answer.
    pub fn kube_status(&self) -> Option<u16> {
        match self {
            TaskError::Kube(k) if k.status != 0 => Some(k.status),
            _ => None,
        }
    }

    /// The API server's reason ("Conflict", "Forbidden", "Invalid", ...).
    pub fn kube_reason(&self) -> Option<&str> {
        match self {
            TaskError::Kube(k) if !k.reason.is_empty() => Some(&k.reason),
            _ => None,
        }
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
            fn validate(ctx: $crate::ValidateContext) -> Vec<$crate::ValidationIssue> {
                <$task as $crate::Task>::validate(&ctx)
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
            fn validate(ctx: $crate::ValidateContext) -> Vec<$crate::ValidationIssue> {
                <$hook as $crate::Hook>::validate(&ctx)
            }
            fn on_phase(ctx: $crate::HookContext) -> $crate::HookDecision {
                <$hook as $crate::Hook>::on_phase(&ctx)
            }
        }

        $crate::bindings::hook::__export_hook_plugin!(__GantryHookExport);
    };
}
