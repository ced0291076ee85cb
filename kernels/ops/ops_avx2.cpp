// AVX2 + FMA instantiation of the float ops (kernels/ops/ops_simd.h).
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "ops_avx2.cpp must be compiled with -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include "kernels/ops/ops_internal.h"
#include "kernels/ops/ops_simd.h"
#include "kernels/quant/quant.h"

namespace qgemma {
namespace {

using Arch = xsimd::fma3<xsimd::avx2>;

// Q8_0 activations, the bytes of quantize_row_q8_0_ref: the block's |x| maximum reduced in
// registers and the int32 -> int8 narrowing by two saturating packs and one dword permutation
// (the portable template spills both to the stack and finishes them lane by lane). The packs
// never saturate: |round(x / d)| <= 127.
void quantize_q8_0_avx2(const float* x, block_q8_0* y, int64_t n) {
  using V = xsimd::batch<float, Arch>;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t b = 0; b < n / QK8_0; ++b, x += QK8_0) {
    __m256 v[4];
    for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 m8 =
        _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], abs_mask), _mm256_and_ps(v[1], abs_mask)),
                      _mm256_max_ps(_mm256_and_ps(v[2], abs_mask), _mm256_and_ps(v[3], abs_mask)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float d = amax / 127;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[b].d = f32_to_f16(d);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int i = 0; i < 4; ++i) {
      q[i] = _mm256_cvttps_epi32(round_half_away<Arch>(V(_mm256_mul_ps(v[i], vid))));
    }
    // Per 128-bit lane: packs give [q0 q1 q2 q3] dwords of elements 0..3 (low lane) and 4..7
    // (high lane); the permutation puts each vector's 8 bytes back together in order.
    const __m256i p =
        _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y[b].qs), _mm256_permutevar8x32_epi32(p, order));
  }
}

// F16C: vcvtps2ph rounds to nearest even and handles subnormals, overflow and NaN as the
// reference does.
void to_f16_f16c(const float* x, f16_bits* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  if (i < n) f32_to_f16_row_ref(x + i, y + i, n - i);
}

}  // namespace

const OpsKernels* ops_kernels_avx2() {
  static const OpsKernels k = [] {
    OpsKernels t = make_ops_kernels<Arch>();
    t.quantize_q8_0 = quantize_q8_0_avx2;
    t.to_f16 = to_f16_f16c;
    return t;
  }();
  return &k;
}

}  // namespace qgemma
