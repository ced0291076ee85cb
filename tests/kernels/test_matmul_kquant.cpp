// Q4_K / Q5_K / Q6_K x Q8_K matmul: every variant this machine (or qemu) runs against the scalar
// reference, the reference against dequantize(W) . dequantize(X), and the dispatched kernel
// against an f32 product with a tolerance derived from Q8_K's rounding error.
//
// Tolerances:
//   variant vs ref, ref vs dequantized product: both compute the same exact integer sums per
//   256-block and differ only in float rounding of the block terms and their sum, so
//   |diff| <= (nb + 64) * FLT_EPSILON * mag, where mag = sum_k (|a_k| + |b_k|) * |xq_k| with
//   a_k = d * scale * code and b_k = dmin * min the two parts of a weight (Q6_K: b = 0).
//   vs f32 activations: Q8_K rounds each x to the nearest multiple of its block's |d|, so
//   |sum_k w_k (x_k - xq_k)| <= sum_b |d_b| / 2 * sum_{k in b} |w_k|; we allow 1.01 x that plus
//   the float term above.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/matmul/matmul.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

#if defined(__aarch64__)
constexpr bool kUnderEmulation = true;  // NEON runs under qemu in CI: keep sizes modest
#else
constexpr bool kUnderEmulation = false;
#endif

size_t block_bytes(TensorType t) { return type_traits(t).type_size; }

// Random blocks straight from random bytes: every code, every 6-bit scale/min pattern and (Q6_K)
// every signed scale occurs; d and dmin are set to sane f16 values.
std::vector<uint8_t> random_weights(TensorType t, int64_t N, int64_t K, std::mt19937& rng) {
  const int64_t nb = N * (K / QK_K);
  std::vector<uint8_t> w(nb * block_bytes(t));
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& v : w) v = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> mag(1e-3f, 2e-2f);
  for (int64_t b = 0; b < nb; ++b) {
    if (t == TensorType::Q4_K) {
      auto* blk = reinterpret_cast<block_q4_K*>(w.data()) + b;
      blk->d = f32_to_f16(mag(rng));
      blk->dmin = f32_to_f16(mag(rng));
    } else if (t == TensorType::Q5_K) {
      auto* blk = reinterpret_cast<block_q5_K*>(w.data()) + b;
      blk->d = f32_to_f16(mag(rng));
      blk->dmin = f32_to_f16(mag(rng));
    } else {
      auto* blk = reinterpret_cast<block_q6_K*>(w.data()) + b;
      blk->d = f32_to_f16(byte(rng) % 2 ? mag(rng) : -mag(rng));
    }
  }
  return w;
}

// Weights quantized from random floats (what a real model file holds).
std::vector<uint8_t> quantized_weights(TensorType t, int64_t N, int64_t K, std::mt19937& rng,
                                       std::vector<float>* deq) {
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> f(N * K);
  for (float& v : f) v = dist(rng);
  std::vector<uint8_t> w(N * row_size(t, K));
  for (int64_t n = 0; n < N; ++n) quantize_row(t, &f[n * K], &w[n * row_size(t, K)], K);
  deq->resize(N * K);
  for (int64_t n = 0; n < N; ++n) dequantize_row(t, &w[n * row_size(t, K)], &(*deq)[n * K], K);
  return w;
}

std::vector<float> random_activations(int64_t R, int64_t K, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(R * K);
  for (float& v : x) v = dist(rng);
  if (R * K >= 2 * QK_K) {  // an all-zero block (d = 0) and a block with a large outlier
    std::fill(x.begin(), x.begin() + QK_K, 0.0f);
    x[QK_K + 7] = 40.0f;
  }
  return x;
}

// R rows of Q8_K with `pad` spare bytes after each row (ldx > row size).
struct Q8K {
  std::vector<uint8_t> bytes;
  size_t ldx;
};

Q8K quantize_activations(const std::vector<float>& x, int64_t R, int64_t K, size_t pad) {
  Q8K q;
  q.ldx = row_size(TensorType::Q8_K, K) + pad;
  q.bytes.assign(R * q.ldx, 0);
  for (int64_t r = 0; r < R; ++r) {
    quantize_row_q8_K_ref(&x[r * K], reinterpret_cast<block_q8_K*>(&q.bytes[r * q.ldx]), K);
  }
  return q;
}

