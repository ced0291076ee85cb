// AVX2 Q4_K / Q5_K / Q6_K x Q8_K matmul: vpmaddubsw multiplies unsigned weight codes by signed
// Q8_K activations into int16 pairs, vpmaddwd applies the sub-block scales and sums into int32.
// Each 256-block ends in int32 lanes, converted once and scaled by d_w * d_x. Q4_K's min term
// and Q6_K's -32 offset come from Q8_K's bsums (sums of 16 activations), not from the codes.
//
// Compiled twice: matmul_kquant_avx2.cpp (the avx2 variants, *_avx2) and, with
// QGEMMA_KQUANT_AVXVNNI defined, matmul_kquant_avxvnni.cpp (*_avxvnni, for CPUs with AVX-VNNI:
// vpdpwssd applies the int16 scales and accumulates in one instruction where AVX2 needs vpmaddwd
// + vpaddd). Integer sums are exact either way, so the two give the same results bit for bit.
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "kquant_avx2_impl.h needs -mavx2 -mfma -mf16c"
#endif
#if defined(QGEMMA_KQUANT_AVXVNNI) && !defined(__AVXVNNI__)
#error "the AVX-VNNI build of kquant_avx2_impl.h needs -mavxvnni"
#endif
#if defined(QGEMMA_KQUANT_AVXVNNI)
#define QG_KQ(name) name##_avxvnni
#else
#define QG_KQ(name) name##_avx2
#endif

#include <immintrin.h>

#include "kernels/matmul/kquant.h"
#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

using kquant_detail::kquant_matmul;
using kquant_detail::prefetch_ahead;
using kquant_detail::q4_k_scales_mins;

constexpr int kTileRows = 4;  // activation rows per pass (16 ymm registers)

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float f16(f16_bits h) { return _cvtsh_ss(h); }

// acc + the int16 pair products of a and b summed into int32 lanes.
inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
#if defined(QGEMMA_KQUANT_AVXVNNI)
  return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// One Q4_K weight row (nb blocks) against RB activation rows (row stride nb blocks).
template <int RB>
void q4_k_rows(const block_q4_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  __m256 acc[RB], acc_min[RB];  // two chains so the two FMAs per block overlap
  for (int r = 0; r < RB; ++r) acc[r] = acc_min[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    uint64_t sc, mn;
    q4_k_scales_mins(w[b].scales, &sc, &mn);
    // [sc0..sc7 | sc0..sc7] as int16; vpshufb picks sub-block j's scale into every lane.
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc)));
    const __m128i mn8 = _mm_cvtsi64_si128(mn);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));  // m0 m0 m1 m1 ..
    __m256i isum[RB];
    for (int c = 0; c < 4; ++c) {
      // 32 bytes: low nibbles = elements 64c..64c+31 (sub-block 2c), high = sub-block 2c + 1.
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m256i lo = _mm256_and_si256(q, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      const __m256i s_lo = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((4 * c + 1) << 8 | 4 * c));
      const __m256i s_hi =
          _mm256_shuffle_epi8(scales, _mm256_set1_epi16((4 * c + 3) << 8 | (4 * c + 2)));
      for (int r = 0; r < RB; ++r) {
        const int8_t* xq = xr[r][b].qs + 64 * c;
        const __m256i x_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
        const __m256i x_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
        const __m256i p_lo = _mm256_maddubs_epi16(lo, x_lo), p_hi = _mm256_maddubs_epi16(hi, x_hi);
        isum[r] = madd_acc(c == 0 ? _mm256_madd_epi16(p_lo, s_lo) : madd_acc(isum[r], p_lo, s_lo),
                           p_hi, s_hi);
      }
    }
    const float dw = f16(w[b].d), dm = f16(w[b].dmin);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      const __m256i msum = _mm256_madd_epi16(bs, mins);  // min_j * (bsum_2j + bsum_2j+1)
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(dw * xb.d), acc[r]);
      acc_min[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dm * xb.d), acc_min[r]);
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = hsum(_mm256_sub_ps(acc[r], acc_min[r]));
}

