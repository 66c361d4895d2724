//! Running a chart's hooks as Helm does: those of one event in weight order (then kind
//! order, then name), each Job and Pod awaited before the next starts, and removed according
//! to `helm.sh/hook-delete-policy` (`before-hook-creation` when none is given).

use gantry_kube_apply::engine::{self, object_ref};
use gantry_kube_apply::kinds::rank;
use gantry_kube_apply::kube::Kube;
use gantry_kube_apply::{ObjectKey, Settings};
use gantry_sdk::TaskError;
use gantry_sdk::host;
use serde_json::Value;

use crate::render::Hook;

/// The hooks of `event`, in the order they run.
pub fn for_event<'a>(hooks: &'a [Hook], event: &str) -> Vec<&'a Hook> {
    let mut out: Vec<&Hook> = hooks
        .iter()
        .filter(|h| h.events.iter().any(|e| e == event))
        .collect();
    out.sort_by(|a, b| {
        let kind = |h: &Hook| rank(h.manifest.object["kind"].as_str().unwrap_or_default());
        let name = |h: &Hook| {
            h.manifest.object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        (a.weight, kind(a), name(a)).cmp(&(b.weight, kind(b), name(b)))
    });
    out
}

fn awaited(object: &Value) -> bool {
    matches!(
        (object["apiVersion"].as_str(), object["kind"].as_str()),
        (Some("batch/v1"), Some("Job")) | (Some("v1"), Some("Pod"))
    )
}

/// Deletes the object and waits (briefly) until it is gone, so one of the same name can be
/// created next.
fn remove(kube: &dyn Kube, object: &Value) -> Result<(), TaskError> {
    let target = object_ref(object);
    if !kube.delete(&target)? {
        return Ok(());
    }
    for _ in 0..100 {
        if kube.get(&target)?.is_none() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Err(TaskError::TimedOut(format!(
        "{} was deleted but is still there after 10 s",
        ObjectKey::of(object).describe()
    )))
}

/// Runs the hooks of `event`; the first one that fails stops the others and fails the task.
pub fn run(kube: &dyn Kube, hooks: &[Hook], event: &str, s: &Settings) -> Result<(), TaskError> {
    for h in for_event(hooks, event) {
        let object = &h.manifest.object;
        let what = format!(
            "hook {event} {} (weight {})",
            ObjectKey::of(object).describe(),
            h.weight
        );
        let policy = |p: &str| h.delete_policies.iter().any(|d| d == p);
        if policy("before-hook-creation") {
            remove(kube, object)?;
        }
        engine::apply_object(kube, object, false, true, false)?;
        host::info(&format!("{what}: created"));
        if awaited(object)
            && let Err(e) = engine::wait(kube, &[object_ref(object)], s.timeout_ms)
        {
            if policy("hook-failed") {
                remove(kube, object)?;
            }
            host::warn(&format!("{what}: failed"));
            return Err(match e {
                TaskError::Kube(mut k) => {
                    k.message = format!("{what} failed: {}", k.message);
                    TaskError::Kube(k)
                }
                TaskError::TimedOut(m) => TaskError::TimedOut(format!("{what}: {m}")),
                other => other,
            });
        }
        if policy("hook-succeeded") {
            remove(kube, object)?;
        }
        host::info(&format!("{what}: succeeded"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_kube_apply::yaml::parse;

    fn hook(name: &str, kind: &str, weight: i64, events: &[&str]) -> Hook {
        let text = format!("apiVersion: v1\nkind: {kind}\nmetadata: {{name: {name}}}\n");
        Hook {
            events: events.iter().map(|e| e.to_string()).collect(),
            weight,
            delete_policies: vec!["before-hook-creation".into()],
            manifest: parse("t.yaml", &text).unwrap().remove(0),
        }
    }

    #[test]
    fn hooks_run_by_weight_then_kind_then_name() {
        let hooks = vec![
            hook("late", "Pod", 10, &["pre-install"]),
            hook("b", "Pod", -1, &["pre-install", "pre-upgrade"]),
            hook("a", "Pod", -1, &["pre-install"]),
            hook("conf", "ConfigMap", -1, &["pre-install"]),
            hook("other", "Pod", 0, &["post-install"]),
        ];
        let names: Vec<&str> = for_event(&hooks, "pre-install")
            .iter()
            .map(|h| {
                h.manifest.object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["conf", "a", "b", "late"]);
        assert_eq!(for_event(&hooks, "pre-upgrade").len(), 1);
    }
}