const block_q8_K* q8k_row(const Q8K& q, int64_t r) {
  return reinterpret_cast<const block_q8_K*>(&q.bytes[r * q.ldx]);
}

// a (scale part) and b (min part, Q4_K / Q5_K only) of one weight row, via the format's dequantizer
// with dmin or d zeroed: dequant(d, 0) = a, dequant(0, dmin) = -b.
void weight_parts(TensorType t, const uint8_t* row, int64_t K, float* a, float* b) {
  std::vector<uint8_t> tmp(row, row + row_size(t, K));
  if (t == TensorType::Q6_K) {
    dequantize_row(t, tmp.data(), a, K);
    std::fill(b, b + K, 0.0f);
    return;
  }
  // Q4_K and Q5_K both start with d, dmin (f16); only the block stride differs.
  const size_t stride = block_bytes(t);
  auto set = [&](size_t offset) {
    for (int64_t i = 0; i < K / QK_K; ++i) std::memset(&tmp[i * stride + offset], 0, 2);
  };
  set(offsetof(block_q4_K, dmin));
  dequantize_row(t, tmp.data(), a, K);
  std::copy(row, row + tmp.size(), tmp.begin());
  set(offsetof(block_q4_K, d));
  dequantize_row(t, tmp.data(), b, K);
}

// Expected results in double: dequant(W) . dequant(Xq), plus the float tolerance of each output;
// only every `stride`-th weight row is computed (tol < 0 marks the rows left out).
struct Expected {
  std::vector<double> y, tol;
};

Expected dequantized_product(TensorType t, const std::vector<uint8_t>& w, const Q8K& x, int64_t N,
                             int64_t K, int64_t R, int64_t stride = 1) {
  Expected e;
  e.y.assign(R * N, 0.0);
  e.tol.assign(R * N, -1.0);
  const int64_t nb = K / QK_K;
  std::vector<float> wf(K), a(K), b(K), xf(K);
  for (int64_t n = 0; n < N; n += stride) {
    const uint8_t* row = &w[n * row_size(t, K)];
    dequantize_row(t, row, wf.data(), K);
    weight_parts(t, row, K, a.data(), b.data());
    for (int64_t r = 0; r < R; ++r) {
      dequantize_row_q8_K(q8k_row(x, r), xf.data(), K);
      double sum = 0, mag = 0;
      for (int64_t k = 0; k < K; ++k) {
        sum += static_cast<double>(wf[k]) * xf[k];
        mag += (std::fabs(a[k]) + std::fabs(b[k])) * std::fabs(xf[k]);
      }
      e.y[r * N + n] = sum;
      e.tol[r * N + n] = (nb + 64) * FLT_EPSILON * mag + 1e-30;
    }
  }
  return e;
}

struct Variant {
  std::string name;
  MatmulFn fn;
};

// Every K-quant kernel this machine runs: ref, then the gemv and gemm slot of each ISA level.
std::vector<Variant> variants(TensorType t) {
  std::vector<Variant> v;
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (!isa_supported(isa)) continue;
    const MatmulKernels k = matmul_kernels(t, isa);
    const std::string name(isa_name(isa));
    if (k.gemv != nullptr) v.push_back({name + "/gemv", k.gemv});
    if (k.gemm != nullptr && k.gemm != k.gemv) v.push_back({name + "/gemm", k.gemm});
  }
  return v;
}

// Runs fn on rows [0, N) split at `split` (two "threads"), output padded to ldy = N + 3 with
// NaN sentinels that must survive outside the computed columns.
std::vector<float> run(MatmulFn fn, const std::vector<uint8_t>& w, const Q8K& x, int64_t N,
                       int64_t K, int64_t R, int64_t split) {
  const int64_t ldy = N + 3;
  std::vector<float> y(R * ldy, NAN);
  MatmulArgs a;
  a.w = w.data();
  a.x = x.bytes.data();
  a.ldx = x.ldx;
  a.y = y.data();
  a.ldy = ldy;
  a.K = K;
  a.R = R;
  fn(a, 0, split);
  fn(a, split, N);
  for (int64_t r = 0; r < R; ++r) {
    for (int64_t n = N; n < ldy; ++n) EXPECT_TRUE(std::isnan(y[r * ldy + n])) << "wrote past n1";
  }
  std::vector<float> out(R * N);
  for (int64_t r = 0; r < R; ++r) std::copy(&y[r * ldy], &y[r * ldy] + N, &out[r * N]);
  return out;
}

