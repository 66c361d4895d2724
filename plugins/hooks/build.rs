//! A small shadow stack (128 KiB rather than 1 MiB), as for the exec plugin: the hooks
//! parse their parameters and start programs, and a smaller linear memory stays within
//! what the host keeps resident between calls. Running out of it traps.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=131072");
    }
}
