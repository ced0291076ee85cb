// AVX2 GEMV for the plain (not repacked) Q4_0 and Q8_0 layouts against Q8_0 activations.
//
// One ymm holds the same block of 2 weight rows, one row per 128-bit lane; the activation block's
// halves are broadcast to both lanes. Products via vpmaddubsw + vpmaddwd (ones):
//  - Q4: nibbles (unsigned, q + 8) x int8; the low- and high-nibble products are summed in int16
//    (at most 2 * 2 * 15 * 128 = 7680), the first dword of each lane starts at -8 * sum(x);
//  - Q8: |w| x sign(x, w), one vpmaddwd per half (each pair at most 2 * 128 * 127 = 32512).
// Each lane keeps 4 partial sums of its row, scaled per block and added at the end of the row.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "matmul_q_avx2.cpp needs -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxRB = 8;
constexpr int64_t kChunk = 256;

struct ActPrep {
  alignas(16) int32_t ncorr[kMaxRB][kChunk][4];  // {-8 * sum(x), 0, 0, 0} (Q4 only)
  float dx[kMaxRB][kChunk];
};

inline int32_t block_sum(const block_q8_0& x) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
  const __m256i s =
      _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), v), _mm256_set1_epi16(1));
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(t);
}

template <bool kQ4>
using BlockOf = std::conditional_t<kQ4, block_q4_0, block_q8_0>;

inline __m256i load2x128(const void* p0, const void* p1) {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p0))),
      _mm_loadu_si128(static_cast<const __m128i*>(p1)), 1);
}

inline __m256i bcast128(const void* p) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(static_cast<const __m128i*>(p)));
}

template <bool kQ4, int RB>
void micro(const BlockOf<kQ4>* const* w, int nrows, int64_t nb, const block_q8_0* const* xr,
           const ActPrep& p, float* y, int64_t ldy, bool accumulate) {
  __m256 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    __m256i wa, wb;
    if constexpr (kQ4) {
      const __m256i v = load2x128(w[0][b].qs, w[1][b].qs);
      wa = _mm256_and_si256(v, lo4);
      wb = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
    } else {
      wa = load2x128(w[0][b].qs, w[1][b].qs);
      wb = load2x128(w[0][b].qs + 16, w[1][b].qs + 16);
    }
    const __m128 d2 = _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(w[0][b].d),
                                                  static_cast<short>(w[1][b].d), 0, 0, 0, 0, 0, 0));
    const __m256 dw = _mm256_setr_m128(_mm_permute_ps(d2, 0x00), _mm_permute_ps(d2, 0x55));
    const __m256i abs_a = kQ4 ? wa : _mm256_abs_epi8(wa);
    const __m256i abs_b = kQ4 ? wb : _mm256_abs_epi8(wb);
    for (int r = 0; r < RB; ++r) {
      const int8_t* xq = xr[r][b].qs;
      const __m256i xa = bcast128(xq), xb = bcast128(xq + 16);
      __m256i i;
      if constexpr (kQ4) {
        const __m256i s16 =
            _mm256_add_epi16(_mm256_maddubs_epi16(wa, xa), _mm256_maddubs_epi16(wb, xb));
        i = _mm256_add_epi32(_mm256_madd_epi16(s16, ones),
                             _mm256_broadcastsi128_si256(
                                 _mm_load_si128(reinterpret_cast<const __m128i*>(p.ncorr[r][b]))));
      } else {
        i = _mm256_add_epi32(
            _mm256_madd_epi16(_mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(xa, wa)), ones),
            _mm256_madd_epi16(_mm256_maddubs_epi16(abs_b, _mm256_sign_epi8(xb, wb)), ones));
      }
      const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(p.dx[r][b]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i), s, acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    const __m256 t = _mm256_hadd_ps(acc[r], acc[r]);  // lane: a0+a1, a2+a3, ...
    const __m256 u = _mm256_hadd_ps(t, t);            // lane sums in every slot of the lane
    float* yr = y + r * ldy;
    const float s0 = _mm256_cvtss_f32(u);
    const float s1 = _mm_cvtss_f32(_mm256_extractf128_ps(u, 1));
    yr[0] = accumulate ? yr[0] + s0 : s0;
    if (nrows > 1) yr[1] = accumulate ? yr[1] + s1 : s1;
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
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  alignas(32) ActPrep prep;
  const block_q8_0* xr[kMaxRB];
  for (int64_t kc = 0; kc < nb; kc += kChunk) {
    const int64_t kn = std::min(kChunk, nb - kc);
    for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
      const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
      for (int r = 0; r < rb; ++r) {
        xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx) + kc;
        for (int64_t b = 0; b < kn; ++b) {
          prep.ncorr[r][b][0] = kQ4 ? -8 * block_sum(xr[r][b]) : 0;
          prep.ncorr[r][b][1] = prep.ncorr[r][b][2] = prep.ncorr[r][b][3] = 0;
          prep.dx[r][b] = _cvtsh_ss(xr[r][b].d);
        }
      }
      const MicroFn<kQ4> fn = micro_for<kQ4>(rb);
      for (int64_t n = n0; n < n1; n += 2) {
        const int nrows = n + 1 < n1 ? 2 : 1;
        const Block* rows[2] = {w + n * nb + kc, w + (n + nrows - 1) * nb + kc};
        fn(rows, nrows, kn, xr, prep, a.y + r0 * a.ldy + n, a.ldy, kc > 0);
      }
    }
  }
}

}  // namespace

void gemv_q4_0_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_plain<true>(a, n0, n1);
}
void gemv_q8_0_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_plain<false>(a, n0, n1);
}

}  // namespace qgemma
