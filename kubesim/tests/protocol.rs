//! The protocol as a kube-rs client sees it: discovery of custom resources, optimistic
//! concurrency, watches resumed by resourceVersion with bookmarks, finalizers, owner
//! garbage collection, selectors and injected faults.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};

async fn client() -> (kubesim::RunningSim, kube::Client) {
    let sim = kubesim::start(kubesim::SimOptions {
        controllers: kubesim::ControllerOptions {
            ready_delay: Duration::from_millis(50),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    (sim, kube::Client::try_from(config).unwrap())
}

async fn api(
    client: &kube::Client,
    group: &str,
    version: &str,
    kind: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let (ar, _) =
        kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
            .await
            .unwrap();
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn obj(v: Value) -> DynamicObject {
    serde_json::from_value(v).unwrap()
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[tokio::test]
async fn a_custom_resource_definition_registers_a_working_resource() {
    let (_sim, client) = client().await;
    let crds = api(
        &client,
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        None,
    )
    .await;
    crds.create(&PostParams::default(), &obj(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))).await.unwrap();
    let widgets = api(&client, "example.com", "v1", "Widget", Some("default")).await;
    let w = obj(
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}),
    );
    widgets
        .patch("w1", &PatchParams::apply("test"), &Patch::Apply(&w))
        .await
        .unwrap();
    let got = widgets.get("w1").await.unwrap();
    assert_eq!(got.data["spec"]["size"], 3);
    crds.delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    let gone = kube::discovery::pinned_kind(
        &client,
        &GroupVersionKind::gvk("example.com", "v1", "Widget"),
    )
    .await;
    assert!(gone.is_err(), "the resource left with its definition");
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict() {
    let (_sim, client) = client().await;
    let cms = api(&client, "", "v1", "ConfigMap", Some("default")).await;
    let created = cms
        .create(&PostParams::default(), &obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}})))
        .await
        .unwrap();
    let mut first = created.clone();
    first.data["data"]["a"] = json!("2");
    cms.replace("c", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created;
    stale.data["data"]["a"] = json!("3");
    let err = cms
        .replace("c", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("{err}")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    let dup = cms
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}})),
        )
        .await
        .unwrap_err();
    assert!(matches!(dup, kube::Error::Api(s) if s.reason == "AlreadyExists"));
}

#[tokio::test]
async fn watches_resume_from_a_resource_version_and_send_bookmarks() {
    let (sim, client) = client().await;
    let cms = api(&client, "", "v1", "ConfigMap", Some("default")).await;
    let cm = |name: &str| {
        obj(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"w": "yes"}}}),
        )
    };
    let first = cms
        .create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    cms.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    cms.delete("one", &DeleteParams::default()).await.unwrap();

    let params = WatchParams::default().labels("w=yes").timeout(5);
    let mut stream = cms.watch(&params, &rv).await.unwrap().boxed();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(format!("added {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("deleted {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => seen.push("bookmark".into()),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["added two", "deleted one", "bookmark"]);

    sim.drop_watches();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = stream.next().await {
            if ev.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "a dropped watch ends the stream");
}

/// An object relabelled into a watch's selector arrives as ADDED and one relabelled out of
/// it as DELETED, so an informer's cache never keeps what it no longer selects.
#[tokio::test]
async fn a_watch_sees_objects_enter_and_leave_its_label_selector() {
    let (_sim, client) = client().await;
    let cms = api(&client, "", "v1", "ConfigMap", Some("default")).await;
    let start = cms.list(&ListParams::default()).await.unwrap();
    let rv = start.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().labels("tier=fe").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let relabel = |tier: &str| Patch::Merge(json!({"metadata": {"labels": {"tier": tier}}}));
    cms.create(
        &PostParams::default(),
        &obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "moving", "labels": {"tier": "be"}}})),
    )
    .await
    .unwrap();
    let params = PatchParams::default();
    cms.patch("moving", &params, &relabel("fe")).await.unwrap();
    cms.patch("moving", &params, &json_data("v", "1"))
        .await
        .unwrap();
    let left = cms.patch("moving", &params, &relabel("be")).await.unwrap();
    cms.patch("moving", &params, &json_data("v", "2"))
        .await
        .unwrap();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        match stream.next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(format!("added {}", tier(&o))),
            WatchEvent::Modified(o) => seen.push(format!("modified {}", tier(&o))),
            WatchEvent::Deleted(o) => {
                assert_eq!(o.metadata.resource_version, left.metadata.resource_version);
                seen.push(format!("deleted {}", tier(&o)));
            }
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["added fe", "modified fe", "deleted fe"]);
    let more = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(
        !matches!(
            more,
            Ok(Some(Ok(WatchEvent::Modified(_) | WatchEvent::Added(_))))
        ),
        "changes outside the selector are not sent: {more:?}"
    );
}

