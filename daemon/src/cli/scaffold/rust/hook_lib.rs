//! {{name}}: a gantry hook, run around tasks as `hooks.pre_deploy = [{ kind = "{{name}}" }]`.
//!
//! Edit `Params`, `describe` and `decide`; build with `./build.sh`.

use gantry_sdk::{
    HookContext, HookDecision, ParamSpec, ParamsExt, PluginInfo, ValidateContext, ValidationIssue,
    host, validate_params,
};
use serde::Deserialize;

/// The hook's parameters: the keys of its table, besides `kind`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// False skips the task.
    #[serde(default = "yes")]
    pub allow: bool,
    /// Why the task is skipped.
    #[serde(default)]
    pub reason: Option<String>,
}

fn yes() -> bool {
    true
}

/// The hook's logic, kept apart from the host so the unit tests can call it natively.
pub fn decide(p: &Params) -> HookDecision {
    if p.allow {
        HookDecision::Proceed
    } else {
        HookDecision::Skip(p.reason.clone().unwrap_or_else(|| "not allowed".into()))
    }
}

pub struct Plugin;

impl gantry_sdk::Hook for Plugin {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "{{name}}".into(),
            kinds: vec!["{{name}}".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "{{name}} hook".into(),
            capabilities: vec![],
            parameters: vec![
                ParamSpec::new("allow", "bool", false, "false skips the task").default("true"),
                ParamSpec::new("reason", "string", false, "why the task is skipped"),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        validate_params::<Params>(&ctx.params)
    }

    fn on_phase(ctx: &HookContext) -> HookDecision {
        match ctx.params::<Params>() {
            Ok(p) => {
                host::info(&format!(
                    "{}: {}",
                    ctx.task,
                    if p.allow { "proceed" } else { "skip" }
                ));
                decide(&p)
            }
            Err(e) => HookDecision::Fail(format!("{{name}}: {e}")),
        }
    }
}

gantry_sdk::export_hook!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Hook;
    use gantry_sdk::testing::validate_context;

    #[test]
    fn allowed_tasks_proceed_and_others_are_skipped_with_the_reason() {
        let p: Params = serde_json::from_str("{}").expect("defaults");
        assert!(matches!(decide(&p), HookDecision::Proceed));
        let p: Params =
            serde_json::from_str(r#"{"allow":false,"reason":"frozen"}"#).expect("params");
        assert!(matches!(decide(&p), HookDecision::Skip(r) if r == "frozen"));
    }

    #[test]
    fn validation_names_the_wrong_parameter() {
        let issues = Plugin::validate(&validate_context("{{name}}", r#"{"alow":false}"#));
        assert_eq!(issues[0].field, "alow");
    }
}
