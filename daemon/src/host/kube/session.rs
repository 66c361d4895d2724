//! One plugin call's connection to a cluster: every operation checks the namespace grant
//! first, resolves kinds through discovery once per session, and retries what a retry can
//! fix. The kube client already retries 429, 503 and 504 honouring Retry-After; this layer
//! adds the other 5xx, dropped connections and write conflicts on apply, and logs each retry
//! to the task's log so an operator sees a flaky API server.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::Value;

use super::readiness::{Readiness, readiness};
use crate::host::log::LogSink;
use crate::wasm::bindings::kube::{ApplyOptions, ObjectRef, Readiness as WitReadiness};
use crate::wasm::bindings::log::Level;
use crate::wasm::bindings::types::TaskError;
use crate::wasm::grants::Effective;

/// The field manager gantry applies with, so ownership is visible in `managedFields`.
pub const FIELD_MANAGER: &str = "gantry";
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(200);
/// Starts the message of an object that will not become ready without a change.
const FAILED: &str = "failed: ";

pub struct Session {
    pub cluster: String,
    client: kube::Client,
    plugin: String,
    caps: Arc<Effective>,
    log: Arc<dyn LogSink>,
    deadline: Instant,
    kinds: HashMap<(String, String), (ApiResource, bool)>,
}

