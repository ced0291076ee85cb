// Matmul benchmarks: GEMV at the Gemma 4 12B shapes (R = 1, and R = 4, 8 for speculative
// verification) and GEMM at batches 64 and 512, per weight format and ISA variant, all threads of
// the pool splitting N. Names: <gemv|gemm>/<format>/<isa>/K<k>_N<n>/R<r>, so
// --benchmark_filter='gemv/q4_0x8/avx512' selects a quick subset.
//
// Counters (from the wall time per iteration; all threads of the pool work):
//   GB_s       weight bytes read per second / 1e9
//   bw_frac    GB_s over the measured read bandwidth (runtime/ceiling.h)
//   GOPS       2*R*N*K ops per second / 1e9
//   peak_frac  GOPS over the measured int8 peak (vpdpbusd; for float formats a loose reference)
//   bw_frac_cpu, peak_frac_cpu: the same fractions per CPU second of the threads inside the kernel
//              (against ceilings measured the same way), which a machine shared with other
//              processes distorts much less than wall time.
//   bw_frac_paired, paired_GB_s (GEMV, R <= 9): GB_s over the read bandwidth of probe reads of
//              the same size taken after every call, timer paused (bench/paired.h).
//   peak_frac_paired, paired_GOPS (integer GEMM, R >= 64): GOPS over the int8 peak of one pass
//              of the peak loop after every call, timer paused.
// The weights rotate through enough copies to exceed 512 MiB (twice the L3 of this machine) so GEMV
// reads come from DRAM, as in decoding a 7 GB model. They sit in the memory the runtime keeps them
// in: repacked formats in huge-page memory (alloc_huge, as the loader's repacked arena), plain
// formats in ordinary 4 KiB pages (as the mapped model file).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "bench/paired.h"
#include "kernels/cpu.h"
#include "kernels/matmul/matmul.h"
#include "kernels/quant/quant.h"
#include "runtime/ceiling.h"
#include "runtime/huge_pages.h"
#include "runtime/threadpool.h"

