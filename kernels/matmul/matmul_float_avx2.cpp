// AVX2 GEMV for float weights (F32, F16, BF16) against F32 activations: 4 weight rows x up to 2
// activation rows per pass (8 accumulators of 8 floats fit the 16 ymm registers), 8 elements of
// K per step; F16 via vcvtph2ps, BF16 via a 16-bit shift. The K tail (K % 8) is done in scalar.
//
// GEMM (prefill, R > 8), blocked like the AVX-512 one (matmul_float_avx512.cpp) and, like it, bit
// for bit the GEMV's result for every row: activation rows in blocks of up to kMc = 72 (block x
// K x 4 bytes <= 1 MiB), groups of kNb = 12 weight rows whose kKc = 256-element chunks are
// converted to F32 once into a 12 KiB stack buffer (F32 weights are read in place) and reused from
// L1 by every activation tile of the block. Micro-kernel: 3 weight rows x 4 activation rows = 12
// ymm accumulators (+ 3 weights + 1 activation = all 16 registers), 7 loads per 12 FMAs; the
// accumulators of a block x group live in a 27 KiB stack array across the chunks of K, and the
// end of the row (8-lane sum, scalar K tail) is the GEMV's own code (finish()).
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

// A row's result from its 8 lanes: the lane sum, then the K tail [K8, K) in scalar. Shared by the
// GEMV and the GEMM so that a row's result does not depend on R.
template <typename W, bool kBf16>
inline float finish(__m256 acc, const W* w, const float* x, int64_t K8, int64_t K) {
  float s = hsum(acc);
  for (int64_t k = K8; k < K; ++k) s += scalarw<W, kBf16>(w[k]) * x[k];
  return s;
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
    for (int j = 0; j < nrows; ++j) y[r * ldy + j] = finish<W, kBf16>(acc[r][j], w[j], x[r], K8, K);
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

// ---- GEMM ---------------------------------------------------------------------------------
constexpr int kGRowsW = 3;    // weight rows per micro tile
constexpr int kGRowsX = 4;    // activation rows per micro tile
constexpr int kNb = 12;       // weight rows converted together (4 micro tiles)
constexpr int64_t kKc = 256;  // K elements per chunk (the L1 working set)
constexpr int64_t kMc = 72;   // most activation rows per block (18 micro tiles)
static_assert(kMc % kGRowsX == 0 && kNb % kGRowsW == 0 && kKc % 8 == 0);

// acc[r][j] += sum over kc (a multiple of 8) elements of w[j] * x[r] (8 lanes each, kept in
// `spill` between the chunks of K: loaded unless `load` is false). After the last chunk (`last`),
// Y[r][j] = finish(...) for j < nrows, with the original weight rows `wo` and activation rows
// `xo` for the scalar K tail: the GEMV's arithmetic.
template <typename W, bool kBf16, int RB>
void gemm_micro(const float* const* w, int nrows, int64_t kc, const float* const* x, float* spill,
                bool load, bool last, const W* const* wo, const float* const* xo, int64_t K8,
                int64_t K, float* y, int64_t ldy) {
  __m256 acc[RB][kGRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kGRowsW; ++j) {
      acc[r][j] = load ? _mm256_load_ps(spill + (r * kGRowsW + j) * 8) : _mm256_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; k += 8) {
    __m256 wv[kGRowsW];
    for (int j = 0; j < kGRowsW; ++j) wv[j] = _mm256_loadu_ps(w[j] + k);
    for (int r = 0; r < RB; ++r) {
      const __m256 xv = _mm256_loadu_ps(x[r] + k);
      for (int j = 0; j < kGRowsW; ++j) acc[r][j] = _mm256_fmadd_ps(wv[j], xv, acc[r][j]);
    }
  }
  if (!last) {
    for (int r = 0; r < RB; ++r) {
      for (int j = 0; j < kGRowsW; ++j) _mm256_store_ps(spill + (r * kGRowsW + j) * 8, acc[r][j]);
    }
    return;
  }
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < nrows; ++j) {
      y[r * ldy + j] = finish<W, kBf16>(acc[r][j], wo[j], xo[r], K8, K);
    }
  }
}

