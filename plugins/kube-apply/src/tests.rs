//! The engine against an in-memory cluster: apply order, identities across API versions,
//! unknown kinds refused before anything is applied, strategy ownership, prune and destroy.

use std::cell::RefCell;
use std::collections::BTreeMap;

use gantry_sdk::host::{ApiResource, ApplyOptions, ObjectRef, Readiness, ReadinessState};
use gantry_sdk::{ChangeAction, Deployment, TaskError};
use serde_json::{Value, json};

use crate::engine::{self, Settings};
use crate::key::{ObjectKey, group_of};
use crate::kube::Kube;
use crate::shape::Strategy;
use crate::yaml::parse;

/// Objects by identity, every call recorded.
#[derive(Default)]
struct Fake {
    objects: RefCell<BTreeMap<ObjectKey, Value>>,
    calls: RefCell<Vec<String>>,
    served: Vec<(&'static str, &'static str, bool)>,
}

fn key_of(t: &ObjectRef) -> ObjectKey {
    ObjectKey {
        group: group_of(&t.api_version).to_string(),
        kind: t.kind.clone(),
        namespace: t.namespace.clone(),
        name: t.name.clone(),
    }
}

impl Fake {
    fn new() -> Fake {
        Fake {
            served: vec![
                ("v1", "Namespace", false),
                ("v1", "ConfigMap", true),
                ("v1", "Secret", true),
                ("v1", "Service", true),
                ("v1", "ServiceAccount", true),
                ("apps/v1", "Deployment", true),
                ("autoscaling/v2", "HorizontalPodAutoscaler", true),
                ("autoscaling/v2beta2", "HorizontalPodAutoscaler", true),
                ("apiextensions.k8s.io/v1", "CustomResourceDefinition", false),
            ],
            ..Fake::default()
        }
    }

    fn applied_kinds(&self) -> Vec<String> {
        self.calls
            .borrow()
            .iter()
            .filter_map(|c| c.strip_prefix("apply gantry "))
            .map(str::to_string)
            .collect()
    }
}

