#!/usr/bin/env bash
# Installs the Debian packages porta builds and tests with, when any is missing.
# Needs root (apt-get); prints what it installs.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config libopenblas-dev libsleef-dev libjson-c-dev
      libvulkan-dev glslc mesa-vulkan-drivers vulkan-validationlayers)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
