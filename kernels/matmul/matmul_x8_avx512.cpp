// AVX-512 VNNI GEMV/GEMM for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0 activations.
//
// Register layout ("outer product"): one zmm holds 16 weight rows (two 8-row groups) x one 4-byte
// chunk of a block; vpdpbusd with the activation's matching 4 bytes broadcast to all lanes adds
// 16 partial dot products, one per weight row, so after a block's 8 chunks each lane holds the
// full 32-element integer dot product of its row: no horizontal sums. Per block, 16 weight rows
// and activation row: 8 vpdpbusd, 1 int->float convert, 1 scale multiply, 1 FMA; the weights'
// load and nibble unpacking (4 inserts, 12 and/shift) are shared by all activation rows of the
// tile.
//
// vpdpbusd multiplies unsigned by signed bytes, so weights enter as unsigned (Q4: the nibble
// 0..15 = q + 8; Q8: q ^ 0x80 = q + 128) and the accumulator starts at -offset * sum(x) for the
// activation block (precomputed per activation row and block: the "prep", a stack buffer).
//
// The activation bytes enter vpdpbusd as an embedded-broadcast memory operand (inline asm: GCC
// does not fold the broadcast), one fused uop per vpdpbusd.
//
// Micro-kernels (all accumulators in registers where they fit):
//  - micro32: 32 weight rows x RB <= 9 activation rows: 4 weight streams, 2 independent integer
//    chains per row and block, each activation broadcast feeds 2 vpdpbusd. Decoding (R = 1) and
//    verification batches (R = 2..9: the weights are read and unpacked once for all rows, the
//    int8 work per row is 16 vpdpbusd + 6 float ops per block); above 7 rows GCC keeps some
//    float accumulators on the stack.
//  - micro16: 16 weight rows x RB <= 12 activation rows (one int32 + one float accumulator per
//    row): R = 10..12 in one pass, and the GEMM tile (fewer non-vpdpbusd ops per vpdpbusd than
//    micro32 x 6: 19 unpack/scale ops shared by 12 rows).
// Loops:
//  - R <= kMaxRB16 (GEMV, verification): K chunks of kChunkGemv blocks; one activation tile; the
//    weights of [n0, n1) stream once from memory with software prefetch.
//  - larger R (GEMM): K chunks of <= kChunkGemm blocks; super-tiles of <= kSuper activation rows
//    whose prep is computed once per chunk (not once per N block: with a long K the N blocks are
//    short and re-deriving the prep cost ~10%); N blocks of 16-row strips decoded once per
//    super-tile (decode_strip: the unpacked vectors and float scales micro16 would build, about
//    kDecBytes per block, in L2) and read by every <= 12-row tile (micro16d: only the vpdpbusd
//    and float work per tile; session 6, measured below).
#if !defined(__AVX512F__) || !defined(__AVX512BW__) || !defined(__AVX512VL__) || \
    !defined(__AVX512VNNI__)
#error "matmul_x8_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

// GCC 12 reports false -Wuninitialized warnings inside its AVX-512 intrinsic headers.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <utility>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxRB32 = 9;          // activation rows of micro32 (decoding, verification)
constexpr int kMaxRB16 = 12;         // activation rows of micro16 (2 * 12 + 4 zmm registers)
constexpr int64_t kChunkGemv = 256;  // K blocks per chunk, R <= kMaxRB16 (8192 elements)
// At most this many K blocks per GEMM chunk (4096 elements): the 12B's K = 3840 and 4096 take one
// chunk, so y is written once instead of written and then read and written again per chunk
// (y is R x N floats: 31 MB for a 512-token batch through the 15360-row projections).
constexpr int64_t kChunkGemm = 128;
constexpr int64_t kSuper = 192;      // at most this many activation rows per GEMM super-tile
constexpr int64_t kPrefetch32 = 8;   // blocks ahead, micro32 (4 streams)
constexpr int64_t kPrefetch16 = 16;  // blocks ahead, micro16 streaming (2 streams)
constexpr int64_t kPrepEntries = std::max(kSuper * kChunkGemm, kMaxRB16* kChunkGemv);  // 192 KiB

// Per activation row and block: -offset * sum of the block's int8 values, and its scale. Stored
// block-major (prep[b * stride + r]) so a tile reads one contiguous run per block.
struct Prep {
  int32_t ncorr;
  float dx;
};

// The prep of the calling thread's current call: 192 KiB, so per thread rather than on the stack
// (callers' threads may have small stacks).
alignas(64) thread_local Prep t_prep[kPrepEntries];

using I32u = int32_t __attribute__((may_alias, aligned(1)));

