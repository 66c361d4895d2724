#!/bin/sh
# Builds wait-for.wasm, a WebAssembly component gantry loads.
#
# The standard way: rustup's wasm32-wasip2 target, then
#   cargo build --release --target wasm32-wasip2
# Where rustup cannot provide that target's standard library, the fallback builds it from
# source with Debian's second Rust toolchain:
#   apt-get install rustc-web cargo-web rust-web-src wasi-libc lld-16
#   cargo install wasm-component-ld
set -eu
cd "$(dirname "$0")"
target_dir="${CARGO_TARGET_DIR:-target}"

have_std() { [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; }

if have_std || { command -v rustup >/dev/null 2>&1 && rustup target add wasm32-wasip2 >/dev/null 2>&1 && have_std; }; then
  cargo build --release --target wasm32-wasip2
else
  echo "no wasm32-wasip2 standard library from rustup; building it with Debian's toolchain" >&2
  for need in /usr/bin/cargo /usr/bin/wasm-ld-16; do
    [ -x "$need" ] || { echo "missing $need: apt-get install rustc-web cargo-web rust-web-src wasi-libc lld-16" >&2; exit 1; }
  done
  linker="$(command -v wasm-component-ld || true)"
  [ -n "$linker" ] || { echo "missing wasm-component-ld: cargo install wasm-component-ld" >&2; exit 1; }
  shim="$target_dir/wasm-ld-shim"
  case "$shim" in /*) ;; *) shim="$PWD/$shim" ;; esac
  mkdir -p "$shim"
  ln -sf /usr/bin/wasm-ld-16 "$shim/wasm-ld"
  PATH="$shim:/usr/bin:$PATH" \
  RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C linker=$linker -C link-self-contained=no -L /usr/lib/wasm32-wasi" \
    /usr/bin/cargo build --release --target wasm32-wasip2 -Z build-std=std,panic_abort
fi
cp "$target_dir/wasm32-wasip2/release/wait_for.wasm" wait-for.wasm
echo "built wait-for.wasm"
