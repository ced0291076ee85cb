// AVX2 GEMV for float weights (F32, F16, BF16) against F32 activations: 4 weight rows x up to 2
// activation rows per pass (8 accumulators of 8 floats fit the 16 ymm registers), 8 elements of
// K per step; F16 via vcvtph2ps, BF16 via a 16-bit shift. The K tail (K % 8) is done in scalar.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "matmul_float_avx2.cpp needs -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kRowsW = 4;
constexpr int kMaxRB = 2;

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const f16_bits* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8_bf16(const bf16_bits* p) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

inline float scalar(float v) { return v; }
inline float scalar_f16(f16_bits v) { return _cvtsh_ss(v); }
inline float scalar_bf16(bf16_bits v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <typename W, bool kBf16>
inline __m256 loadw(const W* p) {
  if constexpr (kBf16) {
    return load8_bf16(p);
  } else {
    return load8(p);
  }
}

template <typename W, bool kBf16>
inline float scalarw(W v) {
  if constexpr (kBf16) {
    return scalar_bf16(v);
  } else if constexpr (sizeof(W) == 2) {
    return scalar_f16(v);
  } else {
    return scalar(v);
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <typename W, bool kBf16, int RB>
void micro(const W* const* w, int nrows, int64_t K, const float* const* x, float* y, int64_t ldy) {
  __m256 acc[RB][kRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kRowsW; ++j) acc[r][j] = _mm256_setzero_ps();
  }
  const int64_t K8 = K / 8 * 8;
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 wv[kRowsW];
    for (int j = 0; j < kRowsW; ++j) wv[j] = loadw<W, kBf16>(w[j] + k);
    for (int r = 0; r < RB; ++r) {
      const __m256 xv = _mm256_loadu_ps(x[r] + k);
      for (int j = 0; j < kRowsW; ++j) acc[r][j] = _mm256_fmadd_ps(wv[j], xv, acc[r][j]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < nrows; ++j) {
      float s = hsum(acc[r][j]);
      for (int64_t k = K8; k < K; ++k) s += scalarw<W, kBf16>(w[j][k]) * x[r][k];
      y[r * ldy + j] = s;
    }
  }
}

template <typename W, bool kBf16>
void gemv_float(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Fn = void (*)(const W* const*, int, int64_t, const float* const*, float*, int64_t);
  static constexpr Fn kFns[kMaxRB] = {micro<W, kBf16, 1>, micro<W, kBf16, 2>};
  const auto* w = static_cast<const W*>(a.w);
  const auto* xb = static_cast<const uint8_t*>(a.x);
  for (int64_t n = n0; n < n1; n += kRowsW) {
    const int nrows = static_cast<int>(std::min<int64_t>(kRowsW, n1 - n));
    const W* rows[kRowsW];
    for (int j = 0; j < kRowsW; ++j) rows[j] = w + (n + std::min(j, nrows - 1)) * a.K;
    for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
      const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
      const float* xr[kMaxRB];
      for (int r = 0; r < rb; ++r) xr[r] = reinterpret_cast<const float*>(xb + (r0 + r) * a.ldx);
      kFns[rb - 1](rows, nrows, a.K, xr, a.y + r0 * a.ldy + n, a.ldy);
    }
  }
}

}  // namespace

void gemv_f32_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<float, false>(a, n0, n1);
}
void gemv_f16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<f16_bits, false>(a, n0, n1);
}
void gemv_bf16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<bf16_bits, true>(a, n0, n1);
}

}  // namespace qgemma
