// mul_mat_vec and mul_mm (float and integer-dot paths) against the CPU references: the float
// path against dequantize_row + a double-precision loop, the integer path against matmul_ref
// on Q8_0 activations (kernels/matmul). Ragged shapes: M not a multiple of the rows per
// workgroup or the 64-row tile, K not a multiple of 256 where the format allows.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/matmul/matmul.h"
#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"
#include "runtime/vulkan/ops.h"
#include "vulkan/vk_fixture.h"

namespace qgemma::vk {
namespace {

using testing::from_gpu;
using testing::gpu_zeros;
using testing::random_floats;
using testing::test_device;
using testing::to_gpu;

struct Weights {
  std::vector<uint8_t> bytes;  // M rows in wtype
  std::vector<float> deq;      // the same, dequantized: what the float path must multiply
};

Weights make_weights(TensorType t, uint32_t M, uint32_t K, uint32_t seed) {
  const std::vector<float> w = random_floats((size_t)M * K, seed);
  Weights out;
  const size_t rs = row_size(t, K);
  out.bytes.resize(rs * M);
  out.deq.resize((size_t)M * K);
  for (uint32_t r = 0; r < M; ++r) {
    quantize_row(t, w.data() + (size_t)r * K, out.bytes.data() + r * rs, K);
    dequantize_row(t, out.bytes.data() + r * rs, out.deq.data() + (size_t)r * K, K);
  }
  return out;
}

// |gpu - ref| <= tol * sum_k |w x| (+ a tiny absolute term): rounding grows with the terms.
void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& mag, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int bad = 0;
  for (size_t i = 0; i < got.size() && bad < 5; ++i) {
    const double bound = tol * mag[i] + 1e-6;
    if (!(std::fabs(got[i] - want[i]) <= bound)) {
      ADD_FAILURE() << what << ": element " << i << " got " << got[i] << " want " << want[i]
                    << " (bound " << bound << ")";
      ++bad;
    }
  }
}

// Double-precision y[n][m] = sum_k deq[m][k] x[n][k], and the magnitudes sum |.|.
void reference(const Weights& w, const std::vector<float>& x, uint32_t M, uint32_t K, uint32_t N,
               std::vector<double>* y, std::vector<double>* mag) {
  y->assign((size_t)N * M, 0.0);
  mag->assign((size_t)N * M, 0.0);
  for (uint32_t n = 0; n < N; ++n) {
    for (uint32_t m = 0; m < M; ++m) {
      double s = 0, a = 0;
      for (uint32_t k = 0; k < K; ++k) {
        const double p = (double)w.deq[(size_t)m * K + k] * x[(size_t)n * K + k];
        s += p;
        a += std::fabs(p);
      }
      (*y)[(size_t)n * M + m] = s;
      (*mag)[(size_t)n * M + m] = a;
    }
  }
}

struct Case {
  TensorType t;
  uint32_t M, K;
};

// K: Q4_0/Q8_0 multiples of 32 (not of 256), K-quants multiples of 256, floats any even K
// (70: not a multiple of 4, exercising the scalar tail).
const Case kCases[] = {
    {TensorType::Q4_0, 37, 96},  {TensorType::Q8_0, 67, 160}, {TensorType::Q4_K, 29, 512},
    {TensorType::Q6_K, 35, 256}, {TensorType::F16, 41, 70},   {TensorType::BF16, 23, 136},
    {TensorType::Q5_K, 31, 768},
};

std::string name(TensorType t) { return std::string(type_traits(t).name); }

TEST(VulkanMatmul, MulMatVecFloatPathAllFormats) {
  Device& dev = test_device();
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    const Weights w = make_weights(c.t, c.M, c.K, seed++);
    Buffer wb = to_gpu(w.bytes);
    for (uint32_t N : {1u, 3u, 8u}) {
      const std::vector<float> x = random_floats((size_t)N * c.K, seed++);
      Buffer xb = to_gpu(x);
      Buffer yb = gpu_zeros((size_t)N * c.M * 4);
      Recorder rec(dev);
      mul_mat_vec(rec, c.t, wb, xb, yb, c.M, c.K, N);
      rec.submit_and_wait();
      std::vector<double> want, mag;
      reference(w, x, c.M, c.K, N, &want, &mag);
      expect_close(from_gpu<float>(yb, (size_t)N * c.M), want, mag, 1e-5,
                   "mul_mat_vec " + name(c.t) + " N=" + std::to_string(N));
    }
  }
}

