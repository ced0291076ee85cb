// AVX-512 GEMV for float weights (F32, F16, BF16) against F32 activations.
//
// 4 weight rows x up to 4 activation rows per pass, 16 elements of K per step, one FMA per
// (weight row, activation row) into 16 float lanes, lanes reduced at the end of the row; the K
// tail uses masked loads. F16 converts with vcvtph2ps, BF16 with a 16-bit shift (exact), so the
// weights stream at full memory bandwidth; vdpbf16ps would need BF16 activations and buys
// nothing for a memory-bound GEMV. Larger R runs in tiles of 4 activation rows while the 4 weight
// rows stay in L1.
//
// GEMM (prefill, R > 8): the same lanes-along-K dot products, blocked for the caches, and bit for
// bit the GEMV's result for every row (batch invariance: speculative verification compares a
// 9-row batch with single-token steps). Activation rows are taken in blocks of up to kMc = 72
// (as many as keep block x K x 4 bytes <= 1 MiB in L2, at least 12); for each block and each
// group of kNb = 8 weight rows, kKc = 512 elements of K of those rows at a time are converted to
// F32 once into a 16 KiB stack buffer (F32 weights are read in place) and reused from L1 by every
// 6-row activation tile of the block (micro-kernel: 4 weight rows x 6 activation rows = 24 zmm
// accumulators, 10 loads per 24 FMAs). The accumulators of a block x group live in a 36 KiB stack
// array between the chunks, so each lane is the GEMV's sequential sum over K / 16 products (same
// masked tail step), reduced in the GEMV's order (hsum16) at the end: the (K/8 + 16) * 2^-24 * M
// bound of tests/kernels/test_matmul.cpp holds as for the GEMV. Conversion work per weight is
// 1 / min(R, block) of the GEMV tile path's, and the weights are read once per block of rows.
// Single thread on this machine (noisy, shared): 1.3-1.9x the GEMV tile path at K = 3840 (R = 64
// and 512), 1.0-1.1x at K = 15360 (R = 64; there only 12-row blocks fit L2). A variant that
// reduces per 2048-element K panel (not batch invariant) reached 1.6-1.9x at K = 15360.
// A vdpbf16ps variant for BF16 (gemm_bf16_bf16_avx512, below) is slower here and not dispatched.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__)
#error "matmul_float_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl"
#endif

// GCC 12 reports false -Wuninitialized warnings inside its AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

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

// The sum of the 16 lanes in a fixed order (lanes i + 8, then halves of 4, then (0 + 2) + (1 + 3)),
// shared by the GEMV and the GEMM so that a row's result does not depend on R.
inline float hsum16(__m512 v) {
  const __m256 t = _mm256_add_ps(_mm512_castps512_ps256(v),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 u = _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
  const __m128 w = _mm_add_ps(u, _mm_shuffle_ps(u, u, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps(w, w, _MM_SHUFFLE(1, 1, 1, 1))));
}

// {hsum16(a0), hsum16(a1), hsum16(a2), hsum16(a3)}, bit for bit, with 4-wide shuffles.
inline __m128 reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  // Quarters of b0: a0 q0 + q2, a0 q1 + q3, a1 q0 + q2, a1 q1 + q3 (lane i + lane i + 8).
  const __m512 b0 =
      _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, 0x44), _mm512_shuffle_f32x4(a0, a1, 0xEE));
  const __m512 b1 =
      _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, 0x44), _mm512_shuffle_f32x4(a2, a3, 0xEE));
  // Quarter j of c: the 4 partial sums u of a_j.
  const __m512 c =
      _mm512_add_ps(_mm512_shuffle_f32x4(b0, b1, 0x88), _mm512_shuffle_f32x4(b0, b1, 0xDD));
  const __m512 d = _mm512_add_ps(c, _mm512_permute_ps(c, 0x4E));  // u0 + u2, u1 + u3
  const __m512 e = _mm512_add_ps(d, _mm512_permute_ps(d, 0xB1));  // (u0 + u2) + (u1 + u3)
  const __m512i idx = _mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0);
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(idx, e));
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
    for (int j = 0; j < nrows; ++j) y[r * ldy + j] = hsum16(acc[r][j]);
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

