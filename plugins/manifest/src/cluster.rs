//! The plugin's view of a cluster: a kube session inside gantry. Built natively (for unit
//! tests of the rest), every call reports that clusters exist only inside the sandbox.

use gantry_sdk::TaskError;
use gantry_sdk::host::{ApplyOptions, ObjectRef, Readiness};

use crate::objects::ObjectId;

pub fn object_ref(id: &ObjectId) -> ObjectRef {
    ObjectRef {
        api_version: id.api_version.clone(),
        kind: id.kind.clone(),
        namespace: id.namespace.clone(),
        name: id.name.clone(),
    }
}

#[cfg(target_arch = "wasm32")]
pub struct Cluster(gantry_sdk::host::kube::Session);

#[cfg(target_arch = "wasm32")]
impl Cluster {
    pub fn open(name: Option<&str>) -> Result<Self, TaskError> {
        gantry_sdk::host::kube::open(name).map(Cluster)
    }
    pub fn apply(&self, manifest: &str, dry_run: bool, force: bool) -> Result<String, TaskError> {
        self.0.apply(
            manifest,
            &ApplyOptions {
                dry_run,
                force,
                field_manager: None,
            },
        )
    }
    pub fn get(&self, target: &ObjectRef) -> Result<Option<String>, TaskError> {
        self.0.get(target)
    }
    pub fn delete(&self, target: &ObjectRef) -> Result<bool, TaskError> {
        self.0.delete(target)
    }
    pub fn wait_ready(
        &self,
        targets: &[ObjectRef],
        timeout_ms: u64,
    ) -> Result<Vec<Readiness>, TaskError> {
        self.0.wait_ready(targets, timeout_ms)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub struct Cluster;

#[cfg(not(target_arch = "wasm32"))]
fn outside() -> TaskError {
    TaskError::CapabilityDenied("Kubernetes sessions exist only inside gantry's sandbox".into())
}

#[cfg(not(target_arch = "wasm32"))]
impl Cluster {
    pub fn open(_name: Option<&str>) -> Result<Self, TaskError> {
        Err(outside())
    }
    pub fn apply(
        &self,
        _manifest: &str,
        _dry_run: bool,
        _force: bool,
    ) -> Result<String, TaskError> {
        let _ = ApplyOptions {
            dry_run: false,
            force: false,
            field_manager: None,
        };
        Err(outside())
    }
    pub fn get(&self, _target: &ObjectRef) -> Result<Option<String>, TaskError> {
        Err(outside())
    }
    pub fn delete(&self, _target: &ObjectRef) -> Result<bool, TaskError> {
        Err(outside())
    }
    pub fn wait_ready(
        &self,
        _targets: &[ObjectRef],
        _timeout_ms: u64,
    ) -> Result<Vec<Readiness>, TaskError> {
        Err(outside())
    }
}
