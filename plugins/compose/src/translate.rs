//! The translation of a compose file into Kubernetes objects. Pure: it reads files only
//! through the reader it is given and talks to no cluster, so `validate`, `plan` and `apply`
//! translate the same way and the whole table is unit-tested natively.
//!
//! Whatever cannot be translated is an [`Issue`] at its file and line: a compose file that
//! deploys differently from what it says is worse than one that does not deploy.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use gantry_kube_apply::Strategy;
use serde_json::{Map, Value, json};

use crate::env::{Interpolator, parse_dotenv};
use crate::node::{Node, Val};

/// Labels that select a service's pods: the service and the task it belongs to, so two
/// compose tasks in one namespace never select each other's pods.
pub const SERVICE_LABEL: &str = "gantry.dev/compose-service";
pub const PROJECT_LABEL: &str = "gantry.dev/compose-project";

/// A problem at a place in a file (line 0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file, self.message),
            l => write!(f, "{}:{l}: {}", self.file, self.message),
        }
    }
}

/// What `depends_on` asks of a dependency before the dependent is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Applied earlier; nothing awaited.
    Started,
    /// Ready (its readiness probe passes, the rollout is complete).
    Healthy,
    /// Its Job completed.
    Completed,
}

/// One compose service translated.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The workload (Deployment or Job) first, then its Service if it has ports.
    pub objects: Vec<Value>,
    pub depends: Vec<(String, Condition)>,
    /// Its `deploy.update_config` as a rollout strategy; the task's when None.
    pub strategy: Option<Strategy>,
    /// `name:port` of its Service, for the in-cluster address output.
    pub address: Option<(String, i64)>,
    /// Services are applied by phase: every dependency is in an earlier one.
    pub phase: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Translation {
    /// ConfigMaps, Secrets and PersistentVolumeClaims, applied before any service.
    pub shared: Vec<Value>,
    /// Enabled services, by phase then name.
    pub services: Vec<Service>,
    /// Variables used without a value (substituted by an empty string).
    pub unset: BTreeSet<String>,
    /// Things the log should say (a `build:` ignored because `image` is given).
    pub notes: Vec<String>,
}

/// What the translation needs besides the file.
pub struct Input<'a> {
    /// The compose file's path relative to the task's source, as issues name it.
    pub file: &'a str,
    pub text: &'a str,
    /// Reads a file relative to the compose file's directory (`env_file`, `configs.file`).
    pub read: &'a dyn Fn(&str) -> Result<String, String>,
    /// Interpolation variables: `.env` overridden by the task's `env`.
    pub vars: BTreeMap<String, String>,
    pub profiles: Vec<String>,
    /// The label value naming the task, for selectors.
    pub project: String,
    /// Services whose Service is a NodePort.
    pub node_ports: Vec<String>,
    pub volume_size: String,
    pub volume_sizes: BTreeMap<String, String>,
    pub storage_class: Option<String>,
}

struct Ctx<'a> {
    input: &'a Input<'a>,
    issues: Vec<Issue>,
    notes: Vec<String>,
    interp: Interpolator,
}

impl Ctx<'_> {
    /// A path relative to the compose file's directory, as relative to the task's source.
    fn beside(&self, path: &str) -> String {
        match self.input.file.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/{path}"),
            None => path.to_string(),
        }
    }

    fn issue(&mut self, node: &Node, message: impl Into<String>) {
        self.issues.push(Issue {
            file: self.input.file.to_string(),
            line: node.line,
            column: node.column,
            message: message.into(),
        });
    }
}

/// A Kubernetes name (DNS-1123 label) for a compose name: lower case, `_` and `.` as `-`.
pub fn k8s_name(name: &str) -> Option<String> {
    let s: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '.' { '-' } else { c })
        .collect();
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    ok.then_some(s)
}

