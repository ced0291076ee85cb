// Flash-attention benchmarks: decoding one token (n_q = 1, 16 query heads) against the KV cache
// of the two Gemma 4 12B layer types, all threads of the pool:
//   attn/global_mqa/<kv type>/<isa>/kv32768   1 KV head x 512, 32K-token cache: the slot range is
//                                             split into 4 ranges per thread (flash_attn_partial),
//                                             then merged (flash_attn_combine)
//   attn/sliding_gqa/<kv type>/<isa>/kv1024   8 KV heads x 256, 1024-slot window (ring buffer):
//                                             the KV heads are split across threads
// <kv type> is f16 or q8_0 (K and V alike); ref runs only the sliding case.
// <isa> avx512_f32math: avx512 with FlashAttnArgs::f32_math (no fp16 arithmetic), global case
// only, to compare with the default avx512 (fp16 arithmetic on CPUs with AVX512-FP16).
// Counters (per second, real time):
//   GB/s     K + V cache bytes read per second
//   bw_frac  GB/s over the measured read bandwidth (runtime/ceiling.h)
//   bw_frac_paired, paired_GB_s: GB/s over the bandwidth of probe reads of the same size taken
//            after every call, timer paused (bench/paired.h)
// The caches rotate through enough copies to exceed 512 MiB (twice this machine's L3) so they
// are read from DRAM, as in decoding, where gigabytes of weights pass between two visits of a
// layer. Example: --benchmark_filter='attn/global_mqa/f16/avx512' --benchmark_repetitions=5.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "bench/paired.h"
#include "kernels/attention/attention.h"
#include "kernels/cpu.h"
#include "kernels/quant/quant.h"
#include "runtime/ceiling.h"
#include "runtime/huge_pages.h"
#include "runtime/threadpool.h"

