#!/bin/sh
# Builds freeze-window.wasm (world `hook-plugin` of gantry:plugin@2.0.0) with componentize-py.
# A scaffold carries its own wit/v2; inside the gantry repository this example uses the
# repository's contract.
set -eu
cd "$(dirname "$0")"
wit="${GANTRY_WIT:-../../../wit/v2}"
if ! command -v componentize-py >/dev/null 2>&1; then
  echo "componentize-py is not installed: pip install componentize-py==0.25.1" >&2
  exit 1
fi
componentize-py -d "$wit" -w hook-plugin componentize app -p . -o freeze-window.wasm
echo "built freeze-window.wasm"
