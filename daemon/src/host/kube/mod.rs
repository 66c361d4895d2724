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

use wasmtime::component::HasSelf;

use super::CallState;
use super::capability::{CallBuilder, Capability, GrantRequest, Resolution};
use crate::host::log::LogSink;
use crate::wasm::bindings::kube::{self, ApiResource, ApplyOptions, ObjectRef, Readiness};
use crate::wasm::bindings::types::{Capability as Requested, TaskError};
use crate::wasm::bindings::{Linkers, v1, v2};
use crate::wasm::grants::Namespaces;

/// The capability's name, under which its grant is filed.
pub const NAME: &str = "kube";

pub struct KubeCapability;

impl Capability for KubeCapability {
    fn name(&self) -> &'static str {
        NAME
    }

    fn grant_keys(&self) -> &'static [&'static str] {
        &["kube_namespaces"]
    }

    fn link(&self, linkers: &mut Linkers) -> anyhow::Result<()> {
        let linker = linkers.task();
        v1::task::gantry::plugin::kube::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
        v2::kube::add_to_linker::<_, HasSelf<CallState>>(linker, |s| s)?;
        Ok(())
    }

    fn resolve(&self, request: &GrantRequest<'_>) -> Resolution {
        if !request
            .requested
            .iter()
            .any(|c| matches!(c, Requested::Kube))
        {
            return Resolution::default();
        }
        let plugin = request.plugin;
        let patterns = match request.grant.strings("kube_namespaces") {
            Ok(p) => p,
            Err(e) => {
                return Resolution {
                    requested: vec![NAME.into()],
                    refusals: vec![format!("[plugins.{plugin}] {e}")],
                    ..Resolution::default()
                };
            }
        };
        let suggested = vec![
            "kube_namespaces = [\"NAMESPACE\", \"apps-*\"]   # namespaces its sessions may touch"
                .into(),
        ];
        if patterns.is_empty() {
            return Resolution {
                requested: vec![NAME.into()],
                refusals: vec![format!(
                    "kube is requested but no namespace is granted: add kube_namespaces = [\"...\"] under [plugins.{plugin}] in gantry.toml"
                )],
                suggested,
                ..Resolution::default()
            };
        }
        Resolution {
            requested: vec![NAME.into()],
            granted: patterns.iter().map(|p| format!("kube:{p}")).collect(),
            suggested,
            grant: Some(Arc::new(Namespaces { patterns })),
            ..Resolution::default()
        }
    }

    fn prepare(&self, call: &mut CallBuilder<'_>) -> anyhow::Result<()> {
        let setup = call.setup;
        call.parts.insert(KubeHost {
            plugin: setup.plugin.clone(),
            namespaces: call.grant::<Namespaces>(NAME),
            requested: setup.caps.requested.iter().any(|r| r == NAME),
            clusters: setup.clusters.clone(),
            log: setup.log.clone(),
            deadline: call.deadline,
        });
        Ok(())
    }
}

pub struct KubeHost {
    pub plugin: String,
    /// None when nothing is granted.
    pub namespaces: Option<Arc<Namespaces>>,
    pub requested: bool,
    pub clusters: Arc<Clusters>,
    pub log: Arc<dyn LogSink>,
    pub deadline: Instant,
}

impl KubeHost {
    async fn open(&self, cluster: Option<String>) -> Result<Session, TaskError> {
        if !self.requested {
            return Err(TaskError::CapabilityDenied(format!(
                "plugin `{}` did not request the kube capability in describe()",
                self.plugin
            )));
        }
        let Some(namespaces) = self.namespaces.clone() else {
            return Err(TaskError::CapabilityDenied(format!(
                "no namespace is granted to plugin `{}`: add kube_namespaces = [\"...\"] under [plugins.{}] in gantry.toml",
                self.plugin, self.plugin
            )));
        };
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
            namespaces,
            self.log.clone(),
            self.deadline,
        ))
    }
}

impl CallState {
    /// Opens a session for the plugin; the time it takes is the host's, not the guest's.
    pub(crate) async fn open_session(
        &mut self,
        cluster: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Session>, TaskError>> {
        let started = Instant::now();
        let opened = match self.parts.get::<KubeHost>() {
            Some(kube) => kube.open(cluster).await,
            None => Err(TaskError::CapabilityDenied(
                "Kubernetes sessions cannot be opened in this call".into(),
            )),
        };
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

impl kube::Host for CallState {
    async fn open(
        &mut self,
        cluster: Option<String>,
    ) -> wasmtime::Result<Result<Resource<Session>, TaskError>> {
        self.open_session(cluster).await
    }
}

impl kube::HostSession for CallState {
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
