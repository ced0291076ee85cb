// NEON GEMV for float weights (F32, F16, BF16) against F32 activations.
//
// 4 weight rows x up to 2 activation rows per micro-kernel call, 8 elements of K per step: two
// 4-lane FMA accumulators per (weight row, activation row), i.e. 8 float lanes, each a sequential
// sum over K/8 products (the error model tests/kernels/test_matmul.cpp states for float formats),
// added together at the end of the row. F16 widens with fcvtl/fcvtl2 (vcvt_f32_f16), BF16 with a
// 16-bit left shift (ushll; exact), so the weights stream once per activation row pair from L1.
// Up to 8 activation rows share one weight tile: K runs in chunks of kKc elements (the 4-row
// weight chunk, <= 8 KiB, stays in L1 while every row pair passes over it) and the vector
// accumulators live in a 1 KiB stack array between chunks, so each weight byte is read from
// memory once per 8 activation rows. A K tail (K % 8) is one more step on zero-padded copies.
// Correct for any R (more than 8 rows run in groups of 8); the dispatcher uses it for prefill too.
#if !defined(__ARM_NEON) || !defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC)
#error "matmul_float_neon.cpp needs -march=armv8.2-a+fp16"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cstring>

#include "kernels/matmul/matmul_variants.h"

namespace qgemma {
namespace {

constexpr int kRowsW = 4;     // weight rows per tile
constexpr int kMaxRG = 8;     // activation rows sharing one weight tile
constexpr int64_t kKc = 512;  // K elements per chunk (4 rows x 512 x 4 bytes = 8 KiB of F32)
constexpr int kLanes = 8;     // float lanes per (weight row, activation row)

enum class WKind { f32, f16, bf16 };

template <WKind kW>
struct WType;
template <>
struct WType<WKind::f32> {
  using type = float;
};
template <>
struct WType<WKind::f16> {
  using type = f16_bits;
};
template <>
struct WType<WKind::bf16> {
  using type = bf16_bits;
};

// Eight consecutive weights as two float32x4.
template <WKind kW>
inline void load8(const typename WType<kW>::type* p, float32x4_t* lo, float32x4_t* hi) {
  if constexpr (kW == WKind::f32) {
    *lo = vld1q_f32(p);
    *hi = vld1q_f32(p + 4);
  } else if constexpr (kW == WKind::f16) {
    const float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    *lo = vcvt_f32_f16(vget_low_f16(h));
    *hi = vcvt_high_f32_f16(h);
  } else {
    const uint16x8_t u = vld1q_u16(p);
    *lo = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(u), 16));
    *hi = vreinterpretq_f32_u32(vshll_high_n_u16(u, 16));
  }
}

// acc[r][j][0..7]: lanes of (activation row r, weight row j); kc is a multiple of 8.
template <WKind kW, int RB>
void micro(const typename WType<kW>::type* const* w, const float* const* x, int64_t kc,
           float (*acc)[kRowsW][kLanes]) {
  float32x4_t s0[RB][kRowsW], s1[RB][kRowsW];
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kRowsW; ++j) {
      s0[r][j] = vld1q_f32(acc[r][j]);
      s1[r][j] = vld1q_f32(acc[r][j] + 4);
    }
  }
  for (int64_t k = 0; k < kc; k += 8) {
    float32x4_t w0[kRowsW], w1[kRowsW];
    for (int j = 0; j < kRowsW; ++j) load8<kW>(w[j] + k, &w0[j], &w1[j]);
    for (int r = 0; r < RB; ++r) {
      const float32x4_t x0 = vld1q_f32(x[r] + k);
      const float32x4_t x1 = vld1q_f32(x[r] + k + 4);
      for (int j = 0; j < kRowsW; ++j) {
        s0[r][j] = vfmaq_f32(s0[r][j], w0[j], x0);
        s1[r][j] = vfmaq_f32(s1[r][j], w1[j], x1);
      }
    }
  }
  for (int r = 0; r < RB; ++r) {
    for (int j = 0; j < kRowsW; ++j) {
      vst1q_f32(acc[r][j], s0[r][j]);
      vst1q_f32(acc[r][j] + 4, s1[r][j]);
    }
  }
}

template <WKind kW>
float to_f32(typename WType<kW>::type v) {
  if constexpr (kW == WKind::f32) {
    return v;
  } else if constexpr (kW == WKind::f16) {
    __fp16 h;
    std::memcpy(&h, &v, 2);
    return static_cast<float>(h);
  } else {
    const uint32_t u = static_cast<uint32_t>(v) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
}

template <WKind kW>
void gemv_float(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using W = typename WType<kW>::type;
  const auto* wbase = static_cast<const W*>(a.w);
  const auto* xb = static_cast<const uint8_t*>(a.x);
  const int64_t K = a.K;
  const int64_t kmain = K / 8 * 8;
  const int tail = static_cast<int>(K - kmain);
  float acc[kMaxRG][kRowsW][kLanes];
  for (int64_t n = n0; n < n1; n += kRowsW) {
    const int nrows = static_cast<int>(std::min<int64_t>(kRowsW, n1 - n));
    const W* rows[kRowsW];
    for (int j = 0; j < kRowsW; ++j) rows[j] = wbase + (n + std::min(j, nrows - 1)) * K;
    // The zero-padded K tail of the weight rows, converted once per tile.
    float wt[kRowsW][kLanes] = {};
    for (int j = 0; j < kRowsW; ++j) {
      for (int t = 0; t < tail; ++t) wt[j][t] = to_f32<kW>(rows[j][kmain + t]);
    }
    for (int64_t rg = 0; rg < a.R; rg += kMaxRG) {
      const int nr = static_cast<int>(std::min<int64_t>(kMaxRG, a.R - rg));
      const float* xr[kMaxRG];
      for (int r = 0; r < nr; ++r) {
        xr[r] = reinterpret_cast<const float*>(xb + (rg + r) * a.ldx);
      }
      std::memset(acc, 0, sizeof(acc));
      for (int64_t k0 = 0; k0 < kmain; k0 += kKc) {
        const int64_t kc = std::min(kKc, kmain - k0);
        const W* wk[kRowsW];
        for (int j = 0; j < kRowsW; ++j) wk[j] = rows[j] + k0;
        for (int r = 0; r < nr; r += 2) {
          const float* xk[2] = {xr[r] + k0, r + 1 < nr ? xr[r + 1] + k0 : nullptr};
          if (r + 1 < nr) {
            micro<kW, 2>(wk, xk, kc, acc + r);
          } else {
            micro<kW, 1>(wk, xk, kc, acc + r);
          }
        }
      }
      if (tail > 0) {
        const float* wtp[kRowsW] = {wt[0], wt[1], wt[2], wt[3]};
        for (int r = 0; r < nr; ++r) {
          float xt[kLanes] = {};
          for (int t = 0; t < tail; ++t) xt[t] = xr[r][kmain + t];
          const float* xtp[1] = {xt};
          micro<WKind::f32, 1>(wtp, xtp, kLanes, acc + r);
        }
      }
      for (int r = 0; r < nr; ++r) {
        float* y = a.y + (rg + r) * a.ldy + n;
        for (int j = 0; j < nrows; ++j) {
          y[j] = vaddvq_f32(vaddq_f32(vld1q_f32(acc[r][j]), vld1q_f32(acc[r][j] + 4)));
        }
      }
    }
  }
}

}  // namespace

void gemv_f32_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<WKind::f32>(a, n0, n1);
}
void gemv_f16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<WKind::f16>(a, n0, n1);
}
void gemv_bf16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemv_float<WKind::bf16>(a, n0, n1);
}

}  // namespace qgemma
