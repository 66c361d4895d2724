//! Stand-ins for the controllers of a real cluster: Deployments roll out through ReplicaSets
//! and Pods, StatefulSets and DaemonSets become ready, Jobs complete or fail, volumes bind,
//! namespaces terminate and the garbage collector follows owner references.
//!
//! Behaviour per object is steered by annotations on the object or its pod template:
//! [`READY_AFTER`], [`NEVER_READY`] and [`FAIL`].

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::resources::ResourceType;
use crate::rollout;
use crate::selector::Selector;
use crate::store::{EventType, Propagation, Store, WatchEvent, WriteOptions};

/// How long after creation a pod becomes ready, e.g. "2s".
pub const READY_AFTER: &str = "kubesim.gantry.dev/ready-after";
/// "true": pods start but never become ready, so a rollout hangs until its deadline.
pub const NEVER_READY: &str = "kubesim.gantry.dev/never-ready";
/// "true": a Job's pod fails (and so the Job); a bare Pod fails.
pub const FAIL: &str = "kubesim.gantry.dev/fail";

/// How long a terminating namespace keeps its contents before they are deleted, by default.
const NAMESPACE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How long pods take to become ready unless an annotation says otherwise.
    pub ready_delay: Duration,
    /// How long a terminating namespace keeps its contents before they are deleted.
    pub namespace_grace: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            ready_delay: Duration::from_millis(300),
            namespace_grace: NAMESPACE_GRACE,
        }
    }
}

/// An object by storage key: group, plural, namespace ("" for cluster objects) and name.
type Key = (String, String, String, String);

/// One unit of controller work.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Work {
    /// Bring the object's dependents and status in line with its spec.
    Sync(Key),
    /// Delete the object when every owner it names is gone (the garbage collector).
    Collect(Key),
}

/// Kinds whose objects the controllers look after.
fn controlled(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        (
            "apps",
            "deployments" | "replicasets" | "statefulsets" | "daemonsets"
        ) | ("batch", "jobs")
            | ("", "pods" | "persistentvolumeclaims" | "namespaces")
    )
}

/// How many work items run before the controllers let other tasks on the runtime go first.
const BATCH: usize = 64;

pub struct Controllers {
    store: Arc<Store>,
    opts: ControllerOptions,
    types: HashMap<(String, String), Option<ResourceType>>,
    /// When each pod was first seen, by uid; readiness delays count from here.
    first_seen: HashMap<String, Instant>,
    /// When a Deployment's current generation started rolling out, by uid.
    rollout_started: HashMap<String, (i64, Instant)>,
    /// When a namespace started terminating, by name.
    terminating: HashMap<String, Instant>,
    queue: VecDeque<Work>,
    queued: HashSet<Work>,
    timers: BTreeSet<(Instant, Work)>,
    /// Every live object's uid, for owner lookups.
    uids: HashMap<String, Key>,
    /// Owner uid to the objects naming it among their owners.
    dependents: HashMap<String, HashSet<Key>>,
    /// ReplicaSets no controller owns, for Deployments to adopt.
    orphans: HashSet<Key>,
}

/// Runs until the task is aborted or the store stops sending changes.
///
/// Nothing is polled: every committed change wakes the objects it concerns (the object, its
/// controlling owner, the dependents of a deleted owner, a terminating namespace), and later
/// transitions (a pod becoming ready, a progress deadline, a namespace's grace period) are
/// timers. An idle simulator sleeps.
pub async fn run(store: Arc<Store>, opts: ControllerOptions) {
    let mut changes = store.subscribe();
    let mut c = Controllers {
        store,
        opts,
        types: HashMap::new(),
        first_seen: HashMap::new(),
        rollout_started: HashMap::new(),
        terminating: HashMap::new(),
        queue: VecDeque::new(),
        queued: HashSet::new(),
        timers: BTreeSet::new(),
        uids: HashMap::new(),
        dependents: HashMap::new(),
        orphans: HashSet::new(),
    };
    c.resync();
    loop {
        c.drain(&mut changes).await;
        let next = c.timers.first().map(|(at, _)| *at);
        tokio::select! {
            ev = changes.recv() => match ev {
                Some(ev) => c.observe(&ev),
                None => return,
            },
            _ = sleep_until(next), if next.is_some() => c.fire_timers(),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn owner_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

fn short_hash(v: &Value) -> String {
    let mut h = Sha256::new();
    feed(&mut h, v);
    hex::encode(&h.finalize()[..5])
}

/// Feeds a value to a hash with object keys in sorted order, so equal content hashes equal.
fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.update(b"{");
            for k in keys {
                h.update(k.as_bytes());
                h.update(b":");
                if let Some(x) = m.get(k) {
                    feed(h, x);
                }
                h.update(b",");
            }
            h.update(b"}");
        }
        Value::Array(a) => {
            h.update(b"[");
            for x in a {
                feed(h, x);
                h.update(b",");
            }
            h.update(b"]");
        }
        other => h.update(other.to_string().as_bytes()),
    }
}