// acc + w (unsigned bytes) . the 4 signed bytes at p broadcast to all lanes. One vpdpbusd with an
// embedded-broadcast memory operand (GCC does not fold the broadcast itself).
inline __m512i dpbusd_x(__m512i acc, __m512i w, const int8_t* p) {
  asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*reinterpret_cast<const I32u*>(p)));
  return acc;
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

// Fills prep[b * stride + r] for rows r < rows (row r's blocks start at xr[r]), blocks [0, kn).
template <bool kQ4>
void prepare(const block_q8_0* const* xr, int rows, int64_t kn, Prep* prep, int64_t stride) {
  for (int r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < kn; ++b) {
      prep[b * stride + r] = {-Format<kQ4>::kOffset * block_sum(xr[r][b]), f16(xr[r][b].d)};
    }
  }
}

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

inline void prefetch_block(const void* p) {
  const char* c = static_cast<const char*>(p);
  _mm_prefetch(c, _MM_HINT_T0);
  _mm_prefetch(c + 64, _MM_HINT_T0);
  _mm_prefetch(c + 128, _MM_HINT_T0);
}

inline void store_tile(float* yr, __m512 v, __mmask16 m, bool accumulate) {
  if (accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, yr));
  _mm512_mask_storeu_ps(yr, m, v);
}

// 32 weight rows (groups g[0..3]; vector v holds groups 2v, 2v+1) x RB activation rows over
// blocks [0, nb) of one K chunk: 2 RB integer chains of 8 vpdpbusd per block, then per activation
// row 2 converts, 2 scale multiplies, 2 FMAs. Streams 4 groups from memory with prefetch.
template <bool kQ4, int RB, bool kStream>
void micro32(const typename Format<kQ4>::Block* const* g, int64_t nb, const block_q8_0* const* xr,
             const Prep* p, int64_t ps, float* y, int64_t ldy, bool accumulate, __mmask16 m0,
             __mmask16 m1) {
  __m512 acc0[RB], acc1[RB];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) acc0[r] = acc1[r] = _mm512_setzero_ps();
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    // Prefetch kPrefetch32 blocks ahead so the hardware prefetcher's ramp-up on each of the 4
    // streams does not stall the loads.
    if constexpr (kStream) {
#pragma GCC unroll 16
      for (int j = 0; j < 4; ++j) prefetch_block(g[j] + b + kPrefetch32);
    }
    __m512i i0[RB], i1[RB];
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) i0[r] = i1[r] = _mm512_set1_epi32(p[b * ps + r].ncorr);
    if constexpr (kQ4) {
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) {
        const __m512i v0 = load_pair(g[0][b].qs + 32 * c, g[1][b].qs + 32 * c);
        const __m512i v1 = load_pair(g[2][b].qs + 32 * c, g[3][b].qs + 32 * c);
        const __m512i l0 = _mm512_and_si512(v0, lo4);  // elements 4c..4c+3
        const __m512i l1 = _mm512_and_si512(v1, lo4);
        const __m512i h0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), lo4);  // 16+4c..
        const __m512i h1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), lo4);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          const int8_t* xq = xr[r][b].qs + 4 * c;
          i0[r] = dpbusd_x(i0[r], l0, xq);
          i1[r] = dpbusd_x(i1[r], l1, xq);
          i0[r] = dpbusd_x(i0[r], h0, xq + 16);
          i1[r] = dpbusd_x(i1[r], h1, xq + 16);
        }
      }
    } else {
#pragma GCC unroll 16
      for (int c = 0; c < 8; ++c) {
        const __m512i v0 =
            _mm512_xor_si512(load_pair(g[0][b].qs + 32 * c, g[1][b].qs + 32 * c), flip);
        const __m512i v1 =
            _mm512_xor_si512(load_pair(g[2][b].qs + 32 * c, g[3][b].qs + 32 * c), flip);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          const int8_t* xq = xr[r][b].qs + 4 * c;
          i0[r] = dpbusd_x(i0[r], v0, xq);
          i1[r] = dpbusd_x(i1[r], v1, xq);
        }
      }
    }
    const __m512 dw0 = load_scales(g[0][b].d, g[1][b].d);
    const __m512 dw1 = load_scales(g[2][b].d, g[3][b].d);
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      const __m512 dx = _mm512_set1_ps(p[b * ps + r].dx);
      acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i0[r]), _mm512_mul_ps(dw0, dx), acc0[r]);
      acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i1[r]), _mm512_mul_ps(dw1, dx), acc1[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) {
    store_tile(y + r * ldy, acc0[r], m0, accumulate);
    store_tile(y + r * ldy + 16, acc1[r], m1, accumulate);
  }
}

