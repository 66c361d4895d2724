#!/bin/sh
# Runs the unit tests natively with the contract's generated Python bindings.
set -eu
cd "$(dirname "$0")"
wit="${GANTRY_WIT:-../../../wit/v2}"
if ! command -v componentize-py >/dev/null 2>&1; then
  echo "componentize-py is not installed: pip install componentize-py==0.25.1" >&2
  exit 1
fi
bindings="$(mktemp -d)"
trap 'rm -rf "$bindings"' EXIT
componentize-py -d "$wit" -w hook-plugin bindings "$bindings" >/dev/null
PYTHONPATH="$bindings:." python3 -m unittest discover -s . -p 'test_*.py' "$@"
