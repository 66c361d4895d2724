//! What crosses the socket: request and response bodies of the API, shared by the handlers
//! (`api`), the service that produces them and the CLI's client, so the two ends cannot
//! drift apart.

use serde::{Deserialize, Serialize};

/// `POST /v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    pub workflows: Vec<String>,
}

/// The answer to `POST /v1/runs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerResponse {
    pub id: String,
    /// What the caller should know about what is deployed: a workflow whose latest edit
    /// was rejected runs in its last good version.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// The outcome of a reload, kept as the last one for `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadStatus {
    pub ok: bool,
    pub at: i64,
    pub generation: u64,
    pub errors: Vec<String>,
    /// Settings of the loaded configuration that wait for a restart, each saying what is in
    /// force meanwhile.
    #[serde(default)]
    pub restart_needed: Vec<String>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub generation: u64,
    pub last_reload: ReloadStatus,
    pub running_runs: Vec<String>,
    pub queued_runs: usize,
    pub accepting_runs: bool,
    pub uptime_seconds: u64,
    pub pooling_allocator: bool,
}