/// Translates the whole file; every issue at once when anything cannot be translated.
pub fn translate(input: &Input) -> Result<Translation, Vec<Issue>> {
    let mut root = crate::node::parse(input.text).map_err(|(line, column, message)| {
        vec![Issue {
            file: input.file.to_string(),
            line,
            column,
            message,
        }]
    })?;
    let mut ctx = Ctx {
        input,
        issues: Vec::new(),
        notes: Vec::new(),
        interp: Interpolator::new(input.vars.clone()),
    };
    {
        let interp = &mut ctx.interp;
        let mut errors = Vec::new();
        let _ = root.map_strings(&mut |s: &str, line: u32| -> Result<String, ()> {
            match interp.interpolate(s) {
                Ok(v) => Ok(v),
                Err(e) => {
                    errors.push((line, e));
                    Ok(s.to_string())
                }
            }
        });
        for (line, message) in errors {
            ctx.issues.push(Issue {
                file: input.file.to_string(),
                line,
                column: 0,
                message,
            });
        }
    }
    if !root.is_map() {
        ctx.issue(&root, "a compose file is a mapping with `services`");
        return Err(ctx.issues);
    }
    let mut services_node = None;
    let mut volumes = BTreeMap::new();
    let mut configs = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut networks = BTreeSet::from(["default".to_string()]);
    for (key, node) in root.entries() {
        match key.as_str() {
            "version" | "name" => {}
            k if k.starts_with("x-") => {}
            "services" => services_node = Some(node),
            "volumes" => volumes = top_volumes(&mut ctx, node),
            "configs" => configs = top_files(&mut ctx, node, "configs"),
            "secrets" => secrets = top_files(&mut ctx, node, "secrets"),
            "networks" => networks.extend(top_networks(&mut ctx, node)),
            other => {
                let msg = format!("top-level `{other}` cannot be translated to Kubernetes objects");
                ctx.issue(node, msg)
            }
        }
    }
    let Some(services_node) = services_node.filter(|n| n.is_map()) else {
        ctx.issue(&root, "the file has no `services` mapping");
        return Err(ctx.issues);
    };
    let top = Top {
        volumes: &volumes,
        configs: &configs,
        secrets: &secrets,
        networks: &networks,
    };
    let mut services = Vec::new();
    let mut disabled = BTreeSet::new();
    let mut used = Used::default();
    for (name, node) in services_node.entries() {
        let Some(kname) = k8s_name(name) else {
            ctx.issue(
                node,
                format!("service name `{name}` cannot be a Kubernetes name (letters, digits and `-`, at most 63)"),
            );
            continue;
        };
        let profiles = node
            .get("profiles")
            .and_then(Node::strings)
            .unwrap_or_default();
        let enabled = profiles.is_empty() || profiles.iter().any(|p| input.profiles.contains(p));
        let mut u = Used::default();
        if let Some(s) = service(&mut ctx, &top, name, &kname, node, &mut u) {
            if enabled {
                used.volumes.extend(u.volumes);
                used.configs.extend(u.configs);
                used.secrets.extend(u.secrets);
                services.push((s, node));
            } else {
                disabled.insert(name.clone());
            }
        }
    }
    // Dependencies: known, enabled, no cycles; phases by longest chain.
    let names: BTreeSet<String> = services.iter().map(|(s, _)| s.name.clone()).collect();
    let mut problems = Vec::new();
    for (s, node) in &mut services {
        s.depends.retain(|(d, _)| {
            if names.contains(d) {
                return true;
            }
            let why = if disabled.contains(d) {
                format!("`{}` depends on `{d}`, whose profiles are not enabled (add one to the task's `profiles`)", s.name)
            } else {
                format!("`{}` depends on `{d}`, which is not a service of this file", s.name)
            };
            problems.push((node.get("depends_on").cloned().unwrap_or_else(|| (*node).clone()), why));
            false
        });
    }
    for (n, m) in problems {
        ctx.issue(&n, m);
    }
    let deps: BTreeMap<String, Vec<String>> = services
        .iter()
        .map(|(s, _)| {
            (
                s.name.clone(),
                s.depends.iter().map(|d| d.0.clone()).collect(),
            )
        })
        .collect();
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    for (s, node) in &services {
        if let Err(cycle) = phase_of(&s.name, &deps, &mut phases, &mut Vec::new()) {
            let msg = format!("depends_on forms a cycle: {}", cycle.join(" → "));
            let at = node
                .get("depends_on")
                .cloned()
                .unwrap_or_else(|| (*node).clone());
            ctx.issue(&at, msg);
            break;
        }
    }
    // `service_completed_successfully` only means something for a one-shot service: a
    // Deployment never completes, so waiting for it would hang until the timeout.
    let jobs: BTreeSet<String> = services
        .iter()
        .filter(|(s, _)| s.objects.first().is_some_and(|o| o["kind"] == "Job"))
        .map(|(s, _)| s.name.clone())
        .collect();
    let mut never = Vec::new();
    for (s, node) in &services {
        for (d, c) in &s.depends {
            if *c == Condition::Completed && !jobs.contains(d) {
                let at = node
                    .get("depends_on")
                    .cloned()
                    .unwrap_or_else(|| (*node).clone());
                never.push((at, format!("`{}` waits for `{d}` to complete, but `{d}` keeps running: give it `restart: \"no\"` or `on-failure`, or use service_healthy", s.name)));
            }
        }
    }
    for (at, m) in never {
        ctx.issue(&at, m);
    }
    let mut out: Vec<Service> = services
        .into_iter()
        .map(|(mut s, _)| {
            s.phase = phases.get(&s.name).copied().unwrap_or(0);
            s
        })
        .collect();
    out.sort_by(|a, b| (a.phase, &a.name).cmp(&(b.phase, &b.name)));
    let mut shared = Vec::new();
    for (name, v) in &volumes {
        if used.volumes.contains(name)
            && let Some(claim) = &v.claim
        {
            shared.push(claim.clone());
        }
    }
    for (name, c) in &configs {
        if used.configs.contains(name)
            && let Some(o) = &c.object
        {
            shared.push(o.clone());
        }
    }
    for (name, c) in &secrets {
        if used.secrets.contains(name)
            && let Some(o) = &c.object
        {
            shared.push(o.clone());
        }
    }
    if !ctx.issues.is_empty() {
        ctx.issues.sort_by_key(|i| (i.line, i.column));
        ctx.issues.dedup();
        return Err(ctx.issues);
    }
    Ok(Translation {
        shared,
        services: out,
        unset: ctx.interp.unset,
        notes: ctx.notes,
    })
}

fn phase_of(
    name: &str,
    deps: &BTreeMap<String, Vec<String>>,
    phases: &mut BTreeMap<String, usize>,
    stack: &mut Vec<String>,
) -> Result<usize, Vec<String>> {
    if let Some(p) = phases.get(name) {
        return Ok(*p);
    }
    if let Some(i) = stack.iter().position(|s| s == name) {
        let mut cycle = stack[i..].to_vec();
        cycle.push(name.to_string());
        return Err(cycle);
    }
    stack.push(name.to_string());
    let mut phase = 0;
    for d in deps.get(name).map(Vec::as_slice).unwrap_or_default() {
        phase = phase.max(phase_of(d, deps, phases, stack)? + 1);
    }
    stack.pop();
    phases.insert(name.to_string(), phase);
    Ok(phase)
}

struct Volume {
    /// The claim's name.
    claim_name: String,
    /// The claim to create; None for an `external` volume (an existing claim).
    claim: Option<Value>,
}

struct FileObject {
    /// The ConfigMap or Secret name and the key holding the content.
    object_name: String,
    key: String,
    object: Option<Value>,
}

struct Top<'a> {
    volumes: &'a BTreeMap<String, Volume>,
    configs: &'a BTreeMap<String, FileObject>,
    secrets: &'a BTreeMap<String, FileObject>,
    networks: &'a BTreeSet<String>,
}

#[derive(Default)]
struct Used {
    volumes: BTreeSet<String>,
    configs: BTreeSet<String>,
    secrets: BTreeSet<String>,
}

