//! `gantry.toml`: where plugins live, what each may do, and the sandbox's limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The name of the daemon's settings file inside the config directory.
pub const FILE_NAME: &str = "gantry.toml";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    /// Directories searched for `*.wasm` plugins, relative to the config directory.
    #[serde(default = "default_plugin_dirs")]
    pub plugin_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub wasm: WasmSettings,
    /// Grants per plugin name: `[plugins.exec] exec = ["sh"]`.
    #[serde(default)]
    pub plugins: BTreeMap<String, Grant>,
    /// Who may use the API besides root and the daemon's own user.
    #[serde(default)]
    pub api: Access,
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// Kubernetes clusters tasks may reach, by name: `[clusters.prod] kubeconfig = "..."`.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
    #[serde(default)]
    pub metrics: MetricsSettings,
    #[serde(default)]
    pub history: HistorySettings,
}

/// `[history]`: how much of the past the daemon keeps. Runs that ended more than `max_age`
/// ago (so a run longer than `max_age` is not pruned as it ends), or beyond the newest
/// `max_runs`, are pruned with their tasks, events, logs and scratch directories; what each
/// task has deployed now is kept whatever its age.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySettings {
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub max_age: Duration,
    pub max_runs: usize,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings {
            max_age: Duration::from_secs(90 * 24 * 3600),
            max_runs: 1000,
        }
    }
}

/// `[metrics]`: where else `/metrics` is served besides the API socket.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// A loopback TCP address (`127.0.0.1:9464`) serving only `/metrics`, without
    /// authentication, so Prometheus can scrape it without a proxy for the Unix socket.
    /// Bound when the daemon starts.
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonSettings {
    /// How long running deployments may finish after SIGTERM before they are cancelled.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub shutdown_grace: std::time::Duration,
    /// Quiet period after a change in the config directory before it is reloaded.
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub watch_debounce: std::time::Duration,
    /// A directory only the daemon's user can read, one file per `${secrets.NAME}`
    /// (relative to the config directory); systemd credentials are read first.
    pub secrets_dir: Option<PathBuf>,
    /// How long destroying a task removed from its workflow may take before it is reported
    /// pending (a workflow's own `cleanup_timeout` wins).
    #[serde(deserialize_with = "super::duration::deserialize")]
    pub cleanup_timeout: std::time::Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            shutdown_grace: std::time::Duration::from_secs(300),
            watch_debounce: std::time::Duration::from_millis(300),
            secrets_dir: None,
            cleanup_timeout: std::time::Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WasmSettings {
    /// Use the pooling allocator when the address space can be reserved.
    #[serde(default = "yes")]
    pub pooling: bool,
    /// Plugin calls alive at once: the pooling allocator's number of instance slots. A call
    /// beyond it waits for a free slot; it never fails for want of one.
    #[serde(default = "default_instances")]
    pub instances: u32,
}

impl Default for WasmSettings {
    fn default() -> Self {
        WasmSettings {
            pooling: true,
            instances: default_instances(),
        }
    }
}

fn default_instances() -> u32 {
    crate::wasm::engine::DEFAULT_INSTANCES
}

fn yes() -> bool {
    true
}

fn default_plugin_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("plugins")]
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            plugin_dirs: default_plugin_dirs(),
            limits: Limits::default(),
            wasm: WasmSettings::default(),
            plugins: BTreeMap::new(),
            api: Access::default(),
            daemon: DaemonSettings::default(),
            clusters: BTreeMap::new(),
            metrics: MetricsSettings::default(),
            history: HistorySettings::default(),
        }
    }
}

impl DaemonConfig {
    /// Reads `DIR/gantry.toml`; a missing file means all defaults.
    pub fn load(config_dir: &Path) -> Result<Self, ConfigError> {
        let path = config_dir.join(FILE_NAME);
        let Some(source) = super::read_file(&path)? else {
            return Ok(DaemonConfig::default());
        };
        Self::parse(&path, &source)
    }

    pub fn parse(path: &Path, source: &str) -> Result<Self, ConfigError> {
        toml::from_str(source).map_err(|e| ConfigError::from_toml(path, source, &e))
    }

