#!/bin/sh
# Builds a Debian package of a built gantry: the binary, the systemd units, the sysusers and
# tmpfiles snippets and bash completion, with maintainer scripts that create the user and
# directories and tell systemd. Needs dpkg-deb only (no debhelper, no cargo-deb).
# Usage: packaging/build-deb.sh [PATH_TO_GANTRY_BINARY] [OUTPUT_DIR]
# DEB_COMPRESSION (xz by default; none, gzip, zstd) is passed to dpkg-deb -Z.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../target/release/gantry}
out=${2:-$here/../target/debian}
[ -x "$bin" ] || { echo "no gantry binary at $bin; build it with: cargo build --release" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/../Cargo.toml" | head -n 1)
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

install -D -m 0755 "$bin" "$root/usr/bin/gantry"
install -D -m 0644 "$here/gantry.service" "$root/usr/lib/systemd/system/gantry.service"
install -D -m 0644 "$here/gantry.socket" "$root/usr/lib/systemd/system/gantry.socket"
install -D -m 0644 "$here/gantry.sysusers" "$root/usr/lib/sysusers.d/gantry.conf"
install -D -m 0644 "$here/gantry.tmpfiles" "$root/usr/lib/tmpfiles.d/gantry.conf"
mkdir -p "$root/usr/share/bash-completion/completions"
"$bin" completions bash > "$root/usr/share/bash-completion/completions/gantry"
chmod 0644 "$root/usr/share/bash-completion/completions/gantry"

mkdir -p "$root/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: gantry
Version: $version
Architecture: $arch
Maintainer: gantry maintainers <gantry@localhost>
Installed-Size: $size
Depends: libc6
Recommends: systemd
Section: admin
Priority: optional
Description: deployment daemon running sandboxed WebAssembly task plugins
 gantry watches a directory of TOML workflows and runs staged, parallel deployment
 pipelines whose tasks and hooks are WebAssembly components run in a sandbox.
CONTROL
# The user and directories first (the service runs as them), then systemd learns the units;
# nothing is enabled or started: that is the operator's call once /etc/gantry is filled.
# DPKG_ROOT (an installation into another root, as bootstrapping tools do) is honoured, and
# the running system's systemd is then left alone.
cat > "$root/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers --root="${DPKG_ROOT:-/}" gantry.conf
  fi
  if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --root="${DPKG_ROOT:-/}" --create gantry.conf
  fi
  if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
fi
POSTINST
cat > "$root/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
  systemctl stop gantry.service gantry.socket || true
fi
PRERM
cat > "$root/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

mkdir -p "$out"
deb="$out/gantry_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$root" "$deb" >/dev/null
echo "$deb"
