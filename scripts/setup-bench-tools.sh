#!/usr/bin/env bash
# Installs what the comparison benchmarks run beside gantry: GNU make, ninja (Debian's
# ninja-build) and xargs (findutils). Only `cargo bench` needs them; nothing happens when
# they are already there.
set -euo pipefail

missing=()
command -v make >/dev/null 2>&1 || missing+=(make)
command -v ninja >/dev/null 2>&1 || missing+=(ninja-build)
command -v xargs >/dev/null 2>&1 || missing+=(findutils)

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi
echo "make $(make --version | head -1 | awk '{print $3}'), ninja $(ninja --version), $(xargs --version | head -1)"