namespace qgemma::bench {
namespace {

constexpr size_t kColdBytes = size_t{512} << 20;

struct AttnCase {
  std::string layer;  // "global_mqa" or "sliding_gqa"
  int n_kv_head, head_dim;
  int64_t n_kv;
  int32_t window;
  TensorType kv_type;
  Isa isa;
  bool f32_math = false;
};

size_t kv_row_bytes(TensorType t, int head_dim) {
  return t == TensorType::F16 ? 2 * (size_t)head_dim
                              : (size_t)head_dim / QK8_0 * sizeof(block_q8_0);
}

// Copies of one K (or V) cache, layout [kv_head][slot][head_dim], filled from a random pattern.
struct CacheSet {
  size_t bytes_per_copy = 0;
  int copies = 0;
  HugeBuffer data;  // as the runtime's KvCache holds it
};

CacheSet make_cache(const AttnCase& c, uint32_t seed) {
  const size_t rb = kv_row_bytes(c.kv_type, c.head_dim);
  const int pat_rows = 256;
  std::vector<uint8_t> pattern(rb * pat_rows);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> f(c.head_dim);
  for (int r = 0; r < pat_rows; ++r) {
    for (float& v : f) v = dist(rng);
    quantize_row(c.kv_type, f.data(), pattern.data() + r * rb, c.head_dim);
  }
  CacheSet s;
  s.bytes_per_copy = rb * c.n_kv * c.n_kv_head;
  s.copies = (int)std::max<size_t>(1, kColdBytes / 2 / s.bytes_per_copy);
  const size_t total = s.bytes_per_copy * s.copies;
  s.data = alloc_huge(total);
  if (!s.data) throw std::bad_alloc();
  for (size_t off = 0; off < total; off += pattern.size()) {
    std::memcpy(s.data.get() + off, pattern.data(), std::min(pattern.size(), total - off));
  }
  return s;
}

void run_attention(benchmark::State& state, AttnCase c) {
  if (!isa_supported(c.isa)) {
    state.SkipWithError("ISA not supported on this CPU");
    return;
  }
  constexpr int kHeads = 16;
  const CacheSet k = make_cache(c, 1), v = make_cache(c, 2);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> q((size_t)kHeads * c.head_dim), out(q.size());
  for (float& x : q) x = dist(rng);
  // A full cache: the query is the token after the last cached position; every slot visible.
  std::vector<int32_t> kv_pos(c.n_kv);
  for (int64_t j = 0; j < c.n_kv; ++j) kv_pos[j] = (int32_t)j;
  const int32_t q_pos = (int32_t)c.n_kv - 1;

  const size_t rb = kv_row_bytes(c.kv_type, c.head_dim);
  FlashAttnArgs a;
  a.q = q.data();
  a.q_stride_token = (int64_t)kHeads * c.head_dim;
  a.q_stride_head = c.head_dim;
  a.q_pos = &q_pos;
  a.n_q = 1;
  a.n_head = kHeads;
  a.n_kv_head = c.n_kv_head;
  a.head_dim = c.head_dim;
  a.k_type = a.v_type = c.kv_type;
  a.k_stride_slot = a.v_stride_slot = rb;
  a.k_stride_head = a.v_stride_head = rb * c.n_kv;
  a.kv_pos = kv_pos.data();
  a.n_kv = c.n_kv;
  a.window = c.window;
  a.scale = 1.0f;
  a.f32_math = c.f32_math;
  a.out = out.data();
  a.out_stride_token = (int64_t)kHeads * c.head_dim;
  a.out_stride_head = c.head_dim;

  ThreadPool& pool = ThreadPool::global();
  // Several slot ranges per thread, so a thread slowed by a neighbour process does not stall
  // the rest (the ranges are claimed dynamically).
  const int n_split = 4 * pool.size();
  std::vector<float> partial_buf(flash_attn_partial_floats(a) * n_split + 16);
  std::vector<const float*> partials(n_split);
  for (int s = 0; s < n_split; ++s)
    partials[s] = partial_buf.data() + s * flash_attn_partial_floats(a);
  const int group = kHeads / c.n_kv_head;

  auto call = [&] {
    if (c.n_kv_head == 1) {
      // Split-K: each thread reads its share of the slots once for all 16 heads.
      pool.parallel_for(n_split, [&](int64_t s, int) {
        const int64_t kv0 = c.n_kv * s / n_split, kv1 = c.n_kv * (s + 1) / n_split;
        flash_attn_partial_isa(c.isa, a, 0, 1, 0, kHeads, kv0, kv1,
                               const_cast<float*>(partials[s]));
      });
      flash_attn_combine(a, 0, 1, 0, kHeads, partials.data(), n_split);
    } else {
      // One task per KV head (its query heads together).
      pool.parallel_for(c.n_kv_head, [&](int64_t g, int) {
        flash_attn_isa(c.isa, a, 0, 1, (int)g * group, (int)(g + 1) * group);
      });
    }
  };
  int copy = 0;
  Paired pair;
  for (auto _ : state) {
    a.k = k.data.get() + copy * k.bytes_per_copy;
    a.v = v.data.get() + copy * v.bytes_per_copy;
    pair.run(state, 2 * k.bytes_per_copy, call);
    benchmark::DoNotOptimize(out.data());
    copy = (copy + 1) % k.copies;
  }
  const double gb = 2.0 * (double)k.bytes_per_copy / 1e9;
  using C = benchmark::Counter;
  state.counters["GB/s"] = C(gb, C::kIsIterationInvariantRate);
  const Ceilings& ceil = ceilings();
  if (ceil.read_gbps > 0) {
    state.counters["bw_frac"] = C(gb / ceil.read_gbps, C::kIsIterationInvariantRate);
  }
  pair.set_counters(state, 2.0 * (double)k.bytes_per_copy);
}

int register_all() {
  for (TensorType t : {TensorType::F16, TensorType::Q8_0}) {
    for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
#if defined(__x86_64__)
      if (isa == Isa::neon) continue;
#elif defined(__aarch64__)
      if (isa == Isa::avx2 || isa == Isa::avx512) continue;
#endif
      const std::string tn(type_traits(t).name);
      const AttnCase cases[] = {{"global_mqa", 1, 512, 32768, 0, t, isa},
                                {"sliding_gqa", 8, 256, 1024, 1024, t, isa}};
      for (AttnCase c : cases) {
        if (isa == Isa::ref && c.n_kv > 4096) continue;  // seconds per call
        for (bool f32 : {false, true}) {
          if (f32 && (isa != Isa::avx512 || c.n_kv_head != 1)) continue;
          c.f32_math = f32;
          const std::string name = "attn/" + c.layer + "/" + tn + "/" + std::string(isa_name(isa)) +
                                   (f32 ? "_f32math" : "") + "/kv" + std::to_string(c.n_kv);
          benchmark::RegisterBenchmark(name.c_str(), run_attention, c)
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond)
              ->MinTime(isa == Isa::ref ? 0.05 : 0.3);
        }
      }
    }
  }
  return 0;
}

const int kRegistered = register_all();

}  // namespace
}  // namespace qgemma::bench