/// Whether another attempt may succeed.
fn transient(e: &kube::Error, conflicts_too: bool) -> bool {
    match e {
        kube::Error::Api(s) => {
            matches!(s.code, 429 | 500 | 502 | 503 | 504)
                || (conflicts_too
                    && s.code == 409
                    && s.reason == "Conflict"
                    && !s.message.starts_with("Apply failed"))
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

fn target_name(t: &ObjectRef) -> String {
    match &t.namespace {
        Some(ns) => format!("{} {ns}/{}", t.kind, t.name),
        None => format!("{} {}", t.kind, t.name),
    }
}

fn gvk(api_version: &str, kind: &str) -> GroupVersionKind {
    match api_version.split_once('/') {
        Some((g, v)) => GroupVersionKind::gvk(g, v, kind),
        None => GroupVersionKind::gvk("", api_version, kind),
    }
}

impl Session {
    pub fn new(
        cluster: String,
        client: kube::Client,
        plugin: String,
        caps: Arc<Effective>,
        log: Arc<dyn LogSink>,
        deadline: Instant,
    ) -> Self {
        Session {
            cluster,
            client,
            plugin,
            caps,
            log,
            deadline,
            kinds: HashMap::new(),
        }
    }

    async fn retry<T, F, Fut>(
        &self,
        what: &str,
        conflicts_too: bool,
        mut op: F,
    ) -> Result<T, TaskError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            match op().await {
                Ok(v) => return Ok(v),
                Err(e)
                    if attempt < ATTEMPTS
                        && transient(&e, conflicts_too)
                        && Instant::now() + backoff < self.deadline =>
                {
                    self.log.line(
                        Level::Warn,
                        &format!(
                            "{what}: {}; retrying in {} ms",
                            describe(&e),
                            backoff.as_millis()
                        ),
                        &[
                            ("cluster".into(), self.cluster.clone()),
                            ("attempt".into(), attempt.to_string()),
                        ],
                    );
                    let jitter =
                        Duration::from_millis(fastrand::u64(0..=backoff.as_millis() as u64 / 4));
                    tokio::time::sleep(backoff + jitter).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(TaskError::Kube(format!("{what}: {}", describe(&e)))),
            }
        }
        Err(TaskError::Kube(format!(
            "{what}: gave up after {ATTEMPTS} attempts"
        )))
    }

    /// The API resource for a kind, and whether it is namespaced.
    async fn resolve(
        &mut self,
        api_version: &str,
        kind: &str,
    ) -> Result<(ApiResource, bool), TaskError> {
        let key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self.kinds.get(&key) {
            return Ok(found.clone());
        }
        let gvk = gvk(api_version, kind);
        let client = self.client.clone();
        let what = format!("discovering {kind} in {api_version}");
        let (ar, caps) = self
            .retry(&what, false, || kube::discovery::pinned_kind(&client, &gvk))
            .await
            .map_err(|e| match e {
                TaskError::Kube(m) => TaskError::Kube(format!(
                    "{m}; the cluster does not serve {kind} in {api_version} (is its CustomResourceDefinition installed?)"
                )),
                other => other,
            })?;
        let found = (ar, caps.scope == Scope::Namespaced);
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    fn all_namespaces_granted(&self) -> bool {
        self.caps.kube_namespaces.iter().any(|p| p == "*")
    }

    /// The namespace an operation on `kind` touches, checked against the grant.
    fn scope(
        &self,
        kind: &str,
        name: &str,
        namespaced: bool,
        ns: Option<&str>,
    ) -> Result<Option<String>, TaskError> {
        if namespaced {
            let ns = ns.filter(|n| !n.is_empty()).ok_or_else(|| {
                TaskError::InvalidConfig(format!(
                    "{kind} {name} is namespaced but names no namespace"
                ))
            })?;
            if !self.caps.namespace_allowed(ns) {
                return Err(self.denied(&format!("namespace `{ns}`"), ns));
            }
            return Ok(Some(ns.to_string()));
        }
        if kind == "Namespace" {
            if !self.caps.namespace_allowed(name) {
                return Err(self.denied(&format!("namespace `{name}`"), name));
            }
        } else if !self.all_namespaces_granted() {
            return Err(TaskError::CapabilityDenied(format!(
                "plugin `{}` may not touch cluster-scoped {kind} `{name}`: that needs kube_namespaces = [\"*\"] under [plugins.{}] in gantry.toml",
                self.plugin, self.plugin
            )));
        }
        Ok(None)
    }

    fn denied(&self, what: &str, ns: &str) -> TaskError {
        TaskError::CapabilityDenied(format!(
            "plugin `{}` is not granted {what} (granted: {}); add \"{ns}\" to kube_namespaces under [plugins.{}] in gantry.toml",
            self.plugin,
            self.caps.kube_namespaces.join(", "),
            self.plugin
        ))
    }

    fn api(&self, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
        match ns {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, ar),
            None => Api::all_with(self.client.clone(), ar),
        }
    }

    pub async fn apply(&mut self, manifest: &str, opts: ApplyOptions) -> Result<String, TaskError> {
        let obj: Value = serde_saphyr::from_str(manifest)
            .map_err(|e| TaskError::InvalidConfig(format!("the manifest does not parse: {e}")))?;
        let field = |p: &str| {
            obj.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (api_version, kind, name) = (
            field("/apiVersion"),
            field("/kind"),
            field("/metadata/name"),
        );
        if api_version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(TaskError::InvalidConfig(
                "a manifest needs apiVersion, kind and metadata.name".to_string(),
            ));
        }
        let (ar, namespaced) = self.resolve(&api_version, &kind).await?;
        let ns_field = field("/metadata/namespace");
        let ns = self.scope(&kind, &name, namespaced, Some(ns_field.as_str()))?;
        let mut obj = obj;
        if !namespaced && let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            md.remove("namespace");
        }
        let api = self.api(&ar, ns.as_deref());
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = opts.force;
        params.dry_run = opts.dry_run;
        let what = format!(
            "applying {kind} {}{name}",
            ns.as_deref().map(|n| format!("{n}/")).unwrap_or_default()
        );
        let applied = self
            .retry(&what, true, || async {
                api.patch(&name, &params, &Patch::Apply(&obj)).await
            })
            .await?;
        serde_json::to_string(&applied).map_err(|e| TaskError::Internal(e.to_string()))
    }

    async fn target_api(&mut self, t: &ObjectRef) -> Result<Api<DynamicObject>, TaskError> {
        let (ar, namespaced) = self.resolve(&t.api_version, &t.kind).await?;
        let ns = self.scope(&t.kind, &t.name, namespaced, t.namespace.as_deref())?;
        Ok(self.api(&ar, ns.as_deref()))
    }

    pub async fn get(&mut self, t: &ObjectRef) -> Result<Option<String>, TaskError> {
        let api = self.target_api(t).await?;
        let what = format!("reading {}", target_name(t));
        let found = self.retry(&what, false, || api.get_opt(&t.name)).await?;
        found
            .map(|o| serde_json::to_string(&o).map_err(|e| TaskError::Internal(e.to_string())))
            .transpose()
    }

    pub async fn list(
        &mut self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        selector: &str,
    ) -> Result<Vec<String>, TaskError> {
        let (ar, namespaced) = self.resolve(api_version, kind).await?;
        let ns = match namespace {
            Some(ns) => self.scope(kind, "", namespaced, Some(ns))?,
            None if namespaced && !self.all_namespaces_granted() => {
                return Err(TaskError::CapabilityDenied(format!(
                    "listing {kind} in every namespace needs kube_namespaces = [\"*\"] under [plugins.{}]; pass a namespace",
                    self.plugin
                )));
            }
            None if !namespaced => self.scope(kind, "", false, None)?,
            None => None,
        };
        let api = self.api(&ar, ns.as_deref());
        let params = ListParams::default().labels(selector);
        let what = format!("listing {kind} with {selector:?}");
        let list = self.retry(&what, false, || api.list(&params)).await?;
        list.items
            .iter()
            .map(|o| serde_json::to_string(o).map_err(|e| TaskError::Internal(e.to_string())))
            .collect()
    }

    pub async fn delete(&mut self, t: &ObjectRef) -> Result<bool, TaskError> {
        let api = self.target_api(t).await?;
        let what = format!("deleting {}", target_name(t));
        let params = DeleteParams::background();
        let result = self.retry(&what, false, || async {
            match api.delete(&t.name, &params).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
                Err(e) => Err(e),
            }
        });
        result.await
    }

    /// Polls until every target is ready, one fails for good, or the time is up.
    pub async fn wait_ready(
        &mut self,
        targets: &[ObjectRef],
        timeout: Duration,
    ) -> Result<Vec<WitReadiness>, TaskError> {
        let until = (Instant::now() + timeout).min(self.deadline);
        let mut apis = Vec::with_capacity(targets.len());
        for t in targets {
            apis.push(self.target_api(t).await?);
        }
        let mut last_note = (String::new(), Instant::now());
        loop {
            let mut states = Vec::with_capacity(targets.len());
            for (t, api) in targets.iter().zip(&apis) {
                let what = format!("reading {}", target_name(t));
                let state = match self.retry(&what, false, || api.get_opt(&t.name)).await? {
                    None => Readiness::InProgress("does not exist".to_string()),
                    Some(obj) => {
                        let v = serde_json::to_value(&obj)
                            .map_err(|e| TaskError::Internal(e.to_string()))?;
                        readiness(&v)
                    }
                };
                states.push(state);
            }
            // One failure decides the outcome: waiting on the others cannot change it.
            let settled = states.iter().any(|s| matches!(s, Readiness::Failed(_)))
                || states
                    .iter()
                    .all(|s| !matches!(s, Readiness::InProgress(_)));
            let pending: Vec<String> = targets
                .iter()
                .zip(&states)
                .filter_map(|(t, s)| match s {
                    Readiness::InProgress(m) => Some(format!("{}: {m}", target_name(t))),
                    _ => None,
                })
                .collect();
            let note = pending.join("; ");
            if !settled
                && note != last_note.0
                && last_note.1.elapsed() >= Duration::from_millis(500)
            {
                self.log
                    .line(Level::Info, &format!("waiting for {note}"), &[]);
                last_note = (note, Instant::now());
            }
            if settled || Instant::now() >= until {
                return Ok(targets
                    .iter()
                    .zip(states)
                    .map(|(t, s)| {
                        let (ready, message) = match s {
                            Readiness::Ready => (true, "ready".to_string()),
                            Readiness::InProgress(m) => (false, m),
                            Readiness::Failed(m) => (false, format!("{FAILED}{m}")),
                        };
                        WitReadiness {
                            target: t.clone(),
                            ready,
                            message,
                        }
                    })
                    .collect());
            }
            tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }
}
