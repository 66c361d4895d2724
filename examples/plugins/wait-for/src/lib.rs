//! `wait-for`: a task kind that waits until a Kubernetes object meets a condition — a Job
//! complete, a custom resource's `status.phase` reaching a value — through gantry's kube
//! capability, so a later step starts only once something outside gantry's own tasks is
//! ready.
//!
//! ```toml
//! [checks.migrations]
//! kind = "wait-for"
//! api_version = "batch/v1"
//! object_kind = "Job"            # `kind` names the task kind, so the object's is `object_kind`
//! name = "migrate"
//! namespace = "shop"
//! condition = "Complete"         # a status condition that must be "True"
//! fail_on = ["Failed"]           # conditions (or field values) that fail the task at once
//! timeout = "5m"
//! ```
//!
//! or, for a field: `field = "status.phase"` and `values = ["Ready"]`.

use std::time::Duration;

use gantry_sdk::{
    Capability, Deployment, ParamSpec, ParamsExt, PluginInfo, TaskContext, TaskError,
    ValidateContext, ValidationIssue, parse_duration, validate_params,
};
use serde::Deserialize;
use serde_json::Value;

/// The task's parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub api_version: String,
    pub object_kind: String,
    pub name: String,
    /// None for cluster-scoped objects.
    pub namespace: Option<String>,
    /// A `status.conditions[].type` that must have `status: "True"`.
    pub condition: Option<String>,
    /// A dotted path into the object (`status.phase`) whose value must be one of `values`.
    pub field: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
    /// Condition types (with `condition`) or field values (with `field`) that mean the
    /// object will never get there, so the task fails without waiting out the timeout.
    #[serde(default)]
    pub fail_on: Vec<String>,
    pub timeout: Option<String>,
    pub interval: Option<String>,
    /// A cluster from `[clusters]` in gantry.toml; the default cluster when absent.
    pub cluster: Option<String>,
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);

/// What to look for, checked once from the parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    Condition {
        kind: String,
        fail_on: Vec<String>,
    },
    Field {
        path: String,
        values: Vec<String>,
        fail_on: Vec<String>,
    },
}

impl Params {
    /// The rule, or the issue that makes the parameters unusable.
    pub fn rule(&self) -> Result<Rule, ValidationIssue> {
        match (&self.condition, &self.field) {
            (Some(c), None) if !self.values.is_empty() => Err(ValidationIssue::new(
                "values",
                format!("`values` goes with `field`, not with `condition = \"{c}\"`"),
            )),
            (Some(c), None) => Ok(Rule::Condition {
                kind: c.clone(),
                fail_on: self.fail_on.clone(),
            }),
            (None, Some(f)) if self.values.is_empty() => Err(ValidationIssue::new(
                "values",
                format!("`field = \"{f}\"` needs `values = [...]`, the values that count as met"),
            )),
            (None, Some(f)) => Ok(Rule::Field {
                path: f.clone(),
                values: self.values.clone(),
                fail_on: self.fail_on.clone(),
            }),
            (Some(_), Some(_)) => Err(ValidationIssue::new(
                "condition",
                "set either `condition` or `field`, not both",
            )),
            (None, None) => Err(ValidationIssue::new(
                "",
                "set `condition = \"Complete\"` (a status condition) or `field = \"status.phase\"` with `values`",
            )),
        }
    }

    fn durations(&self) -> Result<(Duration, Duration), ValidationIssue> {
        let read = |field: &str, text: &Option<String>, default: Duration| match text {
            Some(t) => parse_duration(t).map_err(|e| ValidationIssue::new(field, e)),
            None => Ok(default),
        };
        Ok((
            read("timeout", &self.timeout, DEFAULT_TIMEOUT)?,
            read("interval", &self.interval, DEFAULT_INTERVAL)?,
        ))
    }

    /// "batch/v1 Job shop/migrate", for logs and errors.
    pub fn target(&self) -> String {
        match &self.namespace {
            Some(ns) => format!(
                "{} {} {ns}/{}",
                self.api_version, self.object_kind, self.name
            ),
            None => format!("{} {} {}", self.api_version, self.object_kind, self.name),
        }
    }
}

/// Where an object stands against a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Met; the value that met it.
    Met(String),
    /// Not yet; what is missing.
    Waiting(String),
    /// It will not get there; why.
    Failed(String),
}