void expect_close(const std::vector<float>& got, const Expected& want, const std::string& what) {
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    if (want.tol[i] >= 0 && !(std::fabs(got[i] - want.y[i]) <= want.tol[i])) {
      ADD_FAILURE() << what << " output " << i << ": got " << got[i] << ", want " << want.y[i]
                    << " +- " << want.tol[i];
      ++failures;
    }
  }
}

void check_shape(TensorType t, int64_t N, int64_t K, int64_t R, uint32_t seed, int64_t stride = 1) {
  std::mt19937 rng(seed);
  const std::vector<uint8_t> w = random_weights(t, N, K, rng);
  const Q8K x = quantize_activations(random_activations(R, K, rng), R, K, /*pad=*/R > 1 ? 64 : 0);
  const Expected want = dequantized_product(t, w, x, N, K, R, stride);
  for (const Variant& v : variants(t)) {
    const std::string what = std::string(type_traits(t).name) + " " + v.name +
                             " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                             " R=" + std::to_string(R);
    expect_close(run(v.fn, w, x, N, K, R, N / 3), want, what);
  }
}

class KQuantMatmul : public ::testing::TestWithParam<TensorType> {};

TEST_P(KQuantMatmul, EveryIsaHasAKernel) {
  EXPECT_TRUE(matmul_supported(GetParam()));
  EXPECT_EQ(vec_dot_type(GetParam()), TensorType::Q8_K);
#if defined(__x86_64__)
  EXPECT_NE(matmul_kernels(GetParam(), Isa::avx2).gemv, nullptr);
  EXPECT_NE(matmul_kernels(GetParam(), Isa::avx512).gemv, nullptr);
#endif
#if defined(__aarch64__)
  EXPECT_NE(matmul_kernels(GetParam(), Isa::neon).gemv, nullptr);
#endif
}

// GEMV batches: R = 1..8, ragged N, K from one block to the 12B's FFN width.
TEST_P(KQuantMatmul, GemvMatchesReference) {
  const std::vector<int64_t> Ks = kUnderEmulation ? std::vector<int64_t>{256, 512, 3840}
                                                  : std::vector<int64_t>{256, 512, 3840, 15360};
  const std::vector<int64_t> Ns =
      kUnderEmulation ? std::vector<int64_t>{1, 7, 13} : std::vector<int64_t>{1, 7, 13, 100};
  uint32_t seed = 1;
  for (int64_t K : Ks) {
    for (int64_t N : Ns) {
      for (int64_t R = 1; R <= kGemvMaxRows; ++R) check_shape(GetParam(), N, K, R, seed++);
    }
  }
}

// Prefill: R above the gemv range, incl. ragged activation tiles.
TEST_P(KQuantMatmul, GemmMatchesReference) {
  const std::vector<int64_t> Rs =
      kUnderEmulation ? std::vector<int64_t>{9, 19} : std::vector<int64_t>{9, 64, 77};
  uint32_t seed = 100;
  for (int64_t K : {256, 3840}) {
    for (int64_t N : {13, 100}) {
      for (int64_t R : Rs) check_shape(GetParam(), N, K, R, seed++);
    }
  }
}

// Panels: N large enough that the weight rows are split into several ~256 KiB L2 panels (121
// rows of Q4_K, 83 of Q6_K at K = 3840), each visited by three activation tiles.
TEST_P(KQuantMatmul, GemmAcrossPanels) { check_shape(GetParam(), 300, 3840, 19, 200); }

// The 12B's decode shapes (3840 -> 15360 gate/up, 15360 -> 3840 down), one token; every
// kernel computes all rows, every 7th row is checked.
TEST_P(KQuantMatmul, Gemma12bGemvShapes) {
  if (kUnderEmulation) GTEST_SKIP() << "too slow under qemu; covered by the x86 build";
  check_shape(GetParam(), 15360, 3840, 1, 300, 7);
  check_shape(GetParam(), 3840, 15360, 1, 301, 7);
}

