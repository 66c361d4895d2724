//! The resource types the simulator serves: the built-in groups kubectl and helm expect, plus
//! whatever CustomResourceDefinitions register at run time.

use std::sync::Arc;

use serde_json::{Value, json};

/// One served resource type at one group/version.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    /// "" for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// Whether `/status` is a separate subresource: writes to the main resource then keep the
    /// status, and writes to `/status` keep everything else.
    pub status_subresource: bool,
    pub categories: Vec<String>,
    /// A custom resource's `additionalPrinterColumns`, for `kubectl get`.
    pub printer_columns: Vec<Value>,
    /// A custom resource version's `openAPIV3Schema`, which its objects are pruned,
    /// defaulted and validated against; shared, as registries are cloned per request.
    pub schema: Option<Arc<Value>>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name Kubernetes uses in messages: `deployments.apps`, `pods`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (`Deployment.apps`, `Pod`), as validation messages name the type.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Storage key: objects live once per group and plural, whatever version is asked for.
    pub fn storage_key(&self) -> (String, String) {
        (self.group.clone(), self.plural.clone())
    }

    /// Reviews are answered, never stored: create is all they take.
    pub fn is_review(&self) -> bool {
        self.group == "authorization.k8s.io"
    }

    /// Whether `/scale` is served (`kubectl scale`, autoscalers).
    pub fn has_scale(&self) -> bool {
        matches!(
            (self.group.as_str(), self.kind.as_str()),
            ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") | ("", "ReplicationController")
        )
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        if self.is_review() {
            return vec!["create"];
        }
        vec![
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ]
    }
}

fn builtin(
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.to_string(),
        version: version.to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
        singular: kind.to_ascii_lowercase(),
        namespaced,
        short_names: short.iter().map(|s| s.to_string()).collect(),
        status_subresource: status,
        categories: if matches!(
            kind,
            "Pod"
                | "Service"
                | "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
                | "CronJob"
        ) {
            vec!["all".to_string()]
        } else {
            Vec::new()
        },
        printer_columns: Vec::new(),
        schema: None,
    }
}

/// Every type the simulator serves, built-ins first.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Default for Registry {
    fn default() -> Self {
        let b = builtin;
        Registry {
            types: vec![
                b("", "v1", "Namespace", "namespaces", false, &["ns"], true),
                b("", "v1", "Pod", "pods", true, &["po"], true),
                b("", "v1", "Service", "services", true, &["svc"], true),
                b("", "v1", "ConfigMap", "configmaps", true, &["cm"], false),
                b("", "v1", "Secret", "secrets", true, &[], false),
                b(
                    "",
                    "v1",
                    "ServiceAccount",
                    "serviceaccounts",
                    true,
                    &["sa"],
                    false,
                ),
                b(
                    "",
                    "v1",
                    "PersistentVolumeClaim",
                    "persistentvolumeclaims",
                    true,
                    &["pvc"],
                    true,
                ),
                b(
                    "",
                    "v1",
                    "PersistentVolume",
                    "persistentvolumes",
                    false,
                    &["pv"],
                    true,
                ),
                b("", "v1", "Endpoints", "endpoints", true, &["ep"], false),
                b("", "v1", "Event", "events", true, &["ev"], false),
                b("", "v1", "Node", "nodes", false, &["no"], true),
                b(
                    "",
                    "v1",
                    "LimitRange",
                    "limitranges",
                    true,
                    &["limits"],
                    false,
                ),
                b(
                    "",
                    "v1",
                    "ResourceQuota",
                    "resourcequotas",
                    true,
                    &["quota"],
                    true,
                ),
                b(
                    "apps",
                    "v1",
                    "Deployment",
                    "deployments",
                    true,
                    &["deploy"],
                    true,
                ),
                b(
                    "apps",
                    "v1",
                    "ReplicaSet",
                    "replicasets",
                    true,
                    &["rs"],
                    true,
                ),
                b(
                    "apps",
                    "v1",
                    "StatefulSet",
                    "statefulsets",
                    true,
                    &["sts"],
                    true,
                ),
                b("apps", "v1", "DaemonSet", "daemonsets", true, &["ds"], true),
                b(
                    "apps",
                    "v1",
                    "ControllerRevision",
                    "controllerrevisions",
                    true,
                    &[],
                    false,
                ),
                b("batch", "v1", "Job", "jobs", true, &[], true),
                b("batch", "v1", "CronJob", "cronjobs", true, &["cj"], true),
                b(
                    "networking.k8s.io",
                    "v1",
                    "Ingress",
                    "ingresses",
                    true,
                    &["ing"],
                    true,
                ),
                b(
                    "networking.k8s.io",
                    "v1",
                    "NetworkPolicy",
                    "networkpolicies",
                    true,
                    &["netpol"],
                    false,
                ),
                b(
                    "networking.k8s.io",
                    "v1",
                    "IngressClass",
                    "ingressclasses",
                    false,
                    &[],
                    false,
                ),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "Role",
                    "roles",
                    true,
                    &[],
                    false,
                ),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "RoleBinding",
                    "rolebindings",
                    true,
                    &[],
                    false,
                ),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "ClusterRole",
                    "clusterroles",
                    false,
                    &[],
                    false,
                ),
                b(
                    "rbac.authorization.k8s.io",
                    "v1",
                    "ClusterRoleBinding",
                    "clusterrolebindings",
                    false,
                    &[],
                    false,
                ),
                b(
                    "policy",
                    "v1",
                    "PodDisruptionBudget",
                    "poddisruptionbudgets",
                    true,
                    &["pdb"],
                    true,
                ),
                b(
                    "autoscaling",
                    "v2",
                    "HorizontalPodAutoscaler",
                    "horizontalpodautoscalers",
                    true,
                    &["hpa"],
                    true,
                ),
                b(
                    "autoscaling",
                    "v1",
                    "HorizontalPodAutoscaler",
                    "horizontalpodautoscalers",
                    true,
                    &["hpa"],
                    true,
                ),
                b(
                    "",
                    "v1",
                    "ReplicationController",
                    "replicationcontrollers",
                    true,
                    &["rc"],
                    true,
                ),
                b("", "v1", "PodTemplate", "podtemplates", true, &[], false),
                b(
                    "discovery.k8s.io",
                    "v1",
                    "EndpointSlice",
                    "endpointslices",
                    true,
                    &[],
                    false,
                ),
                b(
                    "events.k8s.io",
                    "v1",
                    "Event",
                    "events",
                    true,
                    &["ev"],
                    false,
                ),
                b(
                    "scheduling.k8s.io",
                    "v1",
                    "PriorityClass",
                    "priorityclasses",
                    false,
                    &["pc"],
                    false,
                ),
                b(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingWebhookConfiguration",
                    "validatingwebhookconfigurations",
                    false,
                    &[],
                    false,
                ),
                b(
                    "admissionregistration.k8s.io",
                    "v1",
                    "MutatingWebhookConfiguration",
                    "mutatingwebhookconfigurations",
                    false,
                    &[],
                    false,
                ),
                b(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingAdmissionPolicy",
                    "validatingadmissionpolicies",
                    false,
                    &[],
                    true,
                ),
                b(
                    "admissionregistration.k8s.io",
                    "v1",
                    "ValidatingAdmissionPolicyBinding",
                    "validatingadmissionpolicybindings",
                    false,
                    &[],
                    false,
                ),
                b(
                    "authorization.k8s.io",
                    "v1",
                    "SelfSubjectAccessReview",
                    "selfsubjectaccessreviews",
                    false,
                    &[],
                    false,
                ),
                b(
                    "authorization.k8s.io",
                    "v1",
                    "SelfSubjectRulesReview",
                    "selfsubjectrulesreviews",
                    false,
                    &[],
                    false,
                ),
                b(
                    "storage.k8s.io",
                    "v1",
                    "StorageClass",
                    "storageclasses",
                    false,
                    &["sc"],
                    false,
                ),
                b(
                    "coordination.k8s.io",
                    "v1",
                    "Lease",
                    "leases",
                    true,
                    &[],
                    false,
                ),
                b(
                    "apiextensions.k8s.io",
                    "v1",
                    "CustomResourceDefinition",
                    "customresourcedefinitions",
                    false,
                    &["crd", "crds"],
                    true,
                ),
            ],
        }
    }
}

