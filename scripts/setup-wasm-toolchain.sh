#!/usr/bin/env bash
# Installs what building the plugin components needs, and nothing when it is already there.
#
# Preferred: the standard rustup target (`wasm32-wasip2`). Where rustup cannot download it,
# fall back to Debian's second Rust toolchain, which ships the standard library source so
# `-Z build-std` can build std for wasm32-wasip2, plus wasm-component-ld and an lld.
set -euo pipefail

have_std_target() {
  [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]
}

if have_std_target; then
  echo "wasm32-wasip2 standard library present"
  exit 0
fi
if rustup target add wasm32-wasip2 >/dev/null 2>&1 && have_std_target; then
  echo "installed wasm32-wasip2 with rustup"
  exit 0
fi

echo "no wasm32-wasip2 std from rustup; using the Debian build-std toolchain"
need_apt=()
[ -x /usr/bin/cargo ] || need_apt+=(cargo-web)
[ -x /usr/bin/rustc ] || need_apt+=(rustc-web)
[ -d /usr/lib/rustlib/src/rust/library ] || [ -d /usr/src/rustc-web ] || need_apt+=(rust-web-src)
[ -d /usr/lib/wasm32-wasi ] || need_apt+=(wasi-libc)
[ -x /usr/bin/wasm-ld-16 ] || need_apt+=(lld-16)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq rustc-web cargo-web rust-web-src wasi-libc lld-16
fi
if ! command -v wasm-component-ld >/dev/null 2>&1; then
  cargo install --locked wasm-component-ld
fi
echo "Debian wasm toolchain ready"
