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
//
// The repacked Q4_Kx8 / Q5_Kx8 / Q6_Kx8 (second half of the file; layouts in matmul.h) are what
// the loader uses on AVX-512 machines: 8 rows per 64-byte load, so one activation vector serves 8
// rows and Q4_Kx8 spends ~4 ops per 64 weight bytes in the inner loop (2 ands, 2 vpdpbusd) against
// ~12 for the plain layout (broadcast, shift, mask, vpermw, vpmaddubsw, vpdpwssd per 32 bytes).
// Measured single-thread on 12B GEMV shapes: ~2.3x (Q4_K) / ~1.4x (Q6_K) the plain kernels'
// throughput from cache, and close to the read bandwidth from DRAM. Prefill (R > 9) takes the
// x8 GEMM at the end of the file (weights rearranged per strip into 16-row x 4-byte vectors,
// activations broadcast from memory, 12-row register tiles): ~2x the row-tile path below.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VNNI__) || \
    !defined(__F16C__)
#error "matmul_kquant_avx512.cpp needs -mavx512f -mavx512bw -mavx512vnni -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <type_traits>
#include <utility>

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

// Q5_K: q4_k_rows plus bit 4 of every code. qh (32 bytes, byte l bit j = element 32j + l) is
// broadcast to both halves; chunk c tests bit 2c (lower half, sub-block 2c) and bit 2c + 1
// (upper half) with vptestmb and adds 16 under that mask.
template <int RB>
void q5_k_rows(const block_q5_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m512i m4 = _mm512_set1_epi8(0x0f);
  const __m512i m16 = _mm512_set1_epi8(0x10);
  const __m512i nibble_shift = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0);
  const __m512i idx[4] = {q4_k_scale_index<0>(), q4_k_scale_index<1>(), q4_k_scale_index<2>(),
                          q4_k_scale_index<3>()};
  __m512i bit[4];
  for (int c = 0; c < 4; ++c) {
    bit[c] = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * c))),
                                _mm256_set1_epi8(static_cast<char>(1 << (2 * c + 1))), 1);
  }
  __m512 acc[RB];
  __m256 acc_min[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int r = 0; r < RB; ++r) acc_min[r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    uint64_t sc, mn;
    q4_k_scales_mins(w[b].scales, &sc, &mn);
    const __m512i scales = _mm512_zextsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc)));
    const __m128i mn8 = _mm_cvtsi64_si128(mn);
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8));
    const __m512i qh =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qh)));
    __m512i isum[RB];
    for (int c = 0; c < 4; ++c) {
      const __m256i q32 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs + 32 * c));
      const __m512i q4 =
          _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(q32), nibble_shift), m4);
      const __m512i q5 = _mm512_mask_add_epi8(q4, _mm512_test_epi8_mask(qh, bit[c]), q4, m16);
      const __m512i s = _mm512_permutexvar_epi16(idx[c], scales);
      for (int r = 0; r < RB; ++r) {
        const __m512i xv = _mm512_loadu_si512(xr[r][b].qs + 64 * c);
        const __m512i p = _mm512_maddubs_epi16(q5, xv);
        isum[r] = c == 0 ? _mm512_madd_epi16(p, s) : _mm512_dpwssd_epi32(isum[r], p, s);
      }
    }
    uint32_t d_dmin;
    std::memcpy(&d_dmin, &w[b].d, sizeof(d_dmin));
    const __m128 dw_dm = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(d_dmin)));
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      const __m256 msum = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
      const __m128 scale = _mm_mul_ps(dw_dm, _mm_set1_ps(xb.d));
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

// ---- repacked Q4_Kx8 / Q6_Kx8 ---------------------------------------------------------------
// One 64-byte load of an x8 block holds 8 bytes of each of the 8 rows (4-byte interleave: lane l
// of 16 dwords = row l % 8, bytes 4 (l / 8) .. of that row's 8). The activation vector for it
// puts the matching activation dword pair in the same lanes (lanes 0..7 the first 4 bytes,
// 8..15 the next 4): one vpermd of an 8-byte load, shared by every weight group of the tile.
// Each int32 lane then sums 4 codes per instruction; row j's total is lane j + lane j + 8.
// Per 64 weight bytes Q4_Kx8 costs 2 ands + 2 vpdpbusd (vs ~6 ops per 32 bytes in the plain
// layout), and the sub-block scales are applied in float once per 8 rows and 32 elements.

// dword lanes 0..7 <- dword 0 of `src`, lanes 8..15 <- dword 1.
inline __m512i pair_index() {
  return _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
}
inline __m512i act8(const int8_t* p, __m512i pair_idx) {
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
  return _mm512_permutexvar_epi32(pair_idx, _mm512_castsi128_si512(v));
}

// 8 f16 -> 16 floats, lanes j and j + 8 = element j.
inline __m512 f16x8_twice(const f16_bits* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtph_ps(_mm256_broadcastsi128_si256(h));
}

// 8 f16 at lo and 8 at hi -> 16 floats.
inline __m512 load_f16_pair(const f16_bits* lo, const f16_bits* hi) {
  const __m256i h = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
  return _mm512_cvtph_ps(h);
}

// Sum of lanes j and j + 8 -> 8 floats at y.
inline void store_rows(__m512 acc, float* y) {
  _mm256_storeu_ps(y, _mm256_add_ps(_mm512_castps512_ps256(acc), _mm512_extractf32x8_ps(acc, 1)));
}

// (a & c) | (b & ~c), the bit-select ternary-logic immediate.
constexpr int kSelect = 0xE4;

// Sub-block sums of one Q8_K block for the min term, as int16 pairs in the order of
// q4_kx8_min_index: xs_a lane m = xsum(2 (m / 16) + m % 2), xs_b the same + 4.
struct MinSums {
  __m512i a, b;
};
struct MinSumIndex {
  alignas(64) int16_t a[32];
  alignas(64) int16_t b[32];
  constexpr MinSumIndex() : a{}, b{} {
    for (int m = 0; m < 32; ++m) {
      a[m] = static_cast<int16_t>(2 * (2 * (m / 16) + m % 2));  // int16 lane of xsum s (low half)
      b[m] = static_cast<int16_t>(2 * (4 + 2 * (m / 16) + m % 2));
    }
  }
};
constexpr MinSumIndex kMinSumIndex;

inline MinSums min_sums(const block_q8_K& x) {
  const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.bsums));
  const __m512i xs = _mm512_zextsi256_si512(_mm256_madd_epi16(bs, _mm256_set1_epi16(1)));
  return {_mm512_permutexvar_epi16(_mm512_load_si512(kMinSumIndex.a), xs),
          _mm512_permutexvar_epi16(_mm512_load_si512(kMinSumIndex.b), xs)};
}

