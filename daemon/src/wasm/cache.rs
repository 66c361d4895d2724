//! Compiled components cached on disk, keyed by the wasm's hash and the engine's
//! compatibility hash. Loading native code from disk is only safe when nobody but the daemon
//! can write it, so the cache is used only in a directory the daemon's user owns and that no
//! one else can write; otherwise components are compiled in memory every time.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `<state>/cache/components`, or none if that cannot be made safe.
    pub fn in_state_dir(state_dir: &Path) -> Self {
        let dir = state_dir.join("cache").join("components");
        match prepare(&dir) {
            Ok(()) => ComponentCache { dir: Some(dir) },
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), %reason, "compiled-component cache disabled");
                ComponentCache { dir: None }
            }
        }
    }

    pub fn disabled() -> Self {
        ComponentCache { dir: None }
    }

    pub fn enabled(&self) -> bool {
        self.dir.is_some()
    }

    /// The compiled component for `wasm`, from the cache when possible.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
        let Some(dir) = &self.dir else {
            return Ok(Component::new(engine, wasm)?);
        };
        let path = dir.join(format!("{}.cwasm", key(engine, wasm)));
        if path.exists() && owned_by_us_and_private(&path) {
            // SAFETY: the file was written by this daemon (see `store`) into a directory only
            // the daemon's user can write, checked in `prepare` and above, and its name binds
            // it to this wasm and this engine configuration; wasmtime additionally checks the
            // header for engine compatibility.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable cache entry")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(e) = store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compiled component cache");
        }
        Ok(component)
    }
}

fn key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut digest = Sha256::new();
    digest.update(wasm);
    digest.update(engine_hash.finish().to_le_bytes());
    digest.update(env!("CARGO_PKG_VERSION").as_bytes());
    hex::encode(digest.finalize())
}

/// Writes atomically: a private temporary file in the same directory, then a rename.
fn store(path: &Path, component: &Component) -> anyhow::Result<()> {
    let bytes = component.serialize()?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cache path has no parent"))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)?;
    Ok(())
}

/// Creates the directory private to this user, and refuses one that others can write.
fn prepare(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create: {e}"))?;
    for d in [dir, dir.parent().unwrap_or(dir)] {
        if !owned_by_us_and_private(d) {
            return Err(format!(
                "{} is not owned by this user or is writable by others",
                d.display()
            ));
        }
    }
    Ok(())
}

fn owned_by_us_and_private(path: &Path) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.uid() == uid && m.permissions().mode() & 0o022 == 0 && !m.file_type().is_symlink()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_directory_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(!ComponentCache::in_state_dir(&state).enabled());
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(ComponentCache::in_state_dir(&state).enabled());
    }
}
