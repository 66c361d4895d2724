//! Custom resources against the structural schema of their CustomResourceDefinition
//! version, in the order the API server applies it: the decoder prunes fields the schema
//! does not declare (unless `x-kubernetes-preserve-unknown-fields` keeps them at that level),
//! drops nulls the schema does not allow, fills in `default`s, and then the validator checks
//! types, `enum`, `required` and the bounds. Errors are worded as the API server words them
//! (kube-openapi's messages inside `field.Error`s), so clients print what a cluster would.
//!
//! `allOf`/`anyOf`/`oneOf`/`not`, `pattern`, `format`s and CEL rules are not enforced.

use serde_json::{Map, Value};

use crate::validation::{ErrorType, FieldError, go_string};

/// What checking one custom resource found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Fields the schema does not declare, sorted; they have been removed.
    pub unknown: Vec<String>,
    /// What the schema validator refuses.
    pub errors: Vec<FieldError>,
}

/// Prunes, defaults and validates `obj` (a whole custom resource) against `schema` (the
/// version's `openAPIV3Schema`).
pub fn check(schema: &Value, obj: &mut Value) -> Findings {
    let mut unknown = Vec::new();
    prune(obj, Some(schema), "", true, &mut unknown);
    unknown.sort();
    drop_nulls(obj, Some(schema));
    apply_defaults(obj, schema);
    let mut errors = Vec::new();
    validate(obj, schema, "", &mut errors);
    Findings { unknown, errors }
}

/// The fields every object has whatever its schema says: never pruned at a resource root.
const META: [&str; 3] = ["apiVersion", "kind", "metadata"];

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

fn property<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.get("properties").and_then(|p| p.get(key))
}

/// The schema of map values, when `additionalProperties` is one.
fn additional(s: &Value) -> Option<&Value> {
    s.get("additionalProperties").filter(|a| a.is_object())
}

fn field_schema<'a>(s: Option<&'a Value>, key: &str) -> Option<&'a Value> {
    s.and_then(|s| property(s, key).or_else(|| additional(s)))
}

fn items(s: Option<&Value>) -> Option<&Value> {
    s.and_then(|s| s.get("items")).filter(|i| i.is_object())
}

