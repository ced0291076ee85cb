// Shared pieces of the K-quant matmul variants (Q4_K / Q6_K weights x Q8_K activations). The
// variants themselves are declared in matmul_variants.h and reached through matmul.h's table:
//   matmul_q4_k_q8_k_ref, gemv/gemm_q4_k_q8_k_{avx2,avx512,neon}, and the same for q6_k.
// llama.cpp's pairing: Q8_K's per-16 block sums `bsums` carry Q4_K's min term and Q6_K's -32
// offset, so the inner loops multiply unsigned weight codes by signed activations and never
// see the mins or the offset.
//
// Variants (semantics of MatmulFn in matmul.h; K a multiple of 256):
//   ref     scalar ground truth: exact int32 sums per 256-block, one float step per block
//   avx2    vpmaddubsw (u8 codes x s8 activations) + vpmaddwd with the sub-block scales
//   avx512  512-bit vpmaddubsw + vpdpwssd (VNNI) with the scales (vpdpbusd would need an extra
//           int32 multiply per sub-block for the scales); vpermw builds the scale vectors
//   neon    sdot (vdotq_s32) per 16 codes, scaled in int32
// gemv and gemm share one body per ISA: weight rows in panels of ~256 KiB (in L2), activation
// rows in register tiles (4 rows avx2/neon, 8 rows avx512); with R <= 8 that is one pass over
// the weights, for prefill each panel is reused from cache by every activation tile.
//
// Repacked Q4_Kx8 / Q5_Kx8 / Q6_Kx8 (8 rows interleaved per 256-block column, layouts in
// matmul.h; made by repack_rows at load time where the CPU has their kernels, see
// should_repack): the pack/unpack of one block column is below (q4_kx8_pack/unpack,
// q5_kx8_pack/unpack, q6_kx8_pack/unpack, used by repack.cpp and by the _ref variants
// matmul_q{4,5,6}_kx8_q8_k_ref); the AVX-512 kernels are in matmul_kquant_avx512.cpp, the AVX2
// ones (Q4_Kx8 / Q6_Kx8 only) in matmul_kx8_avx2.cpp.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/matmul/matmul.h"
#include "kernels/quant/formats.h"

