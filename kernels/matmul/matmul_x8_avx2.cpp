// AVX2 GEMV/GEMM for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0 activations.
//
// Same outer-product layout as matmul_x8_avx512.cpp, one ymm = the 8 rows of a group x one 4-byte
// chunk. AVX2 has no vpdpbusd, so products go through vpmaddubsw (u8 x s8 -> pairs summed in
// int16) and vpmaddwd with ones (-> int32):
//  - Q4: nibbles (0..15, unsigned) x int8 activations; the 8 chunk products of a block are summed
//    in int16 (at most 8 * 2 * 15 * 128 = 30720 < 2^15) before one vpmaddwd; the accumulator
//    starts at -8 * sum(x) (precomputed per activation block).
//  - Q8: |w| x sign(x, w) (each vpmaddubsw pair at most 2 * 128 * 127 = 32512), one vpmaddwd per
//    chunk; exact signed products, no offset.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "matmul_x8_avx2.cpp needs -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxRB = 8;
constexpr int64_t kChunk = 256;
constexpr size_t kL2Target = 512 * 1024;

struct ActPrep {
  int32_t ncorr[kMaxRB][kChunk];
  float dx[kMaxRB][kChunk];
};

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline int32_t block_sum(const block_q8_0& x) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
  // Sign-extend to int16 pairs summed: maddubs(1, x) sums adjacent pairs of x as signed.
  const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), v);
  const __m256i s = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(t);
}

template <bool kQ4>
using BlockOf = std::conditional_t<kQ4, block_q4_0x8, block_q8_0x8>;

// Software prefetch distance in blocks when the weights stream from memory (one activation
// tile): the hardware prefetcher alone kept one stream per core at ~55% of the read bandwidth
// here, 16 blocks (2.3 KiB) ahead ~75-80% (session 7).
constexpr int64_t kPrefetchBlocks = 16;

// 8 weight rows (one group) x RB activation rows over blocks [0, nb) of one K chunk. kStream:
// the weights come from memory (prefetch ahead), not from L2.
template <bool kQ4, int RB, bool kStream>
void micro(const BlockOf<kQ4>* g, int64_t nb, const block_q8_0* const* xr, const ActPrep& p,
           float* y, int64_t ldy, bool accumulate) {
  __m256 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = g[b];
    if constexpr (kStream) {
      const char* pf = reinterpret_cast<const char*>(g + b + kPrefetchBlocks);
      for (size_t o = 0; o < sizeof(B); o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(B.d)));
    __m256i w[8];
    if constexpr (kQ4) {
      for (int c = 0; c < 4; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B.qs + 32 * c));
        w[c] = _mm256_and_si256(v, lo4);
        w[c + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
      }
    } else {
      for (int c = 0; c < 8; ++c) {
        w[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B.qs + 32 * c));
      }
    }
    for (int r = 0; r < RB; ++r) {
      const int8_t* xq = xr[r][b].qs;
      __m256i isum;
      if constexpr (kQ4) {
        __m256i s16 = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(load_i32(xq)));
        for (int c = 1; c < 8; ++c) {
          s16 = _mm256_add_epi16(
              s16, _mm256_maddubs_epi16(w[c], _mm256_set1_epi32(load_i32(xq + 4 * c))));
        }
        isum = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(p.ncorr[r][b]));
      } else {
        isum = _mm256_setzero_si256();
        for (int c = 0; c < 8; ++c) {
          const __m256i xv = _mm256_set1_epi32(load_i32(xq + 4 * c));
          const __m256i prod =
              _mm256_maddubs_epi16(_mm256_abs_epi8(w[c]), _mm256_sign_epi8(xv, w[c]));
          isum = _mm256_add_epi32(isum, _mm256_madd_epi16(prod, ones));
        }
      }
      const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(p.dx[r][b]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc[r]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    float* yr = y + r * ldy;
    __m256 v = acc[r];
    if (accumulate) v = _mm256_add_ps(v, _mm256_loadu_ps(yr));
    _mm256_storeu_ps(yr, v);
  }
}

template <bool kQ4>
using MicroFn = void (*)(const BlockOf<kQ4>*, int64_t, const block_q8_0* const*, const ActPrep&,
                         float*, int64_t, bool);

template <bool kQ4, bool kStream>
MicroFn<kQ4> micro_for(int rb) {
  static constexpr MicroFn<kQ4> kFns[kMaxRB] = {micro<kQ4, 1, kStream>, micro<kQ4, 2, kStream>,
                                                micro<kQ4, 3, kStream>, micro<kQ4, 4, kStream>,
                                                micro<kQ4, 5, kStream>, micro<kQ4, 6, kStream>,
                                                micro<kQ4, 7, kStream>, micro<kQ4, 8, kStream>};
  return kFns[rb - 1];
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  alignas(32) ActPrep prep;
  const block_q8_0* xr[kMaxRB];
  for (int64_t kc = 0; kc < nb; kc += kChunk) {
    const int64_t kn = std::min(kChunk, nb - kc);
    // One activation tile (GEMV): stream all of [n0, n1) once. Several tiles (GEMM): N blocks of
    // about kL2Target bytes of this chunk's weights, reused from L2 by every tile.
    const int64_t chunk_row_bytes = kn * static_cast<int64_t>(sizeof(Block)) / 8;
    const bool streaming = a.R <= kMaxRB;
    const int64_t n_block =
        streaming ? n1 - n0 : std::max<int64_t>(8, kL2Target / chunk_row_bytes / 8 * 8);
    for (int64_t nbeg = n0; nbeg < n1; nbeg += n_block) {
      const int64_t nend = std::min(n1, nbeg + n_block);
      for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
        const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
        for (int r = 0; r < rb; ++r) {
          xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx) + kc;
          for (int64_t b = 0; b < kn; ++b) {
            prep.ncorr[r][b] = kQ4 ? -8 * block_sum(xr[r][b]) : 0;
            prep.dx[r][b] = _cvtsh_ss(xr[r][b].d);
          }
        }
        const MicroFn<kQ4> fn = streaming ? micro_for<kQ4, true>(rb) : micro_for<kQ4, false>(rb);
        for (int64_t n = nbeg; n < nend; n += 8) {
          fn(w + (n / 8) * nb + kc, kn, xr, prep, a.y + r0 * a.ldy + n, a.ldy, kc > 0);
        }
      }
    }
  }
}

}  // namespace

void matmul_q4_0x8_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<true>(a, n0, n1);
}
void matmul_q8_0x8_q8_0_avx2(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<false>(a, n0, n1);
}

}  // namespace qgemma