// Software prefetch of x8 block b + kPrefetchBlocks of each group, spread over the block's loop
// (part `part` of `parts`): issuing all of a 1152-1680 byte block's lines at once fills the
// core's miss buffers and stalls the demand loads behind them; spread out (and with tiles of
// several groups = several streams) single-thread cold GEMV ran 5-10% faster on this machine.
constexpr int kPrefetchBlocks = 2;

template <typename X>
inline void prefetch_part(const X* blk, int part, int parts) {
  const char* p = reinterpret_cast<const char*>(blk + kPrefetchBlocks);
  constexpr int kLines = static_cast<int>((sizeof(X) + 63) / 64);
  const int l0 = kLines * part / parts, l1 = kLines * (part + 1) / parts;
  for (int l = l0; l < l1; ++l) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
}

// The block's 64 six-bit mins as int16 in q4_kx8_min_index order (low nibbles of mins[], high
// nibbles, plus bits 4..5 from the scale bytes' top bits): a = mins
// #0..31 (dword lane 8 p + j = row j's sub-blocks 2p, 2p + 1 for p < 2), b = mins #32..63
// (p = 2, 3). X = block_q4_Kx8 or block_q5_Kx8 (the same scale / min layout).
struct KX8Mins {
  __m512i a, b;
};
template <typename X>
inline KX8Mins kx8_mins(const X* blk) {
  const __m512i mn =
      _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->mins)));
  const __m512i sa =
      _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->scales)));
  const __m512i sb =
      _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->scales + 32)));
  const __m512i m0f16 = _mm512_set1_epi16(0x0f);
  return {_mm512_ternarylogic_epi32(mn, _mm512_srli_epi16(sa, 2), m0f16, kSelect),
          _mm512_ternarylogic_epi32(_mm512_srli_epi16(mn, 4), _mm512_srli_epi16(sb, 2), m0f16,
                                    kSelect)};
}

// G groups (8 G rows) of Q4_Kx8 x one Q8_K row.
template <int G>
void q4_kx8_tile(const block_q4_Kx8* w, int64_t nb, const block_q8_K* x, float* y) {
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i mf0 = _mm512_set1_epi8(static_cast<char>(0xf0));
  const __m512i m3f = _mm512_set1_epi32(0x3f);
  const __m512i pidx = pair_index();
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q4_Kx8* blk[G];
    for (int g = 0; g < G; ++g) blk[g] = w + g * nb + b;
    const block_q8_K& xb = x[b];
    __m512 fe[G], fo[G];  // even / odd (x16, from the 0xf0 mask) sub-blocks
    for (int g = 0; g < G; ++g) fe[g] = fo[g] = _mm512_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      __m512i xl[4], xh[4];
      for (int u = 0; u < 4; ++u) {
        xl[u] = act8(xb.qs + 64 * c + 8 * u, pidx);
        xh[u] = act8(xb.qs + 64 * c + 32 + 8 * u, pidx);
      }
      for (int g = 0; g < G; ++g) prefetch_part(blk[g], c, 4);
      for (int g = 0; g < G; ++g) {
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
        for (int u = 0; u < 4; ++u) {
          const __m512i v = _mm512_loadu_si512(blk[g]->qs + 256 * c + 64 * u);
          lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, m0f), xl[u]);
          hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(v, mf0), xh[u]);
        }
        // Scales of sub-blocks 2c (lanes 0..7) and 2c + 1 (8..15) as floats, then each half
        // copied to both halves.
        const __m512 s2 = _mm512_cvtepi32_ps(_mm512_and_si512(
            _mm512_cvtepu8_epi32(
                _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[g]->scales + 16 * c))),
            m3f));
        const __m512 sl = _mm512_shuffle_f32x4(s2, s2, 0x44);
        const __m512 sh = _mm512_shuffle_f32x4(s2, s2, 0xee);
        fe[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), sl, fe[g]);
        fo[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), sh, fo[g]);
      }
    }
    const MinSums ms = min_sums(xb);
    const __m512 xd = _mm512_set1_ps(xb.d);
    for (int g = 0; g < G; ++g) {
      const KX8Mins mins = kx8_mins(blk[g]);
      const __m512i mdot = _mm512_dpwssd_epi32(_mm512_madd_epi16(mins.a, ms.a), mins.b, ms.b);
      const __m512 d = _mm512_mul_ps(f16x8_twice(blk[g]->d), xd);
      const __m512 dmin = _mm512_mul_ps(f16x8_twice(blk[g]->dmin), xd);
      const __m512 sum = _mm512_fmadd_ps(fo[g], _mm512_set1_ps(1.0f / 16), fe[g]);
      acc[g] = _mm512_fmadd_ps(sum, d, acc[g]);
      acc[g] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mdot), dmin, acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) store_rows(acc[g], y + 8 * g);
}

// vpermw index for Q6_Kx8 sub-block s from the int16 scales of sub-blocks 4 (s / 4) .. + 3
// (scales[32 (s / 4) ..], sign-extended): int16 lanes 2 l, 2 l + 1 take row l % 8's scale.
inline __m512i q6_scale_index(int s) {
  alignas(64) int16_t idx[32];
  for (int i = 0; i < 32; ++i)
    idx[i] = static_cast<int16_t>(q6_kx8_scale_index((i / 2) % 8, s % 4));
  return _mm512_load_si512(idx);
}

