// AVX2 GEMV/GEMM for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0 activations, compiled
// twice: matmul_x8_avx2.cpp (*_avx2) and, with QGEMMA_X8_AVXVNNI defined, matmul_x8_avxvnni.cpp
// (*_avxvnni: CPUs with the VEX-encoded vpdpbusd on ymm but no AVX-512, such as Intel's client
// cores since Alder Lake, i.e. most recent laptops; matmul.cpp puts these in the avx2 entries
// when avx_vnni_enabled()).
//
// Same outer-product layout as matmul_x8_avx512.cpp, one ymm = the 8 rows of a group x one 4-byte
// chunk; each activation chunk is broadcast to all lanes. The int8 products:
//  - AVX2 has no vpdpbusd, so they go through vpmaddubsw (u8 x s8 -> pairs summed in int16) and
//    vpmaddwd with ones (-> int32). Q4: nibbles (0..15, unsigned) x int8 activations; the 8 chunk
//    products of a block are summed in int16 (at most 8 * 2 * 15 * 128 = 30720 < 2^15) before
//    one vpmaddwd; the accumulator starts at -8 * sum(x) (the "prep", per activation block).
//    Q8: |w| x sign(x, w) (each vpmaddubsw pair at most 2 * 128 * 127 = 32512), one vpmaddwd
//    per chunk; exact signed products, no offset.
//  - AVX-VNNI: one vpdpbusd per chunk adds the 4 products of each lane straight into int32. Q4:
//    the nibbles are the unsigned operand, the accumulator starts at -8 * sum(x); Q8:
//    q ^ 0x80 = q + 128 is the unsigned operand, the accumulator starts at -128 * sum(x).
// Integer sums are exact either way and the float epilogue is the same (cvt, d_w * d_x, one FMA
// per block), so both builds give the same results bit for bit (tested), and decoding,
// verification batches and prefill agree whichever the CPU runs.
//
// Tiles: 8 weight rows x RB <= kMaxRB activation rows (AVX2 8: the 8 unpacked weight vectors are
// held for all rows; AVX-VNNI 6: RB int32 + RB float accumulators in the 16 ymm registers with
// the weight vector, its decoded half and the broadcast). Loops: K chunks of kChunk blocks;
// activation tiles of about equal size; one tile streams the weights once (with software
// prefetch), more take N blocks of ~kL2Target bytes reused from L2 by every tile (the first
// tile, which brings them from memory, prefetches).
#pragma once

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "x8_avx2_impl.h needs -mavx2 -mfma -mf16c"
#endif
#if defined(QGEMMA_X8_AVXVNNI) && !defined(__AVXVNNI__)
#error "the AVX-VNNI build of x8_avx2_impl.h needs -mavxvnni"
#endif

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "kernels/matmul/matmul_variants.h"

#if defined(QGEMMA_X8_AVXVNNI)
#define QG_X8(name) name##_avxvnni
#else
#define QG_X8(name) name##_avx2
#endif

namespace qgemma {
namespace {

#if defined(QGEMMA_X8_AVXVNNI)
constexpr bool kVnni = true;
constexpr int kMaxRB = 6;
#else
constexpr bool kVnni = false;
constexpr int kMaxRB = 8;
#endif
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

// Software prefetch distance in blocks when the weights come from memory (one activation tile,
// or the first tile of an N block): the hardware prefetcher alone kept one stream per core at ~55%
// of the read bandwidth here, 16 blocks (2.3 KiB) ahead ~75-80% (session 7).
constexpr int64_t kPrefetchBlocks = 16;

// 8 weight rows (one group) x RB activation rows over blocks [0, nb) of one K chunk. kStream:
// the weights come from memory (prefetch ahead), not from L2.
template <bool kQ4, int RB, bool kStream>
void micro(const BlockOf<kQ4>* g, int64_t nb, const block_q8_0* const* xr, const ActPrep& p,
           float* y, int64_t ldy, bool accumulate) {
  __m256 acc[RB];
  for (int r = 0; r < RB; ++r) acc[r] = _mm256_setzero_ps();
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = g[b];
    if constexpr (kStream) {
      const char* pf = reinterpret_cast<const char*>(g + b + kPrefetchBlocks);
      for (size_t o = 0; o < sizeof(B); o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(B.d)));
    __m256i isum[RB];
    if constexpr (kVnni) {
#if defined(QGEMMA_X8_AVXVNNI)
      for (int r = 0; r < RB; ++r) isum[r] = _mm256_set1_epi32(p.ncorr[r][b]);
      if constexpr (kQ4) {
        // Chunk c's low nibbles are elements 4c .. 4c + 3, its high nibbles 16 + 4c ...
        for (int c = 0; c < 4; ++c) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B.qs + 32 * c));
          const __m256i l = _mm256_and_si256(v, lo4);
          for (int r = 0; r < RB; ++r) {
            isum[r] = _mm256_dpbusd_avx_epi32(isum[r], l,
                                              _mm256_set1_epi32(load_i32(xr[r][b].qs + 4 * c)));
          }
          const __m256i h = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
          for (int r = 0; r < RB; ++r) {
            isum[r] = _mm256_dpbusd_avx_epi32(
                isum[r], h, _mm256_set1_epi32(load_i32(xr[r][b].qs + 16 + 4 * c)));
          }
        }
      } else {
        const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
        for (int c = 0; c < 8; ++c) {
          const __m256i v = _mm256_xor_si256(
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B.qs + 32 * c)), flip);
          for (int r = 0; r < RB; ++r) {
            isum[r] = _mm256_dpbusd_avx_epi32(isum[r], v,
                                              _mm256_set1_epi32(load_i32(xr[r][b].qs + 4 * c)));
          }
        }
      }
