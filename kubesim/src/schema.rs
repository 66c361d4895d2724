//! Built-in kinds checked against the real Kubernetes 1.35 schemas, as the API server's
//! decoder checks them: fields the type does not have are dropped (and reported or refused,
//! by `fieldValidation`), a value of the wrong type refuses the request with the decoder's
//! message, and fields the schema requires are required.
//!
//! The schemas are the bundle `scripts/setup-kube-schemas.sh` extracts from the
//! kubernetes-validate package, embedded at build time; without it [`available`] is false
//! and only kubesim's own rules apply.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::{Map, Value};

use crate::resources::ResourceType;
use crate::validation::FieldError;

static BUNDLE: &str = include_str!(concat!(env!("OUT_DIR"), "/kube-schemas.json"));

/// How unknown fields are treated (`?fieldValidation=`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refused with 400.
    Strict,
    /// Dropped, with a `Warning` header each; the API server's default.
    Warn,
    /// Dropped silently.
    #[default]
    Ignore,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Result<Self, String> {
        match s.unwrap_or("") {
            "Strict" => Ok(FieldValidation::Strict),
            "Warn" | "" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(format!(
                "fieldValidation parameter unsupported value: {other:?}; supported values: \"Ignore\", \"Warn\", \"Strict\""
            )),
        }
    }
}

pub struct Schemas {
    defs: Map<String, Value>,
    /// (group, version, kind) to the definition's name.
    kinds: HashMap<(String, String, String), String>,
}

fn load() -> Option<Schemas> {
    let mut bundle: Value = serde_json::from_str(BUNDLE).ok()?;
    let Value::Object(defs) = bundle.get_mut("definitions")?.take() else {
        return None;
    };
    let mut kinds = HashMap::new();
    for (name, d) in &defs {
        for gvk in d
            .get("x-kubernetes-group-version-kind")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let f = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            kinds.insert((f("group"), f("version"), f("kind")), name.clone());
        }
    }
    Some(Schemas { defs, kinds })
}

pub fn schemas() -> Option<&'static Schemas> {
    static SCHEMAS: OnceLock<Option<Schemas>> = OnceLock::new();
    SCHEMAS.get_or_init(load).as_ref()
}

/// Whether the 1.35 schema bundle was embedded at build time.
pub fn available() -> bool {
    schemas().is_some()
}

/// What checking one object found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Paths of fields the type does not have (`spec.template.spec.containers[0].foo`);
    /// they have been removed from the object.
    pub unknown: Vec<String>,
    /// The decoder's complaint about the first value of the wrong type.
    pub type_error: Option<String>,
    /// Fields the schema requires that are missing; for a custom resource, every error
    /// its structural schema's validator finds.
    pub required: Vec<FieldError>,
}

/// Where the walk is, in the two spellings the messages use.
struct At<'a> {
    /// With indices, for unknown and required fields.
    path: String,
    /// Dotted from the root without indices, and the innermost struct, for Go's decoder.
    go_path: String,
    go_struct: &'a str,
    in_status: bool,
}

fn def_name(schema: &Value) -> Option<&str> {
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
}

fn types(schema: &Value) -> Vec<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

