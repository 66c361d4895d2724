#!/bin/sh
# Builds {{name}}.wasm, a WebAssembly component implementing the `{{world}}` world of
# gantry's plugin contract (wit/v2), with componentize-py from PyPI.
set -eu
cd "$(dirname "$0")"
if ! command -v componentize-py >/dev/null 2>&1; then
  echo "componentize-py is not installed: pip install componentize-py=={{componentize_py}}" >&2
  exit 1
fi
componentize-py -d wit/v2 -w {{world}} componentize app -p . -o {{name}}.wasm
echo "built {{name}}.wasm"