/// The annotation from the workload or its pod template.
fn steer<'a>(workload: &'a Value, key: &str) -> Option<&'a str> {
    workload
        .pointer("/spec/template/metadata/annotations")
        .and_then(|a| a.get(key))
        .or_else(|| {
            workload
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(key))
        })
        .and_then(Value::as_str)
}

fn set_condition(prev: &Value, kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let old = prev
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind));
    let same = old.is_some_and(|c| c["status"] == status && c["reason"] == reason);
    let keep = |f: &str| {
        old.filter(|_| same)
            .and_then(|c| c.get(f).cloned())
            .unwrap_or_else(|| json!(now))
    };
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "lastUpdateTime": keep("lastUpdateTime"), "lastTransitionTime": keep("lastTransitionTime"),
    })
}

/// A condition of the kinds that carry `lastProbeTime` (Jobs, Pods) instead of
/// `lastUpdateTime` (Deployments).
fn probe_condition(prev: &Value, kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let mut c = set_condition(prev, kind, status, reason, message);
    if let Some(m) = c.as_object_mut()
        && let Some(t) = m.remove("lastUpdateTime")
    {
        let old = prev
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .and_then(|c| c.get("lastProbeTime").cloned());
        m.insert("lastProbeTime".into(), old.unwrap_or(t));
    }
    c
}

impl Controllers {
    /// A served built-in type, looked up once.
    fn t(&mut self, group: &str, kind: &str) -> Option<ResourceType> {
        let store = &self.store;
        self.types
            .entry((group.to_string(), kind.to_string()))
            .or_insert_with(|| {
                let version = if group == "autoscaling" { "v2" } else { "v1" };
                store.registry().by_kind(group, version, kind).cloned()
            })
            .clone()
    }

    fn push(&mut self, w: Work) {
        if self.queued.insert(w.clone()) {
            self.queue.push_back(w);
        }
    }

    fn schedule(&mut self, at: Instant, w: Work) {
        self.timers.insert((at, w));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.timers.first() {
            if *at > now {
                break;
            }
            if let Some((_, w)) = self.timers.pop_first() {
                self.push(w);
            }
        }
    }

    /// Reads the whole store once, at start, as if every object had just been added.
    fn resync(&mut self) {
        let all = self.store.all_objects();
        for (t, o) in &all {
            let ns = if t.namespaced {
                s(o, "/metadata/namespace")
            } else {
                ""
            };
            let key: Key = (
                t.group.clone(),
                t.plural.clone(),
                ns.to_string(),
                s(o, "/metadata/name").to_string(),
            );
            self.uids.insert(s(o, "/metadata/uid").to_string(), key);
        }
        for (t, o) in all {
            let ev = WatchEvent {
                rv: 0,
                storage: t.storage_key(),
                namespace: if t.namespaced {
                    s(&o, "/metadata/namespace").to_string()
                } else {
                    String::new()
                },
                kind: EventType::Added,
                object: o,
                previous: None,
            };
            self.observe(&ev);
        }
    }

    /// Runs queued work until none is left, taking in the changes it causes as it goes.
    async fn drain(&mut self, changes: &mut tokio::sync::mpsc::UnboundedReceiver<Arc<WatchEvent>>) {
        let mut done = 0;
        loop {
            while let Ok(ev) = changes.try_recv() {
                self.observe(&ev);
            }
            self.fire_timers();
            let Some(w) = self.queue.pop_front() else {
                return;
            };
            self.queued.remove(&w);
            self.process(w);
            done += 1;
            if done % BATCH == 0 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Updates the indexes from one committed change and queues the work it calls for.
    fn observe(&mut self, ev: &WatchEvent) {
        let (group, plural) = &ev.storage;
        let name = s(&ev.object, "/metadata/name").to_string();
        let key: Key = (
            group.clone(),
            plural.clone(),
            ev.namespace.clone(),
            name.clone(),
        );
        let uid = s(&ev.object, "/metadata/uid").to_string();
        let owners = owner_uids(&ev.object);
        let controller = controller_uid(&ev.object);
        let is_namespace = group.is_empty() && plural == "namespaces";
        if group == "apps" && plural == "replicasets" {
            if ev.kind != EventType::Deleted && controller.is_none() {
                self.orphans.insert(key.clone());
            } else {
                self.orphans.remove(&key);
            }
        }
        if ev.kind == EventType::Deleted {
            self.uids.remove(&uid);
            self.first_seen.remove(&uid);
            self.rollout_started.remove(&uid);
            for o in &owners {
                if let Some(set) = self.dependents.get_mut(o) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.dependents.remove(o);
                    }
                }
            }
            if let Some(deps) = self.dependents.remove(&uid) {
                for d in deps {
                    self.push(Work::Collect(d));
                }
            }
            if is_namespace {
                self.terminating.remove(&name);
            }
            if self.terminating.contains_key(&ev.namespace) {
                self.push(Work::Sync((
                    String::new(),
                    "namespaces".into(),
                    String::new(),
                    ev.namespace.clone(),
                )));
            }
        } else {
            self.uids.insert(uid, key.clone());
            if let Some(prev) = &ev.previous {
                for o in owner_uids(prev) {
                    if !owners.contains(&o)
                        && let Some(set) = self.dependents.get_mut(&o)
                    {
                        set.remove(&key);
                    }
                }
            }
            for o in &owners {
                self.dependents
                    .entry(o.clone())
                    .or_default()
                    .insert(key.clone());
            }
            if !owners.is_empty() && owners.iter().all(|o| !self.uids.contains_key(o)) {
                self.push(Work::Collect(key.clone()));
            }
            if controlled(group, plural) {
                self.push(Work::Sync(key.clone()));
            }
        }
        if let Some(owner) = controller.and_then(|c| self.uids.get(&c)).cloned()
            && controlled(&owner.0, &owner.1)
        {
            self.push(Work::Sync(owner));
        }
    }