// G groups of Q6_Kx8 x one Q8_K row: vpmaddubsw (6-bit codes x int8) + vpdpwssd with the int16
// sub-block scales, in four int32 accumulators per group (one per code quarter: independent
// chains). The -32 of every code is -32 * sum_s scale_s * bsum_s: the scales' order
// (q6_kx8_scale_index) pairs sub-blocks 2p, 2p + 1 of a row in one dword, so 4 vpmaddwd with
// (bsum 2p, bsum 2p + 1) pairs give it in the same [half][row] lanes as the main sums.
template <int G>
void q6_kx8_tile(const block_q6_Kx8* w, int64_t nb, const block_q8_K* x, float* y) {
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i m33 = _mm512_set1_epi8(0x33);
  const __m512i mcc = _mm512_set1_epi8(static_cast<char>(0xcc));
  const __m512i pidx = pair_index();
  const __m512i sidx[4] = {q6_scale_index(0), q6_scale_index(1), q6_scale_index(2),
                           q6_scale_index(3)};
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q6_Kx8* blk[G];
    for (int g = 0; g < G; ++g) blk[g] = w + g * nb + b;
    const block_q8_K& xb = x[b];
    // bsum pairs (2p, 2p + 1) for p = 2k (lanes 0..7) and 2k + 1 (lanes 8..15).
    const __m512i bs =
        _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)));
    __m512i bp[4];
    for (int k = 0; k < 4; ++k) {
      bp[k] = _mm512_permutexvar_epi32(
          _mm512_inserti64x4(_mm512_set1_epi32(2 * k), _mm256_set1_epi32(2 * k + 1), 1), bs);
    }
    for (int g = 0; g < G; ++g) {
      __m512i sc16[4];  // int16 scales of sub-blocks 4k .. 4k + 3
      for (int k = 0; k < 4; ++k) {
        sc16[k] = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[g]->scales + 32 * k)));
      }
      __m512i off = _mm512_madd_epi16(sc16[0], bp[0]);
      for (int k = 1; k < 4; ++k) off = _mm512_dpwssd_epi32(off, sc16[k], bp[k]);
      __m512i ta = _mm512_setzero_si512(), tb = ta, tc = ta, td = ta;
      for (int h = 0; h < 2; ++h) {
        for (int vp = 0; vp < 2; ++vp) {
          // Sub-blocks: A 8h + vp, C 8h + 2 + vp (from sc16[2h]), B 8h + 4 + vp, D 8h + 6 + vp
          // (sc16[2h + 1]).
          prefetch_part(blk[g], 2 * h + vp, 4);
          const __m512i sa = _mm512_permutexvar_epi16(sidx[vp], sc16[2 * h]);
          const __m512i sc = _mm512_permutexvar_epi16(sidx[2 + vp], sc16[2 * h]);
          const __m512i sb = _mm512_permutexvar_epi16(sidx[vp], sc16[2 * h + 1]);
          const __m512i sd = _mm512_permutexvar_epi16(sidx[2 + vp], sc16[2 * h + 1]);
          for (int k = 0; k < 2; ++k) {
            const int v = 2 * vp + k;
            const int8_t* xq = xb.qs + 128 * h + 8 * v;
            const __m512i qhv = _mm512_loadu_si512(blk[g]->qh + 64 * (4 * h + v));
            const __m512i ql1 = _mm512_loadu_si512(blk[g]->ql + 64 * (8 * h + v));
            const __m512i ql2 = _mm512_loadu_si512(blk[g]->ql + 64 * (8 * h + v + 4));
            const __m512i t1 = _mm512_and_si512(qhv, m33);
            const __m512i t2 = _mm512_and_si512(qhv, mcc);
            // (nibble) | (2 high bits at 4..5): qh bit pairs 0, 2, 4, 6 -> codes a, c, b, d.
            const __m512i qa =
                _mm512_ternarylogic_epi32(ql1, _mm512_slli_epi16(t1, 4), m0f, kSelect);
            const __m512i qb =
                _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql1, 4), t1, m0f, kSelect);
            const __m512i qc =
                _mm512_ternarylogic_epi32(ql2, _mm512_slli_epi16(t2, 2), m0f, kSelect);
            const __m512i qd = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql2, 4),
                                                         _mm512_srli_epi16(t2, 2), m0f, kSelect);
            ta = _mm512_dpwssd_epi32(ta, _mm512_maddubs_epi16(qa, act8(xq, pidx)), sa);
            tc = _mm512_dpwssd_epi32(tc, _mm512_maddubs_epi16(qc, act8(xq + 32, pidx)), sc);
            tb = _mm512_dpwssd_epi32(tb, _mm512_maddubs_epi16(qb, act8(xq + 64, pidx)), sb);
            td = _mm512_dpwssd_epi32(td, _mm512_maddubs_epi16(qd, act8(xq + 96, pidx)), sd);
          }
        }
      }
      const __m512i t =
          _mm512_sub_epi32(_mm512_add_epi32(_mm512_add_epi32(ta, tb), _mm512_add_epi32(tc, td)),
                           _mm512_slli_epi32(off, 5));
      const __m512 d = _mm512_mul_ps(f16x8_twice(blk[g]->d), _mm512_set1_ps(xb.d));
      acc[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), d, acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) store_rows(acc[g], y + 8 * g);
}

// One group of Q4_Kx8 x RB Q8_K rows (R > 1: GEMV for speculative batches, GEMM): the codes,
// scales and mins are unpacked once for all RB activation rows.
template <int RB>
void q4_kx8_rows(const block_q4_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                 int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i mf0 = _mm512_set1_epi8(static_cast<char>(0xf0));
  const __m512i m3f = _mm512_set1_epi32(0x3f);
  const __m512i pidx = pair_index();
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q4_Kx8* blk = w + b;
    __m512 fe[RB], fo[RB];
    for (int r = 0; r < RB; ++r) fe[r] = fo[r] = _mm512_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      prefetch_part(blk, c, 4);
      __m512i lo[RB], hi[RB];
      for (int r = 0; r < RB; ++r) lo[r] = hi[r] = _mm512_setzero_si512();
      for (int u = 0; u < 4; ++u) {
        const __m512i v = _mm512_loadu_si512(blk->qs + 256 * c + 64 * u);
        const __m512i vl = _mm512_and_si512(v, m0f), vh = _mm512_and_si512(v, mf0);
        for (int r = 0; r < RB; ++r) {
          lo[r] = _mm512_dpbusd_epi32(lo[r], vl, act8(xr[r][b].qs + 64 * c + 8 * u, pidx));
          hi[r] = _mm512_dpbusd_epi32(hi[r], vh, act8(xr[r][b].qs + 64 * c + 32 + 8 * u, pidx));
        }
      }
      const __m512 s2 = _mm512_cvtepi32_ps(_mm512_and_si512(
          _mm512_cvtepu8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales + 16 * c))),
          m3f));
      const __m512 sl = _mm512_shuffle_f32x4(s2, s2, 0x44);
      const __m512 sh = _mm512_shuffle_f32x4(s2, s2, 0xee);
      for (int r = 0; r < RB; ++r) {
        fe[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo[r]), sl, fe[r]);
        fo[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi[r]), sh, fo[r]);
      }
    }
    const KX8Mins mins = kx8_mins(blk);
    const __m512 d = f16x8_twice(blk->d);
    const __m512 dmin = f16x8_twice(blk->dmin);
    for (int r = 0; r < RB; ++r) {
      const MinSums ms = min_sums(xr[r][b]);
      const __m512i mdot = _mm512_dpwssd_epi32(_mm512_madd_epi16(mins.a, ms.a), mins.b, ms.b);
      const __m512 xd = _mm512_set1_ps(xr[r][b].d);
      const __m512 sum = _mm512_fmadd_ps(fo[r], _mm512_set1_ps(1.0f / 16), fe[r]);
      acc[r] = _mm512_fmadd_ps(sum, _mm512_mul_ps(d, xd), acc[r]);
      acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mdot), _mm512_mul_ps(dmin, xd), acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) store_rows(acc[r], y + r * ldy);
}

