// Paired ceilings. Read bandwidth for the memory-bound benchmarks (GEMV, attention): after every
// timed call the benchmark pauses its timer and streams the same number of bytes through a
// ReadProbe (runtime/ceiling.h) with the same threads, so each repetition's fraction compares the
// kernel with what the machine read in the same seconds (counter bw_frac_paired). On this shared
// machine the bandwidth a process gets moves by 15-20% between minutes; bw_frac, against the
// ceiling measured once at start-up, moves with it. The int8 peak for the compute-bound GEMMs (Peak
// below): one ~60 ms pass of the start-up peak loop after every timed call (counter
// peak_frac_paired), since other tenants take CPU time as well as bandwidth.
#pragma once

#include <benchmark/benchmark.h>

#include <chrono>

#include "runtime/ceiling.h"
#include "runtime/threadpool.h"

namespace qgemma::bench {

// Wall seconds of the timed calls, summed (the pairing's own work is left out).
class KernelClock {
 public:
  template <typename Fn>
  void time(Fn&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    kernel_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  double kernel_seconds() const { return kernel_s_; }

 protected:
  double kernel_s_ = 0;
};

class Paired : public KernelClock {
 public:
  Paired() { probe().reset(); }
  // Times one call of `fn` (kernel seconds), then reads `bytes` through the probe untimed.
  template <typename Fn>
  void run(benchmark::State& state, size_t bytes, Fn&& fn) {
    time(fn);
    state.PauseTiming();
    probe().read(bytes);
    state.ResumeTiming();
  }
  // Sets bw_frac_paired: bytes_per_call per kernel second over the probe's bytes per second.
  void set_counters(benchmark::State& state, double bytes_per_call) const {
    const ReadProbe& p = probe();
    if (kernel_s_ <= 0 || p.seconds() <= 0) return;
    const double kernel_gbps =
        bytes_per_call * static_cast<double>(state.iterations()) / kernel_s_ / 1e9;
    state.counters["bw_frac_paired"] = kernel_gbps / p.gbps();
    state.counters["paired_GB_s"] = p.gbps();
  }

 private:
  static ReadProbe& probe() {
    static ReadProbe p(ThreadPool::global());
    return p;
  }
};

class PairedPeak : public KernelClock {
 public:
  // Times one call of `fn`, then runs one pass of the int8 peak loop untimed.
  template <typename Fn>
  void run(benchmark::State& state, Fn&& fn) {
    time(fn);
    state.PauseTiming();
    const double gops = int8_peak_gops(ThreadPool::global(), 1);
    if (gops > 0) {
      inv_sum_ += 1.0 / gops;  // equal work per pass: the mean rate is the harmonic mean
      ++passes_;
    }
    state.ResumeTiming();
  }
  // Sets peak_frac_paired: ops_per_call per kernel second over the passes' mean int8 rate.
  void set_counters(benchmark::State& state, double ops_per_call) const {
    if (kernel_s_ <= 0 || passes_ == 0) return;
    const double peak = passes_ / inv_sum_;
    const double gops = ops_per_call * static_cast<double>(state.iterations()) / kernel_s_ / 1e9;
    state.counters["peak_frac_paired"] = gops / peak;
    state.counters["paired_GOPS"] = peak;
  }

 private:
  double inv_sum_ = 0;
  int passes_ = 0;
};

}  // namespace qgemma::bench