fn fits(v: &Value, ty: &str) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Schemas {
    fn resolve<'a>(&'a self, schema: &'a Value) -> (&'a Value, Option<&'a str>) {
        match def_name(schema) {
            Some(name) => match self.defs.get(name) {
                Some(d) => (d, Some(name)),
                None => (schema, None),
            },
            None => (schema, None),
        }
    }

    /// The Go type a value decodes into, as the decoder's message names it.
    fn go_type(&self, schema: &Value) -> String {
        if let Some(name) = def_name(schema) {
            return match name {
                "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => "intstr.IntOrString".into(),
                "io.k8s.apimachinery.pkg.api.resource.Quantity" => "resource.Quantity".into(),
                _ => {
                    let parts: Vec<&str> = name.rsplitn(3, '.').collect();
                    match parts.as_slice() {
                        [ty, version, ..] => format!("{version}.{ty}"),
                        _ => name.to_string(),
                    }
                }
            };
        }
        let ts = types(schema);
        match ts.first().copied() {
            Some("array") => format!(
                "[]{}",
                schema
                    .get("items")
                    .map_or("interface {}".into(), |i| self.go_type(i))
            ),
            Some("object") => match schema.get("additionalProperties") {
                Some(ap) if ap.is_object() => format!("map[string]{}", self.go_type(ap)),
                _ => "map[string]interface {}".into(),
            },
            Some("integer") => match schema.get("format").and_then(Value::as_str) {
                Some("int32") => "int32".into(),
                _ => "int64".into(),
            },
            Some("number") => "float64".into(),
            Some("boolean") => "bool".into(),
            Some("string") => match schema.get("format").and_then(Value::as_str) {
                Some("byte") => "[]uint8".into(),
                _ => "string".into(),
            },
            _ => "interface {}".into(),
        }
    }

    fn walk(&self, v: &mut Value, schema: &Value, at: &At, f: &mut Findings) {
        if v.is_null() {
            return;
        }
        let (schema, def) = self.resolve(schema);
        let go_struct = def
            .and_then(|d| d.rsplit('.').next())
            .unwrap_or(at.go_struct);
        if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
            let ok = alts.iter().any(|a| {
                let ts = types(a);
                ts.is_empty() || ts.iter().any(|t| fits(v, t))
            });
            if !ok && f.type_error.is_none() {
                f.type_error = Some(self.type_message(v, schema, at, def));
            }
            return;
        }
        let ts = types(schema);
        if !ts.is_empty() && !ts.iter().any(|t| fits(v, t)) {
            if f.type_error.is_none() {
                f.type_error = Some(self.type_message(v, schema, at, def));
            }
            return;
        }
        match v {
            Value::Object(m) => {
                let props = schema.get("properties").and_then(Value::as_object);
                let extra = schema.get("additionalProperties");
                if props.is_none() && !extra.is_some_and(Value::is_object) {
                    // Free-form (RawExtension, FieldsV1, JSON): anything goes.
                    return;
                }
                let keys: Vec<String> = m.keys().cloned().collect();
                for k in keys {
                    let sub = props
                        .and_then(|p| p.get(&k))
                        .or(extra.filter(|e| e.is_object()));
                    match sub {
                        Some(sub) => {
                            let in_map = props.and_then(|p| p.get(&k)).is_none();
                            let child = At {
                                path: join(&at.path, &k),
                                go_path: if in_map {
                                    at.go_path.clone()
                                } else {
                                    join(&at.go_path, &k)
                                },
                                go_struct,
                                in_status: at.in_status || (at.path.is_empty() && k == "status"),
                            };
                            if let Some(x) = m.get_mut(&k) {
                                self.walk(x, sub, &child, f);
                            }
                        }
                        None => {
                            f.unknown.push(join(&at.path, &k));
                            m.remove(&k);
                        }
                    }
                }
                if !at.in_status {
                    for r in schema
                        .get("required")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                    {
                        if m.get(r).is_none_or(Value::is_null) {
                            f.required
                                .push(FieldError::required(&join(&at.path, r), ""));
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, x) in items.iter_mut().enumerate() {
                        let child = At {
                            path: format!("{}[{i}]", at.path),
                            go_path: at.go_path.clone(),
                            go_struct,
                            in_status: at.in_status,
                        };
                        self.walk(x, item_schema, &child, f);
                    }
                }
            }
            _ => {}
        }
    }

    fn type_message(&self, v: &Value, schema: &Value, at: &At, def: Option<&str>) -> String {
        let target = match def {
            Some(d) => self.go_type(&serde_json::json!({"$ref": format!("#/$defs/{d}")})),
            None => self.go_type(schema),
        };
        let got = match v {
            Value::Number(n) if schema.get("type").is_some() => {
                if types(schema).contains(&"integer") {
                    format!("number {n}")
                } else {
                    "number".to_string()
                }
            }
            other => json_kind(other).to_string(),
        };
        format!(
            "json: cannot unmarshal {got} into Go struct field {}.{} of type {target}",
            at.go_struct, at.go_path
        )
    }

    /// Checks an object of a built-in type, removing the fields the type does not have.
    /// `None` when the type has no schema here (custom resources, or no bundle).
    pub fn check(&self, t: &ResourceType, obj: &mut Value) -> Option<Findings> {
        let name = self
            .kinds
            .get(&(t.group.clone(), t.version.clone(), t.kind.clone()))?;
        let schema = self.defs.get(name)?;
        let mut f = Findings::default();
        let at = At {
            path: String::new(),
            go_path: String::new(),
            go_struct: name.rsplit('.').next().unwrap_or(name),
            in_status: false,
        };
        self.walk(obj, schema, &at, &mut f);
        Some(f)
    }

    /// The fields of a custom resource's `metadata` that `ObjectMeta` does not have, as
    /// `metadata.x` paths; they are removed. Custom resources decode their metadata as the
    /// built-in kinds do, whatever their own schema says.
    pub fn unknown_metadata(&self, obj: &mut Value) -> Vec<String> {
        const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
        let (Some(schema), Some(md)) = (self.defs.get(OBJECT_META), obj.get_mut("metadata")) else {
            return Vec::new();
        };
        let mut f = Findings::default();
        let at = At {
            path: "metadata".to_string(),
            go_path: "metadata".to_string(),
            go_struct: "ObjectMeta",
            in_status: false,
        };
        self.walk(md, schema, &at, &mut f);
        f.unknown
    }

    /// The schema of one kind with every reference it makes, for the OpenAPI documents.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.defs.get(name)
    }

    /// The definition name a kind's schema has.
    pub fn kind_definition(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        self.kinds
            .get(&(group.to_string(), version.to_string(), kind.to_string()))
            .map(String::as_str)
    }

    /// Every definition name reachable from `roots`.
    pub fn closure(&self, roots: &[&str]) -> Vec<String> {
        let mut keep: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut todo: Vec<String> = roots.iter().map(|s| s.to_string()).collect();
        while let Some(name) = todo.pop() {
            if !keep.insert(name.clone()) {
                continue;
            }
            let Some(d) = self.defs.get(&name) else {
                continue;
            };
            let mut stack = vec![d];
            while let Some(node) = stack.pop() {
                match node {
                    Value::Object(m) => {
                        if let Some(r) = def_name(node)
                            && !keep.contains(r)
                        {
                            todo.push(r.to_string());
                        }
                        stack.extend(m.values());
                    }
                    Value::Array(a) => stack.extend(a),
                    _ => {}
                }
            }
        }
        keep.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment_type() -> ResourceType {
        crate::resources::Registry::default()
            .by_kind("apps", "v1", "Deployment")
            .cloned()
            .expect("served")
    }

    #[test]
    fn unknown_fields_are_found_and_dropped_and_types_checked() {
        let Some(s) = schemas() else {
            let hint = "the Kubernetes schema bundle is missing: run scripts/setup-kube-schemas.sh";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{hint}");
            }
            eprintln!("skipping: {hint}");
            return;
        };
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}},
            "spec": {"replicas": "3", "foo": 1, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"spec": {"containers": [{"name": "c", "imagee": "x"}]}}}});
        let f = s
            .check(&deployment_type(), &mut d)
            .expect("a schema for Deployment");
        assert_eq!(
            f.unknown,
            ["spec.foo", "spec.template.spec.containers[0].imagee"]
        );
        assert!(d["spec"].get("foo").is_none());
        assert_eq!(
            f.type_error.as_deref(),
            Some(
                "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"
            )
        );
        let cm_t = crate::resources::Registry::default()
            .by_kind("", "v1", "ConfigMap")
            .cloned()
            .expect("served");
        let mut cm = json!({"metadata": {"name": "x"}, "data": {"n": 1}});
        let f = s.check(&cm_t, &mut cm).expect("a schema for ConfigMap");
        assert_eq!(
            f.type_error.as_deref(),
            Some(
                "json: cannot unmarshal number into Go struct field ConfigMap.data of type string"
            )
        );
    }
}
