// AArch64 NEON instantiation of the float ops (kernels/ops/ops_simd.h).
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_DOTPROD)
#error "ops_neon.cpp must be compiled for armv8.2-a+dotprod"
#endif

#include <arm_neon.h>

#include "kernels/ops/ops_internal.h"
#include "kernels/ops/ops_simd.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

using Arch = xsimd::neon64;

// Q8_0 activations, the bytes of quantize_row_q8_0_ref: the block's |x| maximum by vmaxvq and the
// int32 -> int8 narrowing by saturating narrows (which never saturate: |round(x / d)| <= 127),
// instead of the portable template's stack spills.
void quantize_q8_0_neon(const float* x, block_q8_0* y, int64_t n) {
  using V = xsimd::batch<float, Arch>;
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    float32x4_t v[8];
    for (int i = 0; i < 8; ++i) v[i] = vld1q_f32(x + 4 * i);
    float32x4_t m = vabsq_f32(v[0]);
    for (int i = 1; i < 8; ++i) m = vmaxq_f32(m, vabsq_f32(v[i]));
    const float amax = vmaxvq_f32(m);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    const float32x4_t vid = vdupq_n_f32(id);
    int16x4_t h[8];
    for (int i = 0; i < 8; ++i) {
      const float32x4_t r = round_half_away<Arch>(V(vmulq_f32(v[i], vid)));
      h[i] = vqmovn_s32(vcvtq_s32_f32(r));  // r is integral: the conversion is exact
    }
    vst1q_s8(y[b].qs, vcombine_s8(vqmovn_s16(vcombine_s16(h[0], h[1])),
                                  vqmovn_s16(vcombine_s16(h[2], h[3]))));
    vst1q_s8(y[b].qs + 16, vcombine_s8(vqmovn_s16(vcombine_s16(h[4], h[5])),
                                       vqmovn_s16(vcombine_s16(h[6], h[7]))));
  }
}

// fcvtn (FPCR default: round to nearest even, no flush to zero, NaN quieted with its top payload
// bits), as the reference.
void to_f16_neon(const float* x, f16_bits* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
  }
  if (i < n) f32_to_f16_row_ref(x + i, y + i, n - i);
}

}  // namespace

const OpsKernels* ops_kernels_neon() {
  static const OpsKernels k = [] {
    OpsKernels t = make_ops_kernels<Arch>();
    t.quantize_q8_0 = quantize_q8_0_neon;
    t.to_f16 = to_f16_neon;
    return t;
  }();
  return &k;
}

}  // namespace qgemma
