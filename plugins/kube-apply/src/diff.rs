//! What `plan` shows of an object: the fields that change, and the object before and after
//! as YAML for the host to diff, with what the server maintains left out and Secret values
//! masked.

use std::collections::BTreeSet;

use serde_json::{Value, json};

/// Drops what the API server maintains, so only what an apply can change is compared.
pub fn strip(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(md) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for k in [
                "resourceVersion",
                "managedFields",
                "generation",
                "creationTimestamp",
                "uid",
                "selfLink",
            ] {
                md.remove(k);
            }
            if let Some(a) = md.get_mut("annotations").and_then(Value::as_object_mut) {
                a.remove("deployment.kubernetes.io/revision");
                a.remove("kubectl.kubernetes.io/last-applied-configuration");
                if a.is_empty() {
                    md.remove("annotations");
                }
            }
        }
    }
    v
}

/// Every leaf that differs, as `path: old → new` (or `+ new` / `removed`).
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(before, after, String::new(), &mut out);
    out
}

fn walk(a: &Value, b: &Value, at: String, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => walk(l, r, path, out),
                    (None, Some(r)) => out.push(format!("{path}: + {}", short(r))),
                    (Some(_), None) => out.push(format!("{path}: removed")),
                    (None, None) => {}
                }
            }
        }
        _ if a != b => {
            let (before, after) = short_pair(a, b);
            out.push(format!("{at}: {before} → {after}"));
        }
        _ => {}
    }
}

/// Both sides of a change, shortened around where they first differ, so two long values
/// that share a beginning (an image bumped at the end of a long name) do not read the same.
fn short_pair(a: &Value, b: &Value) -> (String, String) {
    let (x, y) = (a.to_string(), b.to_string());
    let (sx, sy) = (short(a), short(b));
    if sx != sy {
        return (sx, sy);
    }
    let differ = x
        .char_indices()
        .zip(y.chars())
        .find(|((_, p), q)| p != q)
        .map_or(x.len().min(y.len()), |((i, _), _)| i);
    let from = x[..differ]
        .char_indices()
        .rev()
        .nth(20)
        .map_or(0, |(i, _)| i);
    let cut = |s: &str| {
        let tail = &s[from..];
        let tail = match tail.char_indices().nth(80) {
            Some((i, _)) => format!("{}…", &tail[..i]),
            None => tail.to_string(),
        };
        format!("…{tail}")
    };
    (cut(&x), cut(&y))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// Replaces a Secret's values with `***`, keeping whether each one changes visible.
pub fn mask_secret(object: &mut Value, other: Option<&Value>) {
    if object["kind"] != "Secret" {
        return;
    }
    for field in ["data", "stringData"] {
        let theirs = other.and_then(|o| o.get(field)).cloned();
        if let Some(map) = object.get_mut(field).and_then(Value::as_object_mut) {
            for (k, v) in map.iter_mut() {
                let same = theirs.as_ref().and_then(|t| t.get(k)) == Some(&*v);
                *v = json!(if same || theirs.is_none() {
                    "***"
                } else {
                    "*** (changed)"
                });
            }
        }
    }
}

/// The object as YAML for people; a Secret comes masked.
pub fn to_yaml(object: &Value) -> String {
    serde_saphyr::to_string(object)
        .unwrap_or_else(|_| serde_json::to_string_pretty(object).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_ignore_server_fields() {
        let live = json!({"metadata": {"resourceVersion": "1", "name": "a"}, "spec": {"replicas": 1}, "status": {"x": 1}});
        let after = json!({"metadata": {"resourceVersion": "2", "name": "a"}, "spec": {"replicas": 3}, "status": {"x": 2}});
        assert_eq!(
            changed_fields(&strip(live.clone()), &strip(after)),
            vec!["spec.replicas: 1 → 3"]
        );
        assert!(changed_fields(&strip(live.clone()), &strip(live)).is_empty());
    }

    #[test]
    fn long_values_differing_at_the_end_read_differently() {
        let name = "registry.example.com/team/shop/web-frontend-with-a-rather-long-name-indeed";
        let fields = changed_fields(
            &json!({"image": format!("{name}:1.0.1")}),
            &json!({"image": format!("{name}:1.0.2")}),
        );
        assert_eq!(fields.len(), 1);
        let (before, after) = fields[0]
            .split_once(" → ")
            .unwrap_or_else(|| panic!("{fields:?}"));
        assert_ne!(before.trim_start_matches("image: "), after, "{fields:?}");
        assert!(
            before.contains("1.0.1") && after.contains("1.0.2"),
            "{fields:?}"
        );
    }

    #[test]
    fn secrets_are_masked() {
        let before = json!({"kind": "Secret", "data": {"a": "eA==", "b": "eQ=="}});
        let mut after = json!({"kind": "Secret", "data": {"a": "eA==", "b": "eg=="}});
        mask_secret(&mut after, Some(&before));
        assert_eq!(after["data"], json!({"a": "***", "b": "*** (changed)"}));
        assert!(to_yaml(&after).contains("a: '***'") || to_yaml(&after).contains("a: \"***\""));
    }
}
