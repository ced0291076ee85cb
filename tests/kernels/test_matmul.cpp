// Every matmul variant this machine can run against matmul_ref, on random data with ragged shapes
// (K a multiple of 32 but not of 256, N not a multiple of the tile, R from 1 to 100), sub-ranges
// [n0, n1), padded strides, and the Gemma 4 12B GEMV shapes.
//
// Tolerances, derived from the formats: with M[r][n] = sum_k |W[n][k]| |X[r][k]| (dequantized):
//  - int8 formats (Q4_0, Q8_0 and their x8 layouts): each block's integer dot product is exact in
//    every variant; variants differ from the reference only in the float rounding of the per-block
//    scale products and of the sequential sum over nb = K/32 blocks, so
//    |y - y_ref| <= (nb + 4) * 2^-23 * M.
//  - float formats (F32, F16, BF16 weights x F32 activations): the reference sums in double,
//    variants in float in at least 8 lanes, each lane a sequential sum of K/8 products, then a
//    lane reduction: |y - y_ref| <= (K/8 + 16) * 2^-24 * M.
//  - K-quants (Q4_K, Q6_K x Q8_K): integer sub-block dot products, float scales per sub-block:
//    |y - y_ref| <= (K/16 + 4) * 2^-23 * M.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/matmul/matmul.h"
#include "kernels/matmul/matmul_variants.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

// Small mode (for qemu): QGEMMA_SMALL_TESTS=1, and the default on Arm unless QGEMMA_FULL_TESTS=1.
bool under_qemu() {
#if defined(__aarch64__)
  if (std::getenv("QGEMMA_FULL_TESTS") == nullptr) return true;
#endif
  return std::getenv("QGEMMA_SMALL_TESTS") != nullptr;
}

// A weight matrix in `wtype` (repacked types are made from their plain type) and its dequantized
// float values.
struct Weights {
  TensorType wtype;
  int64_t N, K;
  std::vector<uint8_t> data;
  std::vector<float> deq;  // N x K
};

TensorType plain_type(TensorType t) {
  if (t == TensorType::Q4_0x8) return TensorType::Q4_0;
  if (t == TensorType::Q8_0x8) return TensorType::Q8_0;
  return t;
}

Weights make_weights(TensorType wtype, int64_t N, int64_t K, std::mt19937& rng) {
  const TensorType plain = plain_type(wtype);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> f(N * K);
  for (float& v : f) v = dist(rng);
  Weights w{wtype, N, K, {}, std::vector<float>(N * K)};
  const size_t rs = row_size(plain, K);
  std::vector<uint8_t> plain_data(rs * N);
  for (int64_t n = 0; n < N; ++n) {
    quantize_row(plain, f.data() + n * K, plain_data.data() + n * rs, K);
    dequantize_row(plain, plain_data.data() + n * rs, w.deq.data() + n * K, K);
  }
  if (plain == wtype) {
    w.data = std::move(plain_data);
  } else {
    w.data.resize(plain_data.size());
    repack_rows(plain, plain_data.data(), w.data.data(), K, 0, N);
  }
  return w;
}

// R activation rows in vec_dot_type(wtype) with a padded stride, and their dequantized values.
struct Acts {
  std::vector<uint8_t> data;
  size_t ldx;
  std::vector<float> deq;  // R x K
};

Acts make_acts(TensorType wtype, int64_t R, int64_t K, std::mt19937& rng) {
  const TensorType at = vec_dot_type(wtype);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Acts a;
  a.ldx = row_size(at, K) + 64;  // padded stride
  a.data.assign(a.ldx * R, 0xCD);
  a.deq.resize(R * K);
  std::vector<float> f(K);
  for (int64_t r = 0; r < R; ++r) {
    for (float& v : f) v = dist(rng);
    quantize_row(at, f.data(), a.data.data() + r * a.ldx, K);
    dequantize_row(at, a.data.data() + r * a.ldx, a.deq.data() + r * K, K);
  }
  return a;
}

