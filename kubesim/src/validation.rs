//! The API server's validation of built-in kinds beyond their schema: names, labels,
//! selectors that must match their pod template, and the fields that may not change once
//! set. Errors are worded as Kubernetes words them (`field.Error`), so kubectl and helm
//! print what a real cluster would.

use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceType;
use crate::selector::Selector;

/// The kind of a field error, as `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Invalid,
    Required,
    Forbidden,
    NotSupported,
    TooLong,
    /// A value of the wrong JSON type where a schema says which (custom resources).
    TypeInvalid,
    TooMany,
}

impl ErrorType {
    fn text(self) -> &'static str {
        match self {
            ErrorType::Invalid => "Invalid value",
            ErrorType::Required => "Required value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::TooLong => "Too long",
            ErrorType::TypeInvalid => "Invalid value",
            ErrorType::TooMany => "Too many",
        }
    }

    /// The `reason` of the cause in the Status details.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TypeInvalid => "FieldValueTypeInvalid",
            ErrorType::TooMany => "FieldValueTooMany",
        }
    }
}

/// One field error: where, what kind, the offending value (already in Go's `%#v` form, as
/// the API server prints it) and a detail.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: &str, value: String, detail: &str) -> Self {
        FieldError {
            kind: ErrorType::Invalid,
            field: field.to_string(),
            value: Some(value),
            detail: detail.to_string(),
        }
    }

    pub fn required(field: &str, detail: &str) -> Self {
        FieldError {
            kind: ErrorType::Required,
            field: field.to_string(),
            value: None,
            detail: detail.to_string(),
        }
    }

    pub fn forbidden(field: &str, detail: &str) -> Self {
        FieldError {
            kind: ErrorType::Forbidden,
            field: field.to_string(),
            value: None,
            detail: detail.to_string(),
        }
    }

    pub fn not_supported(field: &str, value: String, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| go_string(s)).collect();
        FieldError {
            kind: ErrorType::NotSupported,
            field: field.to_string(),
            value: Some(value),
            detail: format!("supported values: {}", list.join(", ")),
        }
    }

    /// What follows the field in the message (`field.Error.ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = match (&self.kind, &self.value) {
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _) | (_, None) => {
                self.kind.text().to_string()
            }
            (_, Some(v)) => format!("{}: {v}", self.kind.text()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A 422 `Invalid` Status with one cause per error, as `errors.NewInvalid` builds it.
pub fn invalid(t: &ResourceType, name: &str, errs: &[FieldError]) -> ApiError {
    let mut seen = std::collections::HashSet::new();
    let errs: Vec<&FieldError> = errs.iter().filter(|e| seen.insert(e.to_string())).collect();
    let unique: Vec<String> = errs.iter().map(ToString::to_string).collect();
    let aggregate = if unique.len() == 1 {
        unique.concat()
    } else {
        format!("[{}]", unique.join(", "))
    };
    let group_kind = t.group_kind();
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("{group_kind} \"{name}\" is invalid: {aggregate}"),
    );
    let causes: Vec<Value> = errs
        .iter()
        .map(|fe| serde_json::json!({"reason": fe.kind.reason(), "message": fe.body(), "field": fe.field}))
        .collect();
    e.details = Some(serde_json::json!({
        "name": name, "group": t.group, "kind": t.kind, "causes": causes,
    }));
    e
}

// ---- Go's %#v, for the values the messages show ----

/// A string as Go's `%q` prints it.
pub fn go_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `map[string]string{"a":"b"}` (keys sorted, as fmt prints maps), or its nil form.
pub fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    let v = m.get(k).and_then(Value::as_str).unwrap_or_default();
                    format!("{}:{}", go_string(k), go_string(v))
                })
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
    }
}

/// `[]string{"a", "b"}`.
pub fn go_string_slice(items: &[&str]) -> String {
    let parts: Vec<String> = items.iter().map(|s| go_string(s)).collect();
    format!("[]string{{{}}}", parts.join(", "))
}

