//! Loading one plugin: compile (through the cache), link against the world it exports, ask
//! it to `describe` itself, and resolve its capabilities against the operator's grants.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use sha2::{Digest, Sha256};

pub use super::bindings::World;
use super::bindings::types::PluginInfo;
use super::bindings::{Linkers, Pre};
use super::cache::ComponentCache;
use super::engine::{DEFAULT_INSTANCES, WasmEngine};
use super::grants::{Effective, Grant};
use super::limits::Limits;
use crate::host::capability::GrantRequest;

/// Where a plugin came from, for listings and error messages.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "type", content = "path", rename_all = "lowercase")]
pub enum PluginSource {
    Builtin(String),
    File(PathBuf),
}

impl fmt::Display for PluginSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginSource::Builtin(name) => write!(f, "built-in:{name}"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// A loaded plugin, ready to be called any number of times (each call in a fresh store).
pub struct Plugin {
    pub info: PluginInfo,
    pub source: PluginSource,
    pub world: World,
    pub caps: Arc<Effective>,
    /// SHA-256 of the component, so operators can tell versions apart.
    pub digest: String,
    /// The major of `gantry:plugin` it was built against.
    pub contract: u32,
    pub(crate) pre: Pre,
    pub(crate) limits: Limits,
    /// Keeps the engine, and with it the epoch ticker that enforces CPU budgets and lets a
    /// spinning guest be cancelled, alive for as long as the plugin can be called.
    pub(crate) _engine: Arc<WasmEngine>,
    /// The engine's instance slots; a call holds one while its store lives.
    pub(crate) slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info.name)
            .field("kinds", &self.info.kinds)
            .field("source", &self.source)
            .finish()
    }
}

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{plugin}: not a WebAssembly component gantry can compile: {reason}")]
    Compile {
        plugin: PluginSource,
        reason: String,
    },
    #[error("{plugin}: {reason}")]
    Link {
        plugin: PluginSource,
        reason: String,
    },
    #[error("{plugin}: describe() failed: {reason}")]
    Describe {
        plugin: PluginSource,
        reason: String,
    },
    #[error("{plugin}: describe() returned an unusable description: {reason}")]
    BadInfo {
        plugin: PluginSource,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Read { path: PathBuf, reason: String },
}

/// Compiles, links and calls plugins; one per process.
pub struct PluginHost {
    engine: Arc<WasmEngine>,
    cache: ComponentCache,
    linkers: Linkers,
    limits: Limits,
    search_path: String,
}

impl PluginHost {
    pub fn new(limits: Limits, pooling: bool, cache: ComponentCache) -> anyhow::Result<Self> {
        Self::with_pool(limits, pooling, DEFAULT_INSTANCES, cache)
    }

    /// Like [`PluginHost::new`], with a pool of `instances` slots (`[wasm] instances`).
    pub fn with_pool(
        limits: Limits,
        pooling: bool,
        instances: u32,
        cache: ComponentCache,
    ) -> anyhow::Result<Self> {
        let engine = Arc::new(WasmEngine::new(&limits, pooling, instances)?);
        let linkers = Linkers::new(engine.engine())?;
        Ok(PluginHost {
            engine,
            cache,
            linkers,
            limits,
            search_path: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        })
    }

    pub fn engine(&self) -> &WasmEngine {
        &self.engine
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Programs in grants are looked up on this PATH (the daemon's own by default).
    pub fn set_search_path(&mut self, path: impl Into<String>) {
        self.search_path = path.into();
    }

    pub fn read_file(path: &Path) -> Result<Vec<u8>, LoadError> {
        const MAX_PLUGIN_BYTES: u64 = 256 << 20;
        let read_err = |reason: String| LoadError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if meta.len() > MAX_PLUGIN_BYTES {
            return Err(read_err(format!(
                "larger than {} MiB",
                MAX_PLUGIN_BYTES >> 20
            )));
        }
        std::fs::read(path).map_err(|e| read_err(e.to_string()))
    }

    /// Loads one plugin and resolves its grants (`[plugins.NAME]` from gantry.toml), with
    /// the limits the host was started with.
    pub async fn load(
        &self,
        source: PluginSource,
        wasm: &[u8],
        grants: &BTreeMap<String, Grant>,
    ) -> Result<Plugin, LoadError> {
        self.load_with(source, wasm, grants, &self.limits).await
    }

    /// Loads one plugin whose calls get `limits` (the active configuration's). Memory cannot
    /// grow past what the instance pool was sized for at start.
    pub async fn load_with(
        &self,
        source: PluginSource,
        wasm: &[u8],
        grants: &BTreeMap<String, Grant>,
        limits: &Limits,
    ) -> Result<Plugin, LoadError> {
        let mut limits = limits.clone();
        if self.engine.pooling() {
            limits.memory_mib = limits.memory_mib.min(self.limits.memory_mib);
        }
        let engine = self.engine.engine();
        let component = self
            .cache
            .load(engine, wasm)
            .map_err(|e| LoadError::Compile {
                plugin: source.clone(),
                reason: format!("{e:#}"),
            })?;
        let pre = self
            .linkers
            .prepare(engine, &component)
            .map_err(|reason| LoadError::Link {
                plugin: source.clone(),
                reason,
            })?;
        let mut plugin = Plugin {
            info: PluginInfo {
                name: String::new(),
                kinds: Vec::new(),
                version: String::new(),
                description: String::new(),
                capabilities: Vec::new(),
                parameters: Vec::new(),
            },
            source: source.clone(),
            world: pre.world(),
            caps: Arc::new(Effective::default()),
            digest: hex::encode(Sha256::digest(wasm)),
            contract: pre.contract(),
            pre,
            limits,
            _engine: self.engine.clone(),
            slots: self.engine.slots(),
        };
        let info = plugin.describe().await.map_err(|e| LoadError::Describe {
            plugin: source.clone(),
            reason: e.to_string(),
        })?;
        check_info(&info).map_err(|reason| LoadError::BadInfo {
            plugin: source.clone(),
            reason,
        })?;
        let grant = grants.get(&info.name).cloned().unwrap_or_default();
        let mut caps = Effective::default();
        for capability in crate::host::capabilities() {
            caps.add(
                capability.name(),
                capability.resolve(&GrantRequest {
                    plugin: &info.name,
                    requested: &info.capabilities,
                    grant: &grant,
                    search_path: &self.search_path,
                    builtin: matches!(source, PluginSource::Builtin(_)),
                }),
            );
        }
        plugin.caps = Arc::new(caps);
        plugin.info = info;
        Ok(plugin)
    }
}

fn check_info(info: &PluginInfo) -> Result<(), String> {
    let ident = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    if !ident(&info.name) {
        return Err(format!(
            "plugin name `{}` must be 1-64 of [a-z0-9_-]",
            info.name
        ));
    }
    if info.kinds.is_empty() {
        return Err("it serves no kinds".into());
    }
    if let Some(bad) = info.kinds.iter().find(|k| !ident(k)) {
        return Err(format!("kind `{bad}` must be 1-64 of [a-z0-9_-]"));
    }
    Ok(())
}
