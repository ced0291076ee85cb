// NEON + Armv8.6 I8MM GEMM (prefill) for the repacked Q4_0x8 and Q8_0x8 layouts against Q8_0
// activations.
//
// SMMLA (vmmlaq_s32) multiplies a 2x8 int8 matrix by the transpose of another 2x8 and adds the
// 2x2 int32 result: with A = {x_r[8k..8k+7], x_r+1[8k..8k+7]} (two activation rows) and
// B = {w_j[8k..8k+7], w_j+1[8k..8k+7]} (two weight rows), one instruction adds
//   [x_r.w_j, x_r.w_j+1, x_r+1.w_j, x_r+1.w_j+1]
// over 8 elements. A 32-element block is 4 such k steps, so a pair of activation rows against
// the 8 rows of a group needs 4 (row pairs) x 4 (k) = 16 SMMLA per block (the sdot kernel needs
// 16 sdot per block for ONE activation row: I8MM does twice the MACs per instruction).
// Operand shuffles: in the x8 layouts one 16-byte load holds the same 4 bytes of 4 weight rows
// (one int32 lane per row); zipping the 32-bit lanes of chunks 2k and 2k+1 gives rows (0,1),
// (2,3) in 8-byte halves; for activations, zipping the 64-bit halves of two rows' 16-byte loads
// gives the A operands. Q4 nibbles become q = nibble - 8 (low nibbles: elements 0..15 in the
// Q8_0x8 chunk order, high nibbles: elements 16..31).
// Scaling as in the sdot kernel: per block, int32 -> f32, one FMA with d_w * d_x, so results
// match the reference up to the float rounding of the per-block scale products and the sum
// over blocks (tests/kernels/test_matmul.cpp states the bound).
// Tiling: N blocks of ~256 KiB of weights, activation tiles of up to 4 rows (2 pairs); an odd
// last row is paired with itself and only one row is stored.
#if !defined(__ARM_FEATURE_MATMUL_INT8)
#error "matmul_x8_i8mm.cpp needs -march=armv8.6-a+i8mm"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kMaxPairs = 2;  // activation row pairs per micro-kernel call (4 rows)
constexpr size_t kL2Target = 256 * 1024;

inline float f16(f16_bits h) {
  __fp16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

template <bool kQ4>
using BlockOf = std::conditional_t<kQ4, block_q4_0x8, block_q8_0x8>;

// The 8 chunks of 4 bytes of every row of one block in Q8_0x8 order: c[i] (i = 0..7) holds
// elements 4i..4i+3; lo[i] rows 0..3, hi[i] rows 4..7 (one int32 lane per row).
template <bool kQ4>
inline void load_chunks(const BlockOf<kQ4>& B, int8x16_t lo[8], int8x16_t hi[8]) {
  if constexpr (kQ4) {
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    for (int c = 0; c < 4; ++c) {
      const uint8x16_t v0 = vld1q_u8(B.qs + 32 * c);
      const uint8x16_t v1 = vld1q_u8(B.qs + 32 * c + 16);
      lo[c] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v0, m4)), eight);
      hi[c] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v1, m4)), eight);
      lo[c + 4] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v0, 4)), eight);
      hi[c + 4] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v1, 4)), eight);
    }
  } else {
    for (int c = 0; c < 8; ++c) {
      lo[c] = vld1q_s8(B.qs + 32 * c);
      hi[c] = vld1q_s8(B.qs + 32 * c + 16);
    }
  }
}

