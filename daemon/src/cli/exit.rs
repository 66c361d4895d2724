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

/// Something named on the command line does not exist; exits [`NOT_FOUND`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The exit code for an error that stopped a command.
pub fn of_error(e: &anyhow::Error) -> i32 {
    use crate::client::ClientError;
    if e.downcast_ref::<NotFound>().is_some() {
        return NOT_FOUND;
    }
    match e.downcast_ref::<ClientError>() {
        Some(ClientError::NotRunning(_)) => DAEMON_DOWN,
        Some(ClientError::Forbidden(..)) => PERMISSION_DENIED,
        Some(ClientError::Api { status, .. }) if status.as_u16() == 404 => NOT_FOUND,
        Some(ClientError::Api { status, .. }) if status.as_u16() == 403 => PERMISSION_DENIED,
        _ => ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ClientError;

    #[test]
    fn errors_map_to_their_codes() {
        let api = |status: u16| {
            anyhow::Error::from(ClientError::Api {
                status: hyper::StatusCode::from_u16(status).unwrap_or_default(),
                code: String::new(),
                message: String::new(),
            })
        };
        assert_eq!(of_error(&api(404)), NOT_FOUND);
        assert_eq!(of_error(&api(403)), PERMISSION_DENIED);
        assert_eq!(of_error(&api(500)), ERROR);
        let down = ClientError::NotRunning(std::path::PathBuf::from("/run/x.sock"));
        assert_eq!(of_error(&down.into()), DAEMON_DOWN);
        assert_eq!(of_error(&NotFound("no run".into()).into()), NOT_FOUND);
        assert_eq!(of_error(&anyhow::anyhow!("disk full")), ERROR);
    }
}
