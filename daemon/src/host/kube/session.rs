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
use crate::wasm::bindings::kube::{
    ApiResource as WitApiResource, ApplyOptions, ObjectRef, Readiness as WitReadiness,
    ReadinessState,
};
use crate::wasm::bindings::log::Level;
use crate::wasm::bindings::types::{KubeError, TaskError};
use crate::wasm::grants::Namespaces;

/// The field manager gantry applies with, so ownership is visible in `managedFields`.
pub const FIELD_MANAGER: &str = "gantry";
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(200);
/// Longest field-manager name a plugin may choose (the API server allows 128).
const MAX_MANAGER: usize = 128;

pub struct Session {
    pub cluster: String,
    client: kube::Client,
    plugin: String,
    namespaces: Arc<Namespaces>,
    log: Arc<dyn LogSink>,
    deadline: Instant,
    kinds: HashMap<(String, String), (ApiResource, bool)>,
    served: Option<Vec<WitApiResource>>,
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

/// The typed error a plugin sees: the API server's status and reason when it answered.
fn kube_error(what: &str, e: &kube::Error) -> TaskError {
    match e {
        kube::Error::Api(s) => TaskError::Kube(KubeError {
            status: s.code,
            reason: s.reason.clone(),
            message: format!("{what}: {}", s.message),
        }),
        other => TaskError::Kube(KubeError {
            status: 0,
            reason: String::new(),
            message: format!("{what}: {other}"),
        }),
    }
}

/// "gantry" by default; a plugin may use others under "gantry-" to own some fields apart.
fn field_manager(requested: Option<&str>) -> Result<String, TaskError> {
    let Some(name) = requested else {
        return Ok(FIELD_MANAGER.to_string());
    };
    let ok = (name == FIELD_MANAGER || name.starts_with("gantry-"))
        && name.len() <= MAX_MANAGER
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(name.to_string())
    } else {
        Err(TaskError::InvalidConfig(format!(
            "field manager `{name}` is not allowed: use \"{FIELD_MANAGER}\" or a name starting with \"gantry-\" of at most {MAX_MANAGER} of [a-z0-9-]"
        )))
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
        namespaces: Arc<Namespaces>,
        log: Arc<dyn LogSink>,
        deadline: Instant,
    ) -> Self {
        Session {
            cluster,
            client,
            plugin,
            namespaces,
            log,
            deadline,
            kinds: HashMap::new(),
            served: None,
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
                Err(e) => return Err(kube_error(what, &e)),
            }
        }
        Err(TaskError::Kube(KubeError {
            status: 0,
            reason: String::new(),
            message: format!("{what}: gave up after {ATTEMPTS} attempts"),
        }))
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
                TaskError::Kube(mut k) => {
                    k.message = format!(
                        "{}; the cluster does not serve {kind} in {api_version} (is its CustomResourceDefinition installed?)",
                        k.message
                    );
                    TaskError::Kube(k)
                }
                other => other,
            })?;
        let found = (ar, caps.scope == Scope::Namespaced);
        self.kinds.insert(key, found.clone());
        Ok(found)
    }

    fn all_namespaces_granted(&self) -> bool {
        self.namespaces.all()
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
            if !self.namespaces.allowed(ns) {
                return Err(self.denied(&format!("namespace `{ns}`"), ns));
            }
            return Ok(Some(ns.to_string()));
        }
        if kind == "Namespace" {
            if !self.namespaces.allowed(name) {
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
            self.namespaces.patterns.join(", "),
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
        let mut params = PatchParams::apply(&field_manager(opts.field_manager.as_deref())?);
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
                    .map(|(t, s)| WitReadiness {
                        target: t.clone(),
                        state: match s {
                            Readiness::Ready => ReadinessState::Ready,
                            Readiness::InProgress(m) => ReadinessState::Progressing(m),
                            Readiness::Failed(m) => ReadinessState::Failed(m),
                        },
                    })
                    .collect());
            }
            tokio::time::sleep(POLL.min(until.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// The server's version, e.g. "v1.35.2".
    pub async fn server_version(&mut self) -> Result<String, TaskError> {
        let client = self.client.clone();
        let info = self
            .retry("reading the server version", false, || {
                client.apiserver_version()
            })
            .await?;
        Ok(info.git_version)
    }

    /// Every kind the server serves, read by discovery once per session.
    pub async fn api_resources(&mut self) -> Result<Vec<WitApiResource>, TaskError> {
        if let Some(served) = &self.served {
            return Ok(served.clone());
        }
        let client = self.client.clone();
        let discovery = self
            .retry("discovering the served API resources", false, || {
                kube::discovery::Discovery::new(client.clone()).run()
            })
            .await?;
        let mut served = Vec::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (ar, caps) in group.versioned_resources(version) {
                    served.push(WitApiResource {
                        group_version: ar.api_version.clone(),
                        kind: ar.kind.clone(),
                        name: ar.plural.clone(),
                        namespaced: caps.scope == Scope::Namespaced,
                    });
                }
            }
        }
        served.sort_by(|a, b| (&a.group_version, &a.kind).cmp(&(&b.group_version, &b.kind)));
        self.served = Some(served.clone());
        Ok(served)
    }
}