// ---- GEMM ---------------------------------------------------------------------------------
constexpr int kGRowsW = 4;    // weight rows per micro tile
constexpr int kGRowsX = 6;    // activation rows per micro tile
constexpr int kNb = 8;        // weight rows converted together (2 micro tiles)
constexpr int64_t kKc = 512;  // K elements per chunk (the L1 working set)
constexpr int64_t kMc = 72;   // activation rows per block (12 micro tiles)

// acc[r][j] += sum over kc elements of w[j] * x[r] (16 lanes each, kept in `spill` between the
// kKc chunks of K: loaded unless `load` is false). After the last chunk (`last`) the lanes are
// reduced as the GEMV reduces them and Y[r][j] is assigned for j < nrows.
template <int RB>
void gemm_micro(const float* const* w, int nrows, int64_t kc, const float* const* x, float* spill,
                bool load, bool last, float* y, int64_t ldy) {
  __m512 acc[RB][kGRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kGRowsW; ++j) {
      acc[r][j] = load ? _mm512_load_ps(spill + (r * kGRowsW + j) * 16) : _mm512_setzero_ps();
    }
  }
  int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    __m512 wv[kGRowsW];
    for (int j = 0; j < kGRowsW; ++j) wv[j] = _mm512_loadu_ps(w[j] + k);
    for (int r = 0; r < RB; ++r) {
      const __m512 xv = _mm512_loadu_ps(x[r] + k);
      for (int j = 0; j < kGRowsW; ++j) acc[r][j] = _mm512_fmadd_ps(wv[j], xv, acc[r][j]);
    }
  }
  if (k < kc) {
    const __mmask16 m = static_cast<__mmask16>((1u << (kc - k)) - 1);
    __m512 wv[kGRowsW];
    for (int j = 0; j < kGRowsW; ++j) wv[j] = _mm512_maskz_loadu_ps(m, w[j] + k);
    for (int r = 0; r < RB; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x[r] + k);
      for (int j = 0; j < kGRowsW; ++j) acc[r][j] = _mm512_fmadd_ps(wv[j], xv, acc[r][j]);
    }
  }
  if (!last) {
    for (int r = 0; r < RB; ++r) {
      for (int j = 0; j < kGRowsW; ++j) _mm512_store_ps(spill + (r * kGRowsW + j) * 16, acc[r][j]);
    }
    return;
  }
  const __mmask8 ym = static_cast<__mmask8>((1u << nrows) - 1);
  for (int r = 0; r < RB; ++r) {
    _mm_mask_storeu_ps(y + r * ldy, ym, reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
  }
}

using GemmMicroFn = void (*)(const float* const*, int, int64_t, const float* const*, float*, bool,
                             bool, float*, int64_t);
constexpr GemmMicroFn kGemmMicro[kGRowsX] = {gemm_micro<1>, gemm_micro<2>, gemm_micro<3>,
                                             gemm_micro<4>, gemm_micro<5>, gemm_micro<6>};

// Converts kc elements of a weight row to F32 (F16: vcvtph2ps; BF16: exact 16-bit shift).
template <typename W, bool kBf16>
void convert_row(const W* src, float* dst, int64_t kc) {
  for (int64_t k = 0; k < kc; k += 16) {
    const __mmask16 m = kc - k >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (kc - k)) - 1);
    _mm512_mask_storeu_ps(dst + k, m, loadw<W, kBf16>(src + k, m));
  }
}

// Activation rows per block: the block's rows (block x K x 4 bytes) stay in L2 (<= 1 MiB) while
// every group of weight rows passes over them; a multiple of kGRowsX in [2 kGRowsX, kMc].
int64_t block_rows(int64_t K) {
  const int64_t fit = (int64_t{1} << 20) / (4 * K) / kGRowsX * kGRowsX;
  return std::clamp<int64_t>(fit, 2 * kGRowsX, kMc);
}

