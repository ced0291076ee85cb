#!/usr/bin/env bash
# Installs llama.cpp for the comparison scripts: the npm package node-llama-cpp and ONLY its
# prebuilt CPU binary for this machine (@node-llama-cpp/linux-x64 or linux-arm64), into
# scripts/compare/node_modules (git-ignored). ~85 MB; nothing else is fetched or built:
#   --omit=optional   skips the CUDA / Vulkan / other-platform binaries (~650 MB)
#   --ignore-scripts  skips node-llama-cpp's postinstall (which may download and build llama.cpp)
#   --no-save         keeps package.json free of versions: they are pinned here
# Does nothing when the package and the binary are already there.
set -euo pipefail
cd "$(dirname "$0")"
VERSION=3.22.1
case "$(uname -m)" in
  x86_64) BIN=linux-x64 ;;
  aarch64 | arm64) BIN=linux-arm64 ;;
  *) echo "compare/install.sh: no prebuilt llama.cpp for $(uname -m)" >&2; exit 1 ;;
esac
installed() {
  [ -f "node_modules/node-llama-cpp/package.json" ] &&
    grep -q "\"version\": \"$VERSION\"" node_modules/node-llama-cpp/package.json &&
    [ -d "node_modules/@node-llama-cpp/$BIN/bins" ]
}
if ! installed; then
  echo "compare/install.sh: npm install node-llama-cpp@$VERSION @node-llama-cpp/$BIN@$VERSION"
  npm install --omit=optional --ignore-scripts --no-save --no-audit --no-fund --loglevel=error \
    "node-llama-cpp@$VERSION" "@node-llama-cpp/$BIN@$VERSION"
  installed || { echo "compare/install.sh: installation incomplete" >&2; exit 1; }
fi
