// Float ops (kernels/ops): every ISA variant this machine runs against the scalar reference on
// ragged and Gemma 4 12B sizes, and the references themselves against hand-computed answers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu.h"
#include "kernels/ops/ops.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

// Ragged lengths around every vector width, plus the model's: head dims 256/512, hidden 3840,
// FFN 15360.
const int64_t kSizes[] = {1, 3, 8, 15, 16, 17, 31, 33, 64, 100, 255, 256, 512, 1000, 3840, 15360};

std::vector<float> randn(int64_t n, uint32_t seed, float sigma = 1.0f, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = dist(rng);
  return v;
}

// |got - want| <= rel * |want| + abs, element by element.
void expect_close(const std::vector<float>& got, const std::vector<float>& want, double rel,
                  double abs, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  int failures = 0;
  for (size_t i = 0; i < got.size() && failures < 5; ++i) {
    const double tol = rel * std::fabs(want[i]) + abs;
    if (!(std::fabs(double(got[i]) - want[i]) <= tol)) {
      ADD_FAILURE() << what << " [" << i << "]: got " << got[i] << " want " << want[i] << " tol "
                    << tol;
      ++failures;
    }
  }
}

struct Variant {
  Isa isa;
  const OpsKernels* k;
};

// The optimized variants this machine can run.
std::vector<Variant> variants() {
  std::vector<Variant> out;
  for (Isa isa : {Isa::avx2, Isa::avx512, Isa::neon}) {
    const OpsKernels* k = ops_kernels(isa);
    if (k && isa_supported(isa)) out.push_back({isa, k});
  }
  return out;
}

std::string name(const Variant& v, const char* op, int64_t n) {
  return std::string(op) + "_" + std::string(isa_name(v.isa)) + " n=" + std::to_string(n);
}

TEST(Ops, HasAVariantForTheBestIsa) {
  EXPECT_NE(ops_kernels(Isa::ref), nullptr);
  EXPECT_NE(ops_kernels(best_isa()), nullptr);
  if (best_isa() != Isa::ref) {
    EXPECT_FALSE(variants().empty());
  }
}

// --------------------------------------------------------------------- norms vs ref --

// Float sums of squares in 2 x lanes accumulators: each chain has n / (2 * lanes) terms, so the
// relative error of the sum is below ~ (n/16) * 2^-24 = 1.5e-5 for n = 15360 (AVX2), half of it
// in 1/sqrt; the final products add a few ulps. Tolerance 2e-5 relative.
TEST(Ops, RmsNormMatchesRef) {
  for (const Variant& v : variants()) {
    for (int64_t n : kSizes) {
      const auto x = randn(n, 1 + n, 2.0f, 0.5f), w = randn(n, 2 + n);
      for (const float* wp :
           {static_cast<const float*>(w.data()), static_cast<const float*>(nullptr)}) {
        std::vector<float> want(n), got(n);
        rmsnorm_f32_ref(x.data(), wp, want.data(), n, 1e-6f);
        v.k->rmsnorm(x.data(), wp, got.data(), n, 1e-6f);
        expect_close(got, want, 2e-5, 1e-7, name(v, wp ? "rmsnorm" : "rmsnorm_noweight", n));
      }
    }
  }
}

TEST(Ops, RmsNormHeadsMatchesRef) {
  struct Shape {
    int64_t heads, dim;
  };
  for (const Variant& v : variants()) {
    for (Shape s : {Shape{16, 256}, Shape{8, 256}, Shape{1, 512}, Shape{16, 512}, Shape{3, 17}}) {
      const int64_t n = s.heads * s.dim;
      auto x = randn(n, 3 + n, 3.0f), w = randn(s.dim, 4 + n);
      for (int64_t h = 0; h < s.heads; ++h) x[h * s.dim] *= float(h + 1);  // distinct rms
      for (const float* wp :
           {static_cast<const float*>(w.data()), static_cast<const float*>(nullptr)}) {
        std::vector<float> want(n), got(n), each(n);
        rmsnorm_heads_f32_ref(x.data(), wp, want.data(), s.heads, s.dim, 1e-6f);
        v.k->rmsnorm_heads(x.data(), wp, got.data(), s.heads, s.dim, 1e-6f);
        expect_close(got, want, 2e-5, 1e-7, name(v, "rmsnorm_heads", n));
        // In place gives the same result.
        each = x;
        v.k->rmsnorm_heads(each.data(), wp, each.data(), s.heads, s.dim, 1e-6f);
        EXPECT_EQ(each, got);
      }
    }
  }
}