impl Kube for Fake {
    fn apply(&self, manifest: &str, o: &ApplyOptions) -> Result<String, TaskError> {
        let v: Value =
            serde_json::from_str(manifest).map_err(|e| TaskError::Internal(e.to_string()))?;
        let key = ObjectKey::of(&v);
        let manager = o.field_manager.clone().unwrap_or("gantry".into());
        self.calls
            .borrow_mut()
            .push(format!("apply {manager} {}", key.kind));
        if !o.dry_run {
            let mut objects = self.objects.borrow_mut();
            let entry = objects.entry(key).or_insert(json!({}));
            merge(entry, &v);
            if v["kind"] == "CustomResourceDefinition" {
                let kind = v["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.calls.borrow_mut().push(format!("defined {kind}"));
            }
        }
        Ok(v.to_string())
    }
    fn get(&self, t: &ObjectRef) -> Result<Option<String>, TaskError> {
        Ok(self.objects.borrow().get(&key_of(t)).map(|v| {
            let mut v = v.clone();
            v["apiVersion"] = json!(t.api_version);
            v.to_string()
        }))
    }
    fn list(
        &self,
        _: &str,
        kind: &str,
        _: Option<&str>,
        _: &str,
    ) -> Result<Vec<String>, TaskError> {
        Ok(self
            .objects
            .borrow()
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(_, v)| v.to_string())
            .collect())
    }
    fn delete(&self, t: &ObjectRef) -> Result<bool, TaskError> {
        self.calls.borrow_mut().push(format!("delete {}", t.kind));
        Ok(self.objects.borrow_mut().remove(&key_of(t)).is_some())
    }
    fn wait_ready(&self, targets: &[ObjectRef], _: u64) -> Result<Vec<Readiness>, TaskError> {
        self.calls.borrow_mut().push(format!(
            "wait {}",
            targets
                .iter()
                .map(|t| t.kind.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
        Ok(targets
            .iter()
            .map(|t| Readiness {
                target: t.clone(),
                state: if self
                    .objects
                    .borrow()
                    .get(&key_of(t))
                    .is_some_and(|o| o["metadata"]["annotations"]["never-ready"] == "true")
                {
                    ReadinessState::Progressing("not yet".into())
                } else {
                    ReadinessState::Ready
                },
            })
            .collect())
    }
    fn api_resources(&self) -> Result<Vec<ApiResource>, TaskError> {
        let mut out: Vec<ApiResource> = self
            .served
            .iter()
            .map(|(gv, kind, namespaced)| ApiResource {
                group_version: gv.to_string(),
                kind: kind.to_string(),
                name: format!("{}s", kind.to_lowercase()),
                namespaced: *namespaced,
            })
            .collect();
        for o in self.objects.borrow().values() {
            if o["kind"] == "CustomResourceDefinition" {
                out.push(ApiResource {
                    group_version: format!(
                        "{}/v1",
                        o["spec"]["group"].as_str().unwrap_or_default()
                    ),
                    kind: o["spec"]["names"]["kind"]
                        .as_str()
                        .unwrap_or_default()
                        .into(),
                    name: "x".into(),
                    namespaced: true,
                });
            }
        }
        Ok(out)
    }
    fn server_version(&self) -> Result<String, TaskError> {
        Ok("v1.35.0".into())
    }
}

fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

fn settings() -> Settings {
    Settings {
        workflow: "shop".into(),
        task: "app.web".into(),
        namespace: "shop".into(),
        create_namespace: false,
        strategy: Strategy::default(),
        force_conflicts: false,
        prune: true,
        wait: true,
        timeout_ms: 1000,
        rollback_on_failure: false,
        recreate_on_immutable: false,
    }
}

fn deploy(kube: &Fake, text: &str, previous: Option<&Deployment>) -> Result<Deployment, TaskError> {
    let ms = parse("k8s/all.yaml", text).map_err(|e| TaskError::InvalidConfig(e.to_string()))?;
    let catalog = engine::catalog(kube, &ms)?;
    let prepared = engine::prepare(ms, catalog, &settings())?;
    engine::deploy(kube, &prepared, previous, &settings())?.deployment(Vec::new(), Value::Null)
}

const MIXED: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: conf}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}\nspec: {group: example.com, scope: Namespaced, names: {kind: Widget, plural: widgets}, versions: [{name: v1}]}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

#[test]
fn objects_go_in_kind_order_with_definitions_awaited_first() {
    let kube = Fake::new();
    let d = deploy(&kube, MIXED, None).unwrap();
    assert_eq!(
        kube.applied_kinds(),
        [
            "Namespace",
            "CustomResourceDefinition",
            "ConfigMap",
            "Service",
            "Deployment",
            "Widget"
        ]
    );
    let calls = kube.calls.borrow();
    let waited = calls
        .iter()
        .position(|c| c == "wait CustomResourceDefinition")
        .unwrap();
    let widget = calls
        .iter()
        .position(|c| c == "apply gantry Widget")
        .unwrap();
    assert!(waited < widget, "{calls:?}");
    assert!(
        d.inventory.contains(&"/Namespace//shop".to_string()),
        "{:?}",
        d.inventory
    );
    assert!(
        d.inventory
            .contains(&"example.com/Widget/shop/w".to_string())
    );
    drop(calls);

    kube.calls.borrow_mut().clear();
    engine::destroy(&kube, Some(&d), "app.web").unwrap();
    let deleted: Vec<String> = kube
        .calls
        .borrow()
        .iter()
        .filter_map(|c| c.strip_prefix("delete ").map(str::to_string))
        .collect();
    assert_eq!(
        deleted,
        [
            "Widget",
            "Deployment",
            "Service",
            "ConfigMap",
            "CustomResourceDefinition",
            "Namespace"
        ]
    );
}

#[test]
fn an_unknown_kind_is_refused_before_anything_is_applied() {
    let kube = Fake::new();
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g}\n";
    let err = deploy(&kube, text, None).unwrap_err();
    let TaskError::InvalidConfig(m) = err else {
        panic!("{err:?}")
    };
    assert!(m.contains("k8s/all.yaml:5") && m.contains("Gadget"), "{m}");
    assert!(kube.applied_kinds().is_empty());
}

