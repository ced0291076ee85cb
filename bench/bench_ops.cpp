// Float-op benchmarks at the Gemma 4 12B shapes, single thread, per ISA variant:
// ops/<op>_<isa>/<shape>. Counters: bytes_per_second (bytes read + written per call) and
// elements per second (items_per_second). Example: --benchmark_filter='ops/.*avx512'.
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/ops/ops.h"

namespace qgemma::bench {
namespace {

std::vector<float> random_floats(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

void set_counters(benchmark::State& state, int64_t elements, int64_t bytes) {
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * bytes);
}

void rmsnorm(benchmark::State& state, const OpsKernels* k, int64_t n) {
  const auto x = random_floats(n, 1), w = random_floats(n, 2);
  std::vector<float> y(n);
  for (auto _ : state) {
    k->rmsnorm(x.data(), w.data(), y.data(), n, 1e-6f);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, n, 3 * n * 4);
}

void rmsnorm_heads(benchmark::State& state, const OpsKernels* k, int64_t heads, int64_t dim) {
  const auto x = random_floats(heads * dim, 1), w = random_floats(dim, 2);
  std::vector<float> y(heads * dim);
  for (auto _ : state) {
    k->rmsnorm_heads(x.data(), w.data(), y.data(), heads, dim, 1e-6f);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, heads * dim, (2 * heads * dim + dim) * 4);
}

// One token's RoPE: angles for the position, then rotation of every head.
void rope(benchmark::State& state, const OpsKernels* k, int64_t heads, int64_t dim, int64_t n_rot) {
  const int64_t half = dim / 2;
  std::vector<float> inv(half), c(half), s(half);
  rope_inv_freq(inv.data(), half, 10000.0f, dim, n_rot, nullptr);
  auto x = random_floats(heads * dim, 3);
  float pos = 100.0f;
  for (auto _ : state) {
    k->rope_angles(inv.data(), half, pos, c.data(), s.data());
    k->rope_neox(x.data(), heads, dim, c.data(), s.data());
    benchmark::DoNotOptimize(x.data());
    pos += 1.0f;
  }
  set_counters(state, heads * dim, 2 * heads * dim * 4);
}

void geglu(benchmark::State& state, const OpsKernels* k, int64_t n) {
  const auto g = random_floats(n, 4), u = random_floats(n, 5);
  std::vector<float> y(n);
  for (auto _ : state) {
    k->geglu_tanh(g.data(), u.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, n, 3 * n * 4);
}

void softcap(benchmark::State& state, const OpsKernels* k, int64_t n) {
  const auto x = random_floats(n, 6);
  std::vector<float> y(n);
  for (auto _ : state) {
    k->softcap(x.data(), y.data(), n, 30.0f);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, n, 2 * n * 4);
}

void argmax(benchmark::State& state, const OpsKernels* k, int64_t n) {
  const auto x = random_floats(n, 7);
  for (auto _ : state) benchmark::DoNotOptimize(k->argmax(x.data(), n));
  set_counters(state, n, n * 4);
}

void quantize_q8_0(benchmark::State& state, const OpsKernels* k, int64_t n) {
  const auto x = random_floats(n, 8);
  std::vector<block_q8_0> y(n / QK8_0);
  for (auto _ : state) {
    k->quantize_q8_0(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, n, n * 4 + (n / QK8_0) * 34);
}

void quantize_q8_K(benchmark::State& state, const OpsKernels* k, int64_t n) {
  const auto x = random_floats(n, 9);
  std::vector<block_q8_K> y(n / QK_K);
  for (auto _ : state) {
    k->quantize_q8_K(x.data(), y.data(), n);
    benchmark::DoNotOptimize(y.data());
  }
  set_counters(state, n, n * 4 + (n / QK_K) * 292);
}

// Registered for every ISA this machine runs, so ref and the SIMD variants sit side by side.
const bool kRegistered = [] {
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    const OpsKernels* k = ops_kernels(isa);
    if (k == nullptr || !isa_supported(isa)) continue;
    const std::string s(isa_name(isa));
    benchmark::RegisterBenchmark(("ops/rmsnorm_f32_" + s + "/3840").c_str(), rmsnorm, k, 3840);
    benchmark::RegisterBenchmark(("ops/rmsnorm_heads_f32_" + s + "/16x256").c_str(), rmsnorm_heads,
                                 k, 16, 256);
    benchmark::RegisterBenchmark(("ops/rope_neox_f32_" + s + "/16x256").c_str(), rope, k, 16, 256,
                                 128);
    benchmark::RegisterBenchmark(("ops/rope_neox_f32_" + s + "/16x512_rot64").c_str(), rope, k, 16,
                                 512, 64);
    benchmark::RegisterBenchmark(("ops/geglu_tanh_f32_" + s + "/15360").c_str(), geglu, k, 15360);
    benchmark::RegisterBenchmark(("ops/softcap_f32_" + s + "/262144").c_str(), softcap, k, 262144);
    benchmark::RegisterBenchmark(("ops/argmax_f32_" + s + "/262144").c_str(), argmax, k, 262144);
    benchmark::RegisterBenchmark(("ops/quantize_q8_0_" + s + "/3840").c_str(), quantize_q8_0, k,
                                 3840);
    benchmark::RegisterBenchmark(("ops/quantize_q8_0_" + s + "/15360").c_str(), quantize_q8_0, k,
                                 15360);
    benchmark::RegisterBenchmark(("ops/quantize_q8_K_" + s + "/3840").c_str(), quantize_q8_K, k,
                                 3840);
  }
  return true;
}();

}  // namespace
}  // namespace qgemma::bench