// Mean and variance in float: the same accumulation bound as rmsnorm, plus the mean's error
// entering (x - mean); inputs with |mean| ~ 3 sigma: 5e-5 relative, 1e-5 absolute.
TEST(Ops, LayerNormMatchesRef) {
  for (const Variant& v : variants()) {
    for (int64_t n : kSizes) {
      const auto x = randn(n, 5 + n, 1.5f, 4.0f), w = randn(n, 6 + n), b = randn(n, 7 + n);
      std::vector<float> want(n), got(n);
      layernorm_f32_ref(x.data(), w.data(), b.data(), want.data(), n, 1e-5f);
      v.k->layernorm(x.data(), w.data(), b.data(), got.data(), n, 1e-5f);
      expect_close(got, want, 5e-5, 1e-5, name(v, "layernorm", n));
      layernorm_f32_ref(x.data(), nullptr, nullptr, want.data(), n, 1e-5f);
      v.k->layernorm(x.data(), nullptr, nullptr, got.data(), n, 1e-5f);
      expect_close(got, want, 5e-5, 1e-5, name(v, "layernorm_plain", n));
    }
  }
}

TEST(Ops, NormReferencesKnownAnswers) {
  // rms of (3, 4) is sqrt(12.5); with eps = 0.
  const float x[2] = {3.0f, 4.0f}, w[2] = {2.0f, -1.0f};
  float y[2];
  rmsnorm_f32_ref(x, w, y, 2, 0.0f);
  EXPECT_FLOAT_EQ(y[0], 2 * 3 / std::sqrt(12.5f));
  EXPECT_FLOAT_EQ(y[1], -4 / std::sqrt(12.5f));
  // layernorm of (1, 3): mean 2, var 1 -> (-1, 1) * w + b.
  const float a[2] = {1.0f, 3.0f}, b[2] = {0.5f, 0.25f};
  layernorm_f32_ref(a, w, b, y, 2, 0.0f);
  EXPECT_FLOAT_EQ(y[0], -2.0f + 0.5f);
  EXPECT_FLOAT_EQ(y[1], -1.0f + 0.25f);
}

// ---------------------------------------------------------------------------- RoPE --

TEST(Rope, NeoxPairsIWithIPlusHalf) {
  // head_dim 4: pairs (0, 2) and (1, 3); pair 0 turns by 90 degrees, pair 1 not at all.
  float x[4] = {1, 2, 3, 4};
  const float c[2] = {0, 1}, s[2] = {1, 0};
  rope_neox_f32_ref(x, 1, 4, c, s);
  EXPECT_EQ(x[0], -3);
  EXPECT_EQ(x[1], 2);
  EXPECT_EQ(x[2], 1);
  EXPECT_EQ(x[3], 4);
  float z[4] = {1, 2, 3, 4};
  rope_interleaved_f32_ref(z, 1, 4, c, s);  // pairs (0, 1) and (2, 3)
  EXPECT_EQ(z[0], -2);
  EXPECT_EQ(z[1], 1);
  EXPECT_EQ(z[2], 3);
  EXPECT_EQ(z[3], 4);
}

