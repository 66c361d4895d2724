//! The `files` capability: WASI with no sockets and no name lookup, where the only paths are
//! the task's source directory (read-only) and its scratch directory (read-write). Every
//! plugin has it; symlinks and `..` cannot leave the mounts.

use super::capability::{CallBuilder, Capability, GrantRequest, Resolution};
use super::{GUEST_SCRATCH_DIR, GUEST_SOURCE_DIR};
use crate::wasm::bindings::Linkers;

pub struct FilesCapability;

impl Capability for FilesCapability {
    fn name(&self) -> &'static str {
        "files"
    }

    fn link(&self, linkers: &mut Linkers) -> anyhow::Result<()> {
        for linker in linkers.each() {
            wasmtime_wasi::p2::add_to_linker_async(linker)?;
        }
        Ok(())
    }

    fn resolve(&self, _request: &GrantRequest<'_>) -> Resolution {
        Resolution::default()
    }

    fn prepare(&self, call: &mut CallBuilder<'_>) -> anyhow::Result<()> {
        let Some(dirs) = call.setup.dirs.clone() else {
            return Ok(());
        };
        call.wasi.preopened_dir(
            &dirs.source,
            GUEST_SOURCE_DIR,
            wasmtime_wasi::FsPerms::ReadOnly,
        )?;
        if let Some(scratch) = &dirs.scratch {
            call.wasi.preopened_dir(
                scratch,
                GUEST_SCRATCH_DIR,
                wasmtime_wasi::FsPerms::ReadWrite,
            )?;
        }
        Ok(())
    }
}
