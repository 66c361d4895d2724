//! The three non-apply patch types: JSON merge patch (RFC 7386), strategic merge patch (what
//! client-side `kubectl apply` and `kubectl patch` send for built-in types) and JSON patch
//! (RFC 6902).

use serde_json::{Map, Value};

use crate::fields::list_merge_key;

/// RFC 7386: maps merge, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else { return };
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Strategic merge patch: a merge patch whose lists with a merge key (containers by name,
/// ports by port, ...) merge element by element, with the `$patch`, `$retainKeys`,
/// `$setElementOrder` and `$deleteFromPrimitiveList` directives.
pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return Ok(());
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            let mut replacement = p.clone();
            replacement.remove("$patch");
            *target = Value::Object(replacement);
            return Ok(());
        }
        Some("delete") => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown $patch directive {other:?}")),
        None => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(t) = target else {
        return Ok(());
    };
    for (k, v) in p {
        if k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(drop)) = (t.get_mut(field), v) {
                items.retain(|i| !drop.contains(i));
            }
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(Value::Array(live)), Value::Array(items)) => merge_list(k, live, items)?,
            (Some(live), Value::Object(_)) => {
                strategic_merge_patch(live, v)?;
                if live.is_null() {
                    t.remove(k);
                }
            }
            _ => {
                let mut fresh = Value::Null;
                strategic_merge_patch(&mut fresh, &strip_directives(v))?;
                t.insert(k.clone(), fresh);
            }
        }
    }
    if let Some(Value::Array(keep)) = p.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn merge_list(field: &str, live: &mut Vec<Value>, items: &[Value]) -> Result<(), String> {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *live = items
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return Ok(());
    }
    let plain: Vec<Value> = items
        .iter()
        .filter(|i| i.get("$patch").is_none())
        .cloned()
        .collect();
    let key = list_merge_key(field, &plain)
        .or_else(|| list_merge_key(field, live))
        .filter(|k| items.iter().all(|i| i.get(k).is_some()));
    let Some(key) = key else {
        *live = items.iter().map(strip_directives).collect();
        return Ok(());
    };
    for item in items {
        let pos = live.iter().position(|l| l.get(key) == item.get(key));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(pos) = pos {
                live.remove(pos);
            }
            continue;
        }
        match pos {
            Some(pos) => strategic_merge_patch(&mut live[pos], item)?,
            None => live.push(strip_directives(item)),
        }
    }
    Ok(())
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// RFC 6902.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), String> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| format!("invalid JSON patch: {e}"))?;
    json_patch::patch(target, &ops).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_patch_merges_containers_and_deletes_by_directive() {
        let mut live = json!({"spec": {"containers": [
            {"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}});
        strategic_merge_patch(
            &mut live,
            &json!({"spec": {
                "$setElementOrder/containers": [{"name": "a"}],
                "containers": [{"name": "a", "image": "9"}, {"name": "b", "$patch": "delete"}]}}),
        )
        .unwrap();
        assert_eq!(
            live,
            json!({"spec": {"containers": [{"name": "a", "image": "9"}]}})
        );
    }

    #[test]
    fn merge_patch_null_removes() {
        let mut v = json!({"a": {"b": 1, "c": 2}});
        merge_patch(&mut v, &json!({"a": {"b": null}}));
        assert_eq!(v, json!({"a": {"c": 2}}));
    }
}