TEST(VulkanMatmul, MulMmAllFormats) {
  Device& dev = test_device();
  uint32_t seed = 100;
  for (const Case& c : kCases) {
    // M and N beyond one 64 x 64 tile, neither a multiple of it.
    const uint32_t M = c.M + 64, N = 70;
    const Weights w = make_weights(c.t, M, c.K, seed++);
    const std::vector<float> x = random_floats((size_t)N * c.K, seed++);
    Buffer wb = to_gpu(w.bytes), xb = to_gpu(x);
    Buffer yb = gpu_zeros((size_t)N * M * 4);
    Recorder rec(dev);
    mul_mm(rec, c.t, wb, xb, yb, M, c.K, N);
    rec.submit_and_wait();
    std::vector<double> want, mag;
    reference(w, x, M, c.K, N, &want, &mag);
    expect_close(from_gpu<float>(yb, (size_t)N * M), want, mag, 1e-5, "mul_mm " + name(c.t));
  }
}

TEST(VulkanMatmul, StridedActivationsAndOutputs) {
  Device& dev = test_device();
  const uint32_t M = 45, K = 64, N = 4, xs = 80, ys = 50;
  const Weights w = make_weights(TensorType::Q8_0, M, K, 7);
  std::vector<float> xpad = random_floats((size_t)N * xs, 8), x((size_t)N * K);
  for (uint32_t n = 0; n < N; ++n)
    for (uint32_t k = 0; k < K; ++k) x[(size_t)n * K + k] = xpad[(size_t)n * xs + k];
  Buffer wb = to_gpu(w.bytes), xb = to_gpu(xpad);
  std::vector<double> want, mag;
  reference(w, x, M, K, N, &want, &mag);
  for (bool tiled : {false, true}) {
    Buffer yb = gpu_zeros((size_t)N * ys * 4);
    Recorder rec(dev);
    if (tiled) {
      mul_mm(rec, TensorType::Q8_0, wb, xb, yb, M, K, N, xs, ys);
    } else {
      mul_mat_vec(rec, TensorType::Q8_0, wb, xb, yb, M, K, N, xs, ys);
    }
    rec.submit_and_wait();
    const std::vector<float> ypad = from_gpu<float>(yb, (size_t)N * ys);
    std::vector<float> y((size_t)N * M);
    for (uint32_t n = 0; n < N; ++n) {
      for (uint32_t m = 0; m < M; ++m) y[(size_t)n * M + m] = ypad[(size_t)n * ys + m];
      for (uint32_t m = M; m < ys; ++m) EXPECT_EQ(ypad[(size_t)n * ys + m], 0.0f) << "wrote past M";
    }
    expect_close(y, want, mag, 1e-5, tiled ? "mul_mm strided" : "mul_mat_vec strided");
  }
}

