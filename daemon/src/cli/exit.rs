//! The CLI's exit codes, one meaning each, so scripts and CI can tell outcomes apart.

/// Success: the run succeeded, the configuration is valid, the diff is empty.
pub const OK: i32 = 0;
/// The answer is "no": the run failed or was cancelled, validation found errors, the diff
/// has changes.
pub const NO: i32 = 1;
/// The command line itself is wrong (clap's own code for usage errors).
pub const USAGE: i32 = 2;
/// The run succeeded with errors (failures under `on_failure = "continue"`).
pub const SUCCEEDED_WITH_ERRORS: i32 = 3;
/// What was named (run, workflow, task) does not exist.
pub const NOT_FOUND: i32 = 4;
/// No daemon answers on the socket.
pub const DAEMON_DOWN: i32 = 5;
/// The daemon refused the caller, or the socket's permissions did.
pub const PERMISSION_DENIED: i32 = 6;
/// Anything else that stopped the command (I/O, an unexpected answer, a plugin that could
/// not plan).
pub const ERROR: i32 = 7;
/// Ctrl-C stopped the CLI following a run (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;