#endif
    } else {
      const __m256i ones = _mm256_set1_epi16(1);
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
        if constexpr (kQ4) {
          __m256i s16 = _mm256_maddubs_epi16(w[0], _mm256_set1_epi32(load_i32(xq)));
          for (int c = 1; c < 8; ++c) {
            s16 = _mm256_add_epi16(
                s16, _mm256_maddubs_epi16(w[c], _mm256_set1_epi32(load_i32(xq + 4 * c))));
          }
          isum[r] =
              _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(p.ncorr[r][b]));
        } else {
          isum[r] = _mm256_setzero_si256();
          for (int c = 0; c < 8; ++c) {
            const __m256i xv = _mm256_set1_epi32(load_i32(xq + 4 * c));
            const __m256i prod =
                _mm256_maddubs_epi16(_mm256_abs_epi8(w[c]), _mm256_sign_epi8(xv, w[c]));
            isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(prod, ones));
          }
        }
      }
    }
    for (int r = 0; r < RB; ++r) {
      const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(p.dx[r][b]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), s, acc[r]);
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

template <bool kQ4, bool kStream, int... RB>
constexpr std::array<MicroFn<kQ4>, sizeof...(RB)> micro_table(std::integer_sequence<int, RB...>) {
  return {micro<kQ4, RB + 1, kStream>...};
}

template <bool kQ4, bool kStream>
MicroFn<kQ4> micro_for(int rb) {
  static constexpr auto kFns = micro_table<kQ4, kStream>(std::make_integer_sequence<int, kMaxRB>{});
  return kFns[rb - 1];
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  // The accumulator's start per block: -offset * sum(x) (AVX2 Q8 needs none, see the top).
  constexpr int32_t kOffset = kQ4 ? 8 : (kVnni ? 128 : 0);
  alignas(32) ActPrep prep;
  const block_q8_0* xr[kMaxRB];
  // Activation tiles of at most kMaxRB rows, all about the same size.
  const int64_t tiles = (a.R + kMaxRB - 1) / kMaxRB;
  for (int64_t kc = 0; kc < nb; kc += kChunk) {
    const int64_t kn = std::min(kChunk, nb - kc);
    // One activation tile (GEMV): stream all of [n0, n1) once. Several tiles (GEMM): N blocks of
    // about kL2Target bytes of this chunk's weights, reused from L2 by every tile.
    const int64_t chunk_row_bytes = kn * static_cast<int64_t>(sizeof(Block)) / 8;
    const bool streaming = tiles == 1;
    const int64_t n_block =
        streaming ? n1 - n0 : std::max<int64_t>(8, kL2Target / chunk_row_bytes / 8 * 8);
    for (int64_t nbeg = n0; nbeg < n1; nbeg += n_block) {
      const int64_t nend = std::min(n1, nbeg + n_block);
      for (int64_t t = 0; t < tiles; ++t) {
        const int64_t r0 = a.R * t / tiles;
        const int rb = static_cast<int>(a.R * (t + 1) / tiles - r0);
        for (int r = 0; r < rb; ++r) {
          xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx) + kc;
          for (int64_t b = 0; b < kn; ++b) {
            prep.ncorr[r][b] = kOffset == 0 ? 0 : -kOffset * block_sum(xr[r][b]);
            prep.dx[r][b] = _cvtsh_ss(xr[r][b].d);
          }
        }
        // The first tile of an N block reads its weights from memory, the others from L2.
        const MicroFn<kQ4> fn =
            streaming || t == 0 ? micro_for<kQ4, true>(rb) : micro_for<kQ4, false>(rb);
        for (int64_t n = nbeg; n < nend; n += 8) {
          fn(w + (n / 8) * nb + kc, kn, xr, prep, a.y + r0 * a.ldy + n, a.ldy, kc > 0);
        }
      }
    }
  }
}

}  // namespace

void QG_X8(matmul_q4_0x8_q8_0)(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<true>(a, n0, n1);
}
void QG_X8(matmul_q8_0x8_q8_0)(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<false>(a, n0, n1);
}

}  // namespace qgemma

#undef QG_X8