template <typename W, bool kBf16>
void gemm_float(const MatmulArgs& a, int64_t n0, int64_t n1) {
  constexpr bool kF32 = sizeof(W) == 4;
  alignas(64) float wbuf[kF32 ? 1 : kNb][kF32 ? 1 : kKc];
  // Vector accumulators of one block x one weight-row group across the chunks of K.
  alignas(64) float spill[kMc / kGRowsX][kNb / kGRowsW][kGRowsX * kGRowsW * 16];
  const auto* w = static_cast<const W*>(a.w);
  const auto* xb = static_cast<const uint8_t*>(a.x);
  const int64_t K = a.K;
  const int64_t mc = block_rows(K);
  for (int64_t rb0 = 0; rb0 < a.R; rb0 += mc) {
    const int64_t rb1 = std::min(a.R, rb0 + mc);
    for (int64_t nb = n0; nb < n1; nb += kNb) {
      const int64_t nbe = std::min(n1, nb + kNb);
      for (int64_t k0 = 0; k0 < K; k0 += kKc) {
        const int64_t kc = std::min(kKc, K - k0);
        const float* rows[kNb];
        for (int64_t n = nb; n < nbe; ++n) {
          if constexpr (kF32) {
            rows[n - nb] = reinterpret_cast<const float*>(w) + n * K + k0;
          } else {
            convert_row<W, kBf16>(w + n * K + k0, wbuf[n - nb], kc);
            rows[n - nb] = wbuf[n - nb];
          }
        }
        for (int64_t n = nbe; n < nb + kNb; ++n) rows[n - nb] = rows[nbe - nb - 1];
        for (int64_t r0 = rb0; r0 < rb1; r0 += kGRowsX) {
          const int rt = static_cast<int>(std::min<int64_t>(kGRowsX, rb1 - r0));
          const float* xr[kGRowsX];
          for (int r = 0; r < rt; ++r) {
            xr[r] = reinterpret_cast<const float*>(xb + (r0 + r) * a.ldx) + k0;
          }
          for (int64_t n = nb; n < nbe; n += kGRowsW) {
            const int nrows = static_cast<int>(std::min<int64_t>(kGRowsW, nbe - n));
            kGemmMicro[rt - 1](rows + (n - nb), nrows, kc, xr,
                               spill[(r0 - rb0) / kGRowsX][(n - nb) / kGRowsW], k0 != 0,
                               k0 + kc == K, a.y + r0 * a.ldy + n, a.ldy);
          }
        }
      }
    }
  }
}

#if defined(__AVX512BF16__)
// ---- BF16 weights x BF16-rounded activations (vdpbf16ps) -----------------------------------
// Activation rows are rounded to BF16 (round to nearest even) once per block of kBMc rows and
// kBKc elements of K, into a 48 KiB stack buffer zero-padded to 32 elements; the weights are read
// in place. Micro-kernel: 4 weight rows x 6 activation rows, 24 zmm accumulators, each vdpbf16ps
// adds 2 exact products per lane (32 multiply-adds per instruction, twice vfmadd231ps); lanes are
// reduced at the end of every kBKc chunk and added into Y.
// Error: rounding an activation to BF16 changes it by up to 2^-8 relative, so
// |y - y_exact| <= 2^-8 * M + (K/16 + 16) * 2^-24 * M (M = sum |w x|) for inputs without
// subnormals (vdpbf16ps treats subnormal inputs and outputs as zero): about 2^16 times the F32
// path's bound, the precision llama.cpp's BF16 dot products (BF16 activations) have.
// Not dispatched: on this project's AVX-512 machine a register-only loop retires vdpbf16ps at
// ~80 GFLOPS against ~174 for vfmadd231ps, and this kernel runs at 0.6-0.9x the F32 GEMM above.
constexpr int64_t kBMc = 48;   // activation rows per block (8 micro tiles)
constexpr int64_t kBKc = 512;  // K elements per chunk
static_assert(kBMc % kGRowsX == 0 && kBKc % 32 == 0);

inline __m512 dot2(__m512 acc, __m512i a, __m512i b) {
  __m512bh ab, bb;
  std::memcpy(&ab, &a, sizeof(ab));
  std::memcpy(&bb, &b, sizeof(bb));
  return _mm512_dpbf16_ps(acc, ab, bb);
}