double tolerance_factor(TensorType wtype, int64_t K) {
  switch (wtype) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
      return (K / 8.0 + 16) * std::ldexp(1.0, -24);
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
      return (K / 16.0 + 4) * std::ldexp(1.0, -23);
    default:
      return (K / 32.0 + 4) * std::ldexp(1.0, -23);
  }
}

// Runs `fn` on columns [n0, n1) and compares with matmul_ref; columns outside stay untouched.
// `tf_override` replaces tolerance_factor(wtype, K) when positive.
void check(TensorType wtype, MatmulFn fn, const std::string& name, int64_t N, int64_t K, int64_t R,
           int64_t n0, int64_t n1, std::mt19937& rng, double tf_override = 0.0) {
  SCOPED_TRACE(name + " " + std::string(type_traits(wtype).name) + " N=" + std::to_string(N) +
               " K=" + std::to_string(K) + " R=" + std::to_string(R) + " n=[" + std::to_string(n0) +
               "," + std::to_string(n1) + ")");
  const Weights w = make_weights(wtype, N, K, rng);
  const Acts x = make_acts(wtype, R, K, rng);
  const int64_t ldy = N + 5;
  const float sentinel = -12345.0f;
  std::vector<float> y(R * ldy, sentinel), y_ref(R * ldy, sentinel);
  MatmulArgs args{w.data.data(), x.data.data(), x.ldx, y.data(), ldy, K, R};
  fn(args, n0, n1);
  args.y = y_ref.data();
  matmul_ref(wtype, args, n0, n1);
  const double tf = tf_override > 0.0 ? tf_override : tolerance_factor(wtype, K);
  int bad = 0;
  for (int64_t r = 0; r < R && bad < 5; ++r) {
    for (int64_t n = 0; n < ldy && bad < 5; ++n) {
      const float got = y[r * ldy + n];
      if (n < n0 || n >= n1) {
        if (got != sentinel) {
          ADD_FAILURE() << "wrote outside [n0,n1): r=" << r << " n=" << n;
          ++bad;
        }
        continue;
      }
      double mag = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        mag += std::fabs(static_cast<double>(w.deq[n * K + k]) * x.deq[r * K + k]);
      }
      const double tol = tf * mag + 1e-30;
      const double err = std::fabs(static_cast<double>(got) - y_ref[r * ldy + n]);
      if (!(err <= tol)) {
        ADD_FAILURE() << "r=" << r << " n=" << n << " got " << got << " ref " << y_ref[r * ldy + n]
                      << " err " << err << " tol " << tol;
        ++bad;
      }
    }
  }
}

const TensorType kTypes[] = {
    TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_0x8, TensorType::Q8_0x8, TensorType::F32,
    TensorType::F16,  TensorType::BF16, TensorType::Q4_K,   TensorType::Q6_K,   TensorType::Q5_K};

bool is_kquant(TensorType t) {
  return t == TensorType::Q4_K || t == TensorType::Q5_K || t == TensorType::Q6_K;
}

// The variants of every ISA this machine runs (ref included via matmul_pick(ref)).
struct Variant {
  std::string name;
  MatmulFn fn;
};
std::vector<Variant> variants(TensorType wtype) {
  std::vector<Variant> out;
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::neon}) {
    if (!isa_supported(isa)) continue;
    const MatmulKernels k = matmul_kernels(wtype, isa);
    if (k.gemv) out.push_back({"gemv_" + std::string(isa_name(isa)), k.gemv});
    if (k.gemm && k.gemm != k.gemv) out.push_back({"gemm_" + std::string(isa_name(isa)), k.gemm});
  }
  return out;
}

class MatmulTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(MatmulTest, RaggedShapesAllVariants) {
  const TensorType wtype = GetParam();
  const int64_t gran = matmul_row_granularity(wtype);
  const int64_t kb = is_kquant(wtype) ? 256 : 32;
  std::mt19937 rng(1234);
  // (N, K) pairs: K multiples of the block size, not of 256 where the block is 32.
  std::vector<std::pair<int64_t, int64_t>> nk;
  if (gran == 8) {
    nk = {{8, 32}, {24, 96}, {40, 288}, {136, 544}};
  } else {
    nk = {{1, kb}, {3, 3 * kb}, {17, 9 * kb}};
    if (!under_qemu() || kb == 32) nk.push_back({33, 17 * kb});
    if (kb == 1) nk = {{1, 1}, {3, 7}, {17, 37}, {33, 544}};
  }
  const int64_t rows[] = {1, 2, 3, 4, 5, 7, 8, 9, 13};
  const std::vector<Variant> vs = variants(wtype);
  for (const Variant& v : vs) {
    for (auto [N, K] : nk) {
      for (int64_t R : rows) check(wtype, v.fn, v.name, N, K, R, 0, N, rng);
      if (N >= 3 * gran) check(wtype, v.fn, v.name, N, K, 3, gran, N - gran, rng);  // sub-range
    }
    // Larger batches (GEMM tiling) with a small N.
    for (int64_t R : {64, 100})
      check(wtype, v.fn, v.name, 8 * gran + gran, 4 * kb, R, 0, 9 * gran, rng);
    // K beyond one stack chunk of the x8 kernels (8192) and not a multiple of 256 for 32-blocks.
    const int64_t big_k = kb == 256 ? 8448 : 8224;
    if (!under_qemu())
      check(wtype, v.fn, v.name, 2 * gran + (gran == 8 ? 8 : 1), big_k, 3, 0,
            2 * gran + (gran == 8 ? 8 : 1), rng);
  }
}

// The 12B GEMV shapes (K -> N) at R = 1 and the 8-row speculative batch on one shape; columns are
// restricted to a slice so the scalar reference stays fast.
TEST_P(MatmulTest, Gemma12BGemvShapes) {
  const TensorType wtype = GetParam();
  if (under_qemu()) GTEST_SKIP() << "large shapes skipped under QGEMMA_SMALL_TESTS";
  std::mt19937 rng(99);
  const std::pair<int64_t, int64_t> shapes[] = {{3840, 4096}, {15360, 3840}, {3840, 15360}};
  for (const Variant& v : variants(wtype)) {
    for (auto [K, N] : shapes) {
      if (K % (is_kquant(wtype) ? 256 : 32) != 0) continue;
      // Only a 64-row slice of the weights is materialized: N rows are independent.
      check(wtype, v.fn, v.name, 64, K, 1, 0, 64, rng);
    }
    check(wtype, v.fn, v.name, 64, 3840, 8, 8, 56, rng);
  }
}

// The repacked layouts' tile paths (AVX-512: 32-row tiles for R <= 9, 16-row tiles for R <= 12,
// GEMM super-tiles of <= 192 rows in <= 12-row tiles, K chunks of <= 128 blocks and N blocks of
// decoded 16-row strips): every R from
// 1 to 14, R around the super-tile size, an odd number of 8-row groups (partial 32- and 16-row
// tiles), sub-ranges starting on 8-row boundaries, and K spanning several chunks.
TEST(MatmulX8, EveryRowCountAndTilePath) {
  std::mt19937 rng(4321);
  for (TensorType wtype : {TensorType::Q4_0x8, TensorType::Q8_0x8}) {
    for (const Variant& v : variants(wtype)) {
      for (int64_t R = 1; R <= 14; ++R) {
        check(wtype, v.fn, v.name, 56, 288, R, 0, 56, rng);  // 7 groups, nb = 9
        check(wtype, v.fn, v.name, 56, 96, R, 8, 48, rng);   // sub-range of 5 groups
      }
      for (int64_t R : {95, 96, 97, 130, 191, 192, 193, 250})
        check(wtype, v.fn, v.name, 40, 32 * 130, R, 0, 40, rng);
      // Several N blocks of decoded strips (48 rows at 130 blocks) with an 8-row tail strip.
      check(wtype, v.fn, v.name, 120, 32 * 130, 30, 0, 120, rng);
      check(wtype, v.fn, v.name, 120, 32 * 130, 13, 8, 120, rng);
      if (!under_qemu()) {
        for (int64_t R : {5, 9, 12}) check(wtype, v.fn, v.name, 24, 8224, R, 0, 24, rng);
        check(wtype, v.fn, v.name, 24, 32 * 300, 100, 8, 24, rng);  // 3 chunks of 100 blocks
      }
    }
  }
}

