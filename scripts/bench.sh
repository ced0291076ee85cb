#!/usr/bin/env bash
# Reproduces the headline numbers of docs/benchmarks.md on this machine:
#   1. kernel targets (qgemma_bench, medians of 5, ceilings measured in the same run)
#   2. end to end on the synthetic 12B Q4_0 (qgemma bench, llama-bench conventions)
# Usage: scripts/bench.sh [OUT_DIR]   (MODEL=path to reuse a 12B GGUF; it is synthesized otherwise,
# which writes ~6.7 GB and takes a while)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out}
MODEL=${MODEL:-models/gemma4-12b-synth-q4_0.gguf}
mkdir -p "$OUT"
cmake -S . -B build -G Ninja >/dev/null
cmake --build build -j "$(nproc)" --target qgemma qgemma_bench

FILTER='^(gemv/(q4_0x8|q8_0x8|q4_K|q5_K|q6_K|q4_Kx8|q5_Kx8|q6_Kx8)/(avx2|avx512)/K(3840_N15360|15360_N3840)/R1/|gemv/q4_0/(ref|avx2)/K(3840_N15360|15360_N3840)/R1/|gemm/(q4_0x8|q4_Kx8)/avx512/K(3840_N15360|15360_N3840)/R512/|attn/(global_mqa|sliding_gqa)/f16/avx512/)'
build/bench/qgemma_bench --benchmark_filter="$FILTER" --benchmark_repetitions=5 \
  --benchmark_report_aggregates_only=true --benchmark_out="$OUT/kernels.json" \
  --benchmark_out_format=json >/dev/null
/usr/bin/python3 bench/matmul_table.py "$OUT/kernels.json" | tee "$OUT/kernels.md"

if [ ! -f "$MODEL" ]; then
  mkdir -p "$(dirname "$MODEL")"
  build/tools/qgemma synth --preset 12b --type q4_0 -o "$MODEL"
fi
build/tools/qgemma bench -m "$MODEL" -p 128 -n 32 -r 3 | tee "$OUT/model.md"
