//! Applying a set of objects as one deployment: checked against the cluster before anything
//! changes, applied in kind order (CustomResourceDefinitions awaited until Established before
//! what uses them), the rollout strategy enforced under a field manager of its own, the
//! previous deployment's leftovers pruned, readiness awaited, and on failure the previous
//! objects put back. Rollback, destroy and plan work from the same inventory.

use std::collections::{BTreeMap, BTreeSet};

use gantry_sdk::host::{self, ApplyOptions, ObjectRef, ReadinessState};
use gantry_sdk::{ChangeAction, Deployment, KubeError, PlannedChange, TaskError};
use serde_json::Value;

use crate::diff;
use crate::key::{Entry, ObjectKey};
use crate::kinds::{Catalog, rank};
use crate::kube::Kube;
use crate::shape::{self, Shaping, Strategy, TASK_LABEL, label_value};
use crate::state::State;
use crate::yaml::Manifest;

/// The field manager that owns a Deployment's rollout strategy, apart from everything else
/// gantry applies, so those fields alone can be forced.
pub const ROLLOUT_MANAGER: &str = "gantry-rollout";
/// Objects with this annotation set to `keep` survive pruning and destroy (Helm's rule).
pub const RESOURCE_POLICY: &str = "helm.sh/resource-policy";

/// How one task deploys.
#[derive(Debug, Clone)]
pub struct Settings {
    pub workflow: String,
    pub task: String,
    /// For namespaced objects that name none.
    pub namespace: String,
    pub create_namespace: bool,
    pub strategy: Strategy,
    pub force_conflicts: bool,
    pub prune: bool,
    pub wait: bool,
    pub timeout_ms: u64,
    /// Put the previous objects back when the new ones do not become ready.
    pub rollback_on_failure: bool,
    /// Delete and re-create an object whose change touches a field the API server will not
    /// change in place (a Job's pod template, a selector), instead of failing.
    pub recreate_on_immutable: bool,
}

/// Objects checked against the cluster and shaped, in apply order.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub objects: Vec<Manifest>,
    pub catalog: Catalog,
}

impl Prepared {
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.objects
            .iter()
            .map(|m| ObjectKey::of(&m.object))
            .collect()
    }
}

/// What a deploy applied: inventory entries and the objects for the recorded state.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    pub inventory: Vec<String>,
    pub objects: Vec<Value>,
}

impl Applied {
    pub fn deployment(
        &self,
        outputs: Vec<gantry_sdk::Output>,
        extra: Value,
    ) -> Result<Deployment, TaskError> {
        let state = State {
            objects: self.objects.clone(),
            extra,
        }
        .encode()
        .map_err(TaskError::Internal)?;
        Ok(Deployment {
            outputs,
            inventory: self.inventory.clone(),
            state: Some(state),
        })
    }
}

fn internal(e: impl std::fmt::Display) -> TaskError {
    TaskError::Internal(e.to_string())
}

fn api_version(o: &Value) -> &str {
    o["apiVersion"].as_str().unwrap_or_default()
}

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or_default()
}

pub fn object_ref(o: &Value) -> ObjectRef {
    ObjectKey::of(o).object_ref(api_version(o))
}

/// The discovery catalogue, plus the kinds CRDs among `objects` define.
pub fn catalog(kube: &dyn Kube, objects: &[Manifest]) -> Result<Catalog, TaskError> {
    let mut catalog = Catalog::from_discovery(&kube.api_resources()?);
    catalog.add_definitions(objects.iter().map(|m| &m.object));
    Ok(catalog)
}

