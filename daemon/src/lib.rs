//! gantry: a deployment daemon that runs staged, parallel pipelines of sandboxed
//! WebAssembly task plugins.
//!
//! Data flows one way: `config` → plan → scheduler → plugin calls (`wasm`, `host`) →
//! store/events → API. See docs/ARCHITECTURE.md.

pub mod api;
pub mod builtin;
pub mod cli;
pub mod client;
pub mod config;
pub mod engine;
pub mod host;
pub mod load;
pub mod logging;
pub mod protocol;
pub mod secrets;
pub mod service;
pub mod sim;
pub mod store;
pub mod systemd;
pub mod wasm;
pub mod watch;