    fn process(&mut self, w: Work) {
        match w {
            Work::Collect((g, p, ns, name)) => self.collect(&g, &p, &ns, &name),
            Work::Sync((g, p, ns, name)) => {
                let Some(o) = self.store.object(&g, &p, &ns, &name) else {
                    return;
                };
                match (g.as_str(), p.as_str()) {
                    ("apps", "deployments") => self.deployment(&o),
                    ("apps", "replicasets") => self.replica_set(&o),
                    ("apps", "statefulsets") => self.stateful_set(&o),
                    ("apps", "daemonsets") => self.daemon_set(&o),
                    ("batch", "jobs") => self.job(&o),
                    ("", "pods") => self.pod(&o),
                    ("", "persistentvolumeclaims") => self.volume_claim(&o),
                    ("", "namespaces") => self.namespace(&o),
                    _ => {}
                }
            }
        }
    }

    /// The garbage collector: an object all of whose owners are gone is deleted.
    fn collect(&mut self, group: &str, plural: &str, ns: &str, name: &str) {
        let Some(o) = self.store.object(group, plural, ns, name) else {
            return;
        };
        let owners = owner_uids(&o);
        if owners.is_empty() || owners.iter().any(|u| self.uids.contains_key(u)) {
            return;
        }
        let Some(t) = self
            .store
            .registry()
            .all()
            .iter()
            .find(|t| t.group == group && t.plural == plural)
            .cloned()
        else {
            return;
        };
        let _ = self
            .store
            .delete(&t, ns, name, Propagation::Background, false);
    }