fn default_of(s: &Value) -> Option<&Value> {
    s.get("default").filter(|d| !d.is_null())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes undeclared fields, recording their paths. A resource root and an embedded
/// resource keep `apiVersion`, `kind` and `metadata`; an object without a schema loses all.
fn prune(x: &mut Value, s: Option<&Value>, path: &str, root: bool, out: &mut Vec<String>) {
    if let Some(s) = s
        && flag(s, "x-kubernetes-preserve-unknown-fields")
    {
        keep_unknown(x, s, path, root, out);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                out.extend(m.keys().map(|k| join(path, k)));
                m.clear();
                return;
            };
            let embedded = root || flag(s, "x-kubernetes-embedded-resource");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if embedded && META.contains(&k.as_str()) {
                    continue;
                }
                match property(s, &k).or_else(|| additional(s)) {
                    Some(sub) => {
                        if let Some(v) = m.get_mut(&k) {
                            prune(v, Some(sub), &join(path, &k), false, out);
                        }
                    }
                    None => {
                        if !META.contains(&k.as_str()) || !path.is_empty() {
                            out.push(join(path, &k));
                        }
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(a) => {
            let sub = items(s);
            for (i, v) in a.iter_mut().enumerate() {
                prune(v, sub, &format!("{path}[{i}]"), false, out);
            }
        }
        _ => {}
    }
}

/// Under `x-kubernetes-preserve-unknown-fields`: undeclared fields stay, declared ones are
/// still pruned by their own schemas.
fn keep_unknown(x: &mut Value, s: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    match x {
        Value::Object(m) => {
            let embedded = root || flag(s, "x-kubernetes-embedded-resource");
            for (k, v) in m.iter_mut() {
                if embedded && META.contains(&k.as_str()) {
                    continue;
                }
                if let Some(sub) = property(s, k).or_else(|| additional(s)) {
                    prune(v, Some(sub), &join(path, k), false, out);
                }
            }
        }
        Value::Array(a) => {
            if let Some(sub) = items(Some(s)) {
                for (i, v) in a.iter_mut().enumerate() {
                    keep_unknown(v, sub, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

/// A null where the schema is neither `nullable` nor defaulted is dropped, as if unset.
fn drop_nulls(x: &mut Value, s: Option<&Value>) {
    match x {
        Value::Object(m) => {
            m.retain(|k, v| {
                let sub = field_schema(s, k);
                let droppable = v.is_null()
                    && sub.is_some_and(|sub| !flag(sub, "nullable") && default_of(sub).is_none());
                if !droppable {
                    drop_nulls(v, sub);
                }
                !droppable
            });
        }
        Value::Array(a) => {
            let sub = items(s);
            for v in a {
                drop_nulls(v, sub);
            }
        }
        _ => {}
    }
}

/// Whether `default` replaces `v`: it is a null the schema does not allow.
fn defaults_null(v: &Value, s: &Value) -> bool {
    v.is_null() && !flag(s, "nullable")
}

/// Fills in unset (or disallowed null) fields from `default`, then descends, so defaults
/// inside a defaulted object apply too.
fn apply_defaults(x: &mut Value, s: &Value) {
    match x {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, p) in props {
                    if let Some(d) = default_of(p)
                        && m.get(k).is_none_or(|v| defaults_null(v, p))
                    {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, v) in m.iter_mut() {
                if let Some(p) = property(s, k) {
                    apply_defaults(v, p);
                } else if let Some(a) = additional(s) {
                    if let Some(d) = default_of(a)
                        && defaults_null(v, a)
                    {
                        *v = d.clone();
                    }
                    apply_defaults(v, a);
                }
            }
        }
        Value::Array(a) => {
            if let Some(sub) = items(Some(s)) {
                for v in a {
                    if let Some(d) = default_of(sub)
                        && defaults_null(v, sub)
                    {
                        *v = d.clone();
                    }
                    apply_defaults(v, sub);
                }
            }
        }
        _ => {}
    }
}

/// The JSON type a value has, as kube-openapi names it, and its Go format.
fn type_of(v: &Value) -> (&'static str, &'static str) {
    match v {
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if n.is_f64() => ("number", "float64"),
        Value::Number(_) => ("integer", "int64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
        Value::Null => ("null", ""),
    }
}

fn declared_types(s: &Value) -> Vec<&str> {
    if flag(s, "x-kubernetes-int-or-string") {
        return vec!["integer", "string"];
    }
    s.get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .into_iter()
        .collect()
}

/// `in body must be of type T: "got"`, as kube-openapi's type validator says it.
fn type_error(path: &str, want: &str, got: &str) -> FieldError {
    FieldError {
        kind: ErrorType::TypeInvalid,
        field: path.to_string(),
        value: Some(go_string(got)),
        detail: format!("{path} in body must be of type {want}: {}", go_string(got)),
    }
}

fn check_type(x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let types = declared_types(s);
    let format = s.get("format").and_then(Value::as_str).unwrap_or_default();
    if x.is_null() {
        if !types.is_empty() && !flag(s, "nullable") {
            errs.push(type_error(path, &types.join(","), "null"));
        }
        return;
    }
    let (got, got_format) = type_of(x);
    let has = |t: &str| types.contains(&t);
    let float_int =
        got == "number" && has("integer") && x.as_f64().is_some_and(|f| f.fract() == 0.0);
    let int_float = got == "integer" && has("number");
    let textual = x.is_string() || x.is_array();
    let numeric = has("number") || has("integer");
    let fits = has(got) || float_int || int_float;
    let formatted = !format.is_empty();
    if !textual && formatted && !fits && got_format != format {
        errs.push(type_error(path, format, got_format));
        return;
    }
    // A formatted string (or byte array) passes where no number is asked for.
    let formatted_text = textual && formatted && !numeric;
    if !formatted_text && !types.is_empty() && !fits {
        errs.push(type_error(path, &types.join(","), got));
    }
}

/// A bound from the schema (`minimum`, `maxLength`, ...).
fn bound(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn count(s: &Value, key: &str) -> Option<usize> {
    s.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
}

fn invalid(path: &str, x: &Value, detail: String) -> FieldError {
    FieldError {
        kind: ErrorType::Invalid,
        field: path.to_string(),
        value: Some(bad_value(x)),
        detail,
    }
}

fn check_number(x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(n) = x.as_f64() else { return };
    if let Some(min) = bound(s, "minimum") {
        let exclusive = flag(s, "exclusiveMinimum");
        if n < min || (exclusive && n == min) {
            let word = if exclusive {
                "greater than"
            } else {
                "greater than or equal to"
            };
            let detail = format!("{path} in body should be {word} {}", go_float(min));
            errs.push(invalid(path, x, detail));
        }
    }
    if let Some(max) = bound(s, "maximum") {
        let exclusive = flag(s, "exclusiveMaximum");
        if n > max || (exclusive && n == max) {
            let word = if exclusive {
                "less than"
            } else {
                "less than or equal to"
            };
            let detail = format!("{path} in body should be {word} {}", go_float(max));
            errs.push(invalid(path, x, detail));
        }
    }
}

fn check_string(text: &str, x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let chars = text.chars().count();
    if let Some(max) = count(s, "maxLength")
        && chars > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        errs.push(FieldError {
            kind: ErrorType::TooLong,
            field: path.to_string(),
            value: None,
            detail: format!("may not be more than {max} {unit}"),
        });
        return;
    }
    if let Some(min) = count(s, "minLength")
        && chars < min
    {
        let detail = format!("{path} in body should be at least {min} chars long");
        errs.push(invalid(path, x, detail));
    }
}

fn check_items(a: &[Value], s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if let Some(min) = count(s, "minItems")
        && a.len() < min
    {
        let detail = format!("{path} in body should have at least {min} items");
        errs.push(invalid(path, &Value::from(a.len()), detail));
    }
    if let Some(max) = count(s, "maxItems")
        && a.len() > max
    {
        let unit = if max == 1 { "item" } else { "items" };
        errs.push(FieldError {
            kind: ErrorType::TooMany,
            field: path.to_string(),
            value: Some(a.len().to_string()),
            detail: format!("must have at most {max} {unit}"),
        });
    }
    if let Some(sub) = items(Some(s)) {
        for (i, v) in a.iter().enumerate() {
            validate(v, sub, &format!("{path}[{i}]"), errs);
        }
    }
}

fn check_enum(x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(allowed) = s.get("enum").and_then(Value::as_array) else {
        return;
    };
    let same = |a: &Value| match (a, x) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => a == x,
    };
    if allowed.is_empty() || allowed.iter().any(same) {
        return;
    }
    let listed: Vec<String> = allowed
        .iter()
        .map(|a| match a {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    errs.push(FieldError::not_supported(path, bad_value(x), &listed));
}

fn check_object(m: &Map<String, Value>, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let props = s.get("properties").and_then(Value::as_object);
    for (k, v) in m {
        if let Some(sub) = props.and_then(|p| p.get(k)).or_else(|| additional(s)) {
            validate(v, sub, &join(path, k), errs);
        }
    }
    for r in s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !m.contains_key(r) {
            errs.push(FieldError::required(&join(path, r), ""));
        }
    }
}

/// The validators kube-openapi runs on one value, in its order: type, string, number,
/// array, enum, object. A failed type check does not stop the others.
fn validate(x: &Value, s: &Value, path: &str, errs: &mut Vec<FieldError>) {
    check_type(x, s, path, errs);
    match x {
        Value::String(text) => check_string(text, x, s, path, errs),
        Value::Number(_) => check_number(x, s, path, errs),
        Value::Array(a) => check_items(a, s, path, errs),
        _ => {}
    }
    check_enum(x, s, path, errs);
    if let Value::Object(m) = x {
        check_object(m, s, path, errs);
    }
}

/// A bad value as `field.Error` prints it: strings quoted, scalars bare, the rest as JSON.
fn bad_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_string(s),
        Value::Number(n) if n.is_f64() => n.as_f64().map_or_else(|| n.to_string(), go_float),
        other => other.to_string(),
    }
}

/// A float64 as Go's `%v` prints it: the shortest digits, in exponent form below 1e-4 and
/// from 1e+06 up.
fn go_float(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return "0".into();
    }
    let sci = format!("{f:e}");
    let Some((mantissa, exp)) = sci.split_once('e') else {
        return f.to_string();
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return f.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget_schema() -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["size"], "properties": {
                "size": {"type": "integer", "minimum": 1},
                "color": {"type": "string", "enum": ["red", "green"], "default": "red"},
                "limits": {"type": "object", "default": {}, "properties": {
                    "cpu": {"type": "string", "default": "100m"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                          "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                "ports": {"type": "array", "maxItems": 2, "items": {"type": "object",
                          "properties": {"port": {"type": "integer"}}}},
                "note": {"type": "string"},
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
        }})
    }

    #[test]
    fn prunes_undeclared_fields_unless_preserved_and_keeps_the_object_header() {
        let mut o = json!({"apiVersion": "x/v1", "kind": "Widget", "metadata": {"name": "w"},
            "top": 1,
            "spec": {"size": 1, "foo": 2, "ports": [{"port": 80, "name": "http"}],
                     "extra": {"anything": {"deep": 1}, "known": {"a": "x", "b": "y"}}}});
        let f = check(&widget_schema(), &mut o);
        assert_eq!(
            f.unknown,
            [
                "spec.extra.known.b",
                "spec.foo",
                "spec.ports[0].name",
                "top"
            ]
        );
        assert_eq!(o["spec"]["extra"]["anything"]["deep"], 1);
        assert_eq!(o["metadata"]["name"], "w");
        assert_eq!(o["kind"], "Widget");
        assert!(f.errors.is_empty(), "{:?}", f.errors);
    }

    #[test]
    fn defaults_fill_unset_fields_and_nested_defaults_apply_inside_them() {
        let mut o = json!({"spec": {"size": 2, "note": null}});
        let f = check(&widget_schema(), &mut o);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(o["spec"]["color"], "red");
        assert_eq!(o["spec"]["limits"], json!({"cpu": "100m"}));
        assert!(
            o["spec"].get("note").is_none(),
            "a disallowed null is dropped"
        );
        let mut o = json!({"spec": {"size": 2, "color": "green"}});
        check(&widget_schema(), &mut o);
        assert_eq!(o["spec"]["color"], "green", "set values win");
    }

    #[test]
    fn validation_errors_are_worded_as_the_api_server_words_them() {
        let mut o = json!({"spec": {"size": "3", "color": "purple",
            "labels": {"a": 1}, "ports": [{}, {}, {}]}});
        let f = check(&widget_schema(), &mut o);
        let text: Vec<String> = f.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "spec.color: Unsupported value: \"purple\": supported values: \"red\", \"green\"",
                "spec.labels.a: Invalid value: \"integer\": spec.labels.a in body must be of type string: \"integer\"",
                "spec.ports: Too many: 3: must have at most 2 items",
                "spec.size: Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
            ]
        );
        assert_eq!(f.errors[3].kind.reason(), "FieldValueTypeInvalid");
        let mut o = json!({"spec": {"size": 0}});
        let f = check(&widget_schema(), &mut o);
        assert_eq!(
            f.errors[0].to_string(),
            "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"
        );
        let mut o = json!({"spec": {}});
        let f = check(&widget_schema(), &mut o);
        assert_eq!(f.errors[0].to_string(), "spec.size: Required value");
    }

    #[test]
    fn floats_print_as_go_prints_them() {
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(2.5), "2.5");
        assert_eq!(go_float(100000.0), "100000");
        assert_eq!(go_float(1e6), "1e+06");
        assert_eq!(go_float(1234567.0), "1.234567e+06");
        assert_eq!(go_float(0.00001), "1e-05");
    }
}
