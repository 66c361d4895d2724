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

/// Creates the directory private to this user, and refuses it if anyone else could replace
/// its contents: it must be ours and private, and every ancestor must be ours or root's and
/// not writable by others (or sticky, like /tmp, so others cannot rename our entries).
fn prepare(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create: {e}"))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve: {e}"))?;
    if !owned_by_us_and_private(&dir) {
        return Err(format!(
            "{} is not owned by this user or is writable by others",
            dir.display()
        ));
    }
    for ancestor in dir.ancestors().skip(1) {
        let meta =
            std::fs::metadata(ancestor).map_err(|e| format!("{}: {e}", ancestor.display()))?;
        let mode = meta.permissions().mode();
        let trusted_owner = meta.uid() == current_uid() || meta.uid() == 0;
        let others_can_replace = mode & 0o022 != 0 && mode & 0o1000 == 0;
        if !trusted_owner || others_can_replace {
            return Err(format!(
                "{} can be modified by other users",
                ancestor.display()
            ));
        }
    }
    Ok(())
}

fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn owned_by_us_and_private(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| {
        m.uid() == current_uid()
            && m.permissions().mode() & 0o022 == 0
            && !m.file_type().is_symlink()
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
