// qgemma_bench: measures this machine's ceilings (read bandwidth, int8 peak), prints them and adds
// them to the benchmark context (so they are in --benchmark_format=json output), then runs the
// registered benchmarks. Every Google Benchmark flag works (--benchmark_filter=gemv/q4_0x8 for a
// quick run, --benchmark_repetitions=5 for medians).
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>

#include "kernels/cpu.h"
#include "runtime/ceiling.h"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  const qgemma::Ceilings& c = qgemma::measure_ceilings();
  std::fprintf(stderr,
               "ceilings (%d threads): read bandwidth %.1f GB/s (%.1f per CPU second), int8 peak "
               "%.0f GOPS (%.0f per CPU second) with %s\n",
               c.threads, c.read_gbps, c.read_gbps_cpu, c.int8_gops, c.int8_gops_cpu,
               c.int8_isa.c_str());
  benchmark::AddCustomContext("qgemma_threads", std::to_string(c.threads));
  benchmark::AddCustomContext("qgemma_read_bandwidth_gbps", std::to_string(c.read_gbps));
  benchmark::AddCustomContext("qgemma_int8_peak_gops", std::to_string(c.int8_gops));
  benchmark::AddCustomContext("qgemma_read_bandwidth_gbps_cpu", std::to_string(c.read_gbps_cpu));
  benchmark::AddCustomContext("qgemma_int8_peak_gops_cpu", std::to_string(c.int8_gops_cpu));
  benchmark::AddCustomContext("qgemma_int8_peak_isa", c.int8_isa);
  benchmark::AddCustomContext("qgemma_best_isa", std::string(qgemma::isa_name(qgemma::best_isa())));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