TEST(Rope, InvFreqTables) {
  std::vector<float> f(128);
  rope_inv_freq(f.data(), 128, 10000.0f, 256, 128, nullptr);  // sliding layers: all pairs
  EXPECT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[1], std::pow(10000.0, -2.0 / 256), 1e-7);
  EXPECT_NEAR(f[127], std::pow(10000.0, -254.0 / 256), 1e-10);
  // Gemma 4 global layers: head 512, theta 1e6, only the first 64 of 256 pairs rotate, with
  // exponents over the whole head (-2i/512).
  std::vector<float> g(256);
  rope_inv_freq(g.data(), 256, 1e6f, 512, 64, nullptr);
  EXPECT_NEAR(g[63], std::pow(1e6, -126.0 / 512), 1e-8);
  for (int i = 64; i < 256; ++i) ASSERT_EQ(g[i], 0.0f) << i;
  // llama.cpp's encoding of the same rule: rope_freqs = 64 ones then 1e30 divisors.
  std::vector<float> div(256, 1e30f), h(256);
  std::fill(div.begin(), div.begin() + 64, 1.0f);
  rope_inv_freq(h.data(), 256, 1e6f, 512, 256, div.data());
  for (int i = 0; i < 64; ++i) ASSERT_EQ(h[i], g[i]);
  for (int i = 64; i < 256; ++i) ASSERT_LT(h[i], 1e-29f);
}

// Gemma 4 global layer: dims 0-63 rotate with 256-319; everything else passes through.
TEST(Rope, ProportionalLeavesUnrotatedDimsAlone) {
  std::vector<float> inv(256), c(256), s(256);
  rope_inv_freq(inv.data(), 256, 1e6f, 512, 64, nullptr);
  rope_angles_f32(inv.data(), 256, 12345.0f, c.data(), s.data());
  const auto x = randn(2 * 512, 9);
  auto y = x;
  rope_neox_f32(y.data(), 2, 512, c.data(), s.data());
  for (int h = 0; h < 2; ++h) {
    for (int d = 0; d < 512; ++d) {
      const bool rotates = d < 64 || (d >= 256 && d < 320);
      const int i = h * 512 + d;
      if (!rotates) {
        ASSERT_EQ(y[i], x[i]) << d;
      } else if (d < 64) {
        ASSERT_NE(y[i], x[i]) << d;
        // Each rotated pair keeps its length.
        const double before = std::hypot(x[i], x[i + 256]), after = std::hypot(y[i], y[i + 256]);
        ASSERT_NEAR(after, before, 1e-5 * before + 1e-6) << d;
      }
    }
  }
}

// The point of RoPE: <rope(q, m), rope(k, n)> depends only on m - n.
TEST(Rope, DotProductDependsOnlyOnDistance) {
  const int64_t d = 256;
  std::vector<float> inv(d / 2);
  rope_inv_freq(inv.data(), d / 2, 10000.0f, d, d / 2, nullptr);
  const auto q = randn(d, 10), k = randn(d, 11);
  auto score = [&](float m, float n) {
    std::vector<float> c(d / 2), s(d / 2), qq = q, kk = k;
    rope_angles_f32(inv.data(), d / 2, m, c.data(), s.data());
    rope_neox_f32(qq.data(), 1, d, c.data(), s.data());
    rope_angles_f32(inv.data(), d / 2, n, c.data(), s.data());
    rope_neox_f32(kk.data(), 1, d, c.data(), s.data());
    double dot = 0;
    for (int64_t i = 0; i < d; ++i) dot += double(qq[i]) * kk[i];
    return dot;
  };
  EXPECT_NEAR(score(10, 3), score(107, 100), 1e-3);
  EXPECT_NEAR(score(0, 0), score(50, 50), 1e-3);
  EXPECT_GT(std::fabs(score(10, 3) - score(10, 4)), 1e-3);
}