fn json_data(key: &str, value: &str) -> Patch<Value> {
    Patch::Merge(json!({"data": {key: value}}))
}

fn tier(o: &DynamicObject) -> String {
    o.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("tier").cloned())
        .unwrap_or_default()
}

/// A RollingUpdate with maxSurge 1 and maxUnavailable 0 replaces pods one at a time: the
/// pod watch never shows more than replicas + 1 pods, nor fewer than replicas ready.
#[tokio::test]
async fn a_rolling_update_keeps_within_max_surge_and_max_unavailable() {
    let (_sim, client) = client().await;
    let deployments = api(&client, "apps", "v1", "Deployment", Some("default")).await;
    let pods = api(&client, "", "v1", "Pod", Some("default")).await;
    let web = |image: &str| {
        obj(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]}}}}),
        )
    };
    let params = PatchParams::apply("test");
    deployments
        .patch("web", &params, &Patch::Apply(web("web:1")))
        .await
        .unwrap();
    eventually("the first rollout", async || {
        rolled_out(&deployments, &pods, "web:1").await
    })
    .await;

    let rv = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = pods
        .watch(&WatchParams::default().labels("app=web").timeout(20), &rv)
        .await
        .unwrap()
        .boxed();
    let mut ready: std::collections::BTreeMap<String, bool> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| (p.metadata.name.clone().unwrap(), true))
        .collect();
    deployments
        .patch("web", &params, &Patch::Apply(web("web:2")))
        .await
        .unwrap();
    let (mut most, mut fewest_ready, mut replaced) = (ready.len(), ready.len(), 0);
    let until = Instant::now() + Duration::from_secs(15);
    while replaced < 4 && Instant::now() < until {
        let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await
        else {
            continue;
        };
        match event.unwrap() {
            WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                let image = p.data["spec"]["containers"][0]["image"].to_string();
                let now_ready = kubesim::controllers::pod_ready(&p.data);
                let name = p.metadata.name.clone().unwrap();
                if image.contains("web:2") && now_ready && ready.get(&name) != Some(&true) {
                    replaced += 1;
                }
                ready.insert(name, now_ready);
            }
            WatchEvent::Deleted(p) => {
                ready.remove(&p.metadata.name.unwrap());
            }
            _ => {}
        }
        most = most.max(ready.len());
        fewest_ready = fewest_ready.min(ready.values().filter(|r| **r).count());
    }
    assert_eq!(replaced, 4, "every pod was replaced by a ready new one");
    assert_eq!(most, 5, "at most one pod above the replicas at a time");
    assert_eq!(fewest_ready, 4, "never fewer ready pods than replicas");
    eventually("the second rollout", async || {
        rolled_out(&deployments, &pods, "web:2").await
    })
    .await;
}

