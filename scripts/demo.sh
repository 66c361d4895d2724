#!/usr/bin/env bash
# Builds the plugins and gantry, then deploys, in this process with live progress, to a
# Kubernetes API simulator embedded in gantry, on throw-away state directories (no cluster
# is needed): the ReleaseHub example (frontend / migrate / backend: Kubernetes manifests and
# a command), then Bunnyshell's pipeline (Terraform, manifest, Helm and compose components
# in sequence, outputs flowing from one to the next) with the real Terraform and helm, which
# the setup scripts install.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-kube-schemas.sh
scripts/setup-kube-tools.sh
scripts/setup-terraform.sh
scripts/build-plugins.sh
cargo build --release --locked -p gantry
gantry=target/release/gantry

state=$(mktemp -d)
pipeline_state=$(mktemp -d)
trap 'rm -rf "$state" "$pipeline_state"' EXIT
chmod 700 "$state" "$pipeline_state"
config=examples/releasehub

echo "== plugins"
"$gantry" --config "$config" --state "$state" plugins
echo
echo "== validate"
"$gantry" --config "$config" --state "$state" validate
echo
echo "== diff: what a first deploy would create"
# Exit 1 means "there are changes", as with diff(1).
"$gantry" --config "$config" --state "$state" diff --sim release || [ $? -eq 1 ]
echo
echo "== deploy: frontend does not hold up later steps; backend waits for migrate and scrub"
"$gantry" --config "$config" --state "$state" run --sim release
echo
echo "== the Bunnyshell pipeline: Terraform -> manifest -> Helm -> compose, with the real tools"
GANTRY_TF_MIRROR=$PWD/target/tools/terraform-providers PATH=$PWD/target/tools:$PATH \
  "$gantry" --config examples/bunnyshell --state "$pipeline_state" run --sim environment