/// Checks every object against the catalogue (one error listing each unknown kind with its
/// file and line), fills in namespaces, labels and strategies, refuses duplicates and sorts
/// into apply order. Nothing is applied.
pub fn prepare(
    mut objects: Vec<Manifest>,
    catalog: Catalog,
    s: &Settings,
) -> Result<Prepared, TaskError> {
    let mut unknown = Vec::new();
    for m in &objects {
        let (v, k) = (api_version(&m.object), kind(&m.object));
        if !catalog.knows(v, k) {
            let served = catalog.versions(v, k);
            let hint = if served.is_empty() {
                " (is its CustomResourceDefinition installed?)".to_string()
            } else {
                format!(" (it serves {k} as {})", served.join(", "))
            };
            unknown.push(format!(
                "{}: the cluster does not serve {k} in {v}{hint}",
                m.origin
            ));
        }
    }
    if !unknown.is_empty() {
        return Err(TaskError::InvalidConfig(format!(
            "nothing was applied: {}",
            unknown.join("; ")
        )));
    }
    let notes = shape::shape(
        &mut objects,
        &catalog,
        &Shaping {
            namespace: &s.namespace,
            workflow: &s.workflow,
            task: &s.task,
            strategy: &s.strategy,
        },
    );
    for note in notes {
        host::warn(&note);
    }
    let mut seen: BTreeMap<ObjectKey, String> = BTreeMap::new();
    for m in &objects {
        let key = ObjectKey::of(&m.object);
        if let Some(first) = seen.insert(key.clone(), m.origin.to_string()) {
            return Err(TaskError::InvalidConfig(format!(
                "{}: {} is defined twice (first at {first})",
                m.origin,
                key.describe()
            )));
        }
    }
    objects.sort_by_key(|m| rank(kind(&m.object)));
    Ok(Prepared { objects, catalog })
}

/// The API server refused a change to a field it does not change in place.
fn immutable(e: &TaskError) -> bool {
    matches!(e, TaskError::Kube(k) if k.status == 422 && k.message.contains("field is immutable"))
}

/// Adds the way out to an immutable-field refusal.
fn explain_immutable(e: TaskError, what: &str) -> TaskError {
    match e {
        TaskError::Kube(mut k) => {
            k.message = format!(
                "{}; {what} cannot be changed in place: delete it first, or set recreate_on_immutable = true for gantry to delete and re-create it",
                k.message
            );
            TaskError::Kube(k)
        }
        other => other,
    }
}