// Same cos/sin tables; the variants use FMA, so each output may differ by ~2 ulps of
// |a| + |b|: 1e-6 relative to that, inputs ~ N(0, 1).
TEST(Rope, VariantsMatchRef) {
  struct Shape {
    int64_t heads, dim, rot;
  };
  for (const Variant& v : variants()) {
    for (Shape s : {Shape{16, 256, 128}, Shape{8, 256, 128}, Shape{16, 512, 64}, Shape{1, 512, 64},
                    Shape{3, 34, 17}, Shape{2, 6, 2}}) {
      const int64_t half = s.dim / 2, n = s.heads * s.dim;
      std::vector<float> inv(half), c(half), sn(half), cr(half), sr(half);
      rope_inv_freq(inv.data(), half, 10000.0f, s.dim, s.rot, nullptr);
      v.k->rope_angles(inv.data(), half, 4097.0f, c.data(), sn.data());
      rope_angles_f32_ref(inv.data(), half, 4097.0f, cr.data(), sr.data());
      expect_close(c, cr, 0, 1e-6, name(v, "rope_cos", half));
      expect_close(sn, sr, 0, 1e-6, name(v, "rope_sin", half));
      const auto x = randn(n, 12 + n);
      auto want = x, got = x;
      rope_neox_f32_ref(want.data(), s.heads, s.dim, cr.data(), sr.data());
      v.k->rope_neox(got.data(), s.heads, s.dim, cr.data(), sr.data());
      expect_close(got, want, 0, 2e-6 * 4, name(v, "rope_neox", n));
      want = x;
      got = x;
      rope_interleaved_f32_ref(want.data(), s.heads, s.dim, cr.data(), sr.data());
      v.k->rope_interleaved(got.data(), s.heads, s.dim, cr.data(), sr.data());
      expect_close(got, want, 0, 2e-6 * 4, name(v, "rope_interleaved", n));
    }
  }
}

// ------------------------------------------------------------------- activations --

TEST(Activations, ReferenceKnownAnswers) {
  // gelu_tanh(1) = 0.5 (1 + tanh(sqrt(2/pi) * 1.044715)) = 0.8411919906...
  const float x[4] = {1.0f, -1.0f, 0.0f, 2.0f};
  float y[4];
  gelu_tanh_f32_ref(x, y, 4);
  EXPECT_NEAR(y[0], 0.8411919906, 1e-6);
  EXPECT_NEAR(y[1], -0.1588080094, 1e-6);
  EXPECT_EQ(y[2], 0.0f);
  EXPECT_NEAR(y[3], 1.9545976902, 1e-6);
  const float up[4] = {2.0f, 3.0f, 5.0f, -1.0f};
  geglu_tanh_f32_ref(x, up, y, 4);
  EXPECT_NEAR(y[0], 2 * 0.8411919906, 2e-6);
  EXPECT_NEAR(y[3], -1.9545976902, 1e-6);
  const float z[3] = {30.0f, -300.0f, 0.3f};
  softcap_f32_ref(z, y, 3, 30.0f);
  EXPECT_NEAR(y[0], 30 * 0.7615941559557649, 1e-5);  // 30 tanh(1)
  EXPECT_NEAR(y[1], -30.0f, 1e-5);
  EXPECT_NEAR(y[2], 30 * std::tanh(0.01), 1e-7);
  const float l[2] = {0.0f, std::log(3.0f)};
  softmax_f32_ref(l, y, 2);
  EXPECT_NEAR(y[0], 0.25, 1e-7);
  EXPECT_NEAR(y[1], 0.75, 1e-7);
}

// gelu via x / (1 + exp(-2u)): u is computed in float (relative error ~3 ulps), and the
// exp's sensitivity is |2u|, up to ~25 for |x| <= 6, so up to ~25 * 3 * 6e-8 = 4.5e-6 relative;
// tolerance 2e-5 relative plus 1e-6 absolute (values near zero).
TEST(Activations, VariantsMatchRef) {
  for (const Variant& v : variants()) {
    for (int64_t n : kSizes) {
      auto x = randn(n, 20 + n, 2.5f);
      if (n > 3) {
        x[0] = -40.0f;  // exp overflow path
        x[1] = 40.0f;
        x[2] = 0.0f;
      }
      const auto up = randn(n, 21 + n);
      std::vector<float> want(n), got(n);
      gelu_tanh_f32_ref(x.data(), want.data(), n);
      v.k->gelu_tanh(x.data(), got.data(), n);
      expect_close(got, want, 2e-5, 1e-6, name(v, "gelu_tanh", n));
      geglu_tanh_f32_ref(x.data(), up.data(), want.data(), n);
      v.k->geglu_tanh(x.data(), up.data(), got.data(), n);
      expect_close(got, want, 2e-5, 1e-6, name(v, "geglu_tanh", n));
      got = x;  // in place, y aliasing gate
      v.k->geglu_tanh(got.data(), up.data(), got.data(), n);
      expect_close(got, want, 2e-5, 1e-6, name(v, "geglu_tanh_inplace", n));
    }
  }
}