/// Whether Deployment `web` has four updated, available replicas, all running `image`.
async fn rolled_out(
    deployments: &Api<DynamicObject>,
    pods: &Api<DynamicObject>,
    image: &str,
) -> bool {
    let d = deployments.get("web").await.unwrap();
    let status = &d.data["status"];
    let images: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.data["spec"]["containers"][0]["image"].to_string())
        .collect();
    status["updatedReplicas"] == 4
        && status["replicas"] == 4
        && status["availableReplicas"] == 4
        && images.len() == 4
        && images.iter().all(|i| i.contains(image))
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_take_dependents_with_them() {
    let (_sim, client) = client().await;
    let cms = api(&client, "", "v1", "ConfigMap", Some("default")).await;
    cms.create(
        &PostParams::default(),
        &obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["example.com/cleanup"]}})),
    )
    .await
    .unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let held = cms.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "marked, not removed"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(
        cms.get_opt("held").await.unwrap().is_none(),
        "gone once the finalizer is removed"
    );

    let parent = cms
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "parent"}})),
        )
        .await
        .unwrap();
    cms.create(&PostParams::default(), &obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "child", "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": parent.metadata.uid}]}})))
        .await
        .unwrap();
    cms.delete("parent", &DeleteParams::background())
        .await
        .unwrap();
    eventually("garbage collection of the child", async || {
        cms.get_opt("child").await.unwrap().is_none()
    })
    .await;

    let deployments = api(&client, "apps", "v1", "Deployment", Some("default")).await;
    deployments.create(&PostParams::default(), &obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "w", "image": "x"}]}}}}))).await.unwrap();
    let pods = api(&client, "", "v1", "Pod", Some("default")).await;
    eventually("two pods", async || {
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len()
            == 2
    })
    .await;
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .unwrap();
    assert!(
        pods.list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .is_empty(),
        "foreground deletion removed the pods first"
    );
}

#[tokio::test]
async fn selectors_and_injected_faults() {
    let (sim, client) = client().await;
    let cms = api(&client, "", "v1", "ConfigMap", Some("default")).await;
    for (name, tier) in [("a", "fe"), ("b", "be"), ("c", "db")] {
        cms.create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": {"tier": tier}}})),
        )
        .await
        .unwrap();
    }
    let names = |l: kube::core::ObjectList<DynamicObject>| -> Vec<String> {
        l.items
            .into_iter()
            .filter_map(|o| o.metadata.name)
            .collect()
    };
    let picked = names(
        cms.list(&ListParams::default().labels("tier in (fe, be),tier!=be"))
            .await
            .unwrap(),
    );
    assert_eq!(picked, ["a"]);
    let picked = names(
        cms.list(&ListParams::default().fields("metadata.name=c"))
            .await
            .unwrap(),
    );
    assert_eq!(picked, ["c"]);

    sim.inject(kubesim::FaultRule {
        method: Some("GET".into()),
        status: Some(500),
        times: Some(1),
        ..Default::default()
    });
    let err = cms.get("a").await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(s) if s.code == 500));
    assert!(cms.get("a").await.is_ok(), "the fault was used up");
    sim.inject(kubesim::FaultRule {
        method: Some("GET".into()),
        delay_ms: Some(300),
        times: Some(1),
        ..Default::default()
    });
    let started = Instant::now();
    cms.get("a").await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the delay applied"
    );
}

#[tokio::test]
async fn a_watch_from_a_resource_version_older_than_the_history_is_gone() {
    let (sim, client) = client().await;
    let cms = api(&client, "", "v1", "ConfigMap", Some("default")).await;
    let first = cms
        .create(
            &PostParams::default(),
            &obj(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "busy"}})),
        )
        .await
        .unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let reg = sim.store.registry();
    let t = reg.by_plural("", "v1", "configmaps").unwrap();
    for i in 0..20_050 {
        let patch = json!({"data": {"n": i.to_string()}});
        sim.store
            .patch(
                t,
                "default",
                "busy",
                kubesim::store::PatchType::Merge,
                patch,
                &Default::default(),
            )
            .unwrap();
    }
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}
