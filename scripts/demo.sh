#!/usr/bin/env bash
# Builds the plugins and gantry, then shows the sandbox at work on a throw-away config.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/build-plugins.sh
cargo build --release --locked -p gantry
gantry=target/release/gantry

demo=$(mktemp -d)
trap 'rm -rf "$demo"' EXIT
mkdir -p "$demo/config/plugins" "$demo/state"
chmod 700 "$demo/state"
cat > "$demo/config/gantry.toml" <<'TOML'
[plugins.exec]
exec = ["sh"]
TOML
cp target/plugins/fixtures/hostile.wasm "$demo/config/plugins/"

echo "== plugins loaded from $demo/config (built-ins plus a dropped-in one)"
"$gantry" --config "$demo/config" --state "$demo/state" plugins
echo
echo "== what the dropped-in plugin asks for, and what the operator has not granted"
"$gantry" --config "$demo/config" --state "$demo/state" plugin check "$demo/config/plugins/hostile.wasm" || true
