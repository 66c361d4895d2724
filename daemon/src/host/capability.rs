//! What every host capability is to the rest of the host: it links its interfaces (for each
//! supported major of the contract), reads its own part of a plugin's grant (`[plugins.NAME]`
//! in gantry.toml), decides what a plugin gets (requested ∧ granted, refusals naming their
//! fix), and adds its part to each call's state. Adding a capability is one module
//! implementing [`Capability`] and one line in [`super::capabilities`].

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime_wasi::WasiCtxBuilder;

use super::{CallSetup, TaskDirs};
use crate::wasm::bindings::Linkers;
use crate::wasm::bindings::types::Capability as Requested;
use crate::wasm::grants::Grant;

/// One capability's answer for one plugin.
#[derive(Default)]
pub struct Resolution {
    /// What the capability's calls need to know of the grant; `None` when nothing was granted.
    pub grant: Option<Arc<dyn Any + Send + Sync>>,
    /// What was requested, for people ("exec:helm", "kube").
    pub requested: Vec<String>,
    /// What is usable, for people ("exec:helm=/usr/bin/helm", "kube:apps-*").
    pub granted: Vec<String>,
    /// Requested but refused, each with the fix.
    pub refusals: Vec<String>,
    /// `gantry.toml` lines (under `[plugins.NAME]`) that would grant everything requested.
    pub suggested: Vec<String>,
}

/// What a capability resolves against.
pub struct GrantRequest<'a> {
    pub plugin: &'a str,
    pub requested: &'a [Requested],
    pub grant: &'a Grant,
    /// Programs named in grants are looked up on this PATH.
    pub search_path: &'a str,
    /// The plugin is one of gantry's own, built into the binary.
    pub builtin: bool,
}

/// One call's state as the capabilities assemble it.
pub struct CallBuilder<'a> {
    pub setup: &'a CallSetup,
    pub wasi: &'a mut WasiCtxBuilder,
    pub parts: &'a mut Parts,
    /// The call's wall-clock deadline; nothing a capability starts may outlive it.
    pub deadline: Instant,
}

impl CallBuilder<'_> {
    /// This capability's grant for the calling plugin, if it has one.
    pub fn grant<T: Send + Sync + 'static>(&self, capability: &str) -> Option<Arc<T>> {
        self.setup.caps.grant::<T>(capability)
    }

    pub fn dirs(&self) -> Option<&TaskDirs> {
        self.setup.dirs.as_ref()
    }
}

pub trait Capability: Send + Sync {
    /// The name `gantry plugins` shows and grants are filed under.
    fn name(&self) -> &'static str;

    /// The keys of `[plugins.NAME]` this capability reads.
    fn grant_keys(&self) -> &'static [&'static str] {
        &[]
    }

    /// Adds the capability's interfaces, of every supported major, to both worlds' linkers.
    fn link(&self, linkers: &mut Linkers) -> anyhow::Result<()>;

    /// What one plugin gets of this capability.
    fn resolve(&self, request: &GrantRequest<'_>) -> Resolution;

    /// Adds the capability's part to one call.
    fn prepare(&self, call: &mut CallBuilder<'_>) -> anyhow::Result<()>;
}

/// Each capability's per-call state, by type: a capability's host functions find their own
/// part here and nothing else.
#[derive(Default)]
pub struct Parts {
    parts: HashMap<TypeId, Box<dyn Any + Send>>,
}

impl Parts {
    pub fn insert<T: Send + 'static>(&mut self, part: T) {
        self.parts.insert(TypeId::of::<T>(), Box::new(part));
    }

    pub fn get<T: 'static>(&self) -> Option<&T> {
        self.parts
            .get(&TypeId::of::<T>())
            .and_then(|p| p.downcast_ref())
    }

    pub fn get_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.parts
            .get_mut(&TypeId::of::<T>())
            .and_then(|p| p.downcast_mut())
    }
}