    fn namespace(&mut self, ns: &Value) {
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            return;
        }
        let Some(ns_type) = self.t("", "Namespace") else {
            return;
        };
        let name = s(ns, "/metadata/name").to_string();
        // The namespace controller of a real cluster takes a moment to get to the contents,
        // so clients deleting a namespace and its objects together still find them.
        let since = *self
            .terminating
            .entry(name.clone())
            .or_insert_with(Instant::now);
        let grace = self.opts.namespace_grace;
        if since.elapsed() < grace {
            let key = (String::new(), "namespaces".into(), String::new(), name);
            self.schedule(since + grace, Work::Sync(key));
            return;
        }
        let contents = self.store.namespace_contents(&name);
        if contents.is_empty() {
            self.store.remove(&ns_type, "", &name);
            return;
        }
        for (t, o) in contents {
            let _ = self
                .store
                .delete(&t, &name, &o, Propagation::Background, false);
        }
    }

    fn pods_of(&self, owner_uid: &str, ns: &str) -> Vec<Value> {
        self.owned("", "pods", ns, owner_uid)
    }

    /// The objects of one kind in `ns` that name `owner_uid` among their owners, from the
    /// dependents index: the cost follows the owner's dependents, not the namespace's size.
    fn owned(&self, group: &str, plural: &str, ns: &str, owner_uid: &str) -> Vec<Value> {
        let Some(keys) = self.dependents.get(owner_uid) else {
            return Vec::new();
        };
        let mut keys: Vec<&Key> = keys
            .iter()
            .filter(|(g, p, n, _)| g == group && p == plural && n == ns)
            .collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|(g, p, n, name)| self.store.object(g, p, n, name))
            .filter(|o| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .collect()
    }

    /// A pod from a workload's template, owned by `owner`, carrying the workload's steering
    /// annotations.
    fn pod_from(&self, owner: &Value, name: &str, extra_labels: Value) -> Value {
        let template = owner
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
        if !meta.is_object() {
            meta = json!({});
        }
        for (k, v) in extra_labels.as_object().into_iter().flatten() {
            meta["labels"][k] = v.clone();
        }
        for key in [READY_AFTER, NEVER_READY, FAIL] {
            if let Some(v) = steer(owner, key) {
                meta["annotations"][key] = json!(v);
            }
        }
        meta["name"] = json!(name);
        meta["ownerReferences"] = json!([owner_ref(owner)]);
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": template.get("spec").cloned().unwrap_or(json!({"containers": []})),
        })
    }

    fn create(&mut self, group: &str, kind: &str, ns: &str, obj: Value) {
        let Some(t) = self.t(group, kind) else {
            return;
        };
        let opts = WriteOptions {
            manager: "kubesim-controller".into(),
            ..Default::default()
        };
        match self.store.create(&t, ns, obj, &opts) {
            // Indexed at once, so the rest of this reconcile sees what it created.
            Ok(created) => self.observe(&WatchEvent {
                rv: 0,
                storage: t.storage_key(),
                namespace: if t.namespaced {
                    ns.to_string()
                } else {
                    String::new()
                },
                kind: EventType::Added,
                object: created,
                previous: None,
            }),
            Err(e) => tracing::debug!(kind, error = %e, "a controller could not create an object"),
        }
    }

    /// Records an Event about `about`, as controllers do for what they did.
    fn event(&mut self, about: &Value, reason: &str, message: &str, component: &str) {
        let ns = s(about, "/metadata/namespace");
        let ns = if ns.is_empty() { "default" } else { ns };
        let suffix: String = (0..16).map(|_| fastrand::digit(16)).collect();
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let ev = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": format!("{}.{suffix}", s(about, "/metadata/name"))},
            "involvedObject": {
                "apiVersion": about["apiVersion"], "kind": about["kind"],
                "name": about["metadata"]["name"], "namespace": about["metadata"]["namespace"],
                "uid": about["metadata"]["uid"],
                "resourceVersion": about["metadata"]["resourceVersion"],
            },
            "reason": reason, "message": message, "type": "Normal",
            "source": {"component": component},
            "reportingComponent": component, "reportingInstance": "kubesim",
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        });
        self.create("", "Event", ns, ev);
    }

    /// Replica sets without a controller whose labels the Deployment selects become its own,
    /// as when a Deployment deleted with `--cascade=orphan` is created again.
    fn adopt_replica_sets(&mut self, d: &Value, ns: &str) {
        let Some(selector) = Selector::from_label_selector(&d["spec"]["selector"]) else {
            return;
        };
        if selector.is_empty() {
            return;
        }
        let Some(rs_t) = self.t("apps", "ReplicaSet") else {
            return;
        };
        let owner = owner_ref(d);
        let candidates: Vec<Value> = self
            .orphans
            .iter()
            .filter(|(_, _, n, _)| n == ns)
            .filter_map(|(g, p, n, name)| self.store.object(g, p, n, name))
            .collect();
        for rs in candidates {
            if controller_uid(&rs).is_some()
                || rs.pointer("/metadata/deletionTimestamp").is_some()
                || !selector.matches(&rs)
            {
                continue;
            }
            let owner = owner.clone();
            self.store.modify(&rs_t, ns, s(&rs, "/metadata/name"), |o| {
                match o
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    Some(refs) => refs.push(owner),
                    None => o["metadata"]["ownerReferences"] = json!([owner]),
                }
            });
        }
    }

    fn deployment(&mut self, d: &Value) {
        let (Some(rs_t), Some(d_t)) = (self.t("apps", "ReplicaSet"), self.t("apps", "Deployment"))
        else {
            return;
        };
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let ns = s(d, "/metadata/namespace").to_string();
        let ns = ns.as_str();
        let name = s(d, "/metadata/name").to_string();
        let name = name.as_str();
        let uid = s(d, "/metadata/uid").to_string();
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
        let paused = d["spec"]["paused"] == true;
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let started = match self.rollout_started.get(&uid) {
            Some((g, at)) if *g == generation => *at,
            _ => {
                let now = Instant::now();
                self.rollout_started.insert(uid.clone(), (generation, now));
                now
            }
        };
        self.adopt_replica_sets(d, ns);
        let mut owned = self.owned("apps", "replicasets", ns, &uid);
        let newest = owned.iter().map(revision_of).max().unwrap_or(0);
        // The new ReplicaSet is the one whose template is the Deployment's: `rollout undo`
        // brings an old one back, with the next revision number.
        let current = owned
            .iter()
            .find(|rs| same_template(&rs["spec"]["template"], &template))
            .cloned();
        let rs_name = match &current {
            Some(rs) => s(rs, "/metadata/name").to_string(),
            None => format!("{name}-{hash}"),
        };
        let revision = match &current {
            Some(rs) if revision_of(rs) < newest => {
                let next = (newest + 1).to_string();
                self.store.modify(&rs_t, ns, &rs_name, |o| {
                    o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(next)
                });
                newest + 1
            }
            Some(rs) => revision_of(rs),
            None if paused => newest,
            None => {
                let mut tpl = template.clone();
                tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"]["pod-template-hash"] = json!(hash);
                let mut annotations = json!({
                    "deployment.kubernetes.io/revision": (newest + 1).to_string(),
                    "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                });
                for key in [READY_AFTER, NEVER_READY, FAIL] {
                    if let Some(v) = d
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.get(key))
                        .and_then(Value::as_str)
                    {
                        annotations[key] = json!(v);
                    }
                }
                let rs = json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {
                        "name": rs_name, "labels": tpl["metadata"]["labels"],
                        "annotations": annotations,
                        "ownerReferences": [owner_ref(d)],
                    },
                    "spec": {"replicas": 0, "selector": selector, "template": tpl},
                });
                self.create("apps", "ReplicaSet", ns, rs);
                owned = self.owned("apps", "replicasets", ns, &uid);
                newest + 1
            }
        };
        if revision > 0
            && s(
                d,
                "/metadata/annotations/deployment.kubernetes.io~1revision",
            ) != revision.to_string()
        {
            let r = revision.to_string();
            self.store.modify(&d_t, ns, name, |o| {
                o["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!(r)
            });
        }
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let bounds = rollout::Bounds::of(d, replicas);
        // Each ReplicaSet's pods, counted once: they drive both the next step and the status.
        let desired = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
        let exists = owned.iter().any(|rs| s(rs, "/metadata/name") == rs_name);
        let new_set = owned
            .iter()
            .find(|rs| s(rs, "/metadata/name") == rs_name)
            .map_or(
                rollout::Set {
                    desired: 0,
                    ready: 0,
                    unready: 0,
                },
                |rs| pod_counts(desired(rs), &self.pods_of(s(rs, "/metadata/uid"), ns)),
            );
        let old_sets: Vec<(String, rollout::Set)> = owned
            .iter()
            .filter(|rs| s(rs, "/metadata/name") != rs_name)
            .map(|rs| {
                let pods = self.pods_of(s(rs, "/metadata/uid"), ns);
                (
                    s(rs, "/metadata/name").to_string(),
                    pod_counts(desired(rs), &pods),
                )
            })
            .collect();
        let old_pods: i64 = old_sets.iter().map(|(_, set)| set.pods()).sum();
        if !paused {
            let (new_target, old_targets) = if recreate {
                let new_target = if old_pods > 0 { 0 } else { replicas };
                (new_target, vec![0; old_sets.len()])
            } else {
                let old: Vec<rollout::Set> = old_sets.iter().map(|(_, set)| *set).collect();
                rollout::step(replicas, bounds, new_set, &old)
            };
            for ((rs_n, set), target) in old_sets.iter().zip(old_targets) {
                if set.desired != target {
                    self.store
                        .modify(&rs_t, ns, rs_n, |o| o["spec"]["replicas"] = json!(target));
                    let msg = format!(
                        "Scaled down replica set {rs_n} from {} to {target}",
                        set.desired
                    );
                    self.event(d, "ScalingReplicaSet", &msg, "deployment-controller");
                }
            }
            if exists && new_set.desired != new_target {
                self.store.modify(&rs_t, ns, &rs_name, |o| {
                    o["spec"]["replicas"] = json!(new_target)
                });
                let verb = if new_target > new_set.desired {
                    "up"
                } else {
                    "down"
                };
                let msg = format!(
                    "Scaled {verb} replica set {rs_name} from {} to {new_target}",
                    new_set.desired
                );
                self.event(d, "ScalingReplicaSet", &msg, "deployment-controller");
            }
        }

        let updated = new_set.pods();
        let new_ready = new_set.ready;
        let ready = new_ready + old_sets.iter().map(|(_, set)| set.ready).sum::<i64>();
        let total = updated + old_pods;
        let prev = d.get("status").cloned().unwrap_or(json!({}));
        let complete = updated == replicas && new_ready == replicas && total == replicas;
        let deadline =
            Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let progressing = if paused {
            set_condition(
                &prev,
                "Progressing",
                "Unknown",
                "DeploymentPaused",
                "Deployment is paused",
            )
        } else if complete {
            set_condition(
                &prev,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            )
        } else if started.elapsed() > deadline {
            set_condition(
                &prev,
                "Progressing",
                "False",
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            )
        } else {
            let key = (
                "apps".to_string(),
                "deployments".to_string(),
                ns.to_string(),
                name.to_string(),
            );
            self.schedule(
                started + deadline + Duration::from_millis(1),
                Work::Sync(key),
            );
            set_condition(
                &prev,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs_name}\" is progressing."),
            )
        };
        let min_available = if recreate {
            replicas
        } else {
            replicas - bounds.unavailable
        };
        let available = if ready >= min_available {
            set_condition(
                &prev,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        } else {
            set_condition(
                &prev,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        };
        let mut status = json!({
            "observedGeneration": generation,
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "conditions": [available, progressing],
        });
        if total - ready > 0 {
            status["unavailableReplicas"] = json!(total - ready);
        }
        self.store.set_status(&d_t, ns, name, status);
    }

    fn replica_set(&mut self, rs: &Value) {
        let (Some(rs_t), Some(pod_t)) = (self.t("apps", "ReplicaSet"), self.t("", "Pod")) else {
            return;
        };
        if rs.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let ns = s(rs, "/metadata/namespace");
        let name = s(rs, "/metadata/name");
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let mut pods = self.pods_of(s(rs, "/metadata/uid"), ns);
        // Scaling down takes pods that are not ready first, as the ReplicaSet controller does.
        pods.sort_by_key(|p| !pod_ready(p));
        if pods.len() < want {
            for _ in pods.len()..want {
                let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
                let pod_name = format!("{name}-{suffix}");
                let pod = self.pod_from(rs, &pod_name, json!({}));
                self.create("", "Pod", ns, pod);
                self.event(
                    rs,
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                    "replicaset-controller",
                );
            }
        } else {
            for p in pods.iter().skip(want) {
                let pod_name = s(p, "/metadata/name");
                self.store.remove(&pod_t, ns, pod_name);
                let msg = format!("Deleted pod: {pod_name}");
                self.event(rs, "SuccessfulDelete", &msg, "replicaset-controller");
            }
        }
        let pods = self.pods_of(s(rs, "/metadata/uid"), ns);
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
            "fullyLabeledReplicas": pods.len(),
            "observedGeneration": rs["metadata"]["generation"],
        });
        self.store.set_status(&rs_t, ns, name, status);
    }

    /// The ControllerRevision for a StatefulSet's current template: created when new, moved
    /// to the next revision number when an older one comes back (`rollout undo`).
    fn controller_revision(&mut self, sts: &Value, name: &str, hash: &str) -> String {
        let ns = s(sts, "/metadata/namespace").to_string();
        let uid = s(sts, "/metadata/uid").to_string();
        let cr_name = format!("{name}-{hash}");
        let revisions = self.owned("apps", "controllerrevisions", &ns, &uid);
        let newest = revisions
            .iter()
            .filter_map(|r| r["revision"].as_i64())
            .max()
            .unwrap_or(0);
        match revisions.iter().find(|r| s(r, "/metadata/name") == cr_name) {
            Some(r) => {
                if r["revision"].as_i64().unwrap_or(0) < newest
                    && let Some(t) = self.t("apps", "ControllerRevision")
                {
                    self.store
                        .modify(&t, &ns, &cr_name, |o| o["revision"] = json!(newest + 1));
                }
            }
            None => {
                let mut tpl = sts["spec"]["template"].clone();
                tpl["$patch"] = json!("replace");
                let mut labels = sts
                    .pointer("/spec/selector/matchLabels")
                    .cloned()
                    .unwrap_or(json!({}));
                labels["controller.kubernetes.io/hash"] = json!(hash);
                let cr = json!({
                    "apiVersion": "apps/v1", "kind": "ControllerRevision",
                    "metadata": {"name": cr_name, "labels": labels,
                                 "ownerReferences": [owner_ref(sts)]},
                    "data": {"spec": {"template": tpl}},
                    "revision": newest + 1,
                });
                self.create("apps", "ControllerRevision", &ns, cr);
            }
        }
        cr_name
    }

    /// The claims `volumeClaimTemplates` ask for, per ordinal, and the volumes naming them.
    fn claims_for(&mut self, sts: &Value, ordinal: usize) -> Vec<Value> {
        let ns = s(sts, "/metadata/namespace").to_string();
        let name = s(sts, "/metadata/name");
        let mut volumes = Vec::new();
        for tpl in sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            let claim = s(&tpl, "/metadata/name").to_string();
            let pvc_name = format!("{claim}-{name}-{ordinal}");
            if self
                .store
                .object("", "persistentvolumeclaims", &ns, &pvc_name)
                .is_none()
            {
                let mut labels = tpl
                    .pointer("/metadata/labels")
                    .cloned()
                    .unwrap_or(json!({}));
                for (k, v) in sts
                    .pointer("/spec/selector/matchLabels")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    labels[k] = v.clone();
                }
                let pvc = json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": pvc_name, "labels": labels},
                    "spec": tpl.get("spec").cloned().unwrap_or(json!({})),
                });
                self.create("", "PersistentVolumeClaim", &ns, pvc);
                let msg = format!(
                    "create Claim {pvc_name} Pod {name}-{ordinal} in StatefulSet {name} success"
                );
                self.event(sts, "SuccessfulCreate", &msg, "statefulset-controller");
            }
            volumes.push(json!({"name": claim, "persistentVolumeClaim": {"claimName": pvc_name}}));
        }
        volumes
    }

    fn stateful_set(&mut self, sts: &Value) {
        let (Some(t), Some(pod_t)) = (self.t("apps", "StatefulSet"), self.t("", "Pod")) else {
            return;
        };
        if sts.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let ns = s(sts, "/metadata/namespace").to_string();
        let ns = ns.as_str();
        let name = s(sts, "/metadata/name").to_string();
        let name = name.as_str();
        let want = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let hash = template_hash(&sts["spec"]["template"]);
        let revision = self.controller_revision(sts, name, &hash);
        let pods = self.pods_of(s(sts, "/metadata/uid"), ns);
        for p in &pods {
            let stale = s(p, "/metadata/labels/controller-revision-hash") != revision;
            let ordinal: usize = s(p, "/metadata/name")
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            if stale || ordinal >= want {
                self.store.remove(&pod_t, ns, s(p, "/metadata/name"));
            }
        }
        let pods = self.pods_of(s(sts, "/metadata/uid"), ns);
        for i in 0..want {
            let pod_name = format!("{name}-{i}");
            if !pods.iter().any(|p| s(p, "/metadata/name") == pod_name) {
                let volumes = self.claims_for(sts, i);
                let mut pod = self.pod_from(
                    sts,
                    &pod_name,
                    json!({"controller-revision-hash": revision,
                           "statefulset.kubernetes.io/pod-name": pod_name,
                           "apps.kubernetes.io/pod-index": i.to_string()}),
                );
                for v in volumes {
                    match pod
                        .pointer_mut("/spec/volumes")
                        .and_then(Value::as_array_mut)
                    {
                        Some(vs) => vs.push(v),
                        None => pod["spec"]["volumes"] = json!([v]),
                    }
                }
                self.create("", "Pod", ns, pod);
                let msg = format!("create Pod {pod_name} in StatefulSet {name} successful");
                self.event(sts, "SuccessfulCreate", &msg, "statefulset-controller");
                // Pods start in order: the next waits for this one.
                break;
            }
        }
        let pods = self.pods_of(s(sts, "/metadata/uid"), ns);
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "observedGeneration": sts["metadata"]["generation"],
            "replicas": pods.len(), "readyReplicas": ready, "availableReplicas": ready,
            "currentReplicas": pods.len(), "updatedReplicas": pods.len(),
            "currentRevision": revision, "updateRevision": revision,
            "collisionCount": 0,
        });
        self.store.set_status(&t, ns, name, status);
    }

    fn daemon_set(&mut self, ds: &Value) {
        let (Some(t), Some(pod_t)) = (self.t("apps", "DaemonSet"), self.t("", "Pod")) else {
            return;
        };
        if ds.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let ns = s(ds, "/metadata/namespace");
        let name = s(ds, "/metadata/name");
        let revision = template_hash(&ds["spec"]["template"]);
        let pods = self.pods_of(s(ds, "/metadata/uid"), ns);
        for p in pods
            .iter()
            .filter(|p| s(p, "/metadata/labels/controller-revision-hash") != revision)
        {
            self.store.remove(&pod_t, ns, s(p, "/metadata/name"));
        }
        if self.pods_of(s(ds, "/metadata/uid"), ns).is_empty() {
            let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
            let pod = self.pod_from(
                ds,
                &format!("{name}-{suffix}"),
                json!({"controller-revision-hash": revision}),
            );
            self.create("", "Pod", ns, pod);
        }
        let pods = self.pods_of(s(ds, "/metadata/uid"), ns);
        let ready = pods.iter().filter(|p| pod_ready(p)).count();
        let status = json!({
            "observedGeneration": ds["metadata"]["generation"],
            "desiredNumberScheduled": 1, "currentNumberScheduled": pods.len(),
            "updatedNumberScheduled": pods.len(), "numberReady": ready,
            "numberAvailable": ready, "numberMisscheduled": 0,
        });
        self.store.set_status(&t, ns, name, status);
    }

    fn job(&mut self, job: &Value) {
        let Some(t) = self.t("batch", "Job") else {
            return;
        };
        if job.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let ns = s(job, "/metadata/namespace");
        let name = s(job, "/metadata/name");
        let uid = s(job, "/metadata/uid");
        let prev = job.get("status").cloned().unwrap_or(json!({}));
        let finished = prev
            .get("conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True"
                })
            });
        if finished || job["spec"]["suspend"] == true {
            return;
        }
        let pods = self.pods_of(uid, ns);
        if pods.is_empty() {
            let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
            let pod_name = format!("{name}-{suffix}");
            let pod = self.pod_from(
                job,
                &pod_name,
                json!({"job-name": name, "batch.kubernetes.io/job-name": name,
                       "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid}),
            );
            self.create("", "Pod", ns, pod);
            let msg = format!("Created pod: {pod_name}");
            self.event(job, "SuccessfulCreate", &msg, "job-controller");
        }
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let succeeded = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Succeeded")
            .count();
        let failed = pods
            .iter()
            .filter(|p| p["status"]["phase"] == "Failed")
            .count();
        let mut status = json!({
            "startTime": prev.get("startTime").cloned().unwrap_or(json!(now)),
            "active": pods.len() - succeeded - failed,
            "ready": pods.iter().filter(|p| pod_ready(p)).count(),
            "terminating": 0,
        });
        if succeeded > 0 {
            status["succeeded"] = json!(succeeded);
            status["completionTime"] = json!(now);
            status["conditions"] = json!([
                probe_condition(
                    &prev,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
                probe_condition(
                    &prev,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
            ]);
            self.event(job, "Completed", "Job completed", "job-controller");
        } else if failed > 0 {
            status["failed"] = json!(failed);
            status["conditions"] = json!([
                probe_condition(
                    &prev,
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"
                ),
                probe_condition(
                    &prev,
                    "Failed",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"
                ),
            ]);
            self.event(
                job,
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                "job-controller",
            );
        }
        self.store.set_status(&t, ns, name, status);
    }

    fn pod(&mut self, pod: &Value) {
        let Some(t) = self.t("", "Pod") else {
            return;
        };
        let phase = s(pod, "/status/phase");
        if matches!(phase, "Succeeded" | "Failed")
            || pod_ready(pod)
            || pod.pointer("/metadata/deletionTimestamp").is_some()
        {
            return;
        }
        let uid = s(pod, "/metadata/uid").to_string();
        let seen = *self.first_seen.entry(uid).or_insert_with(Instant::now);
        let annotation = |k: &str| {
            pod.pointer("/metadata/annotations")
                .and_then(|a| a.get(k))
                .and_then(Value::as_str)
        };
        let delay = annotation(READY_AFTER)
            .and_then(|d| humantime::parse_duration(d).ok())
            .unwrap_or(self.opts.ready_delay);
        let ns = s(pod, "/metadata/namespace").to_string();
        let name = s(pod, "/metadata/name").to_string();
        if seen.elapsed() < delay {
            let key = (String::new(), "pods".to_string(), ns, name);
            self.schedule(seen + delay, Work::Sync(key));
            return;
        }
        // Pods that run to completion: a Job's, and bare pods that are not restarted (helm
        // test and hook pods).
        let batch = match controller_kind(pod) {
            Some(kind) => kind == "Job",
            None => matches!(s(pod, "/spec/restartPolicy"), "Never" | "OnFailure"),
        };
        let containers: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().map(|c| s(c, "/name").to_string()).collect())
            .unwrap_or_default();
        let prev = pod.get("status").cloned().unwrap_or(json!({}));
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let terminated = |code: i32, reason: &str| -> Vec<Value> {
            containers
                .iter()
                .map(|c| {
                    json!({"name": c, "ready": false, "started": false, "restartCount": 0,
                    "image": "", "imageID": "",
                    "state": {"terminated": {"exitCode": code, "reason": reason,
                                             "startedAt": now, "finishedAt": now}}})
                })
                .collect()
        };
        let status = if annotation(FAIL) == Some("true") {
            json!({"phase": "Failed", "reason": "Error", "containerStatuses": terminated(1, "Error"),
                "conditions": [probe_condition(&prev, "Ready", "False", "PodFailed", "")]})
        } else if batch {
            json!({"phase": "Succeeded", "containerStatuses": terminated(0, "Completed"),
                "conditions": [probe_condition(&prev, "Ready", "False", "PodCompleted", "")]})
        } else if annotation(NEVER_READY) == Some("true") {
            if phase == "Running" {
                return;
            }
            let statuses: Vec<Value> = containers.iter().map(|c| json!({
                "name": c, "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}},
            })).collect();
            json!({"phase": "Running", "containerStatuses": statuses, "conditions": [
                probe_condition(&prev, "Ready", "False", "ContainersNotReady", "containers with unready status")]})
        } else {
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| json!({"name": c, "ready": true, "started": true, "restartCount": 0, "state": {"running": {"startedAt": now}}}))
                .collect();
            json!({"phase": "Running", "podIP": "10.244.0.10", "hostIP": "10.0.0.1",
                "startTime": now, "containerStatuses": statuses,
                "conditions": [probe_condition(&prev, "Ready", "True", "", ""),
                               probe_condition(&prev, "ContainersReady", "True", "", "")]})
        };
        self.store.set_status(&t, &ns, &name, status);
    }

    fn volume_claim(&mut self, pvc: &Value) {
        let Some(t) = self.t("", "PersistentVolumeClaim") else {
            return;
        };
        if s(pvc, "/status/phase") == "Bound" {
            return;
        }
        let status = json!({
            "phase": "Bound",
            "accessModes": pvc["spec"]["accessModes"],
            "capacity": {"storage": pvc.pointer("/spec/resources/requests/storage").cloned().unwrap_or(json!("1Gi"))},
        });
        self.store.set_status(
            &t,
            s(pvc, "/metadata/namespace"),
            s(pvc, "/metadata/name"),
            status,
        );
    }
}