/// Evaluates `rule` on the object as the API returned it (None when it does not exist yet).
pub fn evaluate(object: Option<&Value>, rule: &Rule) -> Verdict {
    let Some(object) = object else {
        return Verdict::Waiting("does not exist yet".into());
    };
    match rule {
        Rule::Condition { kind, fail_on } => {
            let conditions = object
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let is_true = |t: &str| {
                conditions.iter().find(|c| {
                    c.get("type").and_then(Value::as_str) == Some(t)
                        && c.get("status").and_then(Value::as_str) == Some("True")
                })
            };
            if let Some(c) = fail_on.iter().find_map(|t| is_true(t)) {
                let message = c.get("message").and_then(Value::as_str).unwrap_or("");
                let kind = c.get("type").and_then(Value::as_str).unwrap_or("");
                return Verdict::Failed(format!("condition {kind} is True: {message}"));
            }
            if is_true(kind).is_some() {
                return Verdict::Met(kind.clone());
            }
            Verdict::Waiting(format!("condition {kind} is not True yet"))
        }
        Rule::Field {
            path,
            values,
            fail_on,
        } => {
            let pointer = format!("/{}", path.replace('.', "/"));
            let value = match object.pointer(&pointer) {
                None | Some(Value::Null) => {
                    return Verdict::Waiting(format!("{path} is not set yet"));
                }
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if fail_on.contains(&value) {
                Verdict::Failed(format!("{path} is {value}"))
            } else if values.contains(&value) {
                Verdict::Met(value)
            } else {
                Verdict::Waiting(format!(
                    "{path} is {value}, waiting for {}",
                    values.join(" or ")
                ))
            }
        }
    }
}

/// Polls until the rule is met, fails, or `timeout` passes. `get` reads the object (as
/// JSON, None when absent), `sleep` waits between reads and `elapsed` tells the time spent,
/// so the loop runs natively in tests with a fake clock.
pub fn wait(
    p: &Params,
    mut get: impl FnMut() -> Result<Option<String>, TaskError>,
    mut sleep: impl FnMut(Duration),
    elapsed: impl Fn() -> Duration,
) -> Result<Deployment, TaskError> {
    let rule = p.rule().map_err(|i| TaskError::invalid(i.message))?;
    let (timeout, interval) = p.durations().map_err(|i| TaskError::invalid(i.message))?;
    let target = p.target();
    let mut last = String::new();
    loop {
        let object = match get()? {
            Some(text) => Some(serde_json::from_str::<Value>(&text).map_err(|e| {
                TaskError::Internal(format!("{target}: the API returned invalid JSON: {e}"))
            })?),
            None => None,
        };
        match evaluate(object.as_ref(), &rule) {
            Verdict::Met(value) => {
                gantry_sdk::host::info(&format!("{target}: {value}"));
                return Ok(Deployment::with_outputs([("value", value)]));
            }
            Verdict::Failed(why) => {
                return Err(TaskError::Internal(format!("{target}: {why}")));
            }
            Verdict::Waiting(why) => {
                if why != last {
                    gantry_sdk::host::info(&format!("{target}: {why}"));
                    last = why;
                }
            }
        }
        if elapsed() >= timeout {
            return Err(TaskError::TimedOut(format!(
                "{target}: still waiting after {}: {last}",
                humanize(timeout)
            )));
        }
        sleep(interval);
    }
}

fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

pub struct WaitFor;

impl gantry_sdk::Task for WaitFor {
    fn describe() -> PluginInfo {
        let param = ParamSpec::new;
        PluginInfo {
            name: "wait-for".into(),
            kinds: vec!["wait-for".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Waits until a Kubernetes object meets a condition".into(),
            capabilities: vec![Capability::Kube],
            parameters: vec![
                param(
                    "api_version",
                    "string",
                    true,
                    "the object's apiVersion (batch/v1)",
                ),
                param("object_kind", "string", true, "the object's kind (Job)"),
                param("name", "string", true, "the object's name"),
                param(
                    "namespace",
                    "string",
                    false,
                    "its namespace; none when cluster-scoped",
                ),
                param(
                    "condition",
                    "string",
                    false,
                    "a status condition type that must be True (Complete)",
                ),
                param(
                    "field",
                    "string",
                    false,
                    "a dotted path instead (status.phase)",
                ),
                param(
                    "values",
                    "list<string>",
                    false,
                    "values of `field` that count as met",
                ),
                param(
                    "fail_on",
                    "list<string>",
                    false,
                    "conditions or field values that fail at once",
                ),
                param("timeout", "duration", false, "how long to wait").default("\"5m\""),
                param("interval", "duration", false, "between two reads").default("\"2s\""),
                param(
                    "cluster",
                    "string",
                    false,
                    "a cluster from gantry.toml; the default one when absent",
                ),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        let issues = validate_params::<Params>(&ctx.params);
        if !issues.is_empty() {
            return issues;
        }
        match ctx.params::<Params>() {
            Ok(p) => [p.rule().err(), p.durations().err()]
                .into_iter()
                .flatten()
                .collect(),
            Err(e) => vec![ValidationIssue::new("", e.to_string())],
        }
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        sandbox::wait(&p)
    }
}

/// The kube session exists only inside the sandbox.
#[cfg(target_arch = "wasm32")]
mod sandbox {
    use super::*;
    use gantry_sdk::host::ObjectRef;
    use gantry_sdk::host::kube;

    pub fn wait(p: &Params) -> Result<Deployment, TaskError> {
        let session = kube::open(p.cluster.as_deref())?;
        let target = ObjectRef {
            api_version: p.api_version.clone(),
            kind: p.object_kind.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
        };
        let start = std::time::Instant::now();
        super::wait(
            p,
            || session.get(&target),
            std::thread::sleep,
            || start.elapsed(),
        )
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sandbox {
    use super::*;

    pub fn wait(_: &Params) -> Result<Deployment, TaskError> {
        Err(TaskError::Internal(
            "wait-for reaches Kubernetes only inside gantry's sandbox".into(),
        ))
    }
}

gantry_sdk::export_task!(WaitFor);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Task;
    use gantry_sdk::testing::validate_context;
    use serde_json::json;
    use std::cell::Cell;

    fn params(extra: Value) -> Params {
        let mut p = json!({"api_version": "batch/v1", "object_kind": "Job", "name": "migrate", "namespace": "shop"});
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        serde_json::from_value(p).expect("params")
    }

    fn job(conditions: Value) -> Value {
        json!({"kind": "Job", "status": {"conditions": conditions}})
    }

    #[test]
    fn a_job_is_met_when_complete_and_failed_when_failed() {
        let rule = params(json!({"condition": "Complete", "fail_on": ["Failed"]}))
            .rule()
            .expect("rule");
        assert_eq!(
            evaluate(
                Some(&job(json!([{"type": "Complete", "status": "True"}]))),
                &rule
            ),
            Verdict::Met("Complete".into())
        );
        assert!(matches!(
            evaluate(Some(&job(json!([{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]))), &rule),
            Verdict::Failed(m) if m.contains("BackoffLimitExceeded")
        ));
        assert!(matches!(
            evaluate(
                Some(&job(json!([{"type": "Complete", "status": "False"}]))),
                &rule
            ),
            Verdict::Waiting(_)
        ));
        assert!(matches!(evaluate(None, &rule), Verdict::Waiting(_)));
    }

    #[test]
    fn a_custom_resource_is_met_when_its_phase_is_one_of_the_values() {
        let rule =
            params(json!({"field": "status.phase", "values": ["Ready"], "fail_on": ["Error"]}))
                .rule()
                .expect("rule");
        let with = |phase: Value| json!({"status": {"phase": phase}});
        assert_eq!(
            evaluate(Some(&with(json!("Ready"))), &rule),
            Verdict::Met("Ready".into())
        );
        assert!(matches!(
            evaluate(Some(&with(json!("Error"))), &rule),
            Verdict::Failed(_)
        ));
        assert!(
            matches!(evaluate(Some(&with(json!("Pending"))), &rule), Verdict::Waiting(w) if w.contains("Pending"))
        );
        assert!(matches!(
            evaluate(Some(&json!({})), &rule),
            Verdict::Waiting(_)
        ));
    }

    #[test]
    fn waiting_polls_until_met_and_times_out_with_what_it_last_saw() {
        let p = params(
            json!({"field": "status.phase", "values": ["Ready"], "interval": "1s", "timeout": "10s"}),
        );
        let reads = Cell::new(0);
        let clock = Cell::new(Duration::ZERO);
        let d = wait(
            &p,
            || {
                reads.set(reads.get() + 1);
                let phase = if reads.get() < 3 { "Pending" } else { "Ready" };
                Ok(Some(json!({"status": {"phase": phase}}).to_string()))
            },
            |d| clock.set(clock.get() + d),
            || clock.get(),
        )
        .expect("met");
        assert_eq!(reads.get(), 3);
        assert_eq!(d.outputs[0].value, "Ready");

        let clock = Cell::new(Duration::ZERO);
        let err = wait(
            &p,
            || Ok(None),
            |d| clock.set(clock.get() + d),
            || clock.get(),
        )
        .expect_err("times out");
        assert!(
            matches!(&err, TaskError::TimedOut(m) if m.contains("does not exist yet")),
            "{err:?}"
        );
    }

    #[test]
    fn validation_explains_what_is_missing() {
        let v =
            |params: Value| WaitFor::validate(&validate_context("wait-for", &params.to_string()));
        let base = json!({"api_version": "batch/v1", "object_kind": "Job", "name": "migrate"});
        let with = |extra: Value| {
            let mut p = base.clone();
            if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
                p.extend(extra.clone());
            }
            p
        };
        assert!(v(with(json!({"condition": "Complete"}))).is_empty());
        assert_eq!(v(with(json!({}))).len(), 1);
        assert_eq!(v(with(json!({"field": "status.phase"})))[0].field, "values");
        assert_eq!(
            v(with(json!({"condition": "Complete", "timeout": "soon"})))[0].field,
            "timeout"
        );
        assert_eq!(
            v(with(json!({"condition": "Complete", "kind_of": 1})))[0].field,
            "kind_of"
        );
    }
}
