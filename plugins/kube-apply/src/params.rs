//! What the Kubernetes kinds share of their parameters: the defaults of `namespace`, `wait`,
//! `prune` and `wait_timeout`, and what a rollback reports, so the three kinds cannot drift.

use gantry_sdk::{Deployment, RollbackOutcome, TaskError, parse_duration};

/// How long readiness is awaited when a task sets no `wait_timeout`.
pub const DEFAULT_WAIT_TIMEOUT_MS: u64 = 5 * 60 * 1000;

/// The namespace of objects that name none, when a task sets no `namespace`.
pub fn default_namespace() -> String {
    "default".into()
}

/// For serde: a switch that is on unless the task turns it off.
pub fn yes() -> bool {
    true
}

/// A task's `wait_timeout` in milliseconds; a value that is not a duration is a
/// configuration error naming it.
pub fn wait_timeout_ms(wait_timeout: Option<&str>) -> Result<u64, TaskError> {
    match wait_timeout {
        None => Ok(DEFAULT_WAIT_TIMEOUT_MS),
        Some(t) => parse_duration(t)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .map_err(TaskError::InvalidConfig),
    }
}

/// What is deployed after a rollback: the previous deployment, or nothing when there was
/// none (the rollback removed what the failed deploy added).
pub fn rolled_back(previous: Option<&Deployment>) -> RollbackOutcome {
    RollbackOutcome::RolledBack(match previous {
        Some(d) => d.clone(),
        None => Deployment::with_outputs(Vec::<(String, String)>::new()),
    })
}
