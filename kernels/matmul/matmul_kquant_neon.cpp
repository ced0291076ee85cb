// NEON (dotprod) Q4_K / Q6_K x Q8_K matmul. sdot (vdotq_s32) takes signed bytes on both sides:
// Q4_K's 4-bit codes are already valid int8, Q6_K's codes are shifted to -32..31 in the
// register, so neither needs Q8_K's bsums for the offset; Q4_K's min term still uses them.
// Per 16 or 32 codes one sdot chain gives int32x4, scaled by the sub-block scale with vmlaq;
// one horizontal add and one float step per 256-block.
#if !defined(__ARM_FEATURE_DOTPROD)
#error "matmul_kquant_neon.cpp needs -march=armv8.2-a+dotprod"
#endif

#include <arm_neon.h>

#include "kernels/matmul/kquant.h"
#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

using kquant_detail::kquant_matmul;
using kquant_detail::prefetch_ahead;
using kquant_detail::q4_k_scales_mins;

constexpr int kTileRows = 4;

inline float f16(f16_bits h) {
  __fp16 v;
  std::memcpy(&v, &h, sizeof(v));
  return static_cast<float>(v);
}

template <int RB>
void q4_k_rows(const block_q4_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  float acc[RB] = {};
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    uint64_t sc64, mn64;
    q4_k_scales_mins(w[b].scales, &sc64, &mn64);
    uint8_t sc[8];
    std::memcpy(sc, &sc64, 8);
    const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(mn64)));
    int32x4_t isum[RB];
    for (int r = 0; r < RB; ++r) isum[r] = vdupq_n_s32(0);
    for (int c = 0; c < 4; ++c) {
      // 32 bytes: low nibbles = sub-block 2c (elements 64c..+32), high = sub-block 2c + 1.
      const uint8x16_t q0 = vld1q_u8(w[b].qs + 32 * c);
      const uint8x16_t q1 = vld1q_u8(w[b].qs + 32 * c + 16);
      const int8x16_t lo0 = vreinterpretq_s8_u8(vandq_u8(q0, m4));
      const int8x16_t lo1 = vreinterpretq_s8_u8(vandq_u8(q1, m4));
      const int8x16_t hi0 = vreinterpretq_s8_u8(vshrq_n_u8(q0, 4));
      const int8x16_t hi1 = vreinterpretq_s8_u8(vshrq_n_u8(q1, 4));
      for (int r = 0; r < RB; ++r) {
        const int8_t* xq = xr[r][b].qs + 64 * c;
        const int32x4_t plo =
            vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo0, vld1q_s8(xq)), lo1, vld1q_s8(xq + 16));
        const int32x4_t phi =
            vdotq_s32(vdotq_s32(vdupq_n_s32(0), hi0, vld1q_s8(xq + 32)), hi1, vld1q_s8(xq + 48));
        isum[r] = vmlaq_n_s32(isum[r], plo, sc[2 * c]);
        isum[r] = vmlaq_n_s32(isum[r], phi, sc[2 * c + 1]);
      }
    }
    const float dw = f16(w[b].d), dm = f16(w[b].dmin);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      // Sums of the 8 sub-blocks (pairs of 16-sums), times the mins.
      const int16x8_t sub = vpaddq_s16(vld1q_s16(xb.bsums), vld1q_s16(xb.bsums + 8));
      const int32x4_t m = vmlal_s16(vmull_s16(vget_low_s16(sub), vget_low_s16(mins)),
                                    vget_high_s16(sub), vget_high_s16(mins));
      acc[r] += xb.d * (dw * static_cast<float>(vaddvq_s32(isum[r])) -
                        dm * static_cast<float>(vaddvq_s32(m)));
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = acc[r];
}

