// NEON GEMV and GEMM for float weights (F32, F16, BF16) against F32 activations.
//
// GEMV (decode, speculative verification; any R): 4 weight rows x up to 2 activation rows per
// micro-kernel call, 8 elements of K per step: two 4-lane FMA accumulators per (weight row,
// activation row), i.e. 8 float lanes, each a sequential sum over K/8 products (the error model
// tests/kernels/test_matmul.cpp states for float formats), added together at the end of the row
// (vaddvq_f32(lo + hi)). F16 widens with fcvtl/fcvtl2 (vcvt_f32_f16), BF16 with a 16-bit left
// shift (ushll; exact), so the weights stream once per activation row pair from L1.
// Up to 8 activation rows share one weight tile: K runs in chunks of kKc elements (the 4-row
// weight chunk, <= 8 KiB, stays in L1 while every row pair passes over it) and the vector
// accumulators live in a 1 KiB stack array between chunks, so each weight byte is read from
// memory once per 8 activation rows. A K tail (K % 8) is one more step on zero-padded copies.
//
// GEMM (prefill, registered for R > 8; correct for any R): the same lanes-along-K dot products,
// blocked for the caches, and bit for bit the GEMV's result for every row (batch invariance:
// speculative verification compares a 9-row batch with single-token steps). Activation rows are
// taken in blocks of up to kMc = 72 (as many as keep block x K x 4 bytes <= 512 KiB in L2, at
// least 12); for each block and each group of kNb = 8 weight rows, kGKc = 512 elements of K of
// those rows at a time are converted to F32 once into a 16 KiB stack buffer (F32 weights are read
// in place) and reused from L1 by every 3-row activation tile of the block. Micro-kernel: 4 weight
// rows x 3 activation rows x 2 halves = 24 of the 32 q registers as accumulators; each 8-element
// step is done as lanes 0..3 then 4..7 (4 weight + 3 activation loads per 12 FMAs, vs 6 per 8 in
// the GEMV's 4 x 2 tile). The accumulators of a block x group live in an 18 KiB stack array
// between the K chunks, so each lane is the GEMV's sequential FMA sum over K/8 products; the K
// tail is the GEMV's step on zero-padded copies (weights converted the same scalar way), and the
// reduction (lo + hi, then faddp twice, vectorized over 4 weight rows with vpaddq) is
// vaddvq_f32's order. F16/BF16 weights are converted once per block of activation rows instead
// of once per row pair, weights are read from memory once per block of rows instead of once per
// 8 rows, and activations once per 8 weight rows from L2 instead of once per 4 weight rows from
// wherever R x K fits.
// Not measured: this project's machines are x86; NEON runs only under qemu-aarch64, whose timings
// say nothing about Arm cores, so the block sizes (512 KiB L2 budget, 72-row cap, 512-element
// chunks, 4 x 3 tile) are the AVX-512 kernel's design adapted to 32 x 128-bit registers, untuned.
// Checked in the disassembly (aarch64-linux-gnu-g++ 12, Release): the 4 x 3 inner loop is 14 q
// loads + 24 fmla with no stack traffic (see the unroll pragmas and the barrier in gemm_micro).
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

// ---- GEMM ---------------------------------------------------------------------------------
constexpr int kGRowsW = 4;     // weight rows per micro tile
constexpr int kGRowsX = 3;     // activation rows per micro tile: 4 x 3 x 2 = 24 accumulators
constexpr int kNb = 8;         // weight rows converted together (2 micro tiles)
constexpr int64_t kGKc = 512;  // K elements per chunk: 8 rows x 512 x 4 bytes = 16 KiB of F32
constexpr int64_t kMc = 72;    // activation rows per block at most (24 micro tiles)
constexpr int kTileFloats = kGRowsX * kGRowsW * kLanes;
static_assert(kGKc % 8 == 0 && kMc % kGRowsX == 0 && kNb % kGRowsW == 0);

// Y[r][j] = the GEMV's result for kc elements of K at a time: s0/s1[r][j] are the GEMV's two
// 4-lane accumulators of (activation row r, weight row j), kept in `spill` (layout [r][j][8])
// between the chunks of K (loaded unless `load` is false; zero otherwise, like the GEMV's memset).
// kc is a multiple of 8 (may be 0). On the last chunk (`last`), the zero-padded K tail step runs
// when wt is not null (wt[j], xt[r]: 8 floats each), the lanes are reduced in the GEMV's order and
// Y[r][j] is assigned for j < nrows.
template <int RB>
void gemm_micro(const float* const* w, int nrows, int64_t kc, const float* const* x,
                const float* const* wt, const float* const* xt, float* spill, bool load, bool last,
                float* y, int64_t ldy) {
  float32x4_t s0[RB][kGRowsW], s1[RB][kGRowsW];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 16
    for (int j = 0; j < kGRowsW; ++j) {
      const float* p = spill + (r * kGRowsW + j) * kLanes;
      s0[r][j] = load ? vld1q_f32(p) : vdupq_n_f32(0.0f);
      s1[r][j] = load ? vld1q_f32(p + 4) : vdupq_n_f32(0.0f);
    }
  }
  // Local copies of the row pointers (the barrier below would make the compiler reload w[j] and
  // x[r] on every step).
  const float* wp[kGRowsW];
  const float* xp[RB];
