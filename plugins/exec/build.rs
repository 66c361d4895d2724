//! A small shadow stack (128 KiB rather than 1 MiB): the plugin parses its parameters and
//! starts programs, and with the stack at the bottom of linear memory a 1 MiB stack put
//! every page it touched beyond what the host keeps resident between calls, so each task
//! paid to drop and fault them in again. Running out of it traps; it cannot overwrite data.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=131072");
    }
}
