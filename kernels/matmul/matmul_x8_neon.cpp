// NEON (Armv8.2 dotprod) GEMV/GEMM for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0
// activations.
//
// Outer product with sdot-by-lane: an int8x16 holds one 4-byte chunk of 4 weight rows (half of a
// group's 32-byte chunk); vdotq_laneq_s32 with the activation's matching 4 bytes (a lane of the
// activation block) adds 4 rows' partial dot products, so after a block's chunks each int32 lane
// holds one row's full block dot product. Per block, 8 weight rows and one activation row: 16
// sdot, 2 converts, 2 FMAs with the scales d_w * d_x. sdot is signed x signed: Q4 nibbles become
// q = nibble - 8, Q8 is used as stored, no offset correction.
// Tiling: N blocks of ~256 KiB of weights, activation tiles of up to 4 rows, micro-kernel = 8
// weight rows x RB activation rows over all of K; R <= 4 streams the weights once.
#if !defined(__ARM_FEATURE_DOTPROD)
#error "matmul_x8_neon.cpp needs -march=armv8.2-a+dotprod"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxRB = 4;
constexpr size_t kL2Target = 256 * 1024;

inline float f16(f16_bits h) {
  __fp16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

template <bool kQ4>
using BlockOf = std::conditional_t<kQ4, block_q4_0x8, block_q8_0x8>;

template <bool kQ4, int RB>
void micro(const BlockOf<kQ4>* g, int64_t nb, const block_q8_0* const* xr, float* y, int64_t ldy) {
  float32x4_t acc0[RB], acc1[RB];
  for (int r = 0; r < RB; ++r) acc0[r] = acc1[r] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = g[b];
    int32x4_t i0[RB], i1[RB];
    int8x16_t xa[RB], xb[RB];
    for (int r = 0; r < RB; ++r) {
      i0[r] = i1[r] = vdupq_n_s32(0);
      xa[r] = vld1q_s8(xr[r][b].qs);       // elements 0..15
      xb[r] = vld1q_s8(xr[r][b].qs + 16);  // elements 16..31
    }
    if constexpr (kQ4) {
      const uint8x16_t lo4 = vdupq_n_u8(0x0F);
      const int8x16_t eight = vdupq_n_s8(8);
      // Chunk c: low nibbles are elements 4c..4c+3 (lane c of xa), high ones 16+4c.. (lane c
      // of xb).
      [&]<int... C>(std::integer_sequence<int, C...>) {
        (
            [&] {
              const uint8x16_t v0 = vld1q_u8(B.qs + 32 * C);
              const uint8x16_t v1 = vld1q_u8(B.qs + 32 * C + 16);
              const int8x16_t l0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v0, lo4)), eight);
              const int8x16_t l1 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v1, lo4)), eight);
              const int8x16_t h0 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), eight);
              const int8x16_t h1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), eight);
              for (int r = 0; r < RB; ++r) {
                i0[r] = vdotq_laneq_s32(i0[r], l0, xa[r], C);
                i1[r] = vdotq_laneq_s32(i1[r], l1, xa[r], C);
                i0[r] = vdotq_laneq_s32(i0[r], h0, xb[r], C);
                i1[r] = vdotq_laneq_s32(i1[r], h1, xb[r], C);
              }
            }(),
            ...);
      }
      (std::make_integer_sequence<int, 4>{});
    } else {
      [&]<int... C>(std::integer_sequence<int, C...>) {
        (
            [&] {
              const int8x16_t v0 = vld1q_s8(B.qs + 32 * C);
              const int8x16_t v1 = vld1q_s8(B.qs + 32 * C + 16);
              for (int r = 0; r < RB; ++r) {
                const int8x16_t x = C < 4 ? xa[r] : xb[r];
                i0[r] = vdotq_laneq_s32(i0[r], v0, x, C % 4);
                i1[r] = vdotq_laneq_s32(i1[r], v1, x, C % 4);
              }
            }(),
            ...);
      }
      (std::make_integer_sequence<int, 8>{});
    }
    float dwf[8];
    for (int j = 0; j < 8; ++j) dwf[j] = f16(B.d[j]);
    const float32x4_t dw0 = vld1q_f32(dwf), dw1 = vld1q_f32(dwf + 4);
    for (int r = 0; r < RB; ++r) {
      const float dx = f16(xr[r][b].d);
      acc0[r] = vfmaq_f32(acc0[r], vcvtq_f32_s32(i0[r]), vmulq_n_f32(dw0, dx));
      acc1[r] = vfmaq_f32(acc1[r], vcvtq_f32_s32(i1[r]), vmulq_n_f32(dw1, dx));
    }
  }
  for (int r = 0; r < RB; ++r) {
    vst1q_f32(y + r * ldy, acc0[r]);
    vst1q_f32(y + r * ldy + 4, acc1[r]);
  }
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  using Fn = void (*)(const Block*, int64_t, const block_q8_0* const*, float*, int64_t);
  static constexpr Fn kFns[kMaxRB] = {micro<kQ4, 1>, micro<kQ4, 2>, micro<kQ4, 3>, micro<kQ4, 4>};
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  const int64_t row_bytes = nb * static_cast<int64_t>(sizeof(Block)) / 8;
  const int64_t n_block = std::max<int64_t>(8, kL2Target / row_bytes / 8 * 8);
  for (int64_t nbeg = n0; nbeg < n1; nbeg += n_block) {
    const int64_t nend = std::min(n1, nbeg + n_block);
    for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
      const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
      const block_q8_0* xr[kMaxRB];
      for (int r = 0; r < rb; ++r)
        xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx);
      for (int64_t n = nbeg; n < nend; n += 8) {
        kFns[rb - 1](w + (n / 8) * nb, nb, xr, a.y + r0 * a.ldy + n, a.ldy);
      }
    }
  }
}

}  // namespace

void matmul_q4_0x8_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<true>(a, n0, n1);
}
void matmul_q8_0x8_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<false>(a, n0, n1);
}

}  // namespace qgemma