template <int RB>
void gemm_bf16dot_micro(const bf16_bits* const* w, int nrows, int64_t kc, const bf16_bits* xt,
                        float* y, int64_t ldy, bool first) {
  __m512 acc[RB][kGRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kGRowsW; ++j) acc[r][j] = _mm512_setzero_ps();
  }
  int64_t k = 0;
  for (; k + 32 <= kc; k += 32) {
    __m512i wv[kGRowsW];
    for (int j = 0; j < kGRowsW; ++j) wv[j] = _mm512_loadu_si512(w[j] + k);
    for (int r = 0; r < RB; ++r) {
      const __m512i xv = _mm512_load_si512(xt + r * kBKc + k);
      for (int j = 0; j < kGRowsW; ++j) acc[r][j] = dot2(acc[r][j], wv[j], xv);
    }
  }
  if (k < kc) {  // weights masked; the activations are zero-padded
    const __mmask32 m = static_cast<__mmask32>((1u << (kc - k)) - 1);
    __m512i wv[kGRowsW];
    for (int j = 0; j < kGRowsW; ++j) wv[j] = _mm512_maskz_loadu_epi16(m, w[j] + k);
    for (int r = 0; r < RB; ++r) {
      const __m512i xv = _mm512_load_si512(xt + r * kBKc + k);
      for (int j = 0; j < kGRowsW; ++j) acc[r][j] = dot2(acc[r][j], wv[j], xv);
    }
  }
  const __mmask8 ym = static_cast<__mmask8>((1u << nrows) - 1);
  for (int r = 0; r < RB; ++r) {
    __m128 s = reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    float* yr = y + r * ldy;
    if (!first) s = _mm_add_ps(s, _mm_maskz_loadu_ps(ym, yr));
    _mm_mask_storeu_ps(yr, ym, s);
  }
}

using Bf16MicroFn = void (*)(const bf16_bits* const*, int, int64_t, const bf16_bits*, float*,
                             int64_t, bool);
constexpr Bf16MicroFn kBf16Micro[kGRowsX] = {gemm_bf16dot_micro<1>, gemm_bf16dot_micro<2>,
                                             gemm_bf16dot_micro<3>, gemm_bf16dot_micro<4>,
                                             gemm_bf16dot_micro<5>, gemm_bf16dot_micro<6>};

void gemm_bf16dot(const MatmulArgs& a, int64_t n0, int64_t n1) {
  alignas(64) bf16_bits xbuf[kBMc][kBKc];
  const auto* w = static_cast<const bf16_bits*>(a.w);
  const auto* xb = static_cast<const uint8_t*>(a.x);
  const int64_t K = a.K;
  for (int64_t rb0 = 0; rb0 < a.R; rb0 += kBMc) {
    const int64_t rb1 = std::min(a.R, rb0 + kBMc);
    for (int64_t k0 = 0; k0 < K; k0 += kBKc) {
      const int64_t kc = std::min(kBKc, K - k0);
      const int64_t kc32 = (kc + 31) / 32 * 32;
      for (int64_t r = rb0; r < rb1; ++r) {  // round the block's chunk to BF16, zero-padded
        const float* x = reinterpret_cast<const float*>(xb + r * a.ldx) + k0;
        for (int64_t k = 0; k < kc32; k += 32) {
          const int64_t left = kc - k;
          const __mmask16 m0 =
              left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << std::max<int64_t>(left, 0)) - 1);
          const __mmask16 m1 = left >= 32
                                   ? __mmask16(0xFFFF)
                                   : __mmask16((1u << std::clamp<int64_t>(left - 16, 0, 16)) - 1);
          const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + k + 16),
                                                 _mm512_maskz_loadu_ps(m0, x + k));
          _mm512_store_si512(&xbuf[r - rb0][k], (__m512i)v);
        }
      }
      for (int64_t n = n0; n < n1; n += kGRowsW) {
        const int nrows = static_cast<int>(std::min<int64_t>(kGRowsW, n1 - n));
        const bf16_bits* rows[kGRowsW];
        for (int j = 0; j < kGRowsW; ++j) rows[j] = w + (n + std::min(j, nrows - 1)) * K + k0;
        for (int64_t r0 = rb0; r0 < rb1; r0 += kGRowsX) {
          const int rt = static_cast<int>(std::min<int64_t>(kGRowsX, rb1 - r0));
          kBf16Micro[rt - 1](rows, nrows, kc, xbuf[r0 - rb0], a.y + r0 * a.ldy + n, a.ldy, k0 == 0);
        }
      }
    }
  }
}
#endif  // __AVX512BF16__

}  // namespace

void gemm_bf16_bf16_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
#if defined(__AVX512BF16__)
  gemm_bf16dot(a, n0, n1);
#else
  gemm_float<bf16_bits, true>(a, n0, n1);
#endif
}

void gemm_f32_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<float, false>(a, n0, n1);
}
void gemm_f16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<f16_bits, false>(a, n0, n1);
}
void gemm_bf16_f32_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<bf16_bits, true>(a, n0, n1);
}

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