namespace qgemma::bench {
namespace {

constexpr size_t kColdBytes = size_t{512} << 20;

TensorType plain_type(TensorType t) { return unpacked_type(t); }

struct Case {
  TensorType wtype;
  Isa isa;
  bool gemm;
  int64_t K, N, R;
};

// Weight copies filled by tiling a quantized random 64-row pattern.
struct WeightSet {
  size_t bytes_per_copy = 0;
  int copies = 0;
  HugeBuffer data;
};

WeightSet make_weights(TensorType wtype, int64_t N, int64_t K) {
  const TensorType plain = plain_type(wtype);
  const int64_t pat_rows = std::min<int64_t>(64, N);
  const size_t rs = row_size(plain, K);
  std::vector<uint8_t> pattern(rs * pat_rows), packed(rs * pat_rows);
  std::mt19937 rng(42);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> f(K);
  for (int64_t n = 0; n < pat_rows; ++n) {
    for (float& v : f) v = dist(rng);
    quantize_row(plain, f.data(), pattern.data() + n * rs, K);
  }
  if (plain != wtype) {
    repack_rows(plain, pattern.data(), packed.data(), K, 0, pat_rows);
    pattern.swap(packed);
  }
  WeightSet w;
  w.bytes_per_copy = rs * N;
  w.copies =
      static_cast<int>(std::max<size_t>(1, (kColdBytes + w.bytes_per_copy - 1) / w.bytes_per_copy));
  const size_t total = w.bytes_per_copy * w.copies;
  w.data =
      plain != wtype ? alloc_huge(total) : HugeBuffer(static_cast<uint8_t*>(std::malloc(total)));
  if (!w.data) throw std::bad_alloc();
  for (size_t off = 0; off < total; off += pattern.size()) {
    std::memcpy(w.data.get() + off, pattern.data(), std::min(pattern.size(), total - off));
  }
  return w;
}

// The weights of the last benchmark, kept for its next repetition (filling 512 MiB takes longer
// than a measurement).
const WeightSet& cached_weights(TensorType wtype, int64_t N, int64_t K) {
  static TensorType c_type;
  static int64_t c_n = -1, c_k = -1;
  static WeightSet c_set;
  if (c_type != wtype || c_n != N || c_k != K) {
    c_set = WeightSet{};  // free the old set first
    c_set = make_weights(wtype, N, K);
    c_type = wtype;
    c_n = N;
    c_k = K;
  }
  return c_set;
}

bool is_float(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

void run_matmul(benchmark::State& state, Case c) {
  if (!isa_supported(c.isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  MatmulFn fn = nullptr;
  if (c.isa == Isa::ref) {
    fn = matmul_pick(c.wtype, c.R, Isa::ref);
  } else {
    const MatmulKernels k = matmul_kernels(c.wtype, c.isa);
    fn = c.gemm ? (k.gemm ? k.gemm : k.gemv) : (k.gemv ? k.gemv : k.gemm);
  }
  const WeightSet& w = cached_weights(c.wtype, c.N, c.K);
  const TensorType at = vec_dot_type(c.wtype);
  const size_t ldx = row_size(at, c.K);
  std::vector<uint8_t> x(ldx * c.R);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> f(c.K);
  for (int64_t r = 0; r < c.R; ++r) {
    for (float& v : f) v = dist(rng);
    quantize_row(at, f.data(), x.data() + r * ldx, c.K);
  }
  std::vector<float> y(c.R * c.N);
  ThreadPool& pool = ThreadPool::global();
  // Split boundaries: multiples of 32 rows keep the x8 AVX-512 kernel's 32-row tiles whole.
  const int64_t gran = matmul_row_granularity(c.wtype) == 8 ? 32 : 16;
  // Several tasks per thread so a thread slowed by a neighbour process does not stall the rest
  // (as the runtime splits: gemv_parallel 4 per thread, matmul_parallel 2 per thread).
  const int64_t units = (c.N + gran - 1) / gran;
  const int64_t tasks =
      std::min<int64_t>(units, (c.R > kGemvMaxRows ? 2 : 4) * int64_t{pool.size()});
  int copy = 0;
  std::atomic<int64_t> cpu_ns{0};  // CPU time of all threads inside the kernel
  // GEMV (R <= 9: decoding and verification) is memory-bound: paired with probe reads.
  const bool paired = !c.gemm && c.R <= 9;
  // GEMM (R = 64, 512; not the float formats, whose peak is not int8) is compute-bound: paired
  // with passes of the int8 peak loop.
  const bool paired_peak = c.gemm && c.R >= 64 && !is_float(c.wtype) && c.isa != Isa::ref;
  Paired pair;
  PairedPeak pair_peak;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    const MatmulArgs a{
        w.data.get() + copy * w.bytes_per_copy, x.data(), ldx, y.data(), c.N, c.K, c.R};
    auto call = [&] {
      pool.parallel_for(tasks, [&](int64_t t, int) {
        const int64_t n0 = std::min(c.N, units * t / tasks * gran);
        const int64_t n1 = std::min(c.N, units * (t + 1) / tasks * gran);
        const double c0 = thread_cpu_seconds();
        if (n0 < n1) fn(a, n0, n1);
        cpu_ns += static_cast<int64_t>((thread_cpu_seconds() - c0) * 1e9);
      });
    };
    if (paired) {
      pair.run(state, w.bytes_per_copy, call);
    } else if (paired_peak) {
      pair_peak.run(state, call);
    } else {
      call();
    }
    benchmark::DoNotOptimize(y.data());
    copy = (copy + 1) % w.copies;
  }
  // Wall time of the calls (all threads work; the library's CPU time is the main thread's only).
  const double secs =
      (paired ? pair.kernel_seconds()
       : paired_peak
           ? pair_peak.kernel_seconds()
           : std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()) /
      static_cast<double>(state.iterations());
  if (paired) pair.set_counters(state, static_cast<double>(w.bytes_per_copy));
  if (paired_peak) pair_peak.set_counters(state, 2.0 * static_cast<double>(c.R) * c.N * c.K);
  const Ceilings& ceil = ceilings();
  const double gbps = static_cast<double>(w.bytes_per_copy) / secs / 1e9;
  const double gops = 2.0 * static_cast<double>(c.R) * c.N * c.K / secs / 1e9;
  state.counters["GB_s"] = gbps;
  state.counters["GOPS"] = gops;
  if (ceil.read_gbps > 0) state.counters["bw_frac"] = gbps / ceil.read_gbps;
  if (ceil.int8_gops > 0) state.counters["peak_frac"] = gops / ceil.int8_gops;
  // The same per CPU second of the kernel (robust to other processes taking the cores).
  const double cpu_secs = static_cast<double>(cpu_ns.load()) * 1e-9 /
                          static_cast<double>(state.iterations()) / pool.size();
  if (cpu_secs > 0) {
    const double gbps_cpu = static_cast<double>(w.bytes_per_copy) / cpu_secs / 1e9;
    const double gops_cpu = 2.0 * static_cast<double>(c.R) * c.N * c.K / cpu_secs / 1e9;
    if (ceil.read_gbps_cpu > 0) state.counters["bw_frac_cpu"] = gbps_cpu / ceil.read_gbps_cpu;
    if (ceil.int8_gops_cpu > 0) state.counters["peak_frac_cpu"] = gops_cpu / ceil.int8_gops_cpu;
  }
}

std::string case_name(const Case& c) {
  return std::string(c.gemm ? "gemm/" : "gemv/") + std::string(type_traits(c.wtype).name) + "/" +
         std::string(isa_name(c.isa)) + "/K" + std::to_string(c.K) + "_N" + std::to_string(c.N) +
         "/R" + std::to_string(c.R);
}

bool has_variant(TensorType t, Isa isa) {
  if (isa == Isa::ref) return true;
  const MatmulKernels k = matmul_kernels(t, isa);
  return k.gemv != nullptr || k.gemm != nullptr;
}

void add(const Case& c) {
  if (!has_variant(c.wtype, c.isa)) return;
  benchmark::RegisterBenchmark(case_name(c).c_str(), run_matmul, c)
      ->UseRealTime()
      ->Unit(benchmark::kMicrosecond)
      ->MinTime(0.3);
}

int register_all() {
  const TensorType types[] = {TensorType::Q4_0,   TensorType::Q8_0,   TensorType::Q4_0x8,
                              TensorType::Q8_0x8, TensorType::F16,    TensorType::BF16,
                              TensorType::F32,    TensorType::Q4_K,   TensorType::Q6_K,
                              TensorType::Q4_Kx8, TensorType::Q6_Kx8, TensorType::Q5_K,
                              TensorType::Q5_Kx8};
  const Isa isas[] = {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon};
  // (K, N): Q, K/V, gate/up, down, O, lm head.
  const std::pair<int64_t, int64_t> gemv_shapes[] = {{3840, 4096},  {3840, 2048}, {3840, 15360},
                                                     {15360, 3840}, {4096, 3840}, {3840, 262144}};
  const std::pair<int64_t, int64_t> gemm_shapes[] = {{3840, 15360}, {15360, 3840}};
  for (TensorType t : types) {
    for (Isa isa : isas) {
      for (auto [K, N] : gemv_shapes) {
        if (is_float(t) && N == 262144) continue;  // 2-4 GB of weights
        if (isa == Isa::ref && N == 262144) continue;
        add({t, isa, false, K, N, 1});
      }
      if (isa == Isa::ref) continue;  // the scalar reference would take minutes per GEMM
      for (int64_t R : {4, 8}) add({t, isa, false, 3840, 15360, R});
      for (auto [K, N] : gemm_shapes) {
        for (int64_t R : {64, 512}) add({t, isa, true, K, N, R});
      }
    }
  }
  // Speculative verification batches (k = 1..8 drafts -> 2..9 rows) on the repacked Q4_0 layout
  // the runtime uses: every R on both big GEMV shapes (R = 4, 8 at 3840->15360 are above).
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::neon}) {
    for (auto [K, N] : {std::pair<int64_t, int64_t>{3840, 15360}, {15360, 3840}}) {
      for (int64_t R = 2; R <= 9; ++R) {
        if (K == 3840 && (R == 4 || R == 8)) continue;
        add({TensorType::Q4_0x8, isa, false, K, N, R});
      }
    }
  }
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace qgemma::bench