fn meta(name: &str) -> Value {
    json!({ "name": name })
}

fn top_volumes(ctx: &mut Ctx, node: &Node) -> BTreeMap<String, Volume> {
    let mut out = BTreeMap::new();
    for (name, v) in node.entries() {
        let mut claim_name = k8s_name(name);
        let mut external = false;
        let mut annotations = Map::new();
        for (k, n) in v.entries() {
            match k.as_str() {
                "name" => claim_name = n.as_str().and_then(k8s_name),
                "external" => external = n.as_bool().unwrap_or(false),
                "labels" => annotations.extend(string_map(ctx, n)),
                k if k.starts_with("x-") => {}
                other => ctx.issue(
                    n,
                    format!("volume `{name}`: `{other}` cannot be translated; a named volume becomes a PersistentVolumeClaim sized by the task's `volume_size`/`volume_sizes`"),
                ),
            }
        }
        let Some(claim_name) = claim_name else {
            ctx.issue(v, format!("volume `{name}` cannot be a Kubernetes name"));
            continue;
        };
        let size = ctx
            .input
            .volume_sizes
            .get(name)
            .cloned()
            .unwrap_or_else(|| ctx.input.volume_size.clone());
        let mut spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}},
        });
        if let Some(class) = &ctx.input.storage_class {
            spec["storageClassName"] = json!(class);
        }
        let mut md = meta(&claim_name);
        if !annotations.is_empty() {
            md["annotations"] = Value::Object(annotations);
        }
        let claim = (!external).then(|| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": md, "spec": spec})
        });
        out.insert(name.clone(), Volume { claim_name, claim });
    }
    out
}

fn top_networks(ctx: &mut Ctx, node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    for (name, n) in node.entries() {
        for (k, v) in n.entries() {
            match k.as_str() {
                "name" | "labels" | "external" | "attachable" => {}
                "driver" if matches!(v.as_str(), Some("bridge" | "overlay")) => {}
                k if k.starts_with("x-") => {}
                other => ctx.issue(
                    v,
                    format!("network `{name}`: `{other}` cannot be translated; all services of the task share the namespace's network"),
                ),
            }
        }
        out.push(name.clone());
    }
    out
}

/// Top-level `configs` or `secrets`: a ConfigMap or Secret per entry, from `file`,
/// `content` or `environment`; `external` ones refer to an existing object.
fn top_files(ctx: &mut Ctx, node: &Node, what: &str) -> BTreeMap<String, FileObject> {
    let secret = what == "secrets";
    let mut out = BTreeMap::new();
    for (name, n) in node.entries() {
        let Some(mut object_name) = k8s_name(name) else {
            ctx.issue(n, format!("{what} `{name}` cannot be a Kubernetes name"));
            continue;
        };
        let mut content: Option<String> = None;
        let mut key = name.clone();
        let mut external = false;
        for (k, v) in n.entries() {
            match k.as_str() {
                "file" => {
                    let path = v.scalar().unwrap_or_default();
                    match (ctx.input.read)(&path) {
                        Ok(text) => content = Some(text),
                        Err(e) => ctx.issue(v, format!("{what} `{name}`: {e}")),
                    }
                    if let Some(base) = path.rsplit('/').next().filter(|b| !b.is_empty()) {
                        key = base.to_string();
                    }
                }
                "content" => content = v.scalar(),
                "environment" => {
                    let var = v.scalar().unwrap_or_default();
                    match ctx.input.vars.get(&var) {
                        Some(val) => content = Some(val.clone()),
                        None => ctx.issue(v, format!("{what} `{name}`: variable {var} is not set")),
                    }
                }
                "external" => external = v.as_bool().unwrap_or(false),
                "name" => {
                    if let Some(n2) = v.as_str().and_then(k8s_name) {
                        object_name = n2;
                    }
                }
                "labels" => {}
                k if k.starts_with("x-") => {}
                other => ctx.issue(
                    v,
                    format!("{what} `{name}`: `{other}` cannot be translated"),
                ),
            }
        }
        let object = if external {
            None
        } else {
            let Some(content) = content else {
                ctx.issue(
                    n,
                    format!("{what} `{name}` needs `file`, `content` or `environment`"),
                );
                continue;
            };
            Some(if secret {
                let b64 = base64::engine::general_purpose::STANDARD.encode(content.as_bytes());
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(&object_name), "type": "Opaque", "data": {key.clone(): b64}})
            } else {
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&object_name), "data": {key.clone(): content}})
            })
        };
        out.insert(
            name.clone(),
            FileObject {
                object_name,
                key,
                object,
            },
        );
    }
    out
}

/// `KEY: value` mappings or `KEY=value` lists (labels, environment, extra_hosts).
fn string_map(ctx: &mut Ctx, node: &Node) -> Map<String, Value> {
    let mut out = Map::new();
    match &node.value {
        Val::Map(entries) => {
            for (k, v) in entries {
                out.insert(k.clone(), json!(v.scalar().unwrap_or_default()));
            }
        }
        Val::Seq(items) => {
            for i in items {
                let s = i.scalar().unwrap_or_default();
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                out.insert(k.to_string(), json!(v));
            }
        }
        Val::Null => {}
        _ => ctx.issue(node, "expected a mapping or a list of KEY=VALUE"),
    }
    out
}

