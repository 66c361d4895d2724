//! Embeds the Kubernetes 1.35 schema bundle that `scripts/setup-kube-schemas.sh` writes to
//! `target/kube-schemas/`. Without it the simulator still builds, says so, and validates
//! built-in objects by its own rules only.

use std::path::PathBuf;

const BUNDLE: &str = "v1.35.0.json";

fn main() {
    println!("cargo:rerun-if-env-changed=KUBESIM_SCHEMAS");
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let source = std::env::var_os("KUBESIM_SCHEMAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../target/kube-schemas").join(BUNDLE));
    println!("cargo:rerun-if-changed={}", source.display());
    if let Some(dir) = source.parent() {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("kube-schemas.json");
    let text = match std::fs::read_to_string(&source) {
        Ok(text) => text,
        Err(e) => {
            println!(
                "cargo:warning=kubesim: no Kubernetes schema bundle at {} ({e}); field validation against the 1.35 schemas is off. Run scripts/setup-kube-schemas.sh, then build again.",
                source.display()
            );
            String::from("{}")
        }
    };
    if let Err(e) = std::fs::write(&out, text) {
        panic!("cannot write {}: {e}", out.display());
    }
}