// The integer path computes exactly what matmul_ref computes on Q8_0-quantized activations.
TEST(VulkanMatmul, IntegerDotPathMatchesMatmulRef) {
  Device& dev = test_device();
  if (!int_dot_supported(dev, TensorType::Q4_0)) {  // no int dot, or QGEMMA_VK_NO_INT_DOT=1
    // Not a skip of the whole suite: the float path above is what such devices run.
    GTEST_SKIP() << dev.info().name << " has no shaderIntegerDotProduct";
  }
  uint32_t seed = 200;
  // K = 224: 7 blocks, an odd count (every other row starts on a half-word);
  // K = 320: 10 blocks (every row starts on a word).
  for (const uint32_t K : {224u, 320u})
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0}) {
      const uint32_t M = 53;
      const Weights w = make_weights(t, M, K, seed++);
      Buffer wb = to_gpu(w.bytes);
      for (uint32_t N : {1u, 2u, 8u}) {
        const std::vector<float> x = random_floats((size_t)N * K, seed++);
        Buffer xb = to_gpu(x);
        Buffer xq = gpu_zeros(q8_activation_bytes(K, N));
        Buffer yb = gpu_zeros((size_t)N * M * 4);
        Recorder rec(dev);
        matmul(rec, t, wb, xb, yb, M, K, N, xq);  // quantize_q8 + mul_mat_vec_q8
        rec.submit_and_wait();
        EXPECT_EQ(rec.dispatches(), 2u);
        EXPECT_EQ(rec.barriers(), 1u);

        std::vector<block_q8_0> xq_cpu((size_t)N * K / 32);
        for (uint32_t n = 0; n < N; ++n)
          quantize_row_q8_0_ref(x.data() + (size_t)n * K, xq_cpu.data() + (size_t)n * K / 32, K);
        std::vector<float> ref((size_t)N * M);
        MatmulArgs a;
        a.w = w.bytes.data();
        a.x = xq_cpu.data();
        a.ldx = row_size(TensorType::Q8_0, K);
        a.y = ref.data();
        a.ldy = M;
        a.K = K;
        a.R = N;
        matmul_ref(t, a, 0, M);
        std::vector<double> want(ref.begin(), ref.end()), mag, unused;
        reference(w, x, M, K, N, &unused, &mag);
        expect_close(
            from_gpu<float>(yb, (size_t)N * M), want, mag, 1e-6,
            "mul_mat_vec_q8 " + name(t) + " K=" + std::to_string(K) + " N=" + std::to_string(N));
      }
    }
}

// The tiled integer path (prefill: quantize_q8 + mul_mm_q8) against matmul_ref on the same
// Q8_0 activations. M and N beyond one 64 x 64 tile and not multiples of it; K = 224 is 7
// blocks, an odd count (the last k-tile of 2 blocks is half empty, every other Q4_0 row starts
// on a half-word), K = 32 a single block.
TEST(VulkanMatmul, TiledIntegerDotPathMatchesMatmulRef) {
  Device& dev = test_device();
  if (!int_dot_supported(dev, TensorType::Q4_0)) {  // no int dot, or QGEMMA_VK_NO_INT_DOT=1
    GTEST_SKIP() << dev.info().name << ": no shaderIntegerDotProduct (or disabled)";
  }
  uint32_t seed = 300;
  struct Shape {
    uint32_t M, K, N, y_stride;
  };
  for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0})
    for (const Shape& sh : {Shape{117, 224, 70, 0}, Shape{45, 32, 9, 50}}) {
      const uint32_t M = sh.M, K = sh.K, N = sh.N, ys = sh.y_stride ? sh.y_stride : M;
      const Weights w = make_weights(t, M, K, seed++);
      const std::vector<float> x = random_floats((size_t)N * K, seed++);
      Buffer wb = to_gpu(w.bytes), xb = to_gpu(x);
      Buffer xq = gpu_zeros(q8_activation_bytes(K, N));
      Buffer yb = gpu_zeros((size_t)N * ys * 4);
      Recorder rec(dev);
      if (!sh.y_stride && mm_int_dot_enabled(dev, t)) {  // not QGEMMA_VK_MM_FLOAT=1
        matmul(rec, t, wb, xb, yb, M, K, N, xq);         // N > 8: quantize_q8 + mul_mm_q8
      } else {
        quantize_q8(rec, xb, xq, K, N);
        mul_mm_q8(rec, t, wb, xq, yb, M, K, N, ys);
      }
      rec.submit_and_wait();
      EXPECT_EQ(rec.dispatches(), 2u);
      EXPECT_EQ(rec.barriers(), 1u);

      std::vector<block_q8_0> xq_cpu((size_t)N * K / 32);
      for (uint32_t n = 0; n < N; ++n)
        quantize_row_q8_0_ref(x.data() + (size_t)n * K, xq_cpu.data() + (size_t)n * K / 32, K);
      std::vector<float> ref((size_t)N * M);
      MatmulArgs a;
      a.w = w.bytes.data();
      a.x = xq_cpu.data();
      a.ldx = row_size(TensorType::Q8_0, K);
      a.y = ref.data();
      a.ldy = M;
      a.K = K;
      a.R = N;
      matmul_ref(t, a, 0, M);
      std::vector<double> want(ref.begin(), ref.end()), mag, unused;
      reference(w, x, M, K, N, &unused, &mag);
      const std::vector<float> ypad = from_gpu<float>(yb, (size_t)N * ys);
      std::vector<float> got((size_t)N * M);
      for (uint32_t n = 0; n < N; ++n) {
        for (uint32_t m = 0; m < M; ++m) got[(size_t)n * M + m] = ypad[(size_t)n * ys + m];
        for (uint32_t m = M; m < ys; ++m)
          ASSERT_EQ(ypad[(size_t)n * ys + m], 0.0f) << "mul_mm_q8 wrote past M";
      }
      expect_close(got, want, mag, 1e-6,
                   "mul_mm_q8 " + name(t) + " M=" + std::to_string(M) + " K=" + std::to_string(K) +
                       " N=" + std::to_string(N));
    }
}

