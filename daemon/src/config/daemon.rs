//! `gantry.toml`: where plugins live, what each may do, and the sandbox's limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::host::kube::ClusterConfig;
use crate::wasm::grants::Grant;
use crate::wasm::limits::Limits;

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
    pub api: crate::api::auth::Access,
    #[serde(default)]
    pub daemon: DaemonSettings,
    /// Kubernetes clusters tasks may reach, by name: `[clusters.prod] kubeconfig = "..."`.
    #[serde(default)]
    pub clusters: BTreeMap<String, ClusterConfig>,
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
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            shutdown_grace: std::time::Duration::from_secs(300),
            watch_debounce: std::time::Duration::from_millis(300),
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
            api: crate::api::auth::Access::default(),
            daemon: DaemonSettings::default(),
            clusters: BTreeMap::new(),
        }
    }
}

impl DaemonConfig {
    /// Reads `DIR/gantry.toml`; a missing file means all defaults.
    pub fn load(config_dir: &Path) -> Result<Self, ConfigError> {
        let path = config_dir.join(FILE_NAME);
        let source = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(DaemonConfig::default());
            }
            Err(e) => return Err(ConfigError::whole_file(&path, format!("cannot read: {e}"))),
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
        assert_eq!(cfg.plugins["exec"].exec, vec!["sh"]);

        let err = DaemonConfig::parse(Path::new("g.toml"), "[plugins.exec]\nexce = [\"sh\"]\n")
            .unwrap_err();
        assert_eq!((err.line, err.column), (2, 1), "{err}");
        assert!(
            err.to_string()
                .starts_with("g.toml:2:1: unknown field `exce`"),
            "{err}"
        );

        let err = DaemonConfig::parse(Path::new("g.toml"), "[limits]\ncpu_time = \"soon\"\n")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        assert!(err.message.contains("not a duration"), "{err}");
    }
}