// Float weights (F32, F16, BF16), every variant (AVX2/AVX-512/NEON GEMV and GEMM): the GEMMs'
// blocking (AVX-512: 6-row activation tiles, groups of 8 weight rows in 4-row micro tiles,
// 512-element K chunks, a masked K tail; AVX2: 4-row activation tiles, groups of 12 weight rows
// in 3-row micro tiles, 256-element K chunks, a scalar K tail; NEON: 3-row activation tiles,
// groups of 8 weight rows in 4-row micro tiles, 512-element K chunks, a zero-padded 8-lane K tail;
// all: blocks of 12..72 activation rows by K) and the NEON GEMV's 8-row groups and 512-element K
// chunks with a zero-padded tail: R across tile and block edges (also the smaller blocks of large
// K: K = 8201 gives 30-row AVX and 15-row NEON blocks, K = 12289 12-row blocks), N and sub-ranges
// not multiples of 3, 4 or 8, K across chunk edges with a ragged tail, K < 8, and the 12B prefill
// shapes (R = 64 and 512) on a slice of the weights. Same tolerance as every float variant
// ((K/8 + 16) * 2^-24 * M, see the top of this file): the GEMMs do the GEMVs' arithmetic (each
// lane a sequential sum over K/16 or K/8 products, then a fixed reduction), the NEON kernels'
// lanes sum K/8 products, then 3 reduction steps.
TEST(MatmulFloat, BlockingEdgesAllVariants) {
  std::mt19937 rng(8642);
  for (TensorType wtype : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    for (const Variant& v : variants(wtype)) {
      for (int64_t R = 1; R <= 14; ++R) check(wtype, v.fn, v.name, 13, 1031, R, 0, 13, rng);
      check(wtype, v.fn, v.name, 21, 531, 9, 3, 19, rng);  // sub-range, one chunk + 19
      for (int64_t R : {71, 72, 73, 150}) check(wtype, v.fn, v.name, 11, 100, R, 0, 11, rng);
      check(wtype, v.fn, v.name, 6, 15, 80, 1, 6, rng);        // K below one 16-lane step
      check(wtype, v.fn, v.name, 9, 5, 20, 2, 9, rng);         // K below one 8-lane step
      check(wtype, v.fn, v.name, 5, 8192 + 9, 31, 0, 5, rng);  // 16 chunks + tail, small blocks
      check(wtype, v.fn, v.name, 3, 12289, 25, 1, 3, rng);     // minimum blocks (12 rows)
      if (!under_qemu()) {
        check(wtype, v.fn, v.name, 10, 2048 + 512 + 9, 20, 1, 10, rng);  // chunks + tail
        check(wtype, v.fn, v.name, 9, 4096, 13, 0, 9, rng);
        // 12B prefill shapes (K -> N) on a slice of the weight rows.
        check(wtype, v.fn, v.name, 8, 3840, 512, 0, 8, rng);
        check(wtype, v.fn, v.name, 12, 4096, 64, 0, 12, rng);
        check(wtype, v.fn, v.name, 12, 15360, 64, 2, 12, rng);
      }
    }
  }
}