// Several matrices of one input in one dispatch (Q/K/V: 3 segments of ragged row counts;
// gate/up + GeGLU) against matmul_ref on the same Q8_0 activations (and geglu_tanh_f32_ref).
TEST(VulkanMatmul, MultiMatrixAndGluDispatchesMatchMatmulRef) {
  Device& dev = test_device();
  if (!int_dot_supported(dev, TensorType::Q4_0)) {  // no int dot, or QGEMMA_VK_NO_INT_DOT=1
    GTEST_SKIP() << dev.info().name << " has no shaderIntegerDotProduct";
  }
  uint32_t seed = 500;
  const uint32_t default_rows = matvec_rows();
  // Rows per workgroup: the default and an odd QGEMMA_VK_MV_ROWS alternative (segments of 8
  // and 13 rows then end inside a workgroup's rows). More values cost minutes of pipeline
  // compilation on lavapipe with a cold cache.
  for (uint32_t rows_per_group : {2u, 3u})
    for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0}) {
      set_matvec_rows(rows_per_group);
      const uint32_t K = 224;
      for (uint32_t N : {1u, 3u}) {
        // Fewer pipelines (lavapipe compiles each for seconds): Q8_0 at N = 1, rows 3 at Q4_0 N
        // = 3.
        if (t == TensorType::Q8_0 && N != 1) continue;
        if (rows_per_group != 2 && (t != TensorType::Q4_0 || N != 3)) continue;
        const std::vector<float> x = random_floats((size_t)N * K, seed++);
        std::vector<block_q8_0> xq_cpu((size_t)N * K / 32);
        for (uint32_t n = 0; n < N; ++n)
          quantize_row_q8_0_ref(x.data() + (size_t)n * K, xq_cpu.data() + (size_t)n * K / 32, K);
        auto ref = [&](const Weights& w, uint32_t M) {
          std::vector<float> y((size_t)N * M);
          MatmulArgs a;
          a.w = w.bytes.data();
          a.x = xq_cpu.data();
          a.ldx = row_size(TensorType::Q8_0, K);
          a.y = y.data();
          a.ldy = M;
          a.K = K;
          a.R = N;
          matmul_ref(t, a, 0, M);
          return y;
        };
        Buffer xb = to_gpu(x), xq = gpu_zeros(q8_activation_bytes(K, N));
        // Q/K/V-like: 3 segments.
        const uint32_t M[3] = {53, 8, 13};
        std::vector<Weights> ws;
        std::vector<Buffer> wb, yb;
        View wv[3], yv[3];
        for (int i = 0; i < 3; ++i) {
          ws.push_back(make_weights(t, M[i], K, seed++));
          wb.push_back(to_gpu(ws.back().bytes));
          yb.push_back(gpu_zeros((size_t)N * M[i] * 4));
        }
        for (int i = 0; i < 3; ++i) wv[i] = wb[i], yv[i] = yb[i];
        // Gate/up + GeGLU.
        const uint32_t F = 37;
        const Weights wg = make_weights(t, F, K, seed++), wu = make_weights(t, F, K, seed++);
        Buffer wgb = to_gpu(wg.bytes), wub = to_gpu(wu.bytes), glu = gpu_zeros((size_t)N * F * 4);
        const View gw[2] = {wgb, wub}, gy[2] = {glu, glu};
        const uint32_t FM[2] = {F, F};
        // Two segments (K/V-less global layer: Q and K).
        Buffer y2a = gpu_zeros((size_t)N * M[0] * 4), y2b = gpu_zeros((size_t)N * M[1] * 4);
        const View y2[2] = {y2a, y2b};
        Recorder rec(dev);
        quantize_q8(rec, xb, xq, K, N);
        mul_mat_vec_q8_multi(rec, t, 3, wv, M, yv, xq, K, N);
        mul_mat_vec_q8_multi(rec, t, 2, gw, FM, gy, xq, K, N, true);
        mul_mat_vec_q8_multi(rec, t, 2, wv, M, y2, xq, K, N);
        rec.submit_and_wait();
        EXPECT_EQ(rec.dispatches(), 4u);
        EXPECT_EQ(rec.barriers(), 1u);  // the three read one quantized input, write apart
        const std::string what =
            name(t) + " N=" + std::to_string(N) + " rows/group=" + std::to_string(rows_per_group);
        for (int i = 0; i < 3; ++i) {
          const std::vector<float> want = ref(ws[i], M[i]);
          const std::vector<float> got = from_gpu<float>(yb[i], want.size());
          for (size_t e = 0; e < want.size(); ++e)
            ASSERT_NEAR(got[e], want[e], 1e-4f * (1 + std::fabs(want[e])))
                << what << " segment " << i << " element " << e;
        }
        for (int i = 0; i < 2; ++i) {
          const std::vector<float> want = ref(ws[i], M[i]);
          const std::vector<float> got = from_gpu<float>(i ? y2b : y2a, want.size());
          for (size_t e = 0; e < want.size(); ++e)
            ASSERT_NEAR(got[e], want[e], 1e-4f * (1 + std::fabs(want[e])))
                << what << " two segments " << i << " element " << e;
        }
        const std::vector<float> g = ref(wg, F), u = ref(wu, F);
        std::vector<float> want(g.size());
        geglu_tanh_f32_ref(g.data(), u.data(), want.data(), (int64_t)want.size());
        const std::vector<float> got = from_gpu<float>(glu, want.size());
        for (size_t e = 0; e < want.size(); ++e)
          ASSERT_NEAR(got[e], want[e], 1e-4f * (1 + std::fabs(want[e]))) << what << " glu " << e;
      }
    }
  set_matvec_rows(default_rows);
}