// One group of Q6_Kx8 x RB Q8_K rows (as q6_kx8_tile, codes decoded once for all rows; two
// accumulators per row).
template <int RB>
void q6_kx8_rows(const block_q6_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                 int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i m33 = _mm512_set1_epi8(0x33);
  const __m512i mcc = _mm512_set1_epi8(static_cast<char>(0xcc));
  const __m512i pidx = pair_index();
  const __m512i sidx[4] = {q6_scale_index(0), q6_scale_index(1), q6_scale_index(2),
                           q6_scale_index(3)};
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q6_Kx8* blk = w + b;
    __m512i sc16[4];
    for (int k = 0; k < 4; ++k) {
      sc16[k] = _mm512_cvtepi8_epi16(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->scales + 32 * k)));
    }
    __m512i t0[RB], t1s[RB];
    for (int r = 0; r < RB; ++r) {
      const __m512i bs = _mm512_zextsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xr[r][b].bsums)));
      __m512i off = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i bp = _mm512_permutexvar_epi32(
            _mm512_inserti64x4(_mm512_set1_epi32(2 * k), _mm256_set1_epi32(2 * k + 1), 1), bs);
        off = _mm512_dpwssd_epi32(off, sc16[k], bp);
      }
      t0[r] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(off, 5));
      t1s[r] = _mm512_setzero_si512();
    }
    for (int h = 0; h < 2; ++h) {
      for (int vp = 0; vp < 2; ++vp) {
        prefetch_part(blk, 2 * h + vp, 4);
        const __m512i sa = _mm512_permutexvar_epi16(sidx[vp], sc16[2 * h]);
        const __m512i sc = _mm512_permutexvar_epi16(sidx[2 + vp], sc16[2 * h]);
        const __m512i sb = _mm512_permutexvar_epi16(sidx[vp], sc16[2 * h + 1]);
        const __m512i sd = _mm512_permutexvar_epi16(sidx[2 + vp], sc16[2 * h + 1]);
        for (int k = 0; k < 2; ++k) {
          const int v = 2 * vp + k;
          const __m512i qhv = _mm512_loadu_si512(blk->qh + 64 * (4 * h + v));
          const __m512i ql1 = _mm512_loadu_si512(blk->ql + 64 * (8 * h + v));
          const __m512i ql2 = _mm512_loadu_si512(blk->ql + 64 * (8 * h + v + 4));
          const __m512i q1 = _mm512_and_si512(qhv, m33);
          const __m512i q2 = _mm512_and_si512(qhv, mcc);
          const __m512i qa = _mm512_ternarylogic_epi32(ql1, _mm512_slli_epi16(q1, 4), m0f, kSelect);
          const __m512i qb = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql1, 4), q1, m0f, kSelect);
          const __m512i qc = _mm512_ternarylogic_epi32(ql2, _mm512_slli_epi16(q2, 2), m0f, kSelect);
          const __m512i qd = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql2, 4),
                                                       _mm512_srli_epi16(q2, 2), m0f, kSelect);
          for (int r = 0; r < RB; ++r) {
            const int8_t* xq = xr[r][b].qs + 128 * h + 8 * v;
            t0[r] = _mm512_dpwssd_epi32(t0[r], _mm512_maddubs_epi16(qa, act8(xq, pidx)), sa);
            t1s[r] = _mm512_dpwssd_epi32(t1s[r], _mm512_maddubs_epi16(qc, act8(xq + 32, pidx)), sc);
            t0[r] = _mm512_dpwssd_epi32(t0[r], _mm512_maddubs_epi16(qb, act8(xq + 64, pidx)), sb);
            t1s[r] = _mm512_dpwssd_epi32(t1s[r], _mm512_maddubs_epi16(qd, act8(xq + 96, pidx)), sd);
          }
        }
      }
    }
    const __m512 d = f16x8_twice(blk->d);
    for (int r = 0; r < RB; ++r) {
      const __m512 dx = _mm512_mul_ps(d, _mm512_set1_ps(xr[r][b].d));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(t0[r], t1s[r])), dx, acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) store_rows(acc[r], y + r * ldy);
}

// ---- repacked Q5_Kx8 ---------------------------------------------------------------------------
// Q4_Kx8's loop plus the fifth bits: each 64-byte qs vector comes with two 64-bit masks (layout
// in matmul.h), loaded straight into mask registers (kmovq) and merged with one masked vpaddb
// each: low codes = (v & 0x0f) + 16 under mask 0, high codes = ((v >> 4) & 0x0f) + 16 under mask
// 1 (exact codes 0..31, so unlike Q4_Kx8 the high half needs no 1/16). 7 ops per 64 qs bytes
// (and, add, shift, and, add, 2 vpdpbusd) against Q4_Kx8's 4; the scales, mins, d and dmin are
// Q4_Kx8's.

inline __mmask64 load_mask(const uint8_t* p) {
  __mmask64 k;
  std::memcpy(&k, p, sizeof(k));
  return k;
}

// The 5-bit codes of qs vector `vi` of a block: low nibbles (sub-block 2c, lanes as the qs
// bytes) and high nibbles (sub-block 2c + 1).
struct Q5Codes {
  __m512i lo, hi;
};
inline Q5Codes q5_codes(const block_q5_Kx8* blk, int vi, __m512i m0f, __m512i m10) {
  const __m512i v = _mm512_loadu_si512(blk->qs + 64 * vi);
  const __m512i l = _mm512_and_si512(v, m0f);
  const __m512i h = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
  return {_mm512_mask_add_epi8(l, load_mask(blk->qh + 16 * vi), l, m10),
          _mm512_mask_add_epi8(h, load_mask(blk->qh + 16 * vi + 8), h, m10)};
}

// Scales of sub-blocks 2c (sl) and 2c + 1 (sh) as floats, lanes j and j + 8 = row j.
inline void q5_kx8_scales(const block_q5_Kx8* blk, int c, __m512i m3f, __m512* sl, __m512* sh) {
  const __m512 s2 = _mm512_cvtepi32_ps(_mm512_and_si512(
      _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->scales + 16 * c))),
      m3f));
  *sl = _mm512_shuffle_f32x4(s2, s2, 0x44);
  *sh = _mm512_shuffle_f32x4(s2, s2, 0xee);
}

