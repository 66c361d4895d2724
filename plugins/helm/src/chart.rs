//! A chart on disk: where it is under the task's source, its `Chart.yaml`, the local
//! dependencies it pulls in with `file://`, copying it into the scratch directory (helm must
//! write there for `helm dependency build`; the source is read-only), and the template
//! functions whose output changes on every render.

use std::path::{Component, Path, PathBuf};

use gantry_kube_apply::yaml;
use serde_json::Value;

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A chart directory under the task's source (relative path).
    Dir(String),
    /// A packaged chart (`.tgz`) under the task's source (relative path).
    Archive(String),
    /// A chart in a repository served over HTTP(S).
    Repo { url: String, name: String },
    /// An OCI reference, `oci://registry/path/chart`.
    Oci(String),
}

/// A path relative to the task's source that does not leave it.
pub fn relative(path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(format!(
            "`{path}` must be a path inside the task's directory"
        ));
    }
    Ok(p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect())
}

/// Joins `base` (relative to the source) and a relative `rel` such as `../common`, refusing
/// results outside the source.
pub fn join_inside(base: &Path, rel: &str) -> Result<PathBuf, String> {
    let mut out: Vec<std::ffi::OsString> = base
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                if out.pop().is_none() {
                    return Err(format!(
                        "`{rel}` (from {}) leaves the task's directory",
                        base.display()
                    ));
                }
            }
            Component::CurDir => {}
            _ => return Err(format!("`{rel}` must be a relative path")),
        }
    }
    Ok(out.iter().collect())
}

/// `Chart.yaml` of a chart directory, parsed; errors name the file and line.
pub fn read_chart_yaml(root: &Path, dir: &Path) -> Result<Value, String> {
    let file = dir.join("Chart.yaml");
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(root.join(&file))
        .map_err(|e| format!("{shown}: {e} (a chart directory needs a Chart.yaml)"))?;
    let doc = yaml::documents(&text)
        .into_iter()
        .find(|d| !d.is_empty())
        .ok_or_else(|| format!("{shown}: empty"))?;
    yaml::read_document(&shown, &doc).map_err(|e| e.to_string())
}

/// The chart's dependencies: (name, repository).
pub fn dependencies(chart_yaml: &Value) -> Vec<(String, String)> {
    chart_yaml["dependencies"]
        .as_array()
        .map(|ds| {
            ds.iter()
                .map(|d| {
                    (
                        d["name"].as_str().unwrap_or_default().to_string(),
                        d["repository"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// True when `charts/` already holds the dependency, unpacked or packaged.
pub fn vendored(root: &Path, dir: &Path, name: &str) -> bool {
    let charts = root.join(dir).join("charts");
    if charts.join(name).join("Chart.yaml").is_file() {
        return true;
    }
    std::fs::read_dir(&charts)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let f = e.file_name().to_string_lossy().to_string();
                f.starts_with(&format!("{name}-")) && f.ends_with(".tgz")
            })
        })
        .unwrap_or(false)
}

/// Copies a directory tree, skipping symbolic links (they could point outside the source).
/// At most `budget` bytes are copied, so a huge directory cannot fill the scratch space.
pub fn copy_tree(from: &Path, to: &Path, budget: &mut u64) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let entries = std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", from.display()))?;
        let meta = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        let target = to.join(entry.file_name());
        if meta.is_dir() {
            copy_tree(&entry.path(), &target, budget)?;
        } else if meta.is_file() {
            let data = std::fs::read(entry.path())
                .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            *budget = budget
                .checked_sub(data.len() as u64)
                .ok_or_else(|| format!("{}: the chart is larger than 64 MiB", from.display()))?;
            std::fs::write(&target, data).map_err(|e| format!("{}: {e}", target.display()))?;
        }
    }
    Ok(())
}

/// Copies the chart at `dir` (relative to `root`) and the `file://` dependencies it names,
/// transitively, to the same relative places under `dest`, so relative references keep
/// working. Returns the directories that need `helm dependency build`.
pub fn stage(root: &Path, dir: &Path, dest: &Path) -> Result<Vec<PathBuf>, String> {
    let mut budget: u64 = 64 << 20;
    let mut pending = vec![dir.to_path_buf()];
    let mut done: Vec<PathBuf> = Vec::new();
    let mut needs_build = Vec::new();
    while let Some(d) = pending.pop() {
        if done.contains(&d) {
            continue;
        }
        copy_tree(&root.join(&d), &dest.join(&d), &mut budget)?;
        let chart = read_chart_yaml(root, &d)?;
        let deps = dependencies(&chart);
        if deps.iter().any(|(name, _)| !vendored(root, &d, name)) {
            needs_build.push(d.clone());
        }
        for (_, repo) in deps {
            if let Some(rel) = repo.strip_prefix("file://") {
                pending.push(join_inside(&d, rel)?);
            }
        }
        done.push(d);
    }
    // Dependencies first: a parent's build packages what its children built.
    needs_build.reverse();
    Ok(needs_build)
}

/// Template functions whose output differs between renders (or depends on the cluster), so a
/// chart using them shows changes on every plan and deploy.
const UNSTABLE: &[&str] = &[
    "lookup",
    "randAlphaNum",
    "randAlpha",
    "randNumeric",
    "randAscii",
    "randBytes",
    "randInt",
    "uuidv4",
    "genCA",
    "genCAWithKey",
    "genPrivateKey",
    "genSelfSignedCert",
    "genSelfSignedCertWithKey",
    "genSignedCert",
    "genSignedCertWithKey",
    "now",
];

/// One use of an unstable function: the template (relative to the source), its line, the
/// function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unstable {
    pub file: String,
    pub line: u32,
    pub function: &'static str,
}