/// A `metav1.LabelSelector` as `%#v` prints it.
pub fn go_label_selector(sel: &Value) -> String {
    if sel.is_null() {
        return "null".to_string();
    }
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => {
                            let vs: Vec<&str> = vs.iter().filter_map(Value::as_str).collect();
                            go_string_slice(&vs)
                        }
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                        go_string(e["key"].as_str().unwrap_or_default()),
                        go_string(e["operator"].as_str().unwrap_or_default()),
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

/// A scalar (`3`, `true`, `"x"`) as the message shows it; `null` when unset.
pub fn go_scalar(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".to_string(),
        Some(Value::String(s)) => go_string(s),
        Some(other) => other.to_string(),
    }
}

/// A Go struct name for the fields of a pod template, where messages print whole structs.
fn go_type(field: &str) -> Option<&'static str> {
    Some(match field {
        "metadata" => "v1.ObjectMeta",
        "spec" => "core.PodSpec",
        "containers" | "initContainers" => "core.Container",
        "env" => "core.EnvVar",
        "ports" => "core.ContainerPort",
        "volumes" => "core.Volume",
        "volumeMounts" => "core.VolumeMount",
        "resources" => "core.ResourceRequirements",
        _ => return None,
    })
}

fn go_field_name(key: &str) -> String {
    let mut c = key.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// A JSON value in the shape of Go's `%#v` of the struct it decodes into: struct names
/// where the messages show them, exported field names, and only the fields that are set
/// (the API server prints every field, zero values included).
fn go_value(v: &Value, ty: Option<&str>) -> String {
    match v {
        Value::Object(m) => {
            if m.values().all(Value::is_string) && ty.is_none() {
                return go_string_map(Some(v));
            }
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .filter_map(|k| {
                    let x = m.get(k)?;
                    Some(format!("{}:{}", go_field_name(k), go_value(x, go_type(k))))
                })
                .collect();
            format!("{}{{{}}}", ty.unwrap_or(""), parts.join(", "))
        }
        Value::Array(items) => {
            let elem = ty.unwrap_or("interface {}");
            let parts: Vec<String> = items.iter().map(|x| go_value(x, ty)).collect();
            format!("[]{elem}{{{}}}", parts.join(", "))
        }
        other => go_scalar(Some(other)),
    }
}

/// A pod template (`core.PodTemplateSpec`) in the form the immutability message prints.
pub fn go_pod_template(template: &Value) -> String {
    go_value(template, Some("core.PodTemplateSpec"))
}

// ---- names and labels ----

const DNS1123_SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const DNS1123_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_LABEL: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const QUALIFIED_NAME: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The messages `IsDNS1123Label`, `IsDNS1123Subdomain` or `IsDNS1035Label` give for a name.
fn name_problems(kind: &str, group: &str, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    match (group, kind) {
        ("rbac.authorization.k8s.io", _) => {
            // Path segment names: anything but a few reserved forms.
            if name == "." || name == ".." {
                out.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    out.push(format!("may not contain '{bad}'"));
                }
            }
        }
        ("", "Namespace") => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            if !is_label(name) {
                out.push(DNS1123_LABEL.to_string());
            }
        }
        ("", "Service") => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            if !is_label(name) || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
                out.push(DNS1035_LABEL.to_string());
            }
        }
        _ => {
            if name.len() > 253 {
                out.push("must be no more than 253 characters".to_string());
            }
            if !name.split('.').all(is_label) {
                out.push(DNS1123_SUBDOMAIN.to_string());
            }
        }
    }
    out
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty()
        || (v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// Label keys and values under `field` (`metadata.labels`, `spec.selector.matchLabels`).
fn check_labels(labels: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    let Some(m) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in m {
        let (prefix, name) = match k.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, k.as_str()),
        };
        if name.is_empty() || name.len() > 63 || !label_value_ok(name) {
            let why = if name.len() > 63 {
                "name part must be no more than 63 characters"
            } else if name.is_empty() {
                "name part must be non-empty"
            } else {
                QUALIFIED_NAME
            };
            errs.push(FieldError::invalid(field, go_string(k), why));
        }
        if let Some(p) = prefix
            && (p.len() > 253 || !p.split('.').all(is_label))
        {
            errs.push(FieldError::invalid(
                field,
                go_string(k),
                &format!("prefix part {DNS1123_SUBDOMAIN}"),
            ));
        }
        let value = v.as_str().unwrap_or_default();
        if value.len() > 63 {
            errs.push(FieldError::invalid(
                field,
                go_string(value),
                "must be no more than 63 characters",
            ));
        }
        if !label_value_ok(value) {
            errs.push(FieldError::invalid(field, go_string(value), LABEL_VALUE));
        }
    }
}