// One Q5_K weight row against RB activation rows: q4_k_rows with bit 4 of every code from qh.
template <int RB>
void q5_k_rows(const block_q5_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m16 = _mm256_set1_epi8(0x10);
  __m256 acc[RB], acc_min[RB];
  for (int r = 0; r < RB; ++r) acc[r] = acc_min[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    uint64_t sc, mn;
    q4_k_scales_mins(w[b].scales, &sc, &mn);
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc)));
    const __m128i mn8 = _mm_cvtsi64_si128(mn);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
    // Byte l: bit j = bit 4 of element 32j + l's code. Shifted right by 2 per chunk, so chunk c
    // finds sub-block 2c's bit at bit 0 and 2c + 1's at bit 1 (16-bit shifts: the bits that
    // cross bytes land in bits 6..7, never read).
    __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh));
    __m256i isum[RB];
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m256i lo =
          _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m16));
      const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                         _mm256_and_si256(_mm256_slli_epi16(qh, 3), m16));
      qh = _mm256_srli_epi16(qh, 2);
      const __m256i s_lo = _mm256_shuffle_epi8(scales, _mm256_set1_epi16((4 * c + 1) << 8 | 4 * c));
      const __m256i s_hi =
          _mm256_shuffle_epi8(scales, _mm256_set1_epi16((4 * c + 3) << 8 | (4 * c + 2)));
      for (int r = 0; r < RB; ++r) {
        const int8_t* xq = xr[r][b].qs + 64 * c;
        const __m256i x_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
        const __m256i x_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + 32));
        // Codes <= 31: each vpmaddubsw pair sum is at most 2 * 31 * 128, no int16 saturation.
        const __m256i p_lo = _mm256_maddubs_epi16(lo, x_lo), p_hi = _mm256_maddubs_epi16(hi, x_hi);
        isum[r] = madd_acc(c == 0 ? _mm256_madd_epi16(p_lo, s_lo) : madd_acc(isum[r], p_lo, s_lo),
                           p_hi, s_hi);
      }
    }
    const float dw = f16(w[b].d), dm = f16(w[b].dmin);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      const __m256i msum = _mm256_madd_epi16(bs, mins);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(dw * xb.d), acc[r]);
      acc_min[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(dm * xb.d), acc_min[r]);
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = hsum(_mm256_sub_ps(acc[r], acc_min[r]));
}

// One Q6_K weight row against RB activation rows. Codes are 0..63 (value = code - 32).
template <int RB>
void q6_k_rows(const block_q6_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  const __m256i m30 = _mm256_set1_epi8(0x30);
  __m256 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales));
    __m256i isum[RB];
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[b].ql + 64 * h;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh + 32 * h));
      for (int t = 0; t < 4; ++t) {
        // Elements 128h + 32t ..+32: nibble of l0 (t even) / l1 (t odd), low (t < 2) or high;
        // high bits 2t..2t+1 of qh moved to bits 4..5.
        const __m256i l = t % 2 == 0 ? l0 : l1;
        const __m256i low4 = _mm256_and_si256(t < 2 ? l : _mm256_srli_epi16(l, 4), m4);
        __m256i high2;
        switch (t) {
          case 0:
            high2 = _mm256_slli_epi16(qh, 4);
            break;
          case 1:
            high2 = _mm256_slli_epi16(qh, 2);
            break;
          case 2:
            high2 = qh;
            break;
          default:
            high2 = _mm256_srli_epi16(qh, 2);
            break;
        }
        const __m256i q = _mm256_or_si256(low4, _mm256_and_si256(high2, m30));
        // Groups g = 8h + 2t (low 128 bits) and g + 1 (high 128 bits).
        const int g = 8 * h + 2 * t;
        const __m128i pick = _mm_set_epi8(g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g + 1, g,
                                          g, g, g, g, g, g, g);
        const __m256i s = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
        for (int r = 0; r < RB; ++r) {
          const int8_t* xq = xr[r][b].qs + 128 * h + 32 * t;
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq));
          const __m256i p = _mm256_maddubs_epi16(q, xv);
          isum[r] = (h == 0 && t == 0) ? _mm256_madd_epi16(p, s) : madd_acc(isum[r], p, s);
        }
      }
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    const float dw = f16(w[b].d);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      // sum_g scale_g * 32 * bsum_g: the -32 of every code.
      const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
      const __m256i total = _mm256_sub_epi32(isum[r], offset);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(total), _mm256_set1_ps(dw * xb.d), acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = hsum(acc[r]);
}

template <int RB>
struct Q4KRows {
  static void run(const block_q4_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q4_k_rows<RB>(w, x, ldx, nb, y, ldy);
  }
};

template <int RB>
struct Q5KRows {
  static void run(const block_q5_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q5_k_rows<RB>(w, x, ldx, nb, y, ldy);
  }
};

template <int RB>
struct Q6KRows {
  static void run(const block_q6_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q6_k_rows<RB>(w, x, ldx, nb, y, ldy);
  }
};

}  // namespace

// One body serves as both the gemv and the gemm entry of the table (see kquant.h).
void QG_KQ(matmul_q4_k_q8_k)(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q4_K, Q4KRows, kTileRows>(a, n0, n1);
}

void QG_KQ(matmul_q6_k_q8_k)(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q6_K, Q6KRows, kTileRows>(a, n0, n1);
}

void QG_KQ(matmul_q5_k_q8_k)(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q5_K, Q5KRows, kTileRows>(a, n0, n1);
}

}  // namespace qgemma

#undef QG_KQ