// G groups (8 G rows) of Q5_Kx8 x one Q8_K row.
template <int G>
void q5_kx8_tile(const block_q5_Kx8* w, int64_t nb, const block_q8_K* x, float* y) {
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i m10 = _mm512_set1_epi8(0x10);
  const __m512i m3f = _mm512_set1_epi32(0x3f);
  const __m512i pidx = pair_index();
  __m512 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q5_Kx8* blk[G];
    for (int g = 0; g < G; ++g) blk[g] = w + g * nb + b;
    const block_q8_K& xb = x[b];
    __m512 fe[G], fo[G];  // even / odd sub-blocks
    for (int g = 0; g < G; ++g) fe[g] = fo[g] = _mm512_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      __m512i xl[4], xh[4];
      for (int u = 0; u < 4; ++u) {
        xl[u] = act8(xb.qs + 64 * c + 8 * u, pidx);
        xh[u] = act8(xb.qs + 64 * c + 32 + 8 * u, pidx);
      }
      for (int g = 0; g < G; ++g) prefetch_part(blk[g], c, 4);
      for (int g = 0; g < G; ++g) {
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
        for (int u = 0; u < 4; ++u) {
          const Q5Codes q = q5_codes(blk[g], 4 * c + u, m0f, m10);
          lo = _mm512_dpbusd_epi32(lo, q.lo, xl[u]);
          hi = _mm512_dpbusd_epi32(hi, q.hi, xh[u]);
        }
        __m512 sl, sh;
        q5_kx8_scales(blk[g], c, m3f, &sl, &sh);
        fe[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo), sl, fe[g]);
        fo[g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi), sh, fo[g]);
      }
    }
    const MinSums ms = min_sums(xb);
    const __m512 xd = _mm512_set1_ps(xb.d);
    for (int g = 0; g < G; ++g) {
      const KX8Mins mins = kx8_mins(blk[g]);
      const __m512i mdot = _mm512_dpwssd_epi32(_mm512_madd_epi16(mins.a, ms.a), mins.b, ms.b);
      const __m512 d = _mm512_mul_ps(f16x8_twice(blk[g]->d), xd);
      const __m512 dmin = _mm512_mul_ps(f16x8_twice(blk[g]->dmin), xd);
      acc[g] = _mm512_fmadd_ps(_mm512_add_ps(fe[g], fo[g]), d, acc[g]);
      acc[g] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mdot), dmin, acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) store_rows(acc[g], y + 8 * g);
}

// One group of Q5_Kx8 x RB Q8_K rows (R > 1): codes, scales and mins decoded once for all rows.
template <int RB>
void q5_kx8_rows(const block_q5_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                 int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i m10 = _mm512_set1_epi8(0x10);
  const __m512i m3f = _mm512_set1_epi32(0x3f);
  const __m512i pidx = pair_index();
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const block_q5_Kx8* blk = w + b;
    __m512 fe[RB], fo[RB];
    for (int r = 0; r < RB; ++r) fe[r] = fo[r] = _mm512_setzero_ps();
    for (int c = 0; c < 4; ++c) {
      prefetch_part(blk, c, 4);
      __m512i lo[RB], hi[RB];
      for (int r = 0; r < RB; ++r) lo[r] = hi[r] = _mm512_setzero_si512();
      for (int u = 0; u < 4; ++u) {
        const Q5Codes q = q5_codes(blk, 4 * c + u, m0f, m10);
        for (int r = 0; r < RB; ++r) {
          lo[r] = _mm512_dpbusd_epi32(lo[r], q.lo, act8(xr[r][b].qs + 64 * c + 8 * u, pidx));
          hi[r] = _mm512_dpbusd_epi32(hi[r], q.hi, act8(xr[r][b].qs + 64 * c + 32 + 8 * u, pidx));
        }
      }
      __m512 sl, sh;
      q5_kx8_scales(blk, c, m3f, &sl, &sh);
      for (int r = 0; r < RB; ++r) {
        fe[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lo[r]), sl, fe[r]);
        fo[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(hi[r]), sh, fo[r]);
      }
    }
    const KX8Mins mins = kx8_mins(blk);
    const __m512 d = f16x8_twice(blk->d);
    const __m512 dmin = f16x8_twice(blk->dmin);
    for (int r = 0; r < RB; ++r) {
      const MinSums ms = min_sums(xr[r][b]);
      const __m512i mdot = _mm512_dpwssd_epi32(_mm512_madd_epi16(mins.a, ms.a), mins.b, ms.b);
      const __m512 xd = _mm512_set1_ps(xr[r][b].d);
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(fe[r], fo[r]), _mm512_mul_ps(d, xd), acc[r]);
      acc[r] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mdot), _mm512_mul_ps(dmin, xd), acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) store_rows(acc[r], y + r * ldy);
}

template <int RB>
struct Q5KX8Rows {
  static void run(const block_q5_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                  int64_t ldy) {
    q5_kx8_rows<RB>(w, nb, x, ldx, y, ldy);
  }
};
template <int G>
struct Q5KX8Tile {
  static void run(const block_q5_Kx8* w, int64_t nb, const block_q8_K* x, float* y) {
    q5_kx8_tile<G>(w, nb, x, y);
  }
};

template <int RB>
struct Q4KX8Rows {
  static void run(const block_q4_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                  int64_t ldy) {
    q4_kx8_rows<RB>(w, nb, x, ldx, y, ldy);
  }
};
template <int RB>
struct Q6KX8Rows {
  static void run(const block_q6_Kx8* w, int64_t nb, const uint8_t* x, size_t ldx, float* y,
                  int64_t ldy) {
    q6_kx8_rows<RB>(w, nb, x, ldx, y, ldy);
  }
};

template <int G>
struct Q4KX8Tile {
  static void run(const block_q4_Kx8* w, int64_t nb, const block_q8_K* x, float* y) {
    q4_kx8_tile<G>(w, nb, x, y);
  }
};
template <int G>
struct Q6KX8Tile {
  static void run(const block_q6_Kx8* w, int64_t nb, const block_q8_K* x, float* y) {
    q6_kx8_tile<G>(w, nb, x, y);
  }
};

// Groups [n0 / 8, n1 / 8) in panels of ~512 KiB (L2). R = 1: tiles of up to TileGroups groups
// (several weight streams at once), one pass over the weights. R > 1 (R = 2..8 here, verification
// batches; larger R takes kx8_gemm below): each group against tiles of up to kX8RowTile
// activation rows (the weights decoded once per row tile), the panel reused from L2 by every row
// tile.
constexpr int kX8RowTile = 4;

template <typename X, template <int> class Tile, int TileGroups, template <int> class Rows>
void kquant_x8_matmul(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK_K;
  const X* w = static_cast<const X*>(a.w);
  const int64_t g0 = n0 / 8, g1 = n1 / 8;
  const int64_t group_bytes = nb * static_cast<int64_t>(sizeof(X));
  int64_t panel = (512 * 1024) / (group_bytes > 0 ? group_bytes : 1) / TileGroups * TileGroups;
  if (panel < TileGroups) panel = TileGroups;
  const uint8_t* x = static_cast<const uint8_t*>(a.x);
  for (int64_t p0 = g0; p0 < g1; p0 += panel) {
    const int64_t p1 = p0 + panel < g1 ? p0 + panel : g1;
    if (a.R == 1) {
      const auto* x0 = reinterpret_cast<const block_q8_K*>(x);
      for (int64_t g = p0; g < p1; g += TileGroups) {
        const int64_t cnt = p1 - g < TileGroups ? p1 - g : TileGroups;
        kquant_detail::run_rows<Tile, TileGroups>(cnt, w + g * nb, nb, x0, a.y + 8 * g);
      }
      continue;
    }
    for (int64_t r0 = 0; r0 < a.R; r0 += kX8RowTile) {
      const int64_t rb = a.R - r0 < kX8RowTile ? a.R - r0 : kX8RowTile;
      for (int64_t g = p0; g < p1; ++g) {
        kquant_detail::run_rows<Rows, kX8RowTile>(rb, w + g * nb, nb, x + r0 * a.ldx, a.ldx,
                                                  a.y + r0 * a.ldy + 8 * g, a.ldy);
      }
    }
  }
}