// Batch invariance of float weights (the runtime's exact speculative verification compares a
// multi-token eval with single-token steps bit for bit): at every ISA, each row of the kernel the
// dispatcher picks for R rows, and of the ISA's GEMM called directly for any R (also R <= 8),
// equals the R = 1 kernel's result for that row alone, bit for bit, for R = 9 (the 8-draft
// verification batch) and prefill sizes across the GEMMs' tiles and blocks (also the smaller
// blocks of large K), K with and without a tail, K < 8, sub-ranges [n0, N) that split the GEMMs'
// weight-row groups differently from the GEMV's tiles, and the 12B shapes.
TEST(MatmulFloat, EveryRowEqualsTheSingleRowResultBitForBit) {
  std::mt19937 rng(1357);
  struct Shape {
    int64_t N, K, R, n0;
  };
  std::vector<Shape> shapes = {{13, 1031, 9, 0}, {13, 1031, 80, 0}, {11, 7, 9, 0},
                               {7, 3840, 9, 0},  {13, 1031, 4, 0},  {6, 5, 2, 0},
                               {19, 531, 14, 3}, {5, 8201, 31, 0},  {3, 12289, 25, 1}};
  if (!under_qemu()) shapes.push_back({6, 15360, 30, 0});
  for (TensorType wtype : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    for (Isa isa : {Isa::avx2, Isa::avx512, Isa::neon}) {
      if (!isa_supported(isa)) continue;
      for (const Shape& sh : shapes) {
        const Weights w = make_weights(wtype, sh.N, sh.K, rng);
        const Acts x = make_acts(wtype, sh.R, sh.K, rng);
        // The single-row results of every row (columns [0, N)).
        std::vector<float> y1(sh.R * sh.N);
        for (int64_t r = 0; r < sh.R; ++r) {
          MatmulArgs one{
              w.data.data(), x.data.data() + r * x.ldx, x.ldx, y1.data() + r * sh.N, sh.N, sh.K, 1};
          matmul_pick(wtype, 1, isa)(one, 0, sh.N);
        }
        std::vector<std::pair<std::string, MatmulFn>> fns = {
            {"picked", matmul_pick(wtype, sh.R, isa)}};
        const MatmulKernels k = matmul_kernels(wtype, isa);
        if (k.gemm != nullptr) fns.push_back({"gemm", k.gemm});
        for (const auto& [name, fn] : fns) {
          SCOPED_TRACE(std::string(isa_name(isa)) + " " + name + " " +
                       std::string(type_traits(wtype).name) + " N=" + std::to_string(sh.N) +
                       " K=" + std::to_string(sh.K) + " R=" + std::to_string(sh.R) +
                       " n0=" + std::to_string(sh.n0));
          std::vector<float> y(sh.R * sh.N, -12345.0f);
          MatmulArgs args{w.data.data(), x.data.data(), x.ldx, y.data(), sh.N, sh.K, sh.R};
          fn(args, sh.n0, sh.N);
          for (int64_t r = 0; r < sh.R; ++r) {
            ASSERT_EQ(0, std::memcmp(y1.data() + r * sh.N + sh.n0, y.data() + r * sh.N + sh.n0,
                                     (sh.N - sh.n0) * sizeof(float)))
                << "row " << r;
          }
        }
      }
    }
  }
}

#if defined(__x86_64__)
// The vdpbf16ps GEMM (gemm_bf16_bf16_avx512, not in the dispatch table): it rounds each
// activation to BF16 (relative error <= 2^-8, the weights are exact) and adds 2 exact products
// per lane and instruction (<= 2 roundings): |y - y_ref| <= (2^-8 + (K/16 + 17) * 2^-24) * M for
// data without subnormals. Ragged R across its 6-row tiles and 48-row blocks, K across its
// 512-element chunks with a tail that is not a multiple of 32, sub-ranges, a 12B shape.
TEST(MatmulFloat, Bf16DotGemmMatchesReference) {
  if (!isa_supported(Isa::avx512) || !cpu_features().avx512bf16) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16";
  }
  std::mt19937 rng(97531);
  const TensorType wt = TensorType::BF16;
  const auto tf = [](int64_t K) {
    return std::ldexp(1.0, -8) + (K / 16.0 + 17) * std::ldexp(1.0, -24);
  };
  for (int64_t R : {1, 5, 6, 7, 13, 47, 48, 49, 100}) {
    check(wt, gemm_bf16_bf16_avx512, "gemm_bf16_bf16_avx512", 13, 1031, R, 0, 13, rng, tf(1031));
  }
  check(wt, gemm_bf16_bf16_avx512, "gemm_bf16_bf16_avx512", 9, 31, 20, 1, 8, rng, tf(31));
  check(wt, gemm_bf16_bf16_avx512, "gemm_bf16_bf16_avx512", 10, 512, 9, 2, 10, rng, tf(512));
  check(wt, gemm_bf16_bf16_avx512, "gemm_bf16_bf16_avx512", 8, 3840, 64, 0, 8, rng, tf(3840));
}
#endif

