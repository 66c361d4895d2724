//! Field paths and field ownership for server-side apply.
//!
//! A field path names one leaf of an object: `f:spec`, `f:replicas`, or for an element of a
//! keyed list `k:{"name":"web"}`. Lists whose elements all carry a merge key are keyed by it
//! (Kubernetes' `listType=map`); other lists are atomic and owned as one leaf.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// The key a list's elements merge on, when it has one.
pub fn list_merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let all_have = |k: &str| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.as_object().is_some_and(|o| o.contains_key(k)))
    };
    let known: &[&'static str] = match field {
        "ports" => &["containerPort", "port"],
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "topologySpreadConstraints" => &["topologyKey"],
        "tolerations" | "args" | "command" | "finalizers" => &[],
        _ => &["name"],
    };
    known.iter().copied().find(|k| all_have(k))
}

fn key_segment(key: &str, item: &Value) -> String {
    let mut m = Map::new();
    m.insert(
        key.to_string(),
        item.get(key).cloned().unwrap_or(Value::Null),
    );
    format!("k:{}", Value::Object(m))
}

/// Every leaf path set in `v`.
pub fn leaves(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    collect(v, &mut Vec::new(), &mut out);
    out
}

fn collect(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(format!("f:{k}"));
                collect_child(k, child, path, out);
                path.pop();
            }
        }
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

fn collect_child(field: &str, child: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    if let Value::Array(items) = child
        && let Some(key) = list_merge_key(field, items)
    {
        for item in items {
            path.push(key_segment(key, item));
            collect(item, path, out);
            path.pop();
        }
        return;
    }
    collect(child, path, out);
}

/// The value at a field path, if the object has it.
pub fn value_at<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = v;
    for seg in path {
        if let Some(name) = seg.strip_prefix("f:") {
            cur = cur.as_object()?.get(name)?;
        } else if let Some(key) = seg.strip_prefix("k:") {
            let want: Map<String, Value> = serde_json::from_str(key).ok()?;
            let (k, kv) = want.iter().next()?;
            cur = cur.as_array()?.iter().find(|i| i.get(k) == Some(kv))?;
        } else {
            return None;
        }
    }
    Some(cur)
}

/// Removes the leaf at `path`, and list elements or maps it leaves empty.
pub fn remove_at(v: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    if let Some(name) = first.strip_prefix("f:") {
        let Some(obj) = v.as_object_mut() else { return };
        if rest.is_empty() {
            obj.remove(name);
        } else if let Some(child) = obj.get_mut(name) {
            remove_at(child, rest);
            if is_empty_container(child) {
                obj.remove(name);
            }
        }
    } else if let Some(key) = first.strip_prefix("k:") {
        let Ok(want) = serde_json::from_str::<Map<String, Value>>(key) else {
            return;
        };
        let Some((k, kv)) = want.iter().next() else {
            return;
        };
        let Some(items) = v.as_array_mut() else {
            return;
        };
        if let Some(pos) = items.iter().position(|i| i.get(k) == Some(kv)) {
            if rest.is_empty() {
                items.remove(pos);
            } else {
                remove_at(&mut items[pos], rest);
                // An element left with only its key is gone from the applier's view too.
                let only_key = items[pos].as_object().is_some_and(|o| o.len() <= 1);
                if only_key {
                    items.remove(pos);
                }
            }
        }
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The `fieldsV1` document Kubernetes stores in `managedFields`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut cur = &mut root;
        for (i, seg) in path.iter().enumerate() {
            let entry = cur
                .entry(seg.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            if seg.starts_with("k:") && i + 1 < path.len() {
                next.entry(".".to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
            }
            cur = next;
        }
    }
    Value::Object(root)
}

pub fn from_fields_v1(v: &Value) -> FieldSet {
    let mut out = FieldSet::new();
    walk_v1(v, &mut Vec::new(), &mut out);
    out
}

fn walk_v1(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = v.as_object() else { return };
    let children: Vec<_> = m.iter().filter(|(k, _)| k.as_str() != ".").collect();
    if children.is_empty() {
        if !path.is_empty() {
            out.insert(path.clone());
        }
        return;
    }
    for (k, child) in children {
        path.push(k.clone());
        walk_v1(child, path, out);
        path.pop();
    }
}

/// `.spec.template.spec.containers[name="web"].image`, as conflict messages print a path.
pub fn display(path: &[String]) -> String {
    let mut s = String::new();
    for seg in path {
        if let Some(n) = seg.strip_prefix("f:") {
            s.push('.');
            s.push_str(n);
        } else if let Some(k) = seg.strip_prefix("k:") {
            let inner = serde_json::from_str::<Map<String, Value>>(k)
                .ok()
                .and_then(|m| m.into_iter().next())
                .map(|(k, v)| format!("{k}={v}"))
                .unwrap_or_default();
            s.push_str(&format!("[{inner}]"));
        }
    }
    s
}

/// Leaves whose values differ between two versions of an object (set, changed or removed).
pub fn changed(old: &Value, new: &Value) -> FieldSet {
    let before = leaves(old);
    let after = leaves(new);
    let mut out = FieldSet::new();
    for p in after.iter() {
        if value_at(old, p) != value_at(new, p) {
            out.insert(p.clone());
        }
    }
    for p in before.difference(&after) {
        out.insert(p.clone());
    }
    out
}

/// Server-side apply's merge: the applied configuration laid over the live object, keyed lists
/// merged element by element, everything else replaced.
pub fn merge_applied(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(l), Value::Object(a)) => {
            for (k, av) in a {
                match l.get_mut(k) {
                    Some(lv) => merge_field(k, lv, av),
                    None => {
                        l.insert(k.clone(), av.clone());
                    }
                }
            }
        }
        (l, a) => *l = a.clone(),
    }
}

fn merge_field(field: &str, live: &mut Value, applied: &Value) {
    if let (Value::Array(l), Value::Array(a)) = (&mut *live, applied)
        && let Some(key) = list_merge_key(field, a)
        && l.iter().all(|i| i.get(key).is_some())
    {
        for item in a {
            match l.iter_mut().find(|i| i.get(key) == item.get(key)) {
                Some(existing) => merge_applied(existing, item),
                None => l.push(item.clone()),
            }
        }
        return;
    }
    merge_applied(live, applied);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keyed_lists_give_one_path_per_element_field() {
        let v = json!({"spec": {"containers": [{"name": "web", "image": "a"}], "replicas": 2}});
        let l = leaves(&v);
        assert!(l.contains(&vec![
            "f:spec".into(),
            "f:containers".into(),
            r#"k:{"name":"web"}"#.into(),
            "f:image".into()
        ]));
        assert!(l.contains(&vec!["f:spec".into(), "f:replicas".into()]));
        assert_eq!(from_fields_v1(&to_fields_v1(&l)), l);
    }

    #[test]
    fn removing_a_path_drops_emptied_parents() {
        let mut v = json!({"metadata": {"labels": {"a": "1"}}, "data": {"x": "y"}});
        remove_at(
            &mut v,
            &["f:metadata".into(), "f:labels".into(), "f:a".into()],
        );
        assert_eq!(v, json!({"data": {"x": "y"}}));
    }

    #[test]
    fn apply_merges_containers_by_name() {
        let mut live = json!({"c": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        merge_applied(
            &mut live,
            &json!({"c": {"containers": [{"name": "b", "image": "3"}]}}),
        );
        assert_eq!(live["c"]["containers"][1]["image"], "3");
        assert_eq!(live["c"]["containers"][0]["image"], "1");
    }
}