// 16 weight rows (groups g0, g1) x RB activation rows over blocks [0, nb) of one K chunk: per
// block 4 weight loads + nibble unpacking shared by the RB rows, then per row 8 vpdpbusd (one
// integer chain), 1 convert, 1 scale multiply, 1 FMA. kStream: the weights come from memory
// (prefetch ahead).
template <bool kQ4, int RB, bool kStream>
void micro16(const typename Format<kQ4>::Block* g0, const typename Format<kQ4>::Block* g1,
             int64_t nb, const block_q8_0* const* xr, const Prep* p, int64_t ps, float* y,
             int64_t ldy, bool accumulate, __mmask16 m) {
  __m512 acc[RB];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    if constexpr (kStream) {
      prefetch_block(g0 + b + kPrefetch16);
      prefetch_block(g1 + b + kPrefetch16);
    }
    const Prep* pb = p + b * ps;
    __m512i i[RB];
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) i[r] = _mm512_set1_epi32(pb[r].ncorr);
    if constexpr (kQ4) {
#pragma GCC unroll 16
      for (int c = 0; c < 4; ++c) {
        const __m512i v = load_pair(g0[b].qs + 32 * c, g1[b].qs + 32 * c);
        const __m512i l = _mm512_and_si512(v, lo4);                        // elements 4c..
        const __m512i h = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);  // 16+4c..
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          const int8_t* xq = xr[r][b].qs + 4 * c;
          i[r] = dpbusd_x(dpbusd_x(i[r], l, xq), h, xq + 16);
        }
      }
    } else {
#pragma GCC unroll 16
      for (int c = 0; c < 8; ++c) {
        const __m512i v = _mm512_xor_si512(load_pair(g0[b].qs + 32 * c, g1[b].qs + 32 * c), flip);
#pragma GCC unroll 16
        for (int r = 0; r < RB; ++r) {
          i[r] = dpbusd_x(i[r], v, xr[r][b].qs + 4 * c);
        }
      }
    }
    const __m512 dw = load_scales(g0[b].d, g1[b].d);
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[r]),
                               _mm512_mul_ps(dw, _mm512_set1_ps(pb[r].dx)), acc[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) store_tile(y + r * ldy, acc[r], m, accumulate);
}

template <bool kQ4>
using Micro16Fn = void (*)(const typename Format<kQ4>::Block*, const typename Format<kQ4>::Block*,
                           int64_t, const block_q8_0* const*, const Prep*, int64_t, float*, int64_t,
                           bool, __mmask16);

template <bool kQ4, bool kStream, int... RB>
constexpr auto micro16_table(std::integer_sequence<int, RB...>) {
  return std::array<Micro16Fn<kQ4>, sizeof...(RB)>{micro16<kQ4, RB + 1, kStream>...};
}

template <bool kQ4, bool kStream>
Micro16Fn<kQ4> micro16_for(int rb) {
  static constexpr auto kFns =
      micro16_table<kQ4, kStream>(std::make_integer_sequence<int, kMaxRB16>{});
  return kFns[rb - 1];
}

// One pass of micro16 tiles over weight rows [nbeg, nend) (multiples of 8) for the activation
// tile whose rows start at xr and prep at p, chunk blocks [kc, kc + kn).
template <bool kQ4, bool kStream>
void tile_pass16(const typename Format<kQ4>::Block* w, int64_t nb, int64_t kc, int64_t kn,
                 int64_t nbeg, int64_t nend, int rb, const block_q8_0* const* xr, const Prep* p,
                 int64_t ps, float* y, int64_t ldy, bool accumulate) {
  const Micro16Fn<kQ4> fn = micro16_for<kQ4, kStream>(rb);
  for (int64_t n = nbeg; n < nend; n += 16) {
    const bool two = nend - n >= 16;
    const auto* g0 = w + (n / 8) * nb + kc;
    const auto* g1 = two ? g0 + nb : g0;
    fn(g0, g1, kn, xr, p, ps, y + n, ldy, accumulate, two ? 0xFFFF : 0x00FF);
  }
}

template <bool kQ4>
using Micro32Fn = void (*)(const typename Format<kQ4>::Block* const*, int64_t,
                           const block_q8_0* const*, const Prep*, int64_t, float*, int64_t, bool,
                           __mmask16, __mmask16);

template <bool kQ4, bool kStream, int... RB>
constexpr auto micro32_table(std::integer_sequence<int, RB...>) {
  return std::array<Micro32Fn<kQ4>, sizeof...(RB)>{micro32<kQ4, RB + 1, kStream>...};
}

