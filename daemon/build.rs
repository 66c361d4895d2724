//! Embeds the built-in plugin components, built beforehand by `scripts/build-plugins.sh`
//! into `target/plugins/`, so a fresh install needs no plugin setup.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

const BUILTIN: &[&str] = &["exec", "hooks", "manifest", "helm", "terraform", "compose"];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = env::var_os("GANTRY_BUILTIN_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/plugins"));
    println!("cargo:rerun-if-env-changed=GANTRY_BUILTIN_PLUGIN_DIR");
    let mut code = String::from(
        "/// Built-in plugins: name and component bytes.\npub static BUILTIN_PLUGINS: &[(&str, &[u8])] = &[\n",
    );
    for name in BUILTIN {
        let path = dir.join(format!("{name}.wasm"));
        println!("cargo:rerun-if-changed={}", path.display());
        match fs::canonicalize(&path) {
            Ok(path) => {
                let _ = writeln!(
                    code,
                    "    ({name:?}, include_bytes!({:?})),",
                    path.display().to_string()
                );
            }
            Err(_) => println!(
                "cargo:warning=built-in plugin `{name}` is not built ({}); run scripts/build-plugins.sh first",
                path.display()
            ),
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap_or_default()).join("builtin_plugins.rs");
    if let Err(e) = fs::write(&out, code) {
        panic!("writing {}: {e}", out.display());
    }
}
