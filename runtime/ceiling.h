// This machine's ceilings, measured by the benchmark binary before any benchmark runs and by
// `qgemma bench`, so every figure comes with the fraction of what the hardware can do:
//  - read bandwidth: a streaming read of a buffer several times the last-level cache, all threads
//    of the thread pool, widest vector loads the CPU has;
//  - int8 peak: a register-only loop of independent int8 dot-product instructions on all threads
//    (vpdpbusd zmm with AVX-512 VNNI, else vpmaddubsw + vpmaddwd + vpaddd ymm with AVX2), counted
//    as 2 ops (multiply + add) per int8 multiply-accumulate.
#pragma once

#include <string>

namespace qgemma {

class ThreadPool;

// Each ceiling comes twice: per wall-clock second, and per CPU second of the working threads
// (total work / (sum of the threads' CPU time / threads)). On a machine shared with other
// processes the second is what the code achieves while it runs; the benchmarks report both.
struct Ceilings {
  double read_gbps = 0.0;      // GB/s (1e9 bytes per second), wall clock
  double int8_gops = 0.0;      // 1e9 int8 ops per second (2 per multiply-accumulate), wall clock
  double read_gbps_cpu = 0.0;  // the same per CPU second of the reading threads
  double int8_gops_cpu = 0.0;
  std::string int8_isa;  // the instruction the peak was measured with
  int threads = 0;
};

// CPU time of the calling thread, in seconds.
double thread_cpu_seconds();

// Measures both ceilings with every thread of `pool` (about two seconds).
Ceilings measure_ceilings(ThreadPool& pool);
// The same on ThreadPool::global(); the result is kept for ceilings().
const Ceilings& measure_ceilings();
// The measured values (zeros before measure_ceilings()).
const Ceilings& ceilings();

}  // namespace qgemma