impl std::fmt::Display for Unstable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: uses `{}`", self.file, self.line, self.function)
    }
}

/// Each use of an unstable function in the chart's templates (and its subcharts').
pub fn unstable_functions(root: &Path, dir: &Path) -> Vec<Unstable> {
    let mut found = Vec::new();
    let mut stack = vec![dir.join("templates")];
    let charts = dir.join("charts");
    if root.join(&charts).is_dir() {
        stack.push(charts);
    }
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&d)) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let rel = d.join(e.file_name());
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(rel);
                continue;
            }
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            for (i, line) in text.lines().enumerate() {
                for action in actions(line) {
                    for f in UNSTABLE {
                        if calls(action, f) {
                            found.push(Unstable {
                                file: rel.display().to_string(),
                                line: i as u32 + 1,
                                function: f,
                            });
                        }
                    }
                }
            }
        }
    }
    found
}

/// The template actions (`{{ ... }}`) of a line.
fn actions(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let end = after.find("}}").unwrap_or(after.len());
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

/// True when `action` calls `f` as a word (not `randAlphaNum` when looking for `randAlpha`,
/// nor `.Values.now`).
fn calls(action: &str, f: &str) -> bool {
    let bytes = action.as_bytes();
    let mut from = 0;
    while let Some(i) = action[from..].find(f) {
        let at = from + i;
        let before = at.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(at + f.len()).copied();
        let word =
            |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !word(before) && !word(after) {
            return true;
        }
        from = at + f.len();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        assert_eq!(relative("charts/web").unwrap(), PathBuf::from("charts/web"));
        assert!(relative("../x").is_err());
        assert!(relative("/etc").is_err());
        assert_eq!(
            join_inside(Path::new("charts/web"), "../common").unwrap(),
            PathBuf::from("charts/common")
        );
        assert!(join_inside(Path::new("web"), "../../x").is_err());
    }

    #[test]
    fn unstable_functions_are_words_inside_actions() {
        assert!(calls(" randAlphaNum 10 ", "randAlphaNum"));
        assert!(!calls(" randAlphaNum 10 ", "randAlpha"));
        assert!(!calls(" .Values.now ", "now"));
        assert!(calls(" now | date \"2006\" ", "now"));
        assert!(calls("- $s := lookup \"v1\" \"Secret\" ", "lookup"));
        assert_eq!(actions("a {{ x }} b {{- y -}}"), vec![" x ", "- y -"]);
    }

    #[test]
    fn staging_copies_local_dependencies() {
        let root = std::env::temp_dir().join(format!("gantry-helm-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("charts/web/templates")).unwrap();
        std::fs::create_dir_all(root.join("charts/common/templates")).unwrap();
        std::fs::write(
            root.join("charts/web/Chart.yaml"),
            "apiVersion: v2\nname: web\nversion: 1.0.0\ndependencies:\n- name: common\n  version: 0.1.0\n  repository: file://../common\n",
        )
        .unwrap();
        std::fs::write(
            root.join("charts/common/Chart.yaml"),
            "apiVersion: v2\nname: common\nversion: 0.1.0\n",
        )
        .unwrap();
        std::fs::write(
            root.join("charts/web/templates/cm.yaml"),
            "x: {{ randAlphaNum 5 }}\n",
        )
        .unwrap();
        let dest = root.join("out");
        let build = stage(&root, Path::new("charts/web"), &dest).unwrap();
        assert_eq!(build, vec![PathBuf::from("charts/web")]);
        assert!(dest.join("charts/common/Chart.yaml").is_file());
        assert_eq!(
            unstable_functions(&root, Path::new("charts/web"))
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["charts/web/templates/cm.yaml:1: uses `randAlphaNum`"]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
