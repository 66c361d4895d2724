//! The `kube` capability: sessions to the clusters named in gantry.toml, scoped to the
//! namespaces granted to the plugin. Time spent waiting on the API does not count against
//! the plugin's CPU budget.

pub mod clusters;
pub mod readiness;
pub mod session;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Resource;

pub use clusters::{ClusterConfig, Clusters};
pub use session::Session;

use crate::host::log::LogSink;
use crate::wasm::bindings::kube::{self, ApiResource, ApplyOptions, ObjectRef, Readiness};
use crate::wasm::bindings::types::TaskError;
use crate::wasm::grants::Effective;

pub struct KubeHost {
    pub plugin: String,
    pub caps: Arc<Effective>,
    pub clusters: Arc<Clusters>,
    pub log: Arc<dyn LogSink>,
    pub deadline: Instant,
}

impl KubeHost {
    async fn open(&self, cluster: Option<String>) -> Result<Session, TaskError> {
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
        let (name, client) = self
            .clusters
            .client(cluster.as_deref())
            .await
            .map_err(|e| {
                TaskError::Kube(crate::wasm::bindings::types::KubeError {
                    status: 0,
                    reason: String::new(),
                    message: e.to_string(),
                })
            })?;
        Ok(Session::new(
            name,
            client,
            self.plugin.clone(),
            self.caps.clone(),
            self.log.clone(),
            self.deadline,
        ))
    }
}

impl super::CallState {
    /// Opens a session for the plugin; the time it takes is the host's, not the guest's.
    pub(crate) async fn open_session(
        &mut self,
        cluster: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Session>, TaskError>> {
        let started = Instant::now();
        let opened = self.kube.open(cluster).await;
        self.cpu.add_host_time(started.elapsed());
        Ok(match opened {
            Ok(session) => Ok(self.table.push(session)?),
            Err(e) => Err(e),
        })
    }

    pub(crate) fn close_session(&mut self, session: Resource<Session>) -> wasmtime::Result<()> {
        self.table.delete(session)?;
        Ok(())
    }

    /// Runs one session operation, charging its time to the host rather than the guest.
    pub(crate) async fn with_session<T>(
        &mut self,
        s: &Resource<Session>,
        op: impl AsyncFnOnce(&mut Session) -> Result<T, TaskError>,
    ) -> wasmtime::Result<Result<T, TaskError>> {
        let started = Instant::now();
        let session = self.table.get_mut(s)?;
        let result = op(session).await;
        self.cpu.add_host_time(started.elapsed());
        if let Err(e) = &result {
            self.log.write(
                crate::wasm::bindings::log::Level::Debug,
                &crate::host::describe_task_error(e),
                &[],
            );
        }
        Ok(result)
    }
}

impl kube::Host for super::CallState {
    async fn open(
        &mut self,
        cluster: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Session>, TaskError>> {
        self.open_session(cluster).await
    }
}

impl kube::HostSession for super::CallState {
    async fn apply(
        &mut self,
        s: Resource<Session>,
        manifest: String,
        o: ApplyOptions,
    ) -> wasmtime::Result<Result<String, TaskError>> {
        self.with_session(&s, async |session| session.apply(&manifest, o).await)
            .await
    }

    async fn get(
        &mut self,
        s: Resource<Session>,
        t: ObjectRef,
    ) -> wasmtime::Result<Result<Option<String>, TaskError>> {
        self.with_session(&s, async |session| session.get(&t).await)
            .await
    }

    async fn list(
        &mut self,
        s: Resource<Session>,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        selector: String,
    ) -> wasmtime::Result<Result<Vec<String>, TaskError>> {
        self.with_session(&s, async |session| {
            session
                .list(&api_version, &kind, namespace.as_deref(), &selector)
                .await
        })
        .await
    }

    async fn delete(
        &mut self,
        s: Resource<Session>,
        t: ObjectRef,
    ) -> wasmtime::Result<Result<bool, TaskError>> {
        self.with_session(&s, async |session| session.delete(&t).await)
            .await
    }

    async fn wait_ready(
        &mut self,
        s: Resource<Session>,
        targets: Vec<ObjectRef>,
        timeout_ms: u64,
    ) -> wasmtime::Result<Result<Vec<Readiness>, TaskError>> {
        self.with_session(&s, async |session| {
            session
                .wait_ready(&targets, Duration::from_millis(timeout_ms))
                .await
        })
        .await
    }

    async fn server_version(
        &mut self,
        s: Resource<Session>,
    ) -> wasmtime::Result<Result<String, TaskError>> {
        self.with_session(&s, async |session| session.server_version().await)
            .await
    }

    async fn api_resources(
        &mut self,
        s: Resource<Session>,
    ) -> wasmtime::Result<Result<Vec<ApiResource>, TaskError>> {
        self.with_session(&s, async |session| session.api_resources().await)
            .await
    }

    async fn drop(&mut self, session: Resource<Session>) -> wasmtime::Result<()> {
        self.close_session(session)
    }
}