/// Deletes an object and applies it anew, waiting out its deletion (a few seconds at most).
fn recreate(kube: &dyn Kube, object: &Value, force: bool) -> Result<String, TaskError> {
    /// Attempts to apply again while the old object is still going away.
    const ATTEMPTS: u32 = 50;
    let target = object_ref(object);
    kube.delete(&target)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let gone = kube.get(&target)?.is_none();
        if gone {
            match apply_object(kube, object, false, force, false) {
                Err(TaskError::Kube(k)) if k.status == 409 && attempt < ATTEMPTS => {}
                other => return other,
            }
        } else if attempt >= ATTEMPTS {
            return Err(TaskError::TimedOut(format!(
                "{} {} was deleted to be re-created but is still there",
                kind(object),
                target.name
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Adds to a conflict the way out, so the operator need not look it up.
fn explain_conflict(e: TaskError) -> TaskError {
    match e {
        TaskError::Kube(mut k) if k.status == 409 && k.reason == "Conflict" => {
            k.message = format!(
                "{}; another field manager owns these fields: set force_conflicts = true to take them over",
                k.message
            );
            TaskError::Kube(k)
        }
        other => other,
    }
}

/// Applies one object. For a Deployment that exists, its strategy goes first under
/// [`ROLLOUT_MANAGER`] with force, taking just those fields from whoever set them (a
/// manifest's earlier values, `kubectl patch`); the main apply then agrees with it.
pub fn apply_object(
    kube: &dyn Kube,
    object: &Value,
    exists: bool,
    force: bool,
    dry_run: bool,
) -> Result<String, TaskError> {
    let text = serde_json::to_string(object).map_err(internal)?;
    let patch = shape::strategy_patch(object);
    let rollout = |patch: &Value| -> Result<String, TaskError> {
        kube.apply(
            &patch.to_string(),
            &ApplyOptions {
                dry_run,
                force: true,
                field_manager: Some(ROLLOUT_MANAGER.into()),
            },
        )
    };
    let mut after = None;
    if exists && let Some(p) = &patch {
        if p.pointer("/spec/strategy/type") == Some(&Value::from("Recreate")) {
            // Recreate forbids `rollingUpdate`, which both managers may own from earlier
            // deploys: the rollout manager lets go of the strategy first, the main apply
            // (without `rollingUpdate`) then removes it, and the rollout manager takes the
            // strategy back last.
            let mut release = p.clone();
            if let Some(spec) = release.as_object_mut() {
                spec.remove("spec");
            }
            kube.apply(
                &release.to_string(),
                &ApplyOptions {
                    dry_run,
                    force: false,
                    field_manager: Some(ROLLOUT_MANAGER.into()),
                },
            )?;
            after = Some(p.clone());
        } else {
            rollout(p)?;
        }
    }
    let applied = kube
        .apply(
            &text,
            &ApplyOptions {
                dry_run,
                force,
                field_manager: None,
            },
        )
        .map_err(explain_conflict)?;
    if let Some(p) = after {
        return rollout(&p);
    }
    Ok(applied)
}

/// Waits for readiness; a failure or a timeout is an error naming every object concerned.
pub fn wait(kube: &dyn Kube, targets: &[ObjectRef], timeout_ms: u64) -> Result<(), TaskError> {
    if targets.is_empty() {
        return Ok(());
    }
    host::info(&format!(
        "waiting up to {} s for {} objects to become ready",
        timeout_ms / 1000,
        targets.len()
    ));
    let states = kube.wait_ready(targets, timeout_ms)?;
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    for s in &states {
        let ns = s
            .target
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        let what = format!("{} {ns}{}", s.target.kind, s.target.name);
        match &s.state {
            ReadinessState::Ready => {}
            ReadinessState::Failed(m) => failed.push(format!("{what}: {m}")),
            ReadinessState::Progressing(m) => waiting.push(format!("{what}: {m}")),
        }
    }
    if !failed.is_empty() {
        return Err(TaskError::Kube(KubeError {
            status: 0,
            reason: "NotReady".into(),
            message: format!("failed: {}", failed.join("; ")),
        }));
    }
    if waiting.is_empty() {
        host::info("all objects are ready");
        return Ok(());
    }
    Err(TaskError::TimedOut(format!(
        "not ready after {} s: {}",
        timeout_ms / 1000,
        waiting.join("; ")
    )))
}

/// Creates `name` when it is missing; it is not part of the inventory, so it is never pruned.
pub fn ensure_namespace(kube: &dyn Kube, name: &str) -> Result<(), TaskError> {
    let target = ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: name.into(),
    };
    if kube.get(&target)?.is_none() {
        let ns = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        kube.apply(
            &ns.to_string(),
            &ApplyOptions {
                dry_run: false,
                force: false,
                field_manager: None,
            },
        )?;
        host::info(&format!("created namespace {name}"));
    }
    Ok(())
}

/// The previous deployment's inventory and recorded objects.
pub struct Previous {
    pub entries: Vec<Entry>,
    pub state: State,
}

impl Previous {
    pub fn read(d: Option<&Deployment>) -> Result<Previous, TaskError> {
        let Some(d) = d else {
            return Ok(Previous {
                entries: Vec::new(),
                state: State::default(),
            });
        };
        let mut entries = Vec::new();
        for id in &d.inventory {
            match ObjectKey::parse(id) {
                Some(e) => entries.push(e),
                None => host::warn(&format!("ignoring malformed inventory entry {id:?}")),
            }
        }
        let state = match &d.state {
            Some(text) => State::decode(text).map_err(TaskError::Internal)?,
            None => State::default(),
        };
        Ok(Previous { entries, state })
    }

    /// The API version each recorded object was applied with, by identity.
    fn versions(&self) -> BTreeMap<ObjectKey, String> {
        let mut out: BTreeMap<ObjectKey, String> = self
            .entries
            .iter()
            .filter_map(|e| Some((e.key.clone(), e.api_version.clone()?)))
            .collect();
        for o in &self.state.objects {
            out.insert(ObjectKey::of(o), api_version(o).to_string());
        }
        out
    }

    pub fn keys(&self) -> BTreeSet<ObjectKey> {
        self.entries.iter().map(|e| e.key.clone()).collect()
    }
}

/// Deletes inventory entries in reverse apply order, skipping objects another task took
/// over and those marked `helm.sh/resource-policy: keep`.
pub fn delete_keys(
    kube: &dyn Kube,
    catalog: &Catalog,
    keys: &[ObjectKey],
    versions: &BTreeMap<ObjectKey, String>,
    task: &str,
    verb: &str,
) -> Result<(), TaskError> {
    let mut keys: Vec<&ObjectKey> = keys.iter().collect();
    keys.sort_by_key(|k| std::cmp::Reverse(rank(&k.kind)));
    for key in keys {
        let wanted = versions.get(key).map(String::as_str);
        let Some(version) = catalog.version_for(&key.group, &key.kind, wanted) else {
            host::warn(&format!(
                "not deleting {key}: the cluster no longer serves {} in group {:?}",
                key.kind, key.group
            ));
            continue;
        };
        let target = key.object_ref(&version);
        let Some(live) = kube.get(&target)? else {
            continue;
        };
        let live: Value = serde_json::from_str(&live).map_err(internal)?;
        let owner = live["metadata"]["labels"][TASK_LABEL].as_str();
        if owner != Some(label_value(task).as_str()) {
            host::warn(&format!(
                "not deleting {key}: it now belongs to {}",
                owner.unwrap_or("nobody")
            ));
            continue;
        }
        if live["metadata"]["annotations"][RESOURCE_POLICY] == "keep" {
            host::info(&format!(
                "kept {key}: it is annotated {RESOURCE_POLICY}: keep"
            ));
            continue;
        }
        if kube.delete(&target)? {
            host::info(&format!("{verb} {key}"));
        }
    }
    Ok(())
}

/// Applies the prepared objects, prunes what the previous deployment had and this one does
/// not, and waits for readiness. When readiness fails and `rollback_on_failure` is set, the
/// previous objects are applied again and objects this deploy created are removed, so the
/// cluster is left as it was; objects that existed before are never deleted.
pub fn deploy(
    kube: &dyn Kube,
    prepared: &Prepared,
    previous: Option<&Deployment>,
    s: &Settings,
) -> Result<Applied, TaskError> {
    let prev = Previous::read(previous)?;
    if s.create_namespace {
        ensure_namespace(kube, &s.namespace)?;
    }
    let mut existed = BTreeSet::new();
    for m in &prepared.objects {
        let key = ObjectKey::of(&m.object);
        if prepared.catalog.served(&key.group, &key.kind)
            && kube.get(&object_ref(&m.object))?.is_some()
        {
            existed.insert(key);
        }
    }
    let result = apply_and_wait(kube, prepared, &prev, &existed, s);
    match result {
        Ok(applied) => Ok(applied),
        Err(e)
            if s.rollback_on_failure
                && matches!(e, TaskError::TimedOut(_) | TaskError::Kube(_)) =>
        {
            host::warn(&format!(
                "the deploy failed ({}); restoring the previous objects",
                describe_error(&e)
            ));
            let created: Vec<ObjectKey> = prepared
                .keys()
                .into_iter()
                .filter(|k| !existed.contains(k) && !prev.keys().contains(k))
                .collect();
            match restore(kube, &prepared.catalog, &prev, &created, s, false) {
                Ok(()) => Err(append(e, "; the previous objects were restored")),
                Err(r) => Err(append(
                    e,
                    &format!(
                        "; restoring the previous objects failed too: {}",
                        describe_error(&r)
                    ),
                )),
            }
        }
        Err(e) => Err(e),
    }
}

fn describe_error(e: &TaskError) -> String {
    match e {
        TaskError::InvalidConfig(m)
        | TaskError::CapabilityDenied(m)
        | TaskError::TimedOut(m)
        | TaskError::Internal(m) => m.clone(),
        TaskError::Kube(k) => k.message.clone(),
        TaskError::ToolFailed(t) => format!("{} failed: {}", t.program, t.stderr_tail),
        TaskError::Cancelled => "cancelled".into(),
    }
}

fn append(e: TaskError, more: &str) -> TaskError {
    match e {
        TaskError::TimedOut(m) => TaskError::TimedOut(m + more),
        TaskError::Kube(mut k) => {
            k.message.push_str(more);
            TaskError::Kube(k)
        }
        other => other,
    }
}

fn apply_and_wait(
    kube: &dyn Kube,
    prepared: &Prepared,
    prev: &Previous,
    existed: &BTreeSet<ObjectKey>,
    s: &Settings,
) -> Result<Applied, TaskError> {
    let mut applied = Applied::default();
    let mut definitions = Vec::new();
    let mut waited_definitions = false;
    for m in &prepared.objects {
        let k = kind(&m.object);
        if rank(k) > rank("CustomResourceDefinition") && !waited_definitions {
            waited_definitions = true;
            // Custom resources can only be applied once their definitions are established.
            wait(kube, &definitions, s.timeout_ms)?;
        }
        let key = ObjectKey::of(&m.object);
        let exists = existed.contains(&key);
        match apply_object(kube, &m.object, exists, s.force_conflicts, false) {
            Err(e) if immutable(&e) && s.recreate_on_immutable => {
                host::warn(&format!(
                    "{}: a field that cannot change in place changed; deleting and re-creating it (recreate_on_immutable = true)",
                    key.describe()
                ));
                recreate(kube, &m.object, s.force_conflicts)?;
            }
            Err(e) if immutable(&e) => return Err(explain_immutable(e, &key.describe())),
            other => {
                other?;
            }
        }
        host::log(
            host::Level::Info,
            &format!("applied {}", key.describe()),
            &[
                ("object", &key.to_string()),
                ("from", &m.origin.to_string()),
            ],
        );
        if k == "CustomResourceDefinition" {
            definitions.push(object_ref(&m.object));
        }
        applied.inventory.push(key.to_string());
        applied.objects.push(m.object.clone());
    }
    if !waited_definitions {
        wait(kube, &definitions, s.timeout_ms)?;
    }
    if s.prune {
        let now: BTreeSet<ObjectKey> = prepared.keys().into_iter().collect();
        let gone: Vec<ObjectKey> = prev
            .keys()
            .into_iter()
            .filter(|k| !now.contains(k))
            .collect();
        delete_keys(
            kube,
            &prepared.catalog,
            &gone,
            &prev.versions(),
            &s.task,
            "pruned",
        )?;
    }
    if s.wait {
        let targets: Vec<ObjectRef> = prepared
            .objects
            .iter()
            .map(|m| object_ref(&m.object))
            .collect();
        wait(kube, &targets, s.timeout_ms)?;
    }
    Ok(applied)
}

/// Applies the previous deployment's objects again (taking their fields back) and removes
/// `remove`, newest kinds first.
fn restore(
    kube: &dyn Kube,
    catalog: &Catalog,
    prev: &Previous,
    remove: &[ObjectKey],
    s: &Settings,
    wait_after: bool,
) -> Result<(), TaskError> {
    let mut objects = prev.state.objects.clone();
    objects.sort_by_key(|o| rank(kind(o)));
    if !objects.is_empty() {
        host::info(&format!(
            "re-applying the {} objects of the previous deployment",
            objects.len()
        ));
    }
    for o in &objects {
        apply_object(kube, o, true, true, false)?;
    }
    delete_keys(kube, catalog, remove, &BTreeMap::new(), &s.task, "removed")?;
    if wait_after && !objects.is_empty() {
        let targets: Vec<ObjectRef> = objects.iter().map(object_ref).collect();
        wait(kube, &targets, s.timeout_ms)?;
    }
    Ok(())
}

/// Rolls a task back to `previous`: its objects applied again, the objects of `current` it
/// did not have removed. With no previous deployment, everything of `current` is removed.
pub fn rollback(
    kube: &dyn Kube,
    current: &[ObjectKey],
    previous: Option<&Deployment>,
    s: &Settings,
) -> Result<(), TaskError> {
    let prev = Previous::read(previous)?;
    if prev.state.objects.is_empty() {
        host::info("no earlier deployment: rolling back removes what this run applied");
    }
    let catalog = Catalog::from_discovery(&kube.api_resources()?);
    let keep = prev.keys();
    let added: Vec<ObjectKey> = current
        .iter()
        .filter(|k| !keep.contains(k))
        .cloned()
        .collect();
    restore(kube, &catalog, &prev, &added, s, s.wait)
}

/// Deletes everything the previous deployment recorded, in reverse apply order.
pub fn destroy(
    kube: &dyn Kube,
    previous: Option<&Deployment>,
    task: &str,
) -> Result<(), TaskError> {
    let prev = Previous::read(previous)?;
    let catalog = Catalog::from_discovery(&kube.api_resources()?);
    let keys: Vec<ObjectKey> = prev.entries.iter().map(|e| e.key.clone()).collect();
    delete_keys(kube, &catalog, &keys, &prev.versions(), task, "deleted")
}

/// What a deploy would change, object by object, from server-side dry runs; nothing changes.
pub fn plan(
    kube: &dyn Kube,
    prepared: &Prepared,
    previous: Option<&Deployment>,
    s: &Settings,
) -> Result<Vec<PlannedChange>, TaskError> {
    let prev = Previous::read(previous)?;
    let mut changes = Vec::new();
    let mut new_namespaces = BTreeSet::new();
    if s.create_namespace {
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: s.namespace.clone(),
        };
        if kube.get(&target)?.is_none() {
            new_namespaces.insert(s.namespace.clone());
        }
    }
    for m in &prepared.objects {
        let key = ObjectKey::of(&m.object);
        let mut after_yaml = m.object.clone();
        diff::mask_secret(&mut after_yaml, None);
        let create = |detail: &str| PlannedChange {
            action: ChangeAction::Create,
            target: key.to_string(),
            detail: detail.to_string(),
            before: None,
            after: Some(diff::to_yaml(&after_yaml)),
        };
        if !prepared.catalog.served(&key.group, &key.kind) {
            changes.push(create(
                "its CustomResourceDefinition is created by this deploy",
            ));
            continue;
        }
        if key
            .namespace
            .as_ref()
            .is_some_and(|ns| new_namespaces.contains(ns))
        {
            changes.push(create(""));
            continue;
        }
        let Some(live) = kube.get(&object_ref(&m.object))? else {
            if key.kind == "Namespace" {
                new_namespaces.insert(key.name.clone());
            }
            changes.push(create(""));
            continue;
        };
        let live: Value = serde_json::from_str(&live).map_err(internal)?;
        let force = s.force_conflicts || shape::strategy_patch(&m.object).is_some();
        let dry = match apply_object(kube, &m.object, true, force, true) {
            Ok(text) => serde_json::from_str::<Value>(&text).map_err(internal)?,
            Err(TaskError::Kube(k)) if k.status == 409 => {
                changes.push(PlannedChange {
                    action: ChangeAction::Update,
                    target: key.to_string(),
                    detail: format!("would conflict: {}", k.message),
                    before: None,
                    after: None,
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let (mut before, mut after) = (diff::strip(live), diff::strip(dry));
        let fields = diff::changed_fields(&before, &after);
        let reapplied = prev
            .versions()
            .get(&key)
            .is_some_and(|v| v != api_version(&m.object));
        diff::mask_secret(&mut after, Some(&before));
        diff::mask_secret(&mut before, None);
        let (action, mut detail) = if fields.is_empty() {
            (ChangeAction::Unchanged, String::new())
        } else {
            (ChangeAction::Update, fields.join(", "))
        };
        if reapplied {
            let note = format!("now applied as {}", api_version(&m.object));
            detail = if detail.is_empty() {
                note
            } else {
                format!("{detail}; {note}")
            };
        }
        changes.push(PlannedChange {
            action,
            target: key.to_string(),
            detail,
            before: Some(diff::to_yaml(&before)),
            after: Some(diff::to_yaml(&after)),
        });
    }
    if s.prune {
        let now: BTreeSet<ObjectKey> = prepared.keys().into_iter().collect();
        let mut gone: Vec<ObjectKey> = prev
            .keys()
            .into_iter()
            .filter(|k| !now.contains(k))
            .collect();
        gone.sort_by_key(|k| std::cmp::Reverse(rank(&k.kind)));
        for key in gone {
            changes.push(PlannedChange {
                action: ChangeAction::Delete,
                target: key.to_string(),
                detail: "pruned: no longer part of the task".into(),
                before: None,
                after: None,
            });
        }
    }
    Ok(changes)
}