namespace qgemma {

// Helpers shared by the variants. Internal linkage (static) on purpose: each ISA translation
// unit compiles its own copy with its own flags, so no AVX-512 copy can leak into baseline code.
namespace kquant_detail {

// Q4_K's 12 packed bytes -> 8 six-bit scales and 8 six-bit mins, byte j = sub-block j.
//   j < 4:  scale = s[j] & 63
//           min   = s[j + 4] & 63
//   j >= 4: scale = (s[j + 4] & 15) | (s[j - 4] >> 6) << 4
//           min   = (s[j + 4] >> 4) | (s[j] >> 6) << 4
// Done on 32-bit words (little endian: byte j of a word is s[j + 4 * word]).
static inline void q4_k_scales_mins(const uint8_t* s, uint64_t* scales, uint64_t* mins) {
  uint32_t a, b, c;
  std::memcpy(&a, s, 4);
  std::memcpy(&b, s + 4, 4);
  std::memcpy(&c, s + 8, 4);
  const uint32_t sc_lo = a & 0x3f3f3f3fu;
  const uint32_t mn_lo = b & 0x3f3f3f3fu;
  const uint32_t sc_hi = (c & 0x0f0f0f0fu) | ((a >> 2) & 0x30303030u);
  const uint32_t mn_hi = ((c >> 4) & 0x0f0f0f0fu) | ((b >> 2) & 0x30303030u);
  *scales = uint64_t{sc_lo} | uint64_t{sc_hi} << 32;
  *mins = uint64_t{mn_lo} | uint64_t{mn_hi} << 32;
}

// Q4_K's 12 packed bytes from 8 six-bit scales and mins (the inverse of q4_k_scales_mins).
static inline void q4_k_pack_scales(const uint8_t* sc, const uint8_t* mn, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((sc[j] & 63) | (sc[j + 4] >> 4) << 6);
    s[j + 4] = static_cast<uint8_t>((mn[j] & 63) | (mn[j + 4] >> 4) << 6);
    s[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | (mn[j + 4] & 15) << 4);
  }
}

// Block b of 8 Q4_K rows (rows[j] = row j's block b) -> one block_q4_Kx8 (layout: matmul.h).
// Templated so Q5_K -> Q5_Kx8 shares it (same d, dmin, scales, mins and qs).
template <typename B, typename X>
static inline void k4x8_pack(const B* const* rows, X* out) {
  uint8_t mins[64];
  for (int j = 0; j < 8; ++j) {
    const B& in = *rows[j];
    out->d[j] = in.d;
    out->dmin[j] = in.dmin;
    uint64_t sc, mn;
    q4_k_scales_mins(in.scales, &sc, &mn);
    for (int s = 0; s < 8; ++s) {
      out->scales[8 * s + j] = static_cast<uint8_t>(sc >> (8 * s));  // bits 6..7 below
      mins[q4_kx8_min_index(j, s)] = static_cast<uint8_t>(mn >> (8 * s));
    }
    for (int i = 0; i < QK_K / 2; ++i) out->qs[x8_qs_offset(j, i)] = in.qs[i];
  }
  for (int q = 0; q < 64; ++q) out->scales[q] |= static_cast<uint8_t>((mins[q] >> 4) << 6);
  for (int i = 0; i < 32; ++i) {
    out->mins[i] = static_cast<uint8_t>((mins[i] & 15) | (mins[i + 32] & 15) << 4);
  }
}

// Row j's block back from a block_q4_Kx8 (or the Q4_K part of a block_q5_Kx8).
template <typename X, typename B>
static inline void k4x8_unpack(const X& in, int j, B* out) {
  out->d = in.d[j];
  out->dmin = in.dmin[j];
  uint8_t sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    const int q = q4_kx8_min_index(j, s);
    sc[s] = in.scales[8 * s + j] & 63;
    mn[s] = static_cast<uint8_t>(((in.mins[q % 32] >> (q < 32 ? 0 : 4)) & 15) | (in.scales[q] >> 6)
                                                                                    << 4);
  }
  q4_k_pack_scales(sc, mn, out->scales);
  for (int i = 0; i < QK_K / 2; ++i) out->qs[i] = in.qs[x8_qs_offset(j, i)];
}

static inline void q4_kx8_pack(const block_q4_K* const* rows, block_q4_Kx8* out) {
  k4x8_pack(rows, out);
}
static inline void q4_kx8_unpack(const block_q4_Kx8& in, int j, block_q4_K* out) {
  k4x8_unpack(in, j, out);
}

// Q5_K -> Q5_Kx8: the Q4_K part as above, then each row's fifth bits (bit 2c + h of qh[l] for
// element 64 c + 32 h + l) to their bit q5_kx8_qh_bit(j, e) of the masks.
static inline void q5_kx8_pack(const block_q5_K* const* rows, block_q5_Kx8* out) {
  k4x8_pack(rows, out);
  std::memset(out->qh, 0, sizeof(out->qh));
  for (int j = 0; j < 8; ++j) {
    for (int e = 0; e < QK_K; ++e) {
      const int bit = (rows[j]->qh[e % 32] >> (e / 32)) & 1;
      const int q = q5_kx8_qh_bit(j, e);
      out->qh[q / 8] |= static_cast<uint8_t>(bit << (q % 8));
    }
  }
}

static inline void q5_kx8_unpack(const block_q5_Kx8& in, int j, block_q5_K* out) {
  k4x8_unpack(in, j, out);
  std::memset(out->qh, 0, sizeof(out->qh));
  for (int e = 0; e < QK_K; ++e) {
    const int q = q5_kx8_qh_bit(j, e);
    const int bit = (in.qh[q / 8] >> (q % 8)) & 1;
    out->qh[e % 32] |= static_cast<uint8_t>(bit << (e / 32));
  }
}