// ---- K-quant x8 GEMM (prefill, R > kX8GemmMinRows): Q4_Kx8, Q5_Kx8, Q6_Kx8 --------------------
// "Outer product" register layout as the Q4_0x8 GEMM (matmul_x8_avx512.cpp): one zmm holds 16
// weight rows (two groups) x the 4 codes of one dword position k (elements 4k .. 4k + 3), and
// vpdpbusd with activation row r's 4 bytes at 4k broadcast from memory (embedded broadcast)
// adds 16 partial dot products. The x8 layouts hold 8 rows x 8 bytes per vector, so the weights
// are first rearranged ("strip prep", once per K chunk, super-tile of activation rows and 16-row
// strip, reused by every row tile): codes decoded to bytes (Q4: nibble; Q5: + fifth bit; Q6:
// 6 bits, unsigned 0..63) and the two groups' vectors regrouped with vshufi64x2 into 64 code
// vectors per block, plus per block the float scales d * scale_s per sub-block (S = 8 of 32
// elements for Q4/Q5, 16 of 16 for Q6), and for the bsums term (Q4/Q5: - dmin * sum_s min_s *
// xsum_s; Q6: -32 d * sum_s scale_s * bsum_s) its per-row factor and its int16 pairs (P = 4 / 8
// dwords per row). Activation rows are copied per super-tile into a contiguous buffer (256 bytes
// per row and block) so that a tile of up to kGemmRB rows is addressed from one base register
// with constant displacements, plus each row's matching int16 sum pairs and d.
// Per 16 weight rows, activation row and block the micro-kernel spends 64 vpdpbusd on the codes,
// S x (convert + FMA) for the sub-block scales, P vpdpwssd + convert + multiply for the bsums
// term and one FMA into y: Q4_K/Q5_K 64 of 87 ops are vpdpbusd, Q6_K 64 of 107; the weight
// decode is out of the loop.
// R above this takes the GEMM path. Speculative verification evaluates up to 9 rows (8 drafts + the
// last accepted token) and, in its exact mode (Session::set_batch_invariant), needs every row's
// result bit-identical to a decoding step's: R <= 9 stays on the tile / rows kernels above, whose
// per-row arithmetic is the R = 1 tile's (runtime_test_batch_invariance).
constexpr int64_t kX8GemmMinRows = 9;
constexpr int kGemmRB = 12;          // activation rows per micro tile (12 int + 12 float acc)
constexpr int64_t kGemmChunk = 8;    // K blocks per chunk (2048 elements)
constexpr int64_t kGemmSuper = 128;  // activation rows per super-tile

// One block of a 16-row strip, rearranged for the micro-kernel (Q4/Q5: 4928 bytes, Q6: 5696).
template <int S, int P>
struct alignas(64) KStripBlock {
  uint8_t codes[64][64];  // [k] lane i: row i's codes of elements 4k .. 4k + 3
  float scale[S][16];     // [s] lane i: d_i * scale_i,s
  float neg[16];          // the bsums term's factor: -dmin_i (Q4/Q5), -32 d_i (Q6)
  int16_t pairs[P][32];   // [p] dword lane i: row i's (min or scale) of sub-blocks 2p, 2p + 1
};

// Per activation row and block: the matching int16 sum pairs (Q4/Q5: sums of 32, Q6: the bsums
// of 16) and d.
template <int P>
struct KActPrep {
  int32_t xs[P];
  float d;
};

template <typename X>
struct KGemmFormat {  // Q4_Kx8, Q5_Kx8
  static constexpr int S = 8, P = 4;
};
template <>
struct KGemmFormat<block_q6_Kx8> {
  static constexpr int S = 16, P = 8;
};

// The calling thread's buffers (strips ~40-45 KiB, activations 256 KiB, sums <= 36 KiB).
template <int S, int P>
KStripBlock<S, P>* strip_buffer() {
  alignas(64) static thread_local KStripBlock<S, P> buf[kGemmChunk];
  return buf;
}
alignas(64) thread_local int8_t t_act[kGemmSuper * kGemmChunk * QK_K];
template <int P>
KActPrep<P>* act_prep_buffer() {
  alignas(64) static thread_local KActPrep<P> buf[kGemmSuper * kGemmChunk];
  return buf;
}

using I32u = int32_t __attribute__((may_alias, aligned(1)));

// acc + w (unsigned bytes) . the 4 signed bytes at p broadcast to all lanes (GCC does not fold
// the broadcast into vpdpbusd itself).
inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const int8_t* p) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const I32u*>(p)));
  return acc;
}
// acc + int16 pairs of w . the int16 pair at p broadcast to all lanes.
inline __m512i dpwssd_bcast(__m512i acc, __m512i w, const int32_t* p) {
  asm("vpdpwssd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const I32u*>(p)));
  return acc;
}

// Stores the code vectors of dword positions k (rows 0..7 from c0's lanes 0..7, rows 8..15 from
// c1's) and k + 1 (their lanes 8..15).
template <int S, int P>
inline void store_code_pair(KStripBlock<S, P>& o, int k, __m512i c0, __m512i c1) {
  _mm512_store_si512(o.codes[k], _mm512_shuffle_i64x2(c0, c1, 0x44));
  _mm512_store_si512(o.codes[k + 1], _mm512_shuffle_i64x2(c0, c1, 0xee));
}

// Strip prep: blocks [0, kn) of groups g0 (rows 0..7) and g1 (rows 8..15) -> out[0, kn).
// X = block_q4_Kx8 or block_q5_Kx8 (Q5: the fifth bits added to the codes, 0..31).
template <typename X>
void q4_kx8_prep_strip(const X* g0, const X* g1, int64_t kn, KStripBlock<8, 4>* out) {
  constexpr bool kQ5 = std::is_same_v<X, block_q5_Kx8>;
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i m10 = _mm512_set1_epi8(0x10);
  const __m512i m3f = _mm512_set1_epi32(0x3f);
  for (int64_t b = 0; b < kn; ++b) {
    const X* x[2] = {g0 + b, g1 + b};
    KStripBlock<8, 4>& o = out[b];
    // qs vector 4c + u: lanes 0..7 = row j's qs bytes 32c + 8u .. + 3 (low nibbles: elements
    // 64c + 8u .., dword position 16c + 2u; high nibbles: + 32 elements, position + 8), lanes
    // 8..15 the next 4 bytes (position + 1).
    for (int c = 0; c < 4; ++c) {
      for (int u = 0; u < 4; ++u) {
        const int vi = 4 * c + u;
        __m512i lo[2], hi[2];
        for (int g = 0; g < 2; ++g) {
          const __m512i v = _mm512_loadu_si512(x[g]->qs + 64 * vi);
          lo[g] = _mm512_and_si512(v, m0f);
          hi[g] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m0f);
          if constexpr (kQ5) {
            lo[g] = _mm512_mask_add_epi8(lo[g], load_mask(x[g]->qh + 16 * vi), lo[g], m10);
            hi[g] = _mm512_mask_add_epi8(hi[g], load_mask(x[g]->qh + 16 * vi + 8), hi[g], m10);
          }
        }
        store_code_pair(o, 16 * c + 2 * u, lo[0], lo[1]);
        store_code_pair(o, 16 * c + 2 * u + 8, hi[0], hi[1]);
      }
    }
    const __m512 d = load_f16_pair(x[0]->d, x[1]->d);
    for (int s = 0; s < 8; ++s) {
      const __m128i sc8 = _mm_unpacklo_epi64(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[0]->scales + 8 * s)),
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[1]->scales + 8 * s)));
      const __m512 sc = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_cvtepu8_epi32(sc8), m3f));
      _mm512_store_ps(o.scale[s], _mm512_mul_ps(sc, d));
    }
    _mm512_store_ps(o.neg,
                    _mm512_sub_ps(_mm512_setzero_ps(), load_f16_pair(x[0]->dmin, x[1]->dmin)));
    const KX8Mins m0 = kx8_mins(x[0]), m1 = kx8_mins(x[1]);
    _mm512_store_si512(o.pairs[0], _mm512_shuffle_i64x2(m0.a, m1.a, 0x44));
    _mm512_store_si512(o.pairs[1], _mm512_shuffle_i64x2(m0.a, m1.a, 0xee));
    _mm512_store_si512(o.pairs[2], _mm512_shuffle_i64x2(m0.b, m1.b, 0x44));
    _mm512_store_si512(o.pairs[3], _mm512_shuffle_i64x2(m0.b, m1.b, 0xee));
  }
}