#pragma GCC unroll 16
  for (int j = 0; j < kGRowsW; ++j) wp[j] = w[j];
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) xp[r] = x[r];
  for (int64_t k = 0; k < kc; k += 8) {
    // Lanes 0..3 of the step, then lanes 4..7: 4 weight + RB activation registers live at a time.
    float32x4_t wv[kGRowsW];
#pragma GCC unroll 16
    for (int j = 0; j < kGRowsW; ++j) wv[j] = vld1q_f32(wp[j] + k);
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      const float32x4_t xv = vld1q_f32(xp[r] + k);
#pragma GCC unroll 16
      for (int j = 0; j < kGRowsW; ++j) s0[r][j] = vfmaq_f32(s0[r][j], wv[j], xv);
    }
    // Keeps the compiler from hoisting the second half's loads above the first half's FMAs
    // (24 accumulators + 8 weights + activations would not fit the 32 registers: GCC 12 spilled).
    asm volatile("" ::: "memory");
#pragma GCC unroll 16
    for (int j = 0; j < kGRowsW; ++j) wv[j] = vld1q_f32(wp[j] + k + 4);
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      const float32x4_t xv = vld1q_f32(xp[r] + k + 4);
#pragma GCC unroll 16
      for (int j = 0; j < kGRowsW; ++j) s1[r][j] = vfmaq_f32(s1[r][j], wv[j], xv);
    }
  }
  if (!last) {
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
#pragma GCC unroll 16
      for (int j = 0; j < kGRowsW; ++j) {
        float* p = spill + (r * kGRowsW + j) * kLanes;
        vst1q_f32(p, s0[r][j]);
        vst1q_f32(p + 4, s1[r][j]);
      }
    }
    return;
  }
  if (wt != nullptr) {  // the GEMV's tail step: 8 lanes of zero-padded copies
#pragma GCC unroll 16
    for (int r = 0; r < RB; ++r) {
      const float32x4_t x0 = vld1q_f32(xt[r]);
      const float32x4_t x1 = vld1q_f32(xt[r] + 4);
#pragma GCC unroll 16
      for (int j = 0; j < kGRowsW; ++j) {
        s0[r][j] = vfmaq_f32(s0[r][j], vld1q_f32(wt[j]), x0);
        s1[r][j] = vfmaq_f32(s1[r][j], vld1q_f32(wt[j] + 4), x1);
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RB; ++r) {
    float32x4_t t[kGRowsW];
#pragma GCC unroll 16
    for (int j = 0; j < kGRowsW; ++j) t[j] = vaddq_f32(s0[r][j], s1[r][j]);
    // faddp twice: lane j = (t[j]0 + t[j]1) + (t[j]2 + t[j]3), vaddvq_f32(t[j])'s order.
    const float32x4_t v = vpaddq_f32(vpaddq_f32(t[0], t[1]), vpaddq_f32(t[2], t[3]));
    float* yr = y + r * ldy;
    if (nrows == kGRowsW) {
      vst1q_f32(yr, v);
    } else {
      float tmp[kGRowsW];
      vst1q_f32(tmp, v);
      for (int j = 0; j < nrows; ++j) yr[j] = tmp[j];
    }
  }
}

using GemmMicroFn = void (*)(const float* const*, int, int64_t, const float* const*,
                             const float* const*, const float* const*, float*, bool, bool, float*,
                             int64_t);
constexpr GemmMicroFn kGemmMicro[kGRowsX] = {gemm_micro<1>, gemm_micro<2>, gemm_micro<3>};

// Converts kc (a multiple of 8) weights of a row to F32: fcvtl/fcvtl2 for F16, a 16-bit shift for
// BF16; both exact.
template <WKind kW>
void convert_row(const typename WType<kW>::type* src, float* dst, int64_t kc) {
  for (int64_t k = 0; k < kc; k += 8) {
    float32x4_t lo, hi;
    load8<kW>(src + k, &lo, &hi);
    vst1q_f32(dst + k, lo);
    vst1q_f32(dst + k + 4, hi);
  }
}

// Activation rows per block: the block's rows (block x K x 4 bytes) stay in L2 (budget 512 KiB,
// a common private L2 of Arm cores) while every group of weight rows passes over them; a multiple
// of kGRowsX in [4 kGRowsX, kMc].
int64_t block_rows(int64_t K) {
  const int64_t fit = (int64_t{512} << 10) / (4 * K) / kGRowsX * kGRowsX;
  return std::clamp<int64_t>(fit, 4 * kGRowsX, kMc);
}

template <WKind kW>
void gemm_float(const MatmulArgs& a, int64_t n0, int64_t n1) {
  using W = typename WType<kW>::type;
  constexpr bool kF32 = kW == WKind::f32;
  alignas(16) float wbuf[kF32 ? 1 : kNb][kF32 ? 1 : kGKc];
  // Vector accumulators of one block x one weight-row group across the chunks of K (18 KiB).
  alignas(16) float spill[kMc / kGRowsX][kNb / kGRowsW][kTileFloats];
  const auto* w = static_cast<const W*>(a.w);
  const auto* xb = static_cast<const uint8_t*>(a.x);
  const int64_t K = a.K;
  const int64_t kmain = K / 8 * 8;
  const int tail = static_cast<int>(K - kmain);
  const int64_t mc = block_rows(K);
  for (int64_t rb0 = 0; rb0 < a.R; rb0 += mc) {
    const int64_t rb1 = std::min(a.R, rb0 + mc);
    for (int64_t nb = n0; nb < n1; nb += kNb) {
      const int64_t ng = std::min<int64_t>(kNb, n1 - nb);  // weight rows in this group
      // The zero-padded K tail of the group's weight rows (converted as the GEMV does).
      alignas(16) float wt[kNb][kLanes] = {};
      const float* wtp[kNb];
      for (int j = 0; j < ng; ++j) {
        for (int t = 0; t < tail; ++t) wt[j][t] = to_f32<kW>(w[(nb + j) * K + kmain + t]);
        wtp[j] = wt[j];
      }
      for (int j = static_cast<int>(ng); j < kNb; ++j) wtp[j] = wtp[ng - 1];
      // Chunks of the K main part; at least one (kc = 0 when K < 8) so that the tail and the
      // reduction run.
      for (int64_t k0 = 0;; k0 += kGKc) {
        const int64_t kc = std::min(kGKc, kmain - k0);
        const bool last = k0 + kc >= kmain;
        const float* rows[kNb];
        for (int j = 0; j < ng; ++j) {
          if constexpr (kF32) {
            rows[j] = w + (nb + j) * K + k0;
          } else {
            convert_row<kW>(w + (nb + j) * K + k0, wbuf[j], kc);
            rows[j] = wbuf[j];
          }
        }
        for (int j = static_cast<int>(ng); j < kNb; ++j) rows[j] = rows[ng - 1];
        for (int64_t r0 = rb0; r0 < rb1; r0 += kGRowsX) {
          const int rt = static_cast<int>(std::min<int64_t>(kGRowsX, rb1 - r0));
          const float* xrow[kGRowsX];
          const float* xr[kGRowsX];
          for (int r = 0; r < rt; ++r) {
            xrow[r] = reinterpret_cast<const float*>(xb + (r0 + r) * a.ldx);
            xr[r] = xrow[r] + k0;
          }
          alignas(16) float xt[kGRowsX][kLanes];
          const float* xtp[kGRowsX] = {xt[0], xt[1], xt[2]};
          const bool do_tail = last && tail > 0;
          if (do_tail) {
            for (int r = 0; r < rt; ++r) {
              for (int t = 0; t < kLanes; ++t) xt[r][t] = t < tail ? xrow[r][kmain + t] : 0.0f;
            }
          }
          for (int j0 = 0; j0 < ng; j0 += kGRowsW) {
            const int nrows = std::min<int>(kGRowsW, static_cast<int>(ng) - j0);
            kGemmMicro[rt - 1](rows + j0, nrows, kc, xr, do_tail ? wtp + j0 : nullptr, xtp,
                               spill[(r0 - rb0) / kGRowsX][j0 / kGRowsW], k0 != 0, last,
                               a.y + r0 * a.ldy + nb + j0, a.ldy);
          }
        }
        if (last) break;
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

void gemm_f32_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<WKind::f32>(a, n0, n1);
}
void gemm_f16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<WKind::f16>(a, n0, n1);
}
void gemm_bf16_f32_neon(const MatmulArgs& a, int64_t n0, int64_t n1) {
  gemm_float<WKind::bf16>(a, n0, n1);
}

}  // namespace qgemma
