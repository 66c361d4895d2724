//! Plugin discovery and the registry of kinds: built-in plugins first, then `*.wasm` files in
//! the configured plugin directories. A plugin whose name or kind clashes with one loaded
//! before it is refused with an error naming both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::grants::Grant;
use super::limits::Limits;
use super::plugin::{Plugin, PluginHost, PluginSource, World};

/// A plugin that was not loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadProblem {
    pub source: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Registry {
    plugins: Vec<Arc<Plugin>>,
    kinds: BTreeMap<(World, String), Arc<Plugin>>,
    pub problems: Vec<LoadProblem>,
}

impl Registry {
    /// Loads the built-in plugins and every `*.wasm` in `dirs` (in name order), their calls
    /// limited by `limits`.
    pub async fn discover(
        host: &PluginHost,
        builtins: &[(&str, &[u8])],
        dirs: &[PathBuf],
        grants: &BTreeMap<String, Grant>,
        limits: &Limits,
    ) -> Registry {
        let mut registry = Registry::default();
        for (name, wasm) in builtins {
            let source = PluginSource::Builtin((*name).to_string());
            let loaded = host.load_with(source.clone(), wasm, grants, limits).await;
            registry.add_loaded(loaded, &source);
        }
        for dir in dirs {
            for path in wasm_files(dir, &mut registry.problems) {
                let source = PluginSource::File(path.clone());
                let loaded = match PluginHost::read_file(&path) {
                    Ok(wasm) => host.load_with(source.clone(), &wasm, grants, limits).await,
                    Err(e) => Err(e),
                };
                registry.add_loaded(loaded, &source);
            }
        }
        registry
    }

    fn add_loaded(
        &mut self,
        loaded: Result<Plugin, super::plugin::LoadError>,
        source: &PluginSource,
    ) {
        match loaded {
            Ok(plugin) => {
                if let Err(message) = self.insert(plugin) {
                    self.problems.push(LoadProblem {
                        source: source.to_string(),
                        message,
                    });
                }
            }
            Err(e) => self.problems.push(LoadProblem {
                source: source.to_string(),
                message: e.to_string(),
            }),
        }
    }

    /// Adds a plugin unless its name or one of its kinds is taken.
    pub fn insert(&mut self, plugin: Plugin) -> Result<(), String> {
        if let Some(clash) = self.clash(&plugin) {
            return Err(clash);
        }
        let plugin = Arc::new(plugin);
        for kind in &plugin.info.kinds {
            self.kinds
                .insert((plugin.world, kind.clone()), plugin.clone());
        }
        self.plugins.push(plugin);
        Ok(())
    }

    /// Why `plugin` cannot join this registry, if it cannot.
    pub fn clash(&self, plugin: &Plugin) -> Option<String> {
        if let Some(other) = self
            .plugins
            .iter()
            .find(|p| p.info.name == plugin.info.name)
        {
            return Some(format!(
                "plugin name `{}` is already used by {}; rename one of them (grants are keyed by name)",
                plugin.info.name, other.source
            ));
        }
        plugin.info.kinds.iter().find_map(|kind| {
            self.kinds.get(&(plugin.world, kind.clone())).map(|other| {
                format!(
                    "{} kind `{kind}` of plugin `{}` is already provided by plugin `{}` ({}); remove one of them",
                    plugin.world, plugin.info.name, other.info.name, other.source
                )
            })
        })
    }

    pub fn task(&self, kind: &str) -> Option<&Arc<Plugin>> {
        self.kinds.get(&(World::Task, kind.to_string()))
    }

    pub fn hook(&self, kind: &str) -> Option<&Arc<Plugin>> {
        self.kinds.get(&(World::Hook, kind.to_string()))
    }

    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    /// Kinds of one world, for "did you mean" style messages.
    pub fn kinds(&self, world: World) -> Vec<&str> {
        self.kinds
            .keys()
            .filter(|(w, _)| *w == world)
            .map(|(_, k)| k.as_str())
            .collect()
    }
}

fn wasm_files(dir: &Path, problems: &mut Vec<LoadProblem>) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(LoadProblem {
                source: dir.display().to_string(),
                message: format!("cannot read plugin directory: {e}"),
            });
            return Vec::new();
        }
    };
    if let Err(message) = trusted(dir) {
        problems.push(LoadProblem {
            source: dir.display().to_string(),
            message,
        });
        return Vec::new();
    }
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    files.sort();
    files.retain(|file| match trusted(file) {
        Ok(()) => true,
        Err(message) => {
            problems.push(LoadProblem {
                source: file.display().to_string(),
                message,
            });
            false
        }
    });
    files
}

/// Whether only root and the daemon's user can have put `path` (a plugin or its directory)
/// where it is, as OpenSSH's StrictModes asks of keys: the file, its directory and every
/// directory above are owned by one of them and writable by no one else (a root-owned
/// sticky directory such as /tmp excepted, where no one can replace another's entries).
/// Otherwise anyone who can write there could drop in a plugin that takes another's name
/// and its grants.
fn trusted(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let real = path
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for p in real.ancestors() {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mode = meta.mode();
        let owner_ok = meta.uid() == 0 || meta.uid() == me;
        let sticky_root_dir = meta.is_dir() && meta.uid() == 0 && mode & 0o1000 != 0;
        let others_write = mode & 0o022 != 0;
        if !owner_ok {
            return Err(format!(
                "refusing plugins from {}: {} is owned by uid {}, not by root or the daemon's user (uid {me}); chown it",
                path.display(),
                p.display(),
                meta.uid()
            ));
        }
        if others_write && !sticky_root_dir {
            return Err(format!(
                "refusing plugins from {}: {} is writable by {} (mode {:o}), so anyone there could replace a plugin; run chmod go-w {}",
                path.display(),
                p.display(),
                if mode & 0o002 != 0 {
                    "everyone"
                } else {
                    "its group"
                },
                mode & 0o7777,
                p.display()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writable_plugin_directories_and_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("p.wasm");
        std::fs::write(&file, b"\0asm").unwrap();
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(&dir, 0o755);
        set(&file, 0o644);
        assert_eq!(trusted(&file), Ok(()));
        set(&dir, 0o777);
        let err = trusted(&dir).unwrap_err();
        assert!(
            err.contains("writable by everyone") && err.contains("chmod go-w"),
            "{err}"
        );
        let mut problems = Vec::new();
        assert!(wasm_files(&dir, &mut problems).is_empty());
        assert_eq!(problems.len(), 1);
        set(&dir, 0o755);
        set(&file, 0o664);
        let mut problems = Vec::new();
        assert!(wasm_files(&dir, &mut problems).is_empty());
        assert!(
            problems[0].message.contains("writable by its group"),
            "{problems:?}"
        );
    }
}
