//! Terraform's machine-readable plan (`terraform show -json PLANFILE`) turned into the
//! planned changes gantry shows, with every sensitive value masked.
//!
//! Only the parts of the format this needs are read: `resource_changes[]` (address, mode,
//! `change.actions`, `before`/`after`, `after_unknown`, `before_sensitive`/`after_sensitive`,
//! `replace_paths`) and `planned_values.root_module` (the resources that exist after the
//! apply, for the task's inventory). Unknown fields are ignored, so later format versions
//! still read.

use gantry_sdk::{ChangeAction, PlannedChange};
use serde_json::{Map, Value};

/// What sensitive and not-yet-known values read as.
pub const SENSITIVE: &str = "(sensitive)";
pub const UNKNOWN: &str = "(known after apply)";

/// How many changed attributes one line names before it says "and N more".
const MAX_NAMED: usize = 6;
/// Longest value shown inside a one-line detail.
const MAX_VALUE: usize = 40;

/// One planned change per managed resource; data sources that are only read are left out.
pub fn planned_changes(plan: &Value) -> Result<Vec<PlannedChange>, String> {
    let changes = match plan.get("resource_changes") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err("`resource_changes` is not a list".into()),
    };
    let mut out = Vec::new();
    for rc in changes {
        if rc.get("mode").and_then(Value::as_str) == Some("data") {
            continue;
        }
        let address = rc
            .get("address")
            .and_then(Value::as_str)
            .ok_or("a resource change has no address")?;
        let change = rc
            .get("change")
            .ok_or_else(|| format!("{address}: no `change`"))?;
        let actions: Vec<&str> = change
            .get("actions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(action) = action_of(&actions) else {
            continue;
        };
        let null = Value::Null;
        let before = change.get("before").unwrap_or(&null);
        let after = change.get("after").unwrap_or(&null);
        let before_sensitive = change.get("before_sensitive").unwrap_or(&null);
        let after_sensitive = change.get("after_sensitive").unwrap_or(&null);
        let after_unknown = change.get("after_unknown").unwrap_or(&null);
        let masked_before = mask(before, before_sensitive, &null);
        let masked_after = mask(after, after_sensitive, after_unknown);
        let detail = match action {
            ChangeAction::Create => String::new(),
            ChangeAction::Delete => rc
                .get("action_reason")
                .and_then(Value::as_str)
                .map(reason)
                .unwrap_or_default(),
            ChangeAction::Unchanged => String::new(),
            ChangeAction::Update | ChangeAction::Replace => {
                let mut diffs = Vec::new();
                changed_paths(&masked_before, &masked_after, "", &mut diffs);
                let mut detail = describe_diffs(&diffs);
                if matches!(action, ChangeAction::Replace) {
                    let forced = replace_paths(change);
                    let why = if forced.is_empty() {
                        rc.get("action_reason")
                            .and_then(Value::as_str)
                            .map(reason)
                            .unwrap_or_else(|| "replaced".into())
                    } else {
                        format!("{} forces replacement", forced.join(", "))
                    };
                    detail = if detail.is_empty() {
                        why
                    } else {
                        format!("{detail}; {why}")
                    };
                }
                detail
            }
        };
        out.push(PlannedChange {
            action,
            target: address.to_string(),
            detail,
            before: (!before.is_null()).then(|| pretty(&masked_before)),
            after: (!matches!(action, ChangeAction::Delete)).then(|| pretty(&masked_after)),
        });
    }
    Ok(out)
}

/// Terraform's action list for one resource, as gantry's one action.
fn action_of(actions: &[&str]) -> Option<ChangeAction> {
    Some(match actions {
        ["create"] => ChangeAction::Create,
        ["update"] => ChangeAction::Update,
        ["delete"] => ChangeAction::Delete,
        ["no-op"] => ChangeAction::Unchanged,
        ["delete", "create"] | ["create", "delete"] => ChangeAction::Replace,
        // "read" (a data source read during apply) changes nothing that was deployed.
        _ => return None,
    })
}

/// Terraform's `action_reason` codes in words.
fn reason(code: &str) -> String {
    match code {
        "replace_because_tainted" => "tainted, so replaced".into(),
        "replace_because_cannot_update" => "cannot be updated in place, so replaced".into(),
        "replace_by_request" => "replacement requested".into(),
        "delete_because_no_resource_config" => "no longer in the configuration".into(),
        "delete_because_no_module" => "its module is no longer in the configuration".into(),
        "delete_because_wrong_repetition" | "delete_because_count_index" => {
            "no longer in the configuration's count".into()
        }
        "delete_because_each_key" => "no longer in the configuration's for_each".into(),
        other => other.replace('_', " "),
    }
}