/// Splits a command line as a POSIX shell splits words (quotes, backslashes), which is what
/// compose does with a `command` or `entrypoint` written as a string.
pub fn shell_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in `{s}`")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err(format!("unterminated quote in `{s}`")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unterminated quote in `{s}`")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(c) = chars.next() {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

fn command(ctx: &mut Ctx, node: &Node) -> Option<Vec<String>> {
    match &node.value {
        Val::Null => None,
        Val::Seq(_) => node.strings(),
        _ => match shell_words(&node.scalar().unwrap_or_default()) {
            Ok(w) => Some(w),
            Err(e) => {
                ctx.issue(node, e);
                None
            }
        },
    }
}

/// Seconds in a compose duration (`1m30s`, `10s`, `500ms`), at least 1.
fn seconds(ctx: &mut Ctx, node: &Node) -> Option<i64> {
    let text = node.scalar().unwrap_or_default();
    match gantry_sdk::parse_duration(&text) {
        Ok(d) => Some((d.as_millis().div_ceil(1000)).max(1) as i64),
        Err(e) => {
            ctx.issue(node, e);
            None
        }
    }
}

/// A compose byte size (`512m`, `1g`, `100k`, `1024`) as a Kubernetes quantity.
pub fn quantity(text: &str) -> Option<String> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, unit) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], "Ki"),
        'm' => (&t[..t.len() - 1], "Mi"),
        'g' => (&t[..t.len() - 1], "Gi"),
        't' => (&t[..t.len() - 1], "Ti"),
        _ => (t, ""),
    };
    num.parse::<f64>().ok().filter(|n| *n >= 0.0)?;
    Some(format!("{num}{unit}"))
}

fn resources(ctx: &mut Ctx, node: &Node) -> Value {
    let mut out = json!({});
    for (k, v) in node.entries() {
        let target = match k.as_str() {
            "limits" => "limits",
            "reservations" => "requests",
            other => {
                ctx.issue(v, format!("deploy.resources.{other} cannot be translated"));
                continue;
            }
        };
        let mut r = Map::new();
        for (rk, rv) in v.entries() {
            match rk.as_str() {
                "cpus" => match rv
                    .scalar()
                    .filter(|s| s.parse::<f64>().is_ok_and(|c| c > 0.0))
                {
                    Some(c) => {
                        r.insert("cpu".into(), json!(c));
                    }
                    None => ctx.issue(rv, "cpus must be a positive number"),
                },
                "memory" => match rv.scalar().as_deref().and_then(quantity) {
                    Some(q) => {
                        r.insert("memory".into(), json!(q));
                    }
                    None => ctx.issue(rv, "memory must be a size such as 512m or 1g"),
                },
                other => ctx.issue(
                    rv,
                    format!("deploy.resources.{k}.{other} cannot be translated"),
                ),
            }
        }
        out[target] = Value::Object(r);
    }
    out
}

fn healthcheck(ctx: &mut Ctx, node: &Node, container: &mut Map<String, Value>) {
    let mut test: Option<Vec<String>> = None;
    let (mut interval, mut timeout, mut retries) = (30, 30, 3);
    let mut start_period = None;
    let mut start_interval = 5;
    for (k, v) in node.entries() {
        match k.as_str() {
            "test" => {
                test = match &v.value {
                    Val::Seq(_) => {
                        let words = v.strings().unwrap_or_default();
                        match words.first().map(String::as_str) {
                            Some("NONE") => return,
                            Some("CMD") => Some(words[1..].to_vec()),
                            Some("CMD-SHELL") => {
                                Some(vec!["/bin/sh".into(), "-c".into(), words[1..].join(" ")])
                            }
                            _ => {
                                ctx.issue(
                                    v,
                                    "healthcheck.test must start with CMD, CMD-SHELL or NONE",
                                );
                                None
                            }
                        }
                    }
                    _ => v.scalar().map(|s| vec!["/bin/sh".into(), "-c".into(), s]),
                }
            }
            "disable" if v.as_bool() == Some(true) => return,
            "disable" => {}
            "interval" => interval = seconds(ctx, v).unwrap_or(interval),
            "timeout" => timeout = seconds(ctx, v).unwrap_or(timeout),
            "retries" => match v.as_int().filter(|r| *r > 0) {
                Some(r) => retries = r,
                None => ctx.issue(v, "healthcheck.retries must be a positive number"),
            },
            "start_period" => start_period = seconds(ctx, v),
            "start_interval" => start_interval = seconds(ctx, v).unwrap_or(start_interval),
            other => ctx.issue(v, format!("healthcheck.{other} cannot be translated")),
        }
    }
    let Some(test) = test.filter(|t| !t.is_empty()) else {
        ctx.issue(node, "healthcheck needs a `test`");
        return;
    };
    container.insert(
        "readinessProbe".into(),
        json!({"exec": {"command": test}, "periodSeconds": interval, "timeoutSeconds": timeout, "failureThreshold": retries}),
    );
    if let Some(p) = start_period {
        let threshold = (p + start_interval - 1) / start_interval + retries;
        container.insert(
            "startupProbe".into(),
            json!({"exec": {"command": test}, "periodSeconds": start_interval, "timeoutSeconds": timeout, "failureThreshold": threshold}),
        );
    }
}

/// One port: (target, published, protocol). Ranges are refused.
fn port(ctx: &mut Ctx, node: &Node) -> Option<(i64, Option<i64>, String)> {
    let parse = |s: &str| s.parse::<i64>().ok().filter(|p| (1..=65535).contains(p));
    if node.is_map() {
        let mut target = None;
        let mut published = None;
        let mut protocol = "TCP".to_string();
        for (k, v) in node.entries() {
            match k.as_str() {
                "target" => target = v.scalar().as_deref().and_then(parse),
                "published" => published = v.scalar().as_deref().and_then(parse),
                "protocol" => protocol = v.scalar().unwrap_or_default().to_ascii_uppercase(),
                "host_ip" | "mode" | "name" | "app_protocol" => {}
                other => ctx.issue(v, format!("ports.{other} cannot be translated")),
            }
        }
        return match target {
            Some(t) => Some((t, published, protocol)),
            None => {
                ctx.issue(node, "a port needs a `target` between 1 and 65535");
                None
            }
        };
    }
    let text = node.scalar().unwrap_or_default();
    let (spec, protocol) = match text.split_once('/') {
        Some((s, p)) => (s, p.to_ascii_uppercase()),
        None => (text.as_str(), "TCP".to_string()),
    };
    if spec.contains('-') {
        ctx.issue(
            node,
            format!("port range `{text}` cannot be translated; list the ports one by one"),
        );
        return None;
    }
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let target = parts.first().and_then(|p| parse(p));
    let published = parts
        .get(1)
        .filter(|p| !p.is_empty())
        .and_then(|p| parse(p));
    match target {
        Some(t)
            if parts
                .get(1)
                .is_none_or(|p| p.is_empty() || published.is_some()) =>
        {
            Some((t, published, protocol))
        }
        _ => {
            ctx.issue(
                node,
                format!("`{text}` is not a port ([HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL])"),
            );
            None
        }
    }
}

