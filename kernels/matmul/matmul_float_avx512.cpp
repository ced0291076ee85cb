// AVX-512 GEMV for float weights (F32, F16, BF16) against F32 activations.
//
// 4 weight rows x up to 4 activation rows per pass, 16 elements of K per step, one FMA per
// (weight row, activation row) into 16 float lanes, lanes reduced at the end of the row; the K
// tail uses masked loads. F16 converts with vcvtph2ps, BF16 with a 16-bit shift (exact), so the
// weights stream at full memory bandwidth; vdpbf16ps would need BF16 activations and buys
// nothing for a memory-bound GEMV. Larger R runs in tiles of 4 activation rows while the 4 weight
// rows stay in L1.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "matmul_float_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl"
#endif

// GCC 12 reports false -Wuninitialized warnings inside its AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kRowsW = 4;
constexpr int kMaxRB = 4;

inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load16(const f16_bits* p, __mmask16 m) {
  return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
inline __m512 load16_bf16(const bf16_bits* p, __mmask16 m) {
  const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
}

template <typename W, bool kBf16>
inline __m512 loadw(const W* p, __mmask16 m) {
  if constexpr (kBf16) {
    return load16_bf16(p, m);
  } else {
    return load16(p, m);
  }
}

template <typename W, bool kBf16, int RB>
void micro(const W* const* w, int nrows, int64_t K, const float* const* x, float* y, int64_t ldy) {
  __m512 acc[RB][kRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kRowsW; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 m = K - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (K - k)) - 1);
    __m512 wv[kRowsW];
    for (int j = 0; j < kRowsW; ++j) wv[j] = loadw<W, kBf16>(w[j] + k, m);
    for (int r = 0; r < RB; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x[r] + k);
      for (int j = 0; j < kRowsW; ++j) acc[r][j] = _mm512_fmadd_ps(wv[j], xv, acc[r][j]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < nrows; ++j) y[r * ldy + j] = _mm512_reduce_add_ps(acc[r][j]);
  }
}

template <typename W, bool kBf16>
void gemv_float(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Fn = void (*)(const W* const*, int, int64_t, const float* const*, float*, int64_t);
  static constexpr Fn kFns[kMaxRB] = {micro<W, kBf16, 1>, micro<W, kBf16, 2>, micro<W, kBf16, 3>,
                                      micro<W, kBf16, 4>};
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

void gemv_f32_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<float, false>(a, n0, n1);
}
void gemv_f16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<f16_bits, false>(a, n0, n1);
}
void gemv_bf16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<bf16_bits, true>(a, n0, n1);
}

}  // namespace qgemma