// Converts kc (a multiple of 8) elements of a weight row to F32 (F16: vcvtph2ps; BF16: shift).
template <typename W, bool kBf16>
void convert_row(const W* src, float* dst, int64_t kc) {
  for (int64_t k = 0; k < kc; k += 8) _mm256_store_ps(dst + k, loadw<W, kBf16>(src + k));
}

// Activation rows per block: block x K x 4 bytes <= 1 MiB stays in L2 while every group of weight
// rows passes over it; a multiple of kGRowsX in [2 kGRowsX, kMc].
int64_t block_rows(int64_t K) {
  const int64_t fit = (int64_t{1} << 20) / (4 * K) / kGRowsX * kGRowsX;
  return std::clamp<int64_t>(fit, 2 * kGRowsX, kMc);
}

template <typename W, bool kBf16>
void gemm_float(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t K = a.K, K8 = K / 8 * 8;
  if (K8 == 0) {  // no vector part: the GEMV's scalar tail is all there is
    gemv_float<W, kBf16>(a, n0, n1);
    return;
  }
  constexpr bool kF32 = sizeof(W) == 4;
  alignas(32) float wbuf[kF32 ? 1 : kNb][kF32 ? 1 : kKc];
  // Vector accumulators of one block x one weight-row group across the chunks of K.
  alignas(32) float spill[kMc / kGRowsX][kNb / kGRowsW][kGRowsX * kGRowsW * 8];
  using Micro = void (*)(const float* const*, int, int64_t, const float* const*, float*, bool, bool,
                         const W* const*, const float* const*, int64_t, int64_t, float*, int64_t);
  static constexpr Micro kMicro[kGRowsX] = {gemm_micro<W, kBf16, 1>, gemm_micro<W, kBf16, 2>,
                                            gemm_micro<W, kBf16, 3>, gemm_micro<W, kBf16, 4>};
  const auto* w = static_cast<const W*>(a.w);
  const auto* xb = static_cast<const uint8_t*>(a.x);
  const int64_t mc = block_rows(K);
  for (int64_t rb0 = 0; rb0 < a.R; rb0 += mc) {
    const int64_t rb1 = std::min(a.R, rb0 + mc);
    for (int64_t nb = n0; nb < n1; nb += kNb) {
      const int64_t nbe = std::min(n1, nb + kNb);
      const W* wo[kNb];
      for (int64_t n = nb; n < nb + kNb; ++n) wo[n - nb] = w + std::min(n, nbe - 1) * K;
      for (int64_t k0 = 0; k0 < K8; k0 += kKc) {
        const int64_t kc = std::min(kKc, K8 - k0);
        const float* rows[kNb];
        for (int j = 0; j < kNb; ++j) {
          if constexpr (kF32) {
            rows[j] = reinterpret_cast<const float*>(wo[j]) + k0;
          } else if (j < nbe - nb) {
            convert_row<W, kBf16>(wo[j] + k0, wbuf[j], kc);
            rows[j] = wbuf[j];
          } else {
            rows[j] = rows[nbe - nb - 1];
          }
        }
        for (int64_t r0 = rb0; r0 < rb1; r0 += kGRowsX) {
          const int rt = static_cast<int>(std::min<int64_t>(kGRowsX, rb1 - r0));
          const float *xo[kGRowsX], *xr[kGRowsX];
          for (int r = 0; r < rt; ++r) {
            xo[r] = reinterpret_cast<const float*>(xb + (r0 + r) * a.ldx);
            xr[r] = xo[r] + k0;
          }
          for (int64_t n = nb; n < nbe; n += kGRowsW) {
            const int nrows = static_cast<int>(std::min<int64_t>(kGRowsW, nbe - n));
            kMicro[rt - 1](rows + (n - nb), nrows, kc, xr,
                           spill[(r0 - rb0) / kGRowsX][(n - nb) / kGRowsW], k0 != 0, k0 + kc == K8,
                           wo + (n - nb), xo, K8, K, a.y + r0 * a.ldy + n, a.ldy);
          }
        }
      }
    }
  }
}

}  // namespace

void gemm_f32_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<float, false>(a, n0, n1);
}
void gemm_f16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<f16_bits, false>(a, n0, n1);
}
void gemm_bf16_f32_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<bf16_bits, true>(a, n0, n1);
}

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