TEST_P(MatmulTest, DispatchMatchesReference) {
  const TensorType wtype = GetParam();
  std::mt19937 rng(7);
  const int64_t kb = is_kquant(wtype) ? 256
                                      : (wtype == TensorType::F32 || wtype == TensorType::F16 ||
                                                 wtype == TensorType::BF16
                                             ? 1
                                             : 32);
  for (int64_t R : {1, 8, 20}) {
    check(wtype, matmul_pick(wtype, R, active_isa()), "matmul", 16, 4 * kb, R, 0, 16, rng);
  }
}

INSTANTIATE_TEST_SUITE_P(AllTypes, MatmulTest, ::testing::ValuesIn(kTypes),
                         [](const ::testing::TestParamInfo<TensorType>& info) {
                           return std::string(type_traits(info.param).name);
                         });

TEST(MatmulRepack, RoundTripsAndMatchesPlainLayout) {
  std::mt19937 rng(5);
  for (TensorType plain : {TensorType::Q4_0, TensorType::Q8_0}) {
    const int64_t N = 24, K = 96;
    const Weights w = make_weights(plain, N, K, rng);
    std::vector<uint8_t> packed(w.data.size()), back(w.data.size());
    repack_rows(plain, w.data.data(), packed.data(), K, 0, N);
    EXPECT_NE(packed, w.data);
    unpack_rows(repacked_type(plain), packed.data(), back.data(), K, 0, N);
    EXPECT_EQ(back, w.data);
    // The packed reference gives bit-identical results to the plain reference.
    const Acts x = make_acts(plain, 3, K, rng);
    std::vector<float> y1(3 * N), y2(3 * N);
    MatmulArgs a{w.data.data(), x.data.data(), x.ldx, y1.data(), N, K, 3};
    matmul_ref(plain, a, 0, N);
    a.w = packed.data();
    a.y = y2.data();
    matmul_ref(repacked_type(plain), a, 0, N);
    EXPECT_EQ(y1, y2);
  }
}