// Q5_K: q4_k_rows plus bit 4 of every code from qh (codes 0..31, still valid int8). qh byte l
// bit j belongs to element 32j + l; shifted right by 2 per chunk, chunk c finds sub-block 2c's
// bit at bit 0 and 2c + 1's at bit 1.
template <int RB>
void q5_k_rows(const block_q5_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  const uint8x16_t m16 = vdupq_n_u8(0x10);
  float acc[RB] = {};
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    uint64_t sc64, mn64;
    q4_k_scales_mins(w[b].scales, &sc64, &mn64);
    uint8_t sc[8];
    std::memcpy(sc, &sc64, 8);
    const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vcreate_u8(mn64)));
    uint8x16_t qh0 = vld1q_u8(w[b].qh);
    uint8x16_t qh1 = vld1q_u8(w[b].qh + 16);
    int32x4_t isum[RB];
    for (int r = 0; r < RB; ++r) isum[r] = vdupq_n_s32(0);
    for (int c = 0; c < 4; ++c) {
      const uint8x16_t q0 = vld1q_u8(w[b].qs + 32 * c);
      const uint8x16_t q1 = vld1q_u8(w[b].qs + 32 * c + 16);
      const int8x16_t lo0 =
          vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q0, m4), vandq_u8(vshlq_n_u8(qh0, 4), m16)));
      const int8x16_t lo1 =
          vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q1, m4), vandq_u8(vshlq_n_u8(qh1, 4), m16)));
      const int8x16_t hi0 =
          vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q0, 4), vandq_u8(vshlq_n_u8(qh0, 3), m16)));
      const int8x16_t hi1 =
          vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q1, 4), vandq_u8(vshlq_n_u8(qh1, 3), m16)));
      qh0 = vshrq_n_u8(qh0, 2);
      qh1 = vshrq_n_u8(qh1, 2);
      for (int r = 0; r < RB; ++r) {
        const int8_t* xq = xr[r][b].qs + 64 * c;
        const int32x4_t plo =
            vdotq_s32(vdotq_s32(vdupq_n_s32(0), lo0, vld1q_s8(xq)), lo1, vld1q_s8(xq + 16));
        const int32x4_t phi =
            vdotq_s32(vdotq_s32(vdupq_n_s32(0), hi0, vld1q_s8(xq + 32)), hi1, vld1q_s8(xq + 48));
        isum[r] = vmlaq_n_s32(isum[r], plo, sc[2 * c]);
        isum[r] = vmlaq_n_s32(isum[r], phi, sc[2 * c + 1]);
      }
    }
    const float dw = f16(w[b].d), dm = f16(w[b].dmin);
    for (int r = 0; r < RB; ++r) {
      const block_q8_K& xb = xr[r][b];
      const int16x8_t sub = vpaddq_s16(vld1q_s16(xb.bsums), vld1q_s16(xb.bsums + 8));
      const int32x4_t m = vmlal_s16(vmull_s16(vget_low_s16(sub), vget_low_s16(mins)),
                                    vget_high_s16(sub), vget_high_s16(mins));
      acc[r] += xb.d * (dw * static_cast<float>(vaddvq_s32(isum[r])) -
                        dm * static_cast<float>(vaddvq_s32(m)));
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = acc[r];
}

template <int RB>
void q6_k_rows(const block_q6_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
               int64_t ldy) {
  const block_q8_K* xr[RB];
  for (int r = 0; r < RB; ++r) xr[r] = reinterpret_cast<const block_q8_K*>(x + r * ldx);
  const uint8x16_t m4 = vdupq_n_u8(0x0f);
  const uint8x16_t m3 = vdupq_n_u8(0x03);
  const int8x16_t k32 = vdupq_n_s8(32);
  float acc[RB] = {};
  for (int64_t b = 0; b < nb; ++b) {
    prefetch_ahead(w + b);
    const int8_t* sc = w[b].scales;
    int32x4_t isum[RB];
    for (int r = 0; r < RB; ++r) isum[r] = vdupq_n_s32(0);
    for (int h = 0; h < 2; ++h) {
      const uint8_t* ql = w[b].ql + 64 * h;
      const uint8_t* qh = w[b].qh + 32 * h;
      for (int i = 0; i < 2; ++i) {                        // 16-lane halves of each 32-element run
        const uint8x16_t l0 = vld1q_u8(ql + 16 * i);       // runs t = 0 (low) and 2 (high)
        const uint8x16_t l1 = vld1q_u8(ql + 32 + 16 * i);  // runs t = 1 (low) and 3 (high)
        const uint8x16_t hb = vld1q_u8(qh + 16 * i);
        // Element 32t + 16i + lane of this half, t = 0..3.
        const uint8x16_t codes[4] = {
            vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(hb, m3), 4)),
            vorrq_u8(vandq_u8(l1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m3), 4)),
            vorrq_u8(vshrq_n_u8(l0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m3), 4)),
            vorrq_u8(vshrq_n_u8(l1, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4)),
        };
        for (int t = 0; t < 4; ++t) {
          const int8x16_t q = vsubq_s8(vreinterpretq_s8_u8(codes[t]), k32);
          const int e = 128 * h + 32 * t + 16 * i;  // first element; group e / 16
          for (int r = 0; r < RB; ++r) {
            const int32x4_t p = vdotq_s32(vdupq_n_s32(0), q, vld1q_s8(xr[r][b].qs + e));
            isum[r] = vmlaq_n_s32(isum[r], p, sc[e / 16]);
          }
        }
      }
    }
    const float dw = f16(w[b].d);
    for (int r = 0; r < RB; ++r) {
      acc[r] += xr[r][b].d * dw * static_cast<float>(vaddvq_s32(isum[r]));
    }
  }
  for (int r = 0; r < RB; ++r) y[r * ldy] = acc[r];
}

template <int RB>
struct Q4KRows {
  static void run(const block_q4_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q4_k_rows<RB>(w, x, ldx, nb, y, ldy);
  }
};

template <int RB>
struct Q5KRows {
  static void run(const block_q5_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q5_k_rows<RB>(w, x, ldx, nb, y, ldy);
  }
};

template <int RB>
struct Q6KRows {
  static void run(const block_q6_K* w, const uint8_t* x, size_t ldx, int64_t nb, float* y,
                  int64_t ldy) {
    q6_k_rows<RB>(w, x, ldx, nb, y, ldy);
  }
};

}  // namespace

// One body serves as both the gemv and the gemm entry of the table (see kquant.h).
void matmul_q4_k_q8_k_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q4_K, Q4KRows, kTileRows>(a, n0, n1);
}

void matmul_q6_k_q8_k_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q6_K, Q6KRows, kTileRows>(a, n0, n1);
}

void matmul_q5_k_q8_k_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  kquant_matmul<block_q5_K, Q5KRows, kTileRows>(a, n0, n1);
}

}  // namespace qgemma
