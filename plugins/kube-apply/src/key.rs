//! The identity of an object in a task's inventory: `group/kind/namespace/name`.
//!
//! The API version is deliberately not part of it: the same object is served under every
//! version of its group, and charts and manifests move objects from `v1beta1` to `v1` when a
//! cluster upgrade forces them to. Were the version part of the identity, such a move would
//! look like a new object plus a removed one, and pruning would delete the object just
//! applied. Cluster-scoped objects have an empty namespace, so changing a task's `namespace`
//! changes nothing about them.

use std::fmt;

use gantry_sdk::host::ObjectRef;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// Empty for the core group.
    pub group: String,
    pub kind: String,
    /// None for cluster-scoped objects.
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.group,
            self.kind,
            self.namespace.as_deref().unwrap_or_default(),
            self.name
        )
    }
}

/// The group of an `apiVersion`: "apps" for "apps/v1", "" for "v1".
pub fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// True for "v1", "v2beta1", "v1alpha3": the version part of an `apiVersion`.
fn is_version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix('v') else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let rest = &rest[digits..];
    if rest.is_empty() {
        return true;
    }
    ["alpha", "beta"].iter().any(|stage| {
        rest.strip_prefix(stage)
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    })
}

/// An inventory entry read back: its key and, for entries written before identities
/// dropped the version (`apps/v1/Deployment/ns/name`), the API version they named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: ObjectKey,
    pub api_version: Option<String>,
}

impl ObjectKey {
    pub fn of(object: &Value) -> ObjectKey {
        let s = |p: &str| {
            object
                .pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let namespace = s("/metadata/namespace");
        ObjectKey {
            group: group_of(&s("/apiVersion")).to_string(),
            kind: s("/kind"),
            namespace: (!namespace.is_empty()).then_some(namespace),
            name: s("/metadata/name"),
        }
    }

    /// Reads an inventory entry in either form. The current form has four parts; the old one
    /// had the API version in front: four parts for the core group (`v1/ConfigMap/ns/a`,
    /// recognised by its first part being a version, which no group name is) or five.
    pub fn parse(id: &str) -> Option<Entry> {
        let parts: Vec<&str> = id.split('/').collect();
        let (api_version, group, kind, ns, name) = match parts.as_slice() {
            [v, kind, ns, name] if is_version(v) => (Some(v.to_string()), "", *kind, *ns, *name),
            [group, kind, ns, name] => (None, *group, *kind, *ns, *name),
            [group, v, kind, ns, name] if is_version(v) => {
                (Some(format!("{group}/{v}")), *group, *kind, *ns, *name)
            }
            _ => return None,
        };
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Entry {
            key: ObjectKey {
                group: group.to_string(),
                kind: kind.to_string(),
                namespace: (!ns.is_empty()).then(|| ns.to_string()),
                name: name.to_string(),
            },
            api_version,
        })
    }

    /// "Deployment shop/web" for messages.
    pub fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    pub fn object_ref(&self, api_version: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.to_string(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_ignores_the_version() {
        let a = ObjectKey::of(
            &json!({"apiVersion": "autoscaling/v2beta2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "shop"}}),
        );
        let b = ObjectKey::of(
            &json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "namespace": "shop"}}),
        );
        assert_eq!(a, b);
        assert_eq!(
            a.to_string(),
            "autoscaling/HorizontalPodAutoscaler/shop/web"
        );
        let cm = ObjectKey::of(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "shop"}}),
        );
        assert_eq!(cm.to_string(), "/ConfigMap/shop/a");
    }

    #[test]
    fn both_inventory_forms_are_read() {
        let new = ObjectKey::parse("apps/Deployment/shop/web").unwrap();
        assert_eq!(new.api_version, None);
        assert_eq!(new.key.group, "apps");
        let core = ObjectKey::parse("/ConfigMap/shop/a").unwrap();
        assert_eq!(core.key.group, "");
        let old_core = ObjectKey::parse("v1/ConfigMap/shop/a").unwrap();
        assert_eq!(old_core.key, core.key);
        assert_eq!(old_core.api_version.as_deref(), Some("v1"));
        let old = ObjectKey::parse("apps/v1/Deployment/shop/web").unwrap();
        assert_eq!(old.key, new.key);
        assert_eq!(old.api_version.as_deref(), Some("apps/v1"));
        let old_cluster =
            ObjectKey::parse("rbac.authorization.k8s.io/v1/ClusterRole//viewer").unwrap();
        assert_eq!(old_cluster.key.namespace, None);
        assert_eq!(
            old_cluster.key.to_string(),
            "rbac.authorization.k8s.io/ClusterRole//viewer"
        );
        assert!(ObjectKey::parse("nonsense").is_none());
        assert!(ObjectKey::parse("a/b/c/d/e/f").is_none());
        assert!(
            is_version("v2beta1") && is_version("v1") && !is_version("vx") && !is_version("apps")
        );
    }
}
