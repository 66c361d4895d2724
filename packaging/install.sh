#!/bin/sh
# Installs a built gantry as a systemd service: binary, units, user, directories.
# Usage: packaging/install.sh [PATH_TO_GANTRY_BINARY]   (run as root)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/gantry}
[ -x "$bin" ] || { echo "no gantry binary at $bin; build it with: cargo build --release" >&2; exit 1; }
install -m 0755 "$bin" /usr/bin/gantry
install -m 0644 "$here/gantry.service" /usr/lib/systemd/system/gantry.service
install -m 0644 "$here/gantry.socket" /usr/lib/systemd/system/gantry.socket
install -m 0644 "$here/gantry.sysusers" /usr/lib/sysusers.d/gantry.conf
install -m 0644 "$here/gantry.tmpfiles" /usr/lib/tmpfiles.d/gantry.conf
systemd-sysusers gantry.conf
systemd-tmpfiles --create gantry.conf
mkdir -p /usr/share/bash-completion/completions
/usr/bin/gantry completions bash > /usr/share/bash-completion/completions/gantry
systemctl daemon-reload
echo "installed; put gantry.toml and workflows/ in /etc/gantry, then: systemctl enable --now gantry.socket gantry.service"
