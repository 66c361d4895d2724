//! Grants: a plugin may use a capability only if it requests it in `describe` **and** the
//! operator grants it in gantry.toml (the workspace, the task's own, needs no grant). Each
//! capability resolves its own part (`host::capability`); what a plugin ends up with is an
//! [`Effective`]. The two grants that name things — programs and namespaces — are resolved
//! here, every refusal naming its fix. Programs are resolved to absolute paths at load, so a
//! later change of PATH or of the working directory cannot redirect them.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::host::capability::Resolution;

pub use crate::config::daemon::Grant;

/// What one plugin may use, capability by capability, and why the rest was refused.
#[derive(Clone, Default, Serialize)]
pub struct Effective {
    #[serde(skip)]
    grants: BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// What was requested ("exec:helm", "kube", "workspace").
    pub requested: Vec<String>,
    /// What is usable ("exec:helm=/usr/bin/helm", "kube:apps-*", "workspace").
    pub granted: Vec<String>,
    /// Requested but not usable, each with the fix.
    pub refusals: Vec<String>,
    /// `gantry.toml` lines under `[plugins.NAME]` that would grant all that is requested.
    pub suggested: Vec<String>,
}

impl fmt::Debug for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Effective")
            .field("granted", &self.granted)
            .field("refusals", &self.refusals)
            .finish()
    }
}

impl Effective {
    /// Adds one capability's resolution.
    pub fn add(&mut self, capability: &'static str, r: Resolution) {
        if let Some(grant) = r.grant {
            self.grants.insert(capability, grant);
        }
        self.requested.extend(r.requested);
        self.granted.extend(r.granted);
        self.refusals.extend(r.refusals);
        self.suggested.extend(r.suggested);
    }

    /// The grant `capability` resolved for this plugin, if any.
    pub fn grant<T: Send + Sync + 'static>(&self, capability: &str) -> Option<Arc<T>> {
        self.grants
            .get(capability)
            .and_then(|g| g.clone().downcast::<T>().ok())
    }

    pub fn has(&self, capability: &str) -> bool {
        self.grants.contains_key(capability)
    }
}

/// The programs a plugin may run: name as the plugin calls it → absolute path.
#[derive(Debug, Clone, Default)]
pub struct Programs {
    paths: BTreeMap<String, PathBuf>,
    /// Program names the plugin requested (`*` for any granted one).
    requested: Vec<String>,
}

impl Programs {
    /// Requested ∧ granted, programs resolved with `search_path` (the daemon's PATH); the
    /// refusals name their fix.
    pub fn resolve(
        plugin: &str,
        requested: Vec<String>,
        granted: &[String],
        search_path: &str,
    ) -> (Programs, Vec<String>) {
        let mut refusals = Vec::new();
        let mut programs = Programs {
            paths: BTreeMap::new(),
            requested,
        };
        let wants_any = programs.requested.iter().any(|p| p == "*");
        for program in &programs.requested {
            if program != "*" && !granted.iter().any(|g| same_program(g, program)) {
                refusals.push(format!(
                    "exec `{program}` is requested but not granted: add exec = [\"{program}\"] under [plugins.{plugin}] in gantry.toml"
                ));
            }
        }
        for granted in granted {
            let requested =
                wants_any || programs.requested.iter().any(|p| same_program(granted, p));
            if !requested {
                continue;
            }
            match resolve_program(granted, search_path) {
                Some(path) => {
                    programs
                        .paths
                        .insert(program_name(granted).to_string(), path.clone());
                    programs.paths.insert(path.display().to_string(), path);
                }
                None => refusals.push(format!(
                    "exec `{granted}` is granted but no such program was found on PATH"
                )),
            }
        }
        (programs, refusals)
    }

    /// The absolute path of `program` if the plugin may run it, or the reason it may not.
    pub fn program(&self, plugin: &str, program: &str) -> Result<&Path, String> {
        if let Some(path) = self.paths.get(program) {
            return Ok(path);
        }
        let requested = self
            .requested
            .iter()
            .any(|p| p == "*" || same_program(p, program));
        if !requested {
            return Err(format!(
                "plugin `{plugin}` may not run `{program}`: it did not request it (requested: {})",
                list_or_none(&self.requested)
            ));
        }
        Err(format!(
            "plugin `{plugin}` may not run `{program}`: the operator has not granted it; add exec = [\"{program}\"] under [plugins.{plugin}] in gantry.toml"
        ))
    }

    /// Granted programs by the name plugins call them, with their paths.
    pub fn named(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.paths
            .iter()
            .filter(|(name, _)| !name.starts_with('/'))
            .map(|(n, p)| (n.as_str(), p.as_path()))
    }
}

/// The namespaces a plugin's kube sessions may touch; `*` wildcards allowed ("apps-*").
#[derive(Debug, Clone, Default)]
pub struct Namespaces {
    pub patterns: Vec<String>,
}

impl Namespaces {
    pub fn allowed(&self, namespace: &str) -> bool {
        self.patterns
            .iter()
            .any(|pattern| wildcard_match(pattern, namespace))
    }

    /// Whether every namespace, and so cluster-scoped objects, is granted.
    pub fn all(&self) -> bool {
        self.patterns.iter().any(|p| p == "*")
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

/// The absolute path of a granted program: as written when absolute, else found on
/// `search_path`.
pub fn resolve_program(program: &str, search_path: &str) -> Option<PathBuf> {
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

    fn resolve(requested: &[&str], granted: &[&str]) -> (Programs, Vec<String>) {
        let granted: Vec<String> = granted.iter().map(|g| g.to_string()).collect();
        Programs::resolve(
            "p",
            requested.iter().map(|r| r.to_string()).collect(),
            &granted,
            PATH,
        )
    }

    #[test]
    fn a_program_needs_both_request_and_grant() {
        let (programs, refusals) = resolve(&["sh"], &["sh", "true"]);
        assert!(refusals.is_empty());
        assert!(programs.program("p", "sh").is_ok());
        let err = programs.program("p", "true").unwrap_err();
        assert!(err.contains("did not request"), "{err}");
        let (programs, refusals) = resolve(&["sh"], &[]);
        let err = programs.program("p", "sh").unwrap_err();
        assert!(
            err.contains("add exec = [\"sh\"] under [plugins.p]"),
            "{err}"
        );
        assert_eq!(refusals.len(), 1);
    }

    #[test]
    fn star_requests_whatever_is_granted_and_paths_are_absolute() {
        let (programs, _) = resolve(&["*"], &["sh"]);
        let sh = programs.program("exec", "sh").unwrap();
        assert!(sh.is_absolute());
        assert_eq!(
            programs.program("exec", &sh.display().to_string()).unwrap(),
            sh
        );
        assert!(
            programs
                .program("exec", "bash")
                .unwrap_err()
                .contains("not granted")
        );
    }

    #[test]
    fn missing_programs_and_relative_paths_are_refused() {
        let (programs, refusals) = resolve(&["*"], &["no-such-tool-xyz", "./sh"]);
        assert_eq!(programs.named().count(), 0);
        assert_eq!(refusals.len(), 2, "{refusals:?}");
    }

    #[test]
    fn namespaces_match_wildcards() {
        let ns = Namespaces {
            patterns: vec!["apps-*".into(), "infra".into()],
        };
        assert!(ns.allowed("apps-web"));
        assert!(ns.allowed("infra"));
        assert!(!ns.allowed("kube-system"));
        assert!(!ns.all());
        assert!(wildcard_match("a*b*c", "axxbyyc"));
        assert!(!wildcard_match("a*b", "ab-c"));
    }
}
