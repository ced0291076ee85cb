#!/usr/bin/env python3
"""Turns qgemma_bench --benchmark_format=json output (with --benchmark_repetitions) into the
Markdown table of docs/benchmarks.md: one row per benchmark, medians over the repetitions.
"of read BW" is against the ceiling measured once at start-up (best of 5 passes); "of paired read
BW" against probe reads taken after every call of the same repetition (bench/paired.h), whose
mean rate is printed next to it; "of paired int8 peak" likewise for the integer GEMMs.

usage: bench/matmul_table.py result.json
"""
import json
import sys


def main():
    data = json.load(open(sys.argv[1]))
    ctx = data["context"]
    print(f"Ceilings (measured by the same run, {ctx.get('qgemma_threads')} threads): "
          f"read bandwidth {float(ctx['qgemma_read_bandwidth_gbps']):.1f} GB/s "
          f"({float(ctx.get('qgemma_read_bandwidth_gbps_cpu', 0)):.1f} per CPU second), "
          f"int8 peak {float(ctx['qgemma_int8_peak_gops']):.0f} GOPS "
          f"({float(ctx.get('qgemma_int8_peak_gops_cpu', 0)):.0f} per CPU second) with "
          f"{ctx.get('qgemma_int8_peak_isa', '')}; load average {ctx.get('load_avg')}.")
    print()
    print("| benchmark | time (us) | GB/s | of read BW | of paired read BW (its GB/s) | GOPS "
          "| of int8 peak | of paired int8 peak (its GOPS) | of read BW (CPU s) "
          "| of int8 peak (CPU s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [b for b in data["benchmarks"] if b.get("aggregate_name") == "median"]
    if not rows:  # no repetitions: plain runs
        rows = [b for b in data["benchmarks"] if b.get("run_type") == "iteration"]
    for b in rows:
        name = b["run_name"].split("/min_time")[0]
        gbs = b.get("GB_s", b.get("GB/s", 0.0))  # matmul / attention benchmarks
        paired = (f"{100 * b['bw_frac_paired']:.0f}% ({b['paired_GB_s']:.1f})"
                  if "bw_frac_paired" in b else "-")
        ppeak = (f"{100 * b['peak_frac_paired']:.1f}% ({b['paired_GOPS']:.0f})"
                 if "peak_frac_paired" in b else "-")
        print(f"| {name} | {b['real_time']:.0f} | {gbs:.2f} | "
              f"{100 * b.get('bw_frac', 0):.0f}% | {paired} | {b.get('GOPS', 0):.1f} | "
              f"{100 * b.get('peak_frac', 0):.1f}% | {ppeak} | {100 * b.get('bw_frac_cpu', 0):.0f}% | "
              f"{100 * b.get('peak_frac_cpu', 0):.1f}% |")

if __name__ == "__main__":
    main()
