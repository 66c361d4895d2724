#!/usr/bin/env bash
# Builds the plugins and gantry, then deploys the ReleaseHub example workflow (frontend /
# migrate / backend: Kubernetes manifests and a command) in this process, with live progress,
# to a Kubernetes API simulator embedded in gantry, on a throw-away state directory. No
# cluster is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-kube-schemas.sh
scripts/build-plugins.sh
cargo build --release --locked -p gantry
gantry=target/release/gantry

state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT
chmod 700 "$state"
config=examples/releasehub

echo "== plugins"
"$gantry" --config "$config" --state "$state" plugins
echo
echo "== validate"
"$gantry" --config "$config" --state "$state" validate
echo
echo "== diff: what a first deploy would create"
"$gantry" --config "$config" --state "$state" diff --sim release
echo
echo "== deploy: frontend does not hold up later steps; backend waits for migrate and scrub"
"$gantry" --config "$config" --state "$state" run --sim release