// 8 weight rows (one group) x NP pairs of activation rows over all K. xr[2p], xr[2p+1] are the
// rows of pair p (equal when the pair has one row); rows_out = number of rows to store.
template <bool kQ4, int NP>
void micro(const BlockOf<kQ4>* g, int64_t nb, const block_q8_0* const* xr, float* y, int64_t ldy,
           int rows_out) {
  float32x4_t acc[NP][4];
  for (int p = 0; p < NP; ++p)
    for (int q = 0; q < 4; ++q) acc[p][q] = vdupq_n_f32(0.0f);
  for (int64_t b = 0; b < nb; ++b) {
    const auto& B = g[b];
    int8x16_t lo[8], hi[8];
    load_chunks<kQ4>(B, lo, hi);
    // Weight operands: wp[k][q] = rows (2q, 2q+1), elements 8k..8k+7.
    int8x16_t wp[4][4];
    for (int k = 0; k < 4; ++k) {
      const int32x4_t a0 = vreinterpretq_s32_s8(lo[2 * k]),
                      a1 = vreinterpretq_s32_s8(lo[2 * k + 1]);
      const int32x4_t b0 = vreinterpretq_s32_s8(hi[2 * k]),
                      b1 = vreinterpretq_s32_s8(hi[2 * k + 1]);
      wp[k][0] = vreinterpretq_s8_s32(vzip1q_s32(a0, a1));
      wp[k][1] = vreinterpretq_s8_s32(vzip2q_s32(a0, a1));
      wp[k][2] = vreinterpretq_s8_s32(vzip1q_s32(b0, b1));
      wp[k][3] = vreinterpretq_s8_s32(vzip2q_s32(b0, b1));
    }
    // d_w of rows (2q, 2q+1) twice: [d_2q, d_2q+1, d_2q, d_2q+1].
    const float16x8_t dh = vreinterpretq_f16_u16(vld1q_u16(B.d));
    const float64x2_t dlo = vreinterpretq_f64_f32(vcvt_f32_f16(vget_low_f16(dh)));
    const float64x2_t dhi = vreinterpretq_f64_f32(vcvt_high_f32_f16(dh));
    const float32x4_t dwp[4] = {vreinterpretq_f32_f64(vdupq_laneq_f64(dlo, 0)),
                                vreinterpretq_f32_f64(vdupq_laneq_f64(dlo, 1)),
                                vreinterpretq_f32_f64(vdupq_laneq_f64(dhi, 0)),
                                vreinterpretq_f32_f64(vdupq_laneq_f64(dhi, 1))};
    for (int p = 0; p < NP; ++p) {
      const block_q8_0& x0 = xr[2 * p][b];
      const block_q8_0& x1 = xr[2 * p + 1][b];
      const int64x2_t x0a = vreinterpretq_s64_s8(vld1q_s8(x0.qs));
      const int64x2_t x0b = vreinterpretq_s64_s8(vld1q_s8(x0.qs + 16));
      const int64x2_t x1a = vreinterpretq_s64_s8(vld1q_s8(x1.qs));
      const int64x2_t x1b = vreinterpretq_s64_s8(vld1q_s8(x1.qs + 16));
      const int8x16_t xp[4] = {
          vreinterpretq_s8_s64(vzip1q_s64(x0a, x1a)), vreinterpretq_s8_s64(vzip2q_s64(x0a, x1a)),
          vreinterpretq_s8_s64(vzip1q_s64(x0b, x1b)), vreinterpretq_s8_s64(vzip2q_s64(x0b, x1b))};
      const float dx0 = f16(x0.d), dx1 = f16(x1.d);
      const float32x4_t dx = {dx0, dx0, dx1, dx1};
      for (int q = 0; q < 4; ++q) {
        int32x4_t s = vmmlaq_s32(vdupq_n_s32(0), xp[0], wp[0][q]);
        s = vmmlaq_s32(s, xp[1], wp[1][q]);
        s = vmmlaq_s32(s, xp[2], wp[2][q]);
        s = vmmlaq_s32(s, xp[3], wp[3][q]);
        acc[p][q] = vfmaq_f32(acc[p][q], vcvtq_f32_s32(s), vmulq_f32(dwp[q], dx));
      }
    }
  }
  // acc[p][q] = [y(r, 2q), y(r, 2q+1), y(r+1, 2q), y(r+1, 2q+1)] with r = 2p.
  for (int p = 0; p < NP; ++p) {
    float* y0 = y + (2 * p) * ldy;
    vst1q_f32(y0, vcombine_f32(vget_low_f32(acc[p][0]), vget_low_f32(acc[p][1])));
    vst1q_f32(y0 + 4, vcombine_f32(vget_low_f32(acc[p][2]), vget_low_f32(acc[p][3])));
    if (2 * p + 1 < rows_out) {
      float* y1 = y0 + ldy;
      vst1q_f32(y1, vcombine_f32(vget_high_f32(acc[p][0]), vget_high_f32(acc[p][1])));
      vst1q_f32(y1 + 4, vcombine_f32(vget_high_f32(acc[p][2]), vget_high_f32(acc[p][3])));
    }
  }
}

template <bool kQ4>
void matmul_x8(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  using Fn = void (*)(const Block*, int64_t, const block_q8_0* const*, float*, int64_t, int);
  static constexpr Fn kFns[kMaxPairs] = {micro<kQ4, 1>, micro<kQ4, 2>};
  constexpr int kMaxRB = 2 * kMaxPairs;
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  const int64_t row_bytes = nb * static_cast<int64_t>(sizeof(Block)) / 8;
  const int64_t n_block = std::max<int64_t>(8, kL2Target / row_bytes / 8 * 8);
  for (int64_t nbeg = n0; nbeg < n1; nbeg += n_block) {
    const int64_t nend = std::min(n1, nbeg + n_block);
    for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
      const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
      const int np = (rb + 1) / 2;
      const block_q8_0* xr[kMaxRB];
      for (int r = 0; r < 2 * np; ++r) {
        const int64_t row = r0 + std::min(r, rb - 1);  // an odd last row pairs with itself
        xr[r] = reinterpret_cast<const block_q8_0*>(x + row * a.ldx);
      }
      for (int64_t n = nbeg; n < nend; n += 8) {
        kFns[np - 1](w + (n / 8) * nb, nb, xr, a.y + r0 * a.ldy + n, a.ldy, rb);
      }
    }
  }
}

}  // namespace

void matmul_q4_0x8_q8_0_i8mm(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<true>(a, n0, n1);
}
void matmul_q8_0x8_q8_0_i8mm(const MatmulArgs& a, int64_t n0, int64_t n1) {
  matmul_x8<false>(a, n0, n1);
}

}  // namespace qgemma
