#include "runtime/ceiling.h"

// GCC 12 reports false -Wuninitialized warnings inside its AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>
#include <vector>

#include "kernels/cpu.h"
#include "runtime/huge_pages.h"
#include "runtime/threadpool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace qgemma {
namespace {

Ceilings g_ceilings;

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Keeps results alive so the compiler cannot drop the loops.
std::atomic<uint64_t> g_sink{0};

#if defined(__x86_64__)
// The xor of a zmm's 64-bit lanes (the header's _mm512_reduce_add_* sum in signed scalar
// arithmetic: wrapped dot-product accumulators overflow there, which UBSan rightly reports).
__attribute__((target("avx512f"))) uint64_t lanes_xor(__m512i v) {
  alignas(64) uint64_t l[8];
  _mm512_store_si512(l, v);
  uint64_t r = 0;
  for (uint64_t x : l) r ^= x;
  return r;
}

__attribute__((target("avx512f"))) uint64_t read_avx512(const uint8_t* p, size_t n) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 256 <= n; i += 256) {
    a0 = _mm512_xor_si512(a0, _mm512_load_si512(p + i));
    a1 = _mm512_xor_si512(a1, _mm512_load_si512(p + i + 64));
    a2 = _mm512_xor_si512(a2, _mm512_load_si512(p + i + 128));
    a3 = _mm512_xor_si512(a3, _mm512_load_si512(p + i + 192));
  }
  const __m512i x = _mm512_xor_si512(_mm512_xor_si512(a0, a1), _mm512_xor_si512(a2, a3));
  return lanes_xor(x);
}

__attribute__((target("avx2"))) uint64_t read_avx2(const uint8_t* p, size_t n) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t i = 0; i + 128 <= n; i += 128) {
    a0 = _mm256_xor_si256(a0, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i)));
    a1 = _mm256_xor_si256(a1, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 32)));
    a2 = _mm256_xor_si256(a2, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 64)));
    a3 = _mm256_xor_si256(a3, _mm256_load_si256(reinterpret_cast<const __m256i*>(p + i + 96)));
  }
  const __m256i x = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
  return static_cast<uint64_t>(_mm256_extract_epi64(x, 0) ^ _mm256_extract_epi64(x, 3));
}

// 16 independent vpdpbusd chains per iteration (explicit registers: an array would be kept in
// memory by some compilers): 16 * 64 int8 multiply-accumulates.
#define QG_DOT16(OP) \
  OP(c0)             \
  OP(c1)             \
  OP(c2)             \
  OP(c3) OP(c4) OP(c5) OP(c6) OP(c7) OP(c8) OP(c9) OP(c10) OP(c11) OP(c12) OP(c13) OP(c14) OP(c15)

__attribute__((target("avx512f,avx512vnni"))) uint64_t dot_avx512vnni(int64_t iters) {
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
#define QG_INIT(c) __m512i c = _mm512_set1_epi32(__LINE__);
#define QG_STEP(c) c = _mm512_dpbusd_epi32(c, a, b);
#define QG_KEEP(c) asm volatile("" : "+v"(c));
#define QG_SUM(c) s = _mm512_add_epi32(s, c);
  QG_DOT16(QG_INIT)
  for (int64_t it = 0; it < iters; ++it) {
    QG_DOT16(QG_STEP)
    QG_DOT16(QG_KEEP)
  }
  __m512i s = _mm512_setzero_si512();
  QG_DOT16(QG_SUM)
#undef QG_INIT
#undef QG_STEP
#undef QG_KEEP
#undef QG_SUM
  return lanes_xor(s);
}
constexpr int64_t kMacsPerIterVnni = 16 * 64;

// The AVX2 sequence: vpmaddubsw (u8 x s8 -> s16 pairs), vpmaddwd with ones (-> s32), vpaddd;
// 12 independent chains of 32 multiply-accumulates (each chain multiplies its own accumulator's
// bytes, so no product can be hoisted out of the loop).
#define QG_DOT12(OP) \
  OP(c0) OP(c1) OP(c2) OP(c3) OP(c4) OP(c5) OP(c6) OP(c7) OP(c8) OP(c9) OP(c10) OP(c11)
