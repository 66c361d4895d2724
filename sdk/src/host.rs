//! What a plugin may ask of the host. Inside the sandbox these go to gantry; in native
//! unit tests they go to the fake installed with [`crate::testing`].

use crate::TaskError;
pub use crate::bindings::kube::{ApiResource, ApplyOptions, ObjectRef, Readiness, ReadinessState};
pub use crate::bindings::log::Level;
pub use crate::bindings::process::{Command, CommandOutput};

/// Writes to the task's log with structured fields.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    imp::log(level, message, &fields);
}

pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Runs a program the operator granted to this plugin.
pub fn run(command: &Command) -> Result<CommandOutput, TaskError> {
    imp::run(command)
}

impl Command {
    /// A command with no environment, stdin or timeout, run in the scratch directory, its
    /// output returned but not streamed to the log.
    pub fn new(
        program: impl Into<String>,
        args: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: None,
            stdin: None,
            timeout_ms: None,
            stream_output: false,
            grace_ms: None,
        }
    }

    /// Copies each line the program prints into the task log as it is printed.
    pub fn streamed(mut self) -> Self {
        self.stream_output = true;
        self
    }
}

impl CommandOutput {
    /// Turns a non-zero exit into the `tool-failed` error, with the tail of stderr.
    pub fn check(self, program: &str) -> Result<CommandOutput, TaskError> {
        if self.exit_code == Some(0) {
            return Ok(self);
        }
        Err(TaskError::ToolFailed(crate::ToolFailure {
            program: program.to_string(),
            exit_code: self.exit_code,
            stderr_tail: tail(&self.stderr, 4096),
        }))
    }
}

/// The last `max` bytes of `bytes` as text, cut at a character boundary.
pub fn tail(bytes: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;

    pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
        crate::bindings::log::log(level, message, fields);
    }

    pub fn run(command: &Command) -> Result<CommandOutput, TaskError> {
        crate::bindings::process::run(command)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;

    pub fn log(level: Level, message: &str, fields: &[(String, String)]) {
        crate::testing::record_log(level, message, fields);
    }

    pub fn run(command: &Command) -> Result<CommandOutput, TaskError> {
        crate::testing::run_fake(command)
    }
}

/// Kubernetes sessions; only available inside the sandbox.
#[cfg(target_arch = "wasm32")]
pub mod kube {
    pub use crate::bindings::kube::{Session, open};
}