    /// Plugin directories as absolute paths.
    pub fn plugin_dirs(&self, config_dir: &Path) -> Vec<PathBuf> {
        self.plugin_dirs
            .iter()
            .map(|d| config_dir.join(d))
            .collect()
    }
}

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
    /// Bytes of opaque state one deployment may record (kept in history for rollback and
    /// destroy); a plugin needing more should compress it.
    pub max_state_bytes: usize,
    /// Bytes of inventory entries one deployment may record.
    pub max_inventory_bytes: usize,
    /// Bytes of stdout and of stderr kept from each program a plugin runs.
    pub max_process_output_bytes: usize,
    /// Bytes the task's scratch directory may hold; no file a program writes may be larger,
    /// and a program run that leaves more fails.
    pub max_scratch_bytes: u64,
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
            max_state_bytes: 4 << 20,
            max_inventory_bytes: 1 << 20,
            max_process_output_bytes: 4 << 20,
            max_scratch_bytes: 1 << 30,
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

/// What the operator grants one plugin: the table `[plugins.NAME]`. Each host capability
/// reads its own keys (`exec`, `kube_namespaces`, ...); a key no capability reads is refused
/// when the configuration loads.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(transparent)]
pub struct Grant(pub toml::Table);

impl Grant {
    /// The list of strings under `key`; empty when absent.
    pub fn strings(&self, key: &str) -> Result<Vec<String>, String> {
        match self.0.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{key}` must be a list of strings"))
                })
                .collect(),
            Some(_) => Err(format!("`{key}` must be a list of strings")),
        }
    }

    /// The boolean under `key`; false when absent.
    pub fn flag(&self, key: &str) -> Result<bool, String> {
        match self.0.get(key) {
            None => Ok(false),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => Err(format!("`{key}` must be true or false")),
        }
    }

    /// This grant with `key` set to a list of strings.
    pub fn with(mut self, key: &str, values: &[&str]) -> Self {
        let list = values
            .iter()
            .map(|v| toml::Value::String((*v).to_string()))
            .collect();
        self.0.insert(key.to_string(), toml::Value::Array(list));
        self
    }
}

/// One `[clusters.NAME]` table.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Path of the kubeconfig, relative to the config directory; `$KUBECONFIG` or
    /// `~/.kube/config` when absent.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context inside the kubeconfig; its current context when absent.
    #[serde(default)]
    pub context: Option<String>,
    /// Used by tasks that name no cluster. With one cluster configured it is the default.
    #[serde(default)]
    pub default: bool,
}

/// Who may use the API (users and groups besides root and the daemon's own user) and how
/// its connections are bounded: `[api]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Access {
    #[serde(default)]
    pub allow_uids: Vec<Principal>,
    /// A peer is allowed when its primary or any supplementary group is listed.
    #[serde(default)]
    pub allow_gids: Vec<Principal>,
    /// API connections open at once; more are closed as they arrive.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that sends no complete request headers for this long, whether new or
    /// idle between requests, is closed.
    #[serde(
        default = "default_header_timeout",
        deserialize_with = "super::duration::deserialize"
    )]
    pub header_timeout: Duration,
}

fn default_max_connections() -> usize {
    256
}

fn default_header_timeout() -> Duration {
    Duration::from_secs(30)
}

impl Default for Access {
    fn default() -> Self {
        Access {
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            max_connections: default_max_connections(),
            header_timeout: default_header_timeout(),
        }
    }
}

/// A user or a group, by number (`1000`) or by name (`"deploy"`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Principal {
    Id(u32),
    Name(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_limits_and_errors_with_positions() {
        let cfg = DaemonConfig::parse(
            Path::new("gantry.toml"),
            "[limits]\nmemory_mib = 64\ncpu_time = \"2s\"\n[plugins.exec]\nexec = [\"sh\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.limits.memory_mib, 64);
        assert_eq!(cfg.limits.cpu_time, std::time::Duration::from_secs(2));
        assert_eq!(cfg.plugins["exec"].strings("exec").unwrap(), vec!["sh"]);

        let err = DaemonConfig::parse(Path::new("g.toml"), "[limits]\nmemory = 3\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 1), "{err}");
        assert!(
            err.to_string()
                .starts_with("g.toml:2:1: unknown field `memory`"),
            "{err}"
        );

        let err = DaemonConfig::parse(Path::new("g.toml"), "[limits]\ncpu_time = \"soon\"\n")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("not a duration"), "{err}");
    }
}