__attribute__((target("avx2"))) uint64_t dot_avx2(int64_t iters) {
  const __m256i a = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
#define QG_INIT(c) __m256i c = _mm256_set1_epi32(__LINE__);
#define QG_STEP(c) c = _mm256_add_epi32(c, _mm256_madd_epi16(_mm256_maddubs_epi16(a, c), ones));
#define QG_KEEP(c) asm volatile("" : "+x"(c));
#define QG_SUM(c) s = _mm256_add_epi32(s, c);
  QG_DOT12(QG_INIT)
  for (int64_t it = 0; it < iters; ++it) {
    QG_DOT12(QG_STEP)
    QG_DOT12(QG_KEEP)
  }
  __m256i s = _mm256_setzero_si256();
  QG_DOT12(QG_SUM)
#undef QG_INIT
#undef QG_STEP
#undef QG_KEEP
#undef QG_SUM
  return static_cast<uint64_t>(_mm256_extract_epi32(s, 0));
}
// The same with the VEX-encoded vpdpbusd on ymm (AVX-VNNI: Intel client cores without AVX-512),
// the instruction the avx2 level's int8 kernels use there: 12 chains (16 ymm registers with the
// two operands) of 32 multiply-accumulates.
__attribute__((target("avx2,avxvnni"))) uint64_t dot_avxvnni(int64_t iters) {
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2);
#define QG_INIT(c) __m256i c = _mm256_set1_epi32(__LINE__);
#define QG_STEP(c) c = _mm256_dpbusd_avx_epi32(c, a, b);
#define QG_KEEP(c) asm volatile("" : "+x"(c));
#define QG_SUM(c) s = _mm256_add_epi32(s, c);
  QG_DOT12(QG_INIT)
  for (int64_t it = 0; it < iters; ++it) {
    QG_DOT12(QG_STEP)
    QG_DOT12(QG_KEEP)
  }
  __m256i s = _mm256_setzero_si256();
  QG_DOT12(QG_SUM)
#undef QG_INIT
#undef QG_STEP
#undef QG_KEEP
#undef QG_SUM
  return static_cast<uint64_t>(static_cast<uint32_t>(_mm256_extract_epi32(s, 0)));
}
constexpr int64_t kMacsPerIterAvxVnni = 12 * 32;
#undef QG_DOT16
#undef QG_DOT12
constexpr int64_t kMacsPerIterAvx2 = 12 * 32;
#endif

uint64_t read_portable(const uint8_t* p, size_t n) {
  uint64_t a = 0, b = 0;
  for (size_t i = 0; i + 16 <= n; i += 16) {
    uint64_t x, y;
    std::memcpy(&x, p + i, 8);
    std::memcpy(&y, p + i + 8, 8);
    a ^= x;
    b ^= y;
  }
  return a ^ b;
}

uint64_t read_slice(const uint8_t* p, size_t n) {
#if defined(__x86_64__)
  if (cpu_features().avx512f && cpu_features().os_avx512) return read_avx512(p, n);
  if (cpu_features().avx2 && cpu_features().os_avx) return read_avx2(p, n);
#endif
  return read_portable(p, n);
}

// Best of several passes of `pass_fn(task)` on every thread: work / wall seconds and
// work / (sum of thread CPU seconds / threads).
template <typename PassFn>
void best_rates(ThreadPool& pool, int passes, double work, PassFn pass_fn, double* wall_rate,
                double* cpu_rate) {
  const int64_t parts = pool.size();
  for (int pass = 0; pass < passes; ++pass) {
    std::atomic<int64_t> cpu_ns{0};
    const auto t0 = Clock::now();
    pool.parallel_for(parts, [&](int64_t t, int) {
      const double c0 = thread_cpu_seconds();
      pass_fn(t);
      cpu_ns += static_cast<int64_t>((thread_cpu_seconds() - c0) * 1e9);
    });
    const double wall = seconds_since(t0);
    const double cpu = static_cast<double>(cpu_ns.load()) * 1e-9 / static_cast<double>(parts);
    *wall_rate = std::max(*wall_rate, work / wall);
    if (cpu > 0) *cpu_rate = std::max(*cpu_rate, work / cpu);
  }
}

// `bytes` (a multiple of 2 MiB) 2 MiB aligned and advised for transparent huge pages, as the
// runtime's repacked weights are (Model::repack_matrices): a ceiling is what the best page size
// reads. Every thread of the pool touches the part it will read (`parts` equal slices, the last
// one taking the rest). Freed with std::free.
uint8_t* alloc_touched(ThreadPool& pool, size_t bytes) {
  uint8_t* buf = alloc_huge(bytes).release();
  if (!buf) throw std::bad_alloc();
  const int64_t parts = pool.size();
  const size_t slice = bytes / parts;
  pool.parallel_for(parts, [&](int64_t t, int) {
    const size_t end = t + 1 == parts ? bytes : (t + 1) * slice;
    std::memset(buf + t * slice, int(t + 1), end - t * slice);
  });
  return buf;
}

void measure_read(ThreadPool& pool, Ceilings* c) {
  size_t mib = 1024;
  if (const char* env = std::getenv("QGEMMA_BENCH_READ_MIB")) mib = std::max(64, std::atoi(env));
  const size_t bytes = mib << 20;
  uint8_t* buf = alloc_touched(pool, bytes);
  const int64_t parts = pool.size();
  const size_t slice = bytes / parts / 4096 * 4096;
  best_rates(
      pool, 5, static_cast<double>(slice * parts) / 1e9,
      [&](int64_t t) { g_sink += read_slice(buf + t * slice, slice); }, &c->read_gbps,
      &c->read_gbps_cpu);
  std::free(buf);
}