// The same for Q6_Kx8: codes decoded as in q6_kx8_tile (unsigned 0..63; the -32 goes to the
// bsums term), 16 float scales, -32 d, and the int8 scale pairs sign-extended to int16.
void q6_kx8_prep_strip(const block_q6_Kx8* g0, const block_q6_Kx8* g1, int64_t kn,
                       KStripBlock<16, 8>* out) {
  const __m512i m0f = _mm512_set1_epi8(0x0f);
  const __m512i m33 = _mm512_set1_epi8(0x33);
  const __m512i mcc = _mm512_set1_epi8(static_cast<char>(0xcc));
  for (int64_t b = 0; b < kn; ++b) {
    const block_q6_Kx8* x[2] = {g0 + b, g1 + b};
    KStripBlock<16, 8>& o = out[b];
    for (int h = 0; h < 2; ++h) {
      for (int v = 0; v < 4; ++v) {
        // Elements 128h + 8v + (0..7) (a), + 32 (c), + 64 (b), + 96 (d).
        __m512i qa[2], qb[2], qc[2], qd[2];
        for (int g = 0; g < 2; ++g) {
          const __m512i qhv = _mm512_loadu_si512(x[g]->qh + 64 * (4 * h + v));
          const __m512i ql1 = _mm512_loadu_si512(x[g]->ql + 64 * (8 * h + v));
          const __m512i ql2 = _mm512_loadu_si512(x[g]->ql + 64 * (8 * h + v + 4));
          const __m512i t1 = _mm512_and_si512(qhv, m33);
          const __m512i t2 = _mm512_and_si512(qhv, mcc);
          qa[g] = _mm512_ternarylogic_epi32(ql1, _mm512_slli_epi16(t1, 4), m0f, kSelect);
          qb[g] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql1, 4), t1, m0f, kSelect);
          qc[g] = _mm512_ternarylogic_epi32(ql2, _mm512_slli_epi16(t2, 2), m0f, kSelect);
          qd[g] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql2, 4), _mm512_srli_epi16(t2, 2),
                                            m0f, kSelect);
        }
        const int k = 32 * h + 2 * v;
        store_code_pair(o, k, qa[0], qa[1]);
        store_code_pair(o, k + 8, qc[0], qc[1]);
        store_code_pair(o, k + 16, qb[0], qb[1]);
        store_code_pair(o, k + 24, qd[0], qd[1]);
      }
    }
    const __m512 d = load_f16_pair(x[0]->d, x[1]->d);
    for (int p = 0; p < 8; ++p) {
      // int16 lane 2j + t = row j's scale of sub-block 2p + t (rows 8..15 from g1).
      const __m512i sc = _mm512_cvtepi8_epi16(_mm256_inserti128_si256(
          _mm256_castsi128_si256(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[0]->scales + 16 * p))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[1]->scales + 16 * p)), 1));
      _mm512_store_si512(o.pairs[p], sc);
      const __m512i even = _mm512_srai_epi32(_mm512_slli_epi32(sc, 16), 16);
      const __m512i odd = _mm512_srai_epi32(sc, 16);
      _mm512_store_ps(o.scale[2 * p], _mm512_mul_ps(_mm512_cvtepi32_ps(even), d));
      _mm512_store_ps(o.scale[2 * p + 1], _mm512_mul_ps(_mm512_cvtepi32_ps(odd), d));
    }
    _mm512_store_ps(o.neg, _mm512_mul_ps(d, _mm512_set1_ps(-32.0f)));
  }
}

// Activation prep of rows [0, rows) (row r's chunk blocks start at xr[r]), blocks [0, kn):
// qs to act[(b * rows + r) * QK_K], sum pairs and d to prep[b * rows + r].
template <int P>
void kx8_prep_acts(const block_q8_K* const* xr, int rows, int64_t kn, int8_t* act,
                   KActPrep<P>* prep) {
  for (int64_t b = 0; b < kn; ++b) {
    for (int r = 0; r < rows; ++r) {
      const block_q8_K& xb = xr[r][b];
      std::memcpy(act + (b * rows + r) * QK_K, xb.qs, QK_K);
      KActPrep<P>& p = prep[b * rows + r];
      if constexpr (P == 8) {
        static_assert(sizeof(p.xs) == sizeof(xb.bsums));
        std::memcpy(p.xs, xb.bsums, sizeof(p.xs));  // (bsum 2p, bsum 2p + 1) as int16 pairs
      } else {
        for (int q = 0; q < 4; ++q) {
          const int lo = xb.bsums[4 * q] + xb.bsums[4 * q + 1];
          const int hi = xb.bsums[4 * q + 2] + xb.bsums[4 * q + 3];
          p.xs[q] = static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint16_t>(lo)) |
                                         static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16);
        }
      }
      p.d = xb.d;
    }
  }
}

