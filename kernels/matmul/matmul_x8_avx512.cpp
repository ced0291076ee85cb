// AVX-512 VNNI GEMV/GEMM for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0 activations.
//
// Register layout ("outer product"): one zmm holds 16 weight rows (two 8-row groups) x one 4-byte
// chunk of a block; vpdpbusd with the activation's matching 4 bytes broadcast to all lanes adds
// 16 partial dot products, one per weight row, so after a block's 8 chunks each lane holds the
// full 32-element integer dot product of its row: no horizontal sums. Per block and activation
// row, for 32 weight rows: 16 vpdpbusd, 2 int->float converts, 2 scale multiplies, 2 FMAs.
//
// vpdpbusd multiplies unsigned by signed bytes, so weights enter as unsigned (Q4: the nibble
// 0..15 = q + 8; Q8: q ^ 0x80 = q + 128) and the accumulator starts at -offset * sum(x) for the
// activation block (precomputed per activation row and block, in a stack buffer per K chunk).
//
// Tiling: K chunks of kChunk blocks (stack buffers), N blocks of ~512 KiB of weights (L2),
// activation tiles of up to kMaxRB rows, micro-kernel = 32 weight rows x RB activation rows over
// the chunk. For R <= kMaxRB there is a single activation tile, so the weights stream once (GEMV);
// larger R re-reads each N block from L2 per activation tile (GEMM).
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "matmul_x8_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
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

constexpr int kMaxRB = 6;        // activation rows per micro-kernel (4 * 6 + 8 zmm registers)
constexpr int64_t kChunk = 256;  // K blocks per chunk (8192 elements)
constexpr size_t kL2Target = 512 * 1024;  // bytes of weights per N block
constexpr int64_t kPrefetch = 8;          // blocks ahead (GEMV)

struct ActPrep {
  int32_t ncorr[kMaxRB][kChunk];  // -offset * sum of the block's int8 activations
  float dx[kMaxRB][kChunk];       // activation block scale
};

inline int32_t load_i32(const void* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline int32_t block_sum(const block_q8_0& x) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
  const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), v);
  __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
  t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(t);
}

inline float f16(f16_bits h) { return _cvtsh_ss(h); }

template <bool kQ4>
struct Format {
  using Block = std::conditional_t<kQ4, block_q4_0x8, block_q8_0x8>;
  static constexpr int32_t kOffset = kQ4 ? 8 : 128;
};

inline __m512i load_pair(const void* lo, const void* hi) {
  return _mm512_inserti64x4(
      _mm512_zextsi256_si512(_mm256_loadu_si256(static_cast<const __m256i*>(lo))),
      _mm256_loadu_si256(static_cast<const __m256i*>(hi)), 1);
}

inline __m512 load_scales(const f16_bits* lo, const f16_bits* hi) {
  const __m256i d16 = _mm256_inserti128_si256(
      _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(lo))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi)), 1);
  return _mm512_cvtph_ps(d16);
}

// 32 weight rows (groups g[0..3]; vector v holds groups 2v, 2v+1) x RB activation rows over
// blocks [0, nb) of one K chunk. Per block: for each 4-byte chunk, 2 weight vectors x RB
// activation broadcasts -> 2 RB vpdpbusd (2 RB independent integer chains of 8 per block), then
// per activation row 2 converts, 2 scale multiplies, 2 FMAs. 4 RB + 8 zmm registers.
template <bool kQ4, int RB>
void micro(const typename Format<kQ4>::Block* const* g, int64_t nb, const block_q8_0* const* xr,
           const ActPrep& p, float* y, int64_t ldy, bool accumulate, __mmask16 m0, __mmask16 m1) {
  __m512 acc0[RB], acc1[RB];
  for (int r = 0; r < RB; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    if (RB <= 2) {
      // GEMV streams 4 groups at once from memory: prefetch kPrefetch blocks ahead so the
      // hardware prefetcher's ramp-up on each stream does not stall the loads.
      for (int j = 0; j < 4; ++j) {
        const char* ahead = reinterpret_cast<const char*>(g[j] + b + kPrefetch);
        _mm_prefetch(ahead, _MM_HINT_T0);
        _mm_prefetch(ahead + 64, _MM_HINT_T0);
        _mm_prefetch(ahead + 128, _MM_HINT_T0);
      }
    }
    __m512i i0[RB], i1[RB];
    for (int r = 0; r < RB; ++r) i0[r] = i1[r] = _mm512_set1_epi32(p.ncorr[r][b]);
    if constexpr (kQ4) {
      for (int c = 0; c < 4; ++c) {
        const __m512i v0 = load_pair(g[0][b].qs + 32 * c, g[1][b].qs + 32 * c);
        const __m512i v1 = load_pair(g[2][b].qs + 32 * c, g[3][b].qs + 32 * c);
        const __m512i l0 = _mm512_and_si512(v0, lo4);  // elements 4c..4c+3
        const __m512i l1 = _mm512_and_si512(v1, lo4);
        const __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), lo4);  // 16+4c..
        const __m512i h1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), lo4);
        for (int r = 0; r < RB; ++r) {
          const __m512i xl = _mm512_set1_epi32(load_i32(xr[r][b].qs + 4 * c));
          const __m512i xh = _mm512_set1_epi32(load_i32(xr[r][b].qs + 16 + 4 * c));
          i0[r] = _mm512_dpbusd_epi32(i0[r], l0, xl);
          i1[r] = _mm512_dpbusd_epi32(i1[r], l1, xl);
          i0[r] = _mm512_dpbusd_epi32(i0[r], h0, xh);
          i1[r] = _mm512_dpbusd_epi32(i1[r], h1, xh);
        }
      }
    } else {
      for (int c = 0; c < 8; ++c) {
        const __m512i v0 =
            _mm512_xor_si512(load_pair(g[0][b].qs + 32 * c, g[1][b].qs + 32 * c), flip);
        const __m512i v1 =
            _mm512_xor_si512(load_pair(g[2][b].qs + 32 * c, g[3][b].qs + 32 * c), flip);
        for (int r = 0; r < RB; ++r) {
          const __m512i xc = _mm512_set1_epi32(load_i32(xr[r][b].qs + 4 * c));
          i0[r] = _mm512_dpbusd_epi32(i0[r], v0, xc);
          i1[r] = _mm512_dpbusd_epi32(i1[r], v1, xc);
        }
      }
    }
    const __m512 dw0 = load_scales(g[0][b].d, g[1][b].d);
    const __m512 dw1 = load_scales(g[2][b].d, g[3][b].d);
    for (int r = 0; r < RB; ++r) {
      const __m512 dx = _mm512_set1_ps(p.dx[r][b]);
      acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0[r]), _mm512_mul_ps(dw0, dx), acc0[r]);
      acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1[r]), _mm512_mul_ps(dw1, dx), acc1[r]);
    }
  }
  for (int r = 0; r < RB; ++r) {
    float* yr = y + r * ldy;
    __m512 v0 = acc0[r], v1 = acc1[r];
    if (accumulate) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, yr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, yr + 16));
    }
    _mm512_mask_storeu_ps(yr, m0, v0);
    _mm512_mask_storeu_ps(yr + 16, m1, v1);
  }
}