// Runs `loop(iters)` on every thread: int8 ops (2 per MAC) per second, best of 3.
template <typename Loop>
void measure_peak(ThreadPool& pool, Loop loop, int64_t macs_per_iter, Ceilings* c, int passes = 3) {
  const int64_t iters = 20'000'000;
  const double gops = 2.0 * static_cast<double>(macs_per_iter) * iters * pool.size() / 1e9;
  best_rates(
      pool, passes, gops, [&](int64_t) { g_sink += loop(iters); }, &c->int8_gops,
      &c->int8_gops_cpu);
}

// The int8 peak with the widest instruction this CPU has (0 where neither AVX-512 VNNI nor AVX2):
// vpdpbusd zmm, else vpdpbusd ymm (AVX-VNNI), else the AVX2 sequence.
void measure_int8(ThreadPool& pool, Ceilings* c, int passes) {
#if defined(__x86_64__)
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512vnni && f.os_avx512) {
    measure_peak(pool, dot_avx512vnni, kMacsPerIterVnni, c, passes);
    c->int8_isa = "vpdpbusd zmm (avx512vnni)";
  } else if (f.avx2 && f.avx_vnni && f.os_avx) {
    measure_peak(pool, dot_avxvnni, kMacsPerIterAvxVnni, c, passes);
    c->int8_isa = "vpdpbusd ymm (avxvnni)";
  } else if (f.avx2 && f.os_avx) {
    measure_peak(pool, dot_avx2, kMacsPerIterAvx2, c, passes);
    c->int8_isa = "vpmaddubsw+vpmaddwd+vpaddd ymm (avx2)";
  }
#endif
}

}  // namespace

Ceilings measure_ceilings(ThreadPool& pool) {
  Ceilings c;
  c.threads = pool.size();
  measure_read(pool, &c);
  measure_int8(pool, &c, 3);
  return c;
}

double int8_peak_gops(ThreadPool& pool, int passes) {
  Ceilings c;
  measure_int8(pool, &c, passes);
  return c.int8_gops;
}

double int8_peak_gops_with(ThreadPool& pool, std::string_view instr, int passes) {
  Ceilings c;
#if defined(__x86_64__)
  const CpuFeatures& f = cpu_features();
  if (instr == "avx512vnni" && f.avx512f && f.avx512vnni && f.os_avx512) {
    measure_peak(pool, dot_avx512vnni, kMacsPerIterVnni, &c, passes);
  } else if (instr == "avxvnni" && f.avx2 && f.avx_vnni && f.os_avx) {
    measure_peak(pool, dot_avxvnni, kMacsPerIterAvxVnni, &c, passes);
  } else if (instr == "avx2" && f.avx2 && f.os_avx) {
    measure_peak(pool, dot_avx2, kMacsPerIterAvx2, &c, passes);
  }
#else
  (void)pool, (void)instr, (void)passes;
#endif
  return c.int8_gops;
}

ReadProbe::ReadProbe(ThreadPool& pool, size_t bytes) : pool_(pool) {
  constexpr size_t kHuge = size_t{2} << 20;
  size_ = std::max(kHuge, (bytes + kHuge - 1) / kHuge * kHuge);
  buf_ = alloc_touched(pool, size_);
}

ReadProbe::~ReadProbe() { std::free(buf_); }

double ReadProbe::read(size_t bytes) {
  const int64_t parts = pool_.size();
  bytes = std::min(bytes, size_);
  const size_t slice = std::max<size_t>(4096, bytes / parts / 4096 * 4096);
  if (at_ + slice * parts > size_) at_ = 0;
  const uint8_t* base = buf_ + at_;
  const auto t0 = Clock::now();
  pool_.parallel_for(parts, [&](int64_t t, int) { g_sink += read_slice(base + t * slice, slice); });
  const double s = seconds_since(t0);
  at_ += slice * parts;
  bytes_ += static_cast<double>(slice * parts);
  if (s > 0) best_gbps_ = std::max(best_gbps_, static_cast<double>(slice * parts) / s / 1e9);
  seconds_ += s;
  return s;
}

namespace {
uint64_t status_kib(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kib = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof(line), f)) {
    if (std::strncmp(line, key, n) == 0) {
      kib = std::strtoull(line + n, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kib;
}
}  // namespace

uint64_t peak_rss_bytes() { return status_kib("VmHWM:") * 1024; }
uint64_t current_rss_bytes() { return status_kib("VmRSS:") * 1024; }

const Ceilings& measure_ceilings() {
  g_ceilings = measure_ceilings(ThreadPool::global());
  return g_ceilings;
}

const Ceilings& ceilings() { return g_ceilings; }

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

}  // namespace qgemma
