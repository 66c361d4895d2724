//! Capabilities: a plugin may use one only if it requests it in `describe` **and** the
//! operator grants it in gantry.toml. Programs are resolved to absolute paths at load, so a
//! later change of PATH or of the working directory cannot redirect them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::bindings::types::Capability;

/// What the operator grants one plugin, from `[plugins.NAME]` in gantry.toml.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Programs the plugin may run, by name (looked up on PATH) or absolute path.
    #[serde(default)]
    pub exec: Vec<String>,
    /// Namespaces the plugin's kube sessions may touch; `*` wildcards allowed ("apps-*").
    #[serde(default)]
    pub kube_namespaces: Vec<String>,
}

/// The capabilities one plugin actually has, and why others were refused.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Effective {
    /// Program name as the plugin calls it → absolute path.
    pub programs: BTreeMap<String, PathBuf>,
    /// Program names the plugin requested (`*` for any granted one).
    pub requested_programs: Vec<String>,
    pub requested_kube: bool,
    pub kube_namespaces: Vec<String>,
    /// The task's own persistent directory: requested, and needing no grant.
    pub workspace: bool,
    /// Requested but not usable, each with the fix.
    pub refusals: Vec<String>,
}

impl Effective {
    /// Requested ∧ granted, resolving programs with `search_path` (the daemon's PATH).
    pub fn resolve(
        plugin: &str,
        requested: &[Capability],
        grant: &Grant,
        search_path: &str,
    ) -> Self {
        let mut eff = Effective::default();
        for cap in requested {
            match cap {
                Capability::Exec(p) => eff.requested_programs.push(p.clone()),
                Capability::Kube => eff.requested_kube = true,
                Capability::Workspace => eff.workspace = true,
            }
        }
        let wants_any = eff.requested_programs.iter().any(|p| p == "*");
        for program in &eff.requested_programs {
            if program != "*" && !grant.exec.iter().any(|g| same_program(g, program)) {
                eff.refusals.push(format!(
                    "exec `{program}` is requested but not granted: add exec = [\"{program}\"] under [plugins.{plugin}] in gantry.toml"
                ));
            }
        }
        for granted in &grant.exec {
            let requested = wants_any
                || eff
                    .requested_programs
                    .iter()
                    .any(|p| same_program(granted, p));
            if !requested {
                continue;
            }
            match resolve_program(granted, search_path) {
                Some(path) => {
                    eff.programs
                        .insert(program_name(granted).to_string(), path.clone());
                    eff.programs.insert(path.display().to_string(), path);
                }
                None => eff.refusals.push(format!(
                    "exec `{granted}` is granted but no such program was found on PATH"
                )),
            }
        }
        if eff.requested_kube {
            if grant.kube_namespaces.is_empty() {
                eff.refusals.push(format!(
                    "kube is requested but no namespace is granted: add kube_namespaces = [\"...\"] under [plugins.{plugin}] in gantry.toml"
                ));
            }
            eff.kube_namespaces = grant.kube_namespaces.clone();
        }
        eff
    }

    /// The absolute path of `program` if the plugin may run it, or the reason it may not.
    pub fn program(&self, plugin: &str, program: &str) -> Result<&Path, String> {
        if let Some(path) = self.programs.get(program) {
            return Ok(path);
        }
        let requested = self
            .requested_programs
            .iter()
            .any(|p| p == "*" || same_program(p, program));
        if !requested {
            return Err(format!(
                "plugin `{plugin}` may not run `{program}`: it did not request it (requested: {})",
                list_or_none(&self.requested_programs)
            ));
        }
        Err(format!(
            "plugin `{plugin}` may not run `{program}`: the operator has not granted it; add exec = [\"{program}\"] under [plugins.{plugin}] in gantry.toml"
        ))
    }

    /// Whether a kube session may touch `namespace`.
    pub fn namespace_allowed(&self, namespace: &str) -> bool {
        self.requested_kube
            && self
                .kube_namespaces
                .iter()
                .any(|pattern| wildcard_match(pattern, namespace))
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "nothing".to_string()
    } else {
        items.join(", ")
    }
}

fn program_name(program: &str) -> &str {
    Path::new(program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(program)
}

/// "helm" and "/usr/bin/helm" name the same program for grant matching.
fn same_program(a: &str, b: &str) -> bool {
    a == b || program_name(a) == program_name(b)
}

fn resolve_program(program: &str, search_path: &str) -> Option<PathBuf> {
    let candidate = Path::new(program);
    if candidate.is_absolute() {
        return is_executable(candidate).then(|| candidate.to_path_buf());
    }
    if program.contains('/') {
        return None;
    }
    std::env::split_paths(search_path)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Glob with `*` only, as used for namespace grants.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => {
            let Some(tail) = text.strip_prefix(prefix) else {
                return false;
            };
            if rest.is_empty() {
                return true;
            }
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| wildcard_match(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/usr/bin:/bin";

    #[test]
    fn a_capability_needs_both_request_and_grant() {
        let grant = Grant {
            exec: vec!["sh".into(), "true".into()],
            ..Grant::default()
        };
        let eff = Effective::resolve("p", &[Capability::Exec("sh".into())], &grant, PATH);
        assert!(eff.program("p", "sh").is_ok());
        let err = eff.program("p", "true").unwrap_err();
        assert!(err.contains("did not request"), "{err}");
        let eff = Effective::resolve(
            "p",
            &[Capability::Exec("sh".into())],
            &Grant::default(),
            PATH,
        );
        let err = eff.program("p", "sh").unwrap_err();
        assert!(
            err.contains("add exec = [\"sh\"] under [plugins.p]"),
            "{err}"
        );
        assert_eq!(eff.refusals.len(), 1);
    }

    #[test]
    fn star_requests_whatever_is_granted_and_paths_are_absolute() {
        let grant = Grant {
            exec: vec!["sh".into()],
            ..Grant::default()
        };
        let eff = Effective::resolve("exec", &[Capability::Exec("*".into())], &grant, PATH);
        let sh = eff.program("exec", "sh").unwrap();
        assert!(sh.is_absolute());
        assert_eq!(eff.program("exec", &sh.display().to_string()).unwrap(), sh);
        assert!(
            eff.program("exec", "bash")
                .unwrap_err()
                .contains("not granted")
        );
    }

    #[test]
    fn missing_programs_and_relative_paths_are_refused() {
        let grant = Grant {
            exec: vec!["no-such-tool-xyz".into(), "./sh".into()],
            ..Grant::default()
        };
        let eff = Effective::resolve("p", &[Capability::Exec("*".into())], &grant, PATH);
        assert!(eff.programs.is_empty());
        assert_eq!(eff.refusals.len(), 2, "{:?}", eff.refusals);
    }

    #[test]
    fn namespaces_match_wildcards_and_need_the_request() {
        let grant = Grant {
            kube_namespaces: vec!["apps-*".into(), "infra".into()],
            ..Grant::default()
        };
        let eff = Effective::resolve("m", &[Capability::Kube], &grant, PATH);
        assert!(eff.namespace_allowed("apps-web"));
        assert!(eff.namespace_allowed("infra"));
        assert!(!eff.namespace_allowed("kube-system"));
        let eff = Effective::resolve("m", &[], &grant, PATH);
        assert!(!eff.namespace_allowed("infra"));
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b", "ab-c"));
    }
}