template <bool kQ4, bool kStream>
Micro32Fn<kQ4> micro32_for(int rb) {
  static constexpr auto kFns =
      micro32_table<kQ4, kStream>(std::make_integer_sequence<int, kMaxRB32>{});
  return kFns[rb - 1];
}

// The same with micro32 tiles (rb <= kMaxRB32).
template <bool kQ4, bool kStream>
void tile_pass32(const typename Format<kQ4>::Block* w, int64_t nb, int64_t kc, int64_t kn,
                 int64_t nbeg, int64_t nend, int rb, const block_q8_0* const* xr, const Prep* p,
                 int64_t ps, float* y, int64_t ldy, bool accumulate) {
  const Micro32Fn<kQ4> fn = micro32_for<kQ4, kStream>(rb);
  for (int64_t n = nbeg; n < nend; n += 32) {
    const int groups = static_cast<int>(std::min<int64_t>(4, (nend - n) / 8));
    const typename Format<kQ4>::Block* g[4];
    for (int j = 0; j < 4; ++j) g[j] = w + (n / 8 + std::min(j, groups - 1)) * nb + kc;
    const uint64_t lanes = (uint64_t{1} << (8 * groups)) - 1;
    const auto m0 = static_cast<__mmask16>(groups >= 2 ? 0xFFFF : lanes);
    const auto m1 = static_cast<__mmask16>(groups > 2 ? (lanes >> 16) : 0);
    fn(g, kn, xr, p, ps, y + n, ldy, accumulate, m0, m1);
  }
}

// ---- GEMM on pre-decoded strips -------------------------------------------------------------
// A 16-row strip (groups g0, g1) of one K chunk decoded once per super-tile: per block the 8
// vectors micro16 would build (Q4: low / high nibbles of chunks 0..3; Q8: chunks 0..7 with the
// sign flipped) and the 16 rows' scales as floats. Every <= 12-row activation tile of the
// super-tile then spends only its vpdpbusd and float work on the strip.
struct DecodedBlock {
  __m512i v[8];
  __m512 d;
};
static_assert(sizeof(DecodedBlock) == 576);
constexpr size_t kDecBytes = 256 * 1024;  // decoded strips per GEMM N block (L2)
// One N block of decoded strips (+ one strip of slack for the rounding to 16 rows).
alignas(64) thread_local DecodedBlock t_dec[kDecBytes / sizeof(DecodedBlock) + 2 * kChunkGemm];

template <bool kQ4>
void decode_strip(const typename Format<kQ4>::Block* g0, const typename Format<kQ4>::Block* g1,
                  int64_t nb, DecodedBlock* out) {
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < nb; ++b) {
    DecodedBlock& o = out[b];
    if constexpr (kQ4) {
      for (int c = 0; c < 4; ++c) {
        const __m512i v = load_pair(g0[b].qs + 32 * c, g1[b].qs + 32 * c);
        o.v[2 * c] = _mm512_and_si512(v, lo4);
        o.v[2 * c + 1] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
      }
    } else {
      for (int c = 0; c < 8; ++c) {
        o.v[c] = _mm512_xor_si512(load_pair(g0[b].qs + 32 * c, g1[b].qs + 32 * c), flip);
      }
    }
    o.d = load_scales(g0[b].d, g1[b].d);
  }
}

// micro16 on a decoded strip (same arithmetic, same order).
template <bool kQ4, int RB>
void micro16d(const DecodedBlock* db, int64_t nb, const block_q8_0* const* xr, const Prep* p,
              int64_t ps, float* y, int64_t ldy, bool accumulate, __mmask16 m) {
  __m512 acc[RB];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const Prep* pb = p + b * ps;
    const DecodedBlock& o = db[b];
    __m512i i[RB];
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) i[r] = _mm512_set1_epi32(pb[r].ncorr);
#pragma GCC unroll 16
    for (int c = 0; c < 8; ++c) {
      const __m512i v = _mm512_load_si512(&o.v[c]);
      // Q4: vector 2c' holds elements 4c'.. (activation bytes 4c'), 2c' + 1 elements 16 + 4c'.
      const int off = kQ4 ? (c % 2 ? 16 + 4 * (c / 2) : 4 * (c / 2)) : 4 * c;
#pragma GCC unroll 16
      for (int r = 0; r < RB; ++r) i[r] = dpbusd_x(i[r], v, xr[r][b].qs + off);
    }
    const __m512 dw = _mm512_load_ps(&o.d);
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i[r]),
                               _mm512_mul_ps(dw, _mm512_set1_ps(pb[r].dx)), acc[r]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) store_tile(y + r * ldy, acc[r], m, accumulate);
}