// Logit-scale inputs: tanh to a few ulps (1e-6 relative) plus 1e-6 * cap for x / cap rounding.
TEST(Activations, SoftcapAndSoftmaxMatchRef) {
  for (const Variant& v : variants()) {
    for (int64_t n : kSizes) {
      auto x = randn(n, 30 + n, 20.0f);
      if (n > 4) {  // saturated tanh, exactly zero, and a masked (-inf) softmax entry
        x[0] = 1e4f;
        x[1] = -1e4f;
        x[2] = 0.0f;
      }
      std::vector<float> want(n), got(n);
      softcap_f32_ref(x.data(), want.data(), n, 30.0f);
      v.k->softcap(x.data(), got.data(), n, 30.0f);
      expect_close(got, want, 1e-6, 3e-5, name(v, "softcap", n));
      // Softmax: exp to ~1 ulp, float sum of n terms in lanes; 1e-5 relative.
      if (n > 4) x[0] = -INFINITY;
      softmax_f32_ref(x.data(), want.data(), n);
      v.k->softmax(x.data(), got.data(), n);
      expect_close(got, want, 1e-5, 1e-30, name(v, "softmax", n));
      if (n > 4) {
        EXPECT_EQ(got[0], 0.0f) << name(v, "softmax_masked", n);
      }
    }
  }
}

// Element-wise arithmetic rounds once per element, exactly like the reference (add_scaled
// fuses the multiply-add: within an ulp of the result).
TEST(Arithmetic, VariantsMatchRef) {
  for (const Variant& v : variants()) {
    for (int64_t n : kSizes) {
      const auto a = randn(n, 40 + n), b = randn(n, 41 + n);
      std::vector<float> want(n), got(n);
      add_f32_ref(a.data(), b.data(), want.data(), n);
      v.k->add(a.data(), b.data(), got.data(), n);
      EXPECT_EQ(got, want) << name(v, "add", n);
      mul_f32_ref(a.data(), b.data(), want.data(), n);
      v.k->mul(a.data(), b.data(), got.data(), n);
      EXPECT_EQ(got, want) << name(v, "mul", n);
      scale_f32_ref(a.data(), 61.967734f, want.data(), n);
      v.k->scale(a.data(), 61.967734f, got.data(), n);
      EXPECT_EQ(got, want) << name(v, "scale", n);
      want = b;
      got = b;
      add_scaled_f32_ref(a.data(), -0.375f, want.data(), n);
      v.k->add_scaled(a.data(), -0.375f, got.data(), n);
      expect_close(got, want, 2e-7, 1e-7, name(v, "add_scaled", n));
    }
  }
}

TEST(Argmax, VariantsMatchRef) {
  for (const Variant& v : variants()) {
    for (int64_t n : kSizes) {
      auto x = randn(n, 50 + n);
      EXPECT_EQ(v.k->argmax(x.data(), n), argmax_f32_ref(x.data(), n)) << name(v, "argmax", n);
      // Ties: the first index wins.
      const int64_t a = n / 3, b = (2 * n) / 3;
      x[a] = x[b] = 100.0f;
      EXPECT_EQ(argmax_f32_ref(x.data(), n), a);
      EXPECT_EQ(v.k->argmax(x.data(), n), a) << name(v, "argmax_tie", n);
      // NaNs never win.
      x[0] = NAN;
      x[n - 1] = NAN;
      const int64_t want = n > 2 ? (a == 0 ? b : a) : 0;
      if (n > 2 && a != 0) {
        EXPECT_EQ(argmax_f32_ref(x.data(), n), want);
      }
      EXPECT_EQ(v.k->argmax(x.data(), n), argmax_f32_ref(x.data(), n)) << name(v, "argmax_nan", n);
    }
  }
  const float all_nan[3] = {NAN, NAN, NAN};
  EXPECT_EQ(argmax_f32_ref(all_nan, 3), 0);
  const float neg[4] = {-INFINITY, -5.0f, -INFINITY, -5.0f};
  EXPECT_EQ(argmax_f32_ref(neg, 4), 1);
}