// 16 weight rows (strip w[0, kn)) x RB activation rows (row r's block b at act + b * as + r *
// QK_K, prep at ap + b * ps + r): y[r * ldy + lanes m] (+)= the products.
template <int S, int P, int RB>
void kx8_gemm_micro(const KStripBlock<S, P>* w, int64_t kn, const int8_t* act, int64_t as,
                    const KActPrep<P>* ap, int64_t ps, float* y, int64_t ldy, bool accumulate,
                    __mmask16 m) {
  constexpr int kPos = 64 / S;  // dword positions per sub-block
  if (!accumulate) {
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) _mm512_mask_storeu_ps(y + r * ldy, m, _mm512_setzero_ps());
  }
  for (int64_t b = 0; b < kn; ++b) {
    const KStripBlock<S, P>& wb = w[b];
    const int8_t* xq = act + b * as;
    // One base register for all the activation operands (constant displacements): GCC would
    // otherwise address them as base + index, which un-laminates the fused load of vpdpbusd.
    asm("" : "+r"(xq));
    const KActPrep<P>* pb = ap + b * ps;
    __m512 fs[RB];
    {
      __m512i md[RB];
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) md[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int q = 0; q < P; ++q) {
        const __m512i mn = _mm512_load_si512(wb.pairs[q]);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) md[r] = dpwssd_bcast(md[r], mn, &pb[r].xs[q]);
      }
      const __m512 nd = _mm512_load_ps(wb.neg);
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) fs[r] = _mm512_mul_ps(_mm512_cvtepi32_ps(md[r]), nd);
    }
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      __m512i is[RB];
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) is[r] = _mm512_setzero_si512();
#pragma GCC unroll 8
      for (int k = 0; k < kPos; ++k) {
        const __m512i wv = _mm512_load_si512(wb.codes[kPos * s + k]);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          is[r] = dpbusd_bcast(is[r], wv, xq + r * QK_K + 4 * (kPos * s + k));
        }
      }
      const __m512 sc = _mm512_load_ps(wb.scale[s]);
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) fs[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[r]), sc, fs[r]);
    }
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      float* yr = y + r * ldy;
      _mm512_mask_storeu_ps(
          yr, m, _mm512_fmadd_ps(fs[r], _mm512_set1_ps(pb[r].d), _mm512_maskz_loadu_ps(m, yr)));
    }
  }
}

template <int S, int P>
using KGemmMicroFn = void (*)(const KStripBlock<S, P>*, int64_t, const int8_t*, int64_t,
                              const KActPrep<P>*, int64_t, float*, int64_t, bool, __mmask16);

template <int S, int P, int... RB>
constexpr auto kx8_gemm_micro_table(std::integer_sequence<int, RB...>) {
  return std::array<KGemmMicroFn<S, P>, sizeof...(RB)>{kx8_gemm_micro<S, P, RB + 1>...};
}

inline int64_t balanced_split(int64_t n, int64_t max_len) {
  const int64_t parts = (n + max_len - 1) / max_len;
  return (n + parts - 1) / parts;
}

// GEMM driver: K chunks of <= kGemmChunk blocks; per chunk, super-tiles of <= kGemmSuper
// activation rows (prep once); per 16-row strip of [n0, n1) the strip prep (in L2; an 8-row
// tail strip repeats its group and stores 8 lanes), then every row tile of the super-tile
// against it. Chunks, super-tiles and tiles are split evenly.
template <typename X>
void kx8_gemm(const MatmulArgs& a, int64_t n0, int64_t n1) {
  constexpr int S = KGemmFormat<X>::S, P = KGemmFormat<X>::P;
  static constexpr auto kMicro =
      kx8_gemm_micro_table<S, P>(std::make_integer_sequence<int, kGemmRB>{});
  KStripBlock<S, P>* const strip = strip_buffer<S, P>();
  KActPrep<P>* const act_prep = act_prep_buffer<P>();
  const int64_t nb = a.K / QK_K;
  const auto* w = static_cast<const X*>(a.w);  // group g starts at w + g * nb
  const auto* x = static_cast<const uint8_t*>(a.x);
  const block_q8_K* xr[kGemmSuper];
  const int64_t step = balanced_split(nb, kGemmChunk);
  const int64_t super = balanced_split(a.R, kGemmSuper);
  for (int64_t kc = 0; kc < nb; kc += step) {
    const int64_t kn = std::min(step, nb - kc);
    for (int64_t s0 = 0; s0 < a.R; s0 += super) {
      const int srows = static_cast<int>(std::min<int64_t>(super, a.R - s0));
      for (int r = 0; r < srows; ++r) {
        xr[r] = reinterpret_cast<const block_q8_K*>(x + (s0 + r) * a.ldx) + kc;
      }
      kx8_prep_acts<P>(xr, srows, kn, t_act, act_prep);
      const int tiles = (srows + kGemmRB - 1) / kGemmRB;
      for (int64_t n = n0; n < n1; n += 16) {
        const bool two = n1 - n >= 16;
        const X* g0 = w + (n / 8) * nb + kc;
        if constexpr (std::is_same_v<X, block_q6_Kx8>) {
          q6_kx8_prep_strip(g0, two ? g0 + nb : g0, kn, strip);
        } else {
          q4_kx8_prep_strip(g0, two ? g0 + nb : g0, kn, strip);
        }
        const __mmask16 m = two ? 0xFFFF : 0x00FF;
        for (int t = 0; t < tiles; ++t) {
          const int r0 = srows * t / tiles, r1 = srows * (t + 1) / tiles;
          kMicro[r1 - r0 - 1](strip, kn, t_act + r0 * QK_K, srows * QK_K, act_prep + r0, srows,
                              a.y + (s0 + r0) * a.ldy + n, a.ldy, kc > 0, m);
        }
      }
    }
  }
}

}  // namespace

void matmul_q4_kx8_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  if (a.R > kX8GemmMinRows) return kx8_gemm<block_q4_Kx8>(a, n0, n1);
  kquant_x8_matmul<block_q4_Kx8, Q4KX8Tile, 4, Q4KX8Rows>(a, n0, n1);
}

void matmul_q6_kx8_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  if (a.R > kX8GemmMinRows) return kx8_gemm<block_q6_Kx8>(a, n0, n1);
  kquant_x8_matmul<block_q6_Kx8, Q6KX8Tile, 2, Q6KX8Rows>(a, n0, n1);
}

void matmul_q5_kx8_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  if (a.R > kX8GemmMinRows) return kx8_gemm<block_q5_Kx8>(a, n0, n1);
  kquant_x8_matmul<block_q5_Kx8, Q5KX8Tile, 4, Q5KX8Rows>(a, n0, n1);
}

// One body serves as both the gemv and the gemm entry of the table (see kquant.h).
void matmul_q4_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q4_K, Q4KRows, kTileRows>(a, n0, n1);
}

void matmul_q6_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q6_K, Q6KRows, kTileRows>(a, n0, n1);
}

void matmul_q5_k_q8_k_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q5_K, Q5KRows, kTileRows>(a, n0, n1);
}

}  // namespace qgemma
