// NEON (Armv8.2 dotprod) GEMV for the plain Q4_0 and Q8_0 layouts against Q8_0 activations.
//
// 4 weight rows x up to 4 activation rows per pass. Per block: the weights become signed int8
// (Q4: nibble - 8; Q8 as stored), two sdot per (weight row, activation row) give 4 partial int32
// sums, converted and accumulated in float with the block scale d_w * d_x; the 4 lanes are added
// at the end of the row. sdot multiplies signed by signed bytes, so no offset correction.
#if !defined(__ARM_FEATURE_DOTPROD)
#error "matmul_q_neon.cpp needs -march=armv8.2-a+dotprod"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kRowsW = 4;
constexpr int kMaxRB = 4;

inline float f16(f16_bits h) {
  __fp16 v;
  std::memcpy(&v, &h, 2);
  return static_cast<float>(v);
}

template <bool kQ4>
using BlockOf = std::conditional_t<kQ4, block_q4_0, block_q8_0>;

template <bool kQ4>
inline void load_weights(const BlockOf<kQ4>& blk, int8x16_t* a, int8x16_t* b) {
  if constexpr (kQ4) {
    const uint8x16_t v = vld1q_u8(blk.qs);
    const int8x16_t eight = vdupq_n_s8(8);
    *a = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0F))), eight);  // elements 0..15
    *b = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight);               // 16..31
  } else {
    *a = vld1q_s8(blk.qs);
    *b = vld1q_s8(blk.qs + 16);
  }
}

template <bool kQ4, int RB>
void micro(const BlockOf<kQ4>* const* w, int nrows, int64_t nb, const block_q8_0* const* xr,
           float* y, int64_t ldy) {
  float32x4_t acc[RB][kRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kRowsW; ++j) acc[r][j] = vdupq_n_f32(0.0f);
  }
  for (int64_t b = 0; b < nb; ++b) {
    int8x16_t wa[kRowsW], wb[kRowsW];
    float dw[kRowsW];
    for (int j = 0; j < kRowsW; ++j) {
      load_weights<kQ4>(w[j][b], &wa[j], &wb[j]);
      dw[j] = f16(w[j][b].d);
    }
    for (int r = 0; r < RB; ++r) {
      const block_q8_0& x = xr[r][b];
      const int8x16_t xa = vld1q_s8(x.qs), xb = vld1q_s8(x.qs + 16);
      const float dx = f16(x.d);
      for (int j = 0; j < kRowsW; ++j) {
        const int32x4_t i = vdotq_s32(vdotq_s32(vdupq_n_s32(0), wa[j], xa), wb[j], xb);
        acc[r][j] = vfmaq_n_f32(acc[r][j], vcvtq_f32_s32(i), dw[j] * dx);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < nrows; ++j) y[r * ldy + j] = vaddvq_f32(acc[r][j]);
  }
}

template <bool kQ4>
void gemv_plain(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using Block = BlockOf<kQ4>;
  using Fn = void (*)(const Block* const*, int, int64_t, const block_q8_0* const*, float*, int64_t);
  static constexpr Fn kFns[kMaxRB] = {micro<kQ4, 1>, micro<kQ4, 2>, micro<kQ4, 3>, micro<kQ4, 4>};
  const int64_t nb = a.K / QK8_0;
  const auto* w = static_cast<const Block*>(a.w);
  const auto* x = static_cast<const uint8_t*>(a.x);
  for (int64_t n = n0; n < n1; n += kRowsW) {
    const int nrows = static_cast<int>(std::min<int64_t>(kRowsW, n1 - n));
    const Block* rows[kRowsW];
    for (int j = 0; j < kRowsW; ++j) rows[j] = w + (n + std::min(j, nrows - 1)) * nb;
    for (int64_t r0 = 0; r0 < a.R; r0 += kMaxRB) {
      const int rb = static_cast<int>(std::min<int64_t>(kMaxRB, a.R - r0));
      const block_q8_0* xr[kMaxRB];
      for (int r = 0; r < rb; ++r)
        xr[r] = reinterpret_cast<const block_q8_0*>(x + (r0 + r) * a.ldx);
      kFns[rb - 1](rows, nrows, nb, xr, a.y + r0 * a.ldy + n, a.ldy);
    }
  }
}

}  // namespace

void gemv_q4_0_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_plain<true>(a, n0, n1);
}
void gemv_q8_0_q8_0_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_plain<false>(a, n0, n1);
}

}  // namespace qgemma
