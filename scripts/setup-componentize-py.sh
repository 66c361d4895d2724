#!/usr/bin/env bash
# Installs componentize-py (PyPI), which builds Python plugins into Wasm components, at the
# version the `gantry plugin new --lang python` scaffold names; nothing when it is there.
set -euo pipefail

VERSION=0.25.1

if command -v componentize-py >/dev/null 2>&1 \
  && [ "$(componentize-py --version 2>/dev/null)" = "componentize-py $VERSION" ]; then
  echo "componentize-py $VERSION present"
  exit 0
fi
python3 -m pip install --quiet "componentize-py==$VERSION"
# pyenv shims appear only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
componentize-py --version
