//! `gantry plugin new`: a plugin project an operator can build with nothing but the installed
//! gantry and a language toolchain.
//!
//! Everything a project needs is compiled into the binary — the contract (`wit/v2`), the Rust
//! SDK's sources and the Python helper module — so a scaffold never points back at a gantry
//! checkout: the SDK is vendored as a path dependency, the WIT as a directory beside it.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The contract every scaffold is written against.
const WIT: &str = include_str!("../../../wit/v2/gantry.wit");

/// The Rust SDK, vendored whole; its `bindings.rs` reads `../wit/v2`, which is where the
/// scaffold puts the contract relative to the SDK directory.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("lib.rs", include_str!("../../../sdk/src/lib.rs")),
    ("bindings.rs", include_str!("../../../sdk/src/bindings.rs")),
    ("host.rs", include_str!("../../../sdk/src/host.rs")),
    ("params.rs", include_str!("../../../sdk/src/params.rs")),
    ("testing.rs", include_str!("../../../sdk/src/testing.rs")),
];
/// The workspace's SDK manifest inherits from the workspace; this one stands alone.
const SDK_MANIFEST: &str = include_str!("scaffold/rust/sdk_Cargo.toml");

const RUST_MANIFEST: &str = include_str!("scaffold/rust/Cargo.toml");
const RUST_BUILD: &str = include_str!("scaffold/rust/build.sh");
const RUST_TASK: &str = include_str!("scaffold/rust/task_lib.rs");
const RUST_HOOK: &str = include_str!("scaffold/rust/hook_lib.rs");

/// The module that plays the SDK's role for Python plugins.
pub const PYTHON_HELPER: &str = include_str!("scaffold/python/gantry_plugin.py");
const PYTHON_BUILD: &str = include_str!("scaffold/python/build.sh");
const PYTHON_TEST: &str = include_str!("scaffold/python/test.sh");
const PYTHON_TASK: &str = include_str!("scaffold/python/task_app.py");
const PYTHON_TASK_TEST: &str = include_str!("scaffold/python/task_test.py");
const PYTHON_HOOK: &str = include_str!("scaffold/python/hook_app.py");
const PYTHON_HOOK_TEST: &str = include_str!("scaffold/python/hook_test.py");

/// The componentize-py release the Python scaffold is known to build with; later ones may
/// change the generated module layout, so the build scripts name this one.
pub const COMPONENTIZE_PY: &str = "0.25.1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A task kind (world `task-plugin`).
    Task,
    /// A hook run around tasks (world `hook-plugin`).
    Hook,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
}

impl Kind {
    fn world(self) -> &'static str {
        match self {
            Kind::Task => "task-plugin",
            Kind::Hook => "hook-plugin",
        }
    }
}

/// Creates the project `dir/NAME` (or `into` when given) and prints what to do next.
pub fn new_plugin(
    name: &str,
    kind: Kind,
    lang: Lang,
    into: Option<&Path>,
    config_dir: &Path,
) -> anyhow::Result<i32> {
    check_name(name)?;
    let dir = match into {
        Some(d) => d.to_path_buf(),
        None => std::env::current_dir()
            .context("reading the current directory")?
            .join(name),
    };
    if dir.exists() {
        bail!(
            "{} already exists; choose another name or --dir",
            dir.display()
        );
    }
    let files = files(name, kind, lang);
    for file in &files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        fs::write(&path, &file.text).with_context(|| format!("writing {}", path.display()))?;
        // A project's sources are the operator's to share, unlike gantry's own state files.
        let mode = if file.executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
    }
    print!(
        "{}",
        guide(name, kind, lang, &shown(&dir), &config_dir.join("plugins"))
    );
    Ok(0)
}

/// A directory as the user would type it: relative to where they are when it is below.
fn shown(dir: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    dir.strip_prefix(&cwd)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

/// Plugin names become grant tables (`[plugins.NAME]`), kind names, file names and crate
/// names, so they are kept to what is valid in all of them.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "`{name}` is not a plugin name: use lowercase letters, digits and '-', starting with a letter (e.g. freeze-window)"
        );
    }
    Ok(())
}

struct File {
    path: PathBuf,
    text: String,
    executable: bool,
}

