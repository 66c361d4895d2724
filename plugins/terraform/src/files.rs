//! The module's files: copying a module into the task's workspace (a snapshot that later
//! runs, destroy and rollback can use after the original changed or went away), and the few
//! things read from `.tf` files before Terraform runs.

use std::fs;
use std::io;
use std::path::Path;

/// Names never copied into a snapshot: Terraform's working data and local state belong to
/// the workspace, not to the module, and a copy of them would be stale or someone else's.
fn skipped(name: &str) -> bool {
    name == ".terraform"
        || name == ".git"
        || name == "terraform.tfstate.d"
        || name.ends_with(".tfstate")
        || name.ends_with(".tfstate.backup")
        || name == ".terraform.tfstate.lock.info"
        || name.ends_with(".tfplan")
}

/// Copies the directory tree `from` to `to` (which must not exist). Symbolic links are not
/// followed: a module is its own files, and the sandbox could not read past one anyway.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if skipped(name_str) {
            continue;
        }
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Removes a directory tree if it exists.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// A place in a module file and what is wrong there.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Relative to the module directory.
    pub file: String,
    pub line: u32,
    /// 1-based.
    pub column: u32,
    pub message: String,
}

/// What `.tf` files of a module say that matters before Terraform runs.
#[derive(Debug, Default)]
pub struct ModuleFacts {
    /// The module declares a `backend` block (so its state is not the workspace's).
    pub declares_backend: bool,
    /// Local module sources reaching outside the module directory (`source = "../x"`):
    /// they would not be in the snapshot the module is run from.
    pub escaping_sources: Vec<Finding>,
    /// Whether any `*.tf` or `*.tf.json` file was found at the top of the module.
    pub has_config: bool,
}

/// Reads the `.tf` files at the top of `dir` (not sub-modules, which Terraform loads only
/// through a `module` block). The check is textual, line by line, enough for the two facts
/// it looks for; Terraform itself reports anything else when it runs.
pub fn module_facts(dir: &Path) -> io::Result<ModuleFacts> {
    let mut facts = ModuleFacts::default();
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        if name.ends_with(".tf.json") {
            facts.has_config = true;
            continue;
        }
        if !name.ends_with(".tf") {
            continue;
        }
        facts.has_config = true;
        let text = fs::read_to_string(dir.join(&name))?;
        scan(&name, &text, &mut facts);
    }
    Ok(facts)
}

fn scan(file: &str, text: &str, facts: &mut ModuleFacts) {
    let mut in_block_comment = false;
    for (i, raw) in text.lines().enumerate() {
        let mut line = raw.trim();
        if in_block_comment {
            match line.find("*/") {
                Some(end) => {
                    in_block_comment = false;
                    line = line[end + 2..].trim();
                }
                None => continue,
            }
        }
        if line.starts_with("/*") && !line.contains("*/") {
            in_block_comment = true;
            continue;
        }
        if line.starts_with('#') || line.starts_with("//") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("backend")
            && rest.trim_start().starts_with('"')
        {
            facts.declares_backend = true;
        }
        if let Some(rest) = line.strip_prefix("source")
            && let Some(value) = rest.trim_start().strip_prefix('=')
        {
            let value = value.trim().trim_matches('"');
            if value.starts_with("../") || value == ".." {
                facts.escaping_sources.push(Finding {
                    file: file.to_string(),
                    line: u32::try_from(i + 1).unwrap_or(u32::MAX),
                    column: u32::try_from(raw.len() - raw.trim_start().len() + 1)
                        .unwrap_or(1),
                    message: format!(
                        "module source `{value}` lies outside the module directory; gantry runs a copy of the module directory only, so move that module inside it (e.g. `./modules/...`)"
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_a_module() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("main.tf"),
            "terraform {\n  # backend \"s3\" {}\n  backend \"local\" {}\n}\nmodule \"a\" {\n  source = \"./modules/a\"\n}\nmodule \"b\" {\n  source = \"../shared/b\"\n}\n",
        )
        .unwrap();
        fs::write(dir.path().join("notes.txt"), "source = \"../x\"").unwrap();
        let facts = module_facts(dir.path()).unwrap();
        assert!(facts.has_config);
        assert!(facts.declares_backend);
        assert_eq!(facts.escaping_sources.len(), 1);
        assert_eq!(facts.escaping_sources[0].file, "main.tf");
        assert_eq!(facts.escaping_sources[0].line, 9);
        assert_eq!(facts.escaping_sources[0].column, 3);

        let plain = tempfile::tempdir().unwrap();
        fs::write(
            plain.path().join("x.tf"),
            "/* backend \"s3\" {}\n*/\n// backend \"gcs\"\nresource \"null_resource\" \"x\" {}\n",
        )
        .unwrap();
        let facts = module_facts(plain.path()).unwrap();
        assert!(facts.has_config && !facts.declares_backend);
        assert!(module_facts(dir.path().join("nope").as_path()).is_err());
    }

    #[test]
    fn a_copy_leaves_state_and_working_data_behind() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("m");
        fs::create_dir_all(from.join(".terraform/providers")).unwrap();
        fs::create_dir_all(from.join("modules/a")).unwrap();
        fs::write(from.join("main.tf"), "x").unwrap();
        fs::write(from.join("modules/a/a.tf"), "y").unwrap();
        fs::write(from.join("terraform.tfstate"), "{}").unwrap();
        fs::write(from.join(".terraform/providers/p"), "p").unwrap();
        let to = dir.path().join("copy");
        copy_tree(&from, &to).unwrap();
        assert!(to.join("main.tf").is_file());
        assert!(to.join("modules/a/a.tf").is_file());
        assert!(!to.join("terraform.tfstate").exists());
        assert!(!to.join(".terraform").exists());
        remove_tree(&to).unwrap();
        remove_tree(&to).unwrap();
        assert!(!to.exists());
    }
}