// Realistic weights (quantized from floats) against f32 activations: the Q8_K error bound.
TEST_P(KQuantMatmul, MatchesF32ProductWithinQ8KError) {
  const TensorType t = GetParam();
  const int64_t N = 37, K = kUnderEmulation ? 1024 : 3840, R = 5;
  std::mt19937 rng(400);
  std::vector<float> wf;
  const std::vector<uint8_t> w = quantized_weights(t, N, K, rng, &wf);
  const std::vector<float> xf = random_activations(R, K, rng);
  const Q8K x = quantize_activations(xf, R, K, 0);
  const Expected float_tol = dequantized_product(t, w, x, N, K, R);
  for (const Variant& v : variants(t)) {
    const std::vector<float> y = run(v.fn, w, x, N, K, R, N / 2);
    for (int64_t r = 0; r < R; ++r) {
      const block_q8_K* xq = q8k_row(x, r);
      for (int64_t n = 0; n < N; ++n) {
        double exact = 0, bound = 0;
        for (int64_t b = 0; b < K / QK_K; ++b) {
          double wabs = 0;
          for (int64_t k = b * QK_K; k < (b + 1) * QK_K; ++k) {
            exact += static_cast<double>(wf[n * K + k]) * xf[r * K + k];
            wabs += std::fabs(wf[n * K + k]);
          }
          bound += std::fabs(xq[b].d) / 2 * wabs;
        }
        const double tol = 1.01 * bound + float_tol.tol[r * N + n];
        EXPECT_NEAR(y[r * N + n], exact, tol) << v.name << " r=" << r << " n=" << n;
      }
    }
  }
}

// ---- repacked Q4_Kx8 / Q5_Kx8 / Q6_Kx8 --------------------------------------------------------
// Weights are made in the plain layout (as the loader reads them), repacked with repack_rows,
// and every x8 variant must match the plain layout's dequantized product (same tolerance).

class KQuantX8 : public ::testing::TestWithParam<TensorType> {};

TensorType plain_of(TensorType x8) { return unpacked_type(x8); }

std::vector<uint8_t> repacked(TensorType plain, const std::vector<uint8_t>& w, int64_t N,
                              int64_t K) {
  std::vector<uint8_t> out(w.size());
  repack_rows(plain, w.data(), out.data(), K, 0, N);
  return out;
}

void check_x8_shape(TensorType x8, int64_t N, int64_t K, int64_t R, uint32_t seed,
                    int64_t stride = 1) {
  const TensorType plain = plain_of(x8);
  std::mt19937 rng(seed);
  const std::vector<uint8_t> w = random_weights(plain, N, K, rng);
  const std::vector<uint8_t> wx = repacked(plain, w, N, K);
  const Q8K x = quantize_activations(random_activations(R, K, rng), R, K, /*pad=*/R > 1 ? 64 : 0);
  const Expected want = dequantized_product(plain, w, x, N, K, R, stride);
  const std::vector<Variant> vs = variants(x8);
  ASSERT_FALSE(vs.empty());
  for (const Variant& v : vs) {
    const std::string what = std::string(type_traits(x8).name) + " " + v.name +
                             " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                             " R=" + std::to_string(R);
    expect_close(run(v.fn, wx, x, N, K, R, N / 3 / 8 * 8), want, what);
  }
}

TEST_P(KQuantX8, Types) {
  const TensorType x8 = GetParam();
  EXPECT_EQ(repacked_type(plain_of(x8)), x8);
  EXPECT_NE(plain_of(x8), x8);
  EXPECT_EQ(type_traits(x8).block_size, QK_K);
  EXPECT_EQ(row_size(x8, 3840), 8 * row_size(plain_of(x8), 3840));
  EXPECT_EQ(vec_dot_type(x8), TensorType::Q8_K);
  EXPECT_EQ(matmul_row_granularity(x8), 8);
  EXPECT_FALSE(should_repack(plain_of(x8), 12, 256));  // N not a multiple of 8
  if (isa_supported(Isa::avx512)) {
    EXPECT_NE(matmul_kernels(x8, Isa::avx512).gemv, nullptr);
  }
#if defined(__x86_64__)
  if (x8 == TensorType::Q5_Kx8) {
    // AVX-512 only: on avx2 (and neon, ref) Q5_K stays plain.
    EXPECT_EQ(matmul_kernels(x8, Isa::avx2).gemv, nullptr);
    EXPECT_EQ(matmul_kernels(x8, Isa::avx2).gemm, nullptr);
  } else {
    // matmul_kx8_avx2.cpp: one body as gemv and gemm (checked against the reference below).
    EXPECT_NE(matmul_kernels(x8, Isa::avx2).gemv, nullptr);
    EXPECT_NE(matmul_kernels(x8, Isa::avx2).gemm, nullptr);
  }
#endif
  EXPECT_EQ(matmul_kernels(x8, Isa::neon).gemv, nullptr);
}

