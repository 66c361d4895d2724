//! Stand-ins for the controllers of a real cluster: Deployments roll out through ReplicaSets
//! and Pods, StatefulSets and DaemonSets become ready, Jobs complete or fail, volumes bind,
//! namespaces terminate and the garbage collector follows owner references.
//!
//! Behaviour per object is steered by annotations on the object or its pod template:
//! [`READY_AFTER`], [`NEVER_READY`] and [`FAIL`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::resources::ResourceType;
use crate::rollout;
use crate::store::{Propagation, Store, WriteOptions};

/// How long after creation a pod becomes ready, e.g. "2s".
pub const READY_AFTER: &str = "kubesim.gantry.dev/ready-after";
/// "true": pods start but never become ready, so a rollout hangs until its deadline.
pub const NEVER_READY: &str = "kubesim.gantry.dev/never-ready";
/// "true": a Job's pod fails (and so the Job); a bare Pod fails.
pub const FAIL: &str = "kubesim.gantry.dev/fail";

/// How long a terminating namespace keeps its contents before they are deleted.
const NAMESPACE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// How long pods take to become ready unless an annotation says otherwise.
    pub ready_delay: Duration,
    /// How often timers (readiness, progress deadlines) are checked.
    pub tick: Duration,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            ready_delay: Duration::from_millis(300),
            tick: Duration::from_millis(50),
        }
    }
}

pub struct Controllers {
    store: Arc<Store>,
    opts: ControllerOptions,
    first_seen: HashMap<String, Instant>,
    rollout_started: HashMap<(String, i64), Instant>,
}

/// Runs until the store is dropped by everyone else.
pub async fn run(store: Arc<Store>, opts: ControllerOptions) {
    let mut c = Controllers {
        store,
        opts,
        first_seen: HashMap::new(),
        rollout_started: HashMap::new(),
    };
    loop {
        c.reconcile();
        if Arc::strong_count(&c.store) == 1 {
            return;
        }
        tokio::select! {
            _ = c.store.changed.notified() => {}
            _ = tokio::time::sleep(c.opts.tick) => {}
        }
    }
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

fn owned_by(o: &Value, uid: &str) -> bool {
    o.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|r| r["uid"] == uid))
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
    let digest = Sha256::digest(v.to_string().as_bytes());
    hex::encode(&digest[..5])
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

impl Controllers {
    fn t(&self, group: &str, kind: &str) -> Option<ResourceType> {
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        self.store.registry().by_kind(group, version, kind).cloned()
    }

    fn reconcile(&mut self) {
        self.terminate_namespaces();
        self.collect_garbage();
        for d in self.store.objects_of("apps", "deployments") {
            self.deployment(&d);
        }
        for rs in self.store.objects_of("apps", "replicasets") {
            self.replica_set(&rs);
        }
        for sts in self.store.objects_of("apps", "statefulsets") {
            self.stateful_set(&sts);
        }
        for ds in self.store.objects_of("apps", "daemonsets") {
            self.daemon_set(&ds);
        }
        for job in self.store.objects_of("batch", "jobs") {
            self.job(&job);
        }
        for pod in self.store.objects_of("", "pods") {
            self.pod(&pod);
        }
        for pvc in self.store.objects_of("", "persistentvolumeclaims") {
            self.volume_claim(&pvc);
        }
        let live: HashSet<String> = self
            .store
            .all_objects()
            .iter()
            .map(|(_, o)| s(o, "/metadata/uid").to_string())
            .collect();
        self.first_seen
            .retain(|key, _| live.contains(key.strip_prefix("terminating:").unwrap_or(key)));
        self.rollout_started
            .retain(|(uid, _), _| live.contains(uid));
    }

    fn terminate_namespaces(&mut self) {
        let Some(ns_type) = self.t("", "Namespace") else {
            return;
        };
        for ns in self.store.objects_of("", "namespaces") {
            if ns.pointer("/metadata/deletionTimestamp").is_none() {
                continue;
            }
            let name = s(&ns, "/metadata/name").to_string();
            // The namespace controller of a real cluster takes a moment to get to the
            // contents, so clients deleting a namespace and its objects together still find them.
            let since = *self
                .first_seen
                .entry(format!("terminating:{}", s(&ns, "/metadata/uid")))
                .or_insert_with(Instant::now);
            if since.elapsed() < NAMESPACE_GRACE {
                continue;
            }
            let mut left = 0;
            for (t, o) in self.store.all_objects() {
                if t.namespaced && s(&o, "/metadata/namespace") == name {
                    left += 1;
                    let _ = self.store.delete(
                        &t,
                        &name,
                        s(&o, "/metadata/name"),
                        Propagation::Background,
                        false,
                    );
                }
            }
            if left == 0 {
                self.store.remove(&ns_type, "", &name);
            }
        }
    }

    fn collect_garbage(&mut self) {
        let all = self.store.all_objects();
        let uids: HashSet<&str> = all.iter().map(|(_, o)| s(o, "/metadata/uid")).collect();
        for (t, o) in &all {
            let Some(refs) = o
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
            else {
                continue;
            };
            if !refs.is_empty()
                && refs
                    .iter()
                    .all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
            {
                let _ = self.store.delete(
                    t,
                    s(o, "/metadata/namespace"),
                    s(o, "/metadata/name"),
                    Propagation::Background,
                    false,
                );
            }
        }
    }

