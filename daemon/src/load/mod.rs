//! One loader for every command that reads a configuration directory — the daemon at start
//! and on every reload, `validate`, `run`, `diff`, `plugins` and `plugin check` — so they
//! cannot drift apart: directory → settings, plugin registry (grants resolved, the
//! configuration's limits applied) and validated workflows.

pub mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

pub use validate::ValidConfig;

use crate::config::{ConfigError, DaemonConfig};
use crate::wasm::cache::ComponentCache;
use crate::wasm::registry::LoadProblem;
use crate::wasm::{PluginHost, Registry};

/// A configuration that passed validation, with the plugins it was checked against.
pub struct Loaded {
    pub config: ValidConfig,
    pub registry: Arc<Registry>,
}

/// What the Wasm engine was built with. The engine lives as long as the process, so a
/// change to these takes effect only after a restart.
#[derive(Debug, Clone, PartialEq)]
struct EngineSettings {
    pooling: bool,
    memory_mib: u64,
}

impl EngineSettings {
    fn of(config: &DaemonConfig) -> Self {
        EngineSettings {
            pooling: config.wasm.pooling,
            memory_mib: config.limits.memory_mib,
        }
    }
}

pub struct Loader {
    config_dir: PathBuf,
    host: PluginHost,
    built_with: EngineSettings,
    /// `[metrics] listen` at start: the daemon binds it once.
    metrics_listen: Option<std::net::SocketAddr>,
}

impl Loader {
    /// Builds the Wasm host from `gantry.toml`'s engine settings (the defaults when it does
    /// not load: `load` reports why), compiled components cached in `state_dir`.
    pub fn open(config_dir: &Path, state_dir: &Path) -> anyhow::Result<Loader> {
        let config = DaemonConfig::load(config_dir).unwrap_or_default();
        let cache = if state_dir.is_dir() || std::fs::create_dir_all(state_dir).is_ok() {
            ComponentCache::in_state_dir(state_dir)
        } else {
            ComponentCache::disabled()
        };
        let host = PluginHost::with_pool(
            config.limits.clone(),
            config.wasm.pooling,
            config.wasm.instances,
            cache,
        )
        .context("starting the Wasm engine")?;
        Ok(Loader {
            config_dir: config_dir.to_path_buf(),
            built_with: EngineSettings::of(&config),
            metrics_listen: config.metrics.listen,
            host,
        })
    }

    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// `gantry.toml` and the plugins it makes available, workflows aside.
    pub async fn plugins(&self) -> Result<(DaemonConfig, Registry), ConfigError> {
        let config = DaemonConfig::load(&self.config_dir)?;
        let mut registry = Registry::discover(
            &self.host,
            crate::builtin::BUILTIN_PLUGINS,
            &config.plugin_dirs(&self.config_dir),
            &config.plugins,
            &config.limits,
        )
        .await;
        for e in self.unread_grant_keys(&config) {
            registry.problems.push(LoadProblem {
                source: format!("{}:{}:{}", e.file.display(), e.line, e.column),
                message: e.message,
            });
        }
        Ok((config, registry))
    }

    /// Keys under `[plugins.NAME]` that no capability reads: a typo there would otherwise
    /// silently grant nothing.
    fn unread_grant_keys(&self, config: &DaemonConfig) -> Vec<ConfigError> {
        let known: Vec<&str> = crate::host::capabilities()
            .iter()
            .flat_map(|c| c.grant_keys().iter().copied())
            .collect();
        let path = self.config_dir.join(crate::config::daemon::FILE_NAME);
        let source = std::fs::read_to_string(&path).unwrap_or_default();
        let mut errors = Vec::new();
        for (plugin, grant) in &config.plugins {
            for key in grant.0.keys().filter(|k| !known.contains(&k.as_str())) {
                let (line, column) = key_position(&source, plugin, key);
                errors.push(ConfigError {
                    file: path.clone(),
                    line,
                    column,
                    message: format!(
                        "[plugins.{plugin}]: unknown key `{key}`; grants are {}",
                        known.join(", ")
                    ),
                });
            }
        }
        errors
    }

    /// The whole configuration, validated against its plugins; every problem at once.
    pub async fn load(&self) -> Result<Loaded, Vec<String>> {
        let (config, registry) = match self.plugins().await {
            Ok(loaded) => loaded,
            Err(first) => return Err(self.gantry_toml_errors(first)),
        };
        let mut errors: Vec<String> = registry
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.source, p.message))
            .collect();
        if let Some(addr) = config.metrics.listen.filter(|a| !a.ip().is_loopback()) {
            errors.push(format!(
                "{}: [metrics] listen = \"{addr}\" is not a loopback address; metrics are served without authentication, so only loopback (127.0.0.1 or [::1]) is allowed",
                self.config_dir.join(crate::config::daemon::FILE_NAME).display()
            ));
        }
        match validate::validate_workflows(&self.config_dir, config, &registry).await {
            Ok(valid) if errors.is_empty() => Ok(Loaded {
                config: valid,
                registry: Arc::new(registry),
            }),
            Ok(_) => Err(errors),
            Err(errs) => {
                errors.extend(errs.iter().map(ToString::to_string));
                Err(errors)
            }
        }
    }

    /// Every error of a `gantry.toml` that does not load, not only the first one.
    fn gantry_toml_errors(&self, first: ConfigError) -> Vec<String> {
        let path = self.config_dir.join(crate::config::daemon::FILE_NAME);
        let all = match crate::config::read_file(&path) {
            Ok(Some(source)) => {
                crate::config::every_error::every_error::<DaemonConfig>(&path, &source)
            }
            _ => Vec::new(),
        };
        match all.is_empty() {
            true => vec![first.to_string()],
            false => all.iter().map(ToString::to_string).collect(),
        }
    }

    /// Settings of `config` that differ from what the running engine was built with and so
    /// wait for a restart, each saying what is in force meanwhile.
    pub fn restart_needed(&self, config: &DaemonConfig) -> Vec<String> {
        let now = &self.built_with;
        let wanted = EngineSettings::of(config);
        let mut pending = Vec::new();
        if config.metrics.listen != self.metrics_listen {
            let shown =
                |a: Option<std::net::SocketAddr>| a.map_or("none".into(), |a| a.to_string());
            pending.push(format!(
                "[metrics] listen = {} takes effect after a restart; metrics are served on {} meanwhile",
                shown(config.metrics.listen),
                shown(self.metrics_listen)
            ));
        }
        if wanted.pooling != now.pooling {
            pending.push(format!(
                "[wasm] pooling = {} takes effect after a restart; the engine runs with pooling = {}",
                wanted.pooling, now.pooling
            ));
        }
        if self.host.engine().pooling() && wanted.memory_mib > now.memory_mib {
            pending.push(format!(
                "[limits] memory_mib = {} is above the {} MiB the instance pool was sized for at start; calls stay limited to {} MiB until a restart",
                wanted.memory_mib, now.memory_mib, now.memory_mib
            ));
        }
        pending
    }
}

/// Line and column of `key` inside the `[plugins.PLUGIN]` table of `source`, (0, 0) when it
/// cannot be told.
fn key_position(source: &str, plugin: &str, key: &str) -> (usize, usize) {
    let header = format!("[plugins.{plugin}]");
    let mut inside = false;
    for (i, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            inside = trimmed.starts_with(&header);
            continue;
        }
        let starts_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if inside && starts_key {
            return (i + 1, line.len() - trimmed.len() + 1);
        }
    }
    (0, 0)
}
