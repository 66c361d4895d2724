//! Built-in hook kinds.
//!
//! - `command`: runs a granted program; exit 0 proceeds, exit 3 skips the task (stdout is the
//!   reason), any other exit fails it with the stderr tail.
//! - `gate`: a fixed decision from configuration, for manual gates and freezes.

use gantry_sdk::host::{self, Command};
use gantry_sdk::{
    Capability, HookContext, HookDecision, ParamSpec, ParamsExt, Phase, PluginInfo,
    ValidateContext, ValidationIssue, validate_params,
};
use serde::Deserialize;

/// The exit code a `command` hook uses to skip the task.
pub const SKIP_EXIT_CODE: i32 = 3;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandParams {
    command: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
enum Decision {
    Proceed,
    Skip,
    Fail,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateParams {
    decision: Decision,
    #[serde(default)]
    reason: String,
}

struct Hooks;

impl gantry_sdk::Hook for Hooks {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hooks".into(),
            kinds: vec!["command".into(), "gate".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Command hooks and fixed gates".into(),
            capabilities: vec![Capability::Exec("*".into())],
            parameters: vec![
                ParamSpec::new(
                    "command",
                    "list<string>",
                    false,
                    "command: program and arguments",
                ),
                ParamSpec::new("decision", "string", false, "gate: proceed, skip or fail"),
                ParamSpec::new("reason", "string", false, "gate: why"),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        match ctx.kind.as_str() {
            "command" => validate_params::<CommandParams>(&ctx.params),
            "gate" => validate_params::<GateParams>(&ctx.params),
            other => vec![ValidationIssue::new(
                "",
                format!("unknown hook kind `{other}` (expected command or gate)"),
            )],
        }
    }

    fn on_phase(ctx: &HookContext) -> HookDecision {
        let decided = match ctx.kind.as_str() {
            "gate" => gate(ctx),
            "command" => command(ctx),
            other => Err(format!("hooks plugin has no kind `{other}`")),
        };
        decided.unwrap_or_else(HookDecision::Fail)
    }
}

fn gate(ctx: &HookContext) -> Result<HookDecision, String> {
    let p: GateParams = ctx.params().map_err(|e| e.to_string())?;
    Ok(match p.decision {
        Decision::Proceed => HookDecision::Proceed,
        Decision::Skip => HookDecision::Skip(p.reason),
        Decision::Fail => HookDecision::Fail(p.reason),
    })
}

fn command(ctx: &HookContext) -> Result<HookDecision, String> {
    let p: CommandParams = ctx.params().map_err(|e| e.to_string())?;
    let (program, args) = p.command.split_first().ok_or("empty command")?;
    let phase = match ctx.phase {
        Phase::PreDeploy => "pre-deploy",
        Phase::PostDeploy => "post-deploy",
        Phase::OnFailure => "on-failure",
        Phase::PreDestroy => "pre-destroy",
    };
    // What the hook prints belongs in the task's log, as it is printed.
    let mut cmd = Command::new(program.clone(), args.iter().cloned()).streamed();
    cmd.env = vec![
        ("GANTRY_PHASE".into(), phase.into()),
        ("GANTRY_TASK".into(), ctx.task.clone()),
        ("GANTRY_WORKFLOW".into(), ctx.workflow.clone()),
        ("GANTRY_RUN".into(), ctx.run_id.clone()),
    ];
    cmd.env.extend(ctx.outputs.iter().map(|o| {
        (
            format!("GANTRY_OUTPUT_{}", o.key.to_uppercase()),
            o.value.clone(),
        )
    }));
    if let Some(error) = &ctx.error {
        cmd.env.push(("GANTRY_ERROR".into(), error.clone()));
    }
    let out = host::run(&cmd).map_err(|e| e.to_string())?;
    Ok(match out.exit_code {
        Some(0) => HookDecision::Proceed,
        Some(SKIP_EXIT_CODE) => HookDecision::Skip(host::tail(&out.stdout, 1024)),
        code => HookDecision::Fail(format!(
            "{program} exited with {}: {}",
            code.map_or("a signal".to_string(), |c| c.to_string()),
            host::tail(&out.stderr, 2048)
        )),
    })
}

gantry_sdk::export_hook!(Hooks);
