#include "runtime/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "runtime/threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace qgemma {
namespace {

// Sums 64-bit words of [p, p + n); the sum keeps the loads from being optimized away.
uint64_t read_sum_generic(const uint64_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_sum_avx2(const uint64_t* p, size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  const auto* v = reinterpret_cast<const __m256i*>(p);
  for (size_t i = 0; i + 16 <= n; i += 16, v += 4) {
    a = _mm256_add_epi64(a, _mm256_load_si256(v));
    b = _mm256_add_epi64(b, _mm256_load_si256(v + 1));
    c = _mm256_add_epi64(c, _mm256_load_si256(v + 2));
    d = _mm256_add_epi64(d, _mm256_load_si256(v + 3));
  }
  alignas(32) uint64_t out[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out),
                     _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
  return out[0] + out[1] + out[2] + out[3];
}
#endif

uint64_t read_sum(const uint64_t* p, size_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx2")) return read_sum_avx2(p, n);
#endif
  return read_sum_generic(p, n);
}

}  // namespace

double measure_read_bandwidth(ThreadPool& pool, uint64_t bytes, int reps) {
  const size_t words = bytes / 8 / 4096 * 4096;
  std::unique_ptr<uint64_t[], void (*)(void*)> buf(
      static_cast<uint64_t*>(std::aligned_alloc(64, words * 8)), std::free);
  const int threads = pool.size();
  // Each thread fills (first-touches) and later reads its own part.
  pool.parallel_for(threads, [&](int64_t t, int) {
    const size_t b = words * t / threads, e = words * (t + 1) / threads;
    for (size_t i = b; i < e; ++i) buf[i] = i;
  });
  std::vector<uint64_t> sums(threads);
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(threads, [&](int64_t t, int) {
      const size_t b = words * t / threads / 16 * 16, e = words * (t + 1) / threads / 16 * 16;
      sums[t] += read_sum(buf.get() + b, e - b);
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(words * 8) / s);
  }
  volatile uint64_t sink = 0;
  for (uint64_t s : sums) sink = sink + s;
  return best;
}

}  // namespace qgemma
