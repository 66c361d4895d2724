//! Configuration: `gantry.toml` (daemon settings and plugin grants), parsed with errors that
//! name file, line and column.

pub mod daemon;
pub mod duration;
pub mod error;
pub mod toml_walk;
pub mod workflow;

pub use daemon::DaemonConfig;
pub use error::ConfigError;