fn file(path: &str, text: String) -> File {
    File {
        path: PathBuf::from(path),
        text,
        executable: path.ends_with(".sh"),
    }
}

/// Every file of a new project.
fn files(name: &str, kind: Kind, lang: Lang) -> Vec<File> {
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{world}}", kind.world())
            .replace("{{componentize_py}}", COMPONENTIZE_PY)
            .replace("{{gantry_version}}", env!("CARGO_PKG_VERSION"))
    };
    let mut out = vec![
        file("wit/v2/gantry.wit", WIT.to_string()),
        file("README.md", readme(name, kind, lang)),
    ];
    match lang {
        Lang::Rust => {
            out.push(file("Cargo.toml", fill(RUST_MANIFEST)));
            out.push(file("build.sh", fill(RUST_BUILD)));
            out.push(file(
                "src/lib.rs",
                fill(match kind {
                    Kind::Task => RUST_TASK,
                    Kind::Hook => RUST_HOOK,
                }),
            ));
            out.push(file(".gitignore", "/target\n*.wasm\n".into()));
            out.push(file("gantry-sdk/Cargo.toml", fill(SDK_MANIFEST)));
            for (source, text) in SDK_SOURCES {
                out.push(file(&format!("gantry-sdk/src/{source}"), text.to_string()));
            }
        }
        Lang::Python => {
            let (app, test) = match kind {
                Kind::Task => (PYTHON_TASK, PYTHON_TASK_TEST),
                Kind::Hook => (PYTHON_HOOK, PYTHON_HOOK_TEST),
            };
            out.push(file("app.py", fill(app)));
            out.push(file("test_app.py", fill(test)));
            out.push(file("gantry_plugin.py", PYTHON_HELPER.to_string()));
            out.push(file("build.sh", fill(PYTHON_BUILD)));
            out.push(file("test.sh", fill(PYTHON_TEST)));
            out.push(file(".gitignore", "__pycache__/\n*.wasm\n".into()));
        }
    }
    out
}

/// What `gantry plugin new` prints, and what the README's "Writing a plugin" section shows:
/// the one command that tests, the one that builds, and how the component reaches a daemon.
pub fn guide(name: &str, kind: Kind, lang: Lang, dir: &str, plugin_dir: &Path) -> String {
    let (kind_word, world) = match kind {
        Kind::Task => ("task kind", "task-plugin"),
        Kind::Hook => ("hook", "hook-plugin"),
    };
    let (language, test, build, edit) = match lang {
        Lang::Rust => (
            "Rust",
            "cargo test",
            "./build.sh      # rustup target add wasm32-wasip2 && cargo build --release --target wasm32-wasip2",
            "src/lib.rs (the Params struct, describe, the logic and its tests)",
        ),
        Lang::Python => (
            "Python",
            "./test.sh",
            "./build.sh      # componentize-py -d wit/v2 -w WORLD componentize app -o NAME.wasm",
            "app.py (PARAMETERS, the logic) and test_app.py",
        ),
    };
    let build = build.replace("WORLD", world).replace("NAME", name);
    let mut g = String::new();
    let _ = writeln!(
        g,
        "Created {dir}/: the {kind_word} `{name}` in {language}, against gantry:plugin@2.0.0 ({world})."
    );
    let _ = writeln!(g);
    let _ = writeln!(g, "    cd {dir}");
    let _ = writeln!(g, "    {test}");
    let _ = writeln!(g, "    {build}");
    let _ = writeln!(g, "    gantry plugin check {name}.wasm");
    let _ = writeln!(
        g,
        "    install -m 0644 {name}.wasm {}/   # loaded at once, no restart",
        plugin_dir.display()
    );
    let _ = writeln!(g);
    let _ = writeln!(g, "Use it in a workflow (workflows/*.toml):");
    let _ = writeln!(g);
    match kind {
        Kind::Task => {
            let _ = writeln!(g, "    [jobs.greet]");
            let _ = writeln!(g, "    kind = \"{name}\"");
            let _ = writeln!(g, "    name = \"world\"");
        }
        Kind::Hook => {
            let _ = writeln!(g, "    [jobs.deploy]");
            let _ = writeln!(g, "    kind = \"exec\"");
            let _ = writeln!(g, "    command = [\"sh\", \"-c\", \"./deploy.sh\"]");
            let _ = writeln!(
                g,
                "    hooks.pre_deploy = [{{ kind = \"{name}\", allow = false, reason = \"frozen\" }}]"
            );
        }
    }
    let _ = writeln!(g);
    let _ = writeln!(g, "Edit {edit}.");
    let _ = writeln!(
        g,
        "`gantry plugin check` prints the [plugins.{name}] lines of gantry.toml that grant what it requests."
    );
    g
}