// Both reduction modules of the matrix-vector shaders (shared-memory tree; subgroupAdd then one
// pass over the subgroups) and other workgroup sizes (QGEMMA_VK_MV_WG) against the references.
// Q4_0 x 8 columns x 8 rows per workgroup with GeGLU has 128 accumulators per workgroup, more
// than 32 threads: each thread writes several outputs.
TEST(VulkanMatmul, MatVecReductionModulesAndWorkgroupSizes) {
  Device& dev = test_device();
  const uint32_t default_rows = matvec_rows(), default_wg = matvec_wg();
  uint32_t seed = 700;
  const uint32_t K = 288, M = 21, N = 8;  // 9 blocks; M not a multiple of the 8 rows
  const Weights wk = make_weights(TensorType::Q4_K, M, 512, seed++);
  const Weights wg = make_weights(TensorType::Q4_0, M, K, seed++),
                wu = make_weights(TensorType::Q4_0, M, K, seed++);
  const std::vector<float> xk = random_floats((size_t)N * 512, seed++),
                           x = random_floats((size_t)N * K, seed++);
  std::vector<block_q8_0> xq_cpu((size_t)N * K / 32);
  for (uint32_t n = 0; n < N; ++n)
    quantize_row_q8_0_ref(x.data() + (size_t)n * K, xq_cpu.data() + (size_t)n * K / 32, K);
  auto ref_q8 = [&](const Weights& w) {
    std::vector<float> y((size_t)N * M);
    MatmulArgs a;
    a.w = w.bytes.data();
    a.x = xq_cpu.data();
    a.ldx = row_size(TensorType::Q8_0, K);
    a.y = y.data();
    a.ldy = M;
    a.K = K;
    a.R = N;
    matmul_ref(TensorType::Q4_0, a, 0, M);
    return y;
  };
  const std::vector<float> g = ref_q8(wg), u = ref_q8(wu);
  std::vector<float> want_glu(g.size());
  geglu_tanh_f32_ref(g.data(), u.data(), want_glu.data(), (int64_t)want_glu.size());
  std::vector<double> want_k, mag_k;
  reference(wk, xk, M, 512, N, &want_k, &mag_k);
  const bool int_dot = int_dot_supported(dev, TensorType::Q4_0);
  for (int mode : {0, 1}) {
    if (mode == 1 && !dev.info().subgroup_arithmetic) continue;  // shared-memory only
    set_subgroup_reduce(mode);
    for (uint32_t threads : {32u, 128u}) {
      set_matvec_wg(threads);
      set_matvec_rows(threads == 32 ? 8 : 2);
      const std::string what = std::string(mode ? "subgroup" : "shared-memory") + " reduction, " +
                               std::to_string(threads) + " threads";
      Buffer wkb = to_gpu(wk.bytes), xkb = to_gpu(xk), ykb = gpu_zeros((size_t)N * M * 4);
      Buffer wgb = to_gpu(wg.bytes), wub = to_gpu(wu.bytes), xb = to_gpu(x);
      Buffer xq = gpu_zeros(q8_activation_bytes(K, N)), glu = gpu_zeros((size_t)N * M * 4);
      Recorder rec(dev);
      mul_mat_vec(rec, TensorType::Q4_K, wkb, xkb, ykb, M, 512, N);
      if (int_dot) {
        const View gw[2] = {wgb, wub}, gy[2] = {glu, glu};
        const uint32_t FM[2] = {M, M};
        quantize_q8(rec, xb, xq, K, N);
        mul_mat_vec_q8_multi(rec, TensorType::Q4_0, 2, gw, FM, gy, xq, K, N, true);
      }
      rec.submit_and_wait();
      expect_close(from_gpu<float>(ykb, (size_t)N * M), want_k, mag_k, 1e-5,
                   "mul_mat_vec q4_K, " + what);
      if (int_dot) {
        const std::vector<float> got = from_gpu<float>(glu, want_glu.size());
        for (size_t e = 0; e < want_glu.size(); ++e)
          ASSERT_NEAR(got[e], want_glu[e], 1e-4f * (1 + std::fabs(want_glu[e])))
              << "mul_mat_vec_q8 glu, " << what << ", element " << e;
      }
    }
  }
  set_subgroup_reduce(-1);
  set_matvec_wg(default_wg);
  set_matvec_rows(default_rows);
  EXPECT_THROW(set_matvec_wg(48), Error);
}

TEST(VulkanMatmul, RejectsBadShapes) {
  Device& dev = test_device();
  const Weights w = make_weights(TensorType::Q4_K, 4, 256, 1);
  Buffer wb = to_gpu(w.bytes), xb = gpu_zeros(256 * 4 * 9), yb = gpu_zeros(4 * 4 * 9);
  Recorder rec(dev);
  EXPECT_THROW(mul_mat_vec(rec, TensorType::Q4_K, wb, xb, yb, 4, 128, 1), Error);  // K % 256
  EXPECT_THROW(mul_mat_vec(rec, TensorType::Q4_K, wb, xb, yb, 4, 256, 9), Error);  // N > 8
  EXPECT_THROW(mul_mat_vec(rec, TensorType::Q4_K, wb, xb, yb, 8, 256, 1), Error);  // W too small
  EXPECT_THROW(mul_mm(rec, TensorType::Q2_K, wb, xb, yb, 4, 256, 1), Error);       // no shader
}

}  // namespace
}  // namespace qgemma::vk