// The NEON I8MM (SMMLA) GEMM kernels for the repacked layouts, called directly: ragged R (pairs
// of activation rows with an odd last row, 4-row tiles with a partial last tile), N in 8-row
// groups with sub-ranges, K in 32-blocks (not multiples of 256), and the 12B shapes at R = 9.
// Same tolerance as every int8 variant ((nb + 4) * 2^-23 * M, see the top of this file): the
// int32 sums of each block are exact (|sum| <= 32 * 128 * 127 < 2^31), only the f32 rounding of
// d_w * d_x, of its product with the block sum and of the sequential sum over blocks differs
// from the reference. Under qemu (scripts/test.sh sets QGEMMA_EMULATED=1, qemu-aarch64 -cpu max)
// the CPU must report I8MM, so the test cannot silently skip in CI.
// The kernels exist only in aarch64 builds: the test is compiled there only (no skip on x86).
#if defined(__aarch64__)
TEST(MatmulI8mm, GemmMatchesReference) {
  if (std::getenv("QGEMMA_EMULATED") != nullptr) {
    ASSERT_TRUE(cpu_features().i8mm) << "qemu-aarch64 -cpu max should report I8MM (HWCAP2_I8MM)";
  }
  if (!cpu_features().i8mm) GTEST_SKIP() << "this CPU has no I8MM";
  struct K8 {
    TensorType wtype;
    MatmulFn fn;
    const char* name;
  };
  const K8 kernels[] = {{TensorType::Q4_0x8, matmul_q4_0x8_q8_0_i8mm, "matmul_q4_0x8_q8_0_i8mm"},
                        {TensorType::Q8_0x8, matmul_q8_0x8_q8_0_i8mm, "matmul_q8_0x8_q8_0_i8mm"}};
  for (const K8& k : kernels) {
    // The dispatcher's choice for prefill (R > kGemvMaxRows) on neon.
    const MatmulFn picked = matmul_pick(k.wtype, kGemvMaxRows + 1, Isa::neon);
    std::printf("[ I8MM     ] %s: prefill kernel on neon = %s\n",
                std::string(type_traits(k.wtype).name).c_str(),
                picked == k.fn ? k.name : "sdot (QGEMMA_NO_I8MM)");
    EXPECT_EQ(picked == k.fn, i8mm_enabled());
    std::mt19937 rng(2468);
    const std::pair<int64_t, int64_t> nk[] = {{8, 32}, {24, 96}, {56, 288}, {136, 544}};
    const int64_t rows[] = {1, 2, 3, 9, 10, 11, 13, 17, 30, 31, 33, 47, 64, 70};
    for (auto [N, K] : nk) {
      for (int64_t R : rows) {
        if (N > 56 && R % 2 == 0 && R != 70) continue;  // keep the largest shape cheap under qemu
        check(k.wtype, k.fn, k.name, N, K, R, 0, N, rng);
      }
      if (N >= 24) check(k.wtype, k.fn, k.name, N, K, 19, 8, N - 8, rng);  // sub-range
    }
    // 12B shapes (K -> N) on a 64-row slice of the weights, R = 9 (the smallest GEMM batch).
    const std::pair<int64_t, int64_t> shapes[] = {{3840, 4096}, {15360, 3840}, {3840, 15360}};
    for (auto [K, N] : shapes) check(k.wtype, k.fn, k.name, 64, K, 9, 0, 64, rng);
  }
}
#endif  // __aarch64__