// Where the loader repacks: K-quants only on avx512 (Q4_Kx8, Q5_Kx8, Q6_Kx8), never on avx2 or
// ref, never with N not a multiple of 8.
TEST_P(KQuantX8, ShouldRepackFollowsIsa) {
  const TensorType plain = plain_of(GetParam());
  const Isa saved = active_isa();
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (!isa_supported(isa)) continue;
    set_active_isa(isa);
    EXPECT_EQ(should_repack(plain, 3840, 15360), isa == Isa::avx512) << isa_name(isa);
    EXPECT_FALSE(should_repack(plain, 3844, 15360)) << isa_name(isa);
  }
  set_active_isa(saved);
}

// repack then unpack gives the plain bytes back, for whole matrices and for row ranges.
TEST_P(KQuantX8, RepackRoundTrip) {
  const TensorType plain = plain_of(GetParam());
  std::mt19937 rng(500);
  for (int64_t K : {256, 768, 3840}) {
    const int64_t N = 40;
    const std::vector<uint8_t> w = random_weights(plain, N, K, rng);
    const std::vector<uint8_t> wx = repacked(plain, w, N, K);
    EXPECT_NE(wx, w);
    std::vector<uint8_t> back(w.size(), 0);
    unpack_rows(GetParam(), wx.data(), back.data(), K, 0, N);
    EXPECT_EQ(back, w) << "K=" << K;
    // Ranges: rows [8, 24) repacked alone land where the whole repack put them.
    std::vector<uint8_t> part(w.size(), 0);
    repack_rows(plain, w.data(), part.data(), K, 8, 24);
    const size_t rs = row_size(plain, K);
    EXPECT_TRUE(std::equal(part.begin() + 8 * rs, part.begin() + 24 * rs, wx.begin() + 8 * rs));
    EXPECT_TRUE(std::all_of(part.begin(), part.begin() + 8 * rs, [](uint8_t v) { return v == 0; }));
  }
}

// GEMV batches R = 1..8; N covers whole and partial 4-group tiles (8 .. 104 rows).
TEST_P(KQuantX8, GemvMatchesReference) {
  uint32_t seed = 600;
  for (int64_t K : {256, 512, 3840, 15360}) {
    for (int64_t N : {8, 16, 24, 40, 104}) {
      for (int64_t R = 1; R <= kGemvMaxRows; ++R) {
        // Keeps the suite fast: the kernels' row loop is the same for every R above 4.
        if ((K == 15360 || kUnderEmulation) && R > 2 && R != 5) continue;
        check_x8_shape(GetParam(), N, K, R, seed++);
      }
    }
  }
}

TEST_P(KQuantX8, GemmMatchesReference) {
  uint32_t seed = 700;
  for (int64_t K : {256, 3840}) {
    for (int64_t N : {24, 104}) {
      for (int64_t R : {9, 33}) check_x8_shape(GetParam(), N, K, R, seed++);
    }
  }
}

// Ragged prefill batches: R = 17, 64, 65 cover full and partial activation-row tiles (4 rows on
// AVX2; on AVX-512 the GEMM's tiles of up to 12 rows) on top of several groups and two K.
TEST_P(KQuantX8, GemmRaggedRows) {
  if (kUnderEmulation) GTEST_SKIP() << "too slow under qemu; covered by the x86 build";
  uint32_t seed = 750;
  for (int64_t K : {512, 1280}) {
    for (int64_t R : {17, 64, 65}) check_x8_shape(GetParam(), 40, K, R, seed++);
  }
}

// The AVX-512 x8 GEMM's blocking (R > 9, all three formats): K chunks of <= 8 blocks split evenly
// (17 blocks: 6 + 6 + 5; 60 blocks at the 12B's FFN width), super-tiles of <= 128 activation rows
// (R = 129, 200: two super-tiles), row tiles of <= 12 (R = 13: 6 + 7; R = 12: one full tile),
// 16-row weight strips with an 8-row tail (N = 40, and the two-"thread" split at row 8).
TEST_P(KQuantX8, GemmBlockingEdges) {
  if (kUnderEmulation) GTEST_SKIP() << "too slow under qemu; covered by the x86 build";
  uint32_t seed = 780;
  for (int64_t R : {12, 13, 129}) check_x8_shape(GetParam(), 40, 17 * 256, R, seed++);
  check_x8_shape(GetParam(), 24, 512, 200, seed++);
  check_x8_shape(GetParam(), 16, 15360, 10, seed++);  // the smallest GEMM batch
}