fn is_named_volume(source: &str) -> bool {
    !source.is_empty() && !source.starts_with(['.', '/', '~', '$']) && !source.contains('/')
}

#[allow(clippy::too_many_arguments)]
fn mount(
    ctx: &mut Ctx,
    top: &Top,
    used: &mut Used,
    node: &Node,
    volumes: &mut Vec<Value>,
    mounts: &mut Vec<Value>,
) {
    let bind_refused = |source: &str| {
        format!(
            "`{source}` is a host bind mount, which cannot be translated: pods do not run on this host; use a named volume, a config or a secret"
        )
    };
    let (kind, source, target, read_only, tmpfs_size) = if node.is_map() {
        let mut kind = "volume".to_string();
        let (mut source, mut target, mut ro, mut size) =
            (String::new(), String::new(), false, None);
        for (k, v) in node.entries() {
            match k.as_str() {
                "type" => kind = v.scalar().unwrap_or_default(),
                "source" => source = v.scalar().unwrap_or_default(),
                "target" => target = v.scalar().unwrap_or_default(),
                "read_only" => ro = v.as_bool().unwrap_or(false),
                "tmpfs" => size = v.get("size").and_then(Node::scalar),
                "volume" if v.get("nocopy").is_some() && v.entries().len() == 1 => {}
                other => ctx.issue(v, format!("volumes.{other} cannot be translated")),
            }
        }
        (kind, source, target, ro, size)
    } else {
        let text = node.scalar().unwrap_or_default();
        let parts: Vec<&str> = text.split(':').collect();
        match parts.as_slice() {
            [t] => ("volume".into(), String::new(), t.to_string(), false, None),
            [s, t] => ("volume".into(), s.to_string(), t.to_string(), false, None),
            [s, t, mode] => {
                if !mode.split(',').all(|m| matches!(m, "ro" | "rw")) {
                    ctx.issue(
                        node,
                        format!("volume mode `{mode}` cannot be translated (only ro and rw)"),
                    );
                }
                (
                    "volume".into(),
                    s.to_string(),
                    t.to_string(),
                    mode.split(',').any(|m| m == "ro"),
                    None,
                )
            }
            _ => {
                ctx.issue(node, format!("`{text}` is not SOURCE:TARGET[:MODE]"));
                return;
            }
        }
    };
    if !target.starts_with('/') {
        ctx.issue(
            node,
            format!("volume target `{target}` must be an absolute path"),
        );
        return;
    }
    let vol_name = format!("v{}", volumes.len());
    let volume = match kind.as_str() {
        "tmpfs" => {
            let mut e = json!({"medium": "Memory"});
            if let Some(s) = tmpfs_size.as_deref().and_then(quantity) {
                e["sizeLimit"] = json!(s);
            }
            json!({"name": vol_name, "emptyDir": e})
        }
        "bind" => {
            ctx.issue(node, bind_refused(&source));
            return;
        }
        "volume" if source.is_empty() => json!({"name": vol_name, "emptyDir": {}}),
        "volume" if !is_named_volume(&source) => {
            ctx.issue(node, bind_refused(&source));
            return;
        }
        "volume" => match top.volumes.get(&source) {
            Some(v) => {
                used.volumes.insert(source.clone());
                json!({"name": vol_name, "persistentVolumeClaim": {"claimName": v.claim_name}})
            }
            None => {
                ctx.issue(
                    node,
                    format!("volume `{source}` is not declared under the top-level `volumes`"),
                );
                return;
            }
        },
        other => {
            ctx.issue(node, format!("volume type `{other}` cannot be translated"));
            return;
        }
    };
    volumes.push(volume);
    let mut m = json!({"name": vol_name, "mountPath": target});
    if read_only {
        m["readOnly"] = json!(true);
    }
    mounts.push(m);
}

/// A service's `configs` or `secrets` mounted as files from their ConfigMap or Secret.
fn file_mounts(
    ctx: &mut Ctx,
    node: &Node,
    objects: &BTreeMap<String, FileObject>,
    secret: bool,
    used: &mut BTreeSet<String>,
    volumes: &mut Vec<Value>,
    mounts: &mut Vec<Value>,
) {
    for item in node.items() {
        let (mut source, mut target, mut mode) = (String::new(), None, None);
        if item.is_map() {
            for (k, v) in item.entries() {
                match k.as_str() {
                    "source" => source = v.scalar().unwrap_or_default(),
                    "target" => target = v.scalar(),
                    "mode" => mode = v.as_int(),
                    other => ctx.issue(
                        v,
                        format!(
                            "{}.{other} cannot be translated",
                            if secret { "secrets" } else { "configs" }
                        ),
                    ),
                }
            }
        } else {
            source = item.scalar().unwrap_or_default();
        }
        let Some(obj) = objects.get(&source) else {
            let what = if secret { "secrets" } else { "configs" };
            ctx.issue(
                item,
                format!("`{source}` is not declared under the top-level `{what}`"),
            );
            continue;
        };
        used.insert(source.clone());
        let target = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) if secret => format!("/run/secrets/{t}"),
            Some(t) => format!("/{t}"),
            None if secret => format!("/run/secrets/{source}"),
            None => format!("/{source}"),
        };
        let vol_name = format!("v{}", volumes.len());
        let mut src = if secret {
            json!({"secretName": obj.object_name})
        } else {
            json!({"name": obj.object_name})
        };
        if let Some(m) = mode {
            src["defaultMode"] = json!(m);
        }
        volumes.push(json!({"name": vol_name, if secret { "secret" } else { "configMap" }: src}));
        mounts.push(
            json!({"name": vol_name, "mountPath": target, "subPath": obj.key, "readOnly": true}),
        );
    }
}

