// Flash attention, AVX2 + FMA: the shared SIMD body (attention_impl.h) on 8-lane f32 vectors,
// F16C vcvtph2ps for F16 K/V rows.
#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "attention_avx2.cpp needs -mavx2 -mfma -mf16c"
#endif

#include <immintrin.h>

#include "kernels/attention/attention_impl.h"

namespace qgemma {
namespace {

struct Avx2 {
  using arch = xsimd::fma3<xsimd::avx2>;
  static constexpr int kQkRows = 4, kQkSlots = 2;  // 8 ymm accumulators (16 registers in all)
  static constexpr int kPvRows = 4, kPvVecs = 2;   // 4 rows x 16 floats

  static xsimd::batch<float, arch> load_f16(const f16_bits* x) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
  }

  static void hsums(const xsimd::batch<float, arch>* x, float* y) {
    xsimd::haddp(x).store_unaligned(y);
  }

  static void q8_0_to_f32(const block_q8_0* x, float* y, int n) {
    for (int b = 0; b < n / QK8_0; ++b) {
      const __m256 d = _mm256_set1_ps(_cvtsh_ss(x[b].d));
      for (int k = 0; k < QK8_0; k += 8) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(x[b].qs + k));
        const __m256 f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
        _mm256_store_ps(y + b * QK8_0 + k, _mm256_mul_ps(f, d));
      }
    }
  }
};

}  // namespace

void flash_attn_avx2(const FlashAttnArgs& a, int q0, int q1, int h0, int h1) {
  FlashAttnSimd<Avx2>::full(a, q0, q1, h0, h1);
}

void flash_attn_partial_avx2(const FlashAttnArgs& a, int q0, int q1, int h0, int h1, int64_t kv0,
                             int64_t kv1, float* partial) {
  FlashAttnSimd<Avx2>::partial(a, q0, q1, h0, h1, kv0, kv1, partial);
}

}  // namespace qgemma
