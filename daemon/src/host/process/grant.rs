//! What the operator grants a plugin's programs, read from its `[plugins.NAME]` table:
//!
//! - `exec = ["kubectl", ...]`: the programs it may run (resolved to absolute paths at load);
//! - `exec_env = ["NAME", "PREFIX_*"]`: the environment variables it may set for them;
//! - `exec_network = true`: its programs may use the network (they get none otherwise);
//! - `exec_paths = ["/opt/mirror", "${env.TF_MIRROR}"]`: trees its programs may read and run
//!   files from, beyond their own files and the task's directories (a leading `${env.NAME}`
//!   is the daemon's variable; unset, the entry grants nothing);
//! - `exec_workspace = true`: its programs may run files in the task's workspace and scratch
//!   directories (what `terraform init` downloads, for example).

use std::path::PathBuf;

use super::startup;
use crate::config::template::{self, Reference};
use crate::wasm::bindings::types::TaskError;
use crate::wasm::grants::{Grant, Programs, resolve_program};

/// The grant keys this module reads.
pub const KEYS: &[&str] = &[
    "exec",
    "exec_env",
    "exec_network",
    "exec_paths",
    "exec_workspace",
];

/// One plugin's programs: which, with what environment, seeing what.
#[derive(Debug, Clone, Default)]
pub struct ProgramGrant {
    pub programs: Programs,
    pub env: EnvPolicy,
    pub network: bool,
    /// Files and trees the programs may read and execute: every granted program, what it
    /// needs to start (its ELF loader, its script interpreter) and `exec_paths`.
    pub runnable: Vec<PathBuf>,
    /// Files in the task's workspace and scratch directories may be executed.
    pub exec_in_task_dirs: bool,
}

impl ProgramGrant {
    /// Reads the grant's keys; each error names the key and what it must be.
    pub fn read(
        plugin: &str,
        programs: Programs,
        grant: &Grant,
        search_path: &str,
        builtin: bool,
    ) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut problem = |e: String| errors.push(format!("[plugins.{plugin}] {e}"));
        let env = match grant.0.get("exec_env") {
            Some(_) => match grant.strings("exec_env") {
                Ok(names) => match names.iter().find(|n| !valid_pattern(n)) {
                    Some(bad) => {
                        problem(format!(
                            "exec_env entry `{bad}` must be a variable name or a prefix ending in `*` (e.g. \"TF_VAR_*\")"
                        ));
                        EnvPolicy::Listed(Vec::new())
                    }
                    None => EnvPolicy::Listed(names),
                },
                Err(e) => {
                    problem(e);
                    EnvPolicy::Listed(Vec::new())
                }
            },
            // gantry's own kinds pass on the variables the workflow file names.
            None if builtin => EnvPolicy::WorkflowNamed,
            None => EnvPolicy::Listed(Vec::new()),
        };
        let network = grant.flag("exec_network").unwrap_or_else(|e| {
            problem(e);
            false
        });
        let exec_in_task_dirs = grant.flag("exec_workspace").unwrap_or_else(|e| {
            problem(e);
            false
        });
        let mut runnable = Vec::new();
        for entry in grant.strings("exec_paths").unwrap_or_else(|e| {
            problem(e);
            Vec::new()
        }) {
            let path = match expand_env(&entry) {
                Ok(Some(path)) => PathBuf::from(path),
                // An entry naming an unset variable grants nothing.
                Ok(None) => continue,
                Err(e) => {
                    problem(format!("exec_paths entry `{entry}`: {e}"));
                    continue;
                }
            };
            if !path.is_absolute() {
                problem(format!(
                    "exec_paths entry `{}` must be an absolute path",
                    path.display()
                ));
                continue;
            }
            match path.canonicalize() {
                Ok(real) => runnable.push(real),
                Err(e) => problem(format!("exec_paths entry `{}`: {e}", path.display())),
            }
        }
        // Every granted program, requested by the plugin or not: a granted shell may run
        // the others.
        for program in grant.strings("exec").unwrap_or_default() {
            if let Some(path) = resolve_program(&program, search_path) {
                runnable.extend(startup::files_to_start(&path));
            }
        }
        runnable.sort();
        runnable.dedup();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ProgramGrant {
            programs,
            env,
            network,
            runnable,
            exec_in_task_dirs,
        })
    }
}

/// `entry` with a leading `${env.NAME}` replaced by the daemon's variable; `None` when the
/// variable is unset. Read by the same template reader as parameters; only a leading
/// reference, so a grant names a directory the operator chose, not one it builds.
fn expand_env(entry: &str) -> Result<Option<String>, String> {
    const ONLY: &str = "only a leading ${env.NAME} is expanded";
    let refs = template::references(entry).map_err(|e| format!("{ONLY}: {e}"))?;
    match refs.as_slice() {
        [] => Ok(Some(entry.to_string())),
        [Reference::Env(name)] if entry.starts_with("${env.") => {
            let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) else {
                return Ok(None);
            };
            let mut text = serde_json::Value::String(entry.to_string());
            template::substitute(&mut text, &|_| Ok(value.clone()))?;
            Ok(text.as_str().map(str::to_string))
        }
        _ => Err(ONLY.into()),
    }
}