impl Registry {
    pub fn all(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served at `group/version` under `plural`.
    pub fn by_plural(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
    }

    /// Group names in discovery order, each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out
    }

    pub fn in_group_version(&self, group: &str, version: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .collect()
    }

    /// Registers (or replaces) the types a CustomResourceDefinition declares.
    pub fn register_crd(&mut self, crd: &Value) -> Result<(), String> {
        let spec = crd.get("spec").ok_or("spec is required")?;
        let group = str_at(spec, "group").ok_or("spec.group is required")?;
        let names = spec.get("names").ok_or("spec.names is required")?;
        let plural = str_at(names, "plural").ok_or("spec.names.plural is required")?;
        let kind = str_at(names, "kind").ok_or("spec.names.kind is required")?;
        let namespaced = match str_at(spec, "scope") {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => {
                return Err(format!(
                    "spec.scope must be Namespaced or Cluster, not {other:?}"
                ));
            }
        };
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .filter(|v| !v.is_empty())
            .ok_or("spec.versions must list at least one version")?;
        self.unregister_crd(group, plural);
        for v in versions {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let version = str_at(v, "name").ok_or("spec.versions[].name is required")?;
            self.types.push(ResourceType {
                group: group.to_string(),
                version: version.to_string(),
                kind: kind.to_string(),
                plural: plural.to_string(),
                singular: str_at(names, "singular")
                    .map(str::to_string)
                    .unwrap_or_else(|| kind.to_ascii_lowercase()),
                namespaced,
                short_names: strings_at(names, "shortNames"),
                status_subresource: v.pointer("/subresources/status").is_some(),
                categories: strings_at(names, "categories"),
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .filter(|s| s.is_object())
                    .map(|s| Arc::new(s.clone())),
            });
        }
        Ok(())
    }

    pub fn unregister_crd(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.group == group && t.plural == plural));
    }

    pub fn is_builtin_group(group: &str) -> bool {
        matches!(
            group,
            "" | "apps"
                | "batch"
                | "networking.k8s.io"
                | "rbac.authorization.k8s.io"
                | "policy"
                | "autoscaling"
                | "storage.k8s.io"
                | "coordination.k8s.io"
                | "apiextensions.k8s.io"
                | "discovery.k8s.io"
                | "events.k8s.io"
                | "scheduling.k8s.io"
                | "admissionregistration.k8s.io"
                | "authorization.k8s.io"
        )
    }
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn strings_at(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `{"group":..,"version":..,"kind":..}` as discovery documents spell it.
pub fn gvk_json(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}
