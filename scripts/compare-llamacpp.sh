#!/usr/bin/env bash
# llama.cpp on the same GGUF file as qgemma, with the prebuilt CPU binary of the npm package
# node-llama-cpp (installed into scripts/compare/node_modules, git-ignored, if missing; nothing is
# built, nothing is fetched at run time). See docs/compare.md.
#
#   scripts/compare-llamacpp.sh bench -m FILE [-p 128] [-n 32] [-r 3] [-t 2]
#       llama.cpp's pp / tg tokens per second, in `qgemma bench`'s markdown table
#   scripts/compare-llamacpp.sh check [--synth tiny:f32,tiny:q8_0,...] [--models F,...] [--gen 16]
#       logits / greedy / tokenizer agreement with qgemma (--qgemma defaults to build/tools/qgemma)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/compare/install.sh" >&2
cmd=${1:-}
[ $# -gt 0 ] && shift
case $cmd in
  bench) exec node "$ROOT/scripts/compare/llamacpp-bench.mjs" "$@" ;;
  check)
    has_qgemma=0 has_models=0
    for a in "$@"; do
      case $a in --qgemma) has_qgemma=1 ;; --synth | --models) has_models=1 ;; esac
    done
    [ $has_qgemma = 1 ] || set -- --qgemma "$ROOT/build/tools/qgemma" "$@"
    [ $has_models = 1 ] || set -- "$@" --synth tiny:f32,tiny:q8_0,tiny:q4_0,tiny:q4_k
    exec node "$ROOT/scripts/compare/compare-logits.mjs" "$@" ;;
  *) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