// Several ~512 KiB panels of groups (28 groups = 224 rows of Q4_Kx8 at K = 3840).
TEST_P(KQuantX8, AcrossPanels) { check_x8_shape(GetParam(), 504, 3840, 3, 800, 5); }

TEST_P(KQuantX8, Gemma12bGemvShapes) {
  if (kUnderEmulation) GTEST_SKIP() << "too slow under qemu; covered by the x86 build";
  check_x8_shape(GetParam(), 15360, 3840, 1, 900, 7);
  check_x8_shape(GetParam(), 3840, 15360, 1, 901, 7);
}

// ---- Q5_Kx8 specifics -------------------------------------------------------------------------

// The fifth-bit masks: every element's bit lands at a distinct position of the 2048 qh bits, and
// the position follows the documented rule (mask 2 v + h of qs vector v holds, at bit t, the
// code in qs[64 v + t]'s low (h = 0) or high (h = 1) nibble).
TEST(Q5KX8Layout, FifthBitPositions) {
  std::vector<int> seen(8 * QK_K, 0);
  for (int j = 0; j < 8; ++j) {
    for (int e = 0; e < QK_K; ++e) {
      const int q = q5_kx8_qh_bit(j, e);
      ASSERT_GE(q, 0);
      ASSERT_LT(q, 8 * QK_K);
      ++seen[q];
      const int o = x8_qs_offset(j, 32 * (e / 64) + e % 32);  // byte of qs holding the nibble
      EXPECT_EQ(q / 128, o / 64);
      EXPECT_EQ((q / 64) % 2, (e % 64) / 32);
      EXPECT_EQ(q % 64, o % 64);
    }
  }
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
}

// One element's fifth bit set in a zero block moves exactly the bit q5_kx8_qh_bit names, and
// nothing else; the Q4_K part (d, dmin, scales, mins, qs) is laid out as Q4_Kx8's.
TEST(Q5KX8Layout, RepackMatchesQ4KPartAndMovesEachBit) {
  std::mt19937 rng(1000);
  const int64_t K = 512, N = 8;
  std::vector<uint8_t> w5 = random_weights(TensorType::Q5_K, N, K, rng);
  // The same rows without qh, as Q4_K.
  std::vector<uint8_t> w4(N * row_size(TensorType::Q4_K, K));
  for (int64_t i = 0; i < N * K / QK_K; ++i) {
    const auto& b5 = reinterpret_cast<const block_q5_K*>(w5.data())[i];
    auto& b4 = reinterpret_cast<block_q4_K*>(w4.data())[i];
    b4.d = b5.d;
    b4.dmin = b5.dmin;
    std::memcpy(b4.scales, b5.scales, sizeof(b4.scales));
    std::memcpy(b4.qs, b5.qs, sizeof(b4.qs));
  }
  std::vector<uint8_t> x5(w5.size()), x4(w4.size());
  repack_rows(TensorType::Q5_K, w5.data(), x5.data(), K, 0, N);
  repack_rows(TensorType::Q4_K, w4.data(), x4.data(), K, 0, N);
  for (int64_t b = 0; b < K / QK_K; ++b) {
    const auto& p5 = reinterpret_cast<const block_q5_Kx8*>(x5.data())[b];
    const auto& p4 = reinterpret_cast<const block_q4_Kx8*>(x4.data())[b];
    EXPECT_EQ(std::memcmp(p5.d, p4.d, sizeof(p4.d)), 0);
    EXPECT_EQ(std::memcmp(p5.dmin, p4.dmin, sizeof(p4.dmin)), 0);
    EXPECT_EQ(std::memcmp(p5.scales, p4.scales, sizeof(p4.scales)), 0);
    EXPECT_EQ(std::memcmp(p5.mins, p4.mins, sizeof(p4.mins)), 0);
    EXPECT_EQ(std::memcmp(p5.qs, p4.qs, sizeof(p4.qs)), 0);
  }
  // Single bits: element e of row j (block 1) alone set.
  for (int j : {0, 3, 7}) {
    for (int e : {0, 31, 32, 63, 64, 100, 200, 255}) {
      std::vector<uint8_t> z(w5.size(), 0), zx(w5.size(), 0);
      auto* blk = reinterpret_cast<block_q5_K*>(z.data()) + j * (K / QK_K) + 1;
      blk->qh[e % 32] = static_cast<uint8_t>(1 << (e / 32));
      repack_rows(TensorType::Q5_K, z.data(), zx.data(), K, 0, N);
      const auto& p = reinterpret_cast<const block_q5_Kx8*>(zx.data())[1];
      const int q = q5_kx8_qh_bit(j, e);
      for (int i = 0; i < static_cast<int>(sizeof(p.qh)); ++i) {
        EXPECT_EQ(p.qh[i], i == q / 8 ? (1 << (q % 8)) : 0) << "j=" << j << " e=" << e;
      }
      const auto& p0 = reinterpret_cast<const block_q5_Kx8*>(zx.data())[0];
      EXPECT_TRUE(std::all_of(p0.qh, p0.qh + sizeof(p0.qh), [](uint8_t v) { return v == 0; }));
    }
  }
}