#[test]
fn moving_to_a_new_api_version_keeps_the_object() {
    let kube = Fake::new();
    let hpa = |v: &str| {
        format!(
            "apiVersion: autoscaling/{v}\nkind: HorizontalPodAutoscaler\nmetadata: {{name: web}}\nspec: {{maxReplicas: 3}}\n"
        )
    };
    // An inventory written before identities dropped the version.
    let first = deploy(&kube, &hpa("v2beta2"), None).unwrap();
    let old = Deployment {
        inventory: vec!["autoscaling/v2beta2/HorizontalPodAutoscaler/shop/web".into()],
        ..first
    };
    let second = deploy(&kube, &hpa("v2"), Some(&old)).unwrap();
    assert_eq!(
        second.inventory,
        ["autoscaling/HorizontalPodAutoscaler/shop/web"]
    );
    assert!(
        !kube.calls.borrow().iter().any(|c| c.starts_with("delete")),
        "{:?}",
        kube.calls.borrow()
    );
    assert_eq!(kube.objects.borrow().len(), 1);
}

#[test]
fn what_left_the_set_is_pruned_but_kept_objects_stay() {
    let kube = Fake::new();
    let two = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, annotations: {helm.sh/resource-policy: keep}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: c}\n";
    let first = deploy(&kube, two, None).unwrap();
    let second = deploy(
        &kube,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        Some(&first),
    )
    .unwrap();
    let objects = kube.objects.borrow();
    let names: Vec<&str> = objects.keys().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(second.inventory, ["/ConfigMap/shop/a"]);
}

#[test]
fn the_strategy_goes_first_under_its_own_manager_when_the_deployment_exists() {
    let kube = Fake::new();
    let web = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 50%, maxUnavailable: 2}}\n";
    let first = deploy(&kube, web, None).unwrap();
    assert_eq!(
        kube.applied_kinds(),
        ["Deployment"],
        "a new object needs no separate apply"
    );
    kube.calls.borrow_mut().clear();
    deploy(&kube, web, Some(&first)).unwrap();
    let calls = kube.calls.borrow();
    assert_eq!(calls[0], "apply gantry-rollout Deployment", "{calls:?}");
    assert_eq!(calls[1], "apply gantry Deployment", "{calls:?}");
    let objects = kube.objects.borrow();
    let d = objects.values().next().unwrap();
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": "25%", "maxUnavailable": "25%"})
    );
}

#[test]
fn a_failed_rollout_restores_the_previous_objects_and_removes_new_ones() {
    let kube = Fake::new();
    let first = deploy(
        &kube,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '1'}\n",
        None,
    )
    .unwrap();
    let ms = parse(
        "x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {v: '2'}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, annotations: {never-ready: 'true'}}\n",
    )
    .unwrap();
    let s = Settings {
        rollback_on_failure: true,
        recreate_on_immutable: false,
        ..settings()
    };
    let prepared = engine::prepare(ms, engine::catalog(&kube, &[]).unwrap(), &s).unwrap();
    let err = engine::deploy(&kube, &prepared, Some(&first), &s).unwrap_err();
    assert!(
        matches!(&err, TaskError::TimedOut(m) if m.contains("restored")),
        "{err:?}"
    );
    let objects = kube.objects.borrow();
    assert_eq!(objects.len(), 1);
    assert_eq!(objects.values().next().unwrap()["data"]["v"], "1");
}

#[test]
fn plan_of_a_definition_and_its_instances_before_the_first_install() {
    let kube = Fake::new();
    let ms = parse("k8s/all.yaml", MIXED).unwrap();
    let s = settings();
    let prepared = engine::prepare(ms, engine::catalog(&kube, &[]).unwrap_or_default(), &s);
    assert!(
        prepared.is_err(),
        "without the definitions' kinds a Widget is unknown"
    );
    let ms = parse("k8s/all.yaml", MIXED).unwrap();
    let catalog = engine::catalog(&kube, &ms).unwrap();
    let prepared = engine::prepare(ms, catalog, &s).unwrap();
    let changes = engine::plan(&kube, &prepared, None, &s).unwrap();
    assert!(
        changes
            .iter()
            .all(|c| matches!(c.action, ChangeAction::Create))
    );
    let widget = changes
        .iter()
        .find(|c| c.target.contains("Widget"))
        .unwrap();
    assert!(
        widget.detail.contains("CustomResourceDefinition"),
        "{}",
        widget.detail
    );
    assert!(
        widget
            .after
            .as_deref()
            .unwrap_or_default()
            .contains("name: w")
    );
    assert!(kube.objects.borrow().is_empty());
}