fn meta_errors(t: &ResourceType, obj: &Value, errs: &mut Vec<FieldError>) {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    for why in name_problems(&t.kind, &t.group, name) {
        errs.push(FieldError::invalid("metadata.name", go_string(name), &why));
    }
    check_labels(obj.pointer("/metadata/labels"), "metadata.labels", errs);
}

// ---- workloads ----

/// The selector and template rules every workload with a pod template shares
/// (`ValidatePodTemplateSpecForReplicaSet` and friends).
fn workload_errors(obj: &Value, kind_word: &str, errs: &mut Vec<FieldError>) {
    let spec = &obj["spec"];
    if let Some(r) = spec.get("replicas").and_then(Value::as_i64)
        && r < 0
    {
        errs.push(FieldError::invalid(
            "spec.replicas",
            r.to_string(),
            "must be greater than or equal to 0",
        ));
    }
    let selector = spec.get("selector").filter(|s| !s.is_null());
    let parsed = match selector {
        None => {
            errs.push(FieldError::required("spec.selector", ""));
            None
        }
        Some(sel) => {
            check_labels(sel.get("matchLabels"), "spec.selector.matchLabels", errs);
            let empty = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
                && sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .is_none_or(|a| a.is_empty());
            if empty {
                errs.push(FieldError::invalid(
                    "spec.selector",
                    go_label_selector(sel),
                    &format!("empty selector is invalid for {kind_word}"),
                ));
            }
            match Selector::from_label_selector(sel) {
                Some(s) => Some(s),
                None => {
                    errs.push(FieldError::invalid(
                        "spec.selector",
                        go_label_selector(sel),
                        "invalid label selector",
                    ));
                    None
                }
            }
        }
    };
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    let labels = template.pointer("/metadata/labels");
    if let Some(sel) = parsed
        && !sel.is_empty()
        && !sel.matches_labels(labels.unwrap_or(&Value::Null))
    {
        errs.push(FieldError::invalid(
            "spec.template.metadata.labels",
            go_string_map(labels),
            "`selector` does not match template `labels`",
        ));
    }
    check_labels(labels, "spec.template.metadata.labels", errs);
    pod_spec_errors(template.get("spec"), "spec.template.spec", errs);
}

fn pod_spec_errors(spec: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required(&format!("{field}.containers"), "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required(&format!("{field}.containers"), ""))
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let at = format!("{field}.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => errs.push(FieldError::required(&format!("{at}.name"), "")),
                    Some(n) if !is_label(n) || n.len() > 63 => errs.push(FieldError::invalid(
                        &format!("{at}.name"),
                        go_string(n),
                        DNS1123_LABEL,
                    )),
                    Some(_) => {}
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s.trim().is_empty())
                {
                    errs.push(FieldError::required(&format!("{at}.image"), ""));
                }
            }
        }
    }
}

/// What a workload's pod template may use as its restart policy.
fn restart_policy_errors(obj: &Value, allowed: &[&str], errs: &mut Vec<FieldError>) {
    let policy = obj
        .pointer("/spec/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or(allowed[0]);
    if !allowed.contains(&policy) {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            go_string(policy),
            allowed,
        ));
    }
}

/// Validation of a new object, after defaulting.
pub fn on_create(t: &ResourceType, obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    meta_errors(t, obj, &mut errs);
    kind_errors(t, obj, &mut errs);
    errs
}

