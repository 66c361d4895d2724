//! The cluster as the engine sees it. Inside the sandbox this is a kube session; native unit
//! tests put an in-memory fake behind the same trait.

use gantry_sdk::TaskError;
use gantry_sdk::host::{ApiResource, ApplyOptions, ObjectRef, Readiness};

pub trait Kube {
    /// Server-side apply of one object (JSON); the object as the server returns it.
    fn apply(&self, manifest: &str, options: &ApplyOptions) -> Result<String, TaskError>;
    fn get(&self, target: &ObjectRef) -> Result<Option<String>, TaskError>;
    /// Objects of one type carrying the labels (a selector), as JSON.
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<String>, TaskError>;
    /// True when the object existed.
    fn delete(&self, target: &ObjectRef) -> Result<bool, TaskError>;
    fn wait_ready(
        &self,
        targets: &[ObjectRef],
        timeout_ms: u64,
    ) -> Result<Vec<Readiness>, TaskError>;
    fn api_resources(&self) -> Result<Vec<ApiResource>, TaskError>;
    fn server_version(&self) -> Result<String, TaskError>;
}

#[cfg(target_arch = "wasm32")]
impl Kube for gantry_sdk::host::kube::Session {
    fn apply(&self, manifest: &str, options: &ApplyOptions) -> Result<String, TaskError> {
        gantry_sdk::host::kube::Session::apply(self, manifest, options)
    }
    fn get(&self, target: &ObjectRef) -> Result<Option<String>, TaskError> {
        gantry_sdk::host::kube::Session::get(self, target)
    }
    fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<String>, TaskError> {
        gantry_sdk::host::kube::Session::list(self, api_version, kind, namespace, selector)
    }
    fn delete(&self, target: &ObjectRef) -> Result<bool, TaskError> {
        gantry_sdk::host::kube::Session::delete(self, target)
    }
    fn wait_ready(
        &self,
        targets: &[ObjectRef],
        timeout_ms: u64,
    ) -> Result<Vec<Readiness>, TaskError> {
        gantry_sdk::host::kube::Session::wait_ready(self, targets, timeout_ms)
    }
    fn api_resources(&self) -> Result<Vec<ApiResource>, TaskError> {
        gantry_sdk::host::kube::Session::api_resources(self)
    }
    fn server_version(&self) -> Result<String, TaskError> {
        gantry_sdk::host::kube::Session::server_version(self)
    }
}

/// Opens a session to the named cluster (the default one when `None`).
#[cfg(target_arch = "wasm32")]
pub fn open(cluster: Option<&str>) -> Result<Box<dyn Kube>, TaskError> {
    gantry_sdk::host::kube::open(cluster).map(|s| Box::new(s) as Box<dyn Kube>)
}

/// Outside the sandbox there is no cluster to open.
#[cfg(not(target_arch = "wasm32"))]
pub fn open(_cluster: Option<&str>) -> Result<Box<dyn Kube>, TaskError> {
    Err(TaskError::CapabilityDenied(
        "Kubernetes sessions exist only inside gantry's sandbox".into(),
    ))
}
