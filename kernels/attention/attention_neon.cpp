// Flash attention, NEON (armv8.2-a + fp16): the shared SIMD body (attention_impl.h) on 4-lane f32
// vectors, fcvtl for F16 K/V rows.
#if !defined(__aarch64__) || !defined(__ARM_FEATURE_FP16_VECTOR_ARITHMETIC)
#error "attention_neon.cpp needs -march=armv8.2-a+fp16"
#endif

#include <arm_neon.h>

#include "kernels/attention/attention_impl.h"

namespace qgemma {
namespace {

struct Neon {
  using arch = xsimd::neon64;
  static constexpr int kQkRows = 4, kQkSlots = 2;  // 8 q-register accumulators
  static constexpr int kPvRows = 4, kPvVecs = 4;   // 4 rows x 16 floats: 16 accumulators

  static xsimd::batch<float, arch> load_f16(const f16_bits* x) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x)));
  }

  static void hsums(const xsimd::batch<float, arch>* x, float* y) {
    xsimd::haddp(x).store_unaligned(y);
  }

  static void q8_0_to_f32(const block_q8_0* x, float* y, int n) {
    for (int b = 0; b < n / QK8_0; ++b) {
      const float16x4_t dh = vreinterpret_f16_u16(vdup_n_u16(x[b].d));
      const float d = vgetq_lane_f32(vcvt_f32_f16(dh), 0);
      for (int k = 0; k < QK8_0; k += 16) {
        const int8x16_t q = vld1q_s8(x[b].qs + k);
        const int16x8_t lo = vmovl_s8(vget_low_s8(q)), hi = vmovl_high_s8(q);
        float* out = y + b * QK8_0 + k;
        vst1q_f32(out, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), d));
        vst1q_f32(out + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(lo)), d));
        vst1q_f32(out + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), d));
        vst1q_f32(out + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(hi)), d));
      }
    }
  }
};

}  // namespace

void flash_attn_neon(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  FlashAttnSimd<Neon>::full(a, q0, q1, h0, h1);
}

void flash_attn_partial_neon(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                             int64_t kv1, float* partial) {
  FlashAttnSimd<Neon>::partial(a, q0, q1, h0, h1, kv0, kv1, partial);
}

}  // namespace qgemma
