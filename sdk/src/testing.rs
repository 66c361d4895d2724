//! Native test support: run plugin logic without a host by scripting what `process.run`
//! returns and reading back what the plugin logged.

use std::cell::RefCell;

use crate::host::{Command, CommandOutput, Level};
use crate::{TaskContext, TaskError};

type Runner = Box<dyn FnMut(&Command) -> Result<CommandOutput, TaskError>>;

thread_local! {
    static RUNNER: RefCell<Option<Runner>> = RefCell::new(None);
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static COMMANDS: RefCell<Vec<Command>> = const { RefCell::new(Vec::new()) };
}

/// Answers every `process.run` on this thread with `runner`.
pub fn on_run(runner: impl FnMut(&Command) -> Result<CommandOutput, TaskError> + 'static) {
    RUNNER.with(|r| *r.borrow_mut() = Some(Box::new(runner)));
}

/// The commands run on this thread so far.
pub fn commands() -> Vec<Command> {
    COMMANDS.with(|c| c.borrow().clone())
}

/// The log lines written on this thread so far.
pub fn logs() -> Vec<(Level, String)> {
    LOGS.with(|l| l.borrow().clone())
}

/// A successful command output.
pub fn output(exit_code: i32, stdout: &str, stderr: &str) -> CommandOutput {
    CommandOutput {
        exit_code: Some(exit_code),
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
        truncated: false,
    }
}

/// A task context for `params` (a JSON object), as the host would build it.
pub fn context(kind: &str, params: &str) -> TaskContext {
    TaskContext {
        run_id: "test-run".into(),
        workflow: "test".into(),
        task: "jobs.test".into(),
        kind: kind.into(),
        params: params.into(),
        source_dir: "/src".into(),
        scratch_dir: "/scratch".into(),
        workspace_dir: None,
        previous: None,
    }
}

/// A validation context for `params` (a JSON object), without files.
pub fn validate_context(kind: &str, params: &str) -> crate::ValidateContext {
    crate::ValidateContext {
        kind: kind.into(),
        params: params.into(),
        source_dir: None,
    }
}

pub(crate) fn record_log(level: Level, message: &str, _fields: &[(String, String)]) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_string())));
}

pub(crate) fn run_fake(command: &Command) -> Result<CommandOutput, TaskError> {
    COMMANDS.with(|c| c.borrow_mut().push(command.clone()));
    RUNNER.with(|r| match r.borrow_mut().as_mut() {
        Some(runner) => runner(command),
        None => Err(TaskError::CapabilityDenied(format!(
            "no fake process runner installed for `{}`; call gantry_sdk::testing::on_run",
            command.program
        ))),
    })
}
