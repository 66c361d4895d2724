//! The `workspace` capability: a directory of the task's own, mounted read-write at
//! `/workspace`, that keeps what a plugin writes there from one run of the task to the next
//! (Terraform's state and working data live there) and is removed when the task is
//! destroyed. It needs no grant: it holds nothing but what the plugin put there, and no
//! other task sees it. The runner creates it under the state directory.

use super::GUEST_WORKSPACE_DIR;
use super::capability::{CallBuilder, Capability, GrantRequest, Resolution};
use crate::wasm::bindings::Linkers;
use crate::wasm::bindings::types::Capability as Requested;

/// The capability's name, under which its grant is filed.
pub const NAME: &str = "workspace";

/// The grant: nothing to it but its presence.
pub struct Workspace;

pub struct WorkspaceCapability;

impl Capability for WorkspaceCapability {
    fn name(&self) -> &'static str {
        NAME
    }

    fn link(&self, _linkers: &mut Linkers) -> anyhow::Result<()> {
        // A directory, not an interface: the files capability's WASI serves it.
        Ok(())
    }

    fn resolve(&self, request: &GrantRequest<'_>) -> Resolution {
        if !request
            .requested
            .iter()
            .any(|c| matches!(c, Requested::Workspace))
        {
            return Resolution::default();
        }
        Resolution {
            grant: Some(std::sync::Arc::new(Workspace)),
            requested: vec![NAME.into()],
            granted: vec![NAME.into()],
            ..Resolution::default()
        }
    }

    fn prepare(&self, call: &mut CallBuilder<'_>) -> anyhow::Result<()> {
        if call.grant::<Workspace>(NAME).is_none() {
            return Ok(());
        }
        if let Some(dir) = call.dirs().and_then(|d| d.workspace.clone()) {
            call.wasi.preopened_dir(
                &dir,
                GUEST_WORKSPACE_DIR,
                wasmtime_wasi::FsPerms::ReadWrite,
            )?;
        }
        Ok(())
    }
}
