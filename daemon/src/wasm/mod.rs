//! The Wasm host: one engine, a compiled-component cache, plugin discovery and the registry,
//! grants, and sandboxed calls with per-call limits.

pub mod bindings;
pub mod cache;
pub mod call;
pub mod engine;
pub mod grants;
pub mod limits;
pub mod plugin;
pub mod registry;
pub mod scratch;
pub mod task_runner;

pub use call::{CallError, CallOptions, Called};
pub use plugin::{Plugin, PluginHost, PluginSource, World};
pub use registry::Registry;