fn readme(name: &str, kind: Kind, lang: Lang) -> String {
    let guide = guide(name, kind, lang, name, Path::new("/etc/gantry/plugins")).replacen(
        &format!("Created {name}/: the"),
        "This is the",
        1,
    );
    let layout = match lang {
        Lang::Rust => {
            "\
- `src/lib.rs`: the plugin: its parameters (a serde struct), `describe`, the logic, unit tests.
- `gantry-sdk/`: the gantry SDK (traits `Task` and `Hook`, `export_task!`/`export_hook!`,
  `host::run`, `host::info`, typed parameters, native fakes in `gantry_sdk::testing`).
- `wit/v2/gantry.wit`: the contract, `gantry:plugin@2.0.0`.
- `build.sh`: builds `NAME.wasm` with the standard `wasm32-wasip2` target, or, where rustup
  cannot install it, with Debian's Rust toolchain building the standard library itself.
"
        }
        Lang::Python => {
            "\
- `app.py`: the plugin, `class WitWorld` implementing the world's exports, and its logic.
- `gantry_plugin.py`: the SDK's role in Python: `plugin_info`, `param`, `params`,
  `check_params`, logging (`info`, `warn`, ... with fields), `proceed`/`skip`/`fail`,
  `deployment`/`output`, `invalid_config`, and native test helpers.
- `test_app.py`: unit tests, run natively by `./test.sh` with the generated bindings.
- `wit/v2/gantry.wit`: the contract, `gantry:plugin@2.0.0`.
- `build.sh`: `componentize-py` (from PyPI, `pip install componentize-py==VERSION`) makes
  the component.
"
        }
    }
    .replace("NAME", name)
    .replace("VERSION", COMPONENTIZE_PY);
    format!(
        "# {name}\n\nA gantry plugin: a WebAssembly component gantry runs in its sandbox.\n\n{guide}\n\
         ## Layout\n\n{layout}\n\
         ## The sandbox\n\n\
         The plugin sees the task's source directory read-only at `/src` and a scratch directory\n\
         at `/scratch`, and no network. A capability it requests in `describe` (programs to run,\n\
         Kubernetes sessions, a workspace kept between runs) works only once the operator grants\n\
         it under `[plugins.{name}]` in `gantry.toml`; `gantry plugin check {name}.wasm` prints\n\
         the lines that would.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_usable_as_tables_kinds_files_and_crates() {
        for good in ["wait-for", "freeze-window", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Wait", "1x", "a_b", "a-", "../x", "a b", "a.b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rust_scaffolds_vendor_a_standalone_sdk_beside_the_contract() {
        let files = files("wait-for", Kind::Task, Lang::Rust);
        let text = |p: &str| {
            files
                .iter()
                .find(|f| f.path == Path::new(p))
                .map(|f| f.text.clone())
                .unwrap_or_else(|| panic!("no {p}"))
        };
        assert!(!text("gantry-sdk/Cargo.toml").contains("workspace"));
        assert!(text("gantry-sdk/src/bindings.rs").contains("\"../wit/v2\""));
        assert!(text("Cargo.toml").contains("gantry-sdk = { path = \"gantry-sdk\" }"));
        assert!(text("build.sh").contains("wait_for.wasm"));
        assert!(!text("src/lib.rs").contains("{{"));
        assert!(
            files
                .iter()
                .any(|f| f.path == Path::new("build.sh") && f.executable)
        );
    }

    #[test]
    fn python_scaffolds_target_the_kinds_world() {
        let files = files("freeze", Kind::Hook, Lang::Python);
        let build = files
            .iter()
            .find(|f| f.path == Path::new("build.sh"))
            .map(|f| f.text.clone())
            .unwrap_or_default();
        assert!(build.contains("-w hook-plugin componentize app"), "{build}");
        assert!(build.contains(COMPONENTIZE_PY));
    }
}