template <bool kQ4>
using MicroFn = void (*)(const typename Format<kQ4>::Block* const*, int64_t,
                         const block_q8_0* const*, const ActPrep&, float*, int64_t, bool, __mmask16,
                         __mmask16);

template <bool kQ4>
MicroFn<kQ4> micro_for(int rb) {
  static constexpr MicroFn<kQ4> kFns[kMaxRB] = {micro<kQ4, 1>, micro<kQ4, 2>, micro<kQ4, 3>,
                                                micro<kQ4, 4>, micro<kQ4, 5>, micro<kQ4, 6>};
  return kFns[rb - 1];
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = typename Format<kQ4>::Block;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);  // group g starts at w + g * nb
  const auto* x = static_cast<const uint8_t*>(a.x);
  alignas(64) ActPrep prep;
  const block_q8_0* xr[kMaxRB];
  for (int64_t kc = 0; kc < nb; kc += kChunk) {
    const int64_t kn = std::min(kChunk, nb - kc);
    // One activation tile (GEMV): stream all of [n0, n1) once. Several tiles (GEMM): N blocks of
    // about kL2Target bytes of this chunk's weights, reused from L2 by every tile.
    const int64_t chunk_row_bytes = kn * static_cast<int64_t>(sizeof(Block)) / 8;
    const int64_t n_block =
        a.R <= kMaxRB ? n1 - n0 : std::max<int64_t>(32, kL2Target / chunk_row_bytes / 32 * 32);
    for (int64_t nbeg = n0; nbeg < n1; nbeg += n_block) {
      const int64_t nend = std::min(n1, nbeg + n_block);
      for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
        const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
        for (int r = 0; r < rb; ++r) {
          xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx) + kc;
          for (int64_t b = 0; b < kn; ++b) {
            prep.ncorr[r][b] = -Format<kQ4>::kOffset * block_sum(xr[r][b]);
            prep.dx[r][b] = f16(xr[r][b].d);
          }
        }
        const MicroFn<kQ4> fn = micro_for<kQ4>(rb);
        for (int64_t n = nbeg; n < nend; n += 32) {
          const int groups = static_cast<int>(std::min<int64_t>(4, (nend - n) / 8));
          const Block* g[4];
          for (int j = 0; j < 4; ++j) g[j] = w + (n / 8 + std::min(j, groups - 1)) * nb + kc;
          const uint64_t lanes = (uint64_t{1} << (8 * groups)) - 1;
          const auto m0 = static_cast<__mmask16>(groups >= 2 ? 0xFFFF : lanes);
          const auto m1 = static_cast<__mmask16>(groups > 2 ? (lanes >> 16) : 0);
          fn(g, kn, xr, prep, a.y + r0 * a.ldy + n, a.ldy, kc > 0, m0, m1);
        }
      }
    }
  }
}

}  // namespace

void matmul_q4_0x8_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<true>(a, n0, n1);
}
void matmul_q8_0x8_q8_0_avx512(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<false>(a, n0, n1);
}

}  // namespace qgemma