/// The attribute paths that force replacement, as dotted names.
fn replace_paths(change: &Value) -> Vec<String> {
    change
        .get("replace_paths")
        .and_then(Value::as_array)
        .map(|paths| {
            paths
                .iter()
                .filter_map(Value::as_array)
                .map(|steps| {
                    steps
                        .iter()
                        .map(|s| match s {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `value` with every sensitive part replaced by [`SENSITIVE`] and every part not known until
/// apply by [`UNKNOWN`]. Terraform marks both with a parallel structure: `true` at a place
/// means "all of this", an object or list means "look inside".
pub fn mask(value: &Value, sensitive: &Value, unknown: &Value) -> Value {
    if sensitive == &Value::Bool(true) {
        return Value::String(SENSITIVE.into());
    }
    if unknown == &Value::Bool(true) {
        return Value::String(UNKNOWN.into());
    }
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.clone(), mask(v, child(sensitive, k), child(unknown, k)));
            }
            // Attributes only known after apply are absent from `after`: show them.
            if let Value::Object(u) = unknown {
                for (k, flag) in u {
                    if flag == &Value::Bool(true) && !out.contains_key(k) {
                        out.insert(k.clone(), Value::String(UNKNOWN.into()));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| mask(v, index(sensitive, i), index(unknown, i)))
                .collect(),
        ),
        // A null `after` with everything unknown is a value yet to be computed.
        Value::Null if unknown.is_object() => mask(&Value::Object(Map::new()), sensitive, unknown),
        other => other.clone(),
    }
}

fn child<'a>(marks: &'a Value, key: &str) -> &'a Value {
    static NULL: Value = Value::Null;
    marks.get(key).unwrap_or(&NULL)
}

fn index(marks: &Value, i: usize) -> &Value {
    static NULL: Value = Value::Null;
    marks.get(i).unwrap_or(&NULL)
}

/// One changed leaf: its dotted path and the value before and after (None when absent).
type Diff = (String, Option<Value>, Option<Value>);

/// Collects the leaves that differ between two (masked) values.
fn changed_paths(before: &Value, after: &Value, path: &str, out: &mut Vec<Diff>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                match (b.get(k), a.get(k)) {
                    (Some(x), Some(y)) => changed_paths(x, y, &join(k), out),
                    (x, y) => {
                        if !(x.is_none_or(Value::is_null) && y.is_none_or(Value::is_null)) {
                            out.push((join(k), x.cloned(), y.cloned()));
                        }
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            for (i, (x, y)) in b.iter().zip(a).enumerate() {
                changed_paths(x, y, &join(&i.to_string()), out);
            }
        }
        (b, a) if b != a => out.push((path.to_string(), Some(b.clone()), Some(a.clone()))),
        _ => {}
    }
}

fn describe_diffs(diffs: &[Diff]) -> String {
    let mut parts: Vec<String> = diffs
        .iter()
        .take(MAX_NAMED)
        .map(|(path, before, after)| {
            let show = |v: &Option<Value>| v.as_ref().map_or("(none)".to_string(), short);
            format!("{path}: {} → {}", show(before), show(after))
        })
        .collect();
    if diffs.len() > MAX_NAMED {
        parts.push(format!("and {} more", diffs.len() - MAX_NAMED));
    }
    parts.join(", ")
}

/// A value in a few characters: strings quoted unless they are a mask, others as JSON.
fn short(v: &Value) -> String {
    let text = match v {
        Value::String(s) if s == SENSITIVE || s == UNKNOWN => return s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() <= MAX_VALUE {
        return text;
    }
    let cut: String = text.chars().take(MAX_VALUE - 1).collect();
    format!("{cut}…")
}

/// The action as the CLI prints it.
pub fn action_name(action: &ChangeAction) -> &'static str {
    match action {
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Replace => "replace",
        ChangeAction::Unchanged => "unchanged",
        ChangeAction::Delete => "delete",
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// Addresses of the managed resources that exist once the plan is applied, in the plan's
/// order, child modules included: the task's inventory.
pub fn resources_after(plan: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(root) = plan.pointer("/planned_values/root_module") {
        collect_resources(root, &mut out);
    }
    out
}

fn collect_resources(module: &Value, out: &mut Vec<String>) {
    for r in module
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if r.get("mode").and_then(Value::as_str) == Some("managed")
            && let Some(address) = r.get("address").and_then(Value::as_str)
        {
            out.push(address.to_string());
        }
    }
    for m in module
        .get("child_modules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_resources(m, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape Terraform 1.0 prints for a replaced `null_resource` whose trigger holds a
    /// sensitive variable, next to a created one, a deleted one, an unchanged one and a read.
    fn plan() -> Value {
        json!({
            "format_version": "0.2",
            "resource_changes": [
                {
                    "address": "null_resource.db", "mode": "managed", "type": "null_resource",
                    "change": {
                        "actions": ["delete", "create"],
                        "before": {"id": "879", "triggers": {"name": "db1", "pw": "hunter2"}},
                        "after": {"triggers": {"name": "db2", "pw": "hunter2"}},
                        "after_unknown": {"id": true, "triggers": {}},
                        "before_sensitive": {"triggers": {"pw": true}},
                        "after_sensitive": {"triggers": {"pw": true}},
                        "replace_paths": [["triggers"]]
                    },
                    "action_reason": "replace_because_cannot_update"
                },
                {
                    "address": "module.net.null_resource.vpc", "mode": "managed",
                    "change": {"actions": ["create"], "before": null,
                               "after": {"triggers": null}, "after_unknown": {"id": true},
                               "before_sensitive": false, "after_sensitive": {}}
                },
                {
                    "address": "null_resource.old", "mode": "managed",
                    "change": {"actions": ["delete"], "before": {"id": "1"}, "after": null,
                               "before_sensitive": {}, "after_sensitive": false},
                    "action_reason": "delete_because_no_resource_config"
                },
                {
                    "address": "null_resource.same", "mode": "managed",
                    "change": {"actions": ["no-op"], "before": {"id": "2"}, "after": {"id": "2"}}
                },
                {
                    "address": "data.null_data_source.x", "mode": "data",
                    "change": {"actions": ["read"]}
                },
                {
                    "address": "null_resource.tag", "mode": "managed",
                    "change": {"actions": ["update"],
                               "before": {"id": "3", "tags": {"env": "dev", "token": "old-secret"}},
                               "after": {"id": "3", "tags": {"env": "prod", "token": "new-secret"}},
                               "before_sensitive": {"tags": {"token": true}},
                               "after_sensitive": {"tags": {"token": true}}}
                }
            ],
            "planned_values": {"root_module": {
                "resources": [
                    {"address": "null_resource.db", "mode": "managed"},
                    {"address": "data.null_data_source.x", "mode": "data"}
                ],
                "child_modules": [{"address": "module.net", "resources": [
                    {"address": "module.net.null_resource.vpc", "mode": "managed"}
                ]}]
            }}
        })
    }

    #[test]
    fn each_resource_change_becomes_one_line() {
        let changes = planned_changes(&plan()).unwrap();
        let summary: Vec<(&str, &str)> = changes
            .iter()
            .map(|c| (action_name(&c.action), c.target.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("replace", "null_resource.db"),
                ("create", "module.net.null_resource.vpc"),
                ("delete", "null_resource.old"),
                ("unchanged", "null_resource.same"),
                ("update", "null_resource.tag"),
            ]
        );
        let replace = &changes[0];
        assert!(
            replace.detail.contains("triggers.name: \"db1\" → \"db2\""),
            "{}",
            replace.detail
        );
        assert!(
            replace.detail.contains("triggers forces replacement"),
            "{}",
            replace.detail
        );
        assert!(changes[2].detail.contains("no longer in the configuration"));
        assert!(changes[2].after.is_none());
        assert!(changes[1].before.is_none());
    }

    #[test]
    fn sensitive_values_never_leave_the_plan() {
        let changes = planned_changes(&plan()).unwrap();
        for c in &changes {
            for text in [Some(&c.detail), c.before.as_ref(), c.after.as_ref()]
                .into_iter()
                .flatten()
            {
                for secret in ["hunter2", "old-secret", "new-secret"] {
                    assert!(
                        !text.contains(secret),
                        "{} shows {secret}: {text}",
                        c.target
                    );
                }
            }
        }
        let update = &changes[4];
        assert_eq!(
            update.detail, "tags.env: \"dev\" → \"prod\"",
            "a masked value that stays masked is not a change to show"
        );
        assert!(
            changes[0]
                .after
                .as_deref()
                .unwrap_or("")
                .contains(SENSITIVE)
        );
        assert!(changes[0].after.as_deref().unwrap_or("").contains(UNKNOWN));
    }

    #[test]
    fn whole_values_can_be_sensitive_or_unknown() {
        assert_eq!(
            mask(&json!("x"), &json!(true), &Value::Null),
            json!(SENSITIVE)
        );
        assert_eq!(
            mask(&json!(null), &json!(false), &json!(true)),
            json!(UNKNOWN)
        );
        assert_eq!(
            mask(&json!(["a", "b"]), &json!([false, true]), &Value::Null),
            json!(["a", SENSITIVE])
        );
    }

    #[test]
    fn the_inventory_is_every_managed_resource_after_the_apply() {
        assert_eq!(
            resources_after(&plan()),
            vec!["null_resource.db", "module.net.null_resource.vpc"]
        );
        assert!(resources_after(&json!({})).is_empty());
    }

    #[test]
    fn an_empty_plan_has_no_changes_and_a_broken_one_says_why() {
        assert!(
            planned_changes(&json!({"format_version": "0.2"}))
                .unwrap()
                .is_empty()
        );
        assert!(planned_changes(&json!({"resource_changes": 3})).is_err());
        assert!(planned_changes(&json!({"resource_changes": [{"change": {}}]})).is_err());
    }

    #[test]
    fn long_lists_of_changes_are_cut() {
        let before: Map<String, Value> = (0..9).map(|i| (format!("k{i}"), json!(i))).collect();
        let after: Map<String, Value> = (0..9).map(|i| (format!("k{i}"), json!(i + 1))).collect();
        let mut diffs = Vec::new();
        changed_paths(
            &Value::Object(before),
            &Value::Object(after),
            "",
            &mut diffs,
        );
        let text = describe_diffs(&diffs);
        assert!(text.ends_with("and 3 more"), "{text}");
        assert!(short(&json!("x".repeat(100))).ends_with('…'));
    }
}