// The same for Q6_K (scales, ql and qh move; d too).
static inline void q6_kx8_pack(const block_q6_K* const* rows, block_q6_Kx8* out) {
  for (int j = 0; j < 8; ++j) {
    const block_q6_K& in = *rows[j];
    out->d[j] = in.d;
    for (int s = 0; s < QK_K / 16; ++s) out->scales[q6_kx8_scale_index(j, s)] = in.scales[s];
    for (int i = 0; i < QK_K / 2; ++i) out->ql[x8_qs_offset(j, i)] = in.ql[i];
    for (int i = 0; i < QK_K / 4; ++i) out->qh[x8_qs_offset(j, i)] = in.qh[i];
  }
}

static inline void q6_kx8_unpack(const block_q6_Kx8& in, int j, block_q6_K* out) {
  out->d = in.d[j];
  for (int s = 0; s < QK_K / 16; ++s) out->scales[s] = in.scales[q6_kx8_scale_index(j, s)];
  for (int i = 0; i < QK_K / 2; ++i) out->ql[i] = in.ql[x8_qs_offset(j, i)];
  for (int i = 0; i < QK_K / 4; ++i) out->qh[i] = in.qh[x8_qs_offset(j, i)];
}

// Software prefetch of the weight bytes kPrefetchBytes ahead of block `blk` (into all cache
// levels), one per 64-byte line. GEMV streams each weight row once; the hardware prefetchers stop
// at 4 KiB page boundaries, and measured on this machine the prefetch raised cold-weight GEMV
// throughput ~1.4x (distances 4-8 KiB were best). Past the end of the matrix it is harmless.
constexpr int64_t kPrefetchBytes = 4096;
template <typename Block>
static inline void prefetch_ahead(const Block* blk) {
  const char* p = reinterpret_cast<const char*>(blk) + kPrefetchBytes;
  for (size_t off = 0; off < sizeof(Block); off += 64) __builtin_prefetch(p + off, 0, 3);
}

// Calls Rows<rb>::run(args...) for a run-time rb in [1, Max].
template <template <int> class Rows, int Max, int RB = 1, typename... Args>
static inline void run_rows(int64_t rb, Args... args) {
  if constexpr (RB < Max) {
    if (rb > RB) return run_rows<Rows, Max, RB + 1>(rb, args...);
  }
  Rows<RB>::run(args...);
}

// The gemv/gemm driver of every K-quant variant: weight rows [n0, n1) in panels of about 256 KiB
// (each panel stays in L2 while all activation tiles pass over it), activation rows in tiles of
// up to TileRows. Rows<rb>::run(w_row, x_tile, ldx, nb, y_tile, ldy) computes one weight row
// against rb activation rows (x_tile row r at x_tile + r * ldx bytes, output y_tile[r * ldy]).
template <typename Block, template <int> class Rows, int TileRows>
static inline void kquant_matmul(const MatmulArgs& a, int64_t n0, int64_t n1) {
  const int64_t nb = a.K / QK_K;
  const Block* w = static_cast<const Block*>(a.w);
  const uint8_t* x = static_cast<const uint8_t*>(a.x);
  const int64_t row_bytes = nb * static_cast<int64_t>(sizeof(Block));
  int64_t panel = (256 * 1024) / (row_bytes > 0 ? row_bytes : 1);
  if (panel < 4) panel = 4;
  for (int64_t p0 = n0; p0 < n1; p0 += panel) {
    const int64_t p1 = p0 + panel < n1 ? p0 + panel : n1;
    for (int64_t r0 = 0; r0 < a.R; r0 += TileRows) {
      const int64_t rb = a.R - r0 < TileRows ? a.R - r0 : TileRows;
      for (int64_t n = p0; n < p1; ++n) {
        run_rows<Rows, TileRows>(rb, w + n * nb, x + r0 * a.ldx, a.ldx, nb, a.y + r0 * a.ldy + n,
                                 a.ldy);
      }
    }
  }
}

}  // namespace kquant_detail
}  // namespace qgemma