    fn pods_of(&self, owner_uid: &str, ns: &str) -> Vec<Value> {
        self.store
            .objects_of("", "pods")
            .into_iter()
            .filter(|p| s(p, "/metadata/namespace") == ns && owned_by(p, owner_uid))
            .collect()
    }

    /// A pod from a workload's template, owned by `owner`, carrying the workload's steering
    /// annotations.
    fn create_pod(&self, owner: &Value, workload: &Value, name: String, extra_labels: Value) {
        let Some(pod_t) = self.t("", "Pod") else {
            return;
        };
        let ns = s(owner, "/metadata/namespace");
        let template = workload
            .pointer("/spec/template")
            .cloned()
            .unwrap_or(json!({}));
        let mut meta = template.get("metadata").cloned().unwrap_or(json!({}));
        for (k, v) in extra_labels.as_object().into_iter().flatten() {
            meta["labels"][k] = v.clone();
        }
        for key in [READY_AFTER, NEVER_READY, FAIL] {
            if let Some(v) = steer(workload, key) {
                meta["annotations"][key] = json!(v);
            }
        }
        meta["name"] = json!(name);
        meta["ownerReferences"] = json!([owner_ref(owner)]);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": template.get("spec").cloned().unwrap_or(json!({"containers": []})),
        });
        let opts = WriteOptions {
            manager: "kubesim-controller".into(),
            ..Default::default()
        };
        let _ = self.store.create(&pod_t, ns, pod, &opts);
    }

    fn deployment(&mut self, d: &Value) {
        let (Some(rs_t), Some(d_t)) = (self.t("apps", "ReplicaSet"), self.t("apps", "Deployment"))
        else {
            return;
        };
        if d.pointer("/metadata/deletionTimestamp").is_some() {
            return;
        }
        let ns = s(d, "/metadata/namespace");
        let name = s(d, "/metadata/name");
        let uid = s(d, "/metadata/uid").to_string();
        let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
        let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = short_hash(&template);
        let rs_name = format!("{name}-{hash}");
        let started = *self
            .rollout_started
            .entry((uid.clone(), generation))
            .or_insert_with(Instant::now);

        let owned: Vec<Value> = self
            .store
            .objects_of("apps", "replicasets")
            .into_iter()
            .filter(|rs| s(rs, "/metadata/namespace") == ns && owned_by(rs, &uid))
            .collect();
        let revision = owned.len() + 1;
        if !owned.iter().any(|rs| s(rs, "/metadata/name") == rs_name) {
            let mut tpl = template.clone();
            tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            for key in [READY_AFTER, NEVER_READY, FAIL] {
                if let Some(v) = steer(d, key) {
                    tpl["metadata"]["annotations"][key] = json!(v);
                }
            }
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let rs = json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {
                    "name": rs_name, "labels": tpl["metadata"]["labels"],
                    "annotations": {"deployment.kubernetes.io/revision": revision.to_string()},
                    "ownerReferences": [owner_ref(d)],
                },
                "spec": {"replicas": 0, "selector": selector, "template": tpl},
            });
            let opts = WriteOptions {
                manager: "kubesim-controller".into(),
                ..Default::default()
            };
            let _ = self.store.create(&rs_t, ns, rs, &opts);
        }
        let recreate = d["spec"]["strategy"]["type"] == "Recreate";
        let bounds = rollout::Bounds::of(d, replicas);
        // Each ReplicaSet's pods, counted once: they drive both the next step and the status.
        let desired = |rs: &Value| rs["spec"]["replicas"].as_i64().unwrap_or(0);
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
        let old_sets: Vec<(&str, rollout::Set)> = owned
            .iter()
            .filter(|rs| s(rs, "/metadata/name") != rs_name)
            .map(|rs| {
                let pods = self.pods_of(s(rs, "/metadata/uid"), ns);
                (s(rs, "/metadata/name"), pod_counts(desired(rs), &pods))
            })
            .collect();
        let old_pods: i64 = old_sets.iter().map(|(_, set)| set.pods()).sum();
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
            }
        }
        self.store.modify(&rs_t, ns, &rs_name, |o| {
            o["spec"]["replicas"] = json!(new_target)
        });

        let updated = new_set.pods();
        let new_ready = new_set.ready;
        let ready = new_ready + old_sets.iter().map(|(_, set)| set.ready).sum::<i64>();
        let total = updated + old_pods;
        let prev = d.get("status").cloned().unwrap_or(json!({}));
        let complete = updated == replicas && new_ready == replicas && total == replicas;
        let deadline =
            Duration::from_secs(d["spec"]["progressDeadlineSeconds"].as_u64().unwrap_or(600));
        let progressing = if complete {
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
        let Some(rs_t) = self.t("apps", "ReplicaSet") else {
            return;
        };
        let ns = s(rs, "/metadata/namespace");
        let name = s(rs, "/metadata/name");
        let want = rs["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let mut pods = self.pods_of(s(rs, "/metadata/uid"), ns);
        // Scaling down takes pods that are not ready first, as the ReplicaSet controller does.
        pods.sort_by_key(|p| !pod_ready(p));
        if pods.len() < want {
            for _ in pods.len()..want {
                let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
                self.create_pod(rs, rs, format!("{name}-{suffix}"), json!({}));
            }
        } else if let Some(pod_t) = self.t("", "Pod") {
            for p in pods.iter().skip(want) {
                self.store.remove(&pod_t, ns, s(p, "/metadata/name"));
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

    fn stateful_set(&mut self, sts: &Value) {
        let (Some(t), Some(pod_t)) = (self.t("apps", "StatefulSet"), self.t("", "Pod")) else {
            return;
        };
        let ns = s(sts, "/metadata/namespace");
        let name = s(sts, "/metadata/name");
        let want = sts["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let revision = format!("{name}-{}", short_hash(&sts["spec"]["template"]));
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
                self.create_pod(
                    sts,
                    sts,
                    pod_name,
                    json!({"controller-revision-hash": revision}),
                );
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
        });
        self.store.set_status(&t, ns, name, status);
    }

    fn daemon_set(&mut self, ds: &Value) {
        let Some(t) = self.t("apps", "DaemonSet") else {
            return;
        };
        let ns = s(ds, "/metadata/namespace");
        let name = s(ds, "/metadata/name");
        let revision = short_hash(&ds["spec"]["template"]);
        let pods = self.pods_of(s(ds, "/metadata/uid"), ns);
        if let Some(pod_t) = self.t("", "Pod") {
            for p in pods
                .iter()
                .filter(|p| s(p, "/metadata/labels/controller-revision-hash") != revision)
            {
                self.store.remove(&pod_t, ns, s(p, "/metadata/name"));
            }
        }
        if self.pods_of(s(ds, "/metadata/uid"), ns).is_empty() {
            let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
            self.create_pod(
                ds,
                ds,
                format!("{name}-{suffix}"),
                json!({"controller-revision-hash": revision}),
            );
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
        if finished {
            return;
        }
        let pods = self.pods_of(uid, ns);
        if pods.is_empty() {
            let suffix: String = (0..5).map(|_| fastrand::lowercase()).collect();
            self.create_pod(
                job,
                job,
                format!("{name}-{suffix}"),
                json!({"job-name": name}),
            );
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
        });
        if succeeded > 0 {
            status["succeeded"] = json!(succeeded);
            status["completionTime"] = json!(now);
            status["conditions"] = json!([
                set_condition(
                    &prev,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
                set_condition(
                    &prev,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods"
                ),
            ]);
        } else if failed > 0 {
            status["failed"] = json!(failed);
            status["conditions"] = json!([
                set_condition(
                    &prev,
                    "FailureTarget",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"
                ),
                set_condition(
                    &prev,
                    "Failed",
                    "True",
                    "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"
                ),
            ]);
        }
        self.store.set_status(&t, ns, name, status);
    }

    fn pod(&mut self, pod: &Value) {
        let Some(t) = self.t("", "Pod") else {
            return;
        };
        let phase = s(pod, "/status/phase");
        if matches!(phase, "Succeeded" | "Failed") || pod_ready(pod) {
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
        if seen.elapsed() < delay {
            return;
        }
        let batch = pod
            .pointer("/metadata/ownerReferences/0/kind")
            .is_some_and(|k| k == "Job");
        let containers: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| cs.iter().map(|c| s(c, "/name").to_string()).collect())
            .unwrap_or_default();
        let prev = pod.get("status").cloned().unwrap_or(json!({}));
        let status = if annotation(FAIL) == Some("true") {
            json!({"phase": "Failed", "reason": "Error", "conditions": [
                set_condition(&prev, "Ready", "False", "PodFailed", "")]})
        } else if batch {
            json!({"phase": "Succeeded", "conditions": [
                set_condition(&prev, "Ready", "False", "PodCompleted", "")]})
        } else if annotation(NEVER_READY) == Some("true") {
            if phase == "Running" {
                return;
            }
            let statuses: Vec<Value> = containers.iter().map(|c| json!({
                "name": c, "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}},
            })).collect();
            json!({"phase": "Running", "containerStatuses": statuses, "conditions": [
                set_condition(&prev, "Ready", "False", "ContainersNotReady", "containers with unready status")]})
        } else {
            let statuses: Vec<Value> = containers
                .iter()
                .map(|c| json!({"name": c, "ready": true, "started": true, "restartCount": 0, "state": {"running": {}}}))
                .collect();
            json!({"phase": "Running", "podIP": "10.244.0.10", "containerStatuses": statuses,
                "conditions": [set_condition(&prev, "Ready", "True", "", ""),
                               set_condition(&prev, "ContainersReady", "True", "", "")]})
        };
        let ns = s(pod, "/metadata/namespace");
        self.store
            .set_status(&t, ns, s(pod, "/metadata/name"), status);
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
