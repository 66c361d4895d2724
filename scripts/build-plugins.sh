#!/usr/bin/env bash
# Builds every plugin crate into a wasm32-wasip2 component and lays them out as
#   target/plugins/<name>.wasm            built-in plugins (embedded into the gantry binary)
#   target/plugins/fixtures/<name>.wasm   test fixtures
# Incremental: a second run with no change takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILTIN=(exec hooks manifest helm terraform compose)
FIXTURES=(hostile intruder spin-describe)

scripts/setup-wasm-toolchain.sh >/dev/null

packages=()
for p in "${BUILTIN[@]}"; do packages+=(-p "gantry-plugin-$p"); done
for f in "${FIXTURES[@]}"; do packages+=(-p "gantry-fixture-$f"); done

out_dir=target/wasm/wasm32-wasip2/plugin
if [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ]; then
  cargo build --quiet --profile plugin --target wasm32-wasip2 --target-dir target/wasm "${packages[@]}"
else
  # Debian's toolchain builds std from source; see docs/ARCHITECTURE.md.
  shim=target/wasm/bin
  mkdir -p "$shim"
  ln -sf /usr/bin/wasm-ld-16 "$shim/wasm-ld"
  PATH="$PWD/$shim:/usr/bin:$PATH" \
  RUSTC_BOOTSTRAP=1 \
  RUSTFLAGS="-C linker=$(command -v wasm-component-ld) -C link-self-contained=no -L /usr/lib/wasm32-wasi" \
    /usr/bin/cargo build --quiet --profile plugin --target wasm32-wasip2 --target-dir target/wasm \
      -Z build-std=std,panic_abort "${packages[@]}"
fi

install_if_changed() {
  mkdir -p "$(dirname "$2")"
  if ! cmp -s "$1" "$2"; then cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; fi
}
for p in "${BUILTIN[@]}"; do
  install_if_changed "$out_dir/gantry_plugin_${p}.wasm" "target/plugins/$p.wasm"
done
for f in "${FIXTURES[@]}"; do
  install_if_changed "$out_dir/gantry_fixture_${f//-/_}.wasm" "target/plugins/fixtures/$f.wasm"
done
echo "plugins: ${BUILTIN[*]}; fixtures: ${FIXTURES[*]} -> target/plugins"
