//! Per-call resource limits, and the memory limiter that enforces the memory part.

use std::time::Duration;

use serde::Deserialize;

/// What one plugin call may use. Operators tune these under `[limits]` in gantry.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory per call, in MiB.
    pub memory_mib: u64,
    /// Time the guest may spend executing (host calls such as running a program excluded).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub cpu_time: Duration,
    /// Wall-clock bound on the whole call, host calls included.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub call_timeout: Duration,
    /// Bytes of log a call may write before further lines are dropped.
    pub max_log_bytes: usize,
    /// Bytes of outputs (keys and values) a call may return before they are truncated.
    pub max_output_bytes: usize,
    /// Bytes of stdout and of stderr kept from each program a plugin runs.
    pub max_process_output_bytes: usize,
    /// Bytes the guest may pass to the host in one host call or in one result.
    pub hostcall_fuel: usize,
    /// Host resources (files, streams, sessions) a call may hold at once.
    pub max_resources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mib: 128,
            cpu_time: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30 * 60),
            max_log_bytes: 1 << 20,
            max_output_bytes: 1 << 20,
            max_process_output_bytes: 4 << 20,
            hostcall_fuel: 64 << 20,
            max_resources: 4096,
        }
    }
}

impl Limits {
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// Refuses memory growth past the limit and remembers that it did, so the resulting trap
/// can be reported as "memory limit exceeded" rather than as a bare trap.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_bytes: usize,
    max_table_elements: usize,
    pub hit: bool,
}

impl MemoryLimiter {
    pub fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            max_table_elements: 100_000,
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        8
    }
}
