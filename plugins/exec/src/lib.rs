//! The built-in `exec` task kind: run a granted program, fail on a non-zero exit, and turn
//! `KEY=VALUE` lines printed after the `::gantry-outputs::` marker line into task outputs.

use std::collections::BTreeMap;

use gantry_sdk::host::{self, Command};
use gantry_sdk::{
    Capability, Deployment, ParamSpec, ParamsExt, PluginInfo, RollbackOutcome, TaskContext,
    TaskError, ValidateContext, ValidationIssue, parse_duration, validate_params,
};
use serde::Deserialize;

/// Standard output lines after this one are read as `KEY=VALUE` outputs.
pub const OUTPUT_MARKER: &str = "::gantry-outputs::";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    /// Program and arguments, e.g. `["sh", "-c", "echo hi"]`.
    command: Vec<String>,
    /// Run on rollback, if set; otherwise rollback is reported as unsupported.
    rollback: Option<Vec<String>>,
    /// Run when the task is removed from the workflow.
    destroy: Option<Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Working directory: a path under the source (`/src`) or scratch (`/scratch`) directory.
    cwd: Option<String>,
    stdin: Option<String>,
    /// Kill the program after this long, e.g. "30s".
    timeout: Option<String>,
}

struct Exec;

impl gantry_sdk::Task for Exec {
    fn describe() -> PluginInfo {
        let param = ParamSpec::new;
        PluginInfo {
            name: "exec".into(),
            kinds: vec!["exec".into()],
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Runs a command; KEY=VALUE lines after `::gantry-outputs::` become outputs".into(),
            capabilities: vec![Capability::Exec("*".into())],
            parameters: vec![
                param("command", "list<string>", true, "program and arguments"),
                param("rollback", "list<string>", false, "command run on rollback"),
                param(
                    "destroy",
                    "list<string>",
                    false,
                    "command run when the task is removed",
                ),
                param("env", "table<string>", false, "environment of the command"),
                param(
                    "cwd",
                    "string",
                    false,
                    "working directory under /src or /scratch",
                ),
                param("stdin", "string", false, "text fed to standard input"),
                param(
                    "timeout",
                    "duration",
                    false,
                    "kill the command after this long",
                ),
            ],
        }
    }

    fn validate(ctx: &ValidateContext) -> Vec<ValidationIssue> {
        let params = ctx.params.as_str();
        let mut issues = validate_params::<Params>(params);
        if let Ok(p) = serde_json::from_str::<Params>(params) {
            for (field, cmd) in [
                ("command", Some(&p.command)),
                ("rollback", p.rollback.as_ref()),
                ("destroy", p.destroy.as_ref()),
            ] {
                if cmd.is_some_and(|c| c.is_empty()) {
                    issues.push(issue(
                        field,
                        "must name a program, e.g. [\"sh\", \"-c\", \"...\"]",
                    ));
                }
            }
            if let Some(Err(e)) = p.timeout.as_deref().map(parse_duration) {
                issues.push(issue("timeout", &e));
            }
            for (field, cmd) in [
                ("command", Some(&p.command)),
                ("rollback", p.rollback.as_ref()),
                ("destroy", p.destroy.as_ref()),
            ] {
                if let Some(reference) = cmd.and_then(|c| reference_in_script(c)) {
                    issues.push(issue(
                        field,
                        &format!(
                            "`{reference}` inside a script would run whatever text it holds as code; pass it as data instead: env = {{ VALUE = \"{reference}\" }} and use \"$VALUE\" in the script"
                        ),
                    ));
                }
            }
        }
        issues
    }

    fn apply(ctx: &TaskContext) -> Result<Deployment, TaskError> {
        let p: Params = ctx.params()?;
        let stdout = run(&p, &p.command)?;
        Ok(Deployment::with_outputs(parse_outputs(&stdout)))
    }

    fn rollback(ctx: &TaskContext) -> Result<RollbackOutcome, TaskError> {
        let p: Params = ctx.params()?;
        let Some(cmd) = &p.rollback else {
            return Ok(RollbackOutcome::Unsupported(
                "exec task has no `rollback` command".into(),
            ));
        };
        let stdout = run(&p, cmd)?;
        Ok(RollbackOutcome::RolledBack(Deployment::with_outputs(
            parse_outputs(&stdout),
        )))
    }

    fn destroy(ctx: &TaskContext) -> Result<(), TaskError> {
        let p: Params = ctx.params()?;
        match &p.destroy {
            Some(cmd) => run(&p, cmd).map(drop),
            None => Ok(()),
        }
    }
}

fn issue(field: &str, message: &str) -> ValidationIssue {
    ValidationIssue::new(field, message)
}

/// Programs that take code to run as an argument after `-c` (or `-e`).
const INTERPRETERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "python", "python3", "perl", "ruby",
    "node",
];