// The x8 reference unpacks and runs the plain Q5_K reference: the same integer sums and float
// steps, but the compiler may contract them into FMAs differently in the two call sites (GCC does
// on aarch64 by default), so equal within 1e-6 of the outputs' range (a misplaced bit or scale
// moves an output by the size of a whole product, ~1e-2 of the range and more).
TEST(Q5KX8Layout, ReferenceEqualsPlainReference) {
  std::mt19937 rng(1100);
  for (int64_t K : {256, 3840}) {
    for (int64_t R : {1, 3, 9}) {
      const int64_t N = 24;
      const std::vector<uint8_t> w = random_weights(TensorType::Q5_K, N, K, rng);
      const std::vector<uint8_t> wx = repacked(TensorType::Q5_K, w, N, K);
      const Q8K x = quantize_activations(random_activations(R, K, rng), R, K, 16);
      const MatmulFn plain = matmul_kernels(TensorType::Q5_K, Isa::ref).gemv;
      const MatmulFn x8 = matmul_kernels(TensorType::Q5_Kx8, Isa::ref).gemv;
      ASSERT_NE(x8, nullptr);
      const std::vector<float> a = run(x8, wx, x, N, K, R, 8);
      const std::vector<float> b = run(plain, w, x, N, K, R, N / 3);
      ASSERT_EQ(a.size(), b.size());
      float range = 0.0f;
      for (float v : b) range = std::max(range, std::fabs(v));
      for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_LE(std::fabs(a[i] - b[i]), 1e-6f * range) << "K=" << K << " R=" << R << " i=" << i;
      }
    }
  }
}

// Ragged activation batches on top of KQuantX8's: every R in 1..9, 16, 64, 67 (the R > 1 row
// tiles of 4, full and partial) with N not a multiple of 32 (5 groups).
TEST(Q5KX8Layout, RaggedRows) {
  uint32_t seed = 1200;
  for (int64_t R : {1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 64, 67}) {
    check_x8_shape(TensorType::Q5_Kx8, 40, R > 9 ? 768 : 1280, R, seed++);
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, KQuantX8,
                         ::testing::Values(TensorType::Q4_Kx8, TensorType::Q6_Kx8,
                                           TensorType::Q5_Kx8),
                         [](const ::testing::TestParamInfo<TensorType>& info) {
                           return std::string(info.param == TensorType::Q4_Kx8   ? "Q4_Kx8"
                                              : info.param == TensorType::Q5_Kx8 ? "Q5_Kx8"
                                                                                 : "Q6_Kx8");
                         });

INSTANTIATE_TEST_SUITE_P(Formats, KQuantMatmul,
                         ::testing::Values(TensorType::Q4_K, TensorType::Q6_K, TensorType::Q5_K),
                         [](const ::testing::TestParamInfo<TensorType>& info) {
                           return std::string(info.param == TensorType::Q4_K   ? "Q4_K"
                                              : info.param == TensorType::Q5_K ? "Q5_K"
                                                                               : "Q6_K");
                         });

}  // namespace
}  // namespace qgemma