template <bool kQ4, int... RB>
constexpr auto micro16d_table(std::integer_sequence<int, RB...>) {
  return std::array<void (*)(const DecodedBlock*, int64_t, const block_q8_0* const*, const Prep*,
                             int64_t, float*, int64_t, bool, __mmask16),
                    sizeof...(RB)>{micro16d<kQ4, RB + 1>...};
}

// Part length splitting n into parts of at most max_len, all about the same length.
inline int64_t balanced_split(int64_t n, int64_t max_len) {
  const int64_t parts = (n + max_len - 1) / max_len;
  return (n + parts - 1) / parts;
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = typename Format<kQ4>::Block;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);  // group g starts at w + g * nb
  const auto* x = static_cast<const uint8_t*>(a.x);
  auto xrow = [&](int64_t r) { return reinterpret_cast<const block_q8_0*>(x + r * a.ldx); };
  Prep* const prep = t_prep;
  if (a.R <= kMaxRB16) {
    // Decoding and verification batches: one activation tile, the weights stream once from
    // memory. Up to kMaxRB32 rows: 32-row tiles (4 weight streams, 2 integer chains per row, each
    // activation broadcast feeds 2 vpdpbusd); up to kMaxRB16: 16-row tiles.
    const int rb = static_cast<int>(a.R);
    const block_q8_0* xr[kMaxRB16];
    for (int64_t kc = 0; kc < nb; kc += kChunkGemv) {
      const int64_t kn = std::min(kChunkGemv, nb - kc);
      for (int r = 0; r < rb; ++r) xr[r] = xrow(r) + kc;
      prepare<kQ4>(xr, rb, kn, prep, rb);
      if (rb <= kMaxRB32) {
        tile_pass32<kQ4, true>(w, nb, kc, kn, n0, n1, rb, xr, prep, rb, a.y, a.ldy, kc > 0);
      } else {
        tile_pass16<kQ4, true>(w, nb, kc, kn, n0, n1, rb, xr, prep, rb, a.y, a.ldy, kc > 0);
      }
    }
    return;
  }
  // GEMM: K chunks; per chunk, super-tiles of activation rows (prep computed once), N blocks of
  // the chunk's weights in L2, 16-row x <= 12-row tiles. Chunks, super-tiles and tiles are split
  // evenly (no short remainder tile).
  const block_q8_0* xr[kSuper];
  const int64_t step = balanced_split(nb, kChunkGemm);
  const int64_t super = balanced_split(a.R, kSuper);
  for (int64_t kc = 0; kc < nb; kc += step) {
    const int64_t kn = std::min(step, nb - kc);
    for (int64_t s0 = 0; s0 < a.R; s0 += super) {
      const int srows = static_cast<int>(std::min<int64_t>(super, a.R - s0));
      for (int r = 0; r < srows; ++r) xr[r] = xrow(s0 + r) + kc;
      prepare<kQ4>(xr, srows, kn, prep, srows);
      const int tiles = (srows + kMaxRB16 - 1) / kMaxRB16;
      // Strips of n_dec rows decoded once (kDecBytes of DecodedBlocks), reused by every tile.
      const int64_t n_dec = std::max<int64_t>(16, kDecBytes / (kn * 36) / 16 * 16);
      for (int64_t nbeg = n0; nbeg < n1; nbeg += n_dec) {
        const int64_t nend = std::min(n1, nbeg + n_dec);
        DecodedBlock* dec = t_dec;
        int strips = 0;
        for (int64_t n = nbeg; n < nend; n += 16, ++strips) {
          const auto* g0 = w + (n / 8) * nb + kc;
          const auto* g1 = nend - n >= 16 ? g0 + nb : g0;
          decode_strip<kQ4>(g0, g1, kn, dec + strips * kn);
        }
        static constexpr auto kFns =
            micro16d_table<kQ4>(std::make_integer_sequence<int, kMaxRB16>{});
        for (int t = 0; t < tiles; ++t) {
          const int r0 = srows * t / tiles, r1 = srows * (t + 1) / tiles;
          const auto fn = kFns[r1 - r0 - 1];
          int si = 0;
          for (int64_t n = nbeg; n < nend; n += 16, ++si) {
            fn(dec + si * kn, kn, xr + r0, prep + r0, srows, a.y + (s0 + r0) * a.ldy + n, a.ldy,
               kc > 0, nend - n >= 16 ? 0xFFFF : 0x00FF);
          }
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