/// A `${...}` reference (an output, a variable, a secret) placed inside code an interpreter
/// runs: its value, chosen by whoever produced it, would become code.
fn reference_in_script(argv: &[String]) -> Option<String> {
    let program = argv.first()?;
    let name = program.rsplit('/').next().unwrap_or(program);
    if !INTERPRETERS.contains(&name) {
        return None;
    }
    let script = argv
        .iter()
        .skip(1)
        .skip_while(|a| !(a.starts_with('-') && (a.contains('c') || a.contains('e'))))
        .nth(1)?;
    let start = script.find("${")?;
    let end = script[start..]
        .find('}')
        .map_or(script.len(), |e| start + e + 1);
    Some(script[start..end].to_string())
}

/// Runs `argv` with the task's environment and returns its standard output.
fn run(p: &Params, argv: &[String]) -> Result<String, TaskError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| TaskError::invalid("empty command"))?;
    let timeout_ms = p
        .timeout
        .as_deref()
        .map(parse_duration)
        .transpose()
        .map_err(TaskError::InvalidConfig)?
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let command = Command {
        env: p.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        cwd: p.cwd.clone(),
        stdin: p.stdin.as_ref().map(|s| s.as_bytes().to_vec()),
        timeout_ms,
        ..Command::new(program.clone(), args.iter().cloned()).streamed()
    };
    host::info(&format!("running {}", argv.join(" ")));
    let out = host::run(&command)?.check(program)?;
    if out.truncated {
        host::warn("command output was truncated by the host's limit");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `KEY=VALUE` lines after the marker; other lines there are ignored.
pub fn parse_outputs(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .skip_while(|line| line.trim() != OUTPUT_MARKER)
        .skip(1)
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            let key = key.trim();
            let valid = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            valid.then(|| (key.to_string(), value.to_string()))
        })
        .collect()
}

gantry_sdk::export_task!(Exec);

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_sdk::Task;
    use gantry_sdk::testing::{commands, context, on_run, output, validate_context};

    #[test]
    fn outputs_come_only_after_the_marker() {
        let out = "NOT=this\n::gantry-outputs::\nhost=db.local\nnot a pair\nport=5432\n";
        assert_eq!(
            parse_outputs(out),
            vec![
                ("host".into(), "db.local".into()),
                ("port".into(), "5432".into())
            ]
        );
        assert!(parse_outputs("a=b\n").is_empty());
    }

    #[test]
    fn apply_runs_the_command_and_reads_outputs() {
        on_run(|_| Ok(output(0, "::gantry-outputs::\nurl=http://x\n", "")));
        let ctx = context(
            "exec",
            r#"{"command":["sh","-c","echo"],"env":{"A":"1"},"timeout":"5s"}"#,
        );
        let d = Exec::apply(&ctx).unwrap();
        assert_eq!(d.outputs[0].key, "url");
        let cmd = &commands()[0];
        assert_eq!(cmd.program, "sh");
        assert_eq!(cmd.args, vec!["-c", "echo"]);
        assert_eq!(cmd.env, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(cmd.timeout_ms, Some(5000));
        assert!(
            cmd.stream_output,
            "a command's output goes to the log as it is printed"
        );
    }

    #[test]
    fn non_zero_exit_fails_with_the_stderr_tail() {
        on_run(|_| Ok(output(3, "", "boom\n")));
        let err = Exec::apply(&context("exec", r#"{"command":["false"]}"#)).unwrap_err();
        match err {
            TaskError::ToolFailed(f) => {
                assert_eq!(f.exit_code, Some(3));
                assert_eq!(f.stderr_tail, "boom");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn validate_reports_each_problem() {
        let v = |p: &str| Exec::validate(&validate_context("exec", p));
        let issues = v(r#"{"command":[],"timeout":"soon"}"#);
        let fields: Vec<_> = issues.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, vec!["command", "timeout"]);
        assert_eq!(v(r#"{"cmd":["x"]}"#)[0].field, "cmd");
    }

    #[test]
    fn references_inside_scripts_are_refused_as_data_elsewhere() {
        let v = |p: &str| Exec::validate(&validate_context("exec", p));
        let issues =
            v(r#"{"command":["/bin/sh","-c","./deploy.sh ${tasks.infra.db.outputs.host}"]}"#);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].message.contains("env = {"),
            "{}",
            issues[0].message
        );
        let issues = v(r#"{"command":["bash","-ec","x"],"rollback":["python3","-c","${env.X}"]}"#);
        assert_eq!(issues[0].field, "rollback");
        // As an argument of its own, or through the environment, a value stays data.
        assert!(v(r#"{"command":["./deploy.sh","${tasks.infra.db.outputs.host}"]}"#).is_empty());
        assert!(
            v(r#"{"command":["sh","-c","./deploy.sh \"$HOST\""],"env":{"HOST":"${tasks.a.b.outputs.h}"}}"#)
                .is_empty()
        );
    }

    #[test]
    fn rollback_without_a_command_is_unsupported() {
        let out = Exec::rollback(&context("exec", r#"{"command":["true"]}"#)).unwrap();
        assert!(matches!(out, RollbackOutcome::Unsupported(_)));
    }
}