fn kind_errors(t: &ResourceType, obj: &Value, errs: &mut Vec<FieldError>) {
    match (t.group.as_str(), t.kind.as_str()) {
        ("apps", "Deployment") => {
            workload_errors(obj, "deployment", errs);
            restart_policy_errors(obj, &["Always"], errs);
        }
        ("apps", "ReplicaSet") => {
            workload_errors(obj, "replicaset", errs);
            restart_policy_errors(obj, &["Always"], errs);
        }
        ("apps", "StatefulSet") => {
            workload_errors(obj, "statefulset", errs);
            restart_policy_errors(obj, &["Always"], errs);
        }
        ("apps", "DaemonSet") => {
            workload_errors(obj, "daemonset", errs);
            restart_policy_errors(obj, &["Always"], errs);
        }
        ("batch", "Job") => {
            let spec = &obj["spec"];
            match spec.get("template").filter(|t| !t.is_null()) {
                None => errs.push(FieldError::required("spec.template", "")),
                Some(template) => {
                    pod_spec_errors(template.get("spec"), "spec.template.spec", errs);
                    let policy = template
                        .pointer("/spec/restartPolicy")
                        .and_then(Value::as_str)
                        .unwrap_or("Always");
                    if !matches!(policy, "Never" | "OnFailure") {
                        errs.push(FieldError::not_supported(
                            "spec.template.spec.restartPolicy",
                            go_string(policy),
                            &["OnFailure", "Never"],
                        ));
                    }
                }
            }
            if spec["manualSelector"] == true {
                let labels = spec.pointer("/template/metadata/labels");
                if let Some(sel) = spec.get("selector").and_then(Selector::from_label_selector)
                    && !sel.matches_labels(labels.unwrap_or(&Value::Null))
                {
                    errs.push(FieldError::invalid(
                        "spec.template.metadata.labels",
                        go_string_map(labels),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            for f in [
                "parallelism",
                "completions",
                "backoffLimit",
                "activeDeadlineSeconds",
            ] {
                if let Some(n) = spec.get(f).and_then(Value::as_i64)
                    && n < 0
                {
                    errs.push(FieldError::invalid(
                        &format!("spec.{f}"),
                        n.to_string(),
                        "must be greater than or equal to 0",
                    ));
                }
            }
        }
        ("", "Pod") => pod_spec_errors(obj.get("spec"), "spec", errs),
        ("", "Service") => {
            if let Some(sel) = obj.pointer("/spec/selector") {
                check_labels(Some(sel), "spec.selector", errs);
            }
            let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
            let external =
                obj.pointer("/spec/type").and_then(Value::as_str) == Some("ExternalName");
            let ports = obj.pointer("/spec/ports").and_then(Value::as_array);
            if ports.is_none_or(|p| p.is_empty()) && !headless && !external {
                errs.push(FieldError::required("spec.ports", ""));
            }
        }
        _ => {}
    }
}

/// Fields that may not change, and the rest of the update rules, after the new object has
/// had what the server keeps (e.g. an allocated cluster IP) copied over.
pub fn on_update(t: &ResourceType, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_labels(
        new.pointer("/metadata/labels"),
        "metadata.labels",
        &mut errs,
    );
    kind_errors(t, new, &mut errs);
    let spec = |o: &Value, f: &str| o.pointer(&format!("/spec/{f}")).cloned();
    let immutable = |f: &str, render: fn(&Value) -> String, errs: &mut Vec<FieldError>| {
        let (a, b) = (spec(old, f), spec(new, f));
        if a != b {
            let shown = b.as_ref().map_or("null".to_string(), render);
            errs.push(FieldError::invalid(
                &format!("spec.{f}"),
                shown,
                "field is immutable",
            ));
        }
    };
    match (t.group.as_str(), t.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable("selector", go_label_selector, &mut errs);
        }
        ("apps", "StatefulSet") => {
            let mutable = [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let strip = |o: &Value| {
                let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    for f in mutable {
                        m.remove(f);
                    }
                }
                s
            };
            if strip(old) != strip(new) {
                errs.push(FieldError::forbidden(
                    "spec",
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        ("batch", "Job") => {
            immutable("completions", |v| go_scalar(Some(v)), &mut errs);
            immutable("selector", go_label_selector, &mut errs);
            immutable("template", go_pod_template, &mut errs);
            immutable("completionMode", |v| go_scalar(Some(v)), &mut errs);
        }
        ("", "Service") => {
            let ip = |o: &Value| {
                o.pointer("/spec/clusterIP")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (was, now) = (ip(old), ip(new));
            if !was.is_empty() && was != now {
                errs.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    go_string_slice(&[now.as_str()]),
                    "may not change once set",
                ));
            }
        }
        ("", "PersistentVolumeClaim") => {
            let strip = |o: &Value| {
                let mut s = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = s.as_object_mut() {
                    m.remove("volumeAttributesClassName");
                    if let Some(r) = m.get_mut("resources").and_then(Value::as_object_mut) {
                        r.remove("requests");
                    }
                }
                s
            };
            let (a, b) = (strip(old), strip(new));
            if a != b {
                errs.push(FieldError::forbidden(
                    "spec",
                    &format!(
                        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims\n{}",
                        spec_diff(&a, &b)
                    ),
                ));
            }
        }
        ("", "ConfigMap" | "Secret") if old["immutable"] == true => {
            if new["immutable"] != true {
                errs.push(FieldError::forbidden(
                    "immutable",
                    "field is immutable when `immutable` is set",
                ));
            }
            for f in ["data", "binaryData", "stringData"] {
                if old.get(f) != new.get(f) && f != "stringData" {
                    errs.push(FieldError::forbidden(
                        f,
                        "field is immutable when `immutable` is set",
                    ));
                }
            }
        }
        _ => {}
    }
    errs
}

/// The changed top-level fields of a spec, one `-`/`+` pair a field, in the spirit of the
/// diff the API server appends.
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let (a, b) = (
        old.as_object().unwrap_or(&empty),
        new.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = vec!["  core.PersistentVolumeClaimSpec{".to_string()];
    for k in keys {
        let (x, y) = (a.get(k), b.get(k));
        if x != y {
            if let Some(x) = x {
                out.push(format!("- \t{}: {},", go_field_name(k), go_value(x, None)));
            }
            if let Some(y) = y {
                out.push(format!("+ \t{}: {},", go_field_name(k), go_value(y, None)));
            }
        }
    }
    out.push("  }".to_string());
    out.join("\n")
}

/// The part of update handling the API server does before validating: values it allocated
/// are kept when the client leaves them out.
pub fn keep_allocated(t: &ResourceType, old: &Value, new: &mut Value) {
    if t.group.is_empty() && t.kind == "Service" {
        let unset = new
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if unset && let Some(ip) = old.pointer("/spec/clusterIP").cloned() {
            new["spec"]["clusterIP"] = ip;
            if let Some(ips) = old.pointer("/spec/clusterIPs").cloned() {
                new["spec"]["clusterIPs"] = ips;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_print_as_go_does() {
        assert_eq!(
            go_label_selector(&json!({"matchLabels": {"b": "2", "a": "1"}})),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"a":"1", "b":"2"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
    }

    #[test]
    fn names_are_checked_per_kind() {
        assert!(name_problems("ConfigMap", "", "a.b-c").is_empty());
        assert_eq!(
            name_problems("ConfigMap", "", "Bad_Name"),
            [DNS1123_SUBDOMAIN]
        );
        assert_eq!(name_problems("Namespace", "", "a.b"), [DNS1123_LABEL]);
        assert_eq!(name_problems("Service", "", "1abc"), [DNS1035_LABEL]);
        assert!(
            name_problems("ClusterRole", "rbac.authorization.k8s.io", "system:view").is_empty()
        );
    }

    #[test]
    fn a_changed_selector_is_immutable() {
        let t = crate::resources::Registry::default()
            .by_kind("apps", "v1", "Deployment")
            .cloned()
            .expect("served");
        let d = |app: &str| {
            json!({"metadata": {"name": "web"}, "spec": {
                "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": app}},
                             "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
        };
        let errs = on_update(&t, &d("a"), &d("b"));
        let e = invalid(&t, "web", &errs);
        assert_eq!(
            e.message,
            r#"Deployment.apps "web" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"b"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
        );
        let mut mismatched = d("a");
        mismatched["spec"]["template"]["metadata"]["labels"]["app"] = json!("z");
        let errs = on_create(&t, &mismatched);
        assert_eq!(
            errs[0].to_string(),
            r#"spec.template.metadata.labels: Invalid value: map[string]string{"app":"z"}: `selector` does not match template `labels`"#
        );
    }
}
