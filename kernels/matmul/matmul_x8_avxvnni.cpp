// AVX-VNNI GEMV/GEMM for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0 activations: the
// AVX2 level's kernel on CPUs with the VEX-encoded vpdpbusd (ymm) but no AVX-512, such as Intel's
// client cores since Alder Lake, i.e. most recent laptops. matmul.cpp puts these in the avx2
// entries when avx_vnni_enabled().
//
// Layout as matmul_x8_avx2.cpp (one ymm = the 8 rows of a group x one 4-byte chunk of a block;
// each activation chunk broadcast to all lanes). Where that kernel needs vpmaddubsw + vpaddw per
// chunk and a vpmaddwd per block (Q4; Q8: vpabsb + vpsignb + vpmaddubsw + vpmaddwd + vpaddd per
// chunk), one vpdpbusd adds the 4 products of each lane straight into int32:
//  - Q4: the nibbles 0..15 = q + 8 are the unsigned operand; the accumulator starts at
//    -8 * sum(x) of the activation block (the "prep");
//  - Q8: q ^ 0x80 = q + 128 is the unsigned operand; the accumulator starts at -128 * sum(x).
// Integer sums are exact in both kernels and the float epilogue is the same (cvt, d_w * d_x, one
// FMA per block), so the results equal the AVX2 kernel's bit for bit (tested), and decoding,
// verification batches and prefill agree as they do there.
//
// Tiles: 8 weight rows x RB <= 6 activation rows (RB int32 + RB float accumulators in the 16 ymm
// registers with the weight vector, its decoded half and the broadcast). Per block and activation
// row 8 vpdpbusd + convert + multiply + FMA; the weight load and nibble split are shared by the
// tile's rows. Loops as matmul_x8_avx2.cpp: K chunks of kChunk blocks; one activation tile streams
// the weights once; more rows take N blocks of ~kL2Target bytes reused from L2 by every tile.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__) || !defined(__AVXVNNI__)
#error "matmul_x8_avxvnni.cpp needs -mavx2 -mfma -mf16c -mavxvnni"
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxRB = 6;
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
  const __m256i s = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), v);
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
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = g[b];
    if constexpr (kStream) {
      const char* pf = reinterpret_cast<const char*>(g + b + kPrefetchBlocks);
      for (size_t o = 0; o < sizeof(B); o += 64) _mm_prefetch(pf + o, _MM_HINT_T0);
    }
    __m256i i[RB];
    for (int r = 0; r < RB; ++r) i[r] = _mm256_set1_epi32(p.ncorr[r][b]);
    if constexpr (kQ4) {
      // Chunk c's low nibbles are elements 4c .. 4c + 3, its high nibbles 16 + 4c ...
      for (int c = 0; c < 4; ++c) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B.qs + 32 * c));
        const __m256i l = _mm256_and_si256(v, lo4);
        for (int r = 0; r < RB; ++r) {
          i[r] = _mm256_dpbusd_avx_epi32(i[r], l, _mm256_set1_epi32(load_i32(xr[r][b].qs + 4 * c)));
        }
        const __m256i h = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        for (int r = 0; r < RB; ++r) {
          i[r] = _mm256_dpbusd_avx_epi32(i[r], h,
                                         _mm256_set1_epi32(load_i32(xr[r][b].qs + 16 + 4 * c)));
        }
      }
    } else {
      for (int c = 0; c < 8; ++c) {
        const __m256i v = _mm256_xor_si256(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(B.qs + 32 * c)), flip);
        for (int r = 0; r < RB; ++r) {
          i[r] = _mm256_dpbusd_avx_epi32(i[r], v, _mm256_set1_epi32(load_i32(xr[r][b].qs + 4 * c)));
        }
      }
    }
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(B.d)));
    for (int r = 0; r < RB; ++r) {
      const __m256 s = _mm256_mul_ps(dw, _mm256_set1_ps(p.dx[r][b]));
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i[r]), s, acc[r]);
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
                                                micro<kQ4, 5, kStream>, micro<kQ4, 6, kStream>};
  return kFns[rb - 1];
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  constexpr int32_t kOffset = kQ4 ? 8 : 128;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  alignas(32) ActPrep prep;
  const block_q8_0* xr[kMaxRB];
  // Activation tiles of at most kMaxRB rows, all about the same size (7 rows: 4 + 3).
  const int64_t tiles = (a.R + kMaxRB - 1) / kMaxRB;
  for (int64_t kc = 0; kc < nb; kc += kChunk) {
    const int64_t kn = std::min(kChunk, nb - kc);
    // One activation tile: stream all of [n0, n1) once. Several tiles: N blocks of about
    // kL2Target bytes of this chunk's weights, reused from L2 by every tile.
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
            prep.ncorr[r][b] = -kOffset * block_sum(xr[r][b]);
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

void matmul_q4_0x8_q8_0_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<true>(a, n0, n1);
}
void matmul_q8_0x8_q8_0_avxvnni(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<false>(a, n0, n1);
}

}  // namespace qgemma
