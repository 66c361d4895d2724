#!/bin/sh
# Runs the unit tests natively: generates the contract's Python bindings into a temporary
# directory (the same ones componentize-py builds into the component), then unittest.
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-py >/dev/null 2>&1; then
  echo "componentize-py is not installed: pip install componentize-py=={{componentize_py}}" >&2
  exit 1
fi
bindings="$(mktemp -d)"
trap 'rm -rf "$bindings"' EXIT
componentize-py -d wit/v2 -w {{world}} bindings "$bindings" >/dev/null
PYTHONPATH="$bindings:." python3 -m unittest discover -s . -p 'test_*.py' "$@"
