// This machine's ceilings, measured by the benchmark binary itself before any benchmark runs, so
// every kernel's figure comes with the fraction of what the hardware can do in the same run:
//  - read bandwidth: a streaming read of a buffer several times the last-level cache, all threads
//    of the thread pool, widest vector loads the CPU has;
//  - int8 peak: a register-only loop of independent int8 dot-product instructions on all threads
//    (vpdpbusd zmm with AVX-512 VNNI, else vpmaddubsw + vpmaddwd + vpaddd ymm with AVX2), counted
//    as 2 ops (multiply + add) per int8 multiply-accumulate.
#pragma once

#include <string>

namespace qgemma::bench {

struct Ceilings {
  double read_gbps = 0.0;  // GB/s (1e9 bytes per second)
  double int8_gops = 0.0;  // 1e9 int8 ops per second (2 per multiply-accumulate)
  std::string int8_isa;    // the instruction the peak was measured with
  int threads = 0;
};

// Measures both ceilings (about two seconds); the result is kept for ceilings().
const Ceilings& measure_ceilings();
// The measured values (zeros before measure_ceilings()).
const Ceilings& ceilings();

}  // namespace qgemma::bench
