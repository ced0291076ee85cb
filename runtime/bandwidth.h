// A small probe of this machine's memory read bandwidth (bench/ceiling.cpp measures the same
// for the benchmark binary; this one is callable from the `qgemma bench` command).
#pragma once

#include <cstdint>

namespace qgemma {

class ThreadPool;

// Streams a buffer of `bytes` (default 1 GiB: far beyond the last-level cache) with every
// thread of `pool`, the widest loads the CPU has, and returns the best of `reps` passes in
// bytes per second.
double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes = uint64_t{1} << 30, int reps = 5);

}  // namespace qgemma
