//! What gantry knows about kinds before asking the cluster: the order to apply them in and
//! which are cluster-scoped.
//!
//! The order is Helm's install order (objects something else refers to go before what
//! refers to them: a Deployment's ServiceAccount, Secrets and ConfigMaps exist before its
//! pods start), with CustomResourceDefinitions moved up right after Namespaces so custom
//! resources of any kind can follow them. Deletion runs the same list backwards.

use std::collections::BTreeMap;

use gantry_sdk::host::ApiResource;
use serde_json::Value;

use crate::key::group_of;

const ORDER: &[&str] = &[
    "Namespace",
    "CustomResourceDefinition",
    "PriorityClass",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// Position of a kind in the apply order; kinds not in the list (custom resources) go last.
pub fn rank(kind: &str) -> usize {
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// Built-in kinds that live outside namespaces, for when discovery is not at hand.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "StorageClass",
    "IngressClass",
    "PriorityClass",
    "RuntimeClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "APIService",
    "CSIDriver",
    "CSINode",
    "VolumeAttachment",
    "CertificateSigningRequest",
    "FlowSchema",
    "PriorityLevelConfiguration",
];

/// Which kinds the cluster serves (group, kind → versions, namespaced), from discovery and
/// from the CustomResourceDefinitions in the set being applied.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    served: BTreeMap<(String, String), (Vec<String>, bool)>,
    /// Kinds defined by CRDs of the set that the cluster does not serve yet.
    pending: BTreeMap<(String, String), (Vec<String>, bool)>,
    /// Discovery was not available (native tests, validate): everything is accepted.
    pub open: bool,
}

impl Catalog {
    /// A catalogue that accepts every kind and guesses scope from the built-in list.
    pub fn open() -> Catalog {
        Catalog {
            open: true,
            ..Catalog::default()
        }
    }

    pub fn from_discovery(resources: &[ApiResource]) -> Catalog {
        let mut served: BTreeMap<(String, String), (Vec<String>, bool)> = BTreeMap::new();
        for r in resources {
            let entry = served
                .entry((group_of(&r.group_version).to_string(), r.kind.clone()))
                .or_insert_with(|| (Vec::new(), r.namespaced));
            entry.0.push(r.group_version.clone());
        }
        Catalog {
            served,
            ..Catalog::default()
        }
    }

    /// Adds the kinds the CRDs among `objects` define and the cluster does not serve yet.
    pub fn add_definitions<'a>(&mut self, objects: impl IntoIterator<Item = &'a Value>) {
        for o in objects {
            if o["kind"] != "CustomResourceDefinition" {
                continue;
            }
            let group = o
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let kind = o
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let namespaced = o.pointer("/spec/scope").and_then(Value::as_str) != Some("Cluster");
            let versions = o
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter_map(|v| v["name"].as_str())
                        .map(|v| format!("{group}/{v}"))
                        .collect()
                })
                .unwrap_or_default();
            let key = (group.to_string(), kind.to_string());
            if !self.served.contains_key(&key) {
                self.pending.insert(key, (versions, namespaced));
            }
        }
    }

    /// Whether `apiVersion`/`kind` can be applied: served, or defined by a CRD in the set.
    pub fn knows(&self, api_version: &str, kind: &str) -> bool {
        if self.open {
            return true;
        }
        let key = (group_of(api_version).to_string(), kind.to_string());
        [&self.served, &self.pending].iter().any(|m| {
            m.get(&key)
                .is_some_and(|(versions, _)| versions.iter().any(|v| v == api_version))
        })
    }

    /// True when the kind is served now (not only defined by a CRD about to be applied).
    pub fn served(&self, group: &str, kind: &str) -> bool {
        self.open
            || self
                .served
                .contains_key(&(group.to_string(), kind.to_string()))
    }

    pub fn namespaced(&self, group: &str, kind: &str) -> bool {
        let key = (group.to_string(), kind.to_string());
        if let Some((_, ns)) = self.served.get(&key).or_else(|| self.pending.get(&key)) {
            return *ns;
        }
        !CLUSTER_SCOPED.contains(&kind)
    }

    /// A version the cluster serves for the group and kind, preferring `wanted`; used to
    /// reach inventory entries, whose identity carries no version.
    pub fn version_for(&self, group: &str, kind: &str, wanted: Option<&str>) -> Option<String> {
        let key = (group.to_string(), kind.to_string());
        match self.served.get(&key) {
            Some((versions, _)) => match wanted {
                Some(w) if versions.iter().any(|v| v == w) => Some(w.to_string()),
                _ => versions.first().cloned(),
            },
            None => wanted.map(str::to_string),
        }
    }

    /// Versions the cluster serves of the kind, for messages.
    pub fn versions(&self, api_version: &str, kind: &str) -> Vec<String> {
        let key = (group_of(api_version).to_string(), kind.to_string());
        self.served
            .get(&key)
            .or_else(|| self.pending.get(&key))
            .map(|(v, _)| v.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn res(gv: &str, kind: &str, namespaced: bool) -> ApiResource {
        ApiResource {
            group_version: gv.into(),
            kind: kind.into(),
            name: format!("{}s", kind.to_lowercase()),
            namespaced,
        }
    }

    #[test]
    fn order_puts_dependencies_first() {
        assert!(rank("Namespace") < rank("CustomResourceDefinition"));
        assert!(rank("CustomResourceDefinition") < rank("ServiceAccount"));
        assert!(rank("Secret") < rank("Deployment"));
        assert!(rank("ConfigMap") < rank("Service"));
        assert!(rank("Service") < rank("Deployment"));
        assert!(rank("Deployment") < rank("Widget"));
    }

    #[test]
    fn catalogue_knows_served_kinds_and_those_defined_alongside() {
        let mut c = Catalog::from_discovery(&[
            res("v1", "ConfigMap", true),
            res("apps/v1", "Deployment", true),
            res("rbac.authorization.k8s.io/v1", "ClusterRole", false),
        ]);
        assert!(c.knows("apps/v1", "Deployment"));
        assert!(!c.knows("apps/v1beta1", "Deployment"));
        assert!(!c.knows("example.com/v1", "Widget"));
        let crd = json!({"kind": "CustomResourceDefinition", "spec": {"group": "example.com", "scope": "Cluster", "names": {"kind": "Widget"}, "versions": [{"name": "v1"}]}});
        c.add_definitions([&crd]);
        assert!(c.knows("example.com/v1", "Widget"));
        assert!(!c.served("example.com", "Widget"));
        assert!(!c.namespaced("example.com", "Widget"));
        assert!(!c.namespaced("rbac.authorization.k8s.io", "ClusterRole"));
        assert_eq!(
            c.version_for("apps", "Deployment", Some("apps/v1beta1"))
                .as_deref(),
            Some("apps/v1")
        );
    }
}
