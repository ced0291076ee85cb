// AVX-512 VNNI Q4_K / Q6_K x Q8_K matmul. 64 codes per zmm: vpmaddubsw (u8 codes x s8
// activations -> int16 pairs), then vpdpwssd (VNNI) multiplies by the int16 sub-block scales
// and accumulates int32. vpdpbusd would need a separate int32 multiply per sub-block for the
// scales; vpmaddubsw + vpdpwssd applies them for free.
// Layout tricks so each zmm lines up with 64 consecutive Q8_K activations (one plain load):
//   Q4_K: vbroadcasti64x4 of 32 code bytes, per-half vpsrlvq (0 | 4), mask 0x0f -> the low
//         nibbles (sub-block 2c) and high nibbles (sub-block 2c+1) side by side.
//   Q6_K: 64 ql bytes give elements 0..63 (low nibbles) and 64..127 (high nibbles) of a half;
//         the qh bits come from one broadcast and per-half variable shifts.
// Q4_K's min term and Q6_K's -32 offset come from Q8_K's bsums.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VNNI__) || \
    !defined(__F16C__)
#error "matmul_kquant_avx512.cpp needs -mavx512f -mavx512bw -mavx512vnni -mf16c"
#endif

#include <immintrin.h>

#include <cstring>

// GCC 12's AVX-512 headers build vectors from deliberately uninitialized _mm512_undefined_*()
// values, which its own -Wuninitialized then reports at every inlined use.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/matmul/kquant.h"
#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

using kquant_detail::kquant_matmul;
using kquant_detail::prefetch_ahead;
using kquant_detail::q4_k_scales_mins;

constexpr int kTileRows = 8;  // activation rows per pass (32 zmm registers)

inline float f16(f16_bits h) { return _cvtsh_ss(h); }

// int16 lane i of the result = lane idx(i) of the 8 or 16 scales in `s` (vpermw).
template <int C>
inline __m512i q4_k_scale_index() {  // lanes 0..15 -> sub-block 2C, 16..31 -> 2C + 1
  return _mm512_inserti64x4(_mm512_set1_epi16(2 * C), _mm256_set1_epi16(2 * C + 1), 1);
}

template <int RB>
void q4_k_rows(const block_q4_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i nibble_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  const __m512i idx[4] = {q4_k_scale_index<0>(), q4_k_scale_index<1>(), q4_k_scale_index<2>(),
                          q4_k_scale_index<3>()};
  __m512 acc[RB];
  __m256 acc_min[RB];  // the min term, a separate chain so the two FMAs per block overlap
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int r = 0; r < RB; ++r) acc_min[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    uint64_t sc, mn;
    q4_k_scales_mins(w[b].scales, &sc, &mn);
    const __m512i scales = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc)));
    const __m128i mn8 = _mm_cvtsi64_si128(mn);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));  // m0 m0 m1 m1 ..
    __m512i isum[RB];
    for (int c = 0; c < 4; ++c) {
      // 32 code bytes in both halves; the upper half shifted by 4: low nibbles (sub-block 2c)
      // then high nibbles (2c + 1), matching 64 consecutive activations. (Splitting 64 bytes and
      // regrouping with vshufi64x2 measured no faster: port 5 is the busier one.)
      const __m256i q32 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m512i q =
          _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(q32), nibble_shift), m4);
      const __m512i s = _mm512_permutexvar_epi16(idx[c], scales);
      for (int r = 0; r < RB; ++r) {
        const __m512i xv = _mm512_loadu_si512(xr[r][b].qs + 64 * c);
        const __m512i p = _mm512_maddubs_epi16(q, xv);
        isum[r] = c == 0 ? _mm512_madd_epi16(p, s) : _mm512_dpwssd_epi32(isum[r], p, s);
      }
    }
    // d and dmin are adjacent f16s: one 32-bit load and one conversion give [d, dmin].
    uint32_t d_dmin;
    std::memcpy(&d_dmin, &w[b].d, sizeof(d_dmin));
    const __m128 dw_dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(d_dmin)));
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      const __m256 msum = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
      const __m128 scale = _mm_mul_ps(dw_dm, _mm_set1_ps(xb.d));  // [d * xd, dmin * xd]
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_broadcastss_ps(scale), acc[r]);
      acc_min[r] = _mm256_fmadd_ps(msum, _mm256_broadcastss_ps(_mm_movehdup_ps(scale)), acc_min[r]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    y[r * ldy] = _mm512_reduce_add_ps(_mm512_sub_ps(acc[r], _mm512_zextps256_ps512(acc_min[r])));
  }
}