fn depends_on(ctx: &mut Ctx, node: &Node) -> Vec<(String, Condition)> {
    let mut out = Vec::new();
    match &node.value {
        Val::Seq(items) => {
            for i in items {
                out.push((i.scalar().unwrap_or_default(), Condition::Started));
            }
        }
        Val::Map(entries) => {
            for (name, spec) in entries {
                let mut condition = Condition::Started;
                let mut required = true;
                for (k, v) in spec.entries() {
                    match k.as_str() {
                        "condition" => {
                            condition = match v.as_str() {
                                Some("service_started") => Condition::Started,
                                Some("service_healthy") => Condition::Healthy,
                                Some("service_completed_successfully") => Condition::Completed,
                                _ => {
                                    ctx.issue(v, "condition must be service_started, service_healthy or service_completed_successfully");
                                    Condition::Started
                                }
                            }
                        }
                        "required" => required = v.as_bool().unwrap_or(true),
                        "restart" if v.as_bool() != Some(true) => {}
                        other => {
                            ctx.issue(v, format!("depends_on.{name}.{other} cannot be translated"))
                        }
                    }
                }
                if required {
                    out.push((name.clone(), condition));
                }
            }
        }
        _ => ctx.issue(node, "depends_on must be a list or a mapping"),
    }
    out
}

