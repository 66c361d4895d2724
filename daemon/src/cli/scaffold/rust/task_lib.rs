//! {{name}}: a gantry task kind, used in a workflow as `kind = "{{name}}"`.
//!
//! Edit `Params`, `describe` and `apply` (and `plan`, `rollback`, `destroy` when the task
//! changes something it can preview or undo); build with `./build.sh`.

use gantry_sdk::{
    Deployment, ParamSpec, ParamsExt, PluginInfo, TaskContext, TaskError, ValidateContext,
    ValidationIssue, host, validate_params,
};
use serde::Deserialize;

/// The task's parameters: the keys of its table in a workflow, besides `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Who to greet.
    pub name: String,
    /// Greet in capitals.
    #[serde(default)]
    pub shout: bool,
}

/// The task's logic, kept apart from the host so the unit tests can call it natively.
pub fn greeting(p: &Params) -> String {
    let text = format!("hello, {}", p.name);
    if p.shout { text.to_uppercase() } else { text }
}

pub struct Plugin;

impl gantry_sdk::Task for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            kinds: vec!["{{name}}".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "{{name}} task".into(),
            // What the plugin may ask the host for (Capability::Exec("helm".into()),
            // Capability::Kube, Capability::Workspace); the operator grants it too.
            capabilities: vec![],
            parameters: vec![
                ParamSpec::new("name", "string", true, "who to greet"),
                ParamSpec::new("shout", "bool", false, "greet in capitals").default("false"),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        validate_params::<Params>(&ctx.params)
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let text = greeting(&p);
        host::info(&text);
        Ok(Deployment::with_outputs([("greeting", text)]))
    }
}

gantry_sdk::export_task!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Task;
    use gantry_sdk::testing::{context, logs, validate_context};

    #[test]
    fn apply_greets_and_returns_the_greeting_as_an_output() {
        let ctx = context("{{name}}", r#"{"name":"ops","shout":true}"#);
        let d = Plugin::apply(&ctx).expect("apply");
        assert_eq!(d.outputs[0].key, "greeting");
        assert_eq!(d.outputs[0].value, "HELLO, OPS");
        assert_eq!(logs()[0].1, "HELLO, OPS");
    }

    #[test]
    fn validation_names_the_wrong_parameter() {
        let issues = Plugin::validate(&validate_context("{{name}}", r#"{"nme":"x"}"#));
        assert_eq!(issues[0].field, "nme");
    }
}
