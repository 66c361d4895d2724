#!/usr/bin/env bash
# The whole test suite, from a clean checkout: installs the Wasm toolchain and the real
# kubectl and helm the simulator's fidelity tests drive, builds the plugin components
# (built-ins and test fixtures), then checks formatting, lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# A clean CI checkout builds once: incremental state would only take gigabytes of its disk.
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_INCREMENTAL=0
fi

scripts/setup-wasm-toolchain.sh
scripts/setup-kube-tools.sh
scripts/setup-kube-schemas.sh
scripts/setup-terraform.sh
scripts/setup-componentize-py.sh
scripts/build-plugins.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
