//! The `kube` capability. Sessions are scoped to the namespaces granted to the plugin.
//! This build has no cluster client yet: `open` explains that, and a plugin that did not
//! request kube is told so first.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::wasm::bindings::kube::{self, ApplyOptions, ObjectRef, Readiness};
use crate::wasm::bindings::types::TaskError;
use crate::wasm::grants::Effective;

/// The host side of a `session` resource.
pub struct KubeSession {
    pub cluster: Option<String>,
}

pub struct KubeHost {
    pub plugin: String,
    pub caps: Arc<Effective>,
}

impl KubeHost {
    fn open(&self, _cluster: Option<String>) -> Result<KubeSession, TaskError> {
        if !self.caps.requested_kube {
            return Err(TaskError::CapabilityDenied(format!(
                "plugin `{}` did not request the kube capability in describe()",
                self.plugin
            )));
        }
        if self.caps.kube_namespaces.is_empty() {
            return Err(TaskError::CapabilityDenied(format!(
                "no namespace is granted to plugin `{}`: add kube_namespaces = [\"...\"] under [plugins.{}] in gantry.toml",
                self.plugin, self.plugin
            )));
        }
        Err(TaskError::CapabilityDenied(
            "this gantry build has no Kubernetes client configured".to_string(),
        ))
    }
}

fn no_session() -> TaskError {
    TaskError::CapabilityDenied("no Kubernetes session is open".to_string())
}

impl kube::Host for super::CallState {
    async fn open(
        &mut self,
        cluster: Option<String>,
    ) -> wasmtime::Result<Result<Resource<KubeSession>, TaskError>> {
        Ok(match self.kube.open(cluster) {
            Ok(session) => Ok(self.table.push(session)?),
            Err(e) => Err(e),
        })
    }
}

impl kube::HostSession for super::CallState {
    async fn apply(
        &mut self,
        _s: Resource<KubeSession>,
        _manifest: String,
        _o: ApplyOptions,
    ) -> wasmtime::Result<Result<String, TaskError>> {
        Ok(Err(no_session()))
    }

    async fn get(
        &mut self,
        _s: Resource<KubeSession>,
        _t: ObjectRef,
    ) -> wasmtime::Result<Result<Option<String>, TaskError>> {
        Ok(Err(no_session()))
    }

    async fn list(
        &mut self,
        _s: Resource<KubeSession>,
        _api_version: String,
        _kind: String,
        _namespace: Option<String>,
        _selector: String,
    ) -> wasmtime::Result<Result<Vec<String>, TaskError>> {
        Ok(Err(no_session()))
    }

    async fn delete(
        &mut self,
        _s: Resource<KubeSession>,
        _t: ObjectRef,
    ) -> wasmtime::Result<Result<bool, TaskError>> {
        Ok(Err(no_session()))
    }

    async fn wait_ready(
        &mut self,
        _s: Resource<KubeSession>,
        _targets: Vec<ObjectRef>,
        _timeout_ms: u64,
    ) -> wasmtime::Result<Result<Vec<Readiness>, TaskError>> {
        Ok(Err(no_session()))
    }

    async fn drop(&mut self, session: Resource<KubeSession>) -> wasmtime::Result<()> {
        self.table.delete(session)?;
        Ok(())
    }
}
