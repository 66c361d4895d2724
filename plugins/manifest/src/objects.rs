//! Reading a task's manifest files: a file or a directory of YAML and JSON, with
//! `${vars.NAME}` substituted, parsed by the shared engine's kubectl-compatible reader.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_kube_apply::yaml::{self, Manifest, ParseError};

/// Files under `root/path`: the file itself, or a directory's YAML and JSON files by name.
pub fn files(root: &Path, path: &str) -> Result<Vec<PathBuf>, String> {
    if path.split('/').any(|c| c == "..") || path.starts_with('/') {
        return Err(format!(
            "path `{path}` must stay inside the task's directory"
        ));
    }
    let full = root.join(path);
    let meta = std::fs::metadata(&full).map_err(|e| format!("`{path}`: {e}"))?;
    if meta.is_file() {
        return Ok(vec![full]);
    }
    let mut out: Vec<_> = std::fs::read_dir(&full)
        .map_err(|e| format!("`{path}`: {e}"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        })
        .collect();
    out.sort();
    if out.is_empty() {
        return Err(format!("`{path}` holds no .yaml, .yml or .json files"));
    }
    Ok(out)
}

/// Replaces `${vars.NAME}`; an unknown name is an error naming it and its line.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, (u32, String)> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${vars.") {
        out.push_str(&rest[..start]);
        let line = 1 + out.matches('\n').count() as u32;
        let after = &rest[start + 7..];
        let end = after
            .find('}')
            .ok_or_else(|| (line, "unterminated `${vars.` reference".to_string()))?;
        let name = &after[..end];
        let value = vars.get(name).ok_or_else(|| {
            let known: Vec<&str> = vars.keys().map(String::as_str).collect();
            (
                line,
                format!(
                    "`${{vars.{name}}}` is not defined; add it to the task's `vars` (defined: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            )
        })?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Every object of the task's files, or the first problem with its file and line.
/// `vars` is `None` at validate time, when references may still be unresolved: then
/// `${vars.NAME}` stands for a placeholder, as the task's values are not known yet.
pub fn read_all(
    root: &Path,
    path: &str,
    vars: Option<&BTreeMap<String, String>>,
) -> Result<Vec<Manifest>, ParseError> {
    let whole = |message: String| ParseError {
        file: path.to_string(),
        line: 0,
        column: 0,
        message,
    };
    let mut all = Vec::new();
    for file in files(root, path).map_err(whole)? {
        let origin = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let at = |line: u32, message: String| ParseError {
            file: origin.clone(),
            line,
            column: 0,
            message,
        };
        let text = std::fs::read_to_string(&file).map_err(|e| at(0, e.to_string()))?;
        let text = match vars {
            Some(vars) => substitute(&text, vars).map_err(|(l, m)| at(l, m))?,
            None => placeholders(&text),
        };
        all.extend(yaml::parse(&origin, &text)?);
    }
    Ok(all)
}

/// `${vars.NAME}` replaced by a number-like placeholder that keeps the YAML readable.
fn placeholders(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${vars.") {
        out.push_str(&rest[..start]);
        match rest[start..].find('}') {
            Some(end) => {
                out.push('1');
                rest = &rest[start + end + 1..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_names_the_line() {
        let vars: BTreeMap<String, String> = [("tag".to_string(), "1.2".to_string())].into();
        assert_eq!(
            substitute("image: app:${vars.tag}", &vars).unwrap(),
            "image: app:1.2"
        );
        let (line, message) = substitute("a: 1\nb: ${vars.nope}\n", &vars).unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("defined: tag"), "{message}");
        assert_eq!(placeholders("replicas: ${vars.n}\n"), "replicas: 1\n");
    }

    #[test]
    fn files_are_read_with_their_lines() {
        let dir = std::env::temp_dir().join(format!("gantry-manifest-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("k8s")).unwrap();
        std::fs::write(
            dir.join("k8s/a.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\nkind: [\n",
        )
        .unwrap();
        let err = read_all(&dir, "k8s", Some(&BTreeMap::new())).unwrap_err();
        assert_eq!(err.file, "k8s/a.yaml");
        assert!(err.line >= 5, "{err}");
        assert!(read_all(&dir, "../etc", None).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