// ------------------------------------------------------------------------ lookups --

TEST(GetRow, EveryFormatMatchesDequantize) {
  const int64_t rows = 5, cols = 512;
  const auto w = randn(rows * cols, 60);
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                       TensorType::Q4_0, TensorType::Q4_K, TensorType::Q6_K}) {
    const size_t rs = row_size(t, cols);
    std::vector<uint8_t> table(rs * rows);
    for (int64_t r = 0; r < rows; ++r) quantize_row(t, &w[r * cols], &table[r * rs], cols);
    for (int64_t r : {int64_t{0}, int64_t{3}, rows - 1}) {
      std::vector<float> want(cols), got(cols);
      dequantize_row(t, &table[r * rs], want.data(), cols);
      get_row_f32(t, table.data(), r, cols, got.data(), 1.0f);
      EXPECT_EQ(got, want) << type_traits(t).name << " row " << r;
      get_row_f32(t, table.data(), r, cols, got.data(), std::sqrt(3840.0f));
      for (float& x : want) x *= std::sqrt(3840.0f);
      expect_close(got, want, 1e-7, 0, std::string(type_traits(t).name) + " scaled");
    }
  }
}

// ------------------------------------------------------------ activation quantizers --

// The vectorized quantizers must produce the reference's bytes exactly.
TEST(Quantizers, BitExactWithRef) {
  for (const Variant& v : variants()) {
    for (int64_t nb : {1, 2, 15, 60}) {
      const int64_t n = nb * QK_K;
      auto x = randn(n, 70 + nb, 3.0f);
      // Ties for round-half-away (q8_0) and half-even (q8_K): exact multiples of d / 2.
      for (int j = 0; j < 32; ++j) x[j] = (j - 16) * 0.5f;
      x[300 % n] = -x[301 % n] * 1.0f;
      if (nb > 1) std::fill(x.begin() + 256, x.begin() + 512, 0.0f);  // zero blocks
      std::vector<block_q8_0> a(n / 32), b(n / 32);
      quantize_row_q8_0_ref(x.data(), a.data(), n);
      v.k->quantize_q8_0(x.data(), b.data(), n);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])), 0)
          << name(v, "quantize_q8_0", n);
      std::vector<block_q8_K> c(nb), d(nb);
      quantize_row_q8_K_ref(x.data(), c.data(), n);
      v.k->quantize_q8_K(x.data(), d.data(), n);
      EXPECT_EQ(std::memcmp(c.data(), d.data(), c.size() * sizeof(c[0])), 0)
          << name(v, "quantize_q8_K", n);
    }
  }
}

// Q8_0 rows need only whole 32-element blocks: lengths that are not multiples of 256, with
// large-magnitude, tiny and tied values (every block's maximum lands on a different lane).
TEST(Quantizers, Q8_0RaggedRowsBitExact) {
  for (const Variant& v : variants()) {
    for (int64_t nb : {1, 3, 7, 13}) {
      const int64_t n = nb * QK8_0;
      auto x = randn(n, 90 + nb, 1.0f);
      for (int64_t b = 0; b < nb; ++b) x[b * QK8_0 + (b * 5) % QK8_0] = (b % 2 ? -1 : 1) * 1e4f;
      if (nb > 2) {
        for (int j = 0; j < QK8_0; ++j) x[QK8_0 + j] = (j - 16) * 1e-6f;  // subnormal f16 scale
      }
      std::vector<block_q8_0> a(nb), b(nb);
      quantize_row_q8_0_ref(x.data(), a.data(), n);
      v.k->quantize_q8_0(x.data(), b.data(), n);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])), 0)
          << name(v, "quantize_q8_0", n);
    }
  }
}