// int16 lane i of 64-element chunk C -> group 4C + i / 8 (each qword holds 4 equal lanes).
template <int C>
inline __m512i q6_k_scale_index() {
  constexpr long long lanes = 0x0001000100010001LL;
  return _mm512_set_epi64((4 * C + 3) * lanes, (4 * C + 3) * lanes, (4 * C + 2) * lanes,
                          (4 * C + 2) * lanes, (4 * C + 1) * lanes, (4 * C + 1) * lanes,
                          (4 * C) * lanes, (4 * C) * lanes);
}

template <int RB>
void q6_k_rows(const block_q6_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i m30 = _mm512_set1_epi8(0x30);
  // High bits for elements 0..31 are qh bits 0..1 (<< 4), for 32..63 bits 2..3 (<< 2); for
  // 64..95 bits 4..5 (as they are), for 96..127 bits 6..7 (>> 2). Then mask 0x30.
  const __m512i shl_lo = _mm512_set_epi64(2, 2, 2, 2, 4, 4, 4, 4);
  const __m512i shr_hi = _mm512_set_epi64(2, 2, 2, 2, 0, 0, 0, 0);
  const __m512i idx[4] = {q6_k_scale_index<0>(), q6_k_scale_index<1>(), q6_k_scale_index<2>(),
                          q6_k_scale_index<3>()};
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    const __m256i sc16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].scales)));
    const __m512i scales = _mm512_zextsi256_si512(sc16);
    __m512i isum[RB];
    for (int h = 0; h < 2; ++h) {
      const __m512i l = _mm512_loadu_si512(w[b].ql + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh + 32 * h)));
      const __m512i high_a = _mm512_and_si512(_mm512_sllv_epi64(qh, shl_lo), m30);
      const __m512i high_b = _mm512_and_si512(_mm512_srlv_epi64(qh, shr_hi), m30);
      // (a & b) | c: ternary-logic immediate 0xEA.
      const __m512i qa = _mm512_ternarylogic_epi32(l, m4, high_a, 0xEA);  // elements 0..63
      const __m512i qb = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), m4, high_b, 0xEA);
      const __m512i sa = _mm512_permutexvar_epi16(idx[2 * h], scales);
      const __m512i sb = _mm512_permutexvar_epi16(idx[2 * h + 1], scales);
      for (int r = 0; r < RB; ++r) {
        const int8_t* xq = xr[r][b].qs + 128 * h;
        const __m512i pa = _mm512_maddubs_epi16(qa, _mm512_loadu_si512(xq));
        const __m512i pb = _mm512_maddubs_epi16(qb, _mm512_loadu_si512(xq + 64));
        const __m512i first =
            h == 0 ? _mm512_madd_epi16(pa, sa) : _mm512_dpwssd_epi32(isum[r], pa, sa);
        isum[r] = _mm512_dpwssd_epi32(first, pb, sb);
      }
    }
    const float dw = f16(w[b].d);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      // sum_g scale_g * 32 * bsum_g: the -32 of every code, subtracted in int32.
      const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
      const __m512i total = _mm512_sub_epi32(isum[r], _mm512_zextsi256_si512(offset));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(dw * xb.d), acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = _mm512_reduce_add_ps(acc[r]);
}

template <int RB>
struct Q4KRows {
  static void run(const block_q4_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q4_k_rows<RB>(w, x, ldx, nb, y, ldy);
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
void matmul_q4_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q4_K, Q4KRows, kTileRows>(a, n0, n1);
}

void matmul_q6_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q6_K, Q6KRows, kTileRows>(a, n0, n1);
}

}  // namespace qgemma
