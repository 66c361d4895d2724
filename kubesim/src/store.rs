//! The object store: every write goes through here, so resourceVersions, generations, field
//! ownership, finalizers, owner references and the watch history stay consistent.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Map, Value, json};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::defaults;
use crate::error::ApiError;
use crate::fields::{self, FieldSet};
use crate::resources::{Registry, ResourceType};
use crate::schema::{self, FieldValidation};
use crate::selector::Selector;
use crate::validation::{self, FieldError};

/// How many past events a watch can resume from.
const HISTORY: usize = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct WatchEvent {
    pub rv: u64,
    pub storage: (String, String),
    pub namespace: String,
    pub kind: EventType,
    pub object: Value,
    /// The object before a modification, so a filtered watch can tell an object that
    /// started or stopped matching its selector.
    pub previous: Option<Value>,
}

/// How a write was asked for.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub manager: String,
    pub force: bool,
    /// `Some("status")` for writes to the status subresource.
    pub subresource: Option<String>,
    /// What to do with fields the type does not have.
    pub validation: FieldValidation,
    /// Warnings for the client (`Warning` headers), filled in by the write.
    pub warnings: Arc<Mutex<Vec<String>>>,
}

impl WriteOptions {
    fn warn(&self, text: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(text);
    }
}

/// The decoder's part of a write: the object checked against its kind's schema, unknown
/// fields dropped (and refused or reported, as `fieldValidation` says), wrong types refused
/// as the API server's decoder refuses them. Returns the missing required fields.
fn decode_check(
    t: &ResourceType,
    obj: &mut Value,
    opts: &WriteOptions,
) -> Result<Vec<FieldError>, ApiError> {
    let found = match (schema::schemas().and_then(|s| s.check(t, obj)), &t.schema) {
        (Some(found), _) => found,
        (None, Some(structural)) => custom_resource_check(structural, obj),
        (None, None) => return Ok(Vec::new()),
    };
    let cannot = |why: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{v}\" cannot be handled as a {kind}: {why}",
            kind = t.kind,
            v = t.version
        ))
    };
    if let Some(e) = found.type_error {
        return Err(cannot(e));
    }
    if !found.unknown.is_empty() {
        match opts.validation {
            FieldValidation::Strict => {
                let list: Vec<String> = found
                    .unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(cannot(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
            FieldValidation::Warn => {
                for f in &found.unknown {
                    opts.warn(format!("unknown field \"{f}\""));
                }
            }
            FieldValidation::Ignore => {}
        }
    }
    Ok(found.required)
}

/// A custom resource through its CustomResourceDefinition's structural schema, in the
/// decoder's terms: unknown metadata fields first, then the pruned ones; the schema
/// validator's errors join the required-field errors of the 422.
fn custom_resource_check(structural: &Value, obj: &mut Value) -> schema::Findings {
    let mut unknown = schema::schemas()
        .map(|s| s.unknown_metadata(obj))
        .unwrap_or_default();
    let found = crate::structural::check(structural, obj);
    unknown.extend(found.unknown);
    schema::Findings {
        unknown,
        type_error: None,
        required: found.errors,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Strategic,
    Json,
    Apply,
}

type Objects = BTreeMap<(String, String), BTreeMap<(String, String), Value>>;

struct State {
    registry: Registry,
    objects: Objects,
    rv: u64,
    history: VecDeque<Arc<WatchEvent>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    /// Every committed change, in order and without loss, for the controllers.
    subscribers: Vec<mpsc::UnboundedSender<Arc<WatchEvent>>>,
}

/// The simulator's whole cluster state.
pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    /// Woken on every write so controllers react at once.
    pub changed: Notify,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        let store = Store {
            state: Mutex::new(State {
                registry: Registry::default(),
                objects: BTreeMap::new(),
                rv: 1,
                history: VecDeque::new(),
                events: events.clone(),
                subscribers: Vec::new(),
            }),
            events,
            changed: Notify::new(),
        };
        let ns = store.registry().by_kind("", "v1", "Namespace").cloned();
        if let Some(ns) = ns {
            for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                let obj =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                let _ = store.create(&ns, "", obj, &WriteOptions::default());
            }
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a simulator bug; keep serving what is there.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, t: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        let st = self.lock();
        st.objects
            .get(&t.storage_key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .map(|o| as_version(o, t))
            .ok_or_else(|| ApiError::not_found(t, name))
    }

    /// Objects of a type, in one namespace or all, and the resourceVersion of the list.
    pub fn list(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> (Vec<Value>, u64) {
        let st = self.lock();
        (st.list(t, ns, labels, fields), st.rv)
    }

    /// The current objects (when asked for), the resourceVersion they are at, and the live
    /// events after it, taken together so no event is missed or seen twice.
    pub fn watch_start(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        with_items: bool,
    ) -> (Vec<Value>, u64, broadcast::Receiver<Arc<WatchEvent>>) {
        let st = self.lock();
        let items = if with_items {
            st.list(t, ns, labels, fields)
        } else {
            Vec::new()
        };
        (items, st.rv, self.events.subscribe())
    }

    /// Past events after `rv`, or None when they have left the history (410 Gone).
    pub fn history_since(&self, rv: u64) -> Option<Vec<Arc<WatchEvent>>> {
        let st = self.lock();
        // The history is contiguous: a gap before its first event means events were dropped.
        if let Some(first) = st.history.front()
            && first.rv > rv + 1
        {
            return None;
        }
        Some(st.history.iter().filter(|e| e.rv > rv).cloned().collect())
    }

    pub fn create(
        &self,
        t: &ResourceType,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let created = st.create(t, ns, obj, opts, None)?;
        drop(st);
        self.after_write(opts);
        Ok(created)
    }

    /// PUT: replaces the object (or its status), honouring a resourceVersion precondition.
    pub fn update(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        obj: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let old = st.existing(t, ns, name)?;
        check_precondition(t, name, &old, &obj)?;
        let new = if opts.subresource.as_deref() == Some("status") {
            let mut n = old.clone();
            n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
            n
        } else {
            obj
        };
        let out = st.commit_update(t, ns, name, &old, new, opts, None)?;
        drop(st);
        self.after_write(opts);
        Ok(out)
    }

    /// PATCH in any of the four patch types. Server-side apply creates what is missing.
    pub fn patch(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        kind: PatchType,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let out = match kind {
            PatchType::Apply => st.apply(t, ns, name, body, opts),
            _ => {
                let old = st.existing(t, ns, name)?;
                let mut new = old.clone();
                match kind {
                    PatchType::Merge => crate::patch::merge_patch(&mut new, &body),
                    PatchType::Strategic => crate::patch::strategic_merge_patch(&mut new, &body)
                        .map_err(ApiError::bad_request)?,
                    _ => crate::patch::json_patch(&mut new, &body).map_err(|e| {
                        ApiError::new(422, "Invalid", format!("the JSON patch failed: {e}"))
                    })?,
                }
                check_precondition(t, name, &old, &new)?;
                if opts.subresource.as_deref() == Some("status") {
                    let status = new.get("status").cloned().unwrap_or(Value::Null);
                    new = old.clone();
                    new["status"] = status;
                }
                st.commit_update(t, ns, name, &old, new, opts, None)
            }
        }?;
        drop(st);
        self.after_write(opts);
        Ok(out)
    }

    pub fn delete(
        &self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Propagation,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let out = st.delete(t, ns, name, propagation, dry_run)?;
        drop(st);
        if !dry_run {
            self.after_write(&WriteOptions::default());
        }
        Ok(out)
    }

    /// Runs `f` over every stored object of one kind, for controllers.
    pub fn objects_of(&self, group: &str, plural: &str) -> Vec<Value> {
        let st = self.lock();
        st.objects
            .get(&(group.to_string(), plural.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every change committed from now on, in resourceVersion order, none dropped: what the
    /// controllers react to instead of re-reading the store.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<Arc<WatchEvent>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().subscribers.push(tx);
        rx
    }

    /// One stored object by its storage key (group and plural), namespace and name.
    pub fn object(&self, group: &str, plural: &str, ns: &str, name: &str) -> Option<Value> {
        let st = self.lock();
        st.objects
            .get(&(group.to_string(), plural.to_string()))
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
    }

    /// The objects of one kind in one namespace, read from that namespace's range only.
    pub fn in_namespace(&self, group: &str, plural: &str, ns: &str) -> Vec<Value> {
        let st = self.lock();
        let Some(m) = st.objects.get(&(group.to_string(), plural.to_string())) else {
            return Vec::new();
        };
        m.range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// The objects of one kind in one namespace that name `owner_uid` among their owners.
    pub fn owned_by(&self, group: &str, plural: &str, ns: &str, owner_uid: &str) -> Vec<Value> {
        let st = self.lock();
        let Some(m) = st.objects.get(&(group.to_string(), plural.to_string())) else {
            return Vec::new();
        };
        m.range((ns.to_string(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .filter(|(_, o)| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Every namespaced object in `ns`, by type and name, for namespace termination.
    pub fn namespace_contents(&self, ns: &str) -> Vec<(ResourceType, String)> {
        let st = self.lock();
        st.typed()
            .filter(|(t, n, _, _)| t.namespaced && *n == ns)
            .map(|(t, _, name, _)| (t.clone(), name.to_string()))
            .collect()
    }

    /// Every stored object, for the garbage collector.
    pub fn all_objects(&self) -> Vec<(ResourceType, Value)> {
        let st = self.lock();
        st.typed()
            .map(|(t, _, _, o)| (t.clone(), o.clone()))
            .collect()
    }

    /// A controller's write of an object's status; nothing happens when it is unchanged.
    pub fn set_status(&self, t: &ResourceType, ns: &str, name: &str, status: Value) {
        let opts = WriteOptions {
            manager: "kubesim-controller".to_string(),
            subresource: Some("status".to_string()),
            ..Default::default()
        };
        let mut st = self.lock();
        let Ok(old) = st.existing(t, ns, name) else {
            return;
        };
        if old.get("status") == Some(&status) {
            return;
        }
        let mut new = old.clone();
        new["status"] = status;
        let done = st
            .commit_update(t, ns, name, &old, new, &opts, None)
            .is_ok();
        drop(st);
        if done {
            self.after_write(&opts);
        }
    }

    /// A controller's change to an object's spec or metadata (scaling a ReplicaSet, removing
    /// a finalizer).
    pub fn modify(&self, t: &ResourceType, ns: &str, name: &str, f: impl FnOnce(&mut Value)) {
        let opts = WriteOptions {
            manager: "kubesim-controller".to_string(),
            ..Default::default()
        };
        let mut st = self.lock();
        let Ok(old) = st.existing(t, ns, name) else {
            return;
        };
        let mut new = old.clone();
        f(&mut new);
        if new == old {
            return;
        }
        let done = st
            .commit_update(t, ns, name, &old, new, &opts, None)
            .is_ok();
        drop(st);
        if done {
            self.after_write(&opts);
        }
    }

    /// Removes an object at once, as a controller finishing a deletion does.
    pub fn remove(&self, t: &ResourceType, ns: &str, name: &str) {
        let mut st = self.lock();
        if st.existing(t, ns, name).is_ok() {
            st.remove(t, ns, name);
        }
        drop(st);
        self.changed.notify_one();
    }

    fn after_write(&self, opts: &WriteOptions) {
        if !opts.dry_run {
            self.changed.notify_one();
        }
    }
}

fn check_precondition(
    t: &ResourceType,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let want = new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    let have = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    match want {
        Some(w) if !w.is_empty() && Some(w) != have => Err(ApiError::conflict(t, name)),
        _ => Ok(()),
    }
}

/// The object as it reads at the version asked for (objects are stored once per group).
fn as_version(o: &Value, t: &ResourceType) -> Value {
    let mut o = o.clone();
    o["apiVersion"] = Value::String(t.api_version());
    o
}

/// Metadata the server owns; clients' values for these are ignored.
const SYSTEM_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of an object field managers own: no server-owned metadata, no apiVersion/kind.
fn owned_view(o: &Value) -> Value {
    let mut v = o.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(md)) = m.get_mut("metadata") {
            for k in SYSTEM_METADATA.iter().chain(&["name", "namespace"]) {
                md.remove(*k);
            }
            if md.is_empty() {
                m.remove("metadata");
            }
        }
    }
    v
}

/// Content whose change bumps `metadata.generation`: everything but metadata and status.
fn spec_view(o: &Value) -> Value {
    let mut v = o.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn new_uid() -> String {
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u16(..),
        fastrand::u64(..) & 0xffff_ffff_ffff
    )
}

/// One manager's entry in `metadata.managedFields`.
struct Manager {
    name: String,
    operation: String,
    subresource: Option<String>,
    fields: FieldSet,
    api_version: String,
    time: String,
}

fn read_managers(o: &Value) -> Vec<Manager> {
    o.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| Manager {
                    name: e["manager"].as_str().unwrap_or_default().to_string(),
                    operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                    subresource: e["subresource"].as_str().map(str::to_string),
                    fields: fields::from_fields_v1(&e["fieldsV1"]),
                    api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                    time: e["time"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write_managers(o: &mut Value, managers: Vec<Manager>) {
    let entries: Vec<Value> = managers
        .into_iter()
        .filter(|m| !m.fields.is_empty())
        .map(|m| {
            let mut e = json!({
                "manager": m.name,
                "operation": m.operation,
                "apiVersion": m.api_version,
                "time": m.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields::to_fields_v1(&m.fields),
            });
            if let Some(s) = m.subresource {
                e["subresource"] = Value::String(s);
            }
            e
        })
        .collect();
    o["metadata"]["managedFields"] = Value::Array(entries);
}

/// Gives `changed` fields to an Update manager, taking them from whoever held them.
fn record_update(managers: &mut Vec<Manager>, opts: &WriteOptions, changed: FieldSet, api: &str) {
    if changed.is_empty() {
        return;
    }
    let name = if opts.manager.is_empty() {
        "unknown".to_string()
    } else {
        opts.manager.clone()
    };
    for m in managers.iter_mut() {
        m.fields.retain(|p| !changed.contains(p));
    }
    match managers
        .iter_mut()
        .find(|m| m.name == name && m.operation == "Update" && m.subresource == opts.subresource)
    {
        Some(m) => {
            m.fields.extend(changed);
            m.time = now();
        }
        None => managers.push(Manager {
            name,
            operation: "Update".to_string(),
            subresource: opts.subresource.clone(),
            fields: changed,
            api_version: api.to_string(),
            time: now(),
        }),
    }
}

impl State {
    fn list(
        &self,
        t: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Vec<Value> {
        self.objects
            .get(&t.storage_key())
            .map(|m| {
                m.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .filter(|(_, o)| labels.matches(o) && fields.matches(o))
                    .map(|(_, o)| as_version(o, t))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn existing(&self, t: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects
            .get(&t.storage_key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(t, name))
    }

    fn namespace_usable(&self, ns: &str) -> Result<(), ApiError> {
        let key = (String::new(), "namespaces".to_string());
        let Some(obj) = self
            .objects
            .get(&key)
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
        else {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!("namespaces \"{ns}\" not found"),
            ));
        };
        if obj.pointer("/metadata/deletionTimestamp").is_some() {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            ));
        }
        Ok(())
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(
        &mut self,
        t: &ResourceType,
        ns: &str,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let ev = Arc::new(WatchEvent {
            rv: self.rv,
            storage: t.storage_key(),
            namespace: ns.to_string(),
            kind,
            object,
            previous,
        });
        self.history.push_back(ev.clone());
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        // Sent under the lock, so watchers see events in resourceVersion order.
        self.subscribers.retain(|s| s.send(ev.clone()).is_ok());
        let _ = self.events.send(ev);
    }

    fn create(
        &mut self,
        t: &ResourceType,
        ns: &str,
        obj: Value,
        opts: &WriteOptions,
        managers: Option<Vec<Manager>>,
    ) -> Result<Value, ApiError> {
        let Value::Object(_) = obj else {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        let mut obj = obj;
        let required = decode_check(t, &mut obj, opts)?;
        let name_in_body = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = if name_in_body.is_empty() {
            match obj
                .pointer("/metadata/generateName")
                .and_then(Value::as_str)
            {
                Some(prefix) => format!(
                    "{prefix}{}",
                    (0..5).map(|_| fastrand::lowercase()).collect::<String>()
                ),
                None => {
                    return Err(ApiError::invalid(
                        t,
                        "",
                        "metadata.name",
                        "Required value: name or generateName is required",
                    ));
                }
            }
        } else {
            name_in_body
        };
        check_kind(t, &obj)?;
        if t.namespaced {
            if let Some(body_ns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
                && !body_ns.is_empty()
                && body_ns != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            self.namespace_usable(ns)?;
        }
        let ns_key = if t.namespaced { ns } else { "" };
        if self
            .objects
            .get(&t.storage_key())
            .is_some_and(|m| m.contains_key(&(ns_key.to_string(), name.clone())))
        {
            return Err(ApiError::already_exists(t, &name));
        }
        let user_view = owned_view(&obj);
        {
            let md = obj.as_object_mut().map(|m| {
                m.entry("metadata")
                    .or_insert_with(|| Value::Object(Map::new()))
            });
            let Some(Value::Object(md)) = md else {
                return Err(ApiError::bad_request("metadata must be an object"));
            };
            for k in SYSTEM_METADATA {
                md.remove(*k);
            }
            md.insert("name".into(), Value::String(name.clone()));
            if t.namespaced {
                md.insert("namespace".into(), Value::String(ns.to_string()));
            } else {
                md.remove("namespace");
            }
            md.insert("uid".into(), Value::String(new_uid()));
            md.insert("creationTimestamp".into(), Value::String(now()));
            md.insert("generation".into(), json!(1));
        }
        obj["apiVersion"] = Value::String(t.api_version());
        obj["kind"] = Value::String(t.kind.clone());
        if t.status_subresource
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        defaults::on_create(t, &mut obj, self.allocated_ips());
        let mut errs = required;
        errs.extend(validation::on_create(t, &obj));
        if !errs.is_empty() {
            return Err(validation::invalid(t, &name, &errs));
        }
        if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
            let mut reg = self.registry.clone();
            reg.register_crd(&obj)
                .map_err(|why| ApiError::invalid(t, &name, "spec", &why))?;
            defaults::crd_established(&mut obj);
            if !opts.dry_run {
                self.registry = reg;
            }
        }
        let mut managers = managers.unwrap_or_default();
        if managers.is_empty() {
            record_update(
                &mut managers,
                opts,
                fields::leaves(&user_view),
                &t.api_version(),
            );
        }
        write_managers(&mut obj, managers);
        if opts.dry_run {
            return Ok(obj);
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        self.objects
            .entry(t.storage_key())
            .or_default()
            .insert((ns_key.to_string(), name), obj.clone());
        self.record(t, ns_key, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    #[allow(clippy::too_many_arguments)]
    fn commit_update(
        &mut self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        old: &Value,
        mut new: Value,
        opts: &WriteOptions,
        managers: Option<Vec<Manager>>,
    ) -> Result<Value, ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        check_kind(t, &new)?;
        if let Some(n) = new.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        if !new.get("metadata").is_some_and(Value::is_object) {
            new["metadata"] = json!({});
        }
        for k in SYSTEM_METADATA {
            match old["metadata"].get(*k) {
                Some(v) => new["metadata"][*k] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(*k);
                    }
                }
            }
        }
        new["metadata"]["name"] = Value::String(name.to_string());
        if t.namespaced {
            new["metadata"]["namespace"] = Value::String(ns.to_string());
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = Value::String(t.kind.clone());
        if t.status_subresource && opts.subresource.as_deref() != Some("status") {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        if opts.subresource.is_none() {
            let mut errs = decode_check(t, &mut new, opts)?;
            defaults::on_write(t, &mut new);
            validation::keep_allocated(t, old, &mut new);
            errs.extend(validation::on_update(t, old, &new));
            if !errs.is_empty() {
                return Err(validation::invalid(t, name, &errs));
            }
        } else if t.schema.is_some() {
            // A custom resource's status is pruned and validated by the same schema.
            let errs = decode_check(t, &mut new, opts)?;
            if !errs.is_empty() {
                return Err(validation::invalid(t, name, &errs));
            }
        }
        if spec_view(old) != spec_view(&new) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        let managers = match managers {
            Some(m) => m,
            None => {
                let mut m = read_managers(old);
                let changed = fields::changed(&owned_view(old), &owned_view(&new));
                record_update(&mut m, opts, changed, &t.api_version());
                m
            }
        };
        write_managers(&mut new, managers);
        if &new == old {
            return Ok(as_version(old, t));
        }
        if t.kind == "CustomResourceDefinition" && t.group == "apiextensions.k8s.io" {
            let mut reg = self.registry.clone();
            reg.register_crd(&new)
                .map_err(|why| ApiError::invalid(t, name, "spec", &why))?;
            if !opts.dry_run {
                self.registry = reg;
            }
        }
        if opts.dry_run {
            return Ok(as_version(&new, t));
        }
        let finished = new.pointer("/metadata/deletionTimestamp").is_some()
            && new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(|f| f.is_empty())
            && t.kind != "Namespace";
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let key = (if t.namespaced { ns } else { "" }).to_string();
        if finished {
            self.remove(t, &key, name);
            return Ok(as_version(&new, t));
        }
        self.objects
            .entry(t.storage_key())
            .or_default()
            .insert((key.clone(), name.to_string()), new.clone());
        self.record(t, &key, EventType::Modified, new.clone(), Some(old.clone()));
        Ok(as_version(&new, t))
    }

    /// Server-side apply: conflicts with other managers' differing values are refused unless
    /// forced; fields this manager applied before and no longer applies are removed.
    fn apply(
        &mut self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if opts.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH requests with content type application/apply-patch+yaml require the fieldManager parameter",
            ));
        }
        if !body.is_object() {
            return Err(ApiError::bad_request(
                "the applied configuration must be an object",
            ));
        }
        if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str)
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let applied_view = owned_view(&body);
        let applied = fields::leaves(&applied_view);
        let apply_manager = |fields: FieldSet| Manager {
            name: opts.manager.clone(),
            operation: "Apply".to_string(),
            subresource: opts.subresource.clone(),
            fields,
            api_version: t.api_version(),
            time: now(),
        };
        let old = match self.existing(t, ns, name) {
            Ok(o) => o,
            Err(_) => {
                let mut obj = body;
                obj["metadata"]["name"] = Value::String(name.to_string());
                return self.create(t, ns, obj, opts, Some(vec![apply_manager(applied)]));
            }
        };
        let mut managers = read_managers(&old);
        let live_view = owned_view(&old);
        let is_self = |m: &Manager| m.name == opts.manager && m.operation == "Apply";
        // Per manager (by position): the applied fields it owns whose value would change.
        let mut clashes: Vec<(usize, FieldSet)> = Vec::new();
        for (i, m) in managers.iter().enumerate() {
            if is_self(m) || m.subresource != opts.subresource {
                continue;
            }
            let clash: FieldSet = m
                .fields
                .iter()
                .filter(|p| {
                    applied.contains(*p)
                        && fields::value_at(&applied_view, p) != fields::value_at(&live_view, p)
                })
                .cloned()
                .collect();
            if !clash.is_empty() {
                clashes.push((i, clash));
            }
        }
        if !clashes.is_empty() && !opts.force {
            let conflicts: Vec<(String, FieldSet)> = clashes
                .into_iter()
                .map(|(i, clash)| (managers[i].name.clone(), clash))
                .collect();
            return Err(conflict_error(t, name, &conflicts));
        }
        // Forced, the conflicting fields move to the applier; fields it sets to the value
        // they already have stay with their owners too, shared.
        for (i, clash) in clashes {
            managers[i].fields.retain(|p| !clash.contains(p));
        }
        let previous: FieldSet = managers
            .iter()
            .find(|m| is_self(m))
            .map(|m| m.fields.clone())
            .unwrap_or_default();
        managers.retain(|m| !is_self(m));
        let mut new = old.clone();
        fields::merge_applied(&mut new, &body);
        for gone in previous.difference(&applied) {
            let held_elsewhere = managers.iter().any(|m| m.fields.contains(gone));
            if !held_elsewhere {
                fields::remove_at(&mut new, gone);
            }
        }
        managers.push(apply_manager(applied));
        self.commit_update(t, ns, name, &old, new, opts, Some(managers))
    }

    fn delete(
        &mut self,
        t: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Propagation,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let key = if t.namespaced { ns } else { "" };
        let mut obj = self.existing(t, key, name)?;
        if dry_run {
            return Ok(as_version(&obj, t));
        }
        let uid = obj["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match propagation {
            Propagation::Orphan => self.orphan_dependents(&uid),
            Propagation::Foreground => self.delete_dependents(&uid),
            // The garbage collector removes dependents once their owner is gone.
            Propagation::Background => {}
        }
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers || t.kind == "Namespace" {
            if obj.pointer("/metadata/deletionTimestamp").is_none() {
                let before = obj.clone();
                obj["metadata"]["deletionTimestamp"] = Value::String(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                if t.kind == "Namespace" {
                    obj["status"]["phase"] = Value::String("Terminating".into());
                }
                let rv = self.next_rv();
                obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
                self.objects
                    .entry(t.storage_key())
                    .or_default()
                    .insert((key.to_string(), name.to_string()), obj.clone());
                self.record(t, key, EventType::Modified, obj.clone(), Some(before));
            }
            return Ok(as_version(&obj, t));
        }
        Ok(as_version(&self.remove(t, key, name).unwrap_or(obj), t))
    }

    fn remove(&mut self, t: &ResourceType, ns: &str, name: &str) -> Option<Value> {
        let mut obj = self
            .objects
            .get_mut(&t.storage_key())?
            .remove(&(ns.to_string(), name.to_string()))?;
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        if t.kind == "CustomResourceDefinition"
            && let (Some(g), Some(p)) = (
                obj.pointer("/spec/group").and_then(Value::as_str),
                obj.pointer("/spec/names/plural").and_then(Value::as_str),
            )
        {
            self.registry.unregister_crd(g, p);
            self.objects.remove(&(g.to_string(), p.to_string()));
        }
        self.record(t, ns, EventType::Deleted, obj.clone(), None);
        Some(obj)
    }

    /// Every stored object with its type, namespace and name.
    fn typed(&self) -> impl Iterator<Item = (&ResourceType, &str, &str, &Value)> {
        self.objects
            .iter()
            .flat_map(move |((group, plural), objs)| {
                let t = self
                    .registry
                    .all()
                    .iter()
                    .find(|t| &t.group == group && &t.plural == plural);
                objs.iter().filter_map(move |((ns, name), o)| {
                    t.map(|t| (t, ns.as_str(), name.as_str(), o))
                })
            })
    }

    fn dependents(&self, uid: &str) -> Vec<(ResourceType, String, String)> {
        self.typed()
            .filter(|(_, _, _, o)| {
                o.pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            })
            .map(|(t, ns, name, _)| (t.clone(), ns.to_string(), name.to_string()))
            .collect()
    }

    fn delete_dependents(&mut self, uid: &str) {
        for (t, ns, name) in self.dependents(uid) {
            let _ = self.delete(&t, &ns, &name, Propagation::Foreground, false);
        }
    }

    fn orphan_dependents(&mut self, uid: &str) {
        for (t, ns, name) in self.dependents(uid) {
            let Ok(old) = self.existing(&t, &ns, &name) else {
                continue;
            };
            let mut new = old.clone();
            if let Some(Value::Array(refs)) = new.pointer_mut("/metadata/ownerReferences") {
                refs.retain(|r| r["uid"] != uid);
            }
            let opts = WriteOptions {
                manager: "kubesim-garbage-collector".into(),
                ..Default::default()
            };
            let _ = self.commit_update(&t, &ns, &name, &old, new, &opts, None);
        }
    }

    fn allocated_ips(&self) -> usize {
        self.objects
            .get(&(String::new(), "services".to_string()))
            .map_or(0, BTreeMap::len)
    }
}

fn check_kind(t: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != t.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({k}) does not match the resource ({})",
            t.qualified()
        )));
    }
    Ok(())
}

fn conflict_error(t: &ResourceType, name: &str, conflicts: &[(String, FieldSet)]) -> ApiError {
    let count: usize = conflicts.iter().map(|(_, f)| f.len()).sum();
    let mut lines = Vec::new();
    let mut causes = Vec::new();
    for (manager, paths) in conflicts {
        for p in paths {
            let field = fields::display(p);
            lines.push(format!("conflict with \"{manager}\": {field}"));
            causes.push(json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{manager}\""),
                "field": field,
            }));
        }
    }
    let plural = if count == 1 { "conflict" } else { "conflicts" };
    let mut e = ApiError::new(
        409,
        "Conflict",
        format!("Apply failed with {count} {plural}: {}", lines.join("\n")),
    );
    e.details = Some(json!({"name": name, "group": t.group, "kind": t.plural, "causes": causes}));
    e
}