/// Which environment variables a plugin may set for its programs. The program's base
/// environment (`PATH`, `HOME`, `TMPDIR`, `LANG`) is the host's and cannot be changed.
#[derive(Debug, Clone)]
pub enum EnvPolicy {
    /// Only these names (or `PREFIX*` patterns), from the grant's `exec_env`.
    Listed(Vec<String>),
    /// gantry's own kinds, whose variables come from the workflow file the operator wrote.
    WorkflowNamed,
}

impl Default for EnvPolicy {
    fn default() -> Self {
        EnvPolicy::Listed(Vec::new())
    }
}

impl EnvPolicy {
    /// Whether `plugin` may set `name`; names that load code into any program are refused
    /// whatever the grant says.
    pub fn check(&self, plugin: &str, name: &str) -> Result<(), TaskError> {
        if let Some(why) = injects_code(name) {
            return Err(TaskError::CapabilityDenied(format!(
                "environment variable `{name}` may not be set for a program: {why}"
            )));
        }
        let allowed = match self {
            EnvPolicy::WorkflowNamed => true,
            EnvPolicy::Listed(patterns) => patterns.iter().any(|p| matches(p, name)),
        };
        if allowed {
            return Ok(());
        }
        Err(TaskError::CapabilityDenied(format!(
            "plugin `{plugin}` may not set environment variable `{name}` for its programs: add exec_env = [\"{name}\"] under [plugins.{plugin}] in gantry.toml if it should"
        )))
    }
}

/// Why setting `name` would let its value run code in whatever program receives it.
fn injects_code(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Some("not a variable name");
    }
    if name.starts_with("LD_") || name.starts_with("DYLD_") {
        return Some("it changes what the dynamic loader loads");
    }
    if name.starts_with("BASH_FUNC_") {
        return Some("it defines shell functions");
    }
    match name {
        "PATH" => Some("programs are found on the host's PATH"),
        "BASH_ENV" | "ENV" => Some("it makes shells run a file"),
        "GLIBC_TUNABLES" | "GCONV_PATH" | "HOSTALIASES" | "MALLOC_CONF" => {
            Some("it changes how the C library behaves")
        }
        _ => None,
    }
}

fn valid_pattern(p: &str) -> bool {
    let name = p.strip_suffix('*').unwrap_or(p);
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_names_pass_and_loader_variables_never_do() {
        let listed = EnvPolicy::Listed(vec!["TF_VAR_*".into(), "REGION".into()]);
        assert!(listed.check("p", "TF_VAR_port").is_ok());
        assert!(listed.check("p", "REGION").is_ok());
        for refused in [
            "HOME",
            "KUBECONFIG",
            "HELM_PLUGINS",
            "GIT_SSH_COMMAND",
            "PYTHONPATH",
            "NODE_OPTIONS",
            "REGIONX",
        ] {
            let e = listed.check("p", refused).unwrap_err();
            assert!(
                format!("{e:?}").contains("exec_env = ["),
                "{refused}: {e:?}"
            );
        }
        let workflow = EnvPolicy::WorkflowNamed;
        assert!(workflow.check("exec", "VERSION").is_ok());
        for always in [
            "LD_PRELOAD",
            "BASH_FUNC_ls%%",
            "GLIBC_TUNABLES",
            "PATH",
            "BASH_ENV",
            "A=B",
            "",
        ] {
            assert!(workflow.check("exec", always).is_err(), "{always}");
            let all = EnvPolicy::Listed(vec![always.to_string()]);
            assert!(all.check("p", always).is_err(), "{always}");
        }
    }

    #[test]
    fn exec_paths_expand_a_leading_variable() {
        assert_eq!(expand_env("/opt/x").unwrap(), Some("/opt/x".into()));
        assert_eq!(expand_env("${env.GANTRY_TEST_UNSET_VAR}/x").unwrap(), None);
        let home = std::env::var("PATH").unwrap();
        assert_eq!(
            expand_env("${env.PATH}/x").unwrap(),
            Some(format!("{home}/x"))
        );
        assert!(expand_env("/opt/${env.PATH}").is_err());
        assert!(expand_env("${env.PATH}/${env.PATH}").is_err());
        assert!(expand_env("${secrets.KEY}/x").is_err());
        assert!(expand_env("${env.PATH/x").is_err());
    }

    #[test]
    fn patterns_are_names_or_prefixes() {
        assert!(valid_pattern("TF_VAR_*"));
        assert!(valid_pattern("REGION"));
        assert!(!valid_pattern("*"));
        assert!(!valid_pattern("A B"));
        assert!(!valid_pattern(""));
    }
}