/// One service: a Deployment (or a Job for `restart: "no"` / `on-failure`) and a Service
/// when it has ports. None when it cannot be translated (the issues say why).
fn service(
    ctx: &mut Ctx,
    top: &Top,
    name: &str,
    kname: &str,
    node: &Node,
    used: &mut Used,
) -> Option<Service> {
    if !node.is_map() {
        ctx.issue(node, format!("service `{name}` must be a mapping"));
        return None;
    }
    let before = ctx.issues.len();
    let mut container = Map::new();
    container.insert("name".into(), json!(kname));
    let mut pod = Map::new();
    let mut env_file: Vec<(String, String)> = Vec::new();
    let mut environment = Map::new();
    let mut ports: Vec<(i64, Option<i64>, String)> = Vec::new();
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut annotations = Map::new();
    let mut workload_annotations = Map::new();
    let mut replicas = 1;
    let mut restart: Option<(String, Option<i64>)> = None;
    let mut strategy = None;
    let mut depends = Vec::new();
    let mut security = Map::new();
    let mut image = None;
    let mut build = None;
    for (k, v) in node.entries() {
        match k.as_str() {
            "image" => image = v.scalar(),
            "build" => build = Some(v),
            "profiles" => {}
            "command" => {
                if let Some(c) = command(ctx, v) {
                    container.insert("args".into(), json!(c));
                }
            }
            "entrypoint" => {
                if let Some(c) = command(ctx, v) {
                    container.insert("command".into(), json!(c));
                }
            }
            "environment" => environment = string_map(ctx, v),
            "env_file" => {
                let files: Vec<(String, bool, &Node)> = match &v.value {
                    Val::Seq(items) => items
                        .iter()
                        .map(|i| match i.get("path") {
                            Some(p) => (
                                p.scalar().unwrap_or_default(),
                                i.get("required").and_then(Node::as_bool).unwrap_or(true),
                                i,
                            ),
                            None => (i.scalar().unwrap_or_default(), true, i),
                        })
                        .collect(),
                    _ => vec![(v.scalar().unwrap_or_default(), true, v)],
                };
                for (path, required, at) in files {
                    match (ctx.input.read)(&path) {
                        Ok(text) => match parse_dotenv(&text) {
                            Ok(pairs) => {
                                for (key, value, line) in pairs {
                                    match ctx.interp.interpolate(&value) {
                                        Ok(value) => env_file.push((key, value)),
                                        Err(e) => ctx.issues.push(Issue {
                                            file: ctx.beside(&path),
                                            line,
                                            column: 0,
                                            message: e,
                                        }),
                                    }
                                }
                            }
                            Err((line, message)) => ctx.issues.push(Issue {
                                file: ctx.beside(&path),
                                line,
                                column: 0,
                                message,
                            }),
                        },
                        Err(_) if !required => {}
                        Err(e) => ctx.issue(at, format!("env_file `{path}`: {e}")),
                    }
                }
            }
            "ports" | "expose" => {
                for p in v.items() {
                    if let Some(p) = port(ctx, p) {
                        ports.push(if k == "expose" { (p.0, None, p.2) } else { p });
                    }
                }
            }
            "volumes" => {
                for m in v.items() {
                    mount(ctx, top, used, m, &mut volumes, &mut mounts);
                }
            }
            "tmpfs" => {
                for t in v.strings().unwrap_or_default() {
                    let (path, opts) = t.split_once(':').unwrap_or((&t, ""));
                    let mut e = json!({"medium": "Memory"});
                    for o in opts.split(',').filter(|o| !o.is_empty()) {
                        match o.strip_prefix("size=").and_then(quantity) {
                            Some(q) => e["sizeLimit"] = json!(q),
                            None => ctx.issue(v, format!("tmpfs option `{o}` cannot be translated")),
                        }
                    }
                    let vol_name = format!("v{}", volumes.len());
                    volumes.push(json!({"name": vol_name, "emptyDir": e}));
                    mounts.push(json!({"name": vol_name, "mountPath": path}));
                }
            }
            "configs" => file_mounts(ctx, v, top.configs, false, &mut used.configs, &mut volumes, &mut mounts),
            "secrets" => file_mounts(ctx, v, top.secrets, true, &mut used.secrets, &mut volumes, &mut mounts),
            "restart" => {
                let text = v.scalar().unwrap_or_default();
                let (policy, max) = text.split_once(':').unwrap_or((&text, ""));
                match policy {
                    "no" | "on-failure" => restart = Some((policy.to_string(), max.parse().ok())),
                    "always" | "unless-stopped" => {}
                    _ => ctx.issue(v, format!("restart `{text}` is not no, always, on-failure or unless-stopped")),
                }
            }
            "deploy" => {
                for (dk, dv) in v.entries() {
                    match dk.as_str() {
                        "replicas" => match dv.as_int().filter(|r| *r >= 0) {
                            Some(r) => replicas = r,
                            None => ctx.issue(dv, "deploy.replicas must be a number"),
                        },
                        "resources" => {
                            container.insert("resources".into(), resources(ctx, dv));
                        }
                        "labels" => workload_annotations.extend(string_map(ctx, dv)),
                        "mode" if dv.as_str() == Some("replicated") => {}
                        "update_config" => {
                            let mut parallelism = 1;
                            let mut start_first = false;
                            for (uk, uv) in dv.entries() {
                                match uk.as_str() {
                                    "parallelism" => match uv.as_int().filter(|p| *p > 0) {
                                        Some(p) => parallelism = p,
                                        None => ctx.issue(uv, "update_config.parallelism must be a positive number"),
                                    },
                                    "order" => match uv.as_str() {
                                        Some("start-first") => start_first = true,
                                        Some("stop-first") => start_first = false,
                                        _ => ctx.issue(uv, "update_config.order must be start-first or stop-first"),
                                    },
                                    other => ctx.issue(uv, format!("deploy.update_config.{other} cannot be translated")),
                                }
                            }
                            let (surge, unavailable) = if start_first { (parallelism, 0) } else { (0, parallelism) };
                            strategy = Some(Strategy {
                                recreate: false,
                                max_surge: Some(json!(surge)),
                                max_unavailable: Some(json!(unavailable)),
                            });
                        }
                        "restart_policy" => {
                            for (rk, rv) in dv.entries() {
                                match rk.as_str() {
                                    "condition" => match rv.as_str() {
                                        Some("none") => restart = Some(("no".into(), None)),
                                        Some("on-failure") => {
                                            let max = dv.get("max_attempts").and_then(Node::as_int);
                                            restart = Some(("on-failure".into(), max));
                                        }
                                        Some("any") => {}
                                        _ => ctx.issue(rv, "restart_policy.condition must be none, on-failure or any"),
                                    },
                                    "max_attempts" => {}
                                    other => ctx.issue(rv, format!("deploy.restart_policy.{other} cannot be translated")),
                                }
                            }
                        }
                        other => ctx.issue(dv, format!("deploy.{other} cannot be translated to Kubernetes objects")),
                    }
                }
            }
            "healthcheck" => healthcheck(ctx, v, &mut container),
            "depends_on" => depends = depends_on(ctx, v),
            "labels" => annotations.extend(string_map(ctx, v)),
            "working_dir" => {
                container.insert("workingDir".into(), json!(v.scalar()));
            }
            "user" => {
                let text = v.scalar().unwrap_or_default();
                let (u, g) = text.split_once(':').unwrap_or((&text, ""));
                match (u.parse::<i64>(), g) {
                    (Ok(u), "") => {
                        security.insert("runAsUser".into(), json!(u));
                    }
                    (Ok(u), g) if g.parse::<i64>().is_ok() => {
                        security.insert("runAsUser".into(), json!(u));
                        security.insert("runAsGroup".into(), json!(g.parse::<i64>().unwrap_or(0)));
                    }
                    _ => ctx.issue(v, format!("user `{text}` must be numeric (UID[:GID]): Kubernetes cannot look names up in the image")),
                }
            }
            "privileged" => {
                security.insert("privileged".into(), json!(v.as_bool().unwrap_or(false)));
            }
            "read_only" => {
                security.insert("readOnlyRootFilesystem".into(), json!(v.as_bool().unwrap_or(false)));
            }
            "cap_add" | "cap_drop" => {
                let caps = security.entry("capabilities").or_insert_with(|| json!({}));
                caps[if k == "cap_add" { "add" } else { "drop" }] = json!(v.strings().unwrap_or_default());
            }
            "stdin_open" => {
                container.insert("stdin".into(), json!(v.as_bool().unwrap_or(false)));
            }
            "tty" => {
                container.insert("tty".into(), json!(v.as_bool().unwrap_or(false)));
            }
            "pull_policy" => {
                let p = match v.as_str() {
                    Some("always") => "Always",
                    Some("never") => "Never",
                    Some("missing" | "if_not_present") => "IfNotPresent",
                    _ => {
                        ctx.issue(v, "pull_policy must be always, never, missing or if_not_present");
                        "IfNotPresent"
                    }
                };
                container.insert("imagePullPolicy".into(), json!(p));
            }
            "hostname" => {
                pod.insert("hostname".into(), json!(v.scalar()));
            }
            "stop_grace_period" => {
                if let Some(s) = seconds(ctx, v) {
                    pod.insert("terminationGracePeriodSeconds".into(), json!(s));
                }
            }
            "extra_hosts" => {
                let mut by_ip: BTreeMap<String, Vec<String>> = BTreeMap::new();
                let pairs: Vec<(String, String)> = match &v.value {
                    Val::Map(entries) => entries
                        .iter()
                        .map(|(h, ip)| (h.clone(), ip.scalar().unwrap_or_default()))
                        .collect(),
                    _ => v
                        .strings()
                        .unwrap_or_default()
                        .iter()
                        .map(|s| {
                            let (h, ip) = s.split_once(['=', ':']).unwrap_or((s, ""));
                            (h.to_string(), ip.to_string())
                        })
                        .collect(),
                };
                for (h, ip) in pairs {
                    by_ip.entry(ip).or_default().push(h);
                }
                let aliases: Vec<Value> = by_ip
                    .into_iter()
                    .map(|(ip, hosts)| json!({"ip": ip, "hostnames": hosts}))
                    .collect();
                pod.insert("hostAliases".into(), json!(aliases));
            }
            "networks" => {
                let names: Vec<(String, &Node)> = match &v.value {
                    Val::Map(entries) => entries
                        .iter()
                        .map(|(n, spec)| {
                            if !spec.is_null() && !spec.entries().is_empty() {
                                ctx.issues.push(Issue {
                                    file: ctx.input.file.to_string(),
                                    line: spec.line,
                                    column: spec.column,
                                    message: format!("network settings of `{n}` (aliases, addresses) cannot be translated; services reach each other by service name"),
                                });
                            }
                            (n.clone(), spec)
                        })
                        .collect(),
                    _ => v.items().iter().map(|i| (i.scalar().unwrap_or_default(), i)).collect(),
                };
                for (n, at) in names {
                    if !top.networks.contains(&n) {
                        ctx.issue(at, format!("network `{n}` is not declared under the top-level `networks`"));
                    }
                }
            }
            other if other.starts_with("x-") => {}
            "network_mode" => ctx.issue(
                v,
                format!("network_mode `{}` cannot be translated: pods share their namespace's network; remove it", v.scalar().unwrap_or_default()),
            ),
            other => ctx.issue(
                v,
                format!("`{other}` cannot be translated to Kubernetes objects; remove it or deploy this service another way"),
            ),
        }
    }
    match (&image, build) {
        (None, Some(b)) => ctx.issue(
            b,
            format!("service `{name}` has `build:` but no `image`: gantry does not build images; build and push it in an earlier task and set `image` (its tag can come from that task's outputs)"),
        ),
        (None, None) => ctx.issue(node, format!("service `{name}` needs an `image`")),
        (Some(i), Some(_)) => ctx
            .notes
            .push(format!("service `{name}`: `build` is not run; image {i} is deployed as built elsewhere")),
        _ => {}
    }
    if ctx.issues.len() > before {
        return None;
    }
    container.insert("image".into(), json!(image));
    // env_file first, `environment` wins; a name without a value takes the variable's.
    let mut env: BTreeMap<String, String> = env_file.into_iter().collect();
    for (k, v) in environment {
        let value = match v.as_str() {
            Some("") if !k.is_empty() => match ctx.input.vars.get(&k) {
                Some(x) => x.clone(),
                None => continue,
            },
            Some(s) => s.to_string(),
            None => continue,
        };
        env.insert(k, value);
    }
    if !env.is_empty() {
        let list: Vec<Value> = env
            .into_iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect();
        container.insert("env".into(), json!(list));
    }
    let mut seen = BTreeSet::new();
    ports.retain(|(t, _, p)| seen.insert((*t, p.clone())));
    if !ports.is_empty() {
        let list: Vec<Value> = ports
            .iter()
            .map(|(t, _, p)| json!({"containerPort": t, "protocol": p}))
            .collect();
        container.insert("ports".into(), json!(list));
    }
    if !mounts.is_empty() {
        container.insert("volumeMounts".into(), json!(mounts));
    }
    if !security.is_empty() {
        container.insert("securityContext".into(), Value::Object(security));
    }
    let selector = json!({SERVICE_LABEL: kname, PROJECT_LABEL: ctx.input.project});
    pod.insert("containers".into(), json!([Value::Object(container)]));
    if !volumes.is_empty() {
        pod.insert("volumes".into(), json!(volumes));
    }
    let mut template_meta = json!({"labels": selector});
    if !annotations.is_empty() {
        template_meta["annotations"] = Value::Object(annotations.clone());
    }
    workload_annotations.extend(annotations);
    let mut wmeta = json!({"name": kname, "labels": selector});
    if !workload_annotations.is_empty() {
        wmeta["annotations"] = Value::Object(workload_annotations);
    }
    let workload = match &restart {
        Some((policy, max)) => {
            pod.insert(
                "restartPolicy".into(),
                json!(if policy == "no" { "Never" } else { "OnFailure" }),
            );
            let spec = json!({
                "backoffLimit": if policy == "no" { 0 } else { max.unwrap_or(6) },
                "template": {"metadata": template_meta, "spec": Value::Object(pod)},
            });
            // A Job's pod template cannot change, so a changed one-shot service is a new Job
            // (named by its content) and the old one is pruned.
            let hash = fnv(&spec.to_string());
            wmeta["name"] = json!(format!("{}-{:08x}", truncate(kname, 54), hash as u32));
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": wmeta, "spec": spec})
        }
        None => json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": wmeta,
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {"metadata": template_meta, "spec": Value::Object(pod)},
            },
        }),
    };
    let mut objects = vec![workload];
    let mut address = None;
    if !ports.is_empty() {
        let node_port = ctx.input.node_ports.iter().any(|n| n == name);
        let list: Vec<Value> = ports
            .iter()
            .map(|(t, published, p)| {
                let mut sp = json!({"name": format!("{}-{t}", p.to_ascii_lowercase()), "port": t, "targetPort": t, "protocol": p});
                if node_port && let Some(n) = published.filter(|n| (30000..=32767).contains(n)) {
                    sp["nodePort"] = json!(n);
                }
                sp
            })
            .collect();
        address = Some((kname.to_string(), ports[0].0));
        objects.push(json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": kname, "labels": selector},
            "spec": {
                "type": if node_port { "NodePort" } else { "ClusterIP" },
                "selector": selector,
                "ports": list,
            },
        }));
    }
    Some(Service {
        name: name.to_string(),
        objects,
        depends,
        strategy,
        address,
        phase: 0,
    })
}

fn truncate(s: &str, n: usize) -> &str {
    let t = &s[..s.len().min(n)];
    t.trim_end_matches('-')
}

/// FNV-1a: a short, stable name suffix; not a security boundary.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