fn owner_uids(o: &Value) -> Vec<String> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn controller_ref(o: &Value) -> Option<&Value> {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
}

fn controller_uid(o: &Value) -> Option<String> {
    controller_ref(o).and_then(|r| r["uid"].as_str().map(str::to_string))
}

fn controller_kind(o: &Value) -> Option<&str> {
    controller_ref(o).and_then(|r| r["kind"].as_str())
}

/// `deployment.kubernetes.io/revision` of a ReplicaSet.
fn revision_of(rs: &Value) -> i64 {
    s(
        rs,
        "/metadata/annotations/deployment.kubernetes.io~1revision",
    )
    .parse()
    .unwrap_or(0)
}

/// A pod template without the `pod-template-hash` label a controller adds to its copy.
fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        labels.remove("pod-template-hash");
        if labels.is_empty()
            && let Some(md) = t.get_mut("metadata").and_then(Value::as_object_mut)
        {
            md.remove("labels");
        }
    }
    t
}

/// Whether a ReplicaSet's template is the Deployment's, the hash label aside.
fn same_template(rs_template: &Value, template: &Value) -> bool {
    without_hash(rs_template) == without_hash(template)
}

/// The hash of a pod template's content (objects hash the same whatever their key order).
fn template_hash(template: &Value) -> String {
    short_hash(&without_hash(template))
}

/// A label selector in its string form, as `status.selector` carries it for `/scale`.
pub fn label_selector_string(sel: &Value) -> Option<String> {
    let mut parts: Vec<String> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = s(e, "/key");
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        parts.push(match s(e, "/operator") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            _ => format!("!{key}"),
        });
    }
    (!parts.is_empty()).then(|| parts.join(","))
}

/// A ReplicaSet's `spec.replicas` with its pods counted by readiness.
fn pod_counts(desired: i64, pods: &[Value]) -> rollout::Set {
    let ready = pods.iter().filter(|p| pod_ready(p)).count() as i64;
    rollout::Set {
        desired,
        ready,
        unready: pods.len() as i64 - ready,
    }
}

pub fn pod_ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}