// Q8_K maps the first element of largest magnitude to -127: equal magnitudes of opposite signs
// in the same vector and in different vectors, first at either sign, all give the reference's
// bytes (the sign of d depends on the pick).
TEST(Quantizers, Q8_KPicksTheFirstLargestMagnitude) {
  const int pairs[][2] = {{7, 40}, {40, 7}, {3, 9}, {9, 3}, {0, 255}, {255, 0}};
  for (const Variant& v : variants()) {
    for (const auto& pr : pairs) {
      auto x = randn(QK_K, 95, 1.0f);
      x[pr[0]] = -50.0f;
      x[pr[1]] = 50.0f;
      block_q8_K a, b;
      quantize_row_q8_K_ref(x.data(), &a, QK_K);
      v.k->quantize_q8_K(x.data(), &b, QK_K);
      EXPECT_EQ(std::memcmp(&a, &b, sizeof(a)), 0)
          << name(v, "quantize_q8_K", QK_K) << " first " << pr[0];
      EXPECT_EQ(a.d > 0, pr[0] < pr[1]);  // the earlier -50 is the pick: d = -50 / -127 > 0
    }
  }
}

// f32 -> f16 rows (the KV cache's stores): every variant gives f32_to_f16's bits, on random
// values of every magnitude and on the special ones: zeros, f16 subnormals and their rounding
// edges, ties, the overflow boundary (65504 / 65519.99 / 65520), infinities and NaNs; lengths
// that leave tails for every vector width.
TEST(ToF16, EveryVariantGivesTheReferenceBits) {
  std::vector<float> special = {0.0f,       -0.0f,       1.0f,        -2.5f,   65504.0f,
                                65519.99f,  65520.0f,    -65520.0f,   1e10f,   6e-8f,
                                3e-8f,      2.98e-8f,    -5.96e-8f,   6.1e-5f, 6.097e-5f,
                                1.0009766f, 1.00048828f, 1.00146484f, 1e-45f,  -1e-30f};
  special.push_back(std::numeric_limits<float>::infinity());
  special.push_back(-std::numeric_limits<float>::infinity());
  special.push_back(std::numeric_limits<float>::quiet_NaN());
  special.push_back(-std::numeric_limits<float>::quiet_NaN());
  for (const Variant& v : variants()) {
    for (int64_t n : {1, 3, 7, 8, 15, 16, 17, 31, 100, 1000}) {
      std::mt19937 rng(static_cast<unsigned>(n));
      std::uniform_real_distribution<float> ex(-30.0f, 18.0f);
      std::vector<float> x(n);
      for (int64_t i = 0; i < n; ++i) {
        x[i] = (rng() % 2 ? -1.0f : 1.0f) * std::exp2(ex(rng));
        if (i % 5 == 0) x[i] = special[(i / 5 + n) % special.size()];
      }
      std::vector<f16_bits> want(n), got(n);
      for (int64_t i = 0; i < n; ++i) want[i] = f32_to_f16(x[i]);
      v.k->to_f16(x.data(), got.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i], want[i]) << name(v, "to_f16", n) << " x[" << i << "] = " << x[i];
      }
    }
  }
}

TEST(Dispatch, PublicEntryPointsFollowActiveIsa) {
  const Isa before = active_isa();
  const auto x = randn(3840, 80), w = randn(3840, 81);
  for (Isa isa : {Isa::ref, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (!isa_supported(isa)) continue;
    set_active_isa(isa);
    std::vector<float> want(3840), got(3840);
    ops_kernels(isa)->rmsnorm(x.data(), w.data(), want.data(), 3840, 1e-6f);
    rmsnorm_f32(x.data(), w.data(), got.data(), 3840, 1e-6f);
    EXPECT_EQ(got, want) << isa_name(isa);
    ops_kernels(isa)->geglu_tanh(x.data(), w.data(), want.data(), 3840);
    geglu_tanh_f32(x.data(), w.data(), got.data(), 3840);
    EXPECT_EQ(got, want) << isa_name(isa);
    EXPECT_EQ(argmax_f32(x.data(), 3840), argmax_f32_ref(x.data(), 3840));
  }
  set_active_isa(before);
}

}  // namespace
}  // namespace qgemma
