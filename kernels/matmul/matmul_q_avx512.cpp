// AVX-512 VNNI GEMV for the plain (not repacked) Q4_0 and Q8_0 layouts against Q8_0 activations.
//
// One zmm holds the same block of 4 weight rows, one row per 128-bit lane (Q4: 16 bytes of
// nibbles -> low and high vectors; Q8: the two 16-byte halves). The activation block's halves are
// broadcast to the 4 lanes, so two vpdpbusd give each lane 4 partial sums of its row's block
// dot product; the block scale d_w * d_x is applied per lane and the 4 partial sums of each lane
// are added once at the end of the row. Weights enter vpdpbusd unsigned (Q4: nibble = q + 8,
// Q8: q ^ 0x80 = q + 128); the first dword of each lane starts at -offset * sum(x).
// The repacked layouts (matmul_x8_avx512.cpp) are faster for GEMM; this kernel serves any R by
// tiles of 8 activation rows but is meant for R <= 8.
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "matmul_q_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

// GCC 12 reports false -Wuninitialized warnings inside its AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxRB = 8;
constexpr int64_t kChunk = 256;

struct ActPrep {
  alignas(16) int32_t ncorr[kMaxRB][kChunk][4];  // {-offset * sum(x), 0, 0, 0}
  float dx[kMaxRB][kChunk];
};

inline int32_t block_sum(const block_q8_0& x) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), v);
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(t);
}

template <bool kQ4>
using BlockOf = std::conditional_t<kQ4, block_q4_0, block_q8_0>;

inline __m512i load4x128(const void* p0, const void* p1, const void* p2, const void* p3) {
  __m512i v = _mm512_zextsi128_si512(_mm_loadu_si128(static_cast<const __m128i*>(p0)));
  v = _mm512_inserti32x4(v, _mm_loadu_si128(static_cast<const __m128i*>(p1)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(static_cast<const __m128i*>(p2)), 2);
  return _mm512_inserti32x4(v, _mm_loadu_si128(static_cast<const __m128i*>(p3)), 3);
}

// Rows w[0..3] (pointers to their first block of the chunk) x RB activation rows; writes
// y[r * ldy + j] for j < nrows.
template <bool kQ4, int RB>
void micro(const BlockOf<kQ4>* const* w, int nrows, int64_t nb, const block_q8_0* const* xr,
           const ActPrep& p, float* y, int64_t ldy, bool accumulate) {
  __m512 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m512i lane_idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t b = 0; b < nb; ++b) {
    __m512i wa, wb;
    if constexpr (kQ4) {
      const __m512i v = load4x128(w[0][b].qs, w[1][b].qs, w[2][b].qs, w[3][b].qs);
      wa = _mm512_and_si512(v, lo4);
      wb = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
    } else {
      wa = _mm512_xor_si512(load4x128(w[0][b].qs, w[1][b].qs, w[2][b].qs, w[3][b].qs), flip);
      wb = _mm512_xor_si512(
          load4x128(w[0][b].qs + 16, w[1][b].qs + 16, w[2][b].qs + 16, w[3][b].qs + 16), flip);
    }
    const __m128i d4 =
        _mm_setr_epi16(static_cast<short>(w[0][b].d), static_cast<short>(w[1][b].d),
                       static_cast<short>(w[2][b].d), static_cast<short>(w[3][b].d), 0, 0, 0, 0);
    const __m512 dw = _mm512_permutexvar_ps(lane_idx, _mm512_castps128_ps512(_mm_cvtph_ps(d4)));
    for (int r = 0; r < RB; ++r) {
      const int8_t* xq = xr[r][b].qs;
      const __m512i xa =
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq)));
      const __m512i xb =
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq + 16)));
      __m512i i =
          _mm512_broadcast_i32x4(_mm_load_si128(reinterpret_cast<const __m128i*>(p.ncorr[r][b])));
      i = _mm512_dpbusd_epi32(i, wa, xa);
      i = _mm512_dpbusd_epi32(i, wb, xb);
      const __m512 s = _mm512_mul_ps(dw, _mm512_set1_ps(p.dx[r][b]));
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), s, acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    __m512 t = _mm512_add_ps(acc[r], _mm512_permute_ps(acc[r], _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm512_add_ps(t, _mm512_permute_ps(t, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m128 sums = _mm512_castps512_ps128(_mm512_permutexvar_ps(
        _mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t));
    const __mmask8 m = static_cast<__mmask8>((1u << nrows) - 1);
    float* yr = y + r * ldy;
    __m128 v = sums;
    if (accumulate) v = _mm_add_ps(v, _mm_maskz_loadu_ps(m, yr));
    _mm_mask_storeu_ps(yr, m, v);
  }
}

template <bool kQ4>
using MicroFn = void (*)(const BlockOf<kQ4>* const*, int, int64_t, const block_q8_0* const*,
                         const ActPrep&, float*, int64_t, bool);

template <bool kQ4>
MicroFn<kQ4> micro_for(int rb) {
  static constexpr MicroFn<kQ4> kFns[kMaxRB] = {micro<kQ4, 1>, micro<kQ4, 2>, micro<kQ4, 3>,
                                                micro<kQ4, 4>, micro<kQ4, 5>, micro<kQ4, 6>,
                                                micro<kQ4, 7>, micro<kQ4, 8>};
  return kFns[rb - 1];
}

template <bool kQ4>
void gemv_plain(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  constexpr int32_t kOffset = kQ4 ? 8 : 128;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);  // row n starts at w + n * nb
  const auto* x = static_cast<const uint8_t*>(a.x);
  alignas(64) ActPrep prep;
  const block_q8_0* xr[kMaxRB];
  for (int64_t kc = 0; kc < nb; kc += kChunk) {
    const int64_t kn = std::min(kChunk, nb - kc);
    for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
      const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
      for (int r = 0; r < rb; ++r) {
        xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx) + kc;
        for (int64_t b = 0; b < kn; ++b) {
          prep.ncorr[r][b][0] = -kOffset * block_sum(xr[r][b]);
          prep.ncorr[r][b][1] = prep.ncorr[r][b][2] = prep.ncorr[r][b][3] = 0;
          prep.dx[r][b] = _cvtsh_ss(xr[r][b].d);
        }
      }
      const MicroFn<kQ4> fn = micro_for<kQ4>(rb);
      for (int64_t n = n0; n < n1; n += 4) {
        const int nrows = static_cast<int>(std::min<int64_t>(4, n1 - n));
        const Block* rows[4];
        for (int j = 0; j < 4; ++j) rows[j] = w + (n + std::min(j, nrows - 1)) * nb + kc;
        fn(rows, nrows, kn, xr, prep, a.y + r0 * a.ldy + n, a.ldy, kc > 0);
      }
    }
  }
}

}  // namespace

void gemv_q4_0_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_plain<true>(a, n0, n1);
}
void gemv_q8_0_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_plain<false>(a, n0, n1);
}

}  // namespace qgemma