// The AVX-VNNI kernels (repacked Q4_0x8 / Q8_0x8, plain Q4_K / Q5_K / Q6_K), called directly:
// against the reference (ragged R across the tiles, ragged N with sub-ranges, K not a multiple
// of 256 and over one chunk, the 12B shapes) and bit for bit against the AVX2 kernels they replace
// (exact integer sums, the same float epilogue), which is what keeps decoding, verification and
// prefill results independent of the CPU having AVX-VNNI. The kernels exist in x86 builds; a CPU
// without AVX-VNNI (or an OS without AVX state) cannot run them and skips, naming why.
#if defined(__x86_64__)
TEST(MatmulAvxVnni, MatchesReferenceAndAvx2BitForBit) {
  if (!cpu_features().avx_vnni || !cpu_features().os_avx)
    GTEST_SKIP() << "this CPU has no AVX-VNNI";
  struct KV {
    TensorType wtype;
    MatmulFn vnni, avx2;
    const char* name;
  };
  const KV kernels[] = {{TensorType::Q4_0x8, matmul_q4_0x8_q8_0_avxvnni, matmul_q4_0x8_q8_0_avx2,
                         "matmul_q4_0x8_q8_0_avxvnni"},
                        {TensorType::Q8_0x8, matmul_q8_0x8_q8_0_avxvnni, matmul_q8_0x8_q8_0_avx2,
                         "matmul_q8_0x8_q8_0_avxvnni"},
                        {TensorType::Q4_K, matmul_q4_k_q8_k_avxvnni, matmul_q4_k_q8_k_avx2,
                         "matmul_q4_k_q8_k_avxvnni"},
                        {TensorType::Q5_K, matmul_q5_k_q8_k_avxvnni, matmul_q5_k_q8_k_avx2,
                         "matmul_q5_k_q8_k_avxvnni"},
                        {TensorType::Q6_K, matmul_q6_k_q8_k_avxvnni, matmul_q6_k_q8_k_avx2,
                         "matmul_q6_k_q8_k_avxvnni"}};
  for (const KV& k : kernels) {
    // The dispatcher's choice at the avx2 level, decoding and prefill.
    EXPECT_EQ(matmul_pick(k.wtype, 1, Isa::avx2) == k.vnni, avx_vnni_enabled());
    EXPECT_EQ(matmul_pick(k.wtype, 64, Isa::avx2) == k.vnni, avx_vnni_enabled());
    std::mt19937 rng(1357);
    // K: Q4_0x8 / Q8_0x8 in 32-blocks (8224: 257 blocks, two K chunks of the x8 kernels),
    // K-quants in 256-blocks; N: 8-row groups for the x8 layouts, any N for the K-quants.
    const bool kq = type_traits(k.wtype).block_size == 256;
    const std::vector<std::pair<int64_t, int64_t>> nk =
        kq ? std::vector<std::pair<int64_t, int64_t>>{{1, 256}, {7, 512}, {13, 768}, {37, 2816}}
           : std::vector<std::pair<int64_t, int64_t>>{{8, 32}, {24, 96}, {56, 288}, {40, 8224}};
    const int64_t rows[] = {1, 2, 3, 5, 6, 7, 8, 9, 12, 13, 31, 64};
    for (auto [N, K] : nk) {
      for (int64_t R : rows) check(k.wtype, k.vnni, k.name, N, K, R, 0, N, rng);
      if (N >= 24) check(k.wtype, k.vnni, k.name, N, K, 11, 8, N - 8, rng);  // sub-range
    }
    const std::pair<int64_t, int64_t> shapes[] = {{3840, 4096}, {15360, 3840}};
    for (auto [K, N] : shapes) check(k.wtype, k.vnni, k.name, 64, K, 9, 0, 64, rng);
    // Bit for bit against the AVX2 kernel, GEMV and GEMM row counts.
    for (int64_t R : {1, 4, 7, 8, 9, 20}) {
      const int64_t N = 48, K = kq ? 2816 : 8224;
      const Weights w = make_weights(k.wtype, N, K, rng);
      const Acts x = make_acts(k.wtype, R, K, rng);
      std::vector<float> y1(R * N), y2(R * N);
      MatmulArgs a{w.data.data(), x.data.data(), x.ldx, y1.data(), N, K, R};
      k.vnni(a, 0, N);
      a.y = y2.data();
      k.avx2(a, 0, N);
      EXPECT_EQ(std::memcmp(y1.data(), y2.data(), y1.size() * 4), 0) << k.name << " R=" << R;
    }
  }
}
#endif  // __x86_64__

TEST(MatmulDispatch, TypesAndGranularity) {
  EXPECT_EQ(vec_dot_type(TensorType::Q4_0), TensorType::Q8_0);
  EXPECT_EQ(vec_dot_type(TensorType::Q8_0x8), TensorType::Q8_0);
  EXPECT_EQ(vec_dot_type(TensorType::Q4_K), TensorType::Q8_K);
  EXPECT_EQ(vec_dot_type(TensorType::BF16), TensorType::F32);
  EXPECT_EQ(matmul_row_granularity(TensorType::Q4_0x8), 8);
  EXPECT_EQ(matmul_row_granularity(TensorType::Q4_0), 1);
  EXPECT_EQ(vec_dot_type(TensorType::Q5_K), TensorType::Q8_K);
  EXPECT_EQ(matmul_row_granularity(TensorType::Q5_K), 1);
  EXPECT_FALSE(matmul_supported(TensorType::Q3_K));
  EXPECT_EQ(matmul_pick(TensorType::Q3_K, 1, Isa::ref), nullptr);
  EXPECT_TRUE(matmul_pick(TensorType::Q4_0, 1, Isa::ref) != nullptr);
}

}  // namespace
}  // namespace qgemma
